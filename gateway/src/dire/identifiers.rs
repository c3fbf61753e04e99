//! Strong identifiers of a DeviceUpdate, in priority order.
//!
//! | priority | type               | read from                                   |
//! |----------|--------------------|---------------------------------------------|
//! | 0        | `agent_id`         | `metadata.agent_id` (not for scanner-like sources) |
//! | 1        | `armis_device_id`  | `metadata.armis_device_id`                  |
//! | 2        | `integration_id`   | `metadata.integration_id`                   |
//! | 3        | `netbox_device_id` | `metadata.netbox_device_id`                 |
//! | 4        | `mac`              | top-level `mac`, normalised                 |
//!
//! Values are trimmed and blanks ignored. Non-string identifier values cannot
//! reach this module: `DeviceUpdate.metadata` is `map<string, string>`, so the
//! ingest layer's JSON decoding already refuses or drops them.
//!
//! `integration_id` is namespaced by `metadata.integration_type` in the stored
//! value (`armis:17` and `netbox:17` are different devices — a team decision
//! that deviates from the letter of the DIRE reference); the canonical-id seed
//! keeps using the raw value, see [`Identifier::seed_value`].

use std::fmt;

use sr_proto::DeviceUpdate;
use sr_proto::device_update::keys;

/// Sources whose `metadata.agent_id` names the scanner that saw the device,
/// not the device itself (a sweep result is observed *by* an agent).
const SCANNER_SOURCES: &[&str] = &["sweep", "scanner", "nmap", "icmp", "tcp"];

/// Kind of a strong identifier. The declaration order is the priority order
/// (highest first), so `Ord` compares priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierType {
    /// A ServiceRadar agent's own id.
    AgentId,
    /// Armis device id.
    ArmisDeviceId,
    /// The source's own device id, namespaced by integration type.
    IntegrationId,
    /// NetBox device id.
    NetboxDeviceId,
    /// MAC address, 12 upper-case hex digits without separators.
    Mac,
}

impl IdentifierType {
    /// All types, highest priority first.
    pub const ALL: [IdentifierType; 5] = [
        IdentifierType::AgentId,
        IdentifierType::ArmisDeviceId,
        IdentifierType::IntegrationId,
        IdentifierType::NetboxDeviceId,
        IdentifierType::Mac,
    ];

    /// The `identifier_type` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierType::AgentId => "agent_id",
            IdentifierType::ArmisDeviceId => "armis_device_id",
            IdentifierType::IntegrationId => "integration_id",
            IdentifierType::NetboxDeviceId => "netbox_device_id",
            IdentifierType::Mac => "mac",
        }
    }

    /// Parses an `identifier_type` column value.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// 0 is the highest priority.
    pub fn priority(self) -> u8 {
        self as u8
    }

    /// Prefix of this type's part in the canonical-id seed.
    pub fn seed_prefix(self) -> &'static str {
        match self {
            IdentifierType::AgentId => "agent",
            IdentifierType::ArmisDeviceId => "armis",
            IdentifierType::IntegrationId => "integration",
            IdentifierType::NetboxDeviceId => "netbox",
            IdentifierType::Mac => "mac",
        }
    }
}

impl fmt::Display for IdentifierType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much an identifier can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Confidence {
    /// A source-assigned id or a globally administered MAC.
    Strong,
    /// A locally administered MAC: randomised or virtual, often reused.
    Medium,
}

impl Confidence {
    /// The `confidence` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Strong => "strong",
            Confidence::Medium => "medium",
        }
    }

    /// Parses a `confidence` column value; anything unknown counts as medium
    /// so that a damaged row can never strengthen evidence.
    pub fn parse(text: &str) -> Self {
        if text == "strong" {
            Confidence::Strong
        } else {
            Confidence::Medium
        }
    }
}

/// A strong identifier extracted from an update.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// Its type.
    pub kind: IdentifierType,
    /// The value stored in `device_identifiers.identifier_value`.
    pub value: String,
    /// The value used in the canonical-id seed (the raw integration id for
    /// `integration_id`, the same as `value` otherwise).
    pub seed_value: String,
    /// Strong, or medium for a locally administered MAC.
    pub confidence: Confidence,
}

/// The part of an identifier that must be unique per device: two devices that
/// hold different values under the same key are different devices.
/// `integration_id` keys include the integration type, so one device may carry
/// an Armis and a NetBox integration id but never two Armis ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExclusiveKey {
    /// Identifier type (never `mac`: a device has many MACs).
    pub kind: IdentifierType,
    /// Integration type for `integration_id`, empty otherwise.
    pub namespace: String,
}

/// The exclusive key of a stored identifier, if its type is exclusive.
/// Stored `integration_id` values are `<integration_type>:<id>` when the type
/// was known; the namespace is the part before the first `:`.
pub fn exclusive_key(kind: IdentifierType, stored_value: &str) -> Option<ExclusiveKey> {
    let namespace = match kind {
        IdentifierType::Mac => return None,
        IdentifierType::IntegrationId => stored_value
            .split_once(':')
            .map(|(namespace, _)| namespace.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    Some(ExclusiveKey { kind, namespace })
}

impl Identifier {
    /// See [`exclusive_key`].
    pub fn exclusive_key(&self) -> Option<ExclusiveKey> {
        exclusive_key(self.kind, &self.value)
    }

    /// True for MAC identifiers.
    pub fn is_mac(&self) -> bool {
        self.kind == IdentifierType::Mac
    }
}

/// True for sources whose `metadata.agent_id` names the scanner, not the
/// device (compared case-insensitively).
pub fn is_scanner_source(source: &str) -> bool {
    let source = source.trim();
    SCANNER_SOURCES
        .iter()
        .any(|scanner| scanner.eq_ignore_ascii_case(source))
}

/// Normalises a MAC the reference's way (trimmed, upper-case, `:` `-` `.`
/// removed) and accepts it as an identifier only when it is a usable unicast
/// address: exactly 12 hex digits, not all zeros, multicast bit clear (a
/// shared placeholder such as `00:00:00:00:00:00` or a broadcast address
/// would otherwise glue unrelated devices together).
pub fn normalize_mac(raw: &str) -> Option<String> {
    let normalized: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if normalized.len() != 12 || !normalized.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let first = u8::from_str_radix(&normalized[..2], 16).ok()?;
    if first & 0x01 != 0 || normalized.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(normalized)
}

/// True when the second-lowest bit of the first octet is set. Expects the
/// output of [`normalize_mac`].
pub fn is_locally_administered(mac: &str) -> bool {
    mac.get(..2)
        .and_then(|octet| u8::from_str_radix(octet, 16).ok())
        .is_some_and(|first| first & 0x02 != 0)
}

/// `AABBCCDDEEFF` → `AA:BB:CC:DD:EE:FF`.
pub fn colon_mac(mac: &str) -> String {
    let mut out = String::with_capacity(17);
    for (index, c) in mac.chars().enumerate() {
        if index > 0 && index % 2 == 0 {
            out.push(':');
        }
        out.push(c);
    }
    out
}

fn trimmed<'a>(update: &'a DeviceUpdate, key: &str) -> Option<&'a str> {
    update
        .metadata
        .get(key)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
}

fn plain(kind: IdentifierType, value: &str) -> Identifier {
    Identifier {
        kind,
        value: value.to_string(),
        seed_value: value.to_string(),
        confidence: Confidence::Strong,
    }
}

/// Extracts the strong identifiers of an update, highest priority first.
pub fn extract(update: &DeviceUpdate) -> Vec<Identifier> {
    let mut out = Vec::with_capacity(3);
    if !is_scanner_source(&update.source)
        && let Some(agent) = trimmed(update, keys::AGENT_ID)
    {
        out.push(plain(IdentifierType::AgentId, agent));
    }
    if let Some(armis) = trimmed(update, keys::ARMIS_DEVICE_ID) {
        out.push(plain(IdentifierType::ArmisDeviceId, armis));
    }
    if let Some(id) = trimmed(update, keys::INTEGRATION_ID) {
        let value = match trimmed(update, keys::INTEGRATION_TYPE) {
            Some(kind) => format!("{kind}:{id}"),
            None => id.to_string(),
        };
        out.push(Identifier {
            kind: IdentifierType::IntegrationId,
            value,
            seed_value: id.to_string(),
            confidence: Confidence::Strong,
        });
    }
    if let Some(netbox) = trimmed(update, keys::NETBOX_DEVICE_ID) {
        out.push(plain(IdentifierType::NetboxDeviceId, netbox));
    }
    if let Some(mac) = update.mac.as_deref().and_then(normalize_mac) {
        let confidence = if is_locally_administered(&mac) {
            Confidence::Medium
        } else {
            Confidence::Strong
        };
        out.push(Identifier {
            kind: IdentifierType::Mac,
            seed_value: mac.clone(),
            value: mac,
            confidence,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn update(source: &str, mac: Option<&str>, metadata: &[(&str, &str)]) -> DeviceUpdate {
        DeviceUpdate {
            device_id: String::new(),
            ip: "10.0.0.1".into(),
            source: source.into(),
            agent_id: String::new(),
            gateway_id: String::new(),
            partition: "default".into(),
            timestamp: "2025-01-02T03:04:05Z".parse().unwrap(),
            hostname: None,
            mac: mac.map(str::to_string),
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

    fn kinds(ids: &[Identifier]) -> Vec<(&'static str, &str)> {
        ids.iter()
            .map(|i| (i.kind.as_str(), i.value.as_str()))
            .collect()
    }

    #[test]
    fn extracts_all_types_in_priority_order() {
        let u = update(
            "armis",
            Some("00:1b:44:00:00:01"),
            &[
                ("netbox_device_id", "9"),
                ("integration_type", "armis"),
                ("integration_id", "17"),
                ("armis_device_id", "17"),
                ("agent_id", "agent-1"),
            ],
        );
        let ids = extract(&u);
        assert_eq!(
            kinds(&ids),
            vec![
                ("agent_id", "agent-1"),
                ("armis_device_id", "17"),
                ("integration_id", "armis:17"),
                ("netbox_device_id", "9"),
                ("mac", "001B44000001"),
            ]
        );
        assert!(ids.iter().all(|i| i.confidence == Confidence::Strong));
        assert_eq!(ids[2].seed_value, "17", "seed uses the raw integration id");
    }

    #[test]
    fn integration_id_without_type_is_stored_raw() {
        let ids = extract(&update("x", None, &[("integration_id", " 42 ")]));
        assert_eq!(kinds(&ids), vec![("integration_id", "42")]);
    }

    #[test]
    fn values_are_trimmed_and_blanks_ignored() {
        let u = update(
            "armis",
            Some("   "),
            &[
                ("armis_device_id", "  5 "),
                ("netbox_device_id", "   "),
                ("agent_id", ""),
                ("integration_type", "  "),
                ("integration_id", "7"),
            ],
        );
        assert_eq!(
            kinds(&extract(&u)),
            vec![("armis_device_id", "5"), ("integration_id", "7")]
        );
    }

    #[test]
    fn scanner_sources_do_not_yield_agent_ids() {
        let sweep = update("sweep", None, &[("agent_id", "scanner-agent")]);
        assert!(extract(&sweep).is_empty());
        let sweep_upper = update(" Sweep ", None, &[("agent_id", "scanner-agent")]);
        assert!(extract(&sweep_upper).is_empty());
        let agent = update("agent", None, &[("agent_id", "agent-7")]);
        assert_eq!(kinds(&extract(&agent)), vec![("agent_id", "agent-7")]);
    }

    #[test]
    fn mac_normalisation() {
        assert_eq!(
            normalize_mac(" 00-1b-44-00-00-01 ").as_deref(),
            Some("001B44000001")
        );
        assert_eq!(
            normalize_mac("001b.4400.0001").as_deref(),
            Some("001B44000001")
        );
        assert_eq!(
            normalize_mac("001B44000001").as_deref(),
            Some("001B44000001")
        );
        assert_eq!(normalize_mac("not a mac"), None);
        assert_eq!(normalize_mac("00:1B:44:00:00"), None);
        assert_eq!(normalize_mac("00:00:00:00:00:00"), None, "placeholder");
        assert_eq!(normalize_mac("FF:FF:FF:FF:FF:FF"), None, "broadcast");
        assert_eq!(normalize_mac("01:00:5E:00:00:01"), None, "multicast");
    }

    #[test]
    fn locally_administered_mac_is_medium() {
        assert!(is_locally_administered("021B44000001"));
        assert!(is_locally_administered("DA0000000001"));
        assert!(!is_locally_administered("001B44000001"));
        let ids = extract(&update("faker", Some("02:00:00:00:00:01"), &[]));
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].confidence, Confidence::Medium);
        let ids = extract(&update("faker", Some("00:00:00:00:00:01"), &[]));
        assert_eq!(ids[0].confidence, Confidence::Strong);
    }

    #[test]
    fn exclusive_keys_namespace_integration_ids() {
        let armis = exclusive_key(IdentifierType::IntegrationId, "armis:17").unwrap();
        let netbox = exclusive_key(IdentifierType::IntegrationId, "netbox:17").unwrap();
        assert_ne!(armis, netbox);
        assert_eq!(armis.namespace, "armis");
        assert_eq!(
            exclusive_key(IdentifierType::IntegrationId, "17")
                .unwrap()
                .namespace,
            ""
        );
        assert!(exclusive_key(IdentifierType::Mac, "001B44000001").is_none());
        assert_eq!(
            exclusive_key(IdentifierType::ArmisDeviceId, "5")
                .unwrap()
                .namespace,
            ""
        );
    }

    #[test]
    fn type_names_round_trip_and_order_by_priority() {
        for kind in IdentifierType::ALL {
            assert_eq!(IdentifierType::parse(kind.as_str()), Some(kind));
        }
        assert!(IdentifierType::AgentId < IdentifierType::Mac);
        assert_eq!(IdentifierType::ArmisDeviceId.priority(), 1);
        assert_eq!(colon_mac("001B44000001"), "00:1B:44:00:00:01");
    }
}
