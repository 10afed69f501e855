//! Every error a user can provoke, each mapped to its own SQLSTATE, a message that names the
//! culprit, and a HINT where one helps.
//!
//! Domain code returns `Result<_, OpsError>`; the `#[pg_extern]` layer calls [`OpsError::raise`]
//! (through [`OrRaise`]) so that no error ever reaches a user as the generic SQLSTATE 22000 that
//! pgrx gives to a plain `Result::Err`.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// The ways a pg_tenant_ops call can fail on bad input or a bad database state.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OpsError {
    #[error("argument \"{0}\" must not be NULL")]
    NullArgument(&'static str),

    #[error("scope \"{0}\" does not exist")]
    UnknownScope(String),

    #[error("scope \"{0}\" already exists")]
    ScopeExists(String),

    #[error("invalid scope name {0:?}: {1}")]
    InvalidScopeName(String, &'static str),

    #[error("column \"{column}\" does not exist in table {table}")]
    UnknownColumn {
        table: String,
        column: String,
        context: String,
    },

    #[error("table \"{name}\" named in {context} does not exist")]
    UnknownTable { name: String, context: String },

    #[error("{relation} is not a table")]
    NotATable { relation: String, context: String },

    #[error("{what} \"{name}\" named in {context} does not exist")]
    UnknownObject {
        what: &'static str,
        name: String,
        context: String,
        hint: Option<String>,
    },

    #[error("invalid options: {0}")]
    InvalidOption(String, Option<String>),

    #[error("{0}")]
    InvalidParameter(String, Option<String>),

    #[error("{message}")]
    DatatypeMismatch {
        message: String,
        hint: Option<String>,
    },

    #[error("tenant value \"{value}\" is not a valid {type_name} (the type of {table}.{column})")]
    BadTenantValue {
        value: String,
        type_name: String,
        table: String,
        column: String,
    },

    #[error("tenant \"{tenant}\" does not exist in scope \"{scope}\"")]
    UnknownTenant {
        tenant: String,
        scope: String,
        table: String,
        column: String,
    },

    #[error(
        "ambiguous ownership: table {table} has {count} equally near ownership paths: {candidates}"
    )]
    AmbiguousOwnership {
        table: String,
        count: usize,
        candidates: String,
        also: Vec<String>,
        hint: String,
    },

    #[error("{message}")]
    InvalidDefinition {
        message: String,
        hint: Option<String>,
    },

    #[error("job {0} does not exist")]
    UnknownJob(i64),

    #[error("backup {0} does not exist")]
    UnknownBackup(i64),

    #[error("job {job} is {status}: it cannot {action}")]
    JobState {
        job: i64,
        status: String,
        action: &'static str,
        hint: Option<String>,
    },

    #[error("{message}")]
    WrongJob {
        message: String,
        hint: Option<String>,
    },

    #[error("tenant \"{tenant}\" of scope \"{scope}\" is already being migrated by {}", holder(*job))]
    JobBusy {
        scope: String,
        tenant: String,
        job: i64,
    },

    #[error("schema \"{0}\" does not exist")]
    UnknownSchema(String),

    #[error("validation job {0} found nothing to repair")]
    NothingToRepair(i64),

    #[error("repair {0} has no quarantined rows left to restore")]
    NothingToRestore(i64),

    #[error("target table {target} for {from} does not exist")]
    MissingTarget {
        target: String,
        from: String,
        hint: String,
    },

    #[error("{message}")]
    ForeignKeyViolation {
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },

    #[error("{message}")]
    UniqueViolation {
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },

    #[error("{message}")]
    NotNullViolation {
        message: String,
        hint: Option<String>,
    },

    #[error("{message}")]
    VerificationFailed {
        message: String,
        detail: Option<String>,
    },

    #[error("job {job} failed: {message}")]
    StepFailed {
        job: i64,
        sqlstate: PgSqlErrorCode,
        message: String,
    },

    #[error("{message}")]
    RowFailed {
        sqlstate: PgSqlErrorCode,
        message: String,
        detail: String,
        hint: Option<String>,
    },

    #[error("{0}")]
    InsufficientPrivilege(String, Option<String>),

    #[error("{0}")]
    FeatureNotSupported(String, Option<String>),

    /// A file could not be read or written (a full disk is 53100, anything else 58030).
    #[error("{message}")]
    Io { message: String, disk_full: bool },

    /// A backup file that is not what it claims (checksum, manifest, contents).
    #[error("{message}")]
    CorruptBackup {
        message: String,
        detail: Option<String>,
    },

    /// Several problems found at once (a dry run reports them all): raised as the first,
    /// with the others in DETAIL.
    #[error("{}{}", .0[0], if .0.len() > 1 { format!(" (and {} more problem(s))", .0.len() - 1) } else { String::new() })]
    Many(Vec<OpsError>),
}

/// A busy tenant's holder: a committed job (positive id) or another session's uncommitted
/// one (negated backend pid).
fn holder(job: i64) -> String {
    if job >= 0 {
        format!("job {job}")
    } else {
        format!("an uncommitted job of the session with pid {}", -job)
    }
}

impl OpsError {
    /// The SQLSTATE this error is reported with.
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            OpsError::NullArgument(_) => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            OpsError::UnknownScope(_) => ERRCODE_UNDEFINED_OBJECT,
            OpsError::ScopeExists(_) => ERRCODE_DUPLICATE_OBJECT,
            OpsError::InvalidScopeName(..) => ERRCODE_INVALID_PARAMETER_VALUE,
            OpsError::UnknownColumn { .. } => ERRCODE_UNDEFINED_COLUMN,
            OpsError::UnknownTable { .. } => ERRCODE_UNDEFINED_TABLE,
            OpsError::NotATable { .. } => ERRCODE_WRONG_OBJECT_TYPE,
            OpsError::UnknownObject { .. } => ERRCODE_UNDEFINED_OBJECT,
            OpsError::InvalidOption(..) => ERRCODE_INVALID_PARAMETER_VALUE,
            OpsError::InvalidParameter(..) => ERRCODE_INVALID_PARAMETER_VALUE,
            OpsError::DatatypeMismatch { .. } => ERRCODE_DATATYPE_MISMATCH,
            OpsError::BadTenantValue { .. } => ERRCODE_INVALID_TEXT_REPRESENTATION,
            OpsError::UnknownTenant { .. } => ERRCODE_NO_DATA_FOUND,
            OpsError::AmbiguousOwnership { .. } => ERRCODE_INVALID_OBJECT_DEFINITION,
            OpsError::InvalidDefinition { .. } => ERRCODE_INVALID_OBJECT_DEFINITION,
            OpsError::UnknownJob(_) | OpsError::UnknownBackup(_) => ERRCODE_UNDEFINED_OBJECT,
            OpsError::JobState { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            OpsError::WrongJob { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            OpsError::JobBusy { .. } => ERRCODE_LOCK_NOT_AVAILABLE,
            OpsError::UnknownSchema(_) => ERRCODE_INVALID_SCHEMA_NAME,
            OpsError::NothingToRepair(_) | OpsError::NothingToRestore(_) => ERRCODE_NO_DATA_FOUND,
            OpsError::MissingTarget { .. } => ERRCODE_UNDEFINED_TABLE,
            OpsError::ForeignKeyViolation { .. } => ERRCODE_FOREIGN_KEY_VIOLATION,
            OpsError::UniqueViolation { .. } => ERRCODE_UNIQUE_VIOLATION,
            OpsError::NotNullViolation { .. } => ERRCODE_NOT_NULL_VIOLATION,
            OpsError::VerificationFailed { .. } => ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            OpsError::StepFailed { sqlstate, .. } => *sqlstate,
            OpsError::RowFailed { sqlstate, .. } => *sqlstate,
            OpsError::InsufficientPrivilege(..) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            OpsError::FeatureNotSupported(..) => ERRCODE_FEATURE_NOT_SUPPORTED,
            OpsError::Io {
                disk_full: true, ..
            } => ERRCODE_DISK_FULL,
            OpsError::Io { .. } => ERRCODE_IO_ERROR,
            OpsError::CorruptBackup { .. } => ERRCODE_DATA_CORRUPTED,
            OpsError::Many(all) => all[0].sqlstate(),
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            OpsError::UnknownColumn { context, .. } if !context.is_empty() => {
                Some(format!("The column is named in {context}."))
            }
            OpsError::NotATable { context, .. } => Some(format!("It is named in {context}.")),
            OpsError::AmbiguousOwnership { also, .. } if !also.is_empty() => {
                Some(format!("Also ambiguous: {}.", also.join("; ")))
            }
            OpsError::UnknownTenant { table, column, .. } => Some(format!(
                "No row of {table} has {column} equal to that value."
            )),
            OpsError::ForeignKeyViolation { detail, .. }
            | OpsError::UniqueViolation { detail, .. }
            | OpsError::VerificationFailed { detail, .. }
            | OpsError::CorruptBackup { detail, .. } => detail.clone(),
            OpsError::RowFailed { detail, .. } => Some(detail.clone()),
            OpsError::Many(all) if all.len() > 1 => Some(
                all[1..]
                    .iter()
                    .map(|e| format!("Also: {e}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            OpsError::Many(all) => all[0].detail(),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            OpsError::UnknownScope(_) => {
                Some("SELECT name FROM tenant_ops.scopes lists the scopes that exist.".into())
            }
            OpsError::ScopeExists(name) => Some(format!(
                "Choose another name, or drop the existing scope first with tenant_ops.drop_scope('{}').",
                name.replace('\'', "''")
            )),
            OpsError::UnknownTable { .. } => Some(
                "Name tables as they would be written in SQL (schema-qualified where they are not on the search_path)."
                    .into(),
            ),
            OpsError::UnknownObject { hint, .. } => hint.clone(),
            OpsError::InvalidOption(_, hint) | OpsError::InvalidParameter(_, hint) => hint.clone(),
            OpsError::DatatypeMismatch { hint, .. } => hint.clone(),
            OpsError::InvalidDefinition { hint, .. } => hint.clone(),
            OpsError::AmbiguousOwnership { hint, .. } => Some(hint.clone()),
            OpsError::MissingTarget { hint, .. } => Some(hint.clone()),
            OpsError::UnknownJob(_) => Some("SELECT id, kind, status FROM tenant_ops.jobs lists the jobs.".into()),
            OpsError::UnknownBackup(_) => Some("SELECT id, scope, tenant, created_at FROM tenant_ops.backups lists the backups.".into()),
            OpsError::JobState { hint, .. } | OpsError::WrongJob { hint, .. } => hint.clone(),
            OpsError::JobBusy { job, .. } if *job >= 0 => Some(format!(
                "Let job {job} finish (CALL tenant_ops.run_job({job}) resumes it), or roll it back."
            )),
            OpsError::JobBusy { .. } => Some("Wait for that session's transaction to end.".into()),
            OpsError::ForeignKeyViolation { hint, .. }
            | OpsError::UniqueViolation { hint, .. }
            | OpsError::NotNullViolation { hint, .. }
            | OpsError::RowFailed { hint, .. }
            | OpsError::InsufficientPrivilege(_, hint)
            | OpsError::FeatureNotSupported(_, hint) => hint.clone(),
            OpsError::Many(all) => all[0].hint(),
            _ => None,
        }
    }

    /// Raises this error as a PostgreSQL ERROR. Never returns.
    #[track_caller]
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_tenant_ops");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

/// `result.or_raise()`: the value, or the error raised as a PostgreSQL ERROR.
pub trait OrRaise<T> {
    #[track_caller]
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, OpsError> {
    #[track_caller]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}

/// Reports a failure that is the extension's fault or a broken database, not the user's.
#[track_caller]
pub fn internal_error(message: String) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        message,
        "pg_tenant_ops",
    )
    .report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// SPI failures are bugs in our SQL or a broken catalog, not user errors: report them as
/// internal errors with the failing context, never as a panic.
impl<T> OrRaise<T> for Result<T, pgrx::spi::Error> {
    #[track_caller]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => internal_error(format!("pg_tenant_ops: SPI failed: {e}")),
        }
    }
}

pub type OpsResult<T> = Result<T, OpsError>;
