-- bench/background_checks.sql: correctness of one batch of benchmark jobs (bench/background.sh).
-- psql variables: :batch (bench.jobs.batch), :n_jobs (how many jobs the batch must have).
-- Prints one line per problem found, nothing when all is well:
--   - the batch has :n_jobs jobs, every one 'succeeded' after exactly one attempt, with exactly
--     one 'job.started' event and no 'job.retry' or 'job.requeued' event (nothing crashed and
--     no error is expected, so a requeue means a worker vanished: a job lost for a while);
--   - per job, rows rejected into tenant_ops.job_errors: exactly the one orphan order item of
--     the dirty office 5, none anywhere else;
--   - per target schema and tenant, the rows in the target (counted with plain joins) equal the
--     tenant's rows in legacy.* minus the rejected ones: none lost, none written twice;
--   - no target schema holds a tenant that no job of the batch migrated there, nor rows whose
--     office cannot be reached.
WITH j AS (
    SELECT b.job_id, b.tenant, b.target, t.status, t.attempts, t.error,
           (SELECT count(*) FROM tenant_ops.job_log l WHERE l.job_id = b.job_id AND l.event = 'job.started') AS started,
           (SELECT count(*) FROM tenant_ops.job_log l WHERE l.job_id = b.job_id AND l.event = 'job.retry') AS retried,
           (SELECT count(*) FROM tenant_ops.job_log l WHERE l.job_id = b.job_id AND l.event = 'job.requeued') AS requeued,
           (SELECT string_agg(DISTINCT l.message, '; ') FROM tenant_ops.job_log l
             WHERE l.job_id = b.job_id AND l.event IN ('job.retry', 'job.requeued')) AS why
    FROM bench.jobs b LEFT JOIN tenant_ops.jobs t ON t.id = b.job_id
    WHERE b.batch = :'batch'
), rejected AS (
    SELECT j.job_id, (e.table_name::oid::regclass::text) AS source, count(e.id) AS n
    FROM j JOIN tenant_ops.job_errors e ON e.job_id = j.job_id
    GROUP BY 1, 2
), targets AS (
    SELECT DISTINCT target FROM j
), actual AS (
    SELECT t.target, c.tenant, c.table_name, c.n
    FROM targets t CROSS JOIN LATERAL bench.target_counts(t.target) c
), expected AS (
    SELECT j.job_id, j.tenant, j.target, c.table_name,
           c.n - coalesce((SELECT r.n FROM rejected r
                            WHERE r.job_id = j.job_id AND r.source = 'legacy.' || c.table_name), 0) AS n
    FROM j JOIN bench.tenant_counts c ON c.tenant = j.tenant
)
SELECT format('batch %s: %s jobs, expected %s', :'batch', (SELECT count(*) FROM j), :n_jobs)
 WHERE (SELECT count(*) FROM j) <> :n_jobs
UNION ALL
SELECT format('job %s (tenant %s into %s): status %s, error: %s', job_id, tenant, target,
              coalesce(status, 'missing'), coalesce(error, '-'))
  FROM j WHERE status IS DISTINCT FROM 'succeeded'
UNION ALL
SELECT format('job %s (tenant %s into %s): %s attempt(s), %s job.started event(s), %s job.retry, %s job.requeued (%s)',
              job_id, tenant, target, attempts, started, retried, requeued, coalesce(why, '-'))
  FROM j WHERE attempts IS DISTINCT FROM 1 OR started <> 1 OR retried <> 0 OR requeued <> 0
UNION ALL
SELECT format('job %s (tenant %s into %s): %s rejected row(s) of %s', j.job_id, j.tenant, j.target, r.n, r.source)
  FROM j JOIN rejected r USING (job_id)
 WHERE NOT (j.tenant = 5 AND r.source = 'legacy.dispatch_order_items' AND r.n = 1)
UNION ALL
SELECT format('job %s (tenant 5 into %s): the orphan order item was not rejected', j.job_id, j.target)
  FROM j WHERE j.tenant = 5
   AND NOT EXISTS (SELECT FROM rejected r WHERE r.job_id = j.job_id AND r.source = 'legacy.dispatch_order_items')
UNION ALL
SELECT format('tenant %s in %s: %s rows of %s, expected %s', e.tenant, e.target, coalesce(a.n, 0), e.table_name, e.n)
  FROM expected e
  LEFT JOIN actual a ON a.target = e.target AND a.tenant = e.tenant AND a.table_name = e.table_name
 WHERE coalesce(a.n, 0) <> e.n
UNION ALL
SELECT format('%s holds tenant %s, which no job of batch %s migrated there', a.target, a.tenant, :'batch')
  FROM actual a
 WHERE a.table_name = 'dispatch_offices'
   AND NOT EXISTS (SELECT FROM j WHERE j.target = a.target AND j.tenant = a.tenant)
UNION ALL
SELECT format('%s: %s rows whose office cannot be reached', target, n)
  FROM actual WHERE table_name = 'unreachable' AND n <> 0;
