-- Backs up one office (psql variable :office), deletes its rows by hand (an accident),
-- restores it from the backup, and shows that every table is as it was: the office's rows
-- checksummed before and after, in key order.
\set ON_ERROR_STOP 1
CREATE TEMP VIEW office_sums AS
SELECT 'dispatch_doctors' AS table_name, count(*) AS rows, md5(string_agg(d::text, '|' ORDER BY d.id)) AS checksum
  FROM legacy.dispatch_doctors d WHERE d.office_id = :office
UNION ALL
SELECT 'dispatch_patients', count(*), md5(string_agg(p::text, '|' ORDER BY p.id))
  FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = :office
UNION ALL
SELECT 'dispatch_orders', count(*), md5(string_agg(o::text, '|' ORDER BY o.id))
  FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
  JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = :office
UNION ALL
SELECT 'dispatch_order_items', count(*), md5(string_agg(i::text, '|' ORDER BY i.order_id, i.line_no))
  FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id
  JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
 WHERE d.office_id = :office;
CREATE TEMP TABLE sums_before AS SELECT * FROM office_sums;

SELECT tenant_ops.create_backup('dispatch', :'office', '{"label": "demo"}') AS job \gset
SELECT (result ->> 'backup_id')::int8 AS backup FROM tenant_ops.jobs WHERE id = :job \gset
\echo backup :backup
SELECT id, tenant, label, tables, rows, pg_size_pretty(size_bytes) AS size, left(sha256, 16) || '…' AS sha256, expires_at::date
  FROM tenant_ops.backups WHERE id = :backup;
SELECT tenant_ops.verify_backup(:backup) ->> 'verified' AS verified;

-- The accident: the office's orders and items are deleted.
DELETE FROM legacy.dispatch_order_items i USING legacy.dispatch_orders o, legacy.dispatch_patients p, legacy.dispatch_doctors d
 WHERE o.id = i.order_id AND p.id = o.patient_id AND d.id = p.doctor_id AND d.office_id = :office;
DELETE FROM legacy.dispatch_orders o USING legacy.dispatch_patients p, legacy.dispatch_doctors d
 WHERE p.id = o.patient_id AND d.id = p.doctor_id AND d.office_id = :office;
SELECT table_name, rows FROM office_sums;

-- What a restore would do, then the restore (one transaction, verified against the backup):
SELECT tenant_ops.restore_backup(:backup, '{"dry_run": true}') AS dry \gset
SELECT t ->> 'table' AS table_name, t ->> 'rows_now' AS rows_now, t ->> 'rows_in_backup' AS rows_in_backup
  FROM tenant_ops.jobs, jsonb_array_elements(result -> 'tables') t WHERE id = :dry;
SELECT tenant_ops.restore_backup(:backup) AS restore \gset
SELECT status, result ->> 'verified' AS verified, result ->> 'rows' AS rows FROM tenant_ops.jobs WHERE id = :restore;
SELECT a.table_name, a.rows, a.checksum = b.checksum AS same_as_before
  FROM office_sums a JOIN sums_before b USING (table_name);
