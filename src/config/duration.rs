//! Durations as `proxy.toml` writes them: "900s", "15m", "1h30m", always with a unit.

use std::time::Duration;

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
