//! Sweep configs delivered to a real, enrolled `sr-agent` by GetConfig:
//! exactly the agent's devices of its own tenant, versioned by content,
//! written atomically to sweep.json, kept when the gateway is unreachable.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Platform, assert_success};

fn faker(name: &str, seed: u64, count: u64, agent: &str, churn: u32) -> Value {
    json!({"name": name, "type": "faker", "agent_id": agent,
           "settings": {"seed": seed, "count": count, "churn": {"ip_swap_percent": churn}}})
}

/// Enrolls an agent with `sr-agent enroll` and returns its config file.
async fn enroll_agent(
    platform: &Platform,
    tenant: &str,
    agent: &str,
    dir: &Path,
) -> std::path::PathBuf {
    let (status, package) = platform
        .api(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/onboarding-packages"),
            Some(json!({"component_type": "agent", "component_id": agent})),
        )
        .await;
    assert!(status.is_success(), "{package}");
    let output = Command::new(sr_testkit::binaries::binary("sr-agent").unwrap())
        .args([
            "enroll",
            "--token",
            package["token"].as_str().unwrap(),
            "--dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert_success(&output);
    dir.join("agent.json")
}

fn agent_once(config: &Path) -> std::process::Output {
    Command::new(sr_testkit::binaries::binary("sr-agent").unwrap())
        .args(["run", "--once", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn target_ips(sweep_file: &Path) -> BTreeSet<String> {
    let doc: Value = serde_json::from_slice(&std::fs::read(sweep_file).unwrap()).unwrap();
    doc["device_targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["network"]
                .as_str()
                .unwrap()
                .trim_end_matches("/32")
                .to_string()
        })
        .collect()
}

async fn device_ips(
    platform: &Platform,
    tenant: uuid::Uuid,
    source: uuid::Uuid,
) -> BTreeSet<String> {
    let schema = sr_gateway::db::tenant_schema_name(tenant);
    let rows: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT d.ip FROM \"{schema}\".discovered_devices s JOIN \"{schema}\".ocsf_devices d ON d.uid = s.device_id \
         WHERE s.integration_source_id = $1"
    ))
    .bind(source)
    .fetch_all(&platform.pool)
    .await
    .unwrap();
    rows.into_iter().map(|(ip,)| ip).collect()
}

async fn preview_version(platform: &Platform, tenant: &str, agent: &str) -> String {
    let (status, body) = platform
        .api(
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/agents/{agent}/sweep"),
            None,
        )
        .await;
    assert!(status.is_success(), "{body}");
    body["config_version"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn agents_get_exactly_their_own_devices_and_versions_follow_content() {
    let mut platform = Platform::start().await;
    let acme = platform.create_tenant("acme").await;
    platform.create_tenant("globex").await;
    let x_source = platform
        .create_source("acme", faker("x-lab", 1, 300, "agent-x", 10))
        .await;
    // A different inventory for agent-y (two Faker sources would describe
    // the same devices: Faker ids and IPs depend only on the index).
    platform.install_adapter("sr-test-misbehave");
    platform
        .create_source(
            "acme",
            json!({"name": "y-lab", "type": "misbehave", "endpoint": "http://127.0.0.1:9", "agent_id": "agent-y",
                   "settings": {"mode": "slow", "pages": 4, "per_page": 25, "delay_ms": 0}}),
        )
        .await;
    // The same agent name in another tenant: never mixed with acme's.
    platform
        .create_source("globex", faker("g-lab", 3, 50, "agent-x", 0))
        .await;
    assert_success(&platform.run_sync_once().await);

    let home = tempfile::tempdir().unwrap();
    let config = enroll_agent(&platform, "acme", "agent-x", &home.path().join("agent-x")).await;
    let sweep_file = home.path().join("agent-x/sweep.json");
    assert_success(&agent_once(&config));
    let expected = device_ips(&platform, acme, x_source).await;
    assert_eq!(expected.len(), 300);
    assert_eq!(
        target_ips(&sweep_file),
        expected,
        "agent-x sweeps exactly its 300 devices"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&sweep_file).unwrap()).unwrap();
    assert!(!doc["networks"].as_array().unwrap().is_empty());
    assert!(doc["config_hash"].as_str().is_some_and(|h| h.len() == 64));

    // agent-y of acme gets none of agent-x's devices.
    let config_y = enroll_agent(&platform, "acme", "agent-y", &home.path().join("agent-y")).await;
    assert_success(&agent_once(&config_y));
    let y_ips = target_ips(&home.path().join("agent-y/sweep.json"));
    assert_eq!(y_ips.len(), 100);
    assert!(y_ips.is_disjoint(&expected));

    // A re-sync that changes nothing the sweep shows keeps the version…
    let version = preview_version(&platform, "acme", "agent-x").await;
    let written = std::fs::metadata(&sweep_file).unwrap().modified().unwrap();
    std::fs::remove_file(platform.sync_home.path().join("state/sources.json")).unwrap();
    assert_success(&platform.run_sync_once().await);
    assert_eq!(preview_version(&platform, "acme", "agent-x").await, version);
    assert_success(&agent_once(&config));
    assert_eq!(
        std::fs::metadata(&sweep_file).unwrap().modified().unwrap(),
        written,
        "not rewritten"
    );

    // … and IPs moving (run 1 of the churning source) change it.
    assert_success(&platform.run_sync_once().await);
    let moved = preview_version(&platform, "acme", "agent-x").await;
    assert_ne!(moved, version);
    assert_success(&agent_once(&config));
    assert_eq!(
        target_ips(&sweep_file),
        device_ips(&platform, acme, x_source).await
    );

    // With the gateway down the agent fails, and keeps its last good file.
    let good = std::fs::read(&sweep_file).unwrap();
    platform.kill_gateway();
    let output = agent_once(&config);
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr)
            .trim()
            .lines()
            .count(),
        1,
        "one line"
    );
    assert_eq!(std::fs::read(&sweep_file).unwrap(), good);
}
