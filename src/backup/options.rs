//! The options of `create_backup` and `restore_backup`, parsed strictly (see `crate::options`).

use serde::Deserialize;
use serde_json::Value;

use super::error::Result;
use crate::options::{self, Seg, Wording};

struct BackupWording;

impl Wording for BackupWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        match path.first().and_then(Seg::key) {
            Some(k) => format!("option \"{k}\""),
            None => "options".into(),
        }
    }
}

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
}

impl BackupOptions {
    pub fn parse(v: &Value) -> Result<Self> {
        Ok(options::parse(v, &BackupWording)?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// The tenant's current rows are deleted (children first), the backup's loaded.
    #[default]
    Replace,
}

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RestoreOptions {
    #[serde(default)]
    pub mode: RestoreMode,
    /// Report what would change, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl RestoreOptions {
    pub fn parse(v: &Value) -> Result<Self> {
        Ok(options::parse(v, &BackupWording)?)
    }
}
