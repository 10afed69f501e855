//! The Citus-style multi-tenant schema of the tier (`schema.sql`, `distribute.sql`,
//! `data.sql`), loaded distributed on the Citus cluster and plain into a database of the
//! coordinator without Citus: the reference every result on the cluster is compared with.

use pg_tenant_ops_e2e::citus::CitusCluster;
use pg_tenant_ops_e2e::postgres::Client;

use crate::common::exec;

pub const SCHEMA: &str = include_str!("schema.sql");
pub const DISTRIBUTE: &str = include_str!("distribute.sql");
pub const FOREIGN_KEYS: &str = include_str!("foreign_keys.sql");
pub const DATA: &str = include_str!("data.sql");

/// The tables of a tenant, parents first, with the hand-written count of tenant `$1`'s rows.
pub const TENANT_TABLES: &[(&str, &str)] = &[
    (
        "mt.companies",
        "SELECT count(*) FROM mt.companies WHERE id = $1::text::int8",
    ),
    (
        "mt.users",
        "SELECT count(*) FROM mt.users WHERE company_id = $1::text::int8",
    ),
    (
        "mt.campaigns",
        "SELECT count(*) FROM mt.campaigns WHERE company_id = $1::text::int8",
    ),
    (
        r#"mt."Ads ""x""""#,
        r#"SELECT count(*) FROM mt."Ads ""x""" WHERE company_id = $1::text::int8"#,
    ),
    (
        "mt.clicks",
        "SELECT count(*) FROM mt.clicks WHERE company_id = $1::text::int8",
    ),
];

/// What data.sql gives tenant `c`, in [`TENANT_TABLES`] order.
pub fn tenant_sizes(c: i64) -> Vec<i64> {
    vec![1, 3 * c, 2 * c, 5 * c, 40 * c]
}

/// Runs the statements of `sql` one by one: Citus propagates a DDL statement to the workers
/// with the text it came in, and a multi-statement text is refused there.
pub fn exec_each(c: &mut Client, sql: &str) {
    for stmt in sql.split(";\n").filter(|s| {
        s.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    }) {
        exec(c, stmt);
    }
}

/// Database `db` on every node of the cluster with the schema distributed and loaded: a
/// session on the coordinator's.
pub fn citus_db(cluster: &CitusCluster, db: &str) -> Client {
    let mut c = cluster.create_database(db);
    for sql in [SCHEMA, DISTRIBUTE, FOREIGN_KEYS, DATA] {
        exec_each(&mut c, sql);
    }
    c
}

/// Database `db` on the coordinator, without Citus: the same schema and data, plain.
pub fn plain_db(cluster: &CitusCluster, db: &str) -> Client {
    cluster.coordinator.create_database(db);
    let mut c = cluster.coordinator.connect(db);
    exec(&mut c, SCHEMA);
    exec(&mut c, FOREIGN_KEYS);
    exec(&mut c, DATA);
    c
}
