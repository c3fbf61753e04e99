//! Go-style duration strings (`5m`, `6h`, `1h30m`, `1.5s`, `250ms`), the form
//! durations take in the sync config document.

use std::time::Duration;

use thiserror::Error;

/// A duration string that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"30s\", \"5m\", \"1h30m\")")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a Go-style duration: one or more `<number><unit>` parts with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; decimals allowed; `0` alone is zero.
/// Negative durations are refused.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        if number_len == 0 {
            return Err(err("expected a number"));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(err("unknown unit")),
        };
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(err("expected a number"));
        }
        if frac.contains('.') {
            return Err(err("expected a number"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("number out of range"))?
        };
        let mut part = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| err("number out of range"))?;
        let mut scale = unit_nanos;
        for digit in frac.chars().take(18) {
            scale /= 10;
            part += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        total_nanos = total_nanos
            .checked_add(part)
            .ok_or_else(|| err("number out of range"))?;
        rest = after_unit;
    }
    let secs =
        u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("number out of range"))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Formats a duration compactly in Go syntax, omitting zero parts:
/// `1h30m`, `5m`, `45s`, `1.5s`, `250ms`, `0s`.
pub fn format(duration: Duration) -> String {
    let total = duration.as_nanos();
    if total == 0 {
        return "0s".to_string();
    }
    if total < 1_000_000_000 {
        return if total.is_multiple_of(1_000_000) {
            format!("{}ms", total / 1_000_000)
        } else if total.is_multiple_of(1_000) {
            format!("{}us", total / 1_000)
        } else {
            format!("{total}ns")
        };
    }
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let nanos = duration.subsec_nanos();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || nanos > 0 {
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
        } else {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

/// Serde adapter for `Option<Duration>` fields written as Go-style strings.
pub mod serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as a Go-style string, or null.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserialises a Go-style string (or null / absent).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) if t.trim().is_empty() => Ok(None),
            Some(t) => super::parse(&t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse("2h45m30.5s").unwrap(),
            Duration::from_millis(9_930_500)
        );
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("10us").unwrap(), Duration::from_micros(10));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "5", "m", "5x", "-5m", "1..5s", "5m3"] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        let message = parse("5x").unwrap_err().to_string();
        assert!(message.contains("\"5x\"") && message.contains("unknown unit"));
    }

    #[test]
    fn formats_compactly_and_round_trips() {
        for (d, text) in [
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(6 * 3600), "6h"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(3601), "1h1s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text).unwrap(), d);
        }
    }
}
