// `#[pg_test]` tests: the plumbing and the SQL functions on fixtures, inside one backend.
// (Each test runs in a transaction that is rolled back afterwards.)

use pgrx::prelude::*;

use crate::sys::{owner, try_subtransaction, with_job_window};

fn fixture() {
    Spi::run(
        "CREATE SCHEMA t;
         CREATE TABLE t.org (id int PRIMARY KEY);
         CREATE TABLE t.team (id int PRIMARY KEY, org_id int NOT NULL REFERENCES t.org);
         CREATE TABLE t.member (id int PRIMARY KEY, team_id int REFERENCES t.team, buddy int REFERENCES t.member);
         INSERT INTO t.org VALUES (1), (2);
         INSERT INTO t.team SELECT g, 1 + g % 2 FROM generate_series(1, 6) g;
         INSERT INTO t.member SELECT g, 1 + g % 6, NULL FROM generate_series(1, 30) g;",
    )
    .unwrap();
}

#[pg_test]
fn subtransaction_catches_an_error_and_the_transaction_goes_on() {
    Spi::run("CREATE TEMP TABLE st (v int)").unwrap();
    let caught = try_subtransaction(|| {
        Spi::run("INSERT INTO st VALUES (1)").unwrap();
        Spi::run("SELECT 1 / 0").unwrap();
    })
    .unwrap_err();
    assert_eq!(caught.sqlstate, PgSqlErrorCode::ERRCODE_DIVISION_BY_ZERO);
    assert_eq!(caught.message, "division by zero");
    // The insert inside was rolled back with the subtransaction; the outer one works.
    assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM st").unwrap(), Some(0));
    assert_eq!(try_subtransaction(|| Spi::get_one::<i32>("SELECT 7").unwrap()).unwrap(), Some(7));
}

#[pg_test]
fn extension_owner_switch_is_undone() {
    Spi::run("CREATE ROLE pgtest_someone; SET ROLE pgtest_someone").unwrap();
    let inside = owner::rows(
        "SELECT current_user::text, pg_catalog.current_setting('search_path')",
        &[],
        |r| Ok((r.get::<String>(1)?, r.get::<String>(2)?)),
    )
    .unwrap()
    .pop()
    .unwrap();
    let owner = Spi::get_one::<String>(
        "SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'pg_tenant_ops'",
    )
    .unwrap();
    assert_eq!(inside.0, owner);
    assert_eq!(inside.1.as_deref(), Some("pg_catalog, pg_temp"));
    assert_eq!(Spi::get_one::<String>("SELECT current_user::text").unwrap().as_deref(), Some("pgtest_someone"));
    Spi::run("RESET ROLE").unwrap();
}

#[pg_test]
fn job_window_admits_only_its_job() {
    Spi::run(
        "CREATE ROLE pgtest_op IN ROLE tenant_ops_operator;
         INSERT INTO tenant_ops.jobs (id, kind) OVERRIDING SYSTEM VALUE VALUES (900001, 'migrate'), (900002, 'migrate');
         SET ROLE pgtest_op",
    )
    .unwrap();
    let insert = |job: i64| {
        try_subtransaction(|| {
            Spi::run_with_args(
                "INSERT INTO tenant_ops.id_map (source, legacy_key, new_id, job_id)
                 VALUES ('tenant_ops.jobs'::regclass, $1::text, gen_random_uuid(), $1)",
                &[job.into()],
            )
        })
    };
    // Outside any window an ordinary role writes nothing into the extension's tables.
    let refused = insert(900001).unwrap_err();
    assert_eq!(refused.sqlstate, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
    assert!(refused.message.contains("row-level security"), "{}", refused.message);
    // Inside job 900001's window: that job's rows only, and the window closes afterwards.
    with_job_window(900001, || {
        insert(900001).unwrap().unwrap();
        assert!(insert(900002).is_err());
        assert_eq!(Spi::get_one::<bool>("SELECT tenant_ops.job_window_open(900001)").unwrap(), Some(true));
    });
    assert_eq!(Spi::get_one::<bool>("SELECT tenant_ops.job_window_open(900001)").unwrap(), Some(false));
    assert!(insert(900001).is_err());
    // An ERROR inside the window closes it too.
    let _ = try_subtransaction(|| with_job_window(900002, || Spi::run("SELECT 1 / 0")).unwrap());
    assert_eq!(Spi::get_one::<bool>("SELECT tenant_ops.job_window_open(900002)").unwrap(), Some(false));
    Spi::run("RESET ROLE").unwrap();
}

#[pg_test]
fn plan_counts_every_table_of_a_tenant() {
    fixture();
    Spi::run("SELECT tenant_ops.create_scope('t', 't.org', 'id')").unwrap();
    let rows = Spi::connect(|c| {
        c.select("SELECT table_name::text, role, rows FROM tenant_ops.plan('t', '2') ORDER BY step", None, &[])
            .unwrap()
            .map(|r| {
                (
                    r.get::<String>(1).unwrap().unwrap(),
                    r.get::<String>(2).unwrap().unwrap(),
                    r.get::<i64>(3).unwrap().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(
        rows,
        vec![
            ("t.org".to_string(), "root".to_string(), 1),
            ("t.team".to_string(), "owned".to_string(), 3),
            ("t.member".to_string(), "owned".to_string(), 15),
        ]
    );
    let audit = Spi::get_two::<String, String>(
        "SELECT action, outcome FROM tenant_ops.audit_log ORDER BY id DESC LIMIT 1",
    )
    .unwrap();
    assert_eq!(audit, (Some("create_scope".into()), Some("ok".into())));
}

#[pg_test(error = "scope \"nope\" does not exist")]
fn unknown_scope_is_an_error() {
    Spi::run("SELECT * FROM tenant_ops.plan('nope', '1')").unwrap();
}

#[pg_test(error = "tenant \"3\" does not exist in scope \"t\"")]
fn unknown_tenant_is_an_error() {
    fixture();
    Spi::run("SELECT tenant_ops.create_scope('t', 't.org', 'id')").unwrap();
    Spi::run("SELECT * FROM tenant_ops.plan('t', '3')").unwrap();
}

#[pg_test]
fn a_failed_create_scope_writes_nothing() {
    fixture();
    let before = Spi::get_one::<i64>("SELECT count(*) FROM tenant_ops.audit_log").unwrap();
    let err = try_subtransaction(|| {
        Spi::run("SELECT tenant_ops.create_scope('t', 't.org', 'id', '{\"shared\": [\"t.nope\"]}')").unwrap()
    })
    .unwrap_err();
    assert_eq!(err.sqlstate, PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE);
    assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM tenant_ops.scopes").unwrap(), Some(0));
    assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM tenant_ops.audit_log").unwrap(), before);
}

/// A query cancel inside a caught subtransaction is not swallowed as the step's error: it
/// goes on up (issue 10).
#[pg_test(error = "canceling statement due to user request")]
fn subtransaction_lets_a_cancel_through() {
    let _ = try_subtransaction(|| {
        Spi::run("SELECT pg_cancel_backend(pg_backend_pid()); SELECT pg_sleep(0.5)")
    });
    panic!("the cancel was caught");
}

/// The loose index scan of `distinct_values.rs` is taken while the planner statistics hold,
/// and given up for reading the rows once its own count of the values passes ten times what
/// they say (a column whose distinct values grew since its last ANALYZE).
#[pg_test]
fn loose_index_scan_only_while_the_statistics_hold() {
    Spi::run(
        "CREATE SCHEMA lv;
         CREATE TABLE lv.kind (id int PRIMARY KEY);
         CREATE TABLE lv.org (id int PRIMARY KEY);
         CREATE TABLE lv.item (id int PRIMARY KEY, org_id int NOT NULL REFERENCES lv.org,
                               kind_id int REFERENCES lv.kind);
         CREATE INDEX ON lv.item (kind_id);
         INSERT INTO lv.org VALUES (1);
         INSERT INTO lv.kind SELECT generate_series(1, 5000);
         INSERT INTO lv.item SELECT g, 1, 1 + g % 5 FROM generate_series(1, 20000) g;
         ANALYZE lv.item;
         SELECT tenant_ops.create_scope('lv', 'lv.org', 'id');",
    )
    .unwrap();
    let missing = || {
        let l = crate::scope::LoadedScope::load("lv").unwrap();
        let table = |name: &str| {
            l.catalog
                .tables
                .values()
                .find(|t| t.name == name)
                .unwrap()
                .clone()
        };
        crate::distinct_values::missing_values(
            &table("item"),
            &["kind_id".into()],
            &table("kind"),
            &["id".into()],
        )
    };
    let found = missing().expect("5 values in 20000 rows: the scan is cheap");
    assert!(!crate::distinct_values::any(&found));
    // 2000 more values, not analyzed: the statistics still say 5.
    Spi::run("INSERT INTO lv.item SELECT g, 1, 6 + g % 2000 FROM generate_series(20001, 40000) g")
        .unwrap();
    assert!(missing().is_none());
}
