//! Listings: a repository's tags (lexical order) and the `_catalog` (the order of a
//! walk over the folders, `a/c` before `a-b`), with `n`/`last` pagination and a `Link`
//! to the next page. A page lists and checks about as much as it returns.

use super::{json, link_next, paginate, Answer};
use crate::error::ApiError;
use crate::oci::endpoint::Page;
use crate::oci::Repository;
use crate::registry::storage::Storage;
use crate::registry::{store, Registry};
use http::StatusCode;

impl<S: Storage> Registry<S> {
    pub(in crate::registry) async fn tags(&self, repo: &Repository, page: Page) -> Answer {
        let unknown = || ApiError::unknown("NAME_UNKNOWN", format!("repository {repo} unknown"));
        let (items, more) = match page.n {
            Some(n) => store::tags_page(&self.store, repo, n, page.last.as_deref())
                .await?
                .ok_or_else(unknown)?,
            None => {
                let all = store::tags(&self.store, repo).await?.ok_or_else(unknown)?;
                paginate(all, None, page.last.as_deref())
            }
        };
        let mut r = json(
            StatusCode::OK,
            "application/json",
            &serde_json::json!({"name": repo.as_str(), "tags": items}),
        );
        if more {
            if let (Some(n), Some(l)) = (page.n, items.last()) {
                link_next(&mut r, &format!("/v2/{repo}/tags/list?n={n}&last={l}"));
            }
        }
        Ok(r)
    }

    pub(in crate::registry) async fn catalog(
        &self,
        page: Page,
        visible: store::Visible<'_>,
    ) -> Answer {
        let (items, more) = store::repositories_page(
            &self.store,
            page.n.unwrap_or(usize::MAX),
            page.last.as_deref(),
            visible,
        )
        .await?;
        let mut r = json(
            StatusCode::OK,
            "application/json",
            &serde_json::json!({"repositories": items}),
        );
        if more {
            if let (Some(n), Some(l)) = (page.n, items.last()) {
                link_next(&mut r, &format!("/v2/_catalog?n={n}&last={l}"));
            }
        }
        Ok(r)
    }
}
