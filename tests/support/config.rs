//! A typed builder for the `proxy.toml` of a test Portcullis: one method per key the
//! tests set, rendered with the `toml` crate so paths, URLs and durations are quoted
//! the way the file format wants them, never pasted into a format string.
//!
//! ```ignore
//! Options::upstream(a).weight(3).server(b).weight(1).balance("ip_hash")
//! Options::registry().root(shared).secret("s").gc_grace(Duration::ZERO)
//! ```
//!
//! Keys that belong to one `[[upstream.server]]` (`weight`, `max_fails`, `down`, ...)
//! apply to the server added last. A method that does not fit the backend (`.delete()`
//! on an upstream configuration, `.weight()` on the bundled registry) panics: that is a
//! mistake in the test, not a configuration under test.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to start a test Portcullis: the `proxy.toml` it reads and its htpasswd file.
/// `server.listen` is chosen by whoever writes the file (see [`Options::render`]).
#[derive(Clone, Debug)]
pub struct Options {
    file: File,
    htpasswd: String,
}

// The serde mirror of the parts of `src/config/file.rs` the tests set. Kept apart from
// the crate's own structs on purpose: those only deserialize, and a test that renders
// with the code under test would not notice a renamed key.

#[derive(Clone, Debug, Serialize)]
struct File {
    server: Server,
    tls: Tls,
    auth: Auth,
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<Clients>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<Upstream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<Registry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Log>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<Access>,
}

#[derive(Clone, Debug, Default, Serialize)]
struct Access {
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    groups: std::collections::BTreeMap<String, Vec<String>>,
    rule: Vec<AccessRule>,
}

#[derive(Clone, Debug, Serialize)]
struct AccessRule {
    repositories: Vec<String>,
    who: Vec<String>,
    actions: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
struct Server {
    /// Filled in by `render`.
    listen: String,
    read_timeout: Dur,
    #[serde(skip_serializing_if = "Option::is_none")]
    header_timeout: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_address: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_header_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http2_max_streams: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
struct Tls {
    certificate: String,
    key: String,
}

#[derive(Clone, Debug, Serialize)]
struct Auth {
    htpasswd: String,
    realm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle: Option<Throttle>,
}

#[derive(Clone, Debug, Serialize)]
struct Throttle {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refill: Option<Dur>,
}

#[derive(Clone, Debug, Serialize)]
struct Clients {
    reject_old_docker: bool,
}

#[derive(Clone, Debug, Serialize)]
struct Upstream {
    balance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
    server: Vec<UpstreamServer>,
}

#[derive(Clone, Debug, Serialize)]
struct HealthCheck {
    interval: Dur,
    path: String,
}

#[derive(Clone, Debug, Serialize)]
struct UpstreamServer {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    down: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_fails: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_timeout: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_conns: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
struct Registry {
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<String>,
    root: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_access_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_only: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gc: Option<Gc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_purge: Option<UploadPurge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_manifest_size: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
struct Gc {
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace: Option<Dur>,
}

#[derive(Clone, Debug, Serialize)]
struct UploadPurge {
    age: Dur,
    interval: Dur,
}

#[derive(Clone, Debug, Serialize)]
struct Metrics {
    listen: String,
}

#[derive(Clone, Debug, Serialize)]
struct Log {
    format: String,
}

/// A duration written the way `proxy.toml` spells one: whole seconds as `"900s"`,
/// anything finer in milliseconds (`"300ms"`). The file has no sub-millisecond unit.
#[derive(Clone, Copy, Debug)]
struct Dur(Duration);

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        assert_eq!(
            d.subsec_nanos() % 1_000_000,
            0,
            "{d:?}: proxy.toml durations have millisecond resolution"
        );
        if d.subsec_millis() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }
}

fn path_string(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    p.to_str()
        .unwrap_or_else(|| panic!("{}: test paths are UTF-8", p.display()))
        .to_string()
}

impl Options {
    fn base() -> Options {
        Options {
            file: File {
                server: Server {
                    listen: String::new(),
                    read_timeout: Dur(Duration::from_secs(900)),
                    header_timeout: None,
                    idle_timeout: None,
                    shutdown_grace: None,
                    max_connections: None,
                    max_connections_per_address: None,
                    max_header_size: None,
                    http2_max_streams: None,
                },
                tls: Tls {
                    certificate: "certs/server.crt".into(),
                    key: "certs/server.key".into(),
                },
                auth: Auth {
                    htpasswd: "auth/htpasswd".into(),
                    realm: "Registry Realm".into(),
                    throttle: None,
                },
                clients: None,
                upstream: None,
                registry: None,
                metrics: None,
                log: None,
                access: None,
            },
            htpasswd: super::default_htpasswd(),
        }
    }

    /// The bundled registry (all-in-one), storage in `data` beside proxy.toml.
    pub fn registry() -> Options {
        let mut o = Options::base();
        o.file.registry = Some(Registry {
            storage: None,
            root: "data".into(),
            bucket: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            redirect: None,
            create_only: None,
            delete: None,
            secret: None,
            gc: None,
            upload_purge: None,
            max_manifest_size: None,
        });
        o
    }

    /// One `[[upstream.server]]`, round-robin; add more with [`Options::server`].
    pub fn upstream(url: impl Into<String>) -> Options {
        let mut o = Options::base();
        o.file.upstream = Some(Upstream {
            balance: "round_robin".into(),
            ca: None,
            health_check: None,
            server: Vec::new(),
        });
        o.server(url)
    }

    /// The proxy.toml text, listening on `listen`.
    pub fn render(&self, listen: &str) -> String {
        let mut file = self.file.clone();
        file.server.listen = listen.to_string();
        toml::to_string(&file).expect("render proxy.toml")
    }

    /// Write certificates, htpasswd and proxy.toml into `dir`; return the config path.
    /// `listen` is the address written into the file.
    pub fn write(&self, dir: &Path, listen: &str) -> PathBuf {
        let certs = dir.join("certs");
        portcullis::certs::generate(
            &portcullis::certs::Layout::in_dir(&certs),
            &["localhost".to_string(), "127.0.0.1".to_string()],
            false,
        )
        .expect("generate certificates");
        std::fs::create_dir_all(dir.join("auth")).expect("auth folder");
        std::fs::write(dir.join("auth/htpasswd"), &self.htpasswd).expect("write htpasswd");
        let path = dir.join("proxy.toml");
        std::fs::write(&path, self.render(listen)).expect("write proxy.toml");
        path
    }

    // [server], [tls], [auth], [clients], [metrics], [log]

    /// The htpasswd file's contents (default: one user per hash scheme).
    pub fn htpasswd(mut self, contents: impl Into<String>) -> Options {
        self.htpasswd = contents.into();
        self
    }

    pub fn read_timeout(mut self, d: Duration) -> Options {
        self.file.server.read_timeout = Dur(d);
        self
    }

    pub fn header_timeout(mut self, d: Duration) -> Options {
        self.file.server.header_timeout = Some(Dur(d));
        self
    }

    pub fn idle_timeout(mut self, d: Duration) -> Options {
        self.file.server.idle_timeout = Some(Dur(d));
        self
    }

    pub fn shutdown_grace(mut self, d: Duration) -> Options {
        self.file.server.shutdown_grace = Some(Dur(d));
        self
    }

    pub fn max_connections(mut self, n: u64) -> Options {
        self.file.server.max_connections = Some(n);
        self
    }

    pub fn max_connections_per_address(mut self, n: u64) -> Options {
        self.file.server.max_connections_per_address = Some(n);
        self
    }

    /// `server.max_header_size` in bytes (the file also takes "32KiB"; see the config
    /// tests for the string forms).
    pub fn max_header_size(mut self, bytes: u64) -> Options {
        self.file.server.max_header_size = Some(bytes);
        self
    }

    pub fn http2_max_streams(mut self, n: u32) -> Options {
        self.file.server.http2_max_streams = Some(n);
        self
    }

    /// `tls.certificate`, relative to proxy.toml or absolute.
    pub fn certificate(mut self, path: impl AsRef<Path>) -> Options {
        self.file.tls.certificate = path_string(path);
        self
    }

    /// `tls.key`, relative to proxy.toml or absolute.
    pub fn key(mut self, path: impl AsRef<Path>) -> Options {
        self.file.tls.key = path_string(path);
        self
    }

    pub fn reject_old_docker(mut self, reject: bool) -> Options {
        self.file.clients = Some(Clients {
            reject_old_docker: reject,
        });
        self
    }

    /// `[auth.throttle] burst` and `refill` (the failed-login buckets).
    pub fn throttle(mut self, burst: u32, refill: Duration) -> Options {
        self.file.auth.throttle = Some(Throttle {
            enabled: None,
            burst: Some(burst),
            refill: Some(Dur(refill)),
        });
        self
    }

    /// `[auth.throttle] enabled = false`.
    pub fn no_throttle(mut self) -> Options {
        self.file.auth.throttle = Some(Throttle {
            enabled: Some(false),
            burst: None,
            refill: None,
        });
        self
    }

    /// `[metrics] listen`.
    pub fn metrics(mut self, listen: impl Into<String>) -> Options {
        self.file.metrics = Some(Metrics {
            listen: listen.into(),
        });
        self
    }

    /// `[log] format` (`"text"` or `"json"`, or a bad one on purpose).
    pub fn log_format(mut self, format: impl Into<String>) -> Options {
        self.file.log = Some(Log {
            format: format.into(),
        });
        self
    }

    // [access]

    /// `[access] default`: what an authenticated user no rule names may do.
    pub fn access_default(mut self, rights: &str) -> Options {
        self.file.access.get_or_insert_with(Access::default).default = Some(rights.into());
        self
    }

    /// One `[access.groups]` entry.
    pub fn access_group(mut self, name: &str, members: &[&str]) -> Options {
        let a = self.file.access.get_or_insert_with(Access::default);
        a.groups
            .insert(name.into(), members.iter().map(|m| m.to_string()).collect());
        self
    }

    /// One more `[[access.rule]]` (first match wins, so order matters).
    pub fn access_rule(mut self, repositories: &[&str], who: &[&str], actions: &[&str]) -> Options {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        self.file
            .access
            .get_or_insert_with(Access::default)
            .rule
            .push(AccessRule {
                repositories: v(repositories),
                who: v(who),
                actions: v(actions),
            });
        self
    }

    // [upstream]

    fn upstream_section(&mut self) -> &mut Upstream {
        self.file
            .upstream
            .as_mut()
            .expect("an [upstream] key on a configuration built with Options::registry()")
    }

    fn last_server(&mut self) -> &mut UpstreamServer {
        self.upstream_section()
            .server
            .last_mut()
            .expect("Options::upstream adds the first server")
    }

    /// One more `[[upstream.server]]`; the per-server methods below apply to it.
    pub fn server(mut self, url: impl Into<String>) -> Options {
        self.upstream_section().server.push(UpstreamServer {
            url: url.into(),
            weight: None,
            down: None,
            backup: None,
            max_fails: None,
            fail_timeout: None,
            max_conns: None,
        });
        self
    }

    /// `upstream.balance`, as the file spells it (`"ip_hash"`, ...).
    pub fn balance(mut self, balance: impl Into<String>) -> Options {
        self.upstream_section().balance = balance.into();
        self
    }

    /// `upstream.ca`: the PEM bundle trusted for https:// upstreams.
    pub fn upstream_ca(mut self, path: impl AsRef<Path>) -> Options {
        self.upstream_section().ca = Some(path_string(path));
        self
    }

    pub fn health_check(mut self, interval: Duration, path: impl Into<String>) -> Options {
        self.upstream_section().health_check = Some(HealthCheck {
            interval: Dur(interval),
            path: path.into(),
        });
        self
    }

    pub fn weight(mut self, w: u32) -> Options {
        self.last_server().weight = Some(w);
        self
    }

    pub fn max_fails(mut self, n: u32) -> Options {
        self.last_server().max_fails = Some(n);
        self
    }

    pub fn fail_timeout(mut self, d: Duration) -> Options {
        self.last_server().fail_timeout = Some(Dur(d));
        self
    }

    pub fn max_conns(mut self, n: u32) -> Options {
        self.last_server().max_conns = Some(n);
        self
    }

    pub fn down(mut self) -> Options {
        self.last_server().down = Some(true);
        self
    }

    pub fn backup(mut self) -> Options {
        self.last_server().backup = Some(true);
        self
    }

    // [registry]

    fn registry_section(&mut self) -> &mut Registry {
        self.file
            .registry
            .as_mut()
            .expect("a [registry] key on a configuration built with Options::upstream()")
    }

    /// `storage = "s3"` on a bucket of a local S3 server, below `prefix` (`root`).
    pub fn s3(mut self, s3: &super::s3::S3Server, prefix: &str) -> Options {
        let r = self.registry_section();
        r.storage = Some("s3".into());
        r.root = prefix.into();
        r.bucket = Some(s3.bucket.clone());
        r.endpoint = Some(s3.endpoint.clone());
        r.access_key_id = Some(s3.access_key.clone());
        r.secret_access_key = Some(s3.secret_key.clone());
        self
    }

    /// `registry.redirect`: blob GETs answer 307 to a presigned URL.
    pub fn redirect(mut self, on: bool) -> Options {
        self.registry_section().redirect = Some(on);
        self
    }

    /// `registry.create_only`: how the object store makes a write create-only.
    pub fn create_only(mut self, how: &str) -> Options {
        self.registry_section().create_only = Some(how.into());
        self
    }

    /// `registry.root`: the storage folder, relative to proxy.toml or absolute.
    pub fn root(mut self, path: impl AsRef<Path>) -> Options {
        self.registry_section().root = path_string(path);
        self
    }

    /// `registry.max_manifest_size` in bytes.
    pub fn max_manifest_size(mut self, bytes: u64) -> Options {
        self.registry_section().max_manifest_size = Some(bytes);
        self
    }

    pub fn delete(mut self, enabled: bool) -> Options {
        self.registry_section().delete = Some(enabled);
        self
    }

    /// `registry.secret`: instances on one storage share it to finish each other's uploads.
    pub fn secret(mut self, secret: impl Into<String>) -> Options {
        self.registry_section().secret = Some(secret.into());
        self
    }

    pub fn gc_interval(mut self, d: Duration) -> Options {
        self.registry_section()
            .gc
            .get_or_insert_with(Gc::default)
            .interval = Some(Dur(d));
        self
    }

    pub fn gc_grace(mut self, d: Duration) -> Options {
        self.registry_section()
            .gc
            .get_or_insert_with(Gc::default)
            .grace = Some(Dur(d));
        self
    }

    /// `[registry.upload_purge]`: uploads idle longer than `age`, looked for every `interval`.
    pub fn upload_purge(mut self, age: Duration, interval: Duration) -> Options {
        self.registry_section().upload_purge = Some(UploadPurge {
            age: Dur(age),
            interval: Dur(interval),
        });
        self
    }
}
