//! Listing a folder of an object store in name order, a page at a time (the store
//! lists in key order, where a folder sorts after names it precedes).

use super::Object;
use crate::registry::storage::{Listing, Page, Result};
use futures_util::StreamExt;

impl Object {
    /// Names directly under `dir`, page by page from the store (delimiter listing),
    /// in name order like every backend. The store lists in key order, where a
    /// folder `a` (key `a/`) comes after `a-b` and `a.b` ('-' and '.' sort before
    /// '/'), and each response holds its folders first, then its objects. So a page
    /// is read in whole responses (a truncated response holds exactly the `max-keys`
    /// asked for, as S3, OSS, MinIO and s3s-fs answer): then every key up to the
    /// last one read is known, and only a folder whose name is a prefix of that last
    /// name, cut before a '-' or '.', can sort before names already read and still be
    /// missing. Each such prefix is asked for directly: a page costs its own size
    /// plus one small listing per '-' or '.' in its last name, never the rest of
    /// the folder.
    pub(super) async fn list_page(&self, dir: &str, page: Page<'_>) -> Result<Listing> {
        let prefix = format!("{dir}/");
        let after = page.start_after.filter(|a| !a.is_empty());
        let mut l = self.op.lister_with(&prefix);
        if let Some(after) = after {
            // Every name after `after` has a key after `prefix + after`.
            l = l.start_after(&format!("{prefix}{after}"));
        }
        // One more than asked tells whether more follow; one more again for the
        // folder `after/` itself, which sorts after the key `after`.
        let per_response = page.limit + 2;
        if page.limit > 0 {
            l = l.limit(per_response);
        }
        let mut lister = match l.await {
            Ok(l) => l,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(self.error("list", dir, e)),
        };
        let mut names: Vec<String> = Vec::new();
        // The greatest key read (a folder's with its '/'): its name's prefixes are
        // the only names that may be missing before it.
        let mut greatest = String::new();
        let mut entries = 0usize;
        let mut cut = false;
        while let Some(entry) = lister.next().await {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => break,
                Err(e) => return Err(self.error("list", dir, e)),
            };
            entries += 1;
            let path = entry.path().strip_prefix('/').unwrap_or(entry.path());
            if let Some(key) = path.strip_prefix(&prefix) {
                let name = key.trim_end_matches('/');
                // `a` (folder `a/`) comes after the key `a-b` it precedes as a name.
                if !(name.is_empty() || name.contains('/') || after.is_some_and(|a| name <= a)) {
                    if key > greatest.as_str() {
                        greatest = key.to_string();
                    }
                    names.push(name.to_string());
                }
            }
            if page.limit > 0 && entries % per_response == 0 && names.len() > page.limit {
                cut = true;
                break;
            }
        }
        if cut {
            // Folders not read yet whose names sort before names that were.
            let last = greatest.trim_end_matches('/');
            for (i, b) in last.bytes().enumerate() {
                let m = &last[..i];
                if b >= b'/' || m.is_empty() || after.is_some_and(|a| m <= a) {
                    continue;
                }
                if !names.iter().any(|n| n == m) && self.holds(&format!("{prefix}{m}/")).await? {
                    names.push(m.to_string());
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        let truncated = cut || (page.limit > 0 && names.len() > page.limit);
        if page.limit > 0 {
            names.truncate(page.limit);
        }
        Ok(Listing { names, truncated })
    }

    /// Does any key start with `folder` (ending in `/`)? One listing of one or two.
    async fn holds(&self, folder: &str) -> Result<bool> {
        let mut lister = match self.op.lister_with(folder).limit(2).await {
            Ok(l) => l,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.error("list", folder, e)),
        };
        while let Some(entry) = lister.next().await {
            match entry {
                // The folder itself, when the store lists it.
                Ok(e) if e.path().trim_start_matches('/') == folder => continue,
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(self.error("list", folder, e)),
            }
        }
        Ok(false)
    }
}
