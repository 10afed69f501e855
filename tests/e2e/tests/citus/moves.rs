//! move_tenant: a tenant's shards isolated and moved to another worker, inline (block_writes)
//! and in the background (force_logical), its rows checked by hand before and after; and the
//! refusals, each before any job exists.

use pg_tenant_ops_e2e::citus::CitusCluster;
use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, assert_sqlstate_hint, describe_error};

use crate::common::{create_extension, create_scope, exec, scalar, wait_for};
use crate::schema::{citus_db, exec_each, plain_db, tenant_sizes, TENANT_TABLES};

fn try_move(
    c: &mut Client,
    scope: &str,
    tenant: &str,
    node: &str,
    options: &str,
    background: bool,
) -> Result<i64, pg_tenant_ops_e2e::postgres::Error> {
    c.query_one(
        "SELECT tenant_ops.move_tenant($1, $2, $3, $4::text::jsonb, $5)",
        &[&scope, &tenant, &node, &options, &background],
    )
    .map(|r| r.get(0))
}

/// The node holding tenant `t`'s rows of `table`, as `host:port`.
fn node_of(c: &mut Client, table: &str, tenant: i64) -> String {
    c.query_one(
        "SELECT nodename || ':' || nodeport FROM pg_dist_shard_placement
          WHERE shardid = get_shard_id_for_distribution_column($1::text::regclass, $2::int8)",
        &[&table, &tenant],
    )
    .unwrap_or_else(|e| panic!("placement of {table}: {}", describe_error(&e)))
    .get(0)
}

/// Per table: the tenant's row count and a hash of its rows, by hand-written SQL.
fn by_hand(c: &mut Client, tenant: i64) -> Vec<(i64, i64)> {
    TENANT_TABLES
        .iter()
        .map(|(t, _)| {
            let col = if *t == "mt.companies" { "id" } else { "company_id" };
            let r = c
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(sum(hashtext(x::text)), 0)::int8 FROM {t} x WHERE {col} = $1"
                    ),
                    &[&tenant],
                )
                .expect("by hand");
            (r.get(0), r.get(1))
        })
        .collect()
}

fn events(c: &mut Client, job: i64) -> Vec<String> {
    c.query(
        "SELECT event FROM tenant_ops.job_log WHERE job_id = $1 AND event NOT LIKE 'job.%' ORDER BY id",
        &[&job],
    )
    .expect("job_log")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Tenant 4 moved to the other worker inline (block_writes: isolated, then moved in the
/// caller's transaction), then back in the background by logical replication; every table's
/// shard of the tenant follows, its rows the same by our checksums and by hand, the other
/// tenants' untouched; progress per table; a move to where it is already moves nothing.
pub fn citus_move_tenant(cluster: &CitusCluster) {
    let db = "citus_move";
    let mut c = citus_db(cluster, db);
    create_extension(&mut c);
    create_scope(
        &mut c,
        "mt",
        "mt.companies",
        "id",
        r#"{"shared": ["mt.countries"]}"#,
    );
    let home = node_of(&mut c, "mt.companies", 4);
    let other = cluster
        .worker_names()
        .into_iter()
        .find(|n| *n != home)
        .expect("two workers");
    let before = by_hand(&mut c, 4);
    assert_eq!(
        before.iter().map(|r| r.0).collect::<Vec<_>>(),
        tenant_sizes(4)
    );
    let totals = |c: &mut Client| -> Vec<i64> {
        TENANT_TABLES
            .iter()
            .map(|(t, _)| scalar(c, &format!("SELECT count(*) FROM {t}")))
            .collect()
    };
    let all_before = totals(&mut c);

    let job = try_move(&mut c, "mt", "4", &other, "{}", false)
        .unwrap_or_else(|e| panic!("move_tenant: {}", describe_error(&e)));
    let (status, node, verified): (String, String, bool) = {
        let r = c
            .query_one(
                "SELECT status, result->>'node', (result->>'verified')::bool FROM tenant_ops.jobs WHERE id = $1",
                &[&job],
            )
            .expect("the job");
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        (status.as_str(), node.as_str(), verified),
        ("succeeded", other.as_str(), true)
    );
    assert_eq!(events(&mut c, job), vec!["isolated", "moved"]);
    for (t, _) in TENANT_TABLES {
        assert_eq!(node_of(&mut c, t, 4), other, "{t}: tenant 4's shard moved");
    }
    // Isolated: the tenant's shard holds only its hash value.
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM pg_dist_shard WHERE shardid = get_shard_id_for_distribution_column('mt.companies', 4)
                AND shardminvalue = shardmaxvalue"
        ),
        1
    );
    assert_eq!(by_hand(&mut c, 4), before, "tenant 4's rows after the move");
    assert_eq!(totals(&mut c), all_before, "every tenant's rows");
    // Progress: each table verified with the tenant's row count.
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT sum(rows_done)::int8 FROM tenant_ops.job_tables WHERE job_id = {job} AND stage = 'verified'")
        ),
        tenant_sizes(4).iter().sum::<i64>()
    );

    // Back home in the background, by logical replication (writes could go on meanwhile).
    let job2 = try_move(
        &mut c,
        "mt",
        "4",
        &home,
        r#"{"transfer_mode": "force_logical"}"#,
        true,
    )
    .unwrap_or_else(|e| panic!("move_tenant in the background: {}", describe_error(&e)));
    assert_eq!(wait_for(&mut c, job2, 120.0), "succeeded");
    assert_eq!(events(&mut c, job2), vec!["isolate.skipped", "moved"]);
    for (t, _) in TENANT_TABLES {
        assert_eq!(node_of(&mut c, t, 4), home, "{t}: tenant 4's shard back");
    }
    assert_eq!(by_hand(&mut c, 4), before);
    assert_eq!(totals(&mut c), all_before);

    // Where it is already: nothing moves, the rows are checked all the same.
    let job3 = try_move(&mut c, "mt", "4", &home, "{}", false).expect("move home again");
    assert_eq!(
        events(&mut c, job3),
        vec!["isolate.skipped", "move.skipped"]
    );
    drop(c);
    cluster.drop_database(db);
}

/// Each refusal with its SQLSTATE and message, and no job created by any of them.
pub fn citus_move_tenant_refusals(cluster: &CitusCluster) {
    let db = "citus_move_refusals";
    let mut c = citus_db(cluster, db);
    create_extension(&mut c);
    create_scope(
        &mut c,
        "mt",
        "mt.companies",
        "id",
        r#"{"shared": ["mt.countries"]}"#,
    );
    let worker = cluster.worker_names()[0].clone();
    assert_sqlstate_hint(
        try_move(&mut c, "mt", "4", "127.0.0.1:1", "{}", false),
        "42704",
        "node \"127.0.0.1:1\" is not an active primary node of this Citus cluster",
        &worker,
    );
    assert_sqlstate(
        try_move(&mut c, "mt", "4", "127.0.0.1:port", "{}", false),
        "22023",
        "is not of the form host:port",
    );
    assert_sqlstate(
        try_move(
            &mut c,
            "mt",
            "4",
            &worker,
            r#"{"transfer_mode": "fast"}"#,
            false,
        ),
        "22023",
        "option \"transfer_mode\" must be",
    );
    assert_sqlstate(
        try_move(&mut c, "mt", "4", &worker, r#"{"nodes": 1}"#, false),
        "22023",
        "unknown option \"nodes\"",
    );
    assert_sqlstate_hint(
        try_move(
            &mut c,
            "mt",
            "4",
            &worker,
            r#"{"transfer_mode": "force_logical"}"#,
            false,
        ),
        "0A000",
        "cannot run inline",
        "background => true",
    );
    assert_sqlstate(
        try_move(&mut c, "mt", "99", &worker, "{}", false),
        "P0002",
        "tenant \"99\" does not exist in scope \"mt\"",
    );
    exec(&mut c, "ALTER TABLE mt.clicks REPLICA IDENTITY NOTHING");
    assert_sqlstate_hint(
        try_move(
            &mut c,
            "mt",
            "4",
            &worker,
            r#"{"transfer_mode": "force_logical"}"#,
            true,
        ),
        "55000",
        "cannot move by logical replication: table mt.clicks has no replica identity",
        "block_writes",
    );
    exec(&mut c, "ALTER TABLE mt.clicks REPLICA IDENTITY DEFAULT");
    // A root that is not distributed.
    exec_each(
        &mut c,
        "CREATE TABLE public.solo (id int PRIMARY KEY);
         INSERT INTO public.solo VALUES (1);
",
    );
    create_scope(&mut c, "solo", "public.solo", "id", "{}");
    assert_sqlstate_hint(
        try_move(&mut c, "solo", "1", &worker, "{}", false),
        "55000",
        "table solo is not a distributed table",
        "create_distributed_table",
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.jobs WHERE kind = 'move_tenant'"
        ),
        0,
        "no job was created"
    );
    drop(c);
    cluster.drop_database(db);

    // Without Citus.
    let plain = "citus_move_plain";
    let mut p = plain_db(cluster, plain);
    create_extension(&mut p);
    create_scope(
        &mut p,
        "mt",
        "mt.companies",
        "id",
        r#"{"shared": ["mt.countries"]}"#,
    );
    assert_sqlstate_hint(
        try_move(&mut p, "mt", "4", &worker, "{}", false),
        "0A000",
        "move_tenant needs the Citus extension",
        "CREATE EXTENSION citus",
    );
    drop(p);
    cluster.drop_database(plain);
}
