//! The object-store keys of `[registry]` (`storage = "s3"` or `"oss"`): bucket,
//! endpoints, key prefix, how writes are made create-only, and credentials from the
//! file, a `*_file` key or the environment, each problem one line that never shows a
//! credential.

use super::super::{file, CreateOnly, Credentials, ObjectStore, StorageKind};
use super::Validator;

impl Validator {
    /// Keys that mean something only for an object store, set with `storage = "fs"`.
    pub(super) fn only_for_object_stores(&mut self, r: &file::Registry) {
        let set = [
            ("bucket", r.bucket.is_some()),
            ("region", r.region.is_some()),
            ("endpoint", r.endpoint.is_some()),
            ("path_style", r.path_style.is_some()),
            ("access_key_id", r.access_key_id.is_some()),
            ("secret_access_key", r.secret_access_key.is_some()),
            ("access_key_id_file", r.access_key_id_file.is_some()),
            ("secret_access_key_file", r.secret_access_key_file.is_some()),
            ("redirect", r.redirect.is_some()),
            ("redirect_endpoint", r.redirect_endpoint.is_some()),
            ("create_only", r.create_only.is_some()),
        ];
        for (key, present) in set {
            if present {
                self.problem(
                    &format!("registry.{key}"),
                    "only for storage = \"s3\" or \"oss\" (storage is \"fs\")",
                );
            }
        }
    }

    pub(super) fn object_store(&mut self, kind: StorageKind, r: &file::Registry) -> ObjectStore {
        let bucket = r.bucket.clone().unwrap_or_default();
        if bucket.is_empty() {
            self.problem(
                "registry.bucket",
                format!("required with storage = {:?}", kind.name()),
            );
        } else if !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            || bucket.len() > 63
        {
            self.problem(
                "registry.bucket",
                format!("{bucket:?} is not a bucket name (lower-case letters, digits, '-', '.')"),
            );
        }
        let endpoint = r.endpoint.clone();
        for (key, value) in [
            ("registry.endpoint", endpoint.as_deref()),
            ("registry.redirect_endpoint", r.redirect_endpoint.as_deref()),
        ] {
            if let Some(v) = value {
                let ok = v
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
                    .is_some_and(|u| u.host().is_some());
                if !ok {
                    self.problem(
                        key,
                        format!("{v:?} is not a URL such as \"https://s3.example.com\""),
                    );
                }
            }
        }
        if kind == StorageKind::Oss && endpoint.is_none() {
            self.problem(
                "registry.endpoint",
                "required with storage = \"oss\" (such as \"https://oss-cn-hangzhou.aliyuncs.com\")",
            );
        }
        if kind == StorageKind::Oss && r.region.is_some() {
            self.problem(
                "registry.region",
                "not used with storage = \"oss\" (the endpoint names the region)",
            );
        }
        if r.redirect_endpoint.is_some() && r.redirect != Some(true) {
            self.problem("registry.redirect_endpoint", "set without redirect = true");
        }
        let prefix = r
            .root
            .as_deref()
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        if prefix.split('/').any(|c| c == ".." || c == ".") {
            self.problem(
                "registry.root",
                format!("{prefix:?} is not a key prefix such as \"prod/registry\""),
            );
        }
        let credentials = self.credentials(kind, r);
        let create_only = match r.create_only.as_deref().unwrap_or("auto") {
            "auto" => None,
            "conditional" => Some(CreateOnly::Conditional),
            "listing" => Some(CreateOnly::Listing),
            other => {
                self.problem(
                    "registry.create_only",
                    format!("{other:?} is not one of auto, conditional, listing"),
                );
                None
            }
        };
        ObjectStore {
            create_only,
            bucket,
            region: r.region.clone().unwrap_or_else(|| "us-east-1".to_string()),
            endpoint,
            path_style: r.path_style.unwrap_or(true),
            prefix,
            credentials,
            redirect: r.redirect.unwrap_or(false),
            redirect_endpoint: r.redirect_endpoint.clone(),
        }
    }

    /// One credential from its key, its `*_file` key or the environment.
    fn secret_value(
        &mut self,
        key: &str,
        inline: Option<&str>,
        file: Option<&str>,
        env: &[&str],
    ) -> Option<String> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("registry.{key}"),
                    format!("set both {key} and {key}_file; keep one"),
                );
                None
            }
            (Some(v), None) => Some(v.trim().to_string()),
            (None, Some(f)) => {
                let path = self.path(f);
                match std::fs::read_to_string(&path) {
                    Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                    Ok(_) => {
                        self.problem(
                            &format!("registry.{key}_file"),
                            format!("{} is empty", path.display()),
                        );
                        None
                    }
                    Err(e) => {
                        self.problem(
                            &format!("registry.{key}_file"),
                            format!(
                                "cannot read {}: {}",
                                path.display(),
                                crate::files::io_error_words(&e)
                            ),
                        );
                        None
                    }
                }
            }
            (None, None) => env
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty())),
        }
    }

    fn credentials(&mut self, kind: StorageKind, r: &file::Registry) -> Credentials {
        let (id_env, secret_env): (&[&str], &[&str]) = match kind {
            StorageKind::Oss => (
                &["ALIBABA_CLOUD_ACCESS_KEY_ID", "OSS_ACCESS_KEY_ID"],
                &["ALIBABA_CLOUD_ACCESS_KEY_SECRET", "OSS_ACCESS_KEY_SECRET"],
            ),
            _ => (&["AWS_ACCESS_KEY_ID"], &["AWS_SECRET_ACCESS_KEY"]),
        };
        let from_env = r.access_key_id.is_none() && r.access_key_id_file.is_none();
        let id = self.secret_value(
            "access_key_id",
            r.access_key_id.as_deref(),
            r.access_key_id_file.as_deref(),
            id_env,
        );
        let secret = self.secret_value(
            "secret_access_key",
            r.secret_access_key.as_deref(),
            r.secret_access_key_file.as_deref(),
            secret_env,
        );
        if id.is_none() && secret.is_none() && !self.has_problem("registry.access_key_id") {
            self.problem(
                "registry.access_key_id",
                format!(
                    "no credentials: set access_key_id and secret_access_key (or their _file keys), or {} and {}",
                    id_env[0], secret_env[0]
                ),
            );
        } else if id.is_none() != secret.is_none() {
            let missing = if id.is_none() {
                "access_key_id"
            } else {
                "secret_access_key"
            };
            if !self.has_problem(&format!("registry.{missing}"))
                && !self.has_problem(&format!("registry.{missing}_file"))
            {
                self.problem(
                    &format!("registry.{missing}"),
                    "missing: an access key needs both access_key_id and secret_access_key",
                );
            }
        }
        let session_token = (from_env && kind == StorageKind::S3)
            .then(|| std::env::var("AWS_SESSION_TOKEN").ok())
            .flatten()
            .filter(|t| !t.is_empty());
        Credentials {
            access_key_id: id.unwrap_or_default(),
            secret_access_key: secret.unwrap_or_default(),
            session_token,
        }
    }

    fn has_problem(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }
}
