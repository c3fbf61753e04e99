//! Validated tenant schema names.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::DireError;

/// A tenant's data-plane schema, `t_<tenant uuid as 32 lower-case hex>`.
/// Only validated names exist, so quoting it into SQL is safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSchema(String);

/// Class id of DIRE's advisory locks (two-key form, so it cannot collide
/// with single-bigint locks taken elsewhere): ASCII "DIRE".
const LOCK_CLASS: i32 = 0x4449_5245;

impl TenantSchema {
    /// The schema of a tenant.
    pub fn for_tenant(tenant_id: Uuid) -> Self {
        Self(format!("t_{}", tenant_id.simple()))
    }

    /// Validates a schema name.
    pub fn parse(name: &str) -> Result<Self, DireError> {
        let valid = name.len() == 34
            && name.starts_with("t_")
            && name[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(DireError::InvalidSchema {
                name: name.to_string(),
            })
        }
    }

    /// The bare name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The name quoted as an SQL identifier.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// The tenant id the schema belongs to.
    pub fn tenant_id(&self) -> Uuid {
        Uuid::parse_str(&self.0[2..]).unwrap_or_default()
    }

    /// Keys of the transaction-scoped advisory lock that serialises DIRE
    /// batches of this tenant.
    pub(crate) fn lock_keys(&self) -> (i32, i32) {
        let digest = Sha256::digest(format!("sr-dire:{}", self.0).as_bytes());
        (
            LOCK_CLASS,
            i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]),
        )
    }
}

impl fmt::Display for TenantSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantSchema {
    type Err = DireError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_tenant_round_trips() {
        let id = Uuid::parse_str("6f1c9d53-5d1e-4b53-9a43-1c1f5f5e2a10").unwrap();
        let schema = TenantSchema::for_tenant(id);
        assert_eq!(schema.name(), "t_6f1c9d535d1e4b539a431c1f5f5e2a10");
        assert_eq!(schema.quoted(), "\"t_6f1c9d535d1e4b539a431c1f5f5e2a10\"");
        assert_eq!(TenantSchema::parse(schema.name()).unwrap(), schema);
        assert_eq!(schema.tenant_id(), id);
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "public",
            "t_",
            "t_6F1C9D535D1E4B539A431C1F5F5E2A10",
            "t_6f1c9d535d1e4b539a431c1f5f5e2a1",
            "t_6f1c9d535d1e4b539a431c1f5f5e2a10x",
            "t_6f1c9d535d1e4b539a431c1f5f5e2a1\"",
            "x_6f1c9d535d1e4b539a431c1f5f5e2a10",
        ] {
            assert!(
                matches!(
                    TenantSchema::parse(bad),
                    Err(DireError::InvalidSchema { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lock_keys_differ_per_tenant() {
        let a = TenantSchema::for_tenant(Uuid::from_u128(1));
        let b = TenantSchema::for_tenant(Uuid::from_u128(2));
        assert_eq!(a.lock_keys(), a.clone().lock_keys());
        assert_ne!(a.lock_keys(), b.lock_keys());
        assert_eq!(a.lock_keys().0, LOCK_CLASS);
    }
}
