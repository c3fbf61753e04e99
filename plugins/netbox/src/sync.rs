//! One discovery run: the first page of every query (everything, or what
//! changed since the cursor), then its `next` links in `last_updated`
//! order, and the MACs of the devices a page adds, for the SDK's
//! [`Discovery`](sr_adapter_sdk::incremental::Discovery), which merges
//! them by NetBox id, emits, and checkpoints page by page. Generic over
//! [`Source`], so the whole run is tested natively against a fake NetBox.

use std::collections::BTreeMap;

use sr_adapter_sdk::incremental::{Discovery, Page, PageSource, Record, Watermark};
use sr_adapter_sdk::url::Url;
use sr_adapter_sdk::{AdapterError, Run, Summary};

use crate::api::{List, NetboxDevice};
use crate::record::{self, add_macs};
use crate::settings::{Plan, Settings};

/// One page of devices, parsed.
#[derive(Debug, Default)]
pub struct DevicePage {
    /// The next page, already resolved against the endpoint.
    pub next: Option<Url>,
    /// The devices, each with its raw JSON when that is kept.
    pub devices: Devices,
}

/// Devices of a page, each with its raw JSON when that is kept.
pub type Devices = Vec<(NetboxDevice, Option<String>)>;

/// Reads a device list page: `(next, devices)`.
pub fn parse_devices(body: &[u8], keep_raw: bool) -> Result<(Option<String>, Devices), String> {
    if keep_raw {
        let page: List<serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| format!("cannot read the page: {e}"))?;
        let mut devices = Vec::with_capacity(page.results.len());
        for (i, value) in page.results.into_iter().enumerate() {
            let raw = value.to_string();
            let device = serde_json::from_value(value)
                .map_err(|e| format!("cannot read results[{i}]: {e}"))?;
            devices.push((device, Some(raw)));
        }
        Ok((page.next, devices))
    } else {
        let page: List<NetboxDevice> =
            serde_json::from_slice(body).map_err(|e| format!("cannot read the page: {e}"))?;
        Ok((
            page.next,
            page.results.into_iter().map(|d| (d, None)).collect(),
        ))
    }
}

/// Resolves a `next` link. NetBox builds it from the Host header it saw,
/// which behind a reverse proxy is often an internal name: a link to
/// another origin is followed on the configured endpoint's origin instead
/// (same path and query), so the token never leaves it. The flag says
/// whether that happened.
pub fn follow_next(base: &Url, current: &Url, next: &str) -> Result<(Url, bool), String> {
    let url = current
        .join(next)
        .map_err(|e| format!("`next` is not a usable URL: {e}"))?;
    if url.same_origin(base) {
        return Ok((url, false));
    }
    let rewritten = base
        .join(&url.path_and_query())
        .map_err(|e| format!("`next` is not a usable URL: {e}"))?;
    Ok((rewritten, true))
}

/// The first page of query `query`, from `since` (`None`: everything).
pub fn first_page_url(plan: &Plan, query: usize, since: Option<&Watermark>) -> Url {
    let planned = &plan.queries[query];
    let mut url = plan.base.join_path("api/dcim/devices/");
    for (key, value) in &planned.filters {
        url = url.with_query_param(key, value);
    }
    if !planned.filters.iter().any(|(k, _)| k == "has_primary_ip") {
        url = url.with_query_param("has_primary_ip", "true");
    }
    url = url
        .with_query_param("ordering", "last_updated,id")
        .with_query_param("limit", &plan.limit.to_string());
    if let Some(at) = since.and_then(|w| w.at) {
        url = url.with_query_param("last_updated__gte", &at.to_rfc3339());
    }
    url
}

/// Where device pages and MACs come from: NetBox, or a fake in tests.
pub trait Source {
    /// One page of devices of query number `query`.
    fn devices(&mut self, query: usize, url: &Url) -> Result<DevicePage, AdapterError>;

    /// The MACs of the given devices, by device id.
    fn macs(&mut self, device_ids: &[u64]) -> Result<BTreeMap<u64, Vec<String>>, AdapterError>;
}

/// The device pages of every query, following `next`.
struct Pages<'a, S> {
    plan: &'a Plan,
    source: &'a mut S,
    next: Vec<Option<Url>>,
}

impl<S: Source> PageSource for Pages<'_, S> {
    type Record = Record;

    fn next_page(&mut self, query: usize) -> Result<Page<Record>, AdapterError> {
        let Some(url) = self.next[query].take() else {
            return Ok(Page {
                items: Vec::new(),
                more: false,
            });
        };
        let page = self.source.devices(query, &url)?;
        if let Some(following) = &page.next {
            if *following == url {
                return Err(AdapterError::protocol(format!(
                    "listing queries[{query}]: NetBox answered a `next` link to the same page ({}); stopping instead of looping",
                    url.redacted()
                )));
            }
            self.next[query] = Some(following.clone());
        }
        let label = &self.plan.queries[query].label;
        let items = page
            .devices
            .into_iter()
            .filter_map(|(device, raw)| record::from_api(device, label, raw))
            .collect();
        Ok(Page {
            items,
            more: page.next.is_some(),
        })
    }

    /// MACs for the devices this page adds, when asked for.
    fn enrich(&mut self, records: &mut Vec<Record>) -> Result<(), AdapterError> {
        if !self.plan.fetch_macs {
            return Ok(());
        }
        let netbox_id = |record: &Record| record.device.source_id.parse::<u64>().ok();
        let ids: Vec<u64> = records.iter().filter_map(netbox_id).collect();
        let macs = self.source.macs(&ids)?;
        for record in records {
            if let Some(found) = netbox_id(record).and_then(|id| macs.get(&id)) {
                add_macs(record, found.iter().map(String::as_str));
            }
        }
        Ok(())
    }
}

/// Runs discovery: see the module docs.
pub fn discover(
    run: &mut Run<Settings>,
    plan: &Plan,
    source: &mut impl Source,
) -> Result<Summary, AdapterError> {
    let discovery = Discovery::begin(run, plan.labelled_queries(), plan.schedule);
    let mut pages = Pages {
        plan,
        source,
        next: (0..plan.queries.len())
            .map(|q| Some(first_page_url(plan, q, discovery.since())))
            .collect(),
    };
    discovery.read(run, &mut pages)
}

#[cfg(test)]
mod tests {
    use sr_adapter_sdk::time::Timestamp;
    use sr_adapter_sdk::{Config, Recording};

    use super::*;

    /// A fake NetBox: devices `(id, last_updated µs offset, site, has ip)`.
    struct FakeNetbox {
        devices: Vec<(u64, i64, &'static str, bool)>,
        requests: Vec<String>,
        mac_requests: Vec<Vec<u64>>,
        fail_at_request: Option<usize>,
    }

    const T0: &str = "2025-01-01T00:00:00Z";

    fn at(offset_ms: i64) -> String {
        let base = Timestamp::parse(T0).unwrap();
        let t = base.add_seconds(offset_ms / 1000);
        let millis = offset_ms % 1000;
        if millis == 0 {
            t.to_rfc3339()
        } else {
            format!("{}.{:03}Z", t.to_naive_seconds(), millis)
        }
    }

    impl FakeNetbox {
        fn new(n: u64) -> Self {
            let sites = ["berlin", "lisbon"];
            Self {
                devices: (1..=n)
                    .map(|id| (id, (id as i64) * 500, sites[id as usize % 2], id % 7 != 0))
                    .collect(),
                requests: Vec::new(),
                mac_requests: Vec::new(),
                fail_at_request: None,
            }
        }
    }

    fn params(url: &Url) -> Vec<(String, String)> {
        url.query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2C", ",")))
            .collect()
    }

    impl Source for FakeNetbox {
        fn devices(&mut self, _query: usize, url: &Url) -> Result<DevicePage, AdapterError> {
            self.requests.push(url.to_string());
            if self.fail_at_request == Some(self.requests.len()) {
                return Err(AdapterError::unavailable("502 after retries"));
            }
            let p = params(url);
            let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            assert_eq!(get("ordering").as_deref(), Some("last_updated,id"));
            let limit: usize = get("limit").unwrap().parse().unwrap();
            let offset: usize = get("offset").map_or(0, |o| o.parse().unwrap());
            let since = get("last_updated__gte").map(|s| Timestamp::parse(&s).unwrap());
            let site = get("site");
            let mut matches: Vec<_> = self
                .devices
                .iter()
                .filter(|d| d.3)
                .filter(|d| site.as_deref().is_none_or(|s| s == d.2))
                .filter(|d| since.is_none_or(|s| Timestamp::parse(&at(d.1)).unwrap() >= s))
                .collect();
            matches.sort_by_key(|d| (d.1, d.0));
            let total = matches.len();
            let devices = matches
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|d| {
                    let json = serde_json::json!({
                        "id": d.0, "name": format!("dev-{}", d.0), "site": {"name": d.2},
                        "primary_ip4": {"address": format!("10.0.0.{}/24", d.0)},
                        "last_updated": at(d.1),
                    });
                    (serde_json::from_value(json).unwrap(), None)
                })
                .collect();
            let next = (offset + limit < total).then(|| {
                let mut u = plan_base().join_path("api/dcim/devices/");
                for (k, v) in p.iter().filter(|(k, _)| k != "offset") {
                    u = u.with_query_param(k, v);
                }
                u.with_query_param("offset", &(offset + limit).to_string())
            });
            Ok(DevicePage { next, devices })
        }

        fn macs(&mut self, ids: &[u64]) -> Result<BTreeMap<u64, Vec<String>>, AdapterError> {
            self.mac_requests.push(ids.to_vec());
            Ok(ids
                .iter()
                .map(|&id| {
                    (
                        id,
                        vec![format!("02:00:00:00:00:{id:02x}"), "bogus".to_string()],
                    )
                })
                .collect())
        }
    }

    fn plan_base() -> Url {
        Url::parse("https://nb.example.com/").unwrap()
    }

    fn run_with(
        fake: &mut FakeNetbox,
        mut config: serde_json::Value,
        cursor: Option<String>,
        run_number: u64,
    ) -> (Result<Summary, AdapterError>, Recording) {
        config["endpoint"] = "https://nb.example.com".into();
        config["credentials"] =
            serde_json::json!({"token": "0123456789abcdef0123456789abcdef01234567"});
        let config: Config<Settings> = Config::from_json(&config.to_string()).unwrap();
        let plan = Plan::from_config(&config).unwrap();
        let recorder = Recording::default();
        let mut run = Run::new(config, cursor, "r", run_number, Box::new(recorder.clone()));
        let result = discover(&mut run, &plan, fake);
        run.flush();
        (result, recorder)
    }

    #[test]
    fn full_run_follows_next_and_checkpoints_each_page() {
        let mut fake = FakeNetbox::new(30);
        let (summary, rec) = run_with(&mut fake, serde_json::json!({"page_size": 10}), None, 0);
        let summary = summary.unwrap();
        assert!(summary.complete);
        let expected: Vec<String> = (1..=30)
            .filter(|i| i % 7 != 0)
            .map(|i| i.to_string())
            .collect();
        assert_eq!(rec.ids(), expected);
        assert_eq!(fake.requests.len(), 3);
        assert!(
            fake.requests[0].contains("has_primary_ip=true"),
            "{}",
            fake.requests[0]
        );
        assert!(!fake.requests[0].contains("last_updated__gte"));
        assert_eq!(rec.checkpoints().len(), 3);
        let cursor: serde_json::Value =
            serde_json::from_str(summary.cursor.as_deref().unwrap()).unwrap();
        assert_eq!(cursor["watermark"]["at"], "2025-01-01T00:00:15Z");
        assert_eq!(cursor["watermark"]["ids"], serde_json::json!(["30"]));
        assert!(rec.devices().iter().all(|d| d.macs.is_empty()));
    }

    #[test]
    fn incremental_runs_ask_from_the_watermark() {
        let mut fake = FakeNetbox::new(30);
        let (summary, _) = run_with(&mut fake, serde_json::json!({}), None, 0);
        let cursor = summary.unwrap().cursor;
        let mut quiet = FakeNetbox::new(30);
        let (summary, rec) = run_with(&mut quiet, serde_json::json!({}), cursor.clone(), 1);
        let summary = summary.unwrap();
        assert!(!summary.complete);
        assert!(rec.ids().is_empty());
        assert_eq!(summary.cursor, cursor);
        assert!(
            quiet.requests[0].contains("last_updated__gte=2025-01-01T00%3A00%3A15Z"),
            "{}",
            quiet.requests[0]
        );

        let mut churned = FakeNetbox::new(32);
        churned.devices[4].1 = 20_000; // device 5 edited
        let (summary, rec) = run_with(&mut churned, serde_json::json!({}), cursor, 2);
        assert_eq!(rec.ids(), ["31", "32", "5"]);
        assert!(!summary.unwrap().complete);
    }

    #[test]
    fn queries_merge_by_id_and_macs_are_fetched_per_page() {
        let mut fake = FakeNetbox::new(12);
        let config = serde_json::json!({"page_size": 4, "settings": {"fetch_macs": true}, "queries": [
            {"label": "all", "query": ""}, {"label": "berlin", "query": "site=berlin"}]});
        let (summary, rec) = run_with(&mut fake, config, None, 0);
        assert!(summary.unwrap().complete);
        let devices = rec.devices();
        assert_eq!(devices.len(), 11);
        for d in devices.iter() {
            let id: u64 = d.source_id.parse().unwrap();
            let label = &d
                .attributes
                .iter()
                .find(|(k, _)| k == "query_label")
                .unwrap()
                .1;
            assert_eq!(
                label,
                if id.is_multiple_of(2) {
                    "all,berlin"
                } else {
                    "all"
                },
                "{id}"
            );
            assert_eq!(d.macs, [format!("02:00:00:00:00:{id:02X}")]);
        }
        assert!(fake.mac_requests.iter().all(|ids| ids.len() <= 4));
    }

    #[test]
    fn a_failed_page_fails_the_run() {
        let mut fake = FakeNetbox::new(30);
        fake.fail_at_request = Some(2);
        let (result, rec) = run_with(&mut fake, serde_json::json!({"page_size": 10}), None, 0);
        assert_eq!(result, Err(AdapterError::unavailable("502 after retries")));
        assert!(rec.devices().len() <= 10);
    }

    #[test]
    fn next_links_stay_on_the_configured_origin() {
        let base = Url::parse("https://nb.example.com/").unwrap();
        let current = base
            .join_path("api/dcim/devices/")
            .with_query_param("limit", "5");
        let (url, rewritten) = follow_next(
            &base,
            &current,
            "https://nb.example.com/api/dcim/devices/?limit=5&offset=5",
        )
        .unwrap();
        assert!(!rewritten);
        assert_eq!(
            url.to_string(),
            "https://nb.example.com/api/dcim/devices/?limit=5&offset=5"
        );
        let (url, rewritten) = follow_next(
            &base,
            &current,
            "http://netbox:8080/api/dcim/devices/?limit=5&offset=5",
        )
        .unwrap();
        assert!(rewritten);
        assert_eq!(
            url.to_string(),
            "https://nb.example.com/api/dcim/devices/?limit=5&offset=5"
        );
        let (url, _) = follow_next(&base, &current, "/api/dcim/devices/?offset=10").unwrap();
        assert_eq!(
            url.to_string(),
            "https://nb.example.com/api/dcim/devices/?offset=10"
        );
        assert!(follow_next(&base, &current, "ftp://x/").is_err());
    }

    #[test]
    fn parse_devices_reads_next_and_raw() {
        let body = br#"{"count": 1, "next": "http://h/api/dcim/devices/?offset=1", "previous": null,
                        "results": [{"id": 1, "primary_ip4": {"address": "10.0.0.1/24"}, "extra": true}]}"#;
        let (next, devices) = parse_devices(body, true).unwrap();
        assert_eq!(next.as_deref(), Some("http://h/api/dcim/devices/?offset=1"));
        assert!(devices[0].1.as_deref().unwrap().contains("\"extra\":true"));
        let (_, devices) = parse_devices(body, false).unwrap();
        assert!(devices[0].1.is_none());
        assert!(parse_devices(b"{\"detail\": \"x\"", false).is_err());
    }
}
