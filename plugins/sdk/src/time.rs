//! Time: waiting without burning CPU, and [`Timestamp`], the RFC 3339
//! instants sources put in their JSON (`lastSeen`, `last_updated`, token
//! expiry) and incremental cursors keep.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::wasi::clocks::monotonic_clock;

/// Blocks the adapter for `duration` on a `wasi:clocks` monotonic-clock
/// pollable: the host parks the call, no busy waiting. The run's wall-clock
/// limits still apply while it waits.
pub fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return;
    }
    monotonic_clock::subscribe_duration(nanos).block();
}

/// An instant in UTC with nanosecond precision, read from and written as
/// RFC 3339 text. Pure: parsing, formatting and comparison run natively too.
///
/// ```
/// use sr_adapter_sdk::time::Timestamp;
///
/// let t = Timestamp::parse("2024-05-01T12:00:00.5+02:00").unwrap();
/// assert_eq!(t.to_rfc3339(), "2024-05-01T10:00:00.5Z");
/// assert_eq!(t.truncate_to_seconds().to_rfc3339(), "2024-05-01T10:00:00Z");
/// assert!(t < Timestamp::parse("2024-05-01T10:00:01Z").unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    seconds: i64,
    nanos: u32,
}

/// Days from 1970-01-01 to year 0000-03-01 style civil dates and back
/// (Howard Hinnant's algorithms), valid for years 0000-9999.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Reads exactly `n` ASCII digits at `*pos`.
fn digits(bytes: &[u8], pos: &mut usize, n: usize) -> Option<u32> {
    let slice = bytes.get(*pos..*pos + n)?;
    if !slice.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *pos += n;
    Some(
        slice
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')),
    )
}

fn expect(bytes: &[u8], pos: &mut usize, wanted: &[u8]) -> Option<()> {
    let byte = *bytes.get(*pos)?;
    if wanted.contains(&byte) {
        *pos += 1;
        Some(())
    } else {
        None
    }
}

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp {
        seconds: 0,
        nanos: 0,
    };

    /// The instant `seconds` after the Unix epoch (negative: before).
    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self { seconds, nanos: 0 }
    }

    /// The current time from the wall clock (`wasi:clocks/wall-clock` inside
    /// a component). Before the epoch reads as the epoch.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: since.subsec_nanos(),
        }
    }

    /// Parses an RFC 3339 / ISO 8601 date-time: `2024-05-01T10:00:00Z`,
    /// `2024-05-01T10:00:00.123456+02:00`, `2024-05-01 10:00:00`. Without
    /// an offset the time is read as UTC. Fractions beyond nanoseconds are
    /// truncated. `None` for anything else, including impossible dates.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.trim().as_bytes();
        let mut pos = 0;
        let year = digits(bytes, &mut pos, 4)?;
        expect(bytes, &mut pos, b"-")?;
        let month = digits(bytes, &mut pos, 2)?;
        expect(bytes, &mut pos, b"-")?;
        let day = digits(bytes, &mut pos, 2)?;
        expect(bytes, &mut pos, b"Tt ")?;
        let hour = digits(bytes, &mut pos, 2)?;
        expect(bytes, &mut pos, b":")?;
        let minute = digits(bytes, &mut pos, 2)?;
        expect(bytes, &mut pos, b":")?;
        // A leap second (60) is read as the last second of the minute.
        let second = digits(bytes, &mut pos, 2)?.min(59);
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(i64::from(year), month)
            || hour > 23
            || minute > 59
        {
            return None;
        }
        let mut nanos = 0u32;
        if bytes.get(pos) == Some(&b'.') || bytes.get(pos) == Some(&b',') {
            pos += 1;
            let start = pos;
            while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                if pos - start < 9 {
                    nanos = nanos * 10 + u32::from(bytes[pos] - b'0');
                }
                pos += 1;
            }
            let count = pos - start;
            if count == 0 {
                return None;
            }
            for _ in count..9 {
                nanos *= 10;
            }
        }
        let offset_seconds: i64 = match bytes.get(pos) {
            None => 0,
            Some(b'Z' | b'z') => {
                pos += 1;
                0
            }
            Some(&sign @ (b'+' | b'-')) => {
                pos += 1;
                let hours = digits(bytes, &mut pos, 2)?;
                if bytes.get(pos) == Some(&b':') {
                    pos += 1;
                }
                let minutes = digits(bytes, &mut pos, 2)?;
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let offset = i64::from(hours * 3600 + minutes * 60);
                if sign == b'-' { -offset } else { offset }
            }
            Some(_) => return None,
        };
        if pos != bytes.len() {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        let seconds =
            days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
        Some(Self { seconds, nanos })
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.seconds
    }

    /// The fraction of the second, in nanoseconds.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// The same instant without its fraction of a second: for sources whose
    /// time filters have one-second granularity.
    pub fn truncate_to_seconds(self) -> Self {
        Self {
            seconds: self.seconds,
            nanos: 0,
        }
    }

    /// This instant moved by `seconds` (saturating).
    pub fn add_seconds(self, seconds: i64) -> Self {
        Self {
            seconds: self.seconds.saturating_add(seconds),
            nanos: self.nanos,
        }
    }

    /// How long after `earlier` this instant is; zero when it is not later.
    pub fn duration_since(&self, earlier: Timestamp) -> Duration {
        if *self <= earlier {
            return Duration::ZERO;
        }
        let (mut secs, nanos) = if self.nanos >= earlier.nanos {
            (self.seconds - earlier.seconds, self.nanos - earlier.nanos)
        } else {
            (
                self.seconds - earlier.seconds - 1,
                self.nanos + 1_000_000_000 - earlier.nanos,
            )
        };
        secs = secs.max(0);
        Duration::new(u64::try_from(secs).unwrap_or(0), nanos)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`; the fraction only when non-zero,
    /// without trailing zeros.
    pub fn to_rfc3339(&self) -> String {
        let mut text = String::with_capacity(30);
        self.push_date_time(&mut text);
        if self.nanos > 0 {
            let mut digits = [0u8; 9];
            let mut n = self.nanos;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let used = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
            text.push('.');
            digits[..used]
                .iter()
                .for_each(|&d| text.push(char::from(d)));
        }
        text.push('Z');
        text
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`: whole seconds, the fraction dropped.
    pub fn to_rfc3339_seconds(&self) -> String {
        let mut text = String::with_capacity(20);
        self.push_date_time(&mut text);
        text.push('Z');
        text
    }

    /// `YYYY-MM-DDTHH:MM:SS` in UTC with no offset: the form some query
    /// languages want (Armis AQL `after:`).
    pub fn to_naive_seconds(&self) -> String {
        let mut text = String::with_capacity(19);
        self.push_date_time(&mut text);
        text
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS` without the formatting machinery:
    /// adapters format a timestamp or two for every device.
    fn push_date_time(&self, out: &mut String) {
        fn push(out: &mut String, value: i64, width: u32) {
            let mut divisor = 10i64.pow(width - 1);
            let value = value.clamp(0, 10i64.pow(width) - 1);
            while divisor > 0 {
                out.push(char::from(b'0' + ((value / divisor) % 10) as u8));
                divisor /= 10;
            }
        }
        let days = self.seconds.div_euclid(86_400);
        let secs = self.seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        push(out, year, 4);
        out.push('-');
        push(out, i64::from(month), 2);
        out.push('-');
        push(out, i64::from(day), 2);
        out.push('T');
        push(out, secs / 3600, 2);
        out.push(':');
        push(out, secs % 3600 / 60, 2);
        out.push(':');
        push(out, secs % 60, 2);
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not an RFC 3339 date-time"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn parses_the_common_forms() {
        assert_eq!(ts("1970-01-01T00:00:00Z"), Timestamp::UNIX_EPOCH);
        assert_eq!(ts("2024-05-01T10:00:00Z").unix_seconds(), 1_714_557_600);
        assert_eq!(ts("2024-05-01T12:00:00+02:00"), ts("2024-05-01T10:00:00Z"));
        assert_eq!(ts("2024-05-01T05:30:00-0430"), ts("2024-05-01T10:00:00Z"));
        assert_eq!(ts("2024-05-01 10:00:00"), ts("2024-05-01T10:00:00Z"));
        assert_eq!(ts("2024-05-01t10:00:00z"), ts("2024-05-01T10:00:00Z"));
        let micro = ts("2025-01-01T00:00:00.123456Z");
        assert_eq!(micro.subsec_nanos(), 123_456_000);
        assert_eq!(ts(" 2024-02-29T23:59:60Z ").unix_seconds() % 60, 59);
        assert_eq!(
            ts("2024-05-01T10:00:00.1234567891Z").subsec_nanos(),
            123_456_789
        );
        assert_eq!(ts("1969-12-31T23:59:59Z").unix_seconds(), -1);
    }

    #[test]
    fn refuses_what_is_not_a_date_time() {
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+2:00",
            "2024-05-01T10:00:00Zjunk",
            "yesterday",
            "2024/05/01T10:00:00Z",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in [
            "2024-05-01T10:00:00Z",
            "2025-01-01T00:00:00.123456Z",
            "1999-12-31T23:59:59.5Z",
            "2100-01-01T00:00:00Z",
        ] {
            assert_eq!(ts(text).to_rfc3339(), text);
        }
        let t = ts("2025-01-01T08:09:10.75+01:00");
        assert_eq!(t.to_rfc3339_seconds(), "2025-01-01T07:09:10Z");
        assert_eq!(t.to_naive_seconds(), "2025-01-01T07:09:10");
        assert_eq!(t.truncate_to_seconds().subsec_nanos(), 0);
        assert_eq!(
            Timestamp::from_unix_seconds(-1).to_rfc3339(),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn orders_and_measures() {
        let a = ts("2025-01-01T00:00:00.9Z");
        let b = ts("2025-01-01T00:00:01.1Z");
        assert!(a < b);
        assert_eq!(b.duration_since(a), Duration::from_millis(200));
        assert_eq!(a.duration_since(b), Duration::ZERO);
        assert_eq!(a.add_seconds(1).to_rfc3339(), "2025-01-01T00:00:01.9Z");
        assert!(Timestamp::now() > ts("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn serde_uses_rfc3339_text() {
        let t = ts("2025-01-01T00:00:00.25Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2025-01-01T00:00:00.25Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"soon\"").is_err());
    }
}
