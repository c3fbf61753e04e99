//! The NetBox adapter: reads devices from the NetBox REST API (4.x).
//!
//! # Configuration
//!
//! ```json
//! {
//!   "endpoint": "https://netbox.example.com",
//!   "credentials": {"token": "0123456789abcdef0123456789abcdef01234567"},
//!   "queries": [
//!     {"label": "all", "query": ""},
//!     {"label": "berlin-core", "query": "site=berlin&role=core&status=active"}
//!   ],
//!   "page_size": 1000,
//!   "settings": {"fetch_macs": true, "mac_source": "interfaces", "incremental": true,
//!                "full_every_runs": 0, "keep_raw": false}
//! }
//! ```
//!
//! - `endpoint`: the NetBox base URL (an `/api` suffix is accepted).
//! - `credentials.token`: a classic token (40 hex digits, sent as
//!   `Authorization: Token <t>`) or a v2 token (`nbt_<key>.<token>`,
//!   NetBox 4.5+, sent as `Authorization: Bearer <t>`). NetBox answers a
//!   missing or wrong token with 403 (some versions 401): `unauthorized`.
//! - `queries`: each `query` is a NetBox device filter in query-string form
//!   (`site=berlin&status=active`, `tag=core`, `role=...`; repeat a key for
//!   OR), percent-encoding allowed; empty means every device. None
//!   configured means one query `all` = every device. Devices several
//!   queries find are emitted once, merged by NetBox id, with every label
//!   in `query_label`. The adapter sets `limit`, `offset`, `ordering`,
//!   `last_updated__gte`, `brief`, `fields`, `format` and `exclude`
//!   itself; a query using them is refused. `has_primary_ip=true` is added
//!   unless the query sets it.
//! - `page_size`: `limit` per page (default 1000, NetBox's maximum by
//!   default; up to 5000 for servers with a larger `MAX_PAGE_SIZE`).
//! - `settings.fetch_macs` (default false): read MACs from
//!   `/api/dcim/interfaces/` (`mac_source: "interfaces"`, every version) or
//!   `/api/dcim/mac-addresses/` (`"mac-addresses"`, 4.2+), one request per
//!   50 devices. `settings.incremental` (default true),
//!   `settings.full_every_runs` (default 0 = never) and `settings.keep_raw`
//!   work as for Armis.
//!
//! # Runs
//!
//! Each query is listed with `ordering=last_updated,id` and `limit`,
//! following the absolute `next` links (kept on the configured origin)
//! until `next` is null; the queries are read together in `last_updated`
//! order ([`sr_adapter_sdk::incremental::Discovery`]), so memory holds one
//! page per query, and the run checkpoints its cursor after each page. An
//! incremental run adds `last_updated__gte=<watermark>` and skips the
//! devices the cursor lists for that instant. Interface and MAC changes do
//! not touch a device's `last_updated`: use `full_every_runs` to pick them
//! up.
//!
//! The cursor is the SDK's
//! [`QueryCursor`](sr_adapter_sdk::incremental::QueryCursor): a watermark
//! over `last_updated` (microseconds), tied to the queries it was made for:
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
//!
//! Retries, rate limits and failures: as the SDK's `Client::fetch` (5xx
//! backoff and 429 `Retry-After`, bounded); any failed page fails the run,
//! never reporting a partial inventory as complete.

mod api;
mod client;
mod record;
mod settings;
mod sync;

use sr_adapter_sdk::{Adapter, AdapterError, Config, Description, Run, Summary};

use crate::client::NetboxClient;
use crate::settings::{Plan, Settings};
use crate::sync::{Source, first_page_url};

struct Netbox;

impl Adapter for Netbox {
    type Settings = Settings;

    fn describe() -> Description {
        Description::new(
            "netbox",
            env!("CARGO_PKG_VERSION"),
            "netbox",
            "Reads devices (primary IPs, optional MACs) from NetBox (REST API), full and incremental",
        )
    }

    /// Checks the configuration and lists one device of every query, which
    /// checks the token and the filters.
    fn validate(config: &Config<Settings>) -> Result<(), AdapterError> {
        let mut plan = Plan::from_config(config)?;
        plan.limit = 1;
        let mut client = NetboxClient::new(&plan);
        for query in 0..plan.queries.len() {
            client.devices(query, &first_page_url(&plan, query, None))?;
        }
        Ok(())
    }

    fn discover(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
        let plan = Plan::from_config(run.config())?;
        let mut client = NetboxClient::new(&plan);
        sync::discover(run, &plan, &mut client)
    }
}

sr_adapter_sdk::export_adapter!(Netbox);
