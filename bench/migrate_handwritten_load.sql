-- bench/migrate_handwritten_load.sql: the statements of the hand-written migration (one office of
-- legacy.dispatch_* into the uuid-keyed tables of schema :target), without BEGIN/COMMIT, for the
-- scripts that wrap them in a transaction of their own: bench/migrate_handwritten.sql (targets
-- created beforehand), bench/create_target_first.sql and bench/create_target_post.sql (tables
-- created in the same transaction). Mapping tables old id -> gen_random_uuid() per re-keyed
-- table (indexed and analyzed), then one INSERT ... SELECT per table in dependency order.

\set ON_ERROR_STOP 1

-- ---- mapping tables, parents first ---------------------------------------------------------
CREATE TEMP TABLE map_offices ON COMMIT DROP AS
SELECT f.id AS old_id, gen_random_uuid() AS new_id
  FROM legacy.dispatch_offices f
 WHERE f.id = :office;

CREATE TEMP TABLE map_doctors ON COMMIT DROP AS
SELECT d.id AS old_id, gen_random_uuid() AS new_id
  FROM legacy.dispatch_doctors d
 WHERE d.office_id = :office;
ALTER TABLE map_doctors ADD PRIMARY KEY (old_id);
ANALYZE map_doctors;

CREATE TEMP TABLE map_patients ON COMMIT DROP AS
SELECT p.id AS old_id, gen_random_uuid() AS new_id
  FROM legacy.dispatch_patients p
  JOIN map_doctors md ON md.old_id = p.doctor_id;
ALTER TABLE map_patients ADD PRIMARY KEY (old_id);
ANALYZE map_patients;

CREATE TEMP TABLE map_orders ON COMMIT DROP AS
SELECT o.id AS old_id, gen_random_uuid() AS new_id
  FROM legacy.dispatch_orders o
  JOIN map_patients mp ON mp.old_id = o.patient_id;
ALTER TABLE map_orders ADD PRIMARY KEY (old_id);
ANALYZE map_orders;

-- the shared products the tenant's order items reference
CREATE TEMP TABLE map_products ON COMMIT DROP AS
SELECT pr.id AS old_id, gen_random_uuid() AS new_id
  FROM legacy.dispatch_products pr
 WHERE pr.id IN (SELECT i.product_id
                   FROM legacy.dispatch_order_items i
                   JOIN map_orders mo ON mo.old_id = i.order_id);
ALTER TABLE map_products ADD PRIMARY KEY (old_id);
ANALYZE map_products;

-- ---- the copy, parents first --------------------------------------------------------------
INSERT INTO :"target".products (id, sku, name, unit_price)
SELECT m.new_id, pr.sku, pr.name, pr.unit_price
  FROM legacy.dispatch_products pr
  JOIN map_products m ON m.old_id = pr.id;

INSERT INTO :"target".offices (id, name, region, created_at)
SELECT m.new_id, f.name, f.region, f.created_at
  FROM legacy.dispatch_offices f
  JOIN map_offices m ON m.old_id = f.id;

INSERT INTO :"target".doctors (id, office_id, supervisor_id, full_name, email, licensed_on)
SELECT md.new_id, mf.new_id, ms.new_id, d.full_name, d.email, d.licensed_on
  FROM legacy.dispatch_doctors d
  JOIN map_doctors md ON md.old_id = d.id
  JOIN map_offices mf ON mf.old_id = d.office_id
  LEFT JOIN map_doctors ms ON ms.old_id = d.supervisor_id;

INSERT INTO :"target".patients (id, doctor_id, full_name, email, phone, birth_date, notes)
SELECT mp.new_id, md.new_id, p.full_name, p.email, p.phone, p.birth_date, p.notes
  FROM legacy.dispatch_patients p
  JOIN map_patients mp ON mp.old_id = p.id
  JOIN map_doctors md ON md.old_id = p.doctor_id;

INSERT INTO :"target".orders (id, patient_id, status, ordered_at, total)
SELECT mo.new_id, mp.new_id, o.status, o.ordered_at, o.total
  FROM legacy.dispatch_orders o
  JOIN map_orders mo ON mo.old_id = o.id
  JOIN map_patients mp ON mp.old_id = o.patient_id;

INSERT INTO :"target".order_items (order_id, line_no, product_id, quantity, unit_price)
SELECT mo.new_id, i.line_no, mr.new_id, i.quantity, i.unit_price
  FROM legacy.dispatch_order_items i
  JOIN map_orders mo ON mo.old_id = i.order_id
  JOIN map_products mr ON mr.old_id = i.product_id;

