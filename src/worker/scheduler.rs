//! The scheduler of one database: claims queued background jobs (`FOR UPDATE SKIP LOCKED`)
//! within the caps, starts one dynamic worker per job, puts back in the queue the jobs whose
//! worker died (a crash, a kill), and keeps a heartbeat; fires the schedules that are due
//! (`crate::schedule::fire::tick`). Woken by a latch when a job is queued, ends, or a schedule
//! changes (see `wake_scheduler_after_commit`), at a schedule's next firing, and otherwise
//! every second for the job queue.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use super::{Signals, JOB_TYPE_PREFIX, LIBRARY};
use crate::gucs;

const POLL: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Wakes just after a firing is due rather than just before it (the wait is in milliseconds).
const FIRING_SLACK: Duration = Duration::from_millis(1);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn tenant_ops_scheduler_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    if !BackgroundWorker::transaction(extension_installed) {
        return; // The launcher tries again later.
    }
    BackgroundWorker::transaction(|| {
        Spi::run(
            "INSERT INTO tenant_ops.scheduler_state (id, pid, started_at, heartbeat)
             VALUES (1, pg_catalog.pg_backend_pid(), pg_catalog.now(), pg_catalog.now())
             ON CONFLICT (id) DO UPDATE SET pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
                                            heartbeat = EXCLUDED.heartbeat",
        )
        .ok();
    });
    pgrx::log!("pg_tenant_ops scheduler started in database \"{db}\"");
    let mut last_beat = Instant::now();
    let mut warned: BTreeSet<i64> = BTreeSet::new();
    loop {
        let keep_going = BackgroundWorker::transaction(|| {
            if !extension_installed() {
                return false;
            }
            requeue_orphans();
            if last_beat.elapsed() >= HEARTBEAT {
                Spi::run("UPDATE tenant_ops.scheduler_state SET heartbeat = pg_catalog.now() WHERE id = 1").ok();
            }
            true
        });
        if last_beat.elapsed() >= HEARTBEAT {
            last_beat = Instant::now();
        }
        if !keep_going {
            break;
        }
        // Schedules first, so that a run fired now is claimed in the same turn.
        let next_firing = BackgroundWorker::transaction(|| {
            crate::sys::try_subtransaction(crate::schedule::fire::tick).unwrap_or_else(|e| {
                pgrx::warning!("pg_tenant_ops: evaluating schedules failed: {}", e.message);
                Some(POLL)
            })
        });
        BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
            claim_and_start(&db, &mut warned)
        }));
        // Until the next firing (a latch set by a new or changed schedule, a submitted job or
        // a job's end wakes us sooner), at most the job queue's poll interval.
        let timeout = next_firing.map_or(POLL, |d| d.min(POLL) + FIRING_SLACK);
        if !Signals::wait(timeout) {
            break;
        }
    }
    BackgroundWorker::transaction(|| {
        Spi::run("UPDATE tenant_ops.scheduler_state SET pid = NULL WHERE id = 1 AND pid = pg_catalog.pg_backend_pid()").ok();
    });
}

fn extension_installed() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_tenant_ops')",
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Jobs marked running whose worker is gone (a crash, kill -9, immediate shutdown) go back to
/// the queue; their checkpoint makes the next worker resume where they stopped.
///
/// A restart is charged to a job (its start counted as an attempt) only when the job made no
/// progress in that attempt: one `kill -9` restarts every backend, and the jobs that were
/// committing steps all along are not at fault. A job that brings the server down itself
/// never gets a step committed, so it still fails after `max_attempts` starts.
fn requeue_orphans() {
    Spi::run_with_args(
        "WITH orphan AS (
           SELECT j.id, j.attempts,
                  EXISTS (SELECT FROM tenant_ops.job_log l
                           WHERE l.job_id = j.id AND l.event NOT LIKE 'job.%'
                             AND l.id > (SELECT pg_catalog.max(s.id) FROM tenant_ops.job_log s
                                          WHERE s.job_id = j.id AND s.event = 'job.started')) AS progressed
             FROM tenant_ops.jobs j
            WHERE j.status = 'running' AND j.executor = 'background'
              AND (j.worker_pid IS NULL AND j.updated_at < pg_catalog.clock_timestamp() - interval '30 seconds'
                   OR j.worker_pid IS NOT NULL
                      AND j.worker_pid NOT IN (SELECT pid FROM pg_catalog.pg_stat_activity WHERE pid IS NOT NULL))
              ),
         gone AS (
           UPDATE tenant_ops.jobs j
              SET status = CASE WHEN NOT o.progressed AND o.attempts >= $1 THEN 'failed' ELSE 'queued' END,
                  error = CASE WHEN NOT o.progressed AND o.attempts >= $1
                               THEN 'its worker died in each of ' || o.attempts || ' attempts, before committing a step' ELSE j.error END,
                  finished_at = CASE WHEN NOT o.progressed AND o.attempts >= $1 THEN pg_catalog.clock_timestamp() END,
                  attempts = CASE WHEN o.progressed THEN GREATEST(o.attempts - 1, 0) ELSE o.attempts END,
                  worker_pid = NULL, updated_at = pg_catalog.clock_timestamp()
             FROM orphan o WHERE j.id = o.id
           RETURNING j.id, o.progressed)
         INSERT INTO tenant_ops.job_log (job_id, event, message)
         SELECT id, 'job.requeued',
                CASE WHEN progressed THEN 'its worker is gone; the job resumes from its last checkpoint (not counted as an attempt: it was making progress)'
                     ELSE 'its worker is gone; the job resumes from its last checkpoint' END
           FROM gone",
        &[gucs::max_attempts().into()],
    )
    .ok();
}

/// Claims as many queued jobs as the caps allow and starts a worker for each.
fn claim_and_start(db: &str, warned: &mut BTreeSet<i64>) {
    let running_workers = Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type LIKE $1 || '%'",
        &[JOB_TYPE_PREFIX.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0);
    let free = gucs::max_workers() as i64 - running_workers;
    if free <= 0 {
        return;
    }
    // Per kind: what is running here (claimed, possibly not started yet) against its cap
    // (from the registry of kinds).
    let (kinds, caps) = crate::kinds::caps();
    let claimed = Spi::connect(|c| {
        c.select(
            "WITH running AS (SELECT kind, pg_catalog.count(*) AS n FROM tenant_ops.jobs
                               WHERE status = 'running' AND executor = 'background' GROUP BY kind),
                  queued AS (SELECT id, kind, pg_catalog.row_number() OVER (PARTITION BY kind ORDER BY id) AS rank
                               FROM tenant_ops.jobs
                              WHERE status = 'queued' AND executor = 'background'
                                AND (next_run_at IS NULL OR next_run_at <= pg_catalog.now()))
             SELECT q.id, q.kind FROM queued q LEFT JOIN running r USING (kind)
               JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int4[])) AS cap(kind, n)
                 ON cap.kind = q.kind
              WHERE q.rank + coalesce(r.n, 0) <= cap.n
              ORDER BY q.id LIMIT $3",
            None,
            &[kinds.into(), caps.into(), free.into()],
        )
        .map(|rows| {
            rows.filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<String>(2).ok()??))).collect::<Vec<_>>()
        })
        .unwrap_or_default()
    });
    for (id, kind) in claimed {
        // SKIP LOCKED: a job another scheduler pass is claiming is left alone.
        let locked = Spi::get_one_with_args::<i64>(
            "SELECT id FROM tenant_ops.jobs WHERE id = $1 AND status = 'queued' FOR UPDATE SKIP LOCKED",
            &[id.into()],
        )
        .ok()
        .flatten();
        if locked.is_none() {
            continue;
        }
        let started = BackgroundWorkerBuilder::new(&format!("{JOB_TYPE_PREFIX} {kind} {id}"))
            .set_type(&format!("{JOB_TYPE_PREFIX} {kind}"))
            .set_library(LIBRARY)
            .set_function("tenant_ops_job_main")
            .set_argument(id.into_datum())
            .set_extra(db)
            .enable_spi_access()
            .load_dynamic();
        match started {
            Ok(_) => {
                warned.remove(&id);
                Spi::run_with_args(
                    "UPDATE tenant_ops.jobs SET status = 'running', worker_pid = NULL,
                            updated_at = pg_catalog.clock_timestamp() WHERE id = $1",
                    &[id.into()],
                )
                .ok();
            }
            Err(_) => {
                // No slot: the job stays queued and is tried again; say so once.
                if warned.insert(id) {
                    pgrx::warning!(
                        "pg_tenant_ops: no background worker slot free for job {id}; it stays queued (raise max_worker_processes to run more jobs at once)"
                    );
                    Spi::run_with_args(
                        "INSERT INTO tenant_ops.job_log (job_id, event, message, details)
                         VALUES ($1, 'job.waiting', 'no background worker slot is free; the job stays queued',
                                 '{\"hint\": \"raise max_worker_processes\"}')",
                        &[id.into()],
                    )
                    .ok();
                }
                break;
            }
        }
    }
}
