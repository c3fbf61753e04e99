//! Building blocks for incremental adapters over sources that can list
//! records ordered by modification time (`orderBy=lastSeen`,
//! `ordering=last_updated`) and filter by "changed since".
//!
//! - [`Watermark`]: how far a run got — every record changed strictly
//!   before `at`, plus the records listed in `ids` changed exactly at `at`.
//!   Time filters are usually inclusive (`>=`), so the next run asks from
//!   `at` again and skips what the watermark already [covers](Watermark::covers):
//!   one-second-granular sources are handled exactly, with no record lost or
//!   repeated. It serialises to JSON, so it fits in a cursor.
//! - [`OrderedMerge`]: several labelled queries over the same source, read
//!   page by page in time order and merged by record id, holding one page
//!   per query plus the records of one instant. The watermark can be
//!   checkpointed after every group, so a run cut short resumes.
//! - [`QueryCursor`]: the cursor text, a watermark tied to the queries it
//!   was made for, so a cursor written for other queries is not applied.
//! - [`Record`]: a device found by one or more labelled queries, with its
//!   modification time; merges across queries and stamps `query_label`.
//! - [`Discovery`]: the whole run on top of them — where it starts (the
//!   committed cursor, unless a [`Schedule`] or the queries say otherwise),
//!   the paged, merged read of every query from a [`PageSource`], emitting,
//!   checkpointing after every page, and the run's [`Summary`](crate::Summary)
//!   with the next cursor.
//!
//! An adapter supplies what is its source's own: the first request of each
//! query (with the "changed since" filter from [`Discovery::since`]), the
//! next page, and the mapping of its records:
//!
//! ```
//! use sr_adapter_sdk::incremental::{Discovery, Page, PageSource, Record, Schedule};
//! use sr_adapter_sdk::time::Timestamp;
//! use sr_adapter_sdk::{AdapterError, Config, Device, NoSettings, Run, Sink, Summary};
//!
//! /// One query's pages, here from memory: (id, modification second).
//! struct Pages {
//!     pages: Vec<Vec<(u32, i64)>>,
//! }
//!
//! impl PageSource for Pages {
//!     type Record = Record;
//!
//!     fn next_page(&mut self, _query: usize) -> Result<Page<Record>, AdapterError> {
//!         let page = self.pages.remove(0);
//!         let items = page
//!             .into_iter()
//!             .map(|(id, at)| {
//!                 let device = Device::new(id.to_string()).ip(format!("10.0.0.{id}"));
//!                 Record::new(device, Some(Timestamp::from_unix_seconds(at)), "all")
//!             })
//!             .collect();
//!         Ok(Page { items, more: !self.pages.is_empty() })
//!     }
//! }
//!
//! fn discover(run: &mut Run<NoSettings>) -> Result<Summary, AdapterError> {
//!     let discovery = Discovery::begin(run, [("all", "")], Schedule::default());
//!     // A real adapter asks its source for what changed since
//!     // `discovery.since()` here.
//!     let mut pages = Pages { pages: vec![vec![(1, 10), (2, 10)], vec![(3, 11)]] };
//!     discovery.read(run, &mut pages)
//! }
//!
//! struct Ignore;
//! impl Sink for Ignore {
//!     fn emit(&mut self, _: Vec<Device>) {}
//!     fn checkpoint(&mut self, _: &str) {}
//! }
//! let config = Config::from_json("{}")?;
//! let mut run = Run::new(config, None, "run-1", 0, Box::new(Ignore));
//! let summary = discover(&mut run)?;
//! assert!(summary.complete);
//! assert_eq!(run.emitted(), 3);
//! assert!(summary.cursor.unwrap().ends_with(r#""watermark":{"at":"1970-01-01T00:00:11Z","ids":["3"]}}"#));
//! # Ok::<(), AdapterError>(())
//! ```
//!
//! Everything here runs natively in tests.

mod cursor;
mod discovery;
mod merge;
mod record;
mod watermark;

pub use cursor::{CURSOR_VERSION, QueryCursor, UnusableCursor};
pub use discovery::{Discovery, PageSource, Schedule};
pub use merge::{Group, Ordered, OrderedMerge, Page};
pub use record::{QUERY_LABEL, Record};
pub use watermark::{MAX_BOUNDARY_IDS, Watermark};
