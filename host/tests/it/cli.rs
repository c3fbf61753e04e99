//! `sr-sync adapter inspect|run` as an author uses them: real binary, real
//! components; bad input gets one line and a non-zero exit, never a panic.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::component_path;

fn sr_sync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sr-sync"))
        .args(args)
        .env("SR_LOG", "warn")
        .output()
        .expect("run sr-sync")
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Asserts a failed run with exactly one stderr line that contains `needle`.
fn assert_one_line_failure(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(needle), "expected {needle:?} in {stderr}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn inspect_shows_description_digest_and_interface() {
    let faker = component_path("faker");
    let output = sr_sync(&["adapter", "inspect", path_str(&faker)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let digest = sr_host::adapter::Digest::of(&std::fs::read(&faker).unwrap());
    assert!(stdout.contains("faker@0.1.0"), "{stdout}");
    assert!(stdout.contains(digest.as_str()), "{stdout}");
    assert!(stdout.contains("discover (func)"), "{stdout}");
    assert!(
        stdout.contains("serviceradar:adapter/host@0.1.0"),
        "{stdout}"
    );

    let json = sr_sync(&["adapter", "inspect", path_str(&faker), "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["description"]["source_type"], "faker");
    assert_eq!(value["digest"], digest.as_str());
    assert!(value["description"]["config_schema"].is_object());
}

#[test]
fn run_writes_ndjson_device_updates() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "faker.json",
        br#"{"settings": {"seed": 5, "count": 250}}"#,
    );
    let faker = component_path("faker");
    let output = sr_sync(&["adapter", "run", path_str(&faker), "--config", &config]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 250);
    assert_eq!(lines[0]["ip"], "172.16.0.1");
    assert_eq!(lines[0]["metadata"]["integration_type"], "faker");

    let summary = sr_sync(&[
        "adapter",
        "run",
        path_str(&faker),
        "--config",
        &config,
        "--summary",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(value["updates"], 250);
    assert_eq!(value["complete"], true);
}

#[test]
fn missing_component_file() {
    let output = sr_sync(&["adapter", "inspect", "/nonexistent/adapter.wasm"]);
    assert_one_line_failure(&output, "cannot read component /nonexistent/adapter.wasm");
}

#[test]
fn garbled_component_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "garbled.wasm", b"this is not wasm at all");
    assert_one_line_failure(
        &sr_sync(&["adapter", "inspect", &path]),
        "not a WebAssembly file",
    );
    let truncated = std::fs::read(component_path("faker")).unwrap();
    let path = write(
        dir.path(),
        "truncated.wasm",
        &truncated[..truncated.len() / 2],
    );
    assert_one_line_failure(
        &sr_sync(&["adapter", "inspect", &path]),
        "could not be compiled",
    );
}

#[test]
fn core_module_instead_of_component() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest valid core module: magic and version 1, no sections.
    let path = write(dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    assert_one_line_failure(
        &sr_sync(&["adapter", "inspect", &path]),
        "core WebAssembly module, not a component",
    );
}

#[test]
fn component_of_the_wrong_world() {
    let wrong = component_path("sr-test-wrong-world");
    assert_one_line_failure(
        &sr_sync(&["adapter", "inspect", path_str(&wrong)]),
        "missing export(s) `discover`",
    );
    let command = component_path("sr-test-cli-command");
    assert_one_line_failure(
        &sr_sync(&["adapter", "inspect", path_str(&command)]),
        "missing export(s) `describe`, `validate`, `discover`",
    );
}

#[test]
fn invalid_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "bad.json", b"{\"settings\": ");
    let faker = component_path("faker");
    assert_one_line_failure(
        &sr_sync(&["adapter", "run", path_str(&faker), "--config", &config]),
        "invalid JSON",
    );
    let config = write(dir.path(), "array.json", b"[1, 2]");
    assert_one_line_failure(
        &sr_sync(&["adapter", "run", path_str(&faker), "--config", &config]),
        "must be a JSON object",
    );
    assert_one_line_failure(
        &sr_sync(&[
            "adapter",
            "run",
            path_str(&faker),
            "--config",
            "/nonexistent.json",
        ]),
        "cannot read config /nonexistent.json",
    );
}

#[test]
fn config_failing_the_adapter_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "faker.json",
        br#"{"settings": {"count": "lots"}}"#,
    );
    let faker = component_path("faker");
    let output = sr_sync(&["adapter", "run", path_str(&faker), "--config", &config]);
    assert_one_line_failure(&output, "validate failed");
    assert_one_line_failure(&output, "settings.count");
}

#[test]
fn runtime_failure_names_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "spin.json",
        br#"{"settings": {"mode": "spin"}}"#,
    );
    let misbehave = component_path("sr-test-misbehave");
    let output = sr_sync(&[
        "adapter",
        "run",
        path_str(&misbehave),
        "--config",
        &config,
        "--cpu-secs",
        "1",
    ]);
    assert_one_line_failure(&output, "misbehave@1.0.0: CPU limit");
}
