//! [`QueryCursor`]: the cursor text of an incremental adapter, a
//! [`Watermark`] tied to the queries it was made for.
//!
//! ```json
//! {"v": 1, "queries": "9f0c2a7d41e3b865", "watermark": {"at": "2025-01-01T00:00:05Z", "ids": ["13", "14"]}}
//! ```
//!
//! `queries` is a fingerprint of the queries' labels and texts: after the
//! operator changes the queries the cursor no longer applies, and the run
//! reads the whole inventory.

use serde::{Deserialize, Serialize};

use super::Watermark;

/// Version written in (and required of) every cursor, `v`.
pub const CURSOR_VERSION: u32 = 1;

#[derive(Serialize)]
struct Written<'a> {
    v: u32,
    queries: &'a str,
    watermark: &'a Watermark,
}

#[derive(Deserialize)]
struct Read {
    v: u32,
    queries: String,
    watermark: Watermark,
}

/// Why a committed cursor does not apply to this run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnusableCursor {
    /// Not a cursor this adapter wrote (another format, another version).
    #[error("the cursor is not one this adapter wrote ({0})")]
    Malformed(String),
    /// Written for other queries.
    #[error("the queries changed since the cursor was written")]
    OtherQueries,
}

/// Writes and reads the cursors of one set of labelled queries.
///
/// ```
/// use sr_adapter_sdk::incremental::{QueryCursor, UnusableCursor, Watermark};
/// use sr_adapter_sdk::time::Timestamp;
///
/// let cursor = QueryCursor::new([("all", "in:devices")]);
/// let mark = Watermark::at(Timestamp::from_unix_seconds(5));
/// let text = cursor.encode(&mark);
/// assert_eq!(cursor.decode(&text), Ok(mark));
/// let other = QueryCursor::new([("all", "in:devices type:Switch")]);
/// assert_eq!(other.decode(&text), Err(UnusableCursor::OtherQueries));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryCursor {
    fingerprint: String,
}

impl QueryCursor {
    /// The cursors of `queries`, given as `(label, query text)` in
    /// configuration order.
    pub fn new<'a>(queries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            fingerprint: fingerprint(queries),
        }
    }

    /// FNV-1a over the labels and texts (each followed by a zero byte), as
    /// 16 hex digits: stable across builds and platforms, unlike `std`'s
    /// hasher. The cursor's `queries`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The cursor text for `watermark`.
    pub fn encode(&self, watermark: &Watermark) -> String {
        let cursor = Written {
            v: CURSOR_VERSION,
            queries: &self.fingerprint,
            watermark,
        };
        // Strings, numbers and a timestamp always serialise.
        serde_json::to_string(&cursor).unwrap_or_default()
    }

    /// The watermark of a committed cursor, if it was written for these
    /// queries.
    pub fn decode(&self, text: &str) -> Result<Watermark, UnusableCursor> {
        let cursor: Read =
            serde_json::from_str(text).map_err(|e| UnusableCursor::Malformed(e.to_string()))?;
        if cursor.v != CURSOR_VERSION {
            return Err(UnusableCursor::Malformed(format!("version {}", cursor.v)));
        }
        if cursor.queries != self.fingerprint {
            return Err(UnusableCursor::OtherQueries);
        }
        Ok(cursor.watermark)
    }
}

fn fingerprint<'a>(queries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (label, text) in queries {
        for byte in label.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use crate::time::Timestamp;

    use super::*;

    #[test]
    fn round_trips_for_the_same_queries_only() {
        let cursor = QueryCursor::new([("all", "in:devices")]);
        let mut mark = Watermark::default();
        mark.advance(Timestamp::parse("2025-01-01T00:00:05Z"), "14");
        mark.advance(Timestamp::parse("2025-01-01T00:00:05Z"), "13");
        let text = cursor.encode(&mark);
        assert_eq!(
            text,
            format!(
                r#"{{"v":1,"queries":"{}","watermark":{{"at":"2025-01-01T00:00:05Z","ids":["13","14"]}}}}"#,
                cursor.fingerprint()
            )
        );
        assert_eq!(cursor.decode(&text), Ok(mark));
        assert_eq!(
            QueryCursor::new([("all", "in:devices type:Switch")]).decode(&text),
            Err(UnusableCursor::OtherQueries)
        );
        assert!(matches!(
            cursor.decode("done"),
            Err(UnusableCursor::Malformed(_))
        ));
        assert_eq!(
            cursor.decode(r#"{"v":2,"queries":"x","watermark":{}}"#),
            Err(UnusableCursor::Malformed("version 2".into()))
        );
    }

    #[test]
    fn fingerprint_depends_on_labels_texts_and_order() {
        let a = QueryCursor::new([("all", "in:devices")]);
        assert_eq!(a.fingerprint().len(), 16);
        // Pinned: cursors written by earlier builds must still apply.
        assert_eq!(a.fingerprint(), "bb4e6689af0ebc72");
        assert_eq!(
            QueryCursor::new([("all", "")]).fingerprint(),
            "694b68bb734b7044"
        );
        assert_eq!(a, QueryCursor::new([("all", "in:devices")]));
        assert_ne!(a, QueryCursor::new([("all", "in:devices ")]));
        assert_ne!(a, QueryCursor::new([("x", "in:devices")]));
        // The zero bytes keep label and text apart.
        assert_ne!(
            QueryCursor::new([("ab", "c")]),
            QueryCursor::new([("a", "bc")])
        );
        let two = [("a", "1"), ("b", "2")];
        let swapped = [("b", "2"), ("a", "1")];
        assert_ne!(QueryCursor::new(two), QueryCursor::new(swapped));
    }

    #[test]
    fn unusable_cursors_say_why() {
        assert_eq!(
            UnusableCursor::Malformed("version 2".into()).to_string(),
            "the cursor is not one this adapter wrote (version 2)"
        );
        assert_eq!(
            UnusableCursor::OtherQueries.to_string(),
            "the queries changed since the cursor was written"
        );
    }
}
