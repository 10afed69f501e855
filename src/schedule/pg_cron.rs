//! `params.engine = "pg_cron"`: the schedule is registered with pg_cron
//! (`cron.schedule_in_database`), whose job calls `tenant_ops.trigger_schedule(name)` at each
//! firing, as the schedule's owner; `alter_schedule` and `unschedule` keep that job in step
//! (`cron.alter_job`, `cron.unschedule`). The run itself is then the same as the builtin
//! engine's: overlap, the owner's rights, the history, retries and alerts.
//!
//! pg_cron's functions that act for another user are revoked from PUBLIC, so they are called
//! as the extension owner, with the schedule owner's name as the job's user; only values
//! (never SQL text) go in, and the command is built by `format('%L')`.

use pgrx::prelude::*;

use super::error::Error;
use super::params::Params;
use crate::error::OrRaise;
use crate::sys::{owner, try_subtransaction};

const JOB_PREFIX: &str = "tenant_ops:";

/// pg_cron is installed in this database (its jobs run where `cron.database_name` says, but
/// its functions exist only in the database it is installed in).
fn installed() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')",
    )
    .or_raise()
    .unwrap_or(false)
}

/// What pg_cron cannot take: a zone of the schedule's own (pg_cron evaluates every job in its
/// setting `cron.timezone`), a seconds field, and croner's `L`, `W`, `#`.
pub fn check(expression: &str, p: &Params) -> Result<(), Error> {
    if !installed() {
        return Err(Error::PgCron {
            message: "engine \"pg_cron\" needs the pg_cron extension in this database".into(),
            hint: Some("CREATE EXTENSION pg_cron here (it must be in shared_preload_libraries, with cron.database_name naming this database), or use the builtin engine (the default).".into()),
        });
    }
    if p.timezone.is_some() {
        return Err(Error::PgCron {
            message: "parameter \"timezone\" cannot be used with engine \"pg_cron\"".into(),
            hint: Some("pg_cron evaluates every job in its setting cron.timezone; leave timezone out, or use the builtin engine.".into()),
        });
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() == 6 {
        return Err(Error::PgCron {
            message: format!("cron expression \"{expression}\" has a seconds field, which engine \"pg_cron\" does not take"),
            hint: Some("Use five fields with pg_cron, or the builtin engine for seconds.".into()),
        });
    }
    if fields
        .iter()
        .any(|f| f.contains('L') || f.contains('W') || f.contains('#'))
        && !expression.trim_start().starts_with('@')
    {
        return Err(Error::PgCron {
            message: format!("cron expression \"{expression}\" uses L, W or #, which engine \"pg_cron\" does not take"),
            hint: Some("Use the builtin engine for L, W and #.".into()),
        });
    }
    Ok(())
}

fn refused(what: &str, message: String) -> Error {
    Error::PgCron {
        message: format!("pg_cron refused to {what} the schedule: {message}"),
        hint: None,
    }
}

/// Registers the schedule's pg_cron job; returns its jobid.
pub fn register(name: &str, expression: &str, active: bool) -> Result<i64, Error> {
    let user = crate::jobs::current_user();
    let job_name = format!("{JOB_PREFIX}{name}");
    let r = try_subtransaction(|| {
        owner::get_one::<i64>(
            "SELECT cron.schedule_in_database($1, $2,
                    pg_catalog.format('SELECT tenant_ops.trigger_schedule(%L)', $3::pg_catalog.text),
                    pg_catalog.current_database()::pg_catalog.text, $4, $5)",
            &[
                job_name.as_str().into(),
                expression.into(),
                name.into(),
                user.as_str().into(),
                active.into(),
            ],
        )
    });
    match r {
        Ok(Ok(Some(id))) => Ok(id),
        Ok(Ok(None)) => Err(refused("register", "no job id".into())),
        Ok(Err(e)) => Err(refused("register", e.to_string())),
        Err(caught) => Err(refused("register", caught.message)),
    }
}

/// A new expression or enabled for the schedule's pg_cron job.
pub fn alter(job: i64, expression: &str, active: bool) -> Result<(), Error> {
    let r = try_subtransaction(|| {
        owner::execute(
            "SELECT cron.alter_job(job_id => $1, schedule => $2, active => $3)",
            &[job.into(), expression.into(), active.into()],
        )
    });
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(refused("change", e.to_string())),
        Err(caught) => Err(refused("change", caught.message)),
    }
}

/// Removes the schedule's pg_cron job (gone already is fine).
pub fn unregister(job: i64) -> Result<(), Error> {
    if !installed() {
        return Ok(());
    }
    let r = try_subtransaction(|| {
        owner::execute(
            "SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobid = $1",
            &[job.into()],
        )
    });
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(refused("remove", e.to_string())),
        Err(caught) => Err(refused("remove", caught.message)),
    }
}
