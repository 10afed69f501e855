//! `create_target` builds keys, indexes and foreign keys after the load (issue 11, speed):
//!
//! - the target has exactly the source's constraints and indexes (catalog definitions
//!   compared, hostile names included), every row as in the source, and they were built after
//!   the last row was copied;
//! - rows that break a key built after the load fail the job with the server's SQLSTATE,
//!   naming the table and the constraint; inline nothing is left, a committing job keeps its
//!   rows until cancelled, and its half-built tables are refused to other migrations;
//! - a second migration into the schema waits for the job building it (or gives up with
//!   55006 past `lock_timeout`);
//! - a background job killed with `kill -9` in the middle of an index build resumes there.

use std::thread;
use std::time::Duration;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, Cluster, Interruption};

use crate::common::*;

/// Two clubs with members (a self-reference, a unique key over two columns, NULLS NOT
/// DISTINCT and deferrable) and visits (a composite key, a NOT VALID foreign key, a BRIN
/// index), names with quotes, dots, `$1`, spaces and upper case.
const CLUBS: &str = r#"
CREATE SCHEMA src;
CREATE TABLE src.club (id int PRIMARY KEY, name text NOT NULL, code text,
                       CONSTRAINT club_code_key UNIQUE (code));
CREATE TABLE src."Mem.ber $1" (
    id int PRIMARY KEY,
    club_id int NOT NULL REFERENCES src.club ON DELETE CASCADE,
    mentor_id int,
    email text NOT NULL,
    nick text,
    joined date,
    CONSTRAINT "mem""email" UNIQUE NULLS NOT DISTINCT (club_id, email) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT "Mentor fk" FOREIGN KEY (mentor_id) REFERENCES src."Mem.ber $1" (id) ON DELETE SET NULL DEFERRABLE);
CREATE INDEX "member.lower_nick" ON src."Mem.ber $1" (lower(nick)) WHERE nick IS NOT NULL;
CREATE INDEX ON src."Mem.ber $1" (club_id, joined DESC NULLS LAST) INCLUDE (nick);
CREATE UNIQUE INDEX "Mem.ber $1_nick_uq" ON src."Mem.ber $1" (club_id, nick);
CREATE TABLE src.visit (member_id int NOT NULL, n int NOT NULL, at timestamptz, PRIMARY KEY (member_id, n));
CREATE INDEX visit_at ON src.visit USING brin (at);
INSERT INTO src.club VALUES (1, 'one', 'A'), (2, 'two', 'B');
INSERT INTO src."Mem.ber $1"
SELECT m, 1 + m % 2, CASE WHEN m > 2 THEN m - 2 END, 'm' || m || '@x', CASE WHEN m % 3 > 0 THEN 'n' || m END,
       DATE '2020-01-01' + m
  FROM generate_series(1, 40) m;
INSERT INTO src.visit SELECT 1 + v % 40, v, TIMESTAMPTZ '2024-01-01' + v * INTERVAL '1 hour'
  FROM generate_series(1, 200) v;
ALTER TABLE src.visit ADD CONSTRAINT visit_member_fk FOREIGN KEY (member_id) REFERENCES src."Mem.ber $1" NOT VALID;
SELECT tenant_ops.create_scope('clubs', 'src.club', 'id');
"#;

/// Every key, unique, exclusion and foreign-key constraint and every index of the tables in
/// `schema`, as the catalog defines them, with `schema` on the search_path (so that the
/// definitions of two schemas holding the same tables read the same; pg_get_indexdef names the
/// table qualified whatever the path, so the schema is taken out): `(table, name, kind,
/// definition)`. `NOT VALID` is left out of the definition and reported in `kind`.
fn definitions(c: &mut Client, schema: &str) -> Vec<(String, String, String, String)> {
    exec(c, &format!("SET search_path = {}", pg_ident(schema)));
    let rows = c
        .query(
            "SELECT t.relname::text, k.conname::text,
                    k.contype::text || CASE WHEN k.convalidated THEN '' ELSE ' not valid' END,
                    replace(pg_catalog.pg_get_constraintdef(k.oid), ' NOT VALID', '')
               FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
              WHERE t.relnamespace = $1::text::regnamespace AND k.contype IN ('p', 'u', 'x', 'f')
             UNION ALL
             SELECT t.relname::text, c.relname::text, 'index',
                    replace(pg_catalog.pg_get_indexdef(i.indexrelid), ' ON ' || quote_ident($2) || '.', ' ON ')
               FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
               JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
              WHERE t.relnamespace = $1::text::regnamespace
              ORDER BY 1, 2, 3",
            &[&pg_ident(schema), &schema],
        )
        .unwrap_or_else(|e| panic!("reading the definitions in {schema}: {}", describe_error(&e)));
    exec(c, "RESET search_path");
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The NOT NULL columns of the tables in `schema`: `(table, column)`.
fn not_null_columns(c: &mut Client, schema: &str) -> Vec<(String, String)> {
    c.query(
        "SELECT t.relname::text, a.attname::text FROM pg_catalog.pg_attribute a
           JOIN pg_catalog.pg_class t ON t.oid = a.attrelid
          WHERE t.relnamespace = $1::text::regnamespace AND t.relkind = 'r' AND a.attnum > 0
            AND NOT a.attisdropped AND a.attnotnull ORDER BY 1, 2",
        &[&pg_ident(schema)],
    )
    .unwrap_or_else(|e| panic!("reading columns of {schema}: {}", describe_error(&e)))
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// md5 over a query's rows in order, as text.
fn checksum(c: &mut Client, query: &str) -> String {
    c.query_one(
        &format!(
            "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM ({query}) x"
        ),
        &[],
    )
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("{query}: {}", describe_error(&e)))
}

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

/// `(steps, constraints built, whether every constraint came after the last copy step)` of a
/// job, from its log.
fn build_log(c: &mut Client, job: i64) -> (i64, i64, bool) {
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE event = 'step'),
                    count(*) FILTER (WHERE event = 'constraint.built'),
                    coalesce(max(id) FILTER (WHERE event = 'step') < min(id) FILTER (WHERE event = 'constraint.built'), false)
               FROM tenant_ops.job_log WHERE job_id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("reading job_log of {job}: {}", describe_error(&e)));
    (r.get(0), r.get(1), r.get(2))
}

// ----- tests ------------------------------------------------------------------------------------

/// Club 1 with `create_target`, kept keys (inline) and fresh uuids (CALL run_job): the target
/// has exactly the source's keys, unique constraints, indexes and foreign keys (the NOT VALID
/// one validated), built one per step after the last row was copied; with kept keys every row
/// is as in the source.
pub fn post_load_constraints_match_source(cluster: &Cluster) {
    let db = "e2e_post_load_match";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(&mut su, CLUBS);
    exec(&mut su, "CREATE SCHEMA \"Dst.$1 x\"; CREATE SCHEMA dst_u");
    let source = definitions(&mut su, "src");
    assert_eq!(
        source.len(),
        17,
        "the source declares 8 constraints and 9 indexes (5 of them the constraints'): {source:#?}"
    );

    let job = migrate_tenant(
        &mut su,
        "clubs",
        "1",
        "Dst.$1 x",
        r#"{"create_target": true, "id_strategy": "keep"}"#,
        false,
    );
    let mut target = definitions(&mut su, "Dst.$1 x");
    let mut expected = source.clone();
    for d in expected.iter_mut() {
        d.2 = d.2.replace(" not valid", "");
    }
    assert_eq!(
        target, expected,
        "the target's keys, constraints and indexes are the source's (the NOT VALID FK validated)"
    );
    assert_eq!(
        not_null_columns(&mut su, "Dst.$1 x"),
        not_null_columns(&mut su, "src"),
        "the same NOT NULL columns"
    );
    assert_eq!(
        build_log(&mut su, job),
        (3, 12, true),
        "job {job}: 3 copy steps, then 12 constraint steps after them"
    );
    for (source_query, target_query) in [
        (
            "SELECT * FROM src.club WHERE id = 1",
            "SELECT * FROM \"Dst.$1 x\".club",
        ),
        (
            "SELECT * FROM src.\"Mem.ber $1\" WHERE club_id = 1",
            "SELECT * FROM \"Dst.$1 x\".\"Mem.ber $1\"",
        ),
        (
            "SELECT v.* FROM src.visit v JOIN src.\"Mem.ber $1\" m ON m.id = v.member_id WHERE m.club_id = 1",
            "SELECT * FROM \"Dst.$1 x\".visit",
        ),
    ] {
        assert_eq!(
            checksum(&mut su, target_query),
            checksum(&mut su, source_query),
            "{target_query} holds exactly the rows of {source_query}"
        );
    }
    assert_eq!(
        scalar(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant_ops.job_tables WHERE job_id = {job}
                  AND details->>'constraints' = 'built' AND (details->>'created_target')::bool"
            )
        ),
        3,
        "every created table is marked built"
    );

    // Fresh uuids, committing a step at a time: the same definitions (the types differ, the
    // constraints do not), verified.
    let job = migrate_tenant(
        &mut su,
        "clubs",
        "1",
        "dst_u",
        r#"{"create_target": true, "id_strategy": "uuid", "defer": true, "batch_size": 7}"#,
        false,
    );
    run_job(&mut su, job);
    target = definitions(&mut su, "dst_u");
    assert_eq!(target, expected, "uuid keys: the same definitions");
    assert_eq!(
        scalar(
            &mut su,
            &format!("SELECT count(*) FROM tenant_ops.job_report({job}) WHERE verified IS TRUE")
        ),
        3,
        "job {job}: every table verified"
    );
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM dst_u.visit v JOIN dst_u.\"Mem.ber $1\" m ON m.id = v.member_id
               JOIN dst_u.club c ON c.id = m.club_id"
        ),
        scalar(
            &mut su,
            "SELECT count(*) FROM src.visit v JOIN src.\"Mem.ber $1\" m ON m.id = v.member_id WHERE m.club_id = 1"
        ),
        "every visit's member and club resolve in the target"
    );

    // Club 2 into the built tables: an ordinary migration into existing targets (their keys
    // decide conflicts), which builds nothing.
    let job2 = migrate_tenant(
        &mut su,
        "clubs",
        "2",
        "Dst.$1 x",
        r#"{"id_strategy": "keep"}"#,
        false,
    );
    assert_eq!(build_log(&mut su, job2).1, 0, "job {job2} builds nothing");
    assert_eq!(
        definitions(&mut su, "Dst.$1 x"),
        expected,
        "the definitions are unchanged by a second tenant"
    );
    assert_eq!(
        scalar(&mut su, "SELECT count(*) FROM \"Dst.$1 x\".\"Mem.ber $1\""),
        40,
        "both clubs' members"
    );
    // The same club again is a conflict the target's keys see.
    assert_sqlstate(
        try_migrate_tenant(
            &mut su,
            "clubs",
            "2",
            "Dst.$1 x",
            r#"{"id_strategy": "keep"}"#,
            false,
        ),
        "23505",
        "already exist",
    );
    // Each database with the extension has a scheduler: give its worker slot back.
    drop(su);
    cluster.drop_database(db);
}

/// A constant written into a unique column: the unique key built after the load fails with
/// 23505 naming the table and the constraint, DETAIL the duplicated key. Inline nothing is
/// left; committing, the job fails at that step with its rows kept, other migrations into the
/// schema are refused (55006) until it is cancelled, which drops its tables.
pub fn post_load_duplicate_key_fails(cluster: &Cluster) {
    let db = "e2e_post_load_dup";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(
        &mut su,
        "CREATE SCHEMA src;
         CREATE TABLE src.club (id int PRIMARY KEY, name text);
         CREATE TABLE src.member (id int PRIMARY KEY, club_id int NOT NULL REFERENCES src.club,
                                  code text CONSTRAINT member_code_key UNIQUE);
         INSERT INTO src.club VALUES (1, 'one'), (2, 'two');
         INSERT INTO src.member SELECT m, 1 + m % 2, 'c' || m FROM generate_series(1, 10) m;
         SELECT tenant_ops.create_scope('clubs', 'src.club', 'id');
         CREATE SCHEMA dst;",
    );
    let same = r#""columns": {"member": {"code": {"value": "same"}}}"#;
    let inline = format!(r#"{{"create_target": true, {same}}}"#);
    let e = assert_sqlstate(
        try_migrate_tenant(&mut su, "clubs", "1", "dst", &inline, false),
        "23505",
        "adding constraint member_code_key (UNIQUE (code)) to dst.member after the load failed: could not create unique index \"member_code_key\"",
    );
    assert_eq!(
        e.detail(),
        Some("Key (code)=(same) is duplicated."),
        "the DETAIL names the key"
    );
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "inline, nothing is left"
    );
    assert_eq!(
        scalar(&mut su, "SELECT count(*) FROM tenant_ops.jobs"),
        0,
        "inline, not even the job"
    );

    // Committing: the job fails at the constraint, its rows stay until it is cancelled.
    let committing = format!(r#"{{"create_target": true, "defer": true, {same}}}"#);
    let job = migrate_tenant(&mut su, "clubs", "1", "dst", &committing, false);
    assert_sqlstate(try_run_job(&mut su, job), "23505", "member_code_key");
    let (status, stage, error): (String, String, Option<String>) = su
        .query_one(
            "SELECT status, stage, error FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap_or_else(|e| panic!("reading job {job}: {}", describe_error(&e)));
    assert_eq!(
        (status.as_str(), stage.as_str()),
        ("failed", "constraints"),
        "job {job}: {error:?}"
    );
    assert!(
        error.as_deref().unwrap_or("").contains("dst.member"),
        "job {job}'s error names the table: {error:?}"
    );
    assert_eq!(tables_in(&mut su, "dst"), ["club", "member"]);
    assert_eq!(scalar(&mut su, "SELECT count(*) FROM dst.member"), 5);
    // The half-built tables are nobody else's to use.
    let e = assert_sqlstate(
        try_migrate_tenant(&mut su, "clubs", "2", "dst", "{}", false),
        "55006",
        &format!("is being built by job {job}"),
    );
    assert!(
        e.hint()
            .unwrap_or("")
            .contains(&format!("cancel_job({job})")),
        "the HINT says how to free it: {:?}",
        e.hint()
    );
    assert_eq!(
        e.detail(),
        Some(format!("Job {job} is failed and nobody runs it now.").as_str())
    );
    assert_eq!(control(&mut su, "cancel_job", job), "cancelled");
    assert_eq!(
        tables_in(&mut su, "dst"),
        Vec::<String>::new(),
        "cancelling job {job} dropped the tables it created"
    );
    // Without the constant, the same migration succeeds.
    let job = migrate_tenant(
        &mut su,
        "clubs",
        "1",
        "dst",
        r#"{"create_target": true}"#,
        false,
    );
    assert_eq!(
        scalar(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant_ops.jobs WHERE id = {job} AND status = 'succeeded'"
            )
        ),
        1
    );
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'dst.member'::regclass"
        ),
        3,
        "dst.member has its primary key, unique key and foreign key"
    );
    // Each database with the extension has a scheduler: give its worker slot back.
    drop(su);
    cluster.drop_database(db);
}

/// While a background job loads the tables it created (slowly), a second migration into the
/// same schema does not use them: with `lock_timeout` it gives up (55006); without, it waits
/// (pg_sleep, nothing held) and runs once the first job has built its keys, into ordinary
/// tables.
pub fn post_load_second_job_waits(cluster: &Cluster) {
    let db = "e2e_post_load_wait";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(
        &mut su,
        "CREATE SCHEMA src;
         CREATE TABLE src.club (id int PRIMARY KEY, name text);
         CREATE TABLE src.member (id int PRIMARY KEY, club_id int NOT NULL REFERENCES src.club,
                                  code text UNIQUE);
         INSERT INTO src.club VALUES (1, 'one'), (2, 'two'), (3, 'three');
         INSERT INTO src.member SELECT m, 1 + m % 3, 'c' || m FROM generate_series(1, 30) m;
         SELECT tenant_ops.create_scope('clubs', 'src.club', 'id');
         CREATE SCHEMA app;",
    );
    // Two rows a second, one a step: 11 rows, about five seconds of copying.
    let job = migrate_tenant(
        &mut su,
        "clubs",
        "1",
        "app",
        r#"{"create_target": true, "batch_size": 1, "max_rows_per_second": 2}"#,
        true,
    );
    until(
        &format!("job {job} copies into the tables it created"),
        Duration::from_secs(30),
        || {
            let stage: String = su
                .query_one("SELECT stage FROM tenant_ops.jobs WHERE id = $1", &[&job])
                .map(|r| r.get(0))
                .unwrap_or_default();
            (stage == "copy").then_some(())
        },
    );
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'app'"
        ),
        0,
        "while job {job} copies, its tables have no index yet"
    );
    let mut impatient = cluster.connect(db);
    exec(&mut impatient, "SET lock_timeout = '300ms'");
    assert_sqlstate(
        try_migrate_tenant(&mut impatient, "clubs", "3", "app", "{}", false),
        "55006",
        &format!("target table app.club is being built by job {job}"),
    );

    let waiter_db = db.to_string();
    let mut waiter = cluster.connect(&waiter_db);
    let waiter_pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("pid: {}", describe_error(&e)));
    let second = thread::spawn(move || {
        let r = try_migrate_tenant(&mut waiter, "clubs", "2", "app", "{}", false);
        r.map_err(|e| describe_error(&e))
    });
    until(
        "the second migration waits in pg_sleep",
        Duration::from_secs(20),
        || {
            let ev: Option<String> = su
                .query_one(
                    "SELECT wait_event::text FROM pg_stat_activity WHERE pid = $1",
                    &[&waiter_pid],
                )
                .map(|r| r.get(0))
                .unwrap_or(None);
            (ev.as_deref() == Some("PgSleep")).then_some(())
        },
    );
    assert_eq!(wait_for(&mut su, job, 60.0), "succeeded", "job {job}");
    let job2 = second
        .join()
        .expect("the second migration's thread")
        .unwrap_or_else(|e| panic!("the second migration failed: {e}"));
    assert_eq!(
        scalar(
            &mut su,
            &format!(
                "SELECT count(*) FROM tenant_ops.job_log WHERE job_id = {job2} AND event = 'target.wait'"
            )
        ),
        1,
        "job {job2} logged its wait once"
    );
    assert_eq!(
        (
            scalar(&mut su, "SELECT count(*) FROM app.member"),
            scalar(
                &mut su,
                "SELECT count(*) FROM pg_indexes WHERE schemaname = 'app'"
            ),
            scalar(
                &mut su,
                "SELECT count(*) FROM pg_constraint WHERE connamespace = 'app'::regnamespace"
            ),
        ),
        (20, 3, 4),
        "both clubs' members; 3 indexes (two keys and a unique), 4 constraints, each once"
    );
    // Each database with the extension has a scheduler: give its worker slot back.
    drop(su);
    cluster.drop_database(db);
}

/// A background job killed with `kill -9` while it builds an index (slow: its expression
/// sleeps 20 ms a row) resumes after the restart at that index: every key, index and foreign
/// key is built exactly once, and the target is complete and verified.
pub fn post_load_resumes_after_kill9(cluster: &Cluster) {
    let db = "e2e_post_load_kill9";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(
        &mut su,
        "CREATE SCHEMA src;
         CREATE FUNCTION src.slow(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql
             AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN x; END $$;
         CREATE TABLE src.club (id int PRIMARY KEY, name text);
         CREATE TABLE src.member (id int PRIMARY KEY, club_id int NOT NULL REFERENCES src.club, code text);
         INSERT INTO src.club VALUES (1, 'one'), (2, 'two');
         INSERT INTO src.member SELECT m, 1 + m % 2, 'c' || m FROM generate_series(1, 300) m;
         CREATE INDEX member_slow ON src.member (src.slow(id));
         SELECT tenant_ops.create_scope('clubs', 'src.club', 'id');
         CREATE SCHEMA app;",
    );
    let job = migrate_tenant(
        &mut su,
        "clubs",
        "1",
        "app",
        r#"{"create_target": true, "id_strategy": "keep", "batch_size": 50}"#,
        true,
    );
    // member's keys: its primary key, then the slow index (150 rows, 3 s).
    let worker = until(
        &format!("job {job} builds member_slow"),
        Duration::from_secs(60),
        || {
            let r = su
                .query_one(
                    "SELECT j.status, j.stage, j.worker_pid, (t.details->>'keys_built')::int
                       FROM tenant_ops.jobs j JOIN tenant_ops.job_tables t ON t.job_id = j.id
                      WHERE j.id = $1 AND t.target = 'app.member'",
                    &[&job],
                )
                .ok()?;
            let (status, stage, pid, built): (String, String, Option<i32>, Option<i32>) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            assert_ne!(
                status, "succeeded",
                "job {job} ended before it could be killed"
            );
            (stage == "constraints" && built == Some(1))
                .then_some(pid)
                .flatten()
        },
    );
    thread::sleep(Duration::from_millis(300));
    drop(su);
    cluster.interrupt(Interruption::Kill9, worker);

    let mut su = cluster.connect(db);
    assert_eq!(
        wait_for(&mut su, job, 120.0),
        "succeeded",
        "job {job} after kill -9"
    );
    let (steps, built, after) = build_log(&mut su, job);
    assert_eq!(
        (built, after),
        (4, true),
        "job {job}: 4 built once each (club's and member's primary keys, member_slow, the foreign key), after the {steps} copy steps"
    );
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'app' AND indexname LIKE 'member_slow%'"
        ),
        1,
        "the index killed half-way exists once"
    );
    assert_eq!(
        scalar(
            &mut su,
            &format!("SELECT count(*) FROM tenant_ops.job_report({job}) WHERE verified IS TRUE")
        ),
        2,
        "both tables verified"
    );
    assert_eq!(
        checksum(&mut su, "SELECT * FROM app.member"),
        checksum(&mut su, "SELECT * FROM src.member WHERE club_id = 1"),
        "app.member holds exactly club 1's members"
    );
    // Each database with the extension has a scheduler: give its worker slot back.
    drop(su);
    cluster.drop_database(db);
}
