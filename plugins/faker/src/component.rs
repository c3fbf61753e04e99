//! The adapter component: configuration, and generated devices mapped onto
//! SDK devices.

use schemars::JsonSchema;
use serde::Deserialize;
use sr_adapter_sdk::{Adapter, AdapterError, Config, Description, Device, Run, Summary};

use crate::generator::{self, Churn, FakeDevice, Params};

/// Largest `page_size` Faker accepts.
const MAX_PAGE_SIZE: u32 = 5000;

/// Label of the devices when the configuration has no query.
const DEFAULT_QUERY_LABEL: &str = "faker";

/// The `settings` object of a Faker integration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Seed of MACs, serial prefixes, risk levels and IP swaps.
    #[serde(default = "default_seed")]
    seed: u64,
    /// Devices in the first run (at most 10,000,000).
    #[serde(default = "default_count")]
    #[schemars(range(max = 10_000_000))]
    count: u64,
    /// Changes applied per run.
    #[serde(default)]
    churn: ChurnSettings,
}

/// Per-run changes, keyed by run number and seed (not cumulative).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChurnSettings {
    /// Percentage (0-100) of device pairs whose IPs swap in each run after
    /// the first.
    #[serde(default)]
    #[schemars(range(max = 100))]
    ip_swap_percent: u32,
    /// Devices added per run.
    #[serde(default)]
    add_per_run: u64,
    /// Devices retired per run (the oldest first).
    #[serde(default)]
    retire_per_run: u64,
}

fn default_seed() -> u64 {
    Params::default().seed
}

fn default_count() -> u64 {
    Params::default().count
}

/// Generator parameters from a configuration, every range checked.
fn params(config: &Config<Settings>) -> Result<Params, AdapterError> {
    if let Some(page_size) = config.page_size
        && !(1..=MAX_PAGE_SIZE).contains(&page_size)
    {
        return Err(AdapterError::invalid_config(
            "page_size",
            format!("from 1 to {MAX_PAGE_SIZE}, got {page_size}"),
        ));
    }
    let settings = &config.settings;
    let params = Params {
        seed: settings.seed,
        count: settings.count,
        churn: Churn {
            ip_swap_percent: settings.churn.ip_swap_percent,
            add_per_run: settings.churn.add_per_run,
            retire_per_run: settings.churn.retire_per_run,
        },
    };
    params
        .validate()
        .map_err(|e| AdapterError::InvalidConfig(e.to_string()))?;
    Ok(params)
}

fn query_label(config: &Config<Settings>) -> &str {
    config
        .queries
        .first()
        .map_or(DEFAULT_QUERY_LABEL, |q| q.label.as_str())
}

fn to_device(fake: FakeDevice, query_label: &str) -> Device {
    Device {
        source_id: fake.source_id(),
        ips: vec![fake.ip.to_string()],
        macs: fake.macs,
        hostname: Some(fake.hostname),
        device_type: Some(fake.device_type.to_string()),
        manufacturer: Some(fake.manufacturer.to_string()),
        model: Some(fake.model),
        os: Some(fake.os.to_string()),
        serial: Some(fake.serial),
        tags: fake.tags,
        first_seen: Some(fake.first_seen),
        last_seen: Some(fake.last_seen),
        attributes: vec![
            ("query_label".to_string(), query_label.to_string()),
            ("risk_level".to_string(), fake.risk_level.to_string()),
            ("site".to_string(), fake.site.to_string()),
        ],
        raw: None,
    }
}

struct Faker;

impl Adapter for Faker {
    type Settings = Settings;

    fn describe() -> Description {
        Description::new(
            "faker",
            env!("CARGO_PKG_VERSION"),
            "faker",
            "Generates deterministic synthetic devices for demos, load tests and churn tests",
        )
    }

    fn validate(config: &Config<Settings>) -> Result<(), AdapterError> {
        params(config).map(|_| ())
    }

    fn discover(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
        let params = params(run.config())?;
        let label = query_label(run.config()).to_string();
        for fake in generator::run_devices(&params, run.run_number()) {
            run.emit(to_device(fake, &label));
        }
        Ok(Summary::complete())
    }
}

sr_adapter_sdk::export_adapter!(Faker);

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use sr_adapter_sdk::Sink;

    use super::*;

    #[derive(Clone, Default)]
    struct Pages(Rc<RefCell<Vec<Vec<Device>>>>);

    impl Sink for Pages {
        fn emit(&mut self, devices: Vec<Device>) {
            self.0.borrow_mut().push(devices);
        }
        fn checkpoint(&mut self, cursor: &str) {
            panic!("faker never checkpoints, got {cursor}");
        }
    }

    fn discover(
        config: &str,
        run_number: u64,
    ) -> Result<(Summary, Vec<Vec<Device>>), AdapterError> {
        let pages = Pages::default();
        let config = Config::from_json(config)?;
        let mut run = Run::new(config, None, "run", run_number, Box::new(pages.clone()));
        let summary = Faker::discover(&mut run)?;
        run.flush();
        assert_eq!(
            run.emitted(),
            pages.0.borrow().iter().map(|p| p.len() as u64).sum::<u64>()
        );
        let pages = pages.0.borrow().clone();
        Ok((summary, pages))
    }

    fn invalid(config: &str) -> String {
        let config = Config::<Settings>::from_json(config);
        match config.and_then(|c| Faker::validate(&c)) {
            Err(AdapterError::InvalidConfig(message)) => message,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_emit_100_devices_in_one_page() {
        let (summary, pages) = discover("{}", 0).unwrap();
        assert_eq!(summary, Summary::complete());
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].len(), 100);
        let first = &pages[0][0];
        assert_eq!(first.source_id, "1");
        assert_eq!(first.ips, ["172.16.0.1"]);
        assert_eq!(first.hostname.as_deref(), Some("FAKER-CSC-SW-00001"));
        assert_eq!(first.attributes[0], ("query_label".into(), "faker".into()));
        assert!(
            first
                .attributes
                .iter()
                .all(|(k, _)| !k.starts_with("integration_"))
        );
    }

    #[test]
    fn pages_follow_page_size_and_label_follows_the_first_query() {
        let config = r#"{"page_size": 300, "queries": [{"label": "lab", "query": "x"}, {"label": "b", "query": "y"}],
                         "settings": {"count": 1000, "seed": 9}}"#;
        let (_, pages) = discover(config, 0).unwrap();
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [300, 300, 300, 100]);
        assert!(pages.iter().flatten().all(|d| d.attributes[0].1 == "lab"));
    }

    #[test]
    fn devices_match_the_generator_for_the_run() {
        let config = r#"{"settings": {"count": 500, "seed": 3, "churn": {"ip_swap_percent": 40, "add_per_run": 7, "retire_per_run": 2}}}"#;
        let params = Params {
            seed: 3,
            count: 500,
            churn: Churn {
                ip_swap_percent: 40,
                add_per_run: 7,
                retire_per_run: 2,
            },
        };
        let (_, pages) = discover(config, 4).unwrap();
        let emitted: Vec<Device> = pages.into_iter().flatten().collect();
        let expected: Vec<Device> = generator::run_devices(&params, 4)
            .map(|d| to_device(d, DEFAULT_QUERY_LABEL))
            .collect();
        assert_eq!(emitted, expected);
        assert_eq!(emitted.len(), 500 + 4 * 7 - 4 * 2);
        assert_eq!(
            discover(config, 4).unwrap().1.concat(),
            expected,
            "byte-identical re-run"
        );
    }

    #[test]
    fn invalid_settings_name_the_field() {
        assert_eq!(
            invalid(r#"{"settings": {"count": 10000001}}"#),
            "settings.count: at most 10000000 devices, got 10000001"
        );
        assert_eq!(
            invalid(r#"{"settings": {"churn": {"ip_swap_percent": 101}}}"#),
            "settings.churn.ip_swap_percent: a percentage from 0 to 100, got 101"
        );
        assert_eq!(
            invalid(r#"{"page_size": 5001}"#),
            "page_size: from 1 to 5000, got 5001"
        );
        assert_eq!(
            invalid(r#"{"page_size": 0}"#),
            "page_size: from 1 to 5000, got 0"
        );
        assert_eq!(
            invalid(r#"{"settings": {"count": "x"}}"#),
            "settings.count: invalid type: string \"x\", expected u64"
        );
        assert!(
            invalid(r#"{"settings": {"cuont": 1}}"#)
                .starts_with("settings.cuont: unknown field `cuont`")
        );
        assert!(
            invalid(r#"{"settings": {"churn": {"swap": 1}}}"#)
                .starts_with("settings.churn.swap: unknown field")
        );
    }

    #[test]
    fn describe_names_faker_and_derives_a_schema() {
        let d = Faker::describe();
        assert_eq!(
            (d.name.as_str(), d.source_type.as_str()),
            ("faker", "faker")
        );
        assert!(d.hosts.is_empty());
        let schema: serde_json::Value =
            serde_json::from_str(&sr_adapter_sdk::config_schema::<Settings>()).unwrap();
        let settings = &schema["$defs"]["Settings"]["properties"];
        assert_eq!(settings["count"]["maximum"], 10_000_000);
        assert_eq!(settings["count"]["default"], 100);
    }
}
