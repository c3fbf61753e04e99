//! Canonical `sr:` device ids, derived exactly as the DIRE reference says.
//!
//! - with strong identifiers: SHA-256 of
//!   `serviceradar-device-v3:partition:<P>:` + the present parts concatenated
//!   with no separator, in the order `agent:<v>`, `armis:<v>`,
//!   `integration:<v>` (the raw integration id, not the namespaced stored
//!   value), `netbox:<v>`, `mac:<NORMALISED>`;
//! - IP only: SHA-256 of `serviceradar-device-v3:partition:<P>:ip:<ip>`;
//! - nothing at all: a random v4 UUID.
//!
//! The first 16 bytes of the hash get the version (4) and variant (RFC 4122)
//! bits and are formatted lower-case 8-4-4-4-12.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::identifiers::Identifier;

/// Prefix of canonical device ids.
pub const SR_PREFIX: &str = "sr:";

/// Prefix of service-component ids, which DIRE keeps as they are.
pub const SERVICE_PREFIX: &str = "serviceradar:";

/// The seed for a device, or `None` when there is nothing to derive from.
/// `identifiers` may come in any order; they are composed by priority.
pub fn seed(partition: &str, identifiers: &[Identifier], ip: &str) -> Option<String> {
    let mut ordered: Vec<&Identifier> = identifiers.iter().collect();
    ordered.sort_by_key(|identifier| identifier.kind);
    if !ordered.is_empty() {
        let mut seed = format!("serviceradar-device-v3:partition:{partition}:");
        for identifier in ordered {
            seed.push_str(identifier.kind.seed_prefix());
            seed.push(':');
            seed.push_str(&identifier.seed_value);
        }
        return Some(seed);
    }
    let ip = ip.trim();
    if ip.is_empty() {
        return None;
    }
    Some(format!(
        "serviceradar-device-v3:partition:{partition}:ip:{ip}"
    ))
}

/// `sr:` id of a seed.
pub fn from_seed(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format!("{SR_PREFIX}{}", Uuid::from_bytes(bytes).hyphenated())
}

/// The deterministic id of a device, or a random v4 id when the update
/// carries neither strong identifiers nor an IP (the planner never stores
/// such updates: a random id would break idempotent redelivery).
pub fn derive(partition: &str, identifiers: &[Identifier], ip: &str) -> String {
    match seed(partition, identifiers, ip) {
        Some(seed) => from_seed(&seed),
        None => format!("{SR_PREFIX}{}", Uuid::new_v4().hyphenated()),
    }
}

/// Parses an `sr:<uuid>` id into its canonical lower-case form.
pub fn parse_sr_id(text: &str) -> Option<String> {
    let rest = text.trim().strip_prefix(SR_PREFIX)?;
    let uuid = Uuid::parse_str(rest).ok()?;
    Some(format!("{SR_PREFIX}{}", uuid.hyphenated()))
}

/// True for `serviceradar:` service-component ids.
pub fn is_service_id(text: &str) -> bool {
    text.starts_with(SERVICE_PREFIX) && text.len() > SERVICE_PREFIX.len()
}

#[cfg(test)]
mod tests {
    use super::super::identifiers::{Confidence, IdentifierType};
    use super::*;

    #[test]
    fn reference_test_vectors() {
        let vectors = [
            (
                "serviceradar-device-v3:partition:default:armis:1",
                "sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7",
            ),
            (
                "serviceradar-device-v3:partition:default:armis:1integration:1",
                "sr:cfb87c1b-a3fb-4637-9705-dc57f2cbec76",
            ),
            (
                "serviceradar-device-v3:partition:default:armis:1integration:1mac:001B44000001",
                "sr:597971e8-db27-472c-8360-045a1109e9a6",
            ),
            (
                "serviceradar-device-v3:partition:default:ip:10.0.0.1",
                "sr:e0631a87-8b9f-4201-9a11-2ff7067fbb64",
            ),
        ];
        for (seed, id) in vectors {
            assert_eq!(from_seed(seed), id, "seed {seed}");
        }
    }

    fn id(kind: IdentifierType, value: &str, seed_value: &str) -> Identifier {
        Identifier {
            kind,
            value: value.into(),
            seed_value: seed_value.into(),
            confidence: Confidence::Strong,
        }
    }

    #[test]
    fn seed_composition_uses_priority_order_and_raw_integration_id() {
        let ids = vec![
            id(IdentifierType::Mac, "001B44000001", "001B44000001"),
            id(IdentifierType::IntegrationId, "armis:1", "1"),
            id(IdentifierType::ArmisDeviceId, "1", "1"),
        ];
        let seed = seed("default", &ids, "10.0.0.1").unwrap();
        assert_eq!(
            seed,
            "serviceradar-device-v3:partition:default:armis:1integration:1mac:001B44000001"
        );
        assert_eq!(
            derive("default", &ids, "10.0.0.1"),
            "sr:597971e8-db27-472c-8360-045a1109e9a6"
        );
    }

    #[test]
    fn ip_only_and_nothing() {
        assert_eq!(
            derive("default", &[], "10.0.0.1"),
            "sr:e0631a87-8b9f-4201-9a11-2ff7067fbb64"
        );
        assert_eq!(seed("default", &[], "  "), None);
        let a = derive("default", &[], "");
        let b = derive("default", &[], "");
        assert_ne!(a, b, "no identity at all gives a random id");
        assert!(parse_sr_id(&a).is_some());
    }

    #[test]
    fn partition_changes_the_id() {
        let ids = vec![id(IdentifierType::ArmisDeviceId, "1", "1")];
        assert_ne!(derive("default", &ids, ""), derive("site-b", &ids, ""));
    }

    #[test]
    fn sr_id_parsing() {
        assert_eq!(
            parse_sr_id("sr:8C1AB81A-BDF0-4417-AE9A-6678756238B7").as_deref(),
            Some("sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7")
        );
        assert_eq!(parse_sr_id("sr:nope"), None);
        assert_eq!(parse_sr_id("default:10.0.0.1"), None);
        assert!(is_service_id("serviceradar:agent:a1"));
        assert!(!is_service_id("serviceradar:"));
        assert!(!is_service_id("sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7"));
    }
}
