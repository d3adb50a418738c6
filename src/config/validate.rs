//! From the file's serde mirror to the runtime [`Config`](super::Config): every key
//! checked, defaults applied, relative paths anchored at the file's folder, and every
//! problem collected as one line (TOML syntax errors too).

mod access;
mod limits;
mod storage;

use super::{
    file, parse_duration, Auth, Backend, Balance, Clients, Config, HealthCheck, Problem, Registry,
    Server, StorageKind, Tls, Upstream, UpstreamServer, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_HTTP2_MAX_STREAMS, DEFAULT_IDLE_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_MANIFEST_SIZE,
    DEFAULT_READ_TIMEOUT, DEFAULT_REALM, DEFAULT_SHUTDOWN_GRACE, DEFAULT_THROTTLE,
    MAX_HEADER_SIZE_RANGE, MAX_MANIFEST_SIZE_LIMIT,
};
use http::Uri;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Turn a TOML error into one line: where it is and what is wrong, with the table it
/// sits in, since toml's own report is a multi-line snippet.
pub(super) fn toml_problem(path: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return Problem {
            file: path.to_path_buf(),
            key: String::new(),
            message,
        };
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    // The table the error sits in is the last `[header]` above it.
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    // The key is what stands before '=' on the error's line (the span may point at
    // the key or at the value).
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key_here = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    let key = match (table, key_here) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k,
        (None, None) => String::new(),
    };
    Problem {
        file: path.to_path_buf(),
        key,
        message: format!("line {line}: {message}"),
    }
}

/// Largest `auth.throttle.burst`: beyond this the throttle would not limit guessing.
const MAX_THROTTLE_BURST: i64 = 1_000_000;

pub(super) struct Validator {
    pub(super) file: PathBuf,
    pub(super) base: PathBuf,
    pub(super) problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(key, e);
                    default
                }
            },
        }
    }

    pub(super) fn config(&mut self, f: file::File) -> Config {
        let server = self.server(f.server);
        let tls = self.tls(f.tls);
        let auth = self.auth(f.auth);
        let clients = Clients {
            reject_old_docker: f.clients.reject_old_docker.unwrap_or(true),
        };
        let backend = match (f.upstream, f.registry) {
            (Some(u), None) => Backend::Upstream(self.upstream(u)),
            (None, Some(r)) => Backend::Registry(self.registry(r)),
            (Some(_), Some(_)) => {
                self.problem(
                    "",
                    "both [upstream] and [registry] are set; choose exactly one backend",
                );
                Backend::Registry(self.registry(file::Registry::default()))
            }
            (None, None) => {
                self.problem(
                    "",
                    "no backend: add [upstream] with [[upstream.server]] entries, or [registry]",
                );
                Backend::Upstream(Upstream {
                    balance: Balance::RoundRobin,
                    servers: Vec::new(),
                    health_check: None,
                    ca: None,
                })
            }
        };
        let metrics_listen = f.metrics.and_then(|m| {
            let a = m.listen.unwrap_or_else(|| "127.0.0.1:9090".to_string());
            match a.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(
                        "metrics.listen",
                        format!("{a:?} is not an address:port such as \"127.0.0.1:9090\""),
                    );
                    None
                }
            }
        });
        let log_format = match f.log.and_then(|l| l.format).as_deref() {
            None | Some("text") => crate::access_log::Format::Text,
            Some("json") => crate::access_log::Format::Json,
            Some(other) => {
                self.problem("log.format", format!("{other:?} is not one of text, json"));
                crate::access_log::Format::Text
            }
        };
        let access = f.access.map(|a| std::sync::Arc::new(self.access(a)));
        Config {
            path: self.file.clone(),
            server,
            tls,
            auth,
            clients,
            backend,
            metrics_listen,
            log_format,
            access,
        }
    }

    fn server(&mut self, s: file::Server) -> Server {
        let listen_strings = match s.listen {
            None => vec![DEFAULT_LISTEN.to_string()],
            Some(file::OneOrMany::One(a)) => vec![a],
            Some(file::OneOrMany::Many(v)) => v,
        };
        if listen_strings.is_empty() {
            self.problem(
                "server.listen",
                "is empty; give at least one address such as \"127.0.0.1:5443\"",
            );
        }
        let mut listen = Vec::new();
        for a in listen_strings {
            match a.parse::<SocketAddr>() {
                Ok(addr) => {
                    if listen.contains(&addr) {
                        self.problem("server.listen", format!("{a:?} is listed twice"));
                    } else {
                        listen.push(addr);
                    }
                }
                Err(_) => self.problem(
                    "server.listen",
                    format!(
                        "{a:?} is not an address:port (examples: \"0.0.0.0:443\", \"[::]:443\")"
                    ),
                ),
            }
        }
        let read_timeout = self.duration(
            "server.read_timeout",
            s.read_timeout.as_deref(),
            DEFAULT_READ_TIMEOUT,
        );
        let header_timeout = self.duration(
            "server.header_timeout",
            s.header_timeout.as_deref(),
            DEFAULT_HEADER_TIMEOUT,
        );
        let idle_timeout = self.duration(
            "server.idle_timeout",
            s.idle_timeout.as_deref(),
            DEFAULT_IDLE_TIMEOUT,
        );
        let shutdown_grace = self.duration(
            "server.shutdown_grace",
            s.shutdown_grace.as_deref(),
            DEFAULT_SHUTDOWN_GRACE,
        );
        for (key, d) in [
            ("server.read_timeout", read_timeout),
            ("server.header_timeout", header_timeout),
            ("server.idle_timeout", idle_timeout),
        ] {
            if d.is_zero() {
                self.problem(key, "must be greater than zero");
            }
        }
        let max_connections = match s.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(0) => {
                self.problem("server.max_connections", "must be at least 1");
                DEFAULT_MAX_CONNECTIONS
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let max_connections_per_address = self.count(
            "server.max_connections_per_address",
            s.max_connections_per_address,
            DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        );
        let max_header_size = self.size(
            "server.max_header_size",
            s.max_header_size.as_ref(),
            DEFAULT_MAX_HEADER_SIZE,
            MAX_HEADER_SIZE_RANGE,
        );
        let http2_max_streams = self.count(
            "server.http2_max_streams",
            s.http2_max_streams,
            DEFAULT_HTTP2_MAX_STREAMS,
        );
        Server {
            listen,
            read_timeout,
            header_timeout,
            idle_timeout,
            shutdown_grace,
            max_connections,
            max_connections_per_address,
            max_header_size,
            http2_max_streams,
        }
    }

    fn tls(&mut self, t: Option<file::Tls>) -> Tls {
        let Some(t) = t else {
            self.problem(
                "tls",
                "missing: Portcullis always terminates TLS; add [tls] with certificate and key",
            );
            return Tls {
                certificate: PathBuf::new(),
                key: PathBuf::new(),
                generate_if_missing: false,
                hosts: Vec::new(),
            };
        };
        let certificate = match t.certificate {
            Some(c) if !c.is_empty() => self.path(&c),
            _ => {
                self.problem(
                    "tls.certificate",
                    "missing: path to the PEM certificate chain",
                );
                PathBuf::new()
            }
        };
        let key = match t.key {
            Some(k) if !k.is_empty() => self.path(&k),
            _ => {
                self.problem("tls.key", "missing: path to the PEM private key");
                PathBuf::new()
            }
        };
        let generate_if_missing = t.generate_if_missing.unwrap_or(false);
        let hosts = t
            .hosts
            .unwrap_or_else(|| vec!["localhost".to_string(), "127.0.0.1".to_string()]);
        if generate_if_missing && hosts.is_empty() {
            self.problem(
                "tls.hosts",
                "is empty but generate_if_missing = true needs at least one host name or IP",
            );
        }
        for h in &hosts {
            if h.is_empty()
                || h.contains(|c: char| {
                    c.is_whitespace()
                        || c == '/'
                        || c == ':' && h.parse::<std::net::IpAddr>().is_err()
                })
            {
                self.problem(
                    "tls.hosts",
                    format!("{h:?} is not a host name or IP address"),
                );
            }
        }
        Tls {
            certificate,
            key,
            generate_if_missing,
            hosts,
        }
    }

    fn auth(&mut self, a: Option<file::Auth>) -> Auth {
        let Some(a) = a else {
            self.problem(
                "auth",
                "missing: add [auth] with htpasswd = \"auth/htpasswd\"",
            );
            return Auth {
                htpasswd: PathBuf::new(),
                realm: DEFAULT_REALM.to_string(),
                throttle: Some(DEFAULT_THROTTLE),
            };
        };
        let htpasswd = match a.htpasswd {
            Some(h) if !h.is_empty() => self.path(&h),
            _ => {
                self.problem("auth.htpasswd", "missing: path to an htpasswd file");
                PathBuf::new()
            }
        };
        let realm = a.realm.unwrap_or_else(|| DEFAULT_REALM.to_string());
        if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
            self.problem(
                "auth.realm",
                "must not contain quotes, backslashes or control characters",
            );
        }
        let throttle = self.throttle(a.throttle);
        Auth {
            htpasswd,
            realm,
            throttle,
        }
    }

    /// `[auth.throttle]`: on with [`DEFAULT_THROTTLE`] unless `enabled = false`.
    fn throttle(&mut self, t: Option<file::Throttle>) -> Option<super::Throttle> {
        let Some(t) = t else {
            return Some(DEFAULT_THROTTLE);
        };
        let burst = match t.burst {
            None => DEFAULT_THROTTLE.burst,
            Some(n) if (1..=MAX_THROTTLE_BURST).contains(&n) => n as u32,
            Some(n) => {
                self.problem(
                    "auth.throttle.burst",
                    format!(
                        "{n} is out of range: 1 to {MAX_THROTTLE_BURST} failed logins (to switch the throttle off, set enabled = false)"
                    ),
                );
                DEFAULT_THROTTLE.burst
            }
        };
        let refill = self.duration(
            "auth.throttle.refill",
            t.refill.as_deref(),
            DEFAULT_THROTTLE.refill,
        );
        if refill.is_zero() {
            self.problem(
                "auth.throttle.refill",
                "must be longer than zero (to switch the throttle off, set enabled = false)",
            );
        }
        (t.enabled != Some(false)).then_some(super::Throttle { burst, refill })
    }

    fn upstream(&mut self, u: file::Upstream) -> Upstream {
        let balance = match u.balance.as_deref() {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("ip_hash") => Balance::IpHash,
            Some("least_conn") => Balance::LeastConn,
            Some("repository_hash") => Balance::RepositoryHash,
            Some(other) => {
                self.problem(
                    "upstream.balance",
                    format!(
                        "{other:?} is not one of round_robin, ip_hash, least_conn, repository_hash"
                    ),
                );
                Balance::RoundRobin
            }
        };
        if u.server.is_empty() {
            self.problem(
                "upstream.server",
                "no servers: add at least one [[upstream.server]] with url = \"http://host:port\"",
            );
        }
        let mut servers = Vec::new();
        for (i, s) in u.server.into_iter().enumerate() {
            let key = |k: &str| format!("upstream.server[{i}].{k}");
            let url = match parse_upstream_url(&s.url, u.ca.is_some()) {
                Ok(u) => u,
                Err(e) => {
                    self.problem(&key("url"), e);
                    Uri::from_static("http://invalid")
                }
            };
            let weight = s.weight.unwrap_or(1);
            if weight == 0 {
                self.problem(&key("weight"), "must be at least 1");
            }
            let backup = s.backup.unwrap_or(false);
            if backup && balance == Balance::IpHash {
                // nginx: "balancing method does not support the backup parameter".
                self.problem(
                    &key("backup"),
                    "cannot be used with balance = \"ip_hash\" (as in nginx)",
                );
            }
            let fail_timeout = self.duration(
                &key("fail_timeout"),
                s.fail_timeout.as_deref(),
                Duration::from_secs(10),
            );
            servers.push(UpstreamServer {
                url,
                weight: weight.max(1),
                down: s.down.unwrap_or(false),
                backup,
                max_fails: s.max_fails.unwrap_or(1),
                fail_timeout,
                max_conns: s.max_conns.unwrap_or(0),
            });
        }
        if !servers.is_empty() && servers.iter().all(|s| s.backup) {
            self.problem(
                "upstream.server",
                "every server is a backup; at least one must be a primary",
            );
        }
        let health_check = u.health_check.map(|h| {
            let interval = self.duration(
                "upstream.health_check.interval",
                h.interval.as_deref(),
                Duration::from_secs(5),
            );
            if interval.is_zero() {
                self.problem(
                    "upstream.health_check.interval",
                    "must be greater than zero",
                );
            }
            let path = h.path.unwrap_or_else(|| "/v2/".to_string());
            if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
                self.problem(
                    "upstream.health_check.path",
                    format!("{path:?} is not a path such as \"/v2/\""),
                );
            }
            HealthCheck { interval, path }
        });
        let ca = u.ca.map(|c| self.path(&c));
        Upstream {
            balance,
            servers,
            health_check,
            ca,
        }
    }

    fn registry(&mut self, r: file::Registry) -> Registry {
        let storage = match r.storage.as_deref().unwrap_or("fs") {
            "fs" => StorageKind::Fs,
            "s3" => StorageKind::S3,
            "oss" => StorageKind::Oss,
            other => {
                self.problem(
                    "registry.storage",
                    format!("{other:?} is not one of fs, s3, oss"),
                );
                StorageKind::Fs
            }
        };
        let object = if storage == StorageKind::Fs {
            self.only_for_object_stores(&r);
            None
        } else {
            Some(Box::new(self.object_store(storage, &r)))
        };
        let root = match storage {
            StorageKind::Fs => self.path(r.root.as_deref().unwrap_or("data")),
            _ => PathBuf::new(),
        };
        let (gc_interval, gc_grace) = match r.gc {
            None => (None, Duration::from_secs(3600)),
            Some(g) => {
                let interval = g.interval.as_deref().map(|i| {
                    self.duration("registry.gc.interval", Some(i), Duration::from_secs(86400))
                });
                if interval.is_some_and(|i| i.is_zero()) {
                    self.problem("registry.gc.interval", "must be greater than zero");
                }
                let grace = self.duration(
                    "registry.gc.grace",
                    g.grace.as_deref(),
                    Duration::from_secs(3600),
                );
                (interval, grace)
            }
        };
        let week = Duration::from_secs(168 * 3600);
        let day = Duration::from_secs(24 * 3600);
        let upload_purge = match r.upload_purge {
            None => Some((week, day)),
            Some(p) if p.enabled == Some(false) => None,
            Some(p) => {
                let age = self.duration("registry.upload_purge.age", p.age.as_deref(), week);
                let interval =
                    self.duration("registry.upload_purge.interval", p.interval.as_deref(), day);
                if interval.is_zero() {
                    self.problem(
                        "registry.upload_purge.interval",
                        "must be greater than zero",
                    );
                }
                Some((age, interval))
            }
        };
        let max_manifest_size = self.size(
            "registry.max_manifest_size",
            r.max_manifest_size.as_ref(),
            DEFAULT_MAX_MANIFEST_SIZE,
            (1, MAX_MANIFEST_SIZE_LIMIT),
        );
        Registry {
            max_manifest_size,
            storage,
            root,
            object,
            delete: r.delete.unwrap_or(true),
            read_only: r.read_only.unwrap_or(false),
            secret: r.secret,
            gc_interval,
            gc_grace,
            upload_purge,
        }
    }
}

fn parse_upstream_url(s: &str, have_ca: bool) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|_| format!("{s:?} is not a URL such as \"http://127.0.0.1:5000\""))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if have_ca => {}
        Some("https") => {
            return Err(format!(
                "{s:?}: an https upstream needs upstream.ca, the PEM CA bundle that signed its certificate"
            ))
        }
        _ => return Err(format!("{s:?} must start with http:// or https://")),
    }
    if uri.host().is_none() {
        return Err(format!("{s:?} has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{s:?} has a path; give only scheme, host and port (requests keep their own path)"
        ));
    }
    Ok(uri)
}
