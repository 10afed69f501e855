//! migrate_tenant from local tables into distributed targets: `create_target` with
//! `"distribute": true` makes the targets Citus tables (distributed by the tenant column and
//! colocated, shared ones reference tables), the per-tenant statements run on one shard
//! (router queries), and the results are a plain server's.

use pg_tenant_ops_e2e::citus::CitusCluster;
use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, assert_sqlstate_hint, describe_error};

use crate::common::{
    create_extension, create_scope, exec, migrate_tenant, plan, scalar, try_migrate_tenant,
};
use crate::schema::{exec_each, plain_db, tenant_sizes, DATA, FOREIGN_KEYS, SCHEMA, TENANT_TABLES};

const SCOPE_OPTIONS: &str = r#"{"shared": ["mt.countries"]}"#;

/// Database `db` on the cluster with the schema as local tables on the coordinator: the
/// single-node application about to move onto Citus.
fn local_db(cluster: &CitusCluster, db: &str) -> Client {
    let mut c = cluster.create_database(db);
    for sql in [SCHEMA, FOREIGN_KEYS, DATA] {
        exec_each(&mut c, sql);
    }
    create_extension(&mut c);
    create_scope(&mut c, "mt", "mt.companies", "id", SCOPE_OPTIONS);
    c
}

/// How Citus holds each table of `schema`: (table, type, distribution column, colocation).
fn citus_tables(c: &mut Client, schema: &str) -> Vec<(String, String, String)> {
    c.query(
        "SELECT table_name::text, citus_table_type, distribution_column
           FROM citus_tables WHERE table_name::text LIKE $1 || '.%' ORDER BY 1",
        &[&schema],
    )
    .expect("citus_tables")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn colocation_groups(c: &mut Client, schema: &str) -> i64 {
    c.query_one(
        "SELECT count(DISTINCT colocation_id) FROM citus_tables
          WHERE table_name::text LIKE $1 || '.%' AND citus_table_type = 'distributed'",
        &[&schema],
    )
    .expect("citus_tables")
    .get(0)
}

fn target_counts(c: &mut Client, schema: &str, tenant_filter: &str) -> Vec<i64> {
    TENANT_TABLES
        .iter()
        .map(|(t, _)| {
            let name = t.trim_start_matches("mt.");
            let col = if name == "companies" {
                "id"
            } else {
                "company_id"
            };
            scalar(
                c,
                &format!("SELECT count(*) FROM {schema}.{name} WHERE {col} {tenant_filter}"),
            )
        })
        .collect()
}

fn verify_complete(c: &mut Client, job: i64) -> Vec<(String, i64, bool)> {
    c.query(
        "SELECT table_name::text, target_rows, complete FROM tenant_ops.verify_migration($1) ORDER BY 1",
        &[&job],
    )
    .unwrap_or_else(|e| panic!("verify_migration({job}): {}", describe_error(&e)))
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Runs `f` on a session of database `db` on the coordinator that has Citus log every
/// command it sends to the workers (`citus.log_remote_commands`): what `f` returned, and the
/// commands.
fn remote_commands<R>(
    cluster: &CitusCluster,
    db: &str,
    f: impl FnOnce(&mut Client) -> R,
) -> (R, Vec<String>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut cfg = cluster.coordinator.config(db, "postgres");
    cfg.notice_callback(move |n| {
        if let Some(cmd) = n.message().strip_prefix("issuing ") {
            sink.lock().unwrap().push(cmd.to_string());
        }
    });
    let mut s = cfg
        .connect(pg_tenant_ops_e2e::postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect: {}", describe_error(&e)));
    exec(
        &mut s,
        "SET citus.log_remote_commands = on; SET client_min_messages = log",
    );
    let out = f(&mut s);
    drop(s);
    let commands = seen.lock().unwrap().clone();
    (out, commands)
}

/// Any statement that would run on more than one shard fails: what proves that a tenant's
/// statements are router queries (one shard, on the node holding the tenant).
const ROUTER_ONLY: &str = "SET citus.multi_task_query_log_level = 'error'";

/// Local tables migrated into new distributed targets: the targets distributed by company_id
/// (the root's by id) in one colocation group, countries a reference table; two tenants
/// migrated with every statement on one shard, verified complete, the rows as on a plain
/// server; the plan's filter over the targets a router query in EXPLAIN.
pub fn citus_migrate_into_distributed(cluster: &CitusCluster) {
    let (cdb, pdb) = ("citus_into", "citus_into_plain");
    let mut c = local_db(cluster, cdb);
    exec(&mut c, "CREATE SCHEMA dist");
    let options = r#"{"create_target": true, "distribute": true, "shared": "copy"}"#;
    let job3 = migrate_tenant(&mut c, "mt", "3", "dist", options, false);
    assert_eq!(
        citus_tables(&mut c, "dist"),
        vec![
            (
                r#"dist."Ads ""x""""#.into(),
                "distributed".into(),
                "company_id".into()
            ),
            (
                "dist.campaigns".into(),
                "distributed".into(),
                "company_id".into()
            ),
            (
                "dist.clicks".into(),
                "distributed".into(),
                "company_id".into()
            ),
            ("dist.companies".into(), "distributed".into(), "id".into()),
            ("dist.countries".into(), "reference".into(), "<none>".into()),
            (
                "dist.users".into(),
                "distributed".into(),
                "company_id".into()
            ),
        ]
    );
    assert_eq!(colocation_groups(&mut c, "dist"), 1);
    // The keys and foreign keys were built after the load, on the distributed tables: those
    // of the source.
    let constraints = |c: &mut Client, schema: &str| -> Vec<String> {
        c.query(
            "SELECT c.relname::text || ' ' || k.contype::text || ' ' || pg_get_constraintdef(k.oid)
               FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
              WHERE c.relnamespace = $1::text::regnamespace AND k.contype IN ('p', 'f') ORDER BY 1",
            &[&schema],
        )
        .expect("pg_constraint")
        .iter()
        .map(|r| r.get::<_, String>(0).replace(&format!("{schema}."), ""))
        .collect()
    };
    assert_eq!(constraints(&mut c, "dist"), constraints(&mut c, "mt"));
    let v3 = verify_complete(&mut c, job3);
    assert!(v3.iter().all(|r| r.2), "{v3:?}");
    assert_eq!(target_counts(&mut c, "dist", "= 3"), tenant_sizes(3));

    // The second tenant into the distributed tables that now exist: no statement of the
    // migration or of its verification reads a shard of a target whole (the commands Citus
    // sends to the workers say so).
    let (job5, commands) = remote_commands(cluster, cdb, |s| {
        let job = migrate_tenant(s, "mt", "5", "dist", r#"{"shared": "copy"}"#, false);
        let v5 = verify_complete(s, job);
        assert!(v5.iter().all(|r| r.2), "{v5:?}");
        job
    });
    let whole: Vec<&String> = commands
        .iter()
        .filter(|cmd| {
            cmd.contains("dist.")
                && cmd.trim_start().starts_with("SELECT")
                && (cmd.contains(" WHERE true") || !cmd.contains(" WHERE "))
        })
        .collect();
    assert!(
        whole.is_empty(),
        "statements reading target shards whole:\n{}",
        whole
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        commands.iter().any(|cmd| cmd.contains("INSERT INTO dist.")),
        "the rows went through the commands seen: {commands:?}"
    );
    assert!(job5 > job3);
    assert_eq!(target_counts(&mut c, "dist", "= 5"), tenant_sizes(5));
    assert_eq!(target_counts(&mut c, "dist", "NOT IN (3, 5)"), vec![0; 5]);

    // A scope over the distributed targets: its plan and validation are router queries too,
    // and EXPLAIN shows it for the deepest table (clicks, three hops from the root).
    create_scope(
        &mut c,
        "dist",
        "dist.companies",
        "id",
        r#"{"shared": ["dist.countries"]}"#,
    );
    exec(&mut c, ROUTER_ONLY);
    let p = plan(&mut c, "dist", "5");
    let clicks = p
        .iter()
        .find(|r| r.table == "dist.clicks")
        .expect("clicks in the plan");
    assert_eq!(clicks.rows, Some(200));
    let job: i64 = c
        .query_one("SELECT tenant_ops.validate_integrity('dist', '5')", &[])
        .unwrap_or_else(|e| panic!("validate_integrity: {}", describe_error(&e)))
        .get(0);
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM tenant_ops.integrity_issues WHERE job_id = {job}")
        ),
        0
    );
    exec(&mut c, "RESET citus.multi_task_query_log_level");
    let filter: String = c
        .query_one(
            "SELECT filter FROM tenant_ops.plan('dist', '5') WHERE table_name = 'dist.clicks'::regclass",
            &[],
        )
        .expect("the plan's filter")
        .get(0);
    exec(
        &mut c,
        &format!("PREPARE tenant_rows(text) AS SELECT count(*) FROM dist.clicks WHERE {filter}"),
    );
    let explain: Vec<String> = c
        .query("EXPLAIN (COSTS OFF) EXECUTE tenant_rows('5')", &[])
        .expect("EXPLAIN")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let text = explain.join("\n");
    println!("    EXPLAIN of the plan's filter for dist.clicks, tenant 5:\n{text}");
    assert!(
        text.contains("Custom Scan (Citus Adaptive)") && text.contains("Task Count: 1"),
        "not a router query:\n{text}"
    );

    // The same migration on a plain server: the same rows.
    let mut plain = plain_db(cluster, pdb);
    create_extension(&mut plain);
    create_scope(&mut plain, "mt", "mt.companies", "id", SCOPE_OPTIONS);
    exec(&mut plain, "CREATE SCHEMA dist");
    let pjob = migrate_tenant(
        &mut plain,
        "mt",
        "3",
        "dist",
        r#"{"create_target": true, "shared": "copy"}"#,
        false,
    );
    assert_eq!(verify_complete(&mut plain, pjob), v3);
    for (t, _) in TENANT_TABLES {
        let name = t.trim_start_matches("mt.");
        let sum =
            format!("SELECT sum(hashtext(x::text)) FROM dist.{name} x WHERE x::text LIKE '(3,%'");
        let a = scalar(&mut c, &format!("SELECT coalesce(({sum}), 0)::int8"));
        let b = scalar(&mut plain, &format!("SELECT coalesce(({sum}), 0)::int8"));
        assert_eq!(a, b, "the rows of dist.{name}: Citus vs plain");
    }
    drop((c, plain));
    cluster.drop_database(cdb);
    cluster.drop_database(pdb);
}

/// Re-keyed into distributed targets: `uuid5` computes every new key and every remapped
/// foreign key in SQL from the legacy key (no lookups), so the tenant's statements stay on
/// one shard; `uuid` records new keys in tenant_ops.id_map, a local table of the
/// coordinator, and remaps foreign keys by joins with it — fine from local sources, which
/// are read on the coordinator anyway.
pub fn citus_rekeyed_into_distributed(cluster: &CitusCluster) {
    let db = "citus_rekeyed";
    let mut c = local_db(cluster, db);
    for (schema, strategy) in [("d5", "uuid5"), ("du", "uuid")] {
        exec(&mut c, &format!("CREATE SCHEMA {schema}"));
        let options = format!(
            r#"{{"create_target": true, "distribute": true, "shared": "copy", "id_strategy": "{strategy}"}}"#
        );
        let job = migrate_tenant(&mut c, "mt", "2", schema, &options, false);
        let v = verify_complete(&mut c, job);
        assert!(v.iter().all(|r| r.2), "{strategy}: {v:?}");
        let ty: String = c
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = ($1 || '.clicks')::regclass AND attname = 'company_id'",
                &[&schema],
            )
            .expect("company_id")
            .get(0);
        assert_eq!(ty, "uuid", "{strategy}: clicks.company_id re-keyed");
        assert_eq!(colocation_groups(&mut c, schema), 1, "{strategy}");
        let sizes: Vec<i64> = TENANT_TABLES
            .iter()
            .map(|(t, _)| {
                scalar(
                    &mut c,
                    &format!(
                        "SELECT count(*) FROM {schema}.{}",
                        t.trim_start_matches("mt.")
                    ),
                )
            })
            .collect();
        assert_eq!(sizes, tenant_sizes(2), "{strategy}");
    }
    drop(c);
    cluster.drop_database(db);
}

/// What `distribute` refuses, before anything is written: without create_target (22023),
/// without Citus (0A000), and a table whose ownership path does not carry the tenant column
/// (0A000, naming it).
pub fn citus_distribute_refusals(cluster: &CitusCluster) {
    let db = "citus_refusals";
    let mut c = local_db(cluster, db);
    exec(&mut c, "CREATE SCHEMA dist");
    assert_sqlstate(
        try_migrate_tenant(&mut c, "mt", "1", "dist", r#"{"distribute": true}"#, false),
        "22023",
        "option \"distribute\" needs \"create_target\": true",
    );
    // A legacy table that reaches its tenant through another key only.
    exec_each(
        &mut c,
        "CREATE TABLE mt.notes (id bigint PRIMARY KEY, click_company bigint, click_id bigint, body text);
         ALTER TABLE mt.notes ADD FOREIGN KEY (click_company, click_id) REFERENCES mt.clicks (company_id, id);
         CREATE TABLE mt.note_tags (note_id bigint REFERENCES mt.notes (id), tag text);
",
    );
    exec(&mut c, "SELECT tenant_ops.drop_scope('mt')");
    create_scope(&mut c, "mt", "mt.companies", "id", SCOPE_OPTIONS);
    assert_sqlstate_hint(
        try_migrate_tenant(
            &mut c,
            "mt",
            "1",
            "dist",
            r#"{"create_target": true, "distribute": true, "shared": "copy"}"#,
            false,
        ),
        "0A000",
        "table mt.note_tags has no column that holds the tenant",
        "tenant column in every table",
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'dist'::regnamespace"
        ),
        0,
        "nothing created"
    );
    drop(c);
    cluster.drop_database(db);

    let plain = "citus_refusals_plain";
    let mut p = plain_db(cluster, plain);
    create_extension(&mut p);
    create_scope(&mut p, "mt", "mt.companies", "id", SCOPE_OPTIONS);
    exec(&mut p, "CREATE SCHEMA dist");
    assert_sqlstate_hint(
        try_migrate_tenant(
            &mut p,
            "mt",
            "1",
            "dist",
            r#"{"create_target": true, "distribute": true}"#,
            false,
        ),
        "0A000",
        "option \"distribute\" needs the Citus extension",
        "CREATE EXTENSION citus",
    );
    drop(p);
    cluster.drop_database(plain);
}

/// Schema-based sharding (Citus 12+): one tenant of a shared local schema migrated into a
/// schema of its own (create_target, the shared rows it references copied along), which
/// `citus_schema_distribute` then makes a distributed schema: every table of it one shard,
/// the tenant's rows all on one worker, foreign keys intact.
pub fn citus_schema_per_tenant(cluster: &CitusCluster) {
    let db = "citus_schemas";
    let mut c = local_db(cluster, db);
    exec(&mut c, "CREATE SCHEMA tenant_4");
    let job = migrate_tenant(
        &mut c,
        "mt",
        "4",
        "tenant_4",
        r#"{"create_target": true, "shared": "copy"}"#,
        false,
    );
    let v = verify_complete(&mut c, job);
    assert!(v.iter().all(|r| r.2), "{v:?}");
    exec(&mut c, "SELECT citus_schema_distribute('tenant_4')");
    let placed: Vec<(String, String, i64)> = c
        .query(
            "SELECT table_name::text, citus_table_type, count(DISTINCT nodeport)
               FROM citus_shards WHERE table_name::text LIKE 'tenant_4.%' GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .expect("citus_shards")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(placed.len(), 6, "{placed:?}");
    assert!(
        placed
            .iter()
            .all(|(_, ty, nodes)| ty == "schema" && *nodes == 1),
        "{placed:?}"
    );
    let nodes: Vec<i32> = c
        .query(
            "SELECT DISTINCT nodeport FROM citus_shards WHERE table_name::text LIKE 'tenant_4.%'",
            &[],
        )
        .expect("citus_shards")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(nodes.len(), 1, "one node for the whole schema");
    assert_ne!(
        nodes[0] as u16,
        cluster.coordinator.port(),
        "the tenant's schema is on a worker"
    );
    assert_eq!(
        target_counts(&mut c, "tenant_4", "= 4"),
        tenant_sizes(4),
        "the tenant's rows, read through the coordinator"
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_constraint WHERE connamespace = 'tenant_4'::regnamespace AND contype = 'f'"
        ),
        7
    );
    drop(c);
    cluster.drop_database(db);
}
