//! Helpers shared by the tests: databases with the extension, the scope API, and checks of
//! a plan against hand-written SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use pg_tenant_ops_e2e::postgres::{Client, Error, GenericClient};
use pg_tenant_ops_e2e::{describe_error, Cluster};

/// Creates database `name` and returns a superuser session on it.
pub fn fresh_db(cluster: &Cluster, name: &str) -> Client {
    cluster.create_database(name);
    cluster.connect(name)
}

/// `CREATE EXTENSION pg_tenant_ops` on the session's database.
pub fn create_extension(c: &mut Client) {
    exec(c, "CREATE EXTENSION pg_tenant_ops");
}

/// Runs SQL that must succeed (several statements allowed).
#[track_caller]
pub fn exec(c: &mut Client, sql: &str) {
    if let Err(e) = c.batch_execute(sql) {
        panic!("SQL failed: {}\n--- SQL ---\n{sql}", describe_error(&e));
    }
}

/// A single bigint from a query whose only parameter is the tenant (as text).
#[track_caller]
pub fn count(c: &mut Client, sql: &str, tenant: &str) -> i64 {
    match c.query_one(sql, &[&tenant]) {
        Ok(row) => row.get(0),
        Err(e) => panic!(
            "oracle query failed for tenant {tenant:?}: {}\n--- SQL ---\n{sql}",
            describe_error(&e)
        ),
    }
}

/// A single bigint from a query without parameters.
#[track_caller]
pub fn scalar(c: &mut Client, sql: &str) -> i64 {
    match c.query_one(sql, &[]) {
        Ok(row) => row.get(0),
        Err(e) => panic!("query failed: {}\n--- SQL ---\n{sql}", describe_error(&e)),
    }
}

/// `tenant_ops.create_scope(name, root, tenant_key, options)`; `root` is regclass input text
/// (e.g. `customer` or `"My Schema"."My Table"`), `options` JSON text.
pub fn try_create_scope(
    c: &mut Client,
    name: &str,
    root: &str,
    key: &str,
    options: &str,
) -> Result<String, Error> {
    c.query_one(
        "SELECT tenant_ops.create_scope($1::text, $2::text::regclass, $3::text::name, $4::text::jsonb)::text",
        &[&name, &root, &key, &options],
    )
    .map(|r| r.get(0))
}

/// `create_scope` that must succeed and return the scope's name.
#[track_caller]
pub fn create_scope(c: &mut Client, name: &str, root: &str, key: &str, options: &str) {
    match try_create_scope(c, name, root, key, options) {
        Ok(returned) => assert_eq!(returned, name, "create_scope returns the scope's name"),
        Err(e) => panic!(
            "create_scope({name:?}, {root:?}, {key:?}, {options}) failed: {}",
            describe_error(&e)
        ),
    }
}

pub fn try_drop_scope(c: &mut Client, name: &str) -> Result<(), Error> {
    c.execute("SELECT tenant_ops.drop_scope($1::text)", &[&name])
        .map(|_| ())
}

/// `SELECT count(*) FROM tenant_ops.scopes`.
pub fn scope_count(c: &mut Client) -> i64 {
    scalar(c, "SELECT count(*) FROM tenant_ops.scopes")
}

/// One row of `tenant_ops.plan()`.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub step: i32,
    /// `table_name::text`: the regclass as this session prints it.
    pub table: String,
    pub role: String,
    pub path: Option<String>,
    pub rows: Option<i64>,
}

pub fn try_plan(c: &mut Client, scope: &str, tenant: &str) -> Result<Vec<PlanRow>, Error> {
    let rows = c.query(
        "SELECT step::int4, table_name::text, role::text, path::text, rows::int8 \
         FROM tenant_ops.plan($1::text, $2::text) ORDER BY step",
        &[&scope, &tenant],
    )?;
    Ok(rows
        .iter()
        .map(|r| PlanRow {
            step: r.get(0),
            table: r.get(1),
            role: r.get(2),
            path: r.get(3),
            rows: r.get(4),
        })
        .collect())
}

#[track_caller]
pub fn plan(c: &mut Client, scope: &str, tenant: &str) -> Vec<PlanRow> {
    try_plan(c, scope, tenant)
        .unwrap_or_else(|e| panic!("plan({scope:?}, {tenant:?}) failed: {}", describe_error(&e)))
}

pub fn show_plan(plan: &[PlanRow]) -> String {
    plan.iter()
        .map(|r| {
            format!(
                "  {:>3} {:<40} {:<7} rows={:<8} path={}",
                r.step,
                r.table,
                r.role,
                r.rows.map_or("NULL".into(), |n| n.to_string()),
                r.path.as_deref().unwrap_or("NULL")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How this session prints a table given as regclass input text.
#[track_caller]
pub fn regclass_text(c: &mut Client, table: &str) -> String {
    match c.query_one("SELECT $1::text::regclass::text", &[&table]) {
        Ok(r) => r.get(0),
        Err(e) => panic!("{table:?} is not a table here: {}", describe_error(&e)),
    }
}

/// The plan row of `table` (regclass input text).
#[track_caller]
pub fn row_of<'a>(c: &mut Client, plan: &'a [PlanRow], table: &str) -> &'a PlanRow {
    let name = regclass_text(c, table);
    plan.iter()
        .find(|r| r.table == name)
        .unwrap_or_else(|| panic!("table {name} is not in the plan:\n{}", show_plan(plan)))
}

/// Asserts the role (and, when given, the row count) of each listed table.
#[track_caller]
pub fn assert_roles(c: &mut Client, plan: &[PlanRow], expected: &[(&str, &str, Option<i64>)]) {
    let mut problems = Vec::new();
    for (table, role, rows) in expected {
        let name = regclass_text(c, table);
        match plan.iter().find(|r| r.table == name) {
            None => problems.push(format!("{name}: missing (expected role {role})")),
            Some(r) => {
                if r.role != *role {
                    problems.push(format!("{name}: role {} (expected {role})", r.role));
                }
                if rows.is_some() && r.rows != *rows {
                    problems.push(format!("{name}: rows {:?} (expected {:?})", r.rows, rows));
                }
            }
        }
    }
    if !problems.is_empty() {
        panic!(
            "plan roles/counts wrong:\n  {}\nplan:\n{}",
            problems.join("\n  "),
            show_plan(plan)
        );
    }
}

/// Asserts that the plan holds exactly the oracle's tables and that every row count equals
/// the oracle's query (one parameter: the tenant as text).
#[track_caller]
pub fn assert_counts(c: &mut Client, plan: &[PlanRow], tenant: &str, oracle: &[(&str, &str)]) {
    let mut expected = BTreeMap::new();
    for (table, sql) in oracle {
        let name = regclass_text(c, table);
        expected.insert(name, count(c, sql, tenant));
    }
    let mut problems = Vec::new();
    for r in plan {
        match expected.get(&r.table) {
            None => problems.push(format!(
                "{} (role {}, rows {:?}) is in the plan but should not be",
                r.table, r.role, r.rows
            )),
            Some(n) if r.rows != Some(*n) => problems.push(format!(
                "{} (role {}): plan says {:?} rows, hand-written SQL says {n}",
                r.table, r.role, r.rows
            )),
            Some(_) => {}
        }
    }
    for name in expected.keys() {
        if !plan.iter().any(|r| &r.table == name) {
            problems.push(format!("{name} is missing from the plan"));
        }
    }
    let mut seen = BTreeSet::new();
    for r in plan {
        if !seen.insert(&r.table) {
            problems.push(format!("{} appears twice in the plan", r.table));
        }
    }
    if !problems.is_empty() {
        panic!(
            "plan for tenant {tenant:?} disagrees with the hand-written SQL:\n  {}\nplan:\n{}",
            problems.join("\n  "),
            show_plan(plan)
        );
    }
}

/// Asserts dependency order: every table's step is greater than the step of every plan table
/// it has a foreign key to (partitions count as their root; self-references and FKs inside a
/// cycle are exempt). `extra_edges` adds (child, parent) pairs, e.g. declared links.
#[track_caller]
pub fn assert_dependency_order(c: &mut Client, plan: &[PlanRow], extra_edges: &[(&str, &str)]) {
    let rows = c
        .query(
            "SELECT DISTINCT coalesce(pg_partition_root(k.conrelid), k.conrelid)::regclass::text,
                    coalesce(pg_partition_root(k.confrelid), k.confrelid)::regclass::text
             FROM pg_constraint k WHERE k.contype = 'f'",
            &[],
        )
        .unwrap_or_else(|e| panic!("reading pg_constraint: {}", describe_error(&e)));
    let step: BTreeMap<&str, i32> = plan.iter().map(|r| (r.table.as_str(), r.step)).collect();
    let mut edges: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    for (child, parent) in extra_edges {
        edges.insert((regclass_text(c, child), regclass_text(c, parent)));
    }
    let edges: Vec<(String, String)> = edges
        .into_iter()
        .filter(|(a, b)| a != b && step.contains_key(a.as_str()) && step.contains_key(b.as_str()))
        .collect();
    let reaches = |from: &str, to: &str| -> bool {
        let mut todo = vec![from.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(t) = todo.pop() {
            if t == to {
                return true;
            }
            if seen.insert(t.clone()) {
                todo.extend(
                    edges
                        .iter()
                        .filter(|(a, _)| *a == t)
                        .map(|(_, b)| b.clone()),
                );
            }
        }
        false
    };
    let mut problems = Vec::new();
    for (child, parent) in &edges {
        if reaches(parent, child) {
            continue; // a cycle: no order can satisfy every edge
        }
        let (sc, sp) = (step[child.as_str()], step[parent.as_str()]);
        if sc <= sp {
            problems.push(format!(
                "{child} (step {sc}) references {parent} (step {sp})"
            ));
        }
    }
    if !problems.is_empty() {
        panic!(
            "plan is not in dependency order:\n  {}\nplan:\n{}",
            problems.join("\n  "),
            show_plan(plan)
        );
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ----- jobs --------------------------------------------------------------------------------------

/// `tenant_ops.migrate_tenant(scope, tenant, target_schema, options, background)`: the job id.
pub fn try_migrate_tenant(
    c: &mut impl GenericClient,
    scope: &str,
    tenant: &str,
    target: &str,
    options: &str,
    background: bool,
) -> Result<i64, Error> {
    c.query_one(
        "SELECT tenant_ops.migrate_tenant($1::text, $2::text, $3::text::name, $4::text::jsonb, $5::bool)",
        &[&scope, &tenant, &target, &options, &background],
    )
    .map(|r| r.get(0))
}

/// [`try_migrate_tenant`] that must succeed.
#[track_caller]
pub fn migrate_tenant(
    c: &mut impl GenericClient,
    scope: &str,
    tenant: &str,
    target: &str,
    options: &str,
    background: bool,
) -> i64 {
    try_migrate_tenant(c, scope, tenant, target, options, background).unwrap_or_else(|e| {
        panic!(
            "migrate_tenant({scope:?}, {tenant:?}, {target:?}, {options}, background => {background}) failed: {}",
            describe_error(&e)
        )
    })
}

/// `CALL tenant_ops.run_job(id)`: a top-level CALL (simple protocol), so it commits per step.
pub fn try_run_job(c: &mut Client, job: i64) -> Result<(), Error> {
    c.batch_execute(&format!("CALL tenant_ops.run_job({job})"))
}

#[track_caller]
pub fn run_job(c: &mut Client, job: i64) {
    if let Err(e) = try_run_job(c, job) {
        panic!(
            "CALL tenant_ops.run_job({job}) failed: {}",
            describe_error(&e)
        );
    }
}

/// `tenant_ops.wait_for_job(job, secs seconds)`: the final status (or the current one).
#[track_caller]
pub fn wait_for(c: &mut impl GenericClient, job: i64, secs: f64) -> String {
    c.query_one(
        "SELECT tenant_ops.wait_for_job($1, pg_catalog.make_interval(secs => $2))",
        &[&job, &secs],
    )
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("wait_for_job({job}): {}", describe_error(&e)))
}

/// `tenant_ops.<function>(job)` returning text (pause_job, resume_job, cancel_job, retry_job).
#[track_caller]
pub fn control(c: &mut impl GenericClient, function: &str, job: i64) -> String {
    c.query_one(&format!("SELECT tenant_ops.{function}($1)"), &[&job])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("tenant_ops.{function}({job}): {}", describe_error(&e)))
}

/// `tenant_ops.rollback_migration(job)` as text.
pub fn try_rollback(c: &mut Client, job: i64) -> Result<String, Error> {
    c.query_one(
        "SELECT tenant_ops.rollback_migration($1::int8)::text",
        &[&job],
    )
    .map(|r| r.get(0))
}

/// Polls `probe` every 20 ms until it gives a value; panics after `timeout`.
#[track_caller]
pub fn until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
