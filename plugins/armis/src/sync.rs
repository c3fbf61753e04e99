//! One discovery run: the AQL of every query (everything, or what was seen
//! since the cursor), and the search pages of each, `from` offset by
//! offset in `lastSeen` order, for the SDK's
//! [`Discovery`](sr_adapter_sdk::incremental::Discovery), which merges
//! them by Armis id, emits, and checkpoints page by page. Generic over
//! [`Searcher`], so the whole run is tested natively against a fake Armis.

use sr_adapter_sdk::incremental::{Discovery, Page, PageSource, Record, Watermark};
use sr_adapter_sdk::{AdapterError, Run, Summary};

use serde_json::value::RawValue;

use crate::api::{ArmisDevice, SearchResponse};
use crate::record;
use crate::settings::{Plan, Settings};

/// One page of a device search, parsed; devices borrow from the body.
#[derive(Debug, Default)]
pub struct SearchPage<'a> {
    /// Offset of the next page, `None` on the last one.
    pub next: Option<u64>,
    /// The devices, each with its raw JSON when that is kept.
    pub devices: Vec<(ArmisDevice<'a>, Option<String>)>,
}

/// Reads a search answer. With `keep_raw` every device's JSON is kept.
pub fn parse_page(body: &[u8], keep_raw: bool) -> Result<SearchPage<'_>, String> {
    if keep_raw {
        let page: SearchResponse<&RawValue> =
            serde_json::from_slice(body).map_err(|e| format!("cannot read the page: {e}"))?;
        let mut devices = Vec::with_capacity(page.data.results.len());
        for (i, raw) in page.data.results.into_iter().enumerate() {
            let device: ArmisDevice = serde_json::from_str(raw.get())
                .map_err(|e| format!("cannot read data.results[{i}]: {e}"))?;
            devices.push((device, Some(raw.get().to_string())));
        }
        Ok(SearchPage {
            next: page.data.next,
            devices,
        })
    } else {
        let page: SearchResponse<ArmisDevice> =
            serde_json::from_slice(body).map_err(|e| format!("cannot read the page: {e}"))?;
        Ok(SearchPage {
            next: page.data.next,
            devices: page.data.results.into_iter().map(|d| (d, None)).collect(),
        })
    }
}

/// The AQL of one query for a run starting at `since` (`None`: full run):
/// `after:` the watermark's second, in UTC.
pub fn aql_since(aql: &str, since: Option<&Watermark>) -> String {
    match since.and_then(|w| w.at) {
        Some(at) => format!("{aql} after:{}", at.to_naive_seconds()),
        None => aql.to_string(),
    }
}

/// Where device search pages come from: Armis, or a fake in tests.
pub trait Searcher {
    /// The body of one page of query number `query` (`aql` already
    /// carries any `after:`), ordered by `lastSeen`.
    fn search(
        &mut self,
        query: usize,
        aql: &str,
        from: u64,
        length: u32,
    ) -> Result<Vec<u8>, AdapterError>;
}

/// The search pages of every query, `from` offset by offset.
struct Pages<'a, S> {
    plan: &'a Plan,
    searcher: &'a mut S,
    aqls: Vec<String>,
    offsets: Vec<u64>,
}

impl<S: Searcher> PageSource for Pages<'_, S> {
    type Record = Record;

    fn next_page(&mut self, query: usize) -> Result<Page<Record>, AdapterError> {
        let from = self.offsets[query];
        let body = self
            .searcher
            .search(query, &self.aqls[query], from, self.plan.length)?;
        let page = parse_page(&body, self.plan.keep_raw).map_err(|reason| {
            AdapterError::protocol(format!("searching queries[{query}] from {from}: {reason}"))
        })?;
        let more = match page.next {
            Some(next) if next > from => {
                self.offsets[query] = next;
                true
            }
            Some(next) => {
                return Err(AdapterError::protocol(format!(
                    "searching queries[{query}] from {from}: Armis answered next = {next}, which does not move forward; stopping instead of looping"
                )));
            }
            None => false,
        };
        let label = &self.plan.queries[query].label;
        let items = page
            .devices
            .into_iter()
            .filter_map(|(device, raw)| record::from_api(device, label, raw))
            .collect();
        Ok(Page { items, more })
    }
}

/// Runs discovery: see the module docs.
pub fn discover(
    run: &mut Run<Settings>,
    plan: &Plan,
    searcher: &mut impl Searcher,
) -> Result<Summary, AdapterError> {
    let discovery = Discovery::begin(run, plan.labelled_queries(), plan.schedule);
    let mut pages = Pages {
        plan,
        searcher,
        aqls: plan
            .queries
            .iter()
            .map(|q| aql_since(&q.aql, discovery.since()))
            .collect(),
        offsets: vec![0; plan.queries.len()],
    };
    discovery.read(run, &mut pages)
}

#[cfg(test)]
mod tests {
    use sr_adapter_sdk::incremental::QueryCursor;
    use sr_adapter_sdk::time::Timestamp;
    use sr_adapter_sdk::{Config, Device, Recording};

    use super::*;

    /// A fake Armis: devices `(id, lastSeen second, ip, type)`, AQL `in:devices`
    /// optionally with `type:<T>` and `after:<naive>`, ordered by lastSeen then id.
    struct FakeArmis {
        devices: Vec<(u32, i64, String, &'static str)>,
        calls: Vec<(usize, String, u64)>,
        fail_at_call: Option<usize>,
    }

    const T0: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

    impl FakeArmis {
        fn new(n: u32) -> Self {
            let types = ["Switch", "Laptop", "Printer"];
            Self {
                devices: (1..=n)
                    .map(|id| {
                        (
                            id,
                            T0 + i64::from(id / 3),
                            format!("10.0.{}.{}", id / 250, id % 250 + 1),
                            types[id as usize % 3],
                        )
                    })
                    .collect(),
                calls: Vec::new(),
                fail_at_call: None,
            }
        }
    }

    impl Searcher for FakeArmis {
        fn search(
            &mut self,
            query: usize,
            aql: &str,
            from: u64,
            length: u32,
        ) -> Result<Vec<u8>, AdapterError> {
            self.calls.push((query, aql.to_string(), from));
            if self.fail_at_call == Some(self.calls.len()) {
                return Err(AdapterError::unavailable("503 after retries"));
            }
            let mut after = None;
            let mut kind = None;
            for token in aql.split_whitespace() {
                if let Some(t) = token.strip_prefix("after:") {
                    after = Some(Timestamp::parse(t).unwrap().unix_seconds());
                } else if let Some(t) = token.strip_prefix("type:") {
                    kind = Some(t.to_string());
                }
            }
            let mut matches: Vec<_> = self
                .devices
                .iter()
                .filter(|d| {
                    after.is_none_or(|a| d.1 >= a) && kind.as_deref().is_none_or(|k| k == d.3)
                })
                .collect();
            matches.sort_by_key(|d| (d.1, d.0));
            let total = matches.len() as u64;
            let page: Vec<_> = matches
                .into_iter()
                .skip(from as usize)
                .take(length as usize)
                .collect();
            let end = from + page.len() as u64;
            let results: Vec<serde_json::Value> = page
                .into_iter()
                .map(|d| {
                    serde_json::json!({
                        "id": d.0, "ipAddress": d.2, "type": d.3,
                        "lastSeen": Timestamp::from_unix_seconds(d.1).to_rfc3339(),
                    })
                })
                .collect();
            let next = if end < total { end } else { 0 };
            Ok(
                serde_json::json!({"data": {"next": next, "results": results}, "success": true})
                    .to_string()
                    .into_bytes(),
            )
        }
    }

    fn run_with(
        fake: &mut FakeArmis,
        config: serde_json::Value,
        cursor: Option<String>,
        run_number: u64,
    ) -> (Result<Summary, AdapterError>, Recording) {
        let mut config = config;
        config["endpoint"] = "https://acme.armis.com".into();
        config["credentials"] = serde_json::json!({"secret_key": "k"});
        let config: Config<Settings> = Config::from_json(&config.to_string()).unwrap();
        let plan = Plan::from_config(&config).unwrap();
        let recorder = Recording::default();
        let mut run = Run::new(config, cursor, "r", run_number, Box::new(recorder.clone()));
        let result = discover(&mut run, &plan, fake);
        run.flush();
        (result, recorder)
    }

    fn label(device: &Device) -> &str {
        &device
            .attributes
            .iter()
            .find(|(k, _)| k == "query_label")
            .unwrap()
            .1
    }

    #[test]
    fn full_run_pages_until_next_is_null_and_checkpoints_each_page() {
        let mut fake = FakeArmis::new(25);
        let (summary, rec) = run_with(&mut fake, serde_json::json!({"page_size": 10}), None, 0);
        let summary = summary.unwrap();
        assert!(summary.complete);
        let expected: Vec<String> = (1..=25).map(|i| i.to_string()).collect();
        let mut got = rec.ids();
        got.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(got, expected);
        let froms: Vec<u64> = fake.calls.iter().map(|c| c.2).collect();
        assert_eq!(froms, [0, 10, 20]);
        assert!(fake.calls.iter().all(|c| c.1 == "in:devices"));
        let checkpoints = rec.checkpoints();
        // One per page, each after the devices it covers, moving forward.
        assert_eq!(checkpoints.len(), 3, "{checkpoints:?}");
        let positions: Vec<usize> = checkpoints.iter().map(|c| c.0).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        let queries = QueryCursor::new([("all", "in:devices")]);
        let devices = rec.devices();
        for (at, cursor) in checkpoints.iter() {
            let mark = queries.decode(cursor).unwrap();
            for d in &devices[..*at] {
                let seen = Timestamp::parse(d.last_seen.as_deref().unwrap());
                assert!(
                    mark.covers(seen, &d.source_id),
                    "{cursor} covers {}",
                    d.source_id
                );
            }
        }
        let cursor: serde_json::Value =
            serde_json::from_str(summary.cursor.as_deref().unwrap()).unwrap();
        // Devices 24 and 25 share the last second (T0 + 8).
        assert_eq!(cursor["watermark"]["at"], "2025-01-01T00:00:08Z");
        assert_eq!(cursor["watermark"]["ids"], serde_json::json!(["24", "25"]));
    }

    #[test]
    fn incremental_run_from_the_cursor_returns_only_changes() {
        let mut fake = FakeArmis::new(25);
        let (summary, _) = run_with(&mut fake, serde_json::json!({"page_size": 10}), None, 0);
        let cursor = summary.unwrap().cursor;

        // Nothing changed: nothing emitted, the cursor stays.
        let mut quiet = FakeArmis::new(25);
        let (again, rec) = run_with(
            &mut quiet,
            serde_json::json!({"page_size": 10}),
            cursor.clone(),
            1,
        );
        let again = again.unwrap();
        assert!(!again.complete);
        assert!(rec.ids().is_empty());
        assert_eq!(again.cursor, cursor);
        assert_eq!(quiet.calls[0].1, "in:devices after:2025-01-01T00:00:08");

        // Device 3 seen again in the boundary second, 7 later, 26 new.
        let mut churned = FakeArmis::new(26);
        churned.devices[2].1 = T0 + 8;
        churned.devices[6].1 = T0 + 20;
        churned.devices[25].1 = T0 + 20;
        let (summary, rec) = run_with(
            &mut churned,
            serde_json::json!({"page_size": 10}),
            cursor,
            2,
        );
        assert_eq!(rec.ids(), ["3", "26", "7"]);
        let cursor: serde_json::Value =
            serde_json::from_str(summary.unwrap().cursor.as_deref().unwrap()).unwrap();
        assert_eq!(cursor["watermark"]["ids"], serde_json::json!(["26", "7"]));
    }

    #[test]
    fn several_queries_merge_by_id_with_every_label() {
        let mut fake = FakeArmis::new(12);
        let config = serde_json::json!({"page_size": 2, "queries": [
            {"label": "all", "query": "in:devices"},
            {"label": "switches", "query": "in:devices type:Switch"},
        ]});
        let (summary, rec) = run_with(&mut fake, config, None, 0);
        assert!(summary.unwrap().complete);
        let devices = rec.devices();
        assert_eq!(devices.len(), 12, "each device once");
        for d in devices.iter() {
            let id: usize = d.source_id.parse().unwrap();
            let expected = if id.is_multiple_of(3) {
                "all,switches"
            } else {
                "all"
            };
            assert_eq!(label(d), expected, "device {id}");
        }
    }

    #[test]
    fn a_failed_page_fails_the_run() {
        let mut fake = FakeArmis::new(30);
        fake.fail_at_call = Some(2);
        let (result, rec) = run_with(&mut fake, serde_json::json!({"page_size": 10}), None, 0);
        assert_eq!(result, Err(AdapterError::unavailable("503 after retries")));
        // Only what the first page held was handed over, with its checkpoint.
        assert!(rec.devices().len() <= 10);
        assert!(rec.checkpoints().iter().all(|(at, _)| *at <= 10));
    }

    #[test]
    fn next_that_does_not_move_forward_is_a_protocol_error() {
        struct Stuck;
        impl Searcher for Stuck {
            fn search(
                &mut self,
                _: usize,
                _: &str,
                _: u64,
                _: u32,
            ) -> Result<Vec<u8>, AdapterError> {
                let page = serde_json::json!({"data": {"next": 1, "results": [{"id": 1, "ipAddress": "10.0.0.1"}]}});
                Ok(page.to_string().into_bytes())
            }
        }
        let config: Config<Settings> = Config::from_json(
            r#"{"endpoint": "https://a.armis.com", "credentials": {"secret_key": "k"}}"#,
        )
        .unwrap();
        let plan = Plan::from_config(&config).unwrap();
        let mut run = Run::new(config, None, "r", 0, Box::new(Recording::default()));
        let err = discover(&mut run, &plan, &mut Stuck).unwrap_err();
        assert!(matches!(err, AdapterError::Protocol(m) if m.contains("does not move forward")));
    }

    #[test]
    fn changed_queries_or_forced_full_runs_ignore_the_cursor() {
        let mut fake = FakeArmis::new(5);
        let (summary, _) = run_with(&mut fake, serde_json::json!({}), None, 0);
        let cursor = summary.unwrap().cursor;
        let other = serde_json::json!({"queries": [{"label": "x", "query": "in:devices"}]});
        let (summary, rec) = run_with(&mut FakeArmis::new(5), other, cursor.clone(), 1);
        assert!(summary.unwrap().complete);
        assert_eq!(rec.ids().len(), 5);
        let every_two = serde_json::json!({"settings": {"full_every_runs": 2}});
        let (summary, _) = run_with(&mut FakeArmis::new(5), every_two.clone(), cursor.clone(), 2);
        assert!(summary.unwrap().complete);
        let (summary, _) = run_with(&mut FakeArmis::new(5), every_two, cursor.clone(), 3);
        assert!(!summary.unwrap().complete);
        let (summary, rec) = run_with(
            &mut FakeArmis::new(5),
            serde_json::json!({"settings": {"incremental": false}}),
            cursor,
            1,
        );
        let summary = summary.unwrap();
        assert!(summary.complete && summary.cursor.is_none());
        assert!(rec.checkpoints().is_empty());
        let (summary, _) = run_with(
            &mut FakeArmis::new(5),
            serde_json::json!({}),
            Some("garbage".into()),
            1,
        );
        assert!(summary.unwrap().complete);
    }

    #[test]
    fn incremental_aql_appends_after_in_utc_seconds() {
        let mark = Watermark::at(
            Timestamp::parse("2024-05-01T12:00:00.9+02:00")
                .unwrap()
                .truncate_to_seconds(),
        );
        assert_eq!(
            aql_since("in:devices type:Switch", Some(&mark)),
            "in:devices type:Switch after:2024-05-01T10:00:00"
        );
        assert_eq!(aql_since("in:devices", None), "in:devices");
        assert_eq!(
            aql_since("in:devices", Some(&Watermark::default())),
            "in:devices"
        );
    }

    #[test]
    fn parse_page_keeps_raw_json_on_request() {
        let body = br#"{"data": {"count": 1, "next": 0, "results": [{"id": 9, "ipAddress": "10.0.0.9", "extra": [1]}]}, "success": true}"#;
        let page = parse_page(body, true).unwrap();
        assert_eq!(page.next, None);
        let raw: serde_json::Value =
            serde_json::from_str(page.devices[0].1.as_deref().unwrap()).unwrap();
        assert_eq!(raw["extra"], serde_json::json!([1]));
        let page = parse_page(body, false).unwrap();
        assert!(page.devices[0].1.is_none());
        let err = parse_page(br#"{"data": {"results": [{"name": "no id"}]}}"#, false).unwrap_err();
        assert!(err.contains("missing field `id`"), "{err}");
    }
}
