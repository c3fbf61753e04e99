//! Certificate issuance (rcgen): the platform root CA, one CA per tenant,
//! the gateway server certificate, and component certificates — platform
//! ones with a SPIFFE URI SAN, edge ones issued by the tenant CA without.
//! Names follow the identity reference.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::identity::ComponentType;

/// SPIFFE trust domain of platform identities.
pub const SPIFFE_TRUST_DOMAIN: &str = "serviceradar.local";
/// Last label of every component common name.
pub const CN_SUFFIX: &str = "serviceradar";

/// An issuance failure.
#[derive(Debug, Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("issuing certificate {what}: {source}")]
    Issue {
        /// What was being issued.
        what: String,
        /// The cause.
        source: rcgen::Error,
    },
    /// A PEM input held no usable certificate or key.
    #[error("{what}: {message}")]
    Pem {
        /// Which input.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// The validity window of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before.
    pub not_before: DateTime<Utc>,
    /// Not valid after.
    pub not_after: DateTime<Utc>,
}

impl Validity {
    /// From one hour ago (clock skew) until `days` from now.
    pub fn days_from_now(days: u32) -> Self {
        let now = Utc::now();
        Self {
            not_before: now - chrono::Duration::hours(1),
            not_after: now + chrono::Duration::days(i64::from(days)),
        }
    }
}

/// A CA: its certificate and the means to sign with its key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_sha256", &sha256_hex(&self.cert_der))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Pem {
            what: "CA key".into(),
            message: e.to_string(),
        })?;
        let cert_der = first_cert_der(cert_pem, "CA certificate")?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.clone()), key)
            .map_err(|e| PkiError::Pem {
                what: "CA certificate".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_string(),
            cert_der,
            key_pem: key_pem.to_string(),
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA key (PEM). Handle with care.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Hex SHA-256 of the certificate DER (what enrollment tokens pin).
    pub fn cert_sha256(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// Hex SHA-256 of the SubjectPublicKeyInfo (how tenant CAs are matched).
    pub fn spki_sha256(&self) -> Result<String, PkiError> {
        spki_sha256_of(&self.cert_der)
    }
}

/// A certificate with its new private key.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM), leaf only.
    pub cert_pem: String,
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// The private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("sha256", &self.sha256())
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Hex SHA-256 of the certificate DER.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.cert_der)
    }
}

/// Creates a new self-signed platform root CA.
pub fn new_root_ca(validity: Validity) -> Result<Ca, PkiError> {
    let what = || "platform root CA".to_string();
    let key = KeyPair::generate().map_err(|source| PkiError::Issue {
        what: what(),
        source,
    })?;
    let mut params = base_params("ServiceRadar platform root CA", validity);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(|source| PkiError::Issue {
        what: what(),
        source,
    })?;
    let key_pem = key.serialize_pem();
    Ca::from_pem(&cert.pem(), &key_pem)
}

/// Issues the CA of tenant `slug` (CN `tenant-<slug>.ca.serviceradar`),
/// signed by the root; it may sign leaves only.
pub fn issue_tenant_ca(root: &Ca, slug: &str, validity: Validity) -> Result<Ca, PkiError> {
    let what = || format!("CA of tenant {slug}");
    let key = KeyPair::generate().map_err(|source| PkiError::Issue {
        what: what(),
        source,
    })?;
    let mut params = base_params(&tenant_ca_common_name(slug), validity);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &root.issuer)
        .map_err(|source| PkiError::Issue {
            what: what(),
            source,
        })?;
    Ca::from_pem(&cert.pem(), &key.serialize_pem())
}

/// Issues the gateway server certificate: SANs localhost, 127.0.0.1, ::1
/// and `extra_names` (DNS names or IP addresses), plus the gateway's SPIFFE
/// identity.
pub fn issue_server_cert(
    root: &Ca,
    gateway_id: &str,
    extra_names: &[String],
    validity: Validity,
) -> Result<IssuedCert, PkiError> {
    let what = "gateway server certificate";
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut sans = Vec::new();
    for name in &names {
        sans.push(san_for(name, what)?);
    }
    sans.push(uri_san(
        &spiffe_uri(ComponentType::Gateway, "platform", "platform", gateway_id),
        what,
    )?);
    let cn = common_name(gateway_id, "platform", "platform");
    issue_leaf(root, &cn, sans, validity, what)
}

/// Issues a platform component certificate (SPIFFE URI SAN), signed by the root.
pub fn issue_platform_component(
    root: &Ca,
    component_type: ComponentType,
    tenant_slug: &str,
    partition: &str,
    component_id: &str,
    validity: Validity,
) -> Result<IssuedCert, PkiError> {
    let what = format!("platform {component_type} {component_id}");
    let cn = common_name(component_id, partition, tenant_slug);
    let sans = vec![
        SanType::DnsName(cn.clone().try_into().map_err(|source| PkiError::Issue {
            what: what.clone(),
            source,
        })?),
        uri_san(
            &spiffe_uri(component_type, tenant_slug, partition, component_id),
            &what,
        )?,
    ];
    issue_leaf(root, &cn, sans, validity, &what)
}

/// Issues an edge component certificate, signed by the tenant CA, without
/// a SPIFFE SAN (its type comes from the onboarding record).
pub fn issue_edge_component(
    tenant_ca: &Ca,
    tenant_slug: &str,
    partition: &str,
    component_id: &str,
    validity: Validity,
) -> Result<IssuedCert, PkiError> {
    let what = format!("edge component {component_id} of tenant {tenant_slug}");
    let cn = common_name(component_id, partition, tenant_slug);
    let sans = vec![SanType::DnsName(cn.clone().try_into().map_err(
        |source| PkiError::Issue {
            what: what.clone(),
            source,
        },
    )?)];
    issue_leaf(tenant_ca, &cn, sans, validity, &what)
}

/// `<component_id>.<partition>.<tenant_slug>.serviceradar`
pub fn common_name(component_id: &str, partition: &str, tenant_slug: &str) -> String {
    format!("{component_id}.{partition}.{tenant_slug}.{CN_SUFFIX}")
}

/// `tenant-<slug>.ca.serviceradar`
pub fn tenant_ca_common_name(slug: &str) -> String {
    format!("tenant-{slug}.ca.{CN_SUFFIX}")
}

/// `spiffe://serviceradar.local/<type>/<tenant_slug>/<partition>/<component_id>`
pub fn spiffe_uri(
    component_type: ComponentType,
    tenant_slug: &str,
    partition: &str,
    component_id: &str,
) -> String {
    format!(
        "spiffe://{SPIFFE_TRUST_DOMAIN}/{component_type}/{tenant_slug}/{partition}/{component_id}"
    )
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_sha256_of(cert_der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::Pem {
        what: "certificate".into(),
        message: e.to_string(),
    })?;
    Ok(sha256_hex(cert.public_key().raw))
}

/// All certificates of a PEM bundle, as DER, in order.
pub fn pem_certs(pem: &str, what: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            what: what.to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: what.to_string(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The first certificate of a PEM bundle, as DER.
pub fn first_cert_der(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    pem_certs(pem, what).map(|mut certs| certs.swap_remove(0))
}

/// Not-after of a certificate.
pub fn not_after(cert_der: &[u8]) -> Result<DateTime<Utc>, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::Pem {
        what: "certificate".into(),
        message: e.to_string(),
    })?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0).ok_or_else(|| {
        PkiError::Pem {
            what: "certificate".into(),
            message: "not_after out of range".into(),
        }
    })
}

fn issue_leaf(
    issuer: &Ca,
    cn: &str,
    sans: Vec<SanType>,
    validity: Validity,
    what: &str,
) -> Result<IssuedCert, PkiError> {
    let err = |source| PkiError::Issue {
        what: what.to_string(),
        source,
    };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = base_params(cn, validity);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer.issuer).map_err(err)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
    })
}

fn base_params(cn: &str, validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = to_offset(validity.not_before);
    params.not_after = to_offset(validity.not_after);
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params
}

fn to_offset(at: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn san_for(name: &str, what: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    Ok(SanType::DnsName(name.to_string().try_into().map_err(
        |source| PkiError::Issue {
            what: format!("{what} (name {name:?})"),
            source,
        },
    )?))
}

fn uri_san(uri: &str, what: &str) -> Result<SanType, PkiError> {
    Ok(SanType::URI(uri.to_string().try_into().map_err(
        |source| PkiError::Issue {
            what: what.to_string(),
            source,
        },
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ca_and_edge_leaf_chain_to_root() {
        let root = new_root_ca(Validity::days_from_now(10)).unwrap();
        let tenant = issue_tenant_ca(&root, "acme", Validity::days_from_now(10)).unwrap();
        let leaf = issue_edge_component(
            &tenant,
            "acme",
            "default",
            "edge-sync-1",
            Validity::days_from_now(365),
        )
        .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert_der).unwrap();
        let (_, tenant_parsed) = x509_parser::parse_x509_certificate(tenant.cert_der()).unwrap();
        assert_eq!(
            parsed.subject().to_string(),
            "CN=edge-sync-1.default.acme.serviceradar"
        );
        assert_eq!(
            tenant_parsed.subject().to_string(),
            "CN=tenant-acme.ca.serviceradar"
        );
        parsed
            .verify_signature(Some(tenant_parsed.public_key()))
            .unwrap();
        assert_eq!(parsed.issuer(), tenant_parsed.subject());
        let days = (parsed.validity().not_after.timestamp()
            - parsed.validity().not_before.timestamp())
            / 86400;
        assert_eq!(days, 365);
        // Round trip the CA through PEM and issue again.
        let again = Ca::from_pem(tenant.cert_pem(), tenant.key_pem()).unwrap();
        assert_eq!(again.spki_sha256().unwrap(), tenant.spki_sha256().unwrap());
    }
}
