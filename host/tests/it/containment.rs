//! Hostile components are contained: each limit fails only its own run, with
//! an error naming the limit and the adapter.

use std::time::{Duration, Instant};

use serde_json::json;
use sr_host::egress::AddressPermissions;
use sr_host::sandbox::{AdapterFailure, LimitHit, RunError, RunLimits};

use crate::support::{discover, load, quick_limits, settings};

fn misbehave(mode: &str) -> serde_json::Value {
    json!({"settings": {"mode": mode}})
}

#[tokio::test]
async fn infinite_loop_hits_the_cpu_deadline() {
    let adapter = load("sr-test-misbehave").await;
    let limits = RunLimits {
        cpu_secs: 1,
        ..quick_limits()
    };
    let started = Instant::now();
    let run = discover(
        &adapter,
        misbehave("spin"),
        &settings(limits, &[], Default::default()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    assert!(
        matches!(error.limit(), Some(LimitHit::Cpu { .. })),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("misbehave@1.0.0") && text.contains("CPU limit"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the deadline must stop the loop"
    );
}

#[tokio::test]
async fn wall_clock_timeout_stops_a_slow_run() {
    let adapter = load("sr-test-misbehave").await;
    let limits = RunLimits {
        wall_clock_secs: 1,
        ..quick_limits()
    };
    let config = json!({"settings": {"mode": "slow", "pages": 5, "per_page": 1, "delay_ms": 2000}});
    let run = discover(
        &adapter,
        config,
        &settings(limits, &[], Default::default()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    assert!(
        matches!(error.limit(), Some(LimitHit::WallClock { .. })),
        "{error}"
    );
    assert!(
        error.to_string().contains("limits.wall_clock_secs"),
        "{error}"
    );
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_cap() {
    let adapter = load("sr-test-misbehave").await;
    let limits = RunLimits {
        memory_mb: 32,
        ..quick_limits()
    };
    let run = discover(
        &adapter,
        misbehave("membomb"),
        &settings(limits, &[], Default::default()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    match error.limit() {
        Some(LimitHit::Memory { cap, requested }) => {
            assert_eq!(cap, 32 << 20);
            assert!(requested > cap);
        }
        other => panic!("expected the memory limit, got {other:?}: {error}"),
    }
    assert!(error.to_string().contains("32 MiB"), "{error}");
}

#[tokio::test]
async fn panic_is_reported_as_a_crash_with_its_message() {
    let adapter = load("sr-test-misbehave").await;
    let run = discover(
        &adapter,
        misbehave("trap"),
        &settings(quick_limits(), &[], Default::default()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    assert!(matches!(error, RunError::Trap { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("misbehave@1.0.0 crashed"), "{text}");
    assert!(
        text.contains("trap mode panics on purpose"),
        "the panic message is surfaced: {text}"
    );
}

#[tokio::test]
async fn emit_flood_hits_the_device_cap() {
    let adapter = load("sr-test-misbehave").await;
    let limits = RunLimits {
        max_devices: 5_000,
        ..quick_limits()
    };
    let run = discover(
        &adapter,
        misbehave("flood"),
        &settings(limits, &[], Default::default()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    assert_eq!(
        error.limit(),
        Some(LimitHit::Devices { max: 5_000 }),
        "{error}"
    );
    assert!(
        run.devices.len() <= 5_000,
        "nothing past the cap is delivered: {}",
        run.devices.len()
    );
}

#[tokio::test]
async fn emit_flood_hits_the_byte_cap() {
    let adapter = load("sr-test-misbehave").await;
    let limits = RunLimits {
        max_emit_mb: 1,
        ..quick_limits()
    };
    let run = discover(
        &adapter,
        misbehave("flood"),
        &settings(limits, &[], Default::default()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    assert!(
        matches!(error.limit(), Some(LimitHit::Bytes { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("limits.max_emit_mb"), "{error}");
}

#[tokio::test]
async fn adapter_errors_keep_their_kind() {
    let adapter = load("sr-test-misbehave").await;
    let config = json!({"settings": {"mode": "fail", "error": "rate-limited"}});
    let run = discover(
        &adapter,
        config,
        &settings(quick_limits(), &[], Default::default()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    match error.adapter_failure() {
        Some(AdapterFailure::RateLimited {
            retry_after_secs, ..
        }) => assert_eq!(*retry_after_secs, 30),
        other => panic!("expected rate-limited, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_run_does_not_disturb_others() {
    let spinner = load("sr-test-misbehave").await;
    let faker = load("faker").await;
    let spin_limits = RunLimits {
        cpu_secs: 3,
        ..quick_limits()
    };
    let spin_settings = settings(spin_limits, &[], AddressPermissions::default());
    let faker_settings = settings(RunLimits::default(), &[], AddressPermissions::default());
    let spin = discover(&spinner, misbehave("spin"), &spin_settings, 0);
    let generate = async {
        // Several complete runs while the spinner burns its budget.
        let mut counts = Vec::new();
        for seed in 1..=3 {
            let run = discover(
                &faker,
                json!({"settings": {"seed": seed, "count": 2000}}),
                &faker_settings,
                0,
            )
            .await;
            run.outcome
                .expect("faker run succeeds beside a spinning guest");
            counts.push(run.devices.len());
        }
        counts
    };
    let (spun, counts) = tokio::join!(spin, generate);
    assert!(matches!(
        spun.outcome.unwrap_err().limit(),
        Some(LimitHit::Cpu { .. })
    ));
    assert_eq!(counts, vec![2000, 2000, 2000]);
}

#[tokio::test]
async fn guests_get_no_environment_filesystem_or_sockets() {
    let adapter = load("sr-test-misbehave").await;
    let run = discover(
        &adapter,
        misbehave("probe"),
        &settings(quick_limits(), &[], Default::default()),
        0,
    )
    .await;
    run.outcome.expect("the probe itself succeeds");
    let device = &run.devices[0];
    let get = |key: &str| {
        device
            .attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("env_vars"), "0", "no environment variables");
    assert_eq!(get("args"), "0", "no arguments");
    for key in ["fs_root", "fs_tmp", "fs_dot", "tcp", "udp"] {
        assert!(
            get(key).starts_with("error"),
            "{key} must be refused, got {:?}",
            get(key)
        );
    }
}
