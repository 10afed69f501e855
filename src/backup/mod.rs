//! Per-tenant backups: `create_backup` writes every row of one tenant, read in one snapshot,
//! into one open-format file (`format.rs`) in the backup directory (`store.rs`);
//! `verify_backup` re-reads it; `restore_backup` loads it back (`restore.rs`). Backup and
//! restore are job kinds (`kind.rs`) like migrate and validate.
//!
//! - `export` (here) — the tenant's rows of every table as COPY text lines, through one cursor
//!   over one statement: one snapshot whatever the isolation level and executor, and memory
//!   bounded by one fetch;
//! - `create.rs` — the backup job: spools each table's lines to a temporary file, then writes
//!   the archive (manifest, restore script, data files), checksummed, and registers it;
//! - `archive.rs` — reading an archive back: its checksums, manifest and rows;
//! - `restore.rs` — the restore job, and what is checked before anything changes.

pub mod archive;
pub mod create;
pub mod crypt;
pub mod error;
pub mod format;
pub mod incremental;
pub mod kind;
pub mod load;
pub mod options;
pub mod restore;
pub mod store;

use pgrx::prelude::*;

use crate::error::{Common, OrRaise};
use crate::scope::graph::Role;
use crate::scope::LoadedScope;
use crate::sys::with_settings;
pub use create::submit;
use error::{Error, Result};

/// Text forms that read back the same on any server: what every exported value is printed
/// with (and what a restore reads them under), and plans made for reading every row (a
/// cursor's are otherwise made for its first tenth) without parallel workers.
const EXPORT_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "1"),
    ("xmloption", "content"),
    ("max_parallel_workers_per_gather", "0"),
    ("cursor_tuple_fraction", "1"),
    // Each hash or sort of the tenant filters takes at most this and spills beyond it: the
    // backend's memory is bounded whatever the tenant's size (as a migration step's is).
    ("work_mem", "16MB"),
    ("hash_mem_multiplier", "1"),
];

/// Rows fetched from the export cursor at a time.
const FETCH: i64 = 10_000;

/// One table of a backup: where its rows come from and the columns written.
#[derive(Clone, Debug)]
pub struct TableSpec {
    pub schema: String,
    pub table: String,
    pub sql: String,
    pub role: Role,
    /// The WHERE condition selecting the tenant's rows (`$1`: the tenant).
    pub filter: String,
    pub columns: Vec<ColumnSpec>,
}

#[derive(Clone, Debug, serde::Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub quoted: String,
    /// Declared type, with modifiers, qualified where not in pg_catalog.
    pub type_full: String,
    /// `GENERATED ALWAYS AS IDENTITY`: written back with OVERRIDING SYSTEM VALUE.
    pub identity_always: bool,
    pub not_null: bool,
    pub has_default: bool,
    /// What an export reads instead of the column's text (`c`: the row), when it masks it
    /// (see `pii::mask`); backups never set it.
    #[serde(skip)]
    pub select: Option<String>,
}

const COLUMNS_SQL: &str = "SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'name', a.attname, 'quoted', pg_catalog.quote_ident(a.attname), 'type_full', @TYPE_FULL@,
        'identity_always', a.attidentity = 'a', 'not_null', a.attnotnull,
        'has_default', a.atthasdef OR a.attidentity <> '') ORDER BY a.attnum), '[]')
   FROM pg_catalog.pg_attribute a
  WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''";

/// The stored (not generated) columns of a table, in order.
pub fn columns_of(oid: u32) -> Vec<ColumnSpec> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::pg::with_qualified_types(COLUMNS_SQL));
    crate::pg::query_json(&SQL, &[(oid as i64).into()]).unwrap_or_default()
}

/// The tables a backup of the scope holds, parents first: the root and owned tables, and the
/// shared ones when asked.
pub fn tables(l: &LoadedScope, shared: bool) -> Vec<TableSpec> {
    let filters = l.filters();
    l.resolved
        .tables
        .iter()
        .filter(|t| shared || t.role != Role::Shared)
        .map(|t| {
            let table = l.catalog.table(t.oid);
            TableSpec {
                schema: table.schema.clone(),
                table: table.name.clone(),
                sql: table.sql.clone(),
                role: t.role,
                filter: filters.filter(t.oid).to_string(),
                columns: columns_of(t.oid),
            }
        })
        .collect()
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Root => "root",
        Role::Owned => "owned",
        Role::Shared => "shared",
    }
}

/// Runs `each(table index, COPY text line)` over the tenant's rows of every table, in table
/// order, as the caller, every table read in one snapshot (see [`export_rows`]).
pub fn export(
    specs: &[TableSpec],
    tenant: &str,
    mut each: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut line = Vec::with_capacity(4096);
    export_rows(specs, tenant, |t, fields| {
        line.clear();
        format::write_line(&mut line, fields.iter().copied());
        each(t, &line)
    })
}

/// Runs `each(table index, fields)` over the tenant's rows of every table, in table order,
/// each field as PostgreSQL prints it under [`EXPORT_SETTINGS`] (`None` for NULL), as the
/// caller, every table read in one snapshot (whatever the isolation level and executor): one
/// snapshot is made active, and each table's rows come through a read-only cursor on it,
/// closed before the next table's opens. So the memory a table's plan holds (the hash tables
/// of its tenant filter) is freed before the next one's is built: the peak is one table's
/// plan and one fetch, not the sum over every table. Shared by backups and exports (which
/// choose the columns through `specs`).
pub fn export_rows<E: From<Error>>(
    specs: &[TableSpec],
    tenant: &str,
    mut each: impl FnMut(usize, &[Option<&str>]) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    with_settings(EXPORT_SETTINGS, || {
        crate::sys::with_one_snapshot(|| {
            Spi::connect(|client| {
                let mut scratch = Scratch::new("pg_tenant_ops export");
                for (t, spec) in specs.iter().enumerate() {
                    let cols: Vec<String> = spec
                        .columns
                        .iter()
                        .map(|c| match &c.select {
                            Some(expr) => expr.clone(),
                            None => format!("c.{}::pg_catalog.text", c.quoted),
                        })
                        .collect();
                    let sql = format!(
                        "SELECT {} FROM (SELECT * FROM {} WHERE {}) c",
                        if cols.is_empty() {
                            "NULL".to_string()
                        } else {
                            cols.join(", ")
                        },
                        spec.sql,
                        spec.filter
                    );
                    let mut cursor =
                        crate::sys::open_read_only_cursor(client, &sql, &[tenant.into()]);
                    // What other sessions see of this table meanwhile (jobs::live).
                    let live = crate::jobs::live::posting_now()
                        .then(|| crate::pg::regclass(&spec.sql))
                        .flatten();
                    let (mut rows, mut bytes) = (0i64, 0i64);
                    loop {
                        // The fetch's tuple table lives in SPI's context until freed below.
                        let mut batch = cursor.fetch(FETCH).or_raise();
                        if batch.is_empty() {
                            break;
                        }
                        // Whatever reading the values allocates lives in the scratch context,
                        // reset after each fetch: memory stays at one fetch. (Not
                        // `row.get`: it copies each value into the *parent* of the current
                        // context — after an SPI call, TopTransactionContext — where a copy of
                        // every row would stay until the transaction ends.)
                        scratch.run(|| {
                            let mut fields: Vec<Option<&str>> =
                                Vec::with_capacity(spec.columns.len());
                            while batch.next().is_some() {
                                fields.clear();
                                for k in 1..=spec.columns.len() {
                                    // SAFETY: a text datum of the current row (the query
                                    // casts every column to text), read in place; no
                                    // datum is NULL.
                                    fields.push(batch.get_datum_by_ordinal(k).or_raise().and_then(
                                        |d| unsafe { <&str as FromDatum>::from_datum(d, false) },
                                    ));
                                }
                                if live.is_some() {
                                    rows += 1;
                                    bytes += fields
                                        .iter()
                                        .map(|f| f.map_or(2, |v| v.len() + 1) as i64)
                                        .sum::<i64>();
                                }
                                each(t, &fields)?;
                            }
                            Ok::<(), E>(())
                        })?;
                        if let Some(oid) = live {
                            crate::jobs::live::post(oid, rows, bytes);
                        }
                        // The tuple table is SPI's to free (it keeps a list of them).
                        unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
                    }
                }
                Ok::<(), E>(())
            })
        })
    })
}

/// A memory context for work done again and again (one fetch, one batch): whatever the work
/// allocates in PostgreSQL's memory goes when it ends, so a long run's memory stays flat.
pub struct Scratch(pgrx::PgMemoryContexts);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        Scratch(pgrx::PgMemoryContexts::new(name))
    }

    pub fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // SAFETY: nothing allocated in the context outlives `f`: what it returns is Rust's.
        unsafe {
            let r = self.0.switch_to(|_| f());
            self.0.reset();
            r
        }
    }
}

/// An order-independent digest of a table's lines: the sum modulo 2^64 of the first eight
/// bytes (big-endian) of each line's SHA-256. A restore compares the restored rows' digest
/// with the backup's, whatever order the rows come back in.
#[derive(Default, Clone, Copy)]
pub struct RowsDigest {
    pub rows: i64,
    pub sum: u64,
}

impl RowsDigest {
    pub fn add(&mut self, line: &[u8]) {
        use sha2::Digest;
        let h = sha2::Sha256::digest(line);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        self.sum = self.sum.wrapping_add(u64::from_be_bytes(first));
        self.rows += 1;
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.sum)
    }
}

/// The error for a backup id that names no backup.
pub fn not_found(id: i64) -> Error {
    Error::UnknownBackup(id)
}

/// Unregisters backup `id` and removes its file.
pub fn drop_backup(id: i64) -> Result<serde_json::Value> {
    let (name, capture) = crate::sys::owner::rows(
        "DELETE FROM tenant_ops.backups WHERE id = $1 RETURNING file_name, (manifest->>'capture')::bigint",
        &[id.into()],
        |r| Ok((r.get::<String>(1)?.unwrap_or_default(), r.get::<i64>(2)?)),
    )
    .or_raise()
    .into_iter()
    .next()
    .ok_or_else(|| not_found(id))?;
    incremental::stop_capture(capture);
    remove_after_commit(&name)?;
    Ok(serde_json::json!({"backup_id": id, "file": name, "dropped": true}))
}

/// Drops every expired backup, and removes files of ours no backup row names (a crash's
/// leftovers, older than an hour). Returns what it removed.
pub fn purge() -> Result<serde_json::Value> {
    let expired: Vec<(i64, String, Option<i64>)> = crate::sys::owner::rows(
        "DELETE FROM tenant_ops.backups WHERE expires_at <= pg_catalog.now()
         RETURNING id, file_name, (manifest->>'capture')::bigint",
        &[],
        |r| {
            Ok((
                r.get::<i64>(1)?.unwrap_or(0),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<i64>(3)?,
            ))
        },
    )
    .or_raise();
    for (_, name, capture) in &expired {
        incremental::stop_capture(*capture);
        remove_after_commit(name)?;
    }
    let registered: Vec<String> =
        crate::sys::owner::rows("SELECT file_name FROM tenant_ops.backups", &[], |r| {
            Ok(r.get::<String>(1)?.unwrap_or_default())
        })
        .or_raise();
    let strays = store::sweep(&registered)?;
    Ok(serde_json::json!({
        "dropped": expired.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
        "stray_files_removed": strays,
    }))
}

/// The file goes when the transaction that unregistered it commits (a rolled-back drop
/// keeps both).
fn remove_after_commit(name: &str) -> Result<()> {
    let path = store::path_of(name).or_else(|e| match e {
        Error::FileMissing(_) => Ok(std::path::PathBuf::new()),
        e => Err(e),
    })?;
    if !path.as_os_str().is_empty() {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
            let _ = std::fs::remove_file(&path);
        });
    }
    Ok(())
}

/// `length` bytes of backup `id`'s file from `offset` (fewer at its end): a download through
/// SQL in chunks, whatever the file's size.
pub fn read_chunk(id: i64, offset: i64, length: i32) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    if offset < 0 || length <= 0 || length > 64 * 1024 * 1024 {
        return Err(Common::InvalidParameter(
            format!("offset {offset} and length {length}: offset must be >= 0 and length 1 to 67108864"),
            Some("Read a backup in chunks: tenant_ops.read_backup(id, offset, 8388608) while rows come back non-empty.".into()),
        ).into());
    }
    let b = archive::registered(id)?;
    let mut f = std::fs::File::open(&b.path).map_err(|e| store::io_error("read", &b.path, &e))?;
    f.seek(SeekFrom::Start(offset as u64))
        .map_err(|e| store::io_error("read", &b.path, &e))?;
    let mut out = Vec::with_capacity(length as usize);
    f.take(length as u64)
        .read_to_end(&mut out)
        .map_err(|e| store::io_error("read", &b.path, &e))?;
    Ok(out)
}
