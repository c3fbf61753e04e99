//! [`AdapterError`]: why a call failed, in the cases the host acts on.

use std::fmt::Display;
use std::time::Duration;

use crate::bindings::serviceradar::adapter::types as wit;

/// Why `validate` or `discover` failed. Each case maps one to one onto the
/// WIT `adapter-error` variant; pick the one that tells the operator what to
/// do.
///
/// Messages must never contain credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The configuration is wrong or incomplete. The message starts with the
    /// field path (`settings.count: ...`). The host does not retry until the
    /// configuration changes.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The source rejected the credentials (HTTP 401/403 after one
    /// re-authentication). The host does not retry until they change.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The source could not be reached or kept failing after bounded
    /// retries. The host retries the run later with backoff.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The source asked us to slow down and we gave up waiting. The host
    /// waits at least `retry_after_secs` before the next run.
    #[error("rate limited, retry after {retry_after_secs} s: {message}")]
    RateLimited {
        /// Seconds the source asked us to wait.
        retry_after_secs: u32,
        /// What was being fetched when the limit hit.
        message: String,
    },
    /// The source answered something the adapter cannot understand: an
    /// unexpected status, malformed JSON, a missing field.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A bug or an unexpected state inside the adapter.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdapterError {
    /// A configuration error naming the offending field:
    /// `invalid_config("settings.count", "at most 10000000")` reads
    /// `settings.count: at most 10000000`.
    pub fn invalid_config(field: &str, problem: impl Display) -> Self {
        Self::InvalidConfig(format!("{field}: {problem}"))
    }

    /// The source rejected the credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(message.into())
    }

    /// The source is unreachable or failing.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// The source rate-limited us; `retry_after` is rounded up to whole
    /// seconds (at least 1) and saturates at `u32::MAX`.
    pub fn rate_limited(retry_after: Duration, message: impl Into<String>) -> Self {
        let secs = retry_after
            .as_secs()
            .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
        Self::RateLimited {
            retry_after_secs: u32::try_from(secs.max(1)).unwrap_or(u32::MAX),
            message: message.into(),
        }
    }

    /// The source answered something unexpected.
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol(message.into())
    }

    /// A bug or unexpected state in the adapter.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The same error with what was being done in front of its message:
    /// `AdapterError::from(http_error).context("reading MAC addresses")`
    /// reads `reading MAC addresses: GET https://... answered 503 ...`.
    /// [`AdapterError::InvalidConfig`] is returned as it is: its message
    /// starts with the offending field, and egress denials already name the
    /// URL and what to do.
    pub fn context(self, doing: &str) -> Self {
        match self {
            Self::Unauthorized(m) => Self::Unauthorized(format!("{doing}: {m}")),
            Self::Unavailable(m) => Self::Unavailable(format!("{doing}: {m}")),
            Self::Protocol(m) => Self::Protocol(format!("{doing}: {m}")),
            Self::Internal(m) => Self::Internal(format!("{doing}: {m}")),
            Self::RateLimited {
                retry_after_secs,
                message,
            } => Self::RateLimited {
                retry_after_secs,
                message: format!("{doing}: {message}"),
            },
            other @ Self::InvalidConfig(_) => other,
        }
    }
}

impl From<AdapterError> for wit::AdapterError {
    fn from(error: AdapterError) -> Self {
        match error {
            AdapterError::InvalidConfig(m) => Self::InvalidConfig(m),
            AdapterError::Unauthorized(m) => Self::Unauthorized(m),
            AdapterError::Unavailable(m) => Self::Unavailable(m),
            AdapterError::RateLimited {
                retry_after_secs,
                message,
            } => Self::RateLimited(wit::RateLimit {
                retry_after_secs,
                message,
            }),
            AdapterError::Protocol(m) => Self::Protocol(m),
            AdapterError::Internal(m) => Self::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_config_names_the_field_first() {
        let e = AdapterError::invalid_config("settings.count", "at most 10");
        assert_eq!(
            e,
            AdapterError::InvalidConfig("settings.count: at most 10".into())
        );
    }

    #[test]
    fn rate_limited_rounds_up_to_whole_seconds() {
        let e = AdapterError::rate_limited(Duration::from_millis(1500), "search");
        assert!(matches!(
            e,
            AdapterError::RateLimited {
                retry_after_secs: 2,
                ..
            }
        ));
        let e = AdapterError::rate_limited(Duration::ZERO, "search");
        assert!(matches!(
            e,
            AdapterError::RateLimited {
                retry_after_secs: 1,
                ..
            }
        ));
        let e = AdapterError::rate_limited(Duration::from_secs(u64::MAX), "search");
        assert!(matches!(
            e,
            AdapterError::RateLimited {
                retry_after_secs: u32::MAX,
                ..
            }
        ));
    }

    #[test]
    fn context_goes_in_front_except_for_config_errors() {
        let doing = "listing devices";
        assert_eq!(
            AdapterError::unauthorized("403").context(doing),
            AdapterError::unauthorized("listing devices: 403")
        );
        assert_eq!(
            AdapterError::unavailable("503").context(doing),
            AdapterError::unavailable("listing devices: 503")
        );
        assert_eq!(
            AdapterError::protocol("bad JSON").context(doing),
            AdapterError::protocol("listing devices: bad JSON")
        );
        assert_eq!(
            AdapterError::internal("bug").context(doing),
            AdapterError::internal("listing devices: bug")
        );
        assert_eq!(
            AdapterError::rate_limited(Duration::from_secs(7), "429").context(doing),
            AdapterError::RateLimited {
                retry_after_secs: 7,
                message: "listing devices: 429".into()
            }
        );
        let config = AdapterError::invalid_config("endpoint", "denied");
        assert_eq!(config.clone().context(doing), config);
    }

    #[test]
    fn maps_onto_the_wit_variant() {
        let wit: wit::AdapterError =
            AdapterError::rate_limited(Duration::from_secs(30), "x").into();
        match wit {
            wit::AdapterError::RateLimited(r) => {
                assert_eq!(r.retry_after_secs, 30);
                assert_eq!(r.message, "x");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
