-- Masking transforms (mask_email, mask_card, redact, pseudonymize) in the transform machinery
-- migrate_tenant and import_data share; pseudonymize's key is a superuser's setting.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "pii ş";
CREATE TABLE "pii ş".p (id int PRIMARY KEY, email text, card text, note text, ref text);
CREATE FUNCTION pg_temp.csv(t text) RETURNS bytea LANGUAGE sql AS $$ SELECT convert_to(t, 'UTF8') $$;

-- pseudonymize needs the key: refused before anything is written
SELECT tenant_ops.pseudonymize('x');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"pii ş".p', pg_temp.csv(E'id,ref\n1,a\n'), 'csv',
  '{"columns": {"ref": {"from": "ref", "transform": "pseudonymize"}}}');
\echo :SQLSTATE
SELECT count(*) FROM "pii ş".p;

-- with a key: HMAC-SHA256 (RFC 4231 test case 2), deterministic, keyed
SET tenant_ops.pseudonymize_key = 'Jefe';
SELECT tenant_ops.pseudonymize('what do ya want for nothing?') = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' AS rfc4231;
SELECT tenant_ops.pseudonymize(NULL) IS NULL AS null_stays_null;
SELECT tenant_ops.import_data_bytes('"pii ş".p', pg_temp.csv(
'id,email,card,note,ref
1,ann.smith@example.com,4111 1111 1111 1111,secret,cust-1
2,b@x.org,5500-0000-0000-0004,,cust-2
3,not-an-email,1234,hidden,cust-1
4,,,x,
'), 'csv', '{"columns": {
   "email": {"from": "email", "transform": "mask_email"},
   "card": {"from": "card", "transform": "mask_card"},
   "note": {"from": "note", "transform": {"name": "redact", "with": "[gone]"}},
   "ref": {"from": "ref", "transform": ["trim", "pseudonymize"]}}}') IS NOT NULL AS imported;
SELECT id, email, card, note, ref = tenant_ops.pseudonymize('cust-1') AS ref_is_cust1, length(ref) AS ref_len
  FROM "pii ş".p ORDER BY id;
SELECT count(DISTINCT ref) AS distinct_refs FROM "pii ş".p;
SET tenant_ops.pseudonymize_key = 'another';
SELECT tenant_ops.pseudonymize('cust-1') = (SELECT ref FROM "pii ş".p WHERE id = 1) AS same_under_another_key;
RESET tenant_ops.pseudonymize_key;

-- bad parameters
SELECT tenant_ops.import_data_bytes('"pii ş".p', pg_temp.csv(E'id,note\n1,a\n'), 'csv',
  '{"columns": {"note": {"from": "note", "transform": {"name": "redact", "with": 1}}}}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"pii ş".p', pg_temp.csv(E'id,card\n1,a\n'), 'csv',
  '{"columns": {"card": {"from": "card", "transform": {"name": "mask_card", "keep_last": 2}}}}');
\echo :SQLSTATE

-- the key is a superuser's: others can neither set nor read it
CREATE ROLE pii_operator IN ROLE tenant_ops_operator;
SET ROLE pii_operator;
SET tenant_ops.pseudonymize_key = 'mine';
\echo :SQLSTATE
SHOW tenant_ops.pseudonymize_key;
\echo :SQLSTATE
RESET ROLE;
DROP SCHEMA "pii ş" CASCADE;
DROP ROLE pii_operator;
