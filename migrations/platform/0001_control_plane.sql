-- Control plane. Applied once per database, with search_path set to the
-- `platform` schema (the gateway creates the schema first). Names are
-- schema-qualified so the file reads the same wherever it is run from.

-- One row: who this installation is. Guards against serving a database with
-- the state directory (root CA) of another installation.
CREATE TABLE platform.installation (
    singleton          BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    platform_tenant_id UUID NOT NULL,
    root_ca_sha256     TEXT NOT NULL,          -- hex SHA-256 of the root CA DER
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Bumped in the same transaction as every change that can alter a config
-- document (tenants, sources, sync services); GetConfig compares it with the
-- generation its cached document was built from.
CREATE TABLE platform.config_generation (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    value     BIGINT NOT NULL
);
INSERT INTO platform.config_generation (singleton, value) VALUES (true, 1);

CREATE TABLE platform.tenants (
    id                  UUID PRIMARY KEY CHECK (id <> '00000000-0000-0000-0000-000000000000'),
    slug                TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    is_platform         BOOLEAN NOT NULL DEFAULT false,
    allow_platform_sync BOOLEAN NOT NULL DEFAULT true,
    schema_name         TEXT NOT NULL UNIQUE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The reserved slug belongs to the platform tenant and to nothing else.
    CHECK ((slug = 'platform') = is_platform)
);

-- The issuing CA of each (non-platform) tenant's edge certificates. Matched
-- by the SHA-256 of its SubjectPublicKeyInfo when a client presents a chain.
CREATE TABLE platform.tenant_cas (
    tenant_id      UUID PRIMARY KEY REFERENCES platform.tenants (id) ON DELETE CASCADE,
    cert_pem       TEXT NOT NULL,
    key_ciphertext TEXT NOT NULL,              -- AES-256-GCM under the gateway secrets key
    spki_sha256    TEXT NOT NULL UNIQUE,
    not_after      TIMESTAMPTZ NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE platform.sync_services (
    id                UUID PRIMARY KEY,
    tenant_id         UUID NOT NULL REFERENCES platform.tenants (id) ON DELETE CASCADE,
    component_id      TEXT NOT NULL,
    name              TEXT NOT NULL,
    service_type      TEXT NOT NULL CHECK (service_type IN ('saas', 'on_prem')),
    is_platform_sync  BOOLEAN NOT NULL DEFAULT false,
    partition         TEXT NOT NULL DEFAULT 'default',
    endpoint          TEXT,                     -- hostname the service reported
    version           TEXT,
    os                TEXT,
    arch              TEXT,
    capabilities      TEXT[] NOT NULL DEFAULT '{}',
    registered_at     TIMESTAMPTZ,              -- first Hello; NULL = pending
    last_heartbeat_at TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, component_id)
);

-- Edge components the gateway enrolled (issued a certificate for). The
-- identity of an edge certificate takes its component type from here.
CREATE TABLE platform.components (
    tenant_id      UUID NOT NULL REFERENCES platform.tenants (id) ON DELETE CASCADE,
    component_id   TEXT NOT NULL,
    component_type TEXT NOT NULL CHECK (component_type IN ('sync', 'agent')),
    partition      TEXT NOT NULL,
    cert_sha256    TEXT NOT NULL,               -- hex SHA-256 of the issued leaf DER
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at   TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, component_id)
);

CREATE TABLE platform.onboarding_packages (
    id                 UUID PRIMARY KEY,
    tenant_id          UUID NOT NULL REFERENCES platform.tenants (id) ON DELETE CASCADE,
    component_id       TEXT NOT NULL,
    component_type     TEXT NOT NULL CHECK (component_type IN ('sync', 'agent')),
    partition          TEXT NOT NULL,
    secret_sha256      TEXT NOT NULL,           -- only the hash of the download secret
    payload_ciphertext TEXT,                    -- encrypted package; wiped once downloaded
    expires_at         TIMESTAMPTZ NOT NULL,
    downloaded_at      TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX onboarding_packages_tenant ON platform.onboarding_packages (tenant_id);

CREATE TABLE platform.integration_sources (
    id                     UUID PRIMARY KEY,
    tenant_id              UUID NOT NULL REFERENCES platform.tenants (id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    source_type            TEXT NOT NULL,
    endpoint               TEXT NOT NULL DEFAULT '',
    credentials_ciphertext TEXT,                -- AES-256-GCM; NULL = no credentials
    queries                JSONB NOT NULL DEFAULT '[]'::jsonb,
    poll_interval          TEXT,                -- Go-style durations
    discovery_interval     TEXT,
    sweep_interval         TEXT,
    partition              TEXT NOT NULL DEFAULT 'default',
    agent_id               TEXT NOT NULL DEFAULT '',
    network_blacklist      TEXT[] NOT NULL DEFAULT '{}',
    page_size              INTEGER,
    settings               JSONB NOT NULL DEFAULT '{}'::jsonb,
    adapter                JSONB,
    enabled                BOOLEAN NOT NULL DEFAULT true,
    sync_service_id        UUID NOT NULL REFERENCES platform.sync_services (id),
    -- Bumped by every change to what the source's config looks like (not by
    -- run bookkeeping): config delivery caches each source's rendered form
    -- by (id, revision).
    revision               BIGINT NOT NULL DEFAULT 1,
    -- Run bookkeeping, from the sync service's run reports.
    last_run_id            TEXT,
    last_run_started_at    TIMESTAMPTZ,
    last_sync_at           TIMESTAMPTZ,
    last_result            TEXT CHECK (last_result IN ('success', 'failed')),
    last_device_count      BIGINT,
    last_error             TEXT,
    consecutive_failures   INTEGER NOT NULL DEFAULT 0,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE INDEX integration_sources_sync_service ON platform.integration_sources (sync_service_id);

CREATE TABLE platform.admin_tokens (
    id           UUID PRIMARY KEY,
    token_sha256 TEXT NOT NULL,                 -- SHA-256 of the token secret
    scope        TEXT NOT NULL CHECK (scope IN ('platform-admin', 'tenant-admin')),
    tenant_id    UUID REFERENCES platform.tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ,
    CHECK ((scope = 'tenant-admin') = (tenant_id IS NOT NULL))
);
