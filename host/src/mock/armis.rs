//! A mock Armis v1 REST API, faithful to the source reference:
//!
//! - `POST /api/v1/access_token/` with `secret_key` as a form field or a
//!   query parameter → `{"data": {"access_token", "expiration_utc"},
//!   "success": true}`; a wrong or missing key → 400.
//! - `GET /api/v1/search/` with `Authorization: <token>` (raw, no
//!   `Bearer`; anything else, or an expired token → 401); `aql` required
//!   (400 without); `from`/`length` (length at most 5000, 400 above);
//!   `orderBy=lastSeen` (else by id); `fields` projection. AQL: `in:devices`
//!   plus `type:`, `category:`, `manufacturer:`, `site:`, `tag:`, `name:`
//!   filters (comma = or, quotes allowed), `timeFrame:` accepted, and
//!   `after:<YYYY-MM-DDTHH:MM:SS>` = `lastSeen` at or after that second.
//! - Pages `{"data": {"count", "next", "prev", "total", "results"},
//!   "success": true}` with `next` null on the last page (0 with
//!   [`ArmisMock::set_next_zero_on_last`]); `ipAddress` comma-joined,
//!   `macAddress` joined with `,` `;` space or newline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::inventory::{Inventory, InventoryParams, MockDevice};
use super::source::{SourceKnobs, SourceState};
use super::{MockServer, injected_response, json_response, query_pairs};

/// The secret key the mock accepts unless told otherwise.
pub const DEFAULT_SECRET_KEY: &str = "mock-armis-secret-key";

/// Largest `length` Armis serves.
pub const MAX_LENGTH: u64 = 5000;

/// `length` when a search does not say.
pub const DEFAULT_LENGTH: u64 = 100;

/// How to start an Armis mock.
#[derive(Debug, Clone)]
pub struct ArmisOptions {
    /// The devices.
    pub inventory: InventoryParams,
    /// The secret key that gets tokens.
    pub secret_key: String,
    /// How long a token is valid.
    pub token_lifetime: Duration,
    /// Where to listen (port 0: any).
    pub bind: SocketAddr,
}

impl Default for ArmisOptions {
    fn default() -> Self {
        Self {
            inventory: InventoryParams::default(),
            secret_key: DEFAULT_SECRET_KEY.to_string(),
            token_lifetime: Duration::from_secs(15 * 60),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// What the mock served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArmisStats {
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused (wrong or missing key).
    pub token_refusals: u64,
    /// Requests to the search endpoint.
    pub search_requests: u64,
    /// Search requests answered 401.
    pub unauthorized: u64,
    /// Search requests answered 400.
    pub bad_requests: u64,
    /// Search requests answered with an injected fault.
    pub faults_injected: u64,
    /// Pages served (200).
    pub pages_served: u64,
    /// Devices in the pages served.
    pub devices_served: u64,
}

struct ArmisState {
    source: SourceState,
    secret_key: String,
    token_lifetime: Duration,
    tokens: HashMap<String, SystemTime>,
    issued: Vec<String>,
    expire_after_searches: Option<u64>,
    refuse_tokens: bool,
    next_zero_on_last: bool,
    stats: ArmisStats,
}

type Shared = Arc<Mutex<ArmisState>>;

fn lock(shared: &Shared) -> MutexGuard<'_, ArmisState> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running Armis mock and its knobs.
pub struct ArmisMock {
    server: MockServer,
    state: Shared,
}

fn armis_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, false)
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"success": false, "message": message}))
}

/// A parsed AQL device search.
#[derive(Debug, Default, PartialEq, Eq)]
struct Aql {
    filters: Vec<(String, Vec<String>)>,
    after: Option<i64>,
}

/// Splits AQL into `key:value` terms, keeping quoted values whole.
fn terms(aql: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in aql.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    terms.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        terms.push(current);
    }
    terms
}

fn parse_aql(aql: &str) -> Result<Aql, String> {
    let mut parsed = Aql::default();
    let mut devices = false;
    for term in terms(aql) {
        let Some((key, value)) = term.split_once(':') else {
            return Err(format!("Invalid AQL term: {term}"));
        };
        match key {
            "in" if value == "devices" => devices = true,
            "in" => return Err(format!("Unsupported search target: {value}")),
            "after" => {
                let at = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
                    .map_err(|_| format!("Invalid after: value {value}"))?;
                parsed.after = Some(at.and_utc().timestamp());
            }
            "timeFrame" => {}
            "type" | "category" | "manufacturer" | "site" | "tag" | "name" => {
                parsed.filters.push((
                    key.to_string(),
                    value.split(',').map(|v| v.trim().to_lowercase()).collect(),
                ))
            }
            other => return Err(format!("Unsupported AQL filter: {other}")),
        }
    }
    if !devices {
        return Err("AQL must search in:devices".to_string());
    }
    Ok(parsed)
}

fn matches(device: &MockDevice, aql: &Aql) -> bool {
    if aql.after.is_some_and(|after| device.last_seen < after) {
        return false;
    }
    aql.filters.iter().all(|(key, values)| {
        let fields: Vec<String> = match key.as_str() {
            "type" => vec![device.device_type.to_lowercase()],
            "category" => vec![device.category.to_lowercase()],
            "manufacturer" => vec![device.manufacturer.to_lowercase()],
            "site" => vec![device.site.to_lowercase()],
            "name" => vec![device.name.to_lowercase()],
            _ => device.tags.iter().map(|t| t.to_lowercase()).collect(),
        };
        values.iter().any(|v| fields.contains(v))
    })
}

/// A device as Armis returns it.
pub fn device_json(device: &MockDevice) -> Value {
    let ip_separator = if device.id.is_multiple_of(2) {
        ","
    } else {
        ", "
    };
    let mac_separator = [",", ";", " ", "\n"][(device.id % 4) as usize];
    let ipv4: Vec<String> = device.ipv4.iter().map(ToString::to_string).collect();
    json!({
        "id": device.id,
        "name": device.name,
        "ipAddress": if ipv4.is_empty() { Value::Null } else { Value::from(ipv4.join(ip_separator)) },
        "ipv6": device.ipv6.map(|ip| ip.to_string()),
        "macAddress": device.macs.join(mac_separator),
        "type": device.device_type,
        "category": device.category,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "operatingSystem": device.os,
        "operatingSystemVersion": device.os_version,
        "serialNumber": device.serial,
        "riskLevel": device.risk_level,
        "boundaries": "Corporate",
        "tags": device.tags,
        "site": {"name": device.site, "location": device.site_location},
        "firstSeen": armis_time(device.first_seen_time()),
        "lastSeen": armis_time(device.last_seen_time()),
        "customProperties": {},
    })
}

impl ArmisState {
    fn issue_token(&mut self) -> Value {
        let token: String = (0..32)
            .map(|_| format!("{:x}", rand::random::<u8>() % 16))
            .collect();
        let expires = SystemTime::now() + self.token_lifetime;
        self.tokens.insert(token.clone(), expires);
        self.issued.push(token.clone());
        self.stats.tokens_issued += 1;
        let expires: DateTime<Utc> = expires.into();
        json!({"data": {"access_token": token, "expiration_utc": armis_time(expires)}, "success": true})
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        self.tokens
            .get(value)
            .is_some_and(|expires| SystemTime::now() < *expires)
    }

    fn ordered_ids(&mut self, aql: &str, aql_parsed: &Aql, by_last_seen: bool) -> Arc<Vec<u64>> {
        let key = format!("{by_last_seen}|{aql}");
        let Ok(ids) = self.source.ordered::<Infallible>(key, |inventory| {
            let mut found: Vec<&MockDevice> = inventory
                .devices()
                .values()
                .filter(|d| matches(d, aql_parsed))
                .collect();
            if by_last_seen {
                found.sort_by_key(|d| (d.last_seen, d.id));
            }
            Ok(found.into_iter().map(|d| d.id).collect())
        });
        ids
    }

    fn search(&mut self, headers: &HeaderMap, uri: &Uri) -> Response {
        self.stats.search_requests += 1;
        if self.refuse_tokens || !self.authorized(headers) {
            self.stats.unauthorized += 1;
            return error(StatusCode::UNAUTHORIZED, "Invalid access token");
        }
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        if let Some(fault) = self.source.faults.take() {
            self.stats.faults_injected += 1;
            return injected_response(&fault, path_and_query);
        }
        match self.page(uri) {
            Ok(body) => {
                if let Some(left) = self.expire_after_searches.as_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.tokens.clear();
                        self.expire_after_searches = None;
                    }
                }
                json_response(StatusCode::OK, &body)
            }
            Err(message) => {
                self.stats.bad_requests += 1;
                error(StatusCode::BAD_REQUEST, &message)
            }
        }
    }

    fn page(&mut self, uri: &Uri) -> Result<Value, String> {
        let params = query_pairs(uri.query().unwrap_or(""));
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let aql = param("aql")
            .filter(|a| !a.trim().is_empty())
            .ok_or("Missing required parameter: aql")?
            .to_string();
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match param(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| format!("Invalid {name}: {v}")),
            }
        };
        let from = number("from", 0)?;
        let length = number("length", DEFAULT_LENGTH)?;
        if length == 0 || length > MAX_LENGTH {
            return Err(format!("length must be between 1 and {MAX_LENGTH}"));
        }
        let by_last_seen = match param("orderBy") {
            None | Some("id") => false,
            Some("lastSeen") => true,
            Some(other) => return Err(format!("Unsupported orderBy: {other}")),
        };
        let fields: Option<Vec<String>> =
            param("fields").map(|f| f.split(',').map(|s| s.trim().to_string()).collect());
        let parsed = parse_aql(&aql)?;
        let ids = self.ordered_ids(&aql, &parsed, by_last_seen);
        let total = ids.len() as u64;
        let start = from.min(total) as usize;
        let end = (from.saturating_add(length)).min(total) as usize;
        let results: Vec<Value> = ids[start..end]
            .iter()
            .filter_map(|id| self.source.inventory.get(*id))
            .map(|d| {
                let mut value = device_json(d);
                if let (Some(fields), Some(object)) = (&fields, value.as_object_mut()) {
                    object.retain(|k, _| k == "id" || fields.contains(k));
                }
                value
            })
            .collect();
        let count = results.len() as u64;
        let next = if (end as u64) < total {
            Value::from(end as u64)
        } else if self.next_zero_on_last {
            Value::from(0)
        } else {
            Value::Null
        };
        let prev = if from > 0 {
            Value::from(from.saturating_sub(length))
        } else {
            Value::Null
        };
        self.stats.pages_served += 1;
        self.stats.devices_served += count;
        Ok(json!({
            "data": {"count": count, "next": next, "prev": prev, "total": total, "results": results},
            "success": true,
        }))
    }
}

async fn token(State(shared): State<Shared>, uri: Uri, body: Bytes) -> Response {
    let mut state = lock(&shared);
    state.stats.token_requests += 1;
    let mut pairs = query_pairs(uri.query().unwrap_or(""));
    pairs.extend(query_pairs(&String::from_utf8_lossy(&body)));
    let key = pairs
        .iter()
        .find(|(k, _)| k == "secret_key")
        .map(|(_, v)| v.clone());
    match key {
        Some(key) if key == state.secret_key => {
            let body = state.issue_token();
            json_response(StatusCode::OK, &body)
        }
        Some(_) => {
            state.stats.token_refusals += 1;
            error(StatusCode::BAD_REQUEST, "Invalid secret key")
        }
        None => {
            state.stats.token_refusals += 1;
            error(
                StatusCode::BAD_REQUEST,
                "Missing required parameter: secret_key",
            )
        }
    }
}

async fn search(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let (response, delay) = {
        let mut state = lock(&shared);
        let delay = state.source.faults.delay();
        (state.search(&headers, &uri), delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
}

impl SourceKnobs for ArmisMock {
    fn with_source<R>(&self, f: impl FnOnce(&mut SourceState) -> R) -> R {
        f(&mut lock(&self.state).source)
    }
}

impl ArmisMock {
    /// Starts a mock on `options.bind`.
    pub async fn start(options: ArmisOptions) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(ArmisState {
            source: SourceState::new(Inventory::new(options.inventory)),
            secret_key: options.secret_key,
            token_lifetime: options.token_lifetime,
            tokens: HashMap::new(),
            issued: Vec::new(),
            expire_after_searches: None,
            refuse_tokens: false,
            next_zero_on_last: false,
            stats: ArmisStats::default(),
        }));
        let router = Router::new()
            .route("/api/v1/access_token/", post(token))
            .route("/api/v1/access_token", post(token))
            .route("/api/v1/search/", get(search))
            .route("/api/v1/search", get(search))
            .fallback(not_found)
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

    /// The secret key that gets tokens.
    pub fn secret_key(&self) -> String {
        lock(&self.state).secret_key.clone()
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        lock(&self.state).token_lifetime = lifetime;
    }

    /// Invalidates every token issued so far.
    pub fn expire_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    /// Invalidates every token issued so far after `searches` more
    /// successful searches (a token expiring mid-run).
    pub fn expire_tokens_after_searches(&self, searches: u64) {
        lock(&self.state).expire_after_searches = Some(searches.max(1));
    }

    /// Whether searches refuse every token with 401, even fresh ones (an
    /// account that lost its API permission).
    pub fn refuse_tokens(&self, refuse: bool) {
        lock(&self.state).refuse_tokens = refuse;
    }

    /// Whether the last page says `next: 0` instead of `null`.
    pub fn set_next_zero_on_last(&self, zero: bool) {
        lock(&self.state).next_zero_on_last = zero;
    }

    /// What was served so far.
    pub fn stats(&self) -> ArmisStats {
        lock(&self.state).stats
    }

    /// Every token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state).issued.clone()
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
    fn aql_terms_filters_and_after() {
        assert_eq!(
            terms(r#"in:devices type:"Access Point",Switch  timeFrame:"3 Days""#),
            ["in:devices", "type:Access Point,Switch", "timeFrame:3 Days"]
        );
        let aql = parse_aql("in:devices type:Switch after:2025-01-01T00:00:10").unwrap();
        assert_eq!(aql.after, Some(1_735_689_610));
        assert_eq!(
            aql.filters,
            [("type".to_string(), vec!["switch".to_string()])]
        );
        assert!(parse_aql("type:Switch").unwrap_err().contains("in:devices"));
        assert!(parse_aql("in:alerts").is_err());
        assert!(
            parse_aql("in:devices color:red")
                .unwrap_err()
                .contains("color")
        );
        assert!(parse_aql("in:devices after:yesterday").is_err());
    }

    #[test]
    fn devices_render_with_the_armis_quirks() {
        let inventory = Inventory::new(InventoryParams {
            devices: 30,
            ..Default::default()
        });
        let multi = device_json(inventory.get(25).unwrap());
        assert_eq!(multi["ipAddress"], "10.0.0.25, 172.16.0.25, 100.64.0.25");
        assert_eq!(multi["lastSeen"], "2025-01-01T00:00:08.000000+00:00");
        let two_macs = device_json(inventory.get(4).unwrap());
        assert_eq!(
            two_macs["macAddress"],
            "00:1B:44:00:00:04,00:1B:45:00:00:04"
        );
        let v6_only = device_json(inventory.get(30).unwrap());
        assert!(v6_only["ipAddress"].is_null());
        assert_eq!(v6_only["ipv6"], "2001:db8::1e");
    }
}
