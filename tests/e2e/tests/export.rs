//! export_tenant and import_tenant between two databases on pagila: a store exported in each
//! format (XLSX too), imported into a second database over rows that were changed there
//! (replace: the same rows, keys included, as the source), and as a new store with fresh keys
//! (clone: the same rows up to keys); the SQL export loaded by psql and the CSV export by
//! COPY, without the extension; a download through SQL that is the file byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{describe_error, Cluster};

use crate::common::{create_extension, create_scope, exec, scalar};

/// A pagila store's rows with their keys, in key order.
const EXACT: &[(&str, &str)] = &[
    ("store", "SELECT x::text FROM store x WHERE store_id = $1::text::int"),
    ("staff", "SELECT x::text FROM staff x WHERE store_id = $1::text::int"),
    ("customer", "SELECT x::text FROM customer x WHERE store_id = $1::text::int"),
    ("inventory", "SELECT x::text FROM inventory x WHERE store_id = $1::text::int"),
    (
        "rental",
        "SELECT r::text FROM rental r JOIN inventory i USING (inventory_id) WHERE i.store_id = $1::text::int",
    ),
    (
        "payment",
        "SELECT p::text FROM payment p JOIN rental r USING (rental_id) JOIN inventory i USING (inventory_id)
          WHERE i.store_id = $1::text::int",
    ),
];

/// A store's rows up to keys: non-key columns, with those of the rows references lead to.
const UP_TO_KEYS: &[(&str, &str)] = &[
    ("staff", "SELECT ROW(x.first_name, x.last_name, x.address_id, x.email, x.active, x.username, x.last_update, md5(x.picture))::text
                 FROM staff x WHERE x.store_id = $1::text::int"),
    ("customer", "SELECT ROW(x.first_name, x.last_name, x.email, x.address_id, x.activebool, x.create_date, x.last_update, x.active)::text
                    FROM customer x WHERE x.store_id = $1::text::int"),
    ("inventory", "SELECT ROW(x.film_id, x.last_update)::text FROM inventory x WHERE x.store_id = $1::text::int"),
    ("rental", "SELECT ROW(r.rental_date, r.return_date, r.last_update, i.film_id, cu.email, st.username)::text
                  FROM rental r JOIN inventory i ON i.inventory_id = r.inventory_id
                  JOIN customer cu ON cu.customer_id = r.customer_id JOIN staff st ON st.staff_id = r.staff_id
                 WHERE i.store_id = $1::text::int"),
    ("payment", "SELECT ROW(p.amount, p.payment_date, cu.email, st.username, r.rental_date, i.film_id)::text
                   FROM payment p JOIN rental r ON r.rental_id = p.rental_id JOIN inventory i ON i.inventory_id = r.inventory_id
                   JOIN customer cu ON cu.customer_id = p.customer_id JOIN staff st ON st.staff_id = p.staff_id
                  WHERE i.store_id = $1::text::int"),
];

fn sums(c: &mut Client, queries: &[(&str, &str)], tenant: &str) -> Vec<(String, i64, String)> {
    queries
        .iter()
        .map(|(name, q)| {
            let row = c
                .query_one(
                    &format!("SELECT count(*), coalesce(md5(string_agg(r, '|' ORDER BY r)), '') FROM ({q}) x(r)"),
                    &[&tenant],
                )
                .unwrap_or_else(|e| panic!("{name}: {}", describe_error(&e)));
            (name.to_string(), row.get(0), row.get(1))
        })
        .collect()
}

/// `SELECT f(args)` returning a job id; the job's result.
#[track_caller]
fn job(c: &mut Client, sql: &str) -> serde_json::Value {
    let id: i64 = c
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe_error(&e)))
        .get(0);
    let r: String = c
        .query_one(
            "SELECT result::text FROM tenant_ops.jobs WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    serde_json::from_str(&r).unwrap()
}

fn scope(c: &mut Client) {
    create_extension(c);
    create_scope(
        c,
        "pagila",
        "store",
        "store_id",
        r#"{"owner": {"rental": "inventory", "payment": "rental"}}"#,
    );
    // Both databases write and read the same directory (a server setting, per session here).
    exec(c, "SET tenant_ops.export_directory = 'e2e_exports'");
}

/// The file downloaded through SQL in 1 MB chunks.
fn download(c: &mut Client, file: &str) -> Vec<u8> {
    let size: i64 = c
        .query_one("SELECT tenant_ops.export_size($1)", &[&file])
        .unwrap()
        .get(0);
    let mut out = vec![];
    let mut offset = 0i64;
    while offset < size {
        let chunk: Vec<u8> = c
            .query_one(
                "SELECT tenant_ops.download_export($1, $2, 1048576)",
                &[&file, &offset],
            )
            .unwrap()
            .get(0);
        offset += chunk.len() as i64;
        out.extend(chunk);
    }
    out
}

fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let ok = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar -xf {} failed", archive.display());
}

pub fn export_pagila_round_trip(cluster: &Cluster) {
    let (a, b, p) = ("e2e_export_a", "e2e_export_b", "e2e_export_psql");
    cluster.load_pagila(a);
    cluster.load_pagila(b);
    let mut ca = cluster.connect(a);
    let mut cb = cluster.connect(b);
    scope(&mut ca);
    scope(&mut cb);
    let exact = sums(&mut ca, EXACT, "1");
    let up_to_keys = sums(&mut ca, UP_TO_KEYS, "1");
    assert!(exact.iter().all(|(_, n, _)| *n > 0), "{exact:?}");
    // The clone's one-manager-per-store index has no column a fresh key reaches (see
    // restore_modes.rs): it goes in b, where the clones are made.
    exec(&mut cb, "DROP INDEX idx_unq_manager_staff_id");
    for format in ["csv", "json", "ndjson", "xml", "sql", "xlsx"] {
        let file = format!("pagila_1.{format}.tar.gz");
        let r = job(
            &mut ca,
            &format!("SELECT tenant_ops.export_tenant('pagila', '1', '{format}', '{{\"file\": \"{file}\"}}')"),
        );
        let rows: i64 = exact.iter().map(|(_, n, _)| n).sum();
        assert_eq!(r["rows"].as_i64(), Some(rows), "{format}: {r}");
        assert_eq!(r["tables"], 6, "{format}: {r}");
        // b's store 1 lost its rentals and payments (the largest tables): a merge that skips
        // the rows b holds brings them back with their keys. (Not a replace: other stores'
        // rentals reference store 1's customers, so its rows cannot be deleted first; not an
        // overwrite: pagila's last_update triggers rewrite the rows it updates unless
        // disable_triggers is given, which restore_modes.rs tests.)
        exec(
            &mut cb,
            "DELETE FROM payment p USING rental r, inventory i
              WHERE p.rental_id = r.rental_id AND r.inventory_id = i.inventory_id AND i.store_id = 1;
             DELETE FROM rental r USING inventory i WHERE r.inventory_id = i.inventory_id AND i.store_id = 1",
        );
        assert_ne!(sums(&mut cb, EXACT, "1"), exact);
        let r = job(
            &mut cb,
            &format!("SELECT tenant_ops.import_tenant('pagila', '{file}', '{{\"on_conflict\": \"skip\"}}')"),
        );
        assert_eq!(r["verified"], true, "{format}: {r}");
        assert_eq!(
            sums(&mut cb, EXACT, "1"),
            exact,
            "{format}: the merge gives a's rows"
        );
        // As a new store with fresh keys: equal up to keys.
        let r = job(
            &mut cb,
            &format!(
                "SELECT tenant_ops.import_tenant('pagila', '{file}', '{{\"new_tenant\": \"3\"}}')"
            ),
        );
        assert_eq!(r["mode"], "clone", "{format}: {r}");
        assert_eq!(
            sums(&mut cb, UP_TO_KEYS, "3"),
            up_to_keys,
            "{format}: clone equal up to keys"
        );
        assert_eq!(
            scalar(&mut cb, "SELECT count(*) FROM customer c3 JOIN customer c1 USING (customer_id) WHERE c3.store_id = 3 AND c1.store_id = 1"),
            0,
            "{format}: fresh keys"
        );
        // Undo the clone for the next format (children first; staff manages store 3).
        exec(
            &mut cb,
            "DELETE FROM payment p USING rental r, inventory i
              WHERE p.rental_id = r.rental_id AND r.inventory_id = i.inventory_id AND i.store_id = 3;
             DELETE FROM rental WHERE inventory_id IN (SELECT inventory_id FROM inventory WHERE store_id = 3);
             DELETE FROM inventory WHERE store_id = 3; DELETE FROM customer WHERE store_id = 3;
             UPDATE store SET manager_staff_id = (SELECT min(staff_id) FROM staff WHERE store_id = 1) WHERE store_id = 3;
             DELETE FROM staff WHERE store_id = 3; DELETE FROM store WHERE store_id = 3",
        );
    }

    // Without the extension: the download is the file; psql loads the SQL export and COPY the
    // CSV export into a database with pagila's schema and shared rows (no store of its own).
    let dir: String = ca
        .query_one(
            "SELECT current_setting('data_directory') || '/e2e_exports'",
            &[],
        )
        .unwrap()
        .get(0);
    let work: PathBuf = cluster.work_dir().join("e2e_export");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    for format in ["sql", "csv"] {
        let file = format!("pagila_1.{format}.tar.gz");
        let bytes = download(&mut ca, &file);
        assert_eq!(
            bytes,
            std::fs::read(Path::new(&dir).join(&file)).unwrap(),
            "download is the file"
        );
        let archive = work.join(&file);
        std::fs::write(&archive, &bytes).unwrap();
        untar(&archive, &work.join(format));
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("sql/manifest.json")).unwrap()).unwrap();
    let files: Vec<String> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["file"].as_str().unwrap().to_string())
        .collect();
    cluster.load_pagila(p);
    let mut cp = cluster.connect(p);
    let empty =
        "DELETE FROM payment; DELETE FROM rental; DELETE FROM inventory; DELETE FROM customer;
                 DELETE FROM staff; DELETE FROM store;";
    // store and staff reference each other: foreign keys off (replica role) for the emptying
    // and the loads.
    let mut script = format!("SET session_replication_role = replica;\n{empty}\n").into_bytes();
    for f in &files {
        script.extend(std::fs::read(work.join("sql").join(f)).unwrap());
    }
    cluster.psql_stdin(p, &script);
    assert_eq!(
        sums(&mut cp, EXACT, "1"),
        exact,
        "psql loads the SQL export"
    );
    let mut script = format!("SET session_replication_role = replica;\n{empty}\n").into_bytes();
    for t in manifest["tables"].as_array().unwrap() {
        let cols: Vec<String> = t["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("\"{}\"", c["name"].as_str().unwrap()))
            .collect();
        let csv = t["file"].as_str().unwrap().replace(".sql", ".csv");
        script.extend(
            format!(
                "\\copy \"{}\".\"{}\" ({}) FROM '{}' WITH (FORMAT csv, HEADER)\n",
                t["schema"].as_str().unwrap(),
                t["table"].as_str().unwrap(),
                cols.join(", "),
                work.join("csv").join(csv).display()
            )
            .into_bytes(),
        );
    }
    cluster.psql_stdin(p, &script);
    assert_eq!(
        sums(&mut cp, EXACT, "1"),
        exact,
        "COPY loads the CSV export"
    );
    drop((ca, cb, cp));
    for db in [a, b, p] {
        cluster.drop_database(db);
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// The schema of `export_hostile_names_background`, made in both databases.
const HOSTILE: &str = r#"
CREATE SCHEMA "Ex.p ;ört";
CREATE TABLE "Ex.p ;ört"."Ten""ant" ("Kéy $1" text PRIMARY KEY, "na;me" text);
CREATE TABLE "Ex.p ;ört"."Ord er" (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    "ten ant" text NOT NULL REFERENCES "Ex.p ;ört"."Ten""ant", "it's" numeric, "x<y>" jsonb, at timestamptz,
    "column" text, "ÜBER" bytea, flag boolean, tags text[]);
CREATE TABLE "Ex.p ;ört"."li;ne" ("ord" bigint REFERENCES "Ex.p ;ört"."Ord er", no int, "Qty" int,
    PRIMARY KEY ("ord", no));
"#;

/// Hostile names (quotes, dots, semicolons, spaces, `$1`, upper case, non-ASCII, a column
/// named `column`, an XML-hostile name) exported in every text format by a background job
/// from one database and imported into another with the same empty tables: the same rows,
/// keys included.
pub fn export_hostile_names_background(cluster: &Cluster) {
    let (a, b) = ("e2e_export_hostile_a", "e2e_export_hostile_b");
    for db in [a, b] {
        cluster.create_database(db);
    }
    let mut ca = cluster.connect(a);
    let mut cb = cluster.connect(b);
    for c in [&mut ca, &mut cb] {
        create_extension(c);
        exec(c, HOSTILE);
        create_scope(
            c,
            "hö stile",
            "\"Ex.p ;ört\".\"Ten\"\"ant\"",
            "Kéy $1",
            "{}",
        );
        exec(c, "SET tenant_ops.export_directory = 'e2e_exports'");
    }
    exec(
        &mut ca,
        r#"INSERT INTO "Ex.p ;ört"."Ten""ant" VALUES (E'a''b;"c', 'one'), ('other', 'two');
           INSERT INTO "Ex.p ;ört"."Ord er" ("ten ant", "it's", "x<y>", at, "column", "ÜBER", flag, tags)
           SELECT CASE WHEN g % 4 = 0 THEN 'other' ELSE E'a''b;"c' END, g / 7.0,
                  jsonb_build_object('g', g, 's', E'<&>\n"'), timestamptz '2024-01-01 00:00+05' + g * interval '1 hour',
                  CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE E'\\.\r\n,"' END, decode(md5(g::text), 'hex'),
                  g % 2 = 0, ARRAY['x', NULL, E'y"z']
             FROM generate_series(1, 2000) g;
           INSERT INTO "Ex.p ;ört"."li;ne" SELECT id, n, id * n FROM "Ex.p ;ört"."Ord er", generate_series(1, 3) n;"#,
    );
    // A background job's worker reads the server's setting, not the session's.
    exec(
        &mut ca,
        "ALTER SYSTEM SET tenant_ops.export_directory = 'e2e_exports'",
    );
    exec(&mut ca, "SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let tenant = "a'b;\"c";
    let sums = |c: &mut Client| -> Vec<(i64, String)> {
        [
            r#"SELECT x::text FROM "Ex.p ;ört"."Ten""ant" x WHERE "Kéy $1" = $1"#,
            r#"SELECT x::text FROM "Ex.p ;ört"."Ord er" x WHERE "ten ant" = $1"#,
            r#"SELECT l::text FROM "Ex.p ;ört"."li;ne" l JOIN "Ex.p ;ört"."Ord er" o ON o.id = l.ord WHERE o."ten ant" = $1"#,
        ]
        .iter()
        .map(|q| {
            let r = c
                .query_one(
                    &format!("SELECT count(*), coalesce(md5(string_agg(r, '|' ORDER BY r)), '') FROM ({q}) x(r)"),
                    &[&tenant],
                )
                .unwrap_or_else(|e| panic!("{}", describe_error(&e)));
            (r.get(0), r.get(1))
        })
        .collect()
    };
    let want = sums(&mut ca);
    assert_eq!(want[1].0, 1500);
    for format in ["csv", "json", "ndjson", "xml", "sql", "xlsx"] {
        let file = format!("hostile.{format}.tar.gz");
        let id: i64 = ca
            .query_one(
                "SELECT tenant_ops.export_tenant('hö stile', $1, $2, jsonb_build_object('file', $3::text), true)",
                &[&tenant, &format, &file],
            )
            .unwrap_or_else(|e| panic!("{format}: {}", describe_error(&e)))
            .get(0);
        let status = crate::common::wait_for(&mut ca, id, 60.0);
        let error: Option<String> = ca
            .query_one("SELECT error FROM tenant_ops.jobs WHERE id = $1", &[&id])
            .unwrap()
            .get(0);
        assert_eq!(
            status, "succeeded",
            "{format}: background export: {error:?}"
        );
        exec(
            &mut cb,
            r#"TRUNCATE "Ex.p ;ört"."li;ne", "Ex.p ;ört"."Ord er", "Ex.p ;ört"."Ten""ant""#,
        );
        let r = job(
            &mut cb,
            &format!("SELECT tenant_ops.import_tenant('hö stile', '{file}')"),
        );
        assert_eq!(r["verified"], true, "{format}: {r}");
        assert_eq!(sums(&mut cb), want, "{format}: the same rows in b");
    }
    exec(&mut ca, "ALTER SYSTEM RESET tenant_ops.export_directory");
    exec(&mut ca, "SELECT pg_reload_conf()");
    drop((ca, cb));
    for db in [a, b] {
        cluster.drop_database(db);
    }
}
