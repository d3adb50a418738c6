//! The Docker engine as the client: one `dockerd` per test binary (Debian's docker.io,
//! vfs storage, no networking, its own data root, exec root, socket and config file),
//! Debian's `docker` CLI with a private `DOCKER_CONFIG` per test, image archives made
//! on the fly for `docker load`, and a Portcullis whose CA docker trusts through
//! `/etc/docker/certs.d/<host:port>/ca.crt`.
//!
//! Why the host docker sees is `0.0.0.0:<port>`: dockerd always counts 127.0.0.0/8
//! (and so `localhost`) as an insecure registry, and for an insecure registry it skips
//! certificate verification and never reads `certs.d`. A test on 127.0.0.1 would pass
//! with any certificate. Linux routes a connection to 0.0.0.0 to the loopback
//! interface, so docker reaches the Portcullis listening on 127.0.0.1 while treating
//! the registry as secure: it verifies the certificate against `certs.d` (the test
//! certificate names 0.0.0.0 as well).

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Debian's docker CLI. `/usr/local/bin/docker` (a newer, unrelated client) may come
/// first on PATH; the Debian one is the client that ships with the daemon we start
/// (same version, same API), and it is what `scripts/test.sh` installs.
pub const DOCKER_CLI: &str = "/usr/bin/docker";

/// The address docker is given for a Portcullis on 127.0.0.1:<port> (see the module
/// header for why it is not 127.0.0.1).
pub const DOCKER_HOST_IP: &str = "0.0.0.0";

/// Longest any one docker command may take on a loaded two-core machine.
const COMMAND_LIMIT: Duration = Duration::from_secs(600);

fn require_docker_cli() -> PathBuf {
    let cli = PathBuf::from(DOCKER_CLI);
    assert!(
        cli.is_file(),
        "{DOCKER_CLI} is not installed; the tests need Debian's docker client. Run scripts/test.sh, which installs it (apt-get install docker.io)"
    );
    cli
}

/// A running dockerd. Shared by the tests of one binary (it takes seconds to start)
/// and stopped when the last test lets go of it.
pub struct Dockerd {
    /// `sh` watching our stdin: when this process ends, even by SIGKILL, the pipe
    /// closes and the shell stops dockerd and removes its folder (images live there),
    /// so no daemon and no data root outlive the test binary.
    guard: Child,
    guard_stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

static SHARED: Mutex<Weak<Dockerd>> = Mutex::new(Weak::new());

/// The test binary's dockerd, started on first use.
pub fn dockerd() -> Arc<Dockerd> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = shared.upgrade() {
        return d;
    }
    let d = Arc::new(Dockerd::start());
    *shared = Arc::downgrade(&d);
    d
}

impl Dockerd {
    fn start() -> Dockerd {
        let bin = super::require("dockerd");
        require_docker_cli();
        // Short paths: containerd puts unix sockets under the exec root (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("dk")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let p = |name: &str| dir.path().join(name);
        // An empty config file of our own, so a /etc/docker/daemon.json on the machine
        // (mirrors, insecure registries, proxies) cannot change what the tests see.
        std::fs::write(p("daemon.json"), "{}").expect("write daemon.json");
        let socket = p("docker.sock");
        let log = std::fs::File::create(p("dockerd.log")).expect("dockerd log");
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(r#""$@" & d=$!; read _; kill -TERM $d; wait $d; rm -rf "$PORTCULLIS_DOCKERD_DIR""#)
            .arg("sh")
            .arg(bin)
            .arg("--config-file")
            .arg(p("daemon.json"))
            .args(["--storage-driver", "vfs"])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("exec"))
            .arg("--pidfile")
            .arg(p("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .env("PORTCULLIS_DOCKERD_DIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let guard_stdin = guard.stdin.take();
        let mut d = Dockerd {
            guard,
            guard_stdin,
            dir,
            socket,
        };
        d.wait_ready();
        d
    }

    /// The API socket exists once dockerd has finished initialising ("API listen on").
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.guard.try_wait() {
                panic!(
                    "dockerd exited ({status}) before listening:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "dockerd did not listen on {} within 120 s:\n{}",
            self.socket.display(),
            self.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Closing the pipe makes the guard shell send SIGTERM and wait: dockerd stops
        // the containerd it started and removes its socket and pidfile.
        drop(self.guard_stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.guard.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Still running after a minute: kill this dockerd (by its own pid) and the shell.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("dockerd.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = self.guard.kill();
        let _ = self.guard.wait();
    }
}

/// What a docker command did.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Debian's docker CLI talking to the shared dockerd, with a config folder (logins)
/// of its own, so tests running side by side do not share or race on credentials.
pub struct Docker {
    daemon: Arc<Dockerd>,
    config: tempfile::TempDir,
}

impl Docker {
    pub fn new() -> Docker {
        Docker {
            daemon: dockerd(),
            config: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Run `docker args...` (with `stdin` fed to it), bounded by `COMMAND_LIMIT`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Outcome {
        let out = tempfile::tempdir().expect("tempdir");
        let (so, se) = (out.path().join("stdout"), out.path().join("stderr"));
        let mut child = Command::new(require_docker_cli())
            .args(args)
            .env("DOCKER_HOST", self.daemon.host())
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(std::fs::File::create(&so).expect("stdout file"))
            .stderr(std::fs::File::create(&se).expect("stderr file"))
            .spawn()
            .expect("run docker");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes())
                .expect("write docker stdin");
        }
        let deadline = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for docker") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "docker {args:?} still running after {COMMAND_LIMIT:?}; dockerd log:\n{}",
                    self.daemon.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Outcome {
            status,
            stdout: std::fs::read_to_string(&so).unwrap_or_default(),
            stderr: std::fs::read_to_string(&se).unwrap_or_default(),
        }
    }

    /// Run and require success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None);
        assert!(
            o.success(),
            "docker {args:?} failed ({}):\n{}\n{}\ndockerd log:\n{}",
            o.status,
            o.stdout,
            o.stderr,
            self.daemon.log_tail()
        );
        o.stdout
    }

    /// `docker login HOST -u USER --password-stdin` (the password never on a command line).
    pub fn login(&self, host: &str, user: &str, password: &str) -> Outcome {
        self.run(
            &["login", host, "-u", user, "--password-stdin"],
            Some(password),
        )
    }

    /// `docker image inspect` of one image, or None when docker has no such image.
    pub fn inspect(&self, image: &str) -> Option<serde_json::Value> {
        let o = self.run(&["image", "inspect", image], None);
        if !o.success() {
            assert!(
                o.stderr.contains("No such image"),
                "docker image inspect {image} failed for another reason: {}",
                o.stderr
            );
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("docker image inspect output is not JSON ({e})"));
        Some(v[0].clone())
    }
}

impl Default for Docker {
    fn default() -> Docker {
        Docker::new()
    }
}

/// The CA trusted by dockerd for one `host:port`, as users do it: `ca.crt` in
/// `/etc/docker/certs.d/<host:port>/`. The folder is removed when dropped.
pub struct TrustedCa {
    dir: PathBuf,
}

impl TrustedCa {
    pub fn install(host: &str, ca: &Path) -> TrustedCa {
        let dir = Path::new("/etc/docker/certs.d").join(host);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create {} ({e}): the docker tests run dockerd and need root",
                dir.display()
            )
        });
        std::fs::copy(ca, dir.join("ca.crt")).expect("copy ca.crt");
        TrustedCa { dir }
    }
}

impl Drop for TrustedCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Portcullis (the binary) on 127.0.0.1:<port> whose certificate also names
/// `DOCKER_HOST_IP`, so docker can verify it.
pub fn portcullis_for_docker(dir: &Path, opts: &super::Options) -> super::oci::Server {
    let port = super::free_port();
    std::fs::create_dir_all(dir).expect("server dir");
    let config = super::write_config(dir, opts, &format!("127.0.0.1:{port}"));
    // Re-issue the server certificate from the same CA with the extra address.
    portcullis::certs::generate(
        &portcullis::certs::Layout::in_dir(&dir.join("certs")),
        &[
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            DOCKER_HOST_IP.to_string(),
        ],
        true,
    )
    .expect("server certificate for docker");
    super::oci::Server::start_config(dir, &config, port)
}

/// An image as `docker save` writes it (legacy archive: manifest.json, config, one
/// uncompressed tar per layer), built from random files.
#[derive(Debug)]
pub struct ImageArchive {
    pub path: PathBuf,
    /// `sha256:<hex>` of the config: the image ID docker must report for it.
    pub config_digest: String,
    /// `sha256:<hex>` of each uncompressed layer tar (the config's `rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
}

/// Write an archive for `docker load` tagged `reference`, one layer per size (one
/// random file of that many bytes in each layer).
pub fn image_archive(dir: &Path, reference: &str, layer_sizes: &[usize]) -> ImageArchive {
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_names = Vec::new();
    for (i, &size) in layer_sizes.iter().enumerate() {
        let tar = random_layer_tar(&format!("portcullis/layer{i}.bin"), size);
        let hex = hex::encode(Sha256::digest(&tar));
        diff_ids.push(format!("sha256:{hex}"));
        layer_names.push(format!("{hex}/layer.tar"));
        members.push((format!("{hex}/layer.tar"), tar));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/portcullis/layer0.bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("config JSON");
    let config_hex = hex::encode(Sha256::digest(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [reference],
        "Layers": layer_names,
    }]))
    .expect("manifest JSON");
    members.push((format!("{config_hex}.json"), config));
    members.push(("manifest.json".to_string(), manifest));

    let mut out = Vec::new();
    for (name, data) in &members {
        append_tar_file(&mut out, name, data);
    }
    finish_tar(&mut out);
    let path = dir.join("image.tar");
    std::fs::write(&path, out).expect("write image.tar");
    ImageArchive {
        path,
        config_digest: format!("sha256:{config_hex}"),
        diff_ids,
    }
}

fn random_layer_tar(name: &str, size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    std::fs::File::open("/dev/urandom")
        .expect("open /dev/urandom")
        .take(size as u64)
        .read_to_end(&mut data)
        .expect("read /dev/urandom");
    let mut tar = Vec::with_capacity(size + 2048);
    append_tar_file(&mut tar, name, &data);
    finish_tar(&mut tar);
    tar
}

/// One regular file in POSIX ustar form (header block, data padded to 512 bytes).
fn append_tar_file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    assert!(name.len() < 100, "tar name {name} too long for ustar");
    let mut h = [0u8; 512];
    let field = |h: &mut [u8; 512], at: usize, text: &str| {
        h[at..at + text.len()].copy_from_slice(text.as_bytes());
    };
    field(&mut h, 0, name);
    field(&mut h, 100, "0000644\0");
    field(&mut h, 108, "0000000\0");
    field(&mut h, 116, "0000000\0");
    field(&mut h, 124, &format!("{:011o}\0", data.len()));
    field(&mut h, 136, &format!("{:011o}\0", 1_767_225_600u64));
    h[156] = b'0';
    field(&mut h, 257, "ustar\0");
    field(&mut h, 263, "00");
    // The checksum is computed with its own field read as eight spaces.
    field(&mut h, 148, "        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    field(&mut h, 148, &format!("{sum:06o}\0 "));
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// Two zero blocks end a tar archive.
fn finish_tar(out: &mut Vec<u8>) {
    out.resize(out.len() + 1024, 0);
}
