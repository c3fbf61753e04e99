//! **TEST FIXTURE, not a product.** An adapter component that misbehaves on
//! request, for the sync host's sandbox, limit and hot-reload tests.
//!
//! The same source builds two components: `sr-test-misbehave` (version
//! 1.0.0) and `sr-test-misbehave-v2` (version 2.0.0). Both describe
//! themselves as name `misbehave`, source type `misbehave`, with the
//! version of their crate.
//!
//! # Configuration
//!
//! `settings.mode` (required) picks the behaviour; the other settings apply
//! to some modes only. Unknown modes fail `validate` and `discover` with
//! `invalid-config` naming `settings.mode`.
//!
//! | mode | `discover` does |
//! |---|---|
//! | `noop` | nothing: returns `{devices: 0, complete: true}` (per-run overhead) |
//! | `spin` | loops forever without host calls (CPU deadline) |
//! | `membomb` | allocates and touches memory without bound (memory limit) |
//! | `trap` | panics with `misbehave: trap mode panics on purpose` (the SDK logs `adapter panicked: <message>` at error level through the host first) |
//! | `egress` | GETs `settings.url` once (no retries, redirects followed); a response, whatever its status, emits one device `<version>-egress` with attributes `http_status` and `url`; no response returns `unavailable` with the error text |
//! | `flood` | emits valid devices forever, `settings.page` (default 1000) per emit call (device and byte limits) |
//! | `bad-data` | emits the fixed set below in one emit call; `complete: true` |
//! | `slow` | emits `settings.pages` (default 3) pages of `settings.per_page` (default 10) devices, sleeping `settings.delay_ms` (default 1000) between pages |
//! | `checkpoint` | emits `settings.pages` (default 3) pages of `settings.per_page` (default 10) devices and calls `checkpoint("<page>")` after each (`"1"`, `"2"`, ...); returns `complete: true` with cursor `"done"` |
//! | `fail` | returns the error named by `settings.error`: `invalid-config`, `unauthorized`, `unavailable`, `rate-limited` (retry after 30 s), `protocol` or `internal` |
//! | `probe` | tries what the sandbox must not grant and reports it in one device `<version>-probe`: attributes `env_vars` (count), `args` (count), `fs_root` / `fs_tmp` / `fs_dot` (`ok` or the error), `tcp` and `udp` (`ok` or the error of a connect/bind) |
//!
//! `egress` needs `settings.url` and `fail` needs `settings.error`;
//! `validate` refuses the configuration without them. With
//! `settings.validate_url`, `validate` GETs that URL once: a response,
//! whatever its status, passes; no response fails with `unavailable`.
//!
//! Devices of `flood`, `slow` and `checkpoint` are numbered from 0 across
//! the run: source id `<version>-<n>` (`1.0.0-0`, `2.0.0-0`, ...), IP
//! `10.<b>.<c>.<d>` unique for n < 16,646,144 (subnet `n / 254`, host
//! `n % 254 + 1`), one MAC `5C:00:00:xx:xx:xx` (low 24 bits of n; a globally administered
//! unicast address, so a strong identifier), hostname
//! `misbehave-<n>`.
//!
//! # The `bad-data` set
//!
//! Eight devices, in this order:
//!
//! | source id | ips | macs | what the host should do |
//! |---|---|---|---|
//! | `bad-1` | `10.0.0.1` | `aa:bb:cc:dd:ee:01` | keep |
//! | `bad-2` | `999.1.1.1`, `10.0.0.2` | `aa-bb-cc-dd-ee-02` | keep, primary 10.0.0.2; drop 1 IP |
//! | `bad-3` | `not-an-ip`, `""`, `10.0.0.3` | `aabb.ccdd.ee03` | keep, primary 10.0.0.3; drop 2 IPs |
//! | `bad-4` | `10.0.0.5/24` | `AABBCCDDEE04` | keep, IP 10.0.0.5 (prefix stripped) |
//! | `bad-5` | `2001:db8::1` | `zz:zz` | keep (IPv6); drop the MAC |
//! | `bad-6` | `999.1.1.1`, `not-an-ip`, `""` | `aa:bb:cc:dd:ee:06` | drop: no valid IP |
//! | `""` (empty) | `10.0.0.7` | `aa:bb:cc:dd:ee:07` | drop: empty source id |
//! | `bad-8` | (none) | (none) | drop: no IP |
//!
//! So: 8 emitted, 5 kept, 3 dropped; 6 invalid IP entries (1 in `bad-2`, 2
//! in `bad-3`, 3 in `bad-6`), 1 invalid MAC (`bad-5`). The kept MACs
//! normalise to `AA:BB:CC:DD:EE:01` … `AA:BB:CC:DD:EE:04`. Every device has
//! hostname `bad-data-<k>` for k = 1..8 (the empty-id one `bad-data-7`).

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sr_adapter_sdk::http::{Client, Request};
use sr_adapter_sdk::url::Url;
use sr_adapter_sdk::{Adapter, AdapterError, Config, Description, Device, Run, Summary};

/// `1.0.0` or `2.0.0`: the crate this source is built as.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `discover` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Noop,
    Spin,
    Membomb,
    Trap,
    Egress,
    Flood,
    BadData,
    Slow,
    Checkpoint,
    Fail,
    Probe,
}

/// The error `fail` mode returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum ErrorKind {
    InvalidConfig,
    Unauthorized,
    Unavailable,
    RateLimited,
    Protocol,
    Internal,
}

/// The `settings` object.
#[derive(Debug, Deserialize, JsonSchema)]
struct Settings {
    /// The behaviour of `discover`.
    mode: Mode,
    /// `egress`: the URL to GET.
    #[serde(default)]
    url: Option<String>,
    /// `validate` GETs this URL when set.
    #[serde(default)]
    validate_url: Option<String>,
    /// `flood`: devices per emit call.
    #[serde(default)]
    page: Option<usize>,
    /// `slow`, `checkpoint`: number of pages.
    #[serde(default)]
    pages: Option<u64>,
    /// `slow`, `checkpoint`: devices per page.
    #[serde(default)]
    per_page: Option<u64>,
    /// `slow`: pause between pages, in milliseconds.
    #[serde(default)]
    delay_ms: Option<u64>,
    /// `fail`: the error to return.
    #[serde(default)]
    error: Option<ErrorKind>,
}

struct Misbehave;

impl Adapter for Misbehave {
    type Settings = Settings;

    fn describe() -> Description {
        Description::new(
            "misbehave",
            VERSION,
            "misbehave",
            "TEST FIXTURE: misbehaves on request for sandbox tests",
        )
    }

    fn validate(config: &Config<Settings>) -> Result<(), AdapterError> {
        let settings = &config.settings;
        match settings.mode {
            Mode::Egress => {
                required_url(settings.url.as_deref(), "settings.url")?;
            }
            Mode::Fail if settings.error.is_none() => {
                return Err(AdapterError::invalid_config(
                    "settings.error",
                    "required in fail mode: invalid-config, unauthorized, unavailable, rate-limited, protocol or internal",
                ));
            }
            _ => {}
        }
        if let Some(url) = &settings.validate_url {
            get_once(&required_url(Some(url), "settings.validate_url")?)?;
        }
        Ok(())
    }

    fn discover(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
        match run.settings().mode {
            Mode::Noop => Ok(Summary::complete()),
            Mode::Spin => spin(),
            Mode::Membomb => membomb(),
            Mode::Trap => panic!("misbehave: trap mode panics on purpose"),
            Mode::Egress => egress(run),
            Mode::Flood => flood(run),
            Mode::BadData => {
                for device in bad_data() {
                    run.emit(device);
                }
                Ok(Summary::complete())
            }
            Mode::Slow => slow(run),
            Mode::Checkpoint => checkpoint(run),
            Mode::Fail => Err(failure(run.settings().error)),
            Mode::Probe => {
                run.emit(probe());
                Ok(Summary::complete())
            }
        }
    }
}

/// Tries the ambient capabilities a guest must not have.
fn probe() -> Device {
    fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
        match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        }
    }
    Device::new(format!("{VERSION}-probe"))
        .ip("10.255.255.1")
        .attribute("env_vars", std::env::vars_os().count().to_string())
        .attribute("args", std::env::args_os().count().to_string())
        .attribute("fs_root", outcome(std::fs::read_dir("/")))
        .attribute("fs_tmp", outcome(std::fs::write("/tmp/sr-probe", b"x")))
        .attribute("fs_dot", outcome(std::fs::read_dir(".")))
        .attribute("tcp", outcome(std::net::TcpStream::connect("127.0.0.1:80")))
        .attribute("udp", outcome(std::net::UdpSocket::bind("0.0.0.0:0")))
}

sr_adapter_sdk::export_adapter!(Misbehave);

fn required_url(url: Option<&str>, field: &str) -> Result<Url, AdapterError> {
    let url = url.ok_or_else(|| AdapterError::invalid_config(field, "required"))?;
    Url::parse(url).map_err(|e| AdapterError::invalid_config(field, e))
}

/// One GET, no retries; any status counts as a response.
fn get_once(url: &Url) -> Result<u16, AdapterError> {
    Client::new()
        .with_retry(sr_adapter_sdk::RetryPolicy::none())
        .send(&Request::get(url.clone()))
        .map(|response| response.status())
        .map_err(|e| AdapterError::unavailable(e.to_string()))
}

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn membomb() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        // Write every page so the memory is really committed.
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 1;
        }
        hoard.push(std::hint::black_box(chunk));
    }
}

fn egress(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
    let url = required_url(run.settings().url.as_deref(), "settings.url")?;
    let status = get_once(&url)?;
    let mut device = numbered(0)
        .attribute("http_status", status.to_string())
        .attribute("url", url.redacted());
    device.source_id = format!("{VERSION}-egress");
    run.emit(device);
    Ok(Summary::complete())
}

fn flood(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
    run.set_page_size(run.settings().page.unwrap_or(1000));
    let mut n = 0u64;
    loop {
        run.emit(numbered(n));
        n = n.wrapping_add(1);
    }
}

fn slow(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
    let pages = run.settings().pages.unwrap_or(3);
    let per_page = run.settings().per_page.unwrap_or(10);
    let delay = Duration::from_millis(run.settings().delay_ms.unwrap_or(1000));
    let mut n = 0;
    for page in 0..pages {
        if page > 0 {
            sr_adapter_sdk::time::sleep(delay);
        }
        for _ in 0..per_page {
            run.emit(numbered(n));
            n += 1;
        }
        run.flush();
    }
    Ok(Summary::complete())
}

fn checkpoint(run: &mut Run<Settings>) -> Result<Summary, AdapterError> {
    let pages = run.settings().pages.unwrap_or(3);
    let per_page = run.settings().per_page.unwrap_or(10);
    let mut n = 0;
    for page in 1..=pages {
        for _ in 0..per_page {
            run.emit(numbered(n));
            n += 1;
        }
        run.checkpoint(page.to_string());
    }
    Ok(Summary::complete().with_cursor("done"))
}

fn failure(kind: Option<ErrorKind>) -> AdapterError {
    let message = "misbehave: failing on purpose";
    match kind {
        Some(ErrorKind::InvalidConfig) => AdapterError::invalid_config("settings.error", message),
        Some(ErrorKind::Unauthorized) => AdapterError::unauthorized(message),
        Some(ErrorKind::Unavailable) => AdapterError::unavailable(message),
        Some(ErrorKind::RateLimited) => {
            AdapterError::rate_limited(Duration::from_secs(30), message)
        }
        Some(ErrorKind::Protocol) => AdapterError::protocol(message),
        Some(ErrorKind::Internal) => AdapterError::internal(message),
        None => AdapterError::invalid_config(
            "settings.error",
            "required in fail mode: invalid-config, unauthorized, unavailable, rate-limited, protocol or internal",
        ),
    }
}

/// Device `n` of the numbered series (see the crate docs).
fn numbered(n: u64) -> Device {
    let subnet = n / 254;
    let ip = format!(
        "10.{}.{}.{}",
        (subnet >> 8) & 0xFF,
        subnet & 0xFF,
        n % 254 + 1
    );
    let mac = format!(
        "5C:00:00:{:02X}:{:02X}:{:02X}",
        (n >> 16) & 0xFF,
        (n >> 8) & 0xFF,
        n & 0xFF
    );
    Device::new(format!("{VERSION}-{n}"))
        .ip(ip)
        .mac(mac)
        .hostname(format!("misbehave-{n}"))
}

/// The fixed `bad-data` set documented at the top of this file.
fn bad_data() -> Vec<Device> {
    let device = |k: u32, id: &str, ips: &[&str], macs: &[&str]| Device {
        source_id: id.to_string(),
        ips: ips.iter().map(|s| s.to_string()).collect(),
        macs: macs.iter().map(|s| s.to_string()).collect(),
        hostname: Some(format!("bad-data-{k}")),
        ..Device::default()
    };
    vec![
        device(1, "bad-1", &["10.0.0.1"], &["aa:bb:cc:dd:ee:01"]),
        device(
            2,
            "bad-2",
            &["999.1.1.1", "10.0.0.2"],
            &["aa-bb-cc-dd-ee-02"],
        ),
        device(
            3,
            "bad-3",
            &["not-an-ip", "", "10.0.0.3"],
            &["aabb.ccdd.ee03"],
        ),
        device(4, "bad-4", &["10.0.0.5/24"], &["AABBCCDDEE04"]),
        device(5, "bad-5", &["2001:db8::1"], &["zz:zz"]),
        device(
            6,
            "bad-6",
            &["999.1.1.1", "not-an-ip", ""],
            &["aa:bb:cc:dd:ee:06"],
        ),
        device(7, "", &["10.0.0.7"], &["aa:bb:cc:dd:ee:07"]),
        device(8, "bad-8", &[], &[]),
    ]
}
