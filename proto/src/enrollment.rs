//! Edge enrollment: the self-contained token an operator hands to an edge
//! component, shared by the gateway (which issues it) and the components
//! (which redeem it), and — with the `enroll-client` feature — the client
//! that downloads the onboarding package and writes the component's files.
//!
//! The token is base64url JSON: the admin API URL, the SHA-256 of the
//! platform root CA to pin, the package id and a one-time secret. Nothing
//! else is needed to enroll, and nothing but the pinned root is trusted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[cfg(feature = "enroll-client")]
pub mod client;

/// Version of the token format.
pub const TOKEN_VERSION: u8 = 1;
/// Component certificate file (leaf + tenant CA).
pub const CERT_FILE: &str = "cert.pem";
/// Private key file (mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// Platform root CA bundle (verifies the gateway).
pub const CA_FILE: &str = "ca.pem";

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid enrollment token: {0}")]
pub struct TokenError(pub String);

/// The enrollment token's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentToken {
    /// Format version.
    pub v: u8,
    /// Admin API base URL (https).
    pub url: String,
    /// Hex SHA-256 of the platform root CA certificate (DER) to pin.
    pub ca_sha256: String,
    /// Onboarding package id.
    pub id: String,
    /// One-time download secret.
    pub secret: String,
}

impl EnrollmentToken {
    /// The token string.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads and checks a token string (format, version, https URL, pin).
    pub fn decode(token: &str) -> Result<Self, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| TokenError("not base64url; copy the whole token".into()))?;
        let token: Self = serde_json::from_slice(&bytes).map_err(|e| TokenError(e.to_string()))?;
        if token.v != TOKEN_VERSION {
            return Err(TokenError(format!(
                "version {} is not supported (expected {TOKEN_VERSION}); upgrade this program",
                token.v
            )));
        }
        if !token.url.starts_with("https://") {
            return Err(TokenError(format!(
                "admin URL {:?} is not https",
                token.url
            )));
        }
        if token.ca_sha256.len() != 64 || !token.ca_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError("CA fingerprint is not 64 hex digits".into()));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrollmentToken {
        EnrollmentToken {
            v: 1,
            url: "https://gw:8443".into(),
            ca_sha256: "ab".repeat(32),
            id: "00000000-0000-0000-0000-000000000001".into(),
            secret: "s3cr3t".into(),
        }
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let t = token();
        assert_eq!(EnrollmentToken::decode(&t.encode()).unwrap(), t);
        assert!(EnrollmentToken::decode("%%%").is_err());
        let v2 = EnrollmentToken { v: 2, ..token() }.encode();
        assert!(
            EnrollmentToken::decode(&v2)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        let http = EnrollmentToken {
            url: "http://gw".into(),
            ..token()
        }
        .encode();
        assert!(
            EnrollmentToken::decode(&http)
                .unwrap_err()
                .to_string()
                .contains("https")
        );
        let pin = EnrollmentToken {
            ca_sha256: "abcd".into(),
            ..token()
        }
        .encode();
        assert!(
            EnrollmentToken::decode(&pin)
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
    }
}
