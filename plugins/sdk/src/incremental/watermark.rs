//! [`Watermark`]: how far an incremental read got, in a form that fits in
//! a cursor.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Most ids a [`Watermark`] keeps at its boundary instant. Beyond it the ids
/// are dropped and the next run re-reads the boundary instant in full
/// (records repeat, none are lost), so a cursor stays well under the host's
/// 64 KiB limit.
pub const MAX_BOUNDARY_IDS: usize = 2000;

/// How far an incremental read got. See the [module docs](super).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The latest modification time delivered; `None` before any record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// Ids delivered with modification time exactly `at`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// True when more than [`MAX_BOUNDARY_IDS`] records shared `at`: the
    /// ids were dropped and `at` itself is not covered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
}

impl Watermark {
    /// A watermark at `at` covering nothing at that instant.
    pub fn at(at: Timestamp) -> Self {
        Self {
            at: Some(at),
            ..Self::default()
        }
    }

    /// Whether a record `id` modified at `at` was already delivered: it is
    /// older than the watermark, or at its instant and listed.
    pub fn covers(&self, at: Option<Timestamp>, id: &str) -> bool {
        match (self.at, at) {
            (None, _) => false,
            // Records without a time cannot be placed: always deliver them.
            (Some(_), None) => false,
            (Some(mark), Some(at)) => {
                at < mark
                    || (at == mark
                        && !self.overflow
                        && self.ids.binary_search_by(|i| i.as_str().cmp(id)).is_ok())
            }
        }
    }

    /// Records that `id`, modified at `at`, was delivered. Earlier times are
    /// already covered and change nothing; a later time moves the watermark.
    pub fn advance(&mut self, at: Option<Timestamp>, id: &str) {
        let Some(at) = at else { return };
        match self.at {
            Some(mark) if at < mark => {}
            Some(mark) if at == mark => self.insert(id),
            _ => {
                self.at = Some(at);
                self.ids.clear();
                self.overflow = false;
                self.insert(id);
            }
        }
    }

    fn insert(&mut self, id: &str) {
        if self.overflow {
            return;
        }
        if let Err(position) = self.ids.binary_search_by(|i| i.as_str().cmp(id)) {
            if self.ids.len() >= MAX_BOUNDARY_IDS {
                self.ids.clear();
                self.overflow = true;
            } else {
                self.ids.insert(position, id.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_covers_older_records_and_listed_boundary_ids() {
        let t = |s| Some(Timestamp::from_unix_seconds(s));
        let mut mark = Watermark::default();
        assert!(!mark.covers(t(5), "1"));
        mark.advance(t(10), "b");
        mark.advance(t(10), "a");
        mark.advance(t(9), "z");
        assert_eq!(mark.at, t(10));
        assert_eq!(mark.ids, ["a", "b"]);
        assert!(mark.covers(t(9), "z"));
        assert!(mark.covers(t(10), "a"));
        assert!(!mark.covers(t(10), "c"));
        assert!(!mark.covers(t(11), "a"));
        assert!(!mark.covers(None, "a"));
        mark.advance(t(12), "c");
        assert_eq!((mark.at, mark.ids.clone()), (t(12), vec!["c".to_string()]));
        mark.advance(None, "d");
        assert_eq!(mark.ids, ["c"]);
    }

    #[test]
    fn watermark_overflow_stays_correct_and_small() {
        let at = Some(Timestamp::from_unix_seconds(1));
        let mut mark = Watermark::default();
        for i in 0..=MAX_BOUNDARY_IDS {
            mark.advance(at, &format!("{i:06}"));
        }
        assert!(mark.overflow && mark.ids.is_empty());
        // The boundary instant is re-read: repeats, never losses.
        assert!(!mark.covers(at, "000001"));
        assert!(mark.covers(Some(Timestamp::UNIX_EPOCH), "x"));
        let json = serde_json::to_string(&mark).unwrap();
        assert_eq!(json, r#"{"at":"1970-01-01T00:00:01Z","overflow":true}"#);
        mark.advance(Some(Timestamp::from_unix_seconds(2)), "n");
        assert!(!mark.overflow);
        assert_eq!(mark.ids, ["n"]);
    }

    #[test]
    fn watermark_round_trips_through_json() {
        let mut mark = Watermark::default();
        assert_eq!(serde_json::to_string(&mark).unwrap(), "{}");
        mark.advance(Timestamp::parse("2025-01-01T00:00:00.5Z"), "17");
        let json = serde_json::to_string(&mark).unwrap();
        assert_eq!(json, r#"{"at":"2025-01-01T00:00:00.5Z","ids":["17"]}"#);
        assert_eq!(serde_json::from_str::<Watermark>(&json).unwrap(), mark);
    }
}
