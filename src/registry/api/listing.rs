//! Listings: a repository's tags and the `_catalog`, sorted, with `n`/`last`
//! pagination and a `Link` to the next page.

use super::{json, link_next, paginate, Answer};
use crate::error::ApiError;
use crate::oci::endpoint::Page;
use crate::oci::Repository;
use crate::registry::storage::Storage;
use crate::registry::{store, Registry};
use http::StatusCode;

impl<S: Storage> Registry<S> {
    pub(in crate::registry) async fn tags(&self, repo: &Repository, page: Page) -> Answer {
        let all = store::tags(&self.store, repo).await?.ok_or_else(|| {
            ApiError::unknown("NAME_UNKNOWN", format!("repository {repo} unknown"))
        })?;
        let (items, more) = paginate(all, page.n, page.last.as_deref());
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

    pub(in crate::registry) async fn catalog(&self, page: Page) -> Answer {
        let repos = store::list_repositories(&self.store).await?;
        let (items, more) = paginate(repos, page.n, page.last.as_deref());
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
