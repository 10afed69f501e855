//! Errors a user can provoke: each with its own SQLSTATE, a message that names the culprit,
//! and a DETAIL and HINT where they help.
//!
//! The framework: a [`Report`] is what a user sees (SQLSTATE, message, DETAIL, HINT); a
//! [`UserError`] makes one, each variant's whole report in one match arm. Every domain module
//! has its own error type (`scope::Error`, `jobs::Error`, `integrity::Error`); errors that
//! several domains raise alike are [`Common`]. Domain code returns `Result`; the
//! `#[pg_extern]` layer in `api/` raises with [`OrRaise::or_raise`], so that no error ever
//! reaches a user as the generic SQLSTATE 22000 that pgrx gives to a plain `Result::Err`.
//!
//! [`OpsError`] is transitional: the error of `migrate/` until it gets its own type, and what
//! the job machinery carries from any kind's steps (any [`UserError`] converts into it).

use std::fmt;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// What a user sees of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub sqlstate: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Report {
    pub fn new(sqlstate: PgSqlErrorCode, message: impl Into<String>) -> Report {
        Report {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<Option<String>>) -> Report {
        self.detail = detail.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<Option<String>>) -> Report {
        self.hint = hint.into();
        self
    }

    /// Several problems found at once (a dry run reports them all): reported as the first,
    /// with the others' messages in DETAIL.
    pub fn many(mut all: Vec<Report>) -> Report {
        let first = all.remove(0);
        if all.is_empty() {
            return first;
        }
        let message = format!("{} (and {} more problem(s))", first.message, all.len());
        let also: Vec<String> = all.iter().map(|r| format!("Also: {}", r.message)).collect();
        Report::new(first.sqlstate, message)
            .detail(also.join("\n"))
            .hint(first.hint)
    }

    /// Raises this report as a PostgreSQL ERROR. Never returns.
    #[track_caller]
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate, self.message, "pg_tenant_ops");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

/// An error a user can provoke: its whole [`Report`], written in one place per variant.
pub trait UserError {
    fn report(&self) -> Report;

    /// Raises this error as a PostgreSQL ERROR (the `api/` layer only). Never returns.
    #[track_caller]
    fn raise(&self) -> ! {
        self.report().raise()
    }
}

impl UserError for Report {
    fn report(&self) -> Report {
        self.clone()
    }
}

/// `Display` (the report's message) and `std::error::Error` for a [`UserError`] type.
macro_rules! user_error_display {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::error::UserError::report(self).message)
            }
        }
        impl std::error::Error for $t {}
    };
}
pub(crate) use user_error_display;

user_error_display!(Report);

/// Errors that several domains raise alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Common {
    NullArgument(&'static str),
    UnknownSchema(String),
    InvalidOption(String, Option<String>),
    InvalidParameter(String, Option<String>),
    InsufficientPrivilege(String, Option<String>),
    FeatureNotSupported(String, Option<String>),
    DatatypeMismatch {
        message: String,
        hint: Option<String>,
    },
    InvalidDefinition {
        message: String,
        hint: Option<String>,
    },
    ForeignKeyViolation {
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    NotNullViolation {
        message: String,
        hint: Option<String>,
    },
}

impl UserError for Common {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Common::NullArgument(argument) => Report::new(
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
                format!("argument \"{argument}\" must not be NULL"),
            ),
            Common::UnknownSchema(name) => Report::new(
                ERRCODE_INVALID_SCHEMA_NAME,
                format!("schema \"{name}\" does not exist"),
            ),
            Common::InvalidOption(message, hint) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid options: {message}"),
            )
            .hint(hint.clone()),
            Common::InvalidParameter(message, hint) => {
                Report::new(ERRCODE_INVALID_PARAMETER_VALUE, message).hint(hint.clone())
            }
            Common::InsufficientPrivilege(message, hint) => {
                Report::new(ERRCODE_INSUFFICIENT_PRIVILEGE, message).hint(hint.clone())
            }
            Common::FeatureNotSupported(message, hint) => {
                Report::new(ERRCODE_FEATURE_NOT_SUPPORTED, message).hint(hint.clone())
            }
            Common::DatatypeMismatch { message, hint } => {
                Report::new(ERRCODE_DATATYPE_MISMATCH, message).hint(hint.clone())
            }
            Common::InvalidDefinition { message, hint } => {
                Report::new(ERRCODE_INVALID_OBJECT_DEFINITION, message).hint(hint.clone())
            }
            Common::ForeignKeyViolation {
                message,
                detail,
                hint,
            } => Report::new(ERRCODE_FOREIGN_KEY_VIOLATION, message)
                .detail(detail.clone())
                .hint(hint.clone()),
            Common::NotNullViolation { message, hint } => {
                Report::new(ERRCODE_NOT_NULL_VIOLATION, message).hint(hint.clone())
            }
        }
    }
}

user_error_display!(Common);

/// `result.or_raise()`: the value, or the error raised as a PostgreSQL ERROR.
pub trait OrRaise<T> {
    #[track_caller]
    fn or_raise(self) -> T;
}

impl<T, E: UserError> OrRaise<T> for Result<T, E> {
    #[track_caller]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.report().raise(),
        }
    }
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

/// SPI failures are bugs in our SQL or a broken catalog, not user errors: they are not a
/// [`UserError`] of any domain, and are raised where they happen (domain code included) as
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

/// Transitional (issue 10): the error of `migrate/` until it has its own type, and what the job
/// machinery (`jobs::JobKind`, `jobs::executor`) carries from any kind. Any [`UserError`]
/// converts into it ([`OpsError::Reported`]), so `?` works across domains. The variants are
/// the ones `migrate/` builds: those whose wording now lives in another domain's type delegate
/// to it; the rest are migrate's own and move to `migrate::Error` with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpsError {
    /// Any other domain's error, as reported.
    Reported(Report),

    // Delegating to `Common`.
    InvalidOption(String, Option<String>),
    InsufficientPrivilege(String, Option<String>),
    UnknownSchema(String),
    DatatypeMismatch {
        message: String,
        hint: Option<String>,
    },
    InvalidDefinition {
        message: String,
        hint: Option<String>,
    },
    ForeignKeyViolation {
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    NotNullViolation {
        message: String,
        hint: Option<String>,
    },

    // Delegating to `scope::Error` and `jobs::Error`.
    UnknownColumn {
        table: String,
        column: String,
        context: String,
    },
    JobState {
        job: i64,
        status: String,
        action: &'static str,
        hint: Option<String>,
    },
    WrongJob {
        message: String,
        hint: Option<String>,
    },
    StepFailed {
        job: i64,
        sqlstate: PgSqlErrorCode,
        message: String,
    },

    // Migrate's own.
    JobBusy {
        scope: String,
        tenant: String,
        job: i64,
    },
    MissingTarget {
        target: String,
        from: String,
        hint: String,
    },
    UniqueViolation {
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    VerificationFailed {
        message: String,
        detail: Option<String>,
    },
    RowFailed {
        sqlstate: PgSqlErrorCode,
        message: String,
        detail: String,
        hint: Option<String>,
    },
    /// Several problems found at once: see [`Report::many`].
    Many(Vec<OpsError>),
}

impl<E: UserError> From<E> for OpsError {
    fn from(e: E) -> OpsError {
        OpsError::Reported(e.report())
    }
}

impl OpsError {
    pub fn report(&self) -> Report {
        use crate::jobs::Error as Jobs;
        use crate::scope::Error as Scope;
        use PgSqlErrorCode::*;
        match self {
            OpsError::Reported(report) => report.clone(),
            OpsError::InvalidOption(m, h) => Common::InvalidOption(m.clone(), h.clone()).report(),
            OpsError::InsufficientPrivilege(m, h) => {
                Common::InsufficientPrivilege(m.clone(), h.clone()).report()
            }
            OpsError::UnknownSchema(name) => Common::UnknownSchema(name.clone()).report(),
            OpsError::DatatypeMismatch { message, hint } => Common::DatatypeMismatch {
                message: message.clone(),
                hint: hint.clone(),
            }
            .report(),
            OpsError::InvalidDefinition { message, hint } => Common::InvalidDefinition {
                message: message.clone(),
                hint: hint.clone(),
            }
            .report(),
            OpsError::ForeignKeyViolation {
                message,
                detail,
                hint,
            } => Common::ForeignKeyViolation {
                message: message.clone(),
                detail: detail.clone(),
                hint: hint.clone(),
            }
            .report(),
            OpsError::NotNullViolation { message, hint } => Common::NotNullViolation {
                message: message.clone(),
                hint: hint.clone(),
            }
            .report(),
            OpsError::UnknownColumn {
                table,
                column,
                context,
            } => Scope::UnknownColumn {
                table: table.clone(),
                column: column.clone(),
                context: context.clone(),
            }
            .report(),
            OpsError::JobState {
                job,
                status,
                action,
                hint,
            } => Jobs::State {
                job: *job,
                status: status.clone(),
                action,
                hint: hint.clone(),
            }
            .report(),
            OpsError::WrongJob { message, hint } => Jobs::Wrong {
                message: message.clone(),
                hint: hint.clone(),
            }
            .report(),
            OpsError::StepFailed {
                job,
                sqlstate,
                message,
            } => Jobs::StepFailed {
                job: *job,
                sqlstate: *sqlstate,
                message: message.clone(),
            }
            .report(),
            OpsError::JobBusy { scope, tenant, job } => {
                let (holder, hint) = if *job >= 0 {
                    (
                        format!("job {job}"),
                        format!("Let job {job} finish (CALL tenant_ops.run_job({job}) resumes it), or roll it back."),
                    )
                } else {
                    (
                        format!("an uncommitted job of the session with pid {}", -job),
                        "Wait for that session's transaction to end.".into(),
                    )
                };
                Report::new(
                    ERRCODE_LOCK_NOT_AVAILABLE,
                    format!("tenant \"{tenant}\" of scope \"{scope}\" is already being migrated by {holder}"),
                )
                .hint(hint)
            }
            OpsError::MissingTarget { target, from, hint } => Report::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("target table {target} for {from} does not exist"),
            )
            .hint(hint.clone()),
            OpsError::UniqueViolation {
                message,
                detail,
                hint,
            } => Report::new(ERRCODE_UNIQUE_VIOLATION, message)
                .detail(detail.clone())
                .hint(hint.clone()),
            OpsError::VerificationFailed { message, detail } => {
                Report::new(ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION, message).detail(detail.clone())
            }
            OpsError::RowFailed {
                sqlstate,
                message,
                detail,
                hint,
            } => Report::new(*sqlstate, message)
                .detail(detail.clone())
                .hint(hint.clone()),
            OpsError::Many(all) => Report::many(all.iter().map(OpsError::report).collect()),
        }
    }

    /// The SQLSTATE this error is reported with.
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        self.report().sqlstate
    }

    pub fn detail(&self) -> Option<String> {
        self.report().detail
    }

    pub fn hint(&self) -> Option<String> {
        self.report().hint
    }

    /// Raises this error as a PostgreSQL ERROR. Never returns.
    #[track_caller]
    pub fn raise(self) -> ! {
        self.report().raise()
    }
}

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report().message)
    }
}

impl std::error::Error for OpsError {}

pub type OpsResult<T> = Result<T, OpsError>;
