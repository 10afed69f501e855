//! Schedules end to end: the per-database scheduler fires seconds-level schedules on time in
//! two databases at once; disabling stops one, altering it moves the next firing; one run at
//! a time (overlap skip and queue); catch-up after an immediate shutdown spanning firings;
//! a run that fails is retried, then `schedule.failing` (NOTIFY, WARNING, scheduler_health);
//! a schedule whose owner lost privileges fails with 42501 in its history.
//!
//! Waits poll with deadlines, generous for a busy 2-core machine; what is asserted exactly is
//! what the scheduler decides (seconds fired, outcomes, counts), the lag within ±1 s.

use std::thread;
use std::time::{Duration, Instant};

use pg_tenant_ops_e2e::postgres::fallible_iterator::FallibleIterator;
use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, Cluster, StopMode};

use crate::common::*;

const SCHEDULER: &str = "pg_tenant_ops scheduler";

type TestFn = fn(&Cluster);

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "schedule_fires_on_time_in_two_databases",
            schedule_fires_on_time_in_two_databases,
        ),
        (
            "schedule_overlap_skip_and_queue",
            schedule_overlap_skip_and_queue,
        ),
        (
            "schedule_catch_up_after_immediate_shutdown",
            schedule_catch_up_after_immediate_shutdown,
        ),
        (
            "schedule_failing_retried_alerted_and_42501",
            schedule_failing_retried_alerted_and_42501,
        ),
        (
            "schedule_exporter_queries_run",
            schedule_exporter_queries_run,
        ),
        ("schedule_pg_cron_engine", schedule_pg_cron_engine),
        ("schedule_export_and_import", schedule_export_and_import),
    ]
}

// ----- helpers ----------------------------------------------------------------------------------

/// A database with the extension, a two-tenant scope `shop` over `"Sh op".shop` and
/// `"Sh op".sale`, and its scheduler running.
fn shop_db(cluster: &Cluster, db: &str) -> Client {
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(
        &mut c,
        r#"CREATE SCHEMA "Sh op";
           CREATE TABLE "Sh op".shop (id int PRIMARY KEY, name text);
           CREATE TABLE "Sh op".sale (id int PRIMARY KEY, shop_id int NOT NULL REFERENCES "Sh op".shop);
           INSERT INTO "Sh op".shop VALUES (1, 'one'), (2, 'two');
           INSERT INTO "Sh op".sale SELECT g, 1 + g % 2 FROM generate_series(1, 100) g;"#,
    );
    create_scope(&mut c, "shop", r#""Sh op".shop"#, "id", "{}");
    until(
        &format!("a scheduler runs in database {db}"),
        Duration::from_secs(30),
        || {
            let n = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = $1 AND datname = $2::text",
                    &[&SCHEDULER, &db],
                )
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0);
            (n > 0).then_some(())
        },
    );
    c
}

#[track_caller]
fn schedule(c: &mut Client, name: &str, cron: &str, operation: &str, params: &str) -> i64 {
    c.query_one(
        "SELECT tenant_ops.schedule_operation($1, $2, $3, $4::text::jsonb)",
        &[&name, &cron, &operation, &params],
    )
    .map(|r| r.get(0))
    .unwrap_or_else(|e| {
        panic!(
            "schedule_operation({name:?}, {cron:?}): {}",
            describe_error(&e)
        )
    })
}

#[track_caller]
fn alter(c: &mut Client, name: &str, cron: Option<&str>, enabled: Option<bool>) {
    c.query_one(
        "SELECT tenant_ops.alter_schedule($1, $2, NULL, $3)",
        &[&name, &cron, &enabled],
    )
    .unwrap_or_else(|e| panic!("alter_schedule({name:?}): {}", describe_error(&e)));
}

/// One firing as recorded.
#[derive(Debug, Clone)]
struct Run {
    id: i64,
    trigger: String,
    outcome: String,
    /// Seconds of the minute it was due at.
    second: i32,
    lag_s: f64,
    late: bool,
    firings: i32,
    job: Option<i64>,
    sqlstate: Option<String>,
    /// Seconds since the epoch it was due at.
    due_epoch: f64,
}

#[track_caller]
fn runs(c: &mut Client, name: &str) -> Vec<Run> {
    c.query(
        "SELECT id, trigger, outcome, extract(second FROM scheduled_at)::int, extract(epoch FROM lag)::float8,
                late, firings, job_id, sqlstate, extract(epoch FROM scheduled_at)::float8
           FROM tenant_ops.schedule_runs WHERE schedule = $1 ORDER BY id",
        &[&name],
    )
    .unwrap_or_else(|e| panic!("reading the runs of {name:?}: {}", describe_error(&e)))
    .iter()
    .map(|r| Run {
        id: r.get(0),
        trigger: r.get(1),
        outcome: r.get(2),
        second: r.get(3),
        lag_s: r.get(4),
        late: r.get(5),
        firings: r.get(6),
        job: r.get(7),
        sqlstate: r.get(8),
        due_epoch: r.get(9),
    })
    .collect()
}

/// Polls the runs of `name` until `done` holds for them (up to `secs`).
#[track_caller]
fn wait_runs(
    c: &mut Client,
    name: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&[Run]) -> bool,
) -> Vec<Run> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = runs(c, name);
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "schedule {name:?}: {what} did not happen within {secs} s; runs: {r:#?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn now_epoch(c: &mut Client) -> f64 {
    c.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("clock: {}", describe_error(&e)))
}

fn drain(listener: &mut Client, wait: Duration) -> Vec<serde_json::Value> {
    listener
        .notifications()
        .timeout_iter(wait)
        .map(|n| Ok(n.payload().to_string()))
        .collect::<Vec<String>>()
        .unwrap_or_else(|e| panic!("receiving notifications: {}", describe_error(&e)))
        .iter()
        .filter_map(|p| serde_json::from_str(p).ok())
        .collect()
}

// ----- tests ------------------------------------------------------------------------------------

/// Every two seconds, in two databases at once: each fires at even seconds, within 1 s of
/// them, as `cron` runs whose jobs succeed; schedule.fired is sent. Altered to every third
/// second it fires at multiples of three from the next firing on; disabled it stops;
/// trigger_schedule runs it at once (a `manual` run).
pub fn schedule_fires_on_time_in_two_databases(_shared: &Cluster) {
    // A cluster of its own: by the end of a whole run the shared one's worker slots are
    // taken by the schedulers of every earlier test's database.
    let cluster = &Cluster::start_new();
    let (db_a, db_b) = ("e2e_sched_a", "e2e_sched_b");
    let mut a = shop_db(cluster, db_a);
    let mut b = shop_db(cluster, db_b);
    let mut listener = cluster.connect(db_a);
    exec(&mut listener, "LISTEN tenant_ops_events");
    schedule(
        &mut a,
        "every 2 s",
        "*/2 * * * * *",
        "validate",
        r#"{"scope": "shop", "tenant": "1"}"#,
    );
    schedule(&mut b, "every 2 s", "*/2 * * * * *", "purge_history", "{}");

    for (c, db) in [(&mut a, db_a), (&mut b, db_b)] {
        let r = wait_runs(c, "every 2 s", 60, "four runs", |r| {
            r.iter().filter(|x| x.job.is_some()).count() >= 4
        });
        for run in r.iter().filter(|x| x.trigger == "cron") {
            assert_eq!(
                run.second % 2,
                0,
                "{db}: a */2 schedule is due at even seconds: {run:?}"
            );
            assert!(
                run.lag_s >= 0.0 && run.lag_s < 1.0,
                "{db}: fired within 1 s of its time: {run:?}"
            );
        }
        // On time means cron runs, at most one late catch-up on a machine this busy.
        assert!(
            r.iter().filter(|x| x.trigger == "cron").count() >= 3,
            "{db}: runs on time: {r:#?}"
        );
        // Consecutive firings two seconds apart.
        let cron: Vec<&Run> = r.iter().filter(|x| x.trigger == "cron").collect();
        for w in cron.windows(2) {
            let gap = w[1].due_epoch - w[0].due_epoch;
            assert!(
                gap >= 2.0 && (gap % 2.0).abs() < 1e-6,
                "{db}: firings 2 s apart (or a multiple): {w:?}"
            );
        }
    }
    let runs_a = wait_runs(&mut a, "every 2 s", 60, "the jobs succeeding", |r| {
        r.iter().filter(|x| x.outcome == "succeeded").count() >= 3
    });
    let events = drain(&mut listener, Duration::from_millis(500));
    let fired: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "schedule.fired" && e["schedule"] == "every 2 s")
        .collect();
    assert!(
        !fired.is_empty(),
        "schedule.fired notifications: {events:?}"
    );
    assert!(
        fired.iter().all(|e| e["job_id"].as_i64().is_some()),
        "{fired:?}"
    );
    let ok = scalar(
        &mut a,
        "SELECT count(*) FROM tenant_ops.jobs j JOIN tenant_ops.schedule_runs r ON r.job_id = j.id
          WHERE j.kind = 'validate' AND j.status = 'succeeded' AND j.submitted_by = 'postgres'",
    );
    assert!(
        ok >= 3,
        "the runs are validate jobs of the owner that succeeded: {ok}; {runs_a:#?}"
    );

    // Altered: from the next firing on, every third second.
    alter(&mut a, "every 2 s", Some("*/3 * * * * *"), None);
    let altered_at = now_epoch(&mut a);
    let r = wait_runs(
        &mut a,
        "every 2 s",
        60,
        "three runs after the change",
        |r| {
            r.iter()
                .filter(|x| x.due_epoch > altered_at && x.trigger == "cron")
                .count()
                >= 3
        },
    );
    for run in r
        .iter()
        .filter(|x| x.due_epoch > altered_at && x.trigger == "cron")
    {
        assert_eq!(
            run.second % 3,
            0,
            "after alter_schedule a */3 schedule is due at multiples of 3: {run:?}"
        );
        assert!(run.lag_s < 1.0, "on time after the change: {run:?}");
    }

    // Disabled: no more firings.
    alter(&mut a, "every 2 s", None, Some(false));
    alter(&mut b, "every 2 s", None, Some(false));
    let (na, nb) = (
        runs(&mut a, "every 2 s").len(),
        runs(&mut b, "every 2 s").len(),
    );
    thread::sleep(Duration::from_secs(5));
    assert_eq!(
        runs(&mut a, "every 2 s").len(),
        na,
        "{db_a}: a disabled schedule does not fire"
    );
    assert_eq!(
        runs(&mut b, "every 2 s").len(),
        nb,
        "{db_b}: a disabled schedule does not fire"
    );
    let next: Option<String> = a
        .query_one(
            "SELECT next_run::text FROM tenant_ops.schedules WHERE name = 'every 2 s'",
            &[],
        )
        .map(|r| r.get(0))
        .unwrap();
    assert_eq!(next, None, "a disabled schedule has no next run");

    // Triggered by hand: a run now, as its owner.
    let job: Option<i64> = a
        .query_one("SELECT tenant_ops.trigger_schedule('every 2 s')", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("trigger_schedule: {}", describe_error(&e)));
    let job = job.expect("trigger_schedule returns the job id");
    assert_eq!(wait_for(&mut a, job, 60.0), "succeeded");
    let last = runs(&mut a, "every 2 s").pop().unwrap();
    assert_eq!(
        (last.trigger.as_str(), last.job),
        ("manual", Some(job)),
        "{last:?}"
    );

    exec(&mut a, "SELECT tenant_ops.unschedule('every 2 s')");
    exec(&mut b, "SELECT tenant_ops.unschedule('every 2 s')");
}

/// A validation that cannot finish while another session holds a lock on a scope table:
/// with overlap "skip" every firing meanwhile is recorded as skipped (schedule.skipped); with
/// "queue" the first waits and runs once the blocked run ends, the others are skipped.
pub fn schedule_overlap_skip_and_queue(_shared: &Cluster) {
    // A cluster of its own: by the end of a whole run the shared one's worker slots are
    // taken by the schedulers of every earlier test's database.
    let cluster = &Cluster::start_new();
    let db = "e2e_sched_overlap";
    let mut c = shop_db(cluster, db);
    let mut listener = cluster.connect(db);
    exec(&mut listener, "LISTEN tenant_ops_events");
    for (name, overlap) in [("skipper", "skip"), ("queuer", "queue")] {
        let mut blocker = cluster.connect(db);
        let params = format!(r#"{{"scope": "shop", "tenant": "1", "overlap": "{overlap}"}}"#);
        schedule(&mut c, name, "* * * * * *", "validate", &params);
        let mut tx = blocker.transaction().expect("BEGIN");
        // The child table: the submission reads the root (the tenant exists), the check
        // reads every table.
        tx.batch_execute(r#"LOCK TABLE "Sh op".sale IN ACCESS EXCLUSIVE MODE"#)
            .expect("LOCK");
        let r = wait_runs(
            &mut c,
            name,
            60,
            "a blocked run and two firings after it",
            |r| {
                let first = r.iter().position(|x| x.job.is_some());
                first.is_some_and(|f| r.len() >= f + 3)
            },
        );
        let first = r.iter().position(|x| x.job.is_some()).unwrap();
        let blocked = r[first].job.unwrap();
        let status: String = c
            .query_one(
                "SELECT status FROM tenant_ops.jobs WHERE id = $1",
                &[&blocked],
            )
            .map(|r| r.get(0))
            .unwrap();
        assert_eq!(
            status, "running",
            "{name}: the first run is blocked by the lock: {r:#?}"
        );
        let after: Vec<&Run> = r[first + 1..].iter().collect();
        match overlap {
            "skip" => assert!(
                after
                    .iter()
                    .all(|x| x.outcome == "skipped" && x.job.is_none()),
                "{name}: every firing while the run goes on is skipped: {r:#?}"
            ),
            _ => {
                assert_eq!(
                    after[0].outcome, "waiting",
                    "{name}: the first overlapping firing waits: {r:#?}"
                );
                assert!(
                    after[1..].iter().all(|x| x.outcome == "skipped"),
                    "{name}: only one firing is queued, the others are skipped: {r:#?}"
                );
            }
        }
        tx.rollback().expect("ROLLBACK");
        assert_eq!(
            wait_for(&mut c, blocked, 60.0),
            "succeeded",
            "{name}: the blocked run ends"
        );
        if overlap == "queue" {
            let waiting_id = after[0].id;
            let r = wait_runs(&mut c, name, 60, "the queued run to succeed", |r| {
                r.iter()
                    .any(|x| x.id == waiting_id && x.outcome == "succeeded")
            });
            let queued = r.iter().find(|x| x.id == waiting_id).unwrap();
            assert!(
                queued.job.is_some() && queued.job != Some(blocked),
                "{queued:?}"
            );
        }
        alter(&mut c, name, None, Some(false));
        exec(&mut c, &format!("SELECT tenant_ops.unschedule('{name}')"));
    }
    let events = drain(&mut listener, Duration::from_millis(500));
    for name in ["skipper", "queuer"] {
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "schedule.skipped" && e["schedule"] == name),
            "schedule.skipped for {name}: {events:?}"
        );
    }
}

/// A cluster of its own, stopped with -m immediate across two firings of two every-5-s
/// schedules: after the restart the catch_up "once" schedule runs once, late, standing for
/// the firings missed (trigger catch_up); the catch_up "skip" one records them as missed
/// (schedule.missed) and runs nothing for them. Both then fire on time again.
pub fn schedule_catch_up_after_immediate_shutdown(_shared: &Cluster) {
    let db = "e2e_sched_catch_up";
    let cluster = Cluster::start_with(&["tenant_ops.databases = 'e2e_sched_catch_up'"]);
    let mut c = shop_db(&cluster, db);
    schedule(
        &mut c,
        "once",
        "*/5 * * * * *",
        "purge_history",
        r#"{"catch_up": "once"}"#,
    );
    schedule(
        &mut c,
        "skip",
        "*/5 * * * * *",
        "purge_history",
        r#"{"catch_up": "skip"}"#,
    );
    for name in ["once", "skip"] {
        wait_runs(&mut c, name, 60, "a run on time", |r| {
            r.iter()
                .any(|x| x.trigger == "cron" && x.outcome == "succeeded")
        });
    }
    let before = [runs(&mut c, "once").len(), runs(&mut c, "skip").len()];
    drop(c);
    cluster.stop(StopMode::Immediate);
    thread::sleep(Duration::from_secs(12));
    cluster.start();
    let mut c = cluster.connect(db);
    let mut listener = cluster.connect(db);
    exec(&mut listener, "LISTEN tenant_ops_events");

    let r = wait_runs(&mut c, "once", 90, "a late catch-up run", |r| {
        r[before[0]..].iter().any(|x| x.trigger == "catch_up")
    });
    let caught: Vec<&Run> = r[before[0]..]
        .iter()
        .filter(|x| x.trigger == "catch_up")
        .collect();
    assert_eq!(
        caught.len(),
        1,
        "catch_up once: one run for the missed firings: {r:#?}"
    );
    assert!(
        caught[0].late
            && caught[0].firings >= 2
            && caught[0].lag_s >= 5.0
            && caught[0].job.is_some(),
        "the catch-up run is late and stands for at least two firings: {:?}",
        caught[0]
    );
    assert!(
        !r[before[0]..].iter().any(|x| x.outcome == "missed"),
        "catch_up once records nothing as missed: {r:#?}"
    );
    let r = wait_runs(&mut c, "skip", 90, "missed firings", |r| {
        r[before[1]..].iter().any(|x| x.outcome == "missed")
    });
    let missed: Vec<&Run> = r[before[1]..]
        .iter()
        .filter(|x| x.outcome == "missed")
        .collect();
    assert_eq!(
        missed.len(),
        1,
        "catch_up skip: one row for the missed firings: {r:#?}"
    );
    assert!(
        missed[0].firings >= 2 && missed[0].job.is_none(),
        "{:?}",
        missed[0]
    );
    assert!(
        !r[before[1]..].iter().any(|x| x.trigger == "catch_up"),
        "catch_up skip runs nothing late: {r:#?}"
    );
    for name in ["once", "skip"] {
        let n = runs(&mut c, name).len();
        wait_runs(&mut c, name, 60, "a run on time after the restart", |r| {
            r[n..]
                .iter()
                .any(|x| x.trigger == "cron" && x.job.is_some())
        });
    }
    let missed_total = scalar(
        &mut c,
        "SELECT missed_last_day FROM tenant_ops.scheduler_health()",
    );
    assert!(
        missed_total >= 2,
        "scheduler_health counts the missed firings: {missed_total}"
    );
    // The restart's NOTIFY went out before anyone could LISTEN again; a scheduler kept from
    // the schedule by a row lock for two firings misses them the same way, with a listener.
    alter(&mut c, "once", None, Some(false));
    drain(&mut listener, Duration::from_millis(200));
    let n = runs(&mut c, "skip").len();
    let mut holder = cluster.connect(db);
    let mut tx = holder.transaction().expect("BEGIN");
    tx.batch_execute("SELECT FROM tenant_ops.schedule WHERE name = 'skip' FOR UPDATE")
        .expect("lock the schedule row");
    thread::sleep(Duration::from_secs(12));
    tx.commit().expect("COMMIT");
    let r = wait_runs(
        &mut c,
        "skip",
        60,
        "missed firings after the row lock",
        |r| r[n..].iter().any(|x| x.outcome == "missed"),
    );
    let missed = r[n..].iter().find(|x| x.outcome == "missed").unwrap();
    assert!(missed.firings >= 2, "{missed:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = vec![];
    while !events
        .iter()
        .any(|e: &serde_json::Value| e["event"] == "schedule.missed" && e["schedule"] == "skip")
    {
        assert!(Instant::now() < deadline, "schedule.missed: {events:?}");
        events.extend(drain(&mut listener, Duration::from_millis(500)));
    }
    exec(
        &mut c,
        "SELECT tenant_ops.unschedule('once'); SELECT tenant_ops.unschedule('skip');",
    );
}

/// A cluster of its own (retry_delay 1 s, max_attempts 2). An admin role schedules a
/// validation of every tenant, which succeeds with its SELECT rights; then they are revoked:
/// each run now fails with 42501 (permission denied) after being retried once, the history
/// shows 42501, and after alert_after = 2 consecutive failures come schedule.failing, a
/// WARNING in the server log, and scheduler_health says degraded, naming the schedule.
pub fn schedule_failing_retried_alerted_and_42501(_shared: &Cluster) {
    let db = "e2e_sched_failing";
    let cluster = Cluster::start_with(&[
        "tenant_ops.databases = 'e2e_sched_failing'",
        "tenant_ops.retry_delay = 1",
        "tenant_ops.max_attempts = 2",
    ]);
    let mut c = shop_db(&cluster, db);
    exec(
        &mut c,
        r#"CREATE ROLE "Sched Owner" IN ROLE tenant_ops_admin;
           GRANT USAGE ON SCHEMA "Sh op" TO "Sched Owner";
           GRANT SELECT ON ALL TABLES IN SCHEMA "Sh op" TO "Sched Owner";
           SET ROLE "Sched Owner";"#,
    );
    schedule(
        &mut c,
        "checks",
        "*/6 * * * * *",
        "validate",
        r#"{"scope": "shop", "alert_after": 2}"#,
    );
    exec(&mut c, "RESET ROLE");
    let r = wait_runs(&mut c, "checks", 60, "a run that succeeds", |r| {
        r.iter().any(|x| x.outcome == "succeeded")
    });
    let ok_job = r
        .iter()
        .find(|x| x.outcome == "succeeded")
        .unwrap()
        .job
        .unwrap();
    let by: String = c
        .query_one(
            "SELECT submitted_by::text FROM tenant_ops.jobs WHERE id = $1",
            &[&ok_job],
        )
        .map(|r| r.get(0))
        .unwrap();
    assert_eq!(by, "Sched Owner", "the run is the owner's job");

    let mut listener = cluster.connect(db);
    exec(&mut listener, "LISTEN tenant_ops_events");
    let log_start = cluster.log_len();
    exec(
        &mut c,
        r#"REVOKE SELECT ON ALL TABLES IN SCHEMA "Sh op" FROM "Sched Owner""#,
    );
    let revoked_at = now_epoch(&mut c);
    let r = wait_runs(
        &mut c,
        "checks",
        120,
        "two failed runs after the revoke",
        |r| {
            r.iter()
                .filter(|x| x.due_epoch > revoked_at && x.outcome == "failed")
                .count()
                >= 2
        },
    );
    let failed: Vec<&Run> = r
        .iter()
        .filter(|x| x.due_epoch > revoked_at && x.outcome == "failed")
        .collect();
    for run in &failed {
        assert_eq!(
            run.sqlstate.as_deref(),
            Some("42501"),
            "a failed run records 42501: {run:?}"
        );
        let job = run.job.expect("the run had a job");
        let (attempts, retries): (i32, i64) = c
            .query_one(
                "SELECT attempts, (SELECT count(*) FROM tenant_ops.job_log WHERE job_id = j.id AND event = 'job.retry')
                   FROM tenant_ops.jobs j WHERE id = $1",
                &[&job],
            )
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!(
            (attempts, retries),
            (2, 1),
            "job {job} was retried once (max_attempts 2): {run:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = vec![];
    while !events
        .iter()
        .any(|e: &serde_json::Value| e["event"] == "schedule.failing")
    {
        assert!(
            Instant::now() < deadline,
            "no schedule.failing within 30 s: {events:?}"
        );
        events.extend(drain(&mut listener, Duration::from_millis(500)));
    }
    let failing = events
        .iter()
        .find(|e| e["event"] == "schedule.failing")
        .unwrap();
    assert_eq!(failing["schedule"], "checks");
    assert_eq!(failing["sqlstate"], "42501", "{failing}");
    assert!(
        failing["consecutive_failures"].as_i64().unwrap_or(0) >= 2,
        "{failing}"
    );
    until(
        "the WARNING in the server log",
        Duration::from_secs(10),
        || {
            cluster
                .log_since(log_start, usize::MAX)
                .contains("schedule \"checks\" has failed 2 times in a row")
                .then_some(())
        },
    );
    let (status, reason, failing_list): (String, Option<String>, Vec<String>) = c
        .query_one(
            "SELECT status, reason, failing_schedules FROM tenant_ops.scheduler_health()",
            &[],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(status, "degraded");
    assert!(
        reason
            .as_deref()
            .unwrap_or("")
            .contains("failing repeatedly: checks"),
        "{reason:?}"
    );
    assert_eq!(failing_list, vec!["checks".to_string()]);
    let (failures, consecutive): (i64, i32) = c
        .query_one(
            "SELECT failures, consecutive_failures FROM tenant_ops.schedules WHERE name = 'checks'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(
        failures >= 2 && consecutive >= 2,
        "{failures} {consecutive}"
    );

    // Granted again: the next run succeeds and the count of consecutive failures starts again.
    exec(
        &mut c,
        r#"GRANT SELECT ON ALL TABLES IN SCHEMA "Sh op" TO "Sched Owner""#,
    );
    let granted_at = now_epoch(&mut c);
    wait_runs(&mut c, "checks", 120, "a run that succeeds again", |r| {
        r.iter()
            .any(|x| x.due_epoch > granted_at && x.outcome == "succeeded")
    });
    let consecutive: i32 = until(
        "the consecutive failures reset",
        Duration::from_secs(30),
        || {
            let n: i32 = c
                .query_one(
                    "SELECT consecutive_failures FROM tenant_ops.schedules WHERE name = 'checks'",
                    &[],
                )
                .map(|r| r.get(0))
                .unwrap();
            (n == 0).then_some(n)
        },
    );
    assert_eq!(consecutive, 0);
    exec(&mut c, "SELECT tenant_ops.unschedule('checks')");
}

/// The queries of `monitoring/postgres_exporter.yml`, each with the metric columns it lists:
/// `(name, query, columns)`. A reader for that file's own layout (two-space keys, a `query: |`
/// block, `- column:` entries under `metrics:`), not YAML in general.
fn exporter_queries() -> Vec<(String, String, Vec<String>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../monitoring/postgres_exporter.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out: Vec<(String, String, Vec<String>)> = vec![];
    let mut in_query = false;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            out.push((
                line.trim_end_matches(':').to_string(),
                String::new(),
                vec![],
            ));
            in_query = false;
        } else if line.trim() == "query: |" {
            in_query = true;
        } else if line.trim() == "metrics:" {
            in_query = false;
        } else if in_query {
            let q = &mut out.last_mut().expect("a query belongs to a metric").1;
            q.push_str(line.trim());
            q.push('\n');
        } else if let Some(col) = line.trim().strip_prefix("- ") {
            out.last_mut()
                .expect("a column belongs to a metric")
                .2
                .push(col.trim_end_matches(':').to_string());
        }
    }
    out
}

/// Every query of the postgres_exporter file runs, as a tenant_ops_viewer, and gives exactly
/// the columns it declares, with a row for what exists: a validation, a backup, a schedule's
/// runs, the scheduler.
pub fn schedule_exporter_queries_run(_shared: &Cluster) {
    // A cluster of its own: by the end of a whole run the shared one's worker slots are
    // taken by the schedulers of every earlier test's database.
    let cluster = &Cluster::start_new();
    let db = "e2e_sched_exporter";
    let mut c = shop_db(cluster, db);
    exec(
        &mut c,
        "SELECT tenant_ops.validate_integrity('shop', '1');
         SELECT tenant_ops.create_backup('shop', '2');
         CREATE ROLE e2e_exporter LOGIN IN ROLE tenant_ops_viewer;",
    );
    schedule(&mut c, "exported", "* * * * * *", "purge_history", "{}");
    wait_runs(&mut c, "exported", 60, "a run", |r| {
        r.iter().any(|x| x.outcome == "succeeded")
    });
    alter(&mut c, "exported", None, Some(false));
    let mut viewer = cluster.connect_as(db, "e2e_exporter");
    let queries = exporter_queries();
    assert_eq!(queries.len(), 5, "the exporter file's queries: {queries:?}");
    for (name, query, columns) in &queries {
        let rows = viewer
            .query(query.as_str(), &[])
            .unwrap_or_else(|e| panic!("exporter query {name}: {}\n{query}", describe_error(&e)));
        assert!(!rows.is_empty(), "exporter query {name} gives rows here");
        let got: Vec<String> = rows[0]
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(
            &got, columns,
            "exporter query {name}: the columns it declares"
        );
    }
    let score: f64 = viewer
        .query_one(
            "SELECT value FROM tenant_ops.metrics WHERE metric = 'integrity_score' AND scope = 'shop' AND tenant = '1'",
            &[],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("integrity_score: {}", describe_error(&e)));
    assert_eq!(score, 100.0, "a clean tenant scores 100");
    let backups: f64 = viewer
        .query_one(
            "SELECT value FROM tenant_ops.metrics WHERE metric = 'backups_succeeded' AND tenant = '2'",
            &[],
        )
        .map(|r| r.get(0))
        .unwrap();
    assert_eq!(backups, 1.0);
    drop(viewer);
    exec(&mut c, "SELECT tenant_ops.unschedule('exported')");
}

/// A cluster of its own with pg_cron preloaded beside us (the Debian package
/// postgresql-15-cron, its background-worker mode, the test's database as cron.database_name):
/// `engine: "pg_cron"` registers the schedule in cron.job, calling trigger_schedule as the
/// owner; pg_cron fires it (a `pg_cron` run whose job succeeds); alter_schedule changes and
/// disables the cron.job row; unschedule removes it. pg_cron 1.4 has no seconds field: a
/// seconds-level expression is refused (0A000).
pub fn schedule_pg_cron_engine(_shared: &Cluster) {
    let db = "e2e_sched_pg_cron";
    let cluster = Cluster::start_with(&[
        "shared_preload_libraries = 'pg_tenant_ops,pg_cron'",
        "cron.database_name = 'e2e_sched_pg_cron'",
        "cron.use_background_workers = on",
        "tenant_ops.databases = 'e2e_sched_pg_cron'",
    ]);
    let mut c = shop_db(&cluster, db);
    exec(&mut c, "CREATE EXTENSION pg_cron");
    let refused = c.query_one(
        "SELECT tenant_ops.schedule_operation('secs', '*/5 * * * * *', 'purge_history', '{\"engine\": \"pg_cron\"}')",
        &[],
    );
    pg_tenant_ops_e2e::assert_sqlstate(refused, "0A000", "has a seconds field");
    schedule(
        &mut c,
        "cronned",
        "* * * * *",
        "purge_history",
        r#"{"engine": "pg_cron"}"#,
    );
    let row = c
        .query_one(
            "SELECT j.jobid, j.schedule, j.command, j.username::text, j.database::text, j.active, s.cron_job_id
               FROM cron.job j JOIN tenant_ops.schedules s ON s.cron_job_id = j.jobid
              WHERE j.jobname = 'tenant_ops:cronned' AND s.name = 'cronned'",
            &[],
        )
        .unwrap_or_else(|e| panic!("the schedule in cron.job: {}", describe_error(&e)));
    let (schedule_text, command, user, database, active): (String, String, String, String, bool) =
        (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    assert_eq!(
        (
            schedule_text.as_str(),
            command.as_str(),
            user.as_str(),
            database.as_str(),
            active
        ),
        (
            "* * * * *",
            "SELECT tenant_ops.trigger_schedule('cronned')",
            "postgres",
            db,
            true
        ),
        "cron.job: schedule, command, username, database, active"
    );
    let next: Option<String> = c
        .query_one(
            "SELECT next_run::text FROM tenant_ops.schedules WHERE name = 'cronned'",
            &[],
        )
        .map(|r| r.get(0))
        .unwrap();
    assert_eq!(
        next, None,
        "the builtin scheduler leaves a pg_cron schedule to pg_cron"
    );
    let r = wait_runs(&mut c, "cronned", 150, "a run fired by pg_cron", |r| {
        r.iter().any(|x| x.outcome == "succeeded")
    });
    let run = r.iter().find(|x| x.outcome == "succeeded").unwrap();
    assert_eq!(run.trigger, "pg_cron", "{r:#?}");
    let details = scalar(
        &mut c,
        "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
          WHERE j.jobname = 'tenant_ops:cronned' AND d.status = 'succeeded'",
    );
    assert!(details >= 1, "pg_cron recorded its run: {details}");

    alter(&mut c, "cronned", Some("*/5 * * * *"), Some(false));
    let (sched, active): (String, bool) = c
        .query_one(
            "SELECT schedule, active FROM cron.job WHERE jobname = 'tenant_ops:cronned'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or_else(|e| panic!("cron.job after alter: {}", describe_error(&e)));
    assert_eq!(
        (sched.as_str(), active),
        ("*/5 * * * *", false),
        "alter_schedule keeps pg_cron in step"
    );
    exec(&mut c, "SELECT tenant_ops.unschedule('cronned')");
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM cron.job WHERE jobname = 'tenant_ops:cronned'"
        ),
        0,
        "unschedule removes the pg_cron job"
    );
}

/// Scheduled exports and imports, run by `trigger_schedule` as their owner in the background:
/// each export run writes an archive of its own (the job id in its name); an import schedule
/// defined before its file exists is accepted, a run without the file fails with 58P01, and
/// once the file is there the next run loads it.
pub fn schedule_export_and_import(_shared: &Cluster) {
    let cluster = &Cluster::start_new();
    let db = "e2e_sched_io";
    let mut c = shop_db(cluster, db);
    // A background job's worker reads the server's settings, not the session's.
    exec(
        &mut c,
        "ALTER SYSTEM SET tenant_ops.export_directory = 'e2e_exports'",
    );
    exec(
        &mut c,
        "ALTER SYSTEM SET tenant_ops.import_directory = 'e2e_imports'",
    );
    exec(&mut c, "SELECT pg_reload_conf()");
    thread::sleep(Duration::from_millis(500));
    exec(
        &mut c,
        r#"CREATE TABLE "Sh op"."Fe ed" (id int PRIMARY KEY, name text NOT NULL)"#,
    );
    schedule(
        &mut c,
        "export shop 1",
        "0 3 1 1 *",
        "export",
        r#"{"scope": "shop", "tenant": "1", "format": "ndjson"}"#,
    );
    let trigger = |c: &mut Client, name: &str| -> Option<i64> {
        c.query_one("SELECT tenant_ops.trigger_schedule($1)", &[&name])
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("trigger_schedule({name:?}): {}", describe_error(&e)))
    };
    let mut files = vec![];
    for _ in 0..2 {
        let job = trigger(&mut c, "export shop 1").expect("a job");
        assert_eq!(wait_for(&mut c, job, 60.0), "succeeded");
        let (file, sales): (String, i64) = c
            .query_one(
                "SELECT result ->> 'file', (result -> 'per_table' -> 1 ->> 'rows')::int8 FROM tenant_ops.jobs WHERE id = $1",
                &[&job],
            )
            .map(|r| (r.get(0), r.get::<_, Option<i64>>(1).unwrap_or(-1)))
            .unwrap();
        assert!(file.contains(&job.to_string()), "{file}");
        assert_eq!(sales, 50, "tenant 1's sales in the archive of job {job}");
        let size: i64 = c
            .query_one("SELECT tenant_ops.export_size($1)", &[&file])
            .unwrap()
            .get(0);
        assert!(size > 0);
        files.push(file);
    }
    assert_ne!(files[0], files[1]);

    schedule(
        &mut c,
        "feed",
        "0 3 1 1 *",
        "import",
        r#"{"target": "\"Sh op\".\"Fe ed\"", "source": "feed.csv", "format": "csv", "options": {"on_conflict": "skip"}}"#,
    );
    // A run by hand reports what its submission refused.
    let e = c.query_one("SELECT tenant_ops.trigger_schedule('feed')", &[]);
    assert_sqlstate(
        e,
        "58P01",
        "file \"feed.csv\" is not in the import directory",
    );
    let dir = cluster.data_dir().join("e2e_imports");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("feed.csv"), "id,name\n1,ä\n2,b\n3,c\n").unwrap();
    cluster.give_to_server(&dir);
    cluster.give_to_server(&dir.join("feed.csv"));
    let job = trigger(&mut c, "feed").expect("a job once the file is there");
    assert_eq!(wait_for(&mut c, job, 60.0), "succeeded");
    assert_eq!(scalar(&mut c, r#"SELECT count(*) FROM "Sh op"."Fe ed""#), 3);
    // The next run of the same file skips the rows it loaded before.
    let job = trigger(&mut c, "feed").expect("a job");
    assert_eq!(wait_for(&mut c, job, 60.0), "succeeded");
    assert_eq!(scalar(&mut c, r#"SELECT count(*) FROM "Sh op"."Fe ed""#), 3);
    drop(c);
    cluster.drop_database(db);
}
