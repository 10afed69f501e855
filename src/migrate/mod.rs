//! `migrate_tenant`: copy (or move) every owned row of one tenant into a target schema,
//! table by table in dependency order, with set-based `INSERT ... SELECT` batches.
//!
//! The job advances through stages, one bounded step at a time (see `crate::jobs`):
//!
//! 1. `prepare` — plan every table, check everything the real run would meet (target tables
//!    and columns, types, shared rows, cross-tenant references, conflicts), create missing
//!    targets when asked, and register the per-table checkpoints;
//! 2. `copy` — one keyset batch of one table per step: `(key) > last AND (key) <= upper`;
//! 3. `fixup` — set the columns deferred to break self-references and cycles;
//! 4. `verify` — per table, counts and a checksum computed through the key mapping;
//! 5. `archive`, `delete` — for `mode: move`, keep the source rows in `tenant_ops.job_archive`
//!    then delete them, children first, only after verification.

pub mod options;
pub mod plan;
pub mod target;
pub mod transform;
pub mod uuid5;

use std::collections::{BTreeMap, BTreeSet};

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::error::{OpsError, OpsResult, OrRaise};
use crate::jobs::executor::Steps;
use crate::jobs::{self, Job, JobTable, StepOutcome};
use crate::scope::graph::{EdgeKind, Role, TableId};
use crate::scope::{self, LoadedScope};
use crate::sys::{owner, try_subtransaction, with_job_window, with_settings};
use options::{IdStrategy, MigrateOptions, Mode, OnConflict, SharedMode};
use plan::{Planner, TablePlan};
use target::TargetTable;

/// The parameters every generated statement takes: `$1` tenant, `$2` mapping namespace,
/// `$3` new tenant (or NULL); keyset bounds follow as `$4` and `$5`.
struct Params {
    tenant: String,
    namespace: String,
    new_tenant: Option<String>,
}

impl Params {
    fn args(&self) -> Vec<pgrx::datum::DatumWithOid<'static>> {
        vec![
            self.tenant.clone().into(),
            self.namespace.clone().into(),
            self.new_tenant.clone().into(),
        ]
    }

    /// The common arguments followed by keyset bounds (`$4`, `$5`, and `$6` for one row).
    fn with_keys(
        &self,
        keys: &[Option<&Vec<Option<String>>>],
    ) -> Vec<pgrx::datum::DatumWithOid<'static>> {
        let mut a = self.args();
        for k in keys {
            a.push(k.cloned().unwrap_or_default().into());
        }
        a
    }
}

/// A migration job's step driver.
pub struct Migration {
    job_id: i64,
    scope: String,
    tenant: String,
    target_schema: String,
    options: MigrateOptions,
    params: Params,
    batch_size: i64,
    /// Plans, once the targets exist (rebuilt on the first step of each executor run).
    plans: Option<Vec<TablePlan>>,
}

/// Settings for the statements of every step. Each hash, sort or materialized batch of a
/// statement takes at most `work_mem` (hash_mem_multiplier 1: hashes get no more) and spills
/// beyond it, so a step's memory is bounded by a few times 16 MB whatever the tenant's size,
/// while the mappings of a few hundred thousand keys still hash in memory. No parallel plans:
/// statements run from inside a function get no workers launched, and a parallel hash would
/// still build its table in a dynamic shared memory segment of its own.
const STEP_SETTINGS: &[(&str, &str)] = &[
    ("work_mem", "16MB"),
    ("hash_mem_multiplier", "1"),
    ("max_parallel_workers_per_gather", "0"),
];

/// A batch size larger than any table: one step per table.
const WHOLE_TABLE: i64 = i64::MAX / 2;

/// The target schema is kept in the job's options under this key.
const TARGET_SCHEMA_KEY: &str = "target_schema";

impl Migration {
    pub fn from_job(job: &Job) -> OpsResult<Migration> {
        let mut raw = job.options.clone();
        let target_schema = raw
            .as_object_mut()
            .and_then(|m| m.remove(TARGET_SCHEMA_KEY))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let options = MigrateOptions::parse(&raw)?;
        let scope = job.scope.clone().unwrap_or_default();
        let tenant = job.tenant.clone().unwrap_or_default();
        let namespace = namespace(&options, &scope);
        // Steps exist so that a committing run can resume where it stopped. An inline run is
        // one transaction whatever its steps, so unless the caller sized them it takes each
        // table in one statement, the way hand-written SQL would.
        let batch_size = match (options.batch_size, job.executor.as_str()) {
            (Some(n), _) => n,
            (None, "inline") => WHOLE_TABLE,
            (None, _) => crate::gucs::batch_size() as i64,
        };
        Ok(Migration {
            job_id: job.id,
            params: Params {
                tenant: tenant.clone(),
                namespace,
                new_tenant: options.new_tenant.clone(),
            },
            scope,
            tenant,
            target_schema,
            options,
            batch_size,
            plans: None,
        })
    }

    fn load_scope(&self) -> OpsResult<LoadedScope> {
        scope::load(&self.scope)
    }

    /// Source tables this migration copies, in dependency order: root and owned tables, and
    /// shared tables when `shared: copy`.
    fn copied(&self, loaded: &LoadedScope) -> Vec<(TableId, Role)> {
        loaded
            .resolved
            .tables
            .iter()
            .filter(|t| t.role != Role::Shared || self.options.shared == SharedMode::Copy)
            .map(|t| (t.oid, t.role))
            .collect()
    }

    /// The target table name for a source table: the `tables` map, else `strip_prefix`.
    fn target_name(&self, loaded: &LoadedScope, source: TableId) -> String {
        let t = loaded.catalog.table(source);
        let relname = t.sql.rsplit('.').next().unwrap_or(&t.sql);
        let relname = unquote(relname);
        for (from, to) in &self.options.tables {
            if *from == relname
                || *from == t.display
                || *from == t.sql
                || unquote_qualified(from) == unquote_qualified(&t.sql)
            {
                return to.clone();
            }
        }
        match &self.options.strip_prefix {
            Some(p) if relname.starts_with(p.as_str()) && relname.len() > p.len() => {
                relname[p.len()..].to_string()
            }
            _ => relname,
        }
    }

    fn is_admin() -> bool {
        Spi::get_one::<bool>(
            "SELECT pg_catalog.pg_has_role(current_user, 'tenant_ops_admin', 'MEMBER')
                 OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)",
        )
        .or_raise()
        .unwrap_or(false)
    }

    /// The filters of this migration: with `cross_tenant: copy`, every root and owned table
    /// also takes the rows of other tenants listed in `tenant_ops.job_extra`.
    fn filters<'a>(&self, loaded: &'a LoadedScope) -> crate::scope::graph::Filters<'a> {
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
    fn collect_extra(&self, loaded: &LoadedScope) -> OpsResult<i64> {
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
    fn stages_shared_keys(&self, p: &TablePlan) -> bool {
        self.options.shared == SharedMode::Copy && p.role == Role::Shared && p.key.is_some()
    }

    /// The filter of a shared table whose keys are staged (see [`Self::stages_shared_keys`]).
    fn staged_filter(&self, p: &TablePlan) -> String {
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
    fn stage_shared_keys(&self, plans: &mut [TablePlan]) -> BTreeMap<i32, i64> {
        let mut staged = BTreeMap::new();
        for p in plans.iter_mut().filter(|p| self.stages_shared_keys(p)) {
            let sql = format!(
                "INSERT INTO tenant_ops.job_extra (job_id, source, key)
                 SELECT {job}, {oid}::pg_catalog.regclass, {key} FROM {src} s WHERE {filter}
                 ON CONFLICT DO NOTHING",
                job = self.job_id,
                oid = p.source,
                key = p.key_text("s"),
                src = p.source_sql,
                filter = p.filter,
            );
            let n = with_job_window(self.job_id, || rows_written(&sql, &self.params.args()));
            staged.insert(p.step, n);
            p.filter = self.staged_filter(p);
        }
        staged
    }

    /// Plans every copied table against the targets as they exist now. `staged`: the shared
    /// keys were staged by `prepare` (every step after it).
    fn build_plans(&self, loaded: &LoadedScope, staged: bool) -> OpsResult<Vec<TablePlan>> {
        let copied = self.copied(loaded);
        let mut targets = vec![];
        for (source, _) in &copied {
            let name = self.target_name(loaded, *source);
            match target::read(&self.target_schema, &name) {
                Some(t) => targets.push(t),
                None => {
                    return Err(OpsError::MissingTarget {
                        target: target::qualified(&self.target_schema, &name),
                        from: loaded.catalog.table(*source).display.clone(),
                        hint: "Create it, map the source table to another name with the \"tables\" option, or set \"create_target\": true.".into(),
                    })
                }
            }
        }
        let planner = Planner {
            loaded,
            options: &self.options,
            rekeyed: rekeyed(loaded, &self.options, &copied, &targets),
            is_admin: Self::is_admin(),
            lookups: Default::default(),
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
            let mut plan = planner.plan_table(i as i32 + 1, *source, *role, filter, target)?;
            if staged && self.stages_shared_keys(&plan) {
                plan.filter = self.staged_filter(&plan);
            }
            plans.push(plan);
        }
        Ok(plans)
    }

    fn plans(&mut self) -> OpsResult<&Vec<TablePlan>> {
        if self.plans.is_none() {
            let loaded = self.load_scope()?;
            self.plans = Some(self.build_plans(&loaded, true)?);
        }
        Ok(self.plans.as_ref().expect("just built"))
    }

    // ----- prepare ----------------------------------------------------------------------------

    fn prepare(&mut self) -> OpsResult<()> {
        let loaded = self.load_scope()?;
        loaded.check_tenant(&self.tenant)?;
        target::require_schema(&self.target_schema)?;
        if self.options.create_target {
            self.create_targets(&loaded)?;
        }
        let mut plans = self.build_plans(&loaded, false)?;
        // Every check runs; a real run stops at the first problem, a dry run reports them all.
        let mut problems: Vec<OpsError> = vec![];
        let dry = self.options.dry_run;
        let mut note = |r: OpsResult<()>| -> OpsResult<()> {
            match r {
                Err(e) if dry => {
                    problems.push(e);
                    Ok(())
                }
                other => other,
            }
        };
        for p in &plans {
            let source_privileges = if self.options.mode == Mode::Move && p.role != Role::Shared {
                "SELECT, DELETE"
            } else {
                "SELECT"
            };
            note(require_privileges(
                &p.source_sql,
                &p.source_display,
                source_privileges,
                "migrate_tenant",
            ))?;
            let target_privileges = match self.options.on_conflict {
                OnConflict::Overwrite | OnConflict::Merge => "SELECT, INSERT, UPDATE",
                _ => "SELECT, INSERT",
            };
            note(require_privileges(
                &p.target.sql,
                &p.target.display,
                target_privileges,
                "migrate_tenant",
            ))?;
        }
        if self.options.cross_tenant == options::CrossTenant::Copy {
            let extra = self.collect_extra(&loaded)?;
            jobs::log(
                self.job_id,
                "cross_tenant.copy",
                Some("prepare"),
                None,
                Some(extra),
                Some("rows of other tenants brought along"),
                None,
            );
        }
        for p in &plans {
            note(self.check_types(p))?;
            if !p.deferred.is_empty() && p.target_key.is_none() {
                note(Err(OpsError::InvalidDefinition {
                    message: format!(
                        "target table {} needs a primary key written by the migration: its self-references or cycle references are set once every row exists",
                        p.target.display
                    ),
                    hint: None,
                }))?;
            }
            if matches!(
                self.options.on_conflict,
                OnConflict::Overwrite | OnConflict::Merge
            ) && p.target_key.is_none()
            {
                note(Err(OpsError::InvalidOption(
                    format!(
                        "on_conflict \"{}\" needs a primary key on target table {}",
                        on_conflict_name(self.options.on_conflict),
                        p.target.display
                    ),
                    None,
                )))?;
            }
        }
        let staged = self.stage_shared_keys(&mut plans);
        note(self.check_cross_tenant(&loaded, &plans))?;
        note(self.check_orphans(&loaded, &plans))?;
        if self.options.mode == Mode::Move {
            note(self.check_inbound(&loaded, &plans))?;
        }
        note(self.check_shared(&loaded))?;
        if self.options.on_conflict == OnConflict::Error {
            for p in &plans {
                if p.role != Role::Shared {
                    note(self.check_conflicts(p))?;
                }
            }
        }
        if !problems.is_empty() {
            return Err(OpsError::Many(problems));
        }
        for p in &plans {
            let total = match staged.get(&p.step) {
                Some(n) => Some(*n),
                None if self.copy_counts_rows() => None,
                None => Some(self.count(&format!(
                    "SELECT pg_catalog.count(*) FROM {} s WHERE {}",
                    p.source_sql, p.filter
                ))?),
            };
            jobs::add_table(
                self.job_id,
                p.step,
                p.source,
                Some(&p.target.display),
                p.role.as_str(),
                total,
                json!({"deferred_columns": p.deferred.len(), "id_map": p.uses_id_map}),
            );
        }
        self.plans = Some(plans);
        Ok(())
    }

    /// Whether id_map holds mappings of `source` in this migration's namespace.
    fn mapped_before(&self, source: TableId) -> bool {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM tenant_ops.id_map
                             WHERE namespace = $1 AND source = $2::pg_catalog.oid::pg_catalog.regclass)",
            &[
                self.params.namespace.clone().into(),
                (source as i64).into(),
            ],
        )
        .or_raise()
        .unwrap_or(true)
    }

    /// Whether each table's row count is known from its copy alone, so `prepare` need not
    /// count it first: a real inline run copies each table in one statement, and with
    /// `on_conflict: error` (and no rejected rows) that statement writes every row or fails.
    /// Only committing runs need the totals up front, for progress and ETA.
    fn copy_counts_rows(&self) -> bool {
        self.batch_size >= WHOLE_TABLE
            && !self.options.dry_run
            && self.options.on_conflict == OnConflict::Error
            && !self.options.continue_on_error
    }

    fn count(&self, sql: &str) -> OpsResult<i64> {
        Ok(Spi::get_one_with_args::<i64>(sql, &self.params.args())
            .or_raise()
            .unwrap_or(0))
    }

    /// Prepares the copy statement, so a type the target cannot take is reported before
    /// anything is written, with the tables named.
    fn check_types(&self, p: &TablePlan) -> OpsResult<()> {
        let sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM {} s{} WHERE false",
            p.target.sql,
            p.target_columns(),
            p.select_list(),
            p.source_sql,
            p.joins
        );
        let prepared = try_subtransaction(|| {
            Spi::connect(|c| {
                c.prepare(
                    &sql,
                    &[
                        pgrx::PgOid::from(pgrx::pg_sys::TEXTOID),
                        pgrx::PgOid::from(pgrx::pg_sys::TEXTOID),
                        pgrx::PgOid::from(pgrx::pg_sys::TEXTOID),
                    ],
                )
                .map(|_| ())
            })
        });
        match prepared {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(OpsError::DatatypeMismatch {
                message: format!("cannot migrate {} into {}: {e}", p.source_display, p.target.display),
                hint: None,
            }),
            Err(caught) => Err(OpsError::DatatypeMismatch {
                message: format!("cannot migrate {} into {}: {}", p.source_display, p.target.display, caught.message),
                hint: Some(
                    "Map the column with the \"columns\" option (a transform or another source column), or change the target column's type."
                        .into(),
                ),
            }),
        }
    }

    fn check_cross_tenant(&self, loaded: &LoadedScope, plans: &[TablePlan]) -> OpsResult<()> {
        if self.options.cross_tenant != options::CrossTenant::Error {
            return Ok(());
        }
        let copied: BTreeSet<TableId> = plans.iter().map(|p| p.source).collect();
        let c = &loaded.catalog;
        let filters = loaded.filters();
        for i in &loaded.resolved.cross_references {
            let e = &c.edges[*i];
            if !copied.contains(&e.child) {
                continue;
            }
            let (child, parent) = (c.table(e.child), c.table(e.parent));
            let lhs: Vec<String> = e
                .child_cols
                .iter()
                .map(|x| {
                    format!(
                        "s.{}",
                        child.column(x).map(|col| col.quoted.as_str()).unwrap_or(x)
                    )
                })
                .collect();
            let rhs: Vec<String> = e
                .parent_cols
                .iter()
                .map(|x| {
                    parent
                        .column(x)
                        .map(|col| col.quoted.clone())
                        .unwrap_or(x.clone())
                })
                .collect();
            let not_null: Vec<String> = lhs.iter().map(|x| format!("{x} IS NOT NULL")).collect();
            let n = self.count(&format!(
                "SELECT pg_catalog.count(*) FROM {} s WHERE ({}) AND {} AND ({}) NOT IN (SELECT {} FROM {} WHERE {})",
                child.sql,
                filters.filter(e.child),
                not_null.join(" AND "),
                lhs.join(", "),
                rhs.join(", "),
                parent.sql,
                filters.filter(e.parent)
            ))?;
            if n > 0 {
                return Err(OpsError::ForeignKeyViolation {
                    message: format!(
                        "{n} row(s) of {} reference rows of {} owned by another tenant through {}",
                        child.display, parent.display, e.name
                    ),
                    detail: Some(format!("Tenant \"{}\" of scope \"{}\".", self.tenant, self.scope)),
                    hint: Some("Set the option \"cross_tenant\" to \"null\" to clear such references in the copy, or repair them first.".into()),
                });
            }
        }
        Ok(())
    }

    /// Rows that reference nothing (orphans, possible under a `NOT VALID` FK or a link) would
    /// become dangling keys in the target: refused up front, unless `continue_on_error` sends
    /// them to job_errors as they fail. A validated FK rules them out, so only `NOT VALID`
    /// FKs and links are checked.
    fn check_orphans(&self, loaded: &LoadedScope, plans: &[TablePlan]) -> OpsResult<()> {
        if self.options.continue_on_error {
            return Ok(());
        }
        let c = &loaded.catalog;
        let may_have_orphans = |e: &crate::scope::graph::Edge| {
            !matches!(
                e.kind,
                EdgeKind::ForeignKey {
                    not_valid: false,
                    ..
                }
            )
        };
        for p in plans {
            for e in c.edges.iter().filter(|e| {
                e.child == p.source
                    && loaded.resolved.get(e.parent).is_some()
                    && may_have_orphans(e)
            }) {
                let (child, parent) = (c.table(e.child), c.table(e.parent));
                let lhs = qualified_cols(child, &e.child_cols, "s");
                let rhs = qualified_cols(parent, &e.parent_cols, "p");
                let not_null: Vec<String> =
                    lhs.iter().map(|x| format!("{x} IS NOT NULL")).collect();
                let (n, sample) = Spi::get_two_with_args::<i64, Vec<String>>(
                    &format!(
                        "SELECT pg_catalog.count(*), (pg_catalog.array_agg(ROW({lhs})::text))[1:5] FROM {src} s
                          WHERE ({filter}) AND {nn} AND NOT EXISTS (SELECT FROM {par} p WHERE ({rhs}) = ({lhs}))",
                        lhs = lhs.join(", "),
                        src = child.sql,
                        filter = p.filter,
                        nn = not_null.join(" AND "),
                        par = parent.sql,
                        rhs = rhs.join(", ")
                    ),
                    &self.params.args(),
                )
                .or_raise();
                let n = n.unwrap_or(0);
                if n > 0 {
                    return Err(OpsError::ForeignKeyViolation {
                        message: format!(
                            "{n} row(s) of {} reference rows of {} that do not exist (through {})",
                            child.display, parent.display, e.name
                        ),
                        detail: Some(format!(
                            "Missing {} keys include: {}.",
                            parent.display,
                            sample.unwrap_or_default().join(", ")
                        )),
                        hint: Some(
                            "Repair the orphans first, or set continue_on_error to send those rows to tenant_ops.job_errors."
                                .into(),
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// A move deletes the tenant's rows: rows outside the tenant that still reference them
    /// would block the delete, so they are named before anything runs.
    fn check_inbound(&self, loaded: &LoadedScope, plans: &[TablePlan]) -> OpsResult<()> {
        let c = &loaded.catalog;
        let filters = loaded.filters();
        for p in plans.iter().filter(|p| p.role != Role::Shared) {
            for e in c.edges.iter().filter(|e| e.parent == p.source) {
                let (child, parent) = (c.table(e.child), c.table(e.parent));
                let lhs = qualified_cols(child, &e.child_cols, "x");
                let rhs = qualified_cols(parent, &e.parent_cols, "p");
                // The child's own filter is written for unqualified columns: evaluate it in a
                // subquery over the child table itself.
                let outside = match loaded.resolved.get(e.child) {
                    Some(t) if t.role != Role::Shared => format!(
                        "AND (x.tableoid, x.ctid) NOT IN (SELECT tableoid, ctid FROM {} WHERE {})",
                        child.sql,
                        filters.filter(e.child)
                    ),
                    _ => String::new(),
                };
                let n = self.count(&format!(
                    "SELECT pg_catalog.count(*) FROM {csql} x
                      WHERE ({lhs}) IN (SELECT {rhs} FROM {psql} p WHERE {pf}) {outside}",
                    csql = child.sql,
                    lhs = lhs.join(", "),
                    rhs = rhs.join(", "),
                    psql = parent.sql,
                    pf = p.filter,
                ))?;
                if n > 0 {
                    return Err(OpsError::ForeignKeyViolation {
                        message: format!(
                            "cannot move tenant \"{}\": {n} row(s) of {} outside the tenant reference its rows of {} through {}",
                            self.tenant, child.display, parent.display, e.name
                        ),
                        detail: None,
                        hint: Some("Copy instead of moving, or repair those cross-tenant references first.".into()),
                    });
                }
            }
        }
        Ok(())
    }

    /// With `shared: expect`, every shared row the tenant references must already be in the
    /// target (under its mapped key).
    fn check_shared(&self, loaded: &LoadedScope) -> OpsResult<()> {
        if self.options.shared != SharedMode::Expect {
            return Ok(());
        }
        let shared: Vec<(TableId, Role)> = loaded
            .resolved
            .tables
            .iter()
            .filter(|t| t.role == Role::Shared)
            .map(|t| (t.oid, t.role))
            .collect();
        if shared.is_empty() {
            return Ok(());
        }
        let mut targets = vec![];
        for (source, _) in &shared {
            let name = self.target_name(loaded, *source);
            let Some(t) = target::read(&self.target_schema, &name) else {
                return Err(OpsError::MissingTarget {
                    target: target::qualified(&self.target_schema, &name),
                    from: loaded.catalog.table(*source).display.clone(),
                    hint: "Shared rows are expected in the target: load them there first, or set \"shared\": \"copy\" to bring them along.".into(),
                });
            };
            targets.push(t);
        }
        let all: Vec<(TableId, Role)> = self
            .copied(loaded)
            .into_iter()
            .chain(shared.iter().copied())
            .collect();
        let mut all_targets: Vec<TargetTable> = vec![];
        for (source, _) in &all {
            if let Some(t) = target::read(&self.target_schema, &self.target_name(loaded, *source)) {
                all_targets.push(t);
            }
        }
        let planner = Planner {
            loaded,
            options: &self.options,
            rekeyed: rekeyed(
                loaded,
                &self.options,
                &all[..all_targets.len().min(all.len())],
                &all_targets,
            ),
            is_admin: true,
            lookups: Default::default(),
        };
        let filters = self.filters(loaded);
        for ((source, role), target) in shared.iter().zip(targets) {
            let p = planner.plan_table(
                0,
                *source,
                *role,
                filters.filter(*source).to_string(),
                target,
            )?;
            let Some(key) = &p.target_key else { continue };
            let cond: Vec<String> = key.iter().map(|(c, e)| format!("t.{c} = {e}")).collect();
            let missing = Spi::get_two_with_args::<i64, Vec<String>>(
                &format!(
                    "SELECT pg_catalog.count(*), (pg_catalog.array_agg({}::text))[1:5] FROM {} s{}
                      WHERE ({}) AND NOT EXISTS (SELECT FROM {} t WHERE {})",
                    p.key_text("s"),
                    p.source_sql,
                    p.joins,
                    p.filter,
                    p.target.sql,
                    cond.join(" AND ")
                ),
                &self.params.args(),
            )
            .or_raise();
            if let (Some(n), sample) = missing {
                if n > 0 {
                    return Err(OpsError::ForeignKeyViolation {
                        message: format!(
                            "{n} row(s) of shared table {} referenced by tenant \"{}\" are missing from {}",
                            p.source_display, self.tenant, p.target.display
                        ),
                        detail: Some(format!("Missing keys include: {}.", sample.unwrap_or_default().join(", "))),
                        hint: Some("Load them into the target first, or set the option \"shared\" to \"copy\".".into()),
                    });
                }
            }
        }
        Ok(())
    }

    fn check_conflicts(&self, p: &TablePlan) -> OpsResult<()> {
        let Some(key) = &p.target_key else {
            return Ok(());
        };
        let cols: Vec<String> = key.iter().map(|(c, _)| format!("t.{c}")).collect();
        let exprs: Vec<String> = key.iter().map(|(_, e)| e.clone()).collect();
        let sample = Spi::get_one_with_args::<Vec<String>>(
            &format!(
                "SELECT (pg_catalog.array_agg(k))[1:3] FROM (
                   SELECT ROW({exprs})::text AS k FROM {src} s{joins}
                    WHERE ({filter}) AND ({exprs}) IN (SELECT {cols} FROM {tgt} t)) x",
                exprs = exprs.join(", "),
                src = p.source_sql,
                joins = p.joins,
                filter = p.filter,
                cols = cols.join(", "),
                tgt = p.target.sql
            ),
            &self.params.args(),
        )
        .or_raise();
        match sample {
            Some(keys) if !keys.is_empty() => Err(OpsError::UniqueViolation {
                message: format!("rows of {} already exist in {} (on_conflict is \"error\")", p.source_display, p.target.display),
                detail: Some(format!("Conflicting keys include: {}.", keys.join(", "))),
                hint: Some("Choose on_conflict \"skip\", \"overwrite\" or \"merge\", or clear the target first.".into()),
            }),
            _ => Ok(()),
        }
    }

    /// Creates missing target tables from the source definitions: same columns, re-keyed key
    /// and FK columns typed uuid, primary keys, and FKs between the created tables.
    fn create_targets(&self, loaded: &LoadedScope) -> OpsResult<()> {
        let copied = self.copied(loaded);
        let strategy_rekeys = self.options.id_strategy != IdStrategy::Keep;
        // Which tables will be re-keyed: existing targets by their key type, new ones always.
        let mut created = vec![];
        for (source, _) in &copied {
            let name = self.target_name(loaded, *source);
            if target::read(&self.target_schema, &name).is_none() {
                created.push((*source, name));
            }
        }
        if created.is_empty() {
            return Ok(());
        }
        let mut rekeyed_set = BTreeSet::new();
        for (source, _) in &copied {
            let t = loaded.catalog.table(*source);
            if !strategy_rekeys || !matches!(t.primary_key.as_deref(), Some([_])) {
                continue;
            }
            let name = self.target_name(loaded, *source);
            let is_new = created.iter().any(|(s, _)| s == source);
            let uuid_target = target::read(&self.target_schema, &name).is_some_and(|tt| {
                tt.primary_key
                    .as_deref()
                    .and_then(|pk| pk.first())
                    .and_then(|k| tt.column(k))
                    .is_some_and(|c| c.type_name == "uuid")
            });
            if is_new || uuid_target {
                rekeyed_set.insert(*source);
            }
        }
        let planner = Planner {
            loaded,
            options: &self.options,
            rekeyed: rekeyed_set,
            is_admin: true,
            lookups: Default::default(),
        };
        for (source, name) in &created {
            let t = loaded.catalog.table(*source);
            let mut defs = vec![];
            for col in &t.columns {
                let mapped = planner.mapped_column(*source, &col.name);
                let ty = if strategy_rekeys
                    && mapped != format!("s.{}", col.quoted)
                    && !mapped.starts_with("CASE")
                {
                    "uuid".to_string()
                } else {
                    col.type_full.clone()
                };
                defs.push(format!(
                    "{} {}{}",
                    col.quoted,
                    ty,
                    if col.not_null { " NOT NULL" } else { "" }
                ));
            }
            if let Some(pk) = &t.primary_key {
                let cols: Vec<String> = pk
                    .iter()
                    .map(|c| t.column(c).map(|x| x.quoted.clone()).unwrap_or(c.clone()))
                    .collect();
                defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
            }
            let sql = format!(
                "CREATE TABLE {} ({})",
                target::qualified(&self.target_schema, name),
                defs.join(", ")
            );
            Spi::run(&sql).or_raise();
            jobs::log(
                self.job_id,
                "target.created",
                Some("prepare"),
                Some(*source),
                None,
                Some(&sql),
                None,
            );
        }
        // Foreign keys between created tables, where the parent side is its primary key.
        for e in &loaded.catalog.edges {
            let Some((_, child_name)) = created.iter().find(|(s, _)| *s == e.child) else {
                continue;
            };
            if !copied.iter().any(|(s, _)| *s == e.parent) {
                continue;
            }
            let parent = loaded.catalog.table(e.parent);
            if parent.primary_key.as_ref() != Some(&e.parent_cols) {
                continue;
            }
            let child = loaded.catalog.table(e.child);
            let q = |t: &crate::scope::graph::Table, cols: &[String]| -> String {
                cols.iter()
                    .map(|c| t.column(c).map(|x| x.quoted.clone()).unwrap_or(c.clone()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!(
                "ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({})",
                target::qualified(&self.target_schema, child_name),
                q(child, &e.child_cols),
                target::qualified(&self.target_schema, &self.target_name(loaded, e.parent)),
                q(parent, &e.parent_cols)
            );
            Spi::run(&sql).or_raise();
        }
        Ok(())
    }

    // ----- copy -------------------------------------------------------------------------------

    fn copy_step(&mut self, jt: &JobTable) -> OpsResult<()> {
        let batch = self.batch_size;
        let job_id = self.job_id;
        let p = self
            .plans()?
            .iter()
            .find(|p| p.step == jt.step)
            .cloned()
            .expect("a plan per job table");
        let started = std::time::Instant::now();
        let conflict = self.conflict_clause(&p);
        let isolate = p.can_fail || self.options.continue_on_error;
        let archive_before = matches!(
            self.options.on_conflict,
            OnConflict::Overwrite | OnConflict::Merge
        ) && p.role != Role::Shared;
        let after = if jt.last_key.is_some() {
            format!(" AND {}", p.key_after(4).unwrap_or_default())
        } else {
            String::new()
        };

        // An inline run takes each table in one statement (see `from_job`): no keyset order,
        // no batch bound and no checkpoint key to compute, just the INSERT ... SELECT that
        // hand-written SQL would run.
        let whole = batch >= WHOLE_TABLE && jt.last_key.is_none();
        // The common case, in one statement: the batch is taken once (materialized) and
        // inserted from there, so the tenant filter is evaluated once per batch.
        let fused = !p.uses_id_map && !isolate && !archive_before && p.role != Role::Shared;
        if fused && whole {
            let sql = format!(
                "INSERT INTO {tgt} ({cols}) SELECT {sel} FROM {src} s{joins} WHERE ({filter}) {conflict}",
                tgt = p.target.sql,
                cols = p.target_columns(),
                sel = p.select_list(),
                src = p.source_sql,
                joins = p.joins,
                filter = p.filter,
            );
            let inserted = self.run_insert(&sql, &self.params.args(), &p, job_id);
            self.finish_batch(jt, &p, inserted, None, true, started);
            return Ok(());
        }
        if let (true, Some(key)) = (fused, &p.key) {
            let order = p.key_list("s").expect("keyed");
            let desc: Vec<String> = key.iter().map(|k| format!("s.{} DESC", k.quoted)).collect();
            let sql = format!(
                "WITH b AS MATERIALIZED (SELECT s.* FROM {src} s WHERE ({filter}){after} ORDER BY {order} LIMIT {batch}),
                      ins AS (INSERT INTO {tgt} ({cols}) SELECT {sel} FROM b s{joins} {conflict} RETURNING 1)
                 SELECT (SELECT pg_catalog.count(*) FROM b), (SELECT {kt} FROM b s ORDER BY {desc} LIMIT 1),
                        (SELECT pg_catalog.count(*) FROM ins)",
                src = p.source_sql,
                filter = p.filter,
                tgt = p.target.sql,
                cols = p.target_columns(),
                sel = p.select_list(),
                joins = p.joins,
                kt = p.key_text("s"),
                desc = desc.join(", ")
            );
            let args = self.params.with_keys(&[jt.last_key.as_ref()]);
            let (taken, upper, inserted) = Spi::connect_mut(|c| {
                let row = c.update(&sql, Some(1), &args)?.first();
                Ok::<_, pgrx::spi::Error>((
                    row.get::<i64>(1)?.unwrap_or(0),
                    row.get::<Vec<Option<String>>>(2)?,
                    row.get::<i64>(3)?.unwrap_or(0),
                ))
            })
            .or_raise();
            self.finish_batch(jt, &p, inserted, upper.as_deref(), taken < batch, started);
            return Ok(());
        }

        let (range, upper, done): (String, Option<Vec<Option<String>>>, bool) = match &p.key {
            None => ("true".into(), None, true),
            Some(_) if whole => {
                if let (true, Some(key)) = (p.uses_id_map, &p.single_key) {
                    // The whole table's new ids at once (as the caller, in the job's window:
                    // id_map is the extension's).
                    // Rows mapped before (by an earlier migration in this namespace) keep their
                    // ids. When there are none and nobody else can map these rows (owned rows
                    // of this tenant only, whose migrations exclude each other), plain inserts
                    // do: a third cheaper than ON CONFLICT's speculative ones, and a surprise
                    // would still fail on the primary key rather than pass unnoticed.
                    let exclusive = p.role == Role::Owned
                        && self.options.cross_tenant != options::CrossTenant::Copy
                        && !self.mapped_before(p.source);
                    let sql = record_new_ids(
                        &p,
                        key,
                        job_id,
                        &format!("{} s WHERE ({})", p.source_sql, p.filter),
                        "s",
                        !exclusive,
                    );
                    with_job_window(job_id, || Spi::run_with_args(&sql, &self.params.args()))
                        .or_raise();
                    // Fresh statistics for the join back (see below).
                    analyze_id_map();
                }
                ("true".into(), None, true)
            }
            Some(_) => {
                let order = p.key_list("s").expect("keyed");
                let desc: Vec<String> = p
                    .key
                    .as_ref()
                    .expect("keyed")
                    .iter()
                    .map(|k| format!("b.{} DESC", k.quoted))
                    .collect();
                let keycols: Vec<String> = p
                    .key
                    .as_ref()
                    .expect("keyed")
                    .iter()
                    .map(|k| format!("s.{}", k.quoted))
                    .collect();
                // The batch's keys, taken once; a uuid migration records their new ids in the
                // same pass (in the job's window: id_map is the extension's).
                let record = match (&p.uses_id_map, &p.single_key) {
                    (true, Some(key)) => {
                        format!(
                            ", m AS ({})",
                            record_new_ids(&p, key, job_id, "b", "b", true)
                        )
                    }
                    _ => String::new(),
                };
                let sql = format!(
                    "WITH b AS MATERIALIZED (SELECT {kt} AS __tenant_ops_k, {keycols} FROM {src} s
                                              WHERE ({filter}){after} ORDER BY {order} LIMIT {batch}){record}
                     SELECT (SELECT pg_catalog.count(*) FROM b), (SELECT __tenant_ops_k FROM b ORDER BY {desc} LIMIT 1)",
                    kt = p.key_text("s"),
                    keycols = keycols.join(", "),
                    src = p.source_sql,
                    filter = p.filter,
                    desc = desc.join(", ")
                );
                let args = self.params.with_keys(&[jt.last_key.as_ref()]);
                let run = || Spi::get_two_with_args::<i64, Vec<Option<String>>>(&sql, &args);
                let (taken, upper) = if p.uses_id_map {
                    with_job_window(job_id, run)
                } else {
                    run()
                }
                .or_raise();
                let taken = taken.unwrap_or(0);
                if taken == 0 {
                    self.finish_batch(jt, &p, 0, None, true, started);
                    return Ok(());
                }
                if p.uses_id_map && jt.last_key.is_none() {
                    // Fresh statistics once a table starts mapping: without them the planner
                    // takes a table's mappings for one row and sizes its hashes wrongly.
                    analyze_id_map();
                }
                let mut range = p.key_upto(5).expect("keyed").to_string();
                if jt.last_key.is_some() {
                    range = format!("{} AND {range}", p.key_after(4).expect("keyed"));
                }
                (range, upper, taken < batch)
            }
        };
        let bounds = [jt.last_key.as_ref(), upper.as_ref()];
        let args = self.params.with_keys(&bounds);
        let where_ = format!("({}) AND {range}", p.filter);

        if archive_before {
            let sql = format!(
                "INSERT INTO tenant_ops.job_archive (job_id, step, kind, row_data)
                 SELECT {job_id}, {step}, 'target_before', pg_catalog.to_jsonb(t) FROM {tgt} t WHERE {rows}",
                step = p.step,
                tgt = p.target.sql,
                rows = p.target_rows(&p.source_sql, &where_)
            );
            with_job_window(job_id, || Spi::run_with_args(&sql, &args)).or_raise();
        }
        let returning = if let (Role::Shared, Some(target_key)) = (p.role, &p.target_key) {
            // Shared rows this job adds are recorded so a rollback removes only those.
            let keys: Vec<String> = target_key.iter().map(|(c, _)| c.clone()).collect();
            format!(
                " RETURNING pg_catalog.jsonb_build_array({})",
                keys.join(", ")
            )
        } else {
            String::new()
        };
        let insert = format!(
            "INSERT INTO {tgt} ({cols}) SELECT {sel} FROM {src} s{joins} WHERE {where_} {conflict}{returning}",
            joins = p.joins,
            tgt = p.target.sql,
            cols = p.target_columns(),
            sel = p.select_list(),
            src = p.source_sql
        );
        let inserted = if isolate {
            match try_subtransaction(|| self.run_insert(&insert, &args, &p, job_id)) {
                Ok(n) => n,
                Err(_) => self.copy_row_by_row(&p, &where_, &bounds, &conflict, &returning)?,
            }
        } else {
            self.run_insert(&insert, &args, &p, job_id)
        };
        self.finish_batch(jt, &p, inserted, upper.as_deref(), done, started);
        Ok(())
    }

    /// Records a batch: the checkpoint (in the batch's transaction), a log line, and the
    /// pause that `max_rows_per_second` asks for.
    fn finish_batch(
        &self,
        jt: &JobTable,
        p: &TablePlan,
        inserted: i64,
        upper: Option<&[Option<String>]>,
        done: bool,
        started: std::time::Instant,
    ) {
        jobs::checkpoint(
            self.job_id,
            jt.step,
            if done { "copied" } else { "copying" },
            inserted,
            upper,
        );
        if done && jt.rows_total.is_none() {
            // Not counted up front (see `copy_counts_rows`): the copy wrote every row.
            jobs::set_rows_total(self.job_id, jt.step, jt.rows_done + inserted);
        }
        jobs::log(
            self.job_id,
            "step",
            Some("copy"),
            Some(p.source),
            Some(inserted),
            None,
            None,
        );
        if let Some(rate) = self.options.max_rows_per_second {
            let wanted = inserted as f64 / rate;
            let spent = started.elapsed().as_secs_f64();
            if wanted > spent {
                Spi::run_with_args("SELECT pg_catalog.pg_sleep($1)", &[(wanted - spent).into()])
                    .or_raise();
            }
        }
    }

    /// Runs the copy statement; returns the rows written. Shared rows added are recorded.
    fn run_insert(
        &self,
        sql: &str,
        args: &[pgrx::datum::DatumWithOid],
        p: &TablePlan,
        job_id: i64,
    ) -> i64 {
        let records_keys = p.role == Role::Shared && p.target_key.is_some();
        let (written, keys): (i64, Vec<Value>) = Spi::connect_mut(|c| {
            let t = c.update(sql, None, args)?;
            let written = t.len() as i64;
            // Only shared rows return their keys (to be recorded); other inserts just count.
            let keys = if records_keys {
                t.map(|r| {
                    r.get::<JsonB>(1)
                        .map(|v| v.map(|j| j.0).unwrap_or(Value::Null))
                })
                .collect::<Result<Vec<_>, _>>()?
            } else {
                vec![]
            };
            Ok::<_, pgrx::spi::Error>((written, keys))
        })
        .or_raise();
        if !keys.is_empty() {
            owner::execute(
                "INSERT INTO tenant_ops.job_archive (job_id, step, kind, row_data)
                 SELECT $1, $2, 'shared_added', k FROM pg_catalog.jsonb_array_elements($3) k",
                &[
                    job_id.into(),
                    p.step.into(),
                    JsonB(Value::Array(keys)).into(),
                ],
            )
            .or_raise();
        }
        written
    }

    /// A batch failed: copy it row by row, each in its own subtransaction, to find the rows at
    /// fault. With continue_on_error they go to job_errors; otherwise the first one fails the
    /// job with the row named.
    fn copy_row_by_row(
        &self,
        p: &TablePlan,
        where_: &str,
        bounds: &[Option<&Vec<Option<String>>>; 2],
        conflict: &str,
        returning: &str,
    ) -> OpsResult<i64> {
        let args = self.params.with_keys(bounds);
        if p.key.is_none() {
            // No key to single rows out: run the whole table once more to report the error.
            let insert = format!(
                "INSERT INTO {} ({}) SELECT {} FROM {} s{} WHERE {where_} {conflict}",
                p.target.sql,
                p.target_columns(),
                p.select_list(),
                p.source_sql,
                p.joins
            );
            return match try_subtransaction(|| {
                Spi::connect_mut(|c| c.update(&insert, None, &args).map(|t| t.len() as i64))
            }) {
                Ok(r) => Ok(r.or_raise()),
                Err(e) => Err(OpsError::RowFailed {
                    sqlstate: e.sqlstate,
                    message: format!(
                        "copying {} into {} failed: {}",
                        p.source_display, p.target.display, e.message
                    ),
                    detail:
                        "The table has no primary key, so the failing row cannot be singled out."
                            .into(),
                    hint: None,
                }),
            };
        }
        let keys: Vec<Vec<Option<String>>> = Spi::connect(|c| {
            c.select(
                &format!(
                    "SELECT {} FROM {} s WHERE {where_} ORDER BY {}",
                    p.key_text("s"),
                    p.source_sql,
                    p.key_list("s").expect("keyed")
                ),
                None,
                &args,
            )?
            .map(|r| {
                r.get::<Vec<Option<String>>>(1)
                    .map(|k| k.unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()
        })
        .or_raise();
        let mut written = 0;
        let single = format!("{where_} AND {} = ($6::text[])", p.key_text("s"));
        let insert = format!(
            "INSERT INTO {} ({}) SELECT {} FROM {} s{} WHERE {single} {conflict}{returning}",
            p.target.sql,
            p.target_columns(),
            p.select_list(),
            p.source_sql,
            p.joins
        );
        for key in keys {
            let a = self.params.with_keys(&[bounds[0], bounds[1], Some(&key)]);
            match try_subtransaction(|| self.run_insert(&insert, &a, p, self.job_id)) {
                Ok(n) => written += n,
                Err(e) => {
                    let key_text = format!(
                        "{{{}}}",
                        key.iter()
                            .map(|k| k.clone().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    if !self.options.continue_on_error {
                        return Err(OpsError::RowFailed {
                            sqlstate: e.sqlstate,
                            message: format!("row {key_text} of {} could not be migrated: {}", p.source_display, e.message),
                            detail: format!("Target table {}; nothing of tenant \"{}\" was written.", p.target.display, self.tenant),
                            hint: Some("Fix the row, change the column's transform, or set continue_on_error to send such rows to tenant_ops.job_errors.".into()),
                        });
                    }
                    let row = Spi::get_one_with_args::<JsonB>(
                        &format!(
                            "SELECT pg_catalog.to_jsonb(s) FROM {} s WHERE {single}",
                            p.source_sql
                        ),
                        &a,
                    )
                    .or_raise()
                    .map(|j| j.0)
                    .unwrap_or(Value::Null);
                    jobs::record_row_error(
                        self.job_id,
                        p.source,
                        &key_text,
                        row,
                        &e.message,
                        &e.sqlstate_text(),
                    );
                }
            }
        }
        Ok(written)
    }

    fn conflict_clause(&self, p: &TablePlan) -> String {
        if p.role == Role::Shared {
            return match &p.target_key {
                Some(k) => format!(
                    "ON CONFLICT ({}) DO NOTHING",
                    k.iter()
                        .map(|(c, _)| c.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "ON CONFLICT DO NOTHING".into(),
            };
        }
        let key = p.target_key.as_ref().map(|k| {
            k.iter()
                .map(|(c, _)| c.clone())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let updatable: Vec<&String> = p
            .columns
            .iter()
            .map(|(c, _)| c)
            .filter(|c| {
                !p.target_key
                    .as_ref()
                    .is_some_and(|k| k.iter().any(|(kc, _)| kc == *c))
            })
            .collect();
        match (self.options.on_conflict, key) {
            (OnConflict::Error, _) => String::new(),
            (OnConflict::Skip, _) => "ON CONFLICT DO NOTHING".into(),
            (OnConflict::Overwrite, Some(k)) if !updatable.is_empty() => format!(
                "ON CONFLICT ({k}) DO UPDATE SET {}",
                updatable
                    .iter()
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (OnConflict::Merge, Some(k)) if !updatable.is_empty() => format!(
                "ON CONFLICT ({k}) DO UPDATE SET {}",
                updatable
                    .iter()
                    .map(|c| format!("{c} = COALESCE(EXCLUDED.{c}, {}.{c})", p.target.sql))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => "ON CONFLICT DO NOTHING".into(),
        }
    }

    // ----- fixup, verify, archive, delete -----------------------------------------------------

    fn fixup_step(&mut self, jt: &JobTable) -> OpsResult<()> {
        let p = self
            .plans()?
            .iter()
            .find(|p| p.step == jt.step)
            .cloned()
            .expect("plan");
        if !p.deferred.is_empty() {
            let key = p.target_key.as_ref().expect("checked in prepare");
            let kcols = numbered(key, |i, (_, e)| format!("{e} AS __k{i}"));
            let dcols = numbered(&p.deferred, |i, (_, e)| format!("{e} AS __d{i}"));
            let sets = numbered(&p.deferred, |i, (c, _)| format!("{c} = x.__d{i}"));
            let join = numbered(key, |i, (c, _)| format!("t.{c} = x.__k{i}"));
            let sql = format!(
                "UPDATE {tgt} t SET {sets} FROM (SELECT {k}, {d} FROM {src} s{joins} WHERE {filter}) x WHERE {join}",
                joins = p.joins,
                tgt = p.target.sql,
                sets = sets.join(", "),
                k = kcols.join(", "),
                d = dcols.join(", "),
                src = p.source_sql,
                filter = p.filter,
                join = join.join(" AND ")
            );
            Spi::run_with_args(&sql, &self.params.args()).or_raise();
        }
        jobs::checkpoint(self.job_id, jt.step, "fixed", 0, None);
        Ok(())
    }

    fn verify_step(&mut self, jt: &JobTable) -> OpsResult<()> {
        let p = self
            .plans()?
            .iter()
            .find(|p| p.step == jt.step)
            .cloned()
            .expect("plan");
        let source_where = verified_source(&p, self.job_id, &p.filter);
        let args = self.params.args();
        let (sc, ss, tc, ts) = match &p.target_key {
            Some(_) => {
                let c = compare(&p, &p.source_sql, &source_where, &args);
                (
                    Some(c.source_rows),
                    Some(c.source_sum),
                    Some(c.target_rows),
                    Some(c.target_sum),
                )
            }
            // Without a target key, the target rows are those equal to a source row.
            None => {
                let (src_hash, tgt_hash) = verify_hashes(&p);
                let (sc, ss) = Spi::get_two_with_args::<i64, String>(
                    &format!(
                        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum({}), 0)::text FROM {} s{} WHERE {source_where}",
                        src_hash,
                        p.source_sql,
                        p.joins
                    ),
                    &args,
                )
                .or_raise();
                let (tc, ts) = Spi::get_two_with_args::<i64, String>(
                    &format!(
                        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum({}), 0)::text FROM {} t WHERE {}",
                        tgt_hash,
                        p.target.sql,
                        p.target_rows(&p.source_sql, &source_where)
                    ),
                    &args,
                )
                .or_raise();
                (sc, ss, tc, ts)
            }
        };
        let (sc, ss, tc, ts) = (
            sc.unwrap_or(0),
            ss.unwrap_or_default(),
            tc.unwrap_or(0),
            ts.unwrap_or_default(),
        );
        // skip and merge leave target values that legitimately differ from the source: there
        // every source row must be present, and only overwrite and error compare whole rows.
        let compare_rows = matches!(
            self.options.on_conflict,
            OnConflict::Error | OnConflict::Overwrite
        );
        let ok = sc == tc && (!compare_rows || ss == ts);
        jobs::set_table_details(
            self.job_id,
            jt.step,
            &json!({"source_rows": sc, "target_rows": tc, "source_checksum": ss, "target_checksum": ts, "verified": ok}),
        );
        if !ok {
            return Err(OpsError::VerificationFailed {
                message: format!(
                    "verification of {} failed: the target {} differs from the source",
                    p.source_display, p.target.display
                ),
                detail: Some(format!(
                    "source: {sc} rows, checksum {ss}; target: {tc} rows, checksum {ts}"
                )),
            });
        }
        jobs::checkpoint(self.job_id, jt.step, "verified", 0, None);
        jobs::log(
            self.job_id,
            "table.verified",
            Some("verify"),
            Some(p.source),
            Some(tc),
            None,
            None,
        );
        Ok(())
    }

    fn archive_step(&mut self, jt: &JobTable) -> OpsResult<()> {
        let p = self
            .plans()?
            .iter()
            .find(|p| p.step == jt.step)
            .cloned()
            .expect("plan");
        if p.role != Role::Shared {
            let sql = format!(
                "INSERT INTO tenant_ops.job_archive (job_id, step, kind, row_data)
                 SELECT {}, {}, 'source', pg_catalog.to_jsonb(s) FROM {} s WHERE {}",
                self.job_id, p.step, p.source_sql, p.filter
            );
            with_job_window(self.job_id, || {
                Spi::run_with_args(&sql, &self.params.args())
            })
            .or_raise();
        }
        jobs::checkpoint(self.job_id, jt.step, "archived", 0, None);
        Ok(())
    }

    fn delete_step(&mut self, jt: &JobTable, first: bool) -> OpsResult<()> {
        let loaded = self.load_scope()?;
        if first {
            // References that close a cycle between tables would block deleting children
            // first: clear them in the tenant's source rows (the archive keeps the values).
            let filters = loaded.filters();
            for i in &loaded.resolved.deferred_edges {
                let e = &loaded.catalog.edges[*i];
                let t = loaded.catalog.table(e.child);
                let sets: Vec<String> = e
                    .child_cols
                    .iter()
                    .map(|c| {
                        format!(
                            "{} = NULL",
                            t.column(c).map(|x| x.quoted.as_str()).unwrap_or(c)
                        )
                    })
                    .collect();
                let sql = format!(
                    "UPDATE {} SET {} WHERE {}",
                    t.sql,
                    sets.join(", "),
                    filters.filter(e.child)
                );
                Spi::run_with_args(&sql, &self.params.args()).or_raise();
            }
        }
        let p = self
            .plans()?
            .iter()
            .find(|p| p.step == jt.step)
            .cloned()
            .expect("plan");
        let mut deleted = 0;
        if p.role != Role::Shared {
            deleted = Spi::connect_mut(|c| {
                c.update(
                    &format!("DELETE FROM {} s WHERE {}", p.source_sql, p.filter),
                    None,
                    &self.params.args(),
                )
                .map(|t| t.len() as i64)
            })
            .or_raise();
        }
        jobs::checkpoint(self.job_id, jt.step, "deleted", 0, None);
        jobs::log(
            self.job_id,
            "table.deleted",
            Some("delete"),
            Some(p.source),
            Some(deleted),
            None,
            None,
        );
        Ok(())
    }

    fn report(&self) -> Value {
        let tables: Vec<Value> = jobs::tables(self.job_id)
            .iter()
            .map(|t| {
                json!({
                    "step": t.step, "source": relation_name(t.source), "target": t.target, "role": t.role,
                    "stage": t.stage, "rows_total": t.rows_total, "rows_done": t.rows_done,
                    "verified": t.details.get("verified"), "rejected": rejected_rows(self.job_id, t.source),
                })
            })
            .collect();
        let rows: i64 = jobs::tables(self.job_id).iter().map(|t| t.rows_done).sum();
        json!({
            "scope": self.scope, "tenant": self.tenant, "target_schema": self.target_schema,
            "mode": if self.options.mode == Mode::Move { "move" } else { "copy" },
            "id_strategy": match self.options.id_strategy { IdStrategy::Keep => "keep", IdStrategy::Uuid => "uuid", IdStrategy::Uuid5 => "uuid5" },
            "new_tenant": self.options.new_tenant, "rows": rows, "tables": tables, "dry_run": self.options.dry_run,
        })
    }
}

/// `INSERT INTO tenant_ops.id_map` of a fresh uuid for the single-column key `key` of every
/// row of `from` (aliased `alias`); `keep_existing`: keys mapped before keep their ids.
fn record_new_ids(
    p: &TablePlan,
    key: &str,
    job_id: i64,
    from: &str,
    alias: &str,
    keep_existing: bool,
) -> String {
    format!(
        "INSERT INTO tenant_ops.id_map (namespace, source, legacy_key, new_id, job_id)
         SELECT $2, {oid}::pg_catalog.regclass, ({alias}.{key})::text, pg_catalog.gen_random_uuid(), {job_id}
           FROM {from}{conflict}",
        oid = p.source,
        conflict = if keep_existing { " ON CONFLICT DO NOTHING" } else { "" },
    )
}

/// Fresh planner statistics for `tenant_ops.id_map` (as the owner: only a table's owner may
/// analyze it, and its columns are all built-in types).
fn analyze_id_map() {
    owner::execute("ANALYZE tenant_ops.id_map", &[]).or_raise();
}

/// `f(i, item)` for each item with its position: the numbered aliases of generated SQL.
fn numbered<T>(items: &[T], f: impl Fn(usize, &T) -> String) -> Vec<String> {
    items.iter().enumerate().map(|(i, x)| f(i, x)).collect()
}

/// Runs a data-modifying statement; returns the rows it wrote.
fn rows_written(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> i64 {
    Spi::connect_mut(|c| c.update(sql, None, args).map(|t| t.len() as i64)).or_raise()
}

/// Checks the caller's privileges on a table explicitly, so that a job that lacks one is
/// refused with the table named before it changes anything (the statements themselves run
/// as the caller and would fail anyway, but later and less clearly).
pub(crate) fn require_privileges(
    table_sql: &str,
    display: &str,
    privileges: &str,
    why: &str,
) -> OpsResult<()> {
    let ok = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.has_table_privilege(current_user, $1::pg_catalog.regclass, $2)",
        &[table_sql.into(), privileges.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(OpsError::InsufficientPrivilege(
            format!("permission denied for table {display}: {why} needs {privileges}"),
            Some("Grant those privileges to the role that runs the job (jobs run with the caller's privileges).".into()),
        ))
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
            let q = t.column(k).map(|x| x.quoted.as_str()).unwrap_or(k);
            match alias {
                Some(a) => format!("({a}.{q})::text"),
                None => format!("({q})::text"),
            }
        })
        .collect();
    Some(format!("ARRAY[{}]", cols.join(", ")))
}

/// `alias."col"` for each column of an edge side.
fn qualified_cols(t: &crate::scope::graph::Table, cols: &[String], alias: &str) -> Vec<String> {
    cols.iter()
        .map(|c| {
            format!(
                "{alias}.{}",
                t.column(c).map(|x| x.quoted.as_str()).unwrap_or(c)
            )
        })
        .collect()
}

/// Source rows (from `source_from s`, with `source_where`) against the target rows their
/// mapped keys name, in one pass: counts, checksums, and the keys missing or different.
pub struct Comparison {
    pub source_rows: i64,
    pub source_sum: String,
    pub target_rows: i64,
    pub target_sum: String,
    pub missing: i64,
    pub different: i64,
    pub sample: Value,
}

fn compare(
    p: &TablePlan,
    source_from: &str,
    source_where: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Comparison {
    let key = p.target_key.as_ref().expect("compare needs a target key");
    let (src_hash, tgt_hash) = verify_hashes(p);
    let keys = numbered(key, |i, (_, e)| format!("{e} AS __tenant_ops_k{i}"));
    let on = numbered(key, |i, (c, _)| format!("t.{c} = x.__tenant_ops_k{i}"));
    // The source key, raw: it is formatted as text only for the sample of bad rows.
    let source_key: Vec<(String, String)> = match &p.key {
        Some(k) => k
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("s.{} AS __tenant_ops_s{i}", c.quoted),
                    format!("(y.__tenant_ops_s{i})::text"),
                )
            })
            .collect(),
        None => vec![],
    };
    let (source_key_cols, sample_key): (Vec<String>, Vec<String>) = source_key.into_iter().unzip();
    let carried: String = (0..source_key_cols.len())
        .map(|i| format!(", x.__tenant_ops_s{i}"))
        .collect();
    let source_key_cols: String = source_key_cols.iter().map(|c| format!(", {c}")).collect();
    let sample_key = format!("ARRAY[{}]::text[]", sample_key.join(", "));
    // Each row's two hashes are computed once, below the aggregate (OFFSET 0 keeps the
    // planner from copying the expressions into every aggregate that reads them); the target
    // side is hashed only where a source row found it. The source side is a derived table so
    // the tenant filter's unqualified columns can only mean the source's.
    let bad = "y.__tenant_ops_th IS NULL OR y.__tenant_ops_sh <> y.__tenant_ops_th";
    let sql = format!(
        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum(y.__tenant_ops_sh), 0)::text,
                pg_catalog.count(y.__tenant_ops_th), coalesce(pg_catalog.sum(y.__tenant_ops_th), 0)::text,
                pg_catalog.count(*) FILTER (WHERE y.__tenant_ops_th IS NULL),
                pg_catalog.count(*) FILTER (WHERE y.__tenant_ops_sh <> y.__tenant_ops_th),
                pg_catalog.to_jsonb((pg_catalog.array_agg({sample_key}::text) FILTER (WHERE {bad}))[1:10])
           FROM (SELECT x.__tenant_ops_sh, CASE WHEN t.{first} IS NOT NULL THEN {tgt_hash} END AS __tenant_ops_th{carried}
                   FROM (SELECT {src_hash} AS __tenant_ops_sh, {keys}{source_key_cols}
                           FROM {source_from} s{joins} WHERE {source_where}) x
                   LEFT JOIN {tgt} t ON {on}
                 OFFSET 0) y",
        first = key[0].0,
        keys = keys.join(", "),
        joins = p.joins,
        tgt = p.target.sql,
        on = on.join(" AND ")
    );
    Spi::connect(|c| {
        // No row limit: a limited SPI statement never runs in parallel, and verify_migration
        // runs this read-only one outside a job step's settings, where it may.
        let r = c.select(&sql, None, args)?.first();
        Ok::<_, pgrx::spi::Error>(Comparison {
            source_rows: r.get::<i64>(1)?.unwrap_or(0),
            source_sum: r.get::<String>(2)?.unwrap_or_default(),
            target_rows: r.get::<i64>(3)?.unwrap_or(0),
            target_sum: r.get::<String>(4)?.unwrap_or_default(),
            missing: r.get::<i64>(5)?.unwrap_or(0),
            different: r.get::<i64>(6)?.unwrap_or(0),
            sample: r.get::<JsonB>(7)?.map(|j| j.0).unwrap_or(Value::Null),
        })
    })
    .or_raise()
}

/// The source rows a verification compares: those of `filter`, less the rows the job rejected
/// into job_errors (with continue_on_error), which are not in the target by design.
fn verified_source(p: &TablePlan, job_id: i64, filter: &str) -> String {
    if p.role == Role::Shared || rejected_rows(job_id, p.source) == 0 {
        return filter.to_string();
    }
    format!(
        "({filter}) AND {}::text NOT IN (SELECT source_key FROM tenant_ops.job_errors
                                         WHERE job_id = {job_id} AND table_name = {}::pg_catalog.regclass)",
        p.key_text("s"),
        p.source
    )
}

/// One table of [`verify_report`].
pub struct VerifyRow {
    pub source: u32,
    pub target: String,
    pub comparison: Comparison,
}

/// Completeness of a finished migration, per table, through the key mapping: the tenant's
/// source rows (from the archive after a move) against the target rows their keys name.
/// After a rollback it reports the target empty of the tenant.
pub fn verify_report(job_id: i64) -> OpsResult<Vec<VerifyRow>> {
    let job = jobs::load(job_id)?;
    if job.kind != "migrate" {
        return Err(OpsError::WrongJob {
            message: format!("job {job_id} is a {} job, not a migration", job.kind),
            hint: Some("verify_migration checks migrate_tenant jobs.".into()),
        });
    }
    if !matches!(
        job.status.as_str(),
        "succeeded" | "failed" | "cancelled" | "rolled_back"
    ) {
        return Err(OpsError::JobState {
            job: job_id,
            status: job.status,
            action: "be verified",
            hint: Some("Verify a migration once it has ended.".into()),
        });
    }
    let mut m = Migration::from_job(&job)?;
    let tables = jobs::tables(job_id);
    let plans = m.plans()?.clone();
    let args = m.params.args();
    let mut out = vec![];
    for p in &plans {
        require_privileges(
            &p.source_sql,
            &p.source_display,
            "SELECT",
            "verify_migration",
        )?;
        require_privileges(
            &p.target.sql,
            &p.target.display,
            "SELECT",
            "verify_migration",
        )?;
    }
    for p in plans.iter().filter(|p| p.target_key.is_some()) {
        let moved = job.status != "rolled_back"
            && tables
                .iter()
                .any(|t| t.step == p.step && (t.stage == "deleted" || t.stage == "archived"));
        let (from, filter) = if moved && p.role != Role::Shared {
            (
                format!(
                    "(SELECT (pg_catalog.jsonb_populate_record(NULL::{src}, a.row_data)).* FROM tenant_ops.job_archive a
                       WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'source')",
                    src = p.source_sql,
                    step = p.step
                ),
                "true".to_string(),
            )
        } else {
            (p.source_sql.clone(), p.filter.clone())
        };
        let source_where = verified_source(p, job_id, &filter);
        // As the caller (hashing runs the types' own functions), in the job's window for
        // the archive of a move.
        let comparison = with_job_window(job_id, || compare(p, &from, &source_where, &args));
        out.push(VerifyRow {
            source: p.source,
            target: p.target.display.clone(),
            comparison,
        });
    }
    Ok(out)
}

/// Row hashes for checksums: (source row as the target will hold it, target row `t`), each
/// a bigint. Columns are hashed by their type's own extended hash function (no text output on
/// the way), or as text where the type has none (tsvector, money, point, ...).
fn verify_hashes(p: &TablePlan) -> (String, String) {
    let deferred = p.deferred.iter().map(|(c, e)| {
        let ty = p
            .target
            .columns
            .iter()
            .find(|tc| &tc.quoted == c)
            .map(|tc| tc.type_full.clone())
            .unwrap_or_else(|| "text".into());
        (c, e, ty)
    });
    let columns = p
        .columns
        .iter()
        .zip(&p.column_types)
        .map(|((c, e), t)| (c, e, t.clone()))
        .chain(deferred);
    let mut hashable: BTreeMap<String, bool> = BTreeMap::new();
    let mut src = vec![];
    let mut tgt = vec![];
    for (c, e, ty) in columns {
        let native = *hashable
            .entry(ty.clone())
            .or_insert_with(|| has_extended_hash(&ty));
        let cast = if native { "" } else { "::text" };
        src.push(format!("(({e})::{ty}){cast}"));
        tgt.push(format!("(t.{c}){cast}"));
    }
    let hash = |items: Vec<String>| {
        format!(
            "pg_catalog.hash_record_extended(ROW({}), 0)",
            items.join(", ")
        )
    };
    (hash(src), hash(tgt))
}

/// Whether values of `type_sql` can be hashed by `hash_record_extended` (asked of the server:
/// arrays, domains and composites follow their element and base types).
fn has_extended_hash(type_sql: &str) -> bool {
    try_subtransaction(|| {
        Spi::get_one::<i64>(&format!(
            "SELECT pg_catalog.hash_record_extended(ROW(NULL::{type_sql}), 0)"
        ))
    })
    .is_ok_and(|r| r.is_ok())
}

fn rejected_rows(job: i64, table: u32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.count(*) FROM tenant_ops.job_errors WHERE job_id = $1 AND table_name = $2::pg_catalog.oid::pg_catalog.regclass",
        &[job.into(), (table as i64).into()],
    )
    .or_raise()
    .unwrap_or(0)
}

pub fn relation_name(oid: u32) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT $1::pg_catalog.oid::pg_catalog.regclass::text",
        &[(oid as i64).into()],
    )
    .or_raise()
    .unwrap_or_default()
}

fn on_conflict_name(o: OnConflict) -> &'static str {
    match o {
        OnConflict::Error => "error",
        OnConflict::Skip => "skip",
        OnConflict::Overwrite => "overwrite",
        OnConflict::Merge => "merge",
    }
}

fn unquote(ident: &str) -> String {
    if ident.starts_with('"') && ident.ends_with('"') && ident.len() >= 2 {
        ident[1..ident.len() - 1].replace("\"\"", "\"")
    } else {
        ident.to_string()
    }
}

fn unquote_qualified(name: &str) -> String {
    name.split('.').map(unquote).collect::<Vec<_>>().join(".")
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
    let q = |col: &str| {
        root.column(col)
            .map(|x| x.quoted.clone())
            .unwrap_or(col.to_string())
    };
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

/// The key mapping namespace: id_map's namespace (uuid), or the uuid5 namespace.
fn namespace(options: &MigrateOptions, scope: &str) -> String {
    match options.id_strategy {
        IdStrategy::Uuid5 => uuid5::migration_namespace(
            options.uuid_namespace.as_ref(),
            scope,
            options.new_tenant.as_deref(),
        )
        .to_string(),
        _ => options
            .new_tenant
            .as_ref()
            .map(|t| format!("clone:{t}"))
            .unwrap_or_default(),
    }
}

impl Steps for Migration {
    fn step(&mut self, job: &Job) -> OpsResult<StepOutcome> {
        // An inline dry run is already wrapped whole in a rolled-back subtransaction by its
        // caller; a committing or background one is done here, in its first step, the same way,
        // so that no executor ever commits a dry run's rows.
        if self.options.dry_run && job.executor != "inline" {
            return self.dry_run_whole(job.id);
        }
        with_settings(STEP_SETTINGS, || self.run_stage(job))
    }
}

impl Migration {
    /// Every stage of a dry run in one rolled-back subtransaction: the job keeps only the
    /// outcome (the plan and counts, or the error the real run would meet).
    fn dry_run_whole(&mut self, job_id: i64) -> OpsResult<StepOutcome> {
        let outcome = crate::sys::rolled_back_subtransaction(|| -> OpsResult<Value> {
            loop {
                let job = jobs::load(job_id)?;
                match with_settings(STEP_SETTINGS, || self.run_stage(&job))? {
                    StepOutcome::Continue => continue,
                    StepOutcome::Done(result) => return Ok(result),
                }
            }
        });
        self.plans = None;
        match outcome {
            Ok(Ok(mut result)) => {
                result["dry_run"] = json!(true);
                Ok(StepOutcome::Done(result))
            }
            Ok(Err(e)) => Err(e),
            Err(caught) => Err(OpsError::StepFailed {
                job: job_id,
                sqlstate: caught.sqlstate,
                message: caught.message,
            }),
        }
    }
}

impl Migration {
    /// One step of the job's current stage (see the module documentation).
    fn run_stage(&mut self, job: &Job) -> OpsResult<StepOutcome> {
        match job.stage.as_str() {
            "prepare" => {
                self.prepare()?;
                jobs::set_stage(self.job_id, "copy");
                jobs::log(self.job_id, "stage", Some("copy"), None, None, None, None);
                Ok(StepOutcome::Continue)
            }
            "copy" => {
                let tables = jobs::tables(self.job_id);
                match tables
                    .iter()
                    .find(|t| t.stage == "pending" || t.stage == "copying")
                {
                    Some(jt) => {
                        self.copy_step(jt)?;
                        let after = jobs::tables(self.job_id);
                        let t = after
                            .iter()
                            .find(|t| t.step == jt.step)
                            .expect("same table");
                        if t.rows_done == jt.rows_done {
                            return Ok(StepOutcome::Continue);
                        }
                        jobs::notify_progress(
                            self.job_id,
                            json!({"table": relation_name(t.source), "rows_done": t.rows_done, "rows_total": t.rows_total}),
                        );
                        jobs::notice(&format!(
                            "pg_tenant_ops job {}: {} {}/{} rows",
                            self.job_id,
                            relation_name(t.source),
                            t.rows_done,
                            t.rows_total.unwrap_or(0)
                        ));
                        Ok(StepOutcome::Continue)
                    }
                    None => {
                        jobs::set_stage(self.job_id, "fixup");
                        Ok(StepOutcome::Continue)
                    }
                }
            }
            "fixup" => {
                let next = if self.options.verify {
                    "verify"
                } else {
                    "finish"
                };
                self.next_table("copied", next, |m, jt| m.fixup_step(jt))
            }
            "verify" => {
                let next = if self.options.mode == Mode::Move {
                    "archive"
                } else {
                    "finish"
                };
                self.next_table("fixed", next, |m, jt| m.verify_step(jt))
            }
            "archive" => self.next_table("verified", "delete", |m, jt| m.archive_step(jt)),
            "delete" => {
                let tables = jobs::tables(self.job_id);
                let first = !tables.iter().any(|t| t.stage == "deleted");
                match tables.iter().rev().find(|t| t.stage == "archived") {
                    Some(jt) => self.delete_step(jt, first)?,
                    None => jobs::set_stage(self.job_id, "finish"),
                }
                Ok(StepOutcome::Continue)
            }
            "finish" => {
                let report = self.report();
                jobs::set_stage(self.job_id, "done");
                Ok(StepOutcome::Done(report))
            }
            other => Err(OpsError::JobState {
                job: self.job_id,
                status: format!("at stage {other}"),
                action: "continue",
                hint: None,
            }),
        }
    }

    /// One step of a per-table stage: the first table whose checkpoint is at `from` gets
    /// `run`; when none is left the job moves on to `next`.
    fn next_table(
        &mut self,
        from: &str,
        next: &str,
        run: impl FnOnce(&mut Self, &JobTable) -> OpsResult<()>,
    ) -> OpsResult<StepOutcome> {
        match jobs::tables(self.job_id).iter().find(|t| t.stage == from) {
            Some(jt) => run(self, jt)?,
            None => jobs::set_stage(self.job_id, next),
        }
        Ok(StepOutcome::Continue)
    }
}

/// Builds the step driver of a migration job (the executors' factory).
pub fn steps_for(job: &Job) -> OpsResult<Box<dyn Steps>> {
    Ok(Box::new(Migration::from_job(job)?))
}

// ----- starting, rolling back, looking up -------------------------------------------------------

/// Creates a migration job after checking the arguments; the caller runs it.
pub fn submit(
    scope_name: &str,
    tenant: &str,
    target_schema: &str,
    raw_options: &Value,
    background: bool,
) -> OpsResult<(i64, MigrateOptions)> {
    let options = MigrateOptions::parse(raw_options)?;
    let loaded = scope::load(scope_name)?;
    loaded.check_tenant(tenant)?;
    target::require_schema(target_schema)?;
    // One migration of a tenant at a time: a transaction-level lock against concurrent
    // submissions, and the open jobs already committed.
    let got = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('tenant_ops:migrate:' || $1 || ':' || $2, 0))",
        &[scope_name.into(), tenant.into()],
    )
    .or_raise()
    .unwrap_or(false);
    let open = Spi::get_one_with_args::<i64>(
        "SELECT min(id) FROM tenant_ops.jobs WHERE kind = 'migrate' AND scope = $1 AND tenant = $2
            AND status IN ('queued', 'running', 'paused')",
        &[scope_name.into(), tenant.into()],
    )
    .or_raise();
    if let Some(job) = open {
        return Err(OpsError::JobBusy {
            scope: scope_name.into(),
            tenant: tenant.into(),
            job,
        });
    }
    if !got {
        let holder = Spi::get_one_with_args::<i32>(
            "SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted
                AND objid = (pg_catalog.hashtextextended('tenant_ops:migrate:' || $1 || ':' || $2, 0) & 4294967295)::oid
              LIMIT 1",
            &[scope_name.into(), tenant.into()],
        )
        .or_raise();
        return Err(OpsError::JobBusy {
            scope: scope_name.into(),
            tenant: tenant.into(),
            job: -(holder.unwrap_or(0) as i64),
        });
    }
    let mut stored = raw_options.clone();
    if let Value::Object(m) = &mut stored {
        m.insert(
            TARGET_SCHEMA_KEY.into(),
            Value::String(target_schema.into()),
        );
    }
    let id = jobs::create(
        "migrate",
        scope_name,
        tenant,
        &stored,
        if background {
            "background"
        } else if options.defer {
            "procedure"
        } else {
            "inline"
        },
    );
    jobs::log(id, "job.queued", Some("prepare"), None, None, None, None);
    Ok((id, options))
}

/// Undoes a finished or failed migration: deletes what it wrote (children first), puts back
/// target rows it overwrote, and for a move restores the source rows from the archive.
pub fn rollback(job_id: i64) -> OpsResult<Value> {
    let job = jobs::load(job_id)?;
    if job.kind != "migrate" {
        return Err(OpsError::WrongJob {
            message: format!("job {job_id} is a {} job, not a migration", job.kind),
            hint: Some("rollback_migration undoes migrate_tenant jobs.".into()),
        });
    }
    if !matches!(job.status.as_str(), "succeeded" | "failed" | "cancelled") {
        return Err(OpsError::JobState {
            job: job_id,
            status: job.status.clone(),
            action: "be rolled back",
            hint: Some("Only a finished, failed or cancelled migration can be rolled back.".into()),
        });
    }
    revert(job_id, "rolled_back")
}

/// Undoes whatever a migration job wrote so far and gives it `final_status` (`rolled_back`
/// for a rollback, `cancelled` for a cancel): the target is left as it was before the job.
pub fn revert(job_id: i64, final_status: &str) -> OpsResult<Value> {
    let job = jobs::load(job_id)?;
    let mut m = Migration::from_job(&job)?;
    let tables = jobs::tables(job_id);
    if tables.is_empty() {
        jobs::finish(job_id, final_status, None, None);
        return Ok(json!({"tables": []}));
    }
    let moved = m.options.mode == Mode::Move && tables.iter().any(|t| t.stage == "deleted");
    let plans = m.plans()?.clone();
    // The undo runs as the caller (every trigger on the tables fires with the caller's rights),
    // reading the job's archive through its window; its rights on every table it touches are
    // checked first, so that a missing one is named before anything changes.
    for p in &plans {
        require_privileges(
            &p.target.sql,
            &p.target.display,
            "SELECT, INSERT, UPDATE, DELETE",
            "rollback_migration",
        )?;
        if moved && p.role != Role::Shared {
            require_privileges(
                &p.source_sql,
                &p.source_display,
                "SELECT, INSERT, UPDATE",
                "rollback_migration",
            )?;
        }
    }
    let report = with_job_window(job_id, || undo(&mut m, &plans, moved, job_id))?;
    // Mappings are shared by every migration of the same rows (a second migration of a
    // tenant reuses them): keep those another live migration of the table relies on.
    // job_extra stays with the job (deleted with it): it says which rows of other tenants
    // and which shared rows the job covered, as verify_migration still reports them.
    owner::execute(
        "DELETE FROM tenant_ops.id_map m WHERE m.job_id = $1
           AND NOT EXISTS (SELECT FROM tenant_ops.jobs j JOIN tenant_ops.job_tables t ON t.job_id = j.id
                            WHERE j.id <> $1 AND j.kind = 'migrate' AND j.status NOT IN ('rolled_back', 'cancelled')
                              AND t.source = m.source)",
        &[job_id.into()],
    )
    .or_raise();
    owner::execute(
        "DELETE FROM tenant_ops.job_archive WHERE job_id = $1",
        &[job_id.into()],
    )
    .or_raise();
    let result = json!({"rolled_back": report, "source_restored": moved});
    jobs::finish(job_id, final_status, None, Some(&result));
    Ok(result)
}

/// The new UUID of a legacy key: recorded by a `uuid` migration, or computed for the latest
/// `uuid5` migration of that table. NULL when neither knows it.
pub fn map_id(source: u32, legacy_key: &str) -> Option<pgrx::Uuid> {
    let recorded = Spi::get_one_with_args::<pgrx::Uuid>(
        "SELECT (SELECT new_id FROM tenant_ops.id_map
                  WHERE namespace = '' AND source = $1::pg_catalog.oid::pg_catalog.regclass AND legacy_key = $2)",
        &[(source as i64).into(), legacy_key.into()],
    )
    .or_raise();
    if recorded.is_some() {
        return recorded;
    }
    let job = Spi::get_one_with_args::<i64>(
        "SELECT max(j.id) FROM tenant_ops.jobs j JOIN tenant_ops.job_tables t ON t.job_id = j.id
          WHERE j.kind = 'migrate' AND j.status = 'succeeded' AND j.options ->> 'id_strategy' = 'uuid5'
            AND j.options ->> 'new_tenant' IS NULL AND t.source = $1::pg_catalog.oid::pg_catalog.regclass",
        &[(source as i64).into()],
    )
    .or_raise()?;
    let j = jobs::load(job).ok()?;
    let m = Migration::from_job(&j).ok()?;
    let ns = uuid5::parse_uuid(&m.params.namespace)?;
    let sql = Spi::get_one_with_args::<String>(
        "SELECT (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::pg_catalog.oid)",
        &[(source as i64).into()],
    )
    .or_raise()?;
    Some(pgrx::Uuid::from_bytes(
        uuid5::uuid5(&ns, format!("{sql}:{legacy_key}").as_bytes()).into_bytes(),
    ))
}

/// The undo of [`rollback`]: what the job wrote goes, what it overwrote or deleted comes back.
fn undo(m: &mut Migration, plans: &[TablePlan], moved: bool, job_id: i64) -> OpsResult<Vec<Value>> {
    let args = m.params.args();
    let archive_source = |p: &TablePlan| {
        format!(
            "(SELECT (pg_catalog.jsonb_populate_record(NULL::{src}, a.row_data)).* FROM tenant_ops.job_archive a
               WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'source')",
            src = p.source_sql,
            step = p.step
        )
    };
    let mut report = vec![];
    // 1. Remove what the job wrote, children first. Deferred references are cleared first so
    //    cycles between tables do not block the deletes.
    for p in plans.iter().rev() {
        if !p.deferred.is_empty() {
            let (from, filter) = if moved {
                (archive_source(p), "true".to_string())
            } else {
                (p.source_sql.clone(), p.filter.clone())
            };
            let sets: Vec<String> = p
                .deferred
                .iter()
                .map(|(c, _)| format!("{c} = NULL"))
                .collect();
            Spi::run_with_args(
                &format!(
                    "UPDATE {} t SET {} WHERE {}",
                    p.target.sql,
                    sets.join(", "),
                    p.target_rows(&from, &filter)
                ),
                &args,
            )
            .or_raise();
        }
    }
    for p in plans.iter().rev() {
        let deleted = if p.role == Role::Shared {
            let Some(key) = &p.target_key else { continue };
            let cols: Vec<String> = key.iter().map(|(c, _)| format!("t.{c}")).collect();
            let cond: Vec<String> = key
                .iter()
                .enumerate()
                .map(|(i, (c, _))| {
                    format!(
                        "t.{c} = ((a.row_data)->>{i})::{}",
                        p.target
                            .columns
                            .iter()
                            .find(|tc| &tc.quoted == c)
                            .map(|tc| tc.type_name.clone())
                            .unwrap_or_else(|| "text".into())
                    )
                })
                .collect();
            let _ = cols;
            Spi::connect_mut(|c| {
                c.update(
                    &format!(
                        "DELETE FROM {} t USING tenant_ops.job_archive a
                          WHERE a.job_id = {job_id} AND a.step = {} AND a.kind = 'shared_added' AND {}",
                        p.target.sql,
                        p.step,
                        cond.join(" AND ")
                    ),
                    None,
                    &[],
                )
                .map(|t| t.len() as i64)
            })
            .or_raise()
        } else {
            let (from, filter) = if moved {
                (archive_source(p), "true".to_string())
            } else {
                (p.source_sql.clone(), p.filter.clone())
            };
            Spi::connect_mut(|c| {
                c.update(
                    &format!(
                        "DELETE FROM {} t WHERE {}",
                        p.target.sql,
                        p.target_rows(&from, &filter)
                    ),
                    None,
                    &args,
                )
                .map(|t| t.len() as i64)
            })
            .or_raise()
        };
        report.push(json!({"table": p.target.display, "deleted": deleted}));
    }
    // 2. Target rows the job overwrote or merged into come back as they were.
    for p in plans {
        let cols: Vec<String> = p
            .target
            .columns
            .iter()
            .filter(|c| !c.generated)
            .map(|c| c.quoted.clone())
            .collect();
        let r: Vec<String> = cols.iter().map(|c| format!("r.{c}")).collect();
        Spi::run(&format!(
            "INSERT INTO {tgt} ({cols}) OVERRIDING SYSTEM VALUE
             SELECT {r} FROM tenant_ops.job_archive a, pg_catalog.jsonb_populate_record(NULL::{tgt}, a.row_data) r
              WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'target_before'",
            tgt = p.target.sql,
            cols = cols.join(", "),
            r = r.join(", "),
            step = p.step
        ))
        .or_raise();
    }
    // 3. A move: the source rows come back, parents first; cycle references are set last.
    if moved {
        let loaded = m.load_scope()?;
        for p in plans {
            if p.role == Role::Shared {
                continue;
            }
            let src = loaded.catalog.table(p.source);
            let cols: Vec<String> = src.columns.iter().map(|c| c.quoted.clone()).collect();
            let deferred: BTreeSet<String> = loaded
                .resolved
                .deferred_edges
                .iter()
                .map(|i| &loaded.catalog.edges[*i])
                .filter(|e| e.child == p.source)
                .flat_map(|e| {
                    e.child_cols
                        .iter()
                        .map(|c| src.column(c).map(|x| x.quoted.clone()).unwrap_or(c.clone()))
                })
                .collect();
            let sel: Vec<String> = cols
                .iter()
                .map(|c| {
                    if deferred.contains(c) {
                        "NULL".into()
                    } else {
                        format!("r.{c}")
                    }
                })
                .collect();
            Spi::run(&format!(
                "INSERT INTO {src} ({cols}) OVERRIDING SYSTEM VALUE
                 SELECT {sel} FROM tenant_ops.job_archive a, pg_catalog.jsonb_populate_record(NULL::{src}, a.row_data) r
                  WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'source'",
                src = p.source_sql,
                cols = cols.join(", "),
                sel = sel.join(", "),
                step = p.step
            ))
            .or_raise();
        }
        for i in &loaded.resolved.deferred_edges {
            let e = &loaded.catalog.edges[*i];
            let Some(p) = plans.iter().find(|p| p.source == e.child) else {
                continue;
            };
            let src = loaded.catalog.table(e.child);
            let Some(pk) = &src.primary_key else { continue };
            let q = |c: &String| src.column(c).map(|x| x.quoted.clone()).unwrap_or(c.clone());
            let sets: Vec<String> = e
                .child_cols
                .iter()
                .map(|c| format!("{} = r.{}", q(c), q(c)))
                .collect();
            let join: Vec<String> = pk
                .iter()
                .map(|c| format!("s.{} = r.{}", q(c), q(c)))
                .collect();
            Spi::run(&format!(
                "UPDATE {src} s SET {sets} FROM tenant_ops.job_archive a, pg_catalog.jsonb_populate_record(NULL::{src}, a.row_data) r
                  WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'source' AND {join}",
                src = src.sql,
                sets = sets.join(", "),
                step = p.step,
                join = join.join(" AND ")
            ))
            .or_raise();
        }
    }
    Ok(report)
}
