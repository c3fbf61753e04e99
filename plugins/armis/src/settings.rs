//! The Armis integration's configuration: the `settings` object, and the
//! [`Plan`] a run follows once every field is checked.

use schemars::JsonSchema;
use serde::Deserialize;
use sr_adapter_sdk::incremental::Schedule;
use sr_adapter_sdk::url::Url;
use sr_adapter_sdk::{AdapterError, Config};

/// Largest page Armis serves (`length`).
pub const MAX_PAGE_LENGTH: u32 = 5000;

/// Page length when the configuration sets no `page_size`.
pub const DEFAULT_PAGE_LENGTH: u32 = 1000;

/// Label and AQL of the query run when the configuration lists none.
pub const DEFAULT_QUERY: (&str, &str) = ("all", "in:devices");

/// The `settings` object of an Armis integration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Incremental runs: after a successful run, the next one asks Armis
    /// only for devices seen since (`after:` with `orderBy=lastSeen`).
    /// `false`: every run reads the whole inventory.
    #[serde(default = "enabled")]
    pub incremental: bool,
    /// Every Nth run (run numbers N, 2N, ...) reads the whole inventory even
    /// with a cursor, so devices removed from Armis are retired. 0 (the
    /// default): only runs without a cursor do.
    #[serde(default)]
    pub full_every_runs: u64,
    /// Keep each device's raw Armis JSON in its update, for audit.
    #[serde(default)]
    pub keep_raw: bool,
}

fn enabled() -> bool {
    true
}

/// One labelled AQL query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedQuery {
    /// Label stamped on the devices it finds (`query_label`).
    pub label: String,
    /// The AQL, trimmed.
    pub aql: String,
}

/// A checked configuration: what a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Armis base URL (`https://<tenant>.armis.com`), without `/api/v1`.
    pub base: Url,
    /// `credentials.secret_key`.
    pub secret_key: String,
    /// The queries, in configuration order.
    pub queries: Vec<PlannedQuery>,
    /// Devices per search page (`length`).
    pub length: u32,
    /// `settings.incremental` and `settings.full_every_runs`.
    pub schedule: Schedule,
    /// `settings.keep_raw`.
    pub keep_raw: bool,
}

impl Plan {
    /// Checks a configuration. Errors are `invalid-config` naming the field.
    pub fn from_config(config: &Config<Settings>) -> Result<Self, AdapterError> {
        // Both `https://t.armis.com` and `https://t.armis.com/api/v1` work.
        let base = config.endpoint_url()?.strip_path_suffix("/api/v1");
        let secret_key = config.credential("secret_key")?;
        let length = match config.page_size {
            None => DEFAULT_PAGE_LENGTH,
            Some(n) if (1..=MAX_PAGE_LENGTH).contains(&n) => n,
            Some(n) => {
                return Err(AdapterError::invalid_config(
                    "page_size",
                    format!("Armis serves 1 to {MAX_PAGE_LENGTH} devices per page, got {n}"),
                ));
            }
        };
        let mut queries = config.plan_queries(|i, label, query| {
            let aql = query.query.trim();
            if !aql.contains("in:devices") {
                return Err(AdapterError::invalid_config(
                    &format!("queries[{i}].query"),
                    "must search devices: start the AQL with `in:devices`",
                ));
            }
            if aql.contains("after:") {
                return Err(AdapterError::invalid_config(
                    &format!("queries[{i}].query"),
                    "must not use `after:`: the adapter adds it for incremental runs",
                ));
            }
            Ok(PlannedQuery {
                label: label.to_string(),
                aql: aql.to_string(),
            })
        })?;
        if queries.is_empty() {
            queries.push(PlannedQuery {
                label: DEFAULT_QUERY.0.to_string(),
                aql: DEFAULT_QUERY.1.to_string(),
            });
        }
        Ok(Self {
            base,
            secret_key,
            queries,
            length,
            schedule: Schedule {
                incremental: config.settings.incremental,
                full_every_runs: config.settings.full_every_runs,
            },
            keep_raw: config.settings.keep_raw,
        })
    }

    /// The queries as the cursor fingerprints them: `(label, AQL)`.
    pub fn labelled_queries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.queries
            .iter()
            .map(|q| (q.label.as_str(), q.aql.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Result<Plan, AdapterError> {
        Plan::from_config(&Config::from_json(json)?)
    }

    fn invalid(json: &str) -> String {
        match plan(json) {
            Err(AdapterError::InvalidConfig(m)) => m,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    const BASE: &str =
        r#""endpoint": "https://acme.armis.com", "credentials": {"secret_key": "k"}"#;

    #[test]
    fn defaults_to_one_query_over_all_devices() {
        let p = plan(&format!("{{{BASE}}}")).unwrap();
        assert_eq!(
            p.queries,
            [PlannedQuery {
                label: "all".into(),
                aql: "in:devices".into()
            }]
        );
        assert_eq!(p.length, 1000);
        assert_eq!(p.schedule, Schedule::default());
        assert!(!p.keep_raw);
        assert_eq!(p.base.to_string(), "https://acme.armis.com/");
    }

    #[test]
    fn api_suffix_of_the_endpoint_is_dropped() {
        for endpoint in [
            "https://acme.armis.com/api/v1",
            "https://acme.armis.com/api/v1/",
        ] {
            let p = plan(&format!(
                r#"{{"endpoint": "{endpoint}", "credentials": {{"secret_key": "k"}}}}"#
            ))
            .unwrap();
            assert_eq!(
                p.base.join_path("api/v1/search/").to_string(),
                "https://acme.armis.com/api/v1/search/"
            );
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert!(invalid(r#"{"credentials": {"secret_key": "k"}}"#).starts_with("endpoint:"));
        assert!(
            invalid(r#"{"endpoint": "https://a.armis.com"}"#)
                .starts_with("credentials.secret_key:")
        );
        assert_eq!(
            invalid(&format!(r#"{{{BASE}, "page_size": 5001}}"#)),
            "page_size: Armis serves 1 to 5000 devices per page, got 5001"
        );
        assert!(
            invalid(&format!(
                r#"{{{BASE}, "queries": [{{"label": "", "query": "in:devices"}}]}}"#
            ))
            .starts_with("queries[0].label: required")
        );
        assert!(invalid(&format!(
            r#"{{{BASE}, "queries": [{{"label": "a", "query": "in:devices"}}, {{"label": "a", "query": "in:devices type:x"}}]}}"#
        ))
        .starts_with("queries[1].label: `a` is used"));
        assert!(
            invalid(&format!(
                r#"{{{BASE}, "queries": [{{"label": "a", "query": "in:alerts"}}]}}"#
            ))
            .starts_with("queries[0].query: must search devices")
        );
        assert!(invalid(&format!(
            r#"{{{BASE}, "queries": [{{"label": "a", "query": "in:devices after:2024-01-01T00:00:00"}}]}}"#
        ))
        .starts_with("queries[0].query: must not use `after:`"));
        assert!(
            invalid(&format!(
                r#"{{{BASE}, "settings": {{"incremantal": false}}}}"#
            ))
            .starts_with("settings.incremantal: unknown field")
        );
    }

    #[test]
    fn settings_make_the_schedule() {
        let p = plan(&format!(
            r#"{{{BASE}, "settings": {{"incremental": false, "full_every_runs": 3, "keep_raw": true}}}}"#
        ))
        .unwrap();
        assert_eq!(
            p.schedule,
            Schedule {
                incremental: false,
                full_every_runs: 3
            }
        );
        assert!(p.keep_raw);
    }
}
