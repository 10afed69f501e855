//! Several tenants migrated one after another into one target (issue 11): the rows they share
//! (shared tables, and the managers their root rows point at, which belong to other tenants)
//! are copied once and reused by the next migrations; undoing one migration (rollback, cancel
//! of a failed or a running job) removes only what no other migration into that target uses,
//! says what it kept, and leaves the target as it was before the job.
//!
//! The schema built here: `"Staff Member"` is the root (each staff member a tenant) and points
//! at its manager (another tenant); customers belong to a staff member, order lines to a
//! customer and reference products (shared), which reference categories (shared). Names are
//! mixed case, with spaces and non-ASCII; the target schemas are hostile. Chinook's
//! `employee.reports_to` gives the same shape on real data.
//!
//! A target is compared with the source through what its rows say, not their keys (UUIDs):
//! every row is described by its non-key columns and its parents' (an inner join, so a
//! dangling reference shows as a missing row), counted and checksummed.

use std::thread;
use std::time::Duration;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{describe_error, quote_ident, Cluster};

use crate::common::*;

const SRC: &str = "\"Src ü\"";

const SCHEMA: &str = r#"
    CREATE SCHEMA "Src ü";
    CREATE TABLE "Src ü".category (category_id int PRIMARY KEY, name text NOT NULL UNIQUE);
    CREATE TABLE "Src ü".product (
        product_id int PRIMARY KEY,
        category_id int NOT NULL REFERENCES "Src ü".category,
        name text NOT NULL UNIQUE);
    CREATE TABLE "Src ü"."Staff Member" (
        staff_id int PRIMARY KEY,
        name text NOT NULL UNIQUE,
        manager_id int REFERENCES "Src ü"."Staff Member");
    CREATE TABLE "Src ü".customer (
        customer_id int PRIMARY KEY,
        staff_id int NOT NULL REFERENCES "Src ü"."Staff Member",
        name text NOT NULL UNIQUE);
    CREATE TABLE "Src ü"."Order Line" (
        line_id int PRIMARY KEY,
        customer_id int NOT NULL REFERENCES "Src ü".customer,
        product_id int NOT NULL REFERENCES "Src ü".product,
        qty int NOT NULL);
    INSERT INTO "Src ü".category SELECT g, 'category ' || g FROM generate_series(1, 4) g;
    -- Products 1-3 in category 1, 4-6 in 2, 7-9 in 3, 10 in 4.
    INSERT INTO "Src ü".product SELECT g, (g - 1) / 3 + 1, 'product ' || g FROM generate_series(1, 10) g;
    -- Boss (1) <- Mia (2) <- Ann (3), Bob (4), Cyd (5); Dan (6) reports to the boss.
    INSERT INTO "Src ü"."Staff Member" VALUES
        (1, 'Boss', NULL), (2, 'Mia', 1), (3, 'Ann', 2), (4, 'Bob', 2), (5, 'Cyd', 2), (6, 'Dan', 1);
    -- Three customers each for staff 3, 4, 5 (and one for Dan, never migrated here).
    INSERT INTO "Src ü".customer SELECT g, (g - 1) / 3 + 3, 'customer ' || g FROM generate_series(1, 9) g;
    INSERT INTO "Src ü".customer VALUES (10, 6, 'customer 10');
    -- Staff 3's customers buy products 1-4, staff 4's 3-6, staff 5's 6-7, Dan's 10.
    INSERT INTO "Src ü"."Order Line"
    SELECT row_number() OVER (ORDER BY c, p), c, p, c * p
      FROM generate_series(1, 10) c,
           LATERAL unnest(CASE (c - 1) / 3 WHEN 0 THEN ARRAY[1, 2, 3, 4] WHEN 1 THEN ARRAY[3, 4, 5, 6]
                                         WHEN 2 THEN ARRAY[6, 7] ELSE ARRAY[10] END) p;
    SELECT tenant_ops.create_scope('staff', '"Src ü"."Staff Member"', 'staff_id');
"#;

/// The tables of the built schema, parents first.
const TABLES: [&str; 5] = [
    "category",
    "product",
    "\"Staff Member\"",
    "customer",
    "\"Order Line\"",
];

fn setup(cluster: &Cluster, db: &str) -> Client {
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(&mut c, SCHEMA);
    c
}

/// What the rows of each table say (count of the table, and count and checksum of its rows
/// described through their parents): the five relations are FROM items for category, product,
/// staff, customer and order line.
fn describe(c: &mut Client, rel: [String; 5]) -> Vec<(String, i64, String)> {
    let [cat, prod, staff, cust, line] = rel;
    let queries = [
        ("category", cat.clone(), format!("SELECT k.name FROM {cat} k")),
        (
            "product",
            prod.clone(),
            format!("SELECT p.name, k.name FROM {prod} p JOIN {cat} k ON k.category_id = p.category_id"),
        ),
        (
            "staff",
            staff.clone(),
            format!(
                "SELECT s.name, m.name FROM {staff} s LEFT JOIN {staff} m ON m.staff_id = s.manager_id
                  WHERE s.manager_id IS NULL OR m.staff_id IS NOT NULL"
            ),
        ),
        (
            "customer",
            cust.clone(),
            format!("SELECT x.name, s.name FROM {cust} x JOIN {staff} s ON s.staff_id = x.staff_id"),
        ),
        (
            "order line",
            line.clone(),
            format!(
                "SELECT x.name, p.name, l.qty FROM {line} l JOIN {cust} x ON x.customer_id = l.customer_id
                   JOIN {prod} p ON p.product_id = l.product_id"
            ),
        ),
    ];
    queries
        .iter()
        .map(|(name, from, rows)| {
            let sql = format!(
                "SELECT (SELECT count(*) FROM {from} z), count(*),
                        coalesce(md5(string_agg(r::text, E'\\n' ORDER BY r::text)), '')
                   FROM ({rows}) r"
            );
            let row = c
                .query_one(&sql, &[])
                .unwrap_or_else(|e| panic!("{}\n--- SQL ---\n{sql}", describe_error(&e)));
            let (all, described): (i64, i64) = (row.get(0), row.get(1));
            assert_eq!(
                all, described,
                "{name}: {all} rows but {described} whose references resolve ({from})"
            );
            (name.to_string(), all, row.get::<_, String>(2))
        })
        .collect()
}

/// The target schema's rows, described.
fn described_target(c: &mut Client, schema: &str) -> Vec<(String, i64, String)> {
    let s = quote_ident(schema);
    describe(c, TABLES.map(|t| format!("{s}.{t}")))
}

/// What the target must hold once `tenants` are migrated: their staff rows and managers up
/// the chain, their customers and order lines, and the products and categories those use.
fn described_source(c: &mut Client, tenants: &[i32]) -> Vec<(String, i64, String)> {
    let list = format!(
        "ARRAY[{}]::int[]",
        tenants
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let line = format!(
        "(SELECT * FROM {SRC}.\"Order Line\" WHERE customer_id IN
           (SELECT customer_id FROM {SRC}.customer WHERE staff_id = ANY({list})))"
    );
    let prod = format!(
        "(SELECT * FROM {SRC}.product WHERE product_id IN (SELECT product_id FROM {line} l))"
    );
    describe(
        c,
        [
            format!(
                "(SELECT * FROM {SRC}.category WHERE category_id IN (SELECT category_id FROM {prod} p))"
            ),
            prod.clone(),
            format!(
                "(SELECT * FROM {SRC}.\"Staff Member\" WHERE staff_id IN (
                   WITH RECURSIVE up(id) AS (SELECT unnest({list})
                     UNION SELECT m.manager_id FROM {SRC}.\"Staff Member\" m JOIN up ON m.staff_id = up.id)
                   SELECT id FROM up))"
            ),
            format!("(SELECT * FROM {SRC}.customer WHERE staff_id = ANY({list}))"),
            line,
        ],
    )
}

/// Every table of the target schema with its row count and a checksum of its rows as they
/// are (keys included): what "the target as it was" means.
fn snapshot(c: &mut Client, schema: &str) -> Vec<(String, i64, String)> {
    let s = quote_ident(schema);
    TABLES
        .iter()
        .map(|t| {
            let row = c
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '')
                           FROM {s}.{t} x"
                    ),
                    &[],
                )
                .unwrap_or_else(|e| panic!("{s}.{t}: {}", describe_error(&e)));
            (t.to_string(), row.get(0), row.get(1))
        })
        .collect()
}

fn counts(c: &mut Client, schema: &str) -> Vec<i64> {
    snapshot(c, schema).iter().map(|(_, n, _)| *n).collect()
}

#[track_caller]
fn status(c: &mut Client, job: i64) -> String {
    c.query_one("SELECT status FROM tenant_ops.jobs WHERE id = $1", &[&job])
        .unwrap_or_else(|e| panic!("job {job}: {}", describe_error(&e)))
        .get(0)
}

#[track_caller]
fn job_error(c: &mut Client, job: i64) -> Option<String> {
    c.query_one("SELECT error FROM tenant_ops.jobs WHERE id = $1", &[&job])
        .unwrap_or_else(|e| panic!("job {job}: {}", describe_error(&e)))
        .get(0)
}

/// The job's result (jsonb as text).
#[track_caller]
fn result_of(c: &mut Client, job: i64) -> String {
    let text: Option<String> = c
        .query_one(
            "SELECT result::text FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("job {job}: {}", describe_error(&e)))
        .get(0);
    text.unwrap_or_else(|| "null".into())
}

/// `rollback_migration(job)`, which must succeed: its result (jsonb as text).
#[track_caller]
fn rollback(c: &mut Client, job: i64) -> String {
    match try_rollback(c, job) {
        Ok(text) => text,
        Err(e) => panic!("rollback_migration({job}) failed: {}", describe_error(&e)),
    }
}

/// Per target table of an undo's result (the table named with `part` in it): the rows it kept
/// because other migrations into the target use them.
#[track_caller]
fn kept(c: &mut Client, result: &str, part: &str) -> i64 {
    let n: Option<i64> = c
        .query_one(
            "SELECT (SELECT (t ->> 'kept')::int8
                       FROM pg_catalog.jsonb_array_elements($1::text::jsonb -> 'rolled_back') t
                      WHERE strpos(t ->> 'table', $2) > 0)",
            &[&result, &part],
        )
        .unwrap_or_else(|e| panic!("reading {result}: {}", describe_error(&e)))
        .get(0);
    n.unwrap_or_else(|| panic!("no \"kept\" count for {part:?} in {result}"))
}

/// (kept staff, kept products, kept categories) of an undo's result.
#[track_caller]
fn kept3(c: &mut Client, result: &str) -> (i64, i64, i64) {
    (
        kept(c, result, "Staff"),
        kept(c, result, "product"),
        kept(c, result, "category"),
    )
}

#[track_caller]
fn migrate_ok(c: &mut Client, tenant: &str, target: &str, options: &str) -> i64 {
    let job = migrate_tenant(c, "staff", tenant, target, options, false);
    assert_eq!(status(c, job), "succeeded", "job {job} (tenant {tenant})");
    job
}

/// (a) Three tenants, one after another, into one target, with each id strategy: the shared
/// rows (products, categories) and the managers (rows of other tenants) are copied once and
/// reused; every reference resolves; nothing is there twice.
pub fn shared_rows_three_tenants_one_target(cluster: &Cluster) {
    let mut c = setup(cluster, "e2e_shared_three_tenants");
    for strategy in ["keep", "uuid", "uuid5"] {
        let target = format!("T.$1 \"q\" 'x'; {strategy}");
        exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(&target)));
        let options =
            format!(r#"{{"create_target": true, "shared": "copy", "id_strategy": "{strategy}"}}"#);
        for (i, tenant) in [3, 4, 5].into_iter().enumerate() {
            let job = match try_migrate_tenant(
                &mut c,
                "staff",
                &tenant.to_string(),
                &target,
                &options,
                false,
            ) {
                Ok(job) => job,
                Err(e) => panic!(
                    "{strategy}: migrating tenant {tenant} after {i} other(s) into the same target failed: {}",
                    describe_error(&e)
                ),
            };
            assert_eq!(status(&mut c, job), "succeeded", "{strategy}: job {job}");
            let so_far = [3, 4, 5][..=i].to_vec();
            assert_eq!(
                described_target(&mut c, &target),
                described_source(&mut c, &so_far),
                "{strategy}: the target after tenants {so_far:?}"
            );
        }
        // Exact counts: staff 1-5 (the boss and Mia once, as managers of all three), 9
        // customers, 30 order lines, products 1-7 once each, categories 1-3 once each.
        assert_eq!(
            counts(&mut c, &target),
            vec![3, 7, 5, 9, 30],
            "{strategy}: category, product, staff, customer, order line"
        );
        let s = quote_ident(&target);
        for (table, col) in [
            ("category", "name"),
            ("product", "name"),
            ("\"Staff Member\"", "name"),
            ("customer", "name"),
        ] {
            assert_eq!(
                scalar(
                    &mut c,
                    &format!("SELECT count(*) - count(DISTINCT {col}) FROM {s}.{table}")
                ),
                0,
                "{strategy}: no row of {table} twice"
            );
        }
        assert_eq!(
            scalar(
                &mut c,
                &format!(
                    "SELECT count(*) FROM {s}.\"Staff Member\" e WHERE e.manager_id IS NOT NULL
                        AND NOT EXISTS (SELECT FROM {s}.\"Staff Member\" m WHERE m.staff_id = e.manager_id)"
                )
            ),
            0,
            "{strategy}: every manager reference resolves"
        );
        // Each of the three jobs verified.
        assert_eq!(
            scalar(
                &mut c,
                &format!(
                    "SELECT count(*) FROM tenant_ops.jobs j, tenant_ops.job_report(j.id) r
                      WHERE j.kind = 'migrate' AND j.options ->> 'id_strategy' = '{strategy}'
                        AND j.status = 'succeeded' AND r.verified"
                )
            ),
            15,
            "{strategy}: every table of the three jobs verified"
        );
    }
}

/// (b) Two migrations into one target share products, categories and managers: rolling back
/// either (in either order) removes only its own rows and the shared ones nobody else uses,
/// and says what it kept; the second rollback empties the target.
pub fn shared_rows_rollback_keeps_what_others_use(cluster: &Cluster) {
    let mut c = setup(cluster, "e2e_shared_rollback");
    for strategy in ["keep", "uuid", "uuid5"] {
        let options =
            format!(r#"{{"create_target": true, "shared": "copy", "id_strategy": "{strategy}"}}"#);
        // Tenant 4 alone: what the target must be once tenant 3's job is undone.
        let alone = format!("alone {strategy}");
        exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(&alone)));
        migrate_ok(&mut c, "4", &alone, &options);
        let only_4 = described_target(&mut c, &alone);
        assert_eq!(
            only_4,
            described_source(&mut c, &[4]),
            "{strategy}: tenant 4 alone"
        );

        // First tenant's job undone first.
        let target = format!("T;'{strategy}' \"1\"");
        exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(&target)));
        let first = migrate_ok(&mut c, "3", &target, &options);
        let second = migrate_ok(&mut c, "4", &target, &options);
        assert_eq!(
            counts(&mut c, &target),
            vec![2, 6, 4, 6, 24],
            "{strategy}: tenants 3 and 4"
        );
        let r = rollback(&mut c, first);
        assert_eq!(status(&mut c, first), "rolled_back");
        assert_eq!(
            described_target(&mut c, &target),
            only_4,
            "{strategy}: after rolling back tenant 3's job the target holds tenant 4's rows only"
        );
        // Kept for job `second`: the boss and Mia, products 3 and 4, categories 1 and 2.
        assert_eq!(
            kept3(&mut c, &r),
            (2, 2, 2),
            "{strategy}: what the rollback of job {first} kept: {r}"
        );
        rollback(&mut c, second);
        assert_eq!(
            counts(&mut c, &target),
            vec![0; 5],
            "{strategy}: both undone: the target is empty"
        );

        // The second job undone first, then the first.
        let first = migrate_ok(&mut c, "3", &target, &options);
        let after_first = snapshot(&mut c, &target);
        let second = migrate_ok(&mut c, "4", &target, &options);
        let r = rollback(&mut c, second);
        assert_eq!(
            snapshot(&mut c, &target),
            after_first,
            "{strategy}: rolling back the second job leaves the target as the first left it"
        );
        assert_eq!(
            kept3(&mut c, &r),
            (2, 2, 2),
            "{strategy}: what the rollback of job {second} kept: {r}"
        );
        rollback(&mut c, first);
        assert_eq!(
            counts(&mut c, &target),
            vec![0; 5],
            "{strategy}: empty again"
        );
    }
}

/// A staff member migrated after a colleague brought it along as a manager: its own row is
/// reused, not copied twice, and each undo leaves what the other still needs.
pub fn shared_rows_own_row_copied_earlier_as_a_manager(cluster: &Cluster) {
    let mut c = setup(cluster, "e2e_shared_own_row");
    for strategy in ["keep", "uuid5"] {
        let options =
            format!(r#"{{"create_target": true, "shared": "copy", "id_strategy": "{strategy}"}}"#);
        let target = format!("own {strategy}");
        exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(&target)));
        // Ann (3) brings the boss and Mia along; then Mia (2), then the boss (1) themselves.
        let ann = migrate_ok(&mut c, "3", &target, &options);
        let mia = migrate_ok(&mut c, "2", &target, &options);
        let boss = migrate_ok(&mut c, "1", &target, &options);
        assert_eq!(
            described_target(&mut c, &target),
            described_source(&mut c, &[1, 2, 3]),
            "{strategy}: staff 3, 2, 1 one after another"
        );
        assert_eq!(counts(&mut c, &target), vec![2, 4, 3, 3, 12], "{strategy}");
        // Ann's job undone: Mia and the boss stay (their own jobs' rows).
        rollback(&mut c, ann);
        assert_eq!(
            described_target(&mut c, &target),
            described_source(&mut c, &[1, 2]),
            "{strategy}: after undoing Ann's job"
        );
        rollback(&mut c, boss);
        assert_eq!(
            described_target(&mut c, &target),
            described_source(&mut c, &[2]),
            "{strategy}: after undoing the boss's job, Mia's job still needs the boss"
        );
        rollback(&mut c, mia);
        assert_eq!(counts(&mut c, &target), vec![0; 5], "{strategy}: empty");
    }
}

/// (b) cancel_job of a failed job and of a running one, into a target another migration
/// shares: both end "cancelled" and leave the target exactly as before the job.
pub fn shared_rows_cancel_failed_and_running(cluster: &Cluster) {
    let db = "e2e_shared_cancel";
    let mut c = setup(cluster, db);
    let options = r#"{"create_target": true, "shared": "copy", "id_strategy": "uuid5"}"#;
    let target = "cancel 'T' $1";
    exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(target)));
    migrate_ok(&mut c, "3", target, options);
    let before = snapshot(&mut c, target);
    let s = quote_ident(target);

    // A failed job: tenant 4's order line of customer 4 and product 5 (qty 20) is refused by
    // the target, after staff, customers, products and categories were committed.
    exec(
        &mut c,
        &format!("ALTER TABLE {s}.\"Order Line\" ADD CONSTRAINT no_twenty CHECK (qty <> 20)"),
    );
    let deferred =
        r#"{"create_target": true, "shared": "copy", "id_strategy": "uuid5", "defer": true}"#;
    let job = migrate_tenant(&mut c, "staff", "4", target, deferred, false);
    let run = try_run_job(&mut c, job);
    assert!(run.is_err(), "job {job} fails on the CHECK constraint");
    assert_eq!(status(&mut c, job), "failed");
    assert_ne!(
        snapshot(&mut c, target),
        before,
        "the failed job {job} left rows behind"
    );
    assert_eq!(control(&mut c, "cancel_job", job), "cancelled");
    assert_eq!(
        status(&mut c, job),
        "cancelled",
        "job {job} after cancel_job"
    );
    assert_eq!(
        snapshot(&mut c, target),
        before,
        "cancelling failed job {job} leaves the target as before it"
    );
    let r = result_of(&mut c, job);
    assert_eq!(
        kept3(&mut c, &r),
        (2, 2, 2),
        "what cancelling job {job} kept: {r}"
    );
    exec(
        &mut c,
        &format!("ALTER TABLE {s}.\"Order Line\" DROP CONSTRAINT no_twenty"),
    );

    // A running job, cancelled mid-copy: each order line batch takes a while.
    exec(
        &mut c,
        &format!(
            "CREATE FUNCTION {s}.slow() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM pg_sleep(0.1); RETURN NULL; END $$;
             CREATE TRIGGER slow AFTER INSERT ON {s}.\"Order Line\" FOR EACH STATEMENT EXECUTE FUNCTION {s}.slow();"
        ),
    );
    let slow = r#"{"create_target": true, "shared": "copy", "id_strategy": "uuid5", "defer": true, "batch_size": 1}"#;
    let job = migrate_tenant(&mut c, "staff", "4", target, slow, false);
    let mut runner = cluster.connect(db);
    let call = thread::spawn(move || {
        let r = runner.batch_execute(&format!("CALL tenant_ops.run_job({job})"));
        r.map_err(|e| describe_error(&e))
    });
    until(
        &format!("job {job} copies order lines"),
        Duration::from_secs(60),
        || {
            let done: i64 = c
                .query_one(
                    "SELECT coalesce(sum(p.rows_done), 0)::int8 FROM tenant_ops.progress p
                      WHERE p.job_id = $1 AND p.table_name::text LIKE '%Order Line%'",
                    &[&job],
                )
                .unwrap()
                .get(0);
            (done >= 3).then_some(())
        },
    );
    assert_eq!(control(&mut c, "cancel_job", job), "cancelling");
    let outcome = call.join().expect("the CALL thread");
    assert!(
        outcome.is_ok(),
        "CALL run_job({job}) after a successful cancel: {outcome:?}"
    );
    assert_eq!(
        (status(&mut c, job), job_error(&mut c, job)),
        ("cancelled".to_string(), None),
        "job {job} after cancel_job mid-run"
    );
    assert_eq!(
        snapshot(&mut c, target),
        before,
        "cancelling running job {job} leaves the target as before it"
    );
}

/// (b) The plain case: two customers of the same staff member into one target, sharing
/// every product, category and staff row (the scope is rooted at customer here, so staff
/// rows are shared rows too, with their manager chain). Undoing either migration, or
/// cancelling a failed one, removes only what the other does not use.
pub fn shared_rows_undo_with_shared_products(cluster: &Cluster) {
    let mut c = setup(cluster, "e2e_shared_products");
    exec(
        &mut c,
        r#"SELECT tenant_ops.create_scope('shop', '"Src ü".customer', 'customer_id')"#,
    );
    let migrate = |c: &mut Client, tenant: &str, target: &str, options: &str| -> i64 {
        let job = migrate_tenant(c, "shop", tenant, target, options, false);
        assert_eq!(status(c, job), "succeeded", "job {job} (customer {tenant})");
        job
    };
    for strategy in ["keep", "uuid", "uuid5"] {
        let options =
            format!(r#"{{"create_target": true, "shared": "copy", "id_strategy": "{strategy}"}}"#);
        let target = format!("shop 'x' {strategy}");
        exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(&target)));
        let first = migrate(&mut c, "1", &target, &options);
        let after_first = snapshot(&mut c, &target);
        // Customer 1 (Ann's): products 1-4, categories 1-2, Ann with Mia and the boss.
        assert_eq!(
            counts(&mut c, &target),
            vec![2, 4, 3, 1, 4],
            "{strategy}: customer 1"
        );
        let second = migrate(&mut c, "2", &target, &options);
        assert_eq!(
            counts(&mut c, &target),
            vec![2, 4, 3, 2, 8],
            "{strategy}: customers 1, 2"
        );
        let r = rollback(&mut c, second);
        assert_eq!(
            snapshot(&mut c, &target),
            after_first,
            "{strategy}: undoing the second job leaves the first one's rows"
        );
        assert_eq!(
            kept3(&mut c, &r),
            (3, 4, 2),
            "{strategy}: kept by job {second}: {r}"
        );
        // The first job undone while the second (again) uses its shared rows.
        let second = migrate(&mut c, "2", &target, &options);
        let r = rollback(&mut c, first);
        assert_eq!(
            kept3(&mut c, &r),
            (3, 4, 2),
            "{strategy}: kept by job {first}: {r}"
        );
        assert_eq!(
            counts(&mut c, &target),
            vec![2, 4, 3, 1, 4],
            "{strategy}: customer 2 left"
        );
        rollback(&mut c, second);
        assert_eq!(
            counts(&mut c, &target),
            vec![0; 5],
            "{strategy}: both undone"
        );

        // A failed job cancelled: customer 2's line of product 4 (qty 8) is refused, after
        // every shared row was committed.
        migrate(&mut c, "1", &target, &options);
        let before = snapshot(&mut c, &target);
        let s = quote_ident(&target);
        exec(
            &mut c,
            &format!("ALTER TABLE {s}.\"Order Line\" ADD CONSTRAINT no_eight CHECK (qty <> 8)"),
        );
        let deferred = format!(
            r#"{{"create_target": true, "shared": "copy", "id_strategy": "{strategy}", "defer": true, "batch_size": 1}}"#
        );
        let job = migrate_tenant(&mut c, "shop", "2", &target, &deferred, false);
        assert!(
            try_run_job(&mut c, job).is_err(),
            "job {job} fails on the CHECK"
        );
        assert_eq!(status(&mut c, job), "failed");
        assert_ne!(
            snapshot(&mut c, &target),
            before,
            "failed job {job} left rows"
        );
        assert_eq!(control(&mut c, "cancel_job", job), "cancelled");
        assert_eq!(
            (status(&mut c, job), job_error(&mut c, job)),
            ("cancelled".to_string(), None),
            "{strategy}: job {job} after cancel_job"
        );
        assert_eq!(
            snapshot(&mut c, &target),
            before,
            "{strategy}: cancelling failed job {job} leaves the target as before it"
        );
    }
}

/// A `shared: expect` migration copies no shared rows and so records none: undoing the job
/// that copied them keeps those the expecting job's rows reference (the rollback used to fail
/// with 23503), and undoing the expecting job leaves them (they are nobody's to remove).
pub fn shared_rows_rollback_under_an_expecting_job(cluster: &Cluster) {
    let mut c = setup(cluster, "e2e_shared_expect");
    exec(
        &mut c,
        r#"SELECT tenant_ops.create_scope('shop', '"Src ü".customer', 'customer_id')"#,
    );
    for strategy in ["keep", "uuid", "uuid5"] {
        let target = format!("expect \"{strategy}\"");
        exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(&target)));
        let copy =
            format!(r#"{{"create_target": true, "shared": "copy", "id_strategy": "{strategy}"}}"#);
        let first = migrate_tenant(&mut c, "shop", "1", &target, &copy, false);
        assert_eq!(
            status(&mut c, first),
            "succeeded",
            "{strategy}: job {first}"
        );
        let expect = format!(r#"{{"shared": "expect", "id_strategy": "{strategy}"}}"#);
        let second = migrate_tenant(&mut c, "shop", "2", &target, &expect, false);
        assert_eq!(
            status(&mut c, second),
            "succeeded",
            "{strategy}: job {second}"
        );
        // Customers 1 and 2 (both Ann's) buy products 1-4 of categories 1-2.
        assert_eq!(
            counts(&mut c, &target),
            vec![2, 4, 3, 2, 8],
            "{strategy}: both in"
        );
        let r = rollback(&mut c, first);
        assert_eq!(
            kept3(&mut c, &r),
            (3, 4, 2),
            "{strategy}: kept by job {first}: {r}"
        );
        assert_eq!(
            counts(&mut c, &target),
            vec![2, 4, 3, 1, 4],
            "{strategy}: customer 2 and the shared rows it references left"
        );
        rollback(&mut c, second);
        assert_eq!(
            counts(&mut c, &target),
            vec![2, 4, 3, 0, 0],
            "{strategy}: the expecting job removed its own rows only"
        );
    }
}

/// Chinook: employees 3, 4 and 5 (sales agents, all reporting to employee 2, who reports to
/// 1) one after another into one target, then undone one by one.
pub fn shared_rows_chinook_three_employees(cluster: &Cluster) {
    let db = "e2e_shared_chinook";
    cluster.load_chinook(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    create_scope(&mut c, "chinook", "employee", "employee_id", "{}");
    // Counts for a set of employees (the parameter: an int[] as text).
    let oracle: [(&str, &str); 9] = [
        (
            "employee",
            "SELECT count(*) FROM employee WHERE employee_id IN (WITH RECURSIVE up(id) AS (
               SELECT unnest($1::text::int[]) UNION SELECT e.reports_to FROM employee e JOIN up ON e.employee_id = up.id)
             SELECT id FROM up)",
        ),
        ("customer", "SELECT count(*) FROM customer WHERE support_rep_id = ANY($1::text::int[])"),
        (
            "invoice",
            "SELECT count(*) FROM invoice WHERE customer_id IN
               (SELECT customer_id FROM customer WHERE support_rep_id = ANY($1::text::int[]))",
        ),
        ("invoice_line", LINES),
        ("track", "SELECT count(DISTINCT track_id) FROM (LINES) l"),
        ("album", "SELECT count(DISTINCT album_id) FROM track WHERE track_id IN (SELECT track_id FROM (LINES) l)"),
        (
            "artist",
            "SELECT count(DISTINCT artist_id) FROM album WHERE album_id IN
               (SELECT album_id FROM track WHERE track_id IN (SELECT track_id FROM (LINES) l))",
        ),
        ("genre", "SELECT count(DISTINCT genre_id) FROM track WHERE track_id IN (SELECT track_id FROM (LINES) l)"),
        (
            "media_type",
            "SELECT count(DISTINCT media_type_id) FROM track WHERE track_id IN (SELECT track_id FROM (LINES) l)",
        ),
    ];
    const LINES: &str = "SELECT l.* FROM invoice_line l JOIN invoice i USING (invoice_id)
                           JOIN customer c USING (customer_id) WHERE c.support_rep_id = ANY($1::text::int[])";
    let expected = |c: &mut Client, tenants: &str| -> Vec<(String, i64)> {
        oracle
            .iter()
            .map(|(t, sql)| {
                let sql = if *t == "invoice_line" {
                    format!("SELECT count(*) FROM ({LINES}) l")
                } else {
                    sql.replace("LINES", LINES)
                };
                (t.to_string(), count(c, &sql, tenants))
            })
            .collect()
    };
    let actual = |c: &mut Client, schema: &str| -> Vec<(String, i64)> {
        oracle
            .iter()
            .map(|(t, _)| {
                (
                    t.to_string(),
                    scalar(
                        c,
                        &format!("SELECT count(*) FROM {}.{t}", quote_ident(schema)),
                    ),
                )
            })
            .collect()
    };
    // The whole of chinook's sales: every invoice line belongs to a customer of 3, 4 or 5.
    let all = expected(&mut c, "{3,4,5}");
    assert_eq!(
        all.iter().map(|(_, n)| *n).collect::<Vec<_>>()[..4],
        [5, 59, 412, 2240],
        "chinook: employees 1-5, every customer, invoice and line"
    );
    for strategy in ["keep", "uuid", "uuid5"] {
        let target = format!("chinook {strategy}");
        exec(&mut c, &format!("CREATE SCHEMA {}", quote_ident(&target)));
        let options =
            format!(r#"{{"create_target": true, "shared": "copy", "id_strategy": "{strategy}"}}"#);
        let mut jobs = vec![];
        for tenant in ["3", "4", "5"] {
            let job = match try_migrate_tenant(&mut c, "chinook", tenant, &target, &options, false)
            {
                Ok(j) => j,
                Err(e) => panic!(
                    "{strategy}: migrating employee {tenant} into {target:?} after {:?} failed: {}",
                    jobs,
                    describe_error(&e)
                ),
            };
            assert_eq!(status(&mut c, job), "succeeded");
            jobs.push(job);
        }
        assert_eq!(
            actual(&mut c, &target),
            all,
            "{strategy}: employees 3, 4, 5"
        );
        let s = quote_ident(&target);
        assert_eq!(
            scalar(
                &mut c,
                &format!(
                    "SELECT count(*) FROM {s}.employee e WHERE e.reports_to IS NOT NULL
                        AND NOT EXISTS (SELECT FROM {s}.employee m WHERE m.employee_id = e.reports_to)"
                )
            ),
            0,
            "{strategy}: every reports_to resolves"
        );
        assert_eq!(
            scalar(
                &mut c,
                &format!(
                    "SELECT count(*) - count(DISTINCT (first_name, last_name)) FROM {s}.employee"
                )
            ),
            0,
            "{strategy}: no employee twice"
        );
        // Undone one by one: what is left is what the other jobs need.
        rollback(&mut c, jobs[0]);
        assert_eq!(
            actual(&mut c, &target),
            expected(&mut c, "{4,5}"),
            "{strategy}: after undoing employee 3's job"
        );
        rollback(&mut c, jobs[2]);
        assert_eq!(
            actual(&mut c, &target),
            expected(&mut c, "{4}"),
            "{strategy}: after undoing employee 5's job"
        );
        rollback(&mut c, jobs[1]);
        assert!(
            actual(&mut c, &target).iter().all(|(_, n)| *n == 0),
            "{strategy}: all undone: the target is empty"
        );
    }
}

type SubTest = (&'static str, fn(&Cluster));

const SUBTESTS: [SubTest; 7] = [
    (
        "rollback_under_an_expecting_job",
        shared_rows_rollback_under_an_expecting_job,
    ),
    (
        "three_tenants_one_target",
        shared_rows_three_tenants_one_target,
    ),
    (
        "rollback_keeps_what_others_use",
        shared_rows_rollback_keeps_what_others_use,
    ),
    (
        "own_row_copied_earlier_as_a_manager",
        shared_rows_own_row_copied_earlier_as_a_manager,
    ),
    (
        "cancel_failed_and_running",
        shared_rows_cancel_failed_and_running,
    ),
    (
        "undo_with_shared_products",
        shared_rows_undo_with_shared_products,
    ),
    (
        "chinook_three_employees",
        shared_rows_chinook_three_employees,
    ),
];

/// The runner's one entry for this file (its name lists the parts, so that a filter naming
/// one part selects the entry); the parts a filter names run, or all of them.
pub const ENTRY: &str = "shared_rows: three_tenants_one_target, rollback_keeps_what_others_use, own_row_copied_earlier_as_a_manager, cancel_failed_and_running, undo_with_shared_products, chinook_three_employees, rollback_under_an_expecting_job";

pub fn shared_rows(cluster: &Cluster) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let named: Vec<&SubTest> = SUBTESTS
        .iter()
        .filter(|(n, _)| filter.as_deref().is_some_and(|f| n.contains(f)))
        .collect();
    let run: Vec<&SubTest> = if named.is_empty() {
        SUBTESTS.iter().collect()
    } else {
        named
    };
    for (name, test) in run {
        let started = std::time::Instant::now();
        test(cluster);
        println!(
            "    shared_rows {name} ... ok ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
}
