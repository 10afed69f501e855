-- bench/background_setup.sql: the data of bench/background.sh, loaded into a database that has
-- the extension and demo/dispatch.sql with legacy.generate_dispatch(1) already run.
--
-- psql variables: :n_tenants (offices 1..N), :n_schemas (target schemas t01..tNN).
--
-- 1. Offices 7..N: copies of office 4 (Millbrook, ~1.2k rows) with fresh ids after every
--    existing one, so the benchmark has N tenants in one database. Every FK stays valid.
-- 2. One scope, dispatch. A tenant has one open migration at a time (whatever the scope or
--    target), so the jobs queued at once are one per tenant, spread over the target schemas.
-- 3. Target schemas t01..tNN and lat (the start-latency jobs): the target tables are created
--    by an inline create_target migration of office 6 (a root row and nothing else) which is
--    then rolled back (the tables stay, the row goes), and the shared products are loaded once
--    by hand, so that concurrent jobs never create a table or copy a shared row at once.
-- 4. Bookkeeping: bench.batches (one row per batch queued at once), bench.jobs (every job),
--    bench.samples and bench.sample() (the sampler), bench.tenant_counts (expected rows) and
--    bench.target_counts() (the same counted in a target schema).

SET client_min_messages = warning;

-- ---- 1. offices 7..20 -------------------------------------------------------------------------
CREATE TEMP TABLE bump AS
SELECT k AS office, k - 6 AS i,
       (SELECT max(id) FROM legacy.dispatch_doctors)  AS doc_n,
       (SELECT max(id) FROM legacy.dispatch_patients) AS pat_n,
       (SELECT max(id) FROM legacy.dispatch_orders)   AS ord_n
FROM generate_series(7, :n_tenants) k;

INSERT INTO legacy.dispatch_offices (id, name, region, created_at)
SELECT b.office, o.name || ' ' || b.i, o.region, o.created_at + make_interval(days => b.i)
FROM bump b, legacy.dispatch_offices o WHERE o.id = 4;

INSERT INTO legacy.dispatch_doctors (id, office_id, supervisor_id, full_name, email, licensed_on)
SELECT d.id + b.i * b.doc_n, b.office, d.supervisor_id + b.i * b.doc_n, d.full_name,
       replace(d.email, '@', '+' || b.i || '@'), d.licensed_on
FROM bump b, legacy.dispatch_doctors d WHERE d.office_id = 4
ORDER BY 1;

INSERT INTO legacy.dispatch_patients (id, doctor_id, full_name, email, phone, birth_date, notes)
SELECT p.id + b.i * b.pat_n, p.doctor_id + b.i * b.doc_n, p.full_name, p.email, p.phone,
       p.birth_date, p.notes
FROM bump b, legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
WHERE d.office_id = 4
ORDER BY 1;

INSERT INTO legacy.dispatch_orders (id, patient_id, status, ordered_at, total)
SELECT o.id + b.i * b.ord_n, o.patient_id + b.i * b.pat_n, o.status, o.ordered_at, o.total
FROM bump b, legacy.dispatch_orders o
JOIN legacy.dispatch_patients p ON p.id = o.patient_id
JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
WHERE d.office_id = 4
ORDER BY 1;

INSERT INTO legacy.dispatch_order_items (order_id, line_no, product_id, quantity, unit_price)
SELECT i.order_id + b.i * b.ord_n, i.line_no, i.product_id, i.quantity, i.unit_price
FROM bump b, legacy.dispatch_order_items i
JOIN legacy.dispatch_orders o ON o.id = i.order_id
JOIN legacy.dispatch_patients p ON p.id = o.patient_id
JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
WHERE d.office_id = 4
ORDER BY 1, 2;

VACUUM ANALYZE legacy.dispatch_offices, legacy.dispatch_doctors, legacy.dispatch_patients,
               legacy.dispatch_orders, legacy.dispatch_order_items, legacy.dispatch_products;

-- ---- bookkeeping --------------------------------------------------------------------------------
CREATE SCHEMA bench;

-- Rows per tenant and table in the source, computed with plain joins (not by the extension).
CREATE TABLE bench.tenant_counts AS
WITH doc AS (SELECT id, office_id FROM legacy.dispatch_doctors),
     pat AS (SELECT p.id, doc.office_id FROM legacy.dispatch_patients p JOIN doc ON doc.id = p.doctor_id),
     ord AS (SELECT o.id, pat.office_id FROM legacy.dispatch_orders o JOIN pat ON pat.id = o.patient_id),
     itm AS (SELECT ord.office_id FROM legacy.dispatch_order_items i JOIN ord ON ord.id = i.order_id)
SELECT f.id AS tenant, t.table_name, t.n
FROM legacy.dispatch_offices f
CROSS JOIN LATERAL (VALUES
    ('dispatch_offices',     1::bigint),
    ('dispatch_doctors',     (SELECT count(*) FROM doc WHERE doc.office_id = f.id)),
    ('dispatch_patients',    (SELECT count(*) FROM pat WHERE pat.office_id = f.id)),
    ('dispatch_orders',      (SELECT count(*) FROM ord WHERE ord.office_id = f.id)),
    ('dispatch_order_items', (SELECT count(*) FROM itm WHERE itm.office_id = f.id))) t(table_name, n);

-- The same counts in a target schema (ids are kept, so the same joins work there).
CREATE FUNCTION bench.target_counts(target name)
RETURNS TABLE(tenant int, table_name text, n bigint) LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format($q$
        WITH doc AS (SELECT id, office_id FROM %1$I.dispatch_doctors),
             pat AS (SELECT p.id, doc.office_id FROM %1$I.dispatch_patients p JOIN doc ON doc.id = p.doctor_id),
             ord AS (SELECT o.id, pat.office_id FROM %1$I.dispatch_orders o JOIN pat ON pat.id = o.patient_id),
             itm AS (SELECT ord.office_id FROM %1$I.dispatch_order_items i JOIN ord ON ord.id = i.order_id)
        SELECT f.id, t.table_name, t.n
        FROM %1$I.dispatch_offices f
        CROSS JOIN LATERAL (VALUES
            ('dispatch_offices',     1::bigint),
            ('dispatch_doctors',     (SELECT count(*) FROM doc WHERE doc.office_id = f.id)),
            ('dispatch_patients',    (SELECT count(*) FROM pat WHERE pat.office_id = f.id)),
            ('dispatch_orders',      (SELECT count(*) FROM ord WHERE ord.office_id = f.id)),
            ('dispatch_order_items', (SELECT count(*) FROM itm WHERE itm.office_id = f.id))) t(table_name, n)
        UNION ALL  -- rows whose office cannot be reached: lost parents, or duplicates' orphans
        SELECT NULL, 'unreachable', (SELECT count(*) FROM %1$I.dispatch_order_items i
                                      WHERE NOT EXISTS (SELECT FROM ord WHERE ord.id = i.order_id))
                                   + (SELECT count(*) FROM %1$I.dispatch_orders o
                                      WHERE NOT EXISTS (SELECT FROM pat WHERE pat.id = o.patient_id))$q$,
        target);
END
$fn$;

-- One row per batch of jobs queued at once.
CREATE TABLE bench.batches (
    name         text PRIMARY KEY,
    first_job    bigint NOT NULL,
    last_job     bigint NOT NULL,
    n_jobs       int NOT NULL,
    committed_at timestamptz           -- clock_timestamp() right after the queuing COMMIT
);

-- Every benchmark job: which batch queued it, for which tenant, into which schema, and (for
-- jobs queued one at a time) clock_timestamp() right after its queuing COMMIT.
CREATE TABLE bench.jobs (
    job_id       bigint PRIMARY KEY,
    batch        text NOT NULL,
    tenant       int NOT NULL,
    target       name NOT NULL,
    committed_at timestamptz
);

-- What the sampler saw.
CREATE TABLE bench.samples (
    batch        text NOT NULL,
    at           timestamptz NOT NULL,
    workers      int NOT NULL,       -- processes with backend_type 'pg_tenant_ops job migrate'
    busy_workers int NOT NULL,       -- of those, the ones driving a job in status 'running' (the
                                     -- others have finished their job and are exiting)
    running_jobs int NOT NULL,       -- jobs of the batch with status 'running'
    queued_jobs  int NOT NULL,       -- jobs of the batch with status 'queued'
    worker_pids  int[],
    running_ids  bigint[]
);

-- Samples the running workers about every `period` seconds until the batch `batch_name` has
-- been queued and every one of its jobs has ended; fails after `timeout_s` seconds.
CREATE PROCEDURE bench.sample(batch_name text, period float8, timeout_s float8)
LANGUAGE plpgsql AS $fn$
DECLARE
    b       bench.batches;
    started timestamptz := clock_timestamp();
    open    bigint;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT * INTO b FROM bench.batches WHERE name = batch_name;
        INSERT INTO bench.samples
        SELECT batch_name, clock_timestamp(), w.n, w.busy, coalesce(j.running, 0), coalesce(j.queued, 0),
               w.pids, j.running_ids
        FROM (SELECT count(*)::int AS n, array_agg(a.pid ORDER BY a.pid) AS pids,
                     count(*) FILTER (WHERE EXISTS (SELECT FROM tenant_ops.jobs r
                                                     WHERE r.worker_pid = a.pid AND r.status = 'running'))::int AS busy
                FROM pg_stat_activity a WHERE a.backend_type = 'pg_tenant_ops job migrate') w
        LEFT JOIN (SELECT count(*) FILTER (WHERE status = 'running')::int AS running,
                          count(*) FILTER (WHERE status = 'queued')::int AS queued,
                          array_agg(id ORDER BY id) FILTER (WHERE status = 'running') AS running_ids
                     FROM tenant_ops.jobs WHERE id BETWEEN b.first_job AND b.last_job) j ON b.name IS NOT NULL;
        IF b.committed_at IS NOT NULL THEN
            SELECT count(*) INTO open FROM tenant_ops.jobs
             WHERE id BETWEEN b.first_job AND b.last_job AND status IN ('queued', 'running', 'paused');
            EXIT WHEN open = 0;
        END IF;
        IF clock_timestamp() - started > make_interval(secs => timeout_s) THEN
            RAISE EXCEPTION 'sampler: batch % not finished after % s', batch_name, timeout_s;
        END IF;
        COMMIT;
        PERFORM pg_sleep(period);
    END LOOP;
    COMMIT;
END
$fn$;

-- ---- 2. scopes ---------------------------------------------------------------------------------
SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id', '{}');

-- ---- 3. target schemas -------------------------------------------------------------------------
SELECT format('CREATE SCHEMA t%s', lpad(s::text, 2, '0')) FROM generate_series(1, :n_schemas) s
UNION ALL SELECT 'CREATE SCHEMA lat'
\gexec

CREATE TEMP TABLE prep_jobs AS
SELECT tenant_ops.migrate_tenant('dispatch', '6', schema_name,
                                 '{"create_target": true, "shared": "copy"}') AS job_id, schema_name
FROM (SELECT format('t%s', lpad(s::text, 2, '0')) AS schema_name FROM generate_series(1, :n_schemas) s
      UNION ALL SELECT 'lat') s;
-- Emptied again (a rollback would drop the tables the job created): only the tables stay.
SELECT format('TRUNCATE %1$I.dispatch_order_items, %1$I.dispatch_orders, %1$I.dispatch_patients,
                        %1$I.dispatch_doctors, %1$I.dispatch_offices, %1$I.dispatch_products', schema_name)
FROM prep_jobs
\gexec

SELECT format('INSERT INTO %I.dispatch_products SELECT * FROM legacy.dispatch_products', schema_name)
FROM prep_jobs
\gexec
