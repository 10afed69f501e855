-- Privileges, once every object exists. EXECUTE is revoked from PUBLIC on everything and
-- granted per role; the tables are readable by viewers and writable only by the extension
-- owner (the functions write them as the owner, see src/sys.rs).

-- Per job and table, the committed figures of job_tables and what a running step has posted
-- since (tenant_ops.live_progress(), shared memory: see src/jobs/live.rs). Defined here, after
-- the functions pgrx creates. A table a step is working on shows its live count where that is
-- ahead of the committed one; a table with no committed row yet (a backup's, an export's or a
-- restore's, all one step) shows from its first posted fetch.
CREATE VIEW tenant_ops.progress AS
WITH live AS (SELECT * FROM tenant_ops.live_progress())
SELECT j.id AS job_id,
       j.kind,
       j.status,
       j.stage,
       t.source AS table_name,
       GREATEST(t.rows_done, l.rows_done) AS rows_done,
       t.rows_total,
       CASE WHEN l.rows_done > t.rows_done AND l.updated_at > l.started_at
            THEN pg_catalog.round(l.rows_done / EXTRACT(epoch FROM l.updated_at - l.started_at), 1)
            WHEN t.started_at IS NOT NULL AND t.updated_at > t.started_at
            THEN pg_catalog.round(t.rows_done / EXTRACT(epoch FROM t.updated_at - t.started_at), 1) END
           AS rows_per_second,
       CASE WHEN t.rows_done > 0 AND t.rows_total > t.rows_done AND t.updated_at > t.started_at
            THEN (t.updated_at - t.started_at) * ((t.rows_total - t.rows_done)::float8 / t.rows_done) END AS eta,
       t.stage AS table_stage,
       t.step,
       lag.changes AS lag_changes,
       lag.seconds AS lag_seconds,
       l.bytes_done,
       l.updated_at AS live_at
  FROM tenant_ops.jobs j
  JOIN tenant_ops.job_tables t ON t.job_id = j.id
  LEFT JOIN live l ON l.job_id = j.id AND l.table_name = t.source AND j.status = 'running'
  LEFT JOIN LATERAL (
       SELECT pg_catalog.count(*) AS changes,
              coalesce(pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.min(ch.captured_at)), 3), 0) AS seconds
         FROM tenant_ops.captures c JOIN tenant_ops.capture_changes ch ON ch.capture_id = c.id
        WHERE c.job_id = j.id AND c.status = 'capturing'
          -- a reverse sync captures the target tables: the lag of the table written back
          AND ch.table_name = CASE c.kind WHEN 'target' THEN pg_catalog.to_regclass(t.target)::pg_catalog.oid
                                          ELSE t.source::pg_catalog.oid END) lag
    ON j.stage IN ('drain', 'catchup', 'reverse_sync')
UNION ALL
SELECT j.id, j.kind, j.status, j.stage,
       l.table_name,
       l.rows_done,
       NULL::int8,
       CASE WHEN l.updated_at > l.started_at
            THEN pg_catalog.round(l.rows_done / EXTRACT(epoch FROM l.updated_at - l.started_at), 1) END,
       NULL::interval,
       'live'::text,
       NULL::int4,
       NULL::int8,
       NULL::numeric,
       l.bytes_done,
       l.updated_at
  FROM tenant_ops.jobs j
  JOIN live l ON l.job_id = j.id
 WHERE j.status = 'running'
   AND NOT EXISTS (SELECT FROM tenant_ops.job_tables t
                    WHERE t.job_id = j.id AND t.source = l.table_name);
COMMENT ON VIEW tenant_ops.progress IS
    'Per job and table: rows done of total, rows per second and ETA, as of the last committed step and, for a running step, as it posted since (bytes_done, live_at); for an online migration catching up (or, after its cutover, syncing the target''s writes back), the changes captured and not yet applied (lag_changes) and how old the oldest is (lag_seconds).';

REVOKE ALL ON ALL TABLES IN SCHEMA tenant_ops FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tenant_ops FROM PUBLIC;
REVOKE EXECUTE ON ALL PROCEDURES IN SCHEMA tenant_ops FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant_ops TO tenant_ops_viewer;

GRANT SELECT ON tenant_ops.scope, tenant_ops.scopes, tenant_ops.audit_log, tenant_ops.jobs, tenant_ops.job_tables,
                tenant_ops.job_log, tenant_ops.job_errors, tenant_ops.progress, tenant_ops.id_map,
                tenant_ops.job_extra, tenant_ops.scheduler_state, tenant_ops.integrity_issues,
                tenant_ops.integrity_history, tenant_ops.quarantine, tenant_ops.backups,
                tenant_ops.schedule, tenant_ops.schedule_runs, tenant_ops.schedules, tenant_ops.metrics,
                tenant_ops.kv_sources, tenant_ops.captures TO tenant_ops_viewer;
-- tenant_ops.kv_source_secrets: nothing granted (Redis passwords, dumps' data); nor on
-- tenant_ops.id_secret (the key of id_strategy uuid's keys).

-- viewer
GRANT EXECUTE ON FUNCTION tenant_ops.plan(text, text) TO tenant_ops_viewer;
GRANT EXECUTE ON FUNCTION tenant_ops.job_report(bigint), tenant_ops.map_id(regclass, text),
                          tenant_ops.uuid4(), tenant_ops.uuid4_keyed(text, text),
                          tenant_ops.uuid5(uuid, text), tenant_ops.uuid7() TO tenant_ops_viewer;
GRANT EXECUTE ON FUNCTION tenant_ops.wait_for_job(bigint, interval), tenant_ops.scheduler_health(),
                          tenant_ops.scheduler_stats(), tenant_ops.verify_migration(bigint),
                          tenant_ops.live_progress() TO tenant_ops_viewer;
-- operator
GRANT EXECUTE ON FUNCTION tenant_ops.migrate_tenant(text, text, name, jsonb, boolean),
                          tenant_ops.cutover_migration(bigint, jsonb),
                          tenant_ops.validate_integrity(text, text, text[], boolean),
                          tenant_ops.pause_job(bigint), tenant_ops.resume_job(bigint),
                          tenant_ops.cancel_job(bigint), tenant_ops.retry_job(bigint) TO tenant_ops_operator;
GRANT EXECUTE ON PROCEDURE tenant_ops.run_job(bigint) TO tenant_ops_operator;
GRANT EXECUTE ON FUNCTION tenant_ops.create_backup(text, text, jsonb, boolean), tenant_ops.verify_backup(bigint)
      TO tenant_ops_operator;
GRANT EXECUTE ON FUNCTION tenant_ops.import_data(regclass, text, text, jsonb, boolean),
                          tenant_ops.import_data_bytes(regclass, bytea, text, jsonb, boolean),
                          tenant_ops.pseudonymize(text), tenant_ops.scan_pii(text, text, integer) TO tenant_ops_operator;
GRANT EXECUTE ON FUNCTION tenant_ops.export_tenant(text, text, text, jsonb, boolean) TO tenant_ops_operator;
-- Key-value sources: operators use them by name; defining one (a server the database connects
-- to, a password) is an admin's.
GRANT EXECUTE ON FUNCTION tenant_ops.detect_kv(text, text, bigint),
                          tenant_ops.import_kv(text, jsonb, jsonb, boolean),
                          tenant_ops.compare_kv(text, jsonb, jsonb),
                          tenant_ops.sync_kv(text, jsonb, text, jsonb) TO tenant_ops_operator;
GRANT EXECUTE ON FUNCTION tenant_ops.create_kv_source(text, text, jsonb), tenant_ops.drop_kv_source(text),
                          tenant_ops.kv_source_from_json(text, jsonb),
                          tenant_ops.cleanup_kv(text, jsonb, jsonb),
                          tenant_ops.restore_kv(text, text, jsonb) TO tenant_ops_admin;
-- Files of the export directory hold any tenant's rows (whoever exported them): reading them
-- back is an admin's, as reading backups is.
GRANT EXECUTE ON FUNCTION tenant_ops.download_export(text, bigint, integer), tenant_ops.export_size(text),
                          tenant_ops.import_tenant(text, text, jsonb) TO tenant_ops_admin;
GRANT EXECUTE ON FUNCTION tenant_ops.restore_backup(bigint, jsonb, boolean), tenant_ops.read_backup(bigint, bigint, integer),
                          tenant_ops.drop_backup(bigint), tenant_ops.purge_backups(),
                          tenant_ops.load_backup(bytea), tenant_ops.load_backup_chunk(text, bytea),
                          tenant_ops.load_backup_finish(text) TO tenant_ops_admin;
-- admin
GRANT EXECUTE ON FUNCTION tenant_ops.rollback_migration(bigint), tenant_ops.purge_history(),
                          tenant_ops.repair_integrity(bigint, text, boolean),
                          tenant_ops.restore_quarantined(bigint) TO tenant_ops_admin;
GRANT EXECUTE ON FUNCTION tenant_ops.create_scope(text, regclass, name, jsonb),
                          tenant_ops.drop_scope(text) TO tenant_ops_admin;
-- moving shards between nodes is the cluster's administration (Citus wants the tables' owner)
GRANT EXECUTE ON FUNCTION tenant_ops.move_tenant(text, text, text, jsonb, boolean) TO tenant_ops_admin;
GRANT EXECUTE ON FUNCTION tenant_ops.schedule_operation(text, text, text, jsonb), tenant_ops.unschedule(text),
                          tenant_ops.alter_schedule(text, text, jsonb, boolean),
                          tenant_ops.trigger_schedule(text) TO tenant_ops_admin;

-- Rows computed from user data (key mappings, staged keys, archived and quarantined rows) are
-- written by statements that run as the caller, so that no user code (a trigger, a cast, an
-- output function) ever runs as the extension owner. Row-level security lets such a row in
-- only while pg_tenant_ops has opened a window for its job in the writing backend
-- (tenant_ops.job_window_open, see src/sys.rs); at any other time an ordinary role can write
-- nothing there. The owner (which writes everything else) is not subject to these policies.
GRANT EXECUTE ON FUNCTION tenant_ops.job_window_open(bigint) TO PUBLIC;
-- Called by a migration's copy statements, which run as the caller (src/migrate/changes.rs).
GRANT EXECUTE ON FUNCTION tenant_ops.note_changed_row() TO PUBLIC;

ALTER TABLE tenant_ops.id_map ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON tenant_ops.id_map FOR SELECT USING (true);
CREATE POLICY job_writes ON tenant_ops.id_map FOR INSERT WITH CHECK (tenant_ops.job_window_open(job_id));
GRANT INSERT ON tenant_ops.id_map TO tenant_ops_operator;

ALTER TABLE tenant_ops.job_extra ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON tenant_ops.job_extra FOR SELECT USING (true);
CREATE POLICY job_writes ON tenant_ops.job_extra FOR INSERT WITH CHECK (tenant_ops.job_window_open(job_id));
GRANT INSERT ON tenant_ops.job_extra TO tenant_ops_operator;

-- The archive holds whole rows of every tenant: readable only inside a window of its job (a
-- rollback, a verification), by whoever runs that job's undo or check with their own rights.
ALTER TABLE tenant_ops.job_archive ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_reads ON tenant_ops.job_archive FOR SELECT USING (tenant_ops.job_window_open(job_id));
CREATE POLICY job_writes ON tenant_ops.job_archive FOR INSERT WITH CHECK (tenant_ops.job_window_open(job_id));
GRANT SELECT ON tenant_ops.job_archive TO tenant_ops_viewer;
GRANT INSERT ON tenant_ops.job_archive TO tenant_ops_operator;

-- Captured changes hold whole rows of the tenant: read and deleted only inside a window of
-- the job they were captured for (its catch-up, its cutover), as the role running it. The
-- capture triggers write them as the extension owner (SECURITY DEFINER).
ALTER TABLE tenant_ops.capture_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_reads ON tenant_ops.capture_changes FOR SELECT USING (tenant_ops.job_window_open(job_id));
CREATE POLICY job_deletes ON tenant_ops.capture_changes FOR DELETE USING (tenant_ops.job_window_open(job_id));
GRANT SELECT, DELETE ON tenant_ops.capture_changes TO tenant_ops_operator;

-- Quarantined rows are written by the repairing admin inside the window of the validation job
-- the repair acts on.
ALTER TABLE tenant_ops.quarantine ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON tenant_ops.quarantine FOR SELECT USING (true);
CREATE POLICY job_writes ON tenant_ops.quarantine FOR INSERT WITH CHECK (tenant_ops.job_window_open(validation_job));
GRANT INSERT ON tenant_ops.quarantine TO tenant_ops_admin;

-- The job kinds are listed once, in the library (src/kinds.rs); the catalog asks it.
ALTER TABLE tenant_ops.jobs ADD CONSTRAINT jobs_kind_check CHECK (tenant_ops.is_job_kind(kind));
GRANT EXECUTE ON FUNCTION tenant_ops.is_job_kind(text) TO PUBLIC;

-- A dump keeps the rows of the tables marked with pg_extension_config_dump; their identity
-- sequences must be marked too, or a restored database numbers its next job 1 again and
-- collides with the jobs it brought along (23505 on jobs_pkey, found by e2e
-- uuid_keys_survive_dump_and_restore). Every sequence of the schema, once all exist.
DO $$
DECLARE
    s regclass;
BEGIN
    FOR s IN SELECT c.oid FROM pg_catalog.pg_class c
              WHERE c.relkind = 'S' AND c.relnamespace = 'tenant_ops'::pg_catalog.regnamespace
              ORDER BY c.relname
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(s, '');
    END LOOP;
END
$$;
