//! The `archive` and `delete` stages of `mode: move`: the tenant's source rows are kept in
//! `tenant_ops.job_archive`, then deleted, children first, only after verification.

use pgrx::prelude::*;

use super::error::Result;
use super::plan::TablePlan;
use super::sql::rows_written;
use super::Migration;
use crate::error::OrRaise;
use crate::jobs::{self, JobTable};
use crate::scope::graph::Role;
use crate::sys::with_job_window;

/// Where the rows a job took from the source are: `(from, filter)` for `FROM {from} s WHERE
/// {filter}`. After a move they are gone from the source, and read back from the archive.
pub(super) fn source_rows(p: &TablePlan, job_id: i64, moved: bool) -> (String, String) {
    if moved {
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
    }
}

impl Migration {
    pub(super) fn archive_step(&mut self, jt: &JobTable) -> Result<()> {
        let p = self.plan_for(jt.step)?;
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

    pub(super) fn delete_step(&mut self, jt: &JobTable, first: bool) -> Result<()> {
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
                    .map(|c| format!("{} = NULL", t.quoted_col(c)))
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
        let p = self.plan_for(jt.step)?;
        let mut deleted = 0;
        if p.role != Role::Shared {
            deleted = rows_written(
                &format!("DELETE FROM {} s WHERE {}", p.source_sql, p.filter),
                &self.params.args(),
            );
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
}
