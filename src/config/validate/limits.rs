//! The limit keys' value checks: sizes with units (`server.max_header_size`,
//! `registry.max_manifest_size`) within their bounds, and counts of at least one.

use super::super::{parse_size, size, SizeValue};
use super::Validator;

impl Validator {
    /// A size key within `min..=max` bytes; out of range or malformed: a problem and
    /// the default.
    pub(super) fn size(
        &mut self,
        key: &str,
        value: Option<&SizeValue>,
        default: usize,
        (min, max): (usize, usize),
    ) -> usize {
        let Some(v) = value else {
            return default;
        };
        match parse_size(v) {
            Ok(n) if n >= min as u64 && n <= max as u64 => n as usize,
            Ok(n) => {
                self.problem(
                    key,
                    format!(
                        "{n} bytes is out of range: give {} to {}",
                        size::words(min),
                        size::words(max)
                    ),
                );
                default
            }
            Err(e) => {
                self.problem(key, e);
                default
            }
        }
    }

    /// A count key that must be at least 1 and fit `T`.
    pub(super) fn count<T: TryFrom<i64> + Copy>(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: T,
    ) -> T {
        match value {
            None => default,
            Some(n) if n < 1 => {
                self.problem(key, format!("{n}: must be at least 1"));
                default
            }
            Some(n) => match T::try_from(n) {
                Ok(v) => v,
                Err(_) => {
                    self.problem(key, format!("{n} is too large"));
                    default
                }
            },
        }
    }
}
