//! The sweep document: the `sweep.json` shape agents already read, its
//! content hash, the `config_json` body of GetConfig and the typed
//! `SweepConfig` (AgentConfigResponse field 10).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sr_proto::monitoring;

/// Metadata key of a target's canonical `sr:` device id.
pub const META_DEVICE_ID: &str = "device_id";
/// Metadata key of a target's hostname.
pub const META_HOSTNAME: &str = "hostname";
/// Metadata key of a target's TCP ports, comma-separated (`22,80,443`).
pub const META_PORTS: &str = "ports";

/// A sweep mode agents understand. Serialised `icmp`, `tcp`, `tcp_connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMode {
    /// ICMP echo.
    Icmp,
    /// TCP SYN probe.
    Tcp,
    /// Full TCP connect.
    TcpConnect,
}

impl SweepMode {
    /// Every mode, in canonical order.
    pub const ALL: [SweepMode; 3] = [SweepMode::Icmp, SweepMode::Tcp, SweepMode::TcpConnect];

    /// Parses a mode name (case-insensitive, trimmed); `None` when unknown.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(text))
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Icmp => "icmp",
            Self::Tcp => "tcp",
            Self::TcpConnect => "tcp_connect",
        }
    }
}

/// The sweep configuration of one agent, in the `sweep.json` shape.
///
/// Targets carry their canonical device id, hostname and ports in
/// `metadata` ([`META_DEVICE_ID`], [`META_HOSTNAME`], [`META_PORTS`]) next to
/// the source identifiers, so the file keeps exactly the reference's keys
/// and loses nothing the typed [`monitoring::SweepConfig`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepDocument {
    /// CIDRs covering exactly the targets.
    pub networks: Vec<String>,
    /// TCP ports: the union of the targets' ports (the defaults when there
    /// are no targets), so agents that only read top-level ports probe them.
    pub ports: Vec<u16>,
    /// Sweep modes: the union of the targets' modes (the defaults when
    /// there are no targets).
    pub sweep_modes: Vec<SweepMode>,
    /// One target per device, ordered by IP then device id.
    pub device_targets: Vec<DeviceTarget>,
    /// How often to sweep (Go duration, e.g. `5m`).
    #[serde(with = "go_duration")]
    pub interval: Duration,
    /// Probes in flight at once.
    pub concurrency: u32,
    /// Probe timeout (Go duration, e.g. `3s`).
    #[serde(with = "go_duration")]
    pub timeout: Duration,
    /// Hex SHA-256 of the document's canonical JSON without this field
    /// (see [`content_hash`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_hash: String,
}

/// One device to sweep, in the `sweep.json` shape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceTarget {
    /// The device's IP as a host CIDR (`/32` or `/128`).
    pub network: String,
    /// Modes for this device.
    pub sweep_modes: Vec<SweepMode>,
    /// Label of the integration query that found the device.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query_label: String,
    /// Integration type the device came from (`armis`, `netbox`, ...).
    pub source: String,
    /// Identifiers (`integration_type`, `integration_id`, `armis_device_id`,
    /// `netbox_device_id`, `query_label`, ...) plus `device_id`, `hostname`
    /// and `ports`. Keys are mostly the well-known ones, so they are
    /// borrowed `'static` strings where possible (a large sweep has millions).
    pub metadata: BTreeMap<Cow<'static, str>, String>,
}

impl DeviceTarget {
    /// The target's address (the network without its host prefix).
    pub fn ip(&self) -> Option<IpAddr> {
        let address = self.network.split('/').next().unwrap_or_default();
        address.parse().ok()
    }

    /// The target's ports, from metadata.
    pub fn ports(&self) -> Vec<u16> {
        self.metadata
            .get(META_PORTS)
            .map(|text| parse_ports(text).collect())
            .unwrap_or_default()
    }
}

/// Hex SHA-256 of the canonical JSON of the document's content: every field
/// except `config_hash`, in declaration order, maps sorted by key. Equal
/// content gives equal hashes whatever `config_hash` currently holds.
pub fn content_hash(document: &SweepDocument) -> String {
    // serde_json writes in small pieces; buffer them for the hasher.
    let mut writer = std::io::BufWriter::with_capacity(64 * 1024, HashWriter(Sha256::new()));
    // Serialising plain data into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut writer, &Content::of(document));
    // Flushing into the hasher cannot fail, so nothing stays buffered.
    let _ = writer.flush();
    let (hasher, _) = writer.into_parts();
    hex::encode(hasher.0.finalize())
}

/// The [`content_hash`] of a document and its
/// [`SweepDocument::agent_config_json`] with that hash, from one
/// serialisation: `config_hash` is the document's last field, so the body
/// is the hashed content with the hash appended.
pub fn hash_and_agent_config_json(document: &SweepDocument) -> (String, Vec<u8>) {
    const PREFIX: &[u8] = b"{\"sweep\":";
    let mut body = Vec::with_capacity(document.device_targets.len() * 320 + 1024);
    body.extend_from_slice(PREFIX);
    // Serialising plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, &Content::of(document));
    let hash = hex::encode(Sha256::digest(&body[PREFIX.len()..]));
    // The content is a JSON object: reopen it for the hash.
    body.pop();
    body.extend_from_slice(b",\"config_hash\":\"");
    body.extend_from_slice(hash.as_bytes());
    body.extend_from_slice(b"\"}}");
    (hash, body)
}

/// What [`content_hash`] covers: every field of the document but
/// `config_hash`, in declaration order.
#[derive(Serialize)]
struct Content<'a> {
    networks: &'a [String],
    ports: &'a [u16],
    sweep_modes: &'a [SweepMode],
    device_targets: &'a [DeviceTarget],
    #[serde(with = "go_duration")]
    interval: Duration,
    concurrency: u32,
    #[serde(with = "go_duration")]
    timeout: Duration,
}

impl<'a> Content<'a> {
    fn of(document: &'a SweepDocument) -> Self {
        Self {
            networks: &document.networks,
            ports: &document.ports,
            sweep_modes: &document.sweep_modes,
            device_targets: &document.device_targets,
            interval: document.interval,
            concurrency: document.concurrency,
            timeout: document.timeout,
        }
    }
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SweepDocument {
    /// The document as JSON bytes (compact, canonical key order).
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The `config_json` body of an agent's GetConfig response:
    /// `{"sweep": <document>}`.
    pub fn agent_config_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct AgentConfigJson<'a> {
            sweep: &'a SweepDocument,
        }
        serde_json::to_vec(&AgentConfigJson { sweep: self }).unwrap_or_default()
    }

    /// The typed form (AgentConfigResponse field 10). `ip`, `ports`,
    /// `hostname` and `device_id` are typed fields there, so a target's
    /// metadata keeps only the source identifiers, as the sweep reference
    /// lists them: carrying them twice made a 10k-target response a fifth
    /// larger and cost every agent 30k map entries to decode.
    pub fn to_proto(&self) -> monitoring::SweepConfig {
        monitoring::SweepConfig {
            networks: self.networks.clone(),
            device_targets: self.device_targets.iter().map(target_to_proto).collect(),
            sweep_modes: modes_to_strings(&self.sweep_modes),
            sweep_interval_sec: i32::try_from(self.interval.as_secs()).unwrap_or(i32::MAX),
            ports: self.ports.iter().map(|&p| i32::from(p)).collect(),
            config_hash: self.config_hash.clone(),
        }
    }
}

impl SweepDocument {
    /// [`Self::to_proto`] encoded: the same bytes as
    /// `self.to_proto().encode_to_vec()`, written straight from the document.
    /// Building the message first costs a string and a map per target, which
    /// made encoding cost more than generating the sweep.
    pub fn encode_proto(&self) -> Vec<u8> {
        // Field numbers of `SweepConfig` and `DeviceTarget` in monitoring.proto.
        let mut out = Vec::with_capacity(self.device_targets.len() * 160 + 1024);
        for network in &self.networks {
            put_str(&mut out, 1, network);
        }
        let mut target_bytes = Vec::with_capacity(256);
        let mut ip = String::with_capacity(48);
        for target in &self.device_targets {
            target_bytes.clear();
            encode_target(target, &mut ip, &mut target_bytes);
            put_bytes(&mut out, 2, &target_bytes);
        }
        for mode in &self.sweep_modes {
            put_str(&mut out, 3, mode.as_str());
        }
        let interval = i32::try_from(self.interval.as_secs()).unwrap_or(i32::MAX);
        if interval != 0 {
            encode_key(4, WireType::Varint, &mut out);
            // int32 is sign-extended to 64 bits on the wire.
            encode_varint(i64::from(interval) as u64, &mut out);
        }
        put_packed_ports(&mut out, 5, self.ports.iter().copied());
        put_str(&mut out, 6, &self.config_hash);
        out
    }
}

/// One `DeviceTarget` message's fields, as [`target_to_proto`] and prost
/// would write them. `ip` is scratch space.
fn encode_target(target: &DeviceTarget, ip: &mut String, out: &mut Vec<u8>) {
    ip.clear();
    if let Some(address) = target.ip() {
        // Writing into a String cannot fail.
        let _ = write!(ip, "{address}");
    }
    put_str(out, 1, ip);
    if let Some(ports) = target.metadata.get(META_PORTS) {
        put_packed_ports(out, 2, parse_ports(ports));
    }
    put_str(out, 3, target.metadata.get(META_HOSTNAME).map_or("", |h| h));
    for mode in &target.sweep_modes {
        put_str(out, 4, mode.as_str());
    }
    put_str(out, 5, &target.source);
    put_str(
        out,
        6,
        target.metadata.get(META_DEVICE_ID).map_or("", |d| d),
    );
    for (key, value) in &target.metadata {
        if LIFTED_KEYS.contains(&key.as_ref()) {
            continue;
        }
        // A map entry is a message of key = 1 and value = 2; prost leaves
        // out an empty key or value, as for any default field.
        let field_len = |text: &str| {
            if text.is_empty() {
                0
            } else {
                1 + encoded_len_varint(text.len() as u64) + text.len()
            }
        };
        encode_key(7, WireType::LengthDelimited, out);
        encode_varint((field_len(key) + field_len(value)) as u64, out);
        put_str(out, 1, key);
        put_str(out, 2, value);
    }
}

/// A string field; proto3 leaves out an empty one.
fn put_str(out: &mut Vec<u8>, tag: u32, text: &str) {
    if !text.is_empty() {
        put_bytes(out, tag, text.as_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A packed `repeated int32` of ports; left out when empty.
fn put_packed_ports(out: &mut Vec<u8>, tag: u32, ports: impl Iterator<Item = u16> + Clone) {
    let len: usize = ports
        .clone()
        .map(|p| encoded_len_varint(u64::from(p)))
        .sum();
    if len == 0 {
        return;
    }
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    for port in ports {
        encode_varint(u64::from(port), out);
    }
}

/// Ports from a target's comma-separated `ports` metadata.
fn parse_ports(text: &str) -> impl Iterator<Item = u16> + Clone + '_ {
    text.split(',')
        .filter_map(|p| p.trim().parse::<u16>().ok())
        .filter(|&p| p != 0)
}

/// Metadata keys that the typed target carries as fields of their own.
const LIFTED_KEYS: [&str; 3] = [META_DEVICE_ID, META_HOSTNAME, META_PORTS];

fn target_to_proto(target: &DeviceTarget) -> monitoring::DeviceTarget {
    let meta = |key: &str| target.metadata.get(key).cloned().unwrap_or_default();
    monitoring::DeviceTarget {
        ip: target.ip().map(|ip| ip.to_string()).unwrap_or_default(),
        ports: target.ports().into_iter().map(i32::from).collect(),
        hostname: meta(META_HOSTNAME),
        sweep_modes: modes_to_strings(&target.sweep_modes),
        source: target.source.clone(),
        device_id: meta(META_DEVICE_ID),
        metadata: target
            .metadata
            .iter()
            .filter(|(k, _)| !LIFTED_KEYS.contains(&k.as_ref()))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn modes_to_strings(modes: &[SweepMode]) -> Vec<String> {
    modes.iter().map(|m| m.as_str().to_string()).collect()
}

/// Serde adapter for `Duration` fields written as Go duration strings.
mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&sr_proto::duration::format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        sr_proto::duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> SweepDocument {
        SweepDocument {
            networks: vec!["10.0.0.1/32".into()],
            ports: vec![22, 443],
            sweep_modes: vec![SweepMode::Icmp, SweepMode::Tcp],
            device_targets: vec![DeviceTarget {
                network: "10.0.0.1/32".into(),
                sweep_modes: vec![SweepMode::Icmp],
                query_label: "servers".into(),
                source: "armis".into(),
                metadata: BTreeMap::from([
                    ("armis_device_id".into(), "17".into()),
                    (META_DEVICE_ID.into(), "sr:abc".into()),
                    (META_HOSTNAME.into(), "web-1".into()),
                    (META_PORTS.into(), "22,443".into()),
                ]),
            }],
            interval: Duration::from_secs(300),
            concurrency: 100,
            timeout: Duration::from_secs(3),
            config_hash: String::new(),
        }
    }

    #[test]
    fn json_has_the_sweep_json_shape() {
        let mut doc = document();
        doc.config_hash = content_hash(&doc);
        let value: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "concurrency",
                "config_hash",
                "device_targets",
                "interval",
                "networks",
                "ports",
                "sweep_modes",
                "timeout"
            ]
        );
        assert_eq!(value["interval"], "5m");
        assert_eq!(value["timeout"], "3s");
        assert_eq!(value["sweep_modes"], serde_json::json!(["icmp", "tcp"]));
        let target = &value["device_targets"][0];
        let mut keys: Vec<&str> = target
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "metadata",
                "network",
                "query_label",
                "source",
                "sweep_modes"
            ]
        );
        let back: SweepDocument = serde_json::from_slice(&doc.to_json()).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn hash_is_the_sha256_of_the_document_without_the_hash() {
        let doc = document();
        let expected = hex::encode(Sha256::digest(doc.to_json()));
        assert_eq!(content_hash(&doc), expected);
        let mut with_hash = doc.clone();
        with_hash.config_hash = "anything".into();
        assert_eq!(content_hash(&with_hash), expected);
        let mut changed = doc;
        changed.device_targets[0]
            .metadata
            .insert(META_HOSTNAME.into(), "web-2".into());
        assert_ne!(content_hash(&changed), expected);
    }

    #[test]
    fn one_serialisation_gives_the_hash_and_the_body() {
        let mut doc = document();
        doc.config_hash = "stale".into();
        let (hash, body) = hash_and_agent_config_json(&doc);
        assert_eq!(hash, content_hash(&doc));
        doc.config_hash = hash;
        assert_eq!(
            String::from_utf8(body).unwrap(),
            String::from_utf8(doc.agent_config_json()).unwrap()
        );
    }

    #[test]
    fn proto_lifts_typed_fields() {
        let mut doc = document();
        doc.config_hash = content_hash(&doc);
        let config = doc.to_proto();
        assert_eq!(config.sweep_interval_sec, 300);
        assert_eq!(config.ports, vec![22, 443]);
        assert_eq!(config.sweep_modes, vec!["icmp", "tcp"]);
        assert_eq!(config.config_hash, doc.config_hash);
        let target = &config.device_targets[0];
        assert_eq!(target.ip, "10.0.0.1");
        assert_eq!(target.ports, vec![22, 443]);
        assert_eq!(target.hostname, "web-1");
        assert_eq!(target.device_id, "sr:abc");
        assert_eq!(target.source, "armis");
        assert_eq!(target.metadata["armis_device_id"], "17");
        assert_eq!(
            target.metadata.keys().collect::<Vec<_>>(),
            ["armis_device_id"],
            "typed fields are not repeated in metadata"
        );
    }

    #[test]
    fn direct_encoding_is_the_messages() {
        use prost::Message;
        let mut doc = document();
        doc.config_hash = content_hash(&doc);
        // Empty and default values prost leaves out, odd ports text, IPv6.
        doc.device_targets.push(DeviceTarget {
            network: "2001:db8::1/128".into(),
            sweep_modes: vec![],
            query_label: String::new(),
            source: String::new(),
            metadata: BTreeMap::from([
                ("empty_value".into(), String::new()),
                (META_PORTS.into(), " 80, x,0,65535,443".into()),
            ]),
        });
        doc.device_targets.push(DeviceTarget {
            network: "not an address".into(),
            sweep_modes: vec![SweepMode::TcpConnect],
            query_label: String::new(),
            source: "netbox".into(),
            metadata: BTreeMap::from([("".into(), "keyless".into())]),
        });
        assert_eq!(doc.encode_proto(), doc.to_proto().encode_to_vec());
        let empty = SweepDocument {
            networks: vec![],
            ports: vec![],
            sweep_modes: vec![],
            device_targets: vec![],
            interval: Duration::ZERO,
            concurrency: 0,
            timeout: Duration::ZERO,
            config_hash: String::new(),
        };
        assert_eq!(empty.encode_proto(), empty.to_proto().encode_to_vec());
        let huge = SweepDocument {
            interval: Duration::from_secs(u64::MAX),
            ..empty
        };
        assert_eq!(huge.encode_proto(), huge.to_proto().encode_to_vec());
    }

    #[test]
    fn agent_config_json_wraps_the_document() {
        let doc = document();
        let value: serde_json::Value = serde_json::from_slice(&doc.agent_config_json()).unwrap();
        let back: SweepDocument = serde_json::from_value(value["sweep"].clone()).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn modes_parse_case_insensitively_and_refuse_unknown() {
        assert_eq!(
            SweepMode::parse(" TCP_connect "),
            Some(SweepMode::TcpConnect)
        );
        assert_eq!(SweepMode::parse("udp"), None);
    }
}
