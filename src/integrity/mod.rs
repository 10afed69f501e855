//! `validate_integrity`: orphans, duplicate keys and cross-tenant references of a scope, for
//! one tenant or all of them, each found by one set-based query per relationship.
//!
//! A row's tenant is found by joining up its ownership path (`tenant_chain`); with no tenant
//! given, findings are grouped by tenant in the same query rather than one query per tenant.

mod counts;
pub mod error;
pub mod kind;
pub mod repair;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::error::{Common, OrRaise, Report};
use crate::jobs::kind::Steps;
use crate::jobs::{self, Job, StepOutcome};
use crate::scope::graph::{Catalog, EdgeKind, ResolvedScope, Role, ScopeTable, TableId};
use crate::scope::LoadedScope;

use crate::sys::{owner, with_settings};
pub use error::Error;

pub const CHECKS: &[&str] = &["foreign_keys", "primary_keys", "isolation"];

/// The `foreign_keys` findings of relationship `e` from a grouped query's rows (tenant,
/// unused, count, sample).
fn orphan_issues(
    e: &crate::scope::graph::Edge,
    found: Vec<(Option<String>, Option<String>, i64, Value)>,
    out: &mut Vec<Issue>,
) {
    for (tenant, _, count, sample) in found {
        out.push(Issue {
            check: "foreign_keys",
            table: e.child,
            constraint: e.name.clone(),
            tenant,
            other_tenant: None,
            count,
            sample,
        });
    }
}

/// How a table prints for the caller.
pub(crate) fn relation(oid: TableId) -> String {
    crate::pg::relation_name(oid)
}

/// Creates a validation job of `scope` (one tenant, or all with `None`) after checking every
/// argument; returns its id and its stored options. Nothing is written when an argument is bad.
pub fn submit(
    scope_name: &str,
    tenant: Option<&str>,
    checks: &[String],
    background: bool,
) -> Result<(i64, Value), Error> {
    let checks = parse_checks(checks)?;
    let loaded = LoadedScope::load(scope_name)?;
    if let Some(t) = tenant {
        loaded.check_tenant(t)?;
    }
    let options = json!({"checks": checks});
    let id = jobs::create(
        "validate",
        scope_name,
        tenant.unwrap_or(""),
        &options,
        if background {
            jobs::Executor::Background
        } else {
            jobs::Executor::Inline
        },
    );
    if !background {
        loaded.keep_for(id);
    }
    Ok((id, options))
}

/// Parses the `checks` argument: known names only, at least one, each once (in the order given).
pub fn parse_checks(checks: &[String]) -> Result<Vec<String>, Error> {
    if checks.is_empty() {
        return Err(Common::InvalidParameter(
            "checks must name at least one check".into(),
            Some(format!("The checks are: {}.", CHECKS.join(", "))),
        )
        .into());
    }
    for c in checks {
        if !CHECKS.contains(&c.as_str()) {
            return Err(Common::InvalidParameter(
                format!("unknown check \"{c}\""),
                Some(format!("The checks are: {}.", CHECKS.join(", "))),
            )
            .into());
        }
    }
    let mut unique: Vec<String> = vec![];
    for c in checks {
        if !unique.contains(c) {
            unique.push(c.clone());
        }
    }
    Ok(unique)
}

fn quoted(c: &Catalog, table: TableId, cols: &[String], alias: &str) -> Vec<String> {
    let t = c.table(table);
    cols.iter()
        .map(|x| format!("{alias}.{}", t.quoted_col(x)))
        .collect()
}

/// The validated tenant, `$1`, as a value of the tenant key's type.
fn tenant_param(l: &LoadedScope) -> String {
    let root = l.catalog.table(l.resolved.root);
    format!(
        "$1::{}",
        root.known_column(&l.resolved.tenant_key).type_name
    )
}

/// Joins from `alias` (a row of `table`) up its ownership path to the tenant key, and the SQL
/// of that key. `outer` makes them LEFT JOINs (a broken chain gives a NULL tenant). None for
/// tables that are not owned.
fn tenant_chain(
    c: &Catalog,
    r: &ResolvedScope,
    table: TableId,
    alias: &str,
    outer: bool,
) -> Option<(String, String)> {
    let st = r.get(table)?;
    let key = |t: TableId, a: &str| quoted(c, t, std::slice::from_ref(&r.tenant_key), a).remove(0);
    match st.role {
        Role::Shared => None,
        Role::Root => Some((String::new(), key(table, alias))),
        Role::Owned => {
            let join = if outer { "LEFT JOIN" } else { "JOIN" };
            let (mut joins, mut cur, mut cur_alias, mut n) =
                (String::new(), st, alias.to_string(), 0);
            loop {
                let e = &c.edges[cur.owner_edge?];
                if e.parent == r.root && e.parent_cols == [r.tenant_key.clone()] {
                    return Some((
                        joins,
                        quoted(c, e.child, &e.child_cols, &cur_alias).remove(0),
                    ));
                }
                n += 1;
                let next = format!("{alias}_{n}");
                joins.push_str(&format!(
                    " {join} {} {next} ON ({}) = ({})",
                    c.table(e.parent).sql,
                    quoted(c, e.parent, &e.parent_cols, &next).join(", "),
                    quoted(c, e.child, &e.child_cols, &cur_alias).join(", ")
                ));
                if e.parent == r.root {
                    return Some((joins, key(r.root, &next)));
                }
                cur = r.get(e.parent)?;
                cur_alias = next;
            }
        }
    }
}

/// One finding.
struct Issue {
    check: &'static str,
    table: TableId,
    constraint: String,
    tenant: Option<String>,
    other_tenant: Option<String>,
    count: i64,
    sample: Value,
}

pub struct Validation {
    job_id: i64,
    scope: String,
    tenant: Option<String>,
    checks: Vec<String>,
}

impl Validation {
    pub fn from_job(job: &Job) -> Result<Validation, Error> {
        let checks: Vec<String> = job
            .options
            .get("checks")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_else(|| CHECKS.iter().map(|s| s.to_string()).collect());
        Ok(Validation {
            job_id: job.id,
            scope: job.scope.clone().unwrap_or_default(),
            tenant: job.tenant.clone().filter(|t| !t.is_empty()),
            checks: parse_checks(&checks)?,
        })
    }

    /// The rows of `table` the validation covers, as a derived table aliased `alias`.
    fn rows(&self, l: &LoadedScope, table: TableId, alias: &str) -> String {
        let t = l.catalog.table(table);
        match &self.tenant {
            Some(_) => format!(
                "(SELECT * FROM {} WHERE {}) {alias}",
                t.sql,
                l.filters().filter(table)
            ),
            None => format!("{} {alias}", t.sql),
        }
    }

    fn args(&self) -> Vec<pgrx::datum::DatumWithOid<'static>> {
        vec![self.tenant.clone().unwrap_or_default().into()]
    }

    fn grouped(&self, sql: &str) -> Vec<(Option<String>, Option<String>, i64, Value)> {
        Spi::connect(|c| {
            c.select(sql, None, &self.args())?
                .map(|r| {
                    Ok((
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<i64>(3)?.unwrap_or(0),
                        r.get::<JsonB>(4)?.map(|j| j.0).unwrap_or(Value::Null),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .or_raise()
    }

    /// The tenant of each row of `table` as SQL over the alias `c`, and the joins it needs:
    /// with one tenant validated every row is that tenant's (`$1`); otherwise the row's chain
    /// up its ownership path (a broken chain gives NULL), or NULL for a shared table.
    fn tenant_of(&self, l: &LoadedScope, table: TableId) -> (String, String) {
        if self.tenant.is_some() && l.resolved.get(table).map(|t| t.role) != Some(Role::Shared) {
            // As the chain would give it: the key's own text form ('01' reads back as '1').
            return (String::new(), format!("({})::text", tenant_param(l)));
        }
        match tenant_chain(&l.catalog, &l.resolved, table, "c", true) {
            Some((joins, key)) if !key.is_empty() => (joins, format!("({key})::text")),
            _ => (String::new(), "NULL::text".into()),
        }
    }

    /// Orphans: rows whose FK (or link) columns are set but name no row, `NOT VALID` ones too.
    ///
    /// Every tenant: one anti-join per relationship. One tenant: one pass over the tenant's
    /// rows of each table checks all its foreign keys at once (a LEFT JOIN to each referenced
    /// table, whose key is unique, so no row is repeated) and counts the rows it covered,
    /// where a hand-written check takes one pass per foreign key; links, whose parent columns
    /// need not be unique, get an anti-join of their own. The ownership path's first hop is
    /// not checked then: the tenant's rows of a table are found through that very reference,
    /// so it resolves by construction (its orphans belong to no tenant: the every-tenant
    /// validation reports them).
    fn foreign_keys(&self, l: &LoadedScope, out: &mut Vec<Issue>, checked: &mut Option<i64>) {
        let (c, r) = (&l.catalog, &l.resolved);
        if self.tenant.is_none() {
            // Every tenant: an anti-join per relationship finds the few orphans first and
            // joins their chains only; the rows are counted apart (a plain count is cheap).
            for (i, e) in c.edges.iter().enumerate() {
                if r.get(e.child).is_some() {
                    self.anti_join(l, i, out);
                }
            }
            return;
        }
        // First each table's foreign keys whose values without a parent can be read from an
        // index (a loose index scan, `distinct_values.rs`): only the tenant's rows holding one
        // are looked at, and the pass over the tenant's rows needs no join to that parent
        // (with none left, it only counts). Their findings wait for their table's turn.
        let passes: Vec<counts::TablePass> = r
            .tables
            .iter()
            .map(|t| {
                let owner_edge = t.owner_edge;
                let (joined, links): (Vec<usize>, Vec<usize>) = (0..c.edges.len())
                    .filter(|&i| c.edges[i].child == t.oid && Some(i) != owner_edge)
                    .partition(|&i| matches!(c.edges[i].kind, EdgeKind::ForeignKey { .. }));
                let mut pass = counts::TablePass {
                    in_pass: vec![],
                    links,
                    early: vec![],
                };
                for i in joined {
                    let e = &c.edges[i];
                    match crate::distinct_values::missing_values(
                        c.table(e.child),
                        &e.child_cols,
                        c.table(e.parent),
                        &e.parent_cols,
                    ) {
                        Some(missing) => self.orphans_among(l, i, &missing, &mut pass.early),
                        None => pass.in_pass.push(i),
                    }
                }
                pass
            })
            .collect();
        let fused = self.counted_with_owner(l, &passes);
        let mut counted = 0;
        for (t, pass) in r.tables.iter().zip(passes) {
            out.extend(pass.early);
            let joined = pass.in_pass;
            if fused.contains_key(&t.oid) {
                // Counted by its owner's statement (below, or already).
            } else if let Some((&child, &edge)) =
                fused.iter().find(|(_, &e)| c.edges[e].parent == t.oid)
            {
                counted += self.count_with_child(l, t.oid, child, edge);
            } else {
                counted += self.pass(l, t, &joined, out);
            }
            for i in pass.links {
                self.anti_join(l, i, out);
            }
        }
        *checked = Some(counted);
    }

    /// The pass over one tenant's rows of table `t`: every foreign key in `joined` checked at
    /// once (a LEFT JOIN to each referenced table, whose key is unique, so no row repeats),
    /// the rows counted as it goes. Returns the rows it counted (none for a shared table).
    fn pass(&self, l: &LoadedScope, t: &ScopeTable, joined: &[usize], out: &mut Vec<Issue>) -> i64 {
        let c = &l.catalog;
        let (chain, tenant) = self.tenant_of(l, t.oid);
        let mut cols = vec![];
        let mut parents = String::new();
        for (n, &i) in joined.iter().enumerate() {
            let e = &c.edges[i];
            let alias = format!("p{n}");
            let lhs = quoted(c, e.child, &e.child_cols, "c");
            let rhs = quoted(c, e.parent, &e.parent_cols, &alias);
            let orphan = format!(
                "{} AND {} IS NULL",
                lhs.iter()
                    .map(|x| format!("{x} IS NOT NULL"))
                    .collect::<Vec<_>>()
                    .join(" AND "),
                rhs[0]
            );
            cols.push(format!(
                "pg_catalog.count(*) FILTER (WHERE {orphan})::int8,
                 pg_catalog.to_jsonb((pg_catalog.array_agg(ROW({lhs})::text) FILTER (WHERE {orphan}))[1:10])",
                lhs = lhs.join(", ")
            ));
            parents.push_str(&format!(
                " LEFT JOIN {} {alias} ON ({}) = ({})",
                c.table(e.parent).sql,
                rhs.join(", "),
                lhs.join(", ")
            ));
        }
        let counts = t.role != Role::Shared;
        if !counts && joined.is_empty() {
            return 0;
        }
        let sql = format!(
            "SELECT {tenant}, pg_catalog.count(*)::int8{sep}{cols}
               FROM {rows}{chain}{parents}
              GROUP BY 1",
            sep = if cols.is_empty() { "" } else { ", " },
            cols = cols.join(", "),
            rows = self.rows(l, t.oid, "c"),
        );
        let mut counted = 0;
        for (tenant, rows, found) in self.per_table(&sql, joined.len()) {
            if counts {
                counted += rows;
            }
            for (&i, (count, sample)) in joined.iter().zip(found) {
                if count > 0 {
                    out.push(Issue {
                        check: "foreign_keys",
                        table: t.oid,
                        constraint: c.edges[i].name.clone(),
                        tenant: tenant.clone(),
                        other_tenant: None,
                        count,
                        sample,
                    });
                }
            }
        }
        counted
    }

    /// One relationship's orphans for one tenant where its values without a parent are
    /// `missing` (a query, see `distinct_values.rs`): none at all is one look at the index;
    /// else the tenant's rows holding one of those values.
    fn orphans_among(&self, l: &LoadedScope, i: usize, missing: &str, out: &mut Vec<Issue>) {
        if !crate::distinct_values::any(missing) {
            return;
        }
        let c = &l.catalog;
        let e = &c.edges[i];
        let (chain, tenant) = self.tenant_of(l, e.child);
        let lhs = quoted(c, e.child, &e.child_cols, "c");
        let sql = format!(
            "SELECT {tenant}, NULL::text, pg_catalog.count(*)::int8,
                    pg_catalog.to_jsonb((pg_catalog.array_agg(ROW({lhs})::text))[1:10])
               FROM {rows}{chain}
              WHERE {lhs} IN ({missing})
              GROUP BY 1",
            lhs = lhs[0],
            rows = self.rows(l, e.child, "c"),
        );
        // Few rows hold a value without a parent, but the planner takes them for the column's
        // average per value and hashes the tenant's whole ownership chain to test them (office
        // 4: 30k orders, 12 ms); nested loops test each row's chain by index instead.
        let found = with_settings(
            &[("enable_hashjoin", "off"), ("enable_mergejoin", "off")],
            || self.grouped(&sql),
        );
        orphan_issues(e, found, out);
    }

    /// One relationship's orphans by an anti-join, grouped by tenant; the tenant's chain is
    /// joined to the orphans only, so validating every tenant costs about as much as the
    /// hand-written anti-join.
    fn anti_join(&self, l: &LoadedScope, i: usize, out: &mut Vec<Issue>) {
        let c = &l.catalog;
        let e = &c.edges[i];
        let (chain, tenant) = self.tenant_of(l, e.child);
        let lhs = quoted(c, e.child, &e.child_cols, "c");
        let rhs = quoted(c, e.parent, &e.parent_cols, "p");
        let not_null: Vec<String> = lhs.iter().map(|x| format!("{x} IS NOT NULL")).collect();
        let sql = format!(
            "SELECT {tenant}, NULL::text, pg_catalog.count(*)::int8,
                    pg_catalog.to_jsonb((pg_catalog.array_agg(ROW({lhs})::text))[1:10])
               FROM {rows}{chain}
              WHERE {nn} AND NOT EXISTS (SELECT FROM {parent} p WHERE ({rhs}) = ({lhs}))
              GROUP BY 1",
            lhs = lhs.join(", "),
            rows = self.rows(l, e.child, "c"),
            nn = not_null.join(" AND "),
            parent = c.table(e.parent).sql,
            rhs = rhs.join(", "),
        );
        orphan_issues(e, self.grouped(&sql), out);
    }

    /// Runs a per-table check: per tenant, the rows covered and `n` (count, sample) pairs.
    #[allow(clippy::type_complexity)]
    fn per_table(&self, sql: &str, n: usize) -> Vec<(Option<String>, i64, Vec<(i64, Value)>)> {
        Spi::connect(|c| {
            c.select(sql, None, &self.args())?
                .map(|r| {
                    let found = (0..n)
                        .map(|k| {
                            Ok((
                                r.get::<i64>(3 + 2 * k)?.unwrap_or(0),
                                r.get::<JsonB>(4 + 2 * k)?
                                    .map(|j| j.0)
                                    .unwrap_or(Value::Null),
                            ))
                        })
                        .collect::<Result<Vec<_>, pgrx::spi::Error>>()?;
                    Ok((r.get::<String>(1)?, r.get::<i64>(2)?.unwrap_or(0), found))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .or_raise()
    }

    /// Owned rows referencing rows another tenant owns, per relationship and tenant pair.
    /// References into shared tables and a root's self-reference are never violations.
    fn isolation(&self, l: &LoadedScope, out: &mut Vec<Issue>) {
        let (c, r) = (&l.catalog, &l.resolved);
        for i in &r.cross_references {
            let e = &c.edges[*i];
            // With one tenant validated, the rows are that tenant's: no chain to join up.
            let child = match self.tenant {
                Some(_) => r.get(e.child).map(|_| (String::new(), tenant_param(l))),
                None => tenant_chain(c, r, e.child, "c", false),
            };
            let (Some((cj, ct)), Some((pj, pt))) =
                (child, tenant_chain(c, r, e.parent, "p", false))
            else {
                continue;
            };
            let lhs = quoted(c, e.child, &e.child_cols, "c");
            let rhs = quoted(c, e.parent, &e.parent_cols, "p");
            let sql = format!(
                "SELECT ({ct})::text, ({pt})::text, pg_catalog.count(*)::int8,
                        pg_catalog.to_jsonb((pg_catalog.array_agg(ROW({lhs})::text))[1:10])
                   FROM {rows}{cj} JOIN {parent} p ON ({rhs}) = ({lhs}){pj}
                  WHERE ({ct}) IS DISTINCT FROM ({pt})
                  GROUP BY 1, 2",
                lhs = lhs.join(", "),
                rows = self.rows(l, e.child, "c"),
                parent = c.table(e.parent).sql,
                rhs = rhs.join(", "),
            );
            for (tenant, other, count, sample) in self.grouped(&sql) {
                out.push(Issue {
                    check: "isolation",
                    table: e.child,
                    constraint: e.name.clone(),
                    tenant,
                    other_tenant: other,
                    count,
                    sample,
                });
            }
        }
    }

    /// Duplicate keys where no constraint prevents them: whole rows of tables without a
    /// primary key, and the key columns of links whose parent has no unique index on them.
    fn primary_keys(&self, l: &LoadedScope, out: &mut Vec<Issue>) {
        let (c, r) = (&l.catalog, &l.resolved);
        let mut keys: Vec<(TableId, Option<Vec<String>>, String)> = vec![];
        for t in &r.tables {
            if c.table(t.oid).primary_key.is_none() {
                keys.push((t.oid, None, "(no primary key: whole rows)".into()));
            }
        }
        for e in c
            .edges
            .iter()
            .filter(|e| matches!(e.kind, crate::scope::graph::EdgeKind::Link))
        {
            if r.get(e.parent).is_none()
                || c.table(e.parent).primary_key.as_ref() == Some(&e.parent_cols)
            {
                continue;
            }
            let unique = Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = $1::pg_catalog.oid AND i.indisunique
                          AND (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attname) FROM pg_catalog.pg_attribute a
                                WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = $2)",
                &[(e.parent as i64).into(), {
                    let mut cols = e.parent_cols.clone();
                    cols.sort();
                    cols
                }
                .into()],
            )
            .or_raise()
            .unwrap_or(false);
            if !unique {
                keys.push((
                    e.parent,
                    Some(e.parent_cols.clone()),
                    format!("link {}", e.name),
                ));
            }
        }
        for (table, cols, what) in keys {
            let key = match &cols {
                Some(cols) => format!("ROW({})::text", quoted(c, table, cols, "d").join(", ")),
                None => "d::text".into(),
            };
            let (joins, tenant) = tenant_chain(c, r, table, "d", true).unwrap_or_default();
            let tenant = if tenant.is_empty() {
                "NULL".to_string()
            } else {
                format!("({tenant})::text")
            };
            let sql = format!(
                "SELECT t, NULL::text, pg_catalog.sum(n - 1)::int8, pg_catalog.to_jsonb((pg_catalog.array_agg(k))[1:10])
                   FROM (SELECT {tenant} AS t, {key} AS k, pg_catalog.count(*) AS n FROM {rows}{joins}
                          GROUP BY 1, 2 HAVING pg_catalog.count(*) > 1) x
                  GROUP BY 1",
                rows = self.rows(l, table, "d"),
            );
            for (tenant, _, count, sample) in self.grouped(&sql) {
                out.push(Issue {
                    check: "primary_keys",
                    table,
                    constraint: what.clone(),
                    tenant,
                    other_tenant: None,
                    count,
                    sample,
                });
            }
        }
    }

    fn rows_checked(&self, l: &LoadedScope) -> i64 {
        l.resolved
            .tables
            .iter()
            .filter(|t| t.role != Role::Shared)
            .map(|t| {
                let sql = format!(
                    "SELECT pg_catalog.count(*)::int8 FROM {}",
                    self.rows(l, t.oid, "x")
                );
                Spi::get_one_with_args::<i64>(&sql, &self.args())
                    .or_raise()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// How the checks' statements are planned. One tenant's rows are reached from its root
    /// row by index probes down the ownership path (the foreign-key columns' indexes), a few
    /// pages of each table; at the default `random_page_cost` of 4 (a disk seek each) the
    /// planner prefers to read every table whole and hash the tenant's keys, so a tenant with
    /// 5% of the rows cost a third of validating all of them. These are the pages the
    /// tenant's own queries keep cached, so one tenant's checks are planned at 1.1 (the usual
    /// value for SSDs and cached data), unless the server's setting is lower already. All
    /// tenants are read whole either way: no change there.
    fn planner_settings(&self) -> Vec<(&'static str, &'static str)> {
        const PROBE_COST: &str = "1.1";
        if self.tenant.is_none() {
            return vec![];
        }
        let current = Spi::get_one::<f64>(
            "SELECT pg_catalog.current_setting('random_page_cost')::pg_catalog.float8",
        )
        .or_raise()
        .unwrap_or(0.0);
        if current > PROBE_COST.parse::<f64>().expect("a number") {
            vec![("random_page_cost", PROBE_COST)]
        } else {
            vec![]
        }
    }

    fn run(&mut self) -> Result<Value, Error> {
        let loaded = LoadedScope::for_job(&self.scope, self.job_id)?;
        if let Some(t) = &self.tenant {
            loaded.check_tenant(t)?;
        }
        let mut issues = vec![];
        let mut checked = None;
        with_settings(&self.planner_settings(), || {
            for check in &self.checks {
                match check.as_str() {
                    "foreign_keys" => self.foreign_keys(&loaded, &mut issues, &mut checked),
                    "isolation" => self.isolation(&loaded, &mut issues),
                    _ => self.primary_keys(&loaded, &mut issues),
                }
            }
        });
        for i in &issues {
            owner::execute(
                    "INSERT INTO tenant_ops.integrity_issues
                        (job_id, check_name, table_name, constraint_name, tenant, other_tenant, count, sample)
                     VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5, $6, $7, $8)",
                    &[
                        self.job_id.into(),
                        i.check.into(),
                        (i.table as i64).into(),
                        i.constraint.clone().into(),
                        i.tenant.clone().into(),
                        i.other_tenant.clone().into(),
                        i.count.into(),
                        JsonB(i.sample.clone()).into(),
                    ],
                )
            .or_raise();
        }
        let bad: i64 = issues.iter().map(|i| i.count).sum();
        // A one-tenant foreign-key pass counts the rows as it goes; else a count of their own.
        let checked = checked.unwrap_or_else(|| self.rows_checked(&loaded));
        // Rounded down, so a single bad row among millions still shows as
        // 99.99 rather than a perfect 100.
        let score = if checked == 0 {
            100.0
        } else {
            ((1.0 - bad as f64 / checked as f64).max(0.0) * 10000.0).floor() / 100.0
        };
        let mut by_check = serde_json::Map::new();
        for c in &self.checks {
            let n: i64 = issues
                .iter()
                .filter(|i| i.check == c.as_str())
                .map(|i| i.count)
                .sum();
            by_check.insert(c.clone(), json!(n));
        }
        Ok(json!({
            "scope": self.scope, "tenant": self.tenant, "checks": self.checks,
            "issues": issues.len(), "bad_rows": bad, "rows_checked": checked, "score": score, "by_check": by_check,
        }))
    }
}

impl Steps for Validation {
    fn step(&mut self, _job: &Job) -> Result<StepOutcome, Report> {
        let result = self.run()?;
        jobs::log(
            self.job_id,
            "checked",
            Some("check"),
            None,
            result["bad_rows"].as_i64(),
            None,
            Some(result.clone()),
        );
        Ok(StepOutcome::Done(result))
    }
}

/// Undoes a validation (a cancel): its findings go.
pub fn revert(job_id: i64, final_status: jobs::Status) -> Result<Value, Error> {
    owner::execute(
        "DELETE FROM tenant_ops.integrity_issues WHERE job_id = $1",
        &[job_id.into()],
    )
    .or_raise();
    jobs::finish(job_id, final_status, None, None);
    Ok(json!({}))
}
