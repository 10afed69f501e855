//! Defining schedules: `schedule_operation`, `alter_schedule`, `unschedule` on
//! `tenant_ops.schedule`. Everything is checked before anything is written: the expression,
//! the zone, the operation and its params (by a trial submission of one run, as the caller
//! and rolled back, so that an unknown scope or a bad option is refused now, not at 2 a.m.).

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::cron::{self, Timetable};
use super::error::Error;
use super::params::{self, Engine, Operation, Params};
use super::{from_us, row_json, to_us, Schedule};
use crate::error::{Common, OrRaise, Report};
use crate::sys::{owner, rolled_back_subtransaction};

type Result<T> = std::result::Result<T, Error>;

/// Only members of tenant_ops_admin (and superusers) manage schedules.
pub fn require_admin() -> Result<()> {
    Ok(crate::pg::require_role(
        "tenant_ops_admin",
        "manage schedules",
    )?)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Common::InvalidParameter(
            format!("invalid schedule name \"{name}\": it must have 1 to 200 characters"),
            None,
        )
        .into());
    }
    Ok(())
}

/// The expression parsed, or 22023 naming it.
fn parse_cron(expression: &str) -> Result<croner::Cron> {
    cron::parse(expression).map_err(|problem| Error::BadCron {
        cron: expression.into(),
        problem,
    })
}

/// The zone a schedule with these params evaluates in: `params.timezone`, else the setting.
fn zone_of(p: &Params) -> Result<(String, jiff::tz::TimeZone)> {
    let (name, source) = match &p.timezone {
        Some(z) => (z.clone(), "params.timezone"),
        None => (crate::gucs::timezone(), "setting tenant_ops.timezone"),
    };
    match cron::zone(&name) {
        Some(z) => Ok((name, z)),
        None => Err(Error::UnknownZone { zone: name, source }),
    }
}

/// One run submitted as the caller and rolled back: whatever the operation would refuse —
/// but an import's file that is not there yet (a feed that arrives before each run: a run
/// without it fails, and the schedule's health says so).
fn trial(operation: Operation, p: &Params) -> Result<()> {
    match rolled_back_subtransaction(|| params::submit(operation, &p.args)) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(report))
            if operation == Operation::Import
                && report.sqlstate == pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_FILE =>
        {
            Ok(())
        }
        Ok(Err(report)) => Err(Error::Operation(report)),
        Err(caught) => Err(Error::Operation(Report::new(
            caught.sqlstate,
            caught.message,
        ))),
    }
}

/// The first firing after now, or 22023 for an expression that never fires.
fn first_after_now(expression: &str, t: &Timetable) -> Result<i64> {
    t.next_after(jiff::Timestamp::now())
        .map(to_us)
        .ok_or_else(|| Error::NeverFires(expression.into()))
}

/// The schedule of that name, locked for the rest of the transaction (as the owner: the
/// caller may only read the table).
pub fn load_for_update(name: &str) -> Result<Schedule> {
    owner::get_one::<JsonB>(
        concat!(
            "SELECT ",
            row_json!(),
            " FROM tenant_ops.schedule s WHERE s.name = $1 FOR UPDATE"
        ),
        &[name.into()],
    )
    .or_raise()
    .map(|j| Schedule::from_json(j.0))
    .ok_or_else(|| Error::UnknownSchedule(name.into()))
}

/// `schedule_operation`: checks everything, stores the schedule, registers it with pg_cron
/// when asked, and wakes the scheduler when the transaction commits. Returns its id.
pub fn create(name: &str, expression: &str, operation: &str, raw: &Value) -> Result<i64> {
    require_admin()?;
    check_name(name)?;
    let operation = Operation::parse(operation)?;
    let c = parse_cron(expression)?;
    let p = Params::parse(operation, raw)?;
    let (zone_name, zone) = zone_of(&p)?;
    if p.engine == Engine::PgCron {
        super::pg_cron::check(expression, &p)?;
    }
    let taken = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM tenant_ops.schedule WHERE name = $1)",
        &[name.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if taken {
        return Err(Error::Duplicate(name.into()));
    }
    trial(operation, &p)?;
    let next = first_after_now(expression, &Timetable::new(c, zone))?;
    let caller = crate::jobs::current_user();
    let id = owner::get_one::<i64>(
        "INSERT INTO tenant_ops.schedule (name, cron, operation, params, owner, time_zone, overlap, catch_up,
                                          alert_after, engine, next_run)
         VALUES ($1, $2, $3, $4, $5::name, $6, $7, $8, $9, $10, pg_catalog.to_timestamp($11::float8 / 1000000))
         ON CONFLICT (name) DO NOTHING
         RETURNING id",
        &[
            name.into(),
            expression.into(),
            operation.name().into(),
            JsonB(raw.clone()).into(),
            caller.into(),
            zone_name.into(),
            p.overlap.as_str().into(),
            p.catch_up.as_str().into(),
            p.alert_after.into(),
            p.engine.as_str().into(),
            next.into(),
        ],
    )
    .or_raise()
    .ok_or_else(|| Error::Duplicate(name.into()))?;
    if p.engine == Engine::PgCron {
        let job = super::pg_cron::register(name, expression, true)?;
        set_cron_job(id, Some(job));
    }
    crate::worker::wake_scheduler_after_commit();
    Ok(id)
}

fn set_cron_job(id: i64, job: Option<i64>) {
    owner::execute(
        "UPDATE tenant_ops.schedule SET cron_job_id = $2 WHERE id = $1",
        &[id.into(), job.into()],
    )
    .or_raise();
}

/// `alter_schedule`: a new expression, new params (which replace the old ones) and/or
/// enabled; the next firing is computed afresh from now. Returns the schedule as it is now.
pub fn alter(
    name: &str,
    expression: Option<&str>,
    raw: Option<&Value>,
    enabled: Option<bool>,
) -> Result<Value> {
    require_admin()?;
    let s = load_for_update(name)?;
    let expression = expression.unwrap_or(&s.cron).to_string();
    let c = parse_cron(&expression)?;
    let raw = raw.cloned().unwrap_or_else(|| s.raw_params.clone());
    let p = Params::parse(s.operation, &raw)?;
    let (zone_name, zone) = match (&p.timezone, raw != s.raw_params) {
        // Params unchanged and without a zone: the zone the schedule was made with stays.
        (None, false) => (
            s.time_zone.clone(),
            cron::zone(&s.time_zone).unwrap_or(jiff::tz::TimeZone::UTC),
        ),
        _ => zone_of(&p)?,
    };
    if p.engine == Engine::PgCron {
        super::pg_cron::check(&expression, &p)?;
    }
    if raw != s.raw_params {
        trial(s.operation, &p)?;
    }
    let enabled = enabled.unwrap_or(s.enabled);
    let next = first_after_now(&expression, &Timetable::new(c, zone))?;
    owner::execute(
        "UPDATE tenant_ops.schedule
            SET cron = $2, params = $3, time_zone = $4, overlap = $5, catch_up = $6, alert_after = $7,
                engine = $8, enabled = $9, next_run = pg_catalog.to_timestamp($10::float8 / 1000000),
                pending = pending AND $9, updated_at = pg_catalog.clock_timestamp()
          WHERE id = $1",
        &[
            s.id.into(),
            expression.as_str().into(),
            JsonB(raw.clone()).into(),
            zone_name.as_str().into(),
            p.overlap.as_str().into(),
            p.catch_up.as_str().into(),
            p.alert_after.into(),
            p.engine.as_str().into(),
            enabled.into(),
            next.into(),
        ],
    )
    .or_raise();
    if !enabled {
        // A run that waited behind the last one (overlap "queue") does not come any more.
        owner::execute(
            "UPDATE tenant_ops.schedule_runs SET outcome = 'skipped', finished_at = pg_catalog.clock_timestamp(),
                    error = 'the schedule was disabled while this run waited'
              WHERE schedule_id = $1 AND outcome = 'waiting'",
            &[s.id.into()],
        )
        .or_raise();
    }
    // pg_cron's job follows: registered, changed or removed.
    match (s.params.engine, p.engine, s.cron_job_id) {
        (_, Engine::PgCron, Some(job)) => super::pg_cron::alter(job, &expression, enabled)?,
        (_, Engine::PgCron, None) => {
            let job = super::pg_cron::register(name, &expression, enabled)?;
            set_cron_job(s.id, Some(job));
        }
        (_, Engine::Builtin, Some(job)) => {
            super::pg_cron::unregister(job)?;
            set_cron_job(s.id, None);
        }
        (_, Engine::Builtin, None) => {}
    }
    crate::worker::wake_scheduler_after_commit();
    Ok(serde_json::json!({
        "name": name,
        "cron": expression,
        "params": raw,
        "enabled": enabled,
        "time_zone": zone_name,
        "next_run": from_us(next).to_string(),
    }))
}

/// `unschedule`: the schedule goes (with its history), and its pg_cron job with it.
pub fn drop(name: &str) -> Result<()> {
    require_admin()?;
    let s = load_for_update(name)?;
    if let Some(job) = s.cron_job_id {
        super::pg_cron::unregister(job)?;
    }
    owner::execute(
        "DELETE FROM tenant_ops.schedule WHERE id = $1",
        &[s.id.into()],
    )
    .or_raise();
    crate::worker::wake_scheduler_after_commit();
    Ok(())
}
