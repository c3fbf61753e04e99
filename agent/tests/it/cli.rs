//! `sr-agent run --once`: writes the file and exits 0; with the gateway
//! unreachable exits non-zero with a one-line cause and leaves the file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use crate::support::{FakeGateway, Pki, faker_device, local_any, start, sweep_of};

const AGENT: &str = "agent-cli";

async fn run_once(config: &Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sr-agent"))
        .args(["run", "--once", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn once_writes_then_exits_non_zero_when_the_gateway_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::issue(AGENT);
    let gateway = FakeGateway::default();
    let generated = sweep_of(&[faker_device(1, "10.3.0.1"), faker_device(2, "10.3.0.2")]);
    gateway.state.lock().unwrap().serve(&generated);
    let server = start(gateway.clone(), &pki, local_any()).await;
    let config = pki.write_agent_config(dir.path(), AGENT, server.addr);
    let sweep_file = dir.path().join("sweep.json");

    let output = run_once(&config).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        last_line(&output.stdout).starts_with("wrote "),
        "{output:?}"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sweep_file).unwrap()).unwrap();
    assert_eq!(written["config_hash"], generated.config_version());
    let inode = std::fs::metadata(&sweep_file).unwrap().ino();

    // A fresh process: same content, so the file is left alone.
    let output = run_once(&config).await;
    assert!(output.status.success());
    assert!(last_line(&output.stdout).contains("SameHash"), "{output:?}");
    assert_eq!(std::fs::metadata(&sweep_file).unwrap().ino(), inode);

    server.stop().await;
    let before = std::fs::read(&sweep_file).unwrap();
    let output = run_once(&config).await;
    assert!(!output.status.success());
    let cause = last_line(&output.stderr);
    assert!(
        cause.starts_with("sr-agent: sweep config not updated"),
        "{cause}"
    );
    assert!(cause.contains("Unavailable"), "{cause}");
    assert_eq!(std::fs::read(&sweep_file).unwrap(), before);
    assert_eq!(std::fs::metadata(&sweep_file).unwrap().ino(), inode);
}

#[tokio::test]
async fn a_bad_config_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.json");
    std::fs::write(
        &config,
        r#"{"component_id": "a", "gateway_addr": "http://gw:50052", "tls_server_name": "gw",
            "cert_file": "c", "key_file": "k", "ca_file": "ca", "sweep_file": "sweep.json"}"#,
    )
    .unwrap();
    let output = run_once(&config).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("gateway_addr"), "{stderr}");
    let missing = run_once(&dir.path().join("absent.json")).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("sr-agent: cannot read config"));
}
