//! Reverse sync (`cutover_migration(job, '{"reverse_sync": true}')`): after the cutover the
//! old tables are kept updated from the new ones, so the old system stays readable and a
//! rollback (`undo.rs`) switches back with no write lost.
//!
//! The cutover installs a capture of every row of the target tables
//! (`capture::install_mirror`; they hold the tenant's rows only) and moves the job to stage
//! `reverse_sync`, whose steps apply what it records to the source the way `online.rs` applies
//! the source's changes to the target, sides swapped: the target rows the recorded keys name
//! are written to the source, the tenant's source rows whose keys are gone from the target
//! are deleted, in one statement. The source's fence lets these writes through: they are made
//! inside the job's window (`crate::sys::with_job_window`), which the fence asks for. Targets
//! must mirror the source column for column, so a target row is written back as it is.

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::error::{Error, Result};
use super::online::{batch_statement, Applied};
use super::options::OnConflict;
use super::{enter, Migration, Stage};
use crate::capture::{self, Capture};
use crate::error::{Common, OrRaise};
use crate::jobs::{self, StepOutcome};
use crate::sys::{try_subtransaction, with_settings};

impl Migration {
    /// What `reverse_sync` needs: target rows that are the source rows column for column
    /// (`id_strategy` keep, no `columns` or `new_tenant`), so that a target row can be written
    /// back as it is.
    pub(super) fn check_mirror(&mut self) -> Result<()> {
        let mirrors = self.options.id_strategy == super::options::IdStrategy::Keep
            && self.options.new_tenant.is_none()
            && self.plans()?.iter().all(|p| {
                p.columns
                    .iter()
                    .chain(&p.deferred)
                    .all(|(c, e)| *e == format!("s.{c}"))
            });
        if !mirrors {
            return Err(Common::InvalidOption(
                "option \"reverse_sync\" needs targets that mirror the source: id_strategy \"keep\", no \"columns\", no \"new_tenant\"".into(),
                Some("Target rows are written back to the source as they are.".into()),
            )
            .into());
        }
        Ok(())
    }

    /// The statement applying the reverse capture's records (`$4`) to the source: as
    /// the catch-up's with the sides swapped — the target rows their keys name
    /// are written to the source, the source rows of the tenant whose keys are no longer in
    /// the target are deleted — in one statement.
    fn reverse_sql(&mut self) -> Result<String> {
        let plans = self.owned_plans()?;
        let mut ctes = vec![
            "__tenant_ops_ch AS (DELETE FROM tenant_ops.capture_changes WHERE capture_id = $4 RETURNING table_name, row_data)"
                .to_string(),
        ];
        let (mut written, mut deleted) = (vec![], vec![]);
        for (i, p) in plans.iter().enumerate() {
            let Some(key) = &p.key else { continue };
            let cols = |alias: &str| {
                key.iter()
                    .map(|c| format!("{alias}.{}", c.quoted))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let names: Vec<&String> = p
                .columns
                .iter()
                .chain(&p.deferred)
                .map(|(c, _)| c)
                .collect();
            let key_names: Vec<&str> = key.iter().map(|c| c.quoted.as_str()).collect();
            let updatable: Vec<&str> = names
                .iter()
                .map(|c| c.as_str())
                .filter(|c| !key_names.contains(c))
                .collect();
            let conflict = OnConflict::Overwrite.clause(
                &p.source_sql,
                Some(key_names.join(", ").as_str()),
                &updatable,
            );
            ctes.push(format!(
                "__tenant_ops_k{i} AS (SELECT r.* FROM __tenant_ops_ch c
                   CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::{tgt}, c.row_data) r
                  WHERE c.table_name = {oid}::pg_catalog.oid)",
                tgt = p.target.sql,
                oid = p.target.oid
            ));
            ctes.push(format!(
                "__tenant_ops_l{i} AS (SELECT t.* FROM {tgt} t WHERE ({t}) IN (SELECT {k} FROM __tenant_ops_k{i} k))",
                tgt = p.target.sql,
                t = cols("t"),
                k = cols("k"),
            ));
            ctes.push(format!(
                "__tenant_ops_w{i} AS (INSERT INTO {src} ({names}) SELECT {sel} FROM __tenant_ops_l{i} t {conflict} RETURNING 1)",
                src = p.source_sql,
                names = names.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
                sel = names.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", "),
            ));
            ctes.push(format!(
                "__tenant_ops_d{i} AS (DELETE FROM {src} s WHERE ({filter})
                   AND ({s}) IN (SELECT {k} FROM __tenant_ops_k{i} k
                                  WHERE NOT EXISTS (SELECT FROM __tenant_ops_l{i} l WHERE ({l}) = ({k}))) RETURNING 1)",
                src = p.source_sql,
                filter = p.filter,
                s = cols("s"),
                k = cols("k"),
                l = cols("l"),
            ));
            written.push(format!(
                "(SELECT pg_catalog.count(*) FROM __tenant_ops_w{i})"
            ));
            deleted.push(format!(
                "(SELECT pg_catalog.count(*) FROM __tenant_ops_d{i})"
            ));
        }
        Ok(batch_statement(&ctes, &written, &deleted))
    }

    /// Applies what the reverse capture recorded to the source, inside the job's window (which
    /// the source's fence lets through).
    pub(super) fn apply_reverse(&mut self, reverse: &Capture) -> Result<Applied> {
        let sql = self.reverse_sql()?;
        Ok(self.run_batch(&sql, reverse))
    }

    /// One step of the reverse sync (after a cutover with `reverse_sync`): the target's
    /// changes written back to the old tables, so that they stay readable and a rollback
    /// loses nothing.
    pub(super) fn reverse_step(&mut self) -> Result<StepOutcome> {
        let Some(reverse) = capture::reverse_for_job(self.job_id) else {
            enter(self.job_id, Stage::Finish);
            return Ok(StepOutcome::Continue);
        };
        if capture::lag(reverse.id).changes == 0 {
            Spi::run("SELECT pg_catalog.pg_sleep(0.05)").or_raise();
            return Ok(StepOutcome::Continue);
        }
        capture::lock_apply(reverse.id);
        if capture::status(reverse.id) != "capturing" {
            return Ok(StepOutcome::Continue);
        }
        let applied = self.apply_reverse(&reverse)?;
        jobs::log(
            self.job_id,
            "step",
            Some("reverse_sync"),
            None,
            Some(applied.changes),
            None,
            Some(json!({"written": applied.written, "deleted": applied.deleted})),
        );
        Ok(StepOutcome::Continue)
    }

    /// `cutover_migration(job, '{"reverse_sync": false}')` on a job syncing back: the target
    /// tables' writes held (SHARE locks within lock_timeout), the rest applied, the reverse
    /// capture removed, the job moved to `finish`.
    pub(super) fn end_reverse_sync(&mut self, timeout: &str) -> Result<Value> {
        let Some(reverse) = capture::reverse_for_job(self.job_id) else {
            enter(self.job_id, Stage::Finish);
            return Ok(json!({"job_id": self.job_id, "reverse_sync": false}));
        };
        let plans = self.owned_plans()?;
        let job_id = self.job_id;
        let locked = try_subtransaction(|| {
            with_settings(&[("lock_timeout", timeout)], || {
                capture::lock_apply(reverse.id);
                for p in &plans {
                    Spi::run(&format!("LOCK TABLE {} IN SHARE MODE", p.target.sql)).or_raise();
                }
            })
        });
        if let Err(caught) = locked {
            if ["55P03", "40P01"].contains(&caught.sqlstate_text().as_str()) {
                return Err(Error::CutoverTimedOut {
                    job: job_id,
                    lock_timeout: timeout.to_string(),
                    what: "the migration's target tables".into(),
                });
            }
            caught.raise();
        }
        let applied = self.apply_reverse(&reverse)?;
        capture::stop(reverse.id);
        enter(job_id, Stage::Finish);
        let report =
            json!({"job_id": job_id, "reverse_sync": false, "drained_changes": applied.changes});
        jobs::log(
            job_id,
            "migration.reverse_sync_ended",
            Some("reverse_sync"),
            None,
            Some(applied.changes),
            None,
            Some(report.clone()),
        );
        jobs::notify(job_id, "migration.reverse_sync_ended", Some(report.clone()));
        Ok(report)
    }
}
