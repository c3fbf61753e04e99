//! GetConfig responses whose large fields are encoded once per config
//! version and shared by every call that serves that version.
//!
//! A full agent response carries the sweep twice (`config_json`, and the
//! typed `SweepConfig` of field 10): megabytes and tens of thousands of
//! small strings and maps. Cloning and encoding that per call cost more than
//! the rest of the call together, so the gateway encodes fields 8 and 10 once
//! ([`EncodedBody::new`]) and each response writes the small fields followed
//! by those bytes. Protobuf fields may come in any order, so any decoder of
//! `AgentConfigResponse` reads the result as the same message.

use bytes::{BufMut, Bytes};
use prost::Message;
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint};

use crate::monitoring::{AgentConfigResponse, SweepConfig};

/// Fields 8 (`config_json`) and 10 (`sweep`) of an `AgentConfigResponse`,
/// already encoded. Cloning it is a reference-count increment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedBody(Bytes);

impl EncodedBody {
    /// Encodes `config_json` and, when given, the typed sweep config.
    pub fn new(config_json: Vec<u8>, sweep: Option<SweepConfig>) -> Self {
        let fields = AgentConfigResponse {
            config_json,
            sweep,
            ..AgentConfigResponse::default()
        };
        Self(Bytes::from(fields.encode_to_vec()))
    }

    /// `config_json` and a `SweepConfig` message that is already encoded
    /// (its fields, without tag or length): the same bytes as [`Self::new`]
    /// given the decoded message, for callers that encode the sweep straight
    /// from their own types.
    pub fn with_encoded_sweep(config_json: &[u8], sweep: &[u8]) -> Self {
        let field_len = |len: usize| 1 + encoded_len_varint(len as u64) + len;
        let mut out = Vec::with_capacity(field_len(config_json.len()) + field_len(sweep.len()));
        // Field numbers of `AgentConfigResponse` in monitoring.proto, in
        // the order prost writes them.
        if !config_json.is_empty() {
            encode_key(7, WireType::LengthDelimited, &mut out);
            encode_varint(config_json.len() as u64, &mut out);
            out.extend_from_slice(config_json);
        }
        encode_key(10, WireType::LengthDelimited, &mut out);
        encode_varint(sweep.len() as u64, &mut out);
        out.extend_from_slice(sweep);
        Self(Bytes::from(out))
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is encoded (an empty `config_json` and no sweep).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An `AgentConfigResponse` as the gateway sends it: the small fields in
/// `head` (its `config_json` and `sweep` left empty) and the large ones in
/// `body`. Decoding one (which only tests do) puts every field in `head`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedConfigResponse {
    /// Everything but `config_json` and `sweep`.
    pub head: AgentConfigResponse,
    /// `config_json` and `sweep`, encoded.
    pub body: EncodedBody,
}

impl Message for EncodedConfigResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        self.head.encode_raw(buf);
        buf.put_slice(&self.body.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.head.merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.head.encoded_len() + self.body.len()
    }

    fn clear(&mut self) {
        self.head.clear();
        self.body = EncodedBody::default();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::monitoring::DeviceTarget;

    fn sweep() -> SweepConfig {
        SweepConfig {
            networks: vec!["10.0.0.0/31".into()],
            device_targets: vec![DeviceTarget {
                ip: "10.0.0.1".into(),
                ports: vec![22, 443],
                hostname: "a".into(),
                sweep_modes: vec!["icmp".into()],
                source: "faker".into(),
                device_id: "sr:1".into(),
                metadata: BTreeMap::from([("integration_id".into(), "7".into())]),
            }],
            sweep_modes: vec!["icmp".into()],
            sweep_interval_sec: 300,
            ports: vec![22, 443],
            config_hash: "h".into(),
        }
    }

    fn head() -> AgentConfigResponse {
        AgentConfigResponse {
            not_modified: false,
            config_version: "v1".into(),
            config_timestamp: 1_700_000_000,
            heartbeat_interval_sec: 30,
            config_poll_interval_sec: 60,
            ..AgentConfigResponse::default()
        }
    }

    #[test]
    fn decodes_as_the_plain_message() {
        let json = br#"{"sweep":{}}"#.to_vec();
        let encoded = EncodedConfigResponse {
            head: head(),
            body: EncodedBody::new(json.clone(), Some(sweep())),
        };
        let bytes = encoded.encode_to_vec();
        assert_eq!(bytes.len(), encoded.encoded_len());
        let decoded = AgentConfigResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(
            decoded,
            AgentConfigResponse {
                config_json: json,
                sweep: Some(sweep()),
                ..head()
            }
        );
        // And back: decoding into the wrapper fills the head.
        let round = EncodedConfigResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(round.head, decoded);
        assert!(round.body.is_empty());
    }

    #[test]
    fn an_encoded_sweep_gives_the_same_bytes() {
        let json = br#"{"sweep":{}}"#.to_vec();
        let sweep = sweep();
        assert_eq!(
            EncodedBody::with_encoded_sweep(&json, &sweep.encode_to_vec()),
            EncodedBody::new(json, Some(sweep.clone()))
        );
        assert_eq!(
            EncodedBody::with_encoded_sweep(&[], &[]),
            EncodedBody::new(Vec::new(), Some(SweepConfig::default()))
        );
    }

    #[test]
    fn an_empty_body_adds_nothing() {
        let encoded = EncodedConfigResponse {
            head: AgentConfigResponse {
                not_modified: true,
                ..head()
            },
            body: EncodedBody::default(),
        };
        assert_eq!(encoded.encode_to_vec(), encoded.head.encode_to_vec());
        assert!(EncodedBody::new(Vec::new(), None).is_empty());
    }
}
