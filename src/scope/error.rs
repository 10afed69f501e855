//! What can be wrong with a scope: its name, its definition against the catalog, a tenant.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    UnknownScope(String),
    ScopeExists(String),
    InvalidScopeName(String, &'static str),
    UnknownColumn {
        table: String,
        column: String,
        context: String,
    },
    UnknownTable {
        name: String,
        context: String,
    },
    NotATable {
        relation: String,
        context: String,
    },
    UnknownObject {
        what: &'static str,
        name: String,
        context: String,
        hint: Option<String>,
    },
    BadTenantValue {
        value: String,
        type_name: String,
        table: String,
        column: String,
    },
    UnknownTenant {
        tenant: String,
        scope: String,
        table: String,
        column: String,
    },
    AmbiguousOwnership {
        table: String,
        count: usize,
        candidates: String,
        also: Vec<String>,
        hint: String,
    },
    Common(Common),
}

wraps!(Error { Common(Common) });

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::UnknownScope(name) => {
                Report::new(ERRCODE_UNDEFINED_OBJECT, format!("scope \"{name}\" does not exist"))
                    .hint("SELECT name FROM tenant_ops.scopes lists the scopes that exist.".to_string())
            }
            Error::ScopeExists(name) => Report::new(
                ERRCODE_DUPLICATE_OBJECT,
                format!("scope \"{name}\" already exists"),
            )
            .hint(format!(
                "Choose another name, or drop the existing scope first with tenant_ops.drop_scope('{}').",
                name.replace('\'', "''")
            )),
            Error::InvalidScopeName(name, why) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid scope name {name:?}: {why}"),
            ),
            Error::UnknownColumn {
                table,
                column,
                context,
            } => Report::new(
                ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" does not exist in table {table}"),
            )
            .detail((!context.is_empty()).then(|| format!("The column is named in {context}."))),
            Error::UnknownTable { name, context } => Report::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("table \"{name}\" named in {context} does not exist"),
            )
            .hint(
                "Name tables as they would be written in SQL (schema-qualified where they are not on the search_path)."
                    .to_string(),
            ),
            Error::NotATable { relation, context } => {
                Report::new(ERRCODE_WRONG_OBJECT_TYPE, format!("{relation} is not a table"))
                    .detail(format!("It is named in {context}."))
            }
            Error::UnknownObject {
                what,
                name,
                context,
                hint,
            } => Report::new(
                ERRCODE_UNDEFINED_OBJECT,
                format!("{what} \"{name}\" named in {context} does not exist"),
            )
            .hint(hint.clone()),
            Error::BadTenantValue {
                value,
                type_name,
                table,
                column,
            } => Report::new(
                ERRCODE_INVALID_TEXT_REPRESENTATION,
                format!("tenant value \"{value}\" is not a valid {type_name} (the type of {table}.{column})"),
            ),
            Error::UnknownTenant {
                tenant,
                scope,
                table,
                column,
            } => Report::new(
                ERRCODE_NO_DATA_FOUND,
                format!("tenant \"{tenant}\" does not exist in scope \"{scope}\""),
            )
            .detail(format!("No row of {table} has {column} equal to that value.")),
            Error::AmbiguousOwnership {
                table,
                count,
                candidates,
                also,
                hint,
            } => Report::new(
                ERRCODE_INVALID_OBJECT_DEFINITION,
                format!("ambiguous ownership: table {table} has {count} equally near ownership paths: {candidates}"),
            )
            .detail((!also.is_empty()).then(|| format!("Also ambiguous: {}.", also.join("; "))))
            .hint(hint.clone()),
            Error::Common(e) => e.report(),
        }
    }
}

user_error_display!(Error);
