//! Scopes, plans, integrity checks and migrations out of a distributed schema: the same
//! results on the Citus cluster as on a plain server with the same data.

use pg_tenant_ops_e2e::assert_sqlstate_hint;
use pg_tenant_ops_e2e::citus::CitusCluster;
use pg_tenant_ops_e2e::postgres::Client;

use crate::common::{
    assert_counts, create_extension, create_scope, exec, migrate_tenant, plan, scalar,
    try_migrate_tenant,
};
use crate::schema::{citus_db, exec_each, plain_db, tenant_sizes, TENANT_TABLES};

const SCOPE_OPTIONS: &str = r#"{"shared": ["mt.countries"]}"#;

/// Both databases with the extension and the scope `mt` over the schema.
fn with_scope(c: &mut Client) {
    create_extension(c);
    create_scope(c, "mt", "mt.companies", "id", SCOPE_OPTIONS);
}

/// The cluster is what the tier promises: Citus on three nodes, the coordinator holding no
/// shards, every tenant table distributed by company_id in one colocation group, countries a
/// reference table; and pg_tenant_ops creates on the coordinator.
pub fn citus_cluster_sanity(cluster: &CitusCluster) {
    let db = "citus_sanity";
    let mut c = citus_db(cluster, db);
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM pg_dist_node WHERE isactive"),
        3
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_dist_node WHERE shouldhaveshards AND groupid <> 0"
        ),
        2
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(DISTINCT colocation_id) FROM citus_tables
              WHERE citus_table_type = 'distributed' AND distribution_column = 'company_id' OR table_name = 'mt.companies'::regclass"
        ),
        1
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM citus_tables WHERE citus_table_type = 'reference'"
        ),
        1
    );
    create_extension(&mut c);
    // Citus propagates CREATE EXTENSION to the workers (the library must be installed
    // there too); the jobs and their tables are the coordinator's.
    for w in &cluster.workers {
        let mut wc = w.connect(db);
        assert_eq!(
            scalar(
                &mut wc,
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_tenant_ops'"
            ),
            1,
            "pg_tenant_ops on worker {}",
            w.port()
        );
    }
    // Tenant 3's rows are where the hand-written SQL finds them.
    for ((table, sql), want) in TENANT_TABLES.iter().zip(tenant_sizes(3)) {
        let got: i64 = c.query_one(*sql, &[&"3"]).expect(table).get(0);
        assert_eq!(got, want, "{table}");
    }
    drop(c);
    cluster.drop_database(db);
}

type PlanLine = (i32, String, String, Option<String>, Option<i64>);

fn plan_lines(c: &mut Client, tenant: &str) -> Vec<PlanLine> {
    plan(c, "mt", tenant)
        .into_iter()
        .map(|r| (r.step, r.table, r.role, r.path, r.rows))
        .collect()
}

type Issue = (String, String, Option<String>, Option<String>, i64);

fn validate(c: &mut Client, tenant: Option<&str>) -> (Vec<Issue>, String) {
    let job: i64 = c
        .query_one("SELECT tenant_ops.validate_integrity('mt', $1)", &[&tenant])
        .unwrap_or_else(|e| {
            panic!(
                "validate_integrity(mt, {tenant:?}): {}",
                pg_tenant_ops_e2e::describe_error(&e)
            )
        })
        .get(0);
    let issues = c
        .query(
            "SELECT check_name, table_name::text, tenant, other_tenant, count FROM tenant_ops.integrity_issues
              WHERE job_id = $1 ORDER BY 1, 2, 3, 4",
            &[&job],
        )
        .expect("integrity_issues")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let summary: String = c
        .query_one(
            "SELECT status || ' ' || (result ->> 'rows_checked') || ' ' || (result ->> 'score')
               FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .expect("the validation job")
        .get(0);
    (issues, summary)
}

/// An orphan of tenant 2 behind a NOT VALID foreign key, on both: a campaign whose owner is
/// no user of the tenant.
fn plant_orphan(c: &mut Client) {
    exec_each(
        c,
        r#"ALTER TABLE mt.campaigns DROP CONSTRAINT campaigns_company_id_owner_id_fkey;
           INSERT INTO mt.campaigns VALUES (2, 1000, 'orphan', 999, 1);
           ALTER TABLE mt.campaigns ADD CONSTRAINT campaigns_company_id_owner_id_fkey
             FOREIGN KEY (company_id, owner_id) REFERENCES mt.users (company_id, id) NOT VALID;
"#,
    );
}

/// create_scope and plan over distributed and reference tables: the foreign keys come from
/// the coordinator's catalog, every count is right, and plan, validate_integrity (all three
/// checks, one tenant and all) say exactly what they say on a plain server.
pub fn citus_scope_plan_and_integrity(cluster: &CitusCluster) {
    let (cdb, pdb) = ("citus_scope", "citus_scope_plain");
    let mut dist = citus_db(cluster, cdb);
    let mut plain = plain_db(cluster, pdb);
    for c in [&mut dist, &mut plain] {
        with_scope(c);
    }
    for tenant in ["1", "3", "6"] {
        let on_citus = plan(&mut dist, "mt", tenant);
        let oracle: Vec<(&str, &str)> = TENANT_TABLES.to_vec();
        let owned: Vec<_> = on_citus
            .iter()
            .filter(|r| r.role != "shared")
            .cloned()
            .collect();
        assert_counts(&mut dist, &owned, tenant, &oracle);
        assert_eq!(
            plan_lines(&mut dist, tenant),
            plan_lines(&mut plain, tenant),
            "plan of tenant {tenant}: Citus vs plain"
        );
    }
    for c in [&mut dist, &mut plain] {
        plant_orphan(c);
    }
    for tenant in [Some("2"), Some("3"), None] {
        let (issues, summary) = validate(&mut dist, tenant);
        let (plain_issues, plain_summary) = validate(&mut plain, tenant);
        assert_eq!(
            (&issues, &summary),
            (&plain_issues, &plain_summary),
            "validate_integrity(mt, {tenant:?}): Citus vs plain"
        );
        let orphans = usize::from(tenant != Some("3"));
        assert_eq!(
            issues.len(),
            orphans,
            "validate_integrity(mt, {tenant:?}): {issues:?}"
        );
        if orphans == 1 {
            assert_eq!(
                (issues[0].0.as_str(), issues[0].1.as_str(), issues[0].4),
                ("foreign_keys", "mt.campaigns", 1),
                "{issues:?}"
            );
        }
    }
    drop((dist, plain));
    cluster.drop_database(cdb);
    cluster.drop_database(pdb);
}

/// verify_migration's rows of a job, comparable across databases.
fn verify_rows(c: &mut Client, job: i64) -> Vec<(String, String, i64, i64, i64, i64, bool)> {
    c.query(
        "SELECT table_name::text, target, source_rows, target_rows, missing, different, complete
           FROM tenant_ops.verify_migration($1) ORDER BY 1",
        &[&job],
    )
    .unwrap_or_else(|e| {
        panic!(
            "verify_migration({job}): {}",
            pg_tenant_ops_e2e::describe_error(&e)
        )
    })
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        )
    })
    .collect()
}

/// migrate_tenant out of the distributed tables into new local tables (create_target), and
/// verify_migration over them: the copy and the report as on a plain server.
pub fn citus_migrate_out_and_verify(cluster: &CitusCluster) {
    let (cdb, pdb) = ("citus_out", "citus_out_plain");
    let mut dist = citus_db(cluster, cdb);
    let mut plain = plain_db(cluster, pdb);
    let mut reports = vec![];
    for c in [&mut dist, &mut plain] {
        with_scope(c);
        exec(c, "CREATE SCHEMA copy");
        let job = migrate_tenant(
            c,
            "mt",
            "4",
            "copy",
            r#"{"create_target": true, "shared": "copy"}"#,
            false,
        );
        let copied: Vec<i64> = TENANT_TABLES
            .iter()
            .map(|(t, _)| {
                let name = t.trim_start_matches("mt.");
                scalar(c, &format!("SELECT count(*) FROM copy.{name}"))
            })
            .collect();
        assert_eq!(copied, tenant_sizes(4));
        let v = verify_rows(c, job);
        assert!(v.iter().all(|r| r.6), "verify_migration: {v:?}");
        reports.push(v);
    }
    assert_eq!(reports[0], reports[1], "verify_migration: Citus vs plain");
    // id_strategy uuid computes its keys with a secret only this node holds, and Citus would
    // compute them on the workers that hold the rows: refused before anything is written
    // (the secret not drawn either), uuid5 and uuid7 named.
    exec(&mut dist, "CREATE SCHEMA keyed");
    assert_sqlstate_hint(
        try_migrate_tenant(
            &mut dist,
            "mt",
            "4",
            "keyed",
            r#"{"create_target": true, "shared": "copy", "id_strategy": "uuid"}"#,
            false,
        ),
        "0A000",
        "id_strategy \"uuid\" cannot read the Citus table mt.",
        "use id_strategy \"uuid5\" (computed anywhere) or \"uuid7\"",
    );
    assert_eq!(
        scalar(
            &mut dist,
            "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'keyed'::regnamespace)
                  + (SELECT count(*) FROM tenant_ops.id_secret)"
        ),
        0,
        "nothing created, no secret drawn"
    );
    drop((dist, plain));
    cluster.drop_database(cdb);
    cluster.drop_database(pdb);
}

/// The tenant's rows of every table, by hand: (table, count, a hash of the rows).
fn rows_by_hand(c: &mut Client, schema: &str, tenant: i64) -> Vec<(String, i64, i64)> {
    TENANT_TABLES
        .iter()
        .map(|(t, _)| {
            let name = t.trim_start_matches("mt.");
            let col = if name == "companies" { "id" } else { "company_id" };
            let r = c
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(sum(hashtext(x::text)), 0)::int8 FROM {schema}.{name} x WHERE {col} = $1"
                    ),
                    &[&tenant],
                )
                .unwrap_or_else(|e| panic!("{schema}.{name}: {}", pg_tenant_ops_e2e::describe_error(&e)));
            (name.to_string(), r.get(0), r.get(1))
        })
        .collect()
}

/// From distributed tables into new distributed targets (a second colocation group), and a
/// backup of one tenant of the distributed tables restored over it (replace): the rows as
/// they were, by hand.
pub fn citus_between_distributed_and_backup(cluster: &CitusCluster) {
    let db = "citus_between";
    let mut c = citus_db(cluster, db);
    with_scope(&mut c);
    exec(&mut c, "CREATE SCHEMA dist2");
    let job = migrate_tenant(
        &mut c,
        "mt",
        "2",
        "dist2",
        r#"{"create_target": true, "distribute": true, "shared": "copy"}"#,
        false,
    );
    let v = verify_rows(&mut c, job);
    assert!(v.iter().all(|r| r.6), "verify_migration: {v:?}");
    assert_eq!(
        rows_by_hand(&mut c, "dist2", 2),
        rows_by_hand(&mut c, "mt", 2)
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM citus_tables WHERE table_name::text LIKE 'dist2.%' AND citus_table_type = 'distributed'"
        ),
        5
    );

    // The same with a commit per step (CALL run_job), and in the background beside Citus's
    // own background workers.
    let job = migrate_tenant(
        &mut c,
        "mt",
        "5",
        "dist2",
        r#"{"shared": "copy", "defer": true, "batch_size": 50}"#,
        false,
    );
    crate::common::run_job(&mut c, job);
    let v = verify_rows(&mut c, job);
    assert!(
        v.iter().all(|r| r.6),
        "verify_migration after run_job: {v:?}"
    );
    let job = migrate_tenant(
        &mut c,
        "mt",
        "6",
        "dist2",
        r#"{"shared": "copy", "batch_size": 50}"#,
        true,
    );
    assert_eq!(crate::common::wait_for(&mut c, job, 120.0), "succeeded");
    let v = verify_rows(&mut c, job);
    assert!(
        v.iter().all(|r| r.6),
        "verify_migration after a background run: {v:?}"
    );
    for t in [5, 6] {
        assert_eq!(
            rows_by_hand(&mut c, "dist2", t),
            rows_by_hand(&mut c, "mt", t)
        );
    }

    let before = rows_by_hand(&mut c, "mt", 3);
    let job: i64 = c
        .query_one("SELECT tenant_ops.create_backup('mt', '3')", &[])
        .unwrap_or_else(|e| panic!("create_backup: {}", pg_tenant_ops_e2e::describe_error(&e)))
        .get(0);
    let backup = scalar(&mut c, "SELECT max(id) FROM tenant_ops.backups");
    assert!(job > 0 && backup > 0);
    c.query_one("SELECT tenant_ops.verify_backup($1)", &[&backup])
        .unwrap_or_else(|e| panic!("verify_backup: {}", pg_tenant_ops_e2e::describe_error(&e)));
    exec_each(
        &mut c,
        "DELETE FROM mt.clicks WHERE company_id = 3 AND id % 2 = 0;
         UPDATE mt.users SET email = 'changed' WHERE company_id = 3;
",
    );
    assert_ne!(rows_by_hand(&mut c, "mt", 3), before);
    c.query_one(
        "SELECT tenant_ops.restore_backup($1, '{\"mode\": \"replace\"}')",
        &[&backup],
    )
    .unwrap_or_else(|e| panic!("restore_backup: {}", pg_tenant_ops_e2e::describe_error(&e)));
    assert_eq!(rows_by_hand(&mut c, "mt", 3), before, "tenant 3 restored");
    drop(c);
    cluster.drop_database(db);
}
