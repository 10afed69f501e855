//! Which tables a migration copies, with the targets they go to, and the plans every stage
//! works from ([`Migration::build_plans`]; how a plan computes each target row: `plan.rs`).

use std::collections::BTreeSet;

use super::error::{Error, Result};
use super::options::{IdStrategy, MigrateOptions, SharedMode};
use super::plan::{Planner, TablePlan};
use super::target_table::{self, TargetTable};
use super::Migration;
use crate::scope::graph::{Role, TableId};
use crate::scope::LoadedScope;

impl Migration {
    /// Source tables this migration copies, in dependency order: root and owned tables, and
    /// shared tables when `shared: copy`.
    pub(super) fn copied(&self, loaded: &LoadedScope) -> Vec<(TableId, Role)> {
        loaded
            .resolved
            .tables
            .iter()
            .filter(|t| t.role != Role::Shared || self.options.shared == SharedMode::Copy)
            .map(|t| (t.oid, t.role))
            .collect()
    }

    /// Plans every copied table against the targets as they exist now. `staged`: the shared
    /// keys were staged by `prepare` (every step after it).
    pub(super) fn build_plans(&self, loaded: &LoadedScope, staged: bool) -> Result<Vec<TablePlan>> {
        let copied = self.copied(loaded);
        let bare = self.bare_targets();
        let mut targets = vec![];
        for (source, _) in &copied {
            let name = self.target_name(loaded, *source);
            match target_table::read(&self.target_schema, &name) {
                Some(mut t) => {
                    // Created bare by this job: planned with the primary key it will get.
                    if bare.contains(&t.oid) {
                        t.bare = true;
                        if t.primary_key.is_none() {
                            t.primary_key = loaded.catalog.table(*source).primary_key.clone();
                        }
                    }
                    targets.push(t)
                }
                None => {
                    return Err(Error::MissingTarget {
                        target: target_table::qualified(&self.target_schema, &name),
                        from: loaded.catalog.table(*source).display.clone(),
                        shared: false,
                    })
                }
            }
        }
        let planner = Planner {
            loaded,
            options: &self.options,
            rekeyed: self.rekeyed_tables(loaded),
            is_admin: crate::pg::has_role("tenant_ops_admin"),
            lookups: Default::default(),
            masks: self.masks(loaded)?,
        };
        let filters = self.filters(loaded);
        let mut plans = vec![];
        for (i, ((source, role), target)) in copied.iter().zip(targets).enumerate() {
            let mut filter = filters.filter(*source).to_string();
            if *role == Role::Root && self.options.shared == SharedMode::Copy {
                if let Some(closure) = root_reference_closure(loaded, &filter) {
                    filter = format!("({filter}) OR {closure}");
                }
            }
            // Rows beyond the tenant's own (managers, other tenants' rows brought along).
            let own = filters.base_filter(*source);
            let borrowed = (*role != Role::Shared && filter != own)
                .then(|| format!("NOT coalesce(({own}), false)"));
            let mut plan = planner.plan_table(i as i32 + 1, *source, *role, filter, target)?;
            plan.borrowed = borrowed;
            if staged && self.stages_shared_keys(&plan) {
                plan.filter = self.staged_filter(&plan);
            }
            plans.push(plan);
        }
        Ok(plans)
    }
}

impl Migration {
    /// The columns the `pii` option masks: the explicit form the job stored at submission
    /// (see `pii::mask`), checked against the scope as it is now.
    pub(super) fn masks(&self, loaded: &LoadedScope) -> Result<crate::pii::mask::Masks> {
        crate::pii::mask::Masks::resolve(
            self.options.pii.as_ref(),
            loaded,
            crate::pii::mask::Sampled::Tenant {
                scope: &self.scope,
                tenant: &self.tenant,
            },
        )
    }

    /// The source tables re-keyed ([`rekeyed`]) against the targets as they exist now: the
    /// copied tables, and the shared tables under `shared: expect` too (not copied, but their
    /// keys are mapped as the migration that copied them mapped them). A table this job
    /// created bare counts with the primary key it will get.
    pub(super) fn rekeyed_tables(&self, loaded: &LoadedScope) -> BTreeSet<TableId> {
        let bare = self.bare_targets();
        let (tables, targets): (Vec<(TableId, Role)>, Vec<TargetTable>) = loaded
            .resolved
            .tables
            .iter()
            .filter_map(|t| {
                let mut target =
                    target_table::read(&self.target_schema, &self.target_name(loaded, t.oid))?;
                if bare.contains(&target.oid) && target.primary_key.is_none() {
                    target.primary_key = loaded.catalog.table(t.oid).primary_key.clone();
                }
                Some(((t.oid, t.role), target))
            })
            .unzip();
        rekeyed(loaded, &self.options, &tables, &targets)
    }

    /// The target tables this job created whose keys, indexes and foreign keys are still to
    /// be built (by oid): known to `prepare`, read back from the checkpoints afterwards.
    fn bare_targets(&self) -> BTreeSet<u32> {
        if let Some(b) = &self.bare {
            return b.clone();
        }
        crate::jobs::tables(self.job_id)
            .iter()
            .filter(|t| super::constraints::is_deferred(t))
            .filter_map(|t| t.details.get("target_oid")?.as_u64().map(|o| o as u32))
            .collect()
    }
}

/// Tables whose single-column primary key is re-keyed: the strategy re-keys, and the target
/// key column is a uuid.
fn rekeyed(
    loaded: &LoadedScope,
    options: &MigrateOptions,
    tables: &[(TableId, Role)],
    targets: &[TargetTable],
) -> BTreeSet<TableId> {
    let mut out = BTreeSet::new();
    if options.id_strategy == IdStrategy::Keep {
        return out;
    }
    for ((source, _), target) in tables.iter().zip(targets) {
        let src = loaded.catalog.table(*source);
        let Some([_]) = src.primary_key.as_deref() else {
            continue;
        };
        let Some([tk]) = target.primary_key.as_deref() else {
            continue;
        };
        if target.column(tk).is_some_and(|c| c.type_name == "uuid") {
            out.insert(*source);
        }
    }
    out
}

/// For a root with a self-reference (an employee's manager) under `shared: copy`: the root
/// rows the tenant's root row points at, transitively, as a condition on `s`.
fn root_reference_closure(loaded: &LoadedScope, root_filter: &str) -> Option<String> {
    let c = &loaded.catalog;
    let root = c.table(loaded.resolved.root);
    let pk = root.primary_key.as_ref()?;
    let selfs: Vec<_> = c
        .edges
        .iter()
        .filter(|e| e.child == root.oid && e.is_self_reference() && &e.parent_cols == pk)
        .collect();
    if selfs.is_empty() || pk.len() != 1 {
        return None;
    }
    let q = |col: &str| root.quoted_col(col).to_string();
    let key = q(&pk[0]);
    let refs: Vec<String> = selfs.iter().map(|e| q(&e.child_cols[0])).collect();
    let base: Vec<String> = refs
        .iter()
        .map(|r| format!("SELECT {r} FROM {} WHERE {root_filter}", root.sql))
        .collect();
    let step: Vec<String> = refs
        .iter()
        .map(|r| format!("SELECT x.{r} FROM {} x JOIN r ON x.{key} = r.k", root.sql))
        .collect();
    Some(format!(
        "s.{key} IN (WITH RECURSIVE r(k) AS ({} UNION {}) SELECT k FROM r WHERE k IS NOT NULL)",
        base.join(" UNION "),
        step.join(" UNION ")
    ))
}
