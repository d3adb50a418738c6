//! Configuration: loads `proxy.toml`, validates it into runtime types, and words every
//! problem as one line naming the file, the key and what is wrong.
//!
//! Two layers (see CONVENTIONS.md): `config::file` is the serde mirror of the TOML;
//! this module turns it into [`Config`], which is all the rest of the crate ever sees.

mod duration;
mod file;
mod size;
mod validate;

pub use duration::parse_duration;
pub use size::{parse_size, SizeValue};

use http::Uri;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (relative paths inside it are resolved against its folder).
    pub path: PathBuf,
    pub server: Server,
    pub tls: Tls,
    pub auth: Auth,
    pub clients: Clients,
    pub backend: Backend,
    /// `[metrics] listen`: where /metrics, /healthz, /readyz are served (plain HTTP).
    pub metrics_listen: Option<SocketAddr>,
    /// `[log] format` of the access log.
    pub log_format: crate::access_log::Format,
    /// `[access]`: who may do what on which repository; None = every authenticated
    /// user may do everything.
    pub access: Option<std::sync::Arc<crate::access::Policy>>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    /// nginx `proxy_read_timeout`: longest wait between two reads of a body or for a
    /// response head.
    pub read_timeout: Duration,
    /// Longest a client may take to complete TLS and send its first request head, and
    /// to finish any later request head once its first byte has arrived.
    pub header_timeout: Duration,
    /// nginx `keepalive_timeout`: a connection with no request in flight is closed after
    /// this long (HTTP/1.1 simply closed, HTTP/2 with GOAWAY).
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: the whole address).
    pub max_connections_per_address: usize,
    /// Largest request head (request line and headers) in bytes: HTTP/1.1 answers 431
    /// and closes; HTTP/2 advertises it as SETTINGS_MAX_HEADER_LIST_SIZE and answers
    /// 431 on the stream.
    pub max_header_size: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of each HTTP/2 connection.
    pub http2_max_streams: u32,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub generate_if_missing: bool,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub htpasswd: PathBuf,
    pub realm: String,
    /// `[auth.throttle]`: limits on failed logins; `None` when `enabled = false`.
    pub throttle: Option<Throttle>,
}

/// Token buckets for failed logins (per client address and per user name): `burst`
/// failures at once, one more every `refill`. See `auth::throttle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub burst: u32,
    pub refill: Duration,
}

/// The safe default: on, 10 failures at once, one more every 6 s (10 a minute).
pub const DEFAULT_THROTTLE: Throttle = Throttle {
    burst: 10,
    refill: Duration::from_secs(6),
};

#[derive(Debug, Clone)]
pub struct Clients {
    pub reject_old_docker: bool,
}

/// Where authorised requests go: exactly one kind.
#[derive(Debug, Clone)]
pub enum Backend {
    Upstream(Upstream),
    Registry(Registry),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    IpHash,
    LeastConn,
    RepositoryHash,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub balance: Balance,
    pub servers: Vec<UpstreamServer>,
    pub health_check: Option<HealthCheck>,
    /// CA bundle for https:// upstreams.
    pub ca: Option<PathBuf>,
}

/// Active health checks: `GET path` every `interval`; 200 or 401 is healthy.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub interval: Duration,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct UpstreamServer {
    /// `http://host:port` (path ignored; requests keep their own path).
    pub url: Uri,
    pub weight: u32,
    pub down: bool,
    pub backup: bool,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// 0 = unlimited.
    pub max_conns: u32,
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub storage: StorageKind,
    /// The data folder (`fs`; for object stores the key prefix is `ObjectStore::prefix`).
    pub root: PathBuf,
    /// `s3` and `oss`: where and how to reach the bucket.
    pub object: Option<Box<ObjectStore>>,
    pub delete: bool,
    /// Every write answers 405; reads keep working; no gc or purge runs.
    pub read_only: bool,
    pub secret: Option<String>,
    /// `[registry.gc] interval`: online collection while serving; None = off.
    pub gc_interval: Option<Duration>,
    /// `[registry.gc] grace`: never delete a blob younger than this (default 1h).
    pub gc_grace: Duration,
    /// `[registry.upload_purge]`: (age, interval) of abandoned-upload removal; None = off.
    /// On by default with distribution's values, 168h and 24h.
    pub upload_purge: Option<(Duration, Duration)>,
    /// Largest manifest a PUT may carry (413 beyond it).
    pub max_manifest_size: usize,
}

/// `registry.storage`: which storage backend holds the registry's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageKind {
    /// A folder on the local filesystem (`registry.root`).
    #[default]
    Fs,
    /// An S3-compatible bucket (AWS, MinIO, Ceph RGW, R2, Garage, OSS's S3 API, ...).
    S3,
    /// Aliyun OSS through its native API.
    Oss,
}

impl StorageKind {
    pub fn name(self) -> &'static str {
        match self {
            StorageKind::Fs => "fs",
            StorageKind::S3 => "s3",
            StorageKind::Oss => "oss",
        }
    }
}

/// `[registry]` keys of an object store (`storage = "s3"` or `"oss"`).
#[derive(Debug, Clone)]
pub struct ObjectStore {
    pub bucket: String,
    /// S3 only (OSS names its region in the endpoint); "us-east-1" when unset.
    pub region: String,
    /// `http(s)://host[:port]`; None: the provider's default (AWS S3).
    pub endpoint: Option<String>,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// Key prefix below which distribution's layout lives ("" = the bucket's top).
    pub prefix: String,
    pub credentials: Credentials,
    /// Blob GETs answer 307 to a presigned URL.
    pub redirect: bool,
    /// Sign redirects for this endpoint (what clients reach) instead of `endpoint`.
    pub redirect_endpoint: Option<String>,
    /// `create_only`: None ("auto") probes the store at start-up.
    pub create_only: Option<CreateOnly>,
}

/// How an object store makes a write create-only (DESIGN.md "Scale-out").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOnly {
    /// The store's conditional PUT (`If-None-Match: *`, OSS `x-oss-forbid-overwrite`).
    Conditional,
    /// For stores that ignore conditions (or apply them non-atomically): write a claim
    /// `<key>.claims/<nonce>`, list the claims, and win only when alone.
    Listing,
}

impl ObjectStore {
    /// Where the data is, for log lines and `check` (never a credential).
    pub fn describe(&self, kind: StorageKind) -> String {
        let at = self
            .endpoint
            .as_deref()
            .unwrap_or("the provider's default endpoint");
        if self.prefix.is_empty() {
            format!("{} bucket {:?} at {at}", kind.name(), self.bucket)
        } else {
            format!(
                "{} bucket {:?} at {at}, prefix {:?}",
                kind.name(),
                self.bucket,
                self.prefix
            )
        }
    }
}

/// An access key: read from the configuration, a `*_file` key or the environment.
/// Its `Debug` never shows the secret.
#[derive(Clone, Default)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN` when the key came from the environment with one.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Registry {
    /// The key and the place a storage problem is reported with.
    pub fn location(&self) -> (&'static str, String) {
        match &self.object {
            Some(o) => ("registry.bucket", o.describe(self.storage)),
            None => ("registry.root", self.root.display().to_string()),
        }
    }
}

/// One configuration problem, displayed as `file: key: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// Dotted key (`server.listen`), or empty when the problem is the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Defaults that DESIGN.md fixes.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5443";
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(900);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// nginx's `keepalive_timeout` default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Per client address. Docker opens up to 5 connections for a push and 3 for a pull
/// over HTTP/1.1 (one over HTTP/2), so 256 leaves room for dozens of daemons behind
/// one NAT or CI egress address, while one address can hold no more than 2.5% of the
/// default `max_connections`: exhausting the server takes 40 addresses, not one.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// nginx's `large_client_header_buffers 4 8k`: a request head of up to 32 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 32 << 10;
/// The bounds `server.max_header_size` must stay within: below 1 KiB an ordinary
/// request with credentials no longer fits; above 256 KiB hyper's own HTTP/1 read
/// buffer (about 400 KiB) would be the limit instead of this key.
pub const MAX_HEADER_SIZE_RANGE: (usize, usize) = (1 << 10, 256 << 10);
/// The HTTP/2 streams one connection may have open at once: the value Portcullis
/// always used before the key existed (hyper's own default is 200).
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 250;
/// distribution's `maxManifestBodySize` (registry/handlers/manifests.go).
pub const DEFAULT_MAX_MANIFEST_SIZE: usize = 4 << 20;
/// Manifests are held whole in memory, twice over (bytes and parsed form), inside the
/// process's manifest budget (`registry::MANIFEST_BUDGET`, 32 MiB): a larger limit
/// would let one PUT take the whole budget.
pub const MAX_MANIFEST_SIZE_LIMIT: usize = 16 << 20;
pub const DEFAULT_REALM: &str = "Registry Realm";

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_path_buf(),
                key: String::new(),
                message: format!("cannot read: {}", crate::files::io_error_words(&e)),
            }])
        })?;
        Config::parse(path, &text)
    }

    /// Validate configuration text; `path` names it in messages and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Problems> {
        let parsed: file::File = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => return Err(Problems(vec![validate::toml_problem(path, text, &e)])),
        };
        let mut v = validate::Validator {
            file: path.to_path_buf(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            problems: Vec::new(),
        };
        let config = v.config(parsed);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems(v.problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = ["127.0.0.1:5443", "[::1]:5443"]
read_timeout = "900s"

[tls]
certificate = "certs/server.crt"
key = "certs/server.key"
generate_if_missing = true
hosts = ["localhost", "127.0.0.1"]

[auth]
htpasswd = "auth/htpasswd"
realm = "Registry Realm"

[clients]
reject_old_docker = true

[upstream]
balance = "round_robin"
[[upstream.server]]
url = "http://127.0.0.1:5000"
weight = 2
[[upstream.server]]
url = "http://127.0.0.1:5001"
down = true
"#;

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(Path::new("/etc/p/proxy.toml"), text) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn design_example_parses() {
        let c = Config::parse(Path::new("/etc/p/proxy.toml"), GOOD).unwrap();
        assert_eq!(c.server.listen.len(), 2);
        assert_eq!(c.server.read_timeout, Duration::from_secs(900));
        assert_eq!(c.tls.certificate, Path::new("/etc/p/certs/server.crt"));
        assert_eq!(c.auth.htpasswd, Path::new("/etc/p/auth/htpasswd"));
        let Backend::Upstream(u) = c.backend else {
            panic!("upstream expected")
        };
        assert_eq!(u.servers[0].weight, 2);
        assert!(u.servers[1].down);
        assert_eq!(u.servers[0].max_fails, 1);
        assert_eq!(u.servers[0].fail_timeout, Duration::from_secs(10));
    }

    #[test]
    fn unknown_key_names_file_table_key_and_line() {
        let text = GOOD.replace("read_timeout = \"900s\"", "read_timout = \"900s\"");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "/etc/p/proxy.toml: server.read_timout: line 4: unknown field `read_timout`"
            ),
            "{}",
            p[0]
        );
        assert!(!p[0].contains('\n'));
    }

    #[test]
    fn bad_values_are_all_reported() {
        let text = GOOD
            .replace("\"900s\"", "\"900\"")
            .replace("\"127.0.0.1:5443\",", "\"localhost\",")
            .replace("weight = 2", "weight = 0")
            .replace("round_robin", "random");
        let p = problems(&text);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p
            .iter()
            .any(|l| l.contains("server.read_timeout: \"900\" has no unit")));
        assert!(p
            .iter()
            .any(|l| l.contains("server.listen: \"localhost\" is not an address:port")));
        assert!(p
            .iter()
            .any(|l| l.contains("upstream.server[0].weight: must be at least 1")));
        assert!(p
            .iter()
            .any(|l| l.contains("upstream.balance: \"random\" is not one of")));
    }

    #[test]
    fn wrong_type_is_one_line() {
        let text = GOOD.replace("weight = 2", "weight = \"two\"");
        let p = problems(&text);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("upstream.server.weight") && p[0].contains("line 23"),
            "{}",
            p[0]
        );
        assert!(!p[0].contains('\n'));
    }

    #[test]
    fn backup_with_ip_hash_is_refused() {
        let text = GOOD
            .replace("round_robin", "ip_hash")
            .replace("down = true", "backup = true");
        let p = problems(&text);
        assert!(
            p.iter().any(|l| l
                .contains("upstream.server[1].backup: cannot be used with balance = \"ip_hash\"")),
            "{p:?}"
        );
    }

    #[test]
    fn exactly_one_backend() {
        let both = format!("{GOOD}\n[registry]\nroot = \"data\"\n");
        assert!(problems(&both)
            .iter()
            .any(|l| l.contains("both [upstream] and [registry]")));
        let none = GOOD.split("[upstream]").next().unwrap();
        assert!(problems(none).iter().any(|l| l.contains("no backend")));
    }

    fn registry_problems(keys: &str) -> Vec<String> {
        problems(&(GOOD.split("[upstream]").next().unwrap().to_string() + "[registry]\n" + keys))
    }

    #[test]
    fn an_object_store_needs_its_bucket_and_credentials() {
        let p = registry_problems("storage = \"oss\"\naccess_key_id = \"AKID\"\n");
        for want in [
            "registry.bucket: required with storage = \"oss\"",
            "registry.endpoint: required with storage = \"oss\"",
            "registry.secret_access_key: missing",
        ] {
            assert!(p.iter().any(|l| l.contains(want)), "{want}: {p:?}");
        }
        assert!(p.iter().all(|l| !l.contains("AKID")), "{p:?}");
        let p = registry_problems(
            "storage = \"s3\"\nbucket = \"Reg_istry\"\nendpoint = \"s3.local\"\naccess_key_id = \"a\"\naccess_key_id_file = \"/x\"\nsecret_access_key = \"TOPSECRET\"\nredirect_endpoint = \"https://cdn.example\"\n",
        );
        for want in [
            "registry.bucket: \"Reg_istry\" is not a bucket name",
            "registry.endpoint: \"s3.local\" is not a URL",
            "registry.access_key_id: set both access_key_id and access_key_id_file",
            "registry.redirect_endpoint: set without redirect = true",
        ] {
            assert!(p.iter().any(|l| l.contains(want)), "{want}: {p:?}");
        }
        assert!(p.iter().all(|l| !l.contains("TOPSECRET")), "{p:?}");
        let p = registry_problems("bucket = \"b\"\nstorage = \"gcs\"\n");
        assert!(
            p.iter()
                .any(|l| l.contains("registry.storage: \"gcs\" is not one of fs, s3, oss")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("registry.bucket: only for storage")),
            "{p:?}"
        );
    }

    #[test]
    fn a_complete_object_store_configuration_loads_without_showing_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s3.key"), "TOPSECRET\n").unwrap();
        let text = GOOD.split("[upstream]").next().unwrap().to_string()
            + "[registry]\nstorage = \"s3\"\nbucket = \"registry\"\nendpoint = \"http://127.0.0.1:9000\"\nroot = \"/prod/\"\naccess_key_id = \"AKID\"\nsecret_access_key_file = \"s3.key\"\nredirect = true\n";
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let Backend::Registry(r) = &c.backend else {
            panic!()
        };
        let o = r.object.as_ref().unwrap();
        assert_eq!(o.credentials.secret_access_key, "TOPSECRET");
        assert_eq!(
            (o.prefix.as_str(), o.region.as_str(), o.path_style),
            ("prod", "us-east-1", true)
        );
        let shown = format!("{c:?} {}", o.describe(r.storage));
        assert!(
            !shown.contains("TOPSECRET") && !shown.contains("AKID"),
            "{shown}"
        );
    }

    #[test]
    fn the_login_throttle_is_on_by_default_and_can_be_switched_off() {
        let c = Config::parse(Path::new("/etc/p/proxy.toml"), GOOD).unwrap();
        assert_eq!(c.auth.throttle, Some(DEFAULT_THROTTLE));
        let with = |keys: &str| {
            GOOD.replace(
                "[clients]",
                &format!("[auth.throttle]\n{keys}\n\n[clients]"),
            )
        };
        let c = Config::parse(
            Path::new("/etc/p/proxy.toml"),
            &with("burst = 3\nrefill = \"1m\""),
        )
        .unwrap();
        assert_eq!(
            c.auth.throttle,
            Some(Throttle {
                burst: 3,
                refill: Duration::from_secs(60)
            })
        );
        let c = Config::parse(Path::new("/etc/p/proxy.toml"), &with("enabled = false")).unwrap();
        assert_eq!(c.auth.throttle, None);
        for (keys, want) in [
            (
                "refill = \"6\"",
                "/etc/p/proxy.toml: auth.throttle.refill: \"6\" has no unit",
            ),
            (
                "refill = \"0s\"",
                "/etc/p/proxy.toml: auth.throttle.refill: must be longer than zero",
            ),
            (
                "burst = 0",
                "/etc/p/proxy.toml: auth.throttle.burst: 0 is out of range",
            ),
            (
                "burts = 10",
                "/etc/p/proxy.toml: auth.throttle.burts: line ",
            ),
        ] {
            let p = problems(&with(keys));
            assert_eq!(p.len(), 1, "{keys}: {p:?}");
            assert!(p[0].starts_with(want), "{keys}: {}", p[0]);
            assert!(!p[0].contains('\n'));
        }
    }

    #[test]
    fn limits_default_and_take_bytes_or_units() {
        let c = Config::parse(Path::new("/etc/p/proxy.toml"), GOOD).unwrap();
        let s = &c.server;
        assert_eq!(
            (
                s.max_header_size,
                s.max_connections_per_address,
                s.http2_max_streams
            ),
            (32 << 10, 256, 250)
        );
        let text = GOOD.replace(
            "read_timeout = \"900s\"",
            "read_timeout = \"900s\"\nmax_header_size = \"16KiB\"\nmax_connections_per_address = 8\nhttp2_max_streams = 100",
        );
        let s = Config::parse(Path::new("/etc/p/proxy.toml"), &text)
            .unwrap()
            .server;
        assert_eq!(
            (
                s.max_header_size,
                s.max_connections_per_address,
                s.http2_max_streams
            ),
            (16 << 10, 8, 100)
        );
        let r = |keys: &str| {
            let text = GOOD.split("[upstream]").next().unwrap().to_string() + "[registry]\n" + keys;
            match Config::parse(Path::new("/etc/p/proxy.toml"), &text)
                .unwrap()
                .backend
            {
                Backend::Registry(r) => r.max_manifest_size,
                Backend::Upstream(_) => unreachable!(),
            }
        };
        assert_eq!(r(""), 4 << 20);
        assert_eq!(r("max_manifest_size = 1048576\n"), 1 << 20);
        assert_eq!(r("max_manifest_size = \"8 MiB\"\n"), 8 << 20);
    }

    #[test]
    fn a_malformed_limit_is_one_line_naming_its_key() {
        for (key, value, says) in [
            (
                "max_header_size",
                "\"12 parsecs\"",
                "unknown unit \"parsecs\"",
            ),
            (
                "max_header_size",
                "0",
                "out of range: give 1 KiB to 256 KiB",
            ),
            ("max_header_size", "-1", "-1 is negative"),
            ("max_header_size", "\"1MiB\"", "out of range"),
            ("max_header_size", "\"KiB\"", "is not a size"),
            ("max_header_size", "1.5", "a size: bytes such as 32768"),
            ("max_connections_per_address", "0", "must be at least 1"),
            ("max_connections_per_address", "-3", "must be at least 1"),
            ("http2_max_streams", "0", "must be at least 1"),
            ("http2_max_streams", "5000000000", "too large"),
        ] {
            let text = GOOD.replace(
                "read_timeout = \"900s\"",
                &format!("read_timeout = \"900s\"\n{key} = {value}"),
            );
            let p = problems(&text);
            assert_eq!(p.len(), 1, "{key} = {value}: {p:?}");
            assert!(
                p[0].starts_with(&format!("/etc/p/proxy.toml: server.{key}: "))
                    && p[0].contains(says),
                "{key} = {value}: {}",
                p[0]
            );
            assert!(!p[0].contains('\n'));
        }
        for (value, says) in [
            ("0", "out of range: give 1 byte to 16 MiB"),
            ("\"32MiB\"", "out of range"),
            ("\"4 megs\"", "unknown unit"),
        ] {
            let p = registry_problems(&format!("max_manifest_size = {value}\n"));
            assert_eq!(p.len(), 1, "{value}: {p:?}");
            assert!(
                p[0].starts_with("/etc/p/proxy.toml: registry.max_manifest_size: ")
                    && p[0].contains(says),
                "{value}: {}",
                p[0]
            );
        }
    }

    #[test]
    fn sizes() {
        let t = |s: &str| parse_size(&SizeValue::Text(s.into()));
        assert_eq!(parse_size(&SizeValue::Bytes(32768)), Ok(32768));
        assert_eq!(t("32KiB"), Ok(32 << 10));
        assert_eq!(t(" 4 MiB "), Ok(4 << 20));
        assert_eq!(t("1GiB"), Ok(1 << 30));
        assert_eq!(t("100"), Ok(100));
        assert_eq!(t("100B"), Ok(100));
        assert!(t("32KB").unwrap_err().contains("unknown unit \"KB\""));
        assert!(t("32k").unwrap_err().contains("unknown unit"));
        assert!(t("").unwrap_err().contains("is not a size"));
        assert!(t("99999999999999999999").unwrap_err().contains("too large"));
        assert!(t("17179869184GiB").unwrap_err().contains("too large"));
        assert!(parse_size(&SizeValue::Bytes(-1))
            .unwrap_err()
            .contains("negative"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("900s"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1y").unwrap_err().contains("unknown unit"));
    }
}
