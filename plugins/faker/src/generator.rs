//! The Faker device generator: pure, deterministic, O(1) per device, no
//! dependencies, so it compiles natively for benchmarks and for tests that
//! compute the devices a Faker integration must produce.
//!
//! # Devices
//!
//! Device `index` (0-based) has id `index + 1`, its source id is the id in
//! decimal, and its base IP is [`base_ip`]:
//!
//! - the first [`PRIVATE_172_DEVICES`] (1,040,384) devices use the
//!   reference scheme in 172.16.0.0/12: subnet `index / 254`, host
//!   `index % 254 + 1`, address `172.(16 + subnet / 256).(subnet % 256).host`;
//! - later devices continue with the same scheme in 10.0.0.0/8, counting
//!   from `j = index - 1,040,384`: `10.(subnet / 256).(subnet % 256).host`
//!   with subnet `j / 254` and host `j % 254 + 1`.
//!
//! Host octets are always 1..=254, and every index below [`CAPACITY`] gets a
//! distinct address.
//!
//! MACs: a primary `OUI:id` where the 3-byte OUI is derived from the seed
//! (multicast and locally-administered bits cleared, so identity
//! reconciliation treats them as strong) and the low 3 bytes are the id;
//! every fourth device (`index % 4 == 3`) has a second MAC with a second
//! seed-derived OUI. Ids stay below 2^24, so MACs never collide.
//!
//! # Runs and churn
//!
//! Churn is keyed by the run number and the seed, and is not cumulative:
//! run `r` applies its own changes to the base assignment.
//!
//! - Window: run `r` emits the indices [`active_window`] =
//!   `[r * retire_per_run, count + r * add_per_run)` (end capped at
//!   [`CAPACITY`]).
//! - IP swaps: with `half = window length / 2`, the device at window
//!   position `p < half` pairs with position `p + half`; pair `p` swaps
//!   IPs in run `r > 0` iff `hash(seed, r, p) % 10000 < ip_swap_percent * 100`.
//!   Run 0 never swaps.
//!
//! The attribute `query_label` and the identifiers the host stamps
//! (`integration_type` = `faker`, `integration_id` = the source id) are not
//! part of a [`FakeDevice`]: the component adds the first configured query
//! label (or `faker`), the host adds the rest.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

/// Largest `count` a configuration may ask for.
pub const MAX_COUNT: u64 = 10_000_000;

/// Indices the generator can address: ids (`index + 1`) must fit the
/// 24-bit MAC suffix. Devices added by churn past it are not generated.
pub const CAPACITY: u64 = (1 << 24) - 1;

/// Devices whose base IP is in 172.16.0.0/12 (16 × 256 subnets × 254 hosts).
pub const PRIVATE_172_DEVICES: u64 = 16 * 256 * 254;

/// Generator parameters: the `settings` of a Faker integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Seed of everything random-looking (MACs, serial prefix, risk, swaps).
    pub seed: u64,
    /// Devices in run 0.
    pub count: u64,
    /// Per-run changes.
    pub churn: Churn,
}

/// Per-run changes to the inventory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Churn {
    /// Percentage (0–100) of device pairs whose IPs swap in each run > 0.
    pub ip_swap_percent: u32,
    /// Devices added per run (the window's end moves up).
    pub add_per_run: u64,
    /// Devices retired per run (the window's start moves up).
    pub retire_per_run: u64,
}

impl Default for Params {
    /// Seed 1, 100 devices, no churn.
    fn default() -> Self {
        Self {
            seed: 1,
            count: 100,
            churn: Churn::default(),
        }
    }
}

/// A parameter out of range, named by its path in the integration
/// configuration (`settings.count`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidParam {
    /// Path of the offending setting.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InvalidParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidParam {}

impl Params {
    /// Checks the ranges: `count` ≤ [`MAX_COUNT`], `ip_swap_percent` ≤ 100.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        if self.count > MAX_COUNT {
            return Err(InvalidParam {
                field: "settings.count",
                message: format!("at most {MAX_COUNT} devices, got {}", self.count),
            });
        }
        if self.churn.ip_swap_percent > 100 {
            return Err(InvalidParam {
                field: "settings.churn.ip_swap_percent",
                message: format!(
                    "a percentage from 0 to 100, got {}",
                    self.churn.ip_swap_percent
                ),
            });
        }
        Ok(())
    }
}

/// One generated device. Plain data; the component maps it onto the SDK's
/// device record field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDevice {
    /// 0-based index.
    pub index: u64,
    /// `index + 1`; its decimal form is the source id.
    pub id: u64,
    /// The device's IP in this run (after any swap).
    pub ip: Ipv4Addr,
    /// One or two MACs, upper-case, colon-separated.
    pub macs: Vec<String>,
    /// `FAKER-<MAN>-<TYP>-<id, 5 digits at least>`.
    pub hostname: String,
    /// Manufacturer name.
    pub manufacturer: &'static str,
    /// Device type name.
    pub device_type: &'static str,
    /// Model.
    pub model: String,
    /// Operating system.
    pub os: &'static str,
    /// Serial number, unique per id.
    pub serial: String,
    /// Tags: `faker`, the type slug, `env:prod` or `env:lab`.
    pub tags: Vec<String>,
    /// RFC 3339, in 2024.
    pub first_seen: String,
    /// RFC 3339: on 2025-01-01 in run 0, one day later per run.
    pub last_seen: String,
    /// 0–99, like Armis' risk level.
    pub risk_level: u8,
    /// Site name, the same for every device of a /24.
    pub site: &'static str,
}

impl FakeDevice {
    /// The source id: the id in decimal.
    pub fn source_id(&self) -> String {
        self.id.to_string()
    }
}

const MANUFACTURERS: [(&str, &str); 7] = [
    ("Cisco", "CSC"),
    ("Juniper", "JNP"),
    ("Aruba", "ARU"),
    ("Dell", "DEL"),
    ("HP", "HPE"),
    ("Lenovo", "LNV"),
    ("Fortinet", "FTN"),
];

/// (name, hostname code, tag slug, operating system)
const TYPES: [(&str, &str, &str, &str); 9] = [
    ("Switch", "SW", "switch", "NX-OS 10.2"),
    ("Router", "RTR", "router", "IOS XE 17.9"),
    ("Firewall", "FW", "firewall", "FortiOS 7.2"),
    ("Access Point", "AP", "access-point", "ArubaOS 8.10"),
    ("Server", "SRV", "server", "Ubuntu 22.04"),
    ("Laptop", "LAP", "laptop", "Windows 11"),
    ("Workstation", "WS", "workstation", "Windows 10"),
    ("Printer", "PRN", "printer", "Printer Firmware 4.1"),
    ("IP Camera", "CAM", "ip-camera", "Embedded Linux 5.10"),
];

const SITES: [&str; 8] = [
    "Austin", "Berlin", "Chennai", "Denver", "Lisbon", "Osaka", "Sydney", "Toronto",
];

/// 2024-01-01T00:00:00Z
const FIRST_SEEN_EPOCH: u64 = 1_704_067_200;
/// 2025-01-01T00:00:00Z
const LAST_SEEN_EPOCH: u64 = 1_735_689_600;

/// The base IP of device `index` (before churn). Defined for
/// `index < CAPACITY`.
pub fn base_ip(index: u64) -> Ipv4Addr {
    let (first, j) = if index < PRIVATE_172_DEVICES {
        (172, index)
    } else {
        (10, index - PRIVATE_172_DEVICES)
    };
    let subnet = j / 254;
    let host = (j % 254 + 1) as u8;
    let (second, third) = if first == 172 {
        (16 + (subnet / 256) as u8, (subnet % 256) as u8)
    } else {
        ((subnet / 256) as u8, (subnet % 256) as u8)
    };
    Ipv4Addr::new(first, second, third, host)
}

/// The indices emitted in `run`: `[run * retire_per_run, count + run *
/// add_per_run)`, the end capped at [`CAPACITY`]; empty once retirement
/// overtakes.
pub fn active_window(params: &Params, run: u64) -> Range<u64> {
    let end = params
        .count
        .saturating_add(run.saturating_mul(params.churn.add_per_run))
        .min(CAPACITY);
    let start = run.saturating_mul(params.churn.retire_per_run).min(end);
    start..end
}

/// The device whose base IP `index` carries in `run`, if its pair swaps in
/// that run; `None` when it keeps its own (run 0, unpaired, not swapped, or
/// outside the window).
pub fn swap_partner(params: &Params, run: u64, index: u64) -> Option<u64> {
    if run == 0 || params.churn.ip_swap_percent == 0 {
        return None;
    }
    let window = active_window(params, run);
    if !window.contains(&index) {
        return None;
    }
    let half = (window.end - window.start) / 2;
    let position = index - window.start;
    let (pair, partner) = if position < half {
        (position, index + half)
    } else if position < 2 * half {
        (position - half, index - half)
    } else {
        return None;
    };
    let threshold = u64::from(params.churn.ip_swap_percent) * 100;
    (hash3(params.seed, run, pair) % 10_000 < threshold).then_some(partner)
}

/// The IP of device `index` in `run`, churn applied.
pub fn ip(params: &Params, run: u64, index: u64) -> Ipv4Addr {
    base_ip(swap_partner(params, run, index).unwrap_or(index))
}

/// The MACs of device `index`: the primary, and for every fourth device a
/// second one under another OUI.
pub fn macs(seed: u64, index: u64) -> Vec<String> {
    let id = index + 1;
    let (primary_oui, secondary_oui) = ouis(seed);
    let mut macs = vec![format_mac(primary_oui, id)];
    if index % 4 == 3 {
        macs.push(format_mac(secondary_oui, id));
    }
    macs
}

/// Device `index` as run `run` emits it. Any index below [`CAPACITY`] can
/// be asked for; churn only applies inside the run's window.
pub fn device(params: &Params, run: u64, index: u64) -> FakeDevice {
    let id = index + 1;
    let (manufacturer, man_code) = MANUFACTURERS[(index % 7) as usize];
    let (device_type, type_code, type_slug, os) = TYPES[(index % 9) as usize];
    let serial_prefix = (mix(params.seed ^ 0x005E_81A1) & 0xFFFF) as u16;
    let day = index % 365;
    let second_of_day = index % 86_400;
    FakeDevice {
        index,
        id,
        ip: ip(params, run, index),
        macs: macs(params.seed, index),
        hostname: format!("FAKER-{man_code}-{type_code}-{id:05}"),
        manufacturer,
        device_type,
        model: format!("{man_code}-{type_code}-{}", 100 + (index / 63) % 900),
        os,
        serial: format!("FKR{serial_prefix:04X}{id:08}"),
        tags: vec![
            "faker".to_string(),
            type_slug.to_string(),
            if index.is_multiple_of(4) {
                "env:lab"
            } else {
                "env:prod"
            }
            .to_string(),
        ],
        first_seen: rfc3339(FIRST_SEEN_EPOCH + day * 86_400 + second_of_day),
        // Each run re-observes the inventory a day later, as a real source
        // would: observations of a later run are newer than earlier ones.
        last_seen: rfc3339(LAST_SEEN_EPOCH + run * 86_400 + second_of_day),
        risk_level: (hash3(params.seed, 0x415C, id) % 100) as u8,
        site: SITES[((index / 254) % 8) as usize],
    }
}

/// Iterator over the devices of `run` whose indices are in `range` and in
/// the run's window, generated one at a time.
pub fn devices(params: &Params, run: u64, range: Range<u64>) -> Devices {
    let window = active_window(params, run);
    Devices {
        params: *params,
        run,
        next: range.start.max(window.start),
        end: range.end.min(window.end),
    }
}

/// Iterator over every device of `run` (its whole [`active_window`]).
pub fn run_devices(params: &Params, run: u64) -> Devices {
    devices(params, run, active_window(params, run))
}

/// Devices generated on demand; see [`devices`].
#[derive(Debug, Clone)]
pub struct Devices {
    params: Params,
    run: u64,
    next: u64,
    end: u64,
}

impl Iterator for Devices {
    type Item = FakeDevice;

    fn next(&mut self) -> Option<FakeDevice> {
        if self.next >= self.end {
            return None;
        }
        let device = device(&self.params, self.run, self.next);
        self.next += 1;
        Some(device)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end.saturating_sub(self.next)).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Devices {}

/// The two OUIs of a seed: multicast (bit 0) and locally-administered
/// (bit 1) bits of the first byte cleared; never equal.
fn ouis(seed: u64) -> (u32, u32) {
    let oui = |salt: u64| ((mix(seed ^ salt) >> 40) as u32) & 0xFC_FFFF;
    let primary = oui(0x000A_11CE);
    let mut secondary = oui(0x000B_0B0B);
    if secondary == primary {
        secondary ^= 0x00_0100;
    }
    (primary, secondary)
}

fn format_mac(oui: u32, id: u64) -> String {
    let b = |v: u64, shift: u32| (v >> shift) & 0xFF;
    let oui = u64::from(oui);
    format!(
        "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
        b(oui, 16),
        b(oui, 8),
        b(oui, 0),
        b(id, 16),
        b(id, 8),
        b(id, 0)
    )
}

/// splitmix64's finaliser: a fast, well-mixed 64-bit hash.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash3(a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(a) ^ b) ^ c)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (days-to-civil, Howard Hinnant).
fn rfc3339(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn params(count: u64, churn: Churn) -> Params {
        Params {
            seed: 7,
            count,
            churn,
        }
    }

    #[test]
    fn base_ips_follow_the_reference_formula() {
        assert_eq!(base_ip(0), Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(base_ip(253), Ipv4Addr::new(172, 16, 0, 254));
        assert_eq!(base_ip(254), Ipv4Addr::new(172, 16, 1, 1));
        assert_eq!(base_ip(65_023), Ipv4Addr::new(172, 16, 255, 254));
        assert_eq!(base_ip(65_024), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(
            base_ip(PRIVATE_172_DEVICES - 1),
            Ipv4Addr::new(172, 31, 255, 254)
        );
        assert_eq!(base_ip(PRIVATE_172_DEVICES), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            base_ip(PRIVATE_172_DEVICES + 254),
            Ipv4Addr::new(10, 0, 1, 1)
        );
        assert_eq!(base_ip(CAPACITY - 1), Ipv4Addr::new(10, 242, 4, 7));
    }

    #[test]
    fn ips_are_unique_private_and_never_network_or_broadcast() {
        // Around the 172 → 10 boundary and the first 300k devices.
        let ranges = [
            0..300_000,
            PRIVATE_172_DEVICES - 100_000..PRIVATE_172_DEVICES + 100_000,
        ];
        let mut seen = HashSet::new();
        for index in ranges.into_iter().flatten() {
            let ip = base_ip(index);
            assert!(ip.is_private(), "{index}: {ip}");
            assert!(!matches!(ip.octets()[3], 0 | 255), "{index}: {ip}");
            assert!(seen.insert(ip), "duplicate {ip} at {index}");
        }
    }

    #[test]
    fn every_index_up_to_capacity_has_its_own_ip() {
        // The formula is injective iff the (first, second, third, host)
        // tuple determines the index; check by inverting it at the edges
        // and on a stride through the whole space.
        let invert = |ip: Ipv4Addr| {
            let [a, b, c, d] = ip.octets().map(u64::from);
            if a == 172 {
                ((b - 16) * 256 + c) * 254 + d - 1
            } else {
                PRIVATE_172_DEVICES + (b * 256 + c) * 254 + d - 1
            }
        };
        for index in (0..CAPACITY).step_by(997).chain([CAPACITY - 1]) {
            assert_eq!(invert(base_ip(index)), index);
        }
    }

    #[test]
    fn macs_are_unique_strong_and_seeded() {
        let mut seen = HashSet::new();
        for index in 0..200_000 {
            for mac in macs(7, index) {
                let first = u8::from_str_radix(&mac[..2], 16).unwrap();
                assert_eq!(first & 0b11, 0, "{mac}: multicast or local bit set");
                assert_eq!(mac, mac.to_uppercase());
                assert!(seen.insert(mac.clone()), "duplicate {mac}");
            }
        }
        assert_eq!(macs(7, 0).len(), 1);
        assert_eq!(macs(7, 3).len(), 2);
        assert_eq!(&macs(7, 0)[0][9..], "00:00:01");
        assert_eq!(&macs(7, CAPACITY - 1)[0][9..], "FF:FF:FF");
        assert_ne!(macs(7, 0), macs(8, 0));
        for seed in 0..2000 {
            let (a, b) = ouis(seed);
            assert_ne!(a, b);
            assert_eq!((a >> 16) & 0b11, 0);
            assert_eq!((b >> 16) & 0b11, 0);
        }
    }

    #[test]
    fn devices_are_deterministic_and_descriptive() {
        let p = params(1000, Churn::default());
        let a: Vec<_> = run_devices(&p, 0).collect();
        let b: Vec<_> = run_devices(&p, 0).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 1000);
        let d = &a[0];
        assert_eq!(d.source_id(), "1");
        assert_eq!(d.hostname, "FAKER-CSC-SW-00001");
        assert_eq!(d.manufacturer, "Cisco");
        assert_eq!(d.device_type, "Switch");
        assert_eq!(d.first_seen, "2024-01-01T00:00:00Z");
        assert_eq!(d.last_seen, "2025-01-01T00:00:00Z");
        assert_eq!(device(&p, 2, 0).last_seen, "2025-01-03T00:00:00Z");
        assert_eq!(d.tags, ["faker", "switch", "env:lab"]);
        assert_eq!(a[10].hostname, "FAKER-DEL-RTR-00011");
        assert_eq!(device(&p, 0, 123_455).hostname, "FAKER-DEL-FW-123456");
        let d = &a[999];
        assert_eq!(d.first_seen, "2024-09-26T00:16:39Z");
        assert!(d.risk_level < 100);
        let serials: HashSet<_> = a.iter().map(|d| d.serial.clone()).collect();
        assert_eq!(serials.len(), 1000);
        // Another seed changes seeded fields only.
        let other = device(&Params { seed: 8, ..p }, 0, 0);
        assert_eq!(other.hostname, a[0].hostname);
        assert_ne!(other.macs, a[0].macs);
    }

    #[test]
    fn rfc3339_handles_leap_years_and_month_ends() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_800), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn run_zero_never_swaps() {
        let p = params(
            10_000,
            Churn {
                ip_swap_percent: 100,
                ..Churn::default()
            },
        );
        for index in 0..10_000 {
            assert_eq!(swap_partner(&p, 0, index), None);
            assert_eq!(ip(&p, 0, index), base_ip(index));
        }
    }

    #[test]
    fn a_swap_exchanges_exactly_two_devices_ips() {
        let p = params(
            10_001,
            Churn {
                ip_swap_percent: 30,
                ..Churn::default()
            },
        );
        let run = 3;
        let mut swapped = 0;
        for index in 0..10_001 {
            match swap_partner(&p, run, index) {
                Some(partner) => {
                    swapped += 1;
                    assert_ne!(partner, index);
                    assert_eq!(swap_partner(&p, run, partner), Some(index));
                    assert_eq!(ip(&p, run, index), base_ip(partner));
                    assert_eq!(ip(&p, run, partner), base_ip(index));
                }
                None => assert_eq!(ip(&p, run, index), base_ip(index)),
            }
        }
        // The odd device out never pairs.
        assert_eq!(swap_partner(&p, run, 10_000), None);
        // IPs stay unique within the run.
        let ips: HashSet<_> = run_devices(&p, run).map(|d| d.ip).collect();
        assert_eq!(ips.len(), 10_001);
        assert!(swapped > 0 && swapped % 2 == 0);
    }

    #[test]
    fn swap_percentage_is_roughly_honoured_and_varies_by_run() {
        for percent in [0, 10, 50, 100] {
            let p = params(
                100_000,
                Churn {
                    ip_swap_percent: percent,
                    ..Churn::default()
                },
            );
            let swapped = (0..100_000)
                .filter(|&i| swap_partner(&p, 5, i).is_some())
                .count();
            let expected = 100_000.0 * f64::from(percent) / 100.0;
            assert!(
                (swapped as f64 - expected).abs() <= 1_000.0,
                "{percent}%: {swapped}"
            );
        }
        let p = params(
            10_000,
            Churn {
                ip_swap_percent: 50,
                ..Churn::default()
            },
        );
        let run1: Vec<_> = (0..10_000).map(|i| swap_partner(&p, 1, i)).collect();
        let run2: Vec<_> = (0..10_000).map(|i| swap_partner(&p, 2, i)).collect();
        assert_ne!(run1, run2, "each run swaps its own pairs");
        let again: Vec<_> = (0..10_000).map(|i| swap_partner(&p, 1, i)).collect();
        assert_eq!(run1, again, "not cumulative: run 1 is always the same");
    }

    #[test]
    fn windows_add_and_retire_devices() {
        let p = params(
            100,
            Churn {
                add_per_run: 10,
                retire_per_run: 3,
                ..Churn::default()
            },
        );
        assert_eq!(active_window(&p, 0), 0..100);
        assert_eq!(active_window(&p, 1), 3..110);
        assert_eq!(active_window(&p, 4), 12..140);
        let ids: Vec<u64> = run_devices(&p, 1).map(|d| d.id).collect();
        assert_eq!(ids.first(), Some(&4));
        assert_eq!(ids.last(), Some(&110));
        assert_eq!(ids.len(), 107);
        // Retirement overtaking the end leaves an empty inventory.
        let p = params(
            10,
            Churn {
                retire_per_run: 6,
                ..Churn::default()
            },
        );
        assert!(active_window(&p, 2).is_empty());
        assert_eq!(run_devices(&p, 2).count(), 0);
        // Additions stop at capacity; huge run numbers do not overflow.
        let p = params(
            MAX_COUNT,
            Churn {
                add_per_run: u64::MAX,
                ..Churn::default()
            },
        );
        assert_eq!(active_window(&p, u64::MAX), 0..CAPACITY);
    }

    #[test]
    fn page_ranges_clip_to_the_window() {
        let p = params(
            100,
            Churn {
                retire_per_run: 5,
                ..Churn::default()
            },
        );
        let page: Vec<u64> = devices(&p, 2, 0..20).map(|d| d.index).collect();
        assert_eq!(page, (10..20).collect::<Vec<_>>());
        assert_eq!(devices(&p, 2, 90..200).len(), 10);
        assert_eq!(devices(&p, 2, 200..300).count(), 0);
    }

    #[test]
    fn validate_names_the_field() {
        let too_many = Params {
            count: MAX_COUNT + 1,
            ..Params::default()
        };
        assert_eq!(
            too_many.validate().unwrap_err().to_string(),
            "settings.count: at most 10000000 devices, got 10000001"
        );
        let bad_percent = params(
            1,
            Churn {
                ip_swap_percent: 101,
                ..Churn::default()
            },
        );
        assert_eq!(
            bad_percent.validate().unwrap_err().field,
            "settings.churn.ip_swap_percent"
        );
        assert!(
            Params {
                count: MAX_COUNT,
                ..Params::default()
            }
            .validate()
            .is_ok()
        );
    }
}
