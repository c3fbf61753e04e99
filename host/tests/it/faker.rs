//! The Faker component through the host: deterministic, exact, churn as the
//! generator defines it; and normalisation of messy data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use sr_host::adapter::LoadedAdapter;
use sr_host::egress::AddressPermissions;
use sr_host::local_run::{LocalRunOptions, run_local};
use sr_host::sandbox::RunLimits;

use crate::support::{discover, load, sandbox, settings};

/// Runs Faker through `run_local` and returns the NDJSON it would print.
async fn ndjson(
    adapter: &Arc<LoadedAdapter>,
    config: serde_json::Value,
    run_number: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    let options = LocalRunOptions {
        run_number,
        ..Default::default()
    };
    let summary = run_local(
        &sandbox(),
        adapter,
        &config,
        &options,
        |update| {
            serde_json::to_writer(&mut out, update).map_err(|e| e.to_string())?;
            out.push(b'\n');
            Ok(())
        },
        |_| {},
    )
    .await
    .unwrap();
    assert!(summary.complete);
    out
}

fn strip_volatile(ndjson: &[u8]) -> Vec<u8> {
    // Updates carry no host clock or run id for Faker (its devices have
    // last-seen), so the bytes must match exactly; this only guards that.
    ndjson.to_vec()
}

#[tokio::test]
async fn same_seed_gives_byte_identical_output() {
    let faker = load("faker").await;
    let config = json!({"settings": {"seed": 42, "count": 3000}});
    let first = ndjson(&faker, config.clone(), 0).await;
    let second = ndjson(&faker, config, 0).await;
    assert_eq!(first.iter().filter(|b| **b == b'\n').count(), 3000);
    assert!(
        first == second,
        "same seed and count must give byte-identical NDJSON"
    );
    let other_seed = ndjson(&faker, json!({"settings": {"seed": 43, "count": 3000}}), 0).await;
    assert_ne!(strip_volatile(&first), strip_volatile(&other_seed));
}

#[tokio::test]
async fn emits_exactly_count_unique_devices_with_reference_ips() {
    let faker = load("faker").await;
    let run = discover(
        &faker,
        json!({"settings": {"seed": 1, "count": 600}, "page_size": 250}),
        &settings(RunLimits::default(), &[], AddressPermissions::default()),
        0,
    )
    .await;
    let outcome = run.outcome.unwrap();
    assert_eq!(outcome.emitted_devices, 600);
    assert_eq!(outcome.reported_devices, 600);
    assert!(outcome.complete);
    let ips: HashSet<&str> = run.devices.iter().map(|d| d.ips[0].as_str()).collect();
    assert_eq!(ips.len(), 600);
    // The reference formula: device i → 172.(16 + s/256).(s%256).(i%254 + 1), s = i/254.
    assert_eq!(run.devices[0].ips[0], "172.16.0.1");
    assert_eq!(run.devices[253].ips[0], "172.16.0.254");
    assert_eq!(run.devices[254].ips[0], "172.16.1.1");
    assert_eq!(run.devices[0].source_id, "1");
}

#[tokio::test]
async fn churn_swaps_ips_exactly_as_the_generator_says() {
    let faker = load("faker").await;
    let settings_json = json!({"seed": 9, "count": 1000, "churn": {"ip_swap_percent": 10}});
    let params = faker::generator::Params {
        seed: 9,
        count: 1000,
        churn: faker::generator::Churn {
            ip_swap_percent: 10,
            ..Default::default()
        },
    };
    let limits = settings(RunLimits::default(), &[], AddressPermissions::default());
    let base = discover(&faker, json!({"settings": settings_json}), &limits, 0).await;
    let churned = discover(&faker, json!({"settings": settings_json}), &limits, 1).await;
    let ip_of = |devices: &[sr_host::sandbox::Device]| -> HashMap<String, String> {
        devices
            .iter()
            .map(|d| (d.source_id.clone(), d.ips[0].clone()))
            .collect()
    };
    let before = ip_of(&base.devices);
    let after = ip_of(&churned.devices);
    assert_eq!(before.len(), 1000);
    assert_eq!(after.len(), 1000);
    let moved: Vec<&String> = before
        .keys()
        .filter(|id| before[*id] != after[*id])
        .collect();
    assert!(!moved.is_empty(), "run 1 with 10% swaps moves some IPs");
    // Every moved IP went to exactly the device the generator names.
    for index in 0..1000u64 {
        let id = (index + 1).to_string();
        assert_eq!(
            after[&id],
            faker::generator::ip(&params, 1, index).to_string(),
            "device {id}"
        );
    }
    // Swaps exchange IPs: the set of IPs is unchanged.
    let before_ips: HashSet<&String> = before.values().collect();
    let after_ips: HashSet<&String> = after.values().collect();
    assert_eq!(before_ips, after_ips);
}

#[tokio::test]
async fn bad_data_is_normalised_and_counted() {
    let adapter = load("sr-test-misbehave").await;
    let mut updates = Vec::new();
    let summary = run_local(
        &sandbox(),
        &adapter,
        &json!({"settings": {"mode": "bad-data"}}),
        &LocalRunOptions::default(),
        |u| {
            updates.push(u.clone());
            Ok(())
        },
        |_| {},
    )
    .await
    .unwrap();
    let n = summary.normalization;
    assert_eq!(summary.devices_emitted, 8);
    assert_eq!(n.updates_out, 5);
    assert_eq!(n.invalid_ips, 6);
    assert_eq!(n.invalid_macs, 1);
    assert_eq!(n.dropped_no_ip, 2);
    assert_eq!(n.dropped_no_source_id, 1);
    let by_id: HashMap<&str, &sr_proto::DeviceUpdate> = updates
        .iter()
        .map(|u| (u.metadata["integration_id"].as_str(), u))
        .collect();
    assert_eq!(by_id["bad-2"].ip, "10.0.0.2");
    assert_eq!(by_id["bad-3"].ip, "10.0.0.3");
    assert_eq!(by_id["bad-4"].ip, "10.0.0.5");
    assert_eq!(by_id["bad-5"].ip, "2001:db8::1");
    assert_eq!(by_id["bad-5"].mac, None);
    assert_eq!(by_id["bad-2"].mac.as_deref(), Some("AA:BB:CC:DD:EE:02"));
    assert_eq!(by_id["bad-3"].mac.as_deref(), Some("AA:BB:CC:DD:EE:03"));
    assert_eq!(by_id["bad-4"].mac.as_deref(), Some("AA:BB:CC:DD:EE:04"));
    for update in &updates {
        assert_eq!(update.metadata["integration_type"], "misbehave");
        assert_eq!(update.source, "misbehave");
    }
}

#[tokio::test]
async fn checkpoints_arrive_after_the_devices_they_cover() {
    let adapter = load("sr-test-misbehave").await;
    let config = json!({"settings": {"mode": "checkpoint", "pages": 3, "per_page": 4}});
    let run = discover(
        &adapter,
        config,
        &settings(RunLimits::default(), &[], AddressPermissions::default()),
        0,
    )
    .await;
    let outcome = run.outcome.unwrap();
    assert_eq!(run.checkpoints, vec!["1", "2", "3"]);
    assert_eq!(run.checkpoint_positions, vec![4, 8, 12]);
    assert_eq!(outcome.cursor.as_deref(), Some("done"));
}
