-- A tenant's agents' sweeps depend on that tenant's integration sources only.
-- They used to be checked against the platform-wide config_generation, so an
-- edit to any tenant's source made every tenant's cached sweeps stale. This
-- per-tenant counter moves with every change to the tenant's sources (a new
-- source, a deleted one, or a new revision; run bookkeeping does not bump the
-- revision), whatever code path makes it. Each change is also announced on
-- the channel sr_sweep_refresh (delivered on commit), so every gateway
-- replica refreshes the tenant's cached sweeps; the nil replica id marks it
-- as nobody's own announcement.
ALTER TABLE platform.tenants ADD COLUMN sources_generation BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION platform.bump_tenant_sources_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE platform.tenants SET sources_generation = sources_generation + 1
         WHERE id = OLD.tenant_id;
        PERFORM pg_notify('sr_sweep_refresh', OLD.tenant_id::text || ' 00000000-0000-0000-0000-000000000000');
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.tenant_id <> OLD.tenant_id) THEN
        UPDATE platform.tenants SET sources_generation = sources_generation + 1
         WHERE id = NEW.tenant_id;
        PERFORM pg_notify('sr_sweep_refresh', NEW.tenant_id::text || ' 00000000-0000-0000-0000-000000000000');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER integration_sources_bump_sources_generation
    AFTER INSERT OR DELETE ON platform.integration_sources
    FOR EACH ROW EXECUTE FUNCTION platform.bump_tenant_sources_generation();

CREATE TRIGGER integration_sources_revision_bumps_sources_generation
    AFTER UPDATE ON platform.integration_sources
    FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION platform.bump_tenant_sources_generation();
