//! Test builders: a real Debian docker-registry on a free port, a Portcullis in front
//! of it with per-run certificates and users, and a TLS client that trusts the run's CA.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::BodyExt;
use portcullis::body::{self, Body};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The real tools the suite drives. Missing one is a failure, never a skip: the test
/// script (`scripts/test.sh`) installs them.
pub fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!(
            "`{tool}` is not installed; the tests need the real thing. Run scripts/test.sh, which installs it (apt-get install {})",
            match tool {
                "docker-registry" => "docker-registry",
                "skopeo" => "skopeo",
                "htpasswd" => "apache2-utils",
                "dockerd" => "docker.io",
                other => other,
            }
        ),
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 20 s");
}

/// Debian's `docker-registry` (distribution 2.8), plain HTTP on 127.0.0.1, its own
/// storage folder. Killed when dropped.
pub struct DockerRegistry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl DockerRegistry {
    pub fn start() -> DockerRegistry {
        DockerRegistry::start_on(free_port())
    }

    pub fn start_on(port: u16) -> DockerRegistry {
        DockerRegistry::launch(port, None)
    }

    /// A registry whose storage is `root` (distribution's `rootdirectory`).
    pub fn start_with_root(root: &Path) -> DockerRegistry {
        DockerRegistry::launch(free_port(), Some(root))
    }

    /// A registry that still accepts Docker schema 1 manifests (`compatibility.schema1`):
    /// the data of registries that predate schema 2.
    pub fn start_schema1() -> DockerRegistry {
        // A top-level key: `http_extra` ends the file.
        DockerRegistry::launch_with(
            free_port(),
            None,
            "compatibility:\n  schema1:\n    enabled: true\n",
        )
    }

    /// Native TLS (`http.tls`) with the given PEM certificate chain and key.
    pub fn start_tls(cert: &Path, key: &Path) -> DockerRegistry {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        DockerRegistry::launch_with(free_port(), None, &tls)
    }

    fn launch(port: u16, root: Option<&Path>) -> DockerRegistry {
        DockerRegistry::launch_with(port, root, "")
    }

    /// A registry on a bucket of the local S3 server, below `prefix`: distribution's
    /// own S3 driver (aws-sdk-go), path-style because an endpoint is given.
    pub fn start_s3(s3: &s3::S3Server, prefix: &str) -> DockerRegistry {
        let storage = format!(
            "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: us-east-1\n    regionendpoint: {}\n    bucket: {}\n    rootdirectory: /{prefix}\n    secure: false\n    v4auth: true\n",
            s3.access_key, s3.secret_key, s3.endpoint, s3.bucket
        );
        DockerRegistry::launch_storage(free_port(), &storage, "")
    }

    fn launch_with(port: u16, root: Option<&Path>, http_extra: &str) -> DockerRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = root.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", root.display());
        DockerRegistry::launch_in(dir, port, &storage, http_extra)
    }

    fn launch_storage(port: u16, storage: &str, http_extra: &str) -> DockerRegistry {
        DockerRegistry::launch_in(
            tempfile::tempdir().expect("tempdir"),
            port,
            storage,
            http_extra,
        )
    }

    fn launch_in(
        dir: tempfile::TempDir,
        port: u16,
        storage: &str,
        http_extra: &str,
    ) -> DockerRegistry {
        let bin = require("docker-registry");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n{storage}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: portcullis-test-secret\n{http_extra}"
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg)
            // aws-sdk-go refuses to start when it cannot apply a custom CA bundle to
            // its transport; the tests' S3 is plain HTTP on 127.0.0.1.
            .env_remove("AWS_CA_BUNDLE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, "docker-registry");
        DockerRegistry { child, port, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Users every test Portcullis knows: one per hash scheme. The apr1 and {SHA} hashes
/// come from Debian's real `htpasswd`.
pub const BCRYPT_USER: (&str, &str) = ("alice", "alice-secret");
pub const APR1_USER: (&str, &str) = ("april", "april: pass word");
pub const SHA_USER: (&str, &str) = ("shah", "sha-secret");

pub fn htpasswd_line(flag: &str, user: &str, password: &str) -> String {
    let out = Command::new(require("htpasswd"))
        .args(["-n", "-b", flag, user, password])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

pub fn default_htpasswd() -> String {
    let bcrypt = portcullis::auth::htpasswd::hash_bcrypt(BCRYPT_USER.1, 5).expect("bcrypt");
    format!(
        "{}:{bcrypt}\n{}\n{}\n",
        BCRYPT_USER.0,
        htpasswd_line("-m", APR1_USER.0, APR1_USER.1),
        htpasswd_line("-s", SHA_USER.0, SHA_USER.1)
    )
}

pub use config::Options;

/// Write certificates, htpasswd and proxy.toml for a Portcullis into `dir`; return the
/// config path. `listen` is the address written into the file.
pub fn write_config(dir: &Path, opts: &Options, listen: &str) -> PathBuf {
    opts.write(dir, listen)
}

/// An in-process Portcullis on 127.0.0.1:<ephemeral>, stopped when dropped.
pub struct Portcullis {
    pub addr: SocketAddr,
    pub state: portcullis::state::Shared,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Portcullis {
    pub async fn start(opts: Options) -> Portcullis {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path(), &opts, "127.0.0.1:0");
        let config = portcullis::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let state = portcullis::state::State::build(config).unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = portcullis::app::shared(state);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(portcullis::app::run(
            shared.clone(),
            vec![listener],
            async move {
                let _ = rx.await;
            },
        ));
        Portcullis {
            addr,
            state: shared,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }

    pub fn htpasswd(&self) -> PathBuf {
        self.dir.path().join("auth/htpasswd")
    }

    /// `https://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// `https://localhost:<port><path>` (to see Host reflected in Location).
    pub fn localhost_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A client that trusts one CA, speaking HTTP/1.1 or HTTP/2 (by ALPN).
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Body,
    >,
}

/// A whole response (test bodies are small, or counted by the caller).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    pub fn count(&self, name: &str) -> usize {
        self.headers.get_all(name).iter().count()
    }

    /// The OCI error code of the first error in the body.
    pub fn oci_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()));
        v["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code in {v}"))
            .to_string()
    }
}

impl Client {
    pub fn new(ca: &Path, http2: bool) -> Client {
        Client::build(ca, http2, None, None)
    }

    /// An HTTP/2 client with these flow-control windows (stream, connection) instead of
    /// hyper's (2 MiB, 5 MiB): with a large connection window many streams can be held
    /// unread at once without starving the others, as with Go's clients (1 GiB).
    pub fn h2_windows(ca: &Path, stream: u32, connection: u32) -> Client {
        Client::build(ca, true, None, Some((stream, connection)))
    }

    /// A client whose connections come from `local` (another loopback address such
    /// as 127.0.0.2, to be a different client address to the server).
    pub fn from_address(ca: &Path, http2: bool, local: std::net::IpAddr) -> Client {
        Client::build(ca, http2, Some(local), None)
    }

    fn build(
        ca: &Path,
        http2: bool,
        local: Option<std::net::IpAddr>,
        windows: Option<(u32, u32)>,
    ) -> Client {
        use rustls::pki_types::pem::PemObject;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read CA") {
            roots.add(c.expect("CA PEM")).expect("add CA");
        }
        let tls = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(local);
        let connector = if http2 {
            b.enable_http2().wrap_connector(http)
        } else {
            b.enable_http1().wrap_connector(http)
        };
        let mut cb =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
        cb.http2_only(http2);
        if let Some((stream, connection)) = windows {
            cb.http2_initial_stream_window_size(stream)
                .http2_initial_connection_window_size(connection);
        }
        Client {
            inner: cb.build(connector),
        }
    }

    pub fn h1(ca: &Path) -> Client {
        Client::new(ca, false)
    }

    pub fn h2(ca: &Path) -> Client {
        Client::new(ca, true)
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.inner.request(req).await.expect("request failed");
        let (parts, b) = resp.into_parts();
        let body = b.collect().await.expect("read body").to_bytes();
        Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    /// Send and return the response with its body still streaming.
    pub async fn send_streaming(
        &self,
        req: Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.inner.request(req).await
    }

    pub async fn get(&self, url: &str, user: Option<(&str, &str)>) -> Answer {
        self.send(request("GET", url, user).body(body::empty()).unwrap())
            .await
    }
}

/// A request builder with Basic credentials.
pub fn request(method: &str, url: &str, user: Option<(&str, &str)>) -> http::request::Builder {
    let mut b = Request::builder().method(method).uri(url);
    if let Some((u, p)) = user {
        use base64::Engine;
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        b = b.header("authorization", format!("Basic {v}"));
    }
    b
}

pub mod config;
pub mod docker;
pub mod oci;
pub mod s3;

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A raw TLS connection to a test Portcullis that trusts its CA, offering `alpn`
/// (for byte-exact requests that an HTTP client library would not send).
pub async fn tls_connect(
    ca: &Path,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tls_connector(ca, alpn)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// A TLS connector that trusts the test CA and offers `alpn`, for tests that make
/// their own TCP connection (from a chosen source address, say).
pub fn tls_connector(ca: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
