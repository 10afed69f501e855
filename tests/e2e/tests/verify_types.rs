//! Verification over every kind of column it hashes: a faithful copy verifies, and one value
//! changed in the target (a different value, a value NULLed, a NULL given a value) is found,
//! per type, by `verify_migration` (different = 1) and by the job's own verify stage (23000
//! naming the table).
//!
//! What counts as a faithful copy: the target holds what assigning the source value to the
//! target column makes of it. With `create_target` the columns have the source's types and
//! modifiers; a pre-created target may declare other types where the assignment is lossless or
//! defined by the target type alone (char(20) into varchar(50) drops the padding, as every
//! cast of char(n) to a string type does; numeric(10,2) into numeric(12,3); real into double;
//! json into jsonb; an enum or domain into its text or base type; cidr into inet; bit into
//! varbit; smallint into integer). Conversions whose result depends on session settings
//! (timestamptz or money into text) are not faithful copies and are not covered.
//!
//! Values are compared by the target type's equality: `-0` and `0` (float), `1.50` and `1.5`
//! (numeric), `'1 day'` and `'24 hours'` (interval) are the same value there, so the changes
//! below are always to values the type tells apart.

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, Cluster};

use crate::common::*;
use crate::migration::text;

/// One column of the test table: name, source type, the target type of the pre-created
/// target, values of rows 1 and 2 (row 3 is NULL in every typed column), and a value the
/// type tells apart from row 1's.
struct Col {
    name: &'static str,
    ty: &'static str,
    target_ty: &'static str,
    v1: &'static str,
    v2: &'static str,
    changed: &'static str,
}

const fn col(
    name: &'static str,
    ty: &'static str,
    target_ty: &'static str,
    v1: &'static str,
    v2: &'static str,
    changed: &'static str,
) -> Col {
    Col {
        name,
        ty,
        target_ty,
        v1,
        v2,
        changed,
    }
}

/// SQL literals (E'' strings where backslashes matter).
const COLS: &[Col] = &[
    col(
        "c_bpchar",
        "character(20)",
        "varchar(50)",
        "'en'",
        "'ünïcødé  x'",
        "'de'",
    ),
    col(
        "c_varchar",
        "varchar(30)",
        "text",
        "'hello'",
        "''",
        "'hallo'",
    ),
    col(
        "c_numeric",
        "numeric(10,2)",
        "numeric(12,3)",
        "12.50",
        "-0.01",
        "12.51",
    ),
    col("c_real", "real", "double precision", "1.5", "'NaN'", "1.25"),
    col(
        "c_double",
        "double precision",
        "double precision",
        "'-0'",
        "'Infinity'",
        "1",
    ),
    col("c_int2", "smallint", "integer", "32767", "-32768", "1"),
    col(
        "c_ts",
        "timestamp(3)",
        "timestamp(6)",
        "'2024-02-29 12:34:56.789'",
        "'infinity'",
        "'2024-02-29 12:34:56.788'",
    ),
    col(
        "c_tstz",
        "timestamptz",
        "timestamptz",
        "'2024-03-31 02:30:00+02'",
        "'-infinity'",
        "'2024-03-31 02:30:01+02'",
    ),
    col(
        "c_date",
        "date",
        "date",
        "'2024-02-29'",
        "'0001-01-01 BC'",
        "'2024-03-01'",
    ),
    col(
        "c_time",
        "time(0)",
        "time",
        "'23:59:59'",
        "'00:00'",
        "'23:59:58'",
    ),
    col(
        "c_timetz",
        "timetz",
        "timetz",
        "'12:00+05:30'",
        "'12:00-08'",
        "'12:00+05'",
    ),
    col(
        "c_interval",
        "interval",
        "interval",
        "'1 mon 2 days 03:04:05.678'",
        "'-1 year'",
        "'1 mon 2 days 03:04:05.679'",
    ),
    col(
        "c_bpchar_arr",
        "character(5)[]",
        "varchar(10)[]",
        "'{ab,\"c d\"}'",
        "'{}'",
        "'{ab,cd}'",
    ),
    col(
        "c_num_arr",
        "numeric(6,1)[]",
        "numeric[]",
        "'{1.5,NULL,-2.0}'",
        "'{{1,2},{3,4}}'",
        "'{1.5,NULL,-2.1}'",
    ),
    col(
        "c_tstz_arr",
        "timestamptz[]",
        "timestamptz[]",
        "'{\"2024-01-01 00:00+00\",infinity}'",
        "'{NULL}'",
        "'{\"2024-01-01 00:00:01+00\",infinity}'",
    ),
    col(
        "c_domain",
        "src.code",
        "varchar(8)",
        "'ABC'",
        "'ÄÖÜ'",
        "'ABD'",
    ),
    col(
        "c_dom_num",
        "src.price",
        "numeric(8,2)",
        "9.99",
        "0",
        "9.98",
    ),
    col(
        "c_dom_arr",
        "src.code[]",
        "varchar(8)[]",
        "'{A,B}'",
        "'{}'",
        "'{A,C}'",
    ),
    col("c_enum", "src.mood", "text", "'happy'", "'sad'", "'ok'"),
    col(
        "c_comp",
        "src.pair",
        "src.pair",
        "'(ab,1.5)'",
        "'(,)'",
        "'(ab,1.6)'",
    ),
    col("c_money", "money", "money", "12.34", "-0.01", "12.35"),
    col(
        "c_tsvector",
        "tsvector",
        "tsvector",
        "'a fat cat'",
        "''",
        "'a fat rat'",
    ),
    col(
        "c_json",
        "json",
        "jsonb",
        "'{\"b\": 1,  \"a\": [1, 2]}'",
        "'\"ünï\"'",
        "'{\"b\": 2,  \"a\": [1, 2]}'",
    ),
    col(
        "c_jsonb",
        "jsonb",
        "jsonb",
        "'{\"a\": {\"b\": [1, 2.50]}}'",
        "'null'",
        "'{\"a\": {\"b\": [1, 2.51]}}'",
    ),
    col(
        "c_xml",
        "xml",
        "xml",
        "'<a x=\"1\">ü</a>'",
        "'text only'",
        "'<a x=\"2\">ü</a>'",
    ),
    col(
        "c_bytea",
        "bytea",
        "bytea",
        "'\\x00ff10'",
        "'\\x'",
        "'\\x00ff11'",
    ),
    col(
        "c_inet",
        "inet",
        "inet",
        "'192.168.0.1/24'",
        "'::1'",
        "'192.168.0.2/24'",
    ),
    col(
        "c_cidr",
        "cidr",
        "inet",
        "'10.0.0.0/8'",
        "'2001:db8::/32'",
        "'10.0.0.0/16'",
    ),
    col(
        "c_uuid",
        "uuid",
        "uuid",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        "'00000000-0000-0000-0000-000000000000'",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'",
    ),
    col("c_bool", "boolean", "boolean", "true", "false", "false"),
    col(
        "c_text",
        "text",
        "text",
        "'Grüße, 世界 🎉'",
        "E'tab\\there \"quoted\" \\\\ back'",
        "'Grüße, 世界 🎈'",
    ),
    col(
        "c_bit",
        "bit(4)",
        "varbit(8)",
        "B'1010'",
        "B'0000'",
        "B'1011'",
    ),
    col(
        "c_point", "point", "point", "'(1,2)'", "'(-0,0)'", "'(1,3)'",
    ),
];

const STRATEGIES: &[&str] = &["keep", "uuid", "uuid5", "uuid7"];

/// The source: root `t` (the tenant), `lang` shared (the issue's minimal case: a char(20)
/// column), `f` referencing both, `vals` with every type (primary key) and `vals_nopk` the
/// same without one (verified by whole rows). Tenant 1 has three rows in each typed table
/// (the third NULL in every typed column); tenant 2 has one, which must not be copied.
fn setup(c: &mut Client) {
    create_extension(c);
    let typed: String = COLS
        .iter()
        .map(|k| format!(", {} {}", k.name, k.ty))
        .collect();
    let names: String = COLS.iter().map(|k| format!(", {}", k.name)).collect();
    let row = |v: fn(&Col) -> &'static str| -> String {
        COLS.iter().map(|k| format!(", {}", v(k))).collect()
    };
    let nulls: String = COLS.iter().map(|_| ", NULL").collect();
    exec(
        c,
        &format!(
            "SET TimeZone = 'UTC';
             CREATE SCHEMA src;
             SET search_path = src;
             CREATE DOMAIN src.code AS varchar(8) CHECK (VALUE <> '');
             CREATE DOMAIN src.price AS numeric(8,2) CHECK (VALUE >= 0);
             CREATE TYPE src.mood AS ENUM ('sad', 'ok', 'happy');
             CREATE TYPE src.pair AS (a character(4), b numeric(5,1));
             CREATE TABLE lang (id int PRIMARY KEY, name character(20) NOT NULL);
             CREATE TABLE t (id int PRIMARY KEY);
             CREATE TABLE f (id int PRIMARY KEY, t int REFERENCES t, lang int REFERENCES lang);
             CREATE TABLE vals (id int PRIMARY KEY, t int NOT NULL REFERENCES t, n int NOT NULL{typed});
             CREATE TABLE vals_nopk (t int NOT NULL REFERENCES t, n int NOT NULL{typed});
             INSERT INTO lang VALUES (1, 'en'), (2, 'fr');
             INSERT INTO t VALUES (1), (2);
             INSERT INTO f VALUES (1, 1, 1), (2, 2, 2);
             INSERT INTO vals (id, t, n{names}) VALUES (1, 1, 1{r1}), (2, 1, 2{r2}), (3, 1, 3{nulls}), (4, 2, 1{r1});
             INSERT INTO vals_nopk (t, n{names}) VALUES (1, 1{r1}), (1, 2{r2}), (1, 3{nulls}), (2, 1{r1});
             RESET search_path;",
            r1 = row(|k| k.v1),
            r2 = row(|k| k.v2),
        ),
    );
    create_scope(c, "types", "src.t", "id", "{}");
}

/// The pre-created target `schema`: the tables with the target types, keys uuid where the
/// strategy re-keys, and a statement trigger on the typed tables that, when the settings
/// `vt.col` / `vt.val` are set, changes that column of row n = 1 after the copy wrote it.
fn precreate(c: &mut Client, schema: &str, strategy: &str) {
    let key = if strategy == "keep" { "int" } else { "uuid" };
    let typed: String = COLS
        .iter()
        .map(|k| format!(", {} {}", k.name, k.target_ty))
        .collect();
    exec(
        c,
        &format!(
            "CREATE SCHEMA {schema};
             SET search_path = {schema};
             CREATE TABLE lang (id {key} PRIMARY KEY, name varchar(50) NOT NULL);
             CREATE TABLE t (id {key} PRIMARY KEY);
             CREATE TABLE f (id {key} PRIMARY KEY, t {key} REFERENCES t, lang {key} REFERENCES lang);
             CREATE TABLE vals (id {key} PRIMARY KEY, t {key} NOT NULL REFERENCES t, n int NOT NULL{typed});
             CREATE TABLE vals_nopk (t {key} NOT NULL REFERENCES t, n int NOT NULL{typed});
             CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF coalesce(current_setting('vt.col', true), '') <> '' THEN
                     EXECUTE pg_catalog.format('UPDATE %I.%I SET %I = %s WHERE n = 1', TG_TABLE_SCHEMA,
                         TG_TABLE_NAME, current_setting('vt.col'), current_setting('vt.val'));
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER tamper AFTER INSERT ON vals FOR EACH STATEMENT EXECUTE FUNCTION tamper();
             CREATE TRIGGER tamper AFTER INSERT ON vals_nopk FOR EACH STATEMENT EXECUTE FUNCTION tamper();
             RESET search_path;"
        ),
    );
}

fn options(strategy: &str, create: bool) -> String {
    format!(r#"{{"create_target": {create}, "shared": "copy", "id_strategy": "{strategy}"}}"#)
}

/// `verify_migration(job)` as (target, source_rows, target_rows, missing, different,
/// complete), by target table name.
type Verified = Vec<(String, i64, i64, i64, i64, bool)>;

#[track_caller]
fn verify(c: &mut Client, job: i64) -> Verified {
    match c.query(
        "SELECT target, source_rows, target_rows, missing, different, complete
           FROM tenant_ops.verify_migration($1) ORDER BY target",
        &[&job],
    ) {
        Ok(rows) => rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect(),
        Err(e) => panic!("verify_migration({job}): {}", describe_error(&e)),
    }
}

/// What a faithful copy of tenant 1 verifies as (vals_nopk has no key: not reported).
fn clean(schema: &str) -> Verified {
    ["f", "lang", "t", "vals"]
        .iter()
        .map(|t| {
            let n = if *t == "vals" { 3 } else { 1 };
            (format!("{schema}.{t}"), n, n, 0, 0, true)
        })
        .collect()
}

/// The tenant's rows of every table of `schema` as text, sorted, without the (re-keyed) key
/// columns: `tenant` Some(1) reads tenant 1 of the source, None all of a target.
fn content(c: &mut Client, schema: &str, tenant: Option<i32>) -> String {
    let (of_t, of_f, of_l) = match tenant {
        Some(n) => (
            format!(" WHERE t = {n}"),
            format!(" WHERE f.t = {n}"),
            format!(" WHERE id IN (SELECT lang FROM {schema}.f WHERE t = {n})"),
        ),
        None => Default::default(),
    };
    let of_root = of_t.replace("WHERE t", "WHERE id");
    text(
        c,
        &format!(
            "SELECT concat_ws(' | ',
                 (SELECT string_agg(name::text, ',' ORDER BY name) FROM {schema}.lang{of_l}),
                 (SELECT count(*)::text FROM {schema}.t{of_root}),
                 (SELECT count(*)::text FROM {schema}.f f JOIN {schema}.t t ON t.id = f.t
                                                          JOIN {schema}.lang l ON l.id = f.lang{of_f}),
                 (SELECT string_agg(v::text, ',' ORDER BY v.n) FROM (SELECT n{cols} FROM {schema}.vals{of_t}) v),
                 (SELECT string_agg(v::text, ',' ORDER BY v.n) FROM (SELECT n{cols} FROM {schema}.vals_nopk{of_t}) v))",
            cols = COLS
                .iter()
                .map(|k| format!(", {}::text", k.name))
                .collect::<String>()
        ),
    )
}

/// Changes one value of the target (each of: row 1's value to another, row 1's value to
/// NULL, row 3's NULL to a value) in a transaction that is rolled back, and asserts that
/// verify_migration finds exactly that row of `vals` different and nothing else.
fn assert_changes_found(c: &mut Client, job: i64, schema: &str) {
    let clean = clean(schema);
    for k in COLS {
        for (n, value) in [(1, k.changed), (1, "NULL"), (3, k.changed)] {
            exec(
                c,
                &format!(
                    "BEGIN; UPDATE {schema}.vals SET {} = {value} WHERE n = {n}",
                    k.name
                ),
            );
            let got = verify(c, job);
            exec(c, "ROLLBACK");
            let expected: Verified = clean
                .iter()
                .map(|r| {
                    if r.0 == format!("{schema}.vals") {
                        (r.0.clone(), 3, 3, 0, 1, false)
                    } else {
                        r.clone()
                    }
                })
                .collect();
            assert_eq!(
                got, expected,
                "{schema}.vals.{} ({}) of row {n} set to {value}: verify_migration must find one row different",
                k.name, k.ty
            );
        }
    }
    assert_eq!(verify(c, job), clean, "{schema}: clean again");
}

/// Every type, copied with every id strategy into a created target: the job verifies, and
/// verify_migration reports it complete, under other TimeZone, DateStyle, IntervalStyle and
/// extra_float_digits settings too, and finds each changed value.
pub fn verify_types_created_target(cluster: &Cluster) {
    let mut c = fresh_db(cluster, "e2e_verify_types_created");
    setup(&mut c);
    let source = content(&mut c, "src", Some(1));
    for strategy in STRATEGIES {
        let schema = format!("c_{strategy}");
        exec(&mut c, &format!("CREATE SCHEMA {schema}"));
        let job = migrate_tenant(
            &mut c,
            "types",
            "1",
            &schema,
            &options(strategy, true),
            false,
        );
        assert_eq!(
            verify(&mut c, job),
            clean(&schema),
            "{strategy}: a faithful copy verifies"
        );
        assert_eq!(
            content(&mut c, &schema, None),
            source,
            "{strategy}: the target holds the tenant's rows, every FK resolving"
        );
        exec(
            &mut c,
            "SET TimeZone = 'Pacific/Chatham'; SET DateStyle = 'SQL, DMY';
             SET IntervalStyle = 'sql_standard'; SET extra_float_digits = -3",
        );
        assert_eq!(
            verify(&mut c, job),
            clean(&schema),
            "{strategy}: verified under other session settings than the copy's"
        );
        exec(&mut c, "RESET ALL");
        assert_changes_found(&mut c, job, &schema);
    }
    // The issue's minimal case, shared rows copied: a background job (in a worker, under the
    // server's settings) submitted and verified from sessions with other time zones.
    exec(
        &mut c,
        "CREATE SCHEMA bg; SET TimeZone = 'America/St_Johns'",
    );
    let job = migrate_tenant(&mut c, "types", "1", "bg", &options("uuid5", true), true);
    assert_eq!(wait_for(&mut c, job, 60.0), "succeeded", "background job");
    exec(&mut c, "SET TimeZone = 'Asia/Kathmandu'");
    assert_eq!(verify(&mut c, job), clean("bg"), "background: verified");
    exec(&mut c, "RESET ALL");
}

/// Every type into pre-created targets with other (assignment-compatible) types, with every
/// id strategy: a changed value makes the job's verify stage fail with 23000 naming the table
/// (nothing is left: the inline job's transaction rolls back), a faithful copy verifies.
pub fn verify_types_precreated_target(cluster: &Cluster) {
    let mut c = fresh_db(cluster, "e2e_verify_types_precreated");
    setup(&mut c);
    for strategy in STRATEGIES {
        let schema = format!("p_{strategy}");
        precreate(&mut c, &schema, strategy);
        let opts = options(strategy, false);
        // The no-key table is verified by whole rows: every type once is enough (keep).
        let tables: &[&str] = if *strategy == "keep" {
            &["vals", "vals_nopk"]
        } else {
            &["vals"]
        };
        for table in tables {
            for k in COLS {
                exec(
                    &mut c,
                    &format!(
                        "BEGIN; ALTER TABLE {schema}.{other} DISABLE TRIGGER tamper;
                         SELECT set_config('vt.col', '{}', true), set_config('vt.val', $v${}$v$, true)",
                        k.name,
                        k.changed,
                        other = if *table == "vals" { "vals_nopk" } else { "vals" },
                    ),
                );
                let r = try_migrate_tenant(&mut c, "types", "1", &schema, &opts, false);
                exec(&mut c, "ROLLBACK");
                let e = assert_sqlstate(r, "23000", &format!("verification of src.{table} failed"));
                assert!(
                    e.message().contains(&format!("{schema}.{table}")),
                    "{strategy}, {table}.{}: the message names the target: {}",
                    k.name,
                    e.message()
                );
            }
        }
        let job = migrate_tenant(&mut c, "types", "1", &schema, &opts, false);
        assert_eq!(
            verify(&mut c, job),
            clean(&schema),
            "{strategy}: a faithful copy into other types verifies"
        );
        assert_eq!(
            scalar(&mut c, &format!("SELECT count(*) FROM {schema}.vals_nopk")),
            3,
            "{strategy}: vals_nopk copied"
        );
        assert_changes_found(&mut c, job, &schema);
    }
}

/// The copy takes the verification checksums in its own pass (the stored row from
/// `RETURNING`, the source row as mapped): a BEFORE INSERT trigger on the target that changes
/// one value of row 1 is still found by the job's verify stage (23000 naming the table), for
/// several types and every id strategy; a faithful copy is verified from those checksums
/// (`verified_by`; the targets without an enabled BEFORE trigger from the copy's row counts,
/// the shared table `lang` is read again), and a target with an enabled AFTER trigger (which
/// may change rows once they are stored) is read again instead, saying so.
pub fn verify_types_before_insert_trigger(cluster: &Cluster) {
    let mut c = fresh_db(cluster, "e2e_verify_types_before");
    setup(&mut c);
    for strategy in STRATEGIES {
        let schema = format!("b_{strategy}");
        precreate(&mut c, &schema, strategy);
        exec(
            &mut c,
            &format!(
                "ALTER TABLE {schema}.vals DISABLE TRIGGER tamper;
                 ALTER TABLE {schema}.vals_nopk DISABLE TRIGGER tamper;
                 CREATE FUNCTION {schema}.tamper_before() RETURNS trigger LANGUAGE plpgsql AS $$
                 DECLARE v jsonb;
                 BEGIN
                     IF NEW.n = 1 AND coalesce(current_setting('vt.before', true), '') <> '' THEN
                         EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb((%s)::text)', current_setting('vt.val')) INTO v;
                         NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(current_setting('vt.before'), v));
                     END IF;
                     RETURN NEW;
                 END $$;
                 CREATE TRIGGER tamper_before BEFORE INSERT ON {schema}.vals
                     FOR EACH ROW EXECUTE FUNCTION {schema}.tamper_before();"
            ),
        );
        let opts = options(strategy, false);
        for k in COLS
            .iter()
            .filter(|k| ["c_bpchar", "c_numeric", "c_ts", "c_interval", "c_int2"].contains(&k.name))
        {
            exec(
                &mut c,
                &format!(
                    "BEGIN; SELECT set_config('vt.before', '{}', true), set_config('vt.val', $v${}$v$, true)",
                    k.name, k.changed
                ),
            );
            let r = try_migrate_tenant(&mut c, "types", "1", &schema, &opts, false);
            exec(&mut c, "ROLLBACK");
            let e = assert_sqlstate(r, "23000", "verification of src.vals failed");
            assert!(
                e.message().contains(&format!("{schema}.vals")),
                "{strategy}, vals.{}: the message names the target: {}",
                k.name,
                e.message()
            );
        }
        let job = migrate_tenant(&mut c, "types", "1", &schema, &opts, false);
        let by = c
            .query(
                "SELECT t.target, t.details ->> 'verified_by' FROM tenant_ops.job_tables t
                  WHERE t.job_id = $1 ORDER BY t.target",
                &[&job],
            )
            .unwrap_or_else(|e| panic!("job_tables of job {job}: {}", describe_error(&e)))
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>();
        let checked = "the copy's checksums";
        let counted =
            "the copy's row counts (the target stores rows as given: no BEFORE trigger, no rule)";
        let shared = "reading both sides again: rows other migrations share are skipped when they are in the target already";
        assert_eq!(
            by,
            [("f", counted), ("lang", shared), ("t", counted), ("vals", checked), ("vals_nopk", counted)]
                .iter()
                .map(|(t, how)| (format!("{schema}.{t}"), how.to_string()))
                .collect::<Vec<_>>(),
            "{strategy}: the owned table with the BEFORE trigger verified from the copy's own checksums, the others (no trigger, or a disabled one) from its row counts, the shared one read again"
        );
        assert_eq!(
            verify(&mut c, job),
            clean(&schema),
            "{strategy}: verify_migration agrees"
        );
    }
    // An AFTER trigger on the target: that table is read again, and the reason recorded.
    exec(&mut c, "ALTER TABLE b_keep.vals ENABLE TRIGGER tamper; TRUNCATE b_keep.f, b_keep.vals, b_keep.vals_nopk, b_keep.lang, b_keep.t");
    let job = migrate_tenant(
        &mut c,
        "types",
        "1",
        "b_keep",
        &options("keep", false),
        false,
    );
    assert_eq!(
        text(
            &mut c,
            &format!("SELECT details ->> 'verified_by' FROM tenant_ops.job_tables WHERE job_id = {job} AND target = 'b_keep.vals'")
        ),
        "reading both sides again: the target has AFTER triggers or rules, which may change rows once stored"
    );
    drop(c);
    cluster.drop_database("e2e_verify_types_before");
}

/// char(n) as keys: a char(3) tenant key (the tenant value was cast to `character`, that is
/// char(1), and matched nothing) and a char(4) primary key copied in keyset batches of one
/// row (the batch bound was cast to char(1)), with `new_tenant` writing a char(3) value.
pub fn verify_types_char_keys(cluster: &Cluster) {
    let mut c = fresh_db(cluster, "e2e_verify_types_char_keys");
    create_extension(&mut c);
    exec(
        &mut c,
        "CREATE TABLE office (code character(3) PRIMARY KEY, name character(10) NOT NULL);
         CREATE TABLE item (sku character(4) PRIMARY KEY, office character(3) NOT NULL REFERENCES office,
                            label character(6));
         INSERT INTO office VALUES ('ab', 'first'), ('ax', 'second');
         INSERT INTO item VALUES ('k1', 'ab', 'one'), ('k2', 'ab', NULL), ('k10', 'ab', 'ten'), ('k3', 'ax', 'other');
         CREATE SCHEMA tgt; CREATE SCHEMA tgt2;",
    );
    create_scope(&mut c, "offices", "office", "code", "{}");
    let rows = plan(&mut c, "offices", "ab");
    assert_eq!(
        rows.iter().map(|r| r.rows).collect::<Vec<_>>(),
        vec![Some(1), Some(3)],
        "plan of tenant 'ab':\n{}",
        show_plan(&rows)
    );
    let job = migrate_tenant(
        &mut c,
        "offices",
        "ab",
        "tgt",
        r#"{"create_target": true, "batch_size": 1}"#,
        false,
    );
    assert_eq!(
        verify(&mut c, job),
        vec![
            ("tgt.item".into(), 3, 3, 0, 0, true),
            ("tgt.office".into(), 1, 1, 0, 0, true)
        ]
    );
    assert_eq!(
        text(
            &mut c,
            "SELECT string_agg(sku || '/' || office || '/' || coalesce(label, '-'), ',' ORDER BY sku) FROM tgt.item"
        ),
        "k1/ab/one,k10/ab/ten,k2/ab/-"
    );
    // Validation of the char(3) tenant: its office and three items checked (a key cast to
    // char(1) checked nothing, and scored 100).
    let v: i64 = c
        .query_one("SELECT tenant_ops.validate_integrity('offices', 'ab')", &[])
        .expect("validate_integrity")
        .get(0);
    assert_eq!(
        text(
            &mut c,
            &format!("SELECT concat_ws('/', result ->> 'score', result ->> 'rows_checked') FROM tenant_ops.jobs WHERE id = {v}")
        ),
        "100.0/4",
        "tenant 'ab': clean, four rows checked"
    );
    // A clone under a new char(3) tenant value.
    let job = migrate_tenant(
        &mut c,
        "offices",
        "ab",
        "tgt2",
        r#"{"create_target": true, "new_tenant": "zz"}"#,
        false,
    );
    assert_eq!(
        text(
            &mut c,
            "SELECT string_agg(o.code || '/' || o.name || '/' || coalesce(i.label, '-'), ',' ORDER BY i.label NULLS FIRST)
               FROM tgt2.item i JOIN tgt2.office o ON o.code = i.office"
        ),
        "zz/first/-,zz/first/one,zz/first/ten"
    );
    assert!(
        verify(&mut c, job).iter().all(|r| r.5),
        "the clone verifies"
    );
}

/// Columns with hostile names in a declared link, keys and char(n) columns, through
/// plan, migrate_tenant (verified), verify_migration and validate_integrity; then the linked
/// column is renamed after create_scope: every function refuses with 42703 naming the column
/// the scope still names (never splicing the stale name into SQL).
pub fn verify_types_link_column_renamed(cluster: &Cluster) {
    let mut c = fresh_db(cluster, "e2e_verify_types_renamed");
    create_extension(&mut c);
    exec(
        &mut c,
        r#"CREATE SCHEMA "Sch.$1 'x'";
           CREATE TABLE "Sch.$1 'x'"."Ten ant" ("I;d" int PRIMARY KEY, "Nämé" character(8));
           CREATE TABLE "Sch.$1 'x'"."no.te" ("Ké""y" int PRIMARY KEY, "mem.$1 ""x""" int, "bo dy" character(12));
           INSERT INTO "Sch.$1 'x'"."Ten ant" VALUES (1, 'ä'), (2, 'b');
           INSERT INTO "Sch.$1 'x'"."no.te" VALUES (10, 1, 'one'), (11, 1, NULL), (12, 2, 'two');
           CREATE SCHEMA "Tgt ""1""";"#,
    );
    let link = r#"{"links": [{"name": "note's tenant", "child": "\"Sch.$1 'x'\".\"no.te\"", "columns": ["mem.$1 \"x\""], "parent": "\"Sch.$1 'x'\".\"Ten ant\""}]}"#;
    create_scope(&mut c, "hostile", r#""Sch.$1 'x'"."Ten ant""#, "I;d", link);
    let rows = plan(&mut c, "hostile", "1");
    assert_eq!(
        rows.iter().map(|r| r.rows).collect::<Vec<_>>(),
        vec![Some(1), Some(2)],
        "plan:\n{}",
        show_plan(&rows)
    );
    let job = migrate_tenant(
        &mut c,
        "hostile",
        "1",
        "Tgt \"1\"",
        r#"{"create_target": true, "id_strategy": "uuid5"}"#,
        false,
    );
    assert!(
        verify(&mut c, job).iter().all(|r| r.5 && r.1 > 0),
        "verified"
    );
    let v: i64 = c
        .query_one("SELECT tenant_ops.validate_integrity('hostile', '1')", &[])
        .expect("validate_integrity")
        .get(0);
    assert_eq!(
        text(
            &mut c,
            &format!("SELECT concat_ws('/', result ->> 'score', result ->> 'rows_checked') FROM tenant_ops.jobs WHERE id = {v}")
        ),
        "100.0/3",
        "clean, three rows checked"
    );

    exec(
        &mut c,
        r#"ALTER TABLE "Sch.$1 'x'"."no.te" RENAME COLUMN "mem.$1 ""x""" TO member"#,
    );
    let column = "mem.$1 \"x\"";
    let jobs_before = scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs");
    assert_sqlstate(try_plan(&mut c, "hostile", "1"), "42703", column);
    assert_sqlstate(
        try_migrate_tenant(&mut c, "hostile", "2", "Tgt \"1\"", "{}", false),
        "42703",
        column,
    );
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.validate_integrity('hostile', '1')", &[]),
        "42703",
        column,
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs"),
        jobs_before,
        "refused calls create no job"
    );
}
