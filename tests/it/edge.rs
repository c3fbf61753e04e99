//! An edge sync, onboarded with `sr-sync enroll`, syncs its own tenant's
//! sources and cannot write another tenant's data.

use reqwest::Method;
use serde_json::json;
use sr_host::daemon::config::HostConfig;
use sr_host::daemon::gateway_client::GatewayClient;

use crate::support::{Platform, assert_success, faker_source};

#[tokio::test]
async fn edge_sync_syncs_its_own_tenant_and_cannot_write_another() {
    let platform = Platform::start().await;
    let acme = platform.create_tenant("acme").await;
    let globex = platform.create_tenant("globex").await;
    let (status, package) = platform
        .api(
            Method::POST,
            "/api/v1/tenants/acme/onboarding-packages",
            Some(json!({"component_type": "sync", "component_id": "edge-1"})),
        )
        .await;
    assert!(status.is_success(), "{package}");
    let edge_sync_id = package["sync_service_id"].as_str().unwrap().to_string();

    // Enroll with the real CLI; the token is single use.
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("edge");
    let sr_sync = sr_testkit::binaries::binary("sr-sync").unwrap();
    let token = package["token"].as_str().unwrap();
    let enrolled = std::process::Command::new(&sr_sync)
        .args(["enroll", "--token", token, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_success(&enrolled);
    let again = std::process::Command::new(&sr_sync)
        .args(["enroll", "--token", token, "--force", "--dir"])
        .arg(home.path().join("again"))
        .output()
        .unwrap();
    assert!(!again.status.success(), "a used token is refused");
    let key_mode = std::fs::metadata(dir.join("key.pem")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
        0o600
    );

    // A source of acme assigned to the edge sync, and one of globex.
    let mut body = faker_source("edge-lab", 21, 400);
    body["sync_service_id"] = json!(edge_sync_id);
    platform.create_source("acme", body).await;
    platform
        .create_source("globex", faker_source("saas-lab", 22, 100))
        .await;

    std::fs::create_dir_all(dir.join("adapters")).unwrap();
    std::fs::copy(
        sr_testkit::components::component("faker").unwrap(),
        dir.join("adapters").join("faker.wasm"),
    )
    .unwrap();
    let run = tokio::process::Command::new(&sr_sync)
        .arg("run")
        .arg("--config")
        .arg(dir.join("sync.json"))
        .arg("--once")
        .output()
        .await
        .unwrap();
    assert_success(&run);
    assert_eq!(
        platform.count(acme, "ocsf_devices", "").await,
        400,
        "the edge synced its own source"
    );
    assert_eq!(
        platform.count(globex, "ocsf_devices", "").await,
        0,
        "and nothing of globex's"
    );

    // Streaming for another tenant with the edge's own certificate.
    let config = HostConfig::load(&dir.join("sync.json")).unwrap();
    let client = GatewayClient::new(&config).unwrap();
    let payload = serde_json::to_vec(&json!([{
        "ip": "10.0.0.1", "source": "faker", "timestamp": "2025-01-01T00:00:00Z",
        "metadata": {"tenant_id": globex.to_string(), "integration_id": "1"}
    }]))
    .unwrap();
    let error = client
        .stream_results(&[payload], "default")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("PermissionDenied"), "{error}");
    assert_eq!(
        platform.count(globex, "ocsf_devices", "").await,
        0,
        "nothing written"
    );
}
