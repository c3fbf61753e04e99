use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sr_proto::DeviceUpdate;
use uuid::Uuid;

use super::*;
use crate::dire::snapshot::{StagedState, StoredDevice, StoredIdentifier};

/// The integration source of the fixtures (also used by `plan_writes`).
pub(in crate::dire) const SOURCE_ID: &str = "6f1c9d53-5d1e-4b53-9a43-1c1f5f5e2a10";

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_735_689_600 + secs, 0).unwrap()
}

/// A faker update with the given metadata (also used by `plan_writes`).
pub(in crate::dire) fn update(ip: &str, metadata: &[(&str, &str)]) -> DeviceUpdate {
    DeviceUpdate {
        device_id: String::new(),
        ip: ip.into(),
        source: "faker".into(),
        agent_id: String::new(),
        gateway_id: String::new(),
        partition: "default".into(),
        timestamp: at(100),
        hostname: None,
        mac: None,
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        is_available: true,
        confidence: 7,
        sync_meta: None,
        raw_data: None,
    }
}

fn faker(id: &str, ip: &str) -> DeviceUpdate {
    update(
        ip,
        &[
            ("integration_type", "faker"),
            ("integration_id", id),
            ("integration_source_id", SOURCE_ID),
        ],
    )
}

fn armis(id: &str, ip: &str) -> DeviceUpdate {
    let mut u = update(
        ip,
        &[
            ("integration_type", "armis"),
            ("integration_id", id),
            ("armis_device_id", id),
        ],
    );
    u.source = "armis".into();
    u
}

fn netbox(id: &str, ip: &str) -> DeviceUpdate {
    let mut u = update(
        ip,
        &[
            ("integration_type", "netbox"),
            ("integration_id", id),
            ("netbox_device_id", id),
        ],
    );
    u.source = "netbox".into();
    u
}

fn stored(
    uid: &str,
    partition: &str,
    ip: Option<&str>,
    identifiers: &[(IdentifierType, &str)],
    last_seen: DateTime<Utc>,
) -> StoredDevice {
    let mut record = DeviceRecord::new(uid.into(), partition.into(), last_seen);
    record.ip = ip.map(str::to_string);
    record.discovery_sources = vec!["seed".into()];
    let mut device = StoredDevice::new(record);
    device.identifiers = identifiers
        .iter()
        .map(|(kind, value)| StoredIdentifier {
            kind: *kind,
            value: value.to_string(),
            partition: partition.into(),
            confidence: if *kind == IdentifierType::Mac
                && identifiers::is_locally_administered(value)
            {
                Confidence::Medium
            } else {
                Confidence::Strong
            },
            last_seen,
        })
        .collect();
    device
}

fn run(updates: &[DeviceUpdate], snapshot: &Snapshot) -> Plan {
    plan(updates, snapshot, &PlanOptions::default())
}

fn device<'p>(plan: &'p Plan, uid: &str) -> &'p DeviceRecord {
    &plan
        .devices
        .iter()
        .find(|d| d.record.uid == uid)
        .unwrap_or_else(|| panic!("{uid} not written"))
        .record
}

fn resolved(plan: &Plan, index: usize) -> &str {
    match &plan.resolutions[index] {
        Resolution::Device(uid) => uid,
        Resolution::Skipped(reason) => panic!("update {index} skipped: {reason}"),
    }
}

/// A minimal in-memory store that applies plans the way the SQL store does,
/// so multi-step scenarios (re-sync, idempotency) can be planned purely.
#[derive(Default)]
struct MemoryStore {
    devices: HashMap<String, StoredDevice>,
    staged: HashMap<(Uuid, String), StagedState>,
}

impl MemoryStore {
    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::from_devices(self.devices.values().cloned());
        for ((source, device), state) in &self.staged {
            let mut state = state.clone();
            state.device_active = state
                .device_id
                .as_ref()
                .and_then(|uid| self.devices.get(uid))
                .is_some_and(|d| d.merged_into.is_none() && !d.record.deleted);
            snapshot.insert_staged(*source, device.clone(), state);
        }
        snapshot
    }

    fn apply(&mut self, plan: &Plan) {
        // Identifiers have no foreign key in SQL: every plan a scenario
        // applies must point its identifiers at known or written devices.
        if let Some(identifier) = plan.dangling_identifier(&self.snapshot()) {
            panic!("plan points {identifier:?} at no device");
        }
        for row in &plan.staged {
            self.staged.insert(
                (row.integration_source_id, row.source_device_id.clone()),
                StagedState {
                    content_hash: Some(row.content_hash.clone()),
                    last_seen: row.seen,
                    device_id: Some(row.device_id.clone()),
                    device_active: true,
                },
            );
        }
        for release in &plan.ip_releases {
            self.devices.get_mut(&release.device_id).unwrap().record.ip = None;
        }
        for upsert in &plan.devices {
            let entry = self
                .devices
                .entry(upsert.record.uid.clone())
                .or_insert_with(|| StoredDevice::new(upsert.record.clone()));
            entry.record = upsert.record.clone();
        }
        for merge in &plan.merges {
            self.devices.get_mut(&merge.from).unwrap().merged_into = Some(merge.to.clone());
            for state in self.staged.values_mut() {
                if state.device_id.as_deref() == Some(merge.from.as_str()) {
                    state.device_id = Some(merge.to.clone());
                }
            }
        }
        for row in &plan.identifiers {
            for device in self.devices.values_mut() {
                device.identifiers.retain(|i| {
                    !(i.kind == row.key.kind
                        && i.value == row.key.value
                        && i.partition == row.key.partition)
                });
            }
            self.devices
                .get_mut(&row.device_id)
                .unwrap()
                .identifiers
                .push(StoredIdentifier {
                    kind: row.key.kind,
                    value: row.key.value.clone(),
                    partition: row.key.partition.clone(),
                    confidence: row.confidence,
                    last_seen: row.last_seen,
                });
        }
    }

    fn active_ip_holder(&self, partition: &str, ip: &str) -> Vec<String> {
        self.devices
            .values()
            .filter(|d| {
                d.holds_ip()
                    && d.record.partition == partition
                    && d.record.ip.as_deref() == Some(ip)
            })
            .map(|d| d.record.uid.clone())
            .collect()
    }
}

fn batch(n: usize) -> Vec<DeviceUpdate> {
    (0..n)
        .map(|i| {
            let mut u = faker(
                &(i + 1).to_string(),
                &format!("172.16.{}.{}", i / 254, i % 254 + 1),
            );
            u.mac = Some(format!("00:16:3E:00:{:02X}:{:02X}", i / 256, i % 256));
            u.hostname = Some(format!("FAKER-{i:05}"));
            u
        })
        .collect()
}

#[test]
fn new_devices_get_deterministic_ids_identifiers_and_staging() {
    let updates = batch(3);
    let plan = run(&updates, &Snapshot::default());
    assert_eq!(plan.stats.new_devices, 3);
    assert_eq!(plan.devices.len(), 3);
    assert_eq!(plan.identifiers.len(), 6, "integration_id and mac each");
    assert_eq!(plan.staged.len(), 3);
    assert!(plan.merges.is_empty() && plan.ip_releases.is_empty());
    let expected = canonical_id::from_seed(
        "serviceradar-device-v3:partition:default:integration:1mac:00163E000000",
    );
    assert_eq!(resolved(&plan, 0), expected);
    assert_eq!(plan.staged[0].device_id.as_str(), resolved(&plan, 0));
    let first = device(&plan, &expected);
    assert_eq!(first.ip.as_deref(), Some("172.16.0.1"));
    assert_eq!(first.fields.hostname.as_deref(), Some("FAKER-00000"));
    assert_eq!(first.discovery_sources, vec!["faker"]);
}

#[test]
fn planning_is_deterministic() {
    let mut updates = batch(200);
    // Some churn and links to make the plan non-trivial.
    updates.push(faker("7", "172.16.0.20"));
    updates.push(armis("9", "172.16.0.9"));
    let mut store = MemoryStore::default();
    store.apply(&run(&batch(100), &Snapshot::default()));
    let snapshot = store.snapshot();
    let first = run(&updates, &snapshot);
    for _ in 0..5 {
        // Fresh hash seeds each time: iteration order must not leak out.
        let snapshot = store.snapshot();
        assert_eq!(run(&updates, &snapshot), first);
    }
}

#[test]
fn unchanged_resync_writes_nothing() {
    let updates = batch(50);
    let mut store = MemoryStore::default();
    let initial = run(&updates, &Snapshot::default());
    store.apply(&initial);
    let again = run(&updates, &store.snapshot());
    assert!(again.devices.is_empty(), "{:?}", again.devices.first());
    assert!(again.identifiers.is_empty());
    assert!(again.ip_releases.is_empty());
    assert_eq!(again.stats.unchanged_devices, 50);
    assert_eq!(again.stats.new_devices + again.stats.updated_devices, 0);
    assert_eq!(again.resolutions, initial.resolutions);
    assert!(again.staged.is_empty(), "staging fingerprints match");
    assert_eq!(again.stats.staged, 0);
    // A new run id alone does not make a staging row "changed".
    let rerun: Vec<DeviceUpdate> = updates
        .iter()
        .cloned()
        .map(|mut u| {
            u.sync_meta = Some(sr_proto::SyncMeta {
                sync_run_id: "run-2".into(),
                ..Default::default()
            });
            u
        })
        .collect();
    assert!(run(&rerun, &store.snapshot()).staged.is_empty());
    // A changed raw record does.
    let mut changed = updates.clone();
    changed[3].raw_data = Some(serde_json::json!({"changed": true}));
    let plan = run(&changed, &store.snapshot());
    assert_eq!(plan.staged.len(), 1);
    assert!(plan.devices.is_empty(), "raw data is staging only");
}

#[test]
fn ip_swap_between_distinct_devices_moves_ips_without_merging() {
    let a = stored(
        "sr:a",
        "default",
        Some("10.0.0.1"),
        &[
            (IdentifierType::ArmisDeviceId, "1"),
            (IdentifierType::IntegrationId, "armis:1"),
        ],
        at(0),
    );
    let b = stored(
        "sr:b",
        "default",
        Some("10.0.0.2"),
        &[
            (IdentifierType::ArmisDeviceId, "2"),
            (IdentifierType::IntegrationId, "armis:2"),
        ],
        at(0),
    );
    let mut store = MemoryStore::default();
    store.devices.insert("sr:a".into(), a);
    store.devices.insert("sr:b".into(), b);
    let updates = vec![armis("1", "10.0.0.2"), armis("2", "10.0.0.1")];
    let plan = run(&updates, &store.snapshot());
    assert!(plan.merges.is_empty());
    assert!(plan.blocked_merges.is_empty());
    assert_eq!(resolved(&plan, 0), "sr:a");
    assert_eq!(resolved(&plan, 1), "sr:b");
    assert_eq!(device(&plan, "sr:a").ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(device(&plan, "sr:b").ip.as_deref(), Some("10.0.0.1"));
    let mut released: Vec<_> = plan
        .ip_releases
        .iter()
        .map(|r| r.device_id.as_str())
        .collect();
    released.sort();
    assert_eq!(
        released,
        vec!["sr:a", "sr:b"],
        "both stored IPs are cleared first"
    );
    assert_eq!(plan.stats.ip_moves, 1);
    assert_eq!(plan.ip_moves[0].from_device, "sr:b");
    store.apply(&plan);
    assert_eq!(store.active_ip_holder("default", "10.0.0.1"), vec!["sr:b"]);
    assert_eq!(store.active_ip_holder("default", "10.0.0.2"), vec!["sr:a"]);
}

#[test]
fn new_source_device_on_a_retired_devices_ip_takes_the_ip() {
    let old = stored(
        "sr:old",
        "default",
        Some("10.0.0.1"),
        &[(IdentifierType::IntegrationId, "faker:7")],
        at(0),
    );
    let plan = run(&[faker("1001", "10.0.0.1")], &Snapshot::from_devices([old]));
    let new_id = resolved(&plan, 0).to_string();
    assert_ne!(new_id, "sr:old");
    assert!(plan.merges.is_empty());
    assert_eq!(plan.ip_moves.len(), 1);
    assert_eq!(plan.ip_releases[0].device_id, "sr:old");
    assert_eq!(device(&plan, &new_id).ip.as_deref(), Some("10.0.0.1"));
}

#[test]
fn update_without_strong_identifiers_is_remapped_onto_the_ip_holder() {
    let holder = stored(
        "sr:h",
        "default",
        Some("10.0.0.1"),
        &[(IdentifierType::IntegrationId, "faker:1")],
        at(0),
    );
    let mut sweep = update("10.0.0.1", &[("agent_id", "scanner")]);
    sweep.source = "sweep".into();
    let plan = run(&[sweep], &Snapshot::from_devices([holder]));
    assert_eq!(resolved(&plan, 0), "sr:h");
    assert_eq!(plan.stats.new_devices, 0);
    assert!(
        plan.identifiers.is_empty(),
        "a scanner's agent_id is no identifier"
    );
    assert_eq!(
        device(&plan, "sr:h").discovery_sources,
        vec!["seed", "sweep"]
    );
}

#[test]
fn unresolved_strong_identifiers_fall_back_to_a_compatible_ip_holder() {
    let a = stored(
        "sr:a",
        "default",
        Some("10.0.0.5"),
        &[
            (IdentifierType::ArmisDeviceId, "5"),
            (IdentifierType::IntegrationId, "armis:5"),
        ],
        at(0),
    );
    let plan = run(&[netbox("9", "10.0.0.5")], &Snapshot::from_devices([a]));
    assert_eq!(
        resolved(&plan, 0),
        "sr:a",
        "NetBox and Armis views of one device"
    );
    let written: Vec<_> = plan
        .identifiers
        .iter()
        .map(|i| (i.key.kind, i.key.value.as_str(), i.device_id.as_str()))
        .collect();
    assert_eq!(
        written,
        vec![
            (IdentifierType::IntegrationId, "netbox:9", "sr:a"),
            (IdentifierType::NetboxDeviceId, "9", "sr:a"),
        ]
    );
}

#[test]
fn mac_only_evidence_never_merges() {
    let a = stored(
        "sr:a",
        "default",
        Some("10.0.0.1"),
        &[
            (IdentifierType::ArmisDeviceId, "1"),
            (IdentifierType::Mac, "001B44000001"),
        ],
        at(0),
    );
    let b = stored(
        "sr:b",
        "default",
        Some("10.0.0.2"),
        &[(IdentifierType::NetboxDeviceId, "7")],
        at(0),
    );
    let mut u = netbox("7", "10.0.0.2");
    u.mac = Some("00:1B:44:00:00:01".into());
    let plan = run(&[u], &Snapshot::from_devices([a, b]));
    assert_eq!(resolved(&plan, 0), "sr:b");
    assert!(plan.merges.is_empty());
    assert_eq!(plan.blocked_merges.len(), 1);
    let blocked = &plan.blocked_merges[0];
    assert_eq!(
        (blocked.from.as_str(), blocked.to.as_str()),
        ("sr:a", "sr:b")
    );
    assert_eq!(blocked.reason, BlockReason::MacOnlyConflict);
    assert_eq!(blocked.evidence["linked_by"][0]["type"], "mac");
    assert!(
        plan.identifiers
            .iter()
            .all(|i| i.key.kind != IdentifierType::Mac),
        "the MAC stays with the device that holds it"
    );
}

#[test]
fn medium_confidence_mac_only_is_blocked_with_its_own_reason() {
    let a = stored(
        "sr:a",
        "default",
        None,
        &[
            (IdentifierType::ArmisDeviceId, "1"),
            (IdentifierType::Mac, "021B44000001"),
        ],
        at(0),
    );
    let b = stored(
        "sr:b",
        "default",
        None,
        &[(IdentifierType::NetboxDeviceId, "7")],
        at(0),
    );
    let mut u = netbox("7", "10.0.0.2");
    u.mac = Some("02:1B:44:00:00:01".into());
    let plan = run(&[u], &Snapshot::from_devices([a, b]));
    assert_eq!(plan.blocked_merges.len(), 1);
    assert_eq!(
        plan.blocked_merges[0].reason,
        BlockReason::MediumConfidenceOnly
    );
    assert_eq!(
        plan.blocked_merges[0].evidence["linked_by"][0]["confidence"],
        "medium"
    );
}

#[test]
fn mac_of_a_contradicting_device_does_not_attach_the_update_to_it() {
    let a = stored(
        "sr:a",
        "default",
        Some("10.0.0.1"),
        &[
            (IdentifierType::IntegrationId, "faker:1"),
            (IdentifierType::Mac, "001B44000001"),
        ],
        at(0),
    );
    let mut u = faker("2", "10.0.0.2");
    u.mac = Some("00:1B:44:00:00:01".into());
    let plan = run(&[u], &Snapshot::from_devices([a]));
    let uid = resolved(&plan, 0);
    assert_ne!(uid, "sr:a");
    assert_eq!(
        plan.blocked_merges[0].reason,
        BlockReason::ConflictingIdentifiers
    );
    let conflict = &plan.blocked_merges[0].evidence["conflicts"][0];
    assert_eq!(conflict["type"], "integration_id");
    assert_eq!(conflict["from_value"], "faker:1");
    assert_eq!(conflict["to_value"], "faker:2");
}

#[test]
fn shared_strong_identifier_merges_and_moves_identifiers() {
    let a = stored(
        "sr:a",
        "default",
        Some("10.0.0.1"),
        &[(IdentifierType::ArmisDeviceId, "1")],
        at(0),
    );
    let b = stored(
        "sr:b",
        "default",
        Some("10.0.0.2"),
        &[
            (IdentifierType::NetboxDeviceId, "7"),
            (IdentifierType::Mac, "001B44000009"),
        ],
        at(10),
    );
    let mut u = armis("1", "10.0.0.1");
    u.metadata.insert("netbox_device_id".into(), "7".into());
    let plan = run(&[u], &Snapshot::from_devices([a, b]));
    assert_eq!(resolved(&plan, 0), "sr:a", "armis outranks netbox");
    assert_eq!(plan.merges.len(), 1);
    let merge = &plan.merges[0];
    assert_eq!((merge.from.as_str(), merge.to.as_str()), ("sr:b", "sr:a"));
    assert_eq!(merge.evidence["reason"], "shared_strong_identifier");
    assert_eq!(merge.evidence["linked_by"][0]["type"], "netbox_device_id");
    let moved: Vec<_> = merge.evidence["moved_identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(moved, vec!["7", "001B44000009"], "ordered by type priority");
    for value in ["7", "001B44000009"] {
        let row = plan
            .identifiers
            .iter()
            .find(|i| i.key.value == value)
            .unwrap();
        assert_eq!(row.device_id, "sr:a");
    }
    assert_eq!(plan.stats.merges, 1);
    // The loser's IP is history: nobody claimed it, so no release.
    assert!(plan.ip_releases.is_empty());
}

#[test]
fn the_updates_own_sr_id_wins_among_matches() {
    let a = stored(
        "sr:a",
        "default",
        None,
        &[(IdentifierType::ArmisDeviceId, "1")],
        at(0),
    );
    let b_id = "sr:0f1e2d3c-4b5a-4697-8877-665544332211";
    let b = stored(
        b_id,
        "default",
        None,
        &[(IdentifierType::NetboxDeviceId, "7")],
        at(0),
    );
    let mut u = armis("1", "10.0.0.1");
    u.metadata.insert("netbox_device_id".into(), "7".into());
    u.device_id = b_id.to_uppercase().replace("SR:", "sr:");
    let plan = run(&[u], &Snapshot::from_devices([a, b]));
    assert_eq!(resolved(&plan, 0), b_id);
    assert_eq!(plan.merges[0].from, "sr:a");
    assert_eq!(plan.merges[0].to, b_id);
}

#[test]
fn an_update_keeps_its_own_sr_id_when_nothing_resolves() {
    let own = "sr:0f1e2d3c-4b5a-4697-8877-665544332211";
    let mut u = update("10.0.0.1", &[]);
    u.device_id = own.into();
    let plan = run(&[u], &Snapshot::default());
    assert_eq!(resolved(&plan, 0), own);
    assert!(plan.devices[0].is_new);
}

#[test]
fn highest_priority_identifier_picks_the_canonical_device() {
    let by_agent = stored(
        "sr:agent",
        "default",
        None,
        &[(IdentifierType::AgentId, "ag-1")],
        at(0),
    );
    let by_armis = stored(
        "sr:armis",
        "default",
        None,
        &[(IdentifierType::ArmisDeviceId, "1")],
        at(50),
    );
    let by_mac = stored(
        "sr:mac",
        "default",
        None,
        &[(IdentifierType::Mac, "001B44000001")],
        at(99),
    );
    let mut u = armis("1", "10.0.0.1");
    u.metadata.insert("agent_id".into(), "ag-1".into());
    u.mac = Some("00:1B:44:00:00:01".into());
    u.source = "agent".into();
    let plan = run(&[u], &Snapshot::from_devices([by_agent, by_armis, by_mac]));
    assert_eq!(resolved(&plan, 0), "sr:agent");
    assert_eq!(
        plan.merges.len(),
        1,
        "armis device merges (strong evidence)"
    );
    assert_eq!(plan.merges[0].from, "sr:armis");
    assert_eq!(plan.blocked_merges.len(), 1, "mac-only device does not");
    assert_eq!(plan.blocked_merges[0].from, "sr:mac");
}

#[test]
fn conflicting_exclusive_identifiers_block_a_merge() {
    let a = stored(
        "sr:a",
        "default",
        None,
        &[
            (IdentifierType::ArmisDeviceId, "1"),
            (IdentifierType::IntegrationId, "faker:1"),
        ],
        at(0),
    );
    let b = stored(
        "sr:b",
        "default",
        None,
        &[
            (IdentifierType::NetboxDeviceId, "7"),
            (IdentifierType::IntegrationId, "faker:2"),
        ],
        at(0),
    );
    let u = update(
        "10.0.0.1",
        &[("armis_device_id", "1"), ("netbox_device_id", "7")],
    );
    let plan = run(&[u], &Snapshot::from_devices([a, b]));
    assert_eq!(resolved(&plan, 0), "sr:a");
    assert!(plan.merges.is_empty());
    assert_eq!(
        plan.blocked_merges[0].reason,
        BlockReason::ConflictingIdentifiers
    );
    assert!(
        plan.identifiers.iter().all(|i| i.key.value != "7"),
        "netbox 7 stays with sr:b"
    );
}

#[test]
fn an_unmerged_pair_stays_apart() {
    let a = stored(
        "sr:a",
        "default",
        None,
        &[(IdentifierType::ArmisDeviceId, "1")],
        at(0),
    );
    let mut b = stored(
        "sr:b",
        "default",
        None,
        &[(IdentifierType::NetboxDeviceId, "7")],
        at(0),
    );
    b.unmerged_from.push("sr:a".into());
    let mut u = armis("1", "10.0.0.1");
    u.metadata.insert("netbox_device_id".into(), "7".into());
    let plan = run(&[u], &Snapshot::from_devices([a, b]));
    assert!(plan.merges.is_empty());
    assert_eq!(
        plan.blocked_merges[0].reason,
        BlockReason::UnmergedByOperator
    );
}

#[test]
fn partitions_never_cross() {
    let a = stored(
        "sr:a",
        "site-a",
        Some("10.0.0.1"),
        &[
            (IdentifierType::ArmisDeviceId, "1"),
            (IdentifierType::IntegrationId, "armis:1"),
        ],
        at(0),
    );
    let mut u = armis("1", "10.0.0.1");
    u.partition = "site-b".into();
    let mut bare = update("10.0.0.1", &[]);
    bare.partition = "site-b".into();
    let plan = run(&[u, bare], &Snapshot::from_devices([a]));
    let uid = resolved(&plan, 0).to_string();
    assert_ne!(uid, "sr:a");
    assert_eq!(resolved(&plan, 1), uid, "IP fallback stays inside site-b");
    assert!(plan.merges.is_empty() && plan.ip_moves.is_empty() && plan.ip_releases.is_empty());
    assert!(plan.devices.iter().all(|d| d.record.uid != "sr:a"));
    assert_eq!(device(&plan, &uid).partition, "site-b");
    assert!(plan.identifiers.iter().all(|i| i.key.partition == "site-b"));
}

#[test]
fn own_id_of_another_partition_is_skipped() {
    let own = "sr:0f1e2d3c-4b5a-4697-8877-665544332211";
    let a = stored(own, "site-a", None, &[], at(0));
    let mut u = update("10.0.0.1", &[]);
    u.device_id = own.into();
    u.partition = "site-b".into();
    let plan = run(&[u], &Snapshot::from_devices([a]));
    assert_eq!(
        plan.resolutions,
        vec![Resolution::Skipped(SkipReason::PartitionMismatch)]
    );
    assert!(plan.devices.is_empty());
}

#[test]
fn several_updates_of_a_batch_hit_the_same_new_device() {
    let mut first = faker("1", "10.0.0.1");
    first.hostname = Some("first".into());
    first.timestamp = at(10);
    let mut second = faker("1", "10.0.0.1");
    second.hostname = Some("second".into());
    second.timestamp = at(20);
    second.mac = Some("00:1B:44:00:00:01".into());
    let mut late = faker("1", "10.0.0.1");
    late.hostname = Some("late".into());
    late.timestamp = at(5);
    let mut sweep = update("10.0.0.1", &[]);
    sweep.source = "sweep".into();
    let plan = run(&[first, second, late, sweep], &Snapshot::default());
    let uid = resolved(&plan, 0).to_string();
    for index in 1..4 {
        assert_eq!(resolved(&plan, index), uid);
    }
    assert_eq!(plan.devices.len(), 1);
    assert_eq!(plan.stats.new_devices, 1);
    let record = device(&plan, &uid);
    assert_eq!(
        record.fields.hostname.as_deref(),
        Some("second"),
        "later observation wins"
    );
    assert_eq!(record.first_seen, at(5));
    assert_eq!(record.last_seen, at(100).max(at(20)));
    assert_eq!(
        plan.identifiers.len(),
        2,
        "integration id and the MAC learnt later"
    );
    assert_eq!(plan.staged.len(), 1, "one staging row per source device");
    assert_eq!(plan.staged[0].hostname.as_deref(), Some("second"));
}

#[test]
fn later_updates_see_merges_of_earlier_ones() {
    // Update 1 creates a device from faker:1; update 2 links faker:1 to an
    // existing Armis device, which outranks it: the new device merges away
    // and every reference ends up on the survivor.
    let e = stored(
        "sr:e",
        "default",
        Some("10.0.0.9"),
        &[(IdentifierType::ArmisDeviceId, "5")],
        at(0),
    );
    let first = faker("1", "10.0.0.1");
    let mut second = faker("1", "10.0.0.1");
    second.metadata.insert("armis_device_id".into(), "5".into());
    let plan = run(&[first, second], &Snapshot::from_devices([e]));
    assert_eq!(resolved(&plan, 0), "sr:e");
    assert_eq!(resolved(&plan, 1), "sr:e");
    assert_eq!(plan.merges.len(), 1);
    assert_eq!(plan.merges[0].to, "sr:e");
    assert_eq!(plan.staged[0].device_id, "sr:e");
    let new_device = device(&plan, &plan.merges[0].from);
    assert_eq!(new_device.ip, None, "the survivor took the IP");
    assert_eq!(device(&plan, "sr:e").ip.as_deref(), Some("10.0.0.1"));
    assert!(plan.identifiers.iter().all(|i| i.device_id == "sr:e"));
}

#[test]
fn merged_device_ids_are_followed_to_the_survivor() {
    let mut loser = stored("sr:l", "default", None, &[], at(0));
    loser.merged_into = Some("sr:s".into());
    let survivor = stored(
        "sr:s",
        "default",
        None,
        &[(IdentifierType::ArmisDeviceId, "1")],
        at(0),
    );
    let mut u = update("10.0.0.1", &[]);
    u.device_id = "sr:00000000-0000-4000-8000-000000000001".into();
    let mut loser2 = loser.clone();
    loser2.record.uid = "sr:00000000-0000-4000-8000-000000000001".into();
    let plan = run(&[u], &Snapshot::from_devices([loser, loser2, survivor]));
    assert_eq!(resolved(&plan, 0), "sr:s");
}

#[test]
fn service_components_are_kept_and_never_resolved() {
    let holder = stored(
        "sr:h",
        "default",
        Some("10.0.0.1"),
        &[(IdentifierType::IntegrationId, "faker:1")],
        at(0),
    );
    let mut u = faker("1", "10.0.0.1");
    u.device_id = "serviceradar:agent:edge-1".into();
    let plan = run(&[u], &Snapshot::from_devices([holder]));
    assert_eq!(resolved(&plan, 0), "serviceradar:agent:edge-1");
    assert!(plan.identifiers.is_empty());
    assert!(
        plan.ip_releases.is_empty(),
        "services never take a device's IP"
    );
    assert_eq!(
        device(&plan, "serviceradar:agent:edge-1").ip.as_deref(),
        Some("10.0.0.1")
    );
}

#[test]
fn update_without_any_identity_is_skipped() {
    let plan = run(&[update("  ", &[])], &Snapshot::default());
    assert_eq!(
        plan.resolutions,
        vec![Resolution::Skipped(SkipReason::NoIdentity)]
    );
    assert_eq!(plan.stats.skipped_total(), 1);
    assert!(plan.devices.is_empty());
}

#[test]
fn older_observation_does_not_overwrite_newer_fields() {
    let mut store = MemoryStore::default();
    let mut newer = faker("1", "10.0.0.1");
    newer.hostname = Some("new".into());
    newer.timestamp = at(200);
    store.apply(&run(&[newer], &Snapshot::default()));
    let mut older = faker("1", "10.0.0.1");
    older.hostname = Some("old".into());
    older.metadata.insert("model".into(), "M1".into());
    older.timestamp = at(100);
    let plan = run(&[older], &store.snapshot());
    let record = &plan.devices[0].record;
    assert_eq!(record.fields.hostname.as_deref(), Some("new"));
    assert_eq!(record.fields.model.as_deref(), Some("M1"));
    assert_eq!(record.last_seen, at(200));
    assert_eq!(record.first_seen, at(100));
}

#[test]
fn identifier_rows_are_refreshed_only_after_the_refresh_interval() {
    let mut store = MemoryStore::default();
    let first = faker("1", "10.0.0.1");
    store.apply(&run(std::slice::from_ref(&first), &Snapshot::default()));
    let mut soon = first.clone();
    soon.timestamp = first.timestamp + Duration::minutes(5);
    let plan = run(&[soon], &store.snapshot());
    assert_eq!(plan.devices.len(), 1, "last_seen moves");
    assert!(plan.identifiers.is_empty());
    let mut later = first.clone();
    later.timestamp = first.timestamp + Duration::hours(2);
    let plan = run(&[later.clone()], &store.snapshot());
    assert_eq!(plan.identifiers.len(), 1);
    assert_eq!(plan.identifiers[0].last_seen, later.timestamp);
}

#[test]
fn deleted_device_is_revived_by_an_observation() {
    let mut gone = stored(
        "sr:g",
        "default",
        Some("10.0.0.1"),
        &[(IdentifierType::IntegrationId, "faker:1")],
        at(0),
    );
    gone.record.deleted = true;
    let other = stored("sr:o", "default", Some("10.0.0.1"), &[], at(0));
    let mut u = faker("1", "");
    u.ip = String::new();
    u.mac = Some("00:1B:44:00:00:01".into());
    let plan = run(&[u], &Snapshot::from_devices([gone, other]));
    assert_eq!(resolved(&plan, 0), "sr:g");
    let record = device(&plan, "sr:g");
    assert!(!record.deleted);
    assert_eq!(record.ip, None, "its old IP belongs to another device now");
}

#[test]
fn replaying_a_mixed_batch_is_idempotent() {
    let mut store = MemoryStore::default();
    store.apply(&run(&batch(20), &Snapshot::default()));
    let mut churn = batch(20);
    churn.swap(0, 1);
    let (ip0, ip1) = (churn[0].ip.clone(), churn[1].ip.clone());
    churn[0].ip = ip1;
    churn[1].ip = ip0;
    let mut link = armis("77", "10.9.9.9");
    link.metadata
        .insert("integration_type".into(), "faker".into());
    link.metadata.insert("integration_id".into(), "5".into());
    // First, so that replaying the batch must not skip device 5's own update.
    churn.insert(0, link);
    let first = run(&churn, &store.snapshot());
    store.apply(&first);
    let second = run(&churn, &store.snapshot());
    assert!(second.devices.is_empty(), "{:?}", second.devices);
    assert!(second.identifiers.is_empty());
    assert!(second.merges.is_empty() && second.ip_releases.is_empty());
    assert_eq!(second.resolutions, first.resolutions);
}

#[test]
fn already_applied_updates_are_skipped_without_identity_lookups() {
    let updates = batch(10);
    let mut store = MemoryStore::default();
    let initial = run(&updates, &Snapshot::default());
    store.apply(&initial);
    let snapshot = store.snapshot();
    let observations: Vec<_> = updates.iter().map(observe).collect();
    // Everything was applied: nothing left to look up.
    let applied = applied_updates(&observations, &snapshot, &HashSet::new());
    assert!(applied.iter().all(Option::is_some));
    assert!(crate::dire::snapshot::SnapshotRequest::for_batch(&observations, &applied).is_empty());
    // Unless an earlier batch of the stream changed the device.
    let touched = HashSet::from([resolved(&initial, 2).to_string()]);
    let applied_after = applied_updates(&observations, &snapshot, &touched);
    assert_eq!(applied_after.iter().filter(|a| a.is_none()).count(), 1);
    assert!(applied_after[2].is_none());
    // A staging-only snapshot (what the store loads first) is enough.
    let mut staging_only = Snapshot::default();
    for ((source, device), state) in &store.staged {
        staging_only.insert_staged(*source, device.clone(), state.clone());
    }
    let plan = run(&updates, &staging_only);
    assert!(plan.devices.is_empty() && plan.identifiers.is_empty() && plan.staged.is_empty());
    assert_eq!(plan.resolutions, initial.resolutions);
    assert_eq!(plan.stats.unchanged_devices, 10);
    // A device that was merged away no longer counts as applied.
    let first = resolved(&initial, 0).to_string();
    let key = store
        .staged
        .iter()
        .find(|(_, s)| s.device_id.as_deref() == Some(first.as_str()))
        .map(|(k, _)| k.clone())
        .unwrap();
    store.staged.get_mut(&key).unwrap().device_active = false;
    store.devices.get_mut(&first).unwrap().merged_into = Some(resolved(&initial, 1).to_string());
    let snapshot = store.snapshot();
    let applied = applied_updates(&observations, &snapshot, &HashSet::new());
    assert!(applied[0].is_none());
    assert!(!crate::dire::snapshot::SnapshotRequest::for_batch(&observations, &applied).is_empty());
}

#[test]
fn a_skipped_update_is_replanned_when_the_batch_changes_its_device() {
    let mut store = MemoryStore::default();
    let updates = batch(3);
    store.apply(&run(&updates, &Snapshot::default()));
    // An unstaged update moves device 1 to another IP, before device 1's own
    // (already applied) update in the same batch.
    let mut other = update(
        "10.9.9.9",
        &[("integration_type", "faker"), ("integration_id", "2")],
    );
    other.source = "import".into();
    let mut replay = vec![other];
    replay.extend(updates.iter().cloned());
    let observations: Vec<_> = replay.iter().map(observe).collect();
    let snapshot = store.snapshot();
    let applied = applied_updates(&observations, &snapshot, &HashSet::new());
    assert!(applied[0].is_none() && applied[2].is_some());
    let first = plan_observations(&observations, &applied, &snapshot, &PlanOptions::default());
    assert_eq!(
        first.replan,
        vec![2],
        "device 2's own update must be replayed"
    );
    let plan = run(&replay, &snapshot);
    assert!(plan.replan.is_empty());
    let uid = resolved(&plan, 0);
    assert_eq!(
        device(&plan, uid).ip.as_deref(),
        Some("172.16.0.2"),
        "the later update in the batch wins, as on first delivery"
    );
}

#[test]
fn an_older_observation_neither_steals_nor_replaces_an_ip() {
    let holder = stored(
        "sr:h",
        "default",
        Some("10.0.0.1"),
        &[(IdentifierType::IntegrationId, "faker:7")],
        at(500),
    );
    let own = stored(
        "sr:d",
        "default",
        Some("10.0.0.2"),
        &[(IdentifierType::IntegrationId, "faker:1")],
        at(400),
    );
    let snapshot = Snapshot::from_devices([holder, own]);
    // Device 1 seen (late) at t=100 on the holder's IP: the holder was seen
    // later, so it keeps the IP, and device 1 keeps its newer one.
    let mut late = faker("1", "10.0.0.1");
    late.timestamp = at(100);
    let plan = run(&[late], &snapshot);
    assert_eq!(resolved(&plan, 0), "sr:d");
    assert!(plan.ip_moves.is_empty() && plan.ip_releases.is_empty());
    assert!(plan.devices.iter().all(|d| d.record.ip.is_some()));
    // The same observation made after both moves the IP.
    let mut fresh = faker("1", "10.0.0.1");
    fresh.timestamp = at(600);
    let plan = run(&[fresh], &snapshot);
    assert_eq!(plan.ip_moves.len(), 1);
    assert_eq!(device(&plan, "sr:d").ip.as_deref(), Some("10.0.0.1"));
}

#[test]
fn identifiers_point_at_stored_or_written_devices() {
    let snapshot = Snapshot::from_devices([stored(
        "sr:stored",
        "default",
        Some("10.0.0.1"),
        &[(IdentifierType::ArmisDeviceId, "1")],
        at(0),
    )]);
    // One update refreshes the stored device, one creates a device.
    let plan = run(&[armis("1", "10.0.0.1"), armis("2", "10.0.0.2")], &snapshot);
    assert!(plan.identifiers.iter().any(|i| i.device_id == "sr:stored"));
    assert!(plan.identifiers.iter().any(|i| i.device_id != "sr:stored"));
    assert_eq!(plan.dangling_identifier(&snapshot), None);

    // The new device's row left out of the plan: its identifiers dangle.
    let mut without_new_device = plan.clone();
    without_new_device.devices.retain(|d| !d.is_new);
    let dangling = without_new_device
        .dangling_identifier(&snapshot)
        .expect("the new device's identifiers point at nothing");
    assert_ne!(dangling.device_id, "sr:stored");

    // An identifier moved to a device nobody stored or writes.
    let mut moved_nowhere = plan.clone();
    moved_nowhere.identifiers[0].device_id = "sr:nowhere".into();
    assert_eq!(
        moved_nowhere
            .dangling_identifier(&snapshot)
            .map(|i| i.device_id.as_str()),
        Some("sr:nowhere")
    );
}
