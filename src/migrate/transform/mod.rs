//! Column transforms for `migrate_tenant`'s `columns` option, turned into SQL expressions.
//!
//! A migration copies rows with one set-based `INSERT INTO target (...) SELECT <expressions>
//! FROM source s ...`; a column's `transform` spec becomes the expression for that column,
//! applied to an input expression such as `s.email`. The spec is a built-in's name
//! (`"trim"`), an object naming a built-in with its parameters
//! (`{"name": "to_date", "format": "DD.MM.YYYY"}`), or an array of those applied in order.
//!
//! The generated SQL is deterministic, calls only schema-qualified functions, casts to
//! schema-qualified types, and splices user text only as properly quoted literals. No pgrx
//! here: this is plain string building, unit-tested without a server.
//!
//! Two things the expressions still take from the session: `NULLIF` (normalize_email) and the
//! `CASE x WHEN` of map compare with `=`, resolved through the search_path (pg_catalog comes
//! first unless the path names it later, so run with a safe search_path); and to_timestamp
//! reads times without a zone in the session's TimeZone.
//!
//! This file holds the model: a pipeline of built-in steps and what each step is. `spec` reads
//! a pipeline from its JSON spec, `sql` writes it as an SQL expression.

use serde::Deserialize;

mod spec;
mod sql;
#[cfg(test)]
mod tests;

/// The built-in names, for hints and docs.
pub const BUILTINS: &[&str] = &[
    "trim",
    "lower",
    "upper",
    "initcap",
    "normalize_email",
    "normalize_phone",
    "to_date",
    "to_timestamp",
    "to_uuid",
    "mask",
    "mask_email",
    "mask_card",
    "pseudonymize",
    "redact",
    "map",
];

/// The largest `keep_last` of `mask` (`pg_catalog.right` takes an int4).
pub const MASK_MAX_KEEP_LAST: u64 = i32::MAX as u64;

/// A parsed transform pipeline for one column.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    /// Never empty; only the last step may produce a type other than text.
    steps: Vec<Step>,
}

/// One built-in with its parameters. This is also the object form of a spec: serde reads it
/// by its `"name"`, refusing parameters a built-in does not take (hence `Trim {}` rather than
/// `Trim`: serde ignores extra keys next to a unit variant); `spec` checks each parameter.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
enum Step {
    Trim {},
    Lower {},
    Upper {},
    Initcap {},
    NormalizeEmail {},
    /// `default_country_code`: digits only, without the '+'.
    NormalizePhone {
        #[serde(default, deserialize_with = "spec::country_code")]
        default_country_code: Option<String>,
    },
    ToDate {
        #[serde(deserialize_with = "spec::format")]
        format: String,
    },
    ToTimestamp {
        #[serde(deserialize_with = "spec::format")]
        format: String,
    },
    ToUuid {},
    Mask {
        #[serde(
            default = "spec::default_keep_last",
            deserialize_with = "spec::keep_last"
        )]
        keep_last: u32,
        #[serde(
            rename = "char",
            default = "spec::default_mask_char",
            deserialize_with = "spec::mask_char"
        )]
        ch: char,
    },
    /// The first character of the local part, `***`, and the domain: `a***@example.com`.
    MaskEmail {},
    /// Every digit but the last four masked, separators kept: `**** **** **** 1111`.
    MaskCard {},
    /// HMAC-SHA256 under `tenant_ops.pseudonymize_key`, as hex: the same input gives the same
    /// output under one key (joins survive), and the input cannot be read back.
    Pseudonymize {},
    /// The value replaced by `with` (default `[redacted]`); NULL stays NULL.
    Redact {
        #[serde(
            default = "spec::default_redaction",
            deserialize_with = "spec::redaction"
        )]
        with: String,
    },
    /// `values` sorted by key (keys are unique), so the SQL does not depend on JSON key order.
    Map {
        #[serde(deserialize_with = "spec::map_values")]
        values: Vec<(String, Option<String>)>,
        #[serde(
            default = "spec::default_map_default",
            deserialize_with = "spec::map_default"
        )]
        default: MapDefault,
    },
}

/// What `map` does with a value its `values` do not name.
#[derive(Clone, Debug, PartialEq)]
enum MapDefault {
    /// Unmapped values pass through unchanged.
    Keep,
    /// Unmapped values become NULL.
    Null,
    /// Unmapped values become this constant.
    Value(String),
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Trim {} => "trim",
            Step::Lower {} => "lower",
            Step::Upper {} => "upper",
            Step::Initcap {} => "initcap",
            Step::NormalizeEmail {} => "normalize_email",
            Step::NormalizePhone { .. } => "normalize_phone",
            Step::ToDate { .. } => "to_date",
            Step::ToTimestamp { .. } => "to_timestamp",
            Step::ToUuid {} => "to_uuid",
            Step::Mask { .. } => "mask",
            Step::MaskEmail {} => "mask_email",
            Step::MaskCard {} => "mask_card",
            Step::Pseudonymize {} => "pseudonymize",
            Step::Redact { .. } => "redact",
            Step::Map { .. } => "map",
        }
    }

    /// The SQL type of the step's result (as `pg_catalog.format_type` spells it).
    fn result_type(&self) -> &'static str {
        match self {
            Step::ToDate { .. } => "date",
            Step::ToTimestamp { .. } => "timestamp with time zone",
            Step::ToUuid {} => "uuid",
            _ => "text",
        }
    }

    fn can_fail(&self) -> bool {
        // pseudonymize fails only without a key, for every row alike.
        matches!(
            self,
            Step::ToDate { .. } | Step::ToTimestamp { .. } | Step::ToUuid {}
        )
    }
}

impl Transform {
    /// Whether any step can raise an error on some input (to_date, to_timestamp, to_uuid), so
    /// the caller knows it may have to isolate failing rows.
    pub fn can_fail(&self) -> bool {
        self.steps.iter().any(Step::can_fail)
    }

    /// The SQL type of [`Transform::to_sql`]'s result, as `pg_catalog.format_type` spells it:
    /// `text`, `date` (to_date), `timestamp with time zone` (to_timestamp) or `uuid` (to_uuid).
    pub fn result_type(&self) -> &'static str {
        self.steps.last().map_or("text", Step::result_type)
    }

    /// The names of the steps, in order (for plans and logs).
    pub fn names(&self) -> Vec<&'static str> {
        self.steps.iter().map(Step::name).collect()
    }
}
