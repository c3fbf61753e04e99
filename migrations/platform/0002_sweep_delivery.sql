-- Bumped in the same transaction as every ingested stream that changed a
-- tenant's devices: agents' cached sweep configs are rebuilt only when their
-- tenant's devices (or, via config_generation, its sources) changed.
ALTER TABLE platform.tenants ADD COLUMN data_generation BIGINT NOT NULL DEFAULT 0;
