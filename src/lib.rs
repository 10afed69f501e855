//! pg_tenant_ops: move, check, back up and restore one tenant's data inside PostgreSQL.
//!
//! Layout — a capability is its file in `api/` (the SQL surface, thin) plus its domain module:
//! `scope/` the tenant model (which rows belong to a tenant; `graph/` the pgrx-free graph
//! work); `migrate/` migrate_tenant, one file per stage; `integrity/` validation and repair;
//! `backup/` per-tenant backups and restores; `import/` rows loaded from files; `kv/` tenants
//! kept in Redis or `localStorage` dumps, imported on the import's machinery.
//! `jobs/` is the job machinery every kind plugs into (the `JobKind` trait, executors and
//! their one step loop, the per-job lock), `kinds` the registry listing the kinds once, and
//! `worker/` the background launcher, schedulers and job workers. Shared plumbing: `options`
//! (strict options parsing and its error wording), `pg` (catalog readers, quoting, privilege
//! checks), `sys` (subtransactions, role switching and who runs what), `audit`, `gucs`,
//! `error` (the framework: `Report`, the `UserError` trait, `or_raise`, the `Common` errors;
//! each domain has its own error type in its `error.rs` — `scope::Error`, `jobs::Error`,
//! `migrate::Error`, `integrity::Error`, `backup::Error` — raised only in `api/`; the job
//! machinery carries a kind's errors as a `Report`). SQL objects the extension owns (tables,
//! views, roles, grants) live in `sql/`; the `#[pg_test]`s of the plumbing in `tests.rs`.

use pgrx::prelude::*;

mod api;
pub mod audit;
pub mod backup;
pub mod capture;
pub mod citus;
pub mod distinct_values;
pub mod error;
pub mod export;
pub mod gucs;
pub mod import;
pub mod integrity;
pub mod jobs;
pub mod kinds;
pub mod kv;
pub mod migrate;
pub mod options;
pub mod pg;
pub mod pii;
pub mod schedule;
pub mod scope;
pub mod sys;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

// Tables, views and roles, created before any function.
extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
// Privileges on everything, once every function exists.
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Registers the settings, and the background launcher when loaded by
/// `shared_preload_libraries` (without the preload everything but background jobs works, and
/// those say so).
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Users never see Rust backtraces in an ERROR's DETAIL, whatever the server's
    // environment: std captures them for `RUST_LIB_BACKTRACE` (or else `RUST_BACKTRACE`), and
    // pgrx appends what it captured. Loading runs before any other thread of ours exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    gucs::init();
    if worker::preloading() {
        jobs::live::init();
        worker::register_launcher();
        #[cfg(not(feature = "pg13"))]
        worker::drop_database::install();
    }
}

// `#[pg_schema]` needs an inline module; the tests themselves live in tests.rs.
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_tenant_ops'"]
    }
}
