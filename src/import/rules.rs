//! Validation rules per column (the `rules` option): what each row's value must be before it
//! is written. Each failing rule is one reason, with its own SQLSTATE, and a row keeps every
//! reason it has. `references` needs the database and is checked per batch (`load.rs`).

use std::collections::BTreeMap;

use pgrx::PgSqlErrorCode::*;
use regex::Regex;
use serde::Deserialize;

use super::error::{Reason, Result};
use crate::error::Common;

/// The rules of one column as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    required: bool,
    #[serde(default)]
    min_length: Option<u32>,
    #[serde(default)]
    max_length: Option<u32>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    one_of: Option<Vec<String>>,
    #[serde(default)]
    email: bool,
    #[serde(default)]
    unique: bool,
    /// `schema.table(column)` or `schema.table` (its primary key column).
    #[serde(default)]
    references: Option<String>,
}

/// The rules of one column, checked and compiled.
#[derive(Clone, Debug)]
pub struct Checked {
    pub required: bool,
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
    pub pattern: Option<Regex>,
    pub one_of: Option<Vec<String>>,
    pub email: bool,
    pub unique: bool,
    pub references: Option<String>,
}

/// Bytes, without Unicode classes: a small automaton (the Unicode `\s` made it slow).
static EMAIL: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
    regex::bytes::Regex::new(r"(?-u)^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$").expect("a valid pattern")
});

impl Rules {
    pub fn checked(self, column: &str) -> Result<Checked> {
        let pattern = match self.pattern {
            None => None,
            Some(p) => Some(Regex::new(&p).map_err(|e| {
                Common::InvalidOption(
                    format!("option \"rules\" \"{column}\" \"pattern\" is not a regular expression: {e}"),
                    None,
                )
            })?),
        };
        if let (Some(min), Some(max)) = (self.min_length, self.max_length) {
            if min > max {
                return Err(Common::InvalidOption(
                    format!(
                        "option \"rules\" \"{column}\": min_length {min} is above max_length {max}"
                    ),
                    None,
                )
                .into());
            }
        }
        Ok(Checked {
            required: self.required,
            min_length: self.min_length,
            max_length: self.max_length,
            pattern,
            one_of: self.one_of,
            email: self.email,
            unique: self.unique,
            references: self.references,
        })
    }
}

impl Checked {
    /// The reasons `value` of `column` breaks these rules (none: it passes). `seen` holds the
    /// column's values so far (`unique` within the file).
    pub fn check(
        &self,
        column: &str,
        value: Option<&str>,
        seen: Option<&mut Distinct>,
        out: &mut Vec<Reason>,
    ) {
        let Some(v) = value else {
            if self.required {
                out.push(Reason::new(
                    ERRCODE_NOT_NULL_VIOLATION,
                    format!("column \"{column}\" is required"),
                ));
            }
            return;
        };
        if self.required && v.trim().is_empty() {
            out.push(Reason::new(
                ERRCODE_NOT_NULL_VIOLATION,
                format!("column \"{column}\" is required"),
            ));
        }
        let len = v.chars().count() as u32;
        if let Some(min) = self.min_length.filter(|m| len < *m) {
            out.push(Reason::new(
                ERRCODE_CHECK_VIOLATION,
                format!("column \"{column}\" is shorter than {min} characters ({len})"),
            ));
        }
        if let Some(max) = self.max_length.filter(|m| len > *m) {
            out.push(Reason::new(
                ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
                format!("column \"{column}\" is longer than {max} characters ({len})"),
            ));
        }
        if let Some(p) = self.pattern.as_ref().filter(|p| !p.is_match(v)) {
            out.push(Reason::new(
                ERRCODE_CHECK_VIOLATION,
                format!(
                    "column \"{column}\" does not match pattern \"{}\"",
                    p.as_str()
                ),
            ));
        }
        if let Some(choices) = self.one_of.as_ref().filter(|c| !c.iter().any(|c| c == v)) {
            out.push(Reason::new(
                ERRCODE_CHECK_VIOLATION,
                format!(
                    "column \"{column}\" is \"{}\", not one of: {}",
                    shorten(v),
                    choices.join(", ")
                ),
            ));
        }
        if self.email && !EMAIL.is_match(v.as_bytes()) {
            out.push(Reason::new(
                ERRCODE_CHECK_VIOLATION,
                format!(
                    "column \"{column}\" is not an email address: \"{}\"",
                    shorten(v)
                ),
            ));
        }
        if self.unique && seen.is_some_and(|s| !s.insert(v)) {
            out.push(Reason::new(
                ERRCODE_UNIQUE_VIOLATION,
                format!(
                    "column \"{column}\" repeats \"{}\" from an earlier row",
                    shorten(v)
                ),
            ));
        }
    }
}

/// Long values are cut in messages.
pub fn shorten(v: &str) -> String {
    const MAX: usize = 60;
    if v.chars().count() <= MAX {
        v.to_string()
    } else {
        format!("{}...", v.chars().take(MAX).collect::<String>())
    }
}

/// The values seen so far of each `unique` column.
pub type Seen = BTreeMap<String, Distinct>;

/// The distinct values of one column so far (`unique`): their text side by side in one
/// buffer and a hash table of spans into it, not a `String` each (for a million ids that was
/// ~85 MB of small allocations and a tenth of the import's time).
#[derive(Clone, Default)]
pub struct Distinct {
    text: String,
    table: hashbrown::HashTable<(usize, usize)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Distinct {
    /// Adds `v`; false when it was there already.
    pub fn insert(&mut self, v: &str) -> bool {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(v);
        let text = &self.text;
        if self.table.find(hash, |&(s, e)| &text[s..e] == v).is_some() {
            return false;
        }
        let start = self.text.len();
        self.text.push_str(v);
        let (text, hasher) = (&self.text, &self.hasher);
        self.table
            .insert_unique(hash, (start, text.len()), |&(s, e)| {
                hasher.hash_one(&text[s..e])
            });
        true
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(v: serde_json::Value) -> Checked {
        serde_json::from_value::<Rules>(v)
            .unwrap()
            .checked("c")
            .unwrap()
    }

    #[test]
    fn each_rule_gives_its_reason() {
        let r = rules(
            serde_json::json!({"required": true, "min_length": 2, "max_length": 5,
            "pattern": "^[a-z@.]+$", "email": true, "unique": true}),
        );
        let mut seen = Distinct::default();
        let mut out = vec![];
        r.check("c", Some("a@b.de"), Some(&mut seen), &mut out);
        assert_eq!(out.len(), 1, "{out:?}"); // too long
        out.clear();
        r.check("c", Some("a@b.de"), Some(&mut seen), &mut out);
        assert_eq!(out.len(), 2); // too long, repeated
        out.clear();
        r.check("c", None, Some(&mut seen), &mut out);
        assert_eq!(out[0].sqlstate, ERRCODE_NOT_NULL_VIOLATION);
        out.clear();
        r.check("c", Some("X"), Some(&mut seen), &mut out);
        // too short, pattern, email
        assert_eq!(out.len(), 3, "{out:?}");
    }
}
