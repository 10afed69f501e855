//! The options of `create_backup` and `restore_backup`, parsed strictly (see `crate::options`).

use serde::Deserialize;
use serde_json::Value;

use super::error::Result;
use crate::error::Common;
use crate::migrate::options::{IdStrategy, OnConflict};
use crate::options::{self, present, FunctionWording};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Shared {
    /// Only the tenant's own rows (root and owned tables).
    #[default]
    Exclude,
    /// Also the rows of shared tables the tenant's rows reference.
    Include,
}

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupOptions {
    /// A free text kept with the backup.
    #[serde(default)]
    pub label: Option<String>,
    /// How long to keep it (an interval, `'90 days'`); default `tenant_ops.backup_retention`.
    #[serde(default)]
    pub retention: Option<String>,
    #[serde(default)]
    pub shared: Shared,
    /// A base backup that starts a change capture of the tenant in its snapshot's
    /// transaction, so that incrementals can follow it (see `backup::incremental`).
    #[serde(default)]
    pub capture: bool,
    /// An incremental backup: the changes since this backup (a base taken with `capture`, or
    /// the last incremental of its chain).
    #[serde(default, deserialize_with = "backup_id")]
    pub incremental: Option<i64>,
}

/// A backup id: a positive integer (`must be a backup id, not "x"` otherwise).
fn backup_id<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    match v.as_i64() {
        Some(id) if id > 0 => Ok(Some(id)),
        _ => Err(serde::de::Error::custom(format!(
            "must be a backup id (a positive integer), not {}",
            options::got(&v)
        ))),
    }
}

impl BackupOptions {
    pub fn parse(v: &Value) -> Result<Self> {
        Ok(options::parse(v, &FunctionWording("create_backup"))?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// The tenant's current rows are deleted (children first), the backup's loaded.
    #[default]
    Replace,
    /// The backup's rows are added to the tenant's current rows; rows whose key the tenant
    /// holds already follow `on_conflict`.
    Merge,
    /// The backup is loaded as another tenant (`new_tenant`) with fresh keys.
    Clone,
}

impl RestoreMode {
    pub fn name(self) -> &'static str {
        match self {
            RestoreMode::Replace => "replace",
            RestoreMode::Merge => "merge",
            RestoreMode::Clone => "clone",
        }
    }
}

/// The options of `restore_backup` as written; [`RestoreOptions::parse`] checks the
/// combinations.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreDocument {
    #[serde(default, deserialize_with = "present")]
    mode: Option<RestoreMode>,
    #[serde(default, deserialize_with = "present")]
    dry_run: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    on_conflict: Option<OnConflict>,
    #[serde(default, deserialize_with = "some_name")]
    new_tenant: Option<String>,
    #[serde(default, deserialize_with = "present")]
    id_strategy: Option<IdStrategy>,
    #[serde(default, deserialize_with = "some_name")]
    target_schema: Option<String>,
    #[serde(default, deserialize_with = "options::json")]
    pii: Value,
    #[serde(default, deserialize_with = "present")]
    disable_triggers: Option<bool>,
}

fn some_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    options::name(d, "a non-empty string").map(Some)
}

/// The options of a restore, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOptions {
    pub mode: RestoreMode,
    /// Report what would change, change nothing.
    pub dry_run: bool,
    /// `merge`: what happens to a backup row whose key the tenant holds already — the values
    /// and semantics of `migrate_tenant`'s option (`error` by default).
    pub on_conflict: OnConflict,
    /// `clone`: the tenant key the copy is written under.
    pub new_tenant: Option<String>,
    /// `clone`: how fresh uuid keys are made (`uuid`, `uuid7` or `uuid5`, as for
    /// `migrate_tenant`); integer keys are drawn from their sequences whatever it says.
    pub id_strategy: IdStrategy,
    /// Restore into the same-named tables of this schema instead of the scope's own.
    pub target_schema: Option<String>,
    /// `clone`: the columns masked in the copy (see `pii::mask`).
    pub pii: Option<crate::pii::mask::PiiOption>,
    /// The written tables' user triggers held off while the rows go in (see
    /// `restore::triggers`).
    pub disable_triggers: bool,
}

impl RestoreOptions {
    pub fn parse(v: &Value) -> Result<Self> {
        let d: RestoreDocument = options::parse(v, &FunctionWording("restore_backup"))?;
        let mode = d.mode.unwrap_or_default();
        let bad = |m: String, hint: Option<&str>| -> super::error::Error {
            Common::InvalidOption(m, hint.map(str::to_string)).into()
        };
        if d.on_conflict.is_some() && mode != RestoreMode::Merge {
            return Err(bad(
                format!(
                    "option \"on_conflict\" only applies to mode \"merge\", not \"{}\"",
                    mode.name()
                ),
                Some("A replace deletes the tenant's rows first, a clone gives every row a fresh key: neither meets a conflict."),
            ));
        }
        match (mode, &d.new_tenant) {
            (RestoreMode::Clone, None) => {
                return Err(bad(
                    "mode \"clone\" needs the option \"new_tenant\"".into(),
                    Some("Name the tenant key the copy is written under: {\"mode\": \"clone\", \"new_tenant\": \"42\"}."),
                ))
            }
            (m, Some(_)) if m != RestoreMode::Clone => {
                return Err(bad(
                    format!(
                        "option \"new_tenant\" only applies to mode \"clone\", not \"{}\"",
                        m.name()
                    ),
                    None,
                ))
            }
            _ => {}
        }
        match (mode, d.id_strategy) {
            (RestoreMode::Clone, Some(IdStrategy::Keep)) => {
                return Err(bad(
                    "option \"id_strategy\" cannot be \"keep\" with mode \"clone\"".into(),
                    Some("A clone gives every row a fresh key: \"uuid\", \"uuid7\" or \"uuid5\" for uuid keys."),
                ))
            }
            (m, Some(_)) if m != RestoreMode::Clone => {
                return Err(bad(
                    format!(
                        "option \"id_strategy\" only applies to mode \"clone\", not \"{}\"",
                        m.name()
                    ),
                    None,
                ))
            }
            _ => {}
        }
        let pii = crate::pii::mask::PiiOption::parse(&d.pii)?;
        if pii.is_some() && mode != RestoreMode::Clone {
            return Err(bad(
                format!(
                    "option \"pii\" only applies to mode \"clone\", not \"{}\"",
                    mode.name()
                ),
                Some("A masked copy is a clone under a new tenant key: {\"mode\": \"clone\", \"new_tenant\": \"42\", \"pii\": \"mask\"}."),
            ));
        }
        Ok(RestoreOptions {
            mode,
            dry_run: d.dry_run.unwrap_or(false),
            on_conflict: d.on_conflict.unwrap_or(OnConflict::Error),
            new_tenant: d.new_tenant,
            id_strategy: d.id_strategy.unwrap_or(IdStrategy::Uuid),
            target_schema: d.target_schema,
            pii,
            disable_triggers: d.disable_triggers.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restore_defaults_and_modes() {
        let o = RestoreOptions::parse(&json!({})).unwrap();
        assert_eq!(
            (
                o.mode,
                o.dry_run,
                o.on_conflict,
                o.new_tenant,
                o.target_schema
            ),
            (RestoreMode::Replace, false, OnConflict::Error, None, None)
        );
        let o = RestoreOptions::parse(
            &json!({"mode": "merge", "on_conflict": "skip", "target_schema": "S x"}),
        )
        .unwrap();
        assert_eq!(
            (o.mode, o.on_conflict),
            (RestoreMode::Merge, OnConflict::Skip)
        );
        assert_eq!(o.target_schema.as_deref(), Some("S x"));
        let o = RestoreOptions::parse(
            &json!({"mode": "clone", "new_tenant": "7", "id_strategy": "uuid7"}),
        )
        .unwrap();
        assert_eq!(
            (o.mode, o.new_tenant.as_deref(), o.id_strategy),
            (RestoreMode::Clone, Some("7"), IdStrategy::Uuid7)
        );
    }

    #[test]
    fn restore_options_that_do_not_fit_the_mode() {
        for (v, msg) in [
            (
                json!({"mode": "clone"}),
                "mode \"clone\" needs the option \"new_tenant\"",
            ),
            (
                json!({"new_tenant": "7"}),
                "option \"new_tenant\" only applies to mode \"clone\", not \"replace\"",
            ),
            (
                json!({"mode": "clone", "new_tenant": "7", "on_conflict": "skip"}),
                "option \"on_conflict\" only applies to mode \"merge\", not \"clone\"",
            ),
            (
                json!({"mode": "clone", "new_tenant": "7", "id_strategy": "keep"}),
                "option \"id_strategy\" cannot be \"keep\" with mode \"clone\"",
            ),
            (
                json!({"mode": "merge", "id_strategy": "uuid"}),
                "option \"id_strategy\" only applies to mode \"clone\", not \"merge\"",
            ),
            (
                json!({"mode": "clone", "new_tenant": ""}),
                "option \"new_tenant\" must be a non-empty string, not a string",
            ),
            (
                json!({"target_schema": null}),
                "option \"target_schema\" must be a non-empty string, not null",
            ),
            (
                json!({"mode": "upsert"}),
                "option \"mode\" cannot be \"upsert\"",
            ),
        ] {
            let e = RestoreOptions::parse(&v).unwrap_err();
            assert_eq!(e.to_string(), format!("invalid options: {msg}"), "for {v}");
        }
    }
}
