-- Migrates one office (psql variable :office) of the legacy dispatch schema into the new
-- UUID-keyed schema of demo/app_schema.sql: renamed tables and columns, random UUID keys with
-- every foreign key remapped, e-mails and phones normalised, shared products copied along,
-- then verified by counts and checksums through the key mapping.
SELECT tenant_ops.migrate_tenant('dispatch', :'office', 'app', $${
  "id_strategy": "uuid",
  "shared": "copy",
  "strip_prefix": "dispatch_",
  "tables": {"dispatch_offices": "clinics", "dispatch_doctors": "physicians", "dispatch_order_items": "order_lines"},
  "columns": {
    "products":   {"price": "unit_price"},
    "clinics":    {"opened_at": "created_at", "migrated_from": {"value": "legacy dispatch"}},
    "physicians": {"clinic_id": "office_id",
                   "name":  {"from": "full_name", "transform": "trim"},
                   "email": {"from": "email", "transform": "normalize_email"}},
    "patients":   {"physician_id": "doctor_id", "name": "full_name",
                   "email": {"from": "email", "transform": "normalize_email"},
                   "phone": {"from": "phone", "transform": "normalize_phone"}},
    "orders":     {"status": {"from": "status", "transform": "upper"}}
  }}$$) AS job \gset
\echo migration job :job
SELECT step, table_name, target, rows_done, source_rows, target_rows, verified
  FROM tenant_ops.job_report(:job) ORDER BY step;
SELECT c.name AS clinic, p.name AS physician, s.name AS supervisor, p.email
  FROM app.physicians p JOIN app.clinics c ON c.id = p.clinic_id
  LEFT JOIN app.physicians s ON s.id = p.supervisor_id
 ORDER BY p.name LIMIT 3;
SELECT tenant_ops.map_id('legacy.dispatch_offices', :'office') AS new_id_of_the_office;
