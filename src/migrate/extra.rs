//! Rows beyond the tenant's own filter, kept with the job in `tenant_ops.job_extra`: the rows
//! of other tenants that `cross_tenant: copy` brings along, and the keys of the shared rows
//! that `shared: copy` stages once in `prepare`.

use std::collections::{BTreeMap, BTreeSet};

use super::error::Result;
use super::options::{self, SharedMode};
use super::plan::TablePlan;
use super::sql::{qualified_cols, rows_written};
use super::Migration;
use crate::scope::graph::{Role, TableId};
use crate::scope::LoadedScope;
use crate::sys::with_job_window;

impl Migration {
    /// The filters of this migration: with `cross_tenant: copy`, every root and owned table
    /// also takes the rows of other tenants listed in `tenant_ops.job_extra`.
    pub(super) fn filters<'a>(&self, loaded: &'a LoadedScope) -> crate::scope::graph::Filters<'a> {
        if self.options.cross_tenant != options::CrossTenant::Copy {
            return loaded.filters();
        }
        let mut ext = std::collections::BTreeMap::new();
        for t in loaded
            .resolved
            .tables
            .iter()
            .filter(|t| t.role != Role::Shared)
        {
            if let Some(key) = key_array(&loaded.catalog, t.oid, None) {
                ext.insert(
                    t.oid,
                    format!(
                        "{key} IN (SELECT key FROM tenant_ops.job_extra WHERE job_id = {} AND source = {}::pg_catalog.regclass)",
                        self.job_id, t.oid
                    ),
                );
            }
        }
        crate::scope::graph::Filters::with_extensions(&loaded.catalog, &loaded.resolved, ext)
    }

    /// For `cross_tenant: copy`: the rows of other tenants that the tenant's rows reference,
    /// and transitively what those reference within the scope, recorded in
    /// `tenant_ops.job_extra` by a set-based fixpoint (one INSERT per reference per round).
    pub(super) fn collect_extra(&self, loaded: &LoadedScope) -> Result<i64> {
        let c = &loaded.catalog;
        let base = loaded.filters();
        let members: BTreeSet<TableId> = loaded
            .resolved
            .tables
            .iter()
            .filter(|t| t.role != Role::Shared)
            .map(|t| t.oid)
            .collect();
        let mut statements = vec![];
        for e in &c.edges {
            if !members.contains(&e.child) || !members.contains(&e.parent) {
                continue;
            }
            let Some(parent_key) = key_array(c, e.parent, Some("p")) else {
                continue;
            };
            let (child, parent) = (c.table(e.child), c.table(e.parent));
            let child_cond = match key_array(c, e.child, Some("c")) {
                Some(k) => format!(
                    "({}) OR {k} IN (SELECT key FROM tenant_ops.job_extra WHERE job_id = {} AND source = {}::pg_catalog.regclass)",
                    base.base_filter(e.child),
                    self.job_id,
                    e.child
                ),
                None => base.base_filter(e.child).to_string(),
            };
            statements.push(format!(
                "INSERT INTO tenant_ops.job_extra (job_id, source, key)
                 SELECT {job}, {poid}::pg_catalog.regclass, {parent_key} FROM {psql} p
                  WHERE ({pcols}) IN (SELECT {ccols} FROM {csql} c WHERE {child_cond})
                    AND NOT coalesce(({pfilter}), false)
                 ON CONFLICT DO NOTHING",
                job = self.job_id,
                poid = e.parent,
                psql = parent.sql,
                pcols = qualified_cols(parent, &e.parent_cols, "p").join(", "),
                ccols = qualified_cols(child, &e.child_cols, "c").join(", "),
                csql = child.sql,
                pfilter = base.base_filter(e.parent),
            ));
        }
        let mut total = 0;
        for _round in 0..1000 {
            let mut added = 0;
            for sql in &statements {
                added += with_job_window(self.job_id, || rows_written(sql, &self.params.args()));
            }
            total += added;
            if added == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// With `shared: copy`, the keys of the shared rows the tenant references are computed
    /// once, in `prepare`, and kept in `tenant_ops.job_extra`: the filter that finds them walks
    /// every referencing row of the tenant, which each statement on a shared table (counting,
    /// mapping, copying, verifying) would otherwise repeat.
    pub(super) fn stages_shared_keys(&self, p: &TablePlan) -> bool {
        self.options.shared == SharedMode::Copy && p.role == Role::Shared && p.key.is_some()
    }

    /// The filter of a shared table whose keys are staged (see [`Self::stages_shared_keys`]).
    pub(super) fn staged_filter(&self, p: &TablePlan) -> String {
        let key: Vec<String> = p
            .key
            .as_ref()
            .expect("staged tables are keyed")
            .iter()
            .map(|k| format!("({})::text", k.quoted))
            .collect();
        format!(
            "ARRAY[{}] IN (SELECT x.key FROM tenant_ops.job_extra x WHERE x.job_id = {} AND x.source = {}::pg_catalog.regclass)",
            key.join(", "),
            self.job_id,
            p.source
        )
    }

    /// Stages the keys of the shared rows to copy (as the caller, in the job's window:
    /// job_extra is the extension's) and points their plans at them; returns the rows staged
    /// per step.
    pub(super) fn stage_shared_keys(
        &self,
        loaded: &LoadedScope,
        plans: &mut [TablePlan],
    ) -> BTreeMap<i32, i64> {
        let mut staged = BTreeMap::new();
        for i in 0..plans.len() {
            if !self.stages_shared_keys(&plans[i]) {
                continue;
            }
            let referenced = referenced_rows(loaded, &plans[i], plans);
            let p = &mut plans[i];
            let sql = format!(
                "INSERT INTO tenant_ops.job_extra (job_id, source, key)
                 SELECT {job}, {oid}::pg_catalog.regclass, {key} FROM {src} s WHERE {referenced}
                 ON CONFLICT DO NOTHING",
                job = self.job_id,
                oid = p.source,
                key = p.key_text("s"),
                src = p.source_sql,
            );
            let n = with_job_window(self.job_id, || rows_written(&sql, &self.params.args()));
            staged.insert(p.step, n);
            p.filter = self.staged_filter(p);
        }
        staged
    }
}

/// The condition on shared table `p`'s rows that the tenant references: its filter, or where
/// one reference leads to it (one column, from a table of the tenant's, `p` not referencing
/// itself) and that column's values can be read from an index, the values the tenant's rows
/// hold, found mostly by probing each value's first rows (`distinct_values.rs`): the filter
/// walks every referencing row of the tenant (office 1: 750k order items for 200 products).
fn referenced_rows(loaded: &LoadedScope, p: &TablePlan, plans: &[TablePlan]) -> String {
    let c = &loaded.catalog;
    let Some([reference]) = loaded
        .resolved
        .get(p.source)
        .map(|t| t.referenced_by.as_slice())
    else {
        return p.filter.clone();
    };
    let e = &c.edges[*reference];
    let self_referencing = c
        .edges
        .iter()
        .any(|e| e.child == p.source && e.is_self_reference());
    let Some(child) = plans.iter().find(|q| q.source == e.child) else {
        return p.filter.clone();
    };
    let [parent_col] = e.parent_cols.as_slice() else {
        return p.filter.clone();
    };
    if self_referencing || child.role == Role::Shared {
        return p.filter.clone();
    }
    match crate::distinct_values::referenced_values(c.table(e.child), &e.child_cols, &child.filter)
    {
        Some(values) => format!(
            "s.{} IN ({values})",
            c.table(p.source).quoted_col(parent_col)
        ),
        None => p.filter.clone(),
    }
}

/// `ARRAY[(alias.k1)::text, ...]` over a table's primary key (unqualified without an alias).
fn key_array(
    c: &crate::scope::graph::Catalog,
    table: TableId,
    alias: Option<&str>,
) -> Option<String> {
    let t = c.table(table);
    let pk = t.primary_key.as_ref()?;
    let cols: Vec<String> = pk
        .iter()
        .map(|k| {
            let q = t.quoted_col(k);
            match alias {
                Some(a) => format!("({a}.{q})::text"),
                None => format!("({q})::text"),
            }
        })
        .collect();
    Some(format!("ARRAY[{}]", cols.join(", ")))
}
