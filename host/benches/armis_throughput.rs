//! The Armis adapter against the Armis mock, 100k devices in pages of
//! 1,000: devices/s through the sandbox (the component's full discover,
//! wasi:http through the egress policy, devices emitted to the host) side by
//! side with a native reqwest client doing the same work (token, every page
//! with `orderBy=lastSeen`, JSON parsed and mapped onto the same device
//! records). Target: sandbox ≥ 0.7 × native.
//!
//! Run: `cargo bench -p sr-host --bench armis_throughput [-- <devices>]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use sr_host::adapter::LoadedAdapter;
use sr_host::egress::{AddressPermissions, EgressPolicy, HostPattern};
use sr_host::mock::armis::{ArmisMock, ArmisOptions};
use sr_host::mock::inventory::InventoryParams;
use sr_host::normalize::{normalize_mac, parse_ip};
use sr_host::sandbox::{Device, DiscoverInput, RunEvent, RunSettings, Sandbox, SandboxConfig};

const ROUNDS: usize = 5;
const PAGE: u64 = 1000;

/// CPU time (user + system) of the whole process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[derive(Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

fn median(mut values: Vec<Timing>) -> Timing {
    values.sort_by_key(|t| t.wall);
    values[values.len() / 2]
}

/// The sandbox side: the component's discover, devices counted as the
/// host receives them.
async fn sandbox_round(
    sandbox: &Arc<Sandbox>,
    adapter: &Arc<LoadedAdapter>,
    config: &serde_json::Value,
) -> u64 {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let input = DiscoverInput {
        config: config.to_string(),
        run_id: "bench".into(),
        ..Default::default()
    };
    let egress = EgressPolicy::new(
        [HostPattern::new("127.0.0.1")],
        AddressPermissions {
            allow_loopback: true,
            ..Default::default()
        },
    );
    let settings = RunSettings::local("bench", egress);
    let run = {
        let (sandbox, adapter) = (sandbox.clone(), adapter.clone());
        tokio::spawn(async move { sandbox.discover(&adapter, input, &settings, tx).await })
    };
    let mut devices = 0u64;
    while let Some(event) = rx.recv().await {
        if let RunEvent::Devices(batch) = event {
            for device in batch {
                std::hint::black_box(&device);
                devices += 1;
            }
        }
    }
    let outcome = run.await.expect("task").expect("armis run");
    assert_eq!(outcome.emitted_devices, devices);
    devices
}

#[derive(Deserialize)]
struct TokenResponse {
    data: TokenData,
}

#[derive(Deserialize)]
struct TokenData {
    access_token: String,
}

#[derive(Deserialize)]
struct SearchResponse {
    data: SearchData,
}

#[derive(Deserialize)]
struct SearchData {
    next: Option<u64>,
    results: Vec<ArmisDevice>,
}

#[derive(Deserialize)]
struct Site {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmisDevice {
    id: u64,
    name: Option<String>,
    ip_address: Option<String>,
    ipv6: Option<String>,
    mac_address: Option<String>,
    #[serde(rename = "type")]
    device_type: Option<String>,
    category: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    operating_system: Option<String>,
    operating_system_version: Option<String>,
    serial_number: Option<String>,
    risk_level: Option<u32>,
    boundaries: Option<String>,
    tags: Option<Vec<String>>,
    site: Option<Site>,
    first_seen: Option<String>,
    last_seen: Option<String>,
}

fn separators(c: char) -> bool {
    c == ',' || c == ';' || c.is_whitespace()
}

/// The same mapping as plugins/armis/src/record.rs.
fn to_device(d: ArmisDevice) -> Option<Device> {
    let mut ips: Vec<String> = Vec::new();
    for piece in [d.ip_address.as_deref(), d.ipv6.as_deref()]
        .into_iter()
        .flatten()
        .flat_map(|f| f.split(separators))
    {
        if let Some(ip) = parse_ip(piece).map(|ip| ip.to_string())
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return None;
    }
    let mut macs: Vec<String> = Vec::new();
    for piece in d.mac_address.as_deref().unwrap_or("").split(separators) {
        if let Some(mac) = normalize_mac(piece)
            && !macs.contains(&mac)
        {
            macs.push(mac);
        }
    }
    let id = d.id.to_string();
    let mut attributes = vec![
        ("armis_device_id".to_string(), id.clone()),
        ("query_label".to_string(), "all".to_string()),
    ];
    for (key, value) in [
        ("risk_level", d.risk_level.map(|r| r.to_string())),
        ("category", d.category),
        ("site", d.site.and_then(|s| s.name)),
        ("boundaries", d.boundaries),
    ] {
        if let Some(value) = value {
            attributes.push((key.to_string(), value));
        }
    }
    let rfc3339 = |t: Option<String>| {
        t.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| {
                t.to_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            })
    };
    Some(Device {
        source_id: id,
        ips,
        macs,
        hostname: d.name,
        device_type: d.device_type,
        manufacturer: d.manufacturer,
        model: d.model,
        os: match (d.operating_system, d.operating_system_version) {
            (Some(os), Some(v)) => Some(format!("{os} {v}")),
            (os, _) => os,
        },
        serial: d.serial_number,
        tags: d.tags.unwrap_or_default(),
        first_seen: rfc3339(d.first_seen),
        last_seen: rfc3339(d.last_seen),
        attributes,
        raw: None,
    })
}

/// Fetches every page (token, search pages) and hands each body to `page`,
/// which returns the number of devices and the next offset.
async fn fetch_pages(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    mut page: impl FnMut(&[u8]) -> (u64, Option<u64>),
) -> u64 {
    let token: TokenResponse = http
        .post(format!("{base}/api/v1/access_token/"))
        .form(&[("secret_key", secret)])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let mut from = 0u64;
    let mut devices = 0u64;
    loop {
        let body = http
            .get(format!(
                "{base}/api/v1/search/?aql=in%3Adevices&from={from}&length={PAGE}&orderBy=lastSeen"
            ))
            .header("Authorization", &token.data.access_token)
            .send()
            .await
            .expect("page")
            .bytes()
            .await
            .expect("page body");
        let (count, next) = page(&body);
        devices += count;
        match next {
            Some(next) if next > from => from = next,
            _ => break,
        }
    }
    devices
}

/// Parses a page and maps its devices.
fn parse_and_map(body: &[u8]) -> (u64, Option<u64>) {
    let page: SearchResponse = serde_json::from_slice(body).expect("page json");
    let mut devices = 0;
    for device in page.data.results.into_iter().filter_map(to_device) {
        std::hint::black_box(&device);
        devices += 1;
    }
    (devices, page.data.next)
}

/// Reads only what paging needs: the mock and HTTP alone.
fn next_only(body: &[u8]) -> (u64, Option<u64>) {
    #[derive(Deserialize)]
    struct Next {
        data: NextData,
    }
    #[derive(Deserialize)]
    struct NextData {
        next: Option<u64>,
        count: u64,
    }
    let page: Next = serde_json::from_slice(body).expect("page json");
    (page.data.count, page.data.next)
}

/// The native side: the same requests and mapping with reqwest.
async fn native_round(http: &reqwest::Client, base: &str, secret: &str) -> u64 {
    fetch_pages(http, base, secret, parse_and_map).await
}

fn main() {
    let count: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mock = ArmisMock::start(ArmisOptions {
            inventory: InventoryParams {
                seed: 42,
                devices: count,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("mock");
        let path = sr_testkit::components::component("armis").expect("plugins build");
        let bytes = std::fs::read(path).expect("read armis.wasm");
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).expect("sandbox"));
        let adapter = Arc::new(sandbox.load(&bytes).await.expect("load armis"));
        let config = json!({
            "endpoint": mock.base_url(),
            "credentials": {"secret_key": mock.secret_key()},
            "page_size": PAGE,
            "settings": {"incremental": false},
        });
        let http = reqwest::Client::new();
        let base = mock.base_url();
        let secret = mock.secret_key();

        // Warm up both (the mock caches its ordering; connections open).
        let expected = sandbox_round(&sandbox, &adapter, &config).await;
        assert_eq!(native_round(&http, &base, &secret).await, expected);

        let mut sandboxed = Vec::new();
        let mut native = Vec::new();
        let mut fetch_only = Vec::new();
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        fetch_pages(&http, &base, &secret, |body| {
            bodies.push(body.to_vec());
            next_only(body)
        })
        .await;
        for _ in 0..ROUNDS {
            let (wall, cpu) = (Instant::now(), cpu_time());
            fetch_pages(&http, &base, &secret, next_only).await;
            fetch_only.push(Timing {
                wall: wall.elapsed(),
                cpu: cpu_time() - cpu,
            });
            let (wall, cpu) = (Instant::now(), cpu_time());
            assert_eq!(sandbox_round(&sandbox, &adapter, &config).await, expected);
            sandboxed.push(Timing {
                wall: wall.elapsed(),
                cpu: cpu_time() - cpu,
            });
            let (wall, cpu) = (Instant::now(), cpu_time());
            assert_eq!(native_round(&http, &base, &secret).await, expected);
            native.push(Timing {
                wall: wall.elapsed(),
                cpu: cpu_time() - cpu,
            });
        }
        let (wall, cpu) = (Instant::now(), cpu_time());
        for _ in 0..ROUNDS {
            let mapped: u64 = bodies.iter().map(|b| parse_and_map(b).0).sum();
            assert_eq!(mapped, expected);
        }
        let parse_only = Timing {
            wall: wall.elapsed() / ROUNDS as u32,
            cpu: (cpu_time() - cpu) / ROUNDS as u32,
        };
        let (s, n) = (median(sandboxed), median(native));
        let floor = median(fetch_only);
        let rate = |t: Timing| expected as f64 / t.wall.as_secs_f64();
        println!(
            "armis_throughput: {count} devices ({expected} with an IP) in pages of {PAGE}, median of {ROUNDS} rounds"
        );
        println!("  {:<44} {:>9} {:>9} {:>12}", "", "wall ms", "cpu ms", "devices/s");
        for (name, t) in [
            ("sandbox (armis.wasm, wasi:http, emit)", s),
            ("native  (reqwest, same requests + mapping)", n),
            ("  mock + HTTP alone (pages fetched, unread)", floor),
            ("  native parse + map alone (bodies in memory)", parse_only),
        ] {
            println!(
                "  {name:<44} {:>9.1} {:>9.1} {:>12.0}",
                t.wall.as_secs_f64() * 1e3,
                t.cpu.as_secs_f64() * 1e3,
                rate(t)
            );
        }
        println!(
            "  sandbox/native devices/s: {:.2} wall, {:.2} cpu (target ≥ 0.7); both include the in-process mock serving the pages",
            rate(s) / rate(n),
            n.cpu.as_secs_f64() / s.cpu.as_secs_f64()
        );
        println!(
            "  client side only (minus mock + HTTP): sandbox {:.0} ms, native {:.0} ms",
            s.wall.saturating_sub(floor.wall).as_secs_f64() * 1e3,
            n.wall.saturating_sub(floor.wall).as_secs_f64() * 1e3
        );
        mock.stop().await;
    });
}
