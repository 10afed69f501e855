-- Checks the legacy dispatch data of every office in one pass (psql variable :migration is the
-- demo's migration job): orphans, duplicate keys and cross-office references, then the
-- migrated office's completeness through the key mapping.
SELECT tenant_ops.validate_integrity('dispatch') AS validation \gset
\echo validation job :validation
SELECT result ->> 'issues' AS issues, result ->> 'bad_rows' AS bad_rows,
       result ->> 'rows_checked' AS rows_checked, result ->> 'score' AS score
  FROM tenant_ops.jobs WHERE id = :validation;
-- The dirty office's planted defects, and nothing else:
SELECT check_name, table_name, constraint_name, tenant, other_tenant, count, sample
  FROM tenant_ops.integrity_issues WHERE job_id = :validation ORDER BY check_name, table_name::text;
-- Every row of the migrated office arrived, unchanged:
SELECT table_name, target, source_rows, target_rows, missing, different, complete
  FROM tenant_ops.verify_migration(:migration) ORDER BY table_name::text;
