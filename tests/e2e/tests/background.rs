//! Background jobs end to end: `migrate_tenant(..., background => true)` queues a job that the
//! per-database scheduler hands to a worker; events on `NOTIFY tenant_ops_events`; pause,
//! resume and cancel; a job worker killed with `kill -9` or an immediate shutdown resumes from
//! its checkpoint; a job runs with its submitter's privileges; too few worker slots leave jobs
//! queued (never failed, never more workers than slots); a database that gets the extension
//! later gets a scheduler without a restart.
//!
//! The dispatch demo (office 1 unless said otherwise) is migrated with fresh UUIDs; targets are
//! compared with the source by count and by the key-independent checksum of `migration.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use pg_tenant_ops_e2e::postgres::fallible_iterator::FallibleIterator;
use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate_hint, describe_error, Cluster, Interruption};

use crate::common::*;
use crate::migration::{
    assert_report_verified, assert_target_matches_office, assert_target_matches_source,
    dispatch_db, job_report, job_status, mapped, office1_counts, progress, progress_sums,
    target_counts, DISPATCH_TABLES,
};

const LAUNCHER: &str = "pg_tenant_ops launcher";
const SCHEDULER: &str = "pg_tenant_ops scheduler";
const JOB_WORKER: &str = "pg_tenant_ops job migrate";

/// A migration of a dispatch office into its own schema, in batches of `batch` rows, with
/// recorded keys (`uuid7`: each batch writes its mappings to id_map, which a resume must find).
fn bg_options(batch: i32) -> String {
    format!(
        r#"{{"id_strategy": "uuid7", "create_target": true, "shared": "copy", "strip_prefix": "dispatch_", "batch_size": {batch}}}"#
    )
}

// ----- helpers ----------------------------------------------------------------------------------

/// `migrate_tenant(scope, tenant, target, options, background => true)`: the job id.
#[track_caller]
fn queue(
    c: &mut impl pg_tenant_ops_e2e::postgres::GenericClient,
    scope: &str,
    tenant: &str,
    target: &str,
    options: &str,
) -> i64 {
    migrate_tenant(c, scope, tenant, target, options, true)
}

/// Pids of the server processes of `backend_type`, in `db` when given.
#[track_caller]
fn pids(c: &mut Client, backend_type: &str, db: Option<&str>) -> Vec<i32> {
    c.query(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = $1
            AND ($2::text IS NULL OR datname = $2::text) ORDER BY pid",
        &[&backend_type, &db],
    )
    .unwrap_or_else(|e| panic!("reading pg_stat_activity: {}", describe_error(&e)))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The scheduler of `db` (waiting up to 15 s: the launcher looks for new extensions every few
/// seconds).
#[track_caller]
fn wait_scheduler(c: &mut Client, db: &str) -> i32 {
    until(
        &format!("a scheduler runs in database {db}"),
        Duration::from_secs(15),
        || pids(c, SCHEDULER, Some(db)).first().copied(),
    )
}

/// Waits until no job worker runs anywhere in the cluster (tests run one at a time).
#[track_caller]
fn wait_no_job_worker(c: &mut Client) {
    until(
        "every job worker has exited",
        Duration::from_secs(30),
        || pids(c, JOB_WORKER, None).is_empty().then_some(()),
    );
}

/// `(status, worker_pid, attempts, error, executor, submitted_by)` of a job.
type JobRow = (String, Option<i32>, i32, Option<String>, String, String);

#[track_caller]
fn job_row(c: &mut Client, job: i64) -> JobRow {
    let r = c
        .query_one(
            "SELECT status, worker_pid, attempts, error, executor, submitted_by::text
               FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("reading job {job}: {}", describe_error(&e)));
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

/// The job's lifecycle events in `tenant_ops.job_log` (those named `job.*`), in order.
#[track_caller]
fn lifecycle(c: &mut Client, job: i64) -> Vec<String> {
    c.query(
        "SELECT event FROM tenant_ops.job_log WHERE job_id = $1 AND event LIKE 'job.%' ORDER BY id",
        &[&job],
    )
    .unwrap_or_else(|e| panic!("reading tenant_ops.job_log: {}", describe_error(&e)))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Per dispatch table (DISPATCH_TABLES order): the rows the job's committed copy steps logged.
/// A batch committed twice would count twice; a step cut short rolled its log entry back.
#[track_caller]
fn step_rows(c: &mut Client, job: i64) -> Vec<i64> {
    DISPATCH_TABLES
        .iter()
        .map(|(source, _, _)| {
            c.query_one(
                "SELECT coalesce(sum(rows), 0)::int8 FROM tenant_ops.job_log
                  WHERE job_id = $1 AND event = 'step' AND stage = 'copy'
                    AND table_name = $2::text::regclass",
                &[&job, source],
            )
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("reading tenant_ops.job_log: {}", describe_error(&e)))
        })
        .collect()
}

/// A finished job of office 1 into `app`: verified, rows_done and the target's rows per table
/// equal to the source's, and every batch committed exactly once (`when` says across what).
#[track_caller]
fn assert_copied_once(c: &mut Client, job: i64, source_counts: &[i64], when: &str) {
    let report = job_report(c, job);
    assert_report_verified(&report, job);
    let done: Vec<i64> = report.iter().map(|r| r.rows_done).collect();
    assert_eq!(done, source_counts, "job_report rows_done per table");
    assert_target_matches_source(c, "app", source_counts);
    assert_eq!(
        step_rows(c, job),
        source_counts,
        "every batch committed once{when}"
    );
}

/// An office's rows per dispatch table, by the hand-written SQL.
#[track_caller]
fn office_counts(c: &mut Client, office: &str) -> Vec<i64> {
    DISPATCH_TABLES
        .iter()
        .map(|(_, _, sql)| count(c, sql, office))
        .collect()
}

/// Waits until the job runs in a worker and has copied some rows, but not all of them:
/// `(worker pid, rows done)`. Panics if it ends first.
#[track_caller]
fn wait_mid_run(c: &mut Client, job: i64, partial_table: bool) -> (i32, i64) {
    until(
        &format!("job {job} is running in a worker with some rows copied"),
        Duration::from_secs(60),
        || {
            let (status, pid, _, error, _, _) = job_row(c, job);
            let (done, all, _) = progress_sums(c, job)
                .unwrap_or_else(|e| panic!("reading tenant_ops.progress: {}", describe_error(&e)));
            assert!(
                matches!(status.as_str(), "queued" | "running"),
                "job {job} is {status} ({done}/{all} rows, error {error:?}) before it could be interrupted"
            );
            let partial = progress(c, job)
                .values()
                .any(|(d, t)| *d > 0 && Some(*d) < *t);
            let far_enough = if partial_table { partial } else { done > 0 };
            match pid {
                Some(pid) if status == "running" && far_enough && done < all => Some((pid, done)),
                _ => None,
            }
        },
    )
}

/// `(event, job_id, kind, scope, tenant, status)` of a tenant_ops_events payload.
type Event = (String, i64, String, String, String, String);

fn parse_event(c: &mut Client, payload: &str) -> Event {
    let r = c
        .query_one(
            "SELECT p->>'event', (p->>'job_id')::int8, p->>'kind', p->>'scope', p->>'tenant', p->>'status'
               FROM (SELECT $1::text::jsonb) x(p)",
            &[&payload],
        )
        .unwrap_or_else(|e| panic!("payload {payload:?} is not the JSON expected: {}", describe_error(&e)));
    let s = |i: usize| -> String { r.get::<_, Option<String>>(i).unwrap_or_default() };
    (
        s(0),
        r.get::<_, Option<i64>>(1).unwrap_or(-1),
        s(2),
        s(3),
        s(4),
        s(5),
    )
}

// ----- tests ------------------------------------------------------------------------------------

/// A background migration (office 1, scale 2) runs in a worker after COMMIT: a listener sees
/// job.queued, job.started, job.progress..., job.succeeded for it, in that order; the report is
/// verified and the target equals the source; scheduler_health shows the processes; waiting in
/// the transaction that queued a job is refused (55000).
pub fn background_job_runs_and_notifies(cluster: &Cluster) {
    let db = "e2e_bg_notify";
    let mut c = dispatch_db(cluster, db, 2);
    let source_counts = office1_counts(&mut c, 2);
    exec(&mut c, "CREATE SCHEMA app; CREATE SCHEMA app2;");
    let mut listener = cluster.connect(db);
    exec(&mut listener, "LISTEN tenant_ops_events");

    // Queued, not run, in the submitting transaction.
    let mut tx = c.transaction().expect("BEGIN");
    let job = queue(&mut tx, "dispatch", "1", "app", &bg_options(500));
    let r = tx
        .query_one(
            "SELECT status, executor, worker_pid FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("reading job {job}: {}", describe_error(&e)));
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, Option<i32>>(2)
        ),
        ("queued".to_string(), "background".to_string(), None),
        "a background job is queued (status, executor, worker_pid) by migrate_tenant"
    );
    tx.commit().expect("COMMIT");

    assert_eq!(
        wait_for(&mut c, job, 120.0),
        "succeeded",
        "the background job {job} ends"
    );
    let (status, pid, attempts, error, executor, submitted_by) = job_row(&mut c, job);
    assert_eq!(
        (
            status.as_str(),
            pid,
            attempts,
            error,
            executor.as_str(),
            submitted_by.as_str()
        ),
        ("succeeded", None, 1, None, "background", "postgres"),
        "job {job}: (status, worker_pid, attempts, error, executor, submitted_by)"
    );
    assert_copied_once(&mut c, job, &source_counts, "");

    // The events, in order, for this job.
    let mut events: Vec<Event> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events.iter().any(|e| e.0 == "job.succeeded") {
        assert!(
            Instant::now() < deadline,
            "no job.succeeded notification for job {job} within 10 s after it ended; got {events:?}"
        );
        let payloads: Vec<(String, String)> = listener
            .notifications()
            .timeout_iter(Duration::from_millis(500))
            .map(|n| Ok((n.channel().to_string(), n.payload().to_string())))
            .collect()
            .unwrap_or_else(|e| panic!("receiving notifications: {}", describe_error(&e)));
        for (channel, payload) in payloads {
            assert_eq!(channel, "tenant_ops_events");
            let event = parse_event(&mut listener, &payload);
            if event.1 == job {
                events.push(event);
            }
        }
    }
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    let n = names.len();
    assert!(
        n >= 3
            && names[0] == "job.queued"
            && names[1] == "job.started"
            && names[n - 1] == "job.succeeded"
            && names[2..n - 1].iter().all(|e| *e == "job.progress"),
        "job {job}: events must be job.queued, job.started, job.progress..., job.succeeded; got {names:?}"
    );
    for e in &events {
        let want_status = match e.0.as_str() {
            "job.queued" => "queued",
            "job.succeeded" => "succeeded",
            _ => "running",
        };
        assert_eq!(
            (e.2.as_str(), e.3.as_str(), e.4.as_str(), e.5.as_str()),
            ("migrate", "dispatch", "1", want_status),
            "{} payload (kind, scope, tenant, status): {e:?}",
            e.0
        );
    }

    // The machinery at a glance.
    wait_no_job_worker(&mut c);
    let launcher = pids(&mut c, LAUNCHER, None);
    let scheduler = pids(&mut c, SCHEDULER, Some(db));
    assert_eq!(
        launcher.len(),
        1,
        "one launcher in the cluster: {launcher:?}"
    );
    assert_eq!(scheduler.len(), 1, "one scheduler in {db}: {scheduler:?}");
    let r = c
        .query_one(
            "SELECT launcher_pid, scheduler_pid,
                    scheduler_started_at <= last_heartbeat AND last_heartbeat <= now(),
                    last_heartbeat >= now() - interval '30 seconds',
                    queued, running, failed, workers_running, max_workers
               FROM tenant_ops.scheduler_health()",
            &[],
        )
        .unwrap_or_else(|e| panic!("scheduler_health(): {}", describe_error(&e)));
    let health = (
        r.get::<_, Option<i32>>(0),
        r.get::<_, Option<i32>>(1),
        r.get::<_, Option<bool>>(2),
        r.get::<_, Option<bool>>(3),
        r.get::<_, i64>(4),
        r.get::<_, i64>(5),
        r.get::<_, i64>(6),
        r.get::<_, i64>(7),
        r.get::<_, i32>(8),
    );
    assert_eq!(
        health,
        (
            Some(launcher[0]),
            Some(scheduler[0]),
            Some(true),
            Some(true),
            0,
            0,
            0,
            0,
            8
        ),
        "scheduler_health(): launcher_pid, scheduler_pid, started <= heartbeat <= now, heartbeat within 30 s, queued, running, failed, workers_running, max_workers"
    );

    // Waiting for a job in the transaction that queued it: refused, nothing kept.
    let jobs_before = scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs");
    let mut tx = c.transaction().expect("BEGIN");
    let job2 = queue(&mut tx, "dispatch", "2", "app2", &bg_options(500));
    assert_sqlstate_hint(
        tx.query_one("SELECT tenant_ops.wait_for_job($1)", &[&job2]),
        "55000",
        "not committed",
        "COMMIT",
    );
    tx.rollback().expect("ROLLBACK");
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs"),
        jobs_before,
        "the rolled-back job is gone"
    );
}

/// Office 1 (scale 3) in batches of 200: paused mid-run it stops after the current step and
/// nothing advances; resumed, it finishes with exact counts. A second job, cancelled while it
/// runs, is undone by its worker: the target tables are empty again, the first target intact.
pub fn background_pause_resume_cancel(cluster: &Cluster) {
    let db = "e2e_bg_pause";
    let mut c = dispatch_db(cluster, db, 3);
    let source_counts = office1_counts(&mut c, 3);
    let total: i64 = source_counts.iter().sum();
    exec(&mut c, "CREATE SCHEMA app; CREATE SCHEMA app2;");
    let tables: Vec<(String, &str)> = DISPATCH_TABLES
        .iter()
        .map(|(s, t, _)| (regclass_text(&mut c, s), *t))
        .collect();

    let job = queue(&mut c, "dispatch", "1", "app", &bg_options(200));
    let (worker, _) = wait_mid_run(&mut c, job, false);
    assert_eq!(control(&mut c, "pause_job", job), "paused");
    assert_eq!(job_status(&mut c, job), "paused");
    // The worker stops after its current step and lets go of the job.
    until(
        &format!("the worker {worker} of paused job {job} exits"),
        Duration::from_secs(30),
        || (!pids(&mut c, JOB_WORKER, None).contains(&worker)).then_some(()),
    );
    let (status, pid, ..) = job_row(&mut c, job);
    assert_eq!(
        (status.as_str(), pid),
        ("paused", None),
        "job {job} paused, without a worker"
    );

    // Nothing advances while paused.
    let frozen = progress(&mut c, job);
    let done: i64 = frozen.values().map(|(d, _)| d).sum();
    assert!(
        done > 0 && done < total,
        "paused mid-run: {done} of {total} rows done: {frozen:?}"
    );
    for _ in 0..15 {
        thread::sleep(Duration::from_millis(100));
        assert_eq!(
            progress(&mut c, job),
            frozen,
            "tenant_ops.progress of paused job {job} changed"
        );
        assert!(
            pids(&mut c, JOB_WORKER, None).is_empty(),
            "a job worker runs while job {job} is paused"
        );
    }
    assert_eq!(
        wait_for(&mut c, job, 0.2),
        "paused",
        "wait_for_job with a timeout returns the current status"
    );
    // Rows and checkpoint were committed together.
    for (source, target) in &tables {
        let (rows_done, _) = frozen.get(source).copied().unwrap_or((0, None));
        assert_eq!(
            scalar(&mut c, &format!("SELECT count(*) FROM app.{target}")),
            rows_done,
            "paused: app.{target} holds its checkpoint's rows"
        );
    }

    assert_eq!(control(&mut c, "resume_job", job), "queued");
    assert_eq!(
        wait_for(&mut c, job, 120.0),
        "succeeded",
        "job {job} after resume_job"
    );
    assert_copied_once(&mut c, job, &source_counts, " across pause and resume");
    assert_eq!(
        mapped(&mut c, job),
        source_counts[..5].to_vec(),
        "id_map of job {job}"
    );
    let events = lifecycle(&mut c, job);
    assert_eq!(
        events,
        [
            "job.queued",
            "job.started",
            "job.paused",
            "job.resumed",
            "job.started",
            "job.succeeded"
        ],
        "job {job}'s lifecycle in job_log"
    );

    // A second job, cancelled while it runs.
    wait_no_job_worker(&mut c);
    let id_map_before = scalar(&mut c, "SELECT count(*) FROM tenant_ops.id_map");
    let job2 = queue(&mut c, "dispatch", "1", "app2", &bg_options(200));
    let (worker2, _) = wait_mid_run(&mut c, job2, false);
    let written: i64 = target_counts(&mut c, "app2").iter().sum();
    assert!(written > 0, "job {job2} has written rows before the cancel");
    assert_eq!(control(&mut c, "cancel_job", job2), "cancelling");
    assert_eq!(
        wait_for(&mut c, job2, 60.0),
        "cancelled",
        "job {job2} after cancel_job"
    );
    until(
        &format!("the worker {worker2} of cancelled job {job2} exits"),
        Duration::from_secs(30),
        || (!pids(&mut c, JOB_WORKER, None).contains(&worker2)).then_some(()),
    );
    let (_, pid, _, error, ..) = job_row(&mut c, job2);
    assert_eq!((pid, error), (None, None), "job {job2}: worker_pid, error");
    let app2: Vec<String> = c
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'app2' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        app2,
        Vec::<String>::new(),
        "the cancel drops the tables create_target made in app2 with the job's rows"
    );
    assert_target_matches_source(&mut c, "app", &source_counts);
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.id_map"),
        id_map_before,
        "the cancel leaves the first job's mappings alone"
    );
    let events = lifecycle(&mut c, job2);
    assert_eq!(
        events,
        [
            "job.queued",
            "job.started",
            "job.cancel_requested",
            "job.cancelled"
        ],
        "job {job2}'s lifecycle in job_log"
    );
    assert_eq!(
        office1_counts(&mut c, 3),
        source_counts,
        "the source is untouched"
    );
}

/// Office 1 (scale 3, batches of 200) in the background, interrupted mid-run: after the
/// restart the scheduler requeues the job, a new worker resumes it from its checkpoint, and it
/// ends exactly like an uninterrupted run: no batch twice, no row missing.
fn background_resumes_after(cluster: &Cluster, db: &str, how: Interruption) {
    let mut c = dispatch_db(cluster, db, 3);
    let source_counts = office1_counts(&mut c, 3);
    exec(&mut c, "CREATE SCHEMA app");

    let job = queue(&mut c, "dispatch", "1", "app", &bg_options(200));
    let (worker, _) = wait_mid_run(&mut c, job, true);
    assert!(
        pids(&mut c, JOB_WORKER, Some(db)).contains(&worker),
        "jobs.worker_pid {worker} is a '{JOB_WORKER}' process in {db}"
    );
    drop(c);
    cluster.interrupt(how, worker);

    let mut c = cluster.connect(db);
    assert_eq!(
        wait_for(&mut c, job, 120.0),
        "succeeded",
        "job {job} after the {how:?}"
    );
    let (_, pid, attempts, error, executor, _) = job_row(&mut c, job);
    // The restart is not charged to the job: it had committed steps in that attempt.
    assert_eq!(
        (pid, attempts, error, executor.as_str()),
        (None, 1, None, "background"),
        "job {job}: (worker_pid, attempts, error, executor)"
    );
    assert_eq!(
        lifecycle(&mut c, job),
        [
            "job.queued",
            "job.started",
            "job.requeued",
            "job.started",
            "job.succeeded"
        ],
        "job {job}'s lifecycle in job_log"
    );
    assert_copied_once(
        &mut c,
        job,
        &source_counts,
        &format!(" (none redone after the {how:?})"),
    );
    assert_eq!(
        mapped(&mut c, job),
        source_counts[..5].to_vec(),
        "tenant_ops.id_map: one new id per source row of products, offices, doctors, patients, orders"
    );
    assert_eq!(
        office1_counts(&mut c, 3),
        source_counts,
        "the source is untouched"
    );
}

pub fn background_resumes_after_worker_kill9(cluster: &Cluster) {
    background_resumes_after(cluster, "e2e_bg_kill9", Interruption::Kill9);
}

pub fn background_resumes_after_immediate_shutdown(cluster: &Cluster) {
    background_resumes_after(cluster, "e2e_bg_immediate", Interruption::ImmediateShutdown);
}

/// A job runs with its submitter's privileges: an operator without SELECT on one source table
/// queues a background migration, the worker fails it (not retried) with the privilege error
/// and writes nothing. Granted the privilege, retry_job reruns it, as the operator again: the
/// tables it creates belong to the operator.
pub fn background_job_runs_as_submitter(cluster: &Cluster) {
    let db = "e2e_bg_submitter";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(
        &mut su,
        "CREATE SCHEMA shop;
         CREATE TABLE shop.account (account_id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE shop.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account, total numeric NOT NULL);
         CREATE TABLE shop.order_line (line_id int PRIMARY KEY, order_id int NOT NULL REFERENCES shop.orders, qty int NOT NULL);
         INSERT INTO shop.account VALUES (1, 'one'), (2, 'two');
         INSERT INTO shop.orders VALUES (10, 1, 5), (11, 1, 7), (20, 2, 1);
         INSERT INTO shop.order_line VALUES (100, 10, 1), (101, 10, 2), (102, 11, 1), (200, 20, 9);
         CREATE SCHEMA dst;
         CREATE ROLE bg_op LOGIN IN ROLE tenant_ops_operator;
         GRANT USAGE ON SCHEMA shop TO bg_op;
         GRANT SELECT ON shop.account, shop.orders, shop.order_line TO bg_op;
         GRANT USAGE, CREATE ON SCHEMA dst TO bg_op;
         SELECT tenant_ops.create_scope('shop', 'shop.account', 'account_id');",
    );
    let mut op = cluster.connect_as(db, "bg_op");
    // A job lacking a privilege is refused when queued (submission.rs): this one loses it
    // after its submission, before the transaction that queued it commits.
    let mut tx = op.transaction().unwrap();
    let job = queue(&mut tx, "shop", "1", "dst", r#"{"create_target": true}"#);
    exec(&mut su, "REVOKE SELECT ON shop.order_line FROM bg_op");
    tx.commit().unwrap();
    assert_eq!(wait_for(&mut op, job, 60.0), "failed", "job {job} of bg_op");
    let (_, pid, attempts, error, executor, submitted_by) = job_row(&mut su, job);
    assert_eq!(
        (pid, attempts, executor.as_str(), submitted_by.as_str()),
        (None, 1, "background", "bg_op"),
        "job {job}: (worker_pid, attempts: a privilege error is not retried, executor, submitted_by)"
    );
    let error = error.unwrap_or_default();
    assert!(
        error.contains("permission denied") && error.contains("order_line"),
        "job {job}: jobs.error must name the privilege and the table, got {error:?}"
    );
    assert_eq!(
        lifecycle(&mut su, job),
        ["job.queued", "job.started", "job.failed"],
        "job {job}'s lifecycle in job_log"
    );
    let dst_rows = |c: &mut Client| -> Vec<(String, i64)> {
        let tables: Vec<String> = c
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'dst' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        tables
            .into_iter()
            .map(|t| {
                let n = scalar(c, &format!("SELECT count(*) FROM dst.{t}"));
                (t, n)
            })
            .collect()
    };
    let after_failure = dst_rows(&mut su);
    assert!(
        after_failure.is_empty(),
        "the failed job left tables (or rows) in dst: {after_failure:?}"
    );
    assert_eq!(
        scalar(&mut su, "SELECT count(*) FROM tenant_ops.id_map"),
        0,
        "the failed job recorded no mapping"
    );

    exec(&mut su, "GRANT SELECT ON shop.order_line TO bg_op");
    assert_eq!(control(&mut op, "retry_job", job), "queued");
    assert_eq!(
        wait_for(&mut op, job, 60.0),
        "succeeded",
        "job {job} after retry_job"
    );
    assert_eq!(
        dst_rows(&mut su),
        [
            ("account".to_string(), 1),
            ("order_line".to_string(), 3),
            ("orders".to_string(), 2)
        ],
        "tenant 1 in dst"
    );
    let owners: Vec<String> = su
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'dst'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        owners,
        ["bg_op"],
        "the worker created dst's tables as the submitter"
    );
    // The operator sees the machinery as a superuser does.
    wait_no_job_worker(&mut su);
    let launcher = pids(&mut su, LAUNCHER, None);
    let scheduler = pids(&mut su, SCHEDULER, Some(db));
    let r = op
        .query_one(
            "SELECT launcher_pid, scheduler_pid FROM tenant_ops.scheduler_health()",
            &[],
        )
        .unwrap_or_else(|e| panic!("scheduler_health() as bg_op: {}", describe_error(&e)));
    assert_eq!(
        (r.get::<_, Option<i32>>(0), r.get::<_, Option<i32>>(1)),
        (launcher.first().copied(), scheduler.first().copied()),
        "scheduler_health() as a tenant_ops_operator: launcher_pid, scheduler_pid"
    );
}

/// The scheduler claims a job and starts its worker; a worker that starts before the claim is
/// committed must still run the job (not leave it 'running' without a worker until the
/// 30-second orphan check requeues it). A trigger slows the claim's commit to make the window
/// wide; the job must still start at once and succeed without being requeued.
pub fn background_job_starts_despite_slow_claim(cluster: &Cluster) {
    let db = "e2e_bg_slow_claim";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(
        &mut c,
        "CREATE SCHEMA shop;
         CREATE TABLE shop.account (account_id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE shop.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account, total numeric NOT NULL);
         INSERT INTO shop.account VALUES (1, 'one'), (2, 'two');
         INSERT INTO shop.orders VALUES (10, 1, 5), (11, 1, 7), (20, 2, 1);
         CREATE SCHEMA dst;
         SELECT tenant_ops.create_scope('shop', 'shop.account', 'account_id');
         -- The claim (queued -> running) takes 0.3 s more to commit.
         CREATE FUNCTION public.slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF OLD.status = 'queued' AND NEW.status = 'running' THEN PERFORM pg_sleep(0.3); END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER slow_claim BEFORE UPDATE ON tenant_ops.jobs
             FOR EACH ROW EXECUTE FUNCTION public.slow_claim();",
    );
    wait_scheduler(&mut c, db);
    let job = queue(&mut c, "shop", "1", "dst", r#"{"create_target": true}"#);
    let status = wait_for(&mut c, job, 10.0);
    let row = job_row(&mut c, job);
    assert_eq!(
        status, "succeeded",
        "job {job} within 10 s of a slow claim; (status, worker_pid, attempts, error, executor, submitted_by) = {row:?}"
    );
    assert_eq!(
        lifecycle(&mut c, job),
        ["job.queued", "job.started", "job.succeeded"],
        "job {job}'s lifecycle in job_log"
    );
    assert_eq!(
        (
            scalar(&mut c, "SELECT count(*) FROM dst.account"),
            scalar(&mut c, "SELECT count(*) FROM dst.orders")
        ),
        (1, 2),
        "tenant 1 in dst"
    );
}

/// A cluster of its own with room for exactly one job worker (max_worker_processes = 3: the
/// launcher, the one scheduler tenant_ops.databases allows, one job). Four jobs queued at once
/// all succeed, one after the other: never two job workers, never two running jobs, the ones
/// without a slot wait in the queue (job.waiting) and are not charged an attempt.
pub fn background_slot_exhaustion(_shared: &Cluster) {
    let db = "e2e_bg_slots";
    let cluster = Cluster::start_with(&[
        "max_worker_processes = 3",
        "max_logical_replication_workers = 0",
        "max_parallel_workers = 0",
        "max_parallel_workers_per_gather = 0",
        "max_parallel_maintenance_workers = 0",
        "tenant_ops.databases = 'e2e_bg_slots'",
    ]);
    let mut c = dispatch_db(&cluster, db, 1);
    let offices = ["1", "2", "3", "4"];
    let counts: BTreeMap<&str, Vec<i64>> = offices
        .iter()
        .map(|o| (*o, office_counts(&mut c, o)))
        .collect();
    for o in offices {
        exec(&mut c, &format!("CREATE SCHEMA s{o}"));
    }
    wait_scheduler(&mut c, db);

    let mut tx = c.transaction().expect("BEGIN");
    let jobs: Vec<i64> = offices
        .iter()
        .map(|o| queue(&mut tx, "dispatch", o, &format!("s{o}"), &bg_options(500)))
        .collect();
    tx.commit().expect("COMMIT");

    let mut watcher = cluster.connect(db);
    let (mut most_workers, mut most_running, mut samples) = (0i64, 0i64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = watcher
            .query_one(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = $1),
                        count(*) FILTER (WHERE status = 'running'),
                        count(*) FILTER (WHERE status IN ('queued', 'running'))
                   FROM tenant_ops.jobs WHERE id = ANY($2)",
                &[&JOB_WORKER, &jobs],
            )
            .unwrap_or_else(|e| panic!("sampling: {}", describe_error(&e)));
        let (workers, running, open): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        most_workers = most_workers.max(workers);
        most_running = most_running.max(running);
        samples += 1;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 4 jobs did not end within 120 s ({open} open)"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let lifecycles: Vec<(i64, Vec<String>)> =
        jobs.iter().map(|&j| (j, lifecycle(&mut c, j))).collect();
    for &job in &jobs {
        let (status, _, attempts, error, ..) = job_row(&mut c, job);
        assert_eq!(
            (status.as_str(), attempts, error),
            ("succeeded", 1, None),
            "job {job}: (status, attempts, error); lifecycles: {lifecycles:?}"
        );
    }
    assert_eq!(
        (most_workers, most_running),
        (1, 1),
        "at most one job worker and one running job at a time (the only free slot), over {samples} samples; lifecycles: {lifecycles:?}"
    );
    for (job, events) in &lifecycles {
        assert!(
            !events.iter().any(|e| e == "job.requeued"),
            "job {job} was requeued (it was marked running without a worker): {lifecycles:?}"
        );
    }
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.jobs a JOIN tenant_ops.jobs b ON a.id < b.id
              WHERE tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)"
        ),
        0,
        "the jobs ran one after the other"
    );
    let waited = scalar(
        &mut c,
        "SELECT count(DISTINCT job_id) FROM tenant_ops.job_log WHERE event = 'job.waiting'",
    );
    assert!(
        waited >= 1,
        "a job found no free worker slot and logged job.waiting"
    );
    for (o, job) in offices.iter().zip(&jobs) {
        assert_report_verified(&job_report(&mut c, *job), *job);
        let office: i32 = o.parse().unwrap();
        assert_target_matches_office(&mut c, &format!("s{o}"), office, &counts[o]);
    }
}

/// A database without the extension keeps no scheduler; after CREATE EXTENSION one appears
/// within 15 s (no restart) and runs a queued background job.
pub fn background_extension_created_later(cluster: &Cluster) {
    let db = "e2e_bg_later";
    let mut c = fresh_db(cluster, db);
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/dispatch.sql");
    cluster.psql_file(db, &generator);
    exec(&mut c, "SELECT count(*) FROM legacy.generate_dispatch(1)");

    // The launcher may probe the database (a scheduler that exits at once), never stay.
    let mut seen: BTreeMap<i32, (Instant, Instant)> = BTreeMap::new();
    let until_t = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until_t {
        let now = Instant::now();
        for pid in pids(&mut c, SCHEDULER, Some(db)) {
            seen.entry(pid).or_insert((now, now)).1 = now;
        }
        thread::sleep(Duration::from_millis(50));
    }
    for (pid, (first, last)) in &seen {
        assert!(
            *last - *first < Duration::from_secs(1),
            "scheduler {pid} stays in {db}, which has no extension ({:?})",
            *last - *first
        );
    }

    create_extension(&mut c);
    let started = Instant::now();
    let scheduler = wait_scheduler(&mut c, db);
    let after = started.elapsed();
    let health = until(
        "scheduler_health() shows the scheduler",
        Duration::from_secs(15),
        || {
            c.query_one(
                "SELECT scheduler_pid FROM tenant_ops.scheduler_health()",
                &[],
            )
            .unwrap_or_else(|e| panic!("scheduler_health(): {}", describe_error(&e)))
            .get::<_, Option<i32>>(0)
        },
    );
    assert_eq!(
        health, scheduler,
        "scheduler_health().scheduler_pid is the scheduler of {db} (appeared {after:?} after CREATE EXTENSION)"
    );

    create_scope(&mut c, "dispatch", "legacy.dispatch_offices", "id", "{}");
    exec(&mut c, "CREATE SCHEMA app");
    let counts = office_counts(&mut c, "4");
    let job = queue(&mut c, "dispatch", "4", "app", &bg_options(500));
    assert_eq!(wait_for(&mut c, job, 60.0), "succeeded", "job {job}");
    assert_report_verified(&job_report(&mut c, job), job);
    assert_target_matches_office(&mut c, "app", 4, &counts);
}

/// `CALL run_job` whose job is cancelled meanwhile, and whose undo fails (a trigger on the
/// target refuses the deletes): the job ends `failed` with "cancel failed", the CALL reports
/// it, and the session's advisory lock on the job is released all the same (issue 10).
pub fn run_job_cancel_that_fails_releases_the_lock(cluster: &Cluster) {
    let db = "e2e_run_job_cancel_fails";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(
        &mut su,
        "CREATE SCHEMA shop;
         CREATE TABLE shop.account (account_id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE shop.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account, total numeric NOT NULL);
         INSERT INTO shop.account VALUES (1, 'one');
         INSERT INTO shop.orders SELECT g, 1, g FROM generate_series(1, 40) g;
         CREATE SCHEMA dst;
         CREATE TABLE dst.account (LIKE shop.account INCLUDING ALL);
         CREATE TABLE dst.orders (LIKE shop.orders INCLUDING ALL);
         -- Every copied batch takes a while, so that the cancel arrives mid-run ...
         CREATE FUNCTION dst.slow() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
         CREATE TRIGGER slow AFTER INSERT ON dst.orders FOR EACH STATEMENT EXECUTE FUNCTION dst.slow();
         -- ... and the undo cannot delete what was copied.
         CREATE FUNCTION dst.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'dst.orders keeps its rows'; END $$;
         CREATE TRIGGER refuse BEFORE DELETE ON dst.orders FOR EACH ROW EXECUTE FUNCTION dst.refuse();
         SELECT tenant_ops.create_scope('shop', 'shop.account', 'account_id');",
    );
    let job: i64 = su
        .query_one(
            "SELECT tenant_ops.migrate_tenant('shop', '1', 'dst', '{\"defer\": true, \"batch_size\": 1}')",
            &[],
        )
        .unwrap()
        .get(0);
    let mut runner = cluster.connect(db);
    let runner_pid: i32 = runner
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let call = thread::spawn(move || {
        let r = runner.batch_execute(&format!("CALL tenant_ops.run_job({job})"));
        (runner, r.map_err(|e| describe_error(&e)))
    });
    until(
        &format!("job {job} copies orders"),
        Duration::from_secs(30),
        || {
            let done: i64 = su
                .query_one(
                    "SELECT coalesce(sum(rows_done), 0)::int8 FROM tenant_ops.progress
                      WHERE job_id = $1 AND table_name = 'shop.orders'::regclass",
                    &[&job],
                )
                .unwrap()
                .get(0);
            (done >= 3).then_some(())
        },
    );
    assert_eq!(control(&mut su, "cancel_job", job), "cancelling");
    let (mut runner, outcome) = call.join().expect("the CALL thread");
    let err = outcome.expect_err("CALL run_job of a job whose cancel failed reports it");
    assert!(
        err.contains("keeps its rows"),
        "the CALL names why the undo failed: {err}"
    );
    let (status, _, _, error, ..) = job_row(&mut su, job);
    assert_eq!(status, "failed", "job {job} after its cancel failed");
    let error = error.unwrap_or_default();
    assert!(
        error.starts_with("cancel failed:") && error.contains("keeps its rows"),
        "jobs.error: {error:?}"
    );
    // The same session holds no lock on the job any more, and can use it again.
    let held: i64 = runner
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            &[&runner_pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        held, 0,
        "advisory locks left held by the session of CALL run_job"
    );
    let other_held: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(other_held, 0, "advisory locks left anywhere");
    drop(runner);
    drop(su);
    cluster.drop_database(db);
}
