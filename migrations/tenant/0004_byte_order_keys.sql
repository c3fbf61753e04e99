-- Byte-order collation ("C") for the identifier columns DIRE looks up and
-- writes by: device ids, identifier types and values, partitions, IPs, agent
-- ids and source device ids.
--
-- They are opaque keys, never text for people to sort, so their order only
-- has to be consistent, and byte order is the one the gateway itself uses
-- (Rust compares strings by bytes). Under the database's default collation
-- (often en_US.UTF-8; C.UTF-8 counts too before PostgreSQL 17) every index
-- comparison went through strcoll(). Measured with the dire_apply bench on a
-- C.UTF-8 database (three runs with this, two without): unchanged re-sync
-- about 8% faster, moved re-sync about 10%, raw COPY into these tables about
-- 10%; the initial sync on two connections did not move.
--
-- Queries need no change: a parameter or UNNEST column has the default
-- collation, which gives way to a column's.
--
-- Changing a column's collation rebuilds its indexes (not the table): a
-- one-off cost when an existing tenant is migrated.
ALTER TABLE device_identifiers
    ALTER COLUMN identifier_type  TYPE TEXT COLLATE "C",
    ALTER COLUMN identifier_value TYPE TEXT COLLATE "C",
    ALTER COLUMN partition        TYPE TEXT COLLATE "C",
    ALTER COLUMN device_id        TYPE TEXT COLLATE "C";

ALTER TABLE discovered_devices
    ALTER COLUMN source_device_id TYPE TEXT COLLATE "C",
    ALTER COLUMN device_id        TYPE TEXT COLLATE "C",
    ALTER COLUMN partition        TYPE TEXT COLLATE "C",
    ALTER COLUMN ip               TYPE TEXT COLLATE "C",
    ALTER COLUMN agent_id         TYPE TEXT COLLATE "C";

ALTER TABLE merge_audit
    ALTER COLUMN from_device_id TYPE TEXT COLLATE "C",
    ALTER COLUMN to_device_id   TYPE TEXT COLLATE "C",
    ALTER COLUMN partition      TYPE TEXT COLLATE "C";

-- A trigger on a column pins its type: dropped and created again as in 0002.
DROP TRIGGER device_uids_never_change ON ocsf_devices;

ALTER TABLE ocsf_devices
    ALTER COLUMN uid         TYPE TEXT COLLATE "C",
    ALTER COLUMN partition   TYPE TEXT COLLATE "C",
    ALTER COLUMN ip          TYPE TEXT COLLATE "C",
    ALTER COLUMN agent_id    TYPE TEXT COLLATE "C",
    ALTER COLUMN merged_into TYPE TEXT COLLATE "C";

CREATE TRIGGER device_uids_never_change
    BEFORE UPDATE OF uid ON ocsf_devices
    FOR EACH ROW WHEN (OLD.uid IS DISTINCT FROM NEW.uid)
    EXECUTE FUNCTION refuse_device_removal();
