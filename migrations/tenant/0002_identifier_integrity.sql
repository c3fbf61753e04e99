-- Identifiers no longer carry a foreign key to their device. The key checked
-- each identifier row on its own and locked its device row (FOR KEY SHARE,
-- which rewrites the device tuple): at two identifiers per device that was a
-- sixth of an initial sync and a third of a raw COPY of the same rows. A
-- statement-level check (one anti-join per statement) measured nearly as
-- slow, so the guarantee now comes from two sides:
--
-- - DIRE, the only writer of identifiers, refuses a plan with an identifier
--   whose device neither exists nor is created by the same plan
--   (`Plan::dangling_identifier`), before writing anything;
-- - a device is never deleted and its uid never changes (merges and
--   deletions are marked on the row); both are refused here, so an
--   identifier that pointed at a device always will.
ALTER TABLE device_identifiers DROP CONSTRAINT device_identifiers_device_id_fkey;

-- SET search_path FROM CURRENT: the function resolves names in this tenant's
-- schema (the migration's search_path), whatever the caller's is.
CREATE FUNCTION refuse_device_removal() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'device % cannot be deleted or renamed: mark it deleted (deleted_at) or merged (merged_into) instead',
        OLD.uid
        USING ERRCODE = 'restrict_violation', TABLE = 'ocsf_devices';
END $$;

CREATE TRIGGER devices_are_never_deleted
    BEFORE DELETE ON ocsf_devices
    FOR EACH ROW EXECUTE FUNCTION refuse_device_removal();

CREATE TRIGGER device_uids_never_change
    BEFORE UPDATE OF uid ON ocsf_devices
    FOR EACH ROW WHEN (OLD.uid IS DISTINCT FROM NEW.uid)
    EXECUTE FUNCTION refuse_device_removal();
