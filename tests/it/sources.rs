//! Armis and NetBox sources of one tenant describing the same devices:
//! DIRE reconciles each pair into one canonical device by MAC and IP, while
//! their source ids stay distinct identifiers.

use serde_json::json;
use sr_host::mock::armis::{ArmisMock, ArmisOptions, DEFAULT_SECRET_KEY};
use sr_host::mock::inventory::InventoryParams;
use sr_host::mock::netbox::{DEFAULT_TOKEN, NetboxMock, NetboxOptions};

use crate::support::{Platform, assert_success};

#[tokio::test]
async fn overlapping_armis_and_netbox_devices_become_one_canonical_device_each() {
    const DEVICES: u64 = 300;
    // The same seed: both inventories describe the same devices (MACs, IPs).
    let inventory = InventoryParams {
        seed: 77,
        devices: DEVICES,
        ..Default::default()
    };
    let armis = ArmisMock::start(ArmisOptions {
        inventory,
        ..Default::default()
    })
    .await
    .unwrap();
    let netbox = NetboxMock::start(NetboxOptions {
        inventory,
        ..Default::default()
    })
    .await
    .unwrap();

    let platform = Platform::start().await;
    platform.install_adapter("armis");
    platform.install_adapter("netbox");
    let tenant = platform.create_tenant("acme").await;
    platform
        .create_source(
            "acme",
            json!({"name": "armis", "type": "armis", "endpoint": armis.base_url(),
                   "credentials": {"secret_key": DEFAULT_SECRET_KEY}, "page_size": 100}),
        )
        .await;
    platform
        .create_source(
            "acme",
            json!({"name": "netbox", "type": "netbox", "endpoint": netbox.base_url(),
                   "credentials": {"token": DEFAULT_TOKEN}, "page_size": 100,
                   "settings": {"fetch_macs": true}}),
        )
        .await;
    assert_success(&platform.run_sync_once().await);

    // The mock inventories hold some devices without a usable IP, which the
    // adapters skip (per the source reference); both staged the rest.
    let schema = sr_gateway::db::tenant_schema_name(tenant);
    let scalar = |sql: String| {
        let pool = platform.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let staged = |source: &str| {
        format!("SELECT count(*) FROM \"{schema}\".discovered_devices WHERE source = '{source}'")
    };
    let (from_armis, from_netbox) = (
        scalar(staged("armis")).await,
        scalar(staged("netbox")).await,
    );
    assert!(
        from_armis > DEVICES as i64 * 9 / 10 && from_netbox > DEVICES as i64 * 9 / 10,
        "{from_armis} / {from_netbox}"
    );
    // Both sources number devices alike: a mock id is one real device.
    let union = scalar(format!(
        "SELECT count(DISTINCT source_device_id) FROM \"{schema}\".discovered_devices"
    ))
    .await;
    let overlap = scalar(format!(
        "SELECT count(*) FROM \"{schema}\".discovered_devices a JOIN \"{schema}\".discovered_devices n \
         ON a.source_device_id = n.source_device_id AND a.source = 'armis' AND n.source = 'netbox'"
    ))
    .await;
    assert!(
        overlap > DEVICES as i64 * 8 / 10,
        "the sources overlap ({overlap})"
    );
    let split = scalar(format!(
        "SELECT count(*) FROM \"{schema}\".discovered_devices a JOIN \"{schema}\".discovered_devices n \
         ON a.source_device_id = n.source_device_id AND a.source = 'armis' AND n.source = 'netbox' \
         WHERE a.device_id IS DISTINCT FROM n.device_id"
    ))
    .await;
    assert_eq!(
        split, 0,
        "each overlapping pair resolves to one canonical device"
    );
    let active = "merged_into IS NULL AND deleted_at IS NULL";
    assert_eq!(
        platform.count(tenant, "ocsf_devices", active).await,
        union,
        "one device per real device"
    );
    // Canonical devices of pairs carry both sources' ids; the same numeric
    // id in both sources stays two distinct integration ids.
    let linked = scalar(format!(
        "SELECT count(*) FROM (SELECT device_id FROM \"{schema}\".device_identifiers \
         WHERE identifier_type IN ('armis_device_id', 'netbox_device_id') \
         GROUP BY device_id HAVING count(DISTINCT identifier_type) = 2) d"
    ))
    .await;
    assert_eq!(linked, overlap);
    assert_eq!(
        platform
            .count(
                tenant,
                "device_identifiers",
                "identifier_type = 'integration_id'"
            )
            .await,
        from_armis + from_netbox
    );
    assert_eq!(
        platform
            .count(tenant, "merge_audit", "action = 'blocked'")
            .await,
        0
    );
    armis.stop().await;
    netbox.stop().await;
}
