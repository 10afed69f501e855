//! Incremental backups end to end: a base with a change capture, writes (inserts, updates,
//! deletes, a key update cascading to the lines), a first incremental, more writes, a second;
//! the restore of each link into an emptied tenant equals the tenant at that link (checksums of
//! every table); a chain with a link's file removed or its row dropped is refused by both
//! verify and restore; a branch is refused; dropping the base stops the capture.

use std::fs;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, Cluster};

use crate::backups::{backup, delete_office, file_of, office_sums};
use crate::common::*;
use crate::migration::dispatch_db;

/// The first writes: a new order with two lines, a patient renamed, an order deleted (lines
/// first), a line's quantity changed.
fn writes_1(c: &mut Client) {
    exec(
        c,
        "INSERT INTO legacy.dispatch_orders (id, patient_id, status, ordered_at, total)
           SELECT 9000001, min(p.id), NULL, '2026-01-02 03:04:05+00', 12.5
             FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 2;
         INSERT INTO legacy.dispatch_order_items (order_id, line_no, product_id, quantity, unit_price)
           SELECT 9000001, l, (SELECT min(id) FROM legacy.dispatch_products), l, 1.25 FROM generate_series(1, 2) l;
         UPDATE legacy.dispatch_patients SET full_name = 'renamed once' WHERE id = (
           SELECT max(p.id) FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 2);
         WITH o AS (SELECT max(o.id) AS id FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
                      JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 2 AND o.id < 9000000)
         DELETE FROM legacy.dispatch_order_items WHERE order_id = (SELECT id FROM o);
         DELETE FROM legacy.dispatch_orders WHERE id = (
           SELECT max(o.id) FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
             JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 2 AND o.id < 9000000
              AND NOT EXISTS (SELECT FROM legacy.dispatch_order_items i WHERE i.order_id = o.id));
         UPDATE legacy.dispatch_order_items SET quantity = quantity + 10 WHERE (order_id, line_no) = (
           SELECT i.order_id, i.line_no FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id
             JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
            WHERE d.office_id = 2 ORDER BY i.order_id, i.line_no LIMIT 1);
         -- another tenant's writes are not captured
         UPDATE legacy.dispatch_patients SET full_name = 'other tenant' WHERE id = (
           SELECT min(p.id) FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 3);",
    );
}

/// The second writes: the new order changed again, its first line deleted, a new patient,
/// an order's key changed (its lines follow by ON UPDATE CASCADE), the office renamed.
fn writes_2(c: &mut Client) {
    exec(
        c,
        "UPDATE legacy.dispatch_orders SET total = 99.99 WHERE id = 9000001;
         DELETE FROM legacy.dispatch_order_items WHERE order_id = 9000001 AND line_no = 1;
         INSERT INTO legacy.dispatch_patients (id, doctor_id, full_name, email)
           SELECT 9000002, min(id), 'new patient', 'np@example.com' FROM legacy.dispatch_doctors WHERE office_id = 2;
         UPDATE legacy.dispatch_orders SET id = 9000003 WHERE id = (
           SELECT min(o.id) FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
             JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 2
              AND EXISTS (SELECT FROM legacy.dispatch_order_items i WHERE i.order_id = o.id));
         UPDATE legacy.dispatch_offices SET name = 'renamed office' WHERE id = 2;
         UPDATE legacy.dispatch_patients SET full_name = 'renamed twice' WHERE id = (
           SELECT max(p.id) FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
            WHERE d.office_id = 2 AND p.id < 9000000);",
    );
}

/// Order lines follow their order's key (ON UPDATE CASCADE): `writes_2` changes one.
fn cascade_order_keys(c: &mut Client) {
    exec(
        c,
        "ALTER TABLE legacy.dispatch_order_items DROP CONSTRAINT dispatch_order_items_order_id_fkey,
           ADD CONSTRAINT dispatch_order_items_order_id_fkey FOREIGN KEY (order_id)
               REFERENCES legacy.dispatch_orders (id) ON UPDATE CASCADE",
    );
}

fn json(c: &mut Client, sql: &str, id: i64) -> serde_json::Value {
    c.query_one(sql, &[&id])
        .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
        .unwrap_or_else(|e| panic!("{sql}: {}", pg_tenant_ops_e2e::describe_error(&e)))
}

fn restore(c: &mut Client, id: i64) {
    c.query_one("SELECT tenant_ops.restore_backup($1)", &[&id])
        .unwrap_or_else(|e| {
            panic!(
                "restore_backup({id}): {}",
                pg_tenant_ops_e2e::describe_error(&e)
            )
        });
}

pub fn incremental_chain_restores(cluster: &Cluster) {
    let db = "e2e_incremental_chain";
    let mut c = dispatch_db(cluster, db, 1);
    cascade_order_keys(&mut c);
    let base = backup(&mut c, "2", r#"{"capture": true}"#);
    let s0 = office_sums(&mut c, 2);

    writes_1(&mut c);
    let s1 = office_sums(&mut c, 2);
    assert_ne!(s0, s1, "the first writes change the tenant");
    let i1 = backup(&mut c, "2", &format!(r#"{{"incremental": {base}}}"#));
    let m1 = json(
        &mut c,
        "SELECT manifest::text FROM tenant_ops.backups WHERE id = $1",
        i1,
    );
    assert_eq!(m1["incremental"]["base"], base);
    assert_eq!(m1["incremental"]["previous"], base);
    assert_eq!(m1["incremental"]["link"], 1);
    assert!(
        m1["incremental"]["changes"].as_i64().unwrap() >= 6,
        "the first link consumed the changes: {m1}"
    );
    assert_eq!(
        scalar(
            &mut c,
            &format!(
                "SELECT count(*) FROM tenant_ops.capture_changes WHERE capture_id = {}",
                m1["incremental"]["capture"]
            )
        ),
        0,
        "consumed changes are removed"
    );
    // Only what changed: the new order and its two lines, the deleted order, one line, ...
    let upserted: i64 = m1["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] != "deleted")
        .map(|t| t["rows"].as_i64().unwrap())
        .sum();
    let deleted: i64 = m1["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "deleted")
        .map(|t| t["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(
        (upserted, deleted),
        (5, 1 + s0[2].1 - s1[2].1 + 2),
        "link 1 holds the changed rows: {m1}"
    );

    writes_2(&mut c);
    let s2 = office_sums(&mut c, 2);
    let other = office_sums(&mut c, 3);
    let i2 = backup(&mut c, "2", &format!(r#"{{"incremental": {i1}}}"#));
    let v = json(&mut c, "SELECT tenant_ops.verify_backup($1)::text", i2);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["chain"], serde_json::json!([base, i1, i2]), "{v}");

    // A branch: link 1 already has a successor.
    assert_sqlstate(
        c.query_one(
            "SELECT tenant_ops.create_backup('dispatch', '2', $1::text::jsonb)",
            &[&format!(r#"{{"incremental": {i1}}}"#)],
        ),
        "55000",
        &format!("backup {i1} already has incremental backup {i2} after it"),
    );

    // The restore of link 2 into an emptied tenant: the tenant at link 2.
    delete_office(&mut c, 2);
    restore(&mut c, i2);
    assert_eq!(office_sums(&mut c, 2), s2, "restore of link 2 = state at 2");
    // Link 1 (over the tenant as it is): the tenant at link 1.
    restore(&mut c, i1);
    assert_eq!(office_sums(&mut c, 2), s1, "restore of link 1 = state at 1");
    // The base alone: as it was.
    restore(&mut c, base);
    assert_eq!(
        office_sums(&mut c, 2),
        s0,
        "restore of the base = state at 0"
    );
    assert_eq!(
        office_sums(&mut c, 3),
        other,
        "another tenant is left alone"
    );
    restore(&mut c, i2);
    assert_eq!(office_sums(&mut c, 2), s2);

    // A link's file removed: refused by verify and restore, nothing changed.
    let f1 = file_of(&mut c, i1);
    let saved = fs::read(&f1).unwrap();
    fs::remove_file(&f1).unwrap();
    let msg = format!(
        "the chain of incremental backup {i2} is broken: link 1 (backup {i1}) has lost its file"
    );
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.verify_backup($1)", &[&i2]),
        "55000",
        &msg,
    );
    exec(
        &mut c,
        "UPDATE legacy.dispatch_offices SET region = 'before refused restore' WHERE id = 2",
    );
    let now = office_sums(&mut c, 2);
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.restore_backup($1)", &[&i2]),
        "55000",
        &msg,
    );
    assert_eq!(
        office_sums(&mut c, 2),
        now,
        "a refused restore changes nothing"
    );
    fs::write(&f1, &saved).unwrap();
    let v = json(&mut c, "SELECT tenant_ops.verify_backup($1)::text", i2);
    assert_eq!(v["verified"], true, "{v}");

    // A link's row dropped: refused.
    exec(&mut c, &format!("SELECT tenant_ops.drop_backup({i1})"));
    let msg =
        format!("the chain of incremental backup {i2} is broken: link 1 (backup {i1}) is missing");
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.verify_backup($1)", &[&i2]),
        "55000",
        &msg,
    );
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.restore_backup($1)", &[&i2]),
        "55000",
        &msg,
    );

    // Dropping the base stops the capture: triggers gone, records gone.
    let capture = m1["incremental"]["capture"].as_i64().unwrap();
    exec(&mut c, &format!("SELECT tenant_ops.drop_backup({base})"));
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM tenant_ops.captures WHERE id = {capture} AND status = 'stopped'")
        ),
        1
    );
    assert_eq!(
        scalar(
            &mut c,
            &format!(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tenant_ops_capture_{capture}%'"
            )
        ),
        0
    );
    assert_eq!(
        scalar(
            &mut c,
            &format!(
                "SELECT count(*) FROM tenant_ops.capture_changes WHERE capture_id = {capture}"
            )
        ),
        0
    );
}

/// The doctor of office `from` with the most patients that has orders, and nobody supervised.
fn movable_doctor(c: &mut Client, from: i32) -> i32 {
    c.query_one(
        "SELECT d.id FROM legacy.dispatch_doctors d
          WHERE d.office_id = $1
            AND NOT EXISTS (SELECT FROM legacy.dispatch_doctors s WHERE s.supervisor_id = d.id)
            AND EXISTS (SELECT FROM legacy.dispatch_patients p JOIN legacy.dispatch_orders o ON o.patient_id = p.id WHERE p.doctor_id = d.id)
          ORDER BY (SELECT count(*) FROM legacy.dispatch_patients p WHERE p.doctor_id = d.id) DESC, d.id LIMIT 1",
        &[&from],
    )
    .unwrap()
    .get(0)
}

/// Deletes a doctor and everything under it, children first.
fn delete_doctor(c: &mut Client, doctor: i32) {
    exec(
        c,
        &format!(
            "DELETE FROM legacy.dispatch_order_items i USING legacy.dispatch_orders o, legacy.dispatch_patients p
              WHERE o.id = i.order_id AND p.id = o.patient_id AND p.doctor_id = {doctor};
             DELETE FROM legacy.dispatch_orders o USING legacy.dispatch_patients p WHERE p.id = o.patient_id AND p.doctor_id = {doctor};
             DELETE FROM legacy.dispatch_patients WHERE doctor_id = {doctor};
             DELETE FROM legacy.dispatch_doctors WHERE id = {doctor};"
        ),
    );
}

/// Rows moving between tenants: a doctor of office 2 moves to office 3 and one of office 3 to
/// office 2, their patients, orders and lines following without a change of their own. The
/// link holds the moved-out subtree's keys as deleted and the moved-in subtree's rows; its
/// restore (with the moved doctors' subtrees removed from the other office, so the base's rows
/// can come back) equals the tenant after the moves.
pub fn incremental_moves_between_tenants(cluster: &Cluster) {
    let db = "e2e_incremental_moves";
    let mut c = dispatch_db(cluster, db, 1);
    let out = movable_doctor(&mut c, 2);
    let into = movable_doctor(&mut c, 3);
    let subtree = |c: &mut Client, d: i32| -> i64 {
        scalar(
            c,
            &format!(
                "SELECT (SELECT count(*) FROM legacy.dispatch_patients WHERE doctor_id = {d})
                      + (SELECT count(*) FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id WHERE p.doctor_id = {d})
                      + (SELECT count(*) FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id
                           JOIN legacy.dispatch_patients p ON p.id = o.patient_id WHERE p.doctor_id = {d})"
            ),
        )
    };
    let (n_out, n_in) = (subtree(&mut c, out), subtree(&mut c, into));
    assert!(n_out > 0 && n_in > 0);
    let base = backup(&mut c, "2", r#"{"capture": true}"#);
    exec(
        &mut c,
        &format!(
            "UPDATE legacy.dispatch_doctors SET office_id = 3 WHERE id = {out};
             UPDATE legacy.dispatch_doctors SET office_id = 2 WHERE id = {into};"
        ),
    );
    let s1 = office_sums(&mut c, 2);
    let i1 = backup(&mut c, "2", &format!(r#"{{"incremental": {base}}}"#));
    let m = json(
        &mut c,
        "SELECT manifest::text FROM tenant_ops.backups WHERE id = $1",
        i1,
    );
    let sum_role = |deleted: bool| -> i64 {
        m["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| (t["role"] == "deleted") == deleted)
            .map(|t| t["rows"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(m["incremental"]["changes"], 2, "two changes recorded: {m}");
    assert_eq!(
        (sum_role(false), sum_role(true)),
        (1 + n_in, 1 + n_out),
        "the moved-in subtree upserted, the moved-out one deleted: {m}"
    );
    // The other office holds the moved-out doctor now; remove it there, and the tenant.
    delete_doctor(&mut c, out);
    delete_office(&mut c, 2);
    restore(&mut c, i1);
    assert_eq!(
        office_sums(&mut c, 2),
        s1,
        "restore after moves = state at 1"
    );
    exec(&mut c, &format!("SELECT tenant_ops.drop_backup({base})"));
}

/// What the writers of [`incremental_under_writers`] do, `$1` a random number: a new order
/// with two lines, a patient renamed, an order and its lines deleted, a line changed, an
/// order's key changed (its lines follow by ON UPDATE CASCADE).
const WRITES: &[&str] = &[
    "WITH p AS (SELECT p.id FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
                 WHERE d.office_id = 2 ORDER BY p.id OFFSET ($1::int8 % 5) LIMIT 1),
          o AS (INSERT INTO legacy.dispatch_orders (id, patient_id, total)
                SELECT nextval('incr_ids'), p.id, $1::int8 % 1000 FROM p RETURNING id)
     INSERT INTO legacy.dispatch_order_items (order_id, line_no, product_id, quantity)
     SELECT o.id, l, (SELECT min(id) FROM legacy.dispatch_products), l FROM o, generate_series(1, 2) l",
    "UPDATE legacy.dispatch_patients SET full_name = 'w' || $1::int8 WHERE id = (
       SELECT p.id FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
        WHERE d.office_id = 2 ORDER BY p.id OFFSET ($1::int8 % 7) LIMIT 1)",
    "WITH o AS (SELECT o.id FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
                  JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
                 WHERE d.office_id = 2 ORDER BY o.id OFFSET ($1::int8 % 11) LIMIT 1),
          i AS (DELETE FROM legacy.dispatch_order_items WHERE order_id IN (SELECT id FROM o)),
          d AS (DELETE FROM legacy.dispatch_orders WHERE id IN (SELECT id FROM o))
     SELECT count(*) FROM o",
    "UPDATE legacy.dispatch_order_items SET quantity = coalesce(quantity, 0) + 1 WHERE (order_id, line_no) = (
       SELECT i.order_id, i.line_no FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id
         JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
        WHERE d.office_id = 2 ORDER BY i.order_id DESC, i.line_no OFFSET ($1::int8 % 13) LIMIT 1)",
    "UPDATE legacy.dispatch_orders SET id = nextval('incr_ids') WHERE id = (
       SELECT o.id FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
         JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
        WHERE d.office_id = 2 ORDER BY o.id DESC OFFSET ($1::int8 % 3) LIMIT 1) AND $1::int8 >= 0",
];

/// Two writer threads change office 2 while the base and three incrementals are taken: each
/// restore passes its own verification (the tenant equals the state the link recorded at its
/// moment), and the last link, taken after the writers stopped, restores to the tenant's final
/// rows (checksums): nothing missed, nothing applied twice.
pub fn incremental_under_writers(cluster: &Cluster) {
    use pg_tenant_ops_e2e::postgres::NoTls;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let db = "e2e_incremental_writers";
    let mut c = dispatch_db(cluster, db, 1);
    exec(
        &mut c,
        "CREATE SEQUENCE incr_ids START 50000000;
         ALTER TABLE legacy.dispatch_order_items DROP CONSTRAINT dispatch_order_items_order_id_fkey,
           ADD CONSTRAINT dispatch_order_items_order_id_fkey FOREIGN KEY (order_id)
               REFERENCES legacy.dispatch_orders (id) ON UPDATE CASCADE",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (stop, done, config) = (stop.clone(), done.clone(), cluster.config(db, "postgres"));
            std::thread::spawn(move || {
                let mut client = config.connect(NoTls).unwrap();
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w + 1);
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let op = WRITES[(rng % WRITES.len() as u64) as usize];
                    let n = (rng >> 8) as i64 & 0xffff;
                    // Two writers on the same rows: a deadlock or a conflict is theirs, retried.
                    if client.execute(op, &[&n]).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let pause = || std::thread::sleep(Duration::from_millis(400));
    pause();
    let base = backup(&mut c, "2", r#"{"capture": true}"#);
    pause();
    let i1 = backup(&mut c, "2", &format!(r#"{{"incremental": {base}}}"#));
    pause();
    let i2 = backup(&mut c, "2", &format!(r#"{{"incremental": {i1}}}"#));
    pause();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let writes = done.load(Ordering::Relaxed);
    assert!(writes > 20, "the writers wrote: {writes}");
    println!("    {writes} writes during the chain");
    let last = office_sums(&mut c, 2);
    let i3 = backup(&mut c, "2", &format!(r#"{{"incremental": {i2}}}"#));
    for id in [i1, i2] {
        let changes = json(
            &mut c,
            "SELECT (manifest -> 'incremental' -> 'changes')::text FROM tenant_ops.backups WHERE id = $1",
            id,
        );
        assert!(changes.as_i64().unwrap() > 0, "link {id} consumed changes");
    }
    delete_office(&mut c, 2);
    // Each restore is verified against its link's recorded state (or fails).
    restore(&mut c, i1);
    restore(&mut c, i2);
    restore(&mut c, i3);
    assert_eq!(
        office_sums(&mut c, 2),
        last,
        "the last link = the final rows"
    );
    exec(&mut c, &format!("SELECT tenant_ops.drop_backup({base})"));
}

/// The same chain through the background workers: the base with its capture, both links
/// and the restore of the last link each a background job; the restored tenant equals the
/// tenant at the last link, and dropping the base stops the capture it started.
pub fn incremental_chain_background(cluster: &Cluster) {
    let db = "e2e_incremental_background";
    let mut c = dispatch_db(cluster, db, 1);
    cascade_order_keys(&mut c);
    let queued = |c: &mut Client, sql: &str| -> i64 {
        let job: i64 = c
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", pg_tenant_ops_e2e::describe_error(&e)))
            .get(0);
        assert_eq!(wait_for(c, job, 120.0), "succeeded", "{sql} (job {job})");
        scalar(
            c,
            &format!("SELECT coalesce((result ->> 'backup_id')::int8, 0) FROM tenant_ops.jobs WHERE id = {job}"),
        )
    };
    let base = queued(
        &mut c,
        "SELECT tenant_ops.create_backup('dispatch', '2', '{\"capture\": true}', background => true)",
    );
    assert!(base > 0);
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.captures WHERE status = 'capturing'"
        ),
        1,
        "the base's capture runs"
    );
    writes_1(&mut c);
    let i1 = queued(
        &mut c,
        &format!("SELECT tenant_ops.create_backup('dispatch', '2', '{{\"incremental\": {base}}}', background => true)"),
    );
    writes_2(&mut c);
    let s2 = office_sums(&mut c, 2);
    let i2 = queued(
        &mut c,
        &format!("SELECT tenant_ops.create_backup('dispatch', '2', '{{\"incremental\": {i1}}}', background => true)"),
    );
    let report = json(&mut c, "SELECT tenant_ops.verify_backup($1)::text", i2);
    assert_eq!(
        report["chain"],
        serde_json::json!([base, i1, i2]),
        "{report}"
    );
    delete_office(&mut c, 2);
    queued(
        &mut c,
        &format!("SELECT tenant_ops.restore_backup({i2}, '{{}}', background => true)"),
    );
    assert_eq!(office_sums(&mut c, 2), s2, "the tenant as at the last link");
    c.query_one("SELECT tenant_ops.drop_backup($1)", &[&base])
        .unwrap();
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.captures WHERE status = 'capturing'"
        ),
        0,
        "dropping the base stops its capture"
    );
}
