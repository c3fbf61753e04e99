-- Tenant data plane. Applied to every tenant schema (search_path set to the
-- tenant schema only), at tenant creation and at gateway startup. Table names
-- are unqualified on purpose: the same file serves every tenant.

-- Canonical devices, one row per real device (DIRE's output).
CREATE TABLE ocsf_devices (
    uid               TEXT PRIMARY KEY,                 -- sr:<uuid>
    partition         TEXT NOT NULL DEFAULT 'default',
    ip                TEXT,                             -- current primary IP
    mac               TEXT,                             -- primary MAC, AA:BB:CC:DD:EE:FF
    hostname          TEXT,
    device_type       TEXT,
    vendor_name       TEXT,
    model             TEXT,
    os_name           TEXT,
    serial_number     TEXT,
    agent_id          TEXT,                             -- agent assigned to monitor it
    gateway_id        TEXT,
    is_available      BOOLEAN,
    confidence        INTEGER,
    discovery_sources TEXT[] NOT NULL DEFAULT '{}',     -- union of sources
    metadata          JSONB NOT NULL DEFAULT '{}'::jsonb,
    first_seen_time   TIMESTAMPTZ NOT NULL,
    last_seen_time    TIMESTAMPTZ NOT NULL,
    created_time      TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified_time     TIMESTAMPTZ NOT NULL DEFAULT now(),
    merged_into       TEXT REFERENCES ocsf_devices (uid),
    merged_at         TIMESTAMPTZ,
    deleted_at        TIMESTAMPTZ
);

-- At most one active device holds an IP in a partition. Service components
-- (`serviceradar:` ids: agents, gateways, sync services) are not inventory
-- devices: they keep the IP they report without competing with the device
-- an integration reports on the same host. DIRE's queries repeat this
-- predicate verbatim so the planner can use the index.
CREATE UNIQUE INDEX ocsf_devices_active_ip
    ON ocsf_devices (partition, ip)
    WHERE ip IS NOT NULL AND merged_into IS NULL AND deleted_at IS NULL
      AND uid NOT LIKE 'serviceradar:%';

CREATE INDEX ocsf_devices_agent ON ocsf_devices (agent_id)
    WHERE agent_id IS NOT NULL AND merged_into IS NULL AND deleted_at IS NULL;

CREATE INDEX ocsf_devices_merged_into ON ocsf_devices (merged_into)
    WHERE merged_into IS NOT NULL;

-- Strong identifiers pointing at canonical devices.
CREATE TABLE device_identifiers (
    identifier_type  TEXT NOT NULL,   -- agent_id, armis_device_id, integration_id, netbox_device_id, mac
    identifier_value TEXT NOT NULL,
    partition        TEXT NOT NULL,
    device_id        TEXT NOT NULL REFERENCES ocsf_devices (uid),
    confidence       TEXT NOT NULL,   -- strong | medium
    source           TEXT,
    first_seen       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (identifier_type, identifier_value, partition)
);

CREATE INDEX device_identifiers_device ON device_identifiers (device_id);

-- Staging: one row per source device, as the integration last reported it.
CREATE TABLE discovered_devices (
    integration_source_id UUID NOT NULL,
    source_device_id      TEXT NOT NULL,      -- the source's own id (integration_id)
    source                TEXT NOT NULL,      -- integration type
    device_id             TEXT,               -- resolved canonical sr: id
    partition             TEXT NOT NULL DEFAULT 'default',
    ip                    TEXT,
    ip_addresses          TEXT[] NOT NULL DEFAULT '{}',
    mac_addresses         TEXT[] NOT NULL DEFAULT '{}',
    hostname              TEXT,
    device_type           TEXT,
    agent_id              TEXT,
    metadata              JSONB NOT NULL DEFAULT '{}'::jsonb,
    raw_data              JSONB,
    sync_run_id           TEXT,               -- run that last changed the row
    -- Fingerprint of the staged content, written by DIRE so that a re-sync
    -- of unchanged devices skips the row without writing or locking it.
    content_hash          TEXT,
    first_seen            TIMESTAMPTZ NOT NULL,
    last_seen             TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_source_id, source_device_id)
);

CREATE INDEX discovered_devices_device ON discovered_devices (device_id);

-- Every merge, and every merge DIRE refused, with its evidence.
CREATE TABLE merge_audit (
    id             BIGSERIAL PRIMARY KEY,
    from_device_id TEXT NOT NULL,
    to_device_id   TEXT NOT NULL,
    action         TEXT NOT NULL,      -- merged | blocked
    reason         TEXT NOT NULL,      -- e.g. shared_strong_identifier, mac_only_conflict, medium_confidence_only
    evidence       JSONB NOT NULL,
    partition      TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX merge_audit_devices ON merge_audit (from_device_id, to_device_id);
