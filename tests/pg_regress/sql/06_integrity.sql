-- validate_integrity: orphans (NOT VALID FKs and FKs declared on one partition included),
-- duplicate keys where nothing prevents them, and cross-tenant references; a root's
-- self-reference and references into shared data are never violations.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE SCHEMA vi;
CREATE TABLE vi.firm (id int PRIMARY KEY, name text, boss_firm int REFERENCES vi.firm);
CREATE TABLE vi.country (code text PRIMARY KEY);
CREATE TABLE vi.team (id int PRIMARY KEY, firm_id int NOT NULL REFERENCES vi.firm, country text REFERENCES vi.country);
CREATE TABLE vi.member (id int PRIMARY KEY, team_id int NOT NULL REFERENCES vi.team, buddy int REFERENCES vi.member);
CREATE TABLE vi.note (member_id int, body text);   -- no primary key
CREATE TABLE vi.visit (id int NOT NULL, member_id int NOT NULL, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE vi.visit_a PARTITION OF vi.visit FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE vi.visit_b PARTITION OF vi.visit FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO vi.country VALUES ('NO'), ('SE');
INSERT INTO vi.firm VALUES (1, 'one', NULL), (2, 'two', 1), (3, 'three', 1);  -- firm 2's boss is firm 1: fine
INSERT INTO vi.team VALUES (10, 1, 'NO'), (20, 2, 'SE'), (30, 3, 'NO');
INSERT INTO vi.member SELECT g, CASE WHEN g <= 4 THEN 10 WHEN g <= 8 THEN 20 ELSE 30 END, NULL FROM generate_series(1, 12) g;
UPDATE vi.member SET buddy = 2 WHERE id = 1;   -- same tenant: fine
UPDATE vi.member SET buddy = 1 WHERE id = 6;   -- tenant 2 → tenant 1: isolation
UPDATE vi.member SET buddy = 2 WHERE id = 7;   -- tenant 2 → tenant 1 again
INSERT INTO vi.note VALUES (1, 'a'), (1, 'a'), (1, 'a'), (5, 'b'), (5, 'c');   -- two duplicates of (1, 'a')
INSERT INTO vi.visit VALUES (1, 1, '2025-03-01'), (2, 5, '2025-04-01'), (3, 9, '2026-02-01'), (4, 99, '2025-05-01'), (5, 98, '2026-03-01');
-- The orphan member 99 under an FK declared on one partition only, added NOT VALID.
ALTER TABLE vi.visit_a ADD CONSTRAINT visit_a_member_fk FOREIGN KEY (member_id) REFERENCES vi.member NOT VALID;
-- A team pointing at a country that does not exist, under a NOT VALID FK of the shared side.
ALTER TABLE vi.team DROP CONSTRAINT team_country_fkey;
INSERT INTO vi.team VALUES (40, 3, 'XX');
ALTER TABLE vi.team ADD CONSTRAINT team_country_fkey FOREIGN KEY (country) REFERENCES vi.country NOT VALID;
SELECT tenant_ops.create_scope('vi', 'vi.firm', 'id',
  '{"links": [{"name": "note_member", "child": "vi.note", "columns": ["member_id"], "parent": "vi.member"}]}');

-- All tenants in one pass: exactly the planted problems, attributed to their tenants.
SELECT tenant_ops.validate_integrity('vi') AS job_all \gset
SELECT check_name, table_name, constraint_name, tenant, other_tenant, count, sample
  FROM tenant_ops.integrity_issues WHERE job_id = :job_all ORDER BY check_name, table_name::text, tenant;
SELECT result -> 'by_check' AS by_check, result -> 'bad_rows' AS bad_rows, result -> 'score' AS score
  FROM tenant_ops.jobs WHERE id = :job_all;
-- Per tenant: the orphan visits belong to nobody (their member does not exist), so no tenant
-- sees them; tenant 1 has the duplicate notes, tenant 2 the references into tenant 1, tenant 3
-- the team in a country that does not exist.
SELECT tenant_ops.validate_integrity('vi', '1') AS j1 \gset
SELECT tenant_ops.validate_integrity('vi', '2') AS j2 \gset
SELECT tenant_ops.validate_integrity('vi', '3') AS j3 \gset
SELECT j.tenant, string_agg(i.check_name || ':' || i.count, ', ' ORDER BY i.check_name) AS findings
  FROM tenant_ops.jobs j LEFT JOIN tenant_ops.integrity_issues i ON i.job_id = j.id
 WHERE j.id IN (:j1, :j2, :j3) GROUP BY j.tenant ORDER BY j.tenant;
-- Only some checks.
SELECT tenant_ops.validate_integrity('vi', '2', '{isolation}') AS job_iso \gset
SELECT check_name, tenant, other_tenant, count FROM tenant_ops.integrity_issues WHERE job_id = :job_iso;
SELECT scope, tenant, score, issues, bad_rows, rows_checked FROM tenant_ops.integrity_history ORDER BY job_id;

-- Bad input.
SELECT tenant_ops.validate_integrity('vi', NULL, '{foreign_keys,spelling}');
\echo :SQLSTATE
SELECT tenant_ops.validate_integrity('vi', NULL, '{}');
\echo :SQLSTATE
SELECT tenant_ops.validate_integrity('nope');
\echo :SQLSTATE
SELECT tenant_ops.validate_integrity('vi', '42');
\echo :SQLSTATE
SELECT tenant_ops.validate_integrity('vi', 'x');
\echo :SQLSTATE
-- One tenant, where an FK column leads an index and holds few distinct values (analyzed):
-- the values without a parent are read from the index, and only the tenant's rows holding
-- one are looked at (src/distinct_values.rs; integrity orphans_among). Club 1 has two rows
-- on plan 77, club 2 one on plan 78, club 3 none; every row is still counted.
CREATE SCHEMA vx;
CREATE TABLE vx.club (id int PRIMARY KEY);
CREATE TABLE vx.plan (id int PRIMARY KEY);
CREATE TABLE vx.member (id int PRIMARY KEY, club int NOT NULL REFERENCES vx.club, plan int);
CREATE INDEX ON vx.member (plan);
INSERT INTO vx.club VALUES (1), (2), (3);
INSERT INTO vx.plan SELECT g FROM generate_series(1, 5) g;
INSERT INTO vx.member SELECT g, 1 + g % 3, 1 + g % 5 FROM generate_series(1, 3000) g;
INSERT INTO vx.member VALUES (9001, 1, 77), (9002, 1, 77), (9003, 2, 78);
ALTER TABLE vx.member ADD CONSTRAINT member_plan_fk FOREIGN KEY (plan) REFERENCES vx.plan NOT VALID;
ANALYZE vx.member;
SELECT tenant_ops.create_scope('vx', 'vx.club', 'id') AS scope_vx;
SELECT tenant_ops.validate_integrity('vx', '1') AS jx1 \gset
SELECT tenant_ops.validate_integrity('vx', '3') AS jx3 \gset
SELECT job_id = :jx1 AS club_1, check_name, table_name, constraint_name, tenant, count, sample
  FROM tenant_ops.integrity_issues WHERE job_id IN (:jx1, :jx3) ORDER BY job_id;
SELECT tenant, issues, bad_rows, rows_checked FROM tenant_ops.integrity_history
 WHERE scope = 'vx' ORDER BY job_id;
-- One tenant's rows counted in fewer walks (src/integrity/counts.rs): a table whose pass
-- only counts (its other foreign keys checked from an index), owned through a foreign key,
-- is counted in its owner's statement when the planner reaches its rows by index probes per
-- owner row (a small tenant), and by its own statement when it reads the table whole (a
-- large one). The counts are exact either way; job_log names the tables counted with their
-- owner. The FK to the small "kind" table is checked from its index (loose index scan).
CREATE SCHEMA vcount;
CREATE TABLE vcount.org (id int PRIMARY KEY);
CREATE TABLE vcount.kind (id int PRIMARY KEY);
CREATE TABLE vcount.team (id int PRIMARY KEY, org int NOT NULL REFERENCES vcount.org);
CREATE TABLE vcount.member (id int PRIMARY KEY, team int NOT NULL REFERENCES vcount.team);
CREATE TABLE vcount.item (id int PRIMARY KEY, member int NOT NULL REFERENCES vcount.member,
                          kind int REFERENCES vcount.kind);
CREATE INDEX ON vcount.team (org);
CREATE INDEX ON vcount.member (team);
CREATE INDEX ON vcount.item (member);
CREATE INDEX ON vcount.item (kind);
INSERT INTO vcount.org SELECT g FROM generate_series(1, 100) g;
INSERT INTO vcount.kind SELECT g FROM generate_series(1, 5) g;
-- Orgs 2-100 hold 5 of the 1000 teams each (and so of the rows below them), org 1 the 505 others.
INSERT INTO vcount.team SELECT g, CASE WHEN g <= 495 THEN 2 + (g - 1) % 99 ELSE 1 END FROM generate_series(1, 1000) g;
INSERT INTO vcount.member SELECT g, 1 + (g - 1) % 1000 FROM generate_series(1, 50000) g;
INSERT INTO vcount.item SELECT g, 1 + (g - 1) % 50000, 1 + g % 5 FROM generate_series(1, 200000) g;
ANALYZE vcount.org, vcount.kind, vcount.team, vcount.member, vcount.item;
SELECT tenant_ops.create_scope('vcount', 'vcount.org', 'id', '{"shared": ["vcount.kind"]}') AS scope_vcount;
SELECT tenant_ops.validate_integrity('vcount', '7') AS jc7 \gset
SELECT tenant_ops.validate_integrity('vcount', '1') AS jc1 \gset
SELECT tenant_ops.validate_integrity('vcount') AS jc_all \gset
-- rows_checked against plain counts of each org's rows.
SELECT j.tenant, (j.result ->> 'rows_checked')::int8 AS rows_checked,
       1 + (SELECT count(*) FROM vcount.team t WHERE t.org = j.tenant::int)
         + (SELECT count(*) FROM vcount.member m JOIN vcount.team t ON t.id = m.team WHERE t.org = j.tenant::int)
         + (SELECT count(*) FROM vcount.item i JOIN vcount.member m ON m.id = i.member
              JOIN vcount.team t ON t.id = m.team WHERE t.org = j.tenant::int) AS by_hand,
       j.result ->> 'issues' AS issues
  FROM tenant_ops.jobs j WHERE j.id IN (:jc7, :jc1) ORDER BY j.id;
SELECT (result ->> 'rows_checked')::int8 AS all_rows_checked FROM tenant_ops.jobs WHERE id = :jc_all;
SELECT job_id = :jc7 AS org_7, table_name, message FROM tenant_ops.job_log
 WHERE job_id IN (:jc7, :jc1) AND event = 'table.counted' ORDER BY job_id, id;
RESET client_min_messages;
