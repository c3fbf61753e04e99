//! Talking to NetBox: authenticated GETs of device pages and of interface
//! or MAC address lists. The only module doing I/O.

use std::collections::BTreeMap;

use sr_adapter_sdk::AdapterError;
use sr_adapter_sdk::http::{Client, HttpError, Request, Response};
use sr_adapter_sdk::log;
use sr_adapter_sdk::url::Url;

use crate::api::{Interface, List, MacAddress};
use crate::settings::{MacSource, Plan};
use crate::sync::{DevicePage, Source, follow_next, parse_devices};

/// Devices per MAC lookup request (`device_id=..&device_id=..`), keeping
/// URLs well under proxies' header limits.
const MAC_LOOKUP_BATCH: usize = 50;

/// A session with one NetBox.
pub struct NetboxClient {
    base: Url,
    authorization: String,
    keep_raw: bool,
    mac_source: MacSource,
    limit: u32,
    http: Client,
    warned_about_next: bool,
}

impl NetboxClient {
    /// A client for the plan's NetBox; no request is made yet.
    pub fn new(plan: &Plan) -> Self {
        Self {
            base: plan.base.clone(),
            authorization: plan.authorization.clone(),
            keep_raw: plan.keep_raw,
            mac_source: plan.mac_source,
            limit: plan.limit,
            http: Client::new(),
            warned_about_next: false,
        }
    }

    fn get(&self, url: &Url) -> Result<Response, HttpError> {
        let request = Request::get(url.clone())
            .header("Authorization", self.authorization.as_str())
            .header("Accept", "application/json");
        self.http.fetch(&request)
    }

    /// Resolves a `next` link, warning once when it pointed elsewhere.
    fn next(&mut self, current: &Url, next: Option<String>) -> Result<Option<Url>, AdapterError> {
        let Some(next) = next else { return Ok(None) };
        let (url, rewritten) = follow_next(&self.base, current, &next)
            .map_err(|e| AdapterError::protocol(format!("listing {}: {e}", current.redacted())))?;
        if rewritten && !self.warned_about_next {
            self.warned_about_next = true;
            log::warn(
                "NetBox's `next` links point at another origin (check its reverse proxy's Host header); following them on the configured endpoint",
                &[("next", &url.redacted())],
            );
        }
        Ok(Some(url))
    }

    /// The MACs of `ids` from one list endpoint, following `next`.
    fn mac_batch(
        &mut self,
        ids: &[u64],
        found: &mut BTreeMap<u64, Vec<String>>,
    ) -> Result<(), AdapterError> {
        let path = match self.mac_source {
            MacSource::Interfaces => "api/dcim/interfaces/",
            MacSource::MacAddresses => "api/dcim/mac-addresses/",
        };
        let mut url = self.base.join_path(path);
        for id in ids {
            url = url.with_query_param("device_id", &id.to_string());
        }
        let mut url = Some(url.with_query_param("limit", &self.limit.to_string()));
        let mut add = |device: u64, mac: Option<String>| {
            if let Some(mac) = mac.filter(|m| !m.trim().is_empty()) {
                found.entry(device).or_default().push(mac);
            }
        };
        while let Some(current) = url.take() {
            let response = self
                .get(&current)
                .map_err(|e| context("reading MAC addresses", e))?;
            let next = match self.mac_source {
                MacSource::Interfaces => {
                    let page: List<Interface> = response
                        .json()
                        .map_err(|e| context("reading MAC addresses", e))?;
                    for interface in page.results {
                        let Some(device) = interface.device.map(|d| d.id) else {
                            continue;
                        };
                        add(device, interface.mac_address);
                        for mac in interface.mac_addresses {
                            add(device, mac.mac_address);
                        }
                    }
                    page.next
                }
                MacSource::MacAddresses => {
                    let page: List<MacAddress> = response
                        .json()
                        .map_err(|e| context("reading MAC addresses", e))?;
                    for mac in page.results {
                        if let Some(device) = mac.assigned_object.and_then(|o| o.device) {
                            add(device.id, mac.mac_address);
                        }
                    }
                    page.next
                }
            };
            url = self.next(&current, next)?;
            if url.as_ref() == Some(&current) {
                return Err(AdapterError::protocol(
                    "reading MAC addresses: NetBox answered a `next` link to the same page",
                ));
            }
        }
        Ok(())
    }
}

/// An SDK error as an adapter error, saying what was being done; a refusal
/// also says what to check.
fn context(doing: &str, error: HttpError) -> AdapterError {
    match AdapterError::from(error).context(doing) {
        AdapterError::Unauthorized(m) => {
            AdapterError::Unauthorized(format!("{m} (check credentials.token and its permissions)"))
        }
        other => other,
    }
}

impl Source for NetboxClient {
    fn devices(&mut self, query: usize, url: &Url) -> Result<DevicePage, AdapterError> {
        let doing = format!("listing devices of queries[{query}]");
        let response = match self.get(url) {
            Ok(response) => response,
            Err(error) if error.status() == Some(400) => {
                return Err(AdapterError::invalid_config(
                    &format!("queries[{query}].query"),
                    format!("NetBox refused the filter: {error}"),
                ));
            }
            Err(error) => return Err(context(&doing, error)),
        };
        let (next, devices) = parse_devices(response.body(), self.keep_raw)
            .map_err(|reason| AdapterError::protocol(format!("{doing}: {reason}")))?;
        let next = self.next(url, next)?;
        Ok(DevicePage { next, devices })
    }

    fn macs(&mut self, device_ids: &[u64]) -> Result<BTreeMap<u64, Vec<String>>, AdapterError> {
        let mut found = BTreeMap::new();
        for batch in device_ids.chunks(MAC_LOOKUP_BATCH) {
            self.mac_batch(batch, &mut found)?;
        }
        Ok(found)
    }
}
