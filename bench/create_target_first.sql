-- bench/create_target_first.sql: the hand-written contender of the create_target benchmark that
-- creates the uuid-keyed tables with their keys, indexes and foreign keys first
-- (bench/target.sql) and then loads one office into them (bench/migrate_handwritten_load.sql),
-- in one transaction, as migrate_tenant with create_target does it inline.
--
--   psql -v office=1 -v target=t_first -f bench/create_target_first.sql

\set ON_ERROR_STOP 1

BEGIN;
\ir target.sql
\ir migrate_handwritten_load.sql
COMMIT;
