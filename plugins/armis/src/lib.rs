//! The Armis adapter: reads devices from the Armis v1 REST API.
//!
//! # Configuration
//!
//! ```json
//! {
//!   "endpoint": "https://acme.armis.com",
//!   "credentials": {"secret_key": "..."},
//!   "queries": [
//!     {"label": "all", "query": "in:devices"},
//!     {"label": "switches", "query": "in:devices type:Switch"}
//!   ],
//!   "page_size": 1000,
//!   "settings": {"incremental": true, "full_every_runs": 0, "keep_raw": false}
//! }
//! ```
//!
//! - `endpoint`: the tenant's base URL (an `/api/v1` suffix is accepted).
//! - `credentials.secret_key`: exchanged for an access token
//!   (`POST /api/v1/access_token/`, form field `secret_key`); the token goes
//!   raw in `Authorization` (no `Bearer`), is refreshed before its
//!   `expiration_utc`, and replaced once when Armis answers 401.
//! - `queries`: labelled AQL device searches (`in:devices ...`); none means
//!   one query `all` = `in:devices`. Devices several queries find are
//!   emitted once, merged by Armis id: union of IPs and of labels
//!   (`query_label` = the labels, comma-joined). `after:` is reserved.
//! - `page_size`: `length` of each search page, 1 to 5000 (default 1000).
//! - `settings.incremental` (default true): runs after the first ask only
//!   for devices seen since the cursor; `settings.full_every_runs` (default
//!   0 = never) forces a whole-inventory run every N runs;
//!   `settings.keep_raw` keeps each device's JSON.
//!
//! # Runs
//!
//! Every query is paged with `from`/`length` and `orderBy=lastSeen` until
//! `next` is null (or 0), and the queries are read together in `lastSeen`
//! order ([`sr_adapter_sdk::incremental::Discovery`]), so memory holds
//! one page per query. After each page the run checkpoints its cursor; a
//! run cut short resumes from there. An incremental run adds
//! `after:<second>` to each AQL and skips the devices the cursor lists for
//! that second, so nothing repeats and nothing is lost at the one-second
//! granularity of `after:`.
//!
//! The cursor is the SDK's
//! [`QueryCursor`](sr_adapter_sdk::incremental::QueryCursor): a watermark
//! over `lastSeen` (to the second), tied to the queries it was made for:
//!
//! ```json
//! {"v": 1, "queries": "9f0c2a7d41e3b865", "watermark": {"at": "2025-01-01T00:00:05Z", "ids": ["13", "14"]}}
//! ```
//!
//! `watermark.at` is the latest `lastSeen` second delivered; `ids` the
//! devices delivered with exactly that second. The next run asks
//! `<aql> after:<at>` ordered by `lastSeen` and skips those ids unless
//! their `lastSeen` moved. `queries` is a fingerprint of the labels and
//! AQL: after the operator changes the queries the cursor no longer
//! applies and the run reads the whole inventory.
//!
//! 429 waits for `Retry-After` and 5xx backs off, a bounded number of
//! times (the SDK's [`RetryPolicy`](sr_adapter_sdk::RetryPolicy)); then
//! the run fails with the cause. Any failed page fails the run: a partial
//! inventory is never reported as complete.

mod api;
mod client;
mod record;
mod settings;
mod sync;

use sr_adapter_sdk::{Adapter, AdapterError, Config, Description, Run, Summary};

use crate::client::ArmisClient;
use crate::settings::{Plan, Settings};
use crate::sync::Searcher;

struct Armis;

impl Adapter for Armis {
    type Settings = Settings;

    fn describe() -> Description {
        Description::new(
            "armis",
            env!("CARGO_PKG_VERSION"),
            "armis",
            "Reads devices from Armis (v1 REST API, AQL device search), full and incremental",
        )
    }

    /// Checks the configuration, exchanges the secret key for a token, and
    /// runs every query for one device (so a bad AQL shows up now).
    fn validate(config: &Config<Settings>) -> Result<(), AdapterError> {
        let plan = Plan::from_config(config)?;
        let mut client = ArmisClient::new(&plan);
        client.authenticate()?;
        for (i, query) in plan.queries.iter().enumerate() {
            client.search(i, &query.aql, 0, 1)?;
        }
        Ok(())
    }

    fn discover(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
        let plan = Plan::from_config(run.config())?;
        let mut client = ArmisClient::new(&plan);
        sync::discover(run, &plan, &mut client)
    }
}

sr_adapter_sdk::export_adapter!(Armis);
