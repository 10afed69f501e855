//! Errors a user can provoke: each with its own SQLSTATE, a message that names the culprit,
//! and a DETAIL and HINT where they help.
//!
//! The framework: a [`Report`] is what a user sees (SQLSTATE, message, DETAIL, HINT); a
//! [`UserError`] makes one, each variant's whole report in one match arm. Every domain module
//! has its own error type (`scope::Error`, `jobs::Error`, `migrate::Error`, `integrity::Error`,
//! `backup::Error`); errors that several domains raise alike are [`Common`]. Domain code
//! returns `Result`; the `#[pg_extern]` layer in `api/` raises with [`OrRaise::or_raise`], so
//! that no error ever reaches a user as the generic SQLSTATE 22000 that pgrx gives to a plain
//! `Result::Err`.
//!
//! The job machinery (`crate::jobs`) knows no domain: what a kind's steps fail with reaches it
//! as a [`Report`] (every domain error converts into one with `?`), whose SQLSTATE decides
//! whether a background job is retried.
//!
//! This module depends on no other module of the extension.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// What a user sees of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub sqlstate: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The problems a report made by [`Report::many`] stands for, each as reported alone
    /// (empty for a report of one problem): see [`Report::problems`].
    pub parts: Vec<Report>,
    /// What the job wrote so far must be undone before it is marked failed (see
    /// [`Report::undo`]).
    pub undo: bool,
}

impl Report {
    pub fn new(sqlstate: PgSqlErrorCode, message: impl Into<String>) -> Report {
        Report {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
            parts: vec![],
            undo: false,
        }
    }

    /// Marks a failure after which what the job wrote so far is worthless: the committing
    /// executors revert the job (its kind's `revert`: rows deleted, created tables dropped)
    /// before marking it failed, and never retry it as it stands. (Inline, the caller's
    /// transaction is rolled back whole anyway.)
    pub fn undo(mut self) -> Report {
        self.undo = true;
        self
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
    /// with the others' messages in DETAIL; each stays available in [`Report::problems`].
    pub fn many(all: Vec<Report>) -> Report {
        let [first, others @ ..] = all.as_slice() else {
            panic!("Report::many needs at least one problem")
        };
        if others.is_empty() {
            return first.clone();
        }
        let message = format!("{} (and {} more problem(s))", first.message, others.len());
        let also: Vec<String> = others
            .iter()
            .map(|r| format!("Also: {}", r.message))
            .collect();
        let mut report = Report::new(first.sqlstate, message)
            .detail(also.join("\n"))
            .hint(first.hint.clone());
        report.undo = all.iter().any(|r| r.undo);
        report.parts = all;
        report
    }

    /// Each problem this report stands for: itself, or the ones [`Report::many`] joined.
    pub fn problems(&self) -> &[Report] {
        if self.parts.is_empty() {
            std::slice::from_ref(self)
        } else {
            &self.parts
        }
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

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

/// For a domain's [`UserError`] type: `Display` (the report's message), `std::error::Error`,
/// and the conversion into a [`Report`] (what the job machinery carries, so that `?` in a
/// kind's steps works whatever the domain).
macro_rules! user_error_display {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::error::UserError::report(self).message)
            }
        }
        impl std::error::Error for $t {}
        impl From<$t> for $crate::error::Report {
            fn from(e: $t) -> $crate::error::Report {
                $crate::error::UserError::report(&e)
            }
        }
    };
}
pub(crate) use user_error_display;

/// `From` for each error type a domain's error wraps, as the variant that holds it:
/// `wraps!(Error { Scope(crate::scope::Error), Common(Common) })`.
macro_rules! wraps {
    ($t:ident { $($variant:ident($inner:ty)),+ $(,)? }) => {
        $(
            impl From<$inner> for $t {
                fn from(e: $inner) -> $t {
                    $t::$variant(e)
                }
            }
        )+
    };
}
pub(crate) use wraps;

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
