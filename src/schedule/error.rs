//! What can be wrong with a schedule a user defines, changes or names.

use pgrx::PgSqlErrorCode;

use super::cron::CronProblem;
use super::{OPERATIONS, SCHEDULE_KEYS};
use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The `cron` argument does not parse.
    BadCron {
        cron: String,
        problem: CronProblem,
    },
    /// A time zone the IANA database does not have; `source` says where it was given
    /// (`params.timezone` or the setting `tenant_ops.timezone`).
    UnknownZone {
        zone: String,
        source: &'static str,
    },
    UnknownOperation(String),
    /// A key of `params` the operation does not take.
    UnknownParam {
        operation: String,
        key: String,
        accepted: Vec<&'static str>,
    },
    /// A key the operation takes, with a value of the wrong kind (or missing).
    BadParam {
        key: String,
        message: String,
        hint: Option<String>,
    },
    Duplicate(String),
    UnknownSchedule(String),
    /// A schedule that never fires: its expression has no next time.
    NeverFires(String),
    /// pg_cron is asked for but not installed, or refused the schedule.
    PgCron {
        message: String,
        hint: Option<String>,
    },
    /// What the operation itself refused in a trial submission (its own SQLSTATE).
    Operation(Report),
    Jobs(crate::jobs::Error),
    Common(Common),
}

wraps!(Error {
    Jobs(crate::jobs::Error),
    Common(Common),
});

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::BadCron { cron, problem } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid cron expression \"{cron}\" (argument \"cron\"): {problem}"),
            )
            .hint(
                "Five fields \"minute hour day-of-month month day-of-week\" (or six with a leading seconds field), or @yearly, @monthly, @weekly, @daily, @hourly; for example '30 2 * * *'."
                    .to_string(),
            ),
            Error::UnknownZone { zone, source } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown time zone \"{zone}\" ({source})"),
            )
            .hint("A zone of the IANA time zone database, such as 'UTC' or 'Europe/Oslo' (see pg_timezone_names).".to_string()),
            Error::UnknownOperation(op) => Report::new(
                ERRCODE_UNDEFINED_FUNCTION,
                format!("unknown operation \"{op}\" (argument \"operation\")"),
            )
            .hint(format!("The operations are: {}.", OPERATIONS.join(", "))),
            Error::UnknownParam {
                operation,
                key,
                accepted,
            } => Report::new(
                ERRCODE_UNDEFINED_PARAMETER,
                format!("operation \"{operation}\" does not accept the parameter \"{key}\""),
            )
            .hint(format!(
                "It accepts: {}; every schedule also takes {}.",
                if accepted.is_empty() {
                    "nothing of its own".to_string()
                } else {
                    accepted.join(", ")
                },
                SCHEDULE_KEYS.join(", ")
            )),
            Error::BadParam { key, message, hint } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("parameter \"{key}\": {message}"),
            )
            .hint(hint.clone()),
            Error::Duplicate(name) => Report::new(
                ERRCODE_DUPLICATE_OBJECT,
                format!("schedule \"{name}\" already exists"),
            )
            .hint(format!(
                "Choose another name, or change it with tenant_ops.alter_schedule('{name}', ...)."
            )),
            Error::UnknownSchedule(name) => Report::new(
                ERRCODE_UNDEFINED_OBJECT,
                format!("schedule \"{name}\" does not exist"),
            )
            .hint("SELECT name FROM tenant_ops.schedules lists the schedules.".to_string()),
            Error::NeverFires(cron) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("cron expression \"{cron}\" (argument \"cron\") never fires"),
            ),
            Error::PgCron { message, hint } => {
                Report::new(ERRCODE_FEATURE_NOT_SUPPORTED, message.clone()).hint(hint.clone())
            }
            Error::Operation(r) => r.clone(),
            Error::Jobs(e) => e.report(),
            Error::Common(e) => e.report(),
        }
    }
}

user_error_display!(Error);
