//! Per-run overhead: instantiate a pre-linked adapter in a fresh store and run
//! a `discover` that emits nothing, 1,000 times.
//!
//! Run: `cargo bench -p sr-host --bench run_overhead`.

use std::time::{Duration, Instant};

use serde_json::json;
use sr_host::egress::EgressPolicy;
use sr_host::sandbox::{DiscoverInput, RunSettings, Sandbox, SandboxConfig};

const RUNS: usize = 1_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let path = sr_testkit::components::component("sr-test-misbehave").expect("plugins build");
        let bytes = std::fs::read(path).expect("read component");
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let adapter = sandbox.load(&bytes).await.expect("load");
        let settings = RunSettings::local("bench", EgressPolicy::deny_all());
        let config = json!({"settings": {"mode": "noop"}}).to_string();

        let mut samples = Vec::with_capacity(RUNS);
        for i in 0..RUNS + 50 {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let input = DiscoverInput {
                config: config.clone(),
                cursor: None,
                run_id: format!("run-{i}"),
                run_number: i as u64,
            };
            let started = Instant::now();
            let outcome = sandbox
                .discover(&adapter, input, &settings, tx)
                .await
                .expect("noop run");
            let elapsed = started.elapsed();
            assert_eq!(outcome.emitted_devices, 0);
            assert!(rx.recv().await.is_none());
            if i >= 50 {
                samples.push(elapsed);
            }
        }
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        println!(
            "run_overhead: instantiate + discover (emits nothing), {RUNS} runs, fresh store each"
        );
        for (name, value) in [
            ("min", samples[0]),
            ("p50", percentile(&samples, 0.5)),
            ("p90", percentile(&samples, 0.9)),
            ("p99", percentile(&samples, 0.99)),
            ("max", samples[samples.len() - 1]),
            ("mean", mean),
        ] {
            println!("  {name:<4} {:>8.1} µs", value.as_secs_f64() * 1e6);
        }
        println!("  target: median ≤ 1000 µs");
    });
}
