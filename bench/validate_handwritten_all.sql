-- bench/validate_handwritten_all.sql: the integrity checks of the dispatch schema as a DBA would
-- write them by hand, for all offices at once, grouped by office (contender B of
-- bench/validate.sh, all tenants). One anti-join per foreign key, the isolation check on the one
-- reference between owned tables (a doctor's supervisor), findings into bench_val.hand_issues
-- under the label :'run'. No table of the schema lacks a primary key, so there is no duplicate
-- check to write.
--
-- An orphan whose missing parent is the one that leads to its office (patient -> doctor,
-- order -> patient, item -> order) belongs to no office: its office is NULL. Only the product
-- orphans (the shared catalogue is off the ownership path) join up to their office.

-- doctors.office_id -> offices
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_doctors', 'dispatch_doctors_office_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_doctors d
 WHERE NOT EXISTS (SELECT FROM legacy.dispatch_offices f WHERE f.id = d.office_id)
 GROUP BY d.office_id;

-- doctors.supervisor_id -> doctors
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_doctors', 'dispatch_doctors_supervisor_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_doctors d
 WHERE d.supervisor_id IS NOT NULL
   AND NOT EXISTS (SELECT FROM legacy.dispatch_doctors s WHERE s.id = d.supervisor_id)
 GROUP BY d.office_id;

-- patients.doctor_id -> doctors
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_patients', 'dispatch_patients_doctor_id_fkey',
       NULL, NULL, count(*)
  FROM legacy.dispatch_patients p
 WHERE NOT EXISTS (SELECT FROM legacy.dispatch_doctors d WHERE d.id = p.doctor_id)
HAVING count(*) > 0;

-- orders.patient_id -> patients
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_orders', 'dispatch_orders_patient_id_fkey',
       NULL, NULL, count(*)
  FROM legacy.dispatch_orders o
 WHERE NOT EXISTS (SELECT FROM legacy.dispatch_patients p WHERE p.id = o.patient_id)
HAVING count(*) > 0;

-- order_items.order_id -> orders
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_order_items', 'dispatch_order_items_order_id_fkey',
       NULL, NULL, count(*)
  FROM legacy.dispatch_order_items i
 WHERE NOT EXISTS (SELECT FROM legacy.dispatch_orders o WHERE o.id = i.order_id)
HAVING count(*) > 0;

-- order_items.product_id -> products (NOT VALID), joined up to the office
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_order_items', 'dispatch_order_items_product_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_order_items i
  LEFT JOIN legacy.dispatch_orders o ON o.id = i.order_id
  LEFT JOIN legacy.dispatch_patients p ON p.id = o.patient_id
  LEFT JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
 WHERE NOT EXISTS (SELECT FROM legacy.dispatch_products pr WHERE pr.id = i.product_id)
 GROUP BY d.office_id;

-- isolation: doctors supervised by a doctor of another office
INSERT INTO bench_val.hand_issues
SELECT :'run', 'isolation', 'legacy.dispatch_doctors', 'dispatch_doctors_supervisor_id_fkey',
       d.office_id::text, s.office_id::text, count(*)
  FROM legacy.dispatch_doctors d
  JOIN legacy.dispatch_doctors s ON s.id = d.supervisor_id
 WHERE d.office_id <> s.office_id
 GROUP BY d.office_id, s.office_id;
