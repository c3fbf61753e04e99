//! The Armis adapter component against the Armis mock, through the real
//! sandbox: paging, merging, address parsing, tokens, rate limits,
//! failures, incremental runs, egress. Also: the mock's own quirks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sr_host::adapter::LoadedAdapter;
use sr_host::egress::AddressPermissions;
use sr_host::mock::SourceKnobs;
use sr_host::mock::armis::{ArmisMock, ArmisOptions};
use sr_host::mock::inventory::{Churn, Inventory, InventoryParams};
use sr_host::normalize::{NormalizeContext, NormalizeStats, normalize};
use sr_host::sandbox::{
    AdapterFailure, Device, DiscoverInput, DiscoverOutcome, RunError, RunEvent, RunLimits,
    RunSettings,
};
use tokio::sync::mpsc;

use crate::support::{LogCapture, load, sandbox, settings};

/// What a discover call produced.
pub struct Run {
    pub outcome: Result<DiscoverOutcome, RunError>,
    pub devices: Vec<Device>,
    pub checkpoints: Vec<String>,
    /// How many devices had arrived when each checkpoint came.
    pub checkpoint_positions: Vec<usize>,
}

impl Run {
    pub fn ok(&self) -> &DiscoverOutcome {
        match &self.outcome {
            Ok(outcome) => outcome,
            Err(error) => panic!("run failed: {error}"),
        }
    }

    pub fn failure(&self) -> &AdapterFailure {
        match &self.outcome {
            Ok(_) => panic!("the run succeeded"),
            Err(error) => error
                .adapter_failure()
                .unwrap_or_else(|| panic!("not an adapter failure: {error}")),
        }
    }

    pub fn ids(&self) -> BTreeSet<u64> {
        self.devices
            .iter()
            .map(|d| d.source_id.parse().unwrap())
            .collect()
    }

    pub fn device(&self, id: u64) -> &Device {
        let id = id.to_string();
        self.devices.iter().find(|d| d.source_id == id).unwrap()
    }
}

/// Runs discover with a cursor and collects every event.
pub async fn discover_from(
    adapter: &LoadedAdapter,
    config: &Value,
    settings: &RunSettings,
    run_number: u64,
    cursor: Option<String>,
) -> Run {
    let (tx, mut rx) = mpsc::channel(4);
    let input = DiscoverInput {
        config: config.to_string(),
        cursor,
        run_id: format!("test-run-{run_number}"),
        run_number,
    };
    let sandbox = sandbox();
    let run = sandbox.discover(adapter, input, settings, tx);
    let collect = async {
        let mut devices = Vec::new();
        let mut checkpoints = Vec::new();
        let mut positions = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                RunEvent::Devices(batch) => devices.extend(batch),
                RunEvent::Checkpoint(cursor) => {
                    checkpoints.push(cursor);
                    positions.push(devices.len());
                }
            }
        }
        (devices, checkpoints, positions)
    };
    let (outcome, (devices, checkpoints, checkpoint_positions)) = tokio::join!(run, collect);
    Run {
        outcome,
        devices,
        checkpoints,
        checkpoint_positions,
    }
}

/// Loopback allowed, only `127.0.0.1` reachable, test-sized limits.
pub fn mock_settings() -> RunSettings {
    settings(
        RunLimits {
            wall_clock_secs: 60,
            ..RunLimits::default()
        },
        &["127.0.0.1"],
        AddressPermissions {
            allow_loopback: true,
            ..Default::default()
        },
    )
}

/// The attribute `key` of a device.
pub fn attribute<'a>(device: &'a Device, key: &str) -> Option<&'a str> {
    device
        .attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A plain HTTP client (rustls with the ring provider) for poking mocks.
pub fn http_client(follow_redirects: bool) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = if follow_redirects {
        reqwest::redirect::Policy::default()
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder().redirect(policy).build().unwrap()
}

/// Ids of the inventory's devices that have at least one IP.
pub fn ids_with_ip(inventory: &Inventory) -> BTreeSet<u64> {
    inventory
        .devices()
        .values()
        .filter(|d| !d.all_ips().is_empty())
        .map(|d| d.id)
        .collect()
}

async fn armis(devices: u64) -> ArmisMock {
    ArmisMock::start(ArmisOptions {
        inventory: InventoryParams {
            seed: 11,
            devices,
            churn: Churn::default(),
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

fn config(mock: &ArmisMock, extra: Value) -> Value {
    let mut config = json!({
        "endpoint": mock.base_url(),
        "credentials": {"secret_key": mock.secret_key()},
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

async fn run(mock: &ArmisMock, extra: Value, run_number: u64, cursor: Option<String>) -> Run {
    let adapter = load("armis").await;
    discover_from(
        &adapter,
        &config(mock, extra),
        &mock_settings(),
        run_number,
        cursor,
    )
    .await
}

#[tokio::test]
async fn single_page_maps_devices_as_the_reference_says() {
    let mock = armis(20).await;
    let run = run(&mock, json!({}), 0, None).await;
    let outcome = run.ok();
    assert!(outcome.complete);
    assert_eq!(mock.stats().pages_served, 1);
    assert_eq!(mock.stats().tokens_issued, 1);
    let inventory = mock.inventory();
    assert_eq!(run.ids(), ids_with_ip(&inventory));
    assert_eq!(outcome.reported_devices, run.devices.len() as u64);

    let source = inventory.get(10).unwrap();
    let device = run.device(10);
    assert_eq!(device.ips, source.all_ips());
    assert_eq!(device.macs, source.macs);
    assert_eq!(device.hostname.as_deref(), Some(source.name.as_str()));
    assert_eq!(device.device_type.as_deref(), Some(source.device_type));
    assert_eq!(device.manufacturer.as_deref(), Some(source.manufacturer));
    assert_eq!(device.model.as_deref(), Some(source.model.as_str()));
    assert_eq!(
        device.os.as_deref(),
        Some(format!("{} {}", source.os, source.os_version).as_str())
    );
    assert_eq!(device.serial.as_deref(), Some(source.serial.as_str()));
    assert_eq!(device.last_seen.as_deref(), Some("2025-01-01T00:00:03Z"));
    assert_eq!(attribute(device, "armis_device_id"), Some("10"));
    assert_eq!(attribute(device, "query_label"), Some("all"));
    assert_eq!(
        attribute(device, "risk_level"),
        Some(source.risk_level.to_string().as_str())
    );
    assert_eq!(attribute(device, "site"), Some(source.site));
    assert!(attribute(device, "integration_type").is_none());
}

#[tokio::test]
async fn many_pages_until_next_is_null_or_zero() {
    for zero in [false, true] {
        let mock = armis(250).await;
        mock.set_next_zero_on_last(zero);
        let run = run(&mock, json!({"page_size": 40}), 0, None).await;
        let outcome = run.ok();
        assert!(outcome.complete);
        let expected = ids_with_ip(&mock.inventory());
        assert_eq!(run.ids(), expected, "next zero: {zero}");
        assert_eq!(run.devices.len(), expected.len(), "each device once");
        // 250 devices / 40 per page: 7 pages, each followed by a checkpoint.
        assert_eq!(mock.stats().pages_served, 7);
        assert_eq!(run.checkpoints.len(), 7);
        assert!(
            run.checkpoint_positions.windows(2).all(|w| w[0] < w[1]),
            "{:?}",
            run.checkpoint_positions
        );
        // The summary cursor covers the whole run, the checkpoints its pages.
        assert!(outcome.cursor.is_some());
    }
}

#[tokio::test]
async fn several_queries_merge_by_armis_id() {
    let mock = armis(120).await;
    let queries = json!({"page_size": 25, "queries": [
        {"label": "switches", "query": "in:devices type:Switch"},
        {"label": "berlin", "query": "in:devices site:Berlin"},
        {"label": "cameras", "query": "in:devices type:\"IP Camera\""},
    ]});
    let run = run(&mock, queries, 0, None).await;
    run.ok();
    let inventory = mock.inventory();
    let mut expected: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for d in inventory
        .devices()
        .values()
        .filter(|d| !d.all_ips().is_empty())
    {
        let labels: Vec<&str> = [
            (d.device_type == "Switch", "switches"),
            (d.site == "Berlin", "berlin"),
            (d.device_type == "IP Camera", "cameras"),
        ]
        .into_iter()
        .filter_map(|(hit, label)| hit.then_some(label))
        .collect();
        if !labels.is_empty() {
            expected.insert(d.id, labels);
        }
    }
    assert_eq!(run.devices.len(), expected.len(), "every device once");
    for (id, labels) in &expected {
        assert_eq!(
            attribute(run.device(*id), "query_label"),
            Some(labels.join(",").as_str()),
            "device {id}"
        );
    }
    assert!(expected.values().any(|l| l.len() == 2), "some overlap");
}

#[tokio::test]
async fn comma_joined_ips_and_multi_separator_macs_are_parsed() {
    let mock = armis(100).await;
    let run = run(&mock, json!({}), 0, None).await;
    run.ok();
    let inventory = mock.inventory();
    let ctx = NormalizeContext {
        source_type: "armis".into(),
        partition: "default".into(),
        now: chrono::Utc::now(),
        ..Default::default()
    };
    let mut stats = NormalizeStats::default();
    let mut multi_ip = 0;
    let mut multi_mac = 0;
    for device in &run.devices {
        let source = inventory.get(device.source_id.parse().unwrap()).unwrap();
        assert_eq!(device.ips, source.all_ips(), "{}", device.source_id);
        assert_eq!(device.macs, source.macs, "{}", device.source_id);
        multi_ip += usize::from(device.ips.len() > 2);
        multi_mac += usize::from(device.macs.len() > 1);
        let update = normalize(device.clone(), &ctx, &mut stats).unwrap();
        assert_eq!(update.ip, source.all_ips()[0]);
        assert_eq!(update.metadata["all_ips"], source.all_ips().join(","));
        assert_eq!(update.mac.as_deref(), Some(source.macs[0].as_str()));
    }
    assert!(multi_ip >= 4 && multi_mac >= 20, "{multi_ip} {multi_mac}");
    assert!(!stats.has_warnings(), "{stats:?}");
}

#[tokio::test]
async fn token_expiring_mid_run_is_replaced_once() {
    let mock = armis(200).await;
    mock.expire_tokens_after_searches(2);
    let run = run(&mock, json!({"page_size": 30}), 0, None).await;
    assert!(run.ok().complete);
    assert_eq!(run.ids(), ids_with_ip(&mock.inventory()));
    let stats = mock.stats();
    assert_eq!(stats.unauthorized, 1, "{stats:?}");
    assert_eq!(stats.tokens_issued, 2, "{stats:?}");
}

#[tokio::test]
async fn token_is_refreshed_before_expiration_utc() {
    let mock = armis(50).await;
    // Tokens live 2 s; the adapter refreshes a quarter of that early, so
    // pages 0.7 s apart cross the refresh point well before expiry.
    mock.set_token_lifetime(Duration::from_secs(2));
    mock.slow_pages(Duration::from_millis(700));
    let run = run(&mock, json!({"page_size": 10}), 0, None).await;
    run.ok();
    let stats = mock.stats();
    assert!(stats.tokens_issued >= 2, "{stats:?}");
    assert_eq!(
        stats.unauthorized, 0,
        "refreshed before Armis refused it: {stats:?}"
    );
}

#[tokio::test]
async fn a_401_after_re_authentication_fails_the_run_as_unauthorized() {
    let mock = armis(100).await;
    mock.refuse_tokens(true);
    let run = run(&mock, json!({"page_size": 10}), 0, None).await;
    match run.failure() {
        AdapterFailure::Unauthorized(message) => assert!(message.contains("401"), "{message}"),
        other => panic!("expected unauthorized, got {other:?}"),
    }
    let stats = mock.stats();
    assert_eq!(
        (stats.tokens_issued, stats.unauthorized),
        (2, 2),
        "{stats:?}"
    );

    mock.refuse_tokens(false);
    let adapter = load("armis").await;
    let bad = discover_from(
        &adapter,
        &json!({"endpoint": mock.base_url(), "credentials": {"secret_key": "wrong"}}),
        &mock_settings(),
        0,
        None,
    )
    .await;
    assert!(
        matches!(bad.failure(), AdapterFailure::Unauthorized(m) if m.contains("credentials.secret_key"))
    );
}

#[tokio::test]
async fn rate_limit_is_waited_out_then_the_run_succeeds() {
    let mock = armis(60).await;
    mock.rate_limit_next(1, 1);
    let started = Instant::now();
    let run = run(&mock, json!({"page_size": 20}), 0, None).await;
    assert!(run.ok().complete);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(run.ids(), ids_with_ip(&mock.inventory()));
    assert_eq!(mock.stats().faults_injected, 1);

    // A Retry-After longer than the retry budget ends the run at once,
    // telling the host how long to wait.
    mock.rate_limit_next(1, 600);
    let run = crate::armis::run(&mock, json!({}), 0, None).await;
    assert!(matches!(
        run.failure(),
        AdapterFailure::RateLimited {
            retry_after_secs: 600,
            ..
        }
    ));
}

#[tokio::test]
async fn persistent_5xx_fails_the_run_with_the_cause() {
    let mock = armis(60).await;
    mock.fail_after(0, u32::MAX, 503);
    let run = run(&mock, json!({}), 0, None).await;
    match run.failure() {
        AdapterFailure::Unavailable(message) => {
            assert!(message.contains("503"), "{message}");
            assert!(message.contains("/api/v1/search/"), "{message}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    // Bounded: the SDK's 4 attempts, then the run gives up.
    assert_eq!(mock.stats().search_requests, 4);
    assert!(run.devices.is_empty());
}

#[tokio::test]
async fn failed_middle_page_fails_the_run_and_reports_nothing_complete() {
    let mock = armis(200).await;
    mock.fail_after(2, u32::MAX, 500);
    let failed = run(&mock, json!({"page_size": 50}), 0, None).await;
    assert!(matches!(failed.failure(), AdapterFailure::Unavailable(_)));
    // Only the two good pages were handed over, and every checkpoint
    // covers only devices delivered before it.
    assert!(failed.devices.len() <= 100, "{}", failed.devices.len());
    assert!(!failed.checkpoints.is_empty());
    assert!(
        failed
            .checkpoint_positions
            .iter()
            .all(|&p| p <= failed.devices.len())
    );

    // The next run resumes from the last checkpoint: incremental, and with
    // the first run it covers the whole inventory.
    mock.clear_faults();
    let resumed = run(
        &mock,
        json!({"page_size": 50}),
        1,
        failed.checkpoints.last().cloned(),
    )
    .await;
    assert!(
        !resumed.ok().complete,
        "a resumed run is not a complete inventory"
    );
    let mut all = failed.ids();
    all.extend(resumed.ids());
    assert_eq!(all, ids_with_ip(&mock.inventory()));
}

#[tokio::test]
async fn incremental_run_after_churn_returns_exactly_the_changes() {
    let mock = armis(300).await;
    mock.set_churn(Churn {
        ip_swap_percent: 10,
        add_per_run: 7,
        remove_per_run: 4,
    });
    let before = mock.inventory();
    let full = run(&mock, json!({"page_size": 64}), 0, None).await;
    let cursor = full.ok().cursor.clone().expect("a cursor");

    // Unchanged source: nothing.
    let quiet = run(&mock, json!({"page_size": 64}), 1, Some(cursor.clone())).await;
    assert!(!quiet.ok().complete);
    assert!(quiet.devices.is_empty());

    mock.set_run(1);
    let after = mock.inventory();
    let changed: BTreeSet<u64> = after
        .devices()
        .values()
        .filter(|d| before.get(d.id) != Some(*d) && !d.all_ips().is_empty())
        .map(|d| d.id)
        .collect();
    assert!(changed.len() > 7, "swaps and additions: {changed:?}");
    let incremental = run(&mock, json!({"page_size": 64}), 1, Some(cursor)).await;
    assert!(!incremental.ok().complete);
    assert_eq!(incremental.ids(), changed);
    for id in &changed {
        assert_eq!(
            incremental.device(*id).ips,
            after.get(*id).unwrap().all_ips()
        );
    }
    // The new cursor moved past the changes.
    let next = incremental.ok().cursor.clone().unwrap();
    let again = run(&mock, json!({"page_size": 64}), 2, Some(next)).await;
    assert!(again.devices.is_empty());
}

#[tokio::test]
async fn redirect_to_a_foreign_host_is_refused_and_logged() {
    let foreign = armis(5).await;
    let mock = armis(20).await;
    // "localhost" is another host than the allowed 127.0.0.1.
    mock.redirect_to(Some(format!("http://localhost:{}", foreign.addr().port())));
    let logs = LogCapture::default();
    let _guard = logs.install();
    let run = run(&mock, json!({}), 0, None).await;
    match run.failure() {
        AdapterFailure::InvalidConfig(message) => {
            assert!(message.contains("egress policy"), "{message}")
        }
        other => panic!("expected invalid-config, got {other:?}"),
    }
    let text = logs.text();
    assert!(text.contains("egress denied"), "{text}");
    assert!(text.contains("host=localhost"), "{text}");
    assert_eq!(foreign.stats().search_requests, 0);
    assert!(run.devices.is_empty());
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused() {
    let mock = armis(5).await;
    let adapter = load("armis").await;
    let logs = LogCapture::default();
    let _guard = logs.install();
    let config = json!({
        "endpoint": format!("http://localhost:{}", mock.addr().port()),
        "credentials": {"secret_key": mock.secret_key()},
    });
    let strict = settings(
        RunLimits::default(),
        &["localhost"],
        AddressPermissions::default(),
    );
    let run = discover_from(&adapter, &config, &strict, 0, None).await;
    assert!(matches!(run.failure(), AdapterFailure::InvalidConfig(_)));
    assert!(logs.text().contains("loopback"), "{}", logs.text());
    assert_eq!(mock.stats().token_requests, 0);
}

#[tokio::test]
async fn credentials_never_appear_in_logs_errors_or_data() {
    let mock = armis(80).await;
    mock.expire_tokens_after_searches(1);
    let logs = LogCapture::default();
    let _guard = logs.install();
    let good = run(
        &mock,
        json!({"page_size": 20, "settings": {"keep_raw": true}}),
        0,
        None,
    )
    .await;
    good.ok();
    mock.fail_after(0, u32::MAX, 502);
    let failed = run(&mock, json!({}), 0, None).await;
    let adapter = load("armis").await;
    let refused = sandbox()
        .validate(
            &adapter,
            &json!({"endpoint": mock.base_url(), "credentials": {"secret_key": "not-the-key-4711"}})
                .to_string(),
            &mock_settings(),
        )
        .await
        .unwrap_err();
    let mut secrets = mock.issued_tokens();
    assert!(secrets.len() >= 2);
    secrets.push(mock.secret_key());
    secrets.push("not-the-key-4711".to_string());
    let mut text = logs.text();
    text.push_str(&format!("{:?}", failed.outcome));
    text.push_str(&refused.to_string());
    text.push_str(&format!("{:?}", good.devices));
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret} leaked");
    }
    assert!(matches!(
        refused.adapter_failure(),
        Some(AdapterFailure::Unauthorized(_))
    ));
}

#[tokio::test]
async fn the_mock_behaves_like_armis() {
    let mock = armis(30).await;
    let http = http_client(true);
    let base = mock.base_url();
    let token_url = format!("{base}/api/v1/access_token/");
    // Form field and query parameter both work; a wrong key is a 400.
    let form = http
        .post(&token_url)
        .form(&[("secret_key", mock.secret_key())])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let body: Value = form.json().await.unwrap();
    let token = body["data"]["access_token"].as_str().unwrap().to_string();
    assert!(
        body["data"]["expiration_utc"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    let query = http
        .post(format!("{token_url}?secret_key={}", mock.secret_key()))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let wrong = http
        .post(&token_url)
        .form(&[("secret_key", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);

    let search = |auth: String, params: &'static str| {
        let http = http.clone();
        let url = format!("{base}/api/v1/search/?{params}");
        async move {
            let response = http
                .get(url)
                .header("Authorization", auth)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        search(format!("Bearer {token}"), "aql=in:devices").await.0,
        401
    );
    assert_eq!(search("nope".into(), "aql=in:devices").await.0, 401);
    assert_eq!(search(token.clone(), "from=0").await.0, 400);
    assert_eq!(
        search(token.clone(), "aql=in:devices&length=5001").await.0,
        400
    );
    let (status, page) = search(
        token.clone(),
        "aql=in%3Adevices&from=20&length=20&orderBy=lastSeen",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["data"]["total"], 30);
    assert_eq!(page["data"]["count"], 10);
    assert!(page["data"]["next"].is_null());
    assert_eq!(page["data"]["prev"], 0);
    let (_, page) = search(
        token.clone(),
        "aql=in%3Adevices%20after%3A2025-01-01T00%3A00%3A09&orderBy=lastSeen",
    )
    .await;
    assert_eq!(
        page["data"]["total"], 3,
        "devices 28-30 were seen at second 9"
    );
    mock.set_next_zero_on_last(true);
    let (_, page) = search(token, "aql=in:devices&length=100").await;
    assert_eq!(page["data"]["next"], 0);
}
