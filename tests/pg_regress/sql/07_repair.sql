-- repair_integrity and restore_quarantined on the fixture of 06_integrity (schema vi):
-- a dry run changes nothing, a quarantine removes the offending rows and those referencing
-- them, a new validation then finds nothing, and a restore puts every row back as it was.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- Member 6 (who references another tenant's member) gets a visit: removing member 6 must
-- handle that visit too.
INSERT INTO vi.visit VALUES (6, 6, '2025-06-01');
SELECT md5(string_agg(m::text, '|' ORDER BY id)) AS members_before FROM vi.member m \gset
SELECT md5(string_agg(t::text, '|' ORDER BY id)) AS teams_before FROM vi.team t \gset
SELECT md5(string_agg(n::text, '|' ORDER BY n::text)) AS notes_before FROM vi.note n \gset
SELECT md5(string_agg(v::text, '|' ORDER BY id)) AS visits_before FROM vi.visit v \gset
SELECT tenant_ops.validate_integrity('vi') AS v1 \gset

-- Dry run (the default): what would change, nothing changed.
SELECT a ->> 'table' AS table_name, a ->> 'action' AS action, (a ->> 'rows')::int AS rows, a ->> 'reason' AS reason
  FROM jsonb_array_elements(tenant_ops.repair_integrity(:v1, 'quarantine') -> 'actions') a;
SELECT (SELECT count(*) FROM vi.member) AS members, (SELECT count(*) FROM tenant_ops.quarantine) AS quarantined;
-- delete refuses where other rows still reference the removed ones (member 6's visit).
SELECT tenant_ops.repair_integrity(:v1, 'delete', false);
\echo :SQLSTATE
-- set_null does not apply to duplicate keys.
SELECT tenant_ops.repair_integrity(:v1, 'set_null', false);
\echo :SQLSTATE

-- Quarantine for real: a new validation finds nothing.
SELECT tenant_ops.repair_integrity(:v1, 'quarantine', false) ->> 'repair_id' AS repair \gset
SELECT table_name, count(*) AS rows FROM tenant_ops.quarantine WHERE repair_id = :repair GROUP BY 1 ORDER BY table_name::text;
SELECT tenant_ops.validate_integrity('vi') AS v2 \gset
SELECT count(*) AS issues_after_repair FROM tenant_ops.integrity_issues WHERE job_id = :v2;
-- Clean, and not because nothing was checked: every row of the owned tables (country is shared).
SELECT (j.result ->> 'score') AS score, (j.result ->> 'rows_checked')::int AS rows_checked,
       (SELECT count(*) FROM vi.firm) + (SELECT count(*) FROM vi.team) + (SELECT count(*) FROM vi.member)
       + (SELECT count(*) FROM vi.note) + (SELECT count(*) FROM vi.visit) AS by_hand
  FROM tenant_ops.jobs j WHERE j.id = :v2;
SELECT tenant_ops.repair_integrity(:v2, 'quarantine', false);
\echo :SQLSTATE

-- Restore: every row back exactly as it was, problems included.
SELECT tenant_ops.restore_quarantined(:repair) -> 'restored' AS restored;
SELECT md5(string_agg(m::text, '|' ORDER BY id)) = :'members_before' AS members_identical FROM vi.member m;
SELECT md5(string_agg(t::text, '|' ORDER BY id)) = :'teams_before' AS teams_identical FROM vi.team t;
SELECT md5(string_agg(n::text, '|' ORDER BY n::text)) = :'notes_before' AS notes_identical FROM vi.note n;
SELECT md5(string_agg(v::text, '|' ORDER BY id)) = :'visits_before' AS visits_identical FROM vi.visit v;
SELECT tenant_ops.restore_quarantined(:repair);
\echo :SQLSTATE

-- set_null on the isolation finding alone clears the references into the other tenant.
SELECT tenant_ops.validate_integrity('vi', '2', '{isolation}') AS v3 \gset
SELECT tenant_ops.repair_integrity(:v3, 'set_null', false) -> 'actions' AS actions;
SELECT id, buddy FROM vi.member WHERE id IN (1, 6, 7) ORDER BY id;

-- Bad input.
SELECT tenant_ops.repair_integrity(:v1, 'shred');
\echo :SQLSTATE
SELECT tenant_ops.repair_integrity((SELECT min(id) FROM tenant_ops.jobs WHERE kind = 'migrate'), 'quarantine');
\echo :SQLSTATE
SELECT tenant_ops.repair_integrity(424242, 'quarantine');
\echo :SQLSTATE
CREATE ROLE regress_repair_operator IN ROLE tenant_ops_operator;
SET ROLE regress_repair_operator;
SELECT tenant_ops.repair_integrity(:v1, 'quarantine');
\echo :SQLSTATE
RESET ROLE;
DROP ROLE regress_repair_operator;
RESET client_min_messages;
