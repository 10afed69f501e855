//! Exports of one tenant as files, and imports of them back (issue 14).
//!
//! `export_tenant` (a job kind, `kind.rs`) writes every root and owned table of a tenant —
//! or the `tables` (and per table `columns`) asked for — in one of six formats
//! (`format.rs`, `xlsx.rs`) into one tar archive (gzip by default) in
//! `tenant_ops.export_directory` (`store.rs`), with a `manifest.json` first (`manifest.rs`):
//! scope, tenant, tables parents first, their columns and types, row counts and each data
//! file's SHA-256. The rows are read as backups read them (`backup::export_rows`: one
//! snapshot, one cursor per table, one fetch in memory) and spooled per table (`job.rs`).
//!
//! `import_tenant` (`import.rs`) reads such an archive back, checked against its manifest,
//! converts it into a backup of the tenant and restores that (merge, replace, or clone with
//! fresh keys), so that everything restores check and verify applies to imports too.

pub mod error;
pub mod format;
pub mod import;
pub mod job;
pub mod kind;
pub mod manifest;
pub mod options;
pub mod store;
pub mod xlsx;

pub use job::submit;
