//! `gc`'s progress: a bar on a terminal (stderr), one line per phase otherwise, and
//! byte counts in words.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Bar {
    state: Mutex<State>,
}

struct State {
    name: String,
    total: u64,
    done: u64,
    drawn: Option<Instant>,
}

impl Bar {
    pub fn on_terminal() -> Option<Bar> {
        std::io::stderr().is_terminal().then(|| Bar {
            state: Mutex::new(State {
                name: String::new(),
                total: 0,
                done: 0,
                drawn: None,
            }),
        })
    }

    fn draw(s: &mut State, force: bool) {
        // At most ten redraws a second.
        if !force
            && s.drawn
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        s.drawn = Some(Instant::now());
        const WIDTH: u64 = 30;
        let line = match (s.done.min(s.total) * WIDTH).checked_div(s.total) {
            None => format!("{}...", s.name),
            Some(filled) => format!(
                "{:<40} [{}{}] {}/{}",
                s.name,
                "#".repeat(filled as usize),
                " ".repeat((WIDTH - filled) as usize),
                s.done,
                s.total
            ),
        };
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K{line}");
        let _ = e.flush();
    }

    pub fn clear(&self) {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
}

impl crate::registry::gc::Progress for Bar {
    fn phase(&self, name: &str, total: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.name = name.to_string();
        s.total = total;
        s.done = 0;
        Bar::draw(&mut s, true);
    }

    fn advance(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.done += n;
        let last = s.done >= s.total;
        Bar::draw(&mut s, last);
    }
}

/// Not a terminal (a log, a pipe): one line per phase.
pub struct Lines;

impl crate::registry::gc::Progress for Lines {
    fn phase(&self, name: &str, total: u64) {
        if total > 0 {
            eprintln!("{name} ({total})");
        } else {
            eprintln!("{name}");
        }
    }
}

/// `1.5 GiB`, `320 KiB`, `12 bytes`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[unit])
}

/// `3600s`, `0s`, `1.5s`: a duration as the configuration writes whole seconds.
pub fn duration(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{d:?}")
    }
}
