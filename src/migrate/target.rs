//! Creating missing target tables from the source definitions (`create_target`), bare, and
//! dropping them again on an undo; the per-schema lock that serialises it. What a target
//! table is, and which one a source table goes to: `target_table.rs`.

use pgrx::prelude::*;
use std::collections::BTreeSet;

use super::constraints::Created;
use super::error::{Error, Result};
use super::options::IdStrategy;
use super::plan::Planner;
use super::target_table::{qualified, read};
use super::Migration;
use crate::error::OrRaise;
use crate::jobs;
use crate::scope::graph::TableId;
use crate::scope::LoadedScope;

impl Migration {
    /// Creates missing target tables from the source definitions, bare: the same columns
    /// (re-keyed key and FK columns typed uuid) with their NOT NULL, and no keys, indexes or
    /// foreign keys yet; returns them with what the source declares on each (built after the
    /// load, see `constraints.rs`). Called with the target schema's lock held exclusively
    /// ([`lock_schema`]): a table another job created meanwhile is read as existing, never
    /// created twice.
    pub(super) fn create_targets(&self, loaded: &LoadedScope) -> Result<Vec<Created>> {
        let copied = self.copied(loaded);
        let strategy_rekeys = self.options.id_strategy != IdStrategy::Keep;
        // Which tables will be re-keyed: existing targets by their key type, new ones always.
        let mut created = vec![];
        let mut names = vec![];
        for (source, _) in &copied {
            let name = self.target_name(loaded, *source);
            if read(&self.target_schema, &name).is_none() {
                created.push((*source, name.clone()));
            }
            names.push((*source, name));
        }
        if created.is_empty() {
            return Ok(vec![]);
        }
        let mut rekeyed_set = BTreeSet::new();
        for (source, _) in &copied {
            let t = loaded.catalog.table(*source);
            if !strategy_rekeys || !matches!(t.primary_key.as_deref(), Some([_])) {
                continue;
            }
            let name = self.target_name(loaded, *source);
            let is_new = created.iter().any(|(s, _)| s == source);
            let uuid_target = read(&self.target_schema, &name).is_some_and(|tt| {
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
        let created_ids: Vec<TableId> = created.iter().map(|(s, _)| *s).collect();
        // Refused before anything is created: a table with no tenant column to distribute by.
        let distribution = if self.options.distribute {
            Some(crate::citus::distribute::plan(
                &loaded.catalog,
                &loaded.resolved,
                &created_ids,
            )?)
        } else {
            None
        };
        let mut out = vec![];
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
            let sql = format!(
                "CREATE TABLE {} ({})",
                qualified(&self.target_schema, name),
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
            let made = read(&self.target_schema, name).ok_or_else(|| Error::MissingTarget {
                target: qualified(&self.target_schema, name),
                from: t.display.clone(),
                shared: false,
            })?;
            out.push(Created {
                source: *source,
                oid: made.oid,
                display: made.display,
                deferred: self.deferred_of(loaded, *source, name, &names, &created_ids)?,
            });
        }
        if let Some(plans) = distribution {
            self.distribute_created(loaded, &created, &plans);
        }
        Ok(out)
    }

    /// Makes the tables just created Citus tables (`"distribute": true`): reference tables
    /// first, then the root's target, then the others colocated with it. Bare (no keys or
    /// foreign keys yet), so any order works; the keys and foreign keys built after the load
    /// include the distribution column, as Citus requires.
    fn distribute_created(
        &self,
        loaded: &LoadedScope,
        created: &[(TableId, String)],
        plans: &std::collections::BTreeMap<TableId, crate::citus::distribute::Plan>,
    ) {
        use crate::citus::distribute::{apply, Plan};
        let root = loaded.resolved.root;
        let root_target = qualified(&self.target_schema, &self.target_name(loaded, root));
        let rank = |(source, _): &&(TableId, String)| match plans.get(source) {
            Some(Plan::Reference) => 0,
            _ if *source == root => 1,
            _ => 2,
        };
        let mut ordered: Vec<&(TableId, String)> = created.iter().collect();
        ordered.sort_by_key(rank);
        for (source, name) in ordered {
            let Some(plan) = plans.get(source) else {
                continue;
            };
            let table = qualified(&self.target_schema, name);
            let colocate = (*source != root).then_some(root_target.as_str());
            apply(&table, plan, colocate);
            let how = match plan {
                Plan::Reference => "reference table".to_string(),
                Plan::Distributed { column } => format!("distributed by {column}"),
            };
            jobs::log(
                self.job_id,
                "target.distributed",
                Some("prepare"),
                Some(*source),
                None,
                Some(&format!("{table}: {how}")),
                None,
            );
        }
    }

    /// Drops the target tables this job created (`create_target`), children first, once its
    /// rows are gone (a cancel, a rollback): each only while it is still empty and no other
    /// live migration has it as its target, so another job's rows never go with it. Tables
    /// kept are reported with the reason. Runs as the caller (dropping needs ownership: a
    /// table the caller cannot drop is kept and reported too).
    pub(super) fn drop_created_targets(&self) -> Vec<serde_json::Value> {
        let created: Vec<(i32, u32)> = jobs::tables(self.job_id)
            .iter()
            .rev()
            .filter(|t| t.details.get("created_target") == Some(&serde_json::Value::Bool(true)))
            .filter_map(|t| {
                let oid = t.details.get("target_oid")?.as_u64()?;
                Some((t.step, oid as u32))
            })
            .collect();
        if created.is_empty() {
            return vec![];
        }
        // Against a job creating tables in the schema right now (it would read one of ours as
        // existing and then lose it).
        lock_schema(&self.target_schema, true);
        let mut out = vec![];
        for (step, oid) in created {
            let Some(sql) = Spi::get_one_with_args::<String>(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = $1::pg_catalog.int8::pg_catalog.oid AND n.nspname = $2",
                &[(oid as i64).into(), self.target_schema.clone().into()],
            )
            .or_raise() else {
                continue;
            };
            let in_use = crate::sys::owner::get_one::<i64>(
                "SELECT min(t.job_id) FROM tenant_ops.job_tables t JOIN tenant_ops.jobs j ON j.id = t.job_id
                  WHERE t.job_id <> $1 AND (t.details->>'target_oid')::pg_catalog.int8 = $2
                    AND j.status NOT IN ('rolled_back', 'cancelled')",
                &[self.job_id.into(), (oid as i64).into()],
            )
            .or_raise();
            let kept =
                |why: String| serde_json::json!({"table": sql, "dropped": false, "why": why});
            if let Some(other) = in_use {
                out.push(kept(format!("job {other} migrates into it")));
                continue;
            }
            let dropped = crate::sys::try_subtransaction(|| {
                let empty = Spi::get_one::<bool>(&format!("SELECT NOT EXISTS (SELECT FROM {sql})"))
                    .or_raise()
                    .unwrap_or(false);
                if empty {
                    Spi::run(&format!("DROP TABLE {sql}")).or_raise();
                }
                empty
            });
            match dropped {
                Ok(true) => {
                    jobs::set_table_details(
                        self.job_id,
                        step,
                        &serde_json::json!({"created_target": false, "target_dropped": true}),
                    );
                    out.push(serde_json::json!({"table": sql, "dropped": true}));
                }
                Ok(false) => out.push(kept("it holds rows of other jobs".into())),
                Err(e) => out.push(kept(e.message)),
            }
        }
        out
    }
}

/// Takes the target schema's migration lock until the end of the transaction: exclusive to
/// create or drop target tables there, shared to plan against the tables that exist. Jobs
/// creating targets in one schema run their `prepare` one after another (each sees the
/// tables the one before created), and a cancel never drops a table under a job preparing
/// to write into it.
pub fn lock_schema(schema: &str, exclusive: bool) {
    let sql = if exclusive {
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('tenant_ops:target_schema:' || n.oid::pg_catalog.text, 0))
           FROM pg_catalog.pg_namespace n WHERE n.nspname = $1"
    } else {
        "SELECT pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtextextended('tenant_ops:target_schema:' || n.oid::pg_catalog.text, 0))
           FROM pg_catalog.pg_namespace n WHERE n.nspname = $1"
    };
    Spi::run_with_args(sql, &[schema.into()]).or_raise();
}
