-- Change stamps: which DIRE transaction last changed what a sweep config
-- reads of a device, so that a cached sweep reloads only the devices changed
-- since it was built instead of every device of its agent.
--
-- Each DIRE transaction takes one value of `device_change_seq` right after
-- the tenant's DIRE lock, and every device row it writes (inserted, IP,
-- hostname, partition, agent, sources, metadata or deletion updated, IP
-- released, merged, unmerged, or gaining or losing a staging row and so
-- possibly its agent) gets that value. A write that changes only other
-- columns (a new last_seen_time on every sync, say) keeps the old stamp. The lock orders the transactions, so
-- stamps grow in commit order: a reader that has seen every stamp up to n
-- has seen every committed change up to n, and the rows with a larger stamp
-- are exactly what changed since. A rolled-back transaction leaves a gap,
-- which is harmless. Rows written before this migration keep 0.
--
-- No index: a cached sweep's reload scans this one column (a fraction of a
-- millisecond per 10k devices), while an index would make every device
-- update a non-HOT one.
ALTER TABLE ocsf_devices ADD COLUMN change_stamp BIGINT NOT NULL DEFAULT 0;

CREATE SEQUENCE device_change_seq;
