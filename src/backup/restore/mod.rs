//! `verify_backup` and the restore job.
//!
//! A restore runs in one transaction (one step, whichever executor). Before anything of the
//! tenant's changes: the file's checksum, the scope (the root table and tenant key the backup
//! was taken with), the manifest against the tables as they are now (`target.rs`: the scope's
//! own, or their namesakes in `target_schema`), and every row, decoded into a staging temp
//! table per table typed as the table it goes to (`stage.rs`). Then the mode's own checks and
//! work, each in its file:
//!
//! - `replace.rs` — the tenant's current rows deleted children first (refused first when rows
//!   outside the tenant reference them), the backup's inserted parents first;
//! - `merge.rs` — the backup's rows added to the tenant's, rows whose key it holds already
//!   following `on_conflict` as `migrate_tenant` does;
//! - `clone.rs` — the backup loaded as another tenant with fresh keys, re-keyed through every
//!   FK by migrate's key mapping.
//!
//! Every mode ends by reading the rows written back and comparing them with the backup's,
//! table by table (`rows.rs`). `dry_run` runs every check and reports per table what would
//! change, writing nothing. Everything over user tables runs as the caller.

mod chain;
mod clone;
mod merge;
mod replace;
mod rows;
mod stage;
mod target;
mod triggers;
mod verify;

pub use verify::{verify, verify_file};

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::archive::{self, Registered};
use super::error::{Error, Result};
use super::options::{RestoreMode, RestoreOptions};
use super::EXPORT_SETTINGS;
use crate::error::{Common, OrRaise};
use crate::jobs::kind::Steps;
use crate::jobs::{self, Job, StepOutcome};
use crate::pg::quote_ident;
use crate::scope::graph::Role;
use crate::scope::{self, LoadedScope};
use crate::sys::with_settings;
use stage::{Batch, BATCH};
use target::Matched;

/// Creates a restore job of backup `id` after checking the arguments.
pub fn submit(id: i64, raw: &Value, background: bool) -> Result<i64> {
    let options = RestoreOptions::parse(raw)?;
    let b = archive::registered(id)?;
    if b.manifest.incremental.is_some()
        && (options.mode != RestoreMode::Replace || options.target_schema.is_some())
    {
        return Err(Error::Chain {
            code: pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            message: format!(
                "backup {id} is incremental: it is restored with mode \"replace\" into the scope's own tables only"
            ),
            hint: Some("Restore it without mode and target_schema; to clone or merge, restore the chain first, then take a full backup.".into()),
        });
    }
    if let Some(schema) = &options.target_schema {
        crate::pg::require_schema(schema)?;
    }
    if let Some(new_tenant) = &options.new_tenant {
        let loaded = LoadedScope::load(&b.scope)?;
        check_new_tenant(&loaded, new_tenant)?;
    }
    let mut stored = raw.clone();
    if let Value::Object(m) = &mut stored {
        m.insert("backup_id".into(), json!(id));
    }
    // Columns named are checked now; `"mask"` is resolved by the clone from the rows staged
    // out of the backup (a backup does not change, so every attempt decides alike).
    if let Some(pii @ crate::pii::mask::PiiOption::Columns(_)) = &options.pii {
        let loaded = LoadedScope::load(&b.scope)?;
        let masks = crate::pii::mask::Masks::resolve(
            Some(pii),
            &loaded,
            crate::pii::mask::Sampled::Relations(&[]),
        )?;
        stored["pii"] = masks.to_option(&loaded.catalog);
    }
    Ok(jobs::create(
        "restore",
        &b.scope,
        &b.tenant,
        &stored,
        if background {
            jobs::Executor::Background
        } else {
            jobs::Executor::Inline
        },
    ))
}

/// A clone's tenant value must cast to the tenant key's type (22023 naming the option).
fn check_new_tenant(l: &LoadedScope, new_tenant: &str) -> Result<()> {
    l.check_tenant_value(new_tenant).map_err(|e| {
        Common::InvalidOption(
            format!("option \"new_tenant\": {e}"),
            Some(
                "The clone's tenant key is written as the root's key: give a value of that type."
                    .into(),
            ),
        )
        .into()
    })
}

pub struct Restore {
    job_id: i64,
    backup_id: i64,
    options: RestoreOptions,
}

/// What every mode works from: the backup, its scope, the tables matched and staged.
struct Ctx<'a> {
    pub b: &'a Registered,
    pub loaded: &'a LoadedScope,
    pub matched: &'a [Matched],
    pub options: &'a RestoreOptions,
    pub job_id: i64,
}

impl Ctx<'_> {
    /// The tables of the tenant itself (root and owned), parents first.
    pub fn own(&self) -> impl DoubleEndedIterator<Item = &Matched> {
        self.matched.iter().filter(|t| t.spec.role != Role::Shared)
    }

    /// A temporary table's name for table `i`'s `what` (`map`, `conflicts`).
    pub fn temp(&self, what: &str, i: usize) -> String {
        format!(
            "pg_temp.{}",
            quote_ident(&format!("tenant_ops_restore_{}_{what}_{i}", self.job_id))
        )
    }
}

impl Restore {
    pub fn from_job(job: &Job) -> Result<Restore> {
        let mut raw = job.options.clone();
        let backup_id = raw
            .as_object_mut()
            .and_then(|m| m.remove("backup_id"))
            .and_then(|v| v.as_i64())
            .unwrap_or_default();
        Ok(Restore {
            job_id: job.id,
            backup_id,
            options: RestoreOptions::parse(&raw)?,
        })
    }

    fn run(&self) -> Result<Value> {
        let b = archive::registered(self.backup_id)?;
        if b.manifest.incremental.is_some() {
            return self.run_chain(&b);
        }
        b.check_file()?;
        let loaded = scope::LoadedScope::load(&b.scope)?;
        check_scope(&b, &loaded)?;
        if let Some(schema) = &self.options.target_schema {
            crate::pg::require_schema(schema)?;
        }
        if let Some(new_tenant) = &self.options.new_tenant {
            check_new_tenant(&loaded, new_tenant)?;
        }
        let place = target::match_tables(
            &b,
            &loaded,
            self.options.target_schema.as_deref(),
            self.job_id,
        )?;
        let matched = place.matched;
        let privileges = self.privileges(&matched);
        for t in &matched {
            crate::pg::require_table_privileges(
                &t.spec.sql,
                &t.name(),
                privileges,
                "restore_backup",
            )?;
        }
        let disable_triggers = self.options.disable_triggers && !self.options.dry_run;
        let written: Vec<triggers::Written> = matched
            .iter()
            .map(|t| (t.oid, t.spec.sql.clone()))
            .collect();
        if disable_triggers {
            triggers::require_owner(&written)?;
        }
        stage_rows(&b, &matched)?;
        let ctx = Ctx {
            b: &b,
            loaded: &loaded,
            matched: &matched,
            options: &self.options,
            job_id: self.job_id,
        };
        let write = || {
            with_settings(EXPORT_SETTINGS, || match self.options.mode {
                RestoreMode::Replace => replace::run(&ctx),
                RestoreMode::Merge => merge::run(&ctx),
                RestoreMode::Clone => clone::run(&ctx),
            })
        };
        let mut result = if disable_triggers {
            triggers::suspended(&written, write)?
        } else {
            write()?
        };
        for t in &matched {
            Spi::run(&format!("DROP TABLE {}", t.stage)).or_raise();
        }
        result["backup_id"] = json!(b.id);
        result["mode"] = json!(self.options.mode.name());
        if let Some(schema) = &self.options.target_schema {
            result["target_schema"] = json!(schema);
        }
        if self.options.dry_run {
            result["dry_run"] = json!(true);
        }
        Ok(result)
    }

    /// What the caller needs on every table the restore writes.
    fn privileges(&self, matched: &[Matched]) -> &'static str {
        let deferred = matched.iter().any(|t| !t.deferred.is_empty());
        match self.options.mode {
            RestoreMode::Replace => "SELECT, INSERT, UPDATE, DELETE",
            RestoreMode::Merge
                if deferred
                    || matches!(
                        self.options.on_conflict,
                        crate::migrate::options::OnConflict::Overwrite
                            | crate::migrate::options::OnConflict::Merge
                    ) =>
            {
                "SELECT, INSERT, UPDATE"
            }
            RestoreMode::Clone if deferred => "SELECT, INSERT, UPDATE",
            RestoreMode::Merge | RestoreMode::Clone => "SELECT, INSERT",
        }
    }
}

/// A backup is restored through the scope it was taken of: the scope of that name must still
/// be over the same root table and tenant key (42P17 when another scope took the name).
fn check_scope(b: &Registered, loaded: &LoadedScope) -> Result<()> {
    let root = loaded.catalog.table(loaded.resolved.root);
    let m = &b.manifest;
    if (
        root.schema.as_str(),
        root.name.as_str(),
        loaded.resolved.tenant_key.as_str(),
    ) == (
        m.scope.root_schema.as_str(),
        m.scope.root_table.as_str(),
        m.scope.tenant_key.as_str(),
    ) {
        return Ok(());
    }
    Err(Common::InvalidDefinition {
        message: format!(
            "backup {} is of scope \"{}\" over {}.{}, but that scope is now over {}.{}",
            b.id,
            m.scope.name,
            crate::pg::qualified(&m.scope.root_schema, &m.scope.root_table),
            quote_ident(&m.scope.tenant_key),
            root.display,
            quote_ident(&loaded.resolved.tenant_key)
        ),
        hint: Some(
            "Restore it into a scope with the root table and tenant key it was taken with.".into(),
        ),
    }
    .into())
}

/// Every row of the backup decoded into its staging table (typed as the table it goes to),
/// before anything of the tenant changes.
fn stage_rows(b: &Registered, matched: &[Matched]) -> Result<()> {
    let mut batches: Vec<Batch> = matched
        .iter()
        .map(|t| Batch::new(t.spec.columns.iter().map(|c| c.type_full.clone()).collect()))
        .collect();
    let mut n = vec![0i64; matched.len()];
    let mut bytes = vec![0i64; matched.len()];
    let live = crate::jobs::live::posting_now();
    with_settings(EXPORT_SETTINGS, || {
        for t in matched {
            let cols: Vec<String> = t.spec.columns.iter().map(|c| c.quoted.clone()).collect();
            Spi::run(&format!(
                "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA",
                t.stage,
                cols.join(", "),
                t.spec.sql
            ))
            .or_raise();
        }
        // What other sessions see meanwhile (jobs::live): each table's count per batch
        // staged, and its last when the next table's rows begin (the file holds the tables
        // one after another).
        let mut last: Option<usize> = None;
        let post = |i: usize, n: &[i64], bytes: &[i64]| {
            if live {
                crate::jobs::live::post(matched[i].oid, n[i], bytes[i]);
            }
        };
        b.read(|i, e, line| {
            if let Some(previous) = last.filter(|&l| l != i) {
                post(previous, &n, &bytes);
            }
            last = Some(i);
            n[i] += 1;
            bytes[i] += line.len() as i64 + 1;
            batches[i].push(b, e, line, n[i])?;
            if batches[i].len() >= BATCH {
                batches[i].load(&matched[i].stage)?;
                post(i, &n, &bytes);
            }
            Ok(())
        })?;
        if let Some(l) = last {
            post(l, &n, &bytes);
        }
        for (t, batch) in matched.iter().zip(&mut batches) {
            batch.load(&t.stage)?;
        }
        // Fresh statistics: the checks and statements that follow join against them.
        for t in matched {
            Spi::run(&format!("ANALYZE {}", t.stage)).or_raise();
        }
        Ok::<(), Error>(())
    })
}

impl Steps for Restore {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, crate::error::Report> {
        let result = self.run()?;
        jobs::log(
            self.job_id,
            "restored",
            Some("restore"),
            None,
            result["rows"].as_i64(),
            None,
            Some(result.clone()),
        );
        Ok(StepOutcome::Done(result))
    }
}
