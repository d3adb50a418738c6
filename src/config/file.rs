//! The `proxy.toml` file format: serde structs that mirror the file one to one.
//! Nothing here is validated beyond types; `config` turns it into runtime types.

use super::size::SizeValue;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    pub tls: Option<Tls>,
    pub auth: Option<Auth>,
    #[serde(default)]
    pub clients: Clients,
    pub upstream: Option<Upstream>,
    pub registry: Option<Registry>,
    pub metrics: Option<Metrics>,
    pub log: Option<Log>,
    pub access: Option<Access>,
}

/// `[access]`, `[access.groups]` and `[[access.rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    pub default: Option<String>,
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub rule: Vec<AccessRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub who: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: Option<String>,
}

/// `listen` accepts one address or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<OneOrMany>,
    pub read_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_connections: Option<u64>,
    pub max_connections_per_address: Option<i64>,
    pub max_header_size: Option<SizeValue>,
    pub http2_max_streams: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub certificate: Option<String>,
    pub key: Option<String>,
    pub generate_if_missing: Option<bool>,
    pub hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub htpasswd: Option<String>,
    pub realm: Option<String>,
    pub throttle: Option<Throttle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub enabled: Option<bool>,
    pub burst: Option<i64>,
    pub refill: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    pub reject_old_docker: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub balance: Option<String>,
    #[serde(default)]
    pub server: Vec<UpstreamServer>,
    pub health_check: Option<HealthCheck>,
    /// PEM CA bundle trusted for https:// upstreams.
    pub ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub interval: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServer {
    pub url: String,
    pub weight: Option<u32>,
    pub down: Option<bool>,
    pub backup: Option<bool>,
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<String>,
    pub max_conns: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub storage: Option<String>,
    pub root: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub access_key_id_file: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub redirect: Option<bool>,
    pub redirect_endpoint: Option<String>,
    pub create_only: Option<String>,
    pub read_only: Option<bool>,
    pub delete: Option<bool>,
    pub secret: Option<String>,
    pub gc: Option<Gc>,
    pub upload_purge: Option<UploadPurge>,
    pub max_manifest_size: Option<SizeValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadPurge {
    pub enabled: Option<bool>,
    pub age: Option<String>,
    pub interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gc {
    pub interval: Option<String>,
    pub grace: Option<String>,
}
