//! Decoding results payloads into DeviceUpdates. Pure.
//!
//! A payload that is not JSON, or not a JSON array, rejects the stream. Inside
//! a valid array, elements are judged one by one: an element that cannot be
//! a DeviceUpdate (not an object, no valid IP, no source) is skipped and
//! counted; non-string metadata values and oversized metadata are dropped
//! and counted; a missing or unreadable timestamp becomes the receive time.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sr_proto::device_update::{DEFAULT_PARTITION, INTEGRATION_CONFIDENCE};
use sr_proto::{DeviceUpdate, SyncMeta};
use thiserror::Error;

/// Longest metadata key kept.
pub const MAX_METADATA_KEY: usize = 128;
/// Longest metadata value kept.
pub const MAX_METADATA_VALUE: usize = 16 * 1024;
/// Most metadata entries kept per update.
pub const MAX_METADATA_ENTRIES: usize = 256;
/// Largest raw record kept, serialised bytes.
pub const MAX_RAW_BYTES: usize = 256 * 1024;
/// Longest identifier-like string field (ids, hostname, mac, source, partition).
pub const MAX_FIELD: usize = 1024;

/// A payload that rejects the whole stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    NotJson(String),
    /// Valid JSON but not an array.
    #[error("payload must be a JSON array of DeviceUpdates, found {0}")]
    NotArray(&'static str),
}

/// What decoding skipped or fixed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DecodeStats {
    /// Array elements seen.
    pub elements: u64,
    /// DeviceUpdates accepted.
    pub accepted: u64,
    /// Elements that were not JSON objects.
    pub skipped_not_object: u64,
    /// Elements without a valid `ip`.
    pub skipped_bad_ip: u64,
    /// Elements without a `source`.
    pub skipped_no_source: u64,
    /// Metadata values that were not strings (dropped).
    pub dropped_non_string_metadata: u64,
    /// Metadata entries over the size limits (dropped).
    pub dropped_oversized_metadata: u64,
    /// Raw records over the size limit (dropped).
    pub dropped_oversized_raw: u64,
    /// String fields over the size limit (dropped).
    pub dropped_oversized_fields: u64,
    /// Missing or unreadable timestamps (receive time used).
    pub defaulted_timestamps: u64,
    /// Strings that carried NUL characters (removed: PostgreSQL cannot store them).
    pub stripped_nul: u64,
}

impl DecodeStats {
    /// Adds another set of counts.
    pub fn add(&mut self, other: &DecodeStats) {
        self.elements += other.elements;
        self.accepted += other.accepted;
        self.skipped_not_object += other.skipped_not_object;
        self.skipped_bad_ip += other.skipped_bad_ip;
        self.skipped_no_source += other.skipped_no_source;
        self.dropped_non_string_metadata += other.dropped_non_string_metadata;
        self.dropped_oversized_metadata += other.dropped_oversized_metadata;
        self.dropped_oversized_raw += other.dropped_oversized_raw;
        self.dropped_oversized_fields += other.dropped_oversized_fields;
        self.defaulted_timestamps += other.defaulted_timestamps;
        self.stripped_nul += other.stripped_nul;
    }

    /// Whether anything was skipped or fixed.
    pub fn has_warnings(&self) -> bool {
        self.elements != self.accepted
            || self.dropped_non_string_metadata
                + self.dropped_oversized_metadata
                + self.dropped_oversized_raw
                + self.dropped_oversized_fields
                + self.defaulted_timestamps
                + self.stripped_nul
                > 0
    }
}

/// Decodes one results payload, appending accepted updates to `out`.
pub fn decode_payload(
    payload: &[u8],
    received_at: DateTime<Utc>,
    stats: &mut DecodeStats,
    out: &mut Vec<DeviceUpdate>,
) -> Result<(), PayloadError> {
    // Fast path: a well-formed array of well-typed updates.
    if let Ok(updates) = serde_json::from_slice::<Vec<DeviceUpdate>>(payload) {
        for update in updates {
            stats.elements += 1;
            if let Some(update) = sanitize(update, stats) {
                stats.accepted += 1;
                out.push(update);
            }
        }
        return Ok(());
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Value::Array(elements) = value else {
        return Err(PayloadError::NotArray(kind(&value)));
    };
    for element in elements {
        stats.elements += 1;
        let Value::Object(object) = element else {
            stats.skipped_not_object += 1;
            continue;
        };
        let (update, timestamp_defaulted) = lenient(object, received_at, stats);
        if let Some(update) = sanitize(update, stats) {
            // Only accepted updates count as fixed: skipped ones are counted once.
            stats.defaulted_timestamps += u64::from(timestamp_defaulted);
            stats.accepted += 1;
            out.push(update);
        }
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Builds an update from an object whose fields may have the wrong types;
/// also says whether the timestamp had to be defaulted.
fn lenient(
    object: Map<String, Value>,
    received_at: DateTime<Utc>,
    stats: &mut DecodeStats,
) -> (DeviceUpdate, bool) {
    let (timestamp, defaulted) = match object
        .get("timestamp")
        .and_then(Value::as_str)
        .map(DateTime::parse_from_rfc3339)
    {
        Some(Ok(t)) => (t.with_timezone(&Utc), false),
        _ => (received_at, true),
    };
    let mut metadata = BTreeMap::new();
    if let Some(Value::Object(entries)) = object.get("metadata") {
        for (key, value) in entries {
            match value {
                Value::String(s) => {
                    metadata.insert(key.clone(), s.clone());
                }
                _ => stats.dropped_non_string_metadata += 1,
            }
        }
    }
    let confidence = object
        .get("confidence")
        .and_then(Value::as_i64)
        .map_or(INTEGRATION_CONFIDENCE, |c| c.clamp(1, 10) as i32);
    let sync_meta = object
        .get("sync_meta")
        .and_then(|v| serde_json::from_value::<SyncMeta>(v.clone()).ok());
    let update = DeviceUpdate {
        device_id: string(&object, "device_id").unwrap_or_default(),
        ip: string(&object, "ip").unwrap_or_default(),
        source: string(&object, "source").unwrap_or_default(),
        agent_id: string(&object, "agent_id").unwrap_or_default(),
        gateway_id: string(&object, "gateway_id").unwrap_or_default(),
        partition: string(&object, "partition").unwrap_or_default(),
        timestamp,
        hostname: string(&object, "hostname"),
        mac: string(&object, "mac"),
        metadata,
        is_available: object
            .get("is_available")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        confidence,
        sync_meta,
        raw_data: object.get("raw_data").cloned(),
    };
    (update, defaulted)
}

/// Removes NUL characters, which PostgreSQL text and JSONB cannot hold.
fn strip_nul(text: &mut String, stats: &mut DecodeStats) {
    if text.contains('\0') {
        text.retain(|c| c != '\0');
        stats.stripped_nul += 1;
    }
}

/// Applies the per-update rules shared by both decoding paths.
fn sanitize(mut update: DeviceUpdate, stats: &mut DecodeStats) -> Option<DeviceUpdate> {
    for field in [
        &mut update.device_id,
        &mut update.ip,
        &mut update.source,
        &mut update.agent_id,
        &mut update.gateway_id,
        &mut update.partition,
    ] {
        strip_nul(field, stats);
    }
    for field in [&mut update.hostname, &mut update.mac]
        .into_iter()
        .flatten()
    {
        strip_nul(field, stats);
    }
    if update
        .metadata
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        let entries = std::mem::take(&mut update.metadata);
        for (mut key, mut value) in entries {
            strip_nul(&mut key, stats);
            strip_nul(&mut value, stats);
            update.metadata.insert(key, value);
        }
    }
    let ip = update.ip.trim();
    match ip.parse::<IpAddr>() {
        Ok(parsed) => update.ip = parsed.to_string(),
        Err(_) => {
            stats.skipped_bad_ip += 1;
            return None;
        }
    }
    update.source = update.source.trim().to_string();
    if update.source.is_empty() || update.source.len() > MAX_FIELD {
        stats.skipped_no_source += 1;
        return None;
    }
    if update.partition.trim().is_empty() {
        update.partition = DEFAULT_PARTITION.to_string();
    }
    for field in [
        &mut update.device_id,
        &mut update.agent_id,
        &mut update.gateway_id,
        &mut update.partition,
    ] {
        if field.len() > MAX_FIELD {
            stats.dropped_oversized_fields += 1;
            field.clear();
        }
    }
    if update.partition.is_empty() {
        update.partition = DEFAULT_PARTITION.to_string();
    }
    for field in [&mut update.hostname, &mut update.mac] {
        if field.as_ref().is_some_and(|v| v.len() > MAX_FIELD) {
            stats.dropped_oversized_fields += 1;
            *field = None;
        }
    }
    if update.metadata.len() > MAX_METADATA_ENTRIES
        || update
            .metadata
            .iter()
            .any(|(k, v)| k.len() > MAX_METADATA_KEY || v.len() > MAX_METADATA_VALUE)
    {
        let before = update.metadata.len();
        update
            .metadata
            .retain(|k, v| k.len() <= MAX_METADATA_KEY && v.len() <= MAX_METADATA_VALUE);
        while update.metadata.len() > MAX_METADATA_ENTRIES {
            update.metadata.pop_last();
        }
        stats.dropped_oversized_metadata += (before - update.metadata.len()) as u64;
    }
    if let Some(raw) = &update.raw_data {
        match serde_json::to_vec(raw) {
            Ok(bytes) if bytes.len() <= MAX_RAW_BYTES => {
                // JSONB cannot hold \u0000 either; such a raw record is dropped.
                if bytes.windows(6).any(|w| w == b"\\u0000") {
                    stats.stripped_nul += 1;
                    update.raw_data = None;
                }
            }
            _ => {
                stats.dropped_oversized_raw += 1;
                update.raw_data = None;
            }
        }
    }
    update.confidence = update.confidence.clamp(1, 10);
    Some(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    fn decode(payload: &str) -> (Result<(), PayloadError>, DecodeStats, Vec<DeviceUpdate>) {
        let mut stats = DecodeStats::default();
        let mut out = Vec::new();
        let result = decode_payload(payload.as_bytes(), now(), &mut stats, &mut out);
        (result, stats, out)
    }

    #[test]
    fn rejects_non_json_and_non_arrays() {
        assert!(matches!(
            decode("{not json").0,
            Err(PayloadError::NotJson(_))
        ));
        assert_eq!(
            decode(r#"{"ip": "10.0.0.1"}"#).0,
            Err(PayloadError::NotArray("an object"))
        );
        assert_eq!(decode("42").0, Err(PayloadError::NotArray("a number")));
        let message = decode("[1,").0.unwrap_err().to_string();
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn well_formed_updates_pass_unchanged() {
        let (result, stats, out) = decode(
            r#"[{"ip":"10.0.0.1","source":"faker","timestamp":"2025-01-01T00:00:00Z","metadata":{"integration_id":"1"}}]"#,
        );
        result.unwrap();
        assert_eq!(stats.accepted, 1);
        assert!(!stats.has_warnings());
        assert_eq!(out[0].metadata["integration_id"], "1");
        assert_eq!(out[0].partition, "default");
    }

    #[test]
    fn bad_elements_are_skipped_and_counted_never_fatal() {
        let payload = r#"[
            "a string",
            {"ip": "999.1.1.1", "source": "armis"},
            {"ip": 42, "source": "armis"},
            {"ip": "10.0.0.2"},
            {"ip": "10.0.0.3", "source": "armis", "timestamp": "yesterday",
             "metadata": {"armis_device_id": 7, "integration_id": "7", "nested": {"a": 1}}},
            {"ip": " 10.0.0.4 ", "source": "netbox", "confidence": 99, "is_available": "yes"}
        ]"#;
        let (result, stats, out) = decode(payload);
        result.unwrap();
        assert_eq!(stats.elements, 6);
        assert_eq!(stats.accepted, 2);
        assert_eq!(stats.skipped_not_object, 1);
        assert_eq!(stats.skipped_bad_ip, 2);
        assert_eq!(stats.skipped_no_source, 1);
        assert_eq!(stats.dropped_non_string_metadata, 2);
        assert_eq!(stats.defaulted_timestamps, 2);
        let third = &out[0];
        assert_eq!(third.timestamp, now());
        assert!(
            !third.metadata.contains_key("armis_device_id"),
            "non-string identifiers are ignored"
        );
        assert_eq!(third.metadata["integration_id"], "7");
        assert_eq!(out[1].ip, "10.0.0.4");
        assert_eq!(out[1].confidence, 10);
        assert!(!out[1].is_available);
    }

    #[test]
    fn nul_characters_never_reach_the_database() {
        let payload = r#"[{"ip":"10.0.0.1","source":"fa\u0000ker","timestamp":"2025-01-01T00:00:00Z",
            "hostname":"h\u0000ost","metadata":{"k\u0000":"v\u0000"},"raw_data":{"x":"\u0000"}}]"#;
        let (result, stats, out) = decode(payload);
        result.unwrap();
        assert_eq!(out[0].source, "faker");
        assert_eq!(out[0].hostname.as_deref(), Some("host"));
        assert_eq!(out[0].metadata["k"], "v");
        assert_eq!(out[0].raw_data, None);
        assert_eq!(stats.stripped_nul, 5);
    }

    #[test]
    fn giant_metadata_is_trimmed_and_counted() {
        let big = "x".repeat(MAX_METADATA_VALUE + 1);
        let payload = format!(
            r#"[{{"ip":"10.0.0.1","source":"faker","timestamp":"2025-01-01T00:00:00Z","metadata":{{"big":"{big}","ok":"1"}}}}]"#
        );
        let (result, stats, out) = decode(&payload);
        result.unwrap();
        assert_eq!(stats.dropped_oversized_metadata, 1);
        assert_eq!(out[0].metadata.len(), 1);
        assert_eq!(out[0].metadata["ok"], "1");
    }
}
