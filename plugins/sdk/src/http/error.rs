//! [`HttpError`]: what went wrong with a request, and how it maps onto
//! [`AdapterError`].
//!
//! Errors name the method and the URL without its query
//! ([`Url::redacted`](crate::url::Url::redacted)); they never contain
//! request headers or bodies, so credentials cannot leak through them.

use std::time::Duration;

use crate::error::AdapterError;

/// Wait assumed when a source answers 429 without a usable `Retry-After`.
pub(crate) const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Why an HTTP request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request could not be built (a header name or value the host
    /// refuses, a URL it cannot send).
    #[error("{method} {url}: invalid request: {reason}")]
    InvalidRequest {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The sync host's egress policy refused the destination.
    #[error(
        "{method} {url}: denied by the sync host's egress policy ({code}); the operator must allow this host for the integration, or fix the URL"
    )]
    Denied {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// The `wasi:http` error code.
        code: String,
    },
    /// The request did not get a response: DNS, connect, TLS, timeout,
    /// connection reset.
    #[error("{method} {url}: no response: {code}")]
    Transport {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// The `wasi:http` error code.
        code: String,
        /// Whether trying again may help (timeouts and resets may; a TLS
        /// certificate error will not).
        transient: bool,
    },
    /// The source answered with a status that is not a success.
    #[error("{method} {url} answered {status}{reason}: {excerpt}", reason = reason_phrase(*status))]
    Status {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The parsed `Retry-After` header, if any.
        retry_after: Option<Duration>,
        /// The start of the response body, to show what the source said.
        excerpt: String,
    },
    /// The response body was larger than the client's limit.
    #[error("{method} {url}: response body exceeds the {limit}-byte limit")]
    BodyTooLarge {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Redirects went on longer than the client's limit.
    #[error("{method} {url}: stopped after {max} redirects")]
    TooManyRedirects {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// The limit.
        max: u32,
    },
    /// A redirect pointed somewhere unusable.
    #[error("{method} {url}: unusable redirect: {reason}")]
    BadRedirect {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// What is wrong with the `Location`.
        reason: String,
    },
    /// The response body is not what was expected (not JSON, wrong shape).
    #[error("{method} {url}: cannot read the response: {reason}")]
    Decode {
        /// Request method.
        method: &'static str,
        /// Request URL without its query.
        url: String,
        /// What did not match.
        reason: String,
    },
}

impl HttpError {
    /// The response status, for [`HttpError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `Retry-After` the source sent, for [`HttpError::Status`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying the same request again later may succeed: transient
    /// transport failures, 408, 429 and 5xx other than 501 and 505.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { transient, .. } => *transient,
            Self::Status { status, .. } => {
                matches!(*status, 408 | 429)
                    || ((500..600).contains(status) && !matches!(*status, 501 | 505))
            }
            _ => false,
        }
    }
}

/// The standard mapping: 401/403 → unauthorized, 429 → rate-limited, 408
/// and 5xx → unavailable, no response → unavailable, egress denied →
/// invalid-config (only a configuration or policy change helps), other
/// statuses and unreadable answers → protocol, a request the adapter
/// could not build → internal.
impl From<HttpError> for AdapterError {
    fn from(error: HttpError) -> Self {
        let message = error.to_string();
        match &error {
            HttpError::Status {
                status: 401 | 403, ..
            } => Self::Unauthorized(message),
            HttpError::Status {
                status: 429,
                retry_after,
                ..
            } => Self::rate_limited(retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT), message),
            HttpError::Status { status, .. } if *status == 408 || *status >= 500 => {
                Self::Unavailable(message)
            }
            HttpError::Transport { .. } => Self::Unavailable(message),
            HttpError::Denied { .. } => Self::InvalidConfig(message),
            HttpError::InvalidRequest { .. } => Self::Internal(message),
            HttpError::Status { .. }
            | HttpError::BodyTooLarge { .. }
            | HttpError::TooManyRedirects { .. }
            | HttpError::BadRedirect { .. }
            | HttpError::Decode { .. } => Self::Protocol(message),
        }
    }
}

/// ` Not Found` for 404 and so on; empty for codes without a common phrase.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        405 => " Method Not Allowed",
        408 => " Request Timeout",
        409 => " Conflict",
        410 => " Gone",
        413 => " Content Too Large",
        415 => " Unsupported Media Type",
        422 => " Unprocessable Content",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        501 => " Not Implemented",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}

/// The first 200 characters of a body, whitespace collapsed, for error
/// messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    // 200 characters are at most 800 UTF-8 bytes; leave room for whitespace.
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let mut out = String::new();
    for (count, word) in text.split_whitespace().enumerate() {
        if count > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_CHARS {
            let cut = out
                .char_indices()
                .nth(MAX_CHARS)
                .map_or(out.len(), |(i, _)| i);
            out.truncate(cut);
            out.push_str("...");
            return out;
        }
    }
    if out.is_empty() {
        "(empty body)".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> HttpError {
        HttpError::Status {
            method: "GET",
            url: "https://h/api/v1/search/".into(),
            status: code,
            retry_after: retry_after.map(Duration::from_secs),
            excerpt: "nope".into(),
        }
    }

    #[test]
    fn status_errors_read_well() {
        assert_eq!(
            status(503, None).to_string(),
            "GET https://h/api/v1/search/ answered 503 Service Unavailable: nope"
        );
        assert_eq!(
            status(499, None).to_string(),
            "GET https://h/api/v1/search/ answered 499: nope"
        );
    }

    #[test]
    fn maps_onto_adapter_errors() {
        assert!(matches!(
            status(401, None).into(),
            AdapterError::Unauthorized(_)
        ));
        assert!(matches!(
            status(403, None).into(),
            AdapterError::Unauthorized(_)
        ));
        assert!(matches!(
            status(429, Some(7)).into(),
            AdapterError::RateLimited {
                retry_after_secs: 7,
                ..
            }
        ));
        assert!(matches!(
            status(429, None).into(),
            AdapterError::RateLimited {
                retry_after_secs: 60,
                ..
            }
        ));
        assert!(matches!(
            status(502, None).into(),
            AdapterError::Unavailable(_)
        ));
        assert!(matches!(
            status(404, None).into(),
            AdapterError::Protocol(_)
        ));
        let denied = HttpError::Denied {
            method: "GET",
            url: "https://x/".into(),
            code: "HTTP-request-denied".into(),
        };
        assert!(
            matches!(denied.into(), AdapterError::InvalidConfig(m) if m.contains("egress policy"))
        );
    }

    #[test]
    fn transient_errors_are_timeouts_rate_limits_and_server_errors() {
        assert!(status(503, None).is_transient());
        assert!(status(429, None).is_transient());
        assert!(status(408, None).is_transient());
        assert!(!status(501, None).is_transient());
        assert!(!status(404, None).is_transient());
        assert!(!status(401, None).is_transient());
    }

    #[test]
    fn excerpt_is_short_and_single_line() {
        assert_eq!(
            excerpt(b"  {\"detail\":\n  \"Invalid token.\"}  "),
            "{\"detail\": \"Invalid token.\"}"
        );
        assert_eq!(excerpt(b""), "(empty body)");
        let long = "x".repeat(500);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.len(), 203);
        assert!(e.ends_with("..."));
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }
}
