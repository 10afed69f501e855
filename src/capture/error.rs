//! What can stop a change capture from being installed.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A captured table without a primary key: its changes could not name their row.
    NoPrimaryKey { table: String },
    /// The caller may not create triggers on a captured table.
    NoTriggerPrivilege { table: String },
}

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::NoPrimaryKey { table } => Report::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("table {table} has no primary key: its changes cannot be captured"),
            )
            .hint(
                "A change capture (an online migration, a base backup with \"capture\") names each change by the key of its row: add a primary key, or migrate with mode \"copy\" and take full backups."
                    .to_string(),
            ),
            Error::NoTriggerPrivilege { table } => Report::new(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied to capture the changes of table {table}"),
            )
            .hint(
                "A change capture (an online migration, a base backup with \"capture\") installs triggers on the tenant's tables: it needs the TRIGGER privilege on them."
                    .to_string(),
            ),
        }
    }
}

user_error_display!(Error);
