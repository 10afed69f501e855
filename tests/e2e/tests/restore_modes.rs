//! Restore modes on the sample databases: a clone of a pagila store whose rows equal the
//! original's up to keys (every row described by its non-key columns and those of the rows it
//! references, every reference resolving inside the clone), refused first where the copy
//! would repeat a unique value; a merge round trip on chinook with exact counts per table;
//! a restore of a northwind customer into a staging schema with a hostile name, and the
//! clone northwind's keys cannot give (no sequences), refused naming the table.

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{
    assert_sqlstate, assert_sqlstate_hint, describe_error, quote_ident, Cluster,
};
use serde_json::Value;

use crate::common::*;

/// `create_backup(scope, tenant, options)` inline: the backup id.
fn backup(c: &mut Client, scope: &str, tenant: &str, options: &str) -> i64 {
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.create_backup($1, $2, $3::text::jsonb)",
            &[&scope, &tenant, &options],
        )
        .unwrap_or_else(|e| panic!("create_backup: {}", describe_error(&e)))
        .get(0);
    c.query_one(
        "SELECT (result ->> 'backup_id')::int8 FROM tenant_ops.jobs WHERE id = $1",
        &[&job],
    )
    .unwrap()
    .get(0)
}

fn try_restore(
    c: &mut Client,
    id: i64,
    options: &str,
) -> Result<Value, pg_tenant_ops_e2e::postgres::Error> {
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.restore_backup($1, $2::text::jsonb)",
            &[&id, &options],
        )?
        .get(0);
    let result: String = c
        .query_one(
            "SELECT result::text FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )?
        .get(0);
    Ok(serde_json::from_str(&result).unwrap())
}

/// `restore_backup(id, options)` inline, which must succeed: the job's result.
#[track_caller]
fn restore(c: &mut Client, id: i64, options: &str) -> Value {
    try_restore(c, id, options)
        .unwrap_or_else(|e| panic!("restore_backup({id}, {options}): {}", describe_error(&e)))
}

/// The result's entry for `table`.
fn table<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {result}"))
}

/// Per entry: the row count and an md5 of the rows' text, in the order of that text. Each
/// query takes the tenant as `$1` (text) and returns one text column per row.
fn sums(c: &mut Client, queries: &[(&str, &str)], tenant: &str) -> Vec<(String, i64, String)> {
    queries
        .iter()
        .map(|(name, q)| {
            let row = c
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(r, '|' ORDER BY r)), '') FROM ({q}) x(r)"
                    ),
                    &[&tenant],
                )
                .unwrap_or_else(|e| panic!("{name}: {}\n{q}", describe_error(&e)));
            (name.to_string(), row.get(0), row.get(1))
        })
        .collect()
}

/// A pagila store's rows up to keys: each table's non-key columns, with those of the rows its
/// references lead to (so a reference mapped to the wrong row shows).
const PAGILA_UP_TO_KEYS: &[(&str, &str)] = &[
    (
        "store",
        "SELECT ROW(s.manager_staff_id, s.address_id, s.last_update)::text FROM store s WHERE s.store_id = $1::text::int",
    ),
    (
        "staff",
        "SELECT ROW(x.first_name, x.last_name, x.address_id, x.email, x.active, x.username, x.password, x.last_update, md5(x.picture))::text
           FROM staff x WHERE x.store_id = $1::text::int",
    ),
    (
        "customer",
        "SELECT ROW(x.first_name, x.last_name, x.email, x.address_id, x.activebool, x.create_date, x.last_update, x.active)::text
           FROM customer x WHERE x.store_id = $1::text::int",
    ),
    (
        "inventory",
        "SELECT ROW(x.film_id, x.last_update)::text FROM inventory x WHERE x.store_id = $1::text::int",
    ),
    (
        "rental",
        "SELECT ROW(r.rental_date, r.return_date, r.last_update, i.film_id, cu.email, st.username)::text
           FROM rental r JOIN inventory i ON i.inventory_id = r.inventory_id
           JOIN customer cu ON cu.customer_id = r.customer_id JOIN staff st ON st.staff_id = r.staff_id
          WHERE i.store_id = $1::text::int",
    ),
    (
        "payment",
        "SELECT ROW(p.amount, p.payment_date, cu.email, st.username, r.rental_date, i.film_id)::text
           FROM payment p JOIN rental r ON r.rental_id = p.rental_id JOIN inventory i ON i.inventory_id = r.inventory_id
           JOIN customer cu ON cu.customer_id = p.customer_id JOIN staff st ON st.staff_id = p.staff_id
          WHERE i.store_id = $1::text::int",
    ),
];

/// A pagila store's rows with their keys, in key order.
const PAGILA_EXACT: &[(&str, &str)] = &[
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

/// Database `db` with pagila, the extension and the scope `pagila` (a store and what it owns;
/// rentals through their inventory, payments through their rental).
fn pagila_db(cluster: &Cluster, db: &str) -> Client {
    cluster.load_pagila(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    create_scope(
        &mut c,
        "pagila",
        "store",
        "store_id",
        r#"{"owner": {"rental": "inventory", "payment": "rental"}}"#,
    );
    c
}

/// Pagila store 1 edited after its backup (customers renamed, rentals returned later), then
/// merged back with `on_conflict: overwrite`: pagila's `last_update` triggers rewrite every
/// row the overwrite updates, so the verification refuses it (23000, the hint naming the
/// option) and nothing changes; with `disable_triggers` the store is exactly as backed up,
/// the triggers are enabled again afterwards, and store 2 is untouched.
pub fn restore_overwrite_pagila_triggers(cluster: &Cluster) {
    let db = "e2e_restore_overwrite_pagila";
    let mut c = pagila_db(cluster, db);
    let store1 = sums(&mut c, PAGILA_EXACT, "1");
    let store2 = sums(&mut c, PAGILA_EXACT, "2");
    let id = backup(&mut c, "pagila", "1", "{}");
    exec(
        &mut c,
        "UPDATE customer SET first_name = upper(first_name) || '!' WHERE store_id = 1;
         UPDATE rental r SET return_date = return_date + interval '1 day'
           FROM inventory i WHERE i.inventory_id = r.inventory_id AND i.store_id = 1",
    );
    let edited = sums(&mut c, PAGILA_EXACT, "1");
    assert_ne!(edited, store1);
    let triggers =
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'last_updated' AND tgenabled = 'O'";
    let enabled = scalar(&mut c, triggers);
    assert!(enabled >= 6, "pagila's last_updated triggers: {enabled}");
    let overwrite = r#"{"mode": "merge", "on_conflict": "overwrite"}"#;
    assert_sqlstate_hint(
        try_restore(&mut c, id, overwrite),
        "23000",
        "verification of the restore of",
        "disable_triggers",
    );
    assert_eq!(sums(&mut c, PAGILA_EXACT, "1"), edited, "nothing changed");
    let result = restore(
        &mut c,
        id,
        r#"{"mode": "merge", "on_conflict": "overwrite", "disable_triggers": true}"#,
    );
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(
        sums(&mut c, PAGILA_EXACT, "1"),
        store1,
        "store 1 as backed up"
    );
    assert_eq!(sums(&mut c, PAGILA_EXACT, "2"), store2, "store 2 untouched");
    assert_eq!(
        scalar(&mut c, triggers),
        enabled,
        "the triggers enabled again"
    );
}

/// Pagila store 1 cloned as store 3: refused while a unique index (one manager per store) holds
/// no column that gets a fresh key; then the clone, equal to store 1 up to keys, with no key
/// of store 1's, every reference inside store 3; store 1 and 2 untouched.
pub fn restore_clone_pagila(cluster: &Cluster) {
    let db = "e2e_restore_clone_pagila";
    let mut c = pagila_db(cluster, db);
    let store1 = sums(&mut c, PAGILA_EXACT, "1");
    let store2 = sums(&mut c, PAGILA_EXACT, "2");
    let id = backup(&mut c, "pagila", "1", "{}");
    let clone = r#"{"mode": "clone", "new_tenant": "3"}"#;
    assert_sqlstate(
        try_restore(&mut c, id, clone),
        "55000",
        "cannot be cloned: the rows of public.store cannot get fresh keys: its unique index idx_unq_manager_staff_id on (manager_staff_id)",
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM store WHERE store_id = 3"),
        0
    );
    // A store's manager is a legacy column without a constraint: the copy keeps the manager
    // as it is, so the one-manager-per-store index has to go for a clone.
    exec(&mut c, "DROP INDEX idx_unq_manager_staff_id");
    let dry = restore(
        &mut c,
        id,
        r#"{"mode": "clone", "new_tenant": "3", "dry_run": true}"#,
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM store WHERE store_id = 3"),
        0
    );
    let payment = table(&dry, "public.payment");
    assert!(
        payment["fresh_keys"]["payment_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("sequence ")),
        "payment's composite key gets fresh payment_ids from its sequence: {payment}"
    );
    assert_eq!(
        table(&dry, "public.rental")["follows"],
        serde_json::json!(["inventory_id", "customer_id", "staff_id"]),
    );
    let before_seq = scalar(&mut c, "SELECT last_value FROM rental_rental_id_seq");
    let result = restore(&mut c, id, clone);
    assert_eq!(result["verified"], true, "{result}");
    let original = sums(&mut c, PAGILA_UP_TO_KEYS, "1");
    let copy = sums(&mut c, PAGILA_UP_TO_KEYS, "3");
    assert_eq!(copy, original, "store 3 equals store 1 up to keys");
    for (name, n, _) in &original {
        let reported = table(&result, &format!("public.{name}"))["inserted"].as_i64();
        assert_eq!(reported, Some(*n), "{name}: rows inserted as reported");
        assert!(*n > 0, "store 1 has rows of {name}");
    }
    let rows: i64 = original.iter().map(|(_, n, _)| n).sum();
    assert_eq!(result["rows"].as_i64(), Some(rows));
    // Fresh keys: none of store 1's, drawn from the sequences.
    for (t, k) in [
        ("staff", "staff_id"),
        ("customer", "customer_id"),
        ("inventory", "inventory_id"),
    ] {
        let shared = scalar(
            &mut c,
            &format!("SELECT count(*) FROM {t} a JOIN {t} b USING ({k}) WHERE a.store_id = 3 AND b.store_id = 1"),
        );
        assert_eq!(shared, 0, "{t}: no key of store 1's in store 3");
    }
    let rentals3 = scalar(
        &mut c,
        "SELECT count(*) FROM rental r JOIN inventory i USING (inventory_id) WHERE i.store_id = 3",
    );
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM rental r JOIN inventory i USING (inventory_id) WHERE i.store_id = 3 AND r.rental_id > {before_seq}")
        ),
        rentals3,
        "rental ids drawn from the sequence"
    );
    // Every reference of store 3's rows leads where store 1's does, mapped: into store 3
    // where store 1's led into store 1, and to the same rows of other stores (pagila's
    // customers rent from either store) where they led there.
    for (what, q) in [
        (
            "rentals by the store's customers",
            "SELECT count(*) FROM rental r JOIN inventory i USING (inventory_id) JOIN customer cu ON cu.customer_id = r.customer_id
              WHERE i.store_id = $1::text::int AND cu.store_id = $1::text::int",
        ),
        (
            "rentals by the store's staff",
            "SELECT count(*) FROM rental r JOIN inventory i USING (inventory_id) JOIN staff s ON s.staff_id = r.staff_id
              WHERE i.store_id = $1::text::int AND s.store_id = $1::text::int",
        ),
        (
            "payments by the store's customers",
            "SELECT count(*) FROM payment p JOIN rental r USING (rental_id) JOIN inventory i USING (inventory_id)
               JOIN customer cu ON cu.customer_id = p.customer_id
              WHERE i.store_id = $1::text::int AND cu.store_id = $1::text::int",
        ),
        (
            "rentals by store 2's customers",
            "SELECT count(*) FROM rental r JOIN inventory i USING (inventory_id) JOIN customer cu ON cu.customer_id = r.customer_id
              WHERE i.store_id = $1::text::int AND cu.store_id = 2",
        ),
    ] {
        let (one, three) = (count(&mut c, q, "1"), count(&mut c, q, "3"));
        assert_eq!(three, one, "{what}: store 3 as store 1");
    }
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM rental r JOIN inventory i USING (inventory_id) JOIN customer cu ON cu.customer_id = r.customer_id
              WHERE i.store_id = 3 AND cu.store_id = 1"
        ),
        0,
        "no rental of store 3 references a customer of store 1"
    );
    assert_eq!(sums(&mut c, PAGILA_EXACT, "1"), store1, "store 1 untouched");
    assert_eq!(sums(&mut c, PAGILA_EXACT, "2"), store2, "store 2 untouched");
    assert_sqlstate(
        try_restore(&mut c, id, clone),
        "23505",
        "cannot be cloned as tenant \"3\": public.store holds that tenant already",
    );
}

/// Chinook's employee 3 (its customers, their invoices and lines, and the shared catalogue
/// rows they reference).
const CHINOOK_EXACT: &[(&str, &str)] = &[
    ("employee", "SELECT x::text FROM employee x WHERE employee_id = $1::text::int"),
    ("customer", "SELECT x::text FROM customer x WHERE support_rep_id = $1::text::int"),
    (
        "invoice",
        "SELECT i::text FROM invoice i JOIN customer c USING (customer_id) WHERE c.support_rep_id = $1::text::int",
    ),
    (
        "invoice_line",
        "SELECT l::text FROM invoice_line l JOIN invoice i USING (invoice_id) JOIN customer c USING (customer_id)
          WHERE c.support_rep_id = $1::text::int",
    ),
];

/// A merge round trip on chinook: employee 3 loses invoice lines and invoices and has
/// customers changed; `skip` brings back exactly the rows missing (counts per table) and
/// leaves the changed ones; `overwrite` makes every row the backup's again; other employees
/// untouched throughout. A dry run first says the same numbers and changes nothing.
pub fn restore_merge_chinook(cluster: &Cluster) {
    let db = "e2e_restore_merge_chinook";
    cluster.load_chinook(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    create_scope(&mut c, "chinook", "employee", "employee_id", "{}");
    let before = sums(&mut c, CHINOOK_EXACT, "3");
    let others: Vec<_> = ["4", "5"]
        .iter()
        .map(|t| sums(&mut c, CHINOOK_EXACT, t))
        .collect();
    let id = backup(&mut c, "chinook", "3", r#"{"shared": "include"}"#);
    let lines_gone = scalar(
        &mut c,
        "WITH d AS (DELETE FROM invoice_line l USING invoice i, customer c
                     WHERE i.invoice_id = l.invoice_id AND c.customer_id = i.customer_id AND c.support_rep_id = 3
                       AND (l.invoice_line_id % 3 = 0 OR i.invoice_id % 10 = 0) RETURNING 1)
         SELECT count(*) FROM d",
    );
    let invoices_gone = scalar(
        &mut c,
        "WITH d AS (DELETE FROM invoice i USING customer c
                     WHERE c.customer_id = i.customer_id AND c.support_rep_id = 3 AND i.invoice_id % 10 = 0 RETURNING 1)
         SELECT count(*) FROM d",
    );
    let changed = scalar(
        &mut c,
        "WITH u AS (UPDATE customer SET company = 'Chängèd; \"co\"' WHERE support_rep_id = 3 AND customer_id % 2 = 0 RETURNING 1)
         SELECT count(*) FROM u",
    );
    assert!(lines_gone > 0 && invoices_gone > 0 && changed > 0);
    let damaged = sums(&mut c, CHINOOK_EXACT, "3");
    let n = |name: &str| before.iter().find(|x| x.0 == name).unwrap().1;

    let dry = restore(
        &mut c,
        id,
        r#"{"mode": "merge", "on_conflict": "skip", "dry_run": true}"#,
    );
    assert_eq!(
        sums(&mut c, CHINOOK_EXACT, "3"),
        damaged,
        "a dry run changes nothing"
    );
    let skip = restore(&mut c, id, r#"{"mode": "merge", "on_conflict": "skip"}"#);
    assert_eq!(skip["verified"], true);
    for result in [&dry, &skip] {
        let counts = |t: &str| {
            let e = table(result, t);
            (
                e["inserted"].as_i64().unwrap(),
                e["updated"].as_i64().unwrap(),
                e["skipped"].as_i64().unwrap(),
            )
        };
        assert_eq!(counts("public.employee"), (0, 0, 1));
        assert_eq!(counts("public.customer"), (0, 0, n("customer")));
        assert_eq!(
            counts("public.invoice"),
            (invoices_gone, 0, n("invoice") - invoices_gone)
        );
        assert_eq!(
            counts("public.invoice_line"),
            (lines_gone, 0, n("invoice_line") - lines_gone)
        );
        // Shared catalogue rows are all there: none added.
        assert_eq!(counts("public.track").0, 0);
    }
    assert_eq!(skip["rows"].as_i64(), Some(invoices_gone + lines_gone));
    let after_skip = sums(&mut c, CHINOOK_EXACT, "3");
    for (b, a) in before.iter().zip(&after_skip) {
        if b.0 == "customer" {
            assert_ne!(b, a, "skip leaves the changed customers as they are");
            assert_eq!(b.1, a.1);
        } else {
            assert_eq!(b, a, "{}: what was missing is back, exactly", b.0);
        }
    }
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM customer WHERE company = 'Chängèd; \"co\"'"
        ),
        changed
    );

    let overwrite = restore(
        &mut c,
        id,
        r#"{"mode": "merge", "on_conflict": "overwrite"}"#,
    );
    assert_eq!(overwrite["verified"], true);
    let e = table(&overwrite, "public.customer");
    assert_eq!(
        (e["inserted"].as_i64(), e["updated"].as_i64()),
        (Some(0), Some(n("customer")))
    );
    assert_eq!(
        sums(&mut c, CHINOOK_EXACT, "3"),
        before,
        "every row the backup's again"
    );
    for (t, o) in ["4", "5"].iter().zip(&others) {
        assert_eq!(&sums(&mut c, CHINOOK_EXACT, t), o, "employee {t} untouched");
    }
    // with the default on_conflict "error": the rows there are refused, named
    assert_sqlstate(
        try_restore(&mut c, id, r#"{"mode": "merge"}"#),
        "23505",
        "1 row(s) of public.employee in backup",
    );
}

/// Northwind's rows of one customer in schema `@S`, keys included (orders by their columns of
/// the backup: the staging copy has one more).
const NORTHWIND_EXACT: &[(&str, &str)] = &[
    ("customers", "SELECT x::text FROM @S.customers x WHERE customer_id = $1"),
    (
        "orders",
        "SELECT (x.order_id, x.customer_id, x.employee_id, x.order_date, x.required_date, x.shipped_date, x.ship_via,
                 x.freight, x.ship_name, x.ship_address, x.ship_city, x.ship_region, x.ship_postal_code, x.ship_country)::text
           FROM @S.orders x WHERE customer_id = $1",
    ),
    (
        "order_details",
        "SELECT d::text FROM @S.order_details d JOIN @S.orders o USING (order_id) WHERE o.customer_id = $1",
    ),
    (
        "customer_customer_demo",
        "SELECT x::text FROM @S.customer_customer_demo x WHERE customer_id = $1",
    ),
];

/// [`sums`] of [`NORTHWIND_EXACT`] in `schema`.
fn northwind_sums(c: &mut Client, schema: &str, tenant: &str) -> Vec<(String, i64, String)> {
    let queries: Vec<(&str, String)> = NORTHWIND_EXACT
        .iter()
        .map(|(n, q)| (*n, q.replace("@S", &quote_ident(schema))))
        .collect();
    let refs: Vec<(&str, &str)> = queries.iter().map(|(n, q)| (*n, q.as_str())).collect();
    sums(c, &refs, tenant)
}

/// Northwind's ALFKI restored into a staging schema with a hostile name (its tables made with
/// LIKE, one column added since), equal to the original rows, keys included; the original
/// untouched; restored again over what is staged. A clone is refused: northwind's keys have
/// no sequences (named).
pub fn restore_target_schema_northwind(cluster: &Cluster) {
    let db = "e2e_restore_staging_northwind";
    cluster.load_northwind(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    create_scope(&mut c, "northwind", "customers", "customer_id", "{}");
    let before = northwind_sums(&mut c, "public", "ALFKI");
    // (northwind's customer_customer_demo is empty: an empty table round-trips too)
    assert!(before[..3].iter().all(|(_, n, _)| *n > 0), "{before:?}");
    let id = backup(&mut c, "northwind", "ALFKI", "{}");

    let staging = "Stäge \"1\"; $1.x'";
    let q = quote_ident(staging);
    let opts = format!(r#"{{"target_schema": {}}}"#, json_str(staging));
    assert_sqlstate(try_restore(&mut c, id, &opts), "3F000", staging);
    exec(&mut c, &format!("CREATE SCHEMA {q}"));
    for t in ["customers", "orders", "order_details"] {
        exec(
            &mut c,
            &format!("CREATE TABLE {q}.{t} (LIKE public.{t} INCLUDING ALL)"),
        );
    }
    assert_sqlstate(
        try_restore(&mut c, id, &opts),
        "42P01",
        &format!("table {q}.customer_customer_demo for public.customer_customer_demo of backup {id} does not exist"),
    );
    exec(
        &mut c,
        &format!(
            "CREATE TABLE {q}.customer_customer_demo (LIKE public.customer_customer_demo INCLUDING ALL);
             ALTER TABLE {q}.orders ADD COLUMN \"Stägëd at\" timestamptz DEFAULT '2025-01-01 00:00+00'"
        ),
    );
    let result = restore(&mut c, id, &opts);
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(
        table(&result, &format!("{q}.orders"))["added_columns"],
        serde_json::json!(["Stägëd at"])
    );
    assert_eq!(
        northwind_sums(&mut c, staging, "ALFKI"),
        before,
        "the staged rows are the original's"
    );
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM {q}.orders WHERE \"Stägëd at\" = '2025-01-01 00:00+00'")
        ),
        before[1].1,
        "the column added since takes its default"
    );
    assert_eq!(
        northwind_sums(&mut c, "public", "ALFKI"),
        before,
        "the original untouched"
    );
    // again, over what is staged: replaced, the same again
    exec(&mut c, &format!("UPDATE {q}.orders SET freight = 0"));
    restore(&mut c, id, &opts);
    assert_eq!(northwind_sums(&mut c, staging, "ALFKI"), before);
    // no sequences in northwind: a clone cannot give orders fresh keys
    assert_sqlstate(
        try_restore(&mut c, id, r#"{"mode": "clone", "new_tenant": "ZZZZZ"}"#),
        "55000",
        "the rows of public.orders cannot get fresh keys: its primary key order_id (smallint) references no re-keyed table",
    );
}
