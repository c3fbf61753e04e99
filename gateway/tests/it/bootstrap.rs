//! `sr-gateway bootstrap` (library and binary) and `serve` with SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sr_gateway::bootstrap::{self, BootstrapOptions, files};
use sr_proto::sync_config::SyncBootstrap;
use sr_testkit::pg::TestDb;
use uuid::Uuid;

fn read_all(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn bootstrap_twice_keeps_the_same_uuid_and_certificates() {
    sr_gateway::install_crypto_provider();
    let db = TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = BootstrapOptions::new(dir.path(), db.url());
    let first = bootstrap::bootstrap(&opts).await.unwrap();
    assert!(first.platform_tenant_created && first.root_ca_created && first.gateway_cert_created);
    assert!(
        first.platform_sync_created && first.platform_sync_cert_created && first.config_created
    );
    assert!(first.admin_token.as_deref().unwrap().starts_with("sra_"));
    assert_ne!(first.platform_tenant_id, Uuid::nil());
    let files_after_first = read_all(dir.path());

    let second = bootstrap::bootstrap(&opts).await.unwrap();
    assert_eq!(second.platform_tenant_id, first.platform_tenant_id);
    assert_eq!(second.root_ca_sha256, first.root_ca_sha256);
    assert_eq!(second.gateway_cert_sha256, first.gateway_cert_sha256);
    assert_eq!(
        second.platform_sync_cert_sha256,
        first.platform_sync_cert_sha256
    );
    assert_eq!(second.platform_sync_id, first.platform_sync_id);
    assert!(
        !second.platform_tenant_created && !second.root_ca_created && !second.gateway_cert_created
    );
    assert!(
        !second.platform_sync_created
            && !second.platform_sync_cert_created
            && !second.config_created
    );
    assert_eq!(
        second.admin_token, None,
        "the admin token is printed only once"
    );
    assert_eq!(
        read_all(dir.path()),
        files_after_first,
        "nothing in the state dir changed"
    );

    // The records: one platform tenant (reserved slug), one platform sync.
    let pool = db.pool().await.unwrap();
    let (id, slug): (Uuid, String) =
        sqlx::query_as("SELECT id, slug FROM platform.tenants WHERE is_platform")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((id, slug.as_str()), (first.platform_tenant_id, "platform"));
    let (service_type, is_platform, component): (String, bool, String) = sqlx::query_as(
        "SELECT service_type, is_platform_sync, component_id FROM platform.sync_services",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (service_type.as_str(), is_platform, component.as_str()),
        ("saas", true, "platform-sync")
    );
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.admin_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tokens, 1);
    // The token is stored hashed only.
    let stored: String = sqlx::query_scalar("SELECT token_sha256 FROM platform.admin_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!first.admin_token.unwrap().contains(&stored));

    // Keys are private; the platform sync config has relative paths and its
    // certificate carries the SPIFFE identity.
    use std::os::unix::fs::PermissionsExt;
    for key in [
        files::ROOT_CA_KEY,
        files::GATEWAY_KEY,
        files::PLATFORM_SYNC_KEY,
        files::SECRETS_KEY,
    ] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let sync: SyncBootstrap = serde_json::from_slice(
        &std::fs::read(dir.path().join(files::PLATFORM_SYNC_CONFIG)).unwrap(),
    )
    .unwrap();
    assert_eq!(sync.component_id, "platform-sync");
    assert_eq!(sync.cert_file, files::PLATFORM_SYNC_CERT);
    assert_eq!(sync.gateway_addr, "https://localhost:50052");
    let pem = std::fs::read_to_string(dir.path().join(files::PLATFORM_SYNC_CERT)).unwrap();
    let der = sr_gateway::pki::first_cert_der(&pem, "sync").unwrap();
    let id = sr_gateway::identity::parse_peer_chain(
        &[&der],
        &[&sr_gateway::pki::first_cert_der(
            &std::fs::read_to_string(dir.path().join(files::ROOT_CA_CERT)).unwrap(),
            "root",
        )
        .unwrap()],
        chrono::Utc::now().timestamp(),
    )
    .unwrap();
    assert_eq!(
        id.classification,
        sr_gateway::identity::Classification::Platform
    );
    assert_eq!(
        id.component_type,
        Some(sr_gateway::identity::ComponentType::Sync)
    );
    assert_eq!(
        (id.component_id.as_str(), id.partition.as_str()),
        ("platform-sync", "platform")
    );
}

#[tokio::test]
async fn bootstrap_with_another_state_directory_is_refused() {
    let db = TestDb::create().await.unwrap();
    let first = tempfile::tempdir().unwrap();
    bootstrap::bootstrap(&BootstrapOptions::new(first.path(), db.url()))
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let err = bootstrap::bootstrap(&BootstrapOptions::new(other.path(), db.url()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("another root CA"), "{err}");
}

#[tokio::test]
async fn cli_bootstrap_prints_the_token_once_and_reports_existing_state() {
    let db = TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_sr-gateway"))
            .args(["bootstrap", "--state"])
            .arg(dir.path())
            .args(["--database-url", db.url(), "--san", "gw.example.test"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    let second = run();
    assert!(first.contains("platform admin token sra_"), "{first}");
    assert!(!second.contains("sra_"), "{second}");
    assert!(
        second.contains("platform admin token exists; mint a new one with `sr-gateway admin-token")
    );
    let tenant_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("platform tenant"))
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(tenant_line(&first), tenant_line(&second));
    assert!(
        first
            .lines()
            .any(|l| l.starts_with("root CA") && l.ends_with("(created)"))
    );
    assert!(
        second
            .lines()
            .any(|l| l.starts_with("root CA") && l.ends_with("(exists)"))
    );

    // Bad input: a one-line cause and a non-zero exit.
    let out = Command::new(env!("CARGO_BIN_EXE_sr-gateway"))
        .args(["serve", "--config", "/nonexistent/gateway.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: reading gateway config /nonexistent/gateway.toml"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_runs_from_the_generated_config_and_stops_on_sigterm() {
    let db = TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    bootstrap::bootstrap(&BootstrapOptions::new(dir.path(), db.url()))
        .await
        .unwrap();
    // Use the generated file, with free ports.
    let config_path = dir.path().join(files::CONFIG);
    let mut config = sr_gateway::config::GatewayConfig::load(&config_path).unwrap();
    config.listen.grpc = "127.0.0.1:0".parse().unwrap();
    config.listen.admin = "127.0.0.1:0".parse().unwrap();
    config.state_dir = dir.path().to_path_buf();
    let text = config.to_toml().unwrap();
    let test_config = dir.path().join("test.toml");
    std::fs::write(&test_config, text).unwrap();

    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sr-gateway"))
        .args(["serve", "--config"])
        .arg(&test_config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("gateway listening") {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited early: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling a child process this test spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("SIGTERM received") && text.contains("gateway stopped"),
        "{text}"
    );
}
