-- bench/migrate_handwritten.sql: the baseline of the migration benchmark. What a DBA would write
-- by hand to copy one office of legacy.dispatch_* into a uuid-keyed target (bench/target.sql)
-- in one transaction: a mapping table old id → gen_random_uuid() per re-keyed table (indexed
-- and analyzed), then one INSERT … SELECT per table in dependency order, joining the mappings.
--
--   psql -v office=1 -v target=t_hand -f bench/migrate_handwritten.sql
--
-- bench/migrate.sh times it from BEGIN to COMMIT.

\set ON_ERROR_STOP 1

BEGIN;
\ir migrate_handwritten_load.sql
COMMIT;
