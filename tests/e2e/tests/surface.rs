//! The SQL surface as users meet it: privileges and audit, hostile identifiers, bad input.

use pg_tenant_ops_e2e::{
    assert_sqlstate, assert_sqlstate_any, describe_error, quote_ident, Cluster,
};

use crate::common::*;

const SHOP_SCHEMA: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.account (account_id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.orders (
    order_id int PRIMARY KEY,
    account_id int NOT NULL REFERENCES shop.account,
    total numeric NOT NULL);
CREATE TABLE shop.order_line (
    line_id int PRIMARY KEY,
    order_id int NOT NULL REFERENCES shop.orders,
    qty int NOT NULL);
INSERT INTO shop.account VALUES (1, 'one'), (2, 'two');
INSERT INTO shop.orders VALUES (10, 1, 5), (11, 1, 7), (20, 2, 1);
INSERT INTO shop.order_line VALUES (100, 10, 1), (101, 10, 2), (102, 11, 1), (200, 20, 9);
"#;

pub fn privileges_and_audit(cluster: &Cluster) {
    let db = "e2e_privileges";
    let mut su = fresh_db(cluster, db);
    create_extension(&mut su);
    exec(&mut su, SHOP_SCHEMA);
    exec(
        &mut su,
        "CREATE ROLE v_user LOGIN IN ROLE tenant_ops_viewer;
         CREATE ROLE o_user LOGIN IN ROLE tenant_ops_operator;
         CREATE ROLE a_user LOGIN IN ROLE tenant_ops_admin;
         CREATE ROLE nobody_user LOGIN;
         GRANT USAGE ON SCHEMA shop TO v_user, o_user, a_user, nobody_user;
         GRANT SELECT ON ALL TABLES IN SCHEMA shop TO v_user, o_user, a_user, nobody_user;",
    );
    let audit_before = scalar(&mut su, "SELECT count(*) FROM tenant_ops.audit_log");
    let (mut v, mut o, mut a, mut nobody) = (
        cluster.connect_as(db, "v_user"),
        cluster.connect_as(db, "o_user"),
        cluster.connect_as(db, "a_user"),
        cluster.connect_as(db, "nobody_user"),
    );

    assert_sqlstate(
        try_create_scope(&mut v, "shop", "shop.account", "account_id", "{}"),
        "42501",
        "",
    );
    assert_sqlstate(
        try_create_scope(&mut o, "shop", "shop.account", "account_id", "{}"),
        "42501",
        "",
    );
    assert_eq!(
        scope_count(&mut su),
        0,
        "a refused create_scope writes nothing"
    );

    create_scope(&mut a, "shop", "shop.account", "account_id", "{}");

    // The viewer reads the plan; someone with no tenant_ops role cannot.
    let p = plan(&mut v, "shop", "1");
    assert_roles(
        &mut v,
        &p,
        &[
            ("shop.account", "root", Some(1)),
            ("shop.orders", "owned", Some(2)),
            ("shop.order_line", "owned", Some(3)),
        ],
    );
    assert_sqlstate(try_plan(&mut nobody, "shop", "1"), "42501", "");
    assert_sqlstate(
        try_create_scope(&mut nobody, "shop2", "shop.account", "account_id", "{}"),
        "42501",
        "",
    );
    assert_sqlstate(try_drop_scope(&mut nobody, "shop"), "42501", "");

    assert_sqlstate(try_drop_scope(&mut o, "shop"), "42501", "");
    assert_sqlstate(try_drop_scope(&mut v, "shop"), "42501", "");
    assert_eq!(
        scope_count(&mut su),
        1,
        "a refused drop_scope drops nothing"
    );
    if let Err(e) = try_drop_scope(&mut a, "shop") {
        panic!("drop_scope as a_user failed: {}", describe_error(&e));
    }
    assert_eq!(scope_count(&mut su), 0);

    let rows = su
        .query(
            "SELECT action::text, target::text, session_user_name::text, outcome::text
             FROM tenant_ops.audit_log
             WHERE action IN ('create_scope', 'drop_scope')
             ORDER BY id",
            &[],
        )
        .unwrap_or_else(|e| panic!("reading tenant_ops.audit_log: {}", describe_error(&e)));
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let want = vec![
        (
            "create_scope".to_string(),
            "shop".to_string(),
            "a_user".to_string(),
            "ok".to_string(),
        ),
        (
            "drop_scope".to_string(),
            "shop".to_string(),
            "a_user".to_string(),
            "ok".to_string(),
        ),
    ];
    assert_eq!(got, want, "audit_log rows for create_scope/drop_scope");
    let audit_after = scalar(&mut su, "SELECT count(*) FROM tenant_ops.audit_log");
    assert!(
        audit_after >= audit_before + 2,
        "audit_log grew by at least the two rows"
    );

    // Append-only for everyone but the extension's owner.
    for (who, client) in [("a_user", &mut a), ("o_user", &mut o), ("v_user", &mut v)] {
        let r = client.execute("UPDATE tenant_ops.audit_log SET outcome = 'tampered'", &[]);
        let e = assert_sqlstate(r, "42501", "");
        assert!(
            e.message().contains("audit_log") || e.message().contains("tenant_ops"),
            "{who}: the refusal should name audit_log: {}",
            e.message()
        );
        assert_sqlstate(
            client.execute("DELETE FROM tenant_ops.audit_log", &[]),
            "42501",
            "",
        );
        assert_sqlstate(
            client.execute("TRUNCATE tenant_ops.audit_log", &[]),
            "42501",
            "",
        );
    }
    assert_eq!(
        scalar(
            &mut su,
            "SELECT count(*) FROM tenant_ops.audit_log WHERE outcome = 'tampered'"
        ),
        0
    );
    assert_eq!(
        scalar(&mut su, "SELECT count(*) FROM tenant_ops.audit_log"),
        audit_after,
        "nothing was deleted from audit_log"
    );
}

// The hostile schema: quotes, semicolons, spaces, mixed case and non-ASCII everywhere.
const H_SCHEMA: &str = "Wéird; \"schema\"";
const H_ROOT: &str = "Ténant \"Root\"";
const H_CHILD: &str = "child; DROP TABLE x";
const H_KIDS: &str = "bıgınt kids";
const H_LOOKUP: &str = "Lóokup; 'Codes'";

fn q(table: &str) -> String {
    format!("{}.{}", quote_ident(H_SCHEMA), quote_ident(table))
}

pub fn hostile_identifiers(cluster: &Cluster) {
    let db = "e2e_hostile";
    let mut c = fresh_db(cluster, db);
    let (root, child, kids, lookup) = (q(H_ROOT), q(H_CHILD), q(H_KIDS), q(H_LOOKUP));
    exec(
        &mut c,
        &format!(
            r#"
CREATE TABLE public.x (id int);
INSERT INTO public.x VALUES (1);
CREATE SCHEMA {schema};
CREATE TABLE {root} ("bıgınt" bigint PRIMARY KEY, "Display Name" text);
CREATE TABLE {lookup} ("Cöde" text PRIMARY KEY, "the label" text);
CREATE TABLE {child} (
    "Child ID" int,
    "Sub'Key" text,
    "TenantRef" bigint NOT NULL REFERENCES {root} ("bıgınt"),
    "lookup cöde; --" text REFERENCES {lookup} ("Cöde"),
    PRIMARY KEY ("Child ID", "Sub'Key"));
CREATE TABLE {kids} (
    "kid id" serial PRIMARY KEY,
    "Parent ""ID""" int NOT NULL,
    "parent sub'key" text NOT NULL,
    "MixedCase" text,
    FOREIGN KEY ("Parent ""ID""", "parent sub'key") REFERENCES {child} ("Child ID", "Sub'Key"));
INSERT INTO {root} VALUES (1, 'one'), (2, 'two'), (3, 'none'), (9007199254740993, 'beyond 2^53');
INSERT INTO {lookup} VALUES ('a', 'A'), ('b', 'B'), ('c''q', 'quote'), ('unused', 'U');
INSERT INTO {child} VALUES
    (1, 'x', 1, 'a'), (2, 'x', 1, 'b'), (2, 'y', 1, NULL),
    (3, 'x', 2, 'a'), (3, 'y', 2, 'c''q'),
    (4, 'x', 9007199254740993, 'c''q');
INSERT INTO {kids} ("Parent ""ID""", "parent sub'key", "MixedCase") VALUES
    (1, 'x', 'k1'), (1, 'x', 'k2'), (2, 'x', 'k3'), (2, 'y', 'k4'),
    (3, 'x', 'k5'),
    (4, 'x', 'k6'), (4, 'x', 'k7'), (4, 'x', 'k8');
"#,
            schema = quote_ident(H_SCHEMA),
        ),
    );
    let child_sql = format!(r#"SELECT count(*) FROM {child} WHERE "TenantRef" = $1::text::bigint"#);
    let kids_sql = format!(
        r#"SELECT count(*) FROM {kids} k JOIN {child} ch
             ON ch."Child ID" = k."Parent ""ID""" AND ch."Sub'Key" = k."parent sub'key"
           WHERE ch."TenantRef" = $1::text::bigint"#
    );
    let lookup_sql = format!(
        r#"SELECT count(DISTINCT "lookup cöde; --") FROM {child} WHERE "TenantRef" = $1::text::bigint"#
    );
    let root_sql = format!(r#"SELECT count(*) FROM {root} WHERE "bıgınt" = $1::text::bigint"#);
    let oracle: Vec<(&str, &str)> = vec![
        (&root, &root_sql),
        (&child, &child_sql),
        (&kids, &kids_sql),
        (&lookup, &lookup_sql),
    ];
    let expected = [
        ("1", 3, 4, 2),
        ("2", 2, 1, 2),
        ("3", 0, 0, 0),
        ("9007199254740993", 1, 3, 1),
    ];
    // The fixture itself: the hand-written SQL gives the numbers this test expects.
    for (tenant, n_child, n_kids, n_lookup) in expected {
        for ((table, sql), n) in oracle.iter().zip([1, n_child, n_kids, n_lookup]) {
            assert_eq!(
                count(&mut c, sql, tenant),
                n,
                "fixture: {table} for tenant {tenant}"
            );
        }
    }

    create_extension(&mut c);

    let scope = "wéird scope; \"x\" 'y'";
    create_scope(&mut c, scope, &root, "bıgınt", "{}");
    let listed = c
        .query_one(
            "SELECT count(*) FROM tenant_ops.scopes WHERE name = $1::text AND root = $2::text::regclass",
            &[&scope, &root],
        )
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or_else(|e| panic!("{}", describe_error(&e)));
    assert_eq!(listed, 1, "the scope is listed under its hostile name");

    for (tenant, n_child, n_kids, n_lookup) in expected {
        let p = plan(&mut c, scope, tenant);
        assert_roles(
            &mut c,
            &p,
            &[
                (&root, "root", Some(1)),
                (&child, "owned", Some(n_child)),
                (&kids, "owned", Some(n_kids)),
                (&lookup, "shared", Some(n_lookup)),
            ],
        );
        assert_counts(&mut c, &p, tenant, &oracle);
        assert_dependency_order(&mut c, &p, &[]);
    }
    // 9007199254740992 is 2^53: a key squeezed through a double would find the big tenant.
    assert_sqlstate(
        try_plan(&mut c, scope, "9007199254740992"),
        "P0002",
        "9007199254740992",
    );

    // An options table that does not exist, named with the same kind of characters.
    let missing = "nö such; table";
    let options = format!(r#"{{"exclude": [{}]}}"#, json_str(&quote_ident(missing)));
    let before = scope_count(&mut c);
    assert_sqlstate(
        try_create_scope(&mut c, "hostile 2", &root, "bıgınt", &options),
        "42P01",
        missing,
    );
    assert_eq!(scope_count(&mut c), before);

    if let Err(e) = try_drop_scope(&mut c, scope) {
        panic!("drop_scope({scope:?}): {}", describe_error(&e));
    }
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM public.x"),
        1,
        "table x survives"
    );
    assert_eq!(
        scalar(&mut c, &format!("SELECT count(*) FROM {child}")),
        6,
        "the hostile tables are untouched"
    );
}

const BAD_SCHEMA: &str = r#"
CREATE TABLE acct (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE proj (id int PRIMARY KEY, acct_id int NOT NULL REFERENCES acct, code text);
CREATE TABLE task (id int PRIMARY KEY, proj_id int NOT NULL REFERENCES proj, label text);
CREATE VIEW acct_v AS SELECT * FROM acct;
INSERT INTO acct VALUES (1, 'one'), (2, 'two');
INSERT INTO proj VALUES (10, 1, 'p10'), (20, 2, 'p20');
INSERT INTO task VALUES (100, 10, 't'), (101, 10, 'u'), (200, 20, 'v');
"#;

pub fn bad_input(cluster: &Cluster) {
    let db = "e2e_bad_input";
    let mut c = fresh_db(cluster, db);
    exec(&mut c, BAD_SCHEMA);
    create_extension(&mut c);

    create_scope(&mut c, "good", "acct", "id", "{}");
    let p = plan(&mut c, "good", "1");
    assert_roles(
        &mut c,
        &p,
        &[
            ("acct", "root", Some(1)),
            ("proj", "owned", Some(1)),
            ("task", "owned", Some(2)),
        ],
    );
    let baseline = scope_count(&mut c);
    assert_eq!(baseline, 1);

    // Each case: what it is, the call, the SQLSTATE, substrings of which one must be in the message.
    type Call = Box<
        dyn Fn(
            &mut pg_tenant_ops_e2e::postgres::Client,
        ) -> Result<(), pg_tenant_ops_e2e::postgres::Error>,
    >;
    let cs = |name: &'static str,
              root: &'static str,
              key: &'static str,
              options: &'static str|
     -> Call {
        Box::new(move |c| try_create_scope(c, name, root, key, options).map(|_| ()))
    };
    let cases: Vec<(&str, Call, &str, &[&str])> = vec![
        (
            "plan of an unknown scope",
            Box::new(|c| try_plan(c, "nope", "1").map(|_| ())),
            "42704",
            &["nope"],
        ),
        (
            "drop of an unknown scope",
            Box::new(|c| try_drop_scope(c, "nope")),
            "42704",
            &["nope"],
        ),
        (
            "scope name taken",
            cs("good", "acct", "id", "{}"),
            "42710",
            &["good"],
        ),
        (
            "key column missing on the root",
            cs("s_nokey", "acct", "acct_key", "{}"),
            "42703",
            &["acct_key"],
        ),
        (
            "tenant that does not cast to the key type",
            Box::new(|c| try_plan(c, "good", "abc").map(|_| ())),
            "22P02",
            &["abc"],
        ),
        (
            "tenant that does not exist",
            Box::new(|c| try_plan(c, "good", "999").map(|_| ())),
            "P0002",
            &["999"],
        ),
        (
            "unknown option key",
            cs("s_opt", "acct", "id", r#"{"bogus": 1}"#),
            "22023",
            &["bogus"],
        ),
        (
            "options not an object",
            cs("s_arr", "acct", "id", "[1, 2]"),
            "22023",
            &["option", "object"],
        ),
        (
            "owner names an unknown constraint",
            cs(
                "s_owner",
                "acct",
                "id",
                r#"{"owner": {"task": "no_such_fkey"}}"#,
            ),
            "42704",
            &["no_such_fkey"],
        ),
        (
            "owner keyed by an unknown table",
            cs(
                "s_owner2",
                "acct",
                "id",
                r#"{"owner": {"ghost_table": "proj"}}"#,
            ),
            "42P01",
            &["ghost_table"],
        ),
        (
            "link with mismatched column types",
            cs(
                "s_link",
                "acct",
                "id",
                r#"{"links": [{"name": "task_acct_link", "child": "task", "columns": ["label"],
                               "parent": "acct", "parent_columns": ["id"]}]}"#,
            ),
            "42804",
            &["task_acct_link", "label"],
        ),
        (
            "link with an unknown column",
            cs(
                "s_link2",
                "acct",
                "id",
                r#"{"links": [{"name": "l2", "child": "task", "columns": ["no_such_col"],
                               "parent": "acct", "parent_columns": ["id"]}]}"#,
            ),
            "42703",
            &["no_such_col"],
        ),
        (
            "shared names an unknown table",
            cs("s_shared", "acct", "id", r#"{"shared": ["no_such_table"]}"#),
            "42P01",
            &["no_such_table"],
        ),
        (
            "tables names an unknown table",
            cs(
                "s_tables",
                "acct",
                "id",
                r#"{"tables": ["nor_this_table"]}"#,
            ),
            "42P01",
            &["nor_this_table"],
        ),
        (
            "root that is a view",
            cs("s_view", "acct_v", "id", "{}"),
            "42809",
            &["acct_v"],
        ),
    ];

    let mut failures = Vec::new();
    for (what, call, code, parts) in cases {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_sqlstate_any(call(&mut c), code, parts);
        }));
        if let Err(payload) = outcome {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{what}: {msg}"));
        }
        let now = scope_count(&mut c);
        if now != baseline {
            failures.push(format!(
                "{what}: tenant_ops.scopes has {now} rows, expected {baseline}"
            ));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of the bad-input cases failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    // The scope that was there is intact.
    let p = plan(&mut c, "good", "2");
    assert_roles(
        &mut c,
        &p,
        &[("acct", "root", Some(1)), ("task", "owned", Some(1))],
    );
}
