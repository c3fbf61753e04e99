//! Which tenant a stream of device updates may write, decided from the
//! caller's certificate and the integration sources the updates name. Pure;
//! the caller looks up the named sources first.
//!
//! - An edge sync writes only its own tenant, for sources assigned to it.
//! - The platform sync writes only for sources assigned to it, and every
//!   update must name its source (that is how its tenant is known).
//! - One stream carries one tenant's devices.

use std::collections::HashMap;

use sr_proto::DeviceUpdate;
use sr_proto::device_update::keys;
use thiserror::Error;
use uuid::Uuid;

/// An integration source as scoping needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOwner {
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Sync service it is assigned to.
    pub sync_service_id: Uuid,
}

/// The caller, from its certificate and its sync service record.
#[derive(Debug, Clone, Copy)]
pub struct CallerScope {
    /// The certificate's tenant.
    pub tenant_id: Uuid,
    /// The caller's sync service record.
    pub sync_service_id: Uuid,
    /// Whether the caller is the platform sync (writes for many tenants).
    pub is_platform_sync: bool,
}

/// Why a stream may not be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScopeError {
    /// The update names a tenant or source the caller may not write.
    #[error("{0}")]
    Forbidden(String),
    /// The update is malformed for scoping.
    #[error("{0}")]
    Invalid(String),
    /// The named source does not exist (any more).
    #[error("{0}")]
    UnknownSource(String),
}

/// The integration source ids named by a stream's updates (valid UUIDs only).
pub fn named_sources(updates: &[DeviceUpdate]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = updates
        .iter()
        .filter_map(|u| u.metadata.get(keys::INTEGRATION_SOURCE_ID))
        .filter_map(|s| Uuid::parse_str(s.trim()).ok())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Decides the one tenant the stream writes, or why it may not.
pub fn decide(
    caller: &CallerScope,
    updates: &[DeviceUpdate],
    sources: &HashMap<Uuid, SourceOwner>,
) -> Result<Option<Uuid>, ScopeError> {
    let mut tenant: Option<Uuid> = None;
    for (index, update) in updates.iter().enumerate() {
        let claimed_tenant = match update.metadata.get(keys::TENANT_ID).map(|t| t.trim()) {
            None | Some("") => None,
            Some(text) => Some(Uuid::parse_str(text).map_err(|_| {
                ScopeError::Invalid(format!(
                    "device update {index}: metadata.tenant_id {text:?} is not a UUID"
                ))
            })?),
        };
        let source = match update
            .metadata
            .get(keys::INTEGRATION_SOURCE_ID)
            .map(|s| s.trim())
        {
            None | Some("") => None,
            Some(text) => Some(Uuid::parse_str(text).map_err(|_| {
                ScopeError::Invalid(format!(
                    "device update {index}: metadata.integration_source_id {text:?} is not a UUID"
                ))
            })?),
        };
        let update_tenant = match source {
            Some(source_id) => {
                let owner = sources.get(&source_id).ok_or_else(|| {
                    ScopeError::UnknownSource(format!(
                        "device update {index}: integration source {source_id} does not exist (was it deleted?)"
                    ))
                })?;
                if owner.sync_service_id != caller.sync_service_id {
                    return Err(ScopeError::Forbidden(format!(
                        "device update {index}: integration source {source_id} is not assigned to this sync service"
                    )));
                }
                if let Some(claimed) = claimed_tenant
                    && claimed != owner.tenant_id
                {
                    return Err(ScopeError::Forbidden(format!(
                        "device update {index}: metadata.tenant_id {claimed} does not own integration source {source_id}"
                    )));
                }
                owner.tenant_id
            }
            None if caller.is_platform_sync => {
                return Err(ScopeError::Invalid(format!(
                    "device update {index}: metadata.integration_source_id is required from the platform sync (it decides the tenant)"
                )));
            }
            None => claimed_tenant.unwrap_or(caller.tenant_id),
        };
        if !caller.is_platform_sync && update_tenant != caller.tenant_id {
            return Err(ScopeError::Forbidden(format!(
                "device update {index}: tenant {update_tenant} is not this certificate's tenant {}",
                caller.tenant_id
            )));
        }
        match tenant {
            None => tenant = Some(update_tenant),
            Some(t) if t != update_tenant => {
                return Err(ScopeError::Invalid(format!(
                    "one stream carries one tenant's devices; device update {index} is for tenant {update_tenant}, earlier ones for {t}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn update(tenant: Option<Uuid>, source: Option<Uuid>) -> DeviceUpdate {
        let mut metadata = BTreeMap::new();
        if let Some(t) = tenant {
            metadata.insert(keys::TENANT_ID.to_string(), t.to_string());
        }
        if let Some(s) = source {
            metadata.insert(keys::INTEGRATION_SOURCE_ID.to_string(), s.to_string());
        }
        DeviceUpdate {
            device_id: String::new(),
            ip: "10.0.0.1".into(),
            source: "faker".into(),
            agent_id: String::new(),
            gateway_id: String::new(),
            partition: "default".into(),
            timestamp: "2025-01-01T00:00:00Z".parse().unwrap(),
            hostname: None,
            mac: None,
            metadata,
            is_available: true,
            confidence: 7,
            sync_meta: None,
            raw_data: None,
        }
    }

    struct World {
        tenant_a: Uuid,
        tenant_b: Uuid,
        platform_sync: Uuid,
        edge_a: Uuid,
        source_a_platform: Uuid,
        source_b_platform: Uuid,
        source_a_edge: Uuid,
        sources: HashMap<Uuid, SourceOwner>,
    }

    fn world() -> World {
        let (tenant_a, tenant_b, platform_sync, edge_a) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let (source_a_platform, source_b_platform, source_a_edge) =
            (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let sources = HashMap::from([
            (
                source_a_platform,
                SourceOwner {
                    tenant_id: tenant_a,
                    sync_service_id: platform_sync,
                },
            ),
            (
                source_b_platform,
                SourceOwner {
                    tenant_id: tenant_b,
                    sync_service_id: platform_sync,
                },
            ),
            (
                source_a_edge,
                SourceOwner {
                    tenant_id: tenant_a,
                    sync_service_id: edge_a,
                },
            ),
        ]);
        World {
            tenant_a,
            tenant_b,
            platform_sync,
            edge_a,
            source_a_platform,
            source_b_platform,
            source_a_edge,
            sources,
        }
    }

    fn platform(w: &World) -> CallerScope {
        CallerScope {
            tenant_id: Uuid::new_v4(),
            sync_service_id: w.platform_sync,
            is_platform_sync: true,
        }
    }

    fn edge_a(w: &World) -> CallerScope {
        CallerScope {
            tenant_id: w.tenant_a,
            sync_service_id: w.edge_a,
            is_platform_sync: false,
        }
    }

    #[test]
    fn platform_sync_writes_the_tenant_of_its_sources() {
        let w = world();
        let updates = vec![
            update(Some(w.tenant_b), Some(w.source_b_platform)),
            update(None, Some(w.source_b_platform)),
        ];
        assert_eq!(
            decide(&platform(&w), &updates, &w.sources),
            Ok(Some(w.tenant_b))
        );
    }

    #[test]
    fn platform_sync_must_name_the_source_and_may_not_mix_tenants() {
        let w = world();
        let err = decide(&platform(&w), &[update(Some(w.tenant_a), None)], &w.sources).unwrap_err();
        assert!(
            matches!(err, ScopeError::Invalid(ref m) if m.contains("required")),
            "{err}"
        );
        let mixed = vec![
            update(None, Some(w.source_a_platform)),
            update(None, Some(w.source_b_platform)),
        ];
        assert!(matches!(
            decide(&platform(&w), &mixed, &w.sources),
            Err(ScopeError::Invalid(_))
        ));
    }

    #[test]
    fn platform_sync_cannot_write_sources_assigned_elsewhere() {
        let w = world();
        let err = decide(
            &platform(&w),
            &[update(None, Some(w.source_a_edge))],
            &w.sources,
        )
        .unwrap_err();
        assert!(matches!(err, ScopeError::Forbidden(_)), "{err}");
    }

    #[test]
    fn edge_sync_writes_only_its_own_tenant() {
        let w = world();
        assert_eq!(
            decide(
                &edge_a(&w),
                &[update(None, Some(w.source_a_edge))],
                &w.sources
            ),
            Ok(Some(w.tenant_a))
        );
        assert_eq!(
            decide(&edge_a(&w), &[update(None, None)], &w.sources),
            Ok(Some(w.tenant_a))
        );
        // Claiming another tenant, or another tenant's source.
        let err = decide(&edge_a(&w), &[update(Some(w.tenant_b), None)], &w.sources).unwrap_err();
        assert!(matches!(err, ScopeError::Forbidden(_)), "{err}");
        let err = decide(
            &edge_a(&w),
            &[update(None, Some(w.source_b_platform))],
            &w.sources,
        )
        .unwrap_err();
        assert!(matches!(err, ScopeError::Forbidden(_)), "{err}");
        // A tenant claim that disagrees with the named source.
        let err = decide(
            &edge_a(&w),
            &[update(Some(w.tenant_b), Some(w.source_a_edge))],
            &w.sources,
        )
        .unwrap_err();
        assert!(matches!(err, ScopeError::Forbidden(_)), "{err}");
    }

    #[test]
    fn unknown_or_malformed_sources_are_named() {
        let w = world();
        let err = decide(
            &edge_a(&w),
            &[update(None, Some(Uuid::new_v4()))],
            &w.sources,
        )
        .unwrap_err();
        assert!(
            matches!(err, ScopeError::UnknownSource(ref m) if m.contains("does not exist")),
            "{err}"
        );
        let mut bad = update(None, None);
        bad.metadata
            .insert(keys::INTEGRATION_SOURCE_ID.into(), "nope".into());
        let err = decide(&edge_a(&w), &[bad], &w.sources).unwrap_err();
        assert!(
            matches!(err, ScopeError::Invalid(ref m) if m.contains("\"nope\"")),
            "{err}"
        );
        assert_eq!(decide(&edge_a(&w), &[], &w.sources), Ok(None));
    }
}
