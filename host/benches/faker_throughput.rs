//! Faker through the host, wasm vs the same generator compiled natively.
//!
//! Both sides do the same host work per device (normalise into a
//! DeviceUpdate, serialise it to JSON); they differ only in where the
//! generator runs: inside the sandbox (emit across the component boundary,
//! in pages, with backpressure) or natively in this process.
//!
//! Run: `cargo bench -p sr-host --bench faker_throughput [-- <devices>]`.

use std::time::{Duration, Instant};

use serde_json::json;
use sr_host::adapter::LoadedAdapter;
use sr_host::local_run::{LocalRunOptions, normalize_context, run_local};
use sr_host::normalize::{NormalizeStats, normalize};
use sr_host::sandbox::{Device, Sandbox, SandboxConfig};

const ROUNDS: usize = 5;

fn to_device(fake: faker::generator::FakeDevice) -> Device {
    // The same mapping as plugins/faker/src/component.rs.
    Device {
        source_id: fake.source_id(),
        ips: vec![fake.ip.to_string()],
        macs: fake.macs,
        hostname: Some(fake.hostname),
        device_type: Some(fake.device_type.to_string()),
        manufacturer: Some(fake.manufacturer.to_string()),
        model: Some(fake.model),
        os: Some(fake.os.to_string()),
        serial: Some(fake.serial),
        tags: fake.tags,
        first_seen: Some(fake.first_seen),
        last_seen: Some(fake.last_seen),
        attributes: vec![
            ("query_label".to_string(), "faker".to_string()),
            ("risk_level".to_string(), fake.risk_level.to_string()),
            ("site".to_string(), fake.site.to_string()),
        ],
        raw: None,
    }
}

async fn wasm_round(sandbox: &Sandbox, adapter: &LoadedAdapter, config: &serde_json::Value) -> (Duration, u64) {
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0u64;
    let started = Instant::now();
    let summary = run_local(
        sandbox,
        adapter,
        config,
        &LocalRunOptions {
            skip_validate: true,
            ..Default::default()
        },
        |update| {
            buf.clear();
            serde_json::to_writer(&mut buf, update).map_err(|e| e.to_string())?;
            bytes += buf.len() as u64;
            Ok(())
        },
        |_| {},
    )
    .await
    .expect("faker run");
    let elapsed = started.elapsed();
    assert!(bytes > 0);
    (elapsed, summary.updates)
}

fn native_round(adapter: &LoadedAdapter, config: &serde_json::Value, count: u64) -> (Duration, u64) {
    let ctx = normalize_context(adapter, config).expect("context");
    let params = faker::generator::Params {
        seed: 42,
        count,
        ..Default::default()
    };
    let mut stats = NormalizeStats::default();
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0u64;
    let started = Instant::now();
    for fake in faker::generator::run_devices(&params, 0) {
        if let Some(update) = normalize(to_device(fake), &ctx, &mut stats) {
            buf.clear();
            serde_json::to_writer(&mut buf, &update).expect("serialise");
            bytes += buf.len() as u64;
        }
    }
    let elapsed = started.elapsed();
    assert!(bytes > 0);
    (elapsed, stats.updates_out)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let count: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let path = sr_testkit::components::component("faker").expect("plugins build");
        let bytes = std::fs::read(path).expect("read faker.wasm");
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let adapter = sandbox.load(&bytes).await.expect("load faker");
        let config = json!({"settings": {"seed": 42, "count": count}, "page_size": 1000});

        // Warm up both paths once.
        wasm_round(&sandbox, &adapter, &config).await;
        native_round(&adapter, &config, count);

        let mut wasm = Vec::new();
        let mut native = Vec::new();
        for _ in 0..ROUNDS {
            let (t, n) = wasm_round(&sandbox, &adapter, &config).await;
            assert_eq!(n, count);
            wasm.push(t);
            let (t, n) = native_round(&adapter, &config, count);
            assert_eq!(n, count);
            native.push(t);
        }
        let (w, n) = (median(wasm), median(native));
        let rate = |d: Duration| count as f64 / d.as_secs_f64();
        println!("faker_throughput: {count} devices, median of {ROUNDS} rounds");
        println!("  wasm   (sandbox → normalise → JSON): {:>8.1} ms  {:>10.0} devices/s", w.as_secs_f64() * 1e3, rate(w));
        println!("  native (generator → normalise → JSON): {:>6.1} ms  {:>10.0} devices/s", n.as_secs_f64() * 1e3, rate(n));
        println!("  wasm/native time ratio: {:.2} (target ≤ 1.5)", w.as_secs_f64() / n.as_secs_f64());
    });
}
