//! The registry: content-addressed, hot-reloaded, refusing broken files while
//! the previous version keeps serving; compiled artifacts cached on disk.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sr_host::egress::AddressPermissions;
use sr_host::registry::{Registry, SelectError};
use sr_host::sandbox::RunLimits;
use sr_proto::sync_config::AdapterPin;

use crate::support::{component_path, discover, sandbox, settings};

fn install(dir: &Path, component: &str, as_name: &str) {
    // Write then rename: the registry never sees a half-written file.
    let tmp = dir.join(format!(".{as_name}.partial"));
    std::fs::copy(component_path(component), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(as_name)).unwrap();
}

async fn wait_for_version(registry: &Registry, version: &str) {
    for _ in 0..100 {
        if let Ok(adapter) = registry.select("misbehave", None)
            && adapter.description().version.to_string() == version
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("registry never served misbehave {version}");
}

#[tokio::test]
async fn selects_by_source_type_and_names_what_is_installed_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "faker", "faker.wasm");
    install(dir.path(), "sr-test-misbehave", "misbehave.wasm");
    let (registry, report) = Registry::open(sandbox(), dir.path(), None).await.unwrap();
    assert_eq!(report.loaded.len(), 2, "{report:?}");
    assert_eq!(registry.source_types(), vec!["faker", "misbehave"]);
    assert_eq!(
        registry.select("faker", None).unwrap().description().name,
        "faker"
    );
    let error = registry.select("armis", None).unwrap_err();
    let SelectError::NoAdapter { installed, .. } = &error;
    assert!(installed.contains("faker@0.1.0 (faker)"), "{error}");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn newest_version_wins_unless_pinned() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "sr-test-misbehave", "misbehave-1.wasm");
    install(dir.path(), "sr-test-misbehave-v2", "misbehave-2.wasm");
    let (registry, _) = Registry::open(sandbox(), dir.path(), None).await.unwrap();
    assert_eq!(
        registry
            .select("misbehave", None)
            .unwrap()
            .description()
            .version
            .to_string(),
        "2.0.0"
    );
    let v1 = AdapterPin {
        name: "misbehave".into(),
        version: Some("1.0.0".into()),
        digest: None,
    };
    let pinned = registry.select("misbehave", Some(&v1)).unwrap();
    assert_eq!(pinned.description().version.to_string(), "1.0.0");
    let by_digest = AdapterPin {
        digest: Some(pinned.digest().to_string()),
        ..Default::default()
    };
    assert_eq!(
        registry
            .select("misbehave", Some(&by_digest))
            .unwrap()
            .digest(),
        pinned.digest()
    );
    let missing = AdapterPin {
        name: "misbehave".into(),
        version: Some("9.9.9".into()),
        digest: None,
    };
    let error = registry.select("misbehave", Some(&missing)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("pinned to name misbehave, version 9.9.9"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_while_a_run_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "sr-test-misbehave", "misbehave.wasm");
    let (registry, _) = Registry::open(sandbox(), dir.path(), None).await.unwrap();
    let _watch = registry.watch().unwrap();
    let v1 = registry.select("misbehave", None).unwrap();
    assert_eq!(v1.description().version.to_string(), "1.0.0");

    let run_settings = settings(RunLimits::default(), &[], AddressPermissions::default());
    let slow = json!({"settings": {"mode": "slow", "pages": 4, "per_page": 2, "delay_ms": 500}});
    let in_flight = {
        let run_settings = run_settings.clone();
        tokio::spawn(async move { discover(&v1, slow, &run_settings, 0).await })
    };

    // Replace the file while the v1 run is going; the watcher picks it up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    install(dir.path(), "sr-test-misbehave-v2", "misbehave.wasm");
    wait_for_version(&registry, "2.0.0").await;

    // New runs use v2 ...
    let v2 = registry.select("misbehave", None).unwrap();
    let quick = json!({"settings": {"mode": "slow", "pages": 1, "per_page": 1, "delay_ms": 0}});
    let fresh = discover(&v2, quick, &run_settings, 0).await;
    fresh.outcome.unwrap();
    assert_eq!(fresh.devices[0].source_id, "2.0.0-0");

    // ... while the run in flight finished on v1, undisturbed.
    let old = in_flight.await.unwrap();
    old.outcome
        .expect("the in-flight run completes on the old version");
    assert_eq!(old.devices.len(), 8);
    assert!(
        old.devices
            .iter()
            .all(|d| d.source_id.starts_with("1.0.0-"))
    );
}

#[tokio::test]
async fn broken_file_is_refused_and_the_old_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "sr-test-misbehave", "misbehave.wasm");
    let (registry, _) = Registry::open(sandbox(), dir.path(), None).await.unwrap();
    let before = registry.select("misbehave", None).unwrap();

    // Overwrite the serving file with garbage, and drop in a broken new one.
    std::fs::write(
        dir.path().join("misbehave.wasm"),
        b"\0asm\x0d\0\x01\0garbage",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("wrong.wasm"),
        std::fs::read(component_path("sr-test-wrong-world")).unwrap(),
    )
    .unwrap();
    let report = registry.rescan().await;
    assert_eq!(report.refused.len(), 2, "{report:?}");
    assert!(
        report
            .refused
            .iter()
            .any(|r| r.contains("misbehave@1.0.0 keeps serving")),
        "{report:?}"
    );
    assert!(
        report
            .refused
            .iter()
            .any(|r| r.contains("missing export(s) `discover`")),
        "{report:?}"
    );
    let after = registry.select("misbehave", None).unwrap();
    assert_eq!(after.digest(), before.digest());

    // A second scan does not retry the same broken bytes.
    let again = registry.rescan().await;
    assert!(again.refused.is_empty(), "{again:?}");
    assert_eq!(again.unchanged, 2);

    // Removing a file removes its adapter.
    std::fs::remove_file(dir.path().join("misbehave.wasm")).unwrap();
    let removed = registry.rescan().await;
    assert_eq!(removed.removed.len(), 1);
    assert!(registry.select("misbehave", None).is_err());
}

#[tokio::test]
async fn compiled_artifacts_are_cached_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    install(dir.path(), "faker", "faker.wasm");
    let (first, _) = Registry::open(sandbox(), dir.path(), Some(cache.path().to_path_buf()))
        .await
        .unwrap();
    let digest = first.select("faker", None).unwrap().digest().clone();
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1);
    let name = artifacts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        name.starts_with(digest.hex()) && name.ends_with(".cwasm"),
        "{name}"
    );
    let written = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();

    // A second registry (a restart) loads from the cache without rewriting it.
    let (second, report) = Registry::open(sandbox(), dir.path(), Some(cache.path().to_path_buf()))
        .await
        .unwrap();
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(second.select("faker", None).unwrap().digest(), &digest);
    assert_eq!(
        std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        written
    );
    let run = discover(
        &second.select("faker", None).unwrap(),
        json!({"settings": {"count": 10}}),
        &settings(RunLimits::default(), &[], AddressPermissions::default()),
        0,
    )
    .await;
    assert_eq!(run.devices.len(), 10);

    // A corrupt artifact is discarded and recompiled, not trusted.
    std::fs::write(&artifacts[0], b"corrupt").unwrap();
    let (third, _) = Registry::open(sandbox(), dir.path(), Some(cache.path().to_path_buf()))
        .await
        .unwrap();
    assert!(third.select("faker", None).is_ok());
    assert_ne!(std::fs::read(&artifacts[0]).unwrap(), b"corrupt");
}
