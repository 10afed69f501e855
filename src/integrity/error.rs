//! What can be wrong with a validation or repair call.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NothingToRepair(i64),
    NothingToRestore(i64),
    Scope(crate::scope::Error),
    Jobs(crate::jobs::Error),
    Common(Common),
}

wraps!(Error {
    Scope(crate::scope::Error),
    Jobs(crate::jobs::Error),
    Common(Common),
});

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::NothingToRepair(job) => Report::new(
                ERRCODE_NO_DATA_FOUND,
                format!("validation job {job} found nothing to repair"),
            ),
            Error::NothingToRestore(job) => Report::new(
                ERRCODE_NO_DATA_FOUND,
                format!("repair {job} has no quarantined rows left to restore"),
            ),
            Error::Scope(e) => e.report(),
            Error::Jobs(e) => e.report(),
            Error::Common(e) => e.report(),
        }
    }
}

user_error_display!(Error);
