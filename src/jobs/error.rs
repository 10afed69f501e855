//! What can be wrong with a job a user names.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    UnknownJob(i64),
    /// The job's status does not allow `action`.
    State {
        job: i64,
        status: String,
        action: &'static str,
        hint: Option<String>,
    },
    /// A job of another kind than the call works on: `noun` names the kind it works on ("a
    /// migration"), `hint` says what the call does.
    OtherKind {
        job: i64,
        kind: String,
        noun: &'static str,
        hint: &'static str,
    },
    /// A kind this version cannot run, or another mismatch of job and call.
    Wrong {
        message: String,
        hint: Option<String>,
    },
    /// A step failed with a PostgreSQL ERROR (caught in its subtransaction).
    StepFailed {
        job: i64,
        sqlstate: PgSqlErrorCode,
        message: String,
    },
}

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::UnknownJob(job) => Report::new(
                ERRCODE_UNDEFINED_OBJECT,
                format!("job {job} does not exist"),
            )
            .hint("SELECT id, kind, status FROM tenant_ops.jobs lists the jobs.".to_string()),
            Error::State {
                job,
                status,
                action,
                hint,
            } => Report::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("job {job} is {status}: it cannot {action}"),
            )
            .hint(hint.clone()),
            Error::OtherKind {
                job,
                kind,
                noun,
                hint,
            } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("job {job} is a {kind} job, not {noun}"),
            )
            .hint(hint.to_string()),
            Error::Wrong { message, hint } => {
                Report::new(ERRCODE_INVALID_PARAMETER_VALUE, message).hint(hint.clone())
            }
            Error::StepFailed {
                job,
                sqlstate,
                message,
            } => Report::new(*sqlstate, format!("job {job} failed: {message}")),
        }
    }
}

user_error_display!(Error);
