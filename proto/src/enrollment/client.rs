//! Redeeming an enrollment token (`sr-sync enroll`, `sr-agent enroll`):
//! fetches the onboarding package an operator created on the gateway and
//! writes the component's files.
//!
//! The download
//! is made over TLS trusting exactly one root: the certificate the gateway
//! sends last in its chain must hash to the pinned fingerprint, and the
//! chain is then verified against it with webpki. Nothing else is trusted.
//!
//! Files written: `cert.pem` (component certificate + tenant CA), `key.pem`
//! (mode 0600), `ca.pem` (platform root, verifies the gateway) and the
//! minimal config (`sync.json` / `agent.json`, a `SyncBootstrap` with
//! relative paths).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CA_FILE, CERT_FILE, EnrollmentToken, KEY_FILE};
use crate::sync_config::SyncBootstrap;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why enrollment failed. Messages say what to do.
#[derive(Debug, Error)]
pub enum EnrollError {
    /// The token cannot be read.
    #[error("invalid enrollment token: {0}")]
    InvalidToken(String),
    /// The directory already holds a key.
    #[error(
        "{0} already exists; enroll into an empty directory, or pass --force to replace the existing identity"
    )]
    WouldOverwrite(PathBuf),
    /// The gateway could not be reached.
    #[error("contacting the gateway admin API at {url}: {message}")]
    Connect {
        /// URL tried.
        url: String,
        /// Cause, including TLS pin failures.
        message: String,
    },
    /// The gateway refused the download.
    #[error("enrollment refused by the gateway ({status}): {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Problem title.
        title: String,
        /// Problem detail.
        detail: String,
    },
    /// The package's CA is not the pinned one.
    #[error(
        "the package's CA (sha256 {got}) is not the one the token pins ({expected}); do not use this gateway"
    )]
    PinMismatch {
        /// Pinned fingerprint.
        expected: String,
        /// Fingerprint received.
        got: String,
    },
    /// The package is not usable.
    #[error("the gateway sent an unusable package: {0}")]
    BadPackage(String),
    /// Writing the files failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Options of [`enroll_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EnrollOptions {
    /// Replace an existing key file.
    pub force: bool,
}

/// What enrollment wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollOutcome {
    /// Directory written to.
    pub dir: PathBuf,
    /// Component id.
    pub component_id: String,
    /// `sync` or `agent`.
    pub component_type: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Tenant slug.
    pub tenant_slug: String,
    /// The config file to start from.
    pub config_file: PathBuf,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Package {
    tenant_id: String,
    tenant_slug: String,
    component_id: String,
    component_type: String,
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
    config_file: String,
    config: SyncBootstrap,
}

#[derive(Debug, Default, Deserialize)]
struct ProblemBody {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// Enrolls into `dir` (refusing to replace an existing key).
pub async fn enroll(token: &str, dir: &Path) -> Result<EnrollOutcome, EnrollError> {
    enroll_with(token, dir, EnrollOptions::default()).await
}

/// Enrolls into `dir` with options.
pub async fn enroll_with(
    token: &str,
    dir: &Path,
    options: EnrollOptions,
) -> Result<EnrollOutcome, EnrollError> {
    let token = decode_token(token)?;
    let key_path = dir.join(KEY_FILE);
    // Check before downloading: the token works only once.
    if key_path.exists() && !options.force {
        return Err(EnrollError::WouldOverwrite(key_path));
    }
    let pin = decode_pin(&token.ca_sha256)?;
    let url = format!(
        "{}/api/v1/onboarding-packages/{}/download",
        token.url.trim_end_matches('/'),
        token.id
    );
    let client = pinned_client(pin)?;
    let response = client
        .post(&url)
        .json(&serde_json::json!({ "secret": token.secret }))
        .send()
        .await
        .map_err(|e| EnrollError::Connect {
            url: token.url.clone(),
            message: error_chain(&e),
        })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| EnrollError::Connect {
        url: token.url.clone(),
        message: error_chain(&e),
    })?;
    if !status.is_success() {
        let problem: ProblemBody = serde_json::from_slice(&body).unwrap_or_default();
        return Err(EnrollError::Refused {
            status: status.as_u16(),
            title: problem.title,
            detail: if problem.detail.is_empty() {
                String::from_utf8_lossy(&body).into_owned()
            } else {
                problem.detail
            },
        });
    }
    let package: Package =
        serde_json::from_slice(&body).map_err(|e| EnrollError::BadPackage(e.to_string()))?;
    let ca_der = CertificateDer::from_pem_slice(package.ca_pem.as_bytes())
        .map_err(|e| EnrollError::BadPackage(format!("CA bundle: {e}")))?;
    let got: [u8; 32] = Sha256::digest(ca_der.as_ref()).into();
    if got != pin {
        return Err(EnrollError::PinMismatch {
            expected: hex::encode(pin),
            got: hex::encode(got),
        });
    }
    let config_name = Path::new(&package.config_file);
    if config_name.components().count() != 1 || package.config_file.contains('/') {
        return Err(EnrollError::BadPackage(format!(
            "config file name {:?} is not a plain file name",
            package.config_file
        )));
    }
    write_files(dir, &package, options)
}

fn write_files(
    dir: &Path,
    package: &Package,
    options: EnrollOptions,
) -> Result<EnrollOutcome, EnrollError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EnrollError::Io { path, source }
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        if !options.force {
            return Err(EnrollError::WouldOverwrite(key_path));
        }
        std::fs::remove_file(&key_path).map_err(io(&key_path))?;
    }
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(&key_path))?;
    key.write_all(package.key_pem.as_bytes())
        .and_then(|()| key.sync_all())
        .map_err(io(&key_path))?;

    let config = SyncBootstrap {
        cert_file: CERT_FILE.into(),
        key_file: KEY_FILE.into(),
        ca_file: CA_FILE.into(),
        ..package.config.clone()
    };
    let config_json =
        serde_json::to_vec_pretty(&config).map_err(|e| EnrollError::BadPackage(e.to_string()))?;
    let config_path = dir.join(&package.config_file);
    let mut files = vec![key_path];
    for (path, contents) in [
        (dir.join(CERT_FILE), package.cert_pem.as_bytes()),
        (dir.join(CA_FILE), package.ca_pem.as_bytes()),
        (config_path.clone(), config_json.as_slice()),
    ] {
        std::fs::write(&path, contents).map_err(io(&path))?;
        files.push(path);
    }
    Ok(EnrollOutcome {
        dir: dir.to_path_buf(),
        component_id: package.component_id.clone(),
        component_type: package.component_type.clone(),
        tenant_id: package.tenant_id.clone(),
        tenant_slug: package.tenant_slug.clone(),
        config_file: config_path,
        files,
    })
}

fn decode_token(token: &str) -> Result<EnrollmentToken, EnrollError> {
    EnrollmentToken::decode(token).map_err(|e| EnrollError::InvalidToken(e.0))
}

fn decode_pin(hex_pin: &str) -> Result<[u8; 32], EnrollError> {
    hex::decode(hex_pin)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| EnrollError::InvalidToken("CA fingerprint is not 64 hex digits".into()))
}

fn pinned_client(pin: [u8; 32]) -> Result<reqwest::Client, EnrollError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedRootVerifier {
        pin,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EnrollError::InvalidToken(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| EnrollError::Connect {
            url: String::new(),
            message: e.to_string(),
        })
}

/// Trusts a server chain only if its last certificate is the pinned root,
/// and the chain verifies (webpki) against that root for the server name.
#[derive(Debug)]
struct PinnedRootVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((root, rest)) = intermediates.split_last() else {
            return Err(rustls::Error::General(
                "the gateway did not send its CA chain; cannot check the pinned root".into(),
            ));
        };
        let got: [u8; 32] = Sha256::digest(root.as_ref()).into();
        if got != self.pin {
            return Err(rustls::Error::General(format!(
                "the gateway's root CA (sha256 {}) is not the one the token pins ({})",
                hex::encode(got),
                hex::encode(self.pin)
            )));
        }
        let mut roots = RootCertStore::empty();
        roots
            .add(root.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned root CA: {e}")))?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, rest, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::error_chain::with_causes(e.to_string(), e.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(json: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn tokens_are_checked_before_any_network_use() {
        assert!(matches!(
            decode_token("***"),
            Err(EnrollError::InvalidToken(_))
        ));
        let pin = "ab".repeat(32);
        let v2 = token(&format!(
            r#"{{"v":2,"url":"https://g","ca_sha256":"{pin}","id":"x","secret":"s"}}"#
        ));
        assert!(
            decode_token(&v2)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        let http = token(&format!(
            r#"{{"v":1,"url":"http://g","ca_sha256":"{pin}","id":"x","secret":"s"}}"#
        ));
        assert!(
            decode_token(&http)
                .unwrap_err()
                .to_string()
                .contains("https")
        );
        assert!(decode_pin("abcd").is_err());
        assert!(decode_pin(&"ab".repeat(32)).is_ok());
    }

    #[tokio::test]
    async fn an_existing_key_is_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "old").unwrap();
        let t = token(&format!(
            r#"{{"v":1,"url":"https://127.0.0.1:1","ca_sha256":"{}","id":"x","secret":"s"}}"#,
            "ab".repeat(32)
        ));
        let err = enroll(&t, dir.path()).await.unwrap_err();
        assert!(matches!(err, EnrollError::WouldOverwrite(_)));
        assert!(err.to_string().contains("--force"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap(),
            "old"
        );
    }
}
