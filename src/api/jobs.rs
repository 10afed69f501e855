//! `run_job` and `job_report`: driving and reading jobs.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::{OpsError, OrRaise};
use crate::jobs::{self, executor};
use crate::migrate;

/// The outcome of a job, per table: rows planned and done, verification, rejected rows.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.job_report(job_id bigint)
RETURNS TABLE(step int, table_name regclass, target text, role text, stage text, rows_total bigint,
              rows_done bigint, source_rows bigint, target_rows bigint, verified boolean, rejected bigint)
STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.job_report(bigint) IS 'Outcome of a job, per table.';
"#)]
#[allow(clippy::type_complexity)]
fn job_report(
    job_id: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(table_name, pg_sys::Oid),
        name!(target, Option<String>),
        name!(role, String),
        name!(stage, String),
        name!(rows_total, Option<i64>),
        name!(rows_done, i64),
        name!(source_rows, Option<i64>),
        name!(target_rows, Option<i64>),
        name!(verified, Option<bool>),
        name!(rejected, i64),
    ),
> {
    let job_id = required(job_id, "job_id");
    jobs::load(job_id).or_raise();
    let rows: Vec<_> = jobs::tables(job_id)
        .into_iter()
        .map(|t| {
            let rejected = Spi::get_one_with_args::<i64>(
                "SELECT pg_catalog.count(*) FROM tenant_ops.job_errors WHERE job_id = $1 AND table_name = $2::pg_catalog.oid::pg_catalog.regclass",
                &[job_id.into(), (t.source as i64).into()],
            )
            .or_raise()
            .unwrap_or(0);
            (
                t.step,
                pg_sys::Oid::from(t.source),
                t.target,
                t.role,
                t.stage,
                t.rows_total,
                t.rows_done,
                t.details.get("source_rows").and_then(|v| v.as_i64()),
                t.details.get("target_rows").and_then(|v| v.as_i64()),
                t.details.get("verified").and_then(|v| v.as_bool()),
                rejected,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// `CALL tenant_ops.run_job(job_id)`: runs a job's remaining steps, committing after each, so
/// progress is visible to other sessions and an interruption resumes from the last checkpoint.
/// A raw V1 function: committing needs the call context, which `#[pg_extern]` does not expose.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn tenant_ops_run_job(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let job_id = unsafe { pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 0) };
    let job_id = required(job_id, "job_id");
    if !unsafe { executor::nonatomic(fcinfo) } {
        OpsError::FeatureNotSupported(
            "tenant_ops.run_job must be called with CALL outside an explicit transaction block".into(),
            Some("It commits after every step; run it as a top-level CALL (psql autocommit), not inside BEGIN ... COMMIT.".into()),
        )
        .raise();
    }
    let job = jobs::load(job_id).or_raise();
    if job.kind != "migrate" {
        OpsError::WrongJob {
            message: format!(
                "job {job_id} is a {} job, which run_job cannot drive yet",
                job.kind
            ),
            hint: None,
        }
        .raise();
    }
    // Only one session drives a job at a time.
    let locked = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('tenant_ops:job', $1))",
        &[job_id.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if !locked {
        OpsError::JobState {
            job: job_id,
            status: "being run by another session".into(),
            action: "run here",
            hint: None,
        }
        .raise();
    }
    unsafe { pg_sys::SPI_connect_ext(pg_sys::SPI_OPT_NONATOMIC as i32) };
    audit::record(
        "run_job",
        &format!("job {job_id}"),
        json!({"job_id": job_id}),
        "started",
    );
    let result = executor::run_committing(job_id, migrate::steps_for);
    unsafe { pg_sys::SPI_finish() };
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('tenant_ops:job', $1))",
        &[job_id.into()],
    )
    .or_raise();
    result.or_raise();
    pg_sys::Datum::from(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_tenant_ops_run_job() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

extension_sql!(
    r#"
CREATE PROCEDURE tenant_ops.run_job(job_id bigint)
LANGUAGE c AS 'MODULE_PATHNAME', 'tenant_ops_run_job';
COMMENT ON PROCEDURE tenant_ops.run_job(bigint) IS
'Runs a job''s remaining steps with a commit after each (resumable; call it again after an interruption).';
"#,
    name = "run_job_procedure",
    requires = ["bootstrap"]
);
