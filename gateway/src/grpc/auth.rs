//! Authenticates a gRPC caller from the TLS peer chain: parse
//! ([`crate::identity::parse_peer_chain`]), look up the issuer and the
//! onboarding record, resolve ([`crate::identity::resolve`]).

use rustls_pki_types::CertificateDer;
use sqlx::Row;
use tonic::Status;

use crate::identity::{
    self, Classification, ComponentType, EnrolledComponent, IssuerKind, PeerIdentity,
};
use crate::state::AppState;

/// The caller's identity, from the certificates the TLS layer verified.
pub async fn authenticate(
    state: &AppState,
    peer_certs: Option<&[CertificateDer<'static>]>,
) -> Result<PeerIdentity, Status> {
    let certs = peer_certs.unwrap_or_default();
    let chain: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
    let now = state.clock.now().timestamp();
    let cert = state.parse_chain(&chain, now).map_err(|e| {
        tracing::warn!(error = %e, "client certificate refused");
        Status::from(e)
    })?;
    let issuer = state
        .issuer(&cert.issuer_spki_sha256)
        .await
        .map_err(|e| internal("looking up certificate issuer", &e))?;
    let enrolled = match (&cert.classification, &issuer) {
        (Classification::Edge, Some(IssuerKind::TenantCa { tenant_id, .. })) => {
            enrolled_component(state, *tenant_id, &cert.component_id).await?
        }
        _ => None,
    };
    identity::resolve(&cert, issuer.as_ref(), &state.platform, enrolled.as_ref()).inspect_err(
        |status| {
            tracing::warn!(component_id = %cert.component_id, tenant = %cert.tenant_slug,
                reason = %status.message(), "caller refused");
        },
    )
}

async fn enrolled_component(
    state: &AppState,
    tenant_id: uuid::Uuid,
    component_id: &str,
) -> Result<Option<EnrolledComponent>, Status> {
    let row = sqlx::query(
        "SELECT component_type, partition, cert_sha256 FROM platform.components \
         WHERE tenant_id = $1 AND component_id = $2",
    )
    .bind(tenant_id)
    .bind(component_id)
    .fetch_optional(&state.pool)
    .await
    .map_err(|e| internal("looking up onboarding record", &e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let kind: String = row
        .try_get("component_type")
        .map_err(|e| internal("reading onboarding record", &e))?;
    let component_type: ComponentType = kind
        .parse()
        .map_err(|e: String| internal("reading onboarding record", &e))?;
    Ok(Some(EnrolledComponent {
        component_type,
        partition: row
            .try_get("partition")
            .map_err(|e| internal("reading onboarding record", &e))?,
        cert_sha256: row
            .try_get("cert_sha256")
            .map_err(|e| internal("reading onboarding record", &e))?,
    }))
}

/// An internal failure: logged with its cause, reported without it.
pub fn internal(what: &str, cause: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %cause, "{what}");
    Status::internal(format!("{what} failed; see the gateway log"))
}
