//! The SQL surface: one file per capability. Functions here only parse arguments, call the
//! domain modules, audit state changes and turn domain errors into PostgreSQL errors.

pub mod integrity;
pub mod jobs;
pub mod migrate;
pub mod scopes;

use crate::error::OpsError;

/// A required argument: SQL NULL is an error naming the argument, not a silent NULL result.
#[track_caller]
pub(crate) fn required<T>(value: Option<T>, argument: &'static str) -> T {
    match value {
        Some(v) => v,
        None => OpsError::NullArgument(argument).raise(),
    }
}
