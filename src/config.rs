//! Configuration: loads `proxy.toml`, validates it into runtime types, and words every
//! problem as one line naming the file, the key and what is wrong.
//!
//! Two layers (see CONVENTIONS.md): `config::file` is the serde mirror of the TOML;
//! this module turns it into [`Config`], which is all the rest of the crate ever sees.

mod file;

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
    pub log_format: crate::access::Format,
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
}

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
    pub root: PathBuf,
    pub delete: bool,
    pub secret: Option<String>,
    /// `[registry.gc] interval`: online collection while serving; None = off.
    pub gc_interval: Option<Duration>,
    /// `[registry.gc] grace`: never delete a blob younger than this (default 1h).
    pub gc_grace: Duration,
    /// `[registry.upload_purge]`: (age, interval) of abandoned-upload removal; None = off.
    /// On by default with distribution's values, 168h and 24h.
    pub upload_purge: Option<(Duration, Duration)>,
}

/// `registry.storage`: which storage backend holds the registry's data. Values the
/// parser knows but this version lacks (`s3`) are refused at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageKind {
    /// A folder on the local filesystem (`registry.root`).
    #[default]
    Fs,
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
pub const DEFAULT_REALM: &str = "Registry Realm";

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_path_buf(),
                key: String::new(),
                message: format!("cannot read: {}", crate::io_error_words(&e)),
            }])
        })?;
        Config::parse(path, &text)
    }

    /// Validate configuration text; `path` names it in messages and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Problems> {
        let parsed: file::File = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => return Err(Problems(vec![toml_problem(path, text, &e)])),
        };
        let mut v = Validator {
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

/// Turn a TOML error into one line: where it is and what is wrong, with the table it
/// sits in, since toml's own report is a multi-line snippet.
fn toml_problem(path: &Path, text: &str, e: &toml::de::Error) -> Problem {
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

struct Validator {
    file: PathBuf,
    base: PathBuf,
    problems: Vec<Problem>,
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

    fn config(&mut self, f: file::File) -> Config {
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
                Backend::Registry(self.registry(file::Registry {
                    storage: None,
                    root: None,
                    delete: None,
                    secret: None,
                    gc: None,
                    upload_purge: None,
                }))
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
            None | Some("text") => crate::access::Format::Text,
            Some("json") => crate::access::Format::Json,
            Some(other) => {
                self.problem("log.format", format!("{other:?} is not one of text, json"));
                crate::access::Format::Text
            }
        };
        Config {
            path: self.file.clone(),
            server,
            tls,
            auth,
            clients,
            backend,
            metrics_listen,
            log_format,
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
        Server {
            listen,
            read_timeout,
            header_timeout,
            idle_timeout,
            shutdown_grace,
            max_connections,
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
        Auth { htpasswd, realm }
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
        let storage = r.storage.unwrap_or_else(|| "fs".to_string());
        let kind = StorageKind::Fs;
        if storage == "s3" {
            // The storage trait is ready for it; the object-store backend is not built yet.
            self.problem(
                "registry.storage",
                "\"s3\" is not available in this version yet; use \"fs\"",
            );
        } else if storage != "fs" {
            self.problem(
                "registry.storage",
                format!("{storage:?} is not one of fs, s3"),
            );
        }
        let root = self.path(r.root.as_deref().unwrap_or("data"));
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
        Registry {
            storage: kind,
            root,
            delete: r.delete.unwrap_or(true),
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

/// Parse "900s", "15m", "1h", "250ms", "1h30m". A bare number is an error: units are
/// part of the contract so "30" is never misread.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("is empty; give a duration with a unit such as \"10s\" or \"15m\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{s:?} is not a duration (use e.g. \"10s\", \"15m\", \"1h\", \"500ms\")"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            "" => {
                return Err(format!(
                    "{s:?} has no unit; write e.g. \"{n}s\" (units: ms, s, m, h, d)"
                ))
            }
            u => return Err(format!("{s:?}: unknown unit {u:?} (units: ms, s, m, h, d)")),
        };
        total = total.saturating_add(d);
    }
    Ok(total)
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

    #[test]
    fn s3_storage_is_refused_until_it_exists() {
        let text =
            GOOD.split("[upstream]").next().unwrap().to_string() + "[registry]\nstorage = \"s3\"\n";
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|l| l.contains("registry.storage: \"s3\" is not available")),
            "{p:?}"
        );
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
