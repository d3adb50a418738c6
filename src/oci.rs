//! The OCI Distribution protocol's vocabulary, shared by the proxy and the bundled
//! registry: repository, tag and digest types that cannot hold invalid values, and a
//! `/v2/...` request understood once as a typed endpoint.

pub mod digest;
pub mod endpoint;
pub mod name;

pub use digest::{Algorithm, Digest, Hasher};
pub use endpoint::{Call, Endpoint, Kind};
pub use name::{Reference, Repository, Tag};
