//! The referrers API (OCI 1.1): an image index of the manifests whose `subject` is a
//! digest, optionally filtered by `artifactType`.

use super::{json, Answer};
use crate::oci::{Digest, Repository};
use crate::registry::storage::Storage;
use crate::registry::{manifest, paths, store, Registry};
use http::{HeaderValue, StatusCode};

impl<S: Storage> Registry<S> {
    pub(in crate::registry) async fn referrers(
        &self,
        repo: &Repository,
        d: &Digest,
        filter: Option<String>,
    ) -> Answer {
        let mut manifests = Vec::new();
        for rd in store::revisions(&self.store, repo).await? {
            let Ok(Some(bytes)) = self.store.read(&paths::blob_data(&rd)).await else {
                continue;
            };
            let Ok(m) = manifest::parse(None, &bytes) else {
                continue;
            };
            if m.subject.as_ref() != Some(d) {
                continue;
            }
            if filter.is_some() && m.artifact_type != filter {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": m.media_type,
                "digest": rd.to_string(),
                "size": bytes.len(),
            });
            if let Some(t) = &m.artifact_type {
                desc["artifactType"] = serde_json::json!(t);
            }
            if let Some(a) = &m.annotations {
                desc["annotations"] = serde_json::Value::Object(a.clone());
            }
            manifests.push(desc);
        }
        manifests.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
        let mut r = json(
            StatusCode::OK,
            manifest::OCI_INDEX,
            &serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests}),
        );
        if filter.is_some() {
            r.headers_mut().insert(
                "oci-filters-applied",
                HeaderValue::from_static("artifactType"),
            );
        }
        Ok(r)
    }
}
