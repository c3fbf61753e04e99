//! Sweep generation for 100k devices (target ≤ 250 ms), aggregation on its
//! own, and what delivery costs on top: generation that also writes the
//! `config_json` body (as delivery runs it), the body on its own, and the
//! typed `SweepConfig` through prost's structs and encoded directly. Also 10k devices, the size of a
//! large agent's GetConfig. Prints wall-clock p50 / p99 / max over the runs
//! and this thread's CPU time (on a shared machine wall time includes
//! waiting for a core). Dropping the generated document is timed apart.
//!
//! Run: `cargo bench -p sr-gateway --bench sweep_generate`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::json;
use sr_gateway::sweep::{
    SweepDefaults, SweepDevice, SweepMode, SweepSource, aggregate, generate,
    generate_with_config_json,
};

/// The allocator of the `sr-gateway` binary, so the figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 20;

fn sources() -> Vec<SweepSource> {
    vec![
        SweepSource {
            id: "src-armis".into(),
            source_type: "armis".into(),
            query_sweep_modes: [("critical".to_string(), vec![SweepMode::Icmp])].into(),
            network_blacklist: vec!["10.99.0.0/16".parse().unwrap()],
            ..SweepSource::default()
        },
        SweepSource {
            id: "src-netbox".into(),
            source_type: "netbox".into(),
            ports: vec![22, 161, 443],
            ..SweepSource::default()
        },
    ]
}

/// `count` devices with distinct IPs spread over four /16s (every 8th
/// address skipped, so runs form and break), 2% IPv6, Armis and NetBox
/// identifiers, a few with ports from source data.
fn devices(count: usize) -> Vec<SweepDevice> {
    let bases = [0x0a00_0000u32, 0x0a01_0000, 0xac10_0000, 0xc0a8_0000];
    let mut out = Vec::with_capacity(count);
    let mut n = 0u32;
    while out.len() < count {
        let i = out.len();
        let ip = if i % 50 == 0 {
            IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | i as u128))
        } else {
            let block = (n as usize) % bases.len();
            let offset = n / bases.len() as u32;
            n += 1;
            if offset % 8 == 7 {
                continue;
            }
            IpAddr::V4(Ipv4Addr::from(bases[block] + offset))
        };
        let armis = i % 3 != 0;
        let metadata = if armis {
            json!({"integration_type": "armis", "integration_id": i.to_string(),
                   "armis_device_id": i.to_string(), "integration_source_id": "src-armis",
                   "query_label": if i % 10 == 0 { "critical" } else { "all" },
                   "tenant_id": "t", "sync_service_id": "ss", "all_ips": ip.to_string()})
        } else {
            json!({"integration_type": "netbox", "integration_id": i.to_string(),
                   "netbox_device_id": i.to_string(), "integration_source_id": "src-netbox",
                   "tcp_ports": if i % 7 == 0 { "22,8443" } else { "" },
                   "tenant_id": "t", "sync_service_id": "ss"})
        };
        out.push(SweepDevice::from_row(
            format!("sr:{:08x}-0000-4000-8000-{:012x}", i, i * 7919),
            Some(ip.to_string()),
            (i % 13 != 0).then(|| format!("host-{i}.example.net")),
            "default".into(),
            vec![if armis { "armis" } else { "netbox" }.into()],
            metadata,
        ));
    }
    out
}

/// CPU time of this thread: on a shared machine wall time includes waiting
/// for a core, so both are reported.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall and CPU times of the runs, each sorted.
struct Times {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

/// Times `f` over the runs; what it returns is dropped outside the timing
/// (and that drop timed separately).
fn measure<T>(mut f: impl FnMut() -> T) -> (Times, Times) {
    drop(f()); // warm-up
    let mut times = Times {
        wall: Vec::new(),
        cpu: Vec::new(),
    };
    let mut drops = Times {
        wall: Vec::new(),
        cpu: Vec::new(),
    };
    for _ in 0..RUNS {
        let (start, cpu) = (Instant::now(), thread_cpu());
        let value = black_box(f());
        times.wall.push(start.elapsed());
        times.cpu.push(thread_cpu() - cpu);
        let (start, cpu) = (Instant::now(), thread_cpu());
        drop(value);
        drops.wall.push(start.elapsed());
        drops.cpu.push(thread_cpu() - cpu);
    }
    for t in [&mut times, &mut drops] {
        t.wall.sort();
        t.cpu.sort();
    }
    (times, drops)
}

fn report(label: &str, times: &Times) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label:<40} wall p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms | cpu p50 {:>7.2} ms  max {:>7.2} ms",
        ms(pct(&times.wall, 0.5)),
        ms(pct(&times.wall, 0.99)),
        ms(times.wall[times.wall.len() - 1]),
        ms(pct(&times.cpu, 0.5)),
        ms(times.cpu[times.cpu.len() - 1]),
    );
}

fn run(count: usize) {
    let devices = devices(count);
    let sources = sources();
    let defaults = SweepDefaults::default();
    let generated = generate(&devices, &sources, &defaults);
    let doc = &generated.document;
    println!(
        "{count} devices: {} targets ({} IPv6), {} networks, config_json {:.1} MiB, typed {:.1} MiB",
        generated.stats.targets,
        generated.stats.ipv6_targets,
        generated.stats.networks,
        doc.agent_config_json().len() as f64 / (1 << 20) as f64,
        doc.to_proto().encoded_len() as f64 / (1 << 20) as f64,
    );
    let (times, drops) = measure(|| generate(black_box(&devices), &sources, &defaults));
    report(&format!("generate ({count})"), &times);
    report(&format!("  dropping the result ({count})"), &drops);
    report(
        &format!("generate with config_json ({count})"),
        &measure(|| generate_with_config_json(black_box(&devices), &sources, &defaults)).0,
    );
    let addresses: Vec<IpAddr> = doc.device_targets.iter().filter_map(|t| t.ip()).collect();
    report(
        &format!("aggregate only ({} addresses)", addresses.len()),
        &measure(|| aggregate(black_box(addresses.iter().copied()))).0,
    );
    report(
        &format!("config_json body ({count})"),
        &measure(|| doc.agent_config_json()).0,
    );
    report(
        &format!("typed SweepConfig + encode ({count})"),
        &measure(|| doc.to_proto().encode_to_vec()).0,
    );
    report(
        &format!("typed SweepConfig, direct encoding ({count})"),
        &measure(|| doc.encode_proto()).0,
    );
}

fn main() {
    run(100_000);
    println!();
    run(10_000);
}
