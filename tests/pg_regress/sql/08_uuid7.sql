-- id_strategy uuid7: time-ordered (version 7) keys, recorded in id_map like uuid, every
-- reference re-keyed through them. Counts are exact.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE SCHEMA shop7;
CREATE TABLE shop7.store (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop7.customer (id int PRIMARY KEY, store_id int NOT NULL REFERENCES shop7.store,
    referred_by int REFERENCES shop7.customer, name text NOT NULL);
CREATE TABLE shop7.sale (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES shop7.customer, amount numeric(10,2));
INSERT INTO shop7.store VALUES (1, 'north'), (2, 'south');
INSERT INTO shop7.customer SELECT g, 1 + g % 2, CASE WHEN g > 2 THEN g - 2 END, 'customer ' || g FROM generate_series(1, 40) g;
INSERT INTO shop7.sale SELECT g, 1 + g % 40, g * 1.5 FROM generate_series(1, 200) g;
SELECT tenant_ops.create_scope('shop7', 'shop7.store', 'id') IS NOT NULL AS scope_created;
CREATE SCHEMA seven;
SELECT tenant_ops.migrate_tenant('shop7', '1', 'seven', '{"id_strategy": "uuid7", "create_target": true}') AS job7 \gset
SELECT status, result -> 'id_strategy' AS id_strategy FROM tenant_ops.jobs WHERE id = :job7;
-- every new key is a version-7, RFC 9562-variant UUID drawn during this run, none twice
SELECT count(*) AS customers, count(DISTINCT id) AS distinct_ids,
       count(*) FILTER (WHERE substr(id::text, 15, 1) = '7' AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS version_7,
       count(*) FILTER (WHERE abs(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::int8
                                  - (extract(epoch FROM now()) * 1000)::int8) < 600000) AS drawn_now
  FROM seven.customer;
-- references follow the keys: every sale of store 1 names its customer's new key
SELECT count(*) AS sales, count(c.id) AS resolved,
       sum(s.amount) = (SELECT sum(amount) FROM shop7.sale x JOIN shop7.customer y ON y.id = x.customer_id WHERE y.store_id = 1) AS same_amount
  FROM seven.sale s LEFT JOIN seven.customer c ON c.id = s.customer_id;
SELECT count(*) AS referrals, count(r.id) AS resolved FROM seven.customer c
  LEFT JOIN seven.customer r ON r.id = c.referred_by WHERE c.referred_by IS NOT NULL;
SELECT (SELECT id FROM seven.customer WHERE name = 'customer 8') = tenant_ops.map_id('shop7.customer', '8') AS map_id_agrees,
       (SELECT count(*) FROM tenant_ops.id_map WHERE job_id = :job7) AS ids_mapped;
-- verify_migration agrees, table by table
SELECT table_name, source_rows, target_rows, missing, different, complete FROM tenant_ops.verify_migration(:job7) ORDER BY 1::text;
-- tenant_ops.uuid7() itself: version 7, strictly increasing within a statement
SELECT bool_and(u < nxt) AS increasing, count(*) AS pairs
  FROM (SELECT u, lead(u) OVER (ORDER BY g) AS nxt
          FROM (SELECT g, tenant_ops.uuid7() AS u FROM generate_series(1, 5000) g) x) y
 WHERE nxt IS NOT NULL;
