-- How a migration's copy verifies itself (src/migrate/checksums.rs): where the target stores
-- every row as the insert gives it (a plain or partitioned table, no enabled BEFORE trigger
-- and no rule on it or any partition), the copy counts rows on both sides; elsewhere it hashes
-- each row as read and as stored. Checked here: which tables were verified how (job_tables
-- details), that a BEFORE trigger on a partition of a partitioned target (not on the table
-- named) still makes the copy hash and so catches the value it changes (23000, nothing kept),
-- that a disabled one does not count, and that verify_migration (which always reads both
-- sides) finds a value changed in a target verified by counts.
SET client_min_messages = warning;
CREATE SCHEMA chk;
CREATE TABLE chk.org (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE chk.item (id int PRIMARY KEY, org int NOT NULL REFERENCES chk.org, kind text NOT NULL,
                       price numeric(8,2), label character(6));
INSERT INTO chk.org VALUES (1, 'one'), (2, 'two');
INSERT INTO chk.item SELECT g, 1 + (g > 30)::int, CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END,
                            g * 1.25, 'l' || g FROM generate_series(1, 40) g;
SELECT tenant_ops.create_scope('chk', 'chk.org', 'id') AS scope;
-- Plain targets with no trigger: counted.
CREATE SCHEMA chk_plain;
SELECT tenant_ops.migrate_tenant('chk', '1', 'chk_plain', '{"id_strategy": "uuid", "create_target": true}') AS job_plain \gset
SELECT target, details ->> 'verified' AS verified, details ->> 'verified_by' AS verified_by
  FROM tenant_ops.job_tables WHERE job_id = :job_plain ORDER BY target;
-- verify_migration reads both sides: a value changed afterwards is found.
UPDATE chk_plain.item SET price = price + 0.01 WHERE label = 'l7';
SELECT target, source_rows, target_rows, missing, different, complete
  FROM tenant_ops.verify_migration(:job_plain) ORDER BY target;
-- A partitioned target whose partition has a BEFORE trigger that changes one row's price:
-- the copy hashes (the trigger is found on the partition), and its verify stage fails.
CREATE SCHEMA chk_part;
CREATE TABLE chk_part.org (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE chk_part.item (id int, org int NOT NULL, kind text NOT NULL, price numeric(8,2), label character(6),
                            PRIMARY KEY (id, kind)) PARTITION BY LIST (kind);
CREATE TABLE chk_part.item_even PARTITION OF chk_part.item FOR VALUES IN ('even');
CREATE TABLE chk_part.item_odd PARTITION OF chk_part.item FOR VALUES IN ('odd');
CREATE FUNCTION chk_part.tamper() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.label = 'l7' THEN NEW.price := NEW.price + 0.01; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tamper BEFORE INSERT ON chk_part.item_odd FOR EACH ROW EXECUTE FUNCTION chk_part.tamper();
DO $$
BEGIN
    PERFORM tenant_ops.migrate_tenant('chk', '1', 'chk_part', '{}');
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING '% %', SQLSTATE, SQLERRM;
END $$;
SELECT (SELECT count(*) FROM chk_part.item) AS rows_kept, (SELECT count(*) FROM chk_part.org) AS orgs_kept;
-- The trigger disabled: the partitions store rows as given, the copy counts.
ALTER TABLE chk_part.item_odd DISABLE TRIGGER tamper;
SELECT tenant_ops.migrate_tenant('chk', '1', 'chk_part', '{}') AS job_part \gset
SELECT target, details ->> 'verified' AS verified, details ->> 'verified_by' AS verified_by
  FROM tenant_ops.job_tables WHERE job_id = :job_part ORDER BY target;
SELECT count(*) AS items, sum(price) AS price_sum FROM chk_part.item;
RESET client_min_messages;
