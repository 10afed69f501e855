-- Scopes and plan() on a fixture shaped to exercise the tenant model: composite keys, a
-- self-reference, a cycle through a nullable FK, a partitioned table whose FK is declared on
-- only one partition, a table without a primary key, a link without an FK, and shared data.
\set SHOW_CONTEXT never
CREATE SCHEMA shop;
CREATE TABLE shop.account (id int PRIMARY KEY, name text NOT NULL, parent_account int REFERENCES shop.account);
CREATE TABLE shop.country (code text PRIMARY KEY, name text);
CREATE TABLE shop.region (id int PRIMARY KEY, country text REFERENCES shop.country);
CREATE TABLE shop.site (account_id int NOT NULL REFERENCES shop.account, site_no int NOT NULL,
                        region_id int REFERENCES shop.region, manager_id int,
                        PRIMARY KEY (account_id, site_no));
CREATE TABLE shop.person (id int PRIMARY KEY, account_id int NOT NULL, site_no int NOT NULL,
                          mentor_id int REFERENCES shop.person,
                          FOREIGN KEY (account_id, site_no) REFERENCES shop.site);
-- site.manager_id → person: a cycle site ↔ person, broken at the nullable manager_id.
ALTER TABLE shop.site ADD CONSTRAINT site_manager_fk FOREIGN KEY (manager_id) REFERENCES shop.person;
-- Partitioned; the FK is declared on one partition only.
CREATE TABLE shop.event (id int NOT NULL, person_id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE shop.event_2025 PARTITION OF shop.event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.event_2026 PARTITION OF shop.event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
ALTER TABLE shop.event_2025 ADD CONSTRAINT event_2025_person_fk FOREIGN KEY (person_id) REFERENCES shop.person;
-- No primary key, no FK: reached only through a link.
CREATE TABLE shop.note (person_ref int, body text);
-- Excluded from the scope by option.
CREATE TABLE shop.account_log (account_id int REFERENCES shop.account, msg text);

INSERT INTO shop.country VALUES ('NO', 'Norway'), ('SE', 'Sweden'), ('DK', 'Denmark');
INSERT INTO shop.region VALUES (1, 'NO'), (2, 'SE'), (3, 'DK');
INSERT INTO shop.account VALUES (1, 'Acme', NULL), (2, 'Globex', 1), (3, 'Initech', NULL);
INSERT INTO shop.site VALUES (1, 1, 1, NULL), (1, 2, 2, NULL), (2, 1, 2, NULL), (3, 1, NULL, NULL);
INSERT INTO shop.person SELECT g, CASE WHEN g <= 6 THEN 1 WHEN g <= 9 THEN 2 ELSE 3 END,
                               CASE WHEN g IN (2, 4) THEN 2 ELSE 1 END, NULLIF(g - 1, 0)
                          FROM generate_series(1, 10) g;
UPDATE shop.person SET mentor_id = NULL WHERE id IN (7, 10);
UPDATE shop.site SET manager_id = 1 WHERE account_id = 1 AND site_no = 1;
INSERT INTO shop.event SELECT g, 1 + g % 10, DATE '2025-06-01' + g * 2 FROM generate_series(1, 200) g;
INSERT INTO shop.note SELECT 1 + g % 10, 'note ' || g FROM generate_series(1, 30) g;
INSERT INTO shop.account_log VALUES (1, 'created'), (2, 'created');

SELECT tenant_ops.create_scope('shop', 'shop.account', 'id', $${
  "exclude": ["shop.account_log"],
  "links": [{"name": "note_person", "child": "shop.note", "columns": ["person_ref"], "parent": "shop.person"}]
}$$);
SELECT name, root, tenant_key, owned_tables, shared_tables FROM tenant_ops.scopes;
SELECT step, table_name, role, path, rows, notes FROM tenant_ops.plan('shop', '1') ORDER BY step;
SELECT table_name, filter FROM tenant_ops.plan('shop', '1') ORDER BY step;
-- The counts are exact: compare with hand-written SQL for every tenant.
SELECT t AS tenant,
       (SELECT rows FROM tenant_ops.plan('shop', t::text) WHERE table_name = 'shop.person'::regclass) AS person,
       (SELECT count(*) FROM shop.person WHERE account_id = t) AS person_sql,
       (SELECT rows FROM tenant_ops.plan('shop', t::text) WHERE table_name = 'shop.event'::regclass) AS event,
       (SELECT count(*) FROM shop.event e JOIN shop.person p ON p.id = e.person_id WHERE p.account_id = t) AS event_sql,
       (SELECT rows FROM tenant_ops.plan('shop', t::text) WHERE table_name = 'shop.note'::regclass) AS note,
       (SELECT count(*) FROM shop.note n JOIN shop.person p ON p.id = n.person_ref WHERE p.account_id = t) AS note_sql,
       (SELECT rows FROM tenant_ops.plan('shop', t::text) WHERE table_name = 'shop.country'::regclass) AS country,
       (SELECT count(DISTINCT r.country) FROM shop.site s JOIN shop.region r ON r.id = s.region_id WHERE s.account_id = t) AS country_sql
  FROM generate_series(1, 3) t;
-- The root's self-reference (parent_account) never makes another account part of tenant 2.
SELECT rows FROM tenant_ops.plan('shop', '2') WHERE role = 'root';

-- `tables` restricts ownership: person stays owned, event and note fall out of the scope.
SELECT tenant_ops.create_scope('shop_small', 'shop.account', 'id',
  '{"tables": ["shop.site", "shop.person"], "exclude": ["shop.account_log"]}');
SELECT step, table_name, role, rows FROM tenant_ops.plan('shop_small', '1') ORDER BY step;
-- `shared` forces a table out of ownership; what hangs below it is no longer owned.
SELECT tenant_ops.create_scope('shop_shared_person', 'shop.account', 'id',
  '{"shared": ["shop.person"], "exclude": ["shop.account_log"]}');
SELECT step, table_name, role, path, rows FROM tenant_ops.plan('shop_shared_person', '1') ORDER BY step;

-- Two equally near paths: refused with every candidate named, then resolved with owner.
CREATE TABLE shop.transfer (id int PRIMARY KEY, from_account int, from_site int, to_account int, to_site int,
    CONSTRAINT transfer_from_site_fk FOREIGN KEY (from_account, from_site) REFERENCES shop.site,
    CONSTRAINT transfer_to_site_fk FOREIGN KEY (to_account, to_site) REFERENCES shop.site);
INSERT INTO shop.transfer VALUES (1, 1, 1, 1, 2), (2, 1, 2, 2, 1), (3, 2, 1, 1, 1);
SELECT tenant_ops.create_scope('shop2', 'shop.account', 'id', '{"exclude": ["shop.account_log"]}');
\echo :SQLSTATE
-- The parent table's name does not settle it: both paths lead to shop.site.
SELECT tenant_ops.create_scope('shop2', 'shop.account', 'id',
  '{"exclude": ["shop.account_log"], "owner": {"shop.transfer": "shop.site"}}');
\echo :SQLSTATE
-- A constraint name does.
SELECT tenant_ops.create_scope('shop2', 'shop.account', 'id',
  '{"exclude": ["shop.account_log"], "owner": {"shop.transfer": "transfer_to_site_fk"}}');
SELECT table_name, path, rows FROM tenant_ops.plan('shop2', '1') WHERE table_name = 'shop.transfer'::regclass;
SELECT table_name, path, rows FROM tenant_ops.plan('shop2', '2') WHERE table_name = 'shop.transfer'::regclass;
SELECT tenant_ops.drop_scope('shop2');
SELECT tenant_ops.create_scope('shop2', 'shop.account', 'id',
  '{"exclude": ["shop.account_log"], "owner": {"shop.transfer": "transfer_from_site_fk"}}');
SELECT table_name, path, rows FROM tenant_ops.plan('shop2', '1') WHERE table_name = 'shop.transfer'::regclass;

-- Tenant keys of other types: bigint, text, varchar, uuid.
CREATE TABLE shop.org_big (k bigint PRIMARY KEY);
CREATE TABLE shop.org_big_child (k bigint REFERENCES shop.org_big, v int);
INSERT INTO shop.org_big VALUES (9000000000), (1);
INSERT INTO shop.org_big_child VALUES (9000000000, 1), (9000000000, 2), (1, 3);
SELECT tenant_ops.create_scope('big', 'shop.org_big', 'k');
SELECT table_name, rows FROM tenant_ops.plan('big', '9000000000') ORDER BY step;
CREATE TABLE shop.org_txt (code varchar(8) PRIMARY KEY);
CREATE TABLE shop.org_txt_child (code varchar(8) REFERENCES shop.org_txt);
INSERT INTO shop.org_txt VALUES ('alpha'), ('beta');
INSERT INTO shop.org_txt_child VALUES ('alpha'), ('alpha'), ('beta');
SELECT tenant_ops.create_scope('txt', 'shop.org_txt', 'code');
SELECT table_name, rows FROM tenant_ops.plan('txt', 'alpha') ORDER BY step;
-- A value longer than varchar(8) is not truncated into another tenant's key.
SELECT table_name, rows FROM tenant_ops.plan('txt', 'alphabetagamma') ORDER BY step;
\echo :SQLSTATE
CREATE TABLE shop.org_uuid (id uuid PRIMARY KEY);
CREATE TABLE shop.org_uuid_child (org uuid REFERENCES shop.org_uuid);
INSERT INTO shop.org_uuid VALUES ('00000000-0000-0000-0000-000000000001'), ('00000000-0000-0000-0000-000000000002');
INSERT INTO shop.org_uuid_child SELECT '00000000-0000-0000-0000-000000000002' FROM generate_series(1, 4);
SELECT tenant_ops.create_scope('uu', 'shop.org_uuid', 'id');
SELECT table_name, rows FROM tenant_ops.plan('uu', '00000000-0000-0000-0000-000000000002') ORDER BY step;
SELECT table_name, rows FROM tenant_ops.plan('uu', 'not-a-uuid') ORDER BY step;
\echo :SQLSTATE

-- drop_scope removes the definition only.
SELECT tenant_ops.drop_scope('uu');
SELECT count(*) FROM shop.org_uuid_child;
SELECT name FROM tenant_ops.scopes ORDER BY name;
SELECT action, target, outcome FROM tenant_ops.audit_log ORDER BY id;
