//! The NetBox cursor: a [`Watermark`] over `last_updated` (microseconds),
//! tied to the queries it was made for.
//!
//! ```json
//! {"v": 1, "queries": "9f0c2a7d41e3b865", "watermark": {"at": "2025-01-01T00:00:05.123456Z", "ids": ["13"]}}
//! ```
//!
//! `watermark.at` is the latest `last_updated` delivered; `ids` the devices
//! delivered with exactly that time. The next run adds
//! `last_updated__gte=<at>` (ordered by `last_updated`) and skips those ids
//! unless they changed again. `queries` is a fingerprint of the labels and
//! filters: after the operator changes the queries the cursor no longer
//! applies and the run reads the whole inventory.

use serde::{Deserialize, Serialize};
use sr_adapter_sdk::incremental::Watermark;

use crate::settings::PlannedQuery;

/// Cursor format version.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    v: u32,
    queries: String,
    watermark: Watermark,
}

/// Why a committed cursor is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not a cursor this adapter wrote.
    Malformed(String),
    /// Written for other queries.
    OtherQueries,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Malformed(why) => {
                write!(f, "the cursor is not one this adapter wrote ({why})")
            }
            Unusable::OtherQueries => {
                f.write_str("the queries changed since the cursor was written")
            }
        }
    }
}

/// FNV-1a over the labels and filters, as 16 hex digits: stable across builds
/// and platforms (unlike `std`'s hasher).
pub fn fingerprint(queries: &[PlannedQuery]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for query in queries {
        for byte in query
            .label
            .bytes()
            .chain([0])
            .chain(query.text.bytes())
            .chain([0])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The cursor text for `watermark` over `queries`.
pub fn encode(queries: &[PlannedQuery], watermark: &Watermark) -> String {
    let cursor = Cursor {
        v: VERSION,
        queries: fingerprint(queries),
        watermark: watermark.clone(),
    };
    // A struct of strings always serialises.
    serde_json::to_string(&cursor).unwrap_or_default()
}

/// The watermark of a committed cursor, if it applies to `queries`.
pub fn decode(text: &str, queries: &[PlannedQuery]) -> Result<Watermark, Unusable> {
    let cursor: Cursor =
        serde_json::from_str(text).map_err(|e| Unusable::Malformed(e.to_string()))?;
    if cursor.v != VERSION {
        return Err(Unusable::Malformed(format!("version {}", cursor.v)));
    }
    if cursor.queries != fingerprint(queries) {
        return Err(Unusable::OtherQueries);
    }
    Ok(cursor.watermark)
}

#[cfg(test)]
mod tests {
    use sr_adapter_sdk::time::Timestamp;

    use super::*;

    fn queries(text: &str) -> Vec<PlannedQuery> {
        vec![PlannedQuery {
            label: "all".into(),
            text: text.into(),
            filters: crate::settings::parse_filters(text).unwrap(),
        }]
    }

    #[test]
    fn round_trips_for_the_same_queries_only() {
        let mut mark = Watermark::default();
        mark.advance(Timestamp::parse("2025-01-01T00:00:05Z"), "14");
        mark.advance(Timestamp::parse("2025-01-01T00:00:05Z"), "13");
        let text = encode(&queries(""), &mark);
        assert!(text.starts_with(r#"{"v":1,"queries":""#), "{text}");
        assert!(
            text.ends_with(r#""watermark":{"at":"2025-01-01T00:00:05Z","ids":["13","14"]}}"#),
            "{text}"
        );
        assert_eq!(decode(&text, &queries("")), Ok(mark));
        assert_eq!(
            decode(&text, &queries("site=berlin")),
            Err(Unusable::OtherQueries)
        );
        assert!(matches!(
            decode("done", &queries("")),
            Err(Unusable::Malformed(_))
        ));
        assert!(matches!(
            decode(r#"{"v":2,"queries":"x","watermark":{}}"#, &queries("")),
            Err(Unusable::Malformed(m)) if m == "version 2"
        ));
    }

    #[test]
    fn fingerprint_depends_on_labels_and_filters() {
        let a = fingerprint(&queries(""));
        assert_eq!(a.len(), 16);
        assert_eq!(a, fingerprint(&queries("")));
        assert_ne!(a, fingerprint(&queries("site=x")));
        let relabelled = vec![PlannedQuery {
            label: "x".into(),
            text: String::new(),
            filters: Vec::new(),
        }];
        assert_ne!(a, fingerprint(&relabelled));
    }
}
