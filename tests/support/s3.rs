//! Real S3-compatible servers for the object-store tests, on a free port of 127.0.0.1,
//! killed on drop: `s3s-fs` (installed by scripts/test.sh with `cargo install
//! s3s-fs@0.14.1 --features binary`), serving a fresh folder in which the bucket is a
//! sub-folder; and moto's server (PyPI `moto[server]`, installed by scripts/test.sh),
//! more permissive, with the multipart listings distribution's own S3 driver needs.
//! s3s-fs names an object's metadata files after the base64 of its whole key, so a
//! key longer than about 125 characters fails there (S3 allows 1024): the tests use
//! short prefixes and repository names. Keys are generated per server, so a test that leaks one into a log line or an error
//! can be caught by searching for it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct S3Server {
    child: Child,
    port: u16,
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    dir: tempfile::TempDir,
}

/// The one bucket of every test server.
const BUCKET: &str = "registry";

fn keys() -> (String, String) {
    (
        format!("AKIDTEST{}", rand_hex(6)).to_uppercase(),
        format!("secret-{}", rand_hex(16)),
    )
}

impl S3Server {
    pub fn start() -> S3Server {
        let bin = super::require("s3s-fs");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        let port = super::free_port();
        let (access_key, secret_key) = keys();
        let child = s3s_fs(&bin, port, &access_key, &secret_key, dir.path());
        S3Server::serving(child, port, (access_key, secret_key), dir)
    }

    /// The server `child` on `port`, bucket `registry`, with these keys.
    fn serving(
        child: Child,
        port: u16,
        keys: (String, String),
        dir: tempfile::TempDir,
    ) -> S3Server {
        S3Server {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: BUCKET.to_string(),
            access_key: keys.0,
            secret_key: keys.1,
            dir,
        }
    }

    /// moto's server with one bucket (made with an unsigned CreateBucket: moto accepts
    /// any key). It keeps objects in memory: no `bucket_dir`.
    pub fn moto() -> S3Server {
        let bin = super::require("moto_server");
        let port = super::free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        super::wait_for_port(port, "moto_server");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!("PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "CreateBucket: {answer}");
        S3Server::serving(child, port, keys(), tempfile::tempdir().unwrap())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server (its data stays); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// s3s-fs again on the same port, folder and keys.
    pub fn restart(&mut self) {
        self.stop();
        let bin = super::require("s3s-fs");
        self.child = s3s_fs(
            &bin,
            self.port,
            &self.access_key,
            &self.secret_key,
            self.dir.path(),
        );
    }

    /// The bucket's folder on disk (s3s-fs): object `k` is the file `bucket_dir()/k`.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join(&self.bucket)
    }

    /// The library's configuration of this bucket below `prefix`.
    pub fn object_store(&self, prefix: &str) -> portcullis::config::ObjectStore {
        portcullis::config::ObjectStore {
            bucket: self.bucket.clone(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            prefix: prefix.into(),
            credentials: portcullis::config::Credentials {
                access_key_id: self.access_key.clone(),
                secret_access_key: self.secret_key.clone(),
                session_token: None,
            },
            redirect: false,
            redirect_endpoint: None,
            create_only: None,
        }
    }
}

/// s3s-fs serving `root` on `port` with one key, once it listens.
fn s3s_fs(
    bin: &std::path::Path,
    port: u16,
    access: &str,
    secret: &str,
    root: &std::path::Path,
) -> Child {
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", access, "--secret-key", secret])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    super::wait_for_port(port, "s3s-fs");
    child
}

fn rand_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    hex::encode(b)
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
