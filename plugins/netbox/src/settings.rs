//! The NetBox integration's configuration: the `settings` object, the
//! queries (NetBox filter query strings), and the [`Plan`] a run follows.

use schemars::JsonSchema;
use serde::Deserialize;
use sr_adapter_sdk::incremental::Schedule;
use sr_adapter_sdk::url::Url;
use sr_adapter_sdk::{AdapterError, Config};

/// Devices per page when the configuration sets no `page_size`: NetBox's
/// default `MAX_PAGE_SIZE`.
pub const DEFAULT_LIMIT: u32 = 1000;

/// Largest `page_size` accepted. NetBox caps pages at its `MAX_PAGE_SIZE`
/// (1000 by default); the adapter follows `next` either way.
pub const MAX_LIMIT: u32 = 5000;

/// Query parameters the adapter sets itself; a query may not.
pub const RESERVED_PARAMETERS: [&str; 8] = [
    "limit",
    "offset",
    "ordering",
    "last_updated__gte",
    "brief",
    "fields",
    "format",
    "exclude",
];

/// Where MAC addresses are read from when `fetch_macs` is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MacSource {
    /// `/api/dcim/interfaces/` (`mac_address`, and `mac_addresses` on 4.2+).
    #[default]
    Interfaces,
    /// `/api/dcim/mac-addresses/` (NetBox 4.2+).
    MacAddresses,
}

/// The `settings` object of a NetBox integration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Incremental runs: after a successful run, the next one asks NetBox
    /// only for devices changed since (`last_updated__gte`). `false`: every
    /// run reads the whole inventory.
    #[serde(default = "enabled")]
    pub incremental: bool,
    /// Every Nth run (run numbers N, 2N, ...) reads the whole inventory even
    /// with a cursor, so deleted devices are retired and interface (MAC)
    /// changes, which do not touch a device's `last_updated`, are picked
    /// up. 0 (the default): only runs without a cursor do.
    #[serde(default)]
    pub full_every_runs: u64,
    /// Also read each device's MAC addresses (one extra request per 50
    /// devices).
    #[serde(default)]
    pub fetch_macs: bool,
    /// Where MACs come from: `interfaces` (every NetBox version) or
    /// `mac-addresses` (NetBox 4.2+).
    #[serde(default)]
    pub mac_source: MacSource,
    /// Keep each device's raw NetBox JSON in its update, for audit.
    #[serde(default)]
    pub keep_raw: bool,
}

fn enabled() -> bool {
    true
}

/// One labelled query: NetBox device filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedQuery {
    /// Label stamped on the devices it finds (`query_label`).
    pub label: String,
    /// The filter, as configured (for the cursor fingerprint).
    pub text: String,
    /// Decoded `key=value` pairs, in order.
    pub filters: Vec<(String, String)>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The NetBox base URL, without `/api`.
    pub base: Url,
    /// The whole `Authorization` value: `Token <t>` or `Bearer nbt_...`.
    pub authorization: String,
    /// The queries, in configuration order.
    pub queries: Vec<PlannedQuery>,
    /// Devices per page (`limit`).
    pub limit: u32,
    /// `settings.incremental` and `settings.full_every_runs`.
    pub schedule: Schedule,
    /// `settings.fetch_macs`.
    pub fetch_macs: bool,
    /// `settings.mac_source`.
    pub mac_source: MacSource,
    /// `settings.keep_raw`.
    pub keep_raw: bool,
}

/// The `Authorization` header for a NetBox token: v2 tokens
/// (`nbt_<key>.<token>`, NetBox 4.5+) are bearer tokens, classic ones use
/// the `Token` scheme.
pub fn authorization(token: &str) -> String {
    let token = token.trim();
    if token.starts_with("nbt_") {
        format!("Bearer {token}")
    } else {
        format!("Token {token}")
    }
}

/// Decodes `%XX` and `+` of one query component.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Parses a filter query string (`site=berlin&status=active`, a leading
/// `?` allowed) into decoded pairs; the error says what is wrong.
pub fn parse_filters(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut filters = Vec::new();
    for part in text.trim().trim_start_matches('?').split('&') {
        if part.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("`{part}` is not key=value"));
        };
        let key = percent_decode(key.trim())
            .ok_or_else(|| format!("`{key}` is not valid percent-encoding"))?;
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("`{value}` is not valid percent-encoding"))?;
        if key.is_empty() {
            return Err(format!("`{part}` has no filter name"));
        }
        if RESERVED_PARAMETERS.contains(&key.as_str()) {
            return Err(format!("`{key}` is set by the adapter; remove it"));
        }
        filters.push((key, value));
    }
    Ok(filters)
}

impl Plan {
    /// Checks a configuration. Errors are `invalid-config` naming the field.
    pub fn from_config(config: &Config<Settings>) -> Result<Self, AdapterError> {
        // Both `https://netbox.example.com` and `.../api` work.
        let base = config.endpoint_url()?.strip_path_suffix("/api");
        let token = config.credential("token")?;
        if token.trim().is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(AdapterError::invalid_config(
                "credentials.token",
                "must be a NetBox API token without spaces (40 hex digits, or nbt_<key>.<token>)",
            ));
        }
        let limit = match config.page_size {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(AdapterError::invalid_config(
                    "page_size",
                    format!("from 1 to {MAX_LIMIT} devices per page, got {n}"),
                ));
            }
        };
        let mut queries = config.plan_queries(|i, label, query| {
            let filters = parse_filters(&query.query)
                .map_err(|e| AdapterError::invalid_config(&format!("queries[{i}].query"), e))?;
            Ok(PlannedQuery {
                label: label.to_string(),
                text: query.query.trim().to_string(),
                filters,
            })
        })?;
        if queries.is_empty() {
            queries.push(PlannedQuery {
                label: "all".to_string(),
                text: String::new(),
                filters: Vec::new(),
            });
        }
        Ok(Self {
            base,
            authorization: authorization(&token),
            queries,
            limit,
            schedule: Schedule {
                incremental: config.settings.incremental,
                full_every_runs: config.settings.full_every_runs,
            },
            fetch_macs: config.settings.fetch_macs,
            mac_source: config.settings.mac_source,
            keep_raw: config.settings.keep_raw,
        })
    }

    /// The queries as the cursor fingerprints them: `(label, filter)`.
    pub fn labelled_queries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.queries
            .iter()
            .map(|q| (q.label.as_str(), q.text.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""endpoint": "https://nb.example.com", "credentials": {"token": "0123456789abcdef0123456789abcdef01234567"}"#;

    fn plan(json: &str) -> Result<Plan, AdapterError> {
        Plan::from_config(&Config::from_json(json)?)
    }

    fn invalid(json: &str) -> String {
        match plan(json) {
            Err(AdapterError::InvalidConfig(m)) => m,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn token_style_decides_the_scheme() {
        assert_eq!(authorization("0123abcd"), "Token 0123abcd");
        assert_eq!(authorization("nbt_k3y.s3cret"), "Bearer nbt_k3y.s3cret");
    }

    #[test]
    fn queries_are_filter_strings() {
        assert_eq!(
            parse_filters("?site=berlin&status=active&tag=core%20net&role=a+b&").unwrap(),
            [
                ("site".to_string(), "berlin".to_string()),
                ("status".to_string(), "active".to_string()),
                ("tag".to_string(), "core net".to_string()),
                ("role".to_string(), "a b".to_string()),
            ]
        );
        assert_eq!(parse_filters("").unwrap(), []);
        assert!(parse_filters("site").unwrap_err().contains("not key=value"));
        assert!(
            parse_filters("limit=5")
                .unwrap_err()
                .contains("set by the adapter")
        );
        assert!(parse_filters("site=%zz").unwrap_err().contains("percent"));
    }

    #[test]
    fn defaults_and_errors() {
        let p = plan(&format!("{{{BASE}}}")).unwrap();
        assert_eq!(p.queries.len(), 1);
        assert_eq!(p.queries[0].label, "all");
        assert_eq!(p.limit, 1000);
        assert_eq!(p.schedule, Schedule::default());
        assert!(p.authorization.starts_with("Token "));
        assert_eq!(p.base.to_string(), "https://nb.example.com/");
        let p = plan(
            r#"{"endpoint": "https://nb.example.com/api/", "credentials": {"token": "nbt_a.b"}}"#,
        )
        .unwrap();
        assert_eq!(
            p.base.join_path("api/dcim/devices/").to_string(),
            "https://nb.example.com/api/dcim/devices/"
        );
        assert_eq!(p.authorization, "Bearer nbt_a.b");
        assert!(
            invalid(r#"{"endpoint": "https://nb.example.com"}"#).starts_with("credentials.token:")
        );
        assert!(
            invalid(r#"{"endpoint": "https://nb.example.com", "credentials": {"token": "a b"}}"#)
                .starts_with("credentials.token: must be")
        );
        assert!(invalid(&format!(r#"{{{BASE}, "page_size": 0}}"#)).starts_with("page_size:"));
        assert!(
            invalid(&format!(
                r#"{{{BASE}, "queries": [{{"label": "a", "query": "offset=3"}}]}}"#
            ))
            .starts_with("queries[0].query: `offset` is set by the adapter")
        );
        assert!(invalid(&format!(
            r#"{{{BASE}, "queries": [{{"label": "a", "query": ""}}, {{"label": "a", "query": "site=x"}}]}}"#
        ))
        .starts_with("queries[1].label"));
        assert!(
            invalid(&format!(
                r#"{{{BASE}, "settings": {{"mac_source": "arp"}}}}"#
            ))
            .starts_with("settings.mac_source:")
        );
        let p = plan(&format!(
            r#"{{{BASE}, "settings": {{"fetch_macs": true, "mac_source": "mac-addresses"}}}}"#
        ))
        .unwrap();
        assert!(p.fetch_macs);
        assert_eq!(p.mac_source, MacSource::MacAddresses);
        let p = plan(&format!(
            r#"{{{BASE}, "settings": {{"incremental": false, "full_every_runs": 4}}}}"#
        ))
        .unwrap();
        assert_eq!(
            p.schedule,
            Schedule {
                incremental: false,
                full_every_runs: 4
            }
        );
    }
}
