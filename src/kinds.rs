//! The registry of job kinds: the one list of every kind the extension runs. The job
//! machinery (`crate::jobs`, `crate::worker`) and the catalog (the CHECK on
//! `tenant_ops.jobs.kind`, the workers' concurrency caps) read it from here. A new kind is its
//! domain module's `JobKind` implementation plus one line below.

use pgrx::prelude::*;

use crate::jobs::kind::JobKind;

/// Every job kind.
pub static KINDS: &[&dyn JobKind] = &[
    &crate::migrate::kind::Migrate,
    &crate::integrity::kind::Validate,
    &crate::backup::kind::BackupKind,
    &crate::backup::kind::RestoreKind,
    &crate::backup::kind::PurgeBackupsKind,
    &crate::jobs::purge::PurgeHistoryKind,
    &crate::import::kind::ImportKind,
    &crate::export::kind::ExportKind,
    &crate::citus::kind::MoveTenantKind,
    &crate::kv::import::KvImportKind,
    &crate::kv::compare::KvCompareKind,
    &crate::kv::cleanup::KvCleanupKind,
];

/// The kind of that name.
pub fn lookup(name: &str) -> Result<&'static dyn JobKind, crate::jobs::Error> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| crate::jobs::Error::Wrong {
            message: format!("\"{name}\" is a job kind this version cannot run"),
            hint: Some(format!(
                "The kinds are: {}.",
                KINDS
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
}

/// The kinds' names, and their background concurrency caps in the same order.
pub fn caps() -> (Vec<String>, Vec<i32>) {
    KINDS
        .iter()
        .map(|k| (k.name().to_string(), k.max_concurrent()))
        .unzip()
}

/// Whether `kind` names a job kind: the CHECK constraint on `tenant_ops.jobs.kind` (see
/// `sql/finalize.sql`). Immutable for a given library version; versions only add kinds.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.is_job_kind(kind text) RETURNS boolean
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.is_job_kind(text) IS 'Whether kind names a pg_tenant_ops job kind (the CHECK of tenant_ops.jobs.kind).';
"#)]
fn is_job_kind(kind: &str) -> bool {
    KINDS.iter().any(|k| k.name() == kind)
}
