//! A mock NetBox REST API (4.x), faithful to the source reference:
//!
//! - Auth: `Authorization: Token <40 hex>` or `Bearer nbt_<key>.<token>`;
//!   missing or wrong → 403 `{"detail": "..."}`.
//! - `GET /api/dcim/devices/`, `/api/dcim/interfaces/`,
//!   `/api/dcim/mac-addresses/`, `/api/ipam/ip-addresses/`; `/api/status/`
//!   without auth. A path without its trailing slash answers 301 to the
//!   slash form.
//! - Pagination: `limit` (default 50, at most 1000; 0 means the maximum)
//!   and `offset`; `{"count", "next", "previous", "results"}` with absolute
//!   `next`/`previous` URLs built from the request's `Host` (or the base
//!   set with [`NetboxMock::set_next_base`], the reverse-proxy quirk).
//! - Device filters: `id`, `site`, `role`, `status`, `tag`, `manufacturer`
//!   (slugs; repeat = or; an unknown slug → 400 like NetBox), `name`, `q`,
//!   `has_primary_ip`, `last_updated__gte`; `ordering` over `id`, `name`,
//!   `last_updated` (comma-separated, `-` for descending); `brief`,
//!   `fields`. Unknown parameters are ignored, as NetBox does.
//! - Devices carry `primary_ip4` / `primary_ip6` / `primary_ip` with CIDR
//!   addresses, `last_updated` with microseconds; interfaces and MAC
//!   address objects are filtered by `device_id`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::inventory::{Inventory, InventoryParams, MockDevice};
use super::source::{SourceKnobs, SourceState};
use super::{MockServer, encode_pairs, injected_response, json_response, query_pairs, redirect};

/// The classic token the mock accepts unless told otherwise.
pub const DEFAULT_TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

/// The v2 token the mock accepts unless told otherwise.
pub const DEFAULT_V2_TOKEN: &str = "nbt_mockkey01.mocksecret0123456789abcdef";

/// NetBox's default page size.
pub const DEFAULT_LIMIT: usize = 50;

/// NetBox's default `MAX_PAGE_SIZE`.
pub const MAX_LIMIT: usize = 1000;

const DATA_PATHS: [&str; 4] = [
    "/api/dcim/devices/",
    "/api/dcim/interfaces/",
    "/api/dcim/mac-addresses/",
    "/api/ipam/ip-addresses/",
];

/// How to start a NetBox mock.
#[derive(Debug, Clone)]
pub struct NetboxOptions {
    /// The devices.
    pub inventory: InventoryParams,
    /// Accepted classic tokens (`Token <t>`).
    pub tokens: Vec<String>,
    /// Accepted v2 tokens (`Bearer nbt_...`).
    pub v2_tokens: Vec<String>,
    /// Where to listen (port 0: any).
    pub bind: SocketAddr,
}

impl Default for NetboxOptions {
    fn default() -> Self {
        Self {
            inventory: InventoryParams::default(),
            tokens: vec![DEFAULT_TOKEN.to_string()],
            v2_tokens: vec![DEFAULT_V2_TOKEN.to_string()],
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// What the mock served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetboxStats {
    /// Requests to `/api/dcim/devices/`.
    pub device_requests: u64,
    /// Requests to `/api/dcim/interfaces/`.
    pub interface_requests: u64,
    /// Requests to `/api/dcim/mac-addresses/`.
    pub mac_address_requests: u64,
    /// Requests to `/api/ipam/ip-addresses/`.
    pub ip_address_requests: u64,
    /// Requests answered 403.
    pub forbidden: u64,
    /// Requests answered 400.
    pub bad_requests: u64,
    /// Requests answered with an injected fault.
    pub faults_injected: u64,
    /// Trailing-slash redirects served.
    pub slash_redirects: u64,
    /// Pages served (200) of any list.
    pub pages_served: u64,
    /// Devices in the device pages served.
    pub devices_served: u64,
}

struct NetboxState {
    source: SourceState,
    tokens: Vec<String>,
    v2_tokens: Vec<String>,
    next_base: Option<String>,
    stats: NetboxStats,
}

type Shared = Arc<Mutex<NetboxState>>;

fn lock(shared: &Shared) -> MutexGuard<'_, NetboxState> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// An error answer: its status and JSON body.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

fn detail(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        body: json!({"detail": message}),
    }
}

fn field_error(field: &str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({field: [message]}),
    }
}

fn netbox_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn named(id: u64, name: &str, slug: &str) -> Value {
    json!({"id": id, "display": name, "name": name, "slug": slug})
}

fn site_id(slug: &str) -> u64 {
    match slug {
        "berlin" => 1,
        "lisbon" => 2,
        "austin" => 3,
        _ => 4,
    }
}

fn ip_json(base: &str, id: u64, family: u8, address: String) -> Value {
    json!({
        "id": id,
        "url": format!("{base}/api/ipam/ip-addresses/{id}/"),
        "display": address,
        "family": {"value": family, "label": format!("IPv{family}")},
        "address": address,
    })
}

/// A device as NetBox returns it; `base` is the URL prefix of `url` fields.
pub fn device_json(device: &MockDevice, base: &str) -> Value {
    let ip4 = device
        .ipv4
        .first()
        .map(|ip| ip_json(base, device.id * 10 + 4, 4, format!("{ip}/24")));
    let ip6 = device
        .ipv6
        .map(|ip| ip_json(base, device.id * 10 + 6, 6, format!("{ip}/64")));
    let primary = ip4.clone().or_else(|| ip6.clone());
    let type_index = device.type_slug.len() as u64;
    json!({
        "id": device.id,
        "url": format!("{base}/api/dcim/devices/{}/", device.id),
        "display": device.name,
        "name": device.name,
        "device_type": {
            "id": type_index,
            "display": device.model,
            "manufacturer": named(type_index, device.manufacturer, device.manufacturer_slug),
            "model": device.model,
            "slug": device.model.to_lowercase(),
        },
        "role": named(type_index, device.device_type, device.type_slug),
        "tenant": null,
        "platform": named(type_index, device.os, &device.os.to_lowercase().replace(' ', "-")),
        "serial": device.serial,
        "asset_tag": device.asset_tag,
        "site": named(site_id(device.site_slug), device.site, device.site_slug),
        "location": null,
        "rack": null,
        "status": {"value": device.status, "label": capitalize(device.status)},
        "primary_ip": primary,
        "primary_ip4": ip4,
        "primary_ip6": ip6,
        "description": "",
        "tags": device.tags.iter().map(|t| json!({"id": t.len(), "name": t, "slug": t, "display": t})).collect::<Vec<_>>(),
        "custom_fields": {},
        "created": netbox_time(device.first_seen_time()),
        "last_updated": netbox_time(device.last_updated_time()),
    })
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Which list a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Devices,
    Interfaces,
    MacAddresses,
    IpAddresses,
}

/// The parameters of a list request.
struct ListRequest {
    params: Vec<(String, String)>,
    limit: usize,
    offset: usize,
}

impl ListRequest {
    fn parse(uri: &Uri) -> Result<Self, ApiError> {
        let params = query_pairs(uri.query().unwrap_or(""));
        let number = |name: &str| -> Result<Option<usize>, ApiError> {
            match params.iter().find(|(k, _)| k == name) {
                None => Ok(None),
                Some((_, v)) => v.trim().parse().map(Some).map_err(|_| {
                    detail(
                        StatusCode::BAD_REQUEST,
                        &format!("Invalid {name} value: {v}"),
                    )
                }),
            }
        };
        let limit = match number("limit")? {
            None => DEFAULT_LIMIT,
            Some(0) => MAX_LIMIT,
            Some(n) => n.min(MAX_LIMIT),
        };
        let offset = number("offset")?.unwrap_or(0);
        Ok(Self {
            params,
            limit,
            offset,
        })
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// The filters without paging: the cache key of an ordering.
    fn key(&self) -> String {
        let filters: Vec<(String, String)> = self
            .params
            .iter()
            .filter(|(k, _)| k != "limit" && k != "offset")
            .cloned()
            .collect();
        encode_pairs(&filters)
    }

    /// The URL of the page at `offset`.
    fn page_url(&self, base: &str, path: &str, offset: usize) -> String {
        let mut params: Vec<(String, String)> = self
            .params
            .iter()
            .filter(|(k, _)| k != "limit" && k != "offset")
            .cloned()
            .collect();
        params.push(("limit".to_string(), self.limit.to_string()));
        if offset > 0 {
            params.push(("offset".to_string(), offset.to_string()));
        }
        format!("{base}{path}?{}", encode_pairs(&params))
    }
}

/// Devices matching the request's filters, in its ordering.
fn select_devices(inventory: &Inventory, request: &ListRequest) -> Result<Vec<u64>, ApiError> {
    let choices = |field: &str, values: Vec<&str>, known: &dyn Fn(&str) -> bool| match values
        .iter()
        .find(|v| !known(v))
    {
        Some(bad) => Err(field_error(
            field,
            format!("Select a valid choice. {bad} is not one of the available choices."),
        )),
        None => Ok(values.into_iter().map(str::to_string).collect::<Vec<_>>()),
    };
    let devices = inventory.devices();
    let known_in =
        |pick: fn(&MockDevice) -> &str| move |v: &str| devices.values().any(|d| pick(d) == v);
    let sites = choices("site", request.all("site"), &known_in(|d| d.site_slug))?;
    let roles = choices("role", request.all("role"), &known_in(|d| d.type_slug))?;
    let makers = choices(
        "manufacturer",
        request.all("manufacturer"),
        &known_in(|d| d.manufacturer_slug),
    )?;
    let statuses = choices("status", request.all("status"), &|v: &str| {
        [
            "active",
            "planned",
            "staged",
            "failed",
            "offline",
            "inventory",
            "decommissioning",
        ]
        .contains(&v)
    })?;
    let tags = choices("tag", request.all("tag"), &|v: &str| {
        devices.values().any(|d| d.tags.iter().any(|t| t == v))
    })?;
    let ids: Vec<u64> = request
        .all("id")
        .into_iter()
        .map(|v| {
            v.parse()
                .map_err(|_| field_error("id", format!("Enter a whole number: {v}")))
        })
        .collect::<Result<_, _>>()?;
    let names = request.all("name");
    let search = request.one("q").map(str::to_lowercase);
    let has_ip = match request.one("has_primary_ip") {
        None => None,
        Some("true" | "True" | "1") => Some(true),
        Some("false" | "False" | "0") => Some(false),
        Some(other) => {
            return Err(field_error(
                "has_primary_ip",
                format!("Enter a valid boolean: {other}"),
            ));
        }
    };
    let since = match request.one("last_updated__gte") {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc).timestamp_micros())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|t| t.and_utc().timestamp_micros())
                })
                .map_err(|_| field_error("last_updated__gte", "Enter a valid date/time.".into()))?,
        ),
    };
    let mut found: Vec<&MockDevice> = devices
        .values()
        .filter(|d| sites.is_empty() || sites.iter().any(|s| s == d.site_slug))
        .filter(|d| roles.is_empty() || roles.iter().any(|s| s == d.type_slug))
        .filter(|d| makers.is_empty() || makers.iter().any(|s| s == d.manufacturer_slug))
        .filter(|d| statuses.is_empty() || statuses.iter().any(|s| s == d.status))
        .filter(|d| tags.is_empty() || tags.iter().any(|t| d.tags.contains(t)))
        .filter(|d| ids.is_empty() || ids.contains(&d.id))
        .filter(|d| names.is_empty() || names.contains(&d.name.as_str()))
        .filter(|d| {
            search
                .as_ref()
                .is_none_or(|q| d.name.to_lowercase().contains(q))
        })
        .filter(|d| has_ip.is_none_or(|want| want != d.all_ips().is_empty()))
        .filter(|d| since.is_none_or(|s| d.last_updated_micros >= s))
        .collect();
    let ordering = request.one("ordering").unwrap_or("name");
    let mut keys: Vec<(&str, bool)> = Vec::new();
    for field in ordering.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (name, descending) = match field.strip_prefix('-') {
            Some(name) => (name, true),
            None => (field, false),
        };
        if !["id", "name", "last_updated"].contains(&name) {
            return Err(field_error(
                "ordering",
                format!("Invalid ordering field: {name}"),
            ));
        }
        keys.push((name, descending));
    }
    found.sort_by(|a, b| {
        for (name, descending) in &keys {
            let order = match *name {
                "id" => a.id.cmp(&b.id),
                "name" => a.name.cmp(&b.name),
                _ => a.last_updated_micros.cmp(&b.last_updated_micros),
            };
            let order = if *descending { order.reverse() } else { order };
            if order.is_ne() {
                return order;
            }
        }
        a.id.cmp(&b.id)
    });
    Ok(found.into_iter().map(|d| d.id).collect())
}

fn device_filter(request: &ListRequest) -> Result<Vec<u64>, ApiError> {
    request
        .all("device_id")
        .into_iter()
        .map(|v| {
            v.parse()
                .map_err(|_| field_error("device_id", format!("Enter a whole number: {v}")))
        })
        .collect()
}

impl NetboxState {
    fn check_token(&mut self, headers: &HeaderMap) -> Result<(), ApiError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let ok = match value.and_then(|v| v.split_once(' ')) {
            Some(("Token", token)) => self.tokens.iter().any(|t| t == token),
            Some(("Bearer", token)) => {
                token.starts_with("nbt_") && self.v2_tokens.iter().any(|t| t == token)
            }
            _ => false,
        };
        if ok {
            return Ok(());
        }
        self.stats.forbidden += 1;
        Err(detail(
            StatusCode::FORBIDDEN,
            if value.is_none() {
                "Authentication credentials were not provided."
            } else {
                "Invalid token"
            },
        ))
    }

    fn ordered(&mut self, request: &ListRequest) -> Result<Arc<Vec<u64>>, ApiError> {
        self.source.ordered(request.key(), |inventory| {
            select_devices(inventory, request)
        })
    }

    fn list(&mut self, kind: ListKind, headers: &HeaderMap, uri: &Uri) -> Response {
        match kind {
            ListKind::Devices => self.stats.device_requests += 1,
            ListKind::Interfaces => self.stats.interface_requests += 1,
            ListKind::MacAddresses => self.stats.mac_address_requests += 1,
            ListKind::IpAddresses => self.stats.ip_address_requests += 1,
        }
        if let Err(error) = self.check_token(headers) {
            return error.into_response();
        }
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        if let Some(fault) = self.source.faults.take() {
            self.stats.faults_injected += 1;
            return injected_response(&fault, path_and_query);
        }
        let base = match &self.next_base {
            Some(base) => base.trim_end_matches('/').to_string(),
            None => format!(
                "http://{}",
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost")
            ),
        };
        let result = ListRequest::parse(uri).and_then(|request| {
            let (total, results) = match kind {
                ListKind::Devices => self.device_page(&request, &base)?,
                ListKind::Interfaces => self.interface_page(&request)?,
                ListKind::MacAddresses => self.mac_page(&request)?,
                ListKind::IpAddresses => self.ip_page(&request, &base)?,
            };
            let end = request.offset + results.len();
            let next = (end < total).then(|| request.page_url(&base, uri.path(), end));
            let previous = (request.offset > 0).then(|| {
                request.page_url(
                    &base,
                    uri.path(),
                    request.offset.saturating_sub(request.limit),
                )
            });
            Ok(json!({"count": total, "next": next, "previous": previous, "results": results}))
        });
        match result {
            Ok(body) => {
                self.stats.pages_served += 1;
                json_response(StatusCode::OK, &body)
            }
            Err(error) => {
                self.stats.bad_requests += 1;
                error.into_response()
            }
        }
    }

    fn device_page(
        &mut self,
        request: &ListRequest,
        base: &str,
    ) -> Result<(usize, Vec<Value>), ApiError> {
        let ids = self.ordered(request)?;
        let brief = request
            .one("brief")
            .is_some_and(|v| v != "false" && v != "0");
        let fields: Option<Vec<&str>> = request
            .one("fields")
            .map(|f| f.split(',').map(str::trim).collect());
        let start = request.offset.min(ids.len());
        let end = (request.offset + request.limit).min(ids.len());
        let results: Vec<Value> = ids[start..end]
            .iter()
            .filter_map(|id| self.source.inventory.get(*id))
            .map(|d| {
                let mut value = device_json(d, base);
                if let Some(object) = value.as_object_mut() {
                    if brief {
                        object.retain(|k, _| {
                            ["id", "url", "display", "name", "description"].contains(&k.as_str())
                        });
                    } else if let Some(fields) = &fields {
                        object.retain(|k, _| fields.contains(&k.as_str()));
                    }
                }
                value
            })
            .collect();
        self.stats.devices_served += results.len() as u64;
        Ok((ids.len(), results))
    }

    fn interfaces(&self, request: &ListRequest) -> Result<Vec<(u64, &MockDevice)>, ApiError> {
        let wanted = device_filter(request)?;
        let mut devices: Vec<&MockDevice> = if wanted.is_empty() {
            self.source.inventory.devices().values().collect()
        } else {
            wanted
                .iter()
                .filter_map(|id| self.source.inventory.get(*id))
                .collect()
        };
        devices.sort_by_key(|d| d.id);
        devices.dedup_by_key(|d| d.id);
        Ok(devices.into_iter().map(|d| (d.id, d)).collect())
    }

    fn interface_page(&self, request: &ListRequest) -> Result<(usize, Vec<Value>), ApiError> {
        let mut all = Vec::new();
        for (_, device) in self.interfaces(request)? {
            let owner = json!({"id": device.id, "name": device.name, "display": device.name});
            for (k, mac) in device.macs.iter().enumerate() {
                let id = device.id * 10 + k as u64;
                let mac_object = json!({"id": id, "mac_address": mac, "display": mac});
                all.push(json!({
                    "id": id, "display": format!("eth{k}"), "name": format!("eth{k}"),
                    "device": owner, "type": {"value": "1000base-t", "label": "1000BASE-T (1GE)"},
                    "mac_address": mac, "primary_mac_address": mac_object, "mac_addresses": [mac_object],
                }));
            }
            all.push(json!({
                "id": device.id * 10 + 9, "display": "mgmt0", "name": "mgmt0", "device": owner,
                "type": {"value": "virtual", "label": "Virtual"},
                "mac_address": null, "primary_mac_address": null, "mac_addresses": [],
            }));
        }
        Ok(page_of(all, request))
    }

    fn mac_page(&self, request: &ListRequest) -> Result<(usize, Vec<Value>), ApiError> {
        let mut all = Vec::new();
        for (_, device) in self.interfaces(request)? {
            for (k, mac) in device.macs.iter().enumerate() {
                let interface = device.id * 10 + k as u64;
                all.push(json!({
                    "id": interface, "display": mac, "mac_address": mac,
                    "assigned_object_type": "dcim.interface", "assigned_object_id": interface,
                    "assigned_object": {"id": interface, "name": format!("eth{k}"),
                        "device": {"id": device.id, "name": device.name, "display": device.name}},
                }));
            }
        }
        Ok(page_of(all, request))
    }

    fn ip_page(&self, request: &ListRequest, base: &str) -> Result<(usize, Vec<Value>), ApiError> {
        let mut all = Vec::new();
        for (_, device) in self.interfaces(request)? {
            for (k, ip) in device.ipv4.iter().enumerate() {
                let mut value = ip_json(
                    base,
                    device.id * 10 + 4 + k as u64 * 100,
                    4,
                    format!("{ip}/24"),
                );
                value["assigned_object"] = json!({"id": device.id * 10, "name": "eth0", "device": {"id": device.id, "name": device.name}});
                all.push(value);
            }
            if let Some(ip) = device.ipv6 {
                let mut value = ip_json(base, device.id * 10 + 6, 6, format!("{ip}/64"));
                value["assigned_object"] = json!({"id": device.id * 10, "name": "eth0", "device": {"id": device.id, "name": device.name}});
                all.push(value);
            }
        }
        Ok(page_of(all, request))
    }
}

fn page_of(all: Vec<Value>, request: &ListRequest) -> (usize, Vec<Value>) {
    let total = all.len();
    let page = all
        .into_iter()
        .skip(request.offset)
        .take(request.limit)
        .collect();
    (total, page)
}

async fn list(shared: Shared, kind: ListKind, headers: HeaderMap, uri: Uri) -> Response {
    let (response, delay) = {
        let mut state = lock(&shared);
        let delay = state.source.faults.delay();
        (state.list(kind, &headers, &uri), delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

async fn status() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"netbox-version": "4.2.0", "python-version": "3.12.0", "plugins": {}}),
    )
}

/// Paths without their trailing slash redirect (Django's `APPEND_SLASH`);
/// anything else is 404.
async fn fallback(State(shared): State<Shared>, method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let slashed = format!("{path}/");
    if method == Method::GET
        && (DATA_PATHS.contains(&slashed.as_str()) || slashed == "/api/status/")
    {
        lock(&shared).stats.slash_redirects += 1;
        let location = match uri.query() {
            Some(query) => format!("{slashed}?{query}"),
            None => slashed,
        };
        return redirect(StatusCode::MOVED_PERMANENTLY, &location);
    }
    detail(StatusCode::NOT_FOUND, "Not found.").into_response()
}

/// A running NetBox mock and its knobs.
pub struct NetboxMock {
    server: MockServer,
    state: Shared,
}

impl SourceKnobs for NetboxMock {
    fn with_source<R>(&self, f: impl FnOnce(&mut SourceState) -> R) -> R {
        f(&mut lock(&self.state).source)
    }
}

impl NetboxMock {
    /// Starts a mock on `options.bind`.
    pub async fn start(options: NetboxOptions) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(NetboxState {
            source: SourceState::new(Inventory::new(options.inventory)),
            tokens: options.tokens,
            v2_tokens: options.v2_tokens,
            next_base: None,
            stats: NetboxStats::default(),
        }));
        let route = |kind: ListKind| {
            move |State(shared): State<Shared>, headers: HeaderMap, uri: Uri| {
                list(shared, kind, headers, uri)
            }
        };
        let router = Router::new()
            .route("/api/dcim/devices/", get(route(ListKind::Devices)))
            .route("/api/dcim/interfaces/", get(route(ListKind::Interfaces)))
            .route(
                "/api/dcim/mac-addresses/",
                get(route(ListKind::MacAddresses)),
            )
            .route("/api/ipam/ip-addresses/", get(route(ListKind::IpAddresses)))
            .route("/api/status/", get(status))
            .fallback(fallback)
            .with_state(state.clone());
        let server = MockServer::start(router, options.bind).await?;
        Ok(Self { server, state })
    }

    /// `http://127.0.0.1:<port>`: the integration's `endpoint`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Builds `next`/`previous` links on `base` instead of the request's
    /// `Host` (NetBox behind a proxy that passes its internal name).
    pub fn set_next_base(&self, base: Option<String>) {
        lock(&self.state).next_base = base;
    }

    /// What was served so far.
    pub fn stats(&self) -> NetboxStats {
        lock(&self.state).stats
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_render_with_cidr_primaries_and_microseconds() {
        let inventory = Inventory::new(InventoryParams {
            devices: 30,
            ..Default::default()
        });
        let d = device_json(inventory.get(10).unwrap(), "http://nb");
        assert_eq!(d["primary_ip4"]["address"], "10.0.0.10/24");
        assert_eq!(d["primary_ip6"]["address"], "2001:db8::a/64");
        assert_eq!(d["primary_ip"]["address"], "10.0.0.10/24");
        assert_eq!(d["last_updated"], "2025-01-01T00:00:03.010000Z");
        assert_eq!(d["role"]["slug"], "router");
        let none = device_json(inventory.get(30).unwrap(), "http://nb");
        assert!(none["primary_ip4"].is_null());
    }
}
