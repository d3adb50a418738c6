//! Docker distribution's storage layout (`registry/storage/paths.go`), so a data
//! directory written by `registry:2` is served as is, and the other way round.
//! Paths are `/`-separated keys relative to the storage root; every input has been
//! validated by `names`.

use crate::oci::{Algorithm, Digest};

const ROOT: &str = "docker/registry/v2";

/// `blobs/<alg>/<first two hex>/<hex>/data`
pub fn blob_data(d: &Digest) -> String {
    format!(
        "{ROOT}/blobs/{}/{}/{}/data",
        d.algorithm.name(),
        &d.hex[..2],
        d.hex
    )
}

/// `blobs/<alg>`: two-hex-digit folders, each holding `<hex>` blob folders.
pub fn blobs_dir(alg: Algorithm) -> String {
    format!("{ROOT}/blobs/{}", alg.name())
}

/// `blobs/<alg>/<first two hex>/<hex>`: a blob's folder.
pub fn blob_dir(d: &Digest) -> String {
    format!(
        "{ROOT}/blobs/{}/{}/{}",
        d.algorithm.name(),
        &d.hex[..2],
        d.hex
    )
}

pub fn repositories() -> String {
    format!("{ROOT}/repositories")
}

/// A repository's folder.
pub fn repository(name: &str) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// `<dir>/<name>`: an entry of a listed folder.
pub fn child(dir: &str, name: &str) -> String {
    format!("{dir}/{name}")
}

/// `<dir>/<alg>`: the digests of one algorithm in a `<alg>/<hex>` folder.
pub fn algorithm_dir(dir: &str, alg: Algorithm) -> String {
    format!("{dir}/{}", alg.name())
}

/// `_layers/<alg>/<hex>/link`: the blob is part of this repository.
pub fn layer_link(name: &str, d: &Digest) -> String {
    format!(
        "{}/_layers/{}/{}/link",
        repository(name),
        d.algorithm.name(),
        d.hex
    )
}

/// `_layers/<alg>/<hex>`: the folder of a layer link.
pub fn layer_dir(name: &str, d: &Digest) -> String {
    format!(
        "{}/_layers/{}/{}",
        repository(name),
        d.algorithm.name(),
        d.hex
    )
}

/// `_manifests/revisions/<alg>/<hex>/link`
pub fn revision_link(name: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}/link",
        repository(name),
        d.algorithm.name(),
        d.hex
    )
}

/// `_manifests/revisions`: `<alg>/<hex>` folders, one per stored manifest.
pub fn revisions_dir(name: &str) -> String {
    format!("{}/_manifests/revisions", repository(name))
}

/// `_layers`: `<alg>/<hex>` folders, one per blob linked into the repository.
pub fn layers_dir(name: &str) -> String {
    format!("{}/_layers", repository(name))
}

pub fn revision_dir(name: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}",
        repository(name),
        d.algorithm.name(),
        d.hex
    )
}

pub fn tags_dir(name: &str) -> String {
    format!("{}/_manifests/tags", repository(name))
}

pub fn tag_dir(name: &str, tag: &str) -> String {
    format!("{}/_manifests/tags/{tag}", repository(name))
}

/// `_manifests/tags/<tag>/current/link`
pub fn tag_current_link(name: &str, tag: &str) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

/// `_manifests/tags/<tag>/index/<alg>/<hex>/link`: every revision the tag has had.
pub fn tag_index_link(name: &str, tag: &str, d: &Digest) -> String {
    format!(
        "{}/index/{}/{}/link",
        tag_dir(name, tag),
        d.algorithm.name(),
        d.hex
    )
}

/// `_uploads`: one folder per upload in progress.
pub fn uploads_dir(name: &str) -> String {
    format!("{}/_uploads", repository(name))
}

pub fn upload_dir(name: &str, id: &str) -> String {
    format!("{}/_uploads/{id}", repository(name))
}

/// `_uploads/<id>/data`
pub fn upload_data(name: &str, id: &str) -> String {
    format!("{}/data", upload_dir(name, id))
}

/// `_uploads/<id>/startedat`: RFC 3339 time; its presence makes the upload known.
pub fn upload_started_at(name: &str, id: &str) -> String {
    format!("{}/startedat", upload_dir(name, id))
}

/// `gc/epochs`: one record per garbage collection in progress (`gc::epoch`). Outside
/// `repositories` and `blobs`, so distribution never sees it.
pub fn gc_epochs() -> String {
    format!("{ROOT}/gc/epochs")
}

/// `gc`: the epoch records' folder and one folder of flags per epoch.
pub fn gc_root() -> String {
    format!("{ROOT}/gc")
}

/// `gc/<epoch>`: the flags of one collection.
pub fn gc_flags(epoch: &str) -> String {
    format!("{ROOT}/gc/{epoch}")
}

/// `gc/<epoch>/d/<alg>/<first two hex>/<hex>`: "deleting X", written by the collector;
/// holds its batch.
pub fn gc_deleting(epoch: &str, d: &Digest) -> String {
    gc_flag(epoch, "d", d)
}

/// `gc/<epoch>/r/<alg>/<first two hex>/<hex>`: "rescued X", written by a request that
/// vouches for X.
pub fn gc_rescued(epoch: &str, d: &Digest) -> String {
    gc_flag(epoch, "r", d)
}

/// A flag about blob `d`, spread over folders as blobs are: flags written at once into
/// one folder contend for its lock on a filesystem.
fn gc_flag(epoch: &str, kind: &str, d: &Digest) -> String {
    format!(
        "{ROOT}/gc/{epoch}/{kind}/{}/{}/{}",
        d.algorithm.name(),
        &d.hex[..2],
        d.hex
    )
}

/// `gc/<epoch>/done/<batch>`: the collector is through with every X of the batch.
pub fn gc_done(epoch: &str, batch: u64) -> String {
    format!("{ROOT}/gc/{epoch}/done/{batch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_distribution() {
        let d = Digest::parse(
            "sha256:96443a84ce518ac22acb2e985eda402b58ac19ce6f91980bde63726a79d80b36",
        )
        .unwrap();
        assert_eq!(blob_data(&d), "docker/registry/v2/blobs/sha256/96/96443a84ce518ac22acb2e985eda402b58ac19ce6f91980bde63726a79d80b36/data");
        assert_eq!(layer_link("a/b", &d), "docker/registry/v2/repositories/a/b/_layers/sha256/96443a84ce518ac22acb2e985eda402b58ac19ce6f91980bde63726a79d80b36/link");
        assert_eq!(revision_link("a", &d), "docker/registry/v2/repositories/a/_manifests/revisions/sha256/96443a84ce518ac22acb2e985eda402b58ac19ce6f91980bde63726a79d80b36/link");
        assert_eq!(
            tag_current_link("a", "v1"),
            "docker/registry/v2/repositories/a/_manifests/tags/v1/current/link"
        );
        assert_eq!(tag_index_link("a", "v1", &d), "docker/registry/v2/repositories/a/_manifests/tags/v1/index/sha256/96443a84ce518ac22acb2e985eda402b58ac19ce6f91980bde63726a79d80b36/link");
        assert_eq!(
            upload_data("a", "u"),
            "docker/registry/v2/repositories/a/_uploads/u/data"
        );
        assert_eq!(
            upload_started_at("a", "u"),
            "docker/registry/v2/repositories/a/_uploads/u/startedat"
        );
    }
}
