use std::collections::BTreeSet;

use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;

const ARMIS: &str = "3f1c0000-0000-4000-8000-00000000a001";
const NETBOX: &str = "3f1c0000-0000-4000-8000-00000000b002";

fn armis_source() -> SweepSource {
    SweepSource {
        id: ARMIS.into(),
        source_type: "armis".into(),
        query_sweep_modes: BTreeMap::from([("critical".into(), vec![SweepMode::Icmp])]),
        network_blacklist: vec!["10.9.0.0/16".parse().unwrap()],
        ..SweepSource::default()
    }
}

fn netbox_source() -> SweepSource {
    SweepSource {
        id: NETBOX.into(),
        source_type: "netbox".into(),
        ports: vec![161, 22],
        sweep_modes: vec![SweepMode::TcpConnect],
        ..SweepSource::default()
    }
}

fn sources() -> Vec<SweepSource> {
    vec![armis_source(), netbox_source()]
}

fn device(id: &str, ip: &str, source_id: &str, metadata: Value) -> SweepDevice {
    let mut meta = match metadata {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    meta.insert("integration_source_id".into(), json!(source_id));
    SweepDevice::from_row(
        id.into(),
        Some(ip.into()),
        Some(format!("host-{id}")),
        "default".into(),
        vec!["armis".into()],
        Value::Object(meta),
    )
}

fn armis_device(n: u32, ip: &str) -> SweepDevice {
    device(
        &format!("sr:armis-{n:05}"),
        ip,
        ARMIS,
        json!({"integration_type": "armis", "integration_id": n.to_string(),
               "armis_device_id": n.to_string(), "query_label": "all",
               "tenant_id": "t1", "all_ips": ip}),
    )
}

fn generate_default(devices: &[SweepDevice]) -> GeneratedSweep {
    generate(devices, &sources(), &SweepDefaults::default())
}

fn target<'a>(generated: &'a GeneratedSweep, ip: &str) -> &'a DeviceTarget {
    generated
        .document
        .device_targets
        .iter()
        .find(|t| t.ip().map(|a| a.to_string()).as_deref() == Some(ip))
        .unwrap_or_else(|| panic!("no target {ip}"))
}

#[test]
fn armis_devices_become_targets_with_identifiers() {
    let devices = vec![armis_device(2, "10.0.0.2"), armis_device(1, "10.0.0.1")];
    let generated = generate_default(&devices);
    let doc = &generated.document;
    assert_eq!(doc.networks, vec!["10.0.0.1/32", "10.0.0.2/32"]);
    assert_eq!(doc.device_targets.len(), 2);
    let first = &doc.device_targets[0];
    assert_eq!(first.network, "10.0.0.1/32");
    assert_eq!(first.source, "armis");
    assert_eq!(first.query_label, "all");
    assert_eq!(first.sweep_modes, vec![SweepMode::Icmp, SweepMode::Tcp]);
    assert_eq!(
        first.metadata,
        BTreeMap::from([
            ("armis_device_id".into(), "1".to_string()),
            ("device_id".into(), "sr:armis-00001".into()),
            ("hostname".into(), "host-sr:armis-00001".into()),
            ("integration_id".into(), "1".into()),
            ("integration_type".into(), "armis".into()),
            ("ports".into(), "22,80,443,3306,5432,6379,8080,8443".into()),
            ("query_label".into(), "all".into()),
        ])
    );
    assert_eq!(doc.interval, Duration::from_secs(300));
    assert_eq!(doc.config_hash, content_hash(doc));
    assert_eq!(generated.config_version(), doc.config_hash);
    assert_eq!(generated.stats.targets, 2);
    assert_eq!(generated.stats.networks, 2);
}

#[test]
fn complete_blocks_aggregate_in_networks() {
    let devices: Vec<SweepDevice> = (0..8)
        .map(|i| armis_device(i, &format!("192.168.1.{}", 8 + i)))
        .chain([armis_device(100, "192.168.1.20")])
        .collect();
    let generated = generate_default(&devices);
    assert_eq!(
        generated.document.networks,
        vec!["192.168.1.8/29", "192.168.1.20/32"]
    );
    assert_eq!(generated.document.device_targets.len(), 9);
}

#[test]
fn ports_precedence_source_data_then_integration_then_global() {
    let devices = vec![
        device(
            "sr:nb-1",
            "10.1.0.1",
            NETBOX,
            json!({"integration_type": "netbox", "netbox_device_id": "1", "tcp_ports": "8443, 22"}),
        ),
        device(
            "sr:nb-2",
            "10.1.0.2",
            NETBOX,
            json!({"integration_type": "netbox", "netbox_device_id": "2"}),
        ),
        device("sr:a-3", "10.1.0.3", ARMIS, json!({"ports": [3389]})),
        device("sr:a-4", "10.1.0.4", ARMIS, json!({})),
    ];
    let generated = generate_default(&devices);
    assert_eq!(target(&generated, "10.1.0.1").ports(), vec![22, 8443]);
    assert_eq!(target(&generated, "10.1.0.2").ports(), vec![22, 161]);
    assert_eq!(target(&generated, "10.1.0.3").ports(), vec![3389]);
    assert_eq!(
        target(&generated, "10.1.0.4").ports(),
        SweepDefaults::default().ports
    );
    // Top-level ports are the union, so file-only agents probe them all.
    let union: BTreeSet<u16> = [22, 8443, 161, 3389]
        .into_iter()
        .chain(SweepDefaults::default().ports)
        .collect();
    assert_eq!(
        generated.document.ports,
        union.into_iter().collect::<Vec<_>>()
    );
}

#[test]
fn modes_precedence_source_data_then_query_then_integration_then_global() {
    let devices = vec![
        device(
            "sr:1",
            "10.2.0.1",
            ARMIS,
            json!({"sweep_modes": "tcp_connect", "query_label": "critical"}),
        ),
        device(
            "sr:2",
            "10.2.0.2",
            ARMIS,
            json!({"query_label": "critical"}),
        ),
        device("sr:3", "10.2.0.3", NETBOX, json!({})),
        device("sr:4", "10.2.0.4", ARMIS, json!({"query_label": "other"})),
    ];
    let generated = generate_default(&devices);
    assert_eq!(
        target(&generated, "10.2.0.1").sweep_modes,
        vec![SweepMode::TcpConnect]
    );
    assert_eq!(
        target(&generated, "10.2.0.2").sweep_modes,
        vec![SweepMode::Icmp]
    );
    assert_eq!(
        target(&generated, "10.2.0.3").sweep_modes,
        vec![SweepMode::TcpConnect]
    );
    assert_eq!(
        target(&generated, "10.2.0.4").sweep_modes,
        vec![SweepMode::Icmp, SweepMode::Tcp]
    );
    assert_eq!(
        generated.document.sweep_modes,
        vec![SweepMode::Icmp, SweepMode::Tcp, SweepMode::TcpConnect]
    );
}

#[test]
fn bad_input_is_handled_and_counted() {
    let mut no_ip = armis_device(1, "");
    no_ip.ip = None;
    let mut no_host = armis_device(9, "10.0.0.9");
    no_host.hostname = Some("  ".into());
    let devices = vec![
        no_ip,
        armis_device(2, ""),
        armis_device(3, "10.0.0.300"),
        armis_device(4, "not-an-ip"),
        armis_device(5, "0.0.0.0"),
        armis_device(6, "224.0.0.1"),
        armis_device(7, "255.255.255.255"),
        armis_device(8, "10.9.1.1"), // Armis blacklist 10.9.0.0/16
        no_host,
        armis_device(10, "2001:db8::10"),
        armis_device(11, "::ffff:10.0.0.11"), // mapped: becomes 10.0.0.11
        // Same IP twice: the smaller device id is kept.
        device("sr:z-dup", "10.0.0.12", ARMIS, json!({})),
        device("sr:a-dup", "10.0.0.12", ARMIS, json!({})),
        // Ports out of range in source data, none valid: integration defaults.
        device(
            "sr:nb-13",
            "10.0.0.13",
            NETBOX,
            json!({"tcp_ports": "0,70000,http"}),
        ),
        // One valid port survives.
        device(
            "sr:nb-14",
            "10.0.0.14",
            NETBOX,
            json!({"tcp_ports": [-1, 443]}),
        ),
        // Unknown modes ignored; with nothing left the defaults apply.
        device(
            "sr:a-15",
            "10.0.0.15",
            ARMIS,
            json!({"sweep_modes": ["udp", "icmp"]}),
        ),
        device("sr:a-16", "10.0.0.16", ARMIS, json!({"sweep_modes": "arp"})),
        // An integration source with no settings here.
        device("sr:x-17", "10.0.0.17", "unknown-source", json!({})),
        // Global blacklist.
        device("sr:x-18", "172.16.0.1", "unknown-source", json!({})),
    ];
    let defaults = SweepDefaults {
        network_blacklist: vec!["172.16.0.0/12".parse().unwrap()],
        ..SweepDefaults::default()
    };
    let generated = generate(&devices, &sources(), &defaults);
    let stats = &generated.stats;
    assert_eq!(stats.devices, devices.len());
    assert_eq!(stats.missing_ip, 2);
    assert_eq!(stats.invalid_ip, 5);
    assert_eq!(stats.blacklisted, 2);
    assert_eq!(stats.duplicate_ip, 1);
    assert_eq!(stats.duplicate_device, 0);
    assert_eq!(stats.missing_hostname, 1);
    assert_eq!(stats.invalid_ports, 4);
    assert_eq!(stats.port_fallbacks, 1);
    assert_eq!(stats.unknown_modes, 2);
    assert_eq!(stats.without_source_settings, 2);
    assert_eq!(stats.ipv6_targets, 1);
    assert_eq!(stats.targets, 9);

    assert!(
        !target(&generated, "10.0.0.9")
            .metadata
            .contains_key("hostname")
    );
    assert_eq!(
        target(&generated, "2001:db8::10").network,
        "2001:db8::10/128"
    );
    assert_eq!(target(&generated, "10.0.0.11").network, "10.0.0.11/32");
    assert_eq!(
        target(&generated, "10.0.0.12").metadata["device_id"],
        "sr:a-dup"
    );
    assert_eq!(target(&generated, "10.0.0.13").ports(), vec![22, 161]);
    assert_eq!(target(&generated, "10.0.0.14").ports(), vec![443]);
    assert_eq!(
        target(&generated, "10.0.0.15").sweep_modes,
        vec![SweepMode::Icmp]
    );
    assert_eq!(
        target(&generated, "10.0.0.16").sweep_modes,
        vec![SweepMode::Icmp, SweepMode::Tcp]
    );
    assert_eq!(target(&generated, "10.0.0.17").source, "armis");
    assert_document_well_formed(&generated.document);
}

#[test]
fn the_same_device_twice_with_different_ips_is_kept_once() {
    let devices = vec![
        device("sr:same", "10.0.0.20", ARMIS, json!({})),
        device("sr:same", "10.0.0.5", ARMIS, json!({})),
    ];
    let generated = generate_default(&devices);
    assert_eq!(generated.stats.duplicate_device, 1);
    assert_eq!(generated.document.device_targets.len(), 1);
    assert_eq!(generated.document.device_targets[0].network, "10.0.0.5/32");
    assert_eq!(generated.document.networks, vec!["10.0.0.5/32"]);
}

#[test]
fn one_device_reported_twice_keeps_the_same_copy_in_any_order() {
    let mut a = device("sr:twice", "10.0.0.30", ARMIS, json!({}));
    a.hostname = Some("alpha".into());
    let mut b = a.clone();
    b.hostname = Some("beta".into());
    let forward = generate_default(&[a.clone(), b.clone()]);
    let backward = generate_default(&[b, a]);
    assert_eq!(forward.document.to_json(), backward.document.to_json());
    assert_eq!(forward.stats.duplicate_ip, 1);
    assert_eq!(forward.document.device_targets.len(), 1);
    assert_eq!(
        forward.document.device_targets[0].metadata["hostname"],
        "alpha"
    );
}

#[test]
fn no_devices_gives_an_empty_sweep_with_defaults() {
    let generated = generate_default(&[]);
    let doc = &generated.document;
    assert!(doc.networks.is_empty() && doc.device_targets.is_empty());
    assert_eq!(doc.ports, SweepDefaults::default().ports);
    assert_eq!(doc.sweep_modes, vec![SweepMode::Icmp, SweepMode::Tcp]);
    assert_eq!(doc.config_hash.len(), 64);
    assert_eq!(generate_default(&[]).document.to_json(), doc.to_json());
}

#[test]
fn version_is_stable_on_resync_and_changes_when_an_ip_moves() {
    let devices: Vec<SweepDevice> = (0..50)
        .map(|i| armis_device(i, &format!("10.3.0.{i}")))
        .collect();
    let first = generate_default(&devices);
    let resync = generate_default(&devices.clone());
    assert_eq!(first.config_version(), resync.config_version());

    let mut moved = devices.clone();
    moved[7].ip = Some("10.3.1.7".into());
    let after_move = generate_default(&moved);
    assert_ne!(first.config_version(), after_move.config_version());
    assert!(
        after_move
            .document
            .networks
            .contains(&"10.3.1.7/32".to_string())
    );

    let mut renamed = devices;
    renamed[3].hostname = Some("renamed".into());
    assert_ne!(
        first.config_version(),
        generate_default(&renamed).config_version()
    );
}

#[test]
fn interval_is_the_shortest_of_the_sources_in_use() {
    let mut armis = armis_source();
    armis.sweep_interval = Some(Duration::from_secs(600));
    let mut netbox = netbox_source();
    netbox.sweep_interval = Some(Duration::from_secs(120));
    let only_armis = vec![armis_device(1, "10.0.0.1")];
    let generated = generate(
        &only_armis,
        &[armis.clone(), netbox.clone()],
        &SweepDefaults::default(),
    );
    assert_eq!(generated.document.interval, Duration::from_secs(600));
    let both = vec![
        armis_device(1, "10.0.0.1"),
        device("sr:nb", "10.0.0.2", NETBOX, json!({})),
    ];
    let generated = generate(&both, &[armis, netbox], &SweepDefaults::default());
    assert_eq!(generated.document.interval, Duration::from_secs(120));
    assert_eq!(generated.document.to_proto().sweep_interval_sec, 120);
}

// ---- property tests ----

/// A messy random device set: clustered IPv4, some IPv6, duplicates,
/// invalid and blacklisted IPs, bad ports and modes.
fn random_devices(rng: &mut StdRng, count: usize) -> Vec<SweepDevice> {
    (0..count)
        .map(|i| {
            let ip = match rng.random_range(0..20) {
                0 => "2001:db8::".to_string() + &format!("{:x}", rng.random_range(0..64u32)),
                1 => "garbage".to_string(),
                2 => format!("10.9.0.{}", rng.random_range(0..4)), // blacklisted
                _ => format!("10.{}.{}.{}", rng.random_range(0..2), rng.random_range(0..2), rng.random_range(0..64)),
            };
            let source = if rng.random_bool(0.5) { ARMIS } else { NETBOX };
            let mut meta = json!({"integration_type": if source == ARMIS { "armis" } else { "netbox" },
                                  "integration_id": i.to_string()});
            match rng.random_range(0..6) {
                0 => meta["tcp_ports"] = json!("22,99999,abc"),
                1 => meta["sweep_modes"] = json!(["tcp", "bogus"]),
                2 => meta["query_label"] = json!("critical"),
                _ => {}
            }
            let mut d = device(&format!("sr:{:04}", rng.random_range(0..count * 2)), &ip, source, meta);
            if rng.random_bool(0.2) {
                d.hostname = None;
            }
            d
        })
        .collect()
}

fn assert_document_well_formed(doc: &SweepDocument) {
    for t in &doc.device_targets {
        let net: IpNet = t.network.parse().expect("target network is a CIDR");
        assert_eq!(net.prefix_len(), net.max_prefix_len(), "{}", t.network);
        assert!(!t.sweep_modes.is_empty());
        assert!(!t.ports().is_empty());
        assert!(t.ports().iter().all(|&p| p > 0));
    }
    for n in &doc.networks {
        n.parse::<IpNet>().expect("network is a CIDR");
    }
    let proto = doc.to_proto();
    assert_eq!(
        doc.encode_proto(),
        proto.encode_to_vec(),
        "the direct encoding is prost's"
    );
    for (typed, t) in proto.device_targets.iter().zip(&doc.device_targets) {
        assert_eq!(typed.ip.parse::<IpAddr>().ok(), t.ip());
        assert!(typed.ports.iter().all(|&p| (1..=65535).contains(&p)));
    }
}

#[test]
fn property_same_device_set_in_any_order_gives_identical_bytes() {
    let mut rng = StdRng::seed_from_u64(42);
    for round in 0..30 {
        let mut devices = random_devices(&mut rng, 50 + round * 10);
        let reference = generate_default(&devices);
        let bytes = reference.document.to_json();
        assert_document_well_formed(&reference.document);
        let (delivered, config_json) =
            generate_with_config_json(&devices, &sources(), &SweepDefaults::default());
        assert_eq!(delivered.document, reference.document, "round {round}");
        assert_eq!(config_json, reference.document.agent_config_json());
        for _ in 0..5 {
            devices.shuffle(&mut rng);
            let again = generate_default(&devices);
            assert_eq!(again.document.to_json(), bytes, "round {round}");
            assert_eq!(again.stats, reference.stats);
        }
    }
}

#[test]
fn property_networks_cover_exactly_the_targets() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..30 {
        let devices = random_devices(&mut rng, 40 + round * 15);
        let doc = generate_default(&devices).document;
        let targets: BTreeSet<IpAddr> = doc.device_targets.iter().filter_map(|t| t.ip()).collect();
        assert_eq!(targets.len(), doc.device_targets.len(), "one target per IP");
        let mut covered = BTreeSet::new();
        for text in &doc.networks {
            let net: IpNet = text.parse().unwrap();
            for host in net.hosts().chain([net.network(), net.broadcast()]) {
                covered.insert(host);
            }
        }
        assert_eq!(covered, targets, "round {round}");
        // Targets are in IP order.
        let order: Vec<IpAddr> = doc.device_targets.iter().filter_map(|t| t.ip()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }
}

// ---- integration source settings ----

fn source_config(extra: Value) -> SourceConfig {
    let mut base = json!({
        "id": NETBOX, "name": "nb", "type": "netbox",
        "queries": [{"label": "core", "query": "role=core", "sweep_modes": ["icmp", "TCP"]},
                    {"label": "all", "query": "", "sweep_modes": []}],
        "network_blacklist": ["10.9.0.0/16", "192.0.2.1"],
        "sweep_interval": "10m",
        "settings": {"tcp_ports": "22, 161"},
        "tenant_id": "t", "tenant_slug": "acme", "sync_service_id": "ss"
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    serde_json::from_value(base).unwrap()
}

#[test]
fn source_settings_are_read_from_the_source_config() {
    let source = SweepSource::from_source_config(&source_config(json!({}))).unwrap();
    assert_eq!(source.id, NETBOX);
    assert_eq!(source.source_type, "netbox");
    assert_eq!(source.ports, vec![22, 161]);
    assert_eq!(
        source.query_sweep_modes,
        BTreeMap::from([("core".to_string(), vec![SweepMode::Icmp, SweepMode::Tcp])])
    );
    assert_eq!(
        source.network_blacklist,
        vec![
            "10.9.0.0/16".parse::<IpNet>().unwrap(),
            "192.0.2.1/32".parse().unwrap()
        ]
    );
    assert_eq!(source.sweep_interval, Some(Duration::from_secs(600)));
}

#[test]
fn bad_source_settings_name_the_field() {
    let err = SweepSource::from_source_config(&source_config(
        json!({"network_blacklist": ["10.0.0.0/8", "10.0.0.0/33"]}),
    ))
    .unwrap_err();
    assert_eq!(err.field, "network_blacklist[1]");
    let err =
        SweepSource::from_source_config(&source_config(json!({"settings": {"ports": [22, 0]}})))
            .unwrap_err();
    assert_eq!(err.field, "settings.ports");
    assert!(err.message.contains("\"0\""), "{err}");
    let err = SweepSource::from_source_config(&source_config(
        json!({"queries": [{"label": "x", "query": "", "sweep_modes": ["icmp", "udp"]}]}),
    ))
    .unwrap_err();
    assert_eq!(err.field, "queries[0].sweep_modes[1]");
    assert!(err.to_string().contains("icmp, tcp, tcp_connect"), "{err}");
}
