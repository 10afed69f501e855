-- scan_pii: what the columns of a scope's tables hold, from a sample of rows; a tenant's
-- rows only when one is named; every bad argument with its SQLSTATE.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "pii scan";
CREATE TABLE "pii scan".org (id int PRIMARY KEY, name text);
CREATE TABLE "pii scan"."Cust;omer" (id int PRIMARY KEY, org int NOT NULL REFERENCES "pii scan".org,
    email text, phone text, card varchar(30), iban text, ip inet, birthday date, created date,
    note text, code text);
INSERT INTO "pii scan".org VALUES (1, 'one'), (2, 'two');
INSERT INTO "pii scan"."Cust;omer"
SELECT g, 1 + g % 2, 'user' || g || '@example.com', '+47 22 33 ' || lpad(g::text, 4, '0'),
       CASE WHEN g % 4 = 0 THEN '4111 1111 1111 1111' ELSE '5500-0000-0000-0004' END,
       CASE WHEN g % 10 < 8 THEN 'DE89 3704 0044 0532 0130 00' ELSE 'not an iban' END,
       ('10.0.' || g % 250 || '.1')::inet, date '1950-01-01' + g * 97, date '2024-01-01' + g,
       CASE WHEN g % 10 = 0 THEN 'call me at +47 22 33 44 55 or ann@example.com' ELSE 'nothing to see ' || g END,
       'C-' || g
  FROM generate_series(1, 40) g;
SELECT tenant_ops.create_scope('pii', '"pii scan".org', 'id') IS NOT NULL AS scope;
SELECT table_name, column_name, holds, share, matched, sampled, transform FROM tenant_ops.scan_pii('pii') ORDER BY 1, 2;
-- one tenant's rows: tenant 2 has the odd ids (20 rows), and none of the notes with data in them
SELECT column_name, holds, share, sampled FROM tenant_ops.scan_pii('pii', '2') ORDER BY 1;
SELECT column_name, sampled FROM tenant_ops.scan_pii('pii', '1', 5) WHERE column_name IN ('email', 'note') ORDER BY 1;
-- bad arguments
SELECT * FROM tenant_ops.scan_pii('nope');
\echo :SQLSTATE
SELECT * FROM tenant_ops.scan_pii('pii', '99');
\echo :SQLSTATE
SELECT * FROM tenant_ops.scan_pii('pii', 'x');
\echo :SQLSTATE
SELECT * FROM tenant_ops.scan_pii('pii', NULL, 0);
\echo :SQLSTATE
SELECT * FROM tenant_ops.scan_pii(NULL);
\echo :SQLSTATE
SELECT tenant_ops.drop_scope('pii');
DROP SCHEMA "pii scan" CASCADE;
