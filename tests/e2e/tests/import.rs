//! import_data on real files: pagila's tables written by COPY (CSV, gzip-compressed CSV and
//! NDJSON) and read back into empty copies give the same rows by checksum; a background import
//! whose worker is killed with `kill -9` resumes from its checkpoint with no row lost or
//! written twice; refused rows keep their exact line numbers.

use std::time::Duration;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, Cluster, Interruption};

use crate::common::{create_extension, exec, fresh_db, scalar, until, wait_for};

/// The import directory of the session's database server (the default: inside PGDATA).
fn import_dir(c: &mut Client) -> String {
    let data: String = c
        .query_one("SELECT current_setting('data_directory')", &[])
        .unwrap()
        .get(0);
    format!("{data}/pg_tenant_ops_imports")
}

/// `import_data` that must succeed; its job's result.
#[track_caller]
fn import(
    c: &mut Client,
    target: &str,
    file: &str,
    format: &str,
    options: &str,
) -> serde_json::Value {
    let job: i64 = match c.query_one(
        "SELECT tenant_ops.import_data($1::text::regclass, $2, $3, $4::text::jsonb)",
        &[&target, &file, &format, &options],
    ) {
        Ok(r) => r.get(0),
        Err(e) => panic!(
            "import_data({target}, {file}, {format}, {options}): {}",
            describe_error(&e)
        ),
    };
    let r: String = c
        .query_one(
            "SELECT result::text FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap()
        .get(0);
    serde_json::from_str(&r).unwrap()
}

/// md5 of a table's rows in key order.
/// The refused rows (line, SQLSTATE) in line order: of job `job`, or of every job.
fn refused_lines(c: &mut Client, job: Option<i64>) -> Vec<(String, String)> {
    c.query(
        "SELECT source_key, sqlstate FROM tenant_ops.job_errors
          WHERE job_id = $1 OR $1 IS NULL ORDER BY source_key::int",
        &[&job],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn checksum(c: &mut Client, table: &str, key: &str) -> (i64, String) {
    let r = c
        .query_one(
            &format!("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY {key}), '')) FROM {table} t"),
            &[],
        )
        .unwrap_or_else(|e| panic!("checksum of {table}: {}", describe_error(&e)));
    (r.get(0), r.get(1))
}

/// Pagila's tables (those whose columns hold no generated or tsvector values) exported with
/// COPY as CSV (NULL as `\N`, so empty strings stay empty), gzip-compressed CSV and NDJSON
/// (`row_to_json`, one per line), each imported into an empty copy of the table: the same
/// rows, by checksum.
pub fn import_pagila_round_trip(cluster: &Cluster) {
    let db = "e2e_import_pagila";
    cluster.load_pagila(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    // The directory exists once an import has looked for a file in it.
    let missing = c.query_one(
        "SELECT tenant_ops.import_data('public.actor', 'none.csv')",
        &[],
    );
    assert_sqlstate(missing, "58P01", "is not in the import directory");
    let dir = import_dir(&mut c);
    exec(&mut c, "CREATE SCHEMA copy");
    let tables = [
        ("actor", "actor_id"),
        ("address", "address_id"),
        ("customer", "customer_id"),
        ("rental", "rental_id"),
        ("payment_p2022_01", "payment_id"),
        ("inventory", "inventory_id"),
    ];
    for (table, key) in tables {
        let src = format!("public.{table}");
        let want = checksum(&mut c, &src, key);
        assert!(want.0 > 0, "pagila's {table} has rows");
        for (format, file, export, options) in [
            (
                "csv",
                format!("{table}.csv"),
                format!("COPY {src} TO '{dir}/{table}.csv' WITH (FORMAT csv, HEADER, NULL '\\N')"),
                r#"{"null": "\\N"}"#,
            ),
            (
                "auto",
                format!("{table}.csv.gz"),
                format!("COPY {src} TO PROGRAM 'gzip -c > {dir}/{table}.csv.gz' WITH (FORMAT csv, HEADER, NULL '\\N', DELIMITER ';')"),
                r#"{"null": "\\N"}"#,
            ),
            (
                "auto",
                format!("{table}.ndjson"),
                format!("COPY (SELECT row_to_json(t) FROM {src} t) TO '{dir}/{table}.ndjson' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"),
                "{}",
            ),
        ] {
            exec(&mut c, &format!("DROP TABLE IF EXISTS copy.{table}; CREATE TABLE copy.{table} (LIKE {src} INCLUDING DEFAULTS)"));
            exec(&mut c, &export);
            let result = import(&mut c, &format!("copy.{table}"), &file, format, options);
            assert_eq!(
                result["rows_written"].as_i64(),
                Some(want.0),
                "{file}: rows written ({result})"
            );
            let got = checksum(&mut c, &format!("copy.{table}"), key);
            assert_eq!(got, want, "{file} imported into copy.{table}: the same rows ({result})");
            if file.ends_with(".gz") {
                assert_eq!(result["gzip"], serde_json::json!(true), "{file}: gzip detected");
                assert_eq!(
                    (&result["delimiter"], &result["delimiter_sniffed"]),
                    (&serde_json::json!(";"), &serde_json::json!(true)),
                    "{file}: the delimiter was sniffed"
                );
            }
            if file.ends_with(".ndjson") {
                assert_eq!(result["format"], "ndjson", "{file}: detected as NDJSON");
            }
        }
    }
    // Each database with the extension keeps a scheduler (a worker slot) while it exists.
    drop(c);
    cluster.drop_database(db);
}

/// A file with bad lines imported with continue_on_error: the refused rows carry their exact
/// line numbers (a quoted field spanning two lines counts both), the rest is written.
pub fn import_refused_rows_by_line(cluster: &Cluster) {
    let db = "e2e_import_refused";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(
        &mut c,
        "CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL, price numeric, since date)",
    );
    let _ = c.query_one("SELECT tenant_ops.import_data('item', 'none.csv')", &[]);
    let dir = import_dir(&mut c);
    let text = "id,name,price,since\n\
                1,one,1.5,01.02.2024\n\
                2,\"two\nlines\",2,2024-02-01\n\
                3,three,lots,2024-02-01\n\
                4,,4,2024-02-01\n\
                5,five,5,30.02.2024\n\
                6,six,6,\n\
                1,dup,7,\n";
    // The exact bytes, written by the server (lo_export).
    let lo: u32 = c
        .query_one("SELECT lo_from_bytea(0, convert_to($1, 'UTF8'))", &[&text])
        .unwrap()
        .get(0);
    c.execute(
        "SELECT lo_export($1, $2)",
        &[&lo, &format!("{dir}/items.csv")],
    )
    .unwrap_or_else(|e| panic!("writing items.csv: {}", describe_error(&e)));
    let result = import(
        &mut c,
        "item",
        "items.csv",
        "csv",
        r#"{"continue_on_error": true}"#,
    );
    assert_eq!(
        (
            result["rows_written"].as_i64(),
            result["rows_refused"].as_i64()
        ),
        (Some(3), Some(4)),
        "{result}"
    );
    assert_eq!(
        refused_lines(&mut c, None),
        [
            ("5".to_string(), "22P02".to_string()),
            ("6".into(), "23502".into()),
            ("7".into(), "22007".into()),
            ("9".into(), "23505".into()),
        ],
        "refused rows by line and SQLSTATE"
    );
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM item"), 3);
    drop(c);
    cluster.drop_database(db);
}

/// A background import of 300 000 rows in steps of 2 000, its worker killed with `kill -9`
/// while loading: the scheduler requeues the job, a new worker resumes from the checkpoint,
/// and every row is there exactly once (the table has no key that would refuse a second copy).
/// A `unique` rule on an unindexed column holds across the resume: the file's last two rows
/// repeat the name of a row the table held before the import and of the file's first row
/// (written before the kill), and both are refused (23505).
pub fn import_resumes_after_worker_kill9(cluster: &Cluster) {
    let db = "e2e_import_kill9";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(
        &mut c,
        "CREATE TABLE big (id int, name text, at date);
         INSERT INTO big VALUES (0, 'there before', date '2020-01-01')",
    );
    let _ = c.query_one("SELECT tenant_ops.import_data('big', 'none.csv')", &[]);
    let dir = import_dir(&mut c);
    exec(
        &mut c,
        &format!(
            "COPY (SELECT g AS id, md5(g::text) AS name, date '2020-01-01' + g % 1000 AS at FROM generate_series(1, 300000) g
                   UNION ALL SELECT 300001, 'there before', date '2020-01-01'
                   UNION ALL SELECT 300002, md5('1'), date '2020-01-01')
               TO '{dir}/big.csv' WITH (FORMAT csv, HEADER)"
        ),
    );
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.import_data('big', 'big.csv', 'csv',
                      '{\"batch_size\": 2000, \"continue_on_error\": true, \"rules\": {\"name\": {\"unique\": true}}}',
                      background => true)",
            &[],
        )
        .unwrap()
        .get(0);
    let worker: i32 = until(
        &format!("import job {job} loading in a worker"),
        Duration::from_secs(120),
        || {
            let r = c
                .query_one(
                    "SELECT j.status, j.worker_pid, t.stage, t.rows_done, j.error FROM tenant_ops.jobs j
                       LEFT JOIN tenant_ops.job_tables t ON t.job_id = j.id WHERE j.id = $1",
                    &[&job],
                )
                .unwrap();
            let status: String = r.get(0);
            let error: Option<String> = r.get(4);
            assert!(
                matches!(status.as_str(), "queued" | "running"),
                "job {job} is {status} before the kill: {error:?}"
            );
            let pid: Option<i32> = r.get(1);
            let stage: Option<String> = r.get(2);
            let done: Option<i64> = r.get(3);
            pid.filter(|_| stage.as_deref() == Some("load") && done.unwrap_or(0) >= 10_000)
        },
    );
    drop(c);
    cluster.interrupt(Interruption::Kill9, worker);
    let mut c = cluster.connect(db);
    assert_eq!(
        wait_for(&mut c, job, 300.0),
        "succeeded",
        "import job {job} after kill -9"
    );
    let r = c
        .query_one(
            "SELECT count(*), count(DISTINCT id), min(id), max(id), (SELECT rows_done FROM tenant_ops.job_tables WHERE job_id = $1)
               FROM big",
            &[&job],
        )
        .unwrap();
    let got: (i64, i64, i32, i32, i64) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(
        got,
        (300_001, 300_001, 0, 300_000, 300_000),
        "(rows, distinct ids, min, max, rows_done)"
    );
    assert_eq!(
        refused_lines(&mut c, Some(job)),
        [
            ("300002".to_string(), "23505".to_string()),
            ("300003".to_string(), "23505".to_string())
        ],
        "the rows repeating a name, by line"
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM big WHERE name IN ('there before', md5('1'))"
        ),
        2
    );
    let events: Vec<String> = c
        .query(
            "SELECT event FROM tenant_ops.job_log WHERE job_id = $1 AND event LIKE 'job.%' ORDER BY id",
            &[&job],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        events.iter().filter(|e| *e == "job.started").count() >= 2,
        "job {job} started again after the kill: {events:?}"
    );
    drop(c);
    cluster.drop_database(db);
}
