//! Creating missing target tables from the source definitions (`create_target`), bare, and
//! dropping them again on an undo; the per-schema lock that serialises it. What a target
//! table is, and which one a source table goes to: `target_table.rs`.

use pgrx::prelude::*;
use std::collections::BTreeSet;

use super::constraints::{target_name_of, Created};
use super::error::{Error, Result};
use super::options::IdStrategy;
use super::plan::Planner;
use super::target_table::{qualified, read};
use super::Migration;
use crate::error::OrRaise;
use crate::jobs;
use crate::pg::quote_ident;
use crate::scope::graph::TableId;
use crate::scope::LoadedScope;
use crate::sys::with_settings;

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
            masks: self.masks(loaded)?,
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
            let extras = SourceExtras::read(*source);
            let mut defs = vec![];
            let mut rekeyed_cols = BTreeSet::new();
            let mut left_out = vec![];
            for col in &t.columns {
                let mapped = planner.mapped_column(*source, &col.name);
                let rekeyed = strategy_rekeys
                    && mapped != format!("s.{}", col.quoted)
                    && !mapped.starts_with("CASE");
                let ty = if rekeyed {
                    rekeyed_cols.insert(col.name.clone());
                    "uuid".to_string()
                } else {
                    col.type_full.clone()
                };
                let default = match extras.defaults.iter().find(|d| d.column == col.name) {
                    // A new key of a re-keyed primary key is drawn like the migration's own.
                    Some(_)
                        if rekeyed
                            && t.primary_key.as_deref()
                                == Some(std::slice::from_ref(&col.name)) =>
                    {
                        " DEFAULT pg_catalog.gen_random_uuid()".to_string()
                    }
                    // A kept integer key drawing from the source's sequence gets a counter of
                    // its own, which the finish advances past the keys loaded (see
                    // [`Migration::advance_sequences`]).
                    Some(d)
                        if !rekeyed
                            && d.uses_sequence
                            && INTEGER_TYPES.contains(&col.type_name.as_str()) =>
                    {
                        " GENERATED BY DEFAULT AS IDENTITY".to_string()
                    }
                    Some(d) if rekeyed || d.uses_sequence => {
                        left_out.push(format!(
                            "the default of {} ({}): {}",
                            col.quoted,
                            d.expr,
                            if rekeyed {
                                "the column is re-keyed to uuid"
                            } else {
                                "its sequence belongs to the source table"
                            }
                        ));
                        String::new()
                    }
                    Some(d) => format!(" DEFAULT {}", d.expr),
                    None => String::new(),
                };
                defs.push(format!(
                    "{} {}{}{}",
                    col.quoted,
                    ty,
                    default,
                    if col.not_null { " NOT NULL" } else { "" }
                ));
            }
            for check in &extras.checks {
                if let Some(c) = check.columns.iter().find(|c| rekeyed_cols.contains(*c)) {
                    left_out.push(format!(
                        "check constraint {} ({}): it reads {}, re-keyed to uuid",
                        quote_ident(&check.name),
                        check.body,
                        quote_ident(c)
                    ));
                    continue;
                }
                defs.push(format!(
                    "CONSTRAINT {} {}",
                    quote_ident(&target_name_of(&check.name, &t.name, name)),
                    check.body
                ));
            }
            let sql = format!(
                "CREATE TABLE {} ({})",
                qualified(&self.target_schema, name),
                defs.join(", ")
            );
            // The expressions are the server's own text under search_path pg_catalog (every
            // name in them qualified): read the same way back.
            with_settings(&[("search_path", "pg_catalog")], || Spi::run(&sql)).or_raise();
            jobs::log(
                self.job_id,
                "target.created",
                Some("prepare"),
                Some(*source),
                None,
                Some(&sql),
                (!left_out.is_empty()).then(|| serde_json::json!({ "not_reproduced": left_out })),
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

/// The column types a sequence can fill (`format_type` names).
const INTEGER_TYPES: &[&str] = &["smallint", "integer", "bigint"];

impl Migration {
    /// Moves every sequence a target table owns (a serial's, an identity's) past the keys now
    /// in that table, so that the application's next insert there draws a key no migrated
    /// row holds (with kept keys the rows brought their source values, which the target's
    /// sequence never drew). Only ever forward; a sequence the caller may not update is left
    /// and named in the job log. Run at the finish, once every row is in.
    pub(super) fn advance_sequences(&mut self) -> Result<()> {
        let targets: Vec<(u32, String)> = self
            .plans()?
            .iter()
            .map(|p| (p.target.oid, p.target.sql.clone()))
            .collect();
        for (oid, table) in targets {
            let owned = Spi::connect(|c| {
                c.select(
                    "SELECT pg_catalog.quote_ident(a.attname), s.seq
                       FROM pg_catalog.pg_attribute a
                      CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_serial_sequence(
                                                 a.attrelid::pg_catalog.regclass::pg_catalog.text, a.attname) AS seq) s
                      WHERE a.attrelid = $1::pg_catalog.int8::pg_catalog.oid AND a.attnum > 0
                        AND NOT a.attisdropped AND s.seq IS NOT NULL",
                    None,
                    &[(oid as i64).into()],
                )?
                .map(|r| Ok((r.get::<String>(1)?.unwrap_or_default(), r.get::<String>(2)?.unwrap_or_default())))
                .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
            })
            .or_raise();
            for (column, sequence) in owned {
                let may = Spi::get_one_with_args::<bool>(
                    "SELECT pg_catalog.has_sequence_privilege($1, 'UPDATE')
                        AND pg_catalog.has_sequence_privilege($1, 'SELECT, USAGE')",
                    &[sequence.clone().into()],
                )
                .or_raise()
                .unwrap_or(false);
                if !may {
                    jobs::log(
                        self.job_id,
                        "target.sequence_kept",
                        Some("finish"),
                        None,
                        None,
                        Some(&format!(
                            "sequence {sequence} not advanced: no UPDATE privilege on it"
                        )),
                        None,
                    );
                    continue;
                }
                // Column and table come quoted from the catalog.
                let sql = format!(
                    "SELECT pg_catalog.setval($1::pg_catalog.regclass, x.m)
                       FROM (SELECT pg_catalog.max({column})::pg_catalog.int8 AS m FROM {table}) x
                      WHERE x.m > coalesce(pg_catalog.pg_sequence_last_value($1::pg_catalog.regclass), x.m - 1)"
                );
                Spi::run_with_args(&sql, &[sequence.into()]).or_raise();
            }
        }
        Ok(())
    }
}

/// A source column's default, as the server writes it under search_path pg_catalog.
#[derive(serde::Deserialize)]
struct SourceDefault {
    column: String,
    expr: String,
    /// It calls nextval (a serial column's, an identity's): the sequence is the source's.
    uses_sequence: bool,
}

/// A source CHECK constraint and the columns it reads.
#[derive(serde::Deserialize)]
struct SourceCheck {
    name: String,
    body: String,
    columns: Vec<String>,
}

/// The defaults and CHECK constraints of a source table that `create_target` reproduces (an
/// identity counts as a default drawing from a sequence). Generated columns are not among
/// the table's copied columns' defaults: they are computed, never written.
#[derive(serde::Deserialize, Default)]
struct SourceExtras {
    defaults: Vec<SourceDefault>,
    checks: Vec<SourceCheck>,
}

const EXTRAS_SQL: &str = r#"
SELECT pg_catalog.jsonb_build_object(
  'defaults', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'column', a.attname,
                   'expr', coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), 'identity'),
                   'uses_sequence', a.attidentity <> '' OR d.adbin IS NOT NULL AND EXISTS (
                       SELECT FROM pg_catalog.pg_depend dep
                        WHERE dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid
                          AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = dep.refobjid) = 'S'))
                   ORDER BY a.attnum), '[]')
                 FROM pg_catalog.pg_attribute a
                 LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attrelid = $1::pg_catalog.int8::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND a.attgenerated = '' AND (d.oid IS NOT NULL OR a.attidentity <> '')),
  'checks', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                 'name', k.conname, 'body', pg_catalog.pg_get_constraintdef(k.oid),
                 'columns', (SELECT coalesce(pg_catalog.jsonb_agg(a.attname), '[]')
                               FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)))
                 ORDER BY k.conname), '[]')
               FROM pg_catalog.pg_constraint k
              WHERE k.conrelid = $1::pg_catalog.int8::pg_catalog.oid AND k.contype = 'c'))
"#;

impl SourceExtras {
    fn read(source: TableId) -> SourceExtras {
        with_settings(&[("search_path", "pg_catalog")], || {
            crate::pg::query_json::<SourceExtras>(EXTRAS_SQL, &[(source as i64).into()])
        })
        .unwrap_or_default()
    }
}
