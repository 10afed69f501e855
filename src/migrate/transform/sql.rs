//! A parsed pipeline written as SQL: each step wraps the expression of the one before.

use super::{MapDefault, Step, Transform};

impl Step {
    /// The step applied to `t`, an expression of type text that is safe to suffix with
    /// `::type` or to pass as a function argument.
    fn to_sql(&self, t: &str) -> String {
        match self {
            Step::Trim {} => format!("pg_catalog.btrim({t})"),
            Step::Lower {} => format!("pg_catalog.lower({t})"),
            Step::Upper {} => format!("pg_catalog.upper({t})"),
            Step::Initcap {} => format!("pg_catalog.initcap({t})"),
            Step::NormalizeEmail {} => {
                format!("NULLIF(pg_catalog.lower(pg_catalog.btrim({t}, E' \\t\\n\\r')), '')")
            }
            Step::NormalizePhone {
                default_country_code,
            } => {
                // Keep digits and '+'; then drop every '+' but a leading one; then NULL unless
                // what is left is an optional '+' and at least one digit. (No backslashes in
                // these patterns, so they read the same whatever standard_conforming_strings.)
                let digits = format!(
                    "pg_catalog.substring(pg_catalog.regexp_replace(\
                     pg_catalog.regexp_replace({t}, '[^0-9+]', '', 'g'), \
                     '(?!^)[+]', '', 'g'), '^[+]?[0-9]+$')"
                );
                match default_country_code {
                    None => digits,
                    Some(code) => {
                        format!("pg_catalog.regexp_replace({digits}, '^(?![+])', '+{code}')")
                    }
                }
            }
            Step::ToDate { format } => {
                format!("pg_catalog.to_date({t}, {})", quote_literal(format))
            }
            Step::ToTimestamp { format } => {
                format!("pg_catalog.to_timestamp({t}, {})", quote_literal(format))
            }
            Step::ToUuid {} => format!("{t}::pg_catalog.uuid"),
            Step::Mask { keep_last, ch } => {
                // The last `keep_last` characters, padded on the left with `ch` back to the
                // original length (a string no longer than `keep_last` comes back unchanged).
                // `t` appears twice, but this measured ~8 times faster than a regexp_replace
                // with a lookahead, which also could not keep more than 255 characters.
                format!(
                    "pg_catalog.lpad(pg_catalog.right({t}, {keep_last}), pg_catalog.length({t}), {})",
                    quote_literal(&ch.to_string())
                )
            }
            Step::MaskEmail {} => format!(
                "CASE WHEN pg_catalog.strpos({t}, '@') > 1 \
                 THEN pg_catalog.regexp_replace({t}, '^(.)[^@]*', {}) \
                 ELSE pg_catalog.regexp_replace({t}, '.', '*', 'g') END",
                quote_literal("\\1***")
            ),
            Step::MaskCard {} => {
                format!(
                    "pg_catalog.regexp_replace({t}, '[0-9](?=(?:[^0-9]*[0-9]){{4}})', '*', 'g')"
                )
            }
            Step::Pseudonymize {} => format!("tenant_ops.pseudonymize({t})"),
            Step::Redact { with } => {
                format!(
                    "CASE WHEN {t} IS NULL THEN NULL ELSE {} END",
                    quote_literal(with)
                )
            }
            Step::Map { values, default } => {
                let mut sql = format!("CASE {t}");
                for (from, to) in values {
                    sql.push_str(" WHEN ");
                    sql.push_str(&quote_literal(from));
                    sql.push_str(" THEN ");
                    match to {
                        Some(to) => sql.push_str(&quote_literal(to)),
                        None => sql.push_str("NULL"),
                    }
                }
                sql.push_str(" ELSE ");
                match default {
                    MapDefault::Keep => sql.push_str(t),
                    MapDefault::Null => sql.push_str("NULL"),
                    MapDefault::Value(v) => sql.push_str(&quote_literal(v)),
                }
                sql.push_str(" END");
                sql
            }
        }
    }
}

impl Transform {
    /// The SQL expression applying the pipeline to `input` (an already-safe SQL expression such
    /// as `s.email`). The input is first cast to text; string literals from parameters are
    /// quoted (single quotes doubled, `E''` form when they contain a backslash); every function
    /// and type is schema-qualified. The result's type is [`Transform::result_type`].
    pub fn to_sql(&self, input: &str) -> String {
        let mut expr = format!("({input})::pg_catalog.text");
        for step in &self.steps {
            expr = step.to_sql(&expr);
        }
        expr
    }
}

/// `s` as a SQL string literal, the way PostgreSQL's `quote_literal` writes it: single quotes
/// doubled, and when `s` holds a backslash, the `E'...'` form with backslashes doubled, which
/// reads the same whatever `standard_conforming_strings` says.
pub(super) fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    if s.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}
