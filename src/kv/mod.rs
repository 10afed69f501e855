//! Key-value sources: tenants kept in Redis (or in browser `localStorage` dumps) moved into
//! tables, on the import's machinery.
//!
//! Why a module of its own: a key-value store has no rows, only keys whose *names* carry part
//! of the data (`tenant:{subdomain}`) and values of several shapes (JSON text, hashes, sets).
//! Everything after "one key became one record" is the import's — the mapping of fields to
//! columns (`import::plan`), conversions (`import::convert`), validation rules
//! (`import::rules`), the migration transforms and `on_conflict` — and is reused as it is.
//!
//! - `source` — the source catalog (`tenant_ops.kv_sources`, credentials in a superuser-only
//!   table), Redis connections with connect and read timeouts, `localStorage` dumps;
//! - `pattern` — key patterns with named parts, their SCAN MATCH glob and their matcher;
//! - `value` — a key's value per Redis type, read with pipelining, and the field specs
//!   (`{part}`, `$.json.path`, `field:name`, `key`) that take a column's text out of it;
//! - `mapping` — the mapping document, turned into the import's options and plan;
//! - `detect` — `detect_kv`: what a store holds and a suggested mapping;
//! - `import` — the `kv_import` job kind: SCAN cursor checkpoints, batches written set-based;
//!   `backup` — its `"backup": true`, the keys read saved in an archive before anything is
//!   written; `restore` — `restore_kv`, such an archive written back into a Redis source;
//! - `compare` — `compare_kv` (job kind `kv_compare`): keys with no row, rows with no key,
//!   fields that differ, as integrity findings with a score;
//! - `sync` — `sync_kv`: one tenant's rows in line with the store (or the store with them);
//! - `cleanup` — `cleanup_kv` (job kind `kv_cleanup`): orphaned keys and rows, saved to the
//!   quarantine before they are deleted.

pub mod backup;
pub mod cleanup;
pub mod compare;
pub mod detect;
pub mod error;
pub mod import;
pub mod mapping;
pub mod pattern;
pub mod restore;
pub mod source;
pub mod sync;
pub mod value;

pub use error::{Error, Result};
