//! Sizes as `proxy.toml` writes them: a whole number of bytes (`32768`) or a string
//! with a binary unit (`"32KiB"`, `"4MiB"`).

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A size key's value as the file holds it, before it is checked.
#[derive(Debug, Clone)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SizeValue, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size: bytes such as 32768, or a string such as \"32KiB\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<SizeValue, E> {
                Ok(SizeValue::Bytes(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<SizeValue, E> {
                Ok(SizeValue::Bytes(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse a size: an integer is bytes; a string is digits, optional spaces and one of
/// B, KiB, MiB, GiB. The decimal units (KB, MB) are refused rather than guessed at:
/// nginx's `32k` means 32768, a disk vendor's 32KB means 32000.
pub fn parse_size(v: &SizeValue) -> Result<u64, String> {
    let s = match v {
        SizeValue::Bytes(n) => {
            return u64::try_from(*n)
                .map_err(|_| format!("{n} is negative; give a size such as 32768 or \"32KiB\""));
        }
        SizeValue::Text(s) => s,
    };
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(format!(
            "{s:?} is not a size (use bytes such as 32768, or \"32KiB\", \"4MiB\")"
        ));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("{s:?}: number too large"))?;
    let shift = match t[digits..].trim_start() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (units: B, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: number too large"))
}

/// A byte count as a reader would write it: "1 KiB", "256 KiB", "16 MiB", "1 byte".
pub fn words(n: usize) -> String {
    match n {
        1 => "1 byte".to_string(),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
