//! [`Config`]: the integration's configuration, parsed and typed.
//!
//! The host passes the whole integration-source document as JSON (the
//! `SourceConfig` of the sync config: `id`, `name`, `type`, tenant fields and
//! more). The fields adapters need are typed here; everything else is
//! ignored, so the document can grow without breaking adapters.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::AdapterError;
use crate::url::Url;

/// The configuration of one integration, with the adapter's own settings
/// typed as `S`.
///
/// Unknown top-level keys are ignored. A missing `settings` object is read
/// as `{}`, so `S`'s serde defaults decide what an empty configuration
/// means.
#[derive(Clone, Deserialize, JsonSchema)]
#[schemars(
    title = "Integration configuration",
    description = "Configuration of one integration source. Keys not listed here are ignored."
)]
pub struct Config<S> {
    /// Base URL of the source API. Empty for sources without one (generators).
    #[serde(default)]
    pub endpoint: String,
    /// Secrets for the source (`token`, `secret_key`, `username`, ...);
    /// never logged.
    #[serde(default)]
    pub credentials: BTreeMap<String, serde_json::Value>,
    /// Labelled queries in the source's own language.
    #[serde(default)]
    pub queries: Vec<Query>,
    /// Devices per page, both requested from the source and handed to the
    /// host; each adapter documents its own limits.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// CIDRs whose devices the host drops before delivery (the host applies
    /// it; adapters may use it to skip work).
    #[serde(default)]
    pub network_blacklist: Vec<String>,
    /// Partition of this integration's devices.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// The adapter's own settings; absent means `{}`.
    pub settings: S,
}

/// One labelled query of an integration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct Query {
    /// Label stamped on the devices this query finds (`query_label`).
    pub label: String,
    /// The query in the source's language (Armis AQL, a NetBox filter, ...).
    pub query: String,
    /// Sweep modes for devices found by this query.
    #[serde(default)]
    pub sweep_modes: Vec<String>,
}

/// Settings of an adapter that has none: `settings` must be absent or `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

fn default_partition() -> String {
    "default".to_string()
}

impl<S: DeserializeOwned> Config<S> {
    /// Parses the configuration JSON the host passes to `validate` and
    /// `discover`.
    ///
    /// Errors are [`AdapterError::InvalidConfig`] whose message starts with
    /// the path of the offending field, e.g.
    /// `settings.count: invalid type: string "x", expected u64`.
    pub fn from_json(json: &str) -> Result<Self, AdapterError> {
        let mut document: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| AdapterError::invalid_config("config", format!("not valid JSON: {e}")))?;
        let Some(object) = document.as_object_mut() else {
            return Err(AdapterError::invalid_config(
                "config",
                "expected a JSON object",
            ));
        };
        match object.get("settings") {
            None | Some(serde_json::Value::Null) => {
                object.insert(
                    "settings".into(),
                    serde_json::Value::Object(Default::default()),
                );
            }
            Some(_) => {}
        }
        serde_path_to_error::deserialize(document).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "config" } else { path.as_str() };
            AdapterError::invalid_config(field, e.inner())
        })
    }
}

impl<S> Config<S> {
    /// The `endpoint` as a URL, or an [`AdapterError::InvalidConfig`] naming
    /// `endpoint` when it is empty or not an absolute `http(s)` URL.
    pub fn endpoint_url(&self) -> Result<Url, AdapterError> {
        if self.endpoint.trim().is_empty() {
            return Err(AdapterError::invalid_config(
                "endpoint",
                "required: the base URL of the source API, e.g. https://inventory.example.com",
            ));
        }
        Url::parse(self.endpoint.trim()).map_err(|e| AdapterError::invalid_config("endpoint", e))
    }

    /// The configured queries, each turned into what the adapter runs, in
    /// configuration order. Every label is checked first: trimmed, it must
    /// not be empty and must differ from the earlier ones (errors name
    /// `queries[i].label`); then `plan(i, label, query)` gets the trimmed
    /// label and checks the query itself (its errors should name
    /// `queries[i].query`). An empty list stays empty: the adapter decides
    /// what no queries means.
    ///
    /// ```
    /// use sr_adapter_sdk::{AdapterError, Config, NoSettings};
    ///
    /// let config: Config<NoSettings> = Config::from_json(
    ///     r#"{"queries": [{"label": " all ", "query": "*"}, {"label": "all", "query": "x"}]}"#,
    /// )?;
    /// let planned = config.plan_queries(|_, label, query| Ok((label.to_string(), query.query.clone())));
    /// assert_eq!(
    ///     planned,
    ///     Err(AdapterError::invalid_config(
    ///         "queries[1].label",
    ///         "`all` is used by an earlier query; labels must be unique"
    ///     ))
    /// );
    /// # Ok::<(), AdapterError>(())
    /// ```
    pub fn plan_queries<T>(
        &self,
        mut plan: impl FnMut(usize, &str, &Query) -> Result<T, AdapterError>,
    ) -> Result<Vec<T>, AdapterError> {
        let mut labels: Vec<&str> = Vec::with_capacity(self.queries.len());
        let mut planned = Vec::with_capacity(self.queries.len());
        for (i, query) in self.queries.iter().enumerate() {
            let label = query.label.trim();
            if label.is_empty() {
                return Err(AdapterError::invalid_config(
                    &format!("queries[{i}].label"),
                    "required: a name for the devices this query finds",
                ));
            }
            if labels.contains(&label) {
                return Err(AdapterError::invalid_config(
                    &format!("queries[{i}].label"),
                    format!("`{label}` is used by an earlier query; labels must be unique"),
                ));
            }
            planned.push(plan(i, label, query)?);
            labels.push(label);
        }
        Ok(planned)
    }

    /// The credential `name` as a non-empty string, or an
    /// [`AdapterError::InvalidConfig`] naming `credentials.<name>`. Numbers
    /// are accepted and turned into their decimal text.
    pub fn credential(&self, name: &str) -> Result<String, AdapterError> {
        let field = format!("credentials.{name}");
        match self.credentials.get(name) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => Err(
                AdapterError::invalid_config(&field, "required, and must not be empty"),
            ),
            Some(_) => Err(AdapterError::invalid_config(&field, "expected a string")),
        }
    }
}

/// Credentials are redacted: a `Config` can be logged or printed safely.
impl<S: fmt::Debug> fmt::Debug for Config<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials: Vec<&str> = self.credentials.keys().map(String::as_str).collect();
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("credentials", &format_args!("<redacted: {credentials:?}>"))
            .field("queries", &self.queries)
            .field("page_size", &self.page_size)
            .field("network_blacklist", &self.network_blacklist)
            .field("partition", &self.partition)
            .field("settings", &self.settings)
            .finish()
    }
}

/// The JSON Schema (draft 2020-12) of `Config<S>`, as the `config-schema`
/// string of `describe`.
pub fn config_schema<S: JsonSchema>() -> String {
    let mut schema = serde_json::Value::from(schemars::schema_for!(Config<S>));
    // `settings` may be left out (it reads as `{}`), so it is not required.
    if let Some(object) = schema.as_object_mut() {
        object.remove("required");
    }
    schema.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[serde(default = "one")]
        count: u64,
        #[serde(default)]
        nested: Nested,
    }

    #[derive(Debug, Default, Deserialize, JsonSchema, PartialEq)]
    struct Nested {
        #[serde(default)]
        percent: u8,
    }

    fn one() -> u64 {
        1
    }

    fn err(json: &str) -> String {
        match Config::<Settings>::from_json(json) {
            Err(AdapterError::InvalidConfig(m)) => m,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_fields_and_ignores_unknown_keys() {
        let c = Config::<Settings>::from_json(
            r#"{"id":"x","name":"n","type":"faker","tenant_id":"t","endpoint":"https://a.example",
                "credentials":{"token":"s3cret","port":8443},
                "queries":[{"label":"all","query":"in:devices"}],
                "page_size":250,"network_blacklist":["10.0.0.0/8"],"partition":"p1",
                "settings":{"count":7}}"#,
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://a.example");
        assert_eq!(c.credential("token").unwrap(), "s3cret");
        assert_eq!(c.credential("port").unwrap(), "8443");
        assert_eq!(c.queries[0].label, "all");
        assert!(c.queries[0].sweep_modes.is_empty());
        assert_eq!(c.page_size, Some(250));
        assert_eq!(c.network_blacklist, vec!["10.0.0.0/8"]);
        assert_eq!(c.partition, "p1");
        assert_eq!(c.settings.count, 7);
    }

    #[test]
    fn missing_or_null_settings_read_as_empty_object() {
        let c = Config::<Settings>::from_json("{}").unwrap();
        assert_eq!(
            c.settings,
            Settings {
                count: 1,
                nested: Nested::default()
            }
        );
        assert_eq!(c.partition, "default");
        let c = Config::<Settings>::from_json(r#"{"settings":null}"#).unwrap();
        assert_eq!(c.settings.count, 1);
    }

    #[test]
    fn no_settings_accepts_nothing_but_an_empty_object() {
        assert!(Config::<NoSettings>::from_json("{}").is_ok());
        assert!(Config::<NoSettings>::from_json(r#"{"settings": {}}"#).is_ok());
        assert!(matches!(
            Config::<NoSettings>::from_json(r#"{"settings": {"x": 1}}"#),
            Err(AdapterError::InvalidConfig(m)) if m.starts_with("settings.x: unknown field")
        ));
    }

    #[test]
    fn errors_name_the_field_path() {
        assert_eq!(
            err(r#"{"settings":{"count":"x"}}"#),
            r#"settings.count: invalid type: string "x", expected u64"#
        );
        assert_eq!(
            err(r#"{"settings":{"nested":{"percent":300}}}"#),
            "settings.nested.percent: invalid value: integer `300`, expected u8"
        );
        assert_eq!(
            err(r#"{"settings":{"cont":1}}"#),
            "settings.cont: unknown field `cont`, expected `count` or `nested`"
        );
        assert_eq!(
            err(r#"{"queries":[{"label":"a"}]}"#),
            "queries[0]: missing field `query`"
        );
        assert_eq!(
            err(r#"{"page_size":-1}"#),
            "page_size: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(err("[]"), "config: expected a JSON object");
        assert!(err("{").starts_with("config: not valid JSON"));
    }

    #[test]
    fn endpoint_and_credential_errors_name_the_field() {
        let c = Config::<Settings>::from_json(r#"{"credentials":{"token":""}}"#).unwrap();
        assert!(
            matches!(c.endpoint_url(), Err(AdapterError::InvalidConfig(m)) if m.starts_with("endpoint: required"))
        );
        assert!(
            matches!(c.credential("token"), Err(AdapterError::InvalidConfig(m)) if m.starts_with("credentials.token: required"))
        );
        assert!(
            matches!(c.credential("other"), Err(AdapterError::InvalidConfig(m)) if m.starts_with("credentials.other:"))
        );
        let c = Config::<Settings>::from_json(r#"{"endpoint":"ftp://x"}"#).unwrap();
        assert!(
            matches!(c.endpoint_url(), Err(AdapterError::InvalidConfig(m)) if m.starts_with("endpoint: "))
        );
    }

    #[test]
    fn queries_are_planned_in_order_after_their_label_is_checked() {
        let c = Config::<Settings>::from_json(
            r#"{"queries": [{"label": " a ", "query": "1"}, {"label": "b", "query": "2"}]}"#,
        )
        .unwrap();
        let mut seen = Vec::new();
        let planned = c
            .plan_queries(|i, label, query| {
                seen.push(i);
                Ok(format!("{label}={}", query.query))
            })
            .unwrap();
        assert_eq!(planned, ["a=1", "b=2"]);
        assert_eq!(seen, [0, 1]);
        let none = Config::<Settings>::from_json("{}").unwrap();
        assert_eq!(none.plan_queries(|_, _, _| Ok(())).unwrap(), []);

        let invalid = |json: &str| {
            let c = Config::<Settings>::from_json(json).unwrap();
            match c.plan_queries(|i, _, query| {
                if query.query == "bad" {
                    Err(AdapterError::invalid_config(
                        &format!("queries[{i}].query"),
                        "bad",
                    ))
                } else {
                    Ok(())
                }
            }) {
                Err(AdapterError::InvalidConfig(m)) => m,
                other => panic!("expected invalid config, got {other:?}"),
            }
        };
        assert_eq!(
            invalid(r#"{"queries": [{"label": "  ", "query": "1"}]}"#),
            "queries[0].label: required: a name for the devices this query finds"
        );
        // Errors come in configuration order: query 0's before query 1's label.
        assert_eq!(
            invalid(
                r#"{"queries": [{"label": "a", "query": "bad"}, {"label": "a", "query": "1"}]}"#
            ),
            "queries[0].query: bad"
        );
        assert_eq!(
            invalid(
                r#"{"queries": [{"label": "a", "query": "1"}, {"label": " a", "query": "2"}]}"#
            ),
            "queries[1].label: `a` is used by an earlier query; labels must be unique"
        );
    }

    #[test]
    fn debug_output_redacts_credentials() {
        let c = Config::<Settings>::from_json(r#"{"credentials":{"token":"s3cret"}}"#).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("token"), "{text}");
    }

    #[test]
    fn schema_describes_settings_and_config_fields() {
        let schema: serde_json::Value = serde_json::from_str(&config_schema::<Settings>()).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(schema["properties"]["endpoint"].is_object());
        assert!(schema["properties"]["settings"].is_object());
        assert!(schema.get("required").is_none(), "settings may be left out");
        let text = schema.to_string();
        assert!(text.contains("\"count\""), "{text}");
    }
}
