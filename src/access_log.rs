//! The access log: one line per request, written when its response body ends (so the
//! byte counts and duration cover the whole transfer), as text or JSON. It never holds
//! a password, an Authorization header or a storage credential: only the user name.
//! Text lines escape control characters in every field (see [`Escaped`]), so a client
//! cannot forge lines or drive the terminal of whoever reads the log.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What one line says.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub peer: SocketAddr,
    pub user: Option<String>,
    pub method: String,
    pub path: String,
    pub repository: Option<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream: Option<String>,
    /// One reason per failed attempt before the answer.
    pub retries: Vec<String>,
}

/// Client-controlled text as it may appear in a text log: control characters (C0,
/// DEL, C1) are escaped as `\n`, `\r`, `\t` or `\xNN`/`\u{NNNN}`, and the
/// backslash itself as `\\`, so a newline cannot start a forged line, an ESC cannot
/// reach a terminal, and every escaped line still reads back unambiguously.
/// Use it for tracing fields too: `user = %Escaped(&name)`.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        let mut rest = 0;
        for (i, c) in s.char_indices() {
            if !(c.is_control() || c == '\\') {
                continue;
            }
            f.write_str(&s[rest..i])?;
            rest = i + c.len_utf8();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                c if (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:04x}}}", c as u32)?,
            }
        }
        f.write_str(&s[rest..])
    }
}

/// RFC 3339 UTC time, as in the log and in distribution's `startedat` files.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// [`rfc3339`] written into `out` without an allocation of its own (the access log
/// writes one per request): the same text, fraction trimmed of trailing zeros.
fn write_rfc3339(out: &mut String, t: SystemTime) {
    use std::fmt::Write as _;
    let t = time::OffsetDateTime::from(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let mut nanos = t.nanosecond();
    if nanos != 0 {
        let mut digits = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            digits -= 1;
        }
        let _ = write!(out, ".{nanos:0digits$}");
    }
    out.push('Z');
}

impl Entry {
    pub fn line(&self, format: Format) -> String {
        let mut out = String::new();
        self.write_line(format, &mut out);
        out
    }

    /// The line appended to `out` (no newline).
    pub fn write_line(&self, format: Format, out: &mut String) {
        use std::fmt::Write as _;
        if format == Format::Text {
            fn dash(o: &Option<String>) -> Escaped<'_> {
                Escaped(o.as_deref().unwrap_or("-"))
            }
            write_rfc3339(out, self.time);
            let _ = write!(
                out,
                " {} {} \"{} {}\" {} in={} out={} {:.3}ms repo={} upstream={} retries={}",
                self.peer,
                dash(&self.user),
                Escaped(&self.method),
                Escaped(&self.path),
                self.status,
                self.bytes_in,
                self.bytes_out,
                self.duration.as_secs_f64() * 1000.0,
                dash(&self.repository),
                dash(&self.upstream),
                self.retries.len(),
            );
            if !self.retries.is_empty() {
                let _ = write!(out, " retry_reasons={:?}", self.retries.join("; "));
            }
            return;
        }
        let line = match format {
            Format::Json => serde_json::json!({
                "time": rfc3339(self.time),
                "peer": self.peer.to_string(),
                "user": self.user,
                "method": self.method,
                "path": self.path,
                "repository": self.repository,
                "status": self.status,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                "duration_ms": (self.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
                "upstream": self.upstream,
                "retries": self.retries.len(),
                "retry_reasons": self.retries,
            })
            .to_string(),
            Format::Text => unreachable!("written above"),
        };
        out.push_str(&line);
    }
}

/// Most bytes of log lines held between two writes; beyond this the log drops lines
/// rather than stall request handling behind a slow or blocked standard output.
const BUFFER_LIMIT: usize = 8 << 20;
/// How often the writer thread empties the buffer. Requests only append to a buffer
/// under a lock: no thread is woken per request, which would cost more CPU than the
/// line itself.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

struct Pending {
    bytes: std::sync::Mutex<Vec<u8>>,
    dropped: std::sync::atomic::AtomicU64,
}

fn pending() -> &'static Pending {
    static P: std::sync::OnceLock<Pending> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access log writer");
        }
        Pending {
            bytes: std::sync::Mutex::new(Vec::new()),
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
    })
}

/// Write out whatever lines are waiting (the writer thread does this every 50 ms;
/// shutdown calls it once more so the last requests are not lost).
pub fn flush() {
    let p = pending();
    let out = std::mem::take(&mut *p.bytes.lock().unwrap_or_else(|e| e.into_inner()));
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&out);
        let _ = stdout.flush();
    }
}

/// Queue one line for standard output (the journal under systemd). Never blocks on I/O.
pub fn emit(entry: &Entry, format: Format) {
    thread_local! {
        /// The line being written: one buffer per thread, reused.
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        entry.write_line(format, &mut line);
        queue(&line);
    });
}

fn queue(line: &str) {
    let p = pending();
    let mut buf = p.bytes.lock().unwrap_or_else(|e| e.into_inner());
    if buf.len() + line.len() + 1 > BUFFER_LIMIT {
        drop(buf);
        if p.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10_000 == 0 {
            tracing::warn!("access log: standard output is not keeping up; dropping lines");
        }
        return;
    }
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            peer: "127.0.0.1:5555".parse().unwrap(),
            user: Some("alice".into()),
            method: "GET".into(),
            path: "/v2/a/b/manifests/v1".into(),
            repository: Some("a/b".into()),
            status: 200,
            bytes_in: 0,
            bytes_out: 512,
            duration: Duration::from_micros(1500),
            upstream: Some("127.0.0.1:5000".into()),
            retries: vec!["127.0.0.1:5001: connect failed".into()],
        }
    }

    #[test]
    fn text_line() {
        assert_eq!(
            entry().line(Format::Text),
            "2023-11-14T22:13:20Z 127.0.0.1:5555 alice \"GET /v2/a/b/manifests/v1\" 200 in=0 out=512 1.500ms repo=a/b upstream=127.0.0.1:5000 retries=1 retry_reasons=\"127.0.0.1:5001: connect failed\""
        );
    }

    #[test]
    fn text_fields_cannot_forge_lines_or_reach_the_terminal() {
        let mut e = entry();
        e.user = Some("eve\n2023-11-14T22:13:20Z 10.0.0.1:1 root \"GET /\" 200\x1b[2J".into());
        e.path = "/v2/a\rb\u{7f}\u{9b}c\\d".into();
        let line = e.line(Format::Text);
        assert!(
            !line.chars().any(char::is_control),
            "control character in {line:?}"
        );
        assert!(line.contains("eve\\n2023"), "{line}");
        assert!(line.contains("200\\x1b[2J"), "{line}");
        assert!(line.contains("/v2/a\\rb\\x7f\\u{009b}c\\\\d"), "{line}");
    }

    #[test]
    fn times_are_written_as_the_time_crate_formats_them() {
        for (secs, nanos) in [
            (0, 0),
            (1_700_000_000, 0),
            (1_700_000_000, 1),
            (1_700_000_000, 500_000_000),
            (1_795_000_000, 602_963_730),
            (4_102_444_799, 999_999_999),
        ] {
            let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            let mut out = String::new();
            write_rfc3339(&mut out, t);
            assert_eq!(out, rfc3339(t), "{secs}.{nanos}");
        }
    }

    #[test]
    fn json_line() {
        let v: serde_json::Value = serde_json::from_str(&entry().line(Format::Json)).unwrap();
        assert_eq!(v["user"], "alice");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_out"], 512);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["retries"], 1);
        assert_eq!(v["repository"], "a/b");
    }
}
