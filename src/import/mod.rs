//! `import_data`: rows from a file (CSV, JSON, NDJSON, XML, XLSX, SQL), streamed, converted, validated and
//! written set-based into one table, as the job kind `import` (inline, `CALL run_job`, or in
//! the background with a checkpoint per step).
//!
//! - `source` — where the bytes come from (the import directory, confined with the backup
//!   directory code; or bytes sent over the connection) and how they become text (gzip,
//!   BOM, UTF-16, legacy single-byte encodings);
//! - `formats/` — one reader per format, one record at a time, each with its line;
//! - `convert` — text to the column's type (dates as people write them, boolean words, ...);
//! - `rules` — the validation rules per column;
//! - `plan` — the mapping of fields to columns and the one INSERT a batch is written with;
//!   `copy` — the faster way, PostgreSQL's COPY FROM fed from memory, where nothing needs SQL;
//! - `cells` — a batch's values, in one buffer rather than a `String` each;
//! - `load` — the step driver: batches in, refused rows out, checkpoints;
//! - `kind` — the job kind; `submit` — checking the call and creating the job.
//!
//! A step reads up to `batch_size` records, writes the good ones in one statement (should
//! it fail, row by row in subtransactions to find the rows at fault) and records its position
//! (records, line, bytes) in `tenant_ops.job_tables` in the same transaction. A run that
//! resumes (after a crash, a `kill -9`) re-reads the file up to that position without
//! writing, so no row is lost or written twice.

pub mod cells;
pub mod convert;
pub mod copy;
pub mod error;
pub mod formats;
pub mod kind;
pub mod load;
pub mod lookups;
pub mod options;
pub mod plan;
pub mod refusals;
pub mod rules;
pub mod source;
pub mod submit;

pub use error::{Error, Result};
pub use submit::{submit, Source};

/// The `format` values.
pub const FORMATS: &[&str] = &["auto", "csv", "json", "ndjson", "xml", "xlsx", "sql"];

/// The key under which a job's options keep what the call decided (target, file, format).
pub const META_KEY: &str = "_import";

/// What the call decided, kept in the job's options under [`META_KEY`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// The target table's oid.
    pub target: i64,
    /// The file: a name inside the import directory, or (spooled) the spool file's path.
    pub file: String,
    /// Bytes sent with import_data_bytes, spooled into the import directory.
    pub spooled: bool,
    /// `format` as given (`auto` is decided when the file is opened).
    pub format: String,
}
