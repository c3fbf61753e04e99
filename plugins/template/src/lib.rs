//! The smallest complete ServiceRadar Sync adapter. Copy this crate, rename
//! it, and replace the API bits with your source's.
//!
//! It reads an imaginary inventory API:
//!
//! ```text
//! GET <endpoint>/devices?limit=<n>[&site=<site>][&cursor=<c>]
//! Authorization: Bearer <token>
//!
//! 200 {"devices": [{"id": "17", "hostname": "sw-1", "ips": ["10.0.0.5"],
//!                   "macs": ["aa:bb:cc:dd:ee:ff"], "type": "Switch",
//!                   "vendor": "Cisco", "last_seen": "2025-01-01T00:00:00Z"}],
//!      "next_cursor": "opaque" | null}
//! ```
//!
//! Its configuration (what `validate` and `discover` receive):
//!
//! ```json
//! {
//!   "endpoint": "https://inventory.example.com/api",
//!   "credentials": {"token": "..."},
//!   "page_size": 500,
//!   "settings": {"site": "Berlin"}
//! }
//! ```

use schemars::JsonSchema;
use serde::Deserialize;
use sr_adapter_sdk::http::{Client, Request};
use sr_adapter_sdk::url::Url;
use sr_adapter_sdk::{Adapter, AdapterError, Config, Description, Device, Run, Summary};

/// The `settings` object of the configuration. Its doc comments end up in
/// the JSON Schema that `describe` reports, so write them for operators.
#[derive(Deserialize, JsonSchema)]
// Refuse unknown keys: a typo then fails `validate` instead of being ignored.
#[serde(deny_unknown_fields)]
struct Settings {
    /// Only read the devices of this site.
    #[serde(default)]
    site: Option<String>,
}

/// One page of the API's answer. Only the fields we use; serde ignores the
/// rest, so the API can grow without breaking us.
#[derive(Deserialize)]
struct Page {
    devices: Vec<ApiDevice>,
    next_cursor: Option<String>,
}

/// One device as the API returns it.
#[derive(Deserialize)]
struct ApiDevice {
    id: String,
    hostname: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    macs: Vec<String>,
    #[serde(rename = "type")]
    device_type: Option<String>,
    vendor: Option<String>,
    last_seen: Option<String>,
}

/// The most devices the API returns per page.
const API_MAX_LIMIT: usize = 1000;

struct Template;

impl Adapter for Template {
    type Settings = Settings;

    fn describe() -> Description {
        // No I/O here. List extra hosts with `.host("auth.example.com")` if
        // you need more than the configured endpoint.
        Description::new(
            "template",
            env!("CARGO_PKG_VERSION"),
            "template",
            "Reads devices from the example inventory API",
        )
    }

    fn validate(config: &Config<Settings>) -> Result<(), AdapterError> {
        // The SDK already parsed the JSON (bad types come back as
        // invalid-config naming the field). Check what serde cannot, then
        // make one cheap authenticated request so bad credentials show up
        // now rather than at the first run.
        let request = page_request(config, 1, None)?;
        Client::new().fetch(&request)?;
        Ok(())
    }

    fn discover(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
        let client = Client::new();
        let limit = run.page_size().min(API_MAX_LIMIT);

        // A cursor means the previous run was cut short after a checkpoint:
        // carry on from there. Such a run has not seen the whole inventory,
        // so it must not claim to be complete.
        let resumed = run.cursor().is_some();
        let mut cursor = run.cursor().map(str::to_string);

        loop {
            let request = page_request(run.config(), limit, cursor.as_deref())?;
            // `fetch_json` retries 5xx, timeouts and 429 (honouring
            // Retry-After) a bounded number of times; the `?` turns what
            // remains into the right AdapterError (401/403 → unauthorized,
            // 429 → rate-limited, 5xx → unavailable, bad JSON → protocol).
            let page: Page = client.fetch_json(&request)?;

            for item in page.devices {
                run.emit(to_device(item));
            }

            match page.next_cursor {
                None => break,
                Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                    return Err(AdapterError::protocol(format!(
                        "the API returned the same cursor twice ({next}); stopping instead of looping"
                    )));
                }
                Some(next) => {
                    // Emitted devices are flushed before the cursor is
                    // recorded, so a resumed run never skips devices.
                    run.checkpoint(next.clone());
                    cursor = Some(next);
                }
            }
        }

        // No cursor in the summary: the next run starts from the beginning.
        Ok(if resumed {
            Summary::incremental()
        } else {
            Summary::complete()
        })
    }
}

/// The request for one page.
fn page_request(
    config: &Config<Settings>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Request, AdapterError> {
    // Both name the offending field in their error: `endpoint: ...`,
    // `credentials.token: ...`.
    let token = config.credential("token")?;
    let mut url: Url = config
        .endpoint_url()?
        .join_path("devices")
        .with_query_param("limit", &limit.to_string());
    if let Some(site) = &config.settings.site {
        url = url.with_query_param("site", site);
    }
    if let Some(cursor) = cursor {
        url = url.with_query_param("cursor", cursor);
    }
    Ok(Request::get(url).header("Authorization", format!("Bearer {token}")))
}

/// Maps the API's device onto the SDK's. The host validates IPs, normalises
/// MACs and drops devices without an id or a valid IP, so pass them on as
/// they are. It also stamps `integration_type` and `integration_id`.
fn to_device(item: ApiDevice) -> Device {
    Device {
        source_id: item.id,
        ips: item.ips,
        macs: item.macs,
        hostname: item.hostname,
        device_type: item.device_type,
        manufacturer: item.vendor,
        last_seen: item.last_seen,
        ..Device::default()
    }
}

sr_adapter_sdk::export_adapter!(Template);

// Everything that does not call the host runs natively:
// `cargo test --target x86_64-unknown-linux-gnu -p adapter-template`.
#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config<Settings> {
        Config::from_json(json).unwrap()
    }

    #[test]
    fn page_requests_carry_paging_filters_and_the_token() {
        let config = config(
            r#"{"endpoint": "https://inv.example.com/api", "credentials": {"token": "t0k"},
                "settings": {"site": "São Paulo"}}"#,
        );
        let request = page_request(&config, 500, Some("c/2")).unwrap();
        assert_eq!(
            request.url().to_string(),
            "https://inv.example.com/api/devices?limit=500&site=S%C3%A3o%20Paulo&cursor=c%2F2"
        );
        assert_eq!(request.header_value("authorization"), Some("Bearer t0k"));
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let no_token = config(r#"{"endpoint": "https://inv.example.com"}"#);
        assert!(matches!(
            page_request(&no_token, 1, None),
            Err(AdapterError::InvalidConfig(m)) if m.starts_with("credentials.token:")
        ));
        let typo = Config::<Settings>::from_json(r#"{"settings": {"stie": "x"}}"#);
        assert!(
            matches!(typo, Err(AdapterError::InvalidConfig(m)) if m.starts_with("settings.stie:"))
        );
    }
}
