//! Manifest parsing and validation: Docker schema 2, Docker manifest list, OCI image
//! manifest, OCI index, artifacts (`artifactType`, empty config) and `subject`.

use crate::oci::Digest;
use serde::Deserialize;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A content descriptor as it appears in manifests.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a stored manifest references, and how it describes itself.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    /// Blobs that must exist in the repository (config and layers).
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in the repository (index entries).
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest its config's media type (spec rule for
    /// the referrers API).
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Why a manifest was refused: the message goes into MANIFEST_INVALID.
#[derive(Debug, Clone)]
pub struct Invalid(pub String);

fn digest(field: &str, d: &Descriptor) -> Result<Digest, Invalid> {
    if d.size < 0 {
        return Err(Invalid(format!("{field}: negative size")));
    }
    Digest::parse(&d.digest).map_err(|e| Invalid(format!("{field}: {}", e.0)))
}

/// Parse a manifest as PUT with `content_type`, or as stored (`content_type` None).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, Invalid> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| Invalid(format!("not a JSON manifest: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(Invalid(
            "schemaVersion must be 2 (schema 1 manifests are not supported)".into(),
        ));
    }
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty());
    // The payload's own mediaType wins; without one, the Content-Type of the PUT, and
    // for a stored manifest the shape (distribution does the same).
    let media_type = match (&raw.media_type, content_type) {
        (Some(m), Some(c)) if m != c => {
            return Err(Invalid(format!(
                "mediaType {m:?} does not match Content-Type {c:?}"
            )))
        }
        (Some(m), _) => m.clone(),
        (None, Some(c)) => c.to_string(),
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    let mut m = Manifest {
        media_type: media_type.clone(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: None,
        artifact_type: raw.artifact_type.clone(),
        annotations: raw.annotations.clone(),
    };
    match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| Invalid("image manifest without config".into()))?;
            m.blobs.push(digest("config", config)?);
            let layers = raw.layers.as_deref().unwrap_or_default();
            if media_type == DOCKER_MANIFEST && layers.is_empty() {
                return Err(Invalid("schema 2 manifest without layers".into()));
            }
            for (i, l) in layers.iter().enumerate() {
                let d = digest(&format!("layers[{i}]"), l)?;
                // Foreign (non-distributable) layers live elsewhere, as in distribution.
                if l.urls.is_empty() {
                    m.blobs.push(d);
                }
            }
            if m.artifact_type.is_none() && media_type == OCI_MANIFEST {
                m.artifact_type = Some(config.media_type.clone()).filter(|t| !t.is_empty());
            }
        }
        DOCKER_LIST | OCI_INDEX => {
            let list = raw
                .manifests
                .as_ref()
                .ok_or_else(|| Invalid("index without manifests".into()))?;
            for (i, d) in list.iter().enumerate() {
                m.manifests.push(digest(&format!("manifests[{i}]"), d)?);
            }
        }
        other => {
            return Err(Invalid(format!(
                "unsupported manifest media type {other:?}"
            )))
        }
    }
    if let Some(s) = &raw.subject {
        if media_type == DOCKER_MANIFEST || media_type == DOCKER_LIST {
            return Err(Invalid("subject is only defined for OCI manifests".into()));
        }
        m.subject = Some(digest("subject", s)?);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn oci_artifact_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D}","size":2}},"layers":[{{"mediaType":"application/x","digest":"{D}","size":2}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":10}}}}"#
        );
        let m = parse(Some(OCI_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.sig"));
        assert_eq!(m.subject.unwrap().to_string(), D);
        assert_eq!(m.blobs.len(), 2);
    }

    #[test]
    fn media_type_rules() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1}}]}}"#
        );
        assert_eq!(parse(None, body.as_bytes()).unwrap().media_type, OCI_INDEX);
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"{D}","size":1}},"layers":[]}}"#
        );
        assert!(parse(Some(OCI_MANIFEST), body.as_bytes())
            .unwrap_err()
            .0
            .contains("does not match"));
        assert!(parse(Some(DOCKER_MANIFEST), body.as_bytes())
            .unwrap_err()
            .0
            .contains("without layers"));
        assert!(parse(None, b"{\"schemaVersion\":1}").is_err());
        assert!(parse(None, b"not json").is_err());
        let bad = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"sha256:zz","size":1}}}}"#
        );
        assert!(parse(None, bad.as_bytes()).is_err());
    }
}
