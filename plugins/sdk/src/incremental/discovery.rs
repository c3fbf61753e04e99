//! [`Discovery`]: one run of an incremental adapter over labelled,
//! time-ordered queries, from the committed cursor to the run's summary.

use crate::adapter::Summary;
use crate::device::Device;
use crate::error::AdapterError;
use crate::log::Level;
use crate::run::Run;

use super::{Ordered, OrderedMerge, Page, QueryCursor, UnusableCursor, Watermark};

/// When runs read only what changed: the `incremental` and
/// `full_every_runs` settings an incremental adapter offers.
///
/// ```
/// use sr_adapter_sdk::incremental::Schedule;
///
/// let every_third = Schedule { incremental: true, full_every_runs: 3 };
/// let forced: Vec<u64> = (0..8).filter(|&n| every_third.forces_full_run(n)).collect();
/// assert_eq!(forced, [3, 6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// After a successful run, the next one reads only what changed since
    /// its cursor. `false`: every run reads the whole inventory and no
    /// cursor is written.
    pub incremental: bool,
    /// Every Nth run (run numbers N, 2N, ...) reads the whole inventory even
    /// with a cursor, so records deleted at the source are retired. 0: only
    /// runs without a cursor do.
    pub full_every_runs: u64,
}

impl Default for Schedule {
    /// Incremental, never forcing a full run.
    fn default() -> Self {
        Self {
            incremental: true,
            full_every_runs: 0,
        }
    }
}

impl Schedule {
    /// Whether run `run_number` must read the whole inventory whatever the
    /// cursor says.
    pub fn forces_full_run(&self, run_number: u64) -> bool {
        !self.incremental
            || (self.full_every_runs > 0
                && run_number > 0
                && run_number.is_multiple_of(self.full_every_runs))
    }
}

/// Where a [`Discovery`] gets its pages: the adapter's paging over its
/// source, one position per query.
pub trait PageSource {
    /// What a page holds, usually [`Record`](super::Record).
    type Record: Ordered + Into<Device>;

    /// The next page of query number `query` (configuration order, from 0).
    /// Asked again for the same query only while its last page said `more`
    /// and still had records once those the cursor covers were dropped. An
    /// error fails the run.
    fn next_page(&mut self, query: usize) -> Result<Page<Self::Record>, AdapterError>;

    /// Completes the records of one page that the run will deliver (those
    /// the cursor covers are already dropped; never called with none), for
    /// example with MAC addresses from another endpoint. The default does
    /// nothing. An error fails the run.
    fn enrich(&mut self, records: &mut Vec<Self::Record>) -> Result<(), AdapterError> {
        let _ = records;
        Ok(())
    }
}

/// One run of an incremental adapter: where it starts, then the paged read
/// of every query, merged by record id in time order, emitted, and
/// checkpointed after every page, ending in the run's [`Summary`].
///
/// - It starts from the committed cursor's [`Watermark`], unless there is
///   none, the [`Schedule`] forces a full run, or the cursor does not apply
///   (written for other queries, or not by this adapter: logged at info or
///   warn with the reason). Without a watermark it reads the whole
///   inventory and says so in the summary (`complete`).
/// - Records the watermark [covers](Watermark::covers) are dropped as their
///   page arrives; the others go through [`PageSource::enrich`], the merge,
///   and [`Run::emit`].
/// - With `schedule.incremental`, the cursor ([`QueryCursor`]) is
///   checkpointed after every group that needed new pages, and the summary
///   carries the final one once any record had a time; otherwise no cursor
///   is written.
///
/// It logs through [`Run::log`]: where it starts, and the devices and
/// pages at the end. See the [module docs](super) for an example.
#[derive(Debug, Clone)]
pub struct Discovery {
    cursor: QueryCursor,
    schedule: Schedule,
    queries: usize,
    since: Option<Watermark>,
}

impl Discovery {
    /// Decides where the run starts for `queries`, `(label, query text)` in
    /// configuration order, and logs it.
    pub fn begin<'a, S>(
        run: &mut Run<S>,
        queries: impl IntoIterator<Item = (&'a str, &'a str)>,
        schedule: Schedule,
    ) -> Self {
        let queries: Vec<(&str, &str)> = queries.into_iter().collect();
        let cursor = QueryCursor::new(queries.iter().copied());
        let since = match starting_point(run.cursor(), run.run_number(), schedule, &cursor) {
            Ok(since) => since,
            Err(problem) => {
                let level = match problem {
                    UnusableCursor::OtherQueries => Level::Info,
                    UnusableCursor::Malformed(_) => Level::Warn,
                };
                run.log(
                    level,
                    "reading the whole inventory instead of what changed",
                    &[("reason", &problem.to_string())],
                );
                None
            }
        };
        let at = since
            .as_ref()
            .and_then(|w| w.at)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        run.log(
            Level::Info,
            if since.is_some() {
                "incremental run: devices changed since the cursor"
            } else {
                "full run: the whole inventory"
            },
            &[("since", &at), ("queries", &queries.len().to_string())],
        );
        Self {
            cursor,
            schedule,
            queries: queries.len(),
            since,
        }
    }

    /// The watermark the run starts from; `None` for a full run. Ask the
    /// source for what changed since its `at` (inclusive); records it
    /// already covers are dropped for you.
    pub fn since(&self) -> Option<&Watermark> {
        self.since.as_ref()
    }

    /// Reads every query to the end from `source`: see [`Discovery`].
    pub fn read<S, P: PageSource + ?Sized>(
        self,
        run: &mut Run<S>,
        source: &mut P,
    ) -> Result<Summary, AdapterError> {
        let since = self.since.as_ref();
        let mut mark = since.cloned().unwrap_or_default();
        let mut pages = 0u64;
        let mut merge: OrderedMerge<P::Record> = OrderedMerge::new(self.queries);
        loop {
            let group = merge.next_group(|query| {
                let mut page = source.next_page(query)?;
                pages += 1;
                if let Some(since) = since {
                    page.items
                        .retain(|record| !since.covers(record.order_at(), record.merge_id()));
                }
                if !page.items.is_empty() {
                    source.enrich(&mut page.items)?;
                }
                Ok::<_, AdapterError>(page)
            })?;
            let Some(group) = group else { break };
            for record in group.items {
                mark.advance(record.order_at(), record.merge_id());
                run.emit(record.into());
            }
            if group.pages_fetched > 0 && self.schedule.incremental {
                run.checkpoint(self.cursor.encode(&mark));
            }
        }
        let devices = run.emitted().to_string();
        run.log(
            Level::Info,
            "run finished",
            &[("devices", &devices), ("pages", &pages.to_string())],
        );
        let summary = if since.is_some() {
            Summary::incremental()
        } else {
            Summary::complete()
        };
        Ok(match (self.schedule.incremental, mark.at) {
            (true, Some(_)) => summary.with_cursor(self.cursor.encode(&mark)),
            _ => summary,
        })
    }
}

/// Where a run starts: `Ok(None)` reads the whole inventory, and so does an
/// unusable cursor, returned for the log.
fn starting_point(
    cursor: Option<&str>,
    run_number: u64,
    schedule: Schedule,
    format: &QueryCursor,
) -> Result<Option<Watermark>, UnusableCursor> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    if schedule.forces_full_run(run_number) {
        return Ok(None);
    }
    format.decode(cursor).map(Some)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::incremental::Record;
    use crate::recording::{Recorded, Recording};
    use crate::time::Timestamp;

    use super::*;

    const QUERIES: [(&str, &str); 2] = [("all", "*"), ("odd", "odd")];

    /// Devices `(id, second)`; query 0 lists them all, query 1 the odd ids,
    /// both by time then id, from `since` (inclusive) on.
    struct Fake {
        devices: Vec<(u32, i64)>,
        page_size: usize,
        from: Option<i64>,
        offsets: [usize; 2],
        requests: Vec<(usize, usize)>,
        enriched: Vec<Vec<String>>,
        fail_at_request: Option<usize>,
    }

    impl Fake {
        fn new(devices: Vec<(u32, i64)>, page_size: usize, since: Option<&Watermark>) -> Self {
            Self {
                devices,
                page_size,
                from: since.and_then(|w| w.at).map(|t| t.unix_seconds()),
                offsets: [0; 2],
                requests: Vec::new(),
                enriched: Vec::new(),
                fail_at_request: None,
            }
        }
    }

    impl PageSource for Fake {
        type Record = Record;

        fn next_page(&mut self, query: usize) -> Result<Page<Record>, AdapterError> {
            self.requests.push((query, self.offsets[query]));
            if self.fail_at_request == Some(self.requests.len()) {
                return Err(AdapterError::unavailable("503 after retries"));
            }
            let mut matching: Vec<(u32, i64)> = self
                .devices
                .iter()
                .copied()
                .filter(|&(id, at)| {
                    (query == 0 || id % 2 == 1) && self.from.is_none_or(|from| at >= from)
                })
                .collect();
            matching.sort_by_key(|&(id, at)| (at, id));
            let start = self.offsets[query];
            let end = (start + self.page_size).min(matching.len());
            self.offsets[query] = end;
            let items = matching[start..end]
                .iter()
                .map(|&(id, at)| {
                    let device = Device::new(id.to_string())
                        .ip(format!("10.0.0.{id}"))
                        .attribute("fake_id", id.to_string());
                    Record::new(
                        device,
                        Some(Timestamp::from_unix_seconds(at)),
                        QUERIES[query].0,
                    )
                })
                .collect();
            Ok(Page {
                items,
                more: end < matching.len(),
            })
        }

        fn enrich(&mut self, records: &mut Vec<Record>) -> Result<(), AdapterError> {
            self.enriched
                .push(records.iter().map(|r| r.device.source_id.clone()).collect());
            for record in records {
                record.device.macs.push("AA:BB:CC:00:00:01".into());
            }
            Ok(())
        }
    }

    struct Outcome {
        result: Result<Summary, AdapterError>,
        recorder: Recording,
        fake: Fake,
    }

    /// A run with `cursor` over `devices`, pages of 4, emit pages of 2.
    fn discover(
        devices: Vec<(u32, i64)>,
        cursor: Option<String>,
        run_number: u64,
        schedule: Schedule,
        prepare: impl FnOnce(&mut Fake),
    ) -> Outcome {
        let recorder = Recording::default();
        let config = Config::from_json(r#"{"page_size": 2}"#).unwrap();
        let mut run: Run<serde_json::Value> =
            Run::new(config, cursor, "r", run_number, Box::new(recorder.clone()));
        let discovery = Discovery::begin(&mut run, QUERIES, schedule);
        let mut fake = Fake::new(devices, 4, discovery.since());
        prepare(&mut fake);
        let result = discovery.read(&mut run, &mut fake);
        run.flush();
        Outcome {
            result,
            recorder,
            fake,
        }
    }

    fn inventory(n: u32) -> Vec<(u32, i64)> {
        (1..=n).map(|id| (id, i64::from(id / 3))).collect()
    }

    fn cursor_of(summary: &Summary) -> serde_json::Value {
        serde_json::from_str(summary.cursor.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn full_run_reads_every_query_merges_and_checkpoints_page_by_page() {
        let out = discover(inventory(10), None, 0, Schedule::default(), |_| {});
        let summary = out.result.unwrap();
        assert!(summary.complete);
        let mut ids = out.recorder.ids();
        assert_eq!(ids.len(), 10, "each device once: {ids:?}");
        ids.sort_by_key(|id| id.parse::<u32>().unwrap());
        assert_eq!(ids, (1..=10).map(|i| i.to_string()).collect::<Vec<_>>());
        // Query 0: 3 pages of 4; query 1 (odd ids): 2 pages; each page is
        // asked for when the merge reaches its query's end.
        assert_eq!(out.fake.requests, [(0, 0), (1, 0), (0, 4), (0, 8), (1, 4)]);
        let checkpoints = out.recorder.checkpoints();
        // One after each group that needed pages; the summary has the last.
        assert_eq!(checkpoints.len(), 3, "{checkpoints:?}");
        let cursor = QueryCursor::new(QUERIES);
        // Every checkpoint covers the devices handed over before it.
        let delivered = out.recorder.ids();
        for (before, text) in &checkpoints {
            let mark = cursor.decode(text).unwrap();
            for id in &delivered[..*before] {
                let at = i64::from(id.parse::<u32>().unwrap() / 3);
                assert!(mark.covers(Some(Timestamp::from_unix_seconds(at)), id));
            }
        }
        assert!(matches!(out.recorder.events()[1], Recorded::Devices(_)));
        let cursor = cursor_of(&summary);
        assert_eq!(cursor["v"], 1);
        assert_eq!(cursor["queries"], QueryCursor::new(QUERIES).fingerprint());
        assert_eq!(cursor["watermark"]["at"], "1970-01-01T00:00:03Z");
        assert_eq!(cursor["watermark"]["ids"], serde_json::json!(["10", "9"]));
        // Merged across queries: odd ids carry both labels.
        assert_eq!(out.fake.enriched.concat().len(), 15);
        let logs = out.recorder.logs();
        assert_eq!(
            logs.first().unwrap().1,
            "full run: the whole inventory",
            "{logs:?}"
        );
        assert_eq!(
            logs.last().unwrap(),
            &(
                Level::Info,
                "run finished".to_string(),
                vec![
                    ("devices".to_string(), "10".to_string()),
                    ("pages".to_string(), "5".to_string())
                ]
            )
        );
    }

    #[test]
    fn devices_found_by_several_queries_are_emitted_once_with_every_label() {
        let out = discover(inventory(4), None, 0, Schedule::default(), |_| {});
        out.result.unwrap();
        let labels: Vec<(String, String, usize)> = out
            .recorder
            .devices()
            .iter()
            .map(|d| (d.source_id.clone(), d.attributes[1].1.clone(), d.macs.len()))
            .collect();
        assert_eq!(
            labels,
            [
                ("1".to_string(), "all,odd".to_string(), 1),
                ("2".to_string(), "all".to_string(), 1),
                ("3".to_string(), "all,odd".to_string(), 1),
                ("4".to_string(), "all".to_string(), 1),
            ]
        );
    }

    #[test]
    fn incremental_run_reads_only_what_the_cursor_does_not_cover() {
        let full = discover(inventory(10), None, 0, Schedule::default(), |_| {});
        let cursor = full.result.unwrap().cursor;

        // Nothing changed: nothing emitted, the cursor stays.
        let quiet = discover(
            inventory(10),
            cursor.clone(),
            1,
            Schedule::default(),
            |_| {},
        );
        let summary = quiet.result.unwrap();
        assert!(!summary.complete);
        assert!(quiet.recorder.ids().is_empty());
        assert_eq!(summary.cursor, cursor);
        assert!(
            quiet.fake.enriched.is_empty(),
            "covered records are not enriched"
        );
        assert_eq!(
            quiet.recorder.logs()[0],
            (
                Level::Info,
                "incremental run: devices changed since the cursor".to_string(),
                vec![
                    ("since".to_string(), "1970-01-01T00:00:03Z".to_string()),
                    ("queries".to_string(), "2".to_string())
                ]
            )
        );

        // 2 changed in the boundary second (where 9 and 10 stay covered),
        // 4 later, 11 is new.
        let mut churned = inventory(11);
        churned[1].1 = 3;
        churned[3].1 = 5;
        churned[10].1 = 5;
        let out = discover(churned, cursor, 2, Schedule::default(), |_| {});
        assert_eq!(out.recorder.ids(), ["2", "11", "4"]);
        let mut enriched = out.fake.enriched.concat();
        enriched.sort();
        enriched.dedup();
        assert_eq!(
            enriched,
            ["11", "2", "4"],
            "covered records are not enriched"
        );
        let summary = out.result.unwrap();
        assert_eq!(
            cursor_of(&summary)["watermark"],
            serde_json::json!({"at": "1970-01-01T00:00:05Z", "ids": ["11", "4"]})
        );
    }

    #[test]
    fn cursors_that_do_not_apply_mean_a_full_run_and_a_log_saying_why() {
        let other =
            QueryCursor::new([("x", "y")]).encode(&Watermark::at(Timestamp::from_unix_seconds(2)));
        for (cursor, level, reason) in [
            (
                other,
                Level::Info,
                "the queries changed since the cursor was written",
            ),
            (
                "garbage".to_string(),
                Level::Warn,
                "the cursor is not one this adapter wrote (expected value at line 1 column 1)",
            ),
        ] {
            let out = discover(inventory(5), Some(cursor), 1, Schedule::default(), |_| {});
            assert!(out.result.unwrap().complete);
            assert_eq!(out.recorder.ids().len(), 5);
            assert_eq!(
                out.recorder.logs()[0],
                (
                    level,
                    "reading the whole inventory instead of what changed".to_string(),
                    vec![("reason".to_string(), reason.to_string())]
                )
            );
        }
    }

    #[test]
    fn the_schedule_forces_full_runs_or_turns_cursors_off() {
        let full = discover(inventory(5), None, 0, Schedule::default(), |_| {});
        let cursor = full.result.unwrap().cursor;
        let every_two = Schedule {
            incremental: true,
            full_every_runs: 2,
        };
        let forced = discover(inventory(5), cursor.clone(), 2, every_two, |_| {});
        let summary = forced.result.unwrap();
        assert!(summary.complete && summary.cursor.is_some());
        let not_forced = discover(inventory(5), cursor.clone(), 3, every_two, |_| {});
        assert!(!not_forced.result.unwrap().complete);

        let off = Schedule {
            incremental: false,
            full_every_runs: 0,
        };
        let out = discover(inventory(5), cursor, 1, off, |_| {});
        let summary = out.result.unwrap();
        assert!(summary.complete && summary.cursor.is_none());
        assert!(out.recorder.checkpoints().is_empty());
        assert_eq!(out.recorder.ids().len(), 5);
    }

    #[test]
    fn a_failed_page_fails_the_run_after_what_came_before_it() {
        let out = discover(inventory(10), None, 0, Schedule::default(), |fake| {
            fake.fail_at_request = Some(3)
        });
        assert_eq!(
            out.result,
            Err(AdapterError::unavailable("503 after retries"))
        );
        let cursor = QueryCursor::new(QUERIES);
        let (_, last) = out.recorder.checkpoints().pop().unwrap();
        let mark = cursor.decode(&last).unwrap();
        let ids = out.recorder.ids();
        assert!(!ids.is_empty() && ids.len() < 10, "{ids:?}");
        assert!(
            out.recorder
                .logs()
                .iter()
                .all(|(_, message, _)| message != "run finished")
        );
        assert!(mark.at.is_some());
    }

    #[test]
    fn no_queries_is_an_empty_complete_run() {
        let recorder = Recording::default();
        let config = Config::from_json("{}").unwrap();
        let mut run: Run<serde_json::Value> =
            Run::new(config, None, "r", 0, Box::new(recorder.clone()));
        let discovery = Discovery::begin(&mut run, [], Schedule::default());
        let summary = discovery
            .read(&mut run, &mut Fake::new(inventory(3), 2, None))
            .unwrap();
        assert_eq!(summary, Summary::complete());
        assert!(recorder.ids().is_empty());
    }

    #[test]
    fn starting_point_follows_cursor_schedule_and_queries() {
        let format = QueryCursor::new(QUERIES);
        let mark = Watermark::at(Timestamp::from_unix_seconds(7));
        let text = format.encode(&mark);
        let on = Schedule::default();
        assert_eq!(starting_point(None, 4, on, &format), Ok(None));
        assert_eq!(starting_point(Some(&text), 4, on, &format), Ok(Some(mark)));
        let off = Schedule {
            incremental: false,
            ..on
        };
        assert_eq!(starting_point(Some(&text), 4, off, &format), Ok(None));
        assert_eq!(
            starting_point(Some(&text), 4, on, &QueryCursor::new([("a", "")])),
            Err(UnusableCursor::OtherQueries)
        );
    }

    #[test]
    fn full_runs_are_forced_by_the_schedule() {
        let every_three = Schedule {
            incremental: true,
            full_every_runs: 3,
        };
        let forced: Vec<u64> = (0..8).filter(|&n| every_three.forces_full_run(n)).collect();
        assert_eq!(forced, [3, 6]);
        let off = Schedule {
            incremental: false,
            full_every_runs: 0,
        };
        assert!((0..10).all(|n| off.forces_full_run(n)));
        assert!(!(0..100).any(|n| Schedule::default().forces_full_run(n)));
    }
}
