//! What a migration checks before it writes anything, and what it leaves behind when it
//! fails or is undone:
//!
//! - a background or deferred job that cannot succeed (a privilege missing on any table or
//!   schema it needs) is refused when queued, 42501 naming the table and the privilege; one
//!   that loses a privilege after it was queued fails in `prepare` and leaves no table behind;
//! - a rollback (or cancel) drops the target tables `create_target` made for the job, unless
//!   another job's rows are in them;
//! - five background jobs creating targets in one schema at once all succeed;
//! - a second scope over the same root table is busy (55P03) while a tenant's migration runs;
//! - two source tables mapped to one target table are refused (42P07), dry runs included.

use std::time::Duration;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, assert_sqlstate_hint, describe_error, Cluster};

use crate::common::*;

type TestFn = fn(&Cluster);

/// The tests of this file, registered by `e2e.rs`.
pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        (
            "submission_refuses_what_cannot_succeed",
            submission_refuses_what_cannot_succeed,
        ),
        (
            "submission_failed_prepare_leaves_no_table",
            submission_failed_prepare_leaves_no_table,
        ),
        (
            "submission_rollback_drops_created_targets",
            submission_rollback_drops_created_targets,
        ),
        (
            "submission_concurrent_create_target_one_schema",
            submission_concurrent_create_target_one_schema,
        ),
        (
            "submission_second_scope_same_root_is_busy",
            submission_second_scope_same_root_is_busy,
        ),
        (
            "submission_two_sources_one_target",
            submission_two_sources_one_target,
        ),
    ]
}

/// The shop: account (the root) → orders → order_line, tenants 1 and 2; a schema `dst` the
/// role `sub_op` (an operator) may create in, and SELECT for it on account and orders only.
fn shop(cluster: &Cluster, db: &str) -> Client {
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
         DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sub_op') THEN
             CREATE ROLE sub_op LOGIN IN ROLE tenant_ops_operator;
           END IF;
         END $$;
         GRANT USAGE ON SCHEMA shop TO sub_op;
         GRANT SELECT ON shop.account, shop.orders TO sub_op;
         GRANT USAGE, CREATE ON SCHEMA dst TO sub_op;
         SELECT tenant_ops.create_scope('shop', 'shop.account', 'account_id');",
    );
    su
}

/// Tables in schema `schema`, by name.
fn tables_in(c: &mut Client, schema: &str) -> Vec<String> {
    c.query(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
        &[&schema],
    )
    .unwrap_or_else(|e| panic!("reading pg_tables: {}", describe_error(&e)))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// How many migration jobs exist.
fn job_count(c: &mut Client) -> i64 {
    scalar(
        c,
        "SELECT count(*) FROM tenant_ops.jobs WHERE kind = 'migrate'",
    )
}

/// `(status, error)` of a job.
fn status_error(c: &mut Client, job: i64) -> (String, Option<String>) {
    let r = c
        .query_one(
            "SELECT status, error FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("reading job {job}: {}", describe_error(&e)));
    (r.get(0), r.get(1))
}

/// A background or deferred job whose submitter lacks a privilege the job needs is refused
/// when queued: SELECT on a source table, CREATE on the target schema when `create_target`
/// will create a table, INSERT on an existing target (SELECT alone used to pass: a list given
/// to has_table_privilege is true when any one is held), DELETE on the source for a move.
/// Nothing is created, no job row is left. A dry run reports the problem as its outcome.
pub fn submission_refuses_what_cannot_succeed(cluster: &Cluster) {
    let db = "e2e_submit_refuse";
    let mut su = shop(cluster, db);
    let mut op = cluster.connect_as(db, "sub_op");
    let create = r#"{"create_target": true}"#;
    let deferred = r#"{"create_target": true, "defer": true}"#;

    // SELECT missing on one source table: background and deferred alike.
    for (options, background) in [(create, true), (deferred, false)] {
        let err = assert_sqlstate_hint(
            try_migrate_tenant(&mut op, "shop", "1", "dst", options, background),
            "42501",
            "permission denied for table shop.order_line: migrate_tenant needs SELECT",
            "GRANT SELECT ON shop.order_line",
        );
        assert!(
            !err.message().contains("INSERT"),
            "only the missing privilege is named: {}",
            err.message()
        );
    }
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "dst after the refusals"
    );
    assert_eq!(job_count(&mut su), 0, "no job row is left by a refusal");

    // A dry run is not refused: it reports the problem as its outcome and creates nothing.
    let dry = migrate_tenant(
        &mut op,
        "shop",
        "1",
        "dst",
        r#"{"create_target": true, "dry_run": true}"#,
        false,
    );
    let (status, error) = status_error(&mut su, dry);
    assert_eq!(status, "failed", "dry run {dry}");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("shop.order_line") && error.contains("needs SELECT"),
        "dry run {dry}'s error names the table and the privilege: {error:?}"
    );
    assert_eq!(
        scalar(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant_ops.jobs, jsonb_array_elements(result->'errors') e
                  WHERE id = {dry} AND e->>'sqlstate' = '42501'"
            )
        ),
        1,
        "dry run {dry} reports one 42501"
    );
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "dst after the dry run"
    );

    // CREATE missing on the target schema, when create_target will create tables.
    exec(
        &mut su,
        "GRANT SELECT ON shop.order_line TO sub_op; REVOKE CREATE ON SCHEMA dst FROM sub_op",
    );
    assert_sqlstate_hint(
        try_migrate_tenant(&mut op, "shop", "1", "dst", create, true),
        "42501",
        "permission denied for schema dst: migrate_tenant needs CREATE",
        "GRANT CREATE ON SCHEMA dst",
    );
    // USAGE missing on the target schema.
    exec(&mut su, "REVOKE USAGE ON SCHEMA dst FROM sub_op");
    assert_sqlstate(
        try_migrate_tenant(&mut op, "shop", "1", "dst", create, true),
        "42501",
        "permission denied for schema dst: migrate_tenant needs USAGE, CREATE",
    );
    // USAGE missing on a source schema (reading the scope already needs it, and says so).
    exec(
        &mut su,
        "GRANT USAGE, CREATE ON SCHEMA dst TO sub_op; REVOKE USAGE ON SCHEMA shop FROM sub_op",
    );
    assert_sqlstate(
        try_migrate_tenant(&mut op, "shop", "1", "dst", create, true),
        "42501",
        "permission denied for schema shop",
    );
    exec(&mut su, "GRANT USAGE ON SCHEMA shop TO sub_op");

    // Existing targets on which the submitter has SELECT but not INSERT.
    exec(
        &mut su,
        "CREATE SCHEMA ro;
         CREATE TABLE ro.account (LIKE shop.account INCLUDING ALL);
         CREATE TABLE ro.orders (LIKE shop.orders INCLUDING ALL);
         CREATE TABLE ro.order_line (LIKE shop.order_line INCLUDING ALL);
         GRANT USAGE ON SCHEMA ro TO sub_op;
         GRANT SELECT ON ro.account, ro.orders, ro.order_line TO sub_op;
         GRANT INSERT ON ro.account, ro.order_line TO sub_op;",
    );
    assert_sqlstate_hint(
        try_migrate_tenant(&mut op, "shop", "1", "ro", "{}", true),
        "42501",
        "permission denied for table ro.orders: migrate_tenant needs INSERT",
        "GRANT INSERT ON ro.orders",
    );
    // on_conflict overwrite needs UPDATE as well.
    exec(&mut su, "GRANT INSERT ON ro.orders TO sub_op");
    assert_sqlstate(
        try_migrate_tenant(
            &mut op,
            "shop",
            "1",
            "ro",
            r#"{"on_conflict": "overwrite"}"#,
            true,
        ),
        "42501",
        "permission denied for table ro.account: migrate_tenant needs UPDATE",
    );
    // A move needs DELETE on every source table it deletes from.
    assert_sqlstate(
        try_migrate_tenant(
            &mut op,
            "shop",
            "1",
            "ro",
            r#"{"mode": "move", "defer": true}"#,
            false,
        ),
        "42501",
        "permission denied for table shop.account: migrate_tenant needs DELETE",
    );
    assert_eq!(job_count(&mut su), 1, "only the dry run's job row exists");

    // With every privilege granted the job is queued and succeeds.
    let job = migrate_tenant(&mut op, "shop", "1", "ro", "{}", true);
    assert_eq!(wait_for(&mut op, job, 60.0), "succeeded", "job {job}");
    assert_eq!(
        scalar(&mut su, "SELECT count(*) FROM ro.order_line"),
        3,
        "tenant 1's order lines in ro"
    );
}

/// A background job whose submitter loses SELECT on a source table between submission and
/// run fails in `prepare` with the table and privilege named, and leaves no target table
/// behind (the tables `create_target` made used to stay, empty, committed with the failure).
/// Granted again, `retry_job` creates them and succeeds.
pub fn submission_failed_prepare_leaves_no_table(cluster: &Cluster) {
    let db = "e2e_submit_prepare";
    let mut su = shop(cluster, db);
    exec(&mut su, "GRANT SELECT ON shop.order_line TO sub_op");
    let mut op = cluster.connect_as(db, "sub_op");
    // Queued in a transaction that commits only after the privilege is gone: the workers
    // cannot see the job before.
    let mut tx = op
        .transaction()
        .unwrap_or_else(|e| panic!("BEGIN: {}", describe_error(&e)));
    let job = migrate_tenant(
        &mut tx,
        "shop",
        "1",
        "dst",
        r#"{"create_target": true}"#,
        true,
    );
    exec(&mut su, "REVOKE SELECT ON shop.order_line FROM sub_op");
    tx.commit()
        .unwrap_or_else(|e| panic!("COMMIT: {}", describe_error(&e)));
    assert_eq!(wait_for(&mut op, job, 60.0), "failed", "job {job}");
    let (_, error) = status_error(&mut su, job);
    let error = error.unwrap_or_default();
    assert!(
        error.contains("permission denied for table shop.order_line: migrate_tenant needs SELECT"),
        "job {job}'s error names the table and the privilege: {error:?}"
    );
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "the failed job {job} left tables in dst"
    );
    assert_eq!(
        scalar(
            &mut su,
            &format!("SELECT count(*) FROM tenant_ops.job_tables WHERE job_id = {job}")
        ),
        0,
        "job {job} has no checkpoints: its prepare left nothing"
    );

    exec(&mut su, "GRANT SELECT ON shop.order_line TO sub_op");
    assert_eq!(control(&mut op, "retry_job", job), "queued");
    assert_eq!(
        wait_for(&mut op, job, 60.0),
        "succeeded",
        "job {job} after retry_job"
    );
    assert_eq!(
        tables_in(&mut su, "dst"),
        ["account", "order_line", "orders"],
        "dst after the retry"
    );
}

/// `rollback_migration` (and `cancel_job`) drop the targets the job created, once its rows
/// are gone; tables holding another job's rows stay (and say why), as do the tables a job
/// found existing.
pub fn submission_rollback_drops_created_targets(cluster: &Cluster) {
    let db = "e2e_submit_drop";
    let mut su = shop(cluster, db);
    let options = r#"{"create_target": true, "defer": true}"#;

    // One job alone: its rollback leaves dst as it was.
    let j1 = migrate_tenant(&mut su, "shop", "1", "dst", options, false);
    run_job(&mut su, j1);
    assert_eq!(
        tables_in(&mut su, "dst"),
        ["account", "order_line", "orders"]
    );
    let result = try_rollback(&mut su, j1)
        .unwrap_or_else(|e| panic!("rollback_migration({j1}): {}", describe_error(&e)));
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "dst after rolling back job {j1}: {result}"
    );
    assert_eq!(
        scalar(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant_ops.jobs, jsonb_array_elements(result->'created_targets') t
                  WHERE id = {j1} AND (t->>'dropped')::bool"
            )
        ),
        3,
        "job {j1}'s result lists its three dropped targets: {result}"
    );

    // A deferred job cancelled before it ran created nothing.
    let j2 = migrate_tenant(&mut su, "shop", "1", "dst", options, false);
    assert_eq!(control(&mut su, "cancel_job", j2), "cancelled");
    assert_eq!(tables_in(&mut su, "dst"), Vec::<String>::new());
    // A background job cancelled while it copies (slowly: a row a step, two a second)
    // drops the tables its prepare created and committed.
    let j5 = migrate_tenant(
        &mut su,
        "shop",
        "1",
        "dst",
        r#"{"create_target": true, "batch_size": 1, "max_rows_per_second": 2}"#,
        true,
    );
    until(&format!("job {j5} copies"), Duration::from_secs(30), || {
        let stage: String = su
            .query_one("SELECT stage FROM tenant_ops.jobs WHERE id = $1", &[&j5])
            .map(|r| r.get(0))
            .unwrap_or_default();
        (stage == "copy").then_some(())
    });
    assert_eq!(
        tables_in(&mut su, "dst"),
        ["account", "order_line", "orders"]
    );
    assert_eq!(control(&mut su, "cancel_job", j5), "cancelling");
    assert_eq!(wait_for(&mut su, j5, 60.0), "cancelled", "job {j5}");
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "dst after cancelling job {j5} while it copied"
    );

    // Two jobs into one target: the first created the tables, the second wrote into them.
    let j3 = migrate_tenant(&mut su, "shop", "1", "dst", options, false);
    run_job(&mut su, j3);
    let j4 = migrate_tenant(&mut su, "shop", "2", "dst", r#"{"defer": true}"#, false);
    run_job(&mut su, j4);
    let result = try_rollback(&mut su, j3)
        .unwrap_or_else(|e| panic!("rollback_migration({j3}): {}", describe_error(&e)));
    assert_eq!(
        tables_in(&mut su, "dst"),
        ["account", "order_line", "orders"],
        "tables holding job {j4}'s rows stay after rolling back job {j3}: {result}"
    );
    assert!(
        result.contains(&format!("job {j4} migrates into it")),
        "the rollback says why each table stayed: {result}"
    );
    assert_eq!(
        scalar(&mut su, "SELECT count(*) FROM dst.order_line"),
        1,
        "tenant 2's order line stays"
    );
    // The second job found the tables existing: its rollback leaves them.
    try_rollback(&mut su, j4)
        .unwrap_or_else(|e| panic!("rollback_migration({j4}): {}", describe_error(&e)));
    assert_eq!(
        tables_in(&mut su, "dst"),
        ["account", "order_line", "orders"]
    );
    assert_eq!(scalar(&mut su, "SELECT count(*) FROM dst.account"), 0);
}

/// Five background migrations with `create_target` into one schema at once: every one
/// succeeds (four used to fail with 23505 on pg_type_typname_nsp_index, two jobs creating
/// one table), the tables exist once, each tenant's rows are all there.
pub fn submission_concurrent_create_target_one_schema(cluster: &Cluster) {
    let db = "e2e_submit_concurrent";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(
        &mut su,
        "CREATE SCHEMA src;
         CREATE TABLE src.office (office_id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE src.patient (patient_id int PRIMARY KEY, office_id int NOT NULL REFERENCES src.office, name text);
         CREATE TABLE src.visit (visit_id int PRIMARY KEY, patient_id int NOT NULL REFERENCES src.patient, note text);
         INSERT INTO src.office SELECT o, 'office ' || o FROM generate_series(1, 5) o;
         INSERT INTO src.patient SELECT p, 1 + p % 5, 'p' || p FROM generate_series(1, 20000) p;
         INSERT INTO src.visit SELECT v, 1 + v % 20000, 'v' || v FROM generate_series(1, 40000) v;
         CREATE SCHEMA app;
         SELECT tenant_ops.create_scope('offices', 'src.office', 'office_id');",
    );
    // Room for all five at once (the default is two), restored whatever happens.
    struct Restore<'a>(&'a Cluster, &'a str);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let mut c = self.0.connect(self.1);
            // One statement each: ALTER SYSTEM cannot run in a transaction block.
            let _ = c.batch_execute("ALTER SYSTEM RESET tenant_ops.max_concurrent_migrations");
            let _ = c.batch_execute("SELECT pg_reload_conf()");
        }
    }
    let _restore = Restore(cluster, db);
    exec(
        &mut su,
        "ALTER SYSTEM SET tenant_ops.max_concurrent_migrations = 5",
    );
    exec(&mut su, "SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    // Queued in one transaction, so that the scheduler sees all five at once.
    let mut tx = su
        .transaction()
        .unwrap_or_else(|e| panic!("BEGIN: {}", describe_error(&e)));
    let jobs: Vec<i64> = (1..=5)
        .map(|o| {
            migrate_tenant(
                &mut tx,
                "offices",
                &o.to_string(),
                "app",
                r#"{"create_target": true, "batch_size": 5000}"#,
                true,
            )
        })
        .collect();
    tx.commit()
        .unwrap_or_else(|e| panic!("COMMIT: {}", describe_error(&e)));
    let mut outcomes = vec![];
    for job in &jobs {
        let status = wait_for(&mut su, *job, 180.0);
        let (_, error) = status_error(&mut su, *job);
        outcomes.push((*job, status, error));
    }
    assert!(
        outcomes.iter().all(|(_, s, _)| s == "succeeded"),
        "every job succeeds: {outcomes:?}"
    );
    assert_eq!(tables_in(&mut su, "app"), ["office", "patient", "visit"]);
    assert_eq!(
        (
            scalar(&mut su, "SELECT count(*) FROM app.office"),
            scalar(&mut su, "SELECT count(*) FROM app.patient"),
            scalar(&mut su, "SELECT count(*) FROM app.visit"),
            scalar(
                &mut su,
                "SELECT count(*) FROM (SELECT * FROM app.visit EXCEPT SELECT * FROM src.visit) x"
            ),
        ),
        (5, 20000, 40000, 0),
        "every office's rows in app, each once and as in the source"
    );
    // Exactly one job created each table; the others found it.
    assert_eq!(
        scalar(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant_ops.job_tables
                  WHERE job_id IN ({}) AND (details->>'created_target')::bool",
                jobs.iter()
                    .map(|j| j.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        ),
        3,
        "created_target is recorded once per table"
    );
}

/// Two scopes over one root table name the same rows: while tenant 1 is being migrated
/// through one, a migration of tenant 1 through the other is refused (55P03, naming the job
/// and its scope), into any target; another tenant is not.
pub fn submission_second_scope_same_root_is_busy(cluster: &Cluster) {
    let db = "e2e_submit_busy";
    let mut su = shop(cluster, db);
    exec(
        &mut su,
        "CREATE SCHEMA dst2;
         SELECT tenant_ops.create_scope('shop too', 'shop.account', 'account_id');",
    );
    let create = r#"{"create_target": true, "defer": true}"#;
    let job = migrate_tenant(&mut su, "shop", "1", "dst", create, false);
    for target in ["dst", "dst2"] {
        assert_sqlstate_hint(
            try_migrate_tenant(&mut su, "shop too", "1", target, create, false),
            "55P03",
            &format!("tenant \"1\" of scope \"shop\" is already being migrated by job {job}"),
            &format!("CALL tenant_ops.run_job({job})"),
        );
    }
    // Inline too, and the same scope as before.
    assert_sqlstate(
        try_migrate_tenant(
            &mut su,
            "shop too",
            "1",
            "dst2",
            r#"{"create_target": true}"#,
            false,
        ),
        "55P03",
        &format!("already being migrated by job {job}"),
    );
    // Another tenant of the same root is free.
    let other = migrate_tenant(&mut su, "shop too", "2", "dst2", create, false);
    run_job(&mut su, other);
    // An uncommitted submission through one scope holds the tenant against the other.
    let mut a = cluster.connect(db);
    let mut tx = a
        .transaction()
        .unwrap_or_else(|e| panic!("BEGIN: {}", describe_error(&e)));
    let _ = migrate_tenant(&mut tx, "shop too", "2", "dst", create, false);
    assert_sqlstate(
        try_migrate_tenant(&mut su, "shop", "2", "dst2", create, false),
        "55P03",
        "already being migrated by an uncommitted job of the session with pid",
    );
    tx.rollback().unwrap();
    // Once the first job ends, the tenant is free through either scope.
    run_job(&mut su, job);
    let again = migrate_tenant(&mut su, "shop too", "1", "dst2", create, false);
    run_job(&mut su, again);
    assert_eq!(scalar(&mut su, "SELECT count(*) FROM dst2.order_line"), 4);
}

/// Two source tables that would go to one target table: the same name in two schemas, or
/// a name `strip_prefix` makes equal to another. Refused before anything is created (42P07
/// naming both sources and the target, with a HINT), dry runs included; the `tables` map the
/// HINT suggests resolves it.
pub fn submission_two_sources_one_target(cluster: &Cluster) {
    let db = "e2e_submit_collide";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(
        &mut su,
        r#"CREATE SCHEMA shop; CREATE SCHEMA "Bé $1";
         CREATE TABLE shop.account (account_id int PRIMARY KEY);
         CREATE TABLE shop.items (item_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account);
         CREATE TABLE "Bé $1".items (item_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account);
         CREATE TABLE shop.x_notes (note_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account);
         CREATE TABLE shop.notes (note_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account);
         INSERT INTO shop.account VALUES (1);
         INSERT INTO shop.items VALUES (1, 1);
         INSERT INTO "Bé $1".items VALUES (2, 1);
         INSERT INTO shop.x_notes VALUES (1, 1);
         INSERT INTO shop.notes VALUES (2, 1);
         CREATE SCHEMA dst;
         SELECT tenant_ops.create_scope('shop', 'shop.account', 'account_id');"#,
    );
    let items = [r#""Bé $1".items"#, "shop.items"];
    for options in [
        r#"{"create_target": true}"#,
        r#"{"create_target": true, "defer": true}"#,
        r#"{"create_target": true, "tables": {"shop.x_notes": "x_notes"}}"#,
    ] {
        let err = assert_sqlstate_hint(
            try_migrate_tenant(&mut su, "shop", "1", "dst", options, false),
            "42P07",
            "would both be migrated into target table dst.items",
            "\"tables\" option",
        );
        assert!(
            items.iter().all(|t| err.message().contains(t)),
            "the message names both sources ({items:?}): {}",
            err.message()
        );
    }
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "dst after the refusals"
    );
    // strip_prefix makes x_notes and notes one name.
    assert_sqlstate(
        try_migrate_tenant(
            &mut su,
            "shop",
            "1",
            "dst",
            r#"{"create_target": true, "strip_prefix": "x_", "tables": {"Bé $1.items": "items_b"}}"#,
            false,
        ),
        "42P07",
        "would both be migrated into target table dst.notes",
    );
    // Existing targets: no create_target, the rows would be mixed in dst.items.
    exec(
        &mut su,
        "CREATE TABLE dst.account (LIKE shop.account INCLUDING ALL);
         CREATE TABLE dst.items (LIKE shop.items INCLUDING ALL);
         CREATE TABLE dst.x_notes (LIKE shop.x_notes INCLUDING ALL);
         CREATE TABLE dst.notes (LIKE shop.notes INCLUDING ALL);",
    );
    assert_sqlstate(
        try_migrate_tenant(&mut su, "shop", "1", "dst", "{}", false),
        "42P07",
        "would both be migrated into target table dst.items",
    );
    // A dry run reports it as its outcome.
    let dry = migrate_tenant(&mut su, "shop", "1", "dst", r#"{"dry_run": true}"#, false);
    assert_eq!(
        scalar(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant_ops.jobs, jsonb_array_elements(result->'errors') e
                  WHERE id = {dry} AND status = 'failed' AND e->>'sqlstate' = '42P07'
                    AND e->>'message' LIKE '%would both be migrated into target table dst.items%'"
            )
        ),
        1,
        "dry run {dry} reports the collision"
    );
    assert_eq!(scalar(&mut su, "SELECT count(*) FROM dst.items"), 0);
    // Mapped apart as the HINT says, the migration succeeds.
    exec(
        &mut su,
        "DROP TABLE dst.items, dst.account, dst.x_notes, dst.notes",
    );
    let job = migrate_tenant(
        &mut su,
        "shop",
        "1",
        "dst",
        r#"{"create_target": true, "tables": {"\"Bé $1\".items": "Bé $1_items"}}"#,
        false,
    );
    assert_eq!(
        (
            scalar(&mut su, "SELECT count(*) FROM dst.items WHERE item_id = 1"),
            scalar(
                &mut su,
                r#"SELECT count(*) FROM dst."Bé $1_items" WHERE item_id = 2"#
            ),
        ),
        (1, 1),
        "job {job}: each source in its own target"
    );
}
