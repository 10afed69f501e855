-- bench/create_target_post.sql: the expert contender of the create_target benchmark: in one
-- transaction, the tables bare (bench/target_bare.sql), the load
-- (bench/migrate_handwritten_load.sql), then the keys, indexes and foreign keys
-- (bench/target_post.sql), as pg_restore and pgloader do.
--
--   psql -v office=1 -v target=t_post -f bench/create_target_post.sql

\set ON_ERROR_STOP 1

BEGIN;
\ir target_bare.sql
\ir migrate_handwritten_load.sql
\ir target_post.sql
COMMIT;
