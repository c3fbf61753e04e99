//! The devices the mock servers serve: deterministic from a seed and a
//! count, with churn between runs (IP swaps, devices added and removed).
//! Both mocks read the same inventory, so an Armis mock and a NetBox mock
//! with the same seed describe the same devices (same MACs, same IPs):
//! what identity reconciliation must merge.
//!
//! Device index `i` (id `i + 1`):
//! - primary IPv4 `10.<(i/254)/256>.<(i/254)%256>.<i%254+1>`; every 5th
//!   (`i % 5 == 4`) has a second IPv4 in 172.16.0.0/12, every 25th a third in
//!   100.64.0.0/10;
//!   every 10th an IPv6 `2001:db8::<id hex>`; `i % 50 == 49` has no IP at
//!   all; `i % 100 == 29` has only the IPv6;
//! - MAC `00:1B:44:<id, 24 bits>`, every 4th device a second one
//!   `00:1B:45:<id>`;
//! - `last_seen` = 2025-01-01T00:00:00Z + `i / 3` s (three devices per
//!   second, so pages split seconds), `last_updated` the same second plus
//!   `id % 997` ms.
//!
//! Churn, applied per run `r ≥ 1` on top of run `r - 1`: `ip_swap_percent`
//! of the pairs (position `p`, `p + half`) of the active devices swap
//! primary IPs; `add_per_run` new devices (next ids) appear;
//! `remove_per_run` of the oldest disappear. Every changed or new device is
//! seen again at `CHURN_EPOCH + r * 100,000 + k` s, after every base device.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, TimeZone, Utc};

/// 2025-01-01T00:00:00Z: the base `last_seen`.
pub const BASE_EPOCH: i64 = 1_735_689_600;

/// Churned devices are seen from here on (about 116 days after the base).
pub const CHURN_EPOCH: i64 = BASE_EPOCH + 10_000_000;

/// Largest device count the generator addresses (ids fit 24 MAC bits).
pub const MAX_DEVICES: u64 = (1 << 24) - 2;

/// How the inventory changes between runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Churn {
    /// Percentage (0-100) of device pairs whose primary IPs swap per run.
    pub ip_swap_percent: u32,
    /// Devices added per run.
    pub add_per_run: u64,
    /// Oldest devices removed per run.
    pub remove_per_run: u64,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryParams {
    /// Seed of the pseudo-random choices (risk, swaps).
    pub seed: u64,
    /// Devices in run 0.
    pub devices: u64,
    /// Changes per run.
    pub churn: Churn,
}

impl Default for InventoryParams {
    fn default() -> Self {
        Self {
            seed: 1,
            devices: 100,
            churn: Churn::default(),
        }
    }
}

/// Type name, slug, category, hostname code, OS, OS version.
const TYPES: [(&str, &str, &str, &str, &str, &str); 8] = [
    (
        "Switch",
        "switch",
        "Network Equipment",
        "sw",
        "NX-OS",
        "10.2",
    ),
    (
        "Router",
        "router",
        "Network Equipment",
        "rtr",
        "IOS XE",
        "17.9",
    ),
    (
        "Firewall",
        "firewall",
        "Network Equipment",
        "fw",
        "FortiOS",
        "7.2",
    ),
    (
        "Access Point",
        "access-point",
        "Network Equipment",
        "ap",
        "ArubaOS",
        "8.10",
    ),
    ("Server", "server", "Computers", "srv", "Ubuntu", "22.04"),
    ("Laptop", "laptop", "Computers", "lap", "Windows", "11"),
    (
        "Printer",
        "printer",
        "Imaging",
        "prn",
        "Printer Firmware",
        "4.1",
    ),
    (
        "IP Camera",
        "ip-camera",
        "IoT",
        "cam",
        "Embedded Linux",
        "5.10",
    ),
];

const MANUFACTURERS: [(&str, &str); 6] = [
    ("Cisco", "cisco"),
    ("Juniper", "juniper"),
    ("Aruba", "aruba"),
    ("Dell", "dell"),
    ("HP", "hp"),
    ("Axis", "axis"),
];

/// Name, slug, location, hostname prefix.
const SITES: [(&str, &str, &str, &str); 4] = [
    ("Berlin", "berlin", "DE", "ber"),
    ("Lisbon", "lisbon", "PT", "lis"),
    ("Austin", "austin", "US", "aus"),
    ("Osaka", "osaka", "JP", "osa"),
];

/// One device of the mock inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockDevice {
    /// Source id (Armis `id`, NetBox `id`).
    pub id: u64,
    /// Host name.
    pub name: String,
    /// IPv4 addresses, primary first; empty for IPv6-only and IP-less devices.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 address, if any.
    pub ipv6: Option<Ipv6Addr>,
    /// MACs, upper-case colon form.
    pub macs: Vec<String>,
    /// Device type name (`Switch`).
    pub device_type: &'static str,
    /// Device type slug (`switch`): the NetBox role slug.
    pub type_slug: &'static str,
    /// Armis category.
    pub category: &'static str,
    /// Manufacturer name.
    pub manufacturer: &'static str,
    /// Manufacturer slug.
    pub manufacturer_slug: &'static str,
    /// Model.
    pub model: String,
    /// Operating system.
    pub os: &'static str,
    /// Operating system version.
    pub os_version: &'static str,
    /// Serial number.
    pub serial: String,
    /// Asset tag (every other device).
    pub asset_tag: Option<String>,
    /// 0-99.
    pub risk_level: u8,
    /// Tags.
    pub tags: Vec<String>,
    /// Site name.
    pub site: &'static str,
    /// Site slug.
    pub site_slug: &'static str,
    /// Site location.
    pub site_location: &'static str,
    /// NetBox status (`active`, every 20th `planned`).
    pub status: &'static str,
    /// First seen, Unix seconds.
    pub first_seen: i64,
    /// Last seen, Unix seconds (Armis `lastSeen`, the `after:` key).
    pub last_seen: i64,
    /// Last change, Unix microseconds (NetBox `last_updated`).
    pub last_updated_micros: i64,
}

impl MockDevice {
    /// Every IP as Armis lists them: IPv4s, then the IPv6.
    pub fn all_ips(&self) -> Vec<String> {
        let mut ips: Vec<String> = self.ipv4.iter().map(ToString::to_string).collect();
        ips.extend(self.ipv6.map(|ip| ip.to_string()));
        ips
    }

    /// `last_seen` as a UTC time.
    pub fn last_seen_time(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.last_seen, 0)
            .single()
            .unwrap_or_default()
    }

    /// `last_updated` as a UTC time.
    pub fn last_updated_time(&self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.last_updated_micros)
            .single()
            .unwrap_or_default()
    }

    /// `first_seen` as a UTC time.
    pub fn first_seen_time(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.first_seen, 0)
            .single()
            .unwrap_or_default()
    }

    fn touch(&mut self, at: i64) {
        self.last_seen = at;
        self.last_updated_micros = at * 1_000_000 + (self.id % 997) as i64 * 1000;
    }
}

/// splitmix64's finaliser.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mac(oui: [u8; 3], id: u64) -> String {
    format!(
        "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
        oui[0],
        oui[1],
        oui[2],
        (id >> 16) & 0xFF,
        (id >> 8) & 0xFF,
        id & 0xFF
    )
}

fn ipv4_of(index: u64, first: u8) -> Ipv4Addr {
    let subnet = index / 254;
    let host = (index % 254 + 1) as u8;
    match first {
        172 => Ipv4Addr::new(
            172,
            16 + ((subnet / 256) % 16) as u8,
            (subnet % 256) as u8,
            host,
        ),
        100 => Ipv4Addr::new(
            100,
            64 + ((subnet / 256) % 64) as u8,
            (subnet % 256) as u8,
            host,
        ),
        _ => Ipv4Addr::new(
            first,
            ((subnet / 256) % 256) as u8,
            (subnet % 256) as u8,
            host,
        ),
    }
}

/// The device with index `index` as generated (before churn).
pub fn base_device(seed: u64, index: u64) -> MockDevice {
    let id = index + 1;
    let (type_name, type_slug, category, code, os, os_version) = TYPES[(index % 8) as usize];
    let (manufacturer, manufacturer_slug) = MANUFACTURERS[(index % 6) as usize];
    let (site, site_slug, site_location, prefix) = SITES[((index / 254) % 4) as usize];
    let mut ipv4 = Vec::new();
    if index % 50 != 49 && index % 100 != 29 {
        ipv4.push(ipv4_of(index, 10));
        if index % 5 == 4 {
            ipv4.push(ipv4_of(index, 172));
        }
        if index % 25 == 24 {
            ipv4.push(ipv4_of(index, 100));
        }
    }
    let ipv6 = ((index % 10 == 9 && index % 50 != 49) || index % 100 == 29)
        .then(|| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (id >> 16) as u16, id as u16));
    let mut macs = vec![mac([0x00, 0x1B, 0x44], id)];
    if index % 4 == 3 {
        macs.push(mac([0x00, 0x1B, 0x45], id));
    }
    let mut device = MockDevice {
        id,
        name: format!("{prefix}-{code}-{id:05}"),
        ipv4,
        ipv6,
        macs,
        device_type: type_name,
        type_slug,
        category,
        manufacturer,
        manufacturer_slug,
        model: format!("{}-{}", manufacturer_slug.to_uppercase(), 100 + index % 900),
        os,
        os_version,
        serial: format!("MCK{id:08}"),
        asset_tag: id.is_multiple_of(2).then(|| format!("AT-{id:06}")),
        risk_level: (mix(seed ^ id) % 100) as u8,
        tags: vec!["mock".to_string(), type_slug.to_string()],
        site,
        site_slug,
        site_location,
        status: if id.is_multiple_of(20) {
            "planned"
        } else {
            "active"
        },
        first_seen: BASE_EPOCH - 86_400 * (1 + (index % 365) as i64),
        last_seen: 0,
        last_updated_micros: 0,
    };
    device.touch(BASE_EPOCH + (index / 3) as i64);
    device
}

/// The inventory at some run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    params: InventoryParams,
    run: u64,
    next_index: u64,
    devices: BTreeMap<u64, MockDevice>,
}

impl Inventory {
    /// Run 0 of `params`.
    pub fn new(params: InventoryParams) -> Self {
        let count = params.devices.min(MAX_DEVICES);
        Self {
            params,
            run: 0,
            next_index: count,
            devices: (0..count)
                .map(|i| (i + 1, base_device(params.seed, i)))
                .collect(),
        }
    }

    /// The inventory of `params` at run `run` (runs 1..=run applied).
    pub fn at_run(params: InventoryParams, run: u64) -> Self {
        let mut inventory = Self::new(params);
        inventory.advance_to(run);
        inventory
    }

    /// Moves to run `run`: forward by applying the runs in between,
    /// backward by regenerating.
    pub fn advance_to(&mut self, run: u64) {
        if run < self.run {
            *self = Self::new(self.params);
        }
        while self.run < run {
            self.run += 1;
            self.apply_churn(self.run);
        }
    }

    /// The run this inventory is at.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// The parameters.
    pub fn params(&self) -> InventoryParams {
        self.params
    }

    /// The devices, by id.
    pub fn devices(&self) -> &BTreeMap<u64, MockDevice> {
        &self.devices
    }

    /// One device.
    pub fn get(&self, id: u64) -> Option<&MockDevice> {
        self.devices.get(&id)
    }

    fn apply_churn(&mut self, run: u64) {
        let churn = self.params.churn;
        let mut seen_at = CHURN_EPOCH + (run as i64) * 100_000;
        let mut next_time = || {
            seen_at += 1;
            seen_at
        };
        // Removals: the oldest ids.
        for _ in 0..churn.remove_per_run {
            let Some((&oldest, _)) = self.devices.iter().next() else {
                break;
            };
            self.devices.remove(&oldest);
        }
        // IP swaps among devices that have a primary IPv4.
        if churn.ip_swap_percent > 0 {
            let ids: Vec<u64> = self
                .devices
                .values()
                .filter(|d| !d.ipv4.is_empty())
                .map(|d| d.id)
                .collect();
            let half = ids.len() / 2;
            for p in 0..half {
                let roll = mix(self.params.seed ^ mix(run ^ mix(p as u64))) % 100;
                if roll >= u64::from(churn.ip_swap_percent.min(100)) {
                    continue;
                }
                let (a, b) = (ids[p], ids[p + half]);
                let ip_a = self.devices[&a].ipv4[0];
                let ip_b = self.devices[&b].ipv4[0];
                let t = next_time();
                if let Some(d) = self.devices.get_mut(&a) {
                    d.ipv4[0] = ip_b;
                    d.touch(t);
                }
                if let Some(d) = self.devices.get_mut(&b) {
                    d.ipv4[0] = ip_a;
                    d.touch(t);
                }
            }
        }
        // Additions: the next indices.
        for _ in 0..churn.add_per_run {
            if self.next_index >= MAX_DEVICES {
                break;
            }
            let mut device = base_device(self.params.seed, self.next_index);
            device.touch(next_time());
            self.devices.insert(device.id, device);
            self.next_index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_deterministic_and_varied() {
        let a = Inventory::new(InventoryParams {
            seed: 7,
            devices: 200,
            churn: Churn::default(),
        });
        assert_eq!(a, Inventory::new(a.params()));
        let d = a.get(1).unwrap();
        assert_eq!(d.ipv4, [Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(d.macs, ["00:1B:44:00:00:01"]);
        assert_eq!(d.name, "ber-sw-00001");
        assert_eq!(d.last_seen, BASE_EPOCH);
        let multi = a.get(25).unwrap();
        assert_eq!(multi.ipv4.len(), 3);
        assert_eq!(a.get(4).unwrap().macs.len(), 2);
        assert!(a.get(50).unwrap().all_ips().is_empty());
        let v6_only = a.get(30).unwrap();
        assert!(v6_only.ipv4.is_empty() && v6_only.ipv6.is_some());
        // Three devices per second.
        assert_eq!(a.get(3).unwrap().last_seen, BASE_EPOCH);
        assert_eq!(a.get(4).unwrap().last_seen, BASE_EPOCH + 1);
        let ips: std::collections::HashSet<Ipv4Addr> =
            a.devices().values().flat_map(|d| d.ipv4.clone()).collect();
        assert_eq!(
            ips.len(),
            a.devices().values().map(|d| d.ipv4.len()).sum::<usize>()
        );
    }

    #[test]
    fn churn_swaps_adds_and_removes_and_touches_what_changed() {
        let params = InventoryParams {
            seed: 3,
            devices: 100,
            churn: Churn {
                ip_swap_percent: 20,
                add_per_run: 5,
                remove_per_run: 2,
            },
        };
        let base = Inventory::new(params);
        let run1 = Inventory::at_run(params, 1);
        assert_eq!(run1.devices().len(), 103);
        assert!(run1.get(1).is_none() && run1.get(2).is_none());
        assert!(run1.get(101).is_some() && run1.get(105).is_some());
        let changed: Vec<&MockDevice> = run1
            .devices()
            .values()
            .filter(|d| base.get(d.id) != Some(*d))
            .collect();
        let swapped = changed.iter().filter(|d| d.id <= 100).count();
        assert!(swapped > 0 && swapped % 2 == 0, "{swapped}");
        assert!(changed.iter().all(|d| d.last_seen > CHURN_EPOCH));
        // Unchanged devices keep their time.
        assert!(
            run1.devices()
                .values()
                .filter(|d| base.get(d.id) == Some(*d))
                .all(|d| d.last_seen < CHURN_EPOCH)
        );
        let mut stepped = Inventory::new(params);
        stepped.advance_to(2);
        assert_eq!(stepped, Inventory::at_run(params, 2));
        stepped.advance_to(1);
        assert_eq!(stepped, run1);
    }
}
