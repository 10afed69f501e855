//! Issue 9: no path from an operator to superuser. User code (triggers, casts, domain checks,
//! row security policies, functions named like catalog functions) never runs as the extension
//! owner or as the superuser a background worker starts as, and tenant values are never spliced
//! into SQL text.
//!
//! The "planted" environment: a LOGIN role without superuser (a `tenant_ops_operator`, or in the
//! admin tests a `tenant_ops_admin`) owns schema `src` (product, account, orders, order_line,
//! with a user enum `src.mood` and a domain `src.code` whose CHECK is a user function) and the
//! target schemas. On every source and target table it planted triggers (BEFORE/AFTER,
//! ROW/STATEMENT, INSERT/UPDATE/DELETE/TRUNCATE; the AFTER ones `ENABLE ALWAYS`, so that they
//! fire under `session_replication_role = replica` too) and a forced row security policy; it
//! created casts from its enum to text, json and jsonb, and functions named like catalog
//! functions (`lower`, `to_jsonb`, ...) in schema `hs`, first on its `search_path`.
//!
//! Every planted function is PL/pgSQL (never SECURITY DEFINER) and
//! - counts its run in sequence `public.spy_runs`, and in `public.spy_alien` when it runs as
//!   another role than the planting one or as a superuser (sequences are not transactional:
//!   a run inside a rolled-back dry run or failed step still counts);
//! - logs `(fn, current_user, rolsuper)` into `public.spy`;
//! - tries `ALTER ROLE <planter> SUPERUSER` (succeeds only when it runs as a superuser).
//!
//! After each call the tests assert that nothing ran as another role (spy rows and
//! `spy_alien`), that the planter is not a superuser, and that planted code did run (else the
//! test would prove nothing).

use std::time::Duration;

use pg_tenant_ops_e2e::postgres::error::DbError;
use pg_tenant_ops_e2e::postgres::{Client, Error, GenericClient};
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, quote_ident, quote_literal, Cluster};

use crate::common::*;
use crate::migration::{job_status, text};

const OPERATOR: &str = "tenant_ops_operator";
const ADMIN: &str = "tenant_ops_admin";

/// The tables of the planted schema, parents first.
const TABLES: [&str; 4] = ["product", "account", "orders", "order_line"];

// ----- the spy ---------------------------------------------------------------------------------

const SPY_SQL: &str = "
CREATE TABLE public.spy (fn text NOT NULL, usr name NOT NULL, is_super boolean);
GRANT INSERT ON public.spy TO PUBLIC;
CREATE SEQUENCE public.spy_runs;
CREATE SEQUENCE public.spy_alien;
GRANT USAGE ON SEQUENCE public.spy_runs, public.spy_alien TO PUBLIC;
";

/// The statements every planted function starts with: `what` is an SQL text expression naming
/// the function, `role` the role that planted it.
fn plant(role: &str, what: &str) -> String {
    format!(
        "
    PERFORM pg_catalog.nextval('public.spy_runs');
    IF current_user <> {lit}::name
       OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        PERFORM pg_catalog.nextval('public.spy_alien');
    END IF;
    INSERT INTO public.spy (fn, usr, is_super)
    VALUES ({what}, current_user,
            (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user));
    BEGIN
        ALTER ROLE {ident} SUPERUSER;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;",
        lit = quote_literal(role),
        ident = quote_ident(role),
    )
}

/// `CREATE FUNCTION signature RETURNS returns LANGUAGE plpgsql` whose body is the plant, then
/// `body`.
fn plpgsql(role: &str, signature: &str, returns: &str, what: &str, body: &str) -> String {
    format!(
        "CREATE FUNCTION {signature} RETURNS {returns} LANGUAGE plpgsql AS $f$\nBEGIN{}\n    {body}\nEND\n$f$;\n",
        plant(role, what)
    )
}

/// Empties the spy: after setup, and after anything the superuser does itself.
#[track_caller]
fn reset_spy(su: &mut Client) {
    exec(
        su,
        "DELETE FROM public.spy;
         SELECT pg_catalog.setval('public.spy_runs', 1, false);
         SELECT pg_catalog.setval('public.spy_alien', 1, false);",
    );
}

/// How many times `nextval` was called on a spy sequence since the last reset.
#[track_caller]
fn spy_count(su: &mut Client, sequence: &str) -> i64 {
    scalar(
        su,
        &format!("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {sequence}"),
    )
}

#[track_caller]
fn is_superuser(su: &mut Client, role: &str) -> bool {
    su.query_one(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1::text",
        &[&role],
    )
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("reading pg_roles for {role}: {}", describe_error(&e)))
}

/// What the spy saw since its last reset, against the planting `role`.
struct SpyReport {
    /// Committed runs as another role or as a superuser: "fn ran as usr (superuser: b) xN".
    rows: Vec<String>,
    /// Runs as another role or as a superuser, rolled-back work included.
    alien: i64,
    /// Whether `role` is a superuser now.
    escalated: bool,
}

#[track_caller]
fn spy_report(su: &mut Client, role: &str) -> SpyReport {
    let rows: Vec<String> = su
        .query(
            "SELECT fn, usr::text, coalesce(is_super, false), count(*) FROM public.spy
              WHERE coalesce(is_super, true) OR usr <> $1::text::name
              GROUP BY 1, 2, 3 ORDER BY 1, 2",
            &[&role],
        )
        .unwrap_or_else(|e| panic!("reading public.spy: {}", describe_error(&e)))
        .iter()
        .map(|r| {
            format!(
                "{} ran as {} (superuser: {}) x{}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, bool>(2),
                r.get::<_, i64>(3)
            )
        })
        .collect();
    SpyReport {
        rows,
        alien: spy_count(su, "public.spy_alien"),
        escalated: is_superuser(su, role),
    }
}

/// Asserts that no planted function ran as another role than `role` or as a superuser (logged
/// rows, and runs in rolled-back work counted by `spy_alien`), and that `role` is no superuser.
#[track_caller]
fn assert_clean(su: &mut Client, role: &str, what: &str) {
    let SpyReport {
        rows,
        alien,
        escalated,
    } = spy_report(su, role);
    assert!(
        rows.is_empty() && alien == 0 && !escalated,
        "{what}: user code of {role} ran as another role or as a superuser.\n  \
         {role} is a superuser now: {escalated}\n  \
         planted functions run as another role or a superuser (rolled-back work included): {alien}\n  \
         logged (fn, usr):\n    {}",
        if rows.is_empty() {
            "(none committed)".to_string()
        } else {
            rows.join("\n    ")
        }
    );
}

/// `assert_clean`, and planted code did run during `what` (committed rows in `spy`; for a dry
/// run, whose rows are rolled back, runs counted by `spy_runs`).
#[track_caller]
fn assert_spied(su: &mut Client, role: &str, what: &str, dry_run: bool) {
    assert_clean(su, role, what);
    let (n, how) = if dry_run {
        (spy_count(su, "public.spy_runs"), "spy_runs")
    } else {
        (
            scalar(su, "SELECT count(*) FROM public.spy"),
            "rows in public.spy",
        )
    };
    assert!(
        n > 0,
        "{what}: no planted function (trigger, cast, domain check, row security policy) ran at \
         all ({how} = 0): the user tables were not touched as {role}, so this test proves nothing"
    );
}

// ----- the planted environment ------------------------------------------------------------------

/// Creates `role` (LOGIN, not a superuser) if missing, and makes it a member of `group`.
fn ensure_role(su: &mut Client, role: &str, group: &str) {
    exec(
        su,
        &format!(
            "DO $r$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {lit}) THEN
                    CREATE ROLE {ident} LOGIN;
                END IF;
             END $r$;
             ALTER ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
             GRANT {group} TO {ident};",
            lit = quote_literal(role),
            ident = quote_ident(role)
        ),
    );
}

/// The planter's type, domain, casts, catalog look-alikes and trigger functions.
fn planted_objects(role: &str) -> String {
    let f = |signature: &str, returns: &str, what: &str, body: &str| {
        plpgsql(role, signature, returns, what, body)
    };
    let mut sql = String::from("CREATE TYPE src.mood AS ENUM ('calm', 'angry', 'odd');\n");
    // A domain whose CHECK is user code: it runs wherever a value is coerced to the domain
    // (jsonb_populate_record, restores, literals).
    sql += &f(
        "hs.code_ok(v text)",
        "boolean",
        "'domain check src.code'",
        "RETURN true;",
    );
    sql += "CREATE DOMAIN src.code AS text CHECK (hs.code_ok(VALUE));\n";
    // Casts from the enum: to_jsonb(row) and to_json(row) use the cast to json.
    sql += &f(
        "hs.mood_text(m src.mood)",
        "text",
        "'cast src.mood AS text'",
        "RETURN pg_catalog.format('%s', m);",
    );
    sql += &f(
        "hs.mood_json(m src.mood)",
        "json",
        "'cast src.mood AS json'",
        "RETURN pg_catalog.to_json(pg_catalog.format('%s', m));",
    );
    sql += &f(
        "hs.mood_jsonb(m src.mood)",
        "jsonb",
        "'cast src.mood AS jsonb'",
        "RETURN pg_catalog.to_jsonb(pg_catalog.format('%s', m));",
    );
    sql += "CREATE CAST (src.mood AS text) WITH FUNCTION hs.mood_text(src.mood);
            CREATE CAST (src.mood AS json) WITH FUNCTION hs.mood_json(src.mood);
            CREATE CAST (src.mood AS jsonb) WITH FUNCTION hs.mood_jsonb(src.mood);\n";
    // Look-alikes of catalog functions, found first on the planter's search_path.
    for (signature, returns, body) in [
        ("hs.lower(t text)", "text", "RETURN pg_catalog.lower(t);"),
        ("hs.upper(t text)", "text", "RETURN pg_catalog.upper(t);"),
        ("hs.md5(t text)", "text", "RETURN pg_catalog.md5(t);"),
        (
            "hs.quote_ident(t text)",
            "text",
            "RETURN pg_catalog.quote_ident(t);",
        ),
        (
            "hs.to_jsonb(v anyelement)",
            "jsonb",
            "RETURN pg_catalog.to_jsonb(v);",
        ),
        (
            "hs.to_json(v anyelement)",
            "json",
            "RETURN pg_catalog.to_json(v);",
        ),
        (
            "hs.hashtextextended(t text, seed bigint)",
            "bigint",
            "RETURN pg_catalog.hashtextextended(t, seed);",
        ),
    ] {
        sql += &f(signature, returns, &quote_literal(signature), body);
    }
    sql += &f(
        "hs.rls_ok()",
        "boolean",
        "'row security policy'",
        "RETURN true;",
    );
    sql += &f(
        "hs.trg()",
        "trigger",
        "'trigger ' || TG_WHEN || ' ' || TG_LEVEL || ' ' || TG_OP || ' ON ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME",
        "IF TG_LEVEL = 'ROW' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RETURN NULL;",
    );
    sql += &f(
        "hs.slow()",
        "trigger",
        "'slow trigger ON ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME",
        "PERFORM pg_catalog.pg_sleep(0.3);
    RETURN NEW;",
    );
    sql
}

/// The four tables in `schema`, keys of type `key`; `product_fk`: order_line.product_id
/// references product (the source gets a NOT VALID one instead, to allow orphans).
fn tables_sql(schema: &str, key: &str, product_fk: bool) -> String {
    let fk = if product_fk {
        format!(" REFERENCES {schema}.product")
    } else {
        String::new()
    };
    format!(
        "CREATE TABLE {schema}.product (product_id {key} PRIMARY KEY, label text NOT NULL, mood src.mood NOT NULL, code src.code);
         CREATE TABLE {schema}.account (account_id {key} PRIMARY KEY, name text NOT NULL, mood src.mood NOT NULL, code src.code);
         CREATE TABLE {schema}.orders (order_id {key} PRIMARY KEY, account_id {key} NOT NULL REFERENCES {schema}.account,
                                       mood src.mood, code src.code, total numeric NOT NULL);
         CREATE TABLE {schema}.order_line (line_id {key} PRIMARY KEY, order_id {key} NOT NULL REFERENCES {schema}.orders,
                                           product_id {key}{fk}, qty int NOT NULL, mood src.mood, code src.code);"
    )
}

/// Six tenants (accounts 1..6), two orders each (10a+1, 10a+2), two lines per order
/// (100a+1..100a+4) referencing all four products.
const SOURCE_DATA: &str = "
INSERT INTO src.product SELECT p, 'product ' || p, 'calm'::src.mood, 'p' || p FROM pg_catalog.generate_series(1, 4) p;
INSERT INTO src.account SELECT a, 'account ' || a, 'calm'::src.mood, 'a' || a FROM pg_catalog.generate_series(1, 6) a;
INSERT INTO src.orders SELECT 10 * a + o, a, 'angry'::src.mood, 'o' || (10 * a + o), 10 * a + o
  FROM pg_catalog.generate_series(1, 6) a, pg_catalog.generate_series(1, 2) o;
INSERT INTO src.order_line SELECT 100 * a + 2 * (o - 1) + l, 10 * a + o, (2 * (o - 1) + l) % 4 + 1, l, 'odd'::src.mood,
                                  'l' || (100 * a + 2 * (o - 1) + l)
  FROM pg_catalog.generate_series(1, 6) a, pg_catalog.generate_series(1, 2) o, pg_catalog.generate_series(1, 2) l;
";

/// Lines referencing products that do not exist (allowed by the NOT VALID foreign key): two
/// of tenant 1, one of tenant 2.
const ORPHANS: &str = "
INSERT INTO src.order_line VALUES (191, 11, 99, 1, 'odd', 'l191'), (192, 12, 98, 1, 'odd', 'l192'),
                                  (291, 21, 97, 1, 'odd', 'l291');
";

/// Triggers of every kind and a forced row security policy on `table`, all calling planted code.
fn plant_on(table: &str) -> String {
    format!(
        "CREATE TRIGGER spy_before_row BEFORE INSERT OR UPDATE OR DELETE ON {table}
             FOR EACH ROW EXECUTE FUNCTION hs.trg();
         CREATE TRIGGER spy_after_row AFTER INSERT OR UPDATE OR DELETE ON {table}
             FOR EACH ROW EXECUTE FUNCTION hs.trg();
         CREATE TRIGGER spy_before_stmt BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
             FOR EACH STATEMENT EXECUTE FUNCTION hs.trg();
         CREATE TRIGGER spy_after_stmt AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
             FOR EACH STATEMENT EXECUTE FUNCTION hs.trg();
         ALTER TABLE {table} ENABLE ALWAYS TRIGGER spy_after_row, ENABLE ALWAYS TRIGGER spy_after_stmt;
         CREATE POLICY spy_rows ON {table} USING (hs.rls_ok()) WITH CHECK (hs.rls_ok());
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;"
    )
}

/// A target schema of the planted environment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Integer keys; the shared products already there (`shared: expect` works).
    Filled,
    /// Integer keys, empty (`shared: copy`).
    Empty,
    /// UUID keys, empty (`id_strategy: uuid`, `shared: copy`).
    Uuid,
    /// The schema only (`create_target`).
    Bare,
}

struct Planted {
    /// The bootstrap superuser.
    su: Client,
    /// The planter.
    me: Client,
    role: String,
}

/// Database `db` with the extension, the spy, and `role` (a member of `group`) owning schema
/// `src` with data, its planted code, and the target schemas; scope `shop` (root src.account,
/// key account_id) created by the superuser, or by `role` itself when it is an admin.
fn planted(
    cluster: &Cluster,
    db: &str,
    role: &str,
    group: &str,
    orphans: bool,
    targets: &[(&str, Target)],
) -> Planted {
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    ensure_role(&mut su, role, group);
    exec(&mut su, SPY_SQL);
    let ident = quote_ident(role);
    for schema in ["src", "hs"].iter().chain(targets.iter().map(|(s, _)| s)) {
        exec(
            &mut su,
            &format!("CREATE SCHEMA {schema} AUTHORIZATION {ident}"),
        );
    }
    exec(
        &mut su,
        &format!(
            "ALTER ROLE {ident} IN DATABASE {} SET search_path = hs, pg_catalog, public",
            quote_ident(db)
        ),
    );
    let mut me = cluster.connect_as(db, role);
    exec(&mut me, &planted_objects(role));
    exec(&mut me, &tables_sql("src", "int", false));
    exec(&mut me, SOURCE_DATA);
    if orphans {
        exec(&mut me, ORPHANS);
    }
    exec(
        &mut me,
        "ALTER TABLE src.order_line ADD CONSTRAINT order_line_product_fk
             FOREIGN KEY (product_id) REFERENCES src.product NOT VALID",
    );
    let mut tables: Vec<String> = TABLES.iter().map(|t| format!("src.{t}")).collect();
    for (schema, kind) in targets {
        match kind {
            Target::Bare => continue,
            Target::Uuid => exec(&mut me, &tables_sql(schema, "uuid", true)),
            Target::Filled | Target::Empty => exec(&mut me, &tables_sql(schema, "int", true)),
        }
        if *kind == Target::Filled {
            exec(
                &mut me,
                &format!("INSERT INTO {schema}.product SELECT * FROM src.product"),
            );
        }
        tables.extend(TABLES.iter().map(|t| format!("{schema}.{t}")));
    }
    for t in &tables {
        exec(&mut me, &plant_on(t));
    }
    exec(&mut me, "GRANT USAGE ON SCHEMA hs TO PUBLIC");
    if group == ADMIN {
        create_scope(&mut me, "shop", "src.account", "account_id", "{}");
    } else {
        create_scope(&mut su, "shop", "src.account", "account_id", "{}");
    }
    reset_spy(&mut su);
    Planted {
        su,
        me,
        role: role.to_string(),
    }
}

// ----- calls and checks -------------------------------------------------------------------------

/// `migrate_tenant('shop', tenant, target, options, background)`: the job id.
fn try_migrate(
    c: &mut impl GenericClient,
    tenant: &str,
    target: &str,
    options: &str,
    background: bool,
) -> Result<i64, Error> {
    try_migrate_tenant(c, "shop", tenant, target, options, background)
}

#[track_caller]
fn migrate(
    c: &mut impl GenericClient,
    tenant: &str,
    target: &str,
    options: &str,
    background: bool,
) -> i64 {
    migrate_tenant(c, "shop", tenant, target, options, background)
}

#[track_caller]
fn rollback(c: &mut Client, job: i64) {
    if let Err(e) = try_rollback(c, job) {
        panic!("rollback_migration({job}) failed: {}", describe_error(&e));
    }
}

/// `(status, error)` of a job.
#[track_caller]
fn job_outcome(c: &mut Client, job: i64) -> (String, String) {
    let r = c
        .query_one(
            "SELECT status, coalesce(error, '') FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap_or_else(|e| panic!("reading job {job}: {}", describe_error(&e)));
    (r.get(0), r.get(1))
}

#[track_caller]
fn assert_succeeded(c: &mut Client, job: i64, what: &str) {
    let (status, error) = job_outcome(c, job);
    assert_eq!(
        status, "succeeded",
        "{what}: job {job} ended {status}, error {error:?}"
    );
}

/// Waits until job `job` runs in a worker and has committed some rows.
#[track_caller]
fn wait_running_with_rows(c: &mut Client, job: i64) {
    until(
        &format!("job {job} runs in a worker with rows copied"),
        Duration::from_secs(60),
        || {
            let r = c
                .query_one(
                    "SELECT j.status, coalesce(j.error, ''),
                            (SELECT coalesce(sum(t.rows_done), 0)::int8 FROM tenant_ops.job_tables t WHERE t.job_id = j.id)
                       FROM tenant_ops.jobs j WHERE j.id = $1",
                    &[&job],
                )
                .unwrap_or_else(|e| panic!("reading job {job}: {}", describe_error(&e)));
            let (status, error, done): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            assert!(
                matches!(status.as_str(), "queued" | "running"),
                "job {job} is {status} (error {error:?}) before it could be interrupted"
            );
            (status == "running" && done > 0).then_some(())
        },
    );
}

/// Rows per table of `schema` (product, account, orders, order_line), read by the superuser.
#[track_caller]
fn counts(su: &mut Client, schema: &str) -> Vec<i64> {
    TABLES
        .iter()
        .map(|t| scalar(su, &format!("SELECT count(*) FROM {schema}.{t}")))
        .collect()
}

/// A tenant's rows in the source: account, orders, order_line.
#[track_caller]
fn source_rows_of(su: &mut Client, tenant: i32) -> Vec<i64> {
    [
        "SELECT count(*) FROM src.account WHERE account_id = $1",
        "SELECT count(*) FROM src.orders WHERE account_id = $1",
        "SELECT count(*) FROM src.order_line l JOIN src.orders o ON o.order_id = l.order_id WHERE o.account_id = $1",
    ]
    .iter()
    .map(|sql| {
        su.query_one(*sql, &[&tenant])
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| panic!("{sql}: {}", describe_error(&e)))
    })
    .collect()
}

/// A checksum of a tenant's account, orders and lines in `schema` (integer keys: compares a
/// `keep` copy with its source).
#[track_caller]
fn tenant_checksum(su: &mut Client, schema: &str, tenant: i32) -> String {
    let sql = format!(
        "SELECT coalesce(md5(string_agg(x, '|' ORDER BY x)), '') FROM (
           SELECT 'a' || a::text AS x FROM {schema}.account a WHERE a.account_id = $1
           UNION ALL SELECT 'o' || o::text FROM {schema}.orders o WHERE o.account_id = $1
           UNION ALL SELECT 'l' || l::text FROM {schema}.order_line l
                       JOIN {schema}.orders o ON o.order_id = l.order_id WHERE o.account_id = $1) t"
    );
    su.query_one(&sql, &[&tenant])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {}", describe_error(&e)))
}

/// A checksum of every row of the source schema.
#[track_caller]
fn source_checksum(su: &mut Client) -> String {
    text(
        su,
        "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
           SELECT 'p' || p::text AS x FROM src.product p
           UNION ALL SELECT 'a' || a::text FROM src.account a
           UNION ALL SELECT 'o' || o::text FROM src.orders o
           UNION ALL SELECT 'l' || l::text FROM src.order_line l) t",
    )
}

/// One finding of a validation: (check, table, tenant, count).
type Finding = (String, String, Option<String>, i64);

#[track_caller]
fn findings(su: &mut Client, job: i64) -> Vec<Finding> {
    su.query(
        "SELECT check_name, table_name::text, tenant, count FROM tenant_ops.integrity_issues
          WHERE job_id = $1 ORDER BY 1, 2, 3",
        &[&job],
    )
    .unwrap_or_else(|e| panic!("reading integrity_issues: {}", describe_error(&e)))
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn finding(check: &str, table: &str, tenant: &str, count: i64) -> Finding {
    (
        check.to_string(),
        table.to_string(),
        Some(tenant.to_string()),
        count,
    )
}

/// `validate_integrity(scope, tenant)` inline: the job id.
#[track_caller]
fn validate(c: &mut Client, scope: &str, tenant: Option<&str>) -> i64 {
    c.query_one(
        "SELECT tenant_ops.validate_integrity($1::text, $2::text)",
        &[&scope, &tenant],
    )
    .map(|r| r.get(0))
    .unwrap_or_else(|e| {
        panic!(
            "validate_integrity({scope:?}, {tenant:?}) failed: {}",
            describe_error(&e)
        )
    })
}

/// What a repair reported: the rows of all its actions, its repair id, the whole report.
struct Repaired {
    rows: i64,
    repair_id: Option<i64>,
    report: String,
}

fn try_repair(c: &mut Client, job: i64, strategy: &str, dry_run: bool) -> Result<Repaired, Error> {
    c.query_one(
        "WITH r AS (SELECT tenant_ops.repair_integrity($1, $2::text, $3) AS j)
         SELECT (SELECT coalesce(sum((a ->> 'rows')::int8), 0)::int8
                   FROM r, pg_catalog.jsonb_array_elements(r.j -> 'actions') a),
                (SELECT (r.j ->> 'repair_id')::int8 FROM r),
                (SELECT r.j::text FROM r)",
        &[&job, &strategy, &dry_run],
    )
    .map(|r| Repaired {
        rows: r.get(0),
        repair_id: r.get(1),
        report: r.get(2),
    })
}

#[track_caller]
fn repair(c: &mut Client, job: i64, strategy: &str, dry_run: bool) -> Repaired {
    try_repair(c, job, strategy, dry_run).unwrap_or_else(|e| {
        panic!(
            "repair_integrity({job}, {strategy:?}, dry_run => {dry_run}) failed: {}",
            describe_error(&e)
        )
    })
}

/// `restore_quarantined(repair)`: the rows it reports restored, and the report.
#[track_caller]
fn restore(c: &mut Client, repair_id: i64) -> (i64, String) {
    c.query_one(
        "WITH r AS (SELECT tenant_ops.restore_quarantined($1) AS j)
         SELECT (SELECT coalesce(sum((a ->> 'rows')::int8), 0)::int8
                   FROM r, pg_catalog.jsonb_array_elements(r.j -> 'restored') a),
                (SELECT r.j::text FROM r)",
        &[&repair_id],
    )
    .map(|r| (r.get(0), r.get(1)))
    .unwrap_or_else(|e| {
        panic!(
            "restore_quarantined({repair_id}) failed: {}",
            describe_error(&e)
        )
    })
}

#[track_caller]
fn quarantined(su: &mut Client, repair_id: i64) -> i64 {
    scalar(
        su,
        &format!("SELECT count(*) FROM tenant_ops.quarantine WHERE repair_id = {repair_id}"),
    )
}

// ----- the spy itself ---------------------------------------------------------------------------

/// The detector works: planted code the superuser sets off runs as the superuser, makes the
/// planter a superuser and is reported; set off in a transaction that is rolled back, it leaves
/// no row and no superuser but is still counted; set off by the planter, it is clean and seen.
pub fn security_spy_catches_superuser_runs(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_spy",
        "sec_spy_op",
        OPERATOR,
        false,
        &[("dst", Target::Filled)],
    );
    let role = role.as_str();

    exec(&mut su, "DELETE FROM dst.product WHERE product_id = 4");
    let r = spy_report(&mut su, role);
    assert!(
        r.escalated && r.alien > 0 && r.rows.iter().any(|x| x.contains("ran as postgres (superuser: true)")),
        "a DELETE by the superuser on a planted table: the triggers ran as postgres and made {role} a superuser \
         (escalated {}, alien runs {}, rows {:?})",
        r.escalated,
        r.alien,
        r.rows
    );
    exec(
        &mut su,
        &format!("ALTER ROLE {} NOSUPERUSER", quote_ident(role)),
    );
    reset_spy(&mut su);

    exec(
        &mut su,
        "BEGIN; DELETE FROM dst.product WHERE product_id = 3; ROLLBACK;",
    );
    let r = spy_report(&mut su, role);
    assert!(
        !r.escalated && r.rows.is_empty() && r.alien > 0,
        "rolled back: no superuser, no row, but counted (escalated {}, alien runs {}, rows {:?})",
        r.escalated,
        r.alien,
        r.rows
    );
    reset_spy(&mut su);

    exec(&mut me, "DELETE FROM dst.product WHERE product_id = 3");
    assert_spied(&mut su, role, "a DELETE by the planter itself", false);
    assert_eq!(counts(&mut su, "dst"), [2, 0, 0, 0]);
}

// ----- planted: migrations ----------------------------------------------------------------------

/// Inline migrations by a planted operator: keep (shared rows expected in the target), keep
/// with `shared: copy`, uuid with `shared: copy`, create_target; then verify_migration.
pub fn security_planted_migrate_inline(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_inline",
        "sec_inline_op",
        OPERATOR,
        false,
        &[
            ("dst", Target::Filled),
            ("dstc", Target::Empty),
            ("dstu", Target::Uuid),
            ("dstn", Target::Bare),
        ],
    );
    let role = role.as_str();

    let j1 = migrate(&mut me, "1", "dst", r#"{"id_strategy": "keep"}"#, false);
    assert_succeeded(&mut su, j1, "inline keep");
    assert_eq!(counts(&mut su, "dst"), [4, 1, 2, 4], "tenant 1 in dst");
    assert_eq!(
        tenant_checksum(&mut su, "dst", 1),
        tenant_checksum(&mut su, "src", 1),
        "dst holds tenant 1 exactly"
    );
    assert_spied(&mut su, role, "migrate_tenant inline keep", false);

    reset_spy(&mut su);
    let j2 = migrate(
        &mut me,
        "2",
        "dstc",
        r#"{"id_strategy": "keep", "shared": "copy"}"#,
        false,
    );
    assert_succeeded(&mut su, j2, "inline keep, shared copy");
    assert_eq!(counts(&mut su, "dstc"), [4, 1, 2, 4], "tenant 2 in dstc");
    assert_eq!(
        tenant_checksum(&mut su, "dstc", 2),
        tenant_checksum(&mut su, "src", 2),
        "dstc holds tenant 2 exactly"
    );
    assert_spied(
        &mut su,
        role,
        "migrate_tenant inline keep, shared copy",
        false,
    );

    reset_spy(&mut su);
    let j3 = migrate(
        &mut me,
        "3",
        "dstu",
        r#"{"id_strategy": "uuid7", "shared": "copy"}"#,
        false,
    );
    assert_succeeded(&mut su, j3, "inline uuid7, shared copy");
    assert_eq!(counts(&mut su, "dstu"), [4, 1, 2, 4], "tenant 3 in dstu");
    assert_eq!(
        scalar(
            &mut su,
            &format!("SELECT count(*) FROM tenant_ops.id_map WHERE job_id = {j3}")
        ),
        11,
        "id_map: one new id per product, account, order and line"
    );
    assert_spied(
        &mut su,
        role,
        "migrate_tenant inline uuid, shared copy",
        false,
    );

    reset_spy(&mut su);
    let j4 = migrate(
        &mut me,
        "4",
        "dstn",
        r#"{"create_target": true, "shared": "copy"}"#,
        false,
    );
    assert_succeeded(&mut su, j4, "inline create_target, shared copy");
    assert_eq!(counts(&mut su, "dstn"), [4, 1, 2, 4], "tenant 4 in dstn");
    assert_eq!(
        tenant_checksum(&mut su, "dstn", 4),
        tenant_checksum(&mut su, "src", 4),
        "dstn holds tenant 4 exactly"
    );
    assert_spied(
        &mut su,
        role,
        "migrate_tenant inline create_target, shared copy",
        false,
    );

    // verify_migration reads the tenant tables with the caller's rights: as the caller, the
    // row security policies (planted code) run.
    // With `shared: expect` (job 1) the shared products are not the job's tables.
    for (job, tables) in [(j1, 3), (j2, 4), (j3, 4), (j4, 4)] {
        reset_spy(&mut su);
        let incomplete = me
            .query_one(
                "SELECT count(*) FILTER (WHERE NOT complete), count(*) FROM tenant_ops.verify_migration($1)",
                &[&job],
            )
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .unwrap_or_else(|e| panic!("verify_migration({job}): {}", describe_error(&e)));
        assert_eq!(
            incomplete,
            (0, tables),
            "verify_migration({job}): (tables not complete, tables)"
        );
        assert_spied(
            &mut su,
            role,
            &format!("verify_migration({job}) (reading the tenant tables as the caller)"),
            false,
        );
    }
}

/// Deferred migrations (`defer` + `CALL run_job`) by a planted operator: keep, and uuid with
/// `shared: copy`.
pub fn security_planted_migrate_deferred(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_deferred",
        "sec_deferred_op",
        OPERATOR,
        false,
        &[("dst", Target::Filled), ("dstu", Target::Uuid)],
    );
    let role = role.as_str();

    let j1 = migrate(
        &mut me,
        "1",
        "dst",
        r#"{"id_strategy": "keep", "defer": true}"#,
        false,
    );
    assert_eq!(counts(&mut su, "dst"), [4, 0, 0, 0], "a deferred job waits");
    run_job(&mut me, j1);
    assert_succeeded(&mut su, j1, "deferred keep");
    assert_eq!(counts(&mut su, "dst"), [4, 1, 2, 4], "tenant 1 in dst");
    assert_eq!(
        tenant_checksum(&mut su, "dst", 1),
        tenant_checksum(&mut su, "src", 1),
        "dst holds tenant 1 exactly"
    );
    assert_spied(
        &mut su,
        role,
        "CALL run_job of a deferred keep migration",
        false,
    );

    reset_spy(&mut su);
    let j2 = migrate(
        &mut me,
        "2",
        "dstu",
        r#"{"id_strategy": "uuid", "shared": "copy", "defer": true, "batch_size": 1}"#,
        false,
    );
    run_job(&mut me, j2);
    assert_succeeded(&mut su, j2, "deferred uuid, shared copy");
    assert_eq!(counts(&mut su, "dstu"), [4, 1, 2, 4], "tenant 2 in dstu");
    assert_spied(
        &mut su,
        role,
        "CALL run_job of a deferred uuid migration with shared copy",
        false,
    );
}

/// Background migrations by a planted operator: keep, and uuid with `shared: copy` in batches
/// of one row. The worker must run every statement over user data as the submitter.
pub fn security_planted_migrate_background(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_background",
        "sec_background_op",
        OPERATOR,
        false,
        &[("dst", Target::Filled), ("dstu", Target::Uuid)],
    );
    let role = role.as_str();

    let j1 = migrate(&mut me, "1", "dst", r#"{"id_strategy": "keep"}"#, true);
    assert_eq!(wait_for(&mut me, j1, 60.0), "succeeded", "job {j1}");
    assert_eq!(counts(&mut su, "dst"), [4, 1, 2, 4], "tenant 1 in dst");
    assert_eq!(
        tenant_checksum(&mut su, "dst", 1),
        tenant_checksum(&mut su, "src", 1),
        "dst holds tenant 1 exactly"
    );
    assert_spied(&mut su, role, "background keep migration", false);

    reset_spy(&mut su);
    let j2 = migrate(
        &mut me,
        "2",
        "dstu",
        r#"{"id_strategy": "uuid", "shared": "copy", "batch_size": 1}"#,
        true,
    );
    assert_eq!(wait_for(&mut me, j2, 60.0), "succeeded", "job {j2}");
    assert_eq!(counts(&mut su, "dstu"), [4, 1, 2, 4], "tenant 2 in dstu");
    assert_spied(
        &mut su,
        role,
        "background uuid migration with shared copy",
        false,
    );
}

/// `mode: move` by a planted operator, inline and in the background: the archive (built with
/// to_jsonb over rows holding the user's enum, whose cast to json is user code) and the
/// deletes of the source run as the caller.
pub fn security_planted_move(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_move",
        "sec_move_op",
        OPERATOR,
        false,
        &[("dst", Target::Filled)],
    );
    let role = role.as_str();
    let tenant1 = tenant_checksum(&mut su, "src", 1);
    let tenant2 = tenant_checksum(&mut su, "src", 2);

    let j1 = migrate(
        &mut me,
        "1",
        "dst",
        r#"{"id_strategy": "keep", "mode": "move"}"#,
        false,
    );
    assert_succeeded(&mut su, j1, "inline move");
    assert_eq!(
        source_rows_of(&mut su, 1),
        [0, 0, 0],
        "tenant 1 left the source"
    );
    assert_eq!(counts(&mut su, "dst"), [4, 1, 2, 4], "tenant 1 in dst");
    assert_eq!(
        tenant_checksum(&mut su, "dst", 1),
        tenant1,
        "dst holds tenant 1 as it was"
    );
    assert_spied(&mut su, role, "migrate_tenant inline, mode move", false);

    reset_spy(&mut su);
    let j2 = migrate(
        &mut me,
        "2",
        "dst",
        r#"{"id_strategy": "keep", "mode": "move"}"#,
        true,
    );
    assert_eq!(wait_for(&mut me, j2, 60.0), "succeeded", "job {j2}");
    assert_eq!(
        source_rows_of(&mut su, 2),
        [0, 0, 0],
        "tenant 2 left the source"
    );
    assert_eq!(
        counts(&mut su, "dst"),
        [4, 2, 4, 8],
        "tenants 1 and 2 in dst"
    );
    assert_eq!(
        tenant_checksum(&mut su, "dst", 2),
        tenant2,
        "dst holds tenant 2 as it was"
    );
    assert_spied(&mut su, role, "background migration, mode move", false);
}

/// A background migration that fails on a target constraint after committing its first table
/// is cancelled by the planted operator: the undo deletes from the operator's target tables as
/// the operator. Another one, failed the same way, is retried after the operator drops the
/// constraint, and succeeds.
pub fn security_planted_cancel_failed_and_retry(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_cancel_failed",
        "sec_cancel_failed_op",
        OPERATOR,
        false,
        &[("dst_fail", Target::Filled)],
    );
    let role = role.as_str();
    exec(
        &mut me,
        "ALTER TABLE dst_fail.orders ADD CONSTRAINT orders_total_negative CHECK (total < 0)",
    );

    let a = migrate(&mut me, "1", "dst_fail", r#"{"id_strategy": "keep"}"#, true);
    assert_eq!(wait_for(&mut me, a, 60.0), "failed", "job {a}");
    let (_, error) = job_outcome(&mut su, a);
    assert!(
        error.contains("orders_total_negative"),
        "job {a} failed on the target's check constraint, got {error:?}"
    );
    assert_eq!(
        counts(&mut su, "dst_fail"),
        [4, 1, 0, 0],
        "the failed job committed tenant 1's account before it failed on orders"
    );
    assert_clean(&mut su, role, "the failing background migration");

    reset_spy(&mut su);
    assert_eq!(control(&mut me, "cancel_job", a), "cancelled");
    assert_eq!(job_status(&mut su, a), "cancelled");
    assert_eq!(
        counts(&mut su, "dst_fail"),
        [4, 0, 0, 0],
        "the cancel undid what the failed job wrote"
    );
    assert_spied(
        &mut su,
        role,
        "cancel_job of a failed background migration",
        false,
    );

    // The same failure, then retried once the operator has dropped the constraint.
    reset_spy(&mut su);
    let b = migrate(&mut me, "2", "dst_fail", r#"{"id_strategy": "keep"}"#, true);
    assert_eq!(wait_for(&mut me, b, 60.0), "failed", "job {b}");
    assert_clean(&mut su, role, "the second failing background migration");
    exec(
        &mut me,
        "ALTER TABLE dst_fail.orders DROP CONSTRAINT orders_total_negative",
    );
    reset_spy(&mut su);
    assert_eq!(control(&mut me, "retry_job", b), "queued");
    assert_eq!(
        wait_for(&mut me, b, 60.0),
        "succeeded",
        "job {b} after retry_job"
    );
    assert_eq!(
        counts(&mut su, "dst_fail"),
        [4, 1, 2, 4],
        "tenant 2 in dst_fail"
    );
    assert_eq!(
        tenant_checksum(&mut su, "dst_fail", 2),
        tenant_checksum(&mut su, "src", 2),
        "dst_fail holds tenant 2 exactly"
    );
    assert_spied(
        &mut su,
        role,
        "retry_job of a failed background migration",
        false,
    );
}

/// Cancelling background migrations of a planted operator: one while it runs (its worker
/// undoes it), one paused mid-run (undone at once by cancel_job in the operator's session), one
/// still queued (in the transaction that queued it). Slow triggers keep the jobs running.
pub fn security_planted_cancel_running_paused_queued(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_cancel_running",
        "sec_cancel_running_op",
        OPERATOR,
        false,
        &[("dst_slow", Target::Filled), ("dst_slow2", Target::Filled)],
    );
    let role = role.as_str();
    for schema in ["dst_slow", "dst_slow2"] {
        exec(
            &mut me,
            &format!(
                "CREATE TRIGGER spy_slow BEFORE INSERT ON {schema}.orders FOR EACH ROW EXECUTE FUNCTION hs.slow();
                 CREATE TRIGGER spy_slow BEFORE INSERT ON {schema}.order_line FOR EACH ROW EXECUTE FUNCTION hs.slow();"
            ),
        );
    }

    // Running: the worker stops after its current step and undoes the job.
    let a = migrate(
        &mut me,
        "1",
        "dst_slow",
        r#"{"id_strategy": "keep", "batch_size": 1}"#,
        true,
    );
    wait_running_with_rows(&mut su, a);
    assert_eq!(control(&mut me, "cancel_job", a), "cancelling");
    assert_eq!(
        wait_for(&mut me, a, 60.0),
        "cancelled",
        "job {a} after cancel_job"
    );
    assert_eq!(
        counts(&mut su, "dst_slow"),
        [4, 0, 0, 0],
        "the cancelled job's rows are gone"
    );
    assert_spied(
        &mut su,
        role,
        "cancel_job of a running background migration",
        false,
    );

    // Paused mid-run, then cancelled: undone at once, in the caller's session.
    reset_spy(&mut su);
    let b = migrate(
        &mut me,
        "2",
        "dst_slow2",
        r#"{"id_strategy": "keep", "batch_size": 1}"#,
        true,
    );
    wait_running_with_rows(&mut su, b);
    assert_eq!(control(&mut me, "pause_job", b), "paused");
    until(
        &format!("the worker of paused job {b} lets go of it"),
        Duration::from_secs(30),
        || {
            let r = su
                .query_one(
                    "SELECT status, worker_pid FROM tenant_ops.jobs WHERE id = $1",
                    &[&b],
                )
                .unwrap_or_else(|e| panic!("reading job {b}: {}", describe_error(&e)));
            let (status, pid): (String, Option<i32>) = (r.get(0), r.get(1));
            (status == "paused" && pid.is_none()).then_some(())
        },
    );
    let written: i64 = counts(&mut su, "dst_slow2")[1..].iter().sum();
    assert!(written > 0, "job {b} wrote rows before it was paused");
    assert_clean(&mut su, role, "the paused background migration");
    reset_spy(&mut su);
    assert_eq!(control(&mut me, "cancel_job", b), "cancelled");
    assert_eq!(job_status(&mut su, b), "cancelled");
    assert_eq!(
        counts(&mut su, "dst_slow2"),
        [4, 0, 0, 0],
        "the paused job's rows are gone"
    );
    assert_spied(
        &mut su,
        role,
        "cancel_job of a paused background migration",
        false,
    );

    // Queued: cancelled in the transaction that queued it.
    reset_spy(&mut su);
    let mut tx = me.transaction().expect("BEGIN");
    let c = migrate(&mut tx, "3", "dst_slow", r#"{"id_strategy": "keep"}"#, true);
    assert_eq!(control(&mut tx, "cancel_job", c), "cancelled");
    tx.commit().expect("COMMIT");
    assert_eq!(job_status(&mut su, c), "cancelled");
    assert_eq!(
        counts(&mut su, "dst_slow"),
        [4, 0, 0, 0],
        "the queued job never ran"
    );
    assert_clean(&mut su, role, "cancel_job of a queued background migration");
}

// ----- planted: integrity -----------------------------------------------------------------------

/// validate_integrity by a planted operator (orphans under the NOT VALID foreign key of
/// order_line to product), inline for one tenant and for all, and in the background.
pub fn security_planted_validate(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_validate",
        "sec_validate_op",
        OPERATOR,
        true,
        &[],
    );
    let role = role.as_str();
    let one = vec![finding("foreign_keys", "src.order_line", "1", 2)];
    let all = vec![
        finding("foreign_keys", "src.order_line", "1", 2),
        finding("foreign_keys", "src.order_line", "2", 1),
    ];

    let v1 = validate(&mut me, "shop", Some("1"));
    assert_eq!(findings(&mut su, v1), one, "validation {v1} of tenant 1");
    assert_spied(&mut su, role, "validate_integrity of tenant 1", false);

    reset_spy(&mut su);
    let v2 = validate(&mut me, "shop", None);
    assert_eq!(
        findings(&mut su, v2),
        all,
        "validation {v2} of every tenant"
    );
    assert_spied(&mut su, role, "validate_integrity of every tenant", false);

    reset_spy(&mut su);
    let v3: i64 = me
        .query_one(
            "SELECT tenant_ops.validate_integrity('shop', NULL::text, background => true)",
            &[],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| {
            panic!(
                "validate_integrity(background => true): {}",
                describe_error(&e)
            )
        });
    assert_eq!(wait_for(&mut me, v3, 60.0), "succeeded", "job {v3}");
    assert_eq!(findings(&mut su, v3), all, "background validation {v3}");
    assert_spied(&mut su, role, "validate_integrity in the background", false);
}

/// rollback_migration by a planted non-superuser tenant_ops_admin: of a keep copy, of a uuid
/// copy with shared rows copied, and of a move (the source comes back through
/// jsonb_populate_record, which runs the domain's user CHECK).
pub fn security_planted_admin_rollback(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_rollback",
        "sec_rollback_admin",
        ADMIN,
        false,
        &[("dst", Target::Filled), ("dstu", Target::Uuid)],
    );
    let role = role.as_str();
    let source_before = source_checksum(&mut su);

    let j1 = migrate(&mut me, "1", "dst", r#"{"id_strategy": "keep"}"#, false);
    assert_succeeded(&mut su, j1, "keep copy");
    assert_eq!(counts(&mut su, "dst"), [4, 1, 2, 4]);
    assert_clean(&mut su, role, "the migration before rollback");
    reset_spy(&mut su);
    rollback(&mut me, j1);
    assert_eq!(job_status(&mut su, j1), "rolled_back");
    assert_eq!(counts(&mut su, "dst"), [4, 0, 0, 0], "job {j1} rolled back");
    assert_spied(&mut su, role, "rollback_migration of a keep copy", false);

    reset_spy(&mut su);
    let j2 = migrate(
        &mut me,
        "2",
        "dstu",
        r#"{"id_strategy": "uuid", "shared": "copy"}"#,
        false,
    );
    assert_succeeded(&mut su, j2, "uuid copy, shared copy");
    assert_eq!(counts(&mut su, "dstu"), [4, 1, 2, 4]);
    assert_clean(&mut su, role, "the uuid migration before rollback");
    reset_spy(&mut su);
    rollback(&mut me, j2);
    assert_eq!(job_status(&mut su, j2), "rolled_back");
    assert_eq!(
        counts(&mut su, "dstu"),
        [0, 0, 0, 0],
        "job {j2} rolled back, the shared rows it added too"
    );
    assert_spied(
        &mut su,
        role,
        "rollback_migration of a uuid copy with shared copy",
        false,
    );

    reset_spy(&mut su);
    let j3 = migrate(
        &mut me,
        "3",
        "dst",
        r#"{"id_strategy": "keep", "mode": "move"}"#,
        false,
    );
    assert_succeeded(&mut su, j3, "move");
    assert_eq!(source_rows_of(&mut su, 3), [0, 0, 0], "tenant 3 moved");
    assert_eq!(counts(&mut su, "dst"), [4, 1, 2, 4]);
    assert_clean(&mut su, role, "the move before rollback");
    reset_spy(&mut su);
    rollback(&mut me, j3);
    assert_eq!(job_status(&mut su, j3), "rolled_back");
    assert_eq!(counts(&mut su, "dst"), [4, 0, 0, 0], "job {j3} rolled back");
    assert_eq!(
        source_checksum(&mut su),
        source_before,
        "the rollback of the move put the source back as it was"
    );
    assert_spied(&mut su, role, "rollback_migration of a move", false);
}

/// repair_integrity (quarantine, delete, set_null; dry run and real) and restore_quarantined by
/// a planted non-superuser tenant_ops_admin, on tenant 1's two orphan lines; tenant 2's orphan
/// is never touched.
pub fn security_planted_admin_repair_restore(cluster: &Cluster) {
    let Planted {
        mut su,
        mut me,
        role,
    } = planted(
        cluster,
        "e2e_sec_repair",
        "sec_repair_admin",
        ADMIN,
        true,
        &[],
    );
    let role = role.as_str();
    let before = source_checksum(&mut su);
    let lines_of_1 = |su: &mut Client| source_rows_of(su, 1)[2];
    let other_orphan = |su: &mut Client| {
        scalar(
            su,
            "SELECT count(*) FROM src.order_line WHERE line_id = 291 AND product_id = 97",
        )
    };
    assert_eq!(
        lines_of_1(&mut su),
        6,
        "fixture: tenant 1 has 4 lines and 2 orphans"
    );

    let v = validate(&mut me, "shop", Some("1"));
    assert_eq!(
        findings(&mut su, v),
        vec![finding("foreign_keys", "src.order_line", "1", 2)],
        "validation {v}"
    );
    reset_spy(&mut su);

    for strategy in ["quarantine", "delete", "set_null"] {
        let r = repair(&mut me, v, strategy, true);
        assert_eq!(
            r.rows, 2,
            "dry run of {strategy}: rows it would change: {}",
            r.report
        );
        assert_eq!(
            source_checksum(&mut su),
            before,
            "a dry run of {strategy} changes nothing"
        );
        assert_spied(
            &mut su,
            role,
            &format!("repair_integrity {strategy}, dry run"),
            true,
        );
        reset_spy(&mut su);
    }
    assert_eq!(
        scalar(&mut su, "SELECT count(*) FROM tenant_ops.quarantine"),
        0,
        "dry runs quarantine nothing"
    );

    let q = repair(&mut me, v, "quarantine", false);
    assert_eq!(q.rows, 2, "quarantine: rows removed: {}", q.report);
    let repair_id = q
        .repair_id
        .unwrap_or_else(|| panic!("a real quarantine has a repair_id: {}", q.report));
    assert_eq!(quarantined(&mut su, repair_id), 2, "rows in quarantine");
    assert_eq!(lines_of_1(&mut su), 4, "tenant 1's orphans are gone");
    assert_eq!(other_orphan(&mut su), 1, "tenant 2's orphan is untouched");
    assert_spied(&mut su, role, "repair_integrity quarantine", false);

    reset_spy(&mut su);
    let (restored, report) = restore(&mut me, repair_id);
    assert_eq!(restored, 2, "restore_quarantined: {report}");
    assert_eq!(
        source_checksum(&mut su),
        before,
        "the restore put every row back as it was"
    );
    assert_spied(&mut su, role, "restore_quarantined", false);

    reset_spy(&mut su);
    let d = repair(&mut me, v, "delete", false);
    assert_eq!(d.rows, 2, "delete: rows removed: {}", d.report);
    assert_eq!(lines_of_1(&mut su), 4, "tenant 1's orphans are deleted");
    assert_eq!(other_orphan(&mut su), 1, "tenant 2's orphan is untouched");
    assert_spied(&mut su, role, "repair_integrity delete", false);

    // The orphans again (the superuser, without foreign key checks), then set_null. The
    // planted ENABLE ALWAYS triggers fire for this superuser insert of the test's own and
    // grant SUPERUSER as they are built to: that is undone before the extension's turn.
    exec(
        &mut su,
        &format!(
            "SET session_replication_role = replica;
             INSERT INTO src.order_line VALUES (191, 11, 99, 1, 'odd', 'l191'), (192, 12, 98, 1, 'odd', 'l192');
             RESET session_replication_role;
             ALTER ROLE {role} NOSUPERUSER;"
        ),
    );
    assert_eq!(source_checksum(&mut su), before, "the orphans are back");
    reset_spy(&mut su);
    let n = repair(&mut me, v, "set_null", false);
    assert_eq!(n.rows, 2, "set_null: rows changed: {}", n.report);
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM src.order_line WHERE line_id IN (191, 192) AND product_id IS NULL"
        ),
        2,
        "tenant 1's orphans no longer reference anything"
    );
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM src.order_line WHERE product_id IS NULL"
        ),
        2,
        "set_null changed only those"
    );
    assert_eq!(other_orphan(&mut su), 1, "tenant 2's orphan is untouched");
    assert_spied(&mut su, role, "repair_integrity set_null", false);
}

// ----- hostile tenant values ----------------------------------------------------------------------

/// The tenant value that turns `"p$1"` (with `$1` replaced by the quoted tenant) into SQL that
/// calls hs.evil().
const EXPLOIT: &str = r#"x" p WHERE hs.evil() = 1) AND NOT EXISTS (SELECT FROM hs.""#;

/// Text tenant keys `x" p WHERE hs.evil() ...`, `"`, `'`, `$1`, `;`, `)` (and a plain one) on
/// tables named `t$1` (root) and `p$1` (shared, referenced through a NOT VALID foreign key) of
/// a hostile operator, who also owns `hs.evil()`. The superuser validates, repairs (quarantine,
/// delete, set_null; dry run and real) and restores each tenant: hs.evil() never runs, every
/// repair changes exactly that tenant's orphans, and the restore brings back exactly them.
pub fn security_hostile_tenant_values(cluster: &Cluster) {
    let db = "e2e_sec_hostile";
    let role = "sec_hostile_op";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    ensure_role(&mut su, role, OPERATOR);
    exec(&mut su, SPY_SQL);
    exec(
        &mut su,
        &format!("CREATE SCHEMA hs AUTHORIZATION {}", quote_ident(role)),
    );
    let mut op = cluster.connect_as(db, role);
    exec(
        &mut op,
        &(plpgsql(role, "hs.evil()", "int", "'hs.evil()'", "RETURN 1;")
            + r#"
CREATE TABLE hs."t$1" (tkey text PRIMARY KEY, label text NOT NULL);
CREATE TABLE hs."p$1" (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE hs.item (id int PRIMARY KEY, tkey text NOT NULL REFERENCES hs."t$1", p_id int, note text);
INSERT INTO hs."p$1" VALUES (1, 'one'), (2, 'two');
-- What the SQL built by splicing the exploit value in needs to parse and run hs.evil().
CREATE TABLE hs."p'x" (id int);
INSERT INTO hs."p'x" VALUES (1);
CREATE TABLE hs."'" (id int);
GRANT USAGE ON SCHEMA hs TO PUBLIC;
"#),
    );
    // (tenant, orphans): the exploit first.
    let tenants: Vec<(&str, i32)> = vec![
        (EXPLOIT, 2),
        ("\"", 1),
        ("'", 2),
        ("$1", 3),
        (";", 1),
        (")", 2),
        ("plain", 2),
    ];
    let orphan_rows = |i: usize, k: i32| -> Vec<(i32, i32)> {
        (1..=k)
            .map(|j| (100 * i as i32 + 10 + j, 900 + j))
            .collect()
    };
    for (i, (t, k)) in tenants.iter().enumerate() {
        let label = format!("tenant {i}");
        op.execute(
            r#"INSERT INTO hs."t$1" VALUES ($1::text, $2::text)"#,
            &[t, &label],
        )
        .unwrap_or_else(|e| panic!("inserting tenant {t:?}: {}", describe_error(&e)));
        let mut rows = vec![(100 * i as i32 + 1, 1), (100 * i as i32 + 2, 2)];
        rows.extend(orphan_rows(i, *k));
        for (id, p) in rows {
            op.execute(
                "INSERT INTO hs.item VALUES ($1, $2::text, $3, 'n')",
                &[&id, t, &p],
            )
            .unwrap_or_else(|e| panic!("inserting item {id}: {}", describe_error(&e)));
        }
    }
    exec(
        &mut op,
        r#"ALTER TABLE hs.item ADD CONSTRAINT item_p_fk FOREIGN KEY (p_id) REFERENCES hs."p$1" NOT VALID"#,
    );
    create_scope(&mut su, "hostile", r#"hs."t$1""#, "tkey", "{}");
    reset_spy(&mut su);

    let checksum = |su: &mut Client| {
        text(
            su,
            "SELECT md5(string_agg(i::text, '|' ORDER BY i.id)) FROM hs.item i",
        )
    };
    let others = |su: &mut Client, t: &str| -> String {
        su.query_one(
            "SELECT md5(string_agg(i::text, '|' ORDER BY i.id)) FROM hs.item i WHERE i.tkey <> $1::text",
            &[&t],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", describe_error(&e)))
    };
    let items_of = |su: &mut Client, t: &str, extra: &str| -> i64 {
        su.query_one(
            &format!("SELECT count(*) FROM hs.item WHERE tkey = $1::text{extra}"),
            &[&t],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", describe_error(&e)))
    };
    let never_evil = |su: &mut Client, what: &str| {
        let runs = spy_count(su, "public.spy_runs");
        let logged: Vec<String> = su
            .query("SELECT fn || ' as ' || usr FROM public.spy ORDER BY 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let escalated = is_superuser(su, role);
        assert!(
            runs == 0 && logged.is_empty() && !escalated,
            "{what}: hs.evil() ran {runs} time(s) (the tenant value was spliced into SQL): \
             logged {logged:?}; {role} is a superuser now: {escalated}"
        );
    };
    let before = checksum(&mut su);

    for (i, (t, k)) in tenants.iter().enumerate() {
        let (t, k) = (*t, i64::from(*k));
        let v = validate(&mut su, "hostile", Some(t));
        assert_eq!(
            findings(&mut su, v),
            vec![finding("foreign_keys", "hs.item", t, k)],
            "validation {v} of tenant {t:?}"
        );
        never_evil(&mut su, &format!("validate_integrity of tenant {t:?}"));
        let others_before = others(&mut su, t);

        for strategy in ["quarantine", "delete", "set_null"] {
            let r = try_repair(&mut su, v, strategy, true);
            never_evil(
                &mut su,
                &format!("repair_integrity {strategy} dry run, tenant {t:?}"),
            );
            let r = r.unwrap_or_else(|e| {
                panic!(
                    "repair_integrity({v}, {strategy:?}) dry run for tenant {t:?}: {}",
                    describe_error(&e)
                )
            });
            assert_eq!(
                r.rows, k,
                "dry run of {strategy} for tenant {t:?}: rows it would change: {}",
                r.report
            );
            assert_eq!(
                checksum(&mut su),
                before,
                "a dry run of {strategy} changes nothing (tenant {t:?})"
            );
        }

        let q = try_repair(&mut su, v, "quarantine", false);
        never_evil(
            &mut su,
            &format!("repair_integrity quarantine, tenant {t:?}"),
        );
        let q = q.unwrap_or_else(|e| {
            panic!(
                "repair_integrity({v}, quarantine) for tenant {t:?}: {}",
                describe_error(&e)
            )
        });
        assert_eq!(q.rows, k, "quarantine of tenant {t:?}: {}", q.report);
        let repair_id = q
            .repair_id
            .unwrap_or_else(|| panic!("a real quarantine has a repair_id: {}", q.report));
        assert_eq!(
            quarantined(&mut su, repair_id),
            k,
            "rows quarantined for tenant {t:?}"
        );
        assert_eq!(
            items_of(&mut su, t, ""),
            2,
            "tenant {t:?} keeps only its good items"
        );
        assert_eq!(
            others(&mut su, t),
            others_before,
            "the quarantine of tenant {t:?} left every other tenant alone"
        );
        let (restored, report) = restore(&mut su, repair_id);
        never_evil(&mut su, &format!("restore_quarantined, tenant {t:?}"));
        assert_eq!(restored, k, "restore for tenant {t:?}: {report}");
        assert_eq!(
            checksum(&mut su),
            before,
            "the restore for tenant {t:?} put back exactly what was quarantined"
        );

        let d = repair(&mut su, v, "delete", false);
        never_evil(&mut su, &format!("repair_integrity delete, tenant {t:?}"));
        assert_eq!(d.rows, k, "delete for tenant {t:?}: {}", d.report);
        assert_eq!(
            items_of(&mut su, t, ""),
            2,
            "tenant {t:?}'s orphans are deleted"
        );
        assert_eq!(
            others(&mut su, t),
            others_before,
            "the delete for tenant {t:?} left every other tenant alone"
        );
        // The orphans again (without foreign key checks).
        exec(&mut su, "SET session_replication_role = replica");
        for (id, p) in orphan_rows(i, k as i32) {
            su.execute(
                "INSERT INTO hs.item VALUES ($1, $2::text, $3, 'n')",
                &[&id, &t, &p],
            )
            .unwrap_or_else(|e| panic!("re-inserting item {id}: {}", describe_error(&e)));
        }
        exec(&mut su, "RESET session_replication_role");
        assert_eq!(checksum(&mut su), before, "tenant {t:?}'s orphans are back");

        let n = repair(&mut su, v, "set_null", false);
        never_evil(&mut su, &format!("repair_integrity set_null, tenant {t:?}"));
        assert_eq!(n.rows, k, "set_null for tenant {t:?}: {}", n.report);
        assert_eq!(
            items_of(&mut su, t, " AND p_id IS NULL"),
            k,
            "tenant {t:?}'s orphans reference nothing now"
        );
        assert_eq!(
            others(&mut su, t),
            others_before,
            "set_null for tenant {t:?} left every other tenant alone"
        );
        // Back as before for the next tenant.
        exec(&mut su, "SET session_replication_role = replica");
        for (id, p) in orphan_rows(i, k as i32) {
            su.execute("UPDATE hs.item SET p_id = $2 WHERE id = $1", &[&id, &p])
                .unwrap_or_else(|e| panic!("resetting item {id}: {}", describe_error(&e)));
        }
        exec(&mut su, "RESET session_replication_role");
        assert_eq!(checksum(&mut su), before, "tenant {t:?}'s orphans are back");
    }

    // Every tenant in one pass: the findings grouped by the hostile values.
    let v = validate(&mut su, "hostile", None);
    never_evil(&mut su, "validate_integrity of every tenant");
    let mut expected: Vec<Finding> = tenants
        .iter()
        .map(|(t, k)| finding("foreign_keys", "hs.item", t, i64::from(*k)))
        .collect();
    expected.sort();
    assert_eq!(
        findings(&mut su, v),
        expected,
        "validation {v} of every tenant"
    );
}

// ----- a non-superuser admin repairs ----------------------------------------------------------------

const REPAIR_SHOP: &str = "
CREATE SCHEMA shop;
CREATE TABLE shop.product (product_id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE shop.account (account_id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account, total numeric NOT NULL);
CREATE TABLE shop.order_line (line_id int PRIMARY KEY, order_id int NOT NULL REFERENCES shop.orders, product_id int, qty int NOT NULL);
INSERT INTO shop.product VALUES (1, 'one'), (2, 'two');
INSERT INTO shop.account VALUES (1, 'one'), (2, 'two');
INSERT INTO shop.orders VALUES (10, 1, 5), (11, 1, 7), (20, 2, 1);
-- 102 and 103 (tenant 1) and 200 (tenant 2) reference products that do not exist.
INSERT INTO shop.order_line VALUES (100, 10, 1, 1), (101, 10, 2, 2), (102, 11, 99, 1), (103, 11, 98, 4), (200, 20, 97, 9);
ALTER TABLE shop.order_line ADD CONSTRAINT order_line_product_fk FOREIGN KEY (product_id) REFERENCES shop.product NOT VALID;
";

/// A non-superuser tenant_ops_admin (with rights on the tables only) runs real repairs —
/// quarantine, delete, set_null — and restore_quarantined, with exact row counts.
pub fn security_admin_repair_without_superuser(cluster: &Cluster) {
    let db = "e2e_sec_admin_repair";
    let role = "sec_plain_admin";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    ensure_role(&mut su, role, ADMIN);
    exec(&mut su, REPAIR_SHOP);
    exec(
        &mut su,
        &format!(
            "GRANT USAGE ON SCHEMA shop TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA shop TO {role};"
        ),
    );
    let mut admin = cluster.connect_as(db, role);
    create_scope(&mut admin, "shop", "shop.account", "account_id", "{}");
    let checksum = |c: &mut Client| {
        text(
            c,
            "SELECT md5(string_agg(l::text, '|' ORDER BY l.line_id)) FROM shop.order_line l",
        )
    };
    let lines = |c: &mut Client| -> Vec<i32> {
        c.query("SELECT line_id FROM shop.order_line ORDER BY 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = checksum(&mut su);

    let v = validate(&mut admin, "shop", Some("1"));
    assert_eq!(
        findings(&mut su, v),
        vec![finding("foreign_keys", "shop.order_line", "1", 2)],
        "validation {v}"
    );

    let q = repair(&mut admin, v, "quarantine", false);
    assert_eq!(q.rows, 2, "quarantine by {role}: {}", q.report);
    let repair_id = q
        .repair_id
        .unwrap_or_else(|| panic!("a real quarantine has a repair_id: {}", q.report));
    assert_eq!(quarantined(&mut su, repair_id), 2);
    assert_eq!(
        lines(&mut su),
        [100, 101, 200],
        "lines after the quarantine"
    );

    let (restored, report) = restore(&mut admin, repair_id);
    assert_eq!(restored, 2, "restore_quarantined by {role}: {report}");
    assert_eq!(checksum(&mut su), before, "every line back as it was");

    let d = repair(&mut admin, v, "delete", false);
    assert_eq!(d.rows, 2, "delete by {role}: {}", d.report);
    assert_eq!(lines(&mut su), [100, 101, 200], "lines after the delete");

    exec(
        &mut su,
        "SET session_replication_role = replica;
         INSERT INTO shop.order_line VALUES (102, 11, 99, 1), (103, 11, 98, 4);
         RESET session_replication_role;",
    );
    let n = repair(&mut admin, v, "set_null", false);
    assert_eq!(n.rows, 2, "set_null by {role}: {}", n.report);
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM shop.order_line WHERE product_id IS NULL"
        ),
        2,
        "lines 102 and 103 reference nothing now"
    );
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM shop.order_line WHERE line_id = 200 AND product_id = 97"
        ),
        1,
        "tenant 2's orphan is untouched"
    );
}

// ----- dry runs -----------------------------------------------------------------------------------

const DRY_SHOP: &str = "
CREATE SCHEMA shop;
CREATE TABLE shop.account (account_id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES shop.account, total numeric NOT NULL);
CREATE TABLE shop.order_line (line_id int PRIMARY KEY, order_id int NOT NULL REFERENCES shop.orders, qty int NOT NULL);
INSERT INTO shop.account VALUES (1, 'one'), (2, 'two');
INSERT INTO shop.orders VALUES (10, 1, 5), (11, 1, 7), (20, 2, 1);
INSERT INTO shop.order_line VALUES (100, 10, 1), (101, 10, 2), (102, 11, 1), (200, 20, 9);
CREATE SCHEMA dst;
CREATE TABLE dst.account (account_id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE dst.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES dst.account, total numeric NOT NULL);
CREATE TABLE dst.order_line (line_id int PRIMARY KEY, order_id int NOT NULL REFERENCES dst.orders, qty int NOT NULL);
CREATE SCHEMA dstu;
CREATE TABLE dstu.account (account_id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE dstu.orders (order_id uuid PRIMARY KEY, account_id uuid NOT NULL REFERENCES dstu.account, total numeric NOT NULL);
CREATE TABLE dstu.order_line (line_id uuid PRIMARY KEY, order_id uuid NOT NULL REFERENCES dstu.orders, qty int NOT NULL);
SELECT tenant_ops.create_scope('shop', 'shop.account', 'account_id');
";

/// `dry_run` never writes, whichever executor: inline, background and deferred (`defer` +
/// `CALL run_job`), copy and move, keep and uuid. The job succeeds, says it was a dry run, and
/// the targets, the source, id_map and the archive are as they were.
pub fn security_dry_run_never_writes(cluster: &Cluster) {
    let db = "e2e_sec_dry_run";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(&mut c, DRY_SHOP);
    let written = |c: &mut Client| -> Vec<(&'static str, i64)> {
        [
            ("dst.account", "SELECT count(*) FROM dst.account"),
            ("dst.orders", "SELECT count(*) FROM dst.orders"),
            ("dst.order_line", "SELECT count(*) FROM dst.order_line"),
            ("dstu.account", "SELECT count(*) FROM dstu.account"),
            ("dstu.orders", "SELECT count(*) FROM dstu.orders"),
            ("dstu.order_line", "SELECT count(*) FROM dstu.order_line"),
            ("shop.account", "SELECT count(*) FROM shop.account"),
            ("shop.orders", "SELECT count(*) FROM shop.orders"),
            ("shop.order_line", "SELECT count(*) FROM shop.order_line"),
            (
                "tenant_ops.id_map",
                "SELECT count(*) FROM tenant_ops.id_map",
            ),
            (
                "tenant_ops.job_archive",
                "SELECT count(*) FROM tenant_ops.job_archive",
            ),
        ]
        .iter()
        .map(|(name, sql)| (*name, scalar(c, sql)))
        .collect()
    };
    let nothing = written(&mut c);
    assert_eq!(
        nothing.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [0, 0, 0, 0, 0, 0, 2, 3, 4, 0, 0],
        "fixture"
    );
    let check = |c: &mut Client, job: i64, what: &str| {
        let (status, error) = job_outcome(c, job);
        let dry = text(
            c,
            &format!("SELECT coalesce(result ->> 'dry_run', 'NULL') FROM tenant_ops.jobs WHERE id = {job}"),
        );
        assert_eq!(
            (status.as_str(), dry.as_str()),
            ("succeeded", "true"),
            "{what}: job {job} (status, result.dry_run); error {error:?}"
        );
        assert_eq!(written(c), nothing, "{what}: a dry run wrote rows");
    };

    let cases: [(&str, &str, &str); 4] = [
        ("copy", "dst", r#"{"dry_run": true}"#),
        ("move", "dst", r#"{"dry_run": true, "mode": "move"}"#),
        (
            "uuid copy",
            "dstu",
            r#"{"dry_run": true, "id_strategy": "uuid"}"#,
        ),
        (
            "uuid move",
            "dstu",
            r#"{"dry_run": true, "id_strategy": "uuid", "mode": "move"}"#,
        ),
    ];
    for (what, target, options) in cases {
        let job = migrate(&mut c, "1", target, options, false);
        check(&mut c, job, &format!("inline {what} dry run"));

        let job = migrate(&mut c, "1", target, options, true);
        assert_eq!(
            wait_for(&mut c, job, 60.0),
            "succeeded",
            "background {what} dry run: job {job} ended {:?}",
            job_outcome(&mut c, job)
        );
        check(&mut c, job, &format!("background {what} dry run"));

        let deferred = options.replacen('{', r#"{"defer": true, "#, 1);
        let job = migrate(&mut c, "1", target, &deferred, false);
        if let Err(e) = c.batch_execute(&format!("CALL tenant_ops.run_job({job})")) {
            panic!(
                "deferred {what} dry run: CALL run_job({job}) failed: {}; written: {:?}",
                describe_error(&e),
                written(&mut c)
            );
        }
        check(&mut c, job, &format!("deferred {what} dry run"));
    }
}

// ----- bad input and clean errors -------------------------------------------------------------------

/// Options nested 5,000 levels deep (arrays and objects) in create_scope and migrate_tenant,
/// and a NULL in validate_integrity's checks, are bad input (22023), not internal errors, and
/// leave nothing behind.
pub fn security_bad_input_is_not_internal(cluster: &Cluster) {
    let db = "e2e_sec_bad_input";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(&mut c, DRY_SHOP);
    let deep_array =
        |key: &str| format!(r#"{{"{key}": {}{}}}"#, "[".repeat(5000), "]".repeat(5000));
    let deep_object = |key: &str| {
        format!(
            r#"{{"{key}": {}1{}}}"#,
            r#"{"a": "#.repeat(5000),
            "}".repeat(5000)
        )
    };

    let scopes = scope_count(&mut c);
    for options in [
        deep_array("tables"),
        deep_array("exclude"),
        deep_object("owner"),
    ] {
        let head: String = options.chars().take(30).collect();
        let e = assert_sqlstate(
            try_create_scope(&mut c, "deep", "shop.account", "account_id", &options),
            "22023",
            "",
        );
        assert_clean_error(&e, &format!("create_scope with options {head}..."));
        assert_eq!(
            scope_count(&mut c),
            scopes,
            "a refused create_scope stores nothing"
        );
    }

    let jobs = scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs");
    for options in [
        deep_array("tables"),
        deep_object("columns"),
        deep_object("tables"),
    ] {
        let head: String = options.chars().take(30).collect();
        for background in [false, true] {
            let e = assert_sqlstate(
                try_migrate(&mut c, "1", "dst", &options, background),
                "22023",
                "",
            );
            assert_clean_error(
                &e,
                &format!("migrate_tenant with options {head}... (background {background})"),
            );
        }
        assert_eq!(
            scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs"),
            jobs,
            "a refused migrate_tenant creates no job"
        );
    }

    for checks in ["{NULL}", "{foreign_keys,NULL}"] {
        let e = assert_sqlstate(
            c.query_one(
                "SELECT tenant_ops.validate_integrity('shop', NULL::text, $1::text::text[])",
                &[&checks],
            ),
            "22023",
            "checks",
        );
        assert_clean_error(&e, &format!("validate_integrity with checks {checks}"));
    }
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs"),
        jobs,
        "a refused validate_integrity creates no job"
    );
}

/// What a Rust backtrace in an error would show.
const BACKTRACE_MARKERS: &[&str] = &[
    "backtrace",
    "rust_begin_unwind",
    "at src/",
    "panicked",
    ".rs:",
    "core::",
    "std::",
];

/// The message, DETAIL and HINT of `e` carry no Rust backtrace.
#[track_caller]
fn assert_clean_error(e: &DbError, what: &str) {
    for (part, value) in [
        ("message", Some(e.message())),
        ("DETAIL", e.detail()),
        ("HINT", e.hint()),
    ] {
        let Some(v) = value else { continue };
        let found: Vec<&&str> = BACKTRACE_MARKERS
            .iter()
            .filter(|m| v.to_lowercase().contains(&m.to_lowercase()))
            .collect();
        assert!(
            found.is_empty(),
            "{what}: the {part} of error {} carries a Rust backtrace ({found:?}):\n{v}",
            e.code().code()
        );
    }
}

/// Errors raised from deep inside a migration or its rollback — PostgreSQL's own 23503 when
/// another tenant's row blocks a rollback, a target's CHECK constraint, the extension's own
/// conflict and unknown-tenant errors — carry no Rust backtrace in their DETAIL.
pub fn security_errors_carry_no_backtrace(cluster: &Cluster) {
    let db = "e2e_sec_backtrace";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(&mut c, DRY_SHOP);
    exec(
        &mut c,
        "CREATE SCHEMA dstc;
         CREATE TABLE dstc.account (account_id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE dstc.orders (order_id int PRIMARY KEY, account_id int NOT NULL REFERENCES dstc.account,
                                   total numeric NOT NULL CHECK (total < 0));
         CREATE TABLE dstc.order_line (line_id int PRIMARY KEY, order_id int NOT NULL REFERENCES dstc.orders, qty int NOT NULL);",
    );

    let job = migrate(&mut c, "1", "dst", "{}", false);
    assert_succeeded(&mut c, job, "migration of tenant 1");
    // A row that is not the job's references the migrated account: the rollback cannot
    // delete it.
    exec(&mut c, "INSERT INTO dst.orders VALUES (99, 1, 3)");
    let e = assert_sqlstate(try_rollback(&mut c, job), "23503", "");
    assert_clean_error(&e, "rollback_migration blocked by another row");
    assert_eq!(
        job_status(&mut c, job),
        "succeeded",
        "a failed rollback changes nothing"
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM dst.order_line"),
        3,
        "a failed rollback deletes nothing"
    );

    let e = assert_sqlstate(try_migrate(&mut c, "1", "dst", "{}", false), "23505", "");
    assert_clean_error(&e, "migrate_tenant into rows already there");

    let e = assert_sqlstate(try_migrate(&mut c, "1", "dstc", "{}", false), "23514", "");
    assert_clean_error(&e, "migrate_tenant violating a target CHECK constraint");

    let e = assert_sqlstate(try_migrate(&mut c, "9", "dstc", "{}", false), "P0002", "9");
    assert_clean_error(&e, "migrate_tenant of an unknown tenant");
}
