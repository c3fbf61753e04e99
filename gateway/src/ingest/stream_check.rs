//! Validating a StreamStatus stream chunk by chunk, as the protocol
//! reference says: order, totals, final chunk, sizes, agent id. Pure.

use sr_proto::limits::{MAX_RESULTS_PAYLOAD_BYTES, MAX_SERVICES_PER_STREAM, SOURCE_RESULTS};
use sr_proto::monitoring::GatewayStatusChunk;
use thiserror::Error;

/// Why a stream is refused. Each maps to a precise gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamError {
    /// agent_id differs from the certificate's component id.
    #[error(
        "chunk {index}: agent_id {got:?} does not match the certificate's component id {expected:?}"
    )]
    AgentMismatch {
        /// Chunk index.
        index: usize,
        /// What the chunk said.
        got: String,
        /// The certificate's component id.
        expected: String,
    },
    /// A tenant field differs from the certificate's tenant.
    #[error("chunk {index}: {field} {got:?} does not match the certificate's tenant {expected:?}")]
    TenantMismatch {
        /// Chunk index.
        index: usize,
        /// Which field.
        field: &'static str,
        /// What the chunk said.
        got: String,
        /// The certificate's value.
        expected: String,
    },
    /// chunk_index out of order.
    #[error("chunk {position}: chunk_index {got} is out of order (expected {expected})")]
    OutOfOrder {
        /// Position in the stream.
        position: usize,
        /// The chunk_index sent.
        got: i32,
        /// The index expected.
        expected: i32,
    },
    /// total_chunks not positive or changed within the stream.
    #[error("chunk {index}: total_chunks {got} {reason}")]
    BadTotal {
        /// Chunk index.
        index: usize,
        /// The total sent.
        got: i32,
        /// Why it is wrong.
        reason: String,
    },
    /// is_final set on the wrong chunk, or missing on the last.
    #[error("chunk {index}: is_final is {got} but the chunk is {position} of {total}")]
    BadFinal {
        /// Chunk index.
        index: usize,
        /// is_final as sent.
        got: bool,
        /// `index + 1`.
        position: usize,
        /// total_chunks.
        total: i32,
    },
    /// A chunk after the final one.
    #[error("chunk {index} arrived after the final chunk")]
    AfterFinal {
        /// Chunk index.
        index: usize,
    },
    /// The stream ended before its final chunk.
    #[error("the stream ended after {received} of {total} chunks without a final chunk")]
    NoFinal {
        /// Chunks received.
        received: usize,
        /// total_chunks announced.
        total: i32,
    },
    /// An empty stream.
    #[error("the stream carried no chunks")]
    Empty,
    /// Too many service statuses.
    #[error("the stream carries more than {MAX_SERVICES_PER_STREAM} service statuses")]
    TooManyServices,
    /// A payload over the limit.
    #[error(
        "chunk {index}, service {service}: payload of {size} bytes is over the {MAX_RESULTS_PAYLOAD_BYTES}-byte limit"
    )]
    PayloadTooLarge {
        /// Chunk index.
        index: usize,
        /// Service position in the chunk.
        service: usize,
        /// Payload size.
        size: usize,
    },
    /// The stream's total payload exceeds what the gateway holds per stream.
    #[error("the stream's payload exceeds {limit} bytes; send smaller streams")]
    StreamTooLarge {
        /// The per-stream limit.
        limit: usize,
    },
    /// A service status that is not sync results.
    #[error(
        "chunk {index}, service {service}: source {source_kind:?} / service_type {service_type:?} is not sync results (source \"results\", service_type \"sync\")"
    )]
    NotResults {
        /// Chunk index.
        index: usize,
        /// Service position in the chunk.
        service: usize,
        /// The source field sent.
        source_kind: String,
        /// The service_type sent.
        service_type: String,
    },
}

impl StreamError {
    /// Whether this is an identity/authorisation failure (PERMISSION_DENIED)
    /// rather than a malformed stream (INVALID_ARGUMENT).
    pub fn is_permission(&self) -> bool {
        matches!(
            self,
            Self::AgentMismatch { .. } | Self::TenantMismatch { .. }
        )
    }

    /// Whether this is a size limit (RESOURCE_EXHAUSTED).
    pub fn is_size(&self) -> bool {
        matches!(
            self,
            Self::TooManyServices | Self::PayloadTooLarge { .. } | Self::StreamTooLarge { .. }
        )
    }
}

/// Who the caller is, as far as stream validation needs.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Component id from the certificate.
    pub component_id: String,
    /// Tenant id from the certificate.
    pub tenant_id: String,
    /// Tenant slug from the certificate.
    pub tenant_slug: String,
}

/// Checks chunks in arrival order.
#[derive(Debug)]
pub struct StreamChecker {
    caller: Caller,
    max_stream_bytes: usize,
    received: usize,
    total: Option<i32>,
    finished: bool,
    services: usize,
    bytes: usize,
}

impl StreamChecker {
    /// A checker for a stream from `caller`, holding at most
    /// `max_stream_bytes` of payload.
    pub fn new(caller: Caller, max_stream_bytes: usize) -> Self {
        Self {
            caller,
            max_stream_bytes,
            received: 0,
            total: None,
            finished: false,
            services: 0,
            bytes: 0,
        }
    }

    /// Checks the next chunk.
    pub fn check(&mut self, chunk: &GatewayStatusChunk) -> Result<(), StreamError> {
        let position = self.received;
        if self.finished {
            return Err(StreamError::AfterFinal { index: position });
        }
        if chunk.agent_id != self.caller.component_id {
            return Err(StreamError::AgentMismatch {
                index: position,
                got: chunk.agent_id.clone(),
                expected: self.caller.component_id.clone(),
            });
        }
        for (field, got, expected) in [
            ("tenant_id", &chunk.tenant_id, &self.caller.tenant_id),
            ("tenant_slug", &chunk.tenant_slug, &self.caller.tenant_slug),
        ] {
            if !got.is_empty() && got != expected {
                return Err(StreamError::TenantMismatch {
                    index: position,
                    field,
                    got: got.clone(),
                    expected: expected.clone(),
                });
            }
        }
        let expected_index = i32::try_from(position).unwrap_or(i32::MAX);
        if chunk.chunk_index != expected_index {
            return Err(StreamError::OutOfOrder {
                position,
                got: chunk.chunk_index,
                expected: expected_index,
            });
        }
        match self.total {
            None if chunk.total_chunks <= 0 => {
                return Err(StreamError::BadTotal {
                    index: position,
                    got: chunk.total_chunks,
                    reason: "must be greater than 0".into(),
                });
            }
            None => self.total = Some(chunk.total_chunks),
            Some(total) if total != chunk.total_chunks => {
                return Err(StreamError::BadTotal {
                    index: position,
                    got: chunk.total_chunks,
                    reason: format!("changed within the stream (was {total})"),
                });
            }
            Some(_) => {}
        }
        let total = self.total.unwrap_or(1);
        if position as i64 >= i64::from(total) {
            return Err(StreamError::BadTotal {
                index: position,
                got: total,
                reason: format!("is exceeded: chunk_index {position} is past it"),
            });
        }
        let is_last = position as i64 == i64::from(total) - 1;
        if chunk.is_final != is_last {
            return Err(StreamError::BadFinal {
                index: position,
                got: chunk.is_final,
                position: position + 1,
                total,
            });
        }
        self.services += chunk.services.len();
        if self.services > MAX_SERVICES_PER_STREAM {
            return Err(StreamError::TooManyServices);
        }
        for (i, service) in chunk.services.iter().enumerate() {
            if service.source != SOURCE_RESULTS
                || service.service_type != sr_proto::limits::SYNC_SERVICE_TYPE
            {
                return Err(StreamError::NotResults {
                    index: position,
                    service: i,
                    source_kind: service.source.clone(),
                    service_type: service.service_type.clone(),
                });
            }
            if service.message.len() > MAX_RESULTS_PAYLOAD_BYTES {
                return Err(StreamError::PayloadTooLarge {
                    index: position,
                    service: i,
                    size: service.message.len(),
                });
            }
            self.bytes += service.message.len();
            if self.bytes > self.max_stream_bytes {
                return Err(StreamError::StreamTooLarge {
                    limit: self.max_stream_bytes,
                });
            }
        }
        self.received += 1;
        self.finished = chunk.is_final;
        Ok(())
    }

    /// Checks the end of the stream.
    pub fn finish(&self) -> Result<(), StreamError> {
        match (self.received, self.finished) {
            (0, _) => Err(StreamError::Empty),
            (_, true) => Ok(()),
            (received, false) => Err(StreamError::NoFinal {
                received,
                total: self.total.unwrap_or(0),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use sr_proto::monitoring::GatewayServiceStatus;

    use super::*;

    fn caller() -> Caller {
        Caller {
            component_id: "platform-sync".into(),
            tenant_id: "t-1".into(),
            tenant_slug: "platform".into(),
        }
    }

    fn chunk(index: i32, total: i32, is_final: bool) -> GatewayStatusChunk {
        GatewayStatusChunk {
            agent_id: "platform-sync".into(),
            chunk_index: index,
            total_chunks: total,
            is_final,
            services: vec![GatewayServiceStatus {
                service_name: "sync".into(),
                service_type: "sync".into(),
                source: "results".into(),
                message: b"[]".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn run(chunks: &[GatewayStatusChunk]) -> Result<(), StreamError> {
        let mut checker = StreamChecker::new(caller(), 64 << 20);
        for c in chunks {
            checker.check(c)?;
        }
        checker.finish()
    }

    #[test]
    fn a_well_formed_stream_passes() {
        assert_eq!(
            run(&[chunk(0, 3, false), chunk(1, 3, false), chunk(2, 3, true)]),
            Ok(())
        );
        assert_eq!(run(&[chunk(0, 1, true)]), Ok(()));
    }

    #[test]
    fn order_totals_and_final_are_enforced() {
        assert!(matches!(
            run(&[chunk(1, 2, false)]),
            Err(StreamError::OutOfOrder {
                got: 1,
                expected: 0,
                ..
            })
        ));
        assert!(matches!(
            run(&[chunk(0, 3, false), chunk(2, 3, false)]),
            Err(StreamError::OutOfOrder {
                got: 2,
                expected: 1,
                ..
            })
        ));
        assert!(matches!(
            run(&[chunk(0, 3, false), chunk(1, 4, false)]),
            Err(StreamError::BadTotal { .. })
        ));
        assert!(matches!(
            run(&[chunk(0, 0, true)]),
            Err(StreamError::BadTotal { .. })
        ));
        assert!(matches!(
            run(&[chunk(0, 2, true)]),
            Err(StreamError::BadFinal { .. })
        ));
        assert!(matches!(
            run(&[chunk(0, 2, false), chunk(1, 2, false)]),
            Err(StreamError::BadFinal { .. })
        ));
        assert_eq!(
            run(&[chunk(0, 3, false), chunk(1, 3, false)]),
            Err(StreamError::NoFinal {
                received: 2,
                total: 3
            })
        );
        assert_eq!(run(&[]), Err(StreamError::Empty));
        let message = StreamError::NoFinal {
            received: 2,
            total: 3,
        }
        .to_string();
        assert!(message.contains("2 of 3"), "{message}");
    }

    #[test]
    fn identity_fields_must_match_the_certificate() {
        let mut c = chunk(0, 1, true);
        c.agent_id = "someone-else".into();
        let err = run(&[c]).unwrap_err();
        assert!(err.is_permission(), "{err}");
        let mut c = chunk(0, 1, true);
        c.tenant_id = "t-2".into();
        let err = run(&[c]).unwrap_err();
        assert!(
            matches!(
                err,
                StreamError::TenantMismatch {
                    field: "tenant_id",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn sizes_are_enforced() {
        let mut c = chunk(0, 1, true);
        c.services[0].message = vec![b' '; MAX_RESULTS_PAYLOAD_BYTES + 1];
        let err = run(&[c]).unwrap_err();
        assert!(
            matches!(err, StreamError::PayloadTooLarge { .. }) && err.is_size(),
            "{err}"
        );
        let mut c = chunk(0, 1, true);
        c.services = vec![c.services[0].clone(); MAX_SERVICES_PER_STREAM + 1];
        assert_eq!(run(&[c]), Err(StreamError::TooManyServices));
        let mut small = StreamChecker::new(caller(), 10);
        let mut c = chunk(0, 1, true);
        c.services[0].message = vec![b' '; 11];
        assert!(matches!(
            small.check(&c),
            Err(StreamError::StreamTooLarge { limit: 10 })
        ));
    }

    #[test]
    fn only_sync_results_are_accepted() {
        let mut c = chunk(0, 1, true);
        c.services[0].source = "status".into();
        assert!(matches!(run(&[c]), Err(StreamError::NotResults { .. })));
    }
}
