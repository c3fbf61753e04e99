//! The conformance kit: the library against the first-party adapters and
//! their mocks, the `sr-sync adapter check` CLI (this is how CI runs the kit
//! for Faker, Armis and NetBox), a deliberately broken adapter and
//! configuration that must fail with the check named, and `sr-sync mock`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};
use sr_host::conformance::{CHECKS, CheckOptions, Outcome, Report, check};
use sr_host::egress::AddressPermissions;
use sr_host::mock::SourceKnobs;
use sr_host::mock::armis::{ArmisMock, ArmisOptions};
use sr_host::mock::inventory::InventoryParams;
use sr_host::mock::netbox::{DEFAULT_TOKEN, NetboxMock, NetboxOptions};

use crate::support::{component_path, load, sandbox};

fn loopback() -> CheckOptions {
    CheckOptions {
        permissions: AddressPermissions {
            allow_loopback: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn outcomes(report: &Report) -> Vec<(&'static str, Outcome)> {
    report.checks.iter().map(|c| (c.name, c.outcome)).collect()
}

fn all(outcome: Outcome) -> Vec<(&'static str, Outcome)> {
    CHECKS.iter().map(|name| (*name, outcome)).collect()
}

fn inventory(devices: u64) -> InventoryParams {
    InventoryParams {
        devices,
        ..Default::default()
    }
}

async fn armis_mock(devices: u64) -> ArmisMock {
    ArmisMock::start(ArmisOptions {
        inventory: inventory(devices),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn netbox_mock(devices: u64) -> NetboxMock {
    NetboxMock::start(NetboxOptions {
        inventory: inventory(devices),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn armis_and_netbox_pass_every_check_against_their_mocks() {
    let armis = armis_mock(300).await;
    let config = json!({"endpoint": armis.base_url(), "credentials": {"secret_key": armis.secret_key()},
                        "page_size": 64});
    let report = check(&sandbox(), &*load("armis").await, &config, &loopback()).await;
    assert_eq!(outcomes(&report), all(Outcome::Pass), "{report:#?}");
    assert!(report.passed());

    let netbox = netbox_mock(300).await;
    let config = json!({"endpoint": netbox.base_url(), "credentials": {"token": DEFAULT_TOKEN},
                        "page_size": 64, "settings": {"fetch_macs": true}});
    let report = check(&sandbox(), &*load("netbox").await, &config, &loopback()).await;
    assert_eq!(outcomes(&report), all(Outcome::Pass), "{report:#?}");
}

#[tokio::test]
async fn faker_passes_and_skips_what_does_not_apply() {
    let config = json!({"settings": {"count": 500}});
    let report = check(
        &sandbox(),
        &*load("faker").await,
        &config,
        &CheckOptions::default(),
    )
    .await;
    let skipped: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Skip)
        .map(|c| c.name)
        .collect();
    assert_eq!(skipped, ["bad-credentials", "incremental", "future-cursor"]);
    assert!(report.passed(), "{report:#?}");
    assert!(
        report
            .get("full-discover")
            .unwrap()
            .detail
            .starts_with("500 devices")
    );
}

#[tokio::test]
async fn broken_setups_fail_the_check_that_catches_them() {
    // Wrong credentials: validate fails, and nothing can be discovered.
    let armis = armis_mock(50).await;
    let config = json!({"endpoint": armis.base_url(), "credentials": {"secret_key": "wrong"}});
    let report = check(&sandbox(), &*load("armis").await, &config, &loopback()).await;
    assert_eq!(report.get("validate").unwrap().outcome, Outcome::Fail);
    assert!(
        report
            .get("validate")
            .unwrap()
            .detail
            .contains("unauthorized")
    );
    assert_eq!(report.get("full-discover").unwrap().outcome, Outcome::Fail);
    assert!(!report.passed());

    // Invalid data: the host has to drop devices and addresses.
    let misbehave = load("sr-test-misbehave").await;
    let bad_data = json!({"settings": {"mode": "bad-data"}});
    let report = check(&sandbox(), &misbehave, &bad_data, &CheckOptions::default()).await;
    let full = report.get("full-discover").unwrap();
    assert_eq!(full.outcome, Outcome::Fail);
    assert!(full.detail.contains("6 invalid IPs"), "{}", full.detail);

    // A cursor it does not honour: the "incremental" run repeats the
    // inventory and claims to be complete.
    let checkpoint = json!({"settings": {"mode": "checkpoint"}});
    let report = check(
        &sandbox(),
        &misbehave,
        &checkpoint,
        &CheckOptions::default(),
    )
    .await;
    assert_eq!(report.get("incremental").unwrap().outcome, Outcome::Fail);
    assert_eq!(report.get("future-cursor").unwrap().outcome, Outcome::Skip);

    // Memory that grows without bound.
    let membomb = json!({"settings": {"mode": "membomb"}});
    let options = CheckOptions {
        memory_mb: 32,
        limits: sr_host::sandbox::RunLimits {
            memory_mb: 48,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = check(&sandbox(), &misbehave, &membomb, &options).await;
    let memory = report.get("memory").unwrap();
    assert_eq!(memory.outcome, Outcome::Fail);
    assert!(memory.detail.contains("memory limit"), "{}", memory.detail);
}

#[tokio::test]
async fn egress_outside_the_declared_hosts_fails_the_egress_check() {
    let armis = armis_mock(20).await;
    // The search endpoint redirects to another host than the endpoint's.
    armis.redirect_to(Some(format!("http://localhost:{}", armis.addr().port())));
    let config =
        json!({"endpoint": armis.base_url(), "credentials": {"secret_key": armis.secret_key()}});
    let report = check(&sandbox(), &*load("armis").await, &config, &loopback()).await;
    let egress = report.get("egress").unwrap();
    assert_eq!(egress.outcome, Outcome::Fail, "{report:#?}");
    assert!(
        egress.detail.contains("refused by the egress policy"),
        "{}",
        egress.detail
    );
}

fn sr_sync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sr-sync"))
        .args(args)
        .env("SR_LOG", "warn")
        .output()
        .expect("run sr-sync")
}

fn write_config(dir: &Path, name: &str, config: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn run_check(component: &str, config: &str) -> Output {
    let path = component_path(component);
    sr_sync(&[
        "adapter",
        "check",
        path.to_str().unwrap(),
        "--config",
        config,
        "--allow-loopback",
    ])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn cli_check_passes_for_faker_armis_and_netbox() {
    let dir = tempfile::tempdir().unwrap();
    let armis = armis_mock(200).await;
    let netbox = netbox_mock(200).await;
    let configs = [
        (
            "faker",
            json!({"settings": {"count": 250}}),
            "5 passed, 0 failed, 3 skipped",
        ),
        (
            "armis",
            json!({"endpoint": armis.base_url(), "credentials": {"secret_key": armis.secret_key()}}),
            "8 passed, 0 failed, 0 skipped",
        ),
        (
            "netbox",
            json!({"endpoint": netbox.base_url(), "credentials": {"token": DEFAULT_TOKEN},
                   "settings": {"fetch_macs": true}}),
            "8 passed, 0 failed, 0 skipped",
        ),
    ];
    for (adapter, config, summary) in configs {
        let config = write_config(dir.path(), &format!("{adapter}.json"), &config);
        let output = tokio::task::spawn_blocking(move || run_check(adapter, &config))
            .await
            .unwrap();
        let text = stdout(&output);
        assert!(
            output.status.success(),
            "{adapter}: {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.contains(&format!("adapter check: {adapter}@0.1.0")),
            "{text}"
        );
        for name in CHECKS {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing: {text}"
            );
        }
        assert!(text.contains(summary), "{adapter}: {text}");
    }
}

#[tokio::test]
async fn cli_check_fails_naming_the_failed_checks() {
    let dir = tempfile::tempdir().unwrap();
    let netbox = netbox_mock(30).await;
    let config = write_config(
        dir.path(),
        "netbox.json",
        &json!({"endpoint": netbox.base_url(), "credentials": {"token": "0000000000000000000000000000000000000000"}}),
    );
    let output = tokio::task::spawn_blocking(move || run_check("netbox", &config))
        .await
        .unwrap();
    assert!(!output.status.success());
    let text = stdout(&output);
    let validate = text.lines().find(|l| l.starts_with("validate ")).unwrap();
    assert!(
        validate.contains("FAIL") && validate.contains("unauthorized"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains("checks failed: validate"), "{stderr}");

    let config = write_config(
        dir.path(),
        "bad.json",
        &json!({"settings": {"mode": "bad-data"}}),
    );
    let output = tokio::task::spawn_blocking(move || run_check("sr-test-misbehave", &config))
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("full-discover"), "{stderr}");
}

/// A `sr-sync mock` child, killed on drop; its stdout stays open while it
/// runs.
struct MockProcess(
    Child,
    #[allow(dead_code)] BufReader<std::process::ChildStdout>,
);

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_mock(args: &[&str]) -> (MockProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sr-sync"))
        .arg("mock")
        .args(args)
        .env("SR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sr-sync mock");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    (MockProcess(child, stdout), line.trim().to_string())
}

#[tokio::test]
async fn cli_mock_serves_armis_and_netbox() {
    let (_armis, url) = tokio::task::spawn_blocking(|| {
        spawn_mock(&["armis", "--devices", "40", "--port", "0", "--seed", "3"])
    })
    .await
    .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = crate::armis::http_client(true);
    let token: Value = http
        .post(format!("{url}/api/v1/access_token/"))
        .form(&[("secret_key", sr_host::mock::armis::DEFAULT_SECRET_KEY)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["data"]["access_token"].as_str().unwrap();
    let page: Value = http
        .get(format!("{url}/api/v1/search/?aql=in%3Adevices&length=100"))
        .header("Authorization", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"]["total"], 40);

    let (_netbox, url) =
        tokio::task::spawn_blocking(|| spawn_mock(&["netbox", "--devices", "25", "--port", "0"]))
            .await
            .unwrap();
    let page: Value = http
        .get(format!("{url}/api/dcim/devices/?limit=10"))
        .header("Authorization", format!("Token {DEFAULT_TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["count"], 25);
    assert!(page["next"].as_str().unwrap().starts_with(&url));
}
