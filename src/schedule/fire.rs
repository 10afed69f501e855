//! Firing schedules. [`fire`] starts one run of a schedule (the scheduler, `trigger_schedule`
//! and pg_cron all come through it): one run at a time (`overlap`), as the owner, recorded in
//! `tenant_ops.schedule_runs`. [`tick`] is the scheduler's turn: keep the history in step
//! with the jobs (counting failures, alerting), start the runs that waited for the last one,
//! fire what is due (catching up after downtime as `catch_up` says), and say how long to
//! sleep until the next firing.

use std::time::Duration;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::params::{self, CatchUp, Overlap};
use super::{from_us, row_json, to_us, Schedule};
use crate::error::{OrRaise, Report};
use crate::sys::{
    as_role, owner, sqlstate_text, subtransaction_kept_if_ok, try_subtransaction, with_settings,
};

/// What started a run (`schedule_runs.trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Cron,
    CatchUp,
    Queued,
    Manual,
    PgCron,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cron => "cron",
            Trigger::CatchUp => "catch_up",
            Trigger::Queued => "queued",
            Trigger::Manual => "manual",
            Trigger::PgCron => "pg_cron",
        }
    }
}

/// A firing older than this when the scheduler gets to it is a catch-up (late), not a run
/// on time; so is one that has a later firing due behind it.
const GRACE_US: i64 = 10_000_000;
/// How many firings a catch-up counts at most.
const COUNT_CAP: usize = 100_000;
/// How long a run's submission waits for a lock (see `submit_as_owner`).
const SUBMIT_LOCK_TIMEOUT: &str = "5s";
/// How many due schedules one tick fires (the rest come in the next, at once).
const BATCH: i64 = 500;

/// `LISTEN tenant_ops_events`: `schedule.fired`, `.skipped`, `.missed`, `.failing`.
pub fn notify(event: &str, s: &Schedule, extra: Value) {
    let mut payload = json!({"event": event, "schedule": s.name, "operation": s.operation.name()});
    if let (Value::Object(p), Value::Object(e)) = (&mut payload, extra) {
        p.extend(e);
    }
    Spi::run_with_args(
        "SELECT pg_catalog.pg_notify('tenant_ops_events', $1)",
        &[payload.to_string().into()],
    )
    .or_raise();
}

/// One row of history.
struct Run<'a> {
    trigger: Trigger,
    scheduled_us: i64,
    outcome: &'a str,
    job: Option<i64>,
    late: bool,
    firings: i64,
    failure: Option<(&'a str, &'a str)>,
}

fn record(s: &Schedule, r: &Run) -> i64 {
    let (sqlstate, error) = r.failure.unzip();
    owner::get_one::<i64>(
        "INSERT INTO tenant_ops.schedule_runs (schedule_id, schedule, trigger, scheduled_at, job_id, outcome, late,
                                               firings, sqlstate, error, finished_at)
         VALUES ($1, $2, $3, pg_catalog.to_timestamp($4::float8 / 1000000), $5, $6, $7, $8, $9, $10,
                 CASE WHEN $6 IN ('failed', 'skipped', 'missed') THEN pg_catalog.clock_timestamp() END)
         RETURNING id",
        &[
            s.id.into(),
            s.name.as_str().into(),
            r.trigger.as_str().into(),
            r.scheduled_us.into(),
            r.job.into(),
            r.outcome.into(),
            r.late.into(),
            (r.firings.clamp(1, i32::MAX as i64) as i32).into(),
            sqlstate.into(),
            error.into(),
        ],
    )
    .or_raise()
    .unwrap_or(0)
}

/// Whether the schedule's last run is still going (its job queued, running or paused).
fn last_run_open(s: &Schedule) -> bool {
    let Some(job) = s.last_job else { return false };
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM tenant_ops.jobs WHERE id = $1 AND status IN ('queued', 'running', 'paused'))",
        &[job.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// Starts one run of `s` due at `scheduled_us` (or records why not). `Ok(Some(job))`: a job
/// was queued; `Ok(None)`: skipped or queued behind the running one (overlap); `Err`: the
/// submission failed, recorded as a failed run (the caller decides whether to raise it).
pub fn fire(
    s: &Schedule,
    trigger: Trigger,
    scheduled_us: i64,
    late: bool,
    firings: i64,
) -> Result<Option<i64>, Report> {
    let mut run = Run {
        trigger,
        scheduled_us,
        outcome: "skipped",
        job: None,
        late,
        firings,
        failure: None,
    };
    if trigger != Trigger::Queued && last_run_open(s) {
        if s.params.overlap == Overlap::Queue && !s.pending {
            run.outcome = "waiting";
            record(s, &run);
            owner::execute(
                "UPDATE tenant_ops.schedule SET pending = true WHERE id = $1",
                &[s.id.into()],
            )
            .or_raise();
            notify(
                "schedule.skipped",
                s,
                json!({"queued": true, "running_job": s.last_job, "scheduled_at": from_us(scheduled_us).to_string()}),
            );
        } else {
            record(s, &run);
            notify(
                "schedule.skipped",
                s,
                json!({"queued": false, "running_job": s.last_job, "scheduled_at": from_us(scheduled_us).to_string()}),
            );
        }
        return Ok(None);
    }
    let submitted = submit_as_owner(s);
    match submitted {
        Ok(job) => {
            run.outcome = "queued";
            run.job = Some(job);
            if trigger == Trigger::Queued {
                // The run that waited: its row gets the job.
                owner::execute(
                    "UPDATE tenant_ops.schedule_runs SET job_id = $2, outcome = 'queued', started_at = pg_catalog.clock_timestamp()
                      WHERE id = (SELECT max(id) FROM tenant_ops.schedule_runs WHERE schedule_id = $1 AND outcome = 'waiting')",
                    &[s.id.into(), job.into()],
                )
                .or_raise();
            } else {
                record(s, &run);
            }
            owner::execute(
                "UPDATE tenant_ops.schedule
                    SET last_run = pg_catalog.to_timestamp($2::float8 / 1000000), last_job = $3, runs = runs + 1,
                        pending = false
                  WHERE id = $1",
                &[s.id.into(), scheduled_us.into(), job.into()],
            )
            .or_raise();
            crate::audit::record(
                "schedule_fire",
                &s.name,
                json!({"trigger": trigger.as_str(), "owner": s.owner, "scheduled_at": from_us(scheduled_us).to_string(), "late": late}),
                &format!("job {job}"),
            );
            notify(
                "schedule.fired",
                s,
                json!({"job_id": job, "trigger": trigger.as_str(), "late": late,
                       "scheduled_at": from_us(scheduled_us).to_string()}),
            );
            Ok(Some(job))
        }
        Err(report) => {
            let code = sqlstate_text(report.sqlstate);
            run.outcome = "failed";
            run.failure = Some((&code, &report.message));
            if trigger == Trigger::Queued {
                owner::execute(
                    "UPDATE tenant_ops.schedule_runs SET outcome = 'failed', sqlstate = $2, error = $3,
                            started_at = pg_catalog.clock_timestamp(), finished_at = pg_catalog.clock_timestamp()
                      WHERE id = (SELECT max(id) FROM tenant_ops.schedule_runs WHERE schedule_id = $1 AND outcome = 'waiting')",
                    &[s.id.into(), code.as_str().into(), report.message.as_str().into()],
                )
                .or_raise();
            } else {
                record(s, &run);
            }
            owner::execute(
                "UPDATE tenant_ops.schedule
                    SET last_run = pg_catalog.to_timestamp($2::float8 / 1000000), failures = failures + 1,
                        consecutive_failures = consecutive_failures + 1, pending = false
                  WHERE id = $1",
                &[s.id.into(), scheduled_us.into()],
            )
            .or_raise();
            Err(report)
        }
    }
}

/// The operation's submission, as the schedule's owner with that role's rights now (its
/// membership in the role the kind needs, its privileges on the tables), in a subtransaction
/// so that a refusal is recorded and nothing of it stays.
fn submit_as_owner(s: &Schedule) -> Result<i64, Report> {
    let role = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[s.owner.as_str().into()],
    )
    .or_raise();
    let Some(role) = role else {
        return Err(Report::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "role \"{}\", the owner of schedule \"{}\", does not exist",
                s.owner, s.name
            ),
        ));
    };
    let args = s.params.args.clone();
    let operation = s.operation;
    // A submission only checks and queues: a lock a user holds on a tenant table must not
    // stall the scheduler (every other schedule of the database) for longer than this.
    let submitted = with_settings(&[("lock_timeout", SUBMIT_LOCK_TIMEOUT)], || {
        as_role(role, || {
            try_subtransaction(|| subtransaction_kept_if_ok(|| params::submit(operation, &args)))
        })
    });
    match submitted {
        Ok(r) => r,
        Err(caught) => Err(Report::new(caught.sqlstate, caught.message)),
    }
}

/// The history in step with the jobs: a run's outcome follows its job; a run that ended
/// counts as a success (the consecutive failures start again) or a failure; a schedule that
/// reached `alert_after` consecutive failures raises `schedule.failing` once (WARNING in the
/// server log).
pub fn sync_runs() {
    let ended: Vec<(i64, String)> = owner::rows(
        "WITH changed AS (
           SELECT r.id, j.status, j.finished_at, j.error, j.error_sqlstate
             FROM tenant_ops.schedule_runs r JOIN tenant_ops.jobs j ON j.id = r.job_id
            WHERE r.outcome IN ('queued', 'running', 'paused') AND j.status <> r.outcome)
         UPDATE tenant_ops.schedule_runs r
            SET outcome = c.status, finished_at = c.finished_at, error = c.error, sqlstate = c.error_sqlstate
           FROM changed c WHERE r.id = c.id
         RETURNING r.schedule_id, r.outcome",
        &[],
        |r| {
            Ok((
                r.get::<i64>(1)?.unwrap_or(0),
                r.get::<String>(2)?.unwrap_or_default(),
            ))
        },
    )
    .or_raise();
    for (schedule, outcome) in ended {
        match outcome.as_str() {
            "succeeded" => owner::execute(
                "UPDATE tenant_ops.schedule SET consecutive_failures = 0, alerted = false WHERE id = $1",
                &[schedule.into()],
            ),
            "failed" => owner::execute(
                "UPDATE tenant_ops.schedule SET failures = failures + 1, consecutive_failures = consecutive_failures + 1
                  WHERE id = $1",
                &[schedule.into()],
            ),
            _ => Ok(0),
        }
        .or_raise();
    }
    alert_failing();
}

fn alert_failing() {
    let failing: Vec<Value> = owner::rows(
        concat!(
            "UPDATE tenant_ops.schedule s SET alerted = true
              WHERE s.consecutive_failures >= s.alert_after AND NOT s.alerted
             RETURNING ",
            row_json!(),
            " || pg_catalog.jsonb_build_object('consecutive_failures', s.consecutive_failures,
                 'last_error', (SELECT r.error FROM tenant_ops.schedule_runs r WHERE r.schedule_id = s.id
                                 AND r.outcome = 'failed' ORDER BY r.id DESC LIMIT 1),
                 'last_sqlstate', (SELECT r.sqlstate FROM tenant_ops.schedule_runs r WHERE r.schedule_id = s.id
                                 AND r.outcome = 'failed' ORDER BY r.id DESC LIMIT 1))"
        ),
        &[],
        |r| Ok(r.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null)),
    )
    .or_raise();
    for v in failing {
        let n = v["consecutive_failures"].as_i64().unwrap_or(0);
        let error = v["last_error"].as_str().unwrap_or("").to_string();
        let sqlstate = v["last_sqlstate"].clone();
        let s = Schedule::from_json(v);
        pgrx::warning!(
            "pg_tenant_ops: schedule \"{}\" has failed {n} times in a row (last error: {error})",
            s.name
        );
        notify(
            "schedule.failing",
            &s,
            json!({"consecutive_failures": n, "error": error, "sqlstate": sqlstate}),
        );
    }
}

/// The runs that waited for the previous one (overlap `queue`), now that it ended.
fn start_waiting(now_us: i64) {
    let waiting: Vec<Value> = owner::rows(
        concat!(
            "SELECT ",
            row_json!(),
            " || pg_catalog.jsonb_build_object('waiting_since_us',
                   (SELECT (EXTRACT(epoch FROM r.scheduled_at) * 1000000)::pg_catalog.int8
                      FROM tenant_ops.schedule_runs r WHERE r.schedule_id = s.id AND r.outcome = 'waiting'
                     ORDER BY r.id DESC LIMIT 1))
               FROM tenant_ops.schedule s
              WHERE s.pending AND s.enabled
                AND NOT EXISTS (SELECT FROM tenant_ops.jobs j WHERE j.id = s.last_job
                                   AND j.status IN ('queued', 'running', 'paused'))
              FOR UPDATE OF s SKIP LOCKED"
        ),
        &[],
        |r| Ok(r.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null)),
    )
    .or_raise();
    for v in waiting {
        let since = v["waiting_since_us"].as_i64().unwrap_or(now_us);
        let s = Schedule::from_json(v);
        let _ = try_subtransaction(|| fire(&s, Trigger::Queued, since, false, 1));
    }
}

/// Fires one due schedule and moves its next firing past `now_us`.
fn fire_due(s: &Schedule, now_us: i64) {
    let Some(due_us) = s.next_run_us else { return };
    let Some(t) = s.timetable() else {
        // Cannot happen (the expression was checked when set); never loop on it.
        owner::execute(
            "UPDATE tenant_ops.schedule SET next_run = NULL WHERE id = $1",
            &[s.id.into()],
        )
        .or_raise();
        return;
    };
    let now = from_us(now_us);
    let (firings, _) = t.firings_between(from_us(due_us), now, COUNT_CAP);
    let next = t.next_after(now).map(to_us);
    let on_time = firings <= 1 && now_us - due_us <= GRACE_US;
    // In a subtransaction: whatever goes wrong with one schedule, the others fire, and the
    // next firing is still set.
    let _ = try_subtransaction(|| {
        if on_time {
            let _ = fire(s, Trigger::Cron, due_us, false, 1);
        } else {
            match s.params.catch_up {
                CatchUp::Once => {
                    let _ = fire(s, Trigger::CatchUp, due_us, true, firings.max(1) as i64);
                }
                CatchUp::Skip => {
                    record(
                        s,
                        &Run {
                            trigger: Trigger::Cron,
                            scheduled_us: due_us,
                            outcome: "missed",
                            job: None,
                            late: true,
                            firings: firings.max(1) as i64,
                            failure: None,
                        },
                    );
                    notify(
                        "schedule.missed",
                        s,
                        json!({"firings": firings.max(1), "first_missed": from_us(due_us).to_string()}),
                    );
                }
            }
        }
    });
    owner::execute(
        "UPDATE tenant_ops.schedule SET next_run = pg_catalog.to_timestamp($2::float8 / 1000000) WHERE id = $1",
        &[s.id.into(), next.into()],
    )
    .or_raise();
}

/// Schedule runs older than `tenant_ops.history_retention` go, at most once an hour (the
/// history never grows without bound, whether or not a purge_history schedule exists).
fn purge_old_runs() {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_US: AtomicI64 = AtomicI64::new(0);
    let now = to_us(jiff::Timestamp::now());
    if now - LAST_US.load(Ordering::Relaxed) < 3_600_000_000 {
        return;
    }
    LAST_US.store(now, Ordering::Relaxed);
    owner::execute(
        "DELETE FROM tenant_ops.schedule_runs
          WHERE started_at < pg_catalog.now() - pg_catalog.make_interval(mins => $1)
            AND outcome NOT IN ('waiting', 'queued', 'running', 'paused')",
        &[crate::gucs::history_retention_minutes().into()],
    )
    .or_raise();
}

/// The scheduler's turn (in its own transaction): history in step, waiting runs started, due
/// schedules fired. Returns how long until the next firing (None: nothing scheduled).
pub fn tick() -> Option<Duration> {
    sync_runs();
    purge_old_runs();
    let now_us = to_us(jiff::Timestamp::now());
    start_waiting(now_us);
    loop {
        let due: Vec<Value> = owner::rows(
            concat!(
                "SELECT ",
                row_json!(),
                " FROM tenant_ops.schedule s
                  WHERE s.enabled AND s.engine = 'builtin'
                    AND s.next_run <= pg_catalog.to_timestamp($1::float8 / 1000000)
                  ORDER BY s.next_run
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED"
            ),
            &[now_us.into(), BATCH.into()],
            |r| Ok(r.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null)),
        )
        .or_raise();
        let n = due.len() as i64;
        for v in due {
            fire_due(&Schedule::from_json(v), now_us);
        }
        if n < BATCH {
            break;
        }
    }
    let next_us = owner::get_one::<i64>(
        "SELECT (EXTRACT(epoch FROM pg_catalog.min(next_run)) * 1000000)::pg_catalog.int8
           FROM tenant_ops.schedule WHERE enabled AND engine = 'builtin'",
        &[],
    )
    .or_raise()?;
    let wait = next_us - to_us(jiff::Timestamp::now());
    Some(Duration::from_micros(wait.max(0) as u64))
}

/// `trigger_schedule`: a run now, whatever the expression says (pg_cron calls this at each
/// firing of a pg_cron schedule). Returns the job id, or None when the run was skipped or
/// queued behind the running one; a refused submission is raised.
pub fn trigger(name: &str) -> Result<Option<i64>, super::Error> {
    let s = super::define::load_for_update(name)?;
    let by_pg_cron = Spi::get_one::<bool>(
        "SELECT current_setting('application_name') = 'pg_cron'
             OR EXISTS (SELECT FROM pg_catalog.pg_stat_activity
                         WHERE pid = pg_catalog.pg_backend_pid() AND backend_type LIKE 'pg_cron%')",
    )
    .or_raise()
    .unwrap_or(false);
    let trigger = if by_pg_cron {
        Trigger::PgCron
    } else {
        Trigger::Manual
    };
    let now = to_us(jiff::Timestamp::now());
    let job = fire(&s, trigger, now, false, 1).map_err(super::Error::Operation)?;
    if job.is_some() {
        crate::worker::wake_scheduler_after_commit();
    }
    Ok(job)
}
