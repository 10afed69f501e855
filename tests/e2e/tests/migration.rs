//! migrate_tenant end to end: a deferred job interrupted by `kill -9` of its backend or by an
//! immediate shutdown resumes from its checkpoint and ends exactly like an uninterrupted run;
//! progress seen from another session; chinook's manager chain and rollback; privileges.
//!
//! Every count is compared with hand-written SQL on the source, and the content of a re-keyed
//! target (random UUIDs) with a checksum that does not depend on the keys: each row is joined
//! up to its office and described by its non-key columns and those of its parents.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use pg_tenant_ops_e2e::postgres::{Client, Error};
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, Cluster, Interruption};

use crate::common::*;
use crate::datasets::CHINOOK_ORACLE;

// ----- helpers ----------------------------------------------------------------------------------

/// `tenant_ops.migrate_tenant(scope, tenant, target_schema, options)` (inline unless the
/// options say `defer`); the job id.
fn try_migrate(
    c: &mut Client,
    scope: &str,
    tenant: &str,
    target: &str,
    options: &str,
) -> Result<i64, Error> {
    try_migrate_tenant(c, scope, tenant, target, options, false)
}

#[track_caller]
fn migrate(c: &mut Client, scope: &str, tenant: &str, target: &str, options: &str) -> i64 {
    migrate_tenant(c, scope, tenant, target, options, false)
}

#[track_caller]
pub(crate) fn job_status(c: &mut Client, job: i64) -> String {
    match c.query_one("SELECT status FROM tenant_ops.jobs WHERE id = $1", &[&job]) {
        Ok(r) => r.get(0),
        Err(e) => panic!("reading job {job}: {}", describe_error(&e)),
    }
}

/// A text value from a query without parameters.
#[track_caller]
pub(crate) fn text(c: &mut Client, sql: &str) -> String {
    match c.query_one(sql, &[]) {
        Ok(row) => row.get(0),
        Err(e) => panic!("query failed: {}\n--- SQL ---\n{sql}", describe_error(&e)),
    }
}

/// One row of `tenant_ops.job_report(job)`.
#[derive(Debug)]
pub(crate) struct ReportRow {
    pub(crate) table: String,
    pub(crate) target: String,
    pub(crate) rows_total: Option<i64>,
    pub(crate) rows_done: i64,
    pub(crate) source_rows: Option<i64>,
    pub(crate) target_rows: Option<i64>,
    pub(crate) verified: Option<bool>,
    pub(crate) rejected: Option<i64>,
}

#[track_caller]
pub(crate) fn job_report(c: &mut Client, job: i64) -> Vec<ReportRow> {
    let rows = c
        .query(
            "SELECT table_name::text, target::text, rows_total::int8, rows_done::int8,
                    source_rows::int8, target_rows::int8, verified, rejected::int8
               FROM tenant_ops.job_report($1) ORDER BY step",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("job_report({job}): {}", describe_error(&e)));
    rows.iter()
        .map(|r| ReportRow {
            table: r.get(0),
            target: r.get(1),
            rows_total: r.get(2),
            rows_done: r.get(3),
            source_rows: r.get(4),
            target_rows: r.get(5),
            verified: r.get(6),
            rejected: r.get(7),
        })
        .collect()
}

/// Every table of the report verified, nothing rejected, and total = done = source = target.
#[track_caller]
pub(crate) fn assert_report_verified(report: &[ReportRow], job: i64) {
    assert!(!report.is_empty(), "job_report({job}) is empty");
    for r in report {
        let n = Some(r.rows_done);
        assert!(
            r.verified == Some(true)
                && r.rejected == Some(0)
                && r.rows_total == n
                && r.source_rows == n
                && r.target_rows == n,
            "job {job}: {} -> {} is not a verified, complete copy: {r:?}\nreport: {report:#?}",
            r.table,
            r.target
        );
    }
}

/// Per source table (as printed): (rows_done, rows_total) of a job.
pub(crate) type Progress = BTreeMap<String, (i64, Option<i64>)>;

/// A job's `tenant_ops.progress`, by source table.
#[track_caller]
pub(crate) fn progress(c: &mut Client, job: i64) -> Progress {
    let rows = c
        .query(
            "SELECT table_name::text, rows_done::int8, rows_total::int8
               FROM tenant_ops.progress WHERE job_id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("reading tenant_ops.progress: {}", describe_error(&e)));
    rows.iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// `(sum(rows_done), sum(rows_total), status)` of a job; status NULL before its tables exist.
pub(crate) fn progress_sums(c: &mut Client, job: i64) -> Result<(i64, i64, Option<String>), Error> {
    c.query_one(
        "SELECT coalesce(sum(p.rows_done), 0)::int8, coalesce(sum(p.rows_total), 0)::int8,
                (SELECT j.status FROM tenant_ops.jobs j WHERE j.id = $1)
           FROM tenant_ops.progress p WHERE p.job_id = $1",
        &[&job],
    )
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// The number of `step` events a job logged.
fn step_events(c: &mut Client, job: i64) -> i64 {
    match c.query_one(
        "SELECT count(*) FROM tenant_ops.job_log WHERE job_id = $1 AND event = 'step'",
        &[&job],
    ) {
        Ok(r) => r.get(0),
        Err(e) => panic!("reading tenant_ops.job_log: {}", describe_error(&e)),
    }
}

// ----- the dispatch demo schema -----------------------------------------------------------------

/// Creates `db` with the extension, the demo's legacy dispatch schema at `scale`, and the scope
/// `dispatch` (tenants: the rows of legacy.dispatch_offices).
pub(crate) fn dispatch_db(cluster: &Cluster, db: &str, scale: i32) -> Client {
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/dispatch.sql");
    cluster.psql_file(db, &generator);
    exec(
        &mut c,
        &format!("SELECT count(*) FROM legacy.generate_dispatch({scale})"),
    );
    create_scope(&mut c, "dispatch", "legacy.dispatch_offices", "id", "{}");
    c
}

/// The tables a dispatch migration copies, in dependency order: source table, target table
/// name (`strip_prefix: "dispatch_"`), and the hand-written count of one office's rows (`$1`).
/// Products are shared: the office copies those its order items reference.
pub(crate) const DISPATCH_TABLES: &[(&str, &str, &str)] = &[
    (
        "legacy.dispatch_products",
        "products",
        "SELECT count(DISTINCT i.product_id) FROM legacy.dispatch_order_items i
           JOIN legacy.dispatch_orders o ON o.id = i.order_id
           JOIN legacy.dispatch_patients p ON p.id = o.patient_id
           JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
          WHERE d.office_id = $1::text::int",
    ),
    (
        "legacy.dispatch_offices",
        "offices",
        "SELECT count(*) FROM legacy.dispatch_offices WHERE id = $1::text::int",
    ),
    (
        "legacy.dispatch_doctors",
        "doctors",
        "SELECT count(*) FROM legacy.dispatch_doctors WHERE office_id = $1::text::int",
    ),
    (
        "legacy.dispatch_patients",
        "patients",
        "SELECT count(*) FROM legacy.dispatch_patients p
           JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
          WHERE d.office_id = $1::text::int",
    ),
    (
        "legacy.dispatch_orders",
        "orders",
        "SELECT count(*) FROM legacy.dispatch_orders o
           JOIN legacy.dispatch_patients p ON p.id = o.patient_id
           JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
          WHERE d.office_id = $1::text::int",
    ),
    (
        "legacy.dispatch_order_items",
        "order_items",
        "SELECT count(*) FROM legacy.dispatch_order_items i
           JOIN legacy.dispatch_orders o ON o.id = i.order_id
           JOIN legacy.dispatch_patients p ON p.id = o.patient_id
           JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
          WHERE d.office_id = $1::text::int",
    ),
];

/// Office 1's rows per table (DISPATCH_TABLES order), by the hand-written SQL; checked against
/// the sizes the generator documents for `scale`.
#[track_caller]
pub(crate) fn office1_counts(c: &mut Client, scale: i64) -> Vec<i64> {
    let got: Vec<i64> = DISPATCH_TABLES
        .iter()
        .map(|(_, _, sql)| count(c, sql, "1"))
        .collect();
    // products, office, doctors (patients / 20), patients (weight 100 * scale * 10),
    // orders (3 per patient on average), items (2.5 per order on average)
    let patients = 1000 * scale;
    let want = vec![
        200,
        1,
        patients / 20,
        patients,
        3 * patients,
        15 * patients / 2,
    ];
    assert_eq!(
        got, want,
        "office 1 at scale {scale}: hand-written counts (products, offices, doctors, patients, orders, items)"
    );
    got
}

/// Per table, how to describe a row without its keys: its non-key columns and those of the
/// parents it is joined to (up to the office). `{s}` is the table prefix (`legacy.dispatch_`
/// or `app.`), `{office}` the condition on the office `f`.
const DISPATCH_CONTENT: &[(&str, &str)] = &[
    (
        "products",
        "SELECT ROW(pr.sku, pr.name, pr.unit_price)::text FROM {s}products pr
          WHERE pr.id IN (SELECT i.product_id FROM {s}order_items i
                            JOIN {s}orders o ON o.id = i.order_id
                            JOIN {s}patients p ON p.id = o.patient_id
                            JOIN {s}doctors d ON d.id = p.doctor_id
                            JOIN {s}offices f ON f.id = d.office_id
                           WHERE {office})",
    ),
    (
        "offices",
        "SELECT ROW(f.name, f.region, f.created_at)::text FROM {s}offices f WHERE {office}",
    ),
    (
        "doctors",
        "SELECT ROW(f.name, d.full_name, d.email, d.licensed_on, sup.email)::text
           FROM {s}doctors d JOIN {s}offices f ON f.id = d.office_id
           LEFT JOIN {s}doctors sup ON sup.id = d.supervisor_id
          WHERE {office}",
    ),
    (
        "patients",
        "SELECT ROW(d.email, p.full_name, p.email, p.phone, p.birth_date, p.notes)::text
           FROM {s}patients p JOIN {s}doctors d ON d.id = p.doctor_id
           JOIN {s}offices f ON f.id = d.office_id
          WHERE {office}",
    ),
    (
        "orders",
        "SELECT ROW(p.email, o.status, o.ordered_at, o.total)::text
           FROM {s}orders o JOIN {s}patients p ON p.id = o.patient_id
           JOIN {s}doctors d ON d.id = p.doctor_id
           JOIN {s}offices f ON f.id = d.office_id
          WHERE {office}",
    ),
    (
        "order_items",
        "SELECT ROW(p.email, o.ordered_at, o.total, i.line_no, pr.sku, i.quantity, i.unit_price)::text
           FROM {s}order_items i JOIN {s}orders o ON o.id = i.order_id
           JOIN {s}products pr ON pr.id = i.product_id
           JOIN {s}patients p ON p.id = o.patient_id
           JOIN {s}doctors d ON d.id = p.doctor_id
           JOIN {s}offices f ON f.id = d.office_id
          WHERE {office}",
    ),
];

/// Per table: (rows reached through the joins, md5 of those rows' descriptions in order).
#[track_caller]
pub(crate) fn dispatch_content(
    c: &mut Client,
    prefix: &str,
    office: &str,
) -> Vec<(String, i64, String)> {
    DISPATCH_CONTENT
        .iter()
        .map(|(table, rows)| {
            let sql = format!(
                "SELECT count(*), coalesce(md5(string_agg(r, E'\\n' ORDER BY r)), '') FROM ({}) x(r)",
                rows.replace("{s}", prefix).replace("{office}", office)
            );
            match c.query_one(sql.as_str(), &[]) {
                Ok(row) => (table.to_string(), row.get(0), row.get(1)),
                Err(e) => panic!("content query failed: {}\n--- SQL ---\n{sql}", describe_error(&e)),
            }
        })
        .collect()
}

/// `SELECT count(*)` of every target table of a dispatch migration into `schema`.
#[track_caller]
pub(crate) fn target_counts(c: &mut Client, schema: &str) -> Vec<i64> {
    DISPATCH_TABLES
        .iter()
        .map(|(_, t, _)| scalar(c, &format!("SELECT count(*) FROM {schema}.{t}")))
        .collect()
}

/// Per re-keyed dispatch table (products .. orders): the job's rows in tenant_ops.id_map.
#[track_caller]
pub(crate) fn mapped(c: &mut Client, job: i64) -> Vec<i64> {
    DISPATCH_TABLES[..5]
        .iter()
        .map(|(source, _, _)| {
            c.query_one(
                "SELECT count(*) FROM tenant_ops.id_map WHERE job_id = $1 AND source = $2::text::regclass",
                &[&job, source],
            )
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("reading tenant_ops.id_map: {}", describe_error(&e)))
        })
        .collect()
}

/// Asserts that a finished dispatch migration of office 1 into `schema` holds exactly the
/// source's rows: counts, and content through the joins (no dangling reference either).
#[track_caller]
pub(crate) fn assert_target_matches_source(c: &mut Client, schema: &str, source_counts: &[i64]) {
    assert_target_matches_office(c, schema, 1, source_counts);
}

/// As [`assert_target_matches_source`], for a migration of office `office`.
#[track_caller]
pub(crate) fn assert_target_matches_office(
    c: &mut Client,
    schema: &str,
    office: i32,
    source_counts: &[i64],
) {
    assert_eq!(
        target_counts(c, schema),
        source_counts,
        "{schema}: rows per table (products, offices, doctors, patients, orders, items) must equal the source's"
    );
    let source = dispatch_content(c, "legacy.dispatch_", &format!("f.id = {office}"));
    let target = dispatch_content(c, &format!("{schema}."), "true");
    for (s, t) in source.iter().zip(&target) {
        assert_eq!(
            s, t,
            "{schema}.{}: (rows joined up to the office, checksum) differ from the source's",
            s.0
        );
    }
    let joined: Vec<i64> = target.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(
        joined, source_counts,
        "{schema}: every row reaches its office through the remapped keys"
    );
}

const DISPATCH_UUID_OPTIONS: &str = r#"{"id_strategy": "uuid", "create_target": true, "shared": "copy", "strip_prefix": "dispatch_", "defer": true, "batch_size": 500}"#;

/// A deferred uuid migration of office 1 (scale 3, batches of 500) is interrupted while
/// `CALL run_job` is copying, then resumed with a second `CALL run_job`: the checkpoint
/// survives, the target ends up exactly as the source (and as an uninterrupted run), and no
/// batch is done twice.
fn migration_resumes_after(cluster: &Cluster, db: &str, how: Interruption) {
    let mut c = dispatch_db(cluster, db, 3);
    let source_counts = office1_counts(&mut c, 3);
    let total: i64 = source_counts.iter().sum();
    assert_eq!(
        total, 34_851,
        "office 1 at scale 3: 34,651 owned rows + 200 products"
    );
    exec(&mut c, "CREATE SCHEMA app; CREATE SCHEMA app2;");

    let job = migrate(&mut c, "dispatch", "1", "app", DISPATCH_UUID_OPTIONS);
    assert_eq!(
        job_status(&mut c, job),
        "queued",
        "a deferred job is only created"
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'app'"
        ),
        0,
        "a deferred job writes nothing before run_job"
    );

    let mut runner = cluster.connect(db);
    let pid: i32 = runner
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let run = thread::spawn(move || try_run_job(&mut runner, job));

    // Watch from another session until the job is well under way, but not finished: for the
    // kill, until some table is partly copied (a keyset position inside it); for the shutdown,
    // until half the rows are in.
    let mut watcher = cluster.connect(db);
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen_done = loop {
        let (done, all, status) = progress_sums(&mut watcher, job)
            .unwrap_or_else(|e| panic!("watching progress: {}", describe_error(&e)));
        let partial_table = progress(&mut watcher, job)
            .values()
            .any(|(d, t)| *d > 0 && Some(*d) < *t);
        let far_enough = match how {
            Interruption::Kill9 => partial_table,
            Interruption::ImmediateShutdown => done * 2 >= total,
        };
        if status.as_deref() == Some("running") && done > 0 && done < all && far_enough {
            break done;
        }
        if run.is_finished() || matches!(status.as_deref(), Some("succeeded" | "failed")) {
            let outcome = run.join().unwrap();
            panic!(
                "the job ended before it could be interrupted (status {status:?}, {done}/{all} rows): {:?}",
                outcome.map_err(|e| describe_error(&e))
            );
        }
        assert!(
            Instant::now() < deadline,
            "job {job} made no visible progress within 120s ({done}/{all} rows, status {status:?})"
        );
        thread::sleep(Duration::from_millis(5));
    };

    cluster.interrupt(how, pid);
    let outcome = run.join().expect("the run_job thread panicked");
    assert!(
        outcome.is_err(),
        "the interrupted CALL run_job must have lost its session"
    );
    drop((c, watcher));

    // After recovery: the job still says running, and the committed checkpoint is there.
    let mut c = cluster.connect(db);
    assert_eq!(
        job_status(&mut c, job),
        "running",
        "an interrupted job stays running"
    );
    let (done, all, _) = progress_sums(&mut c, job).unwrap();
    assert_eq!(all, total, "rows_total of every table survives");
    assert!(
        done >= seen_done && done > 0 && done < total,
        "the checkpoint survives the {how:?}: {done} of {total} rows done (seen {seen_done} before)"
    );
    // The checkpoint and the rows were committed together: each target table holds exactly
    // rows_done rows (not one more from the step that was cut short).
    let at_crash = progress(&mut c, job);
    for (source, target, _) in DISPATCH_TABLES {
        let name = regclass_text(&mut c, source);
        let (rows_done, _) = at_crash
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing from tenant_ops.progress: {at_crash:?}"));
        let in_target = scalar(&mut c, &format!("SELECT count(*) FROM app.{target}"));
        assert_eq!(
            in_target, *rows_done,
            "after the {how:?}: app.{target} holds {in_target} rows but its checkpoint says {rows_done}"
        );
    }

    // Resume to the end.
    run_job(&mut c, job);
    assert_eq!(job_status(&mut c, job), "succeeded");
    let report = job_report(&mut c, job);
    assert_report_verified(&report, job);
    let done: Vec<i64> = report.iter().map(|r| r.rows_done).collect();
    assert_eq!(
        done, source_counts,
        "job_report rows_done per table equals the source's counts"
    );
    assert_target_matches_source(&mut c, "app", &source_counts);
    // uuid keys are computed, not recorded: none in id_map (the resume found its parents'
    // keys by computing them again; the uninterrupted run below gives the very same keys).
    assert_eq!(
        mapped(&mut c, job),
        vec![0; 5],
        "tenant_ops.id_map: nothing recorded for a uuid migration"
    );

    // The same migration without interruption, into app2: the same rows, the same number of
    // committed steps (nothing was redone after the resume).
    let job2 = migrate(&mut c, "dispatch", "1", "app2", DISPATCH_UUID_OPTIONS);
    run_job(&mut c, job2);
    assert_eq!(job_status(&mut c, job2), "succeeded");
    assert_report_verified(&job_report(&mut c, job2), job2);
    assert_target_matches_source(&mut c, "app2", &source_counts);
    assert_eq!(
        dispatch_content(&mut c, "app.", "true"),
        dispatch_content(&mut c, "app2.", "true"),
        "the interrupted run and the uninterrupted one wrote the same rows"
    );
    let same_keys: Vec<i64> = DISPATCH_TABLES[..5]
        .iter()
        .map(|(_, target, _)| {
            scalar(
                &mut c,
                &format!("SELECT count(*) FROM app.{target} a JOIN app2.{target} b USING (id)"),
            )
        })
        .collect();
    assert_eq!(
        same_keys,
        source_counts[..5].to_vec(),
        "every re-keyed row has the same key in both runs (and map_id's)"
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM legacy.dispatch_orders o JOIN app.orders a
                 ON a.id = tenant_ops.map_id('legacy.dispatch_orders', o.id::text)"
        ),
        source_counts[4],
        "map_id gives each order the key it has in the target"
    );
    assert_eq!(
        step_events(&mut c, job),
        step_events(&mut c, job2),
        "the interrupted job committed as many steps as the uninterrupted one"
    );
    // The source is untouched (mode copy).
    assert_eq!(office1_counts(&mut c, 3), source_counts);
}

pub fn migration_resumes_after_kill9(cluster: &Cluster) {
    migration_resumes_after(cluster, "e2e_migration_kill9", Interruption::Kill9);
}

pub fn migration_resumes_after_immediate_shutdown(cluster: &Cluster) {
    migration_resumes_after(
        cluster,
        "e2e_migration_immediate",
        Interruption::ImmediateShutdown,
    );
}

/// A second session samples tenant_ops.progress while `CALL run_job` copies office 1 (scale 1)
/// in batches of 100: it sees the run advance, rows_done never goes back, tables fill in
/// dependency order, and at the end every table has rows_done = rows_total = the source's rows.
pub fn progress_visible_from_another_session(cluster: &Cluster) {
    let db = "e2e_migration_progress";
    let mut c = dispatch_db(cluster, db, 1);
    let source_counts = office1_counts(&mut c, 1);
    let total: i64 = source_counts.iter().sum();
    exec(&mut c, "CREATE SCHEMA p");
    let job = migrate(
        &mut c,
        "dispatch",
        "1",
        "p",
        r#"{"create_target": true, "shared": "copy", "strip_prefix": "dispatch_", "defer": true, "batch_size": 100}"#,
    );
    let steps: Vec<String> = DISPATCH_TABLES
        .iter()
        .map(|(s, _, _)| regclass_text(&mut c, s))
        .collect();

    let mut runner = cluster.connect(db);
    let run = thread::spawn(move || try_run_job(&mut runner, job));

    let mut watcher = cluster.connect(db);
    let mut samples: Vec<(String, Progress)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let finished = run.is_finished();
        let status = job_status(&mut watcher, job);
        let p = progress(&mut watcher, job);
        samples.push((status.clone(), p));
        if finished || status == "succeeded" || status == "failed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} did not end within 120s"
        );
        thread::sleep(Duration::from_millis(10));
    }
    if let Err(e) = run.join().expect("the run_job thread panicked") {
        panic!(
            "CALL tenant_ops.run_job({job}) failed: {}",
            describe_error(&e)
        );
    }
    // One more sample after the CALL returned.
    let last = progress(&mut watcher, job);
    samples.push((job_status(&mut watcher, job), last.clone()));

    let show = |i: usize| format!("sample {i}: {:?}", samples[i]);
    let mut previous: Progress = BTreeMap::new();
    for (i, (_, sample)) in samples.iter().enumerate() {
        for (table, (done, rows_total)) in sample {
            if let Some((before, total_before)) = previous.get(table) {
                assert!(
                    done >= before,
                    "{table}: rows_done went back from {before} to {done}\n{}\n{}",
                    show(i - 1),
                    show(i)
                );
                assert!(
                    total_before.is_none() || rows_total == total_before,
                    "{table}: rows_total changed from {total_before:?} to {rows_total:?}\n{}",
                    show(i)
                );
            }
            if let Some(t) = rows_total {
                assert!(done <= t, "{table}: {done} rows done of {t}\n{}", show(i));
            }
        }
        // Copied table by table, in dependency order: a table has rows only when every table
        // before it is complete.
        for (k, table) in steps.iter().enumerate() {
            let started = sample.get(table).is_some_and(|(d, _)| *d > 0);
            if started {
                for earlier in &steps[..k] {
                    let complete = sample.get(earlier).is_some_and(|(d, t)| Some(*d) == *t);
                    assert!(
                        complete,
                        "{table} has rows while {earlier} is not complete\n{}",
                        show(i)
                    );
                }
            }
        }
        previous = sample.clone();
    }
    let in_progress: std::collections::BTreeSet<i64> = samples
        .iter()
        .filter(|(status, _)| status == "running")
        .map(|(_, s)| s.values().map(|(d, _)| d).sum::<i64>())
        .filter(|done| *done > 0 && *done < total)
        .collect();
    assert!(
        in_progress.len() >= 3,
        "another session should see the run advance (commit per step): distinct in-progress totals seen: {in_progress:?} in {} samples",
        samples.len()
    );

    assert_eq!(job_status(&mut c, job), "succeeded");
    let want: Progress = steps
        .iter()
        .zip(&source_counts)
        .map(|(t, n)| (t.clone(), (*n, Some(*n))))
        .collect();
    assert_eq!(
        last, want,
        "at the end every table has rows_done = rows_total = the source's rows"
    );
    assert_eq!(
        target_counts(&mut c, "p"),
        source_counts,
        "the target holds the source's rows"
    );
}

/// Chinook, tenant employee 4: its customers, invoices and lines are copied, and so is its
/// manager chain (4 reports to 2, who reports to 1): a root self-reference is followed like a
/// shared reference, so the target's employee.reports_to foreign key holds. Then the
/// migration is rolled back and every target table is empty again.
pub fn chinook_migration_with_manager_chain(cluster: &Cluster) {
    let db = "e2e_migration_chinook";
    cluster.load_chinook(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    create_scope(&mut c, "chinook", "employee", "employee_id", "{}");
    exec(&mut c, "CREATE SCHEMA t");

    let chain_sql = "WITH RECURSIVE chain AS (
            SELECT employee_id, reports_to FROM %s WHERE employee_id = 4
            UNION SELECT e.employee_id, e.reports_to FROM %s e JOIN chain ON e.employee_id = chain.reports_to)
        SELECT array_agg(employee_id ORDER BY employee_id)::text FROM chain";
    let chain = text(&mut c, &chain_sql.replace("%s", "public.employee"));
    assert_eq!(chain, "{1,2,4}", "employee 4's manager chain in chinook");

    let source_before: Vec<i64> = ["employee", "customer", "invoice", "invoice_line"]
        .iter()
        .map(|t| scalar(&mut c, &format!("SELECT count(*) FROM public.{t}")))
        .collect();
    assert_eq!(source_before, vec![8, 59, 412, 2240]);

    let job = migrate(
        &mut c,
        "chinook",
        "4",
        "t",
        r#"{"create_target": true, "shared": "copy"}"#,
    );
    assert_eq!(job_status(&mut c, job), "succeeded");
    assert_report_verified(&job_report(&mut c, job), job);

    for (table, n) in [("customer", 20), ("invoice", 140), ("invoice_line", 760)] {
        assert_eq!(
            scalar(&mut c, &format!("SELECT count(*) FROM t.{table}")),
            n,
            "t.{table}"
        );
    }
    // The owned tables' counts by the hand-written SQL, and the shared ones: what tenant 4's
    // invoice lines reference.
    for (table, sql) in CHINOOK_ORACLE {
        if *table == "employee" {
            continue;
        }
        let want = count(&mut c, sql, "4");
        assert_eq!(
            scalar(&mut c, &format!("SELECT count(*) FROM t.{table}")),
            want,
            "t.{table}: tenant 4's rows by hand-written SQL"
        );
    }
    // Row for row identical (id_strategy keep).
    for (table, rows) in [
        ("customer", "SELECT c.* FROM {s}customer c WHERE c.support_rep_id = 4"),
        (
            "invoice",
            "SELECT i.* FROM {s}invoice i JOIN {s}customer c USING (customer_id) WHERE c.support_rep_id = 4",
        ),
        (
            "invoice_line",
            "SELECT l.* FROM {s}invoice_line l JOIN {s}invoice i USING (invoice_id)
               JOIN {s}customer c USING (customer_id) WHERE c.support_rep_id = 4",
        ),
        ("employee", "SELECT e.* FROM {s}employee e WHERE e.employee_id IN (1, 2, 4)"),
    ] {
        let checksum = |c: &mut Client, s: &str| {
            text(
                c,
                &format!(
                    "SELECT coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM ({}) x",
                    rows.replace("{s}", s)
                ),
            )
        };
        assert_eq!(
            checksum(&mut c, "t."),
            checksum(&mut c, "public."),
            "t.{table} differs from the source"
        );
    }

    // The manager chain came along, and the self-reference holds in the target.
    assert_eq!(
        text(&mut c, &chain_sql.replace("%s", "t.employee")),
        "{1,2,4}",
        "employee 4 and its managers up the chain are in the target"
    );
    assert_eq!(
        text(
            &mut c,
            "SELECT array_agg(employee_id ORDER BY employee_id)::text FROM t.employee"
        ),
        "{1,2,4}",
        "t.employee holds employee 4 and its manager chain, nobody else"
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM t.employee e WHERE e.reports_to IS NOT NULL
                AND NOT EXISTS (SELECT FROM t.employee m WHERE m.employee_id = e.reports_to)"
        ),
        0,
        "every reports_to in the target points at a target employee"
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_constraint
              WHERE contype = 'f' AND conrelid = 't.employee'::regclass AND confrelid = 't.employee'::regclass"
        ),
        1,
        "the target's employee.reports_to foreign key exists (create_target)"
    );

    // Roll back: the target tables create_target made are gone, the source unchanged.
    if let Err(e) = try_rollback(&mut c, job) {
        panic!("rollback_migration({job}) failed: {}", describe_error(&e));
    }
    assert_eq!(job_status(&mut c, job), "rolled_back");
    let tables: Vec<String> = c
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 't' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        Vec::<String>::new(),
        "rollback_migration dropped the 9 tables create_target made"
    );
    let source_after: Vec<i64> = ["employee", "customer", "invoice", "invoice_line"]
        .iter()
        .map(|t| scalar(&mut c, &format!("SELECT count(*) FROM public.{t}")))
        .collect();
    assert_eq!(source_after, source_before, "the source is untouched");
}

const SHOP: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.account (account_id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account, total numeric NOT NULL);
CREATE TABLE shop.order_line (line_id int PRIMARY KEY, order_id int NOT NULL REFERENCES shop.orders, qty int NOT NULL);
INSERT INTO shop.account VALUES (1, 'one'), (2, 'two');
INSERT INTO shop.orders VALUES (10, 1, 5), (11, 1, 7), (20, 2, 1);
INSERT INTO shop.order_line VALUES (100, 10, 1), (101, 10, 2), (102, 11, 1), (200, 20, 9);
CREATE SCHEMA dst;
CREATE ROLE mig_op LOGIN IN ROLE tenant_ops_operator;
CREATE ROLE mig_viewer LOGIN IN ROLE tenant_ops_viewer;
CREATE ROLE mig_admin LOGIN IN ROLE tenant_ops_admin;
GRANT USAGE ON SCHEMA shop TO mig_op, mig_viewer, mig_admin;
GRANT SELECT ON shop.account, shop.orders TO mig_op;
GRANT SELECT ON ALL TABLES IN SCHEMA shop TO mig_viewer, mig_admin;
GRANT USAGE, CREATE ON SCHEMA dst TO mig_op, mig_viewer, mig_admin;
SELECT tenant_ops.create_scope('shop', 'shop.account', 'account_id');
"#;

/// What a migration leaves behind anywhere: jobs, their tables, log and mappings, and tables
/// or rows in the target schema `dst`.
fn written(c: &mut Client) -> Vec<(&'static str, i64)> {
    vec![
        ("jobs", scalar(c, "SELECT count(*) FROM tenant_ops.jobs")),
        (
            "job_tables",
            scalar(c, "SELECT count(*) FROM tenant_ops.job_tables"),
        ),
        (
            "job_log",
            scalar(c, "SELECT count(*) FROM tenant_ops.job_log"),
        ),
        (
            "id_map",
            scalar(c, "SELECT count(*) FROM tenant_ops.id_map"),
        ),
        (
            "dst tables",
            scalar(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'dst'"),
        ),
    ]
}

/// migrate_tenant runs with the caller's privileges on tenant data; viewers may not migrate,
/// and only admins may roll back.
pub fn privileges_migration(cluster: &Cluster) {
    let db = "e2e_migration_privileges";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(&mut su, SHOP);
    let nothing = written(&mut su);
    let mut op = cluster.connect_as(db, "mig_op");
    let mut viewer = cluster.connect_as(db, "mig_viewer");

    // An operator without SELECT on shop.order_line: refused, nothing written.
    assert_sqlstate(
        try_migrate(&mut op, "shop", "1", "dst", r#"{"create_target": true}"#),
        "42501",
        "order_line",
    );
    assert_eq!(
        written(&mut su),
        nothing,
        "a migration refused for lack of privileges writes nothing"
    );
    // Deferred: either refused at once, or the run fails with 42501 and writes no row.
    match try_migrate(
        &mut op,
        "shop",
        "1",
        "dst",
        r#"{"create_target": true, "defer": true}"#,
    ) {
        Err(e) => {
            assert_sqlstate::<()>(Err(e), "42501", "order_line");
            assert_eq!(written(&mut su), nothing);
        }
        Ok(job) => {
            assert_sqlstate(try_run_job(&mut op, job), "42501", "order_line");
            assert_eq!(job_status(&mut su, job), "failed");
            for t in ["account", "orders", "order_line"] {
                let exists = scalar(
                    &mut su,
                    &format!(
                        "SELECT count(*) FROM pg_tables WHERE schemaname = 'dst' AND tablename = '{t}'"
                    ),
                );
                if exists > 0 {
                    assert_eq!(
                        scalar(&mut su, &format!("SELECT count(*) FROM dst.{t}")),
                        0,
                        "dst.{t}: the failed deferred job wrote rows"
                    );
                }
            }
            // Clear the failed job's traces so the next checks start from nothing again.
            exec(
                &mut su,
                "DROP SCHEMA dst CASCADE; CREATE SCHEMA dst;
                 GRANT USAGE, CREATE ON SCHEMA dst TO mig_op, mig_viewer, mig_admin;",
            );
        }
    }
    let nothing = written(&mut su);

    // A viewer may not migrate at all (it may read everything).
    assert_sqlstate(
        try_migrate(
            &mut viewer,
            "shop",
            "1",
            "dst",
            r#"{"create_target": true}"#,
        ),
        "42501",
        "",
    );
    assert_eq!(
        written(&mut su),
        nothing,
        "a viewer's refused call writes nothing"
    );

    // With SELECT on every source table the same operator migrates.
    exec(&mut su, "GRANT SELECT ON shop.order_line TO mig_op");
    let job = migrate(&mut op, "shop", "1", "dst", r#"{"create_target": true}"#);
    assert_eq!(job_status(&mut su, job), "succeeded");
    let dst_counts = |c: &mut Client| -> Vec<i64> {
        ["account", "orders", "order_line"]
            .iter()
            .map(|t| scalar(c, &format!("SELECT count(*) FROM dst.{t}")))
            .collect()
    };
    assert_eq!(dst_counts(&mut su), vec![1, 2, 3], "tenant 1 in dst");

    // Rolling back is for admins only.
    assert_sqlstate(try_rollback(&mut op, job), "42501", "");
    assert_sqlstate(try_rollback(&mut viewer, job), "42501", "");
    assert_eq!(
        job_status(&mut su, job),
        "succeeded",
        "a refused rollback changes nothing"
    );
    assert_eq!(
        dst_counts(&mut su),
        vec![1, 2, 3],
        "a refused rollback deletes nothing"
    );

    // An admin (with rights on the target tables) may.
    exec(
        &mut su,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dst TO mig_admin",
    );
    let mut admin = cluster.connect_as(db, "mig_admin");
    if let Err(e) = try_rollback(&mut admin, job) {
        panic!(
            "rollback_migration({job}) as an admin failed: {}",
            describe_error(&e)
        );
    }
    assert_eq!(job_status(&mut su, job), "rolled_back");
    assert_eq!(dst_counts(&mut su), vec![0, 0, 0], "rolled back");
}

/// `id_strategy: uuid` computes its keys under the database's secret, which a dump keeps
/// (`pg_extension_config_dump`): after `pg_dump -Fc` and `pg_restore` into a new database,
/// `map_id` gives the keys the first migration wrote, and migrating the same tenant again
/// there writes the very same keys; another tenant's rows reference the shared rows by the
/// keys the first migration gave them. A database without a dump gets a secret of its own
/// (other keys).
pub fn uuid_keys_survive_dump_and_restore(cluster: &Cluster) {
    let (db, restored, other) = ("e2e_uuid_dump", "e2e_uuid_restored", "e2e_uuid_other");
    let schema = "CREATE SCHEMA src;
         CREATE TABLE src.tenant (id int PRIMARY KEY, name text);
         CREATE TABLE src.color (id int PRIMARY KEY, name text);
         CREATE TABLE src.item (id int PRIMARY KEY, tenant int NOT NULL REFERENCES src.tenant,
                                color int REFERENCES src.color, label text);
         INSERT INTO src.tenant VALUES (1, 'one'), (2, 'two');
         INSERT INTO src.color SELECT g, 'c' || g FROM generate_series(1, 5) g;
         INSERT INTO src.item SELECT g, 1 + g % 2, 1 + g % 5, 'i' || g FROM generate_series(1, 40) g;";
    let keys = |c: &mut Client, target: &str| -> Vec<(String, String)> {
        c.query(
            &format!(
                "SELECT i.id::text, c.id::text FROM {target}.item i JOIN {target}.color c ON c.id = i.color
                  ORDER BY i.label"
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("reading {target}: {}", describe_error(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let options = r#"{"id_strategy": "uuid", "create_target": true, "shared": "copy"}"#;
    let setup = |c: &mut Client| {
        exec(c, schema);
        create_extension(c);
        create_scope(c, "s", "src.tenant", "id", "{}");
    };

    let mut c = fresh_db(cluster, db);
    setup(&mut c);
    exec(&mut c, "CREATE SCHEMA dst");
    let job = migrate_tenant(&mut c, "s", "1", "dst", options, false);
    assert_eq!(job_status(&mut c, job), "succeeded");
    let first = keys(&mut c, "dst");
    assert_eq!(first.len(), 20, "tenant 1's items in dst");
    let item_7: String = c
        .query_one("SELECT tenant_ops.map_id('src.item', '7')::text", &[])
        .expect("map_id")
        .get(0);
    drop(c);

    let dump = std::env::temp_dir().join(format!("e2e_uuid_dump_{}.pgc", std::process::id()));
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(cluster.bin(program))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let dump_path = dump.to_str().expect("a UTF-8 temporary path");
    run("pg_dump", &["-Fc", "-d", db, "-f", dump_path]);
    cluster.create_database(restored);
    run(
        "pg_restore",
        &["--exit-on-error", "-d", restored, dump_path],
    );
    let _ = std::fs::remove_file(&dump);

    let mut r = cluster.connect(restored);
    assert_eq!(keys(&mut r, "dst"), first, "the restored copy of dst");
    let again: String = r
        .query_one("SELECT tenant_ops.map_id('src.item', '7')::text", &[])
        .expect("map_id after the restore")
        .get(0);
    assert_eq!(again, item_7, "map_id after the restore");
    exec(&mut r, "CREATE SCHEMA dst2; CREATE SCHEMA dst3");
    let job = migrate_tenant(&mut r, "s", "1", "dst3", options, false);
    assert_eq!(job_status(&mut r, job), "succeeded");
    assert_eq!(
        keys(&mut r, "dst3"),
        first,
        "tenant 1 migrated again after the restore: the same keys"
    );
    // Tenant 2 into dst, beside tenant 1: its items reference the colors tenant 1's migration
    // copied, by the keys that migration gave them (none copied twice).
    let job = migrate_tenant(&mut r, "s", "2", "dst", options, false);
    assert_eq!(job_status(&mut r, job), "succeeded");
    assert_eq!(
        (
            scalar(
                &mut r,
                "SELECT count(*) FROM dst.item i JOIN dst.color c ON c.id = i.color"
            ),
            scalar(&mut r, "SELECT count(*) FROM dst.color"),
        ),
        (40, 5),
        "both tenants' items reach the five colors"
    );
    drop(r);

    // Another database draws a secret of its own: other keys for the same rows.
    let mut o = fresh_db(cluster, other);
    setup(&mut o);
    exec(&mut o, "CREATE SCHEMA dst");
    migrate_tenant(&mut o, "s", "1", "dst", options, false);
    let theirs = keys(&mut o, "dst");
    assert_eq!(theirs.len(), 20);
    assert!(
        theirs
            .iter()
            .zip(&first)
            .all(|(a, b)| a.0 != b.0 && a.1 != b.1),
        "another database's secret gives other keys"
    );
    drop(o);
    for d in [db, restored, other] {
        cluster.drop_database(d);
    }
}
