//! Certificate identity: who a caller is, from its certificate chain alone.
//!
//! Three pure steps, no I/O:
//! 1. [`parse_peer_chain`] reads the presented chain into a
//!    [`CertificateIdentity`] (classification, names, issuer key, expiry).
//! 2. [`resolve`] combines it with what the gateway knows about the issuer
//!    (platform root or a tenant CA) and the onboarding record of an edge
//!    component into a [`PeerIdentity`].
//! 3. [`check_agent_id`], [`check_tenant_fields`] and [`require_type`]
//!    authorise a request against that identity.
//!
//! The rules are those of the certificate identity reference.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use thiserror::Error;
use tonic::Status;
use uuid::Uuid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::pki::{CN_SUFFIX, SPIFFE_TRUST_DOMAIN};

/// Kinds of component the platform knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    /// An agent gateway.
    Gateway,
    /// A monitoring agent.
    Agent,
    /// A sync service.
    Sync,
    /// A checker.
    Checker,
}

impl ComponentType {
    /// The name used in SPIFFE paths and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Agent => "agent",
            Self::Sync => "sync",
            Self::Checker => "checker",
        }
    }
}

impl fmt::Display for ComponentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ComponentType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gateway" => Ok(Self::Gateway),
            "agent" => Ok(Self::Agent),
            "sync" => Ok(Self::Sync),
            "checker" => Ok(Self::Checker),
            other => Err(format!(
                "unknown component type {other:?} (expected gateway, agent, sync or checker)"
            )),
        }
    }
}

/// Platform (SPIFFE SAN present) or tenant edge (mTLS only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// In-cluster identity with a SPIFFE URI SAN.
    Platform,
    /// Tenant edge identity, named by its CN only.
    Edge,
}

/// What the certificate chain says, before the gateway's records are consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// Platform or edge.
    pub classification: Classification,
    /// From the SPIFFE path (platform identities only).
    pub component_type: Option<ComponentType>,
    /// First CN label.
    pub component_id: String,
    /// Second CN label.
    pub partition: String,
    /// Third CN label.
    pub tenant_slug: String,
    /// Hex SHA-256 of the issuing certificate's SubjectPublicKeyInfo.
    pub issuer_spki_sha256: String,
    /// Hex SHA-256 of the leaf certificate DER.
    pub leaf_sha256: String,
    /// Leaf validity start, unix seconds.
    pub not_before: i64,
    /// Leaf expiry, unix seconds.
    pub not_after: i64,
}

impl CertificateIdentity {
    /// Checks the validity window at `now` (unix seconds).
    pub fn check_validity(&self, now: i64) -> Result<(), CertError> {
        if now > self.not_after {
            return Err(CertError::Expired(self.not_after));
        }
        if now < self.not_before {
            return Err(CertError::NotYetValid(self.not_before));
        }
        Ok(())
    }
}

/// Why a chain does not identify anyone. All map to UNAUTHENTICATED.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CertError {
    /// No certificate was presented.
    #[error("no client certificate presented; connect with the component certificate")]
    NoCertificate,
    /// The leaf is not a parsable X.509 certificate.
    #[error("client certificate is not valid X.509: {0}")]
    Malformed(String),
    /// The leaf has expired.
    #[error("client certificate expired at {0} (unix); enroll the component again")]
    Expired(i64),
    /// The leaf is not yet valid.
    #[error("client certificate is not valid before {0} (unix); check the clock")]
    NotYetValid(i64),
    /// The CN is missing or does not have the required shape.
    #[error(
        "client certificate common name {0:?} is not <component_id>.<partition>.<tenant_slug>.serviceradar"
    )]
    BadCommonName(String),
    /// The SPIFFE URI SAN is malformed.
    #[error(
        "client certificate SPIFFE id {0:?} is not spiffe://serviceradar.local/<type>/<tenant>/<partition>/<id>: {1}"
    )]
    BadSpiffe(String, String),
    /// More than one SPIFFE URI SAN.
    #[error("client certificate carries more than one SPIFFE id")]
    MultipleSpiffe,
    /// The SPIFFE path and the CN disagree.
    #[error("client certificate SPIFFE id {spiffe:?} disagrees with its common name on the {part}")]
    SpiffeMismatch {
        /// The SPIFFE id.
        spiffe: String,
        /// Which part differs.
        part: &'static str,
    },
    /// No certificate in the chain or among the anchors signed the leaf.
    #[error("the issuer of the client certificate is not in the presented chain")]
    IssuerNotFound,
}

impl From<CertError> for Status {
    fn from(e: CertError) -> Self {
        Status::unauthenticated(e.to_string())
    }
}

/// Reads a peer chain (leaf first, DER) into a [`CertificateIdentity`].
///
/// `anchors` are extra issuer candidates the client need not send (the
/// platform root CA). `now` is unix seconds; expiry is checked here too so a
/// verifier that let an expired certificate through still fails closed.
pub fn parse_peer_chain(
    chain: &[&[u8]],
    anchors: &[&[u8]],
    now: i64,
) -> Result<CertificateIdentity, CertError> {
    let leaf_der = chain.first().ok_or(CertError::NoCertificate)?;
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| CertError::Malformed(e.to_string()))?;
    let validity = leaf.validity();
    if now > validity.not_after.timestamp() {
        return Err(CertError::Expired(validity.not_after.timestamp()));
    }
    if now < validity.not_before.timestamp() {
        return Err(CertError::NotYetValid(validity.not_before.timestamp()));
    }

    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or_else(|| CertError::BadCommonName(String::new()))?
        .to_string();
    let (component_id, partition, tenant_slug) = split_common_name(&cn)?;

    let spiffe = spiffe_ids(&leaf)?;
    let (classification, component_type) = match spiffe {
        None => (Classification::Edge, None),
        Some(uri) => {
            let parsed = parse_spiffe(&uri)?;
            for (part, from_spiffe, from_cn) in [
                ("tenant", &parsed.tenant_slug, &tenant_slug),
                ("partition", &parsed.partition, &partition),
                ("component id", &parsed.component_id, &component_id),
            ] {
                if from_spiffe != from_cn {
                    return Err(CertError::SpiffeMismatch { spiffe: uri, part });
                }
            }
            (Classification::Platform, Some(parsed.component_type))
        }
    };

    let issuer_spki_sha256 = find_issuer(&leaf, chain.iter().skip(1).chain(anchors.iter()))
        .ok_or(CertError::IssuerNotFound)?;

    Ok(CertificateIdentity {
        classification,
        component_type,
        component_id,
        partition,
        tenant_slug,
        issuer_spki_sha256,
        leaf_sha256: hex::encode(Sha256::digest(leaf_der)),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

struct SpiffeId {
    component_type: ComponentType,
    tenant_slug: String,
    partition: String,
    component_id: String,
}

fn split_common_name(cn: &str) -> Result<(String, String, String), CertError> {
    let bad = || CertError::BadCommonName(cn.to_string());
    let labels: Vec<&str> = cn.split('.').collect();
    let [id, partition, slug, suffix] = labels.as_slice() else {
        return Err(bad());
    };
    if *suffix != CN_SUFFIX || [id, partition, slug].iter().any(|l| !valid_label(l)) {
        return Err(bad());
    }
    Ok((id.to_string(), partition.to_string(), slug.to_string()))
}

/// Ids, partitions and slugs in names: letters, digits, `-` and `_`.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn spiffe_ids(leaf: &X509Certificate<'_>) -> Result<Option<String>, CertError> {
    let san = leaf
        .subject_alternative_name()
        .map_err(|e| CertError::Malformed(e.to_string()))?;
    let mut found = None;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && uri.to_ascii_lowercase().starts_with("spiffe://")
            {
                if found.is_some() {
                    return Err(CertError::MultipleSpiffe);
                }
                found = Some(uri.to_string());
            }
        }
    }
    Ok(found)
}

fn parse_spiffe(uri: &str) -> Result<SpiffeId, CertError> {
    let bad = |why: &str| CertError::BadSpiffe(uri.to_string(), why.to_string());
    let rest = uri
        .get("spiffe://".len()..)
        .ok_or_else(|| bad("too short"))?;
    let mut parts = rest.split('/');
    let domain = parts.next().unwrap_or_default();
    if domain != SPIFFE_TRUST_DOMAIN {
        return Err(bad("wrong trust domain"));
    }
    let segments: Vec<&str> = parts.collect();
    let [kind, slug, partition, id] = segments.as_slice() else {
        return Err(bad("expected four path segments"));
    };
    let component_type = ComponentType::from_str(kind).map_err(|e| bad(&e))?;
    if [slug, partition, id].iter().any(|s| !valid_label(s)) {
        return Err(bad("empty or invalid segment"));
    }
    Ok(SpiffeId {
        component_type,
        tenant_slug: slug.to_string(),
        partition: partition.to_string(),
        component_id: id.to_string(),
    })
}

/// The SPKI fingerprint of the candidate whose subject is the leaf's issuer
/// and whose key verifies the leaf's signature.
fn find_issuer<'a>(
    leaf: &X509Certificate<'_>,
    candidates: impl Iterator<Item = &'a &'a [u8]>,
) -> Option<String> {
    for der in candidates {
        let Ok((_, candidate)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        if candidate.subject().as_raw() != leaf.issuer().as_raw() {
            continue;
        }
        if leaf.verify_signature(Some(candidate.public_key())).is_ok() {
            return Some(hex::encode(Sha256::digest(candidate.public_key().raw)));
        }
    }
    None
}

/// What the gateway knows about the certificate's issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerKind {
    /// The platform root CA.
    PlatformRoot,
    /// The CA of a tenant.
    TenantCa {
        /// The tenant.
        tenant_id: Uuid,
        /// Its slug.
        tenant_slug: String,
    },
}

/// The platform tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformTenant {
    /// Its id (random, created at first bootstrap).
    pub id: Uuid,
    /// Its slug (`platform`).
    pub slug: String,
}

/// The onboarding record of an edge component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledComponent {
    /// Sync or agent.
    pub component_type: ComponentType,
    /// Partition it was enrolled in.
    pub partition: String,
    /// Hex SHA-256 of the certificate issued for it.
    pub cert_sha256: String,
}

/// The authenticated caller: everything authorisation and records use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Tenant, from the issuing CA.
    pub tenant_id: Uuid,
    /// Tenant slug (agrees with the CN).
    pub tenant_slug: String,
    /// From the SPIFFE path (platform) or onboarding record (edge).
    pub component_type: ComponentType,
    /// From the CN.
    pub component_id: String,
    /// From the CN.
    pub partition: String,
    /// Platform (SPIFFE) identity.
    pub is_platform: bool,
    /// Hex SHA-256 of the leaf.
    pub cert_sha256: String,
}

/// Turns a parsed certificate into a caller identity using the gateway's
/// records: `issuer` is what the issuer's key fingerprint matched (None when
/// nothing did) and `enrolled` the onboarding record of an edge component.
pub fn resolve(
    cert: &CertificateIdentity,
    issuer: Option<&IssuerKind>,
    platform: &PlatformTenant,
    enrolled: Option<&EnrolledComponent>,
) -> Result<PeerIdentity, Status> {
    let Some(issuer) = issuer else {
        return Err(Status::unauthenticated(
            "client certificate was not issued by the platform root CA or any tenant CA of this gateway",
        ));
    };
    match (cert.classification, issuer) {
        (Classification::Platform, IssuerKind::PlatformRoot) => {
            if cert.tenant_slug != platform.slug {
                return Err(Status::permission_denied(format!(
                    "platform identities belong to tenant {:?}; the certificate names tenant {:?}",
                    platform.slug, cert.tenant_slug
                )));
            }
            let component_type = cert.component_type.ok_or_else(|| {
                Status::unauthenticated("platform identity without a component type")
            })?;
            Ok(PeerIdentity {
                tenant_id: platform.id,
                tenant_slug: platform.slug.clone(),
                component_type,
                component_id: cert.component_id.clone(),
                partition: cert.partition.clone(),
                is_platform: true,
                cert_sha256: cert.leaf_sha256.clone(),
            })
        }
        (Classification::Platform, IssuerKind::TenantCa { tenant_slug, .. }) => {
            Err(Status::permission_denied(format!(
                "a SPIFFE (platform) identity must be issued by the platform root CA, not by the CA of tenant {tenant_slug:?}"
            )))
        }
        (Classification::Edge, IssuerKind::PlatformRoot) => Err(Status::permission_denied(
            "certificate issued by the platform root CA has no SPIFFE identity; edge certificates are issued by tenant CAs",
        )),
        (
            Classification::Edge,
            IssuerKind::TenantCa {
                tenant_id,
                tenant_slug,
            },
        ) => {
            if &cert.tenant_slug != tenant_slug {
                return Err(Status::permission_denied(format!(
                    "certificate names tenant {:?} but was issued by the CA of tenant {tenant_slug:?}",
                    cert.tenant_slug
                )));
            }
            let Some(record) = enrolled else {
                return Err(Status::permission_denied(format!(
                    "component not enrolled: {:?} of tenant {tenant_slug:?} has no onboarding record; create an onboarding package for it",
                    cert.component_id
                )));
            };
            if record.cert_sha256 != cert.leaf_sha256 {
                return Err(Status::permission_denied(format!(
                    "component {:?} of tenant {tenant_slug:?} was enrolled again; this certificate is no longer valid, use the newest onboarding package",
                    cert.component_id
                )));
            }
            Ok(PeerIdentity {
                tenant_id: *tenant_id,
                tenant_slug: tenant_slug.clone(),
                component_type: record.component_type,
                component_id: cert.component_id.clone(),
                partition: cert.partition.clone(),
                is_platform: false,
                cert_sha256: cert.leaf_sha256.clone(),
            })
        }
    }
}

/// A request's `agent_id`, when present, must be the certificate's component id.
pub fn check_agent_id(peer: &PeerIdentity, agent_id: &str) -> Result<(), Status> {
    if agent_id.is_empty() || agent_id == peer.component_id {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "agent_id {agent_id:?} does not match the certificate's component id {:?}",
            peer.component_id
        )))
    }
}

/// Tenant fields in a request, when present, must be the certificate's.
pub fn check_tenant_fields(
    peer: &PeerIdentity,
    tenant_id: &str,
    tenant_slug: &str,
) -> Result<(), Status> {
    if !tenant_id.is_empty() && !tenant_id.eq_ignore_ascii_case(&peer.tenant_id.to_string()) {
        return Err(Status::permission_denied(format!(
            "tenant_id {tenant_id:?} does not match the certificate's tenant {}",
            peer.tenant_id
        )));
    }
    if !tenant_slug.is_empty() && tenant_slug != peer.tenant_slug {
        return Err(Status::permission_denied(format!(
            "tenant_slug {tenant_slug:?} does not match the certificate's tenant {:?}",
            peer.tenant_slug
        )));
    }
    Ok(())
}

/// The caller's component type must be one `rpc` allows.
pub fn require_type(
    rpc: &str,
    peer: &PeerIdentity,
    allowed: &[ComponentType],
) -> Result<(), Status> {
    if allowed.contains(&peer.component_type) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    Err(Status::permission_denied(format!(
        "component type {} may not call {rpc} (allowed: {})",
        peer.component_type,
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{self, Ca, Validity};
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    use tonic::Code;

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    struct Fixture {
        root: Ca,
        acme: Ca,
    }

    fn fixture() -> Fixture {
        let root = pki::new_root_ca(Validity::days_from_now(30)).unwrap();
        let acme = pki::issue_tenant_ca(&root, "acme", Validity::days_from_now(30)).unwrap();
        Fixture { root, acme }
    }

    fn platform() -> PlatformTenant {
        PlatformTenant {
            id: Uuid::from_u128(7),
            slug: "platform".into(),
        }
    }

    fn acme_issuer() -> IssuerKind {
        IssuerKind::TenantCa {
            tenant_id: Uuid::from_u128(42),
            tenant_slug: "acme".into(),
        }
    }

    fn peer(component_type: ComponentType) -> PeerIdentity {
        PeerIdentity {
            tenant_id: Uuid::from_u128(42),
            tenant_slug: "acme".into(),
            component_type,
            component_id: "edge-1".into(),
            partition: "default".into(),
            is_platform: false,
            cert_sha256: "x".into(),
        }
    }

    /// A leaf with arbitrary CN / URI SANs signed by `issuer`.
    fn custom_leaf(issuer: &Ca, cn: &str, uris: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI(u.to_string().try_into().unwrap()))
            .collect();
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            issuer.cert_pem(),
            KeyPair::from_pem(issuer.key_pem()).unwrap(),
        )
        .unwrap();
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    #[test]
    fn platform_sync_certificate_is_a_platform_identity() {
        let f = fixture();
        let leaf = pki::issue_platform_component(
            &f.root,
            ComponentType::Sync,
            "platform",
            "platform",
            "platform-sync",
            Validity::days_from_now(1),
        )
        .unwrap();
        let id = parse_peer_chain(&[&leaf.cert_der], &[f.root.cert_der()], now()).unwrap();
        assert_eq!(id.classification, Classification::Platform);
        assert_eq!(id.component_type, Some(ComponentType::Sync));
        assert_eq!(id.component_id, "platform-sync");
        assert_eq!(id.partition, "platform");
        assert_eq!(id.tenant_slug, "platform");
        assert_eq!(id.issuer_spki_sha256, f.root.spki_sha256().unwrap());
        assert_eq!(id.leaf_sha256, leaf.sha256());

        let peer = resolve(&id, Some(&IssuerKind::PlatformRoot), &platform(), None).unwrap();
        assert!(peer.is_platform);
        assert_eq!(peer.tenant_id, platform().id);
        assert_eq!(peer.component_type, ComponentType::Sync);
    }

    #[test]
    fn edge_certificate_has_no_type_until_resolved_with_its_record() {
        let f = fixture();
        let leaf = pki::issue_edge_component(
            &f.acme,
            "acme",
            "site-a",
            "edge-1",
            Validity::days_from_now(1),
        )
        .unwrap();
        let id = parse_peer_chain(
            &[&leaf.cert_der, f.acme.cert_der()],
            &[f.root.cert_der()],
            now(),
        )
        .unwrap();
        assert_eq!(id.classification, Classification::Edge);
        assert_eq!(id.component_type, None);
        assert_eq!(
            (
                id.component_id.as_str(),
                id.partition.as_str(),
                id.tenant_slug.as_str()
            ),
            ("edge-1", "site-a", "acme")
        );
        assert_eq!(id.issuer_spki_sha256, f.acme.spki_sha256().unwrap());

        let record = EnrolledComponent {
            component_type: ComponentType::Sync,
            partition: "site-a".into(),
            cert_sha256: leaf.sha256(),
        };
        let peer = resolve(&id, Some(&acme_issuer()), &platform(), Some(&record)).unwrap();
        assert_eq!(peer.tenant_id, Uuid::from_u128(42));
        assert_eq!(peer.component_type, ComponentType::Sync);
        assert_eq!(peer.partition, "site-a");
        assert!(!peer.is_platform);

        // Without the onboarding record the component is refused.
        let err = resolve(&id, Some(&acme_issuer()), &platform(), None).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("not enrolled"), "{}", err.message());

        // A record for another certificate (re-enrolled) refuses this one.
        let stale = EnrolledComponent {
            cert_sha256: "0".repeat(64),
            ..record
        };
        let err = resolve(&id, Some(&acme_issuer()), &platform(), Some(&stale)).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("enrolled again"));
    }

    #[test]
    fn cn_slug_must_agree_with_the_issuing_tenant_ca() {
        let f = fixture();
        // acme's CA issues a certificate claiming tenant "globex".
        let leaf = pki::issue_edge_component(
            &f.acme,
            "globex",
            "default",
            "edge-1",
            Validity::days_from_now(1),
        )
        .unwrap();
        let id = parse_peer_chain(&[&leaf.cert_der, f.acme.cert_der()], &[], now()).unwrap();
        let err = resolve(&id, Some(&acme_issuer()), &platform(), None).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("\"globex\""), "{}", err.message());
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let f = fixture();
        let past = Validity {
            not_before: chrono::Utc::now() - chrono::Duration::days(3),
            not_after: chrono::Utc::now() - chrono::Duration::days(1),
        };
        let leaf = pki::issue_edge_component(&f.acme, "acme", "default", "e", past).unwrap();
        let err = parse_peer_chain(&[&leaf.cert_der, f.acme.cert_der()], &[], now()).unwrap_err();
        assert!(matches!(err, CertError::Expired(_)));
        assert_eq!(Status::from(err).code(), Code::Unauthenticated);

        let future = Validity {
            not_before: chrono::Utc::now() + chrono::Duration::days(1),
            not_after: chrono::Utc::now() + chrono::Duration::days(3),
        };
        let leaf = pki::issue_edge_component(&f.acme, "acme", "default", "e", future).unwrap();
        let err = parse_peer_chain(&[&leaf.cert_der, f.acme.cert_der()], &[], now()).unwrap_err();
        assert!(matches!(err, CertError::NotYetValid(_)));
    }

    #[test]
    fn a_parsed_identity_rechecks_its_validity_window() {
        let f = fixture();
        let leaf =
            pki::issue_edge_component(&f.acme, "acme", "default", "e", Validity::days_from_now(1))
                .unwrap();
        let id = parse_peer_chain(&[&leaf.cert_der, f.acme.cert_der()], &[], now()).unwrap();
        assert!(id.check_validity(now()).is_ok());
        assert_eq!(
            id.check_validity(id.not_after + 1),
            Err(CertError::Expired(id.not_after))
        );
        assert_eq!(
            id.check_validity(id.not_before - 1),
            Err(CertError::NotYetValid(id.not_before))
        );
    }

    #[test]
    fn no_chain_and_garbage_are_refused() {
        assert_eq!(
            parse_peer_chain(&[], &[], now()).unwrap_err(),
            CertError::NoCertificate
        );
        assert!(matches!(
            parse_peer_chain(&[b"not a certificate"], &[], now()).unwrap_err(),
            CertError::Malformed(_)
        ));
    }

    #[test]
    fn issuer_must_be_presented_or_anchored_and_must_have_signed() {
        let f = fixture();
        let leaf =
            pki::issue_edge_component(&f.acme, "acme", "default", "e", Validity::days_from_now(1))
                .unwrap();
        assert_eq!(
            parse_peer_chain(&[&leaf.cert_der], &[f.root.cert_der()], now()).unwrap_err(),
            CertError::IssuerNotFound
        );
        // A different CA with the same name did not sign it.
        let impostor_root = pki::new_root_ca(Validity::days_from_now(1)).unwrap();
        let impostor =
            pki::issue_tenant_ca(&impostor_root, "acme", Validity::days_from_now(1)).unwrap();
        assert_eq!(
            parse_peer_chain(&[&leaf.cert_der, impostor.cert_der()], &[], now()).unwrap_err(),
            CertError::IssuerNotFound
        );
        // With the impostor first and the real CA second, the real one is found.
        let id = parse_peer_chain(
            &[&leaf.cert_der, impostor.cert_der(), f.acme.cert_der()],
            &[],
            now(),
        )
        .unwrap();
        assert_eq!(id.issuer_spki_sha256, f.acme.spki_sha256().unwrap());
    }

    #[test]
    fn common_name_shape_is_enforced() {
        let f = fixture();
        for cn in [
            "edge-1.default.acme",
            "edge-1.default.acme.example",
            "a.b.c.d.serviceradar",
            ".default.acme.serviceradar",
            "edge 1.default.acme.serviceradar",
        ] {
            let leaf = custom_leaf(&f.acme, cn, &[]);
            let err = parse_peer_chain(&[&leaf, f.acme.cert_der()], &[], now()).unwrap_err();
            assert!(matches!(err, CertError::BadCommonName(_)), "{cn}: {err:?}");
        }
    }

    #[test]
    fn spiffe_ids_are_validated_against_the_common_name() {
        let f = fixture();
        let cn = "s1.platform.platform.serviceradar";
        type Expect = fn(&CertError) -> bool;
        let cases: &[(&[&str], Expect)] = &[
            (&["spiffe://evil.example/sync/platform/platform/s1"], |e| {
                matches!(e, CertError::BadSpiffe(..))
            }),
            (
                &["spiffe://serviceradar.local/robot/platform/platform/s1"],
                |e| matches!(e, CertError::BadSpiffe(..)),
            ),
            (&["spiffe://serviceradar.local/sync/platform/s1"], |e| {
                matches!(e, CertError::BadSpiffe(..))
            }),
            (
                &["spiffe://serviceradar.local/sync/acme/platform/s1"],
                |e| matches!(e, CertError::SpiffeMismatch { part: "tenant", .. }),
            ),
            (
                &["spiffe://serviceradar.local/sync/platform/other/s1"],
                |e| {
                    matches!(
                        e,
                        CertError::SpiffeMismatch {
                            part: "partition",
                            ..
                        }
                    )
                },
            ),
            (
                &["spiffe://serviceradar.local/sync/platform/platform/s2"],
                |e| {
                    matches!(
                        e,
                        CertError::SpiffeMismatch {
                            part: "component id",
                            ..
                        }
                    )
                },
            ),
            (
                &[
                    "spiffe://serviceradar.local/sync/platform/platform/s1",
                    "spiffe://serviceradar.local/agent/platform/platform/s1",
                ],
                |e| matches!(e, CertError::MultipleSpiffe),
            ),
        ];
        for (uris, expected) in cases {
            let leaf = custom_leaf(&f.root, cn, uris);
            let err = parse_peer_chain(&[&leaf], &[f.root.cert_der()], now()).unwrap_err();
            assert!(expected(&err), "{uris:?}: {err:?}");
        }
        // A non-SPIFFE URI SAN does not make an identity a platform one.
        let leaf = custom_leaf(
            &f.acme,
            "e.default.acme.serviceradar",
            &["https://x.example/"],
        );
        let id = parse_peer_chain(&[&leaf, f.acme.cert_der()], &[], now()).unwrap();
        assert_eq!(id.classification, Classification::Edge);
    }

    #[test]
    fn issuer_and_classification_must_agree() {
        let f = fixture();
        // SPIFFE identity issued by a tenant CA.
        let leaf = custom_leaf(
            &f.acme,
            "s1.platform.platform.serviceradar",
            &["spiffe://serviceradar.local/sync/platform/platform/s1"],
        );
        let id = parse_peer_chain(&[&leaf, f.acme.cert_der()], &[], now()).unwrap();
        let err = resolve(&id, Some(&acme_issuer()), &platform(), None).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);

        // Edge-shaped certificate issued by the root.
        let leaf = custom_leaf(&f.root, "e.default.acme.serviceradar", &[]);
        let id = parse_peer_chain(&[&leaf], &[f.root.cert_der()], now()).unwrap();
        let err = resolve(&id, Some(&IssuerKind::PlatformRoot), &platform(), None).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);

        // Platform identity naming a tenant other than the platform tenant.
        let leaf = pki::issue_platform_component(
            &f.root,
            ComponentType::Sync,
            "acme",
            "default",
            "s1",
            Validity::days_from_now(1),
        )
        .unwrap();
        let id = parse_peer_chain(&[&leaf.cert_der], &[f.root.cert_der()], now()).unwrap();
        let err = resolve(&id, Some(&IssuerKind::PlatformRoot), &platform(), None).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);

        // Unknown issuer.
        let err = resolve(&id, None, &platform(), None).unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }

    #[test]
    fn agent_id_check() {
        let p = peer(ComponentType::Sync);
        assert!(check_agent_id(&p, "").is_ok());
        assert!(check_agent_id(&p, "edge-1").is_ok());
        let err = check_agent_id(&p, "edge-2").unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("\"edge-2\"") && err.message().contains("\"edge-1\""));
    }

    #[test]
    fn tenant_fields_check() {
        let p = peer(ComponentType::Sync);
        assert!(check_tenant_fields(&p, "", "").is_ok());
        assert!(check_tenant_fields(&p, &Uuid::from_u128(42).to_string(), "acme").is_ok());
        assert!(
            check_tenant_fields(&p, &Uuid::from_u128(42).to_string().to_uppercase(), "").is_ok()
        );
        for (id, slug) in [
            (Uuid::from_u128(43).to_string(), String::new()),
            (String::new(), "globex".to_string()),
            ("not-a-uuid".to_string(), "acme".to_string()),
        ] {
            let err = check_tenant_fields(&p, &id, &slug).unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{id} {slug}");
        }
    }

    #[test]
    fn type_check_names_the_rpc_and_allowed_types() {
        let allowed = [ComponentType::Sync, ComponentType::Agent];
        assert!(require_type("GetConfig", &peer(ComponentType::Sync), &allowed).is_ok());
        let err = require_type("GetConfig", &peer(ComponentType::Checker), &allowed).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(
            err.message(),
            "component type checker may not call GetConfig (allowed: sync, agent)"
        );
    }

    #[test]
    fn component_type_round_trips() {
        for t in [
            ComponentType::Gateway,
            ComponentType::Agent,
            ComponentType::Sync,
            ComponentType::Checker,
        ] {
            assert_eq!(t.as_str().parse::<ComponentType>().unwrap(), t);
        }
        assert!("robot".parse::<ComponentType>().is_err());
    }
}
