-- pg_tenant_ops catalog: roles, the tables the extension owns, and the views over them.
-- Runs first in CREATE EXTENSION (schema tenant_ops is created from the control file).

-- Roles are cluster-wide and may already exist from another database: create only when missing.
DO $roles$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tenant_ops_viewer', 'tenant_ops_operator', 'tenant_ops_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    -- admin ⊃ operator ⊃ viewer
    IF NOT pg_catalog.pg_has_role('tenant_ops_operator', 'tenant_ops_viewer', 'MEMBER') THEN
        GRANT tenant_ops_viewer TO tenant_ops_operator;
    END IF;
    IF NOT pg_catalog.pg_has_role('tenant_ops_admin', 'tenant_ops_operator', 'MEMBER') THEN
        GRANT tenant_ops_operator TO tenant_ops_admin;
    END IF;
END
$roles$;

COMMENT ON ROLE tenant_ops_viewer IS 'pg_tenant_ops: reads scopes, plans, reports, progress and the audit log';
COMMENT ON ROLE tenant_ops_operator IS 'pg_tenant_ops: viewer + migrates, validates, backs up and controls its jobs';
COMMENT ON ROLE tenant_ops_admin IS 'pg_tenant_ops: operator + scopes, restores, repairs, rollbacks, schedules';

CREATE TABLE tenant_ops.scope (
    name        text PRIMARY KEY CHECK (name <> '' AND pg_catalog.length(name) <= 200),
    root        regclass NOT NULL,
    tenant_key  name NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    summary     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE tenant_ops.scope IS
    'Tenant scope definitions as given to create_scope; resolved against the catalog at every use.';
COMMENT ON COLUMN tenant_ops.scope.summary IS
    'What the definition resolved to when it was created (owned and shared tables).';

CREATE TABLE tenant_ops.audit_log (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    session_user_name  name NOT NULL,
    current_user_name  name NOT NULL,
    backend_pid        int NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    action             text NOT NULL,
    target             text NOT NULL,
    arguments          jsonb NOT NULL DEFAULT '{}',
    outcome            text NOT NULL
);
CREATE INDEX audit_log_at_idx ON tenant_ops.audit_log (at);
COMMENT ON TABLE tenant_ops.audit_log IS
    'Every state-changing pg_tenant_ops call: who (session and current user), when, what, arguments, outcome. '
    'Append-only: only the extension owner may change or delete rows.';

CREATE VIEW tenant_ops.scopes AS
SELECT s.name,
       s.root,
       s.tenant_key,
       s.options,
       pg_catalog.jsonb_array_length(s.summary -> 'owned_tables')  AS owned_tables,
       pg_catalog.jsonb_array_length(s.summary -> 'shared_tables') AS shared_tables,
       s.created_at,
       s.created_by
  FROM tenant_ops.scope s;
COMMENT ON VIEW tenant_ops.scopes IS
    'Defined tenant scopes, with how many tables each owned and shared when it was created.';

-- Jobs: every operation (migration, validation, backup, ...) is a resumable state machine.
CREATE TABLE tenant_ops.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL,  -- CHECK (tenant_ops.is_job_kind(kind)): see finalize.sql
    scope         text,
    tenant        text,
    options       jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled', 'rolled_back')),
    submitted_by  name NOT NULL DEFAULT current_user,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    attempts      int NOT NULL DEFAULT 0,
    error         text,
    result        jsonb,
    stage         text NOT NULL DEFAULT 'prepare',
    executor      text NOT NULL DEFAULT 'inline' CHECK (executor IN ('inline', 'procedure', 'background')),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    next_run_at   timestamptz,
    worker_pid    int,
    cancel_requested boolean NOT NULL DEFAULT false,
    error_sqlstate text CHECK (error_sqlstate ~ '^[0-9A-Z]{5}$')
);
COMMENT ON COLUMN tenant_ops.jobs.error_sqlstate IS 'The SQLSTATE of the error in jobs.error (what a step failed with).';
CREATE INDEX jobs_queue_idx ON tenant_ops.jobs (id) WHERE status = 'queued' AND executor = 'background';
COMMENT ON COLUMN tenant_ops.jobs.next_run_at IS 'A queued background job is not started before this (retry back-off).';
COMMENT ON COLUMN tenant_ops.jobs.worker_pid IS 'The background worker running the job, while it runs.';
CREATE INDEX jobs_open_idx ON tenant_ops.jobs (kind, scope, tenant) WHERE status IN ('queued', 'running', 'paused');
COMMENT ON TABLE tenant_ops.jobs IS
    'One row per operation: what, for whom, its status and outcome. stage and tenant_ops.job_tables hold the checkpoint a step resumes from.';

CREATE TABLE tenant_ops.job_tables (
    job_id       bigint NOT NULL REFERENCES tenant_ops.jobs ON DELETE CASCADE,
    step         int NOT NULL,
    source       regclass NOT NULL,
    target       text,
    role         text NOT NULL,
    stage        text NOT NULL DEFAULT 'pending',
    rows_total   bigint,
    rows_done    bigint NOT NULL DEFAULT 0,
    last_key     text[],
    details      jsonb NOT NULL DEFAULT '{}',
    started_at   timestamptz,
    updated_at   timestamptz,
    PRIMARY KEY (job_id, step)
);
COMMENT ON TABLE tenant_ops.job_tables IS
    'Per-table checkpoint of a job: stage, rows done of total, and the last key copied (keyset position). Updated in the same transaction as the rows each step writes.';

CREATE TABLE tenant_ops.job_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES tenant_ops.jobs ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    event       text NOT NULL,
    stage       text,
    table_name  regclass,
    rows        bigint,
    message     text,
    details     jsonb
);
CREATE INDEX job_log_job_idx ON tenant_ops.job_log (job_id, id);
COMMENT ON TABLE tenant_ops.job_log IS 'Every step and event of every job.';

CREATE TABLE tenant_ops.job_errors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES tenant_ops.jobs ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    table_name  regclass,
    source_key  text,
    row_data    jsonb,
    reason      text NOT NULL,
    sqlstate    text
);
CREATE INDEX job_errors_job_idx ON tenant_ops.job_errors (job_id);
COMMENT ON TABLE tenant_ops.job_errors IS
    'Rows a job rejected (with continue_on_error): the row as jsonb, where it came from and why.';

-- Every row re-keyed with uuid7 adds an entry here, so the indexes are chosen for cheap inserts: keys
-- compared byte-wise (COLLATE "C": they are identifiers, not words), the primary key led by
-- the columns that tell entries apart (the namespace is nearly always the same), and a BRIN
-- index for job_id, whose rows are written together (a rollback deletes a job's mappings).
CREATE TABLE tenant_ops.id_map (
    namespace   text COLLATE "C" NOT NULL DEFAULT '',
    source      regclass NOT NULL,
    legacy_key  text COLLATE "C" NOT NULL,
    new_id      uuid NOT NULL,
    job_id      bigint NOT NULL,
    PRIMARY KEY (source, legacy_key, namespace)
);
CREATE INDEX id_map_job_idx ON tenant_ops.id_map USING brin (job_id);
COMMENT ON TABLE tenant_ops.id_map IS
    'Legacy key → new UUID of every row re-keyed with id_strategy uuid7 (uuid and uuid5 keys are computed, not recorded). namespace is empty for a plain migration and names the new tenant for a clone.';

-- The secret of id_strategy uuid: its keys are HMAC-SHA256(secret, the legacy key) with the
-- version-4 bits set (src/migrate/keyed_uuid.rs), computed wherever they are needed instead of
-- recorded in id_map. Drawn by the first uuid migration (not here: a restored dump brings its
-- own row, which must be the only one); readable by the extension owner alone.
CREATE TABLE tenant_ops.id_secret (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret      bytea NOT NULL CHECK (length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenant_ops.id_secret IS
    'The key of id_strategy uuid''s keys (one row, drawn by the first uuid migration). Losing it loses the mapping of every uuid migration, as losing id_map would.';

CREATE TABLE tenant_ops.job_archive (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    bigint NOT NULL REFERENCES tenant_ops.jobs ON DELETE CASCADE,
    step      int NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('source', 'target_before', 'shared_added', 'shared_used')),
    row_data  jsonb NOT NULL
);
CREATE INDEX job_archive_job_idx ON tenant_ops.job_archive (job_id, step, kind);
COMMENT ON TABLE tenant_ops.job_archive IS
    'What a rollback needs: source rows a move deleted, target rows a migration overwrote, keys of shared rows it added (shared_added) and of those it found there and reused (shared_used).';

CREATE TABLE tenant_ops.job_extra (
    job_id  bigint NOT NULL REFERENCES tenant_ops.jobs ON DELETE CASCADE,
    source  regclass NOT NULL,
    key     text[] NOT NULL,
    PRIMARY KEY (job_id, source, key)
);
COMMENT ON TABLE tenant_ops.job_extra IS
    'Rows of other tenants a migration brings along (cross_tenant copy): their primary keys, per job and table.';

CREATE TABLE tenant_ops.scheduler_state (
    id          int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    pid         int,
    started_at  timestamptz,
    heartbeat   timestamptz
);
COMMENT ON TABLE tenant_ops.scheduler_state IS
    'The background scheduler of this database: its pid and last heartbeat (see scheduler_health()).';

CREATE TABLE tenant_ops.integrity_issues (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           bigint NOT NULL REFERENCES tenant_ops.jobs ON DELETE CASCADE,
    check_name       text NOT NULL,
    table_name       regclass NOT NULL,
    constraint_name  text,
    tenant           text,
    other_tenant     text,
    count            bigint NOT NULL,
    sample           jsonb
);
CREATE INDEX integrity_issues_job_idx ON tenant_ops.integrity_issues (job_id);
COMMENT ON TABLE tenant_ops.integrity_issues IS
    'Findings of validate_integrity: the check, table, constraint or link, tenant (and for isolation the other tenant), how many rows, and a sample of their keys.';

-- Key-value sources (import_kv & co.). The readable catalog holds no secret: a Redis URL's
-- password and a dump's data are in kv_source_secrets, on which no role is granted anything
-- (superusers and the extension owner read it; the functions read it as the owner).
CREATE TABLE tenant_ops.kv_sources (
    name        text PRIMARY KEY CHECK (name <> '' AND pg_catalog.length(name) <= 200),
    kind        text NOT NULL CHECK (kind IN ('redis', 'file', 'json')),
    url         text NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    created_by  name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
COMMENT ON TABLE tenant_ops.kv_sources IS
    'Key-value sources: a Redis server (URL without its password), a localStorage dump file, or a dump given as JSON.';
CREATE TABLE tenant_ops.kv_source_secrets (
    name  text PRIMARY KEY REFERENCES tenant_ops.kv_sources ON DELETE CASCADE,
    url   text NOT NULL,
    data  jsonb
);
COMMENT ON TABLE tenant_ops.kv_source_secrets IS
    'Each key-value source''s URL with its password, and a JSON dump''s data: superusers only.';

CREATE SEQUENCE tenant_ops.quarantine_repair_seq;
CREATE TABLE tenant_ops.quarantine (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repair_id       bigint NOT NULL,
    validation_job  bigint,
    table_name      regclass NOT NULL,
    reason          text NOT NULL,
    row_data        jsonb NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    restored_at     timestamptz
);
CREATE INDEX quarantine_repair_idx ON tenant_ops.quarantine (repair_id);
COMMENT ON TABLE tenant_ops.quarantine IS
    'Rows repair_integrity removed with the strategy quarantine, as jsonb, with the reason; restore_quarantined(repair_id) puts them back.';

-- Change capture (src/capture/): triggers the extension installs on a scope's tables write one
-- tenant's changes, in order, into capture_changes in the writer's own transaction (so they
-- survive a crash exactly when the write does); whoever applies them deletes them in the
-- transaction that applies them.
CREATE TABLE tenant_ops.captures (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL,
    scope       text NOT NULL,
    tenant      text NOT NULL,
    tables      regclass[] NOT NULL,
    status      text NOT NULL DEFAULT 'capturing' CHECK (status IN ('capturing', 'cut_over', 'stopped')),
    -- source: the tenant's rows of the scope's tables; target: every row of the tables an
    -- online migration wrote, recorded after its cutover for the reverse sync.
    kind        text NOT NULL DEFAULT 'source' CHECK (kind IN ('source', 'target')),
    install_ddl text NOT NULL,
    remove_ddl  text NOT NULL,
    fence_ddl   text NOT NULL,
    lagging     boolean NOT NULL DEFAULT false,
    applied     bigint NOT NULL DEFAULT 0,
    applied_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    stopped_at  timestamptz
);
CREATE INDEX captures_job_idx ON tenant_ops.captures (job_id);
COMMENT ON TABLE tenant_ops.captures IS
    'Change captures: the tables whose triggers record one tenant''s changes for a job (an online migration), the DDL that installs and removes them, and how many changes were applied.';

CREATE TABLE tenant_ops.capture_changes (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    capture_id  bigint NOT NULL,
    job_id      bigint NOT NULL,
    table_name  oid NOT NULL,
    op          "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
    row_data    jsonb NOT NULL,
    xid         xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    captured_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX capture_changes_capture_idx ON tenant_ops.capture_changes (capture_id, xid);
COMMENT ON TABLE tenant_ops.capture_changes IS
    'Captured changes not yet applied, in order (seq): the row as it is after an insert or update (I, U), or as it was before a delete or a move out of the tenant (D).';

-- Runs a capture's stored install, fence or remove DDL (built by src/capture/ from the
-- catalog) as the extension owner, who owns the trigger functions. Granted to nobody.
CREATE FUNCTION tenant_ops.capture_ddl(capture bigint, what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ddl text;
BEGIN
    -- lock: the captured tables in SHARE mode until the transaction ends (writers wait), so
    -- that an incremental backup reads its changes and their rows at one moment.
    SELECT CASE what WHEN 'install' THEN c.install_ddl WHEN 'fence' THEN c.fence_ddl
                     WHEN 'remove' THEN c.remove_ddl
                     WHEN 'lock' THEN (SELECT 'LOCK TABLE ' || pg_catalog.string_agg(t::pg_catalog.text, ', ') || ' IN SHARE MODE'
                                         FROM pg_catalog.unnest(c.tables) t) END INTO STRICT ddl
      FROM tenant_ops.captures c WHERE c.id = capture;
    EXECUTE ddl;
END
$$;

-- pg_dump keeps the definitions and the audit trail with the database.
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.scope', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.job_tables', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.job_log', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.job_errors', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.id_map', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.id_secret', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.integrity_issues', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.quarantine', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.kv_sources', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.kv_source_secrets', '');

CREATE VIEW tenant_ops.integrity_history AS
SELECT j.scope,
       NULLIF(j.tenant, '') AS tenant,
       j.id AS job_id,
       j.finished_at,
       (j.result ->> 'score')::numeric AS score,
       (j.result ->> 'issues')::int AS issues,
       (j.result ->> 'bad_rows')::bigint AS bad_rows,
       (j.result ->> 'rows_checked')::bigint AS rows_checked,
       j.result -> 'by_check' AS by_check
  FROM tenant_ops.jobs j
 WHERE j.kind = 'validate' AND j.status = 'succeeded';
COMMENT ON VIEW tenant_ops.integrity_history IS 'The integrity score of each scope and tenant over time, one row per validation.';

-- Backups: one row per complete backup file under tenant_ops.backup_directory. A row exists
-- only for a file that was written, fsynced and renamed into place (see src/backup/store.rs).
CREATE TABLE tenant_ops.backups (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope       text NOT NULL,
    tenant      text NOT NULL,
    label       text,
    job_id      bigint REFERENCES tenant_ops.jobs ON DELETE SET NULL,
    file_name   text NOT NULL UNIQUE CHECK (file_name ~ '^tenant_ops_backup_[0-9a-f-]+\.tar\.gz(\.age)?$'),
    size_bytes  bigint NOT NULL,
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    tables      int NOT NULL,
    rows        bigint NOT NULL,
    manifest    jsonb NOT NULL,
    -- age(tar.gz), encrypted to tenant_ops.backup_encryption_key's recipient (a .tar.gz.age file).
    encrypted   boolean NOT NULL DEFAULT false CHECK (encrypted = (file_name LIKE '%.age')),
    created_by  name NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at  timestamptz
);
COMMENT ON TABLE tenant_ops.backups IS
    'One row per backup file: the tenant it holds, its SHA-256, its manifest (tables, columns, row counts, checksums) and when it expires.';
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.backups', '');

-- Schedules (see src/schedule/): a cron expression in a time zone, the operation it runs and
-- the arguments it runs it with, run as the role that created it.
CREATE TABLE tenant_ops.schedule (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                  text NOT NULL UNIQUE CHECK (name <> '' AND pg_catalog.length(name) <= 200),
    cron                  text NOT NULL,
    operation             text NOT NULL
                          CHECK (operation IN ('backup', 'validate', 'migrate', 'export', 'import', 'purge_backups', 'purge_history')),
    params                jsonb NOT NULL DEFAULT '{}',
    enabled               boolean NOT NULL DEFAULT true,
    owner                 name NOT NULL,
    time_zone             text NOT NULL,
    overlap               text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'queue')),
    catch_up              text NOT NULL DEFAULT 'once' CHECK (catch_up IN ('once', 'skip')),
    alert_after           int NOT NULL DEFAULT 3 CHECK (alert_after >= 1),
    engine                text NOT NULL DEFAULT 'builtin' CHECK (engine IN ('builtin', 'pg_cron')),
    cron_job_id           bigint,
    next_run              timestamptz,
    last_run              timestamptz,
    last_job              bigint,
    pending               boolean NOT NULL DEFAULT false,
    runs                  bigint NOT NULL DEFAULT 0,
    failures              bigint NOT NULL DEFAULT 0,
    consecutive_failures  int NOT NULL DEFAULT 0,
    alerted               boolean NOT NULL DEFAULT false,
    created_by            name NOT NULL DEFAULT session_user,
    created_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at            timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX schedule_due_idx ON tenant_ops.schedule (next_run) WHERE enabled AND engine = 'builtin';
COMMENT ON TABLE tenant_ops.schedule IS
    'schedule_operation''s schedules: cron expression, time zone, operation and its params, the owner whose rights its jobs run with, and the counters the scheduler keeps.';
COMMENT ON COLUMN tenant_ops.schedule.pending IS 'overlap "queue": a firing came while the last run was still going; it runs once that run ends.';
COMMENT ON COLUMN tenant_ops.schedule.cron_job_id IS 'engine pg_cron: the jobid in cron.job.';

CREATE TABLE tenant_ops.schedule_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id   bigint NOT NULL REFERENCES tenant_ops.schedule ON DELETE CASCADE,
    schedule      text NOT NULL,
    trigger       text NOT NULL DEFAULT 'cron' CHECK (trigger IN ('cron', 'catch_up', 'queued', 'manual', 'pg_cron')),
    scheduled_at  timestamptz NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    job_id        bigint,
    outcome       text NOT NULL CHECK (outcome IN ('waiting', 'queued', 'running', 'paused', 'succeeded', 'failed',
                                                   'cancelled', 'rolled_back', 'skipped', 'missed')),
    late          boolean NOT NULL DEFAULT false,
    firings       int NOT NULL DEFAULT 1 CHECK (firings >= 1),
    lag           interval GENERATED ALWAYS AS (started_at - scheduled_at) STORED,
    finished_at   timestamptz,
    sqlstate      text,
    error         text
);
CREATE INDEX schedule_runs_schedule_idx ON tenant_ops.schedule_runs (schedule_id, id);
CREATE INDEX schedule_runs_job_idx ON tenant_ops.schedule_runs (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX schedule_runs_open_idx ON tenant_ops.schedule_runs (job_id) WHERE outcome IN ('queued', 'running', 'paused');
CREATE INDEX schedule_runs_started_idx ON tenant_ops.schedule_runs (started_at);
COMMENT ON TABLE tenant_ops.schedule_runs IS
    'One row per firing of a schedule: when it was due, when it started, the job, its outcome (kept in step with the job), how late it was. '
    'skipped: the previous run was still going (overlap skip); missed: firings while the server was down (catch_up skip, firings counts them); '
    'late: a catch-up run after downtime. Purged after tenant_ops.history_retention.';

CREATE VIEW tenant_ops.schedules AS
SELECT s.id,
       s.name,
       s.cron,
       s.operation,
       s.params,
       s.enabled,
       s.owner,
       s.time_zone,
       s.last_run,
       s.last_job,
       j.status AS last_status,
       CASE WHEN s.enabled AND s.engine = 'builtin' THEN s.next_run END AS next_run,
       s.runs,
       s.failures,
       s.consecutive_failures,
       s.overlap,
       s.catch_up,
       s.alert_after,
       s.engine,
       s.cron_job_id,
       s.created_at
  FROM tenant_ops.schedule s
  LEFT JOIN tenant_ops.jobs j ON j.id = s.last_job;
COMMENT ON VIEW tenant_ops.schedules IS
    'Schedules: cron, operation, params, owner, time zone, the last run and its job''s status, the next run, runs, failures, consecutive failures.';

SELECT pg_catalog.pg_extension_config_dump('tenant_ops.schedule', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.schedule_runs', '');
