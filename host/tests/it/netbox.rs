//! The NetBox adapter component against the NetBox mock, through the real
//! sandbox: auth styles, paging by `next`, merging, primary IPs and MACs,
//! rate limits, failures, incremental runs, egress. Also: the mock's own
//! quirks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sr_host::mock::SourceKnobs;
use sr_host::mock::inventory::{Churn, Inventory, InventoryParams, MockDevice};
use sr_host::mock::netbox::{DEFAULT_TOKEN, DEFAULT_V2_TOKEN, NetboxMock, NetboxOptions};
use sr_host::sandbox::AdapterFailure;

use crate::armis::{Run, attribute, discover_from, mock_settings};
use crate::support::{LogCapture, load};

async fn netbox(devices: u64) -> NetboxMock {
    NetboxMock::start(NetboxOptions {
        inventory: InventoryParams {
            seed: 5,
            devices,
            churn: Churn::default(),
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

fn config(mock: &NetboxMock, extra: Value) -> Value {
    let mut config = json!({
        "endpoint": mock.base_url(),
        "credentials": {"token": DEFAULT_TOKEN},
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

async fn run(mock: &NetboxMock, extra: Value, run_number: u64, cursor: Option<String>) -> Run {
    let adapter = load("netbox").await;
    discover_from(
        &adapter,
        &config(mock, extra),
        &mock_settings(),
        run_number,
        cursor,
    )
    .await
}

/// The primary IPs the adapter must report: v4 first, then v6.
fn primaries(device: &MockDevice) -> Vec<String> {
    let mut ips: Vec<String> = device
        .ipv4
        .first()
        .map(ToString::to_string)
        .into_iter()
        .collect();
    ips.extend(device.ipv6.map(|ip| ip.to_string()));
    ips
}

fn with_primary(inventory: &Inventory) -> BTreeSet<u64> {
    inventory
        .devices()
        .values()
        .filter(|d| !primaries(d).is_empty())
        .map(|d| d.id)
        .collect()
}

#[tokio::test]
async fn single_page_maps_devices_as_the_reference_says() {
    let mock = netbox(30).await;
    let run = run(&mock, json!({}), 0, None).await;
    assert!(run.ok().complete);
    assert_eq!(mock.stats().device_requests, 1);
    let inventory = mock.inventory();
    assert_eq!(run.ids(), with_primary(&inventory));

    let source = inventory.get(20).unwrap();
    let device = run.device(20);
    assert_eq!(device.ips, primaries(source), "prefix length stripped");
    assert!(device.macs.is_empty(), "MACs only when asked for");
    assert_eq!(device.hostname.as_deref(), Some(source.name.as_str()));
    assert_eq!(device.manufacturer.as_deref(), Some(source.manufacturer));
    assert_eq!(device.model.as_deref(), Some(source.model.as_str()));
    assert_eq!(device.serial.as_deref(), Some(source.serial.as_str()));
    assert_eq!(attribute(device, "netbox_device_id"), Some("20"));
    assert_eq!(attribute(device, "role"), Some(source.device_type));
    assert_eq!(attribute(device, "site"), Some(source.site));
    assert_eq!(attribute(device, "asset_tag"), source.asset_tag.as_deref());
    assert_eq!(attribute(device, "query_label"), Some("all"));
    // IPv6-only devices use primary_ip6.
    let v6_only = run.device(30);
    assert_eq!(
        v6_only.ips,
        [inventory.get(30).unwrap().ipv6.unwrap().to_string()]
    );
}

#[tokio::test]
async fn many_pages_follow_absolute_next_links() {
    let mock = netbox(230).await;
    let run = run(&mock, json!({"page_size": 50}), 0, None).await;
    assert!(run.ok().complete);
    let expected = with_primary(&mock.inventory());
    assert_eq!(run.ids(), expected);
    assert_eq!(run.devices.len(), expected.len(), "each device once");
    let pages = expected.len().div_ceil(50) as u64;
    assert_eq!(mock.stats().device_requests, pages);
    assert_eq!(run.checkpoints.len() as u64, pages);
}

#[tokio::test]
async fn next_links_naming_an_internal_host_are_followed_on_the_endpoint() {
    let mock = netbox(120).await;
    mock.set_next_base(Some("http://netbox-internal:8080".into()));
    let logs = LogCapture::default();
    let _guard = logs.install();
    let run = run(&mock, json!({"page_size": 40}), 0, None).await;
    assert!(run.ok().complete);
    assert_eq!(run.ids(), with_primary(&mock.inventory()));
    assert_eq!(run.ok().egress_denials, 0);
    assert!(logs.text().contains("another origin"), "{}", logs.text());
}

#[tokio::test]
async fn queries_are_filters_merged_by_netbox_id() {
    let mock = netbox(150).await;
    let queries = json!({"page_size": 20, "queries": [
        {"label": "berlin", "query": "site=berlin"},
        {"label": "network", "query": "role=switch&role=router&status=active"},
    ]});
    let run = run(&mock, queries, 0, None).await;
    run.ok();
    let mut expected: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for d in mock
        .inventory()
        .devices()
        .values()
        .filter(|d| !primaries(d).is_empty())
    {
        let labels: Vec<&str> = [
            (d.site_slug == "berlin", "berlin"),
            (
                ["switch", "router"].contains(&d.type_slug) && d.status == "active",
                "network",
            ),
        ]
        .into_iter()
        .filter_map(|(hit, label)| hit.then_some(label))
        .collect();
        if !labels.is_empty() {
            expected.insert(d.id, labels);
        }
    }
    assert_eq!(run.devices.len(), expected.len());
    for (id, labels) in &expected {
        assert_eq!(
            attribute(run.device(*id), "query_label"),
            Some(labels.join(",").as_str())
        );
    }
    assert!(expected.values().any(|l| l.len() == 2));
}

#[tokio::test]
async fn macs_come_from_interfaces_or_mac_address_objects() {
    let mock = netbox(90).await;
    for source in ["interfaces", "mac-addresses"] {
        let run = run(
            &mock,
            json!({"page_size": 30, "settings": {"fetch_macs": true, "mac_source": source}}),
            0,
            None,
        )
        .await;
        run.ok();
        let inventory = mock.inventory();
        for device in &run.devices {
            let expected = &inventory
                .get(device.source_id.parse().unwrap())
                .unwrap()
                .macs;
            assert_eq!(&device.macs, expected, "{source} {}", device.source_id);
        }
        assert!(run.devices.iter().any(|d| d.macs.len() == 2));
    }
    let stats = mock.stats();
    assert!(
        stats.interface_requests >= 3 && stats.mac_address_requests >= 3,
        "{stats:?}"
    );
}

#[tokio::test]
async fn token_styles_and_refusals() {
    let mock = netbox(10).await;
    let adapter = load("netbox").await;
    let v2 = json!({"endpoint": mock.base_url(), "credentials": {"token": DEFAULT_V2_TOKEN}});
    let run = discover_from(&adapter, &v2, &mock_settings(), 0, None).await;
    assert_eq!(
        run.ids(),
        with_primary(&mock.inventory()),
        "Bearer nbt_ accepted"
    );
    for token in ["0000000000000000000000000000000000000000", "nbt_other.key"] {
        let bad = json!({"endpoint": mock.base_url(), "credentials": {"token": token}});
        let run = discover_from(&adapter, &bad, &mock_settings(), 0, None).await;
        match run.failure() {
            AdapterFailure::Unauthorized(message) => {
                assert!(
                    message.contains("403") && message.contains("credentials.token"),
                    "{message}"
                )
            }
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }
    assert_eq!(mock.stats().forbidden, 2);
}

#[tokio::test]
async fn rate_limit_is_waited_out_then_the_run_succeeds() {
    let mock = netbox(60).await;
    mock.rate_limit_next(2, 1);
    let started = Instant::now();
    let run = run(&mock, json!({"page_size": 25}), 0, None).await;
    assert!(run.ok().complete);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "two Retry-After waits"
    );
    assert_eq!(run.ids(), with_primary(&mock.inventory()));
}

#[tokio::test]
async fn persistent_5xx_fails_the_run_with_the_cause() {
    let mock = netbox(60).await;
    mock.fail_after(0, u32::MAX, 502);
    let run = run(&mock, json!({}), 0, None).await;
    match run.failure() {
        AdapterFailure::Unavailable(message) => {
            assert!(
                message.contains("502") && message.contains("/api/dcim/devices/"),
                "{message}"
            )
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(mock.stats().device_requests, 4);
}

#[tokio::test]
async fn failed_middle_page_fails_the_run_and_reports_nothing_complete() {
    let mock = netbox(200).await;
    mock.fail_after(2, u32::MAX, 500);
    let failed = run(&mock, json!({"page_size": 50}), 0, None).await;
    assert!(matches!(failed.failure(), AdapterFailure::Unavailable(_)));
    assert!(failed.devices.len() <= 100);
    assert!(
        failed
            .checkpoint_positions
            .iter()
            .all(|&p| p <= failed.devices.len())
    );
    mock.clear_faults();
    let resumed = run(
        &mock,
        json!({"page_size": 50}),
        1,
        failed.checkpoints.last().cloned(),
    )
    .await;
    assert!(!resumed.ok().complete);
    let mut all = failed.ids();
    all.extend(resumed.ids());
    assert_eq!(all, with_primary(&mock.inventory()));
}

#[tokio::test]
async fn incremental_run_after_churn_returns_exactly_the_changes() {
    let mock = netbox(250).await;
    mock.set_churn(Churn {
        ip_swap_percent: 8,
        add_per_run: 6,
        remove_per_run: 3,
    });
    let before = mock.inventory();
    let full = run(&mock, json!({"page_size": 60}), 0, None).await;
    let cursor = full.ok().cursor.clone().expect("a cursor");
    let quiet = run(&mock, json!({"page_size": 60}), 1, Some(cursor.clone())).await;
    assert!(quiet.devices.is_empty() && !quiet.ok().complete);

    mock.set_run(1);
    let after = mock.inventory();
    let changed: BTreeSet<u64> = after
        .devices()
        .values()
        .filter(|d| before.get(d.id) != Some(*d) && !primaries(d).is_empty())
        .map(|d| d.id)
        .collect();
    let incremental = run(&mock, json!({"page_size": 60}), 1, Some(cursor)).await;
    assert!(!incremental.ok().complete);
    assert_eq!(incremental.ids(), changed);
    for id in &changed {
        assert_eq!(
            incremental.device(*id).ips,
            primaries(after.get(*id).unwrap())
        );
    }
}

#[tokio::test]
async fn redirect_to_a_foreign_host_is_refused_and_logged() {
    let foreign = netbox(5).await;
    let mock = netbox(20).await;
    mock.redirect_to(Some(format!("http://localhost:{}", foreign.addr().port())));
    let logs = LogCapture::default();
    let _guard = logs.install();
    let run = run(&mock, json!({}), 0, None).await;
    assert!(
        matches!(run.failure(), AdapterFailure::InvalidConfig(m) if m.contains("egress policy")),
        "{:?}",
        run.outcome
    );
    let text = logs.text();
    assert!(
        text.contains("egress denied") && text.contains("host=localhost"),
        "{text}"
    );
    assert_eq!(foreign.stats().device_requests, 0);
}

#[tokio::test]
async fn the_token_never_appears_in_logs_errors_or_data() {
    let mock = netbox(40).await;
    let logs = LogCapture::default();
    let _guard = logs.install();
    let good = run(
        &mock,
        json!({"settings": {"keep_raw": true, "fetch_macs": true}}),
        0,
        None,
    )
    .await;
    good.ok();
    mock.fail_after(0, u32::MAX, 503);
    let failed = run(&mock, json!({}), 0, None).await;
    let mut text = logs.text();
    text.push_str(&format!("{:?}{:?}", failed.outcome, good.devices));
    assert!(!text.contains(DEFAULT_TOKEN));
}

#[tokio::test]
async fn the_mock_behaves_like_netbox() {
    let mock = netbox(120).await;
    let base = mock.base_url();
    let http = crate::armis::http_client(false);
    let get = |path: String, auth: Option<String>| {
        let http = http.clone();
        async move {
            let mut request = http.get(path);
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.send().await.unwrap()
        }
    };
    let token = Some(format!("Token {DEFAULT_TOKEN}"));
    let missing = get(format!("{base}/api/dcim/devices/"), None).await;
    assert_eq!(missing.status(), 403);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["detail"],
        "Authentication credentials were not provided."
    );
    assert_eq!(
        get(
            format!("{base}/api/dcim/devices/"),
            Some("Token nope".into())
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        get(
            format!("{base}/api/dcim/devices/"),
            Some(format!("Bearer {DEFAULT_TOKEN}"))
        )
        .await
        .status(),
        403,
        "classic tokens are not bearer tokens"
    );
    let slash = get(format!("{base}/api/dcim/devices?limit=5"), token.clone()).await;
    assert_eq!(slash.status(), 301);
    assert_eq!(slash.headers()["location"], "/api/dcim/devices/?limit=5");

    let page: Value = get(format!("{base}/api/dcim/devices/"), token.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["count"], 120);
    assert_eq!(
        page["results"].as_array().unwrap().len(),
        50,
        "default limit"
    );
    let next = page["next"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{base}/api/dcim/devices/?")),
        "{next}"
    );
    assert!(next.contains("offset=50"), "{next}");
    let page: Value = get(
        format!("{base}/api/dcim/devices/?limit=5000"),
        token.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        page["results"].as_array().unwrap().len(),
        120,
        "capped at 1000, all fit"
    );
    assert!(page["next"].is_null());
    let first = &page["results"][0];
    assert!(
        first["primary_ip4"]["address"]
            .as_str()
            .unwrap()
            .ends_with("/24")
    );

    let bad_site = get(
        format!("{base}/api/dcim/devices/?site=atlantis"),
        token.clone(),
    )
    .await;
    assert_eq!(bad_site.status(), 400);
    let page: Value = get(
        format!(
            "{base}/api/dcim/devices/?last_updated__gte=2025-01-01T00:00:39Z&ordering=last_updated"
        ),
        token.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["count"], 3, "devices 118-120 changed in second 39");
    let interfaces: Value = get(
        format!("{base}/api/dcim/interfaces/?device_id=4"),
        token.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(interfaces["count"], 3, "two with MACs and mgmt0");
    let status = get(format!("{base}/api/status/"), None).await;
    assert_eq!(status.status(), 200);
}
