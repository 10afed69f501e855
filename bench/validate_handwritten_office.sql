-- bench/validate_handwritten_office.sql: the integrity checks of the dispatch schema as a DBA
-- would write them by hand for one office, :office (contender B of bench/validate.sh, one
-- tenant). The same checks as bench/validate_handwritten_all.sql, each on the office's own rows
-- (reached by joining up to the office), findings into bench_val.hand_issues under :'run'.
--
-- The anti-joins on the ownership path (patient -> doctor, order -> patient, item -> order)
-- cannot find anything here: a row reached from the office through its parent has that parent.
-- They are run anyway, as validate_integrity runs them, so that both do the same checks.

-- doctors.office_id -> offices
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_doctors', 'dispatch_doctors_office_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_doctors d
 WHERE d.office_id = :office
   AND NOT EXISTS (SELECT FROM legacy.dispatch_offices f WHERE f.id = d.office_id)
 GROUP BY d.office_id;

-- doctors.supervisor_id -> doctors
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_doctors', 'dispatch_doctors_supervisor_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_doctors d
 WHERE d.office_id = :office AND d.supervisor_id IS NOT NULL
   AND NOT EXISTS (SELECT FROM legacy.dispatch_doctors s WHERE s.id = d.supervisor_id)
 GROUP BY d.office_id;

-- patients.doctor_id -> doctors
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_patients', 'dispatch_patients_doctor_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_patients p
  JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
 WHERE d.office_id = :office
   AND NOT EXISTS (SELECT FROM legacy.dispatch_doctors x WHERE x.id = p.doctor_id)
 GROUP BY d.office_id;

-- orders.patient_id -> patients
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_orders', 'dispatch_orders_patient_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_orders o
  JOIN legacy.dispatch_patients p ON p.id = o.patient_id
  JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
 WHERE d.office_id = :office
   AND NOT EXISTS (SELECT FROM legacy.dispatch_patients x WHERE x.id = o.patient_id)
 GROUP BY d.office_id;

-- order_items.order_id -> orders
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_order_items', 'dispatch_order_items_order_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_order_items i
  JOIN legacy.dispatch_orders o ON o.id = i.order_id
  JOIN legacy.dispatch_patients p ON p.id = o.patient_id
  JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
 WHERE d.office_id = :office
   AND NOT EXISTS (SELECT FROM legacy.dispatch_orders x WHERE x.id = i.order_id)
 GROUP BY d.office_id;

-- order_items.product_id -> products (NOT VALID)
INSERT INTO bench_val.hand_issues
SELECT :'run', 'foreign_keys', 'legacy.dispatch_order_items', 'dispatch_order_items_product_id_fkey',
       d.office_id::text, NULL, count(*)
  FROM legacy.dispatch_order_items i
  JOIN legacy.dispatch_orders o ON o.id = i.order_id
  JOIN legacy.dispatch_patients p ON p.id = o.patient_id
  JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
 WHERE d.office_id = :office
   AND NOT EXISTS (SELECT FROM legacy.dispatch_products pr WHERE pr.id = i.product_id)
 GROUP BY d.office_id;

-- isolation: the office's doctors supervised by a doctor of another office
INSERT INTO bench_val.hand_issues
SELECT :'run', 'isolation', 'legacy.dispatch_doctors', 'dispatch_doctors_supervisor_id_fkey',
       d.office_id::text, s.office_id::text, count(*)
  FROM legacy.dispatch_doctors d
  JOIN legacy.dispatch_doctors s ON s.id = d.supervisor_id
 WHERE d.office_id = :office AND s.office_id <> d.office_id
 GROUP BY d.office_id, s.office_id;
