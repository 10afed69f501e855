-- migrate_tenant: re-keying, column mapping, conflict policies, move and rollback, dry run,
-- run_job, and every bad input with its SQLSTATE. Counts and checksums are exact.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE SCHEMA crm;
CREATE TYPE crm.tier AS ENUM ('free', 'pro', 'enterprise');
CREATE DOMAIN crm."statüs" AS text CHECK (VALUE IN ('active', 'gone'));
CREATE TABLE crm.company (id int PRIMARY KEY, name text NOT NULL, tier crm.tier NOT NULL DEFAULT 'free');
CREATE TABLE crm.product (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE crm.contact (
    id int PRIMARY KEY, company_id int NOT NULL REFERENCES crm.company, manager_id int REFERENCES crm.contact,
    email text, phone text, tags text[], bio tsvector, avatar bytea, prefs jsonb, balance money,
    created timestamptz, status crm."statüs");
CREATE TABLE crm.deal (company_id int NOT NULL REFERENCES crm.company, deal_no int NOT NULL,
    contact_id int REFERENCES crm.contact, product_id int REFERENCES crm.product, amount numeric(12,2),
    PRIMARY KEY (company_id, deal_no));
CREATE TABLE crm.deal_line (company_id int NOT NULL, deal_no int NOT NULL, line int NOT NULL, note text,
    PRIMARY KEY (company_id, deal_no, line), FOREIGN KEY (company_id, deal_no) REFERENCES crm.deal);
CREATE TABLE crm.event (id int NOT NULL, contact_id int NOT NULL, at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE crm.event_2025 PARTITION OF crm.event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE crm.event_2026 PARTITION OF crm.event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
ALTER TABLE crm.event_2025 ADD FOREIGN KEY (contact_id) REFERENCES crm.contact;
ALTER TABLE crm.event ADD PRIMARY KEY (id, at);

INSERT INTO crm.company VALUES (1, 'Acme', 'pro'), (2, 'Globex', 'enterprise'), (3, 'Empty Inc', 'free'), (4, 'Crossco', 'free');
INSERT INTO crm.product SELECT g, 'product ' || g FROM generate_series(1, 5) g;
INSERT INTO crm.contact
SELECT g, CASE WHEN g <= 6 THEN 1 WHEN g <= 9 THEN 2 ELSE 4 END,
       CASE WHEN g IN (1, 7, 10) THEN NULL WHEN g <= 6 THEN 1 ELSE 7 END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE '  Person' || g || '@Example.COM ' END,
       '(+47) ' || (40000000 + g), ARRAY['t' || g, 'x'], to_tsvector('simple', 'contact number ' || g),
       decode(lpad(to_hex(g), 2, '0') || 'ff00', 'hex'), jsonb_build_object('n', g, 'nested', jsonb_build_array(g, NULL)),
       (g * 10.25)::money, timestamptz '2025-03-01 10:00+01' + g * interval '1 day',
       CASE WHEN g % 4 = 0 THEN 'gone' ELSE 'active' END
  FROM generate_series(1, 10) g;
-- tenant 4's contact 10 reports to tenant 1's contact 1: a cross-tenant reference
UPDATE crm.contact SET manager_id = 1 WHERE id = 10;
INSERT INTO crm.deal SELECT c, d, CASE WHEN c = 1 THEN d ELSE 7 END, 1 + d % 5, d * 100.5
  FROM (VALUES (1), (2)) v(c), generate_series(1, 4) d;
INSERT INTO crm.deal_line SELECT company_id, deal_no, l, 'line ' || l FROM crm.deal, generate_series(1, 3) l;
INSERT INTO crm.event SELECT g, 1 + g % 9, DATE '2025-11-01' + g * 5, 'e' || g FROM generate_series(1, 40) g;

SELECT tenant_ops.create_scope('crm', 'crm.company', 'id');
SELECT step, table_name, role, rows FROM tenant_ops.plan('crm', '1') ORDER BY step;

-- 1. keep, create_target, shared copy: the target mirrors the source exactly.
CREATE SCHEMA mirror;
SELECT tenant_ops.migrate_tenant('crm', '1', 'mirror', '{"create_target": true, "shared": "copy"}') AS job_keep \gset
SELECT step, table_name, target, role, stage, rows_total, rows_done, source_rows, target_rows, verified, rejected
  FROM tenant_ops.job_report(:job_keep) ORDER BY step;
-- Row for row identical, every type included.
SELECT (SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM crm.contact c WHERE company_id = 1)
     = (SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM mirror.contact c) AS contacts_identical,
       (SELECT md5(string_agg(e::text, '|' ORDER BY id, at)) FROM crm.event e WHERE contact_id <= 6)
     = (SELECT md5(string_agg(e::text, '|' ORDER BY id, at)) FROM mirror.event e) AS events_identical,
       (SELECT count(*) FROM mirror.deal_line) AS deal_lines;
-- The same tenant again: refused before anything is written (on_conflict error).
SELECT tenant_ops.migrate_tenant('crm', '1', 'mirror', '{"shared": "copy"}');
\echo :SQLSTATE
-- skip writes nothing new; overwrite puts changed rows back as in the source.
UPDATE mirror.contact SET email = 'changed' WHERE id = 2;
SELECT tenant_ops.migrate_tenant('crm', '1', 'mirror', '{"shared": "copy", "on_conflict": "skip"}') AS job_skip \gset
SELECT sum(rows_done) AS written_by_skip FROM tenant_ops.job_report(:job_skip) WHERE role <> 'shared';
SELECT email FROM mirror.contact WHERE id = 2;
SELECT tenant_ops.migrate_tenant('crm', '1', 'mirror', '{"shared": "copy", "on_conflict": "overwrite"}') AS job_over \gset
SELECT email FROM mirror.contact WHERE id = 2;
-- Rolling the overwrite back restores what it overwrote.
SELECT tenant_ops.rollback_migration(:job_over) IS NOT NULL AS rolled_back;
SELECT email FROM mirror.contact WHERE id = 2;
SELECT count(*) AS contacts_after_rollback FROM mirror.contact;
-- merge keeps target values where the source has NULL.
UPDATE mirror.contact SET email = 'kept' WHERE id = 3;
SELECT tenant_ops.migrate_tenant('crm', '1', 'mirror', '{"shared": "copy", "on_conflict": "merge"}') IS NOT NULL AS merged;
SELECT id, email FROM mirror.contact WHERE id IN (2, 3) ORDER BY id;

-- 2. uuid re-keying into a hand-written target with renamed tables and columns.
CREATE SCHEMA app;
CREATE TABLE app.products (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.companies (id uuid PRIMARY KEY, display_name text NOT NULL, tier text, source text);
CREATE TABLE app.people (id uuid PRIMARY KEY, company uuid NOT NULL REFERENCES app.companies, manager uuid REFERENCES app.people,
    email text, phone text, tags text[], bio tsvector, avatar bytea, prefs jsonb, balance money, created timestamptz,
    status text, masked_phone text);
CREATE TABLE app.deals (company_id uuid NOT NULL REFERENCES app.companies, deal_no int NOT NULL, contact_id uuid REFERENCES app.people,
    product_id uuid REFERENCES app.products, amount numeric(12,2), PRIMARY KEY (company_id, deal_no));
CREATE TABLE app.deal_lines (company_id uuid NOT NULL, deal_no int NOT NULL, line int NOT NULL, note text,
    PRIMARY KEY (company_id, deal_no, line), FOREIGN KEY (company_id, deal_no) REFERENCES app.deals);
CREATE TABLE app.events (id int NOT NULL, contact_id uuid NOT NULL REFERENCES app.people, at date NOT NULL, what text, PRIMARY KEY (id, at));
SELECT tenant_ops.migrate_tenant('crm', '1', 'app', $${
  "id_strategy": "uuid", "shared": "copy",
  "tables": {"company": "companies", "contact": "people", "deal": "deals", "deal_line": "deal_lines", "event": "events", "product": "products"},
  "columns": {
    "companies": {"display_name": {"from": "name", "transform": "upper"}, "source": {"value": "legacy crm"}},
    "people": {"company": "company_id", "manager": "manager_id",
               "email": {"from": "email", "transform": "normalize_email"},
               "phone": {"from": "phone", "transform": "normalize_phone"},
               "masked_phone": {"from": "phone", "transform": [{"name": "normalize_phone"}, {"name": "mask", "keep_last": 2}]}}
  }}$$) AS job_uuid \gset
SELECT step, target, rows_done, verified FROM tenant_ops.job_report(:job_uuid) ORDER BY step;
SELECT display_name, tier, source FROM app.companies;
SELECT email, phone, masked_phone, status FROM app.people ORDER BY phone LIMIT 4;
-- Every key and FK column was remapped consistently: joins through the new keys give the
-- same answers as through the old ones.
SELECT (SELECT count(*) FROM app.people p JOIN app.people m ON m.id = p.manager) AS managed_people,
       (SELECT count(*) FROM crm.contact WHERE company_id = 1 AND manager_id IS NOT NULL) AS managed_contacts,
       (SELECT count(*) FROM app.deal_lines l JOIN app.deals d USING (company_id, deal_no) JOIN app.companies c ON c.id = d.company_id) AS lines_joined,
       (SELECT count(*) FROM app.events e JOIN app.people p ON p.id = e.contact_id) AS events_joined;
-- uuid keys are computed (keyed by the database's secret), not recorded: map_id computes
-- them too, version 4 like random ones; a key no migration copied has the one it would get.
SELECT tenant_ops.map_id('crm.contact', '2') = (SELECT id FROM app.people WHERE phone = '+4740000002') AS map_id_matches,
       (SELECT count(*) FROM tenant_ops.id_map WHERE job_id = :job_uuid) AS ids_mapped,
       (SELECT bool_and(substr(id::text, 15, 1) = '4' AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')) FROM app.people) AS version_4,
       tenant_ops.map_id('crm.contact', '999') = tenant_ops.uuid4_keyed('', 'crm.contact:999') AS unknown_key_computed,
       tenant_ops.map_id('crm.contact', '2') <> tenant_ops.map_id('crm.company', '2') AS per_table;

-- 3. uuid5 is deterministic: a dry run and a real run give the same keys as the function.
CREATE SCHEMA five;
SELECT tenant_ops.migrate_tenant('crm', '2', 'five', '{"id_strategy": "uuid5", "create_target": true, "shared": "copy", "dry_run": true}') AS job_dry \gset
SELECT status, result -> 'dry_run' AS dry_run, jsonb_array_length(result -> 'tables') AS tables,
       (SELECT count(*) FROM pg_tables WHERE schemaname = 'five') AS tables_created
  FROM tenant_ops.jobs WHERE id = :job_dry;
SELECT tenant_ops.migrate_tenant('crm', '2', 'five', '{"id_strategy": "uuid5", "create_target": true, "shared": "copy"}') AS job_five \gset
SELECT (SELECT id FROM five.contact WHERE phone LIKE '%07') = tenant_ops.map_id('crm.contact', '7') AS uuid5_map_id,
       pg_typeof((SELECT id FROM five.company)) AS key_type, (SELECT count(*) FROM five.deal_line) AS deal_lines;

-- 4. cross-tenant references: refused by default, cleared with "null".
CREATE SCHEMA cross_t;
SELECT tenant_ops.migrate_tenant('crm', '4', 'cross_t', '{"create_target": true, "shared": "copy"}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '4', 'cross_t', '{"create_target": true, "shared": "copy", "cross_tenant": "null"}') IS NOT NULL AS copied;
SELECT id, company_id, manager_id FROM cross_t.contact;
-- "copy" brings the referenced row of the other tenant along, and what it needs in turn (its
-- company), never that row's own children.
CREATE SCHEMA cross_c;
SELECT tenant_ops.migrate_tenant('crm', '4', 'cross_c', '{"create_target": true, "shared": "copy", "cross_tenant": "copy", "id_strategy": "uuid"}') AS job_cc \gset
SELECT c.name AS company, count(p.*) AS contacts FROM cross_c.company c LEFT JOIN cross_c.contact p ON p.company_id = c.id GROUP BY 1 ORDER BY 1;
SELECT m.email IS NOT DISTINCT FROM (SELECT email FROM crm.contact WHERE id = 1) AS manager_is_contact_1
  FROM cross_c.contact p JOIN cross_c.contact m ON m.id = p.manager_id;
SELECT count(*) AS deals_of_acme_not_copied FROM cross_c.deal;
SELECT step, rows_total, rows_done, verified FROM tenant_ops.job_report(:job_cc) ORDER BY step;
SELECT tenant_ops.migrate_tenant('crm', '4', 'cross_c', '{"cross_tenant": "copy", "mode": "move"}');
\echo :SQLSTATE

-- 5. move, then rollback: the source is back exactly as it was.
SELECT md5(string_agg(c::text, '|' ORDER BY id)) AS contacts_before FROM crm.contact c \gset
SELECT md5(string_agg(d::text, '|' ORDER BY company_id, deal_no)) AS deals_before FROM crm.deal d \gset
CREATE SCHEMA moved;
SELECT tenant_ops.migrate_tenant('crm', '2', 'moved', '{"create_target": true, "shared": "copy", "mode": "move"}') AS job_move \gset
SELECT (SELECT count(*) FROM crm.contact WHERE company_id = 2) AS left_in_source, (SELECT count(*) FROM moved.contact) AS in_target,
       (SELECT count(*) FROM crm.company WHERE id = 2) AS company_left;
SELECT tenant_ops.rollback_migration(:job_move) -> 'source_restored' AS source_restored;
SELECT md5(string_agg(c::text, '|' ORDER BY id)) = :'contacts_before' AS contacts_restored FROM crm.contact c;
SELECT md5(string_agg(d::text, '|' ORDER BY company_id, deal_no)) = :'deals_before' AS deals_restored FROM crm.deal d;
-- the tables create_target made for the job go with its rows
SELECT count(*) AS target_tables_left FROM pg_tables WHERE schemaname = 'moved';
SELECT tenant_ops.rollback_migration(:job_move);
\echo :SQLSTATE

-- 6. deferred: CALL run_job drives it with a commit per step.
CREATE SCHEMA later;
SELECT tenant_ops.migrate_tenant('crm', '2', 'later', '{"create_target": true, "shared": "copy", "defer": true, "batch_size": 2}') AS job_later \gset
SELECT status, stage FROM tenant_ops.jobs WHERE id = :job_later;
CALL tenant_ops.run_job(:job_later);
SELECT status, stage, (SELECT count(*) FROM tenant_ops.job_log WHERE job_id = :job_later AND event = 'step') AS steps
  FROM tenant_ops.jobs WHERE id = :job_later;
SELECT table_name, rows_done, rows_total FROM tenant_ops.progress WHERE job_id = :job_later ORDER BY step;

-- 7. a transform that fails on a row: the job fails naming it, or with continue_on_error the
--    row goes to job_errors and verification accounts for it. (A scope of the root alone.)
SELECT tenant_ops.create_scope('companies', 'crm.company', 'id', '{"tables": []}');
CREATE SCHEMA dates;
CREATE TABLE dates.company (id int PRIMARY KEY, name text, tier date);
SELECT tenant_ops.migrate_tenant('companies', '3', 'dates', '{"columns": {"company": {"tier": {"from": "tier", "transform": {"name": "to_date", "format": "YYYY-MM-DD"}}}}}');
\echo :SQLSTATE
SELECT count(*) AS nothing_written FROM dates.company;
SELECT tenant_ops.migrate_tenant('companies', '3', 'dates', '{"continue_on_error": true, "columns": {"company": {"tier": {"from": "tier", "transform": {"name": "to_date", "format": "YYYY-MM-DD"}}}}}') AS job_dates \gset
SELECT table_name, source_key, reason, sqlstate, row_data FROM tenant_ops.job_errors WHERE job_id = :job_dates;
SELECT rows_total, rows_done, source_rows, target_rows, verified, rejected FROM tenant_ops.job_report(:job_dates);

-- 8. bad input: each with its own SQLSTATE, and nothing written.
SELECT count(*) AS jobs_before FROM tenant_ops.jobs \gset
SELECT tenant_ops.migrate_tenant('crm', '1', 'no_such_schema');
\echo :SQLSTATE
CREATE SCHEMA empty_target;
SELECT tenant_ops.migrate_tenant('crm', '1', 'empty_target');
\echo :SQLSTATE
CREATE TABLE empty_target.company (id int PRIMARY KEY, name text, tier crm.tier, required_col text NOT NULL);
SELECT tenant_ops.migrate_tenant('companies', '3', 'empty_target');
\echo :SQLSTATE
CREATE SCHEMA wrong_type;
CREATE TABLE wrong_type.company (id int PRIMARY KEY, name int, tier crm.tier);
SELECT tenant_ops.migrate_tenant('companies', '3', 'wrong_type');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '3', 'mirror', '{"columns": {"company": {"name": {"from": "name", "transform": "shout"}}}}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '3', 'mirror', '{"columns": {"company": {"name": {"from": "nme"}}}}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '99', 'mirror');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '3', 'mirror', '{"modee": "copy"}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '3', 'mirror', '{"mode": "move", "verify": false}');
\echo :SQLSTATE
-- A malformed uuid5 namespace is refused (it used to fall back to the scope's namespace).
SELECT tenant_ops.migrate_tenant('crm', '3', 'mirror', '{"id_strategy": "uuid5", "uuid_namespace": "6ba7b810-9dad-11d1-80b4"}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '3', 'mirror', '{"id_strategy": "uuid5", "uuid_namespace": 42}');
\echo :SQLSTATE
-- tenant_ops.uuid5 is RFC 4122 (Python's uuid.uuid5(NAMESPACE_DNS, 'python.org')).
SELECT tenant_ops.uuid5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'python.org');
-- background => true queues the job for the background workers; wait_for_job waits for it
-- (in the transaction that queued it, it cannot: no worker sees it before COMMIT).
CREATE SCHEMA bg;
BEGIN;
SELECT tenant_ops.migrate_tenant('companies', '3', 'bg', '{"create_target": true}', background => true) AS job_bg \gset
SELECT tenant_ops.wait_for_job(:job_bg);
\echo :SQLSTATE
ROLLBACK;
SELECT tenant_ops.migrate_tenant('companies', '3', 'bg', '{"create_target": true}', background => true) AS job_bg \gset
SELECT executor, status IN ('queued', 'running', 'succeeded') AS picked_up_or_waiting FROM tenant_ops.jobs WHERE id = :job_bg;
SELECT tenant_ops.wait_for_job(:job_bg, '60 seconds') AS final_status;
SELECT rows_done, verified FROM tenant_ops.job_report(:job_bg);
SELECT count(*) AS copied FROM bg.company;
SELECT tenant_ops.migrate_tenant('crm', '1', 'mirror', '{"shared": "expect", "on_conflict": "skip"}') IS NOT NULL AS shared_expect_satisfied;
CREATE SCHEMA no_products;
SELECT tenant_ops.migrate_tenant('crm', '1', 'no_products', '{"create_target": true}');
\echo :SQLSTATE
-- a deferred job holds the tenant: a second migration says which job
SELECT tenant_ops.migrate_tenant('crm', '3', 'later', '{"defer": true, "on_conflict": "skip"}') AS job_held \gset
SELECT tenant_ops.migrate_tenant('crm', '3', 'later', '{"on_conflict": "skip"}');
\echo :SQLSTATE
CALL tenant_ops.run_job(:job_held);
SELECT tenant_ops.rollback_migration(123456);
\echo :SQLSTATE
SELECT (SELECT count(*) FROM tenant_ops.jobs) - :jobs_before AS jobs_added_by_bad_input_and_run,
       (SELECT count(*) FROM empty_target.company) AS nothing_in_empty_target;
-- 9. a dry run reports every problem the real run would meet, not just the first.
INSERT INTO mirror.company VALUES (4, 'already there', 'free');
SELECT tenant_ops.migrate_tenant('crm', '4', 'mirror', '{"dry_run": true}') AS job_dry2 \gset
SELECT status, jsonb_array_length(result -> 'errors') AS problems FROM tenant_ops.jobs WHERE id = :job_dry2;
SELECT e ->> 'sqlstate' AS sqlstate, e ->> 'message' AS message
  FROM tenant_ops.jobs, jsonb_array_elements(result -> 'errors') e WHERE id = :job_dry2;
-- the real run stops at the first, with the same SQLSTATE
SELECT tenant_ops.migrate_tenant('crm', '4', 'mirror');
\echo :SQLSTATE
-- 11. verify_migration: completeness through the key mapping, with the keys that differ.
SELECT table_name, target, source_rows, target_rows, missing, different, complete FROM tenant_ops.verify_migration(:job_uuid) ORDER BY table_name::text;
-- Tamper with the target: one row gone, one row changed; both are named.
DELETE FROM app.deal_lines WHERE line = 3 AND deal_no = 4;
UPDATE app.people SET email = 'tampered' WHERE phone = '+4740000002';
SELECT table_name, source_rows, target_rows, missing, different, complete, sample
  FROM tenant_ops.verify_migration(:job_uuid) WHERE NOT complete ORDER BY table_name::text;
-- uuid5, and a rolled-back move whose target tables (create_target) were dropped with it.
SELECT bool_and(complete) AS uuid5_complete FROM tenant_ops.verify_migration(:job_five);
SELECT table_name, source_rows, target_rows, missing, complete FROM tenant_ops.verify_migration(:job_move) ORDER BY table_name::text;
\echo :SQLSTATE
SELECT * FROM tenant_ops.verify_migration(:job_dates);
SELECT tenant_ops.validate_integrity('crm', '1', '{isolation}') AS vjob \gset
SELECT tenant_ops.verify_migration(:vjob);
\echo :SQLSTATE
SELECT tenant_ops.verify_migration(987654);
\echo :SQLSTATE

-- 10. history retention: purge_history deletes finished jobs older than
--     tenant_ops.history_retention, with their logs, and nothing else.
SELECT count(*) AS finished_jobs FROM tenant_ops.jobs WHERE status IN ('succeeded', 'failed', 'cancelled', 'rolled_back') \gset
UPDATE tenant_ops.jobs SET finished_at = now() - interval '31 days' WHERE id = :job_keep;
SELECT tenant_ops.purge_history() AS purged_at_default_retention;
SELECT count(*) AS logs_left_of_purged_job FROM tenant_ops.job_log WHERE job_id = :job_keep;
SET tenant_ops.history_retention = '1d';
UPDATE tenant_ops.jobs SET finished_at = now() - interval '2 days' WHERE id = :job_skip;
SELECT tenant_ops.purge_history() AS purged_at_one_day;
RESET tenant_ops.history_retention;
SELECT (SELECT count(*) FROM tenant_ops.jobs WHERE status IN ('succeeded', 'failed', 'cancelled', 'rolled_back')) = :finished_jobs - 2 AS only_those_two_went;
-- 12. orphans: a tenant row that a NOT VALID foreign key lets point at nothing is refused
--     before anything is written (a validated FK rules orphans out and is not re-checked);
--     with continue_on_error the row goes to job_errors and the rest is copied and verified.
CREATE SCHEMA orph;
CREATE TABLE orph.club (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE orph.plan (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE orph.member (id int PRIMARY KEY, club_id int NOT NULL REFERENCES orph.club, plan_id int);
INSERT INTO orph.club VALUES (1, 'one'), (2, 'two');
INSERT INTO orph.plan VALUES (7, 'gold'), (8, 'silver');
INSERT INTO orph.member VALUES (10, 1, 7), (11, 1, 99), (12, 1, NULL), (13, 2, 8);
ALTER TABLE orph.member ADD CONSTRAINT member_plan_fk FOREIGN KEY (plan_id) REFERENCES orph.plan NOT VALID;
SELECT tenant_ops.create_scope('orph', 'orph.club', 'id');
CREATE SCHEMA orph_t;
SELECT tenant_ops.migrate_tenant('orph', '1', 'orph_t', '{"create_target": true, "shared": "copy"}');
\echo :SQLSTATE
SELECT count(*) AS tables_created FROM pg_catalog.pg_tables WHERE schemaname = 'orph_t';
SELECT tenant_ops.migrate_tenant('orph', '1', 'orph_t', '{"create_target": true, "shared": "copy", "continue_on_error": true}') AS job_orph \gset
SELECT table_name, source_key, sqlstate FROM tenant_ops.job_errors WHERE job_id = :job_orph;
SELECT step, table_name, rows_total, rows_done, verified, rejected FROM tenant_ops.job_report(:job_orph) ORDER BY step;
SELECT (SELECT count(*) FROM orph_t.club) AS clubs, (SELECT count(*) FROM orph_t.plan) AS plans,
       (SELECT string_agg(id::text, ',' ORDER BY id) FROM orph_t.member) AS members;
-- 12b. The same check where the column leads a btree index and holds few distinct values
--      (analyzed): the distinct values are read from the index one descent each and looked
--      up in the parent (prepare.rs, orphan_values_possible); the tenant's rows are read only
--      when some value has no parent. Another tenant's orphan does not stop this one; its own
--      does, named as above; none at all, and the copy goes ahead.
CREATE SCHEMA orph2;
CREATE TABLE orph2.club (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE orph2.plan (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE orph2.member (id int PRIMARY KEY, club_id int NOT NULL REFERENCES orph2.club, plan_id int);
CREATE INDEX ON orph2.member (plan_id);
INSERT INTO orph2.club VALUES (1, 'one'), (2, 'two');
INSERT INTO orph2.plan SELECT g, 'plan ' || g FROM generate_series(1, 5) g;
INSERT INTO orph2.member SELECT g, 1 + g % 2, 1 + g % 5 FROM generate_series(1, 4000) g;
INSERT INTO orph2.member VALUES (5001, 2, 99), (5002, 1, NULL);
ALTER TABLE orph2.member ADD CONSTRAINT member_plan_fk FOREIGN KEY (plan_id) REFERENCES orph2.plan NOT VALID;
ANALYZE orph2.member;
SELECT tenant_ops.create_scope('orph2', 'orph2.club', 'id');
CREATE SCHEMA orph2_a;
SELECT tenant_ops.migrate_tenant('orph2', '1', 'orph2_a', '{"create_target": true, "shared": "copy"}') IS NOT NULL AS other_tenants_orphan_ignored;
SELECT (SELECT count(*) FROM orph2_a.member) AS members, (SELECT count(*) FROM orph2_a.plan) AS plans;
CREATE SCHEMA orph2_b;
SELECT tenant_ops.migrate_tenant('orph2', '2', 'orph2_b', '{"create_target": true, "shared": "copy"}');
\echo :SQLSTATE
SELECT count(*) AS tables_created FROM pg_catalog.pg_tables WHERE schemaname = 'orph2_b';
DELETE FROM orph2.member WHERE id = 5001;
ANALYZE orph2.member;
SELECT tenant_ops.migrate_tenant('orph2', '2', 'orph2_b', '{"create_target": true, "shared": "copy"}') IS NOT NULL AS no_orphans_copied;
SELECT (SELECT count(*) FROM orph2_b.member) AS members, (SELECT count(*) FROM orph2_b.plan) AS plans;
-- 12c. The shared rows a tenant references, where the one reference to them is an indexed
--      column with few distinct values (analyzed): each value is looked for among its first
--      64 rows, the few values not found there each by index, the many by the walk over the
--      tenant's rows (prepare.rs, distinct_values.rs). Product 11's one row of club 1 comes
--      after 300 of club 2 (club 1 misses two values: each looked up), product 12 is club 2's
--      alone, 13-20 nobody's; club 3's two rows come last (it misses every value: the walk):
--      exactly the products each club's rows reference are copied. Hostile names; the
--      referencing table is named v with a
--      column x, which the scans' own aliases must not meet; the NOT VALID FK's orphan check
--      reads the same index (no value without a product: nothing more read).
CREATE SCHEMA "Shr. ""$1"";";
CREATE TABLE "Shr. ""$1"";"."Club's" ("Íd" int PRIMARY KEY, name text NOT NULL);
CREATE TABLE "Shr. ""$1"";"."Pro.duct ""x""" ("Pröd Id" int PRIMARY KEY, name text NOT NULL);
CREATE TABLE "Shr. ""$1"";".v (id int PRIMARY KEY,
    "Club ""Ref""" int NOT NULL REFERENCES "Shr. ""$1"";"."Club's",
    "$1 pröduct" int NOT NULL, x int);
ALTER TABLE "Shr. ""$1"";".v ADD CONSTRAINT "line's product" FOREIGN KEY ("$1 pröduct")
    REFERENCES "Shr. ""$1"";"."Pro.duct ""x""" NOT VALID;
CREATE INDEX ON "Shr. ""$1"";".v ("$1 pröduct");
INSERT INTO "Shr. ""$1"";"."Club's" VALUES (1, 'one'), (2, 'two'), (3, 'three');
INSERT INTO "Shr. ""$1"";"."Pro.duct ""x""" SELECT g, 'p' || g FROM generate_series(1, 20) g;
INSERT INTO "Shr. ""$1"";".v SELECT g, 1 + g % 2, 1 + g % 10, 100 + g % 7 FROM generate_series(1, 4000) g;
INSERT INTO "Shr. ""$1"";".v SELECT 5000 + g, 2, 11 FROM generate_series(1, 300) g;
INSERT INTO "Shr. ""$1"";".v VALUES (5400, 1, 11);
INSERT INTO "Shr. ""$1"";".v SELECT 6000 + g, 2, 12 FROM generate_series(1, 50) g;
INSERT INTO "Shr. ""$1"";".v VALUES (7001, 3, 3), (7002, 3, 11);
ANALYZE "Shr. ""$1"";".v;
SELECT tenant_ops.create_scope('shr', '"Shr. ""$1"";"."Club''s"', 'Íd');
CREATE SCHEMA shr_1;
CREATE SCHEMA shr_2;
CREATE SCHEMA shr_3;
SELECT tenant_ops.migrate_tenant('shr', '1', 'shr_1', '{"create_target": true, "shared": "copy"}') IS NOT NULL AS club_1;
SELECT tenant_ops.migrate_tenant('shr', '2', 'shr_2', '{"create_target": true, "shared": "copy"}') IS NOT NULL AS club_2;
SELECT tenant_ops.migrate_tenant('shr', '3', 'shr_3', '{"create_target": true, "shared": "copy"}') IS NOT NULL AS club_3;
SELECT (SELECT string_agg("Pröd Id"::text, ',' ORDER BY "Pröd Id") FROM shr_1."Pro.duct ""x""") AS club_1_products,
       (SELECT count(*) FROM shr_1.v) AS club_1_lines,
       (SELECT string_agg("Pröd Id"::text, ',' ORDER BY "Pröd Id") FROM shr_2."Pro.duct ""x""") AS club_2_products,
       (SELECT count(*) FROM shr_2.v) AS club_2_lines,
       (SELECT string_agg("Pröd Id"::text, ',' ORDER BY "Pröd Id") FROM shr_3."Pro.duct ""x""") AS club_3_products,
       (SELECT count(*) FROM shr_3.v) AS club_3_lines;
RESET client_min_messages;
-- new_tenant (a clone) with an integer tenant key: the copy takes the new key in the root and
-- in every reference to it (issue 11: 42804, CASE types integer and text cannot be matched).
CREATE SCHEMA clone_src;
CREATE TABLE clone_src.org (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE clone_src.member (id int PRIMARY KEY, org_id int NOT NULL REFERENCES clone_src.org, name text);
INSERT INTO clone_src.org VALUES (1, 'one'), (2, 'two');
INSERT INTO clone_src.member VALUES (10, 1, 'a'), (11, 1, 'b'), (20, 2, 'c');
CREATE SCHEMA clone_dst;
SELECT tenant_ops.create_scope('clones', 'clone_src.org', 'id');
SELECT tenant_ops.migrate_tenant('clones', '1', 'clone_dst', '{"create_target": true, "new_tenant": "9"}') AS clone_job \gset
SELECT status, error FROM tenant_ops.jobs WHERE id = :clone_job;
SELECT * FROM clone_dst.org ORDER BY id;
SELECT * FROM clone_dst.member ORDER BY id;
-- A new tenant that is not a value of the key's type is refused.
SELECT tenant_ops.migrate_tenant('clones', '2', 'clone_dst', '{"new_tenant": "nine"}');
\echo :SQLSTATE
SELECT count(*) FROM clone_dst.org;
-- ... and with UUID keys the clone's namespace gives it keys of its own.
CREATE SCHEMA clone_uuid;
CREATE TABLE clone_uuid.org (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE clone_uuid.member (id uuid PRIMARY KEY, org_id uuid NOT NULL REFERENCES clone_uuid.org, name text);
SELECT tenant_ops.migrate_tenant('clones', '1', 'clone_uuid', '{"id_strategy": "uuid5", "new_tenant": "9"}') AS u1 \gset
SELECT tenant_ops.migrate_tenant('clones', '1', 'clone_uuid', '{"id_strategy": "uuid5", "new_tenant": "8"}') AS u2 \gset
SELECT status, count(*) FROM tenant_ops.jobs WHERE id IN (:u1, :u2) GROUP BY status;
SELECT count(*) AS orgs, count(DISTINCT name) AS names FROM clone_uuid.org;
SELECT count(*) AS members_resolving FROM clone_uuid.member m JOIN clone_uuid.org o ON o.id = m.org_id;
-- A tenant key that is not the root's primary key (org.code), referenced by a child: a clone
-- re-keys org.id but writes the new tenant into code and into every reference to it (the
-- planner looked code's values up in id's key mapping and wrote NULL: 23502).
CREATE SCHEMA code_src;
CREATE TABLE code_src.org (id int PRIMARY KEY, code text NOT NULL UNIQUE, name text);
CREATE TABLE code_src.member (id int PRIMARY KEY, org_code text NOT NULL REFERENCES code_src.org (code),
                              org_id int REFERENCES code_src.org, name text);
INSERT INTO code_src.org VALUES (1, 'A', 'one'), (2, 'B', 'two');
INSERT INTO code_src.member VALUES (10, 'A', 1, 'a'), (11, 'A', NULL, 'b'), (20, 'B', 2, 'c');
SELECT tenant_ops.create_scope('codes', 'code_src.org', 'code', '{"owner": {"code_src.member": "member_org_code_fkey"}}');
CREATE SCHEMA code_dst;
SELECT tenant_ops.migrate_tenant('codes', 'A', 'code_dst', '{"create_target": true, "id_strategy": "uuid5", "new_tenant": "Z"}') AS code_job \gset
SELECT status, error FROM tenant_ops.jobs WHERE id = :code_job;
SELECT o.code, o.name, pg_typeof(o.id) AS id_type FROM code_dst.org o;
SELECT m.org_code, m.name, m.org_id = o.id AS org_id_mapped
  FROM code_dst.member m LEFT JOIN code_dst.org o ON o.id = m.org_id ORDER BY m.name;
-- create_target reproduces the source's defaults and CHECK constraints, except where they
-- would not mean the same, a check on a column re-keyed to uuid (named in the job log); a
-- re-keyed primary key draws new uuids, a kept serial or identity key becomes an identity of
-- the target's own, moved past the keys loaded.
CREATE SCHEMA extras_src;
CREATE TYPE extras_src.mood AS ENUM ('calm', 'busy');
CREATE TABLE extras_src.shop (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'unnamed',
    mood extras_src.mood DEFAULT 'calm', opened date DEFAULT CURRENT_DATE,
    CONSTRAINT shop_name_check CHECK (length(name) BETWEEN 1 AND 40), CHECK (id > 0));
CREATE TABLE extras_src.sale (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    shop_id int NOT NULL REFERENCES extras_src.shop, qty int NOT NULL DEFAULT 1 CHECK (qty > 0),
    total numeric(8,2) CHECK (total >= 0));
INSERT INTO extras_src.shop (name) VALUES ('north'), ('south');
INSERT INTO extras_src.sale (shop_id, qty, total) VALUES (1, 2, 9.50), (1, 1, 3), (2, 5, 0);
SELECT tenant_ops.create_scope('extras', 'extras_src.shop', 'id');
CREATE SCHEMA extras_keep;
CREATE SCHEMA extras_uuid;
SELECT tenant_ops.migrate_tenant('extras', '1', 'extras_keep', '{"create_target": true}') AS ex_keep \gset
SELECT tenant_ops.migrate_tenant('extras', '1', 'extras_uuid', '{"create_target": true, "id_strategy": "uuid5"}') AS ex_uuid \gset
SELECT status FROM tenant_ops.jobs WHERE id IN (:ex_keep, :ex_uuid);
SELECT n.nspname, c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid) AS default_expr
  FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
 WHERE n.nspname IN ('extras_keep', 'extras_uuid') ORDER BY 1, 2, 3;
SELECT n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('extras_keep', 'extras_uuid') AND k.contype = 'c' ORDER BY 1, 2, 3;
SELECT j.id = :ex_uuid AS uuid_job, g.table_name, jsonb_array_elements_text(g.details->'not_reproduced') AS not_reproduced
  FROM tenant_ops.job_log g JOIN tenant_ops.jobs j ON j.id = g.job_id
 WHERE g.job_id IN (:ex_keep, :ex_uuid) AND g.event = 'target.created' AND g.details ? 'not_reproduced'
 ORDER BY 1, 2, 3;
-- The checks hold in the target: a sale of no items is refused, a default fills a column.
INSERT INTO extras_keep.sale (id, shop_id, qty) VALUES (100, 1, 0);
\echo :SQLSTATE
INSERT INTO extras_uuid.shop (name) VALUES (DEFAULT) RETURNING name, mood, pg_typeof(id);
INSERT INTO extras_keep.shop (name) VALUES ('new') RETURNING id, name;
INSERT INTO extras_keep.sale (shop_id) VALUES (1) RETURNING id, qty;
-- A target made by hand with a serial key: the migration moves its sequence too.
CREATE SCHEMA extras_hand;
CREATE TABLE extras_hand.shop (id serial PRIMARY KEY, name text, mood extras_src.mood, opened date);
CREATE TABLE extras_hand.sale (id serial PRIMARY KEY, shop_id int REFERENCES extras_hand.shop, qty int, total numeric);
SELECT tenant_ops.migrate_tenant('extras', '2', 'extras_hand') IS NOT NULL AS migrated;
SELECT pg_sequence_last_value('extras_hand.shop_id_seq') AS shop_seq, pg_sequence_last_value('extras_hand.sale_id_seq') AS sale_seq;
-- A dry run moves no sequence (setval is not rolled back with the run).
SELECT setval('extras_hand.shop_id_seq', 1);
SELECT tenant_ops.migrate_tenant('extras', '2', 'extras_hand', '{"dry_run": true, "on_conflict": "skip"}') IS NOT NULL AS dry;
SELECT pg_sequence_last_value('extras_hand.shop_id_seq') AS shop_seq_after_dry_run;
