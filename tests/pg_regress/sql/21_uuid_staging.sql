-- Recorded keys (id_strategy uuid7: time-ordered keys are drawn, not computed), inline: a
-- re-keyed table copied whole gets its new ids from the copy statement itself, which writes
-- them to tenant_ops.id_map and stages them in a temporary table of the transaction that the
-- later tables' lookups join (src/migrate/stage.rs).
-- Checked here: id_map holds exactly one mapping per copied key, each the key the target row
-- got; every foreign key resolves through the new keys (one whose column type differs from
-- the key's, bigint -> int, is joined on the key's text rather than the staged value); map_id
-- answers; no staging table outlives the transaction; a second tenant (whose tables are mapped
-- before) takes the same path; a rollback works from id_map. Then id_strategy uuid, whose
-- keys are computed (src/migrate/keyed_uuid.rs): none recorded, and a database whose
-- extension predates its secret is refused.
SET client_min_messages = warning;
CREATE SCHEMA stg;
CREATE TABLE stg.org (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE stg.team (id int PRIMARY KEY, org int NOT NULL REFERENCES stg.org, name text);
CREATE TABLE stg.member (id bigint PRIMARY KEY, team int NOT NULL REFERENCES stg.team, name text);
CREATE TABLE stg.note (id int PRIMARY KEY, member bigint NOT NULL REFERENCES stg.member, about_team bigint REFERENCES stg.team);
INSERT INTO stg.org VALUES (1, 'one'), (2, 'two');
INSERT INTO stg.team SELECT g, 1 + (g > 3)::int, 't' || g FROM generate_series(1, 5) g;
INSERT INTO stg.member SELECT g, 1 + (g % 5), 'm' || g FROM generate_series(1, 20) g;
INSERT INTO stg.note SELECT g, 1 + (g % 20), NULL FROM generate_series(1, 40) g;
UPDATE stg.note n SET about_team = m.team FROM stg.member m WHERE m.id = n.member AND n.id % 2 = 0;
-- Planner statistics: in READ COMMITTED a child is selected by its parent's staged keys only
-- where the tenant holds at least a twentieth of the parent's rows (copy.rs, owner_join).
ANALYZE stg.org, stg.team, stg.member, stg.note;
SELECT tenant_ops.create_scope('stg', 'stg.org', 'id', '{"owner": {"stg.note": "note_member_fkey"}}') AS scope;
CREATE SCHEMA stg_t;
SELECT tenant_ops.migrate_tenant('stg', '1', 'stg_t', '{"id_strategy": "uuid7", "create_target": true}') AS job1 \gset
SELECT step, target, rows_done, verified FROM tenant_ops.job_report(:job1) ORDER BY step;
-- One mapping per copied key, and it is the key the target row holds.
SELECT m.source, count(*) AS mapped,
       count(*) FILTER (WHERE m.new_id IN (SELECT id FROM stg_t.org UNION ALL SELECT id FROM stg_t.team
                                           UNION ALL SELECT id FROM stg_t.member UNION ALL SELECT id FROM stg_t.note)) AS in_target
  FROM tenant_ops.id_map m WHERE m.job_id = :job1 GROUP BY m.source ORDER BY m.source::text;
-- Every reference resolves through the new keys, the bigint one included.
SELECT (SELECT count(*) FROM stg_t.team t JOIN stg_t.org o ON o.id = t.org) AS teams_joined,
       (SELECT count(*) FROM stg_t.member m JOIN stg_t.team t ON t.id = m.team) AS members_joined,
       (SELECT count(*) FROM stg_t.note n JOIN stg_t.member m ON m.id = n.member) AS notes_joined,
       (SELECT count(*) FROM stg_t.note n JOIN stg_t.team t ON t.id = n.about_team) AS about_joined,
       (SELECT count(*) FROM stg.note n JOIN stg.member m ON m.id = n.member JOIN stg.team t ON t.id = m.team
         WHERE t.org = 1 AND n.about_team IS NOT NULL) AS about_expected;
SELECT tenant_ops.map_id('stg.member', '5') = (SELECT id FROM stg_t.member WHERE name = 'm5') AS map_id_matches,
       (SELECT count(*) FROM pg_catalog.pg_class WHERE relname LIKE '\_\_tenant\_ops\_keys\_%') AS staging_tables_left;
-- The next tenant, inside a transaction of the caller's (its tables are mapped before: the
-- keys of this tenant are looked up in id_map by the same statement, none found, all fresh):
-- the staging tables exist until the transaction ends.
BEGIN;
CREATE SCHEMA stg_t2;
SELECT tenant_ops.migrate_tenant('stg', '2', 'stg_t2', '{"id_strategy": "uuid7", "create_target": true}') IS NOT NULL AS copied;
SELECT count(*) FILTER (WHERE relkind = 'r') AS staged_in_transaction,
       count(*) FILTER (WHERE relkind = 'i') AS their_indexes
  FROM pg_catalog.pg_class WHERE relname LIKE '\_\_tenant\_ops\_keys\_%';
COMMIT;
SELECT count(*) AS staging_tables_left FROM pg_catalog.pg_class WHERE relname LIKE '\_\_tenant\_ops\_keys\_%';
SELECT (SELECT count(*) FROM stg_t2.member m JOIN stg_t2.team t ON t.id = m.team) AS members_joined,
       (SELECT count(*) FROM stg_t2.note n JOIN stg_t2.team t ON t.id = n.about_team) AS about_joined;
-- A rollback removes the job's rows and the tables it made; its mappings stay while another
-- live migration of the same tables relies on them (job 2's, see undo.rs).
SELECT tenant_ops.rollback_migration(:job1) IS NOT NULL AS rolled_back;
SELECT (SELECT count(*) FROM tenant_ops.id_map WHERE job_id = :job1) AS job1_mappings,
       pg_catalog.to_regclass('stg_t.member') IS NULL AS job1_tables_dropped,
       (SELECT count(*) FROM tenant_ops.id_map WHERE job_id = :job1 + 1) AS job2_mappings,
       (SELECT count(*) FROM stg_t2.member) AS job2_members;
-- In REPEATABLE READ every statement reads one snapshot: the tables whose owner's keys are
-- staged (member, note) are selected by joining those keys instead of their tenant filter
-- (copy.rs, owner_join). The same rows: counts against the source's, every reference
-- resolves, verify_migration finds the copy complete.
BEGIN ISOLATION LEVEL REPEATABLE READ;
CREATE SCHEMA stg_t3;
SELECT tenant_ops.migrate_tenant('stg', '2', 'stg_t3', '{"id_strategy": "uuid7", "create_target": true}') AS job3 \gset
COMMIT;
SELECT (SELECT count(*) FROM stg_t3.team) AS teams,
       (SELECT count(*) FROM stg.team WHERE org = 2) AS teams_expected,
       (SELECT count(*) FROM stg_t3.member m JOIN stg_t3.team t ON t.id = m.team) AS members_joined,
       (SELECT count(*) FROM stg.member m JOIN stg.team t ON t.id = m.team WHERE t.org = 2) AS members_expected,
       (SELECT count(*) FROM stg_t3.note n JOIN stg_t3.member m ON m.id = n.member) AS notes_joined,
       (SELECT count(*) FROM stg.note n JOIN stg.member m ON m.id = n.member JOIN stg.team t ON t.id = m.team
         WHERE t.org = 2) AS notes_expected;
SELECT target, source_rows, target_rows, missing, different, complete
  FROM tenant_ops.verify_migration(:job3) ORDER BY target;
SELECT table_name, rows, message FROM tenant_ops.job_log
 WHERE job_id = :job3 AND event = 'step' ORDER BY id;
-- READ COMMITTED (job 2 above) joins the staged keys too (member, note), the parents joined
-- looked at for rows written since the migration began once the copy is done (changes.rs,
-- late_parents; a late pair makes it fail: e2e concurrent_change).
SELECT table_name, message FROM tenant_ops.job_log
 WHERE job_id = :job1 + 1 AND event = 'step' AND message IS NOT NULL ORDER BY id;
-- Tables whose size the planner does not know (never analyzed) keep their filters there: the
-- look for late parents reads the whole parent table, taken only where that is in proportion.
CREATE SCHEMA stg_u;
CREATE TABLE stg_u.org (id int PRIMARY KEY);
CREATE TABLE stg_u.team (id int PRIMARY KEY, org int NOT NULL REFERENCES stg_u.org);
INSERT INTO stg_u.org VALUES (1), (2);
CREATE TABLE stg_u.member (id int PRIMARY KEY, team int NOT NULL REFERENCES stg_u.team);
INSERT INTO stg_u.team SELECT g, 1 + g % 2 FROM generate_series(1, 10) g;
INSERT INTO stg_u.member SELECT g, 1 + g % 10 FROM generate_series(1, 30) g;
SELECT tenant_ops.create_scope('stg_u', 'stg_u.org', 'id') AS scope_u;
CREATE SCHEMA stg_u_t;
SELECT tenant_ops.migrate_tenant('stg_u', '1', 'stg_u_t', '{"id_strategy": "uuid7", "create_target": true}') AS job_u \gset
SELECT (SELECT count(*) FROM stg_u_t.member) AS members,
       (SELECT count(*) FROM tenant_ops.job_log WHERE job_id = :job_u AND event = 'step' AND message IS NOT NULL) AS joined_steps;
-- Analyzed, tenant 2's members are selected by its staged teams (half of all teams).
ANALYZE stg_u.org, stg_u.team, stg_u.member;
CREATE SCHEMA stg_u_t2;
SELECT tenant_ops.migrate_tenant('stg_u', '2', 'stg_u_t2', '{"id_strategy": "uuid7", "create_target": true}') AS job_u2 \gset
SELECT (SELECT count(*) FROM stg_u_t2.member) AS members,
       (SELECT string_agg(table_name::text, ', ') FROM tenant_ops.job_log
         WHERE job_id = :job_u2 AND event = 'step' AND message IS NOT NULL) AS joined;
-- The keys of a clone from a backup come from tenant_ops.uuid4() (the operating system's
-- randomness drawn in blocks, src/migrate/uuid4.rs): version 4, RFC variant, no two alike
-- across many blocks.
SELECT count(DISTINCT u) AS distinct_of_5000,
       bool_and(substr(u::text, 15, 1) = '4') AS version_4,
       bool_and(substr(u::text, 20, 1) IN ('8', '9', 'a', 'b')) AS rfc_variant
  FROM (SELECT tenant_ops.uuid4() AS u FROM generate_series(1, 5000)) x;
SELECT count(*) AS keys, bool_and(substr(id::text, 15, 1) = '7') AS version_7 FROM stg_t3.member;
-- id_strategy uuid: keys computed from the legacy key under the database's secret, so the
-- same in every target (a tenant migrated twice, or shared rows), none recorded in id_map.
CREATE SCHEMA stg_k1;
CREATE SCHEMA stg_k2;
SELECT tenant_ops.migrate_tenant('stg', '1', 'stg_k1', '{"id_strategy": "uuid", "create_target": true}') AS job_k1 \gset
SELECT tenant_ops.migrate_tenant('stg', '1', 'stg_k2', '{"id_strategy": "uuid", "create_target": true}') AS job_k2 \gset
SELECT (SELECT count(*) FROM tenant_ops.id_map WHERE job_id IN (:job_k1, :job_k2)) AS recorded,
       (SELECT count(*) FROM stg_k1.member a JOIN stg_k2.member b USING (id, team, name)) AS same_members,
       (SELECT count(*) FROM stg_k1.member) AS members,
       (SELECT count(*) FROM stg_k1.note n JOIN stg_k1.member m ON m.id = n.member) AS notes_joined,
       (SELECT bool_and(substr(id::text, 15, 1) = '4' AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b'))
          FROM stg_k1.member) AS version_4,
       (SELECT count(*) FROM tenant_ops.id_secret) AS secrets;
-- Not readable by the roles of the extension (only its owner reads the secret).
SELECT has_table_privilege('tenant_ops_admin', 'tenant_ops.id_secret', 'SELECT') AS admin_reads_secret;
-- A database whose extension an earlier build made without tenant_ops.id_secret (dropped
-- here, in a transaction rolled back): a uuid migration is refused before anything is written.
BEGIN;
ALTER EXTENSION pg_tenant_ops DROP TABLE tenant_ops.id_secret;
DROP TABLE tenant_ops.id_secret;
CREATE SCHEMA stg_k3;
\set VERBOSITY sqlstate
SELECT tenant_ops.migrate_tenant('stg', '1', 'stg_k3', '{"id_strategy": "uuid", "create_target": true}');
\set VERBOSITY default
ROLLBACK;
BEGIN;
ALTER EXTENSION pg_tenant_ops DROP TABLE tenant_ops.id_secret;
DROP TABLE tenant_ops.id_secret;
CREATE SCHEMA stg_k3;
SELECT tenant_ops.migrate_tenant('stg', '1', 'stg_k3', '{"id_strategy": "uuid", "create_target": true}');
ROLLBACK;
-- A secret drawn in a savepoint rolled back is not the one a later migration of the same
-- transaction draws and stores: the keys that migration writes are those of the stored
-- secret (map_id, in a later transaction, computes the same ones).
BEGIN;
DELETE FROM tenant_ops.id_secret;
CREATE SCHEMA stg_k4;
CREATE SCHEMA stg_k5;
SAVEPOINT first_draw;
SELECT tenant_ops.migrate_tenant('stg', '1', 'stg_k4', '{"id_strategy": "uuid", "create_target": true}') IS NOT NULL AS copied;
ROLLBACK TO SAVEPOINT first_draw;
SELECT tenant_ops.migrate_tenant('stg', '1', 'stg_k5', '{"id_strategy": "uuid", "create_target": true}') IS NOT NULL AS copied;
COMMIT;
SELECT count(*) AS members_keyed_by_the_stored_secret
  FROM stg.member s JOIN stg_k5.member m ON m.id = tenant_ops.map_id('stg.member', s.id::text);
RESET client_min_messages;
