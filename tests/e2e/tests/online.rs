//! Online migration (issue 16): `migrate_tenant(..., '{"mode": "online"}', background =>
//! true)` copies a tenant while four writer threads, each with its own connection, insert,
//! update, delete, re-key and move its rows between tenants; the catch-up follows them;
//! `cutover_migration` holds the writes, drains, verifies and fences the source.
//!
//! - `online_writers_cutover`: after the cutover the target equals the source through the
//!   mapping (counts and checksums of every table, and nothing more in the target), and the
//!   writers' stall at the cutover is measured from their side (p50, p99, max), printed;
//! - `online_catchup_survives_kill9`: `kill -9` of the catch-up worker while the writers go
//!   on (they reconnect): the job resumes and loses nothing;
//! - `online_errors_and_rollback`: bad options refused before anything is written; cutover of
//!   an unknown job, of a job that is not online, of one not catching up yet, and one whose
//!   lock is not had within lock_timeout (the catch-up goes on), each with its SQLSTATE and
//!   message; TRUNCATE refused while captured; rollback before the cutover removes the
//!   target rows and the capture.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pg_tenant_ops_e2e::postgres::fallible_iterator::FallibleIterator;
use pg_tenant_ops_e2e::postgres::{Client, NoTls};
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, Cluster, Interruption};

use crate::common::*;

/// Orders of tenant 1 (each with 3 lines); tenants 2 to 4 have a tenth of that each.
const ORDERS: i64 = 20000;

fn setup(cluster: &Cluster, db: &str) -> Client {
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(
        &mut c,
        &format!(
            "CREATE SCHEMA app;
             CREATE TABLE app.account (account_id int PRIMARY KEY, name text NOT NULL);
             CREATE TABLE app.orders (order_id bigint PRIMARY KEY,
                                      account_id int NOT NULL REFERENCES app.account ON DELETE CASCADE,
                                      note text, total numeric NOT NULL);
             CREATE INDEX ON app.orders (account_id);
             CREATE TABLE app.order_line (order_id bigint NOT NULL REFERENCES app.orders ON UPDATE CASCADE ON DELETE CASCADE,
                                          line_no int NOT NULL, qty int NOT NULL,
                                          PRIMARY KEY (order_id, line_no));
             CREATE SEQUENCE app.order_seq START {start};
             INSERT INTO app.account VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');
             INSERT INTO app.orders
               SELECT g, CASE WHEN g <= {ORDERS} THEN 1 ELSE 2 + g % 3 END, 'n' || g, g % 97
                 FROM generate_series(1, {all}) g;
             INSERT INTO app.order_line SELECT o.order_id, l, l * 2 FROM app.orders o, generate_series(1, 3) l;
             CREATE SCHEMA dst;
             ANALYZE;",
            start = ORDERS * 2 + 1,
            all = ORDERS + ORDERS * 3 / 10,
        ),
    );
    create_scope(&mut c, "shop", "app.account", "account_id", "{}");
    c
}

/// Count and checksum of tenant 1's rows of each source table and of every row of the same
/// table in `dst` (which holds tenant 1 only).
/// (count, checksum) of one side of a table.
type Side = (i64, i64);

fn compare(c: &mut Client) -> Vec<(String, Side, Side)> {
    let sides = [
        (
            "account",
            "FROM app.account t WHERE account_id = 1",
            "FROM dst.account t",
        ),
        (
            "orders",
            "FROM app.orders t WHERE account_id = 1",
            "FROM dst.orders t",
        ),
        (
            "order_line",
            "FROM app.order_line t WHERE order_id IN (SELECT order_id FROM app.orders WHERE account_id = 1)",
            "FROM dst.order_line t",
        ),
    ];
    sides
        .iter()
        .map(|(name, src, dst)| {
            let q = |c: &mut Client, from: &str| -> Side {
                let r = c
                    .query_one(
                        &format!(
                            "SELECT count(*), coalesce(sum(hashtext(t::text)), 0)::int8 {from}"
                        ),
                        &[],
                    )
                    .unwrap_or_else(|e| panic!("{from}: {}", describe_error(&e)));
                (r.get(0), r.get(1))
            };
            (name.to_string(), q(c, src), q(c, dst))
        })
        .collect()
}

#[track_caller]
fn assert_same(c: &mut Client, when: &str) {
    for (table, src, dst) in compare(c) {
        assert_eq!(
            src, dst,
            "{when}: {table}: (count, checksum) of tenant 1 in app against dst"
        );
    }
}

fn stage(c: &mut Client, job: i64) -> (String, String) {
    let r = c
        .query_one(
            "SELECT status, stage FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("job {job}: {}", describe_error(&e)));
    (r.get(0), r.get(1))
}

#[track_caller]
fn wait_catching_up(cluster: &Cluster, db: &str, job: i64) {
    wait_catching_up_by(cluster, db, job, None);
}

/// [`wait_catching_up`], by a worker other than `not_pid` when given: after an interruption
/// the job's row still says "running" at "catchup" until the dead worker is noticed and the
/// job queued again (a cutover asked in between is refused: 55000, the job is queued).
#[track_caller]
fn wait_catching_up_by(cluster: &Cluster, db: &str, job: i64, not_pid: Option<i32>) {
    until(
        &format!("job {job} catching up"),
        Duration::from_secs(180),
        || {
            let mut c = cluster.try_connect(db, "postgres").ok()?;
            let (status, stage) = stage(&mut c, job);
            assert!(
                status == "running" || status == "queued",
                "job {job} is {status} at stage {stage}: {:?}",
                c.query_one("SELECT error FROM tenant_ops.jobs WHERE id = $1", &[&job])
                    .map(|r| r.get::<_, Option<String>>(0))
            );
            let pid: Option<i32> = c
                .query_one(
                    "SELECT worker_pid FROM tenant_ops.jobs WHERE id = $1",
                    &[&job],
                )
                .ok()?
                .get(0);
            let new_worker = not_pid.is_none() || (pid.is_some() && pid != not_pid);
            (stage == "catchup" && status == "running" && new_worker).then_some(())
        },
    );
}

/// What the writers saw.
#[derive(Default)]
struct Seen {
    /// (start, end) of each operation that committed, from the test's start.
    ops: Vec<(f64, f64)>,
    /// Writes of tenant 1's rows refused by the fence after the cutover (55000).
    fenced: u64,
    /// (start, end) of each of those: they waited for the cutover too.
    fenced_ops: Vec<(f64, f64)>,
    /// Errors that are not the fence (a serialization failure, a lost connection).
    other_errors: u64,
}

struct Writers {
    stop: Arc<AtomicBool>,
    handles: Vec<thread::JoinHandle<()>>,
    seen: Arc<Mutex<Seen>>,
    ops: Arc<AtomicU64>,
}

/// A small xorshift: the writers' choices, reproducible per thread.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The statements the writers choose from; `$1` is a random order id, `$2` a random number.
const OPS: &[&str] = &[
    // a new order with two lines
    "WITH o AS (INSERT INTO app.orders VALUES (nextval('app.order_seq'), 1, 'new', $2::int8 % 100) RETURNING order_id)
     INSERT INTO app.order_line SELECT order_id, l, ($2::int8 % 7)::int + l FROM o, generate_series(1, 2) l WHERE $1::int8 >= 0",
    // an update of an order
    "UPDATE app.orders SET note = 'u' || $2::int8, total = total + 1
      WHERE order_id = (SELECT order_id FROM app.orders WHERE account_id = 1 AND order_id >= $1::int8 ORDER BY order_id LIMIT 1)",
    // an update of a line
    "UPDATE app.order_line SET qty = qty + 1
      WHERE (order_id, line_no) = (SELECT l.order_id, l.line_no FROM app.order_line l JOIN app.orders o USING (order_id)
                                    WHERE o.account_id = 1 AND l.order_id >= $1::int8 ORDER BY l.order_id LIMIT 1)
        AND $2::int8 >= 0",
    // a delete, cascading to the lines
    "DELETE FROM app.orders
      WHERE order_id = (SELECT order_id FROM app.orders WHERE account_id = 1 AND order_id >= $1::int8 ORDER BY order_id LIMIT 1)
        AND $2::int8 >= 0",
    // a key update, cascading to the lines
    "UPDATE app.orders SET order_id = nextval('app.order_seq')
      WHERE order_id = (SELECT order_id FROM app.orders WHERE account_id = 1 AND order_id >= $1::int8 ORDER BY order_id LIMIT 1)
        AND $2::int8 >= 0",
    // a move out of tenant 1
    "UPDATE app.orders SET account_id = 2 + ($2::int8 % 3)::int
      WHERE order_id = (SELECT order_id FROM app.orders WHERE account_id = 1 AND order_id >= $1::int8 ORDER BY order_id LIMIT 1)",
    // a move into tenant 1
    "UPDATE app.orders SET account_id = 1
      WHERE order_id = (SELECT order_id FROM app.orders WHERE account_id <> 1 AND order_id >= $1::int8 ORDER BY order_id LIMIT 1)
        AND $2::int8 >= 0",
    // a new line of an existing order
    "INSERT INTO app.order_line
       SELECT o.order_id, 100 + ($2::int8 % 100000)::int, 1 FROM app.orders o
        WHERE o.account_id = 1 AND o.order_id >= $1::int8 ORDER BY o.order_id LIMIT 1
     ON CONFLICT DO NOTHING",
];

fn start_writers(cluster: &Cluster, db: &str, n: usize, t0: Instant) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ops = Arc::new(AtomicU64::new(0));
    let config = cluster.config(db, "postgres");
    let handles = (0..n)
        .map(|w| {
            let (stop, seen, ops, config) =
                (stop.clone(), seen.clone(), ops.clone(), config.clone());
            thread::spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((w as u64 + 1) * 0x1000_0001);
                let mut client: Option<Client> = None;
                let mut local = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    let c = match client.as_mut() {
                        Some(c) => c,
                        None => match config.connect(NoTls) {
                            Ok(c) => client.insert(c),
                            Err(_) => {
                                thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        },
                    };
                    let op = OPS[(next(&mut rng) % OPS.len() as u64) as usize];
                    let id = (next(&mut rng) % (ORDERS as u64 * 2)) as i64;
                    let x = (next(&mut rng) % 1_000_000) as i64;
                    let start = t0.elapsed().as_secs_f64();
                    match c.execute(op, &[&id, &x]) {
                        Ok(_) => {
                            local.ops.push((start, t0.elapsed().as_secs_f64()));
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if e.code().map(|s| s.code()) == Some("55000") {
                                local.fenced += 1;
                                local.fenced_ops.push((start, t0.elapsed().as_secs_f64()));
                            } else {
                                local.other_errors += 1;
                                if local.other_errors <= 3 {
                                    eprintln!("    writer {w}: {}", describe_error(&e));
                                }
                            }
                            if c.is_closed() {
                                client = None;
                            }
                        }
                    }
                }
                let mut all = seen.lock().unwrap();
                all.ops.extend(local.ops);
                all.fenced += local.fenced;
                all.fenced_ops.extend(local.fenced_ops);
                all.other_errors += local.other_errors;
            })
        })
        .collect();
    Writers {
        stop,
        handles,
        seen,
        ops,
    }
}

impl Writers {
    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.join().expect("writer thread");
        }
        Arc::try_unwrap(self.seen)
            .ok()
            .expect("writers done")
            .into_inner()
            .unwrap()
    }

    fn wait_ops(&self, n: u64) {
        let from = self.ops.load(Ordering::Relaxed);
        until(&format!("{n} more writes"), Duration::from_secs(60), || {
            (self.ops.load(Ordering::Relaxed) >= from + n).then_some(())
        });
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `cutover_migration(job, options)` as jsonb text.
fn try_cutover(
    c: &mut Client,
    job: i64,
    options: &str,
) -> Result<serde_json::Value, pg_tenant_ops_e2e::postgres::Error> {
    c.query_one(
        "SELECT tenant_ops.cutover_migration($1::int8, $2::text::jsonb)::text",
        &[&job, &options],
    )
    .map(|r| serde_json::from_str(r.get::<_, &str>(0)).expect("json"))
}

/// Cuts over, trying again while a lock is not had in time (the writers are busy).
fn cutover(c: &mut Client, job: i64) -> serde_json::Value {
    for _ in 0..5 {
        match try_cutover(c, job, r#"{"lock_timeout": "5s"}"#) {
            Ok(v) => return v,
            Err(e) if e.code().map(|s| s.code()) == Some("55P03") => continue,
            Err(e) => panic!("cutover_migration({job}): {}", describe_error(&e)),
        }
    }
    panic!("cutover_migration({job}) never had its locks");
}

pub fn online_writers_cutover(cluster: &Cluster) {
    let db = "e2e_online";
    let mut c = setup(cluster, db);
    let t0 = Instant::now();
    let writers = start_writers(cluster, db, 4, t0);
    writers.wait_ops(50);
    let job = migrate_tenant(
        &mut c,
        "shop",
        "1",
        "dst",
        r#"{"mode": "online", "create_target": true, "batch_size": 500, "lag_alert_changes": 1}"#,
        true,
    );
    exec(&mut c, "LISTEN tenant_ops_events");
    wait_catching_up(cluster, db, job);
    writers.wait_ops(2000);
    // The lag is in progress while it catches up.
    let lagged: i64 = scalar(
        &mut c,
        &format!("SELECT count(*) FROM tenant_ops.progress WHERE job_id = {job} AND lag_changes IS NOT NULL AND lag_seconds IS NOT NULL"),
    );
    assert_eq!(
        lagged, 3,
        "progress rows of job {job} with lag_changes and lag_seconds"
    );
    let before = t0.elapsed().as_secs_f64();
    let report = cutover(&mut c, job);
    let after = t0.elapsed().as_secs_f64();
    println!("    online: cutover report {report}");
    // Writes of tenant 1 are refused from now on; give the writers a moment to meet the fence.
    thread::sleep(Duration::from_millis(300));
    let seen = writers.stop();
    assert_eq!(wait_for(&mut c, job, 60.0), "succeeded", "job {job}");
    assert_eq!(report["cut_over"], true, "cutover report {report}");
    assert_eq!(
        report["tables"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    assert_same(&mut c, "after the cutover");
    assert!(
        seen.fenced > 0,
        "writers met the fence after the cutover ({} ops)",
        seen.ops.len()
    );
    assert!(
        seen.ops.len() > 500,
        "writers did {} writes",
        seen.ops.len()
    );
    let applied: i64 = scalar(
        &mut c,
        &format!("SELECT applied FROM tenant_ops.captures WHERE job_id = {job}"),
    );
    assert!(applied > 100, "the catch-up applied {applied} changes");
    // Nothing is left recorded; the fence stays, for tenant 1 only.
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.capture_changes"),
        0
    );
    assert_sqlstate(
        c.execute(
            "UPDATE app.orders SET note = 'late' WHERE account_id = 1",
            &[],
        ),
        "55000",
        "tenant \"1\" of scope \"shop\" was cut over by online migration job",
    );
    exec(
        &mut c,
        "UPDATE app.orders SET note = 'fine' WHERE account_id = 2",
    );
    // The events.
    let events: Vec<String> = c
        .query(
            "SELECT event FROM tenant_ops.job_log WHERE job_id = $1 AND event LIKE 'migration.%' ORDER BY id",
            &[&job],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["migration.cutover"], "job_log events of job {job}");
    let mut notified = vec![];
    let payloads: Vec<String> = c
        .notifications()
        .timeout_iter(Duration::from_millis(500))
        .map(|n| Ok(n.payload().to_string()))
        .collect()
        .unwrap_or_else(|e| panic!("receiving notifications: {}", describe_error(&e)));
    for p in payloads {
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        if v["job_id"] == job {
            notified.push(v["event"].as_str().unwrap_or_default().to_string());
        }
    }
    assert!(
        notified.iter().any(|e| e == "migration.cutover")
            && notified.iter().any(|e| e == "migration.lagging"),
        "NOTIFY events of job {job}: {notified:?}"
    );
    // The stall, from the writers' side: the writes that overlapped the cutover.
    let mut during: Vec<f64> = seen
        .ops
        .iter()
        .chain(&seen.fenced_ops)
        .filter(|(s, e)| *s < after && *e > before)
        .map(|(s, e)| (e - s) * 1000.0)
        .collect();
    during.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut all: Vec<f64> = seen.ops.iter().map(|(s, e)| (e - s) * 1000.0).collect();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "    online: {} writes by 4 writers ({} refused by the fence, {} other errors), {} changes applied; cutover {:.1} ms (locked {} ms, lock wait {} ms, {} changes drained)",
        seen.ops.len(),
        seen.fenced,
        seen.other_errors,
        applied,
        (after - before) * 1000.0,
        report["locked_ms"],
        report["lock_wait_ms"],
        report["drained_changes"]
    );
    println!(
        "    online: write latency during the cutover (n={}, those refused by the fence once it was in place included): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; all writes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.last().copied().unwrap_or(0.0),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0.0),
    );
    assert!(
        during.last().copied().unwrap_or(0.0) < 5000.0,
        "no write waited for the cutover longer than its lock_timeout"
    );
}

pub fn online_catchup_survives_kill9(cluster: &Cluster) {
    online_catchup_survives(cluster, "e2e_online_kill9", Interruption::Kill9);
}

pub fn online_catchup_survives_immediate_shutdown(cluster: &Cluster) {
    online_catchup_survives(
        cluster,
        "e2e_online_immediate",
        Interruption::ImmediateShutdown,
    );
}

/// The catch-up interrupted (`how`) while four writers go on (they reconnect): the job resumes
/// its catch-up from the records left, and after the cutover nothing is lost or doubled.
fn online_catchup_survives(cluster: &Cluster, db: &str, how: Interruption) {
    let mut c = setup(cluster, db);
    let t0 = Instant::now();
    let writers = start_writers(cluster, db, 4, t0);
    let job = migrate_tenant(
        &mut c,
        "shop",
        "1",
        "dst",
        r#"{"mode": "online", "create_target": true, "batch_size": 1000}"#,
        true,
    );
    wait_catching_up(cluster, db, job);
    writers.wait_ops(200);
    let pid: i32 = c
        .query_one(
            "SELECT worker_pid FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap()
        .get::<_, Option<i32>>(0)
        .expect("a worker runs the catch-up");
    cluster.interrupt(how, pid);
    let mut c = cluster.connect(db);
    wait_catching_up_by(cluster, db, job, Some(pid));
    writers.wait_ops(200);
    // Not verified under the locks (the shortest stall): verify_migration does it afterwards.
    let report = try_cutover(&mut c, job, r#"{"verify": false}"#)
        .unwrap_or_else(|e| panic!("cutover_migration({job}): {}", describe_error(&e)));
    assert_eq!(report["verified"], false, "{report}");
    let seen = writers.stop();
    assert_eq!(wait_for(&mut c, job, 60.0), "succeeded", "job {job}");
    assert_same(
        &mut c,
        &format!("after {how:?} during the catch-up and the cutover"),
    );
    let differ: i64 = scalar(
        &mut c,
        &format!(
            "SELECT count(*) FROM tenant_ops.verify_migration({job})
              WHERE source_rows <> target_rows OR missing > 0 OR different > 0 OR NOT complete"
        ),
    );
    assert_eq!(differ, 0, "verify_migration({job}) after the cutover");
    println!(
        "    online {how:?}: {} writes ({} errors: connections reset by the crash), drained {} at the cutover",
        seen.ops.len(),
        seen.other_errors,
        report["drained_changes"]
    );
}

pub fn online_errors_and_rollback(cluster: &Cluster) {
    let db = "e2e_online_errors";
    let mut c = setup(cluster, db);
    let nothing_written = |c: &mut Client, what: &str| {
        assert_eq!(
            scalar(
                c,
                "SELECT (SELECT count(*) FROM tenant_ops.jobs) + (SELECT count(*) FROM tenant_ops.captures)
                      + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tenant_ops_capture%')"
            ),
            0,
            "{what}: no job, capture or trigger"
        );
    };
    // Bad options, refused before anything is written.
    assert_sqlstate(
        try_migrate_tenant(&mut c, "shop", "1", "dst", r#"{"mode": "online"}"#, false),
        "22023",
        "mode \"online\" needs background => true",
    );
    assert_sqlstate(
        try_migrate_tenant(
            &mut c,
            "shop",
            "1",
            "dst",
            r#"{"mode": "online", "id_strategy": "uuid7"}"#,
            true,
        ),
        "22023",
        "id_strategy \"uuid7\" cannot be combined with mode \"online\"",
    );
    assert_sqlstate(
        try_migrate_tenant(
            &mut c,
            "shop",
            "1",
            "dst",
            r#"{"mode": "online", "dry_run": true}"#,
            true,
        ),
        "22023",
        "option \"dry_run\" cannot be combined with mode \"online\"",
    );
    assert_sqlstate(
        try_migrate_tenant(
            &mut c,
            "shop",
            "1",
            "dst",
            r#"{"lag_alert_changes": 5}"#,
            true,
        ),
        "22023",
        "option \"lag_alert_changes\" only applies to mode \"online\"",
    );
    exec(
        &mut c,
        "CREATE TABLE app.note (account_id int REFERENCES app.account, body text)",
    );
    exec(
        &mut c,
        "SELECT tenant_ops.create_scope('shop_nokey', 'app.account', 'account_id')",
    );
    assert_sqlstate(
        try_migrate_tenant(
            &mut c,
            "shop_nokey",
            "1",
            "dst",
            r#"{"mode": "online", "create_target": true}"#,
            true,
        ),
        "0A000",
        "table app.note has no primary key: its changes cannot be captured",
    );
    exec(
        &mut c,
        "DROP TABLE app.note; SELECT tenant_ops.drop_scope('shop_nokey')",
    );
    nothing_written(&mut c, "refused options");
    // Cutover of an unknown job, with bad options.
    assert_sqlstate(
        try_cutover(&mut c, 424242, "{}"),
        "42704",
        "job 424242 does not exist",
    );
    assert_sqlstate(
        try_cutover(&mut c, 1, r#"{"lock_timout": "1s"}"#),
        "22023",
        "lock_timout",
    );
    assert_sqlstate(
        try_cutover(&mut c, 1, r#"{"lock_timeout": "soon"}"#),
        "22023",
        "option \"lock_timeout\" must be a positive interval, not \"soon\"",
    );
    // Cutover of a migration that is not online.
    exec(&mut c, "CREATE SCHEMA plain");
    let copy = migrate_tenant(
        &mut c,
        "shop",
        "3",
        "plain",
        r#"{"create_target": true}"#,
        false,
    );
    assert_sqlstate(
        try_cutover(&mut c, copy, "{}"),
        "22023",
        &format!("job {copy} is not an online migration (its mode is \"copy\")"),
    );
    // An online job not catching up yet (queued: the transaction that submits it holds it).
    let mut tx = c.transaction().unwrap();
    let job = migrate_tenant(
        &mut tx,
        "shop",
        "1",
        "dst",
        r#"{"mode": "online", "create_target": true}"#,
        true,
    );
    let early = tx.query_one(
        "SELECT tenant_ops.cutover_migration($1::int8)::text",
        &[&job],
    );
    assert_sqlstate(
        early,
        "55000",
        &format!("online migration job {job} is not catching up (status queued, stage prepare)"),
    );
    tx.rollback().unwrap();
    let job = migrate_tenant(
        &mut c,
        "shop",
        "1",
        "dst",
        r#"{"mode": "online", "create_target": true}"#,
        true,
    );
    wait_catching_up(cluster, db, job);
    // TRUNCATE of a captured table is refused.
    assert_sqlstate(
        c.batch_execute("TRUNCATE app.order_line"),
        "55006",
        "is captured for online migration job",
    );
    // A lock not had within lock_timeout: a writer of another tenant holds its transaction open.
    let mut blocker = cluster.connect(db);
    exec(&mut blocker, "BEGIN; UPDATE app.orders SET note = 'held' WHERE order_id = (SELECT min(order_id) FROM app.orders WHERE account_id = 3)");
    let t = Instant::now();
    assert_sqlstate(
        try_cutover(&mut c, job, r#"{"lock_timeout": 300}"#),
        "55P03",
        &format!("cutover of job {job} gave up: table app.orders could not be locked within lock_timeout 300ms"),
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "gave up in {:?}",
        t.elapsed()
    );
    // ... and the catch-up goes on: a change made now reaches the target.
    exec(&mut blocker, "ROLLBACK");
    exec(
        &mut c,
        "UPDATE app.orders SET note = 'after the timeout' WHERE order_id = 1",
    );
    until(
        "the catch-up applies the update",
        Duration::from_secs(30),
        || {
            (scalar(
                &mut c,
                "SELECT count(*) FROM dst.orders WHERE order_id = 1 AND note = 'after the timeout'",
            ) == 1)
                .then_some(())
        },
    );
    assert_eq!(
        stage(&mut c, job),
        ("running".into(), "catchup".into()),
        "job {job}"
    );
    // Rollback before the cutover: capture stopped, target rows (and tables it made) gone.
    exec(&mut c, "DELETE FROM app.orders WHERE order_id = 2");
    let undone = try_rollback(&mut c, job)
        .unwrap_or_else(|e| panic!("rollback_migration({job}): {}", describe_error(&e)));
    assert!(undone.contains("rolled_back"), "{undone}");
    assert_eq!(stage(&mut c, job).0, "rolled_back", "job {job}");
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'dst'"
        ),
        0,
        "the tables create_target made are dropped"
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tenant_ops_capture%'"
        ),
        0,
        "the capture's triggers are removed"
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.capture_changes"),
        0
    );
    exec(&mut c, "TRUNCATE app.order_line");
}

// Hostile names everywhere an online migration builds SQL: the capture's functions and
// triggers (one name holds the dollar-quote tag they are written with), the tenant value
// spliced into them as a literal, the catch-up statement, the cutover's locks and fence.
const H_SCHEMA: &str = "Wéird; \"online\" $__tenant_ops$";
const H_ROOT: &str = "Ténant 'Root' $__tenant_ops$";
const H_CHILD: &str = "child; DROP TABLE x";
const H_KIDS: &str = "bıgınt kids";
const H_TARGET: &str = "Dést; 'x'";
const H_TENANT: &str = "o'Brien; -- $__tenant_ops$";

pub fn online_hostile_names(cluster: &Cluster) {
    use pg_tenant_ops_e2e::quote_ident;
    let db = "e2e_online_hostile";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    let q = |t: &str| format!("{}.{}", quote_ident(H_SCHEMA), quote_ident(t));
    let (root, child, kids) = (q(H_ROOT), q(H_CHILD), q(H_KIDS));
    exec(
        &mut c,
        &format!(
            r#"CREATE SCHEMA {schema};
               CREATE TABLE {root} ("Tén'ant" text PRIMARY KEY, "Display Name" text);
               CREATE TABLE {child} ("Child ID" int, "Sub'Key" text,
                   "TenantRef" text NOT NULL REFERENCES {root} ("Tén'ant"), "v; --" int,
                   PRIMARY KEY ("Child ID", "Sub'Key"));
               CREATE TABLE {kids} ("kid id" int PRIMARY KEY, "Parent ""ID""" int NOT NULL, "parent sub'key" text NOT NULL,
                   "MixedCase" text,
                   FOREIGN KEY ("Parent ""ID""", "parent sub'key") REFERENCES {child} ("Child ID", "Sub'Key")
                     ON UPDATE CASCADE ON DELETE CASCADE);
               INSERT INTO {root} VALUES ($t$o'Brien; -- $__tenant_ops$$t$, 'one'), ('other', 'two');
               INSERT INTO {child} SELECT g, 'x', CASE WHEN g <= 50 THEN $t$o'Brien; -- $__tenant_ops$$t$ ELSE 'other' END, g
                 FROM generate_series(1, 80) g;
               INSERT INTO {kids} SELECT g, (g + 1) / 2, 'x', 'k' || g FROM generate_series(1, 160) g;
               CREATE SCHEMA {target};"#,
            schema = quote_ident(H_SCHEMA),
            target = quote_ident(H_TARGET),
        ),
    );
    let scope = "wéird online; \"x\"";
    create_scope(&mut c, scope, &root, "Tén'ant", "{}");
    let job = migrate_tenant(
        &mut c,
        scope,
        H_TENANT,
        H_TARGET,
        r#"{"mode": "online", "create_target": true, "batch_size": 10}"#,
        true,
    );
    wait_catching_up(cluster, db, job);
    let t = H_TENANT.replace('\'', "''");
    exec(
        &mut c,
        &format!(
            r#"INSERT INTO {child} VALUES (100, 'y''z', '{t}', 1);
               INSERT INTO {kids} VALUES (1000, 100, 'y''z', 'new');
               UPDATE {kids} SET "MixedCase" = 'changed' WHERE "kid id" = 3;
               DELETE FROM {child} WHERE "Child ID" = 4;
               UPDATE {child} SET "Child ID" = 200 WHERE "Child ID" = 5;
               UPDATE {child} SET "TenantRef" = 'other' WHERE "Child ID" = 6;
               UPDATE {child} SET "TenantRef" = '{t}' WHERE "Child ID" = 60;"#
        ),
    );
    let report = cutover(&mut c, job);
    assert_eq!(
        wait_for(&mut c, job, 60.0),
        "succeeded",
        "job {job}: {report}"
    );
    let side = |c: &mut Client, from: &str| -> Side {
        let r = c
            .query_one(
                &format!("SELECT count(*), coalesce(sum(hashtext(t::text)), 0)::int8 FROM {from}"),
                &[],
            )
            .unwrap_or_else(|e| panic!("{from}: {}", describe_error(&e)));
        (r.get(0), r.get(1))
    };
    let tq = |t: &str| format!("{}.{}", quote_ident(H_TARGET), quote_ident(t));
    let tenant_child = format!(r#"(SELECT * FROM {child} WHERE "TenantRef" = '{t}') t"#);
    let tenant_kids = format!(
        r#"(SELECT k.* FROM {kids} k JOIN {child} ch ON (ch."Child ID", ch."Sub'Key") = (k."Parent ""ID""", k."parent sub'key")
             WHERE ch."TenantRef" = '{t}') t"#
    );
    for (src, dst, n) in [
        (tenant_child, format!("{} t", tq(H_CHILD)), 50),
        (tenant_kids, format!("{} t", tq(H_KIDS)), 99),
    ] {
        let (s, d) = (side(&mut c, &src), side(&mut c, &dst));
        assert_eq!(s, d, "{src} against {dst}");
        assert_eq!(s.0, n, "{src}: rows after the changes");
    }
    // The fence names the tenant; a rollback lifts it.
    assert_sqlstate(
        c.batch_execute(&format!(
            r#"UPDATE {child} SET "v; --" = 0 WHERE "TenantRef" = '{t}'"#
        )),
        "55000",
        &format!("tenant \"{H_TENANT}\" of scope \"{scope}\" was cut over"),
    );
    try_rollback(&mut c, job).unwrap_or_else(|e| panic!("rollback: {}", describe_error(&e)));
    exec(
        &mut c,
        &format!(r#"UPDATE {child} SET "v; --" = 0 WHERE "TenantRef" = '{t}'"#),
    );
}

/// `reverse_sync: true`: after the cutover the target's writes go back to the old tables
/// (which the fence keeps closed to everyone else), so a rollback switches back with no write
/// lost; `cutover_migration(job, '{"reverse_sync": false}')` ends it instead.
pub fn online_reverse_sync(cluster: &Cluster) {
    let db = "e2e_online_reverse";
    let mut c = setup(cluster, db);
    let options = r#"{"mode": "online", "create_target": true}"#;
    // Refused before anything is written: a target that does not mirror the source (keys
    // re-keyed, computed either way: name-based or keyed by the database's secret).
    for strategy in ["uuid5", "uuid"] {
        let job = migrate_tenant(
            &mut c,
            "shop",
            "1",
            "dst",
            &format!(r#"{{"mode": "online", "create_target": true, "id_strategy": "{strategy}"}}"#),
            true,
        );
        wait_catching_up(cluster, db, job);
        assert_sqlstate(
            try_cutover(&mut c, job, r#"{"reverse_sync": true}"#),
            "22023",
            "option \"reverse_sync\" needs targets that mirror the source",
        );
        try_rollback(&mut c, job)
            .unwrap_or_else(|e| panic!("rollback ({strategy}): {}", describe_error(&e)));
    }
    let target_writes =
        "UPDATE dst.orders SET note = 'written in the target' WHERE order_id IN (1, 2, 3);
         INSERT INTO dst.orders VALUES (900001, 1, 'new in the target', 5);
         INSERT INTO dst.order_line VALUES (900001, 1, 7), (900001, 2, 8);
         DELETE FROM dst.orders WHERE order_id = 10;
         UPDATE dst.order_line SET qty = 99 WHERE order_id = 20 AND line_no = 1;";
    let wait_synced = |c: &mut Client| {
        until(
            "the reverse sync applies the target's writes",
            Duration::from_secs(30),
            || {
                (scalar(c, "SELECT count(*) FROM app.orders WHERE order_id = 900001") == 1
                && scalar(c, "SELECT count(*) FROM app.orders WHERE order_id = 10") == 0
                && scalar(c, "SELECT count(*) FROM app.order_line WHERE order_id = 20 AND line_no = 1 AND qty = 99") == 1)
                .then_some(())
            },
        );
    };
    // 1. Reverse sync, then a rollback: the old tables have every write made to the target.
    let job = migrate_tenant(&mut c, "shop", "1", "dst", options, true);
    wait_catching_up(cluster, db, job);
    let report = try_cutover(&mut c, job, r#"{"reverse_sync": true}"#)
        .unwrap_or_else(|e| panic!("cutover_migration({job}): {}", describe_error(&e)));
    assert_eq!(report["reverse_sync"], true, "{report}");
    assert_eq!(
        stage(&mut c, job),
        ("running".into(), "reverse_sync".into()),
        "job {job}"
    );
    exec(&mut c, target_writes);
    wait_synced(&mut c);
    assert_same(&mut c, "with the reverse sync");
    // The reverse sync's lag, per table written back: none left once synced.
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM tenant_ops.progress WHERE job_id = {job} AND lag_changes = 0 AND lag_seconds = 0")
        ),
        scalar(&mut c, &format!("SELECT count(*) FROM tenant_ops.job_tables WHERE job_id = {job}")),
        "progress rows of job {job} in reverse sync with their lag"
    );
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM tenant_ops.job_tables WHERE job_id = {job} AND to_regclass(target) IS NULL")
        ),
        0,
        "every target name resolves (the lag is looked up by it)"
    );
    assert_sqlstate(
        c.execute(
            "UPDATE app.orders SET note = 'old side' WHERE order_id = 1",
            &[],
        ),
        "55000",
        "was cut over by online migration job",
    );
    exec(
        &mut c,
        "UPDATE dst.orders SET note = 'just before the rollback' WHERE order_id = 4",
    );
    try_rollback(&mut c, job).unwrap_or_else(|e| panic!("rollback: {}", describe_error(&e)));
    assert_eq!(stage(&mut c, job).0, "rolled_back");
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM app.orders WHERE order_id = 4 AND note = 'just before the rollback'"),
        1,
        "the write made to the target just before the rollback is in the old table"
    );
    exec(
        &mut c,
        "UPDATE app.orders SET note = 'old side again' WHERE order_id = 1",
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'dst'"
        ),
        0
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tenant_ops_capture%'"
        ),
        0
    );
    // 2. Reverse sync ended by a second cutover_migration: the job finishes, the old tables
    //    stay fenced with every write the target had.
    let job = migrate_tenant(&mut c, "shop", "1", "dst", options, true);
    wait_catching_up(cluster, db, job);
    try_cutover(&mut c, job, r#"{"reverse_sync": true}"#)
        .unwrap_or_else(|e| panic!("cutover_migration({job}): {}", describe_error(&e)));
    exec(
        &mut c,
        "UPDATE dst.orders SET note = 'at the end' WHERE order_id = 5",
    );
    let ended = try_cutover(&mut c, job, r#"{"reverse_sync": false}"#)
        .unwrap_or_else(|e| panic!("ending the reverse sync of {job}: {}", describe_error(&e)));
    assert_eq!(ended["reverse_sync"], false, "{ended}");
    assert_eq!(wait_for(&mut c, job, 60.0), "succeeded", "job {job}");
    assert_same(&mut c, "after the reverse sync ended");
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM app.orders WHERE order_id = 5 AND note = 'at the end'"
        ),
        1
    );
    exec(
        &mut c,
        "UPDATE dst.orders SET note = 'target only' WHERE order_id = 5",
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM app.orders WHERE order_id = 5 AND note = 'at the end'"
        ),
        1,
        "no sync after its end"
    );
}
