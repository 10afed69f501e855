//! `import_tenant`: an export archive loaded back into the scope's tables, through the
//! backups' restore. The archive is read once, streamed: its manifest checked against the
//! scope (the root table and tenant key it was exported with), each data file read back in
//! its format into COPY text lines (its SHA-256 and row count checked against the manifest
//! as it goes), spooled, and written as a backup archive of the tenant; that backup is
//! registered as `load_backup` registers one (verified first: every value decodes as its
//! column's type), and restored — `merge` by default, `replace`, or `clone` with fresh keys
//! (the migration's key mapping, `id_strategy` for uuid keys) — in the caller's transaction,
//! checked before anything changes and verified after, as `restore_backup` is. The backup
//! stays registered (label `import of <archive>`), so the import can be restored again or
//! dropped.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use serde_json::Value;

use super::error::{io_error, Error, Result};
use super::format::{self, Format};
use super::manifest::{self, Manifest};
use super::options::restore_options;
use super::store;
use crate::backup::create::{Spool, Spools};
use crate::backup::format::{self as backup_format, Hasher, HashingWriter};
use crate::backup::RowsDigest;
use crate::error::OrRaise;
use crate::scope::LoadedScope;

/// Reads what it passes on into a SHA-256 and a count.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Converts archive `archive` into a registered backup and submits its restore; returns the
/// backup's id and the restore job's (the caller runs it).
pub fn submit(scope_name: &str, archive: &str, raw: &Value, caller: &str) -> Result<(i64, i64)> {
    let restore = restore_options(raw)?;
    crate::backup::options::RestoreOptions::parse(&restore)?;
    let path = store::existing(archive)?;
    let loaded = LoadedScope::load(scope_name)?;
    let damaged = |what: String| Error::Damaged {
        archive: archive.to_string(),
        what,
    };
    let tar_err = |e: std::io::Error| tar_error(archive, e);

    let mut f = BufReader::with_capacity(
        1 << 20,
        File::open(&path).map_err(|e| io_error("read", &path, &e))?,
    );
    let gzip = {
        use std::io::BufRead;
        let head = f.fill_buf().map_err(|e| io_error("read", &path, &e))?;
        head.starts_with(&[0x1f, 0x8b])
    };
    let stream: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut tar = tar::Archive::new(stream);
    let mut entries = tar.entries().map_err(tar_err)?;
    let mut first = entries
        .next()
        .ok_or_else(|| damaged("the archive is empty".into()))?
        .map_err(tar_err)?;
    let first_path = first
        .path()
        .map_err(tar_err)?
        .to_string_lossy()
        .into_owned();
    if first_path != manifest::MANIFEST {
        return Err(damaged(format!(
            "found \"{first_path}\" where \"{}\" belongs",
            manifest::MANIFEST
        )));
    }
    let mut text = String::new();
    first.read_to_string(&mut text).map_err(tar_err)?;
    drop(first);
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| damaged(format!("its manifest does not read: {e}")))?;
    if m.format != manifest::FORMAT || m.format_version > manifest::FORMAT_VERSION {
        return Err(damaged(format!(
            "its manifest is of \"{}\" version {}, not a pg_tenant_ops export this version reads",
            m.format, m.format_version
        )));
    }
    check_scope(&loaded, &m, archive)?;
    let format = Format::parse(&m.data_format)
        .map_err(|_| damaged(format!("its manifest names format \"{}\"", m.data_format)))?;
    let dir = crate::backup::store::directory()?;
    let mut writer = SpoolWriter {
        dir,
        stem: format!("tenant_ops_backup_import_{}", uuid::Uuid::now_v7()),
        cleanup: store::Spools::default(),
        archive,
    };
    let slots = if format == Format::Xlsx {
        workbook_spools(entries, &m, &mut writer)?
    } else {
        file_spools(entries, format, &m, &mut writer)?
    };
    let cleanup = std::mem::take(&mut writer.cleanup);
    let ordered = Spools { tables: slots };
    let root = loaded.catalog.table(loaded.resolved.root);
    let bm = backup_format::Manifest {
        format: backup_format::FORMAT.into(),
        format_version: backup_format::FORMAT_VERSION,
        extension_version: env!("CARGO_PKG_VERSION").into(),
        server_version: m.server_version.clone(),
        scope: backup_format::ScopeInfo {
            name: scope_name.to_string(),
            root_schema: root.schema.clone(),
            root_table: root.name.clone(),
            tenant_key: loaded.resolved.tenant_key.clone(),
        },
        tenant: m.tenant.clone(),
        created_at: m.created_at.clone(),
        shared: false,
        tables: m
            .tables
            .iter()
            .zip(&ordered.tables)
            .enumerate()
            .map(|(i, (t, s))| backup_format::TableEntry {
                schema: t.schema.clone(),
                table: t.table.clone(),
                role: t.role.clone(),
                columns: t.columns.clone(),
                rows: s.digest.rows,
                sha256: s.sha256.clone(),
                rows_digest: s.digest.hex(),
                file: backup_format::data_file(i),
            })
            .collect(),
        capture: None,
        incremental: None,
    };
    let upload = format!("import-{}", uuid::Uuid::now_v7());
    let upload_path = crate::backup::store::upload_path(&upload)?;
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&upload_path)
            .map_err(|e| io_error("create", &upload_path, &e))?;
        let identity = crate::backup::crypt::identity()?;
        let written =
            crate::backup::create::write_archive(&mut file, &bm, &ordered, identity.as_ref());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&upload_path);
            return Err(e.into());
        }
    }
    drop(ordered);
    drop(cleanup);
    let backup_id = crate::backup::load::finish(&upload, caller)?;
    crate::sys::owner::execute(
        "UPDATE tenant_ops.backups SET label = $2 WHERE id = $1",
        &[backup_id.into(), format!("import of {archive}").into()],
    )
    .or_raise();
    let job_id = crate::backup::restore::submit(backup_id, &restore, false)?;
    Ok((backup_id, job_id))
}

/// An export is imported through a scope over the root table and tenant key it was exported
/// with (the tables are matched by name).
fn check_scope(l: &LoadedScope, m: &Manifest, archive: &str) -> Result<()> {
    let root = l.catalog.table(l.resolved.root);
    if (
        root.schema.as_str(),
        root.name.as_str(),
        l.resolved.tenant_key.as_str(),
    ) == (
        m.scope.root_schema.as_str(),
        m.scope.root_table.as_str(),
        m.scope.tenant_key.as_str(),
    ) {
        return Ok(());
    }
    Err(Error::OtherScope {
        archive: archive.to_string(),
        what: format!(
            "it was exported from {} (tenant key {}), the scope is over {} (tenant key {})",
            crate::pg::qualified(&m.scope.root_schema, &m.scope.root_table),
            crate::pg::quote_ident(&m.scope.tenant_key),
            root.display,
            crate::pg::quote_ident(&l.resolved.tenant_key)
        ),
    })
}

fn tar_error(archive: &str, e: std::io::Error) -> Error {
    Error::Damaged {
        archive: archive.to_string(),
        what: format!("the archive does not read: {e}"),
    }
}

type Entries<'a> = tar::Entries<'a, Box<dyn Read>>;

/// Writes the spools of one import: each table's rows as backup COPY lines, in the export
/// directory's hidden files, removed however the import ends (`cleanup`).
struct SpoolWriter<'a> {
    dir: std::path::PathBuf,
    stem: String,
    cleanup: store::Spools,
    archive: &'a str,
}

impl SpoolWriter<'_> {
    fn damaged(&self, what: String) -> Error {
        Error::Damaged {
            archive: self.archive.to_string(),
            what,
        }
    }

    /// Spools table `i`'s rows, which `read` passes to the callback it is given, one row of
    /// fields at a time; the row count is checked against the manifest's.
    fn spool(
        &mut self,
        i: usize,
        t: &manifest::TableEntry,
        read: impl FnOnce(&mut dyn FnMut(&[Option<String>]) -> Result<()>) -> Result<()>,
    ) -> Result<Spool> {
        let spool_path = self
            .dir
            .join(format!(".{}.t{i}.{}", self.stem, std::process::id()));
        let spool_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&spool_path)
            .map_err(|e| io_error("create", &spool_path, &e))?;
        self.cleanup.0.push(spool_path.clone());
        let mut out = HashingWriter {
            inner: BufWriter::with_capacity(256 * 1024, spool_file),
            hasher: Default::default(),
            bytes: 0,
        };
        let mut digest = RowsDigest::default();
        let mut line = Vec::with_capacity(4096);
        read(&mut |fields| {
            line.clear();
            backup_format::write_line(&mut line, fields.iter().map(|f| f.as_deref()));
            digest.add(&line);
            out.write_all(&line)
                .map_err(|e| io_error("write", &spool_path, &e))
        })?;
        if digest.rows != t.rows {
            return Err(self.damaged(format!(
                "{} ({}): it holds {} rows where the manifest says {}",
                t.file,
                crate::pg::qualified(&t.schema, &t.table),
                digest.rows,
                t.rows
            )));
        }
        out.flush()
            .map_err(|e| io_error("write", &spool_path, &e))?;
        Ok(Spool {
            path: spool_path,
            sha256: out.hasher.hex(),
            digest,
            bytes: out.bytes,
        })
    }
}

/// The spools of an export with one data file per table (every format but XLSX), in
/// manifest order.
fn file_spools(
    entries: Entries<'_>,
    format: Format,
    m: &Manifest,
    w: &mut SpoolWriter<'_>,
) -> Result<Vec<Spool>> {
    let archive = w.archive;
    let tar_err = |e: std::io::Error| tar_error(archive, e);
    let mut slots: Vec<Option<Spool>> = m.tables.iter().map(|_| None).collect();
    for entry in entries {
        let entry = entry.map_err(tar_err)?;
        let name = entry
            .path()
            .map_err(tar_err)?
            .to_string_lossy()
            .into_owned();
        let i = m
            .tables
            .iter()
            .position(|t| t.file == name)
            .ok_or_else(|| {
                w.damaged(format!(
                    "it holds \"{name}\", which its manifest does not list"
                ))
            })?;
        if slots[i].is_some() {
            return Err(w.damaged(format!("it holds \"{name}\" twice")));
        }
        let t = &m.tables[i];
        let table = crate::pg::qualified(&t.schema, &t.table);
        let in_file = |what: String| Error::Damaged {
            archive: archive.to_string(),
            what: format!("{name} ({table}): {what}"),
        };
        let mut input = BufReader::with_capacity(
            256 * 1024,
            HashingReader {
                inner: entry,
                hasher: Hasher::default(),
                bytes: 0,
            },
        );
        let columns: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        let spool = w.spool(i, t, |each| {
            format::read_rows(
                format,
                &columns,
                &mut input,
                |fields| each(&fields),
                &in_file,
            )
        })?;
        std::io::copy(&mut input, &mut std::io::sink()).map_err(tar_err)?;
        let reader = input.into_inner();
        if reader.bytes != t.bytes || reader.hasher.hex() != t.sha256 {
            return Err(in_file("its SHA-256 or size is not the manifest's".into()));
        }
        slots[i] = Some(spool);
    }
    if let Some(i) = slots.iter().position(Option::is_none) {
        return Err(w.damaged(format!(
            "it has no \"{}\", the data of {}",
            m.tables[i].file,
            crate::pg::qualified(&m.tables[i].schema, &m.tables[i].table)
        )));
    }
    Ok(slots.into_iter().flatten().collect())
}

/// The spools of an XLSX export: one workbook, a sheet per table. A zip archive is read from
/// its end, so the workbook is read whole — within `tenant_ops.import_xlsx_max_size`, as an
/// XLSX import is — then each table's sheet with the import's XLSX reader, the header row
/// checked against the manifest's columns. An empty cell is NULL and an empty text cell the
/// empty string, as the export wrote them.
fn workbook_spools(
    entries: Entries<'_>,
    m: &Manifest,
    w: &mut SpoolWriter<'_>,
) -> Result<Vec<Spool>> {
    use crate::import::formats::Reader as _;
    let archive = w.archive;
    let tar_err = |e: std::io::Error| tar_error(archive, e);
    let Some(first) = m.tables.first() else {
        return Ok(vec![]);
    };
    let limit = crate::gucs::import_xlsx_max_size();
    let mut book: Option<Vec<u8>> = None;
    for entry in entries {
        let entry = entry.map_err(tar_err)?;
        let name = entry
            .path()
            .map_err(tar_err)?
            .to_string_lossy()
            .into_owned();
        if name != first.file || m.tables.iter().any(|t| t.file != first.file) {
            return Err(w.damaged(format!(
                "it holds \"{name}\", which its manifest does not list"
            )));
        }
        if book.is_some() {
            return Err(w.damaged(format!("it holds \"{name}\" twice")));
        }
        let mut input = HashingReader {
            inner: entry,
            hasher: Hasher::default(),
            bytes: 0,
        };
        let mut bytes = vec![];
        (&mut input)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(tar_err)?;
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                message: format!(
                    "the workbook of export \"{archive}\" is larger than tenant_ops.import_xlsx_max_size ({limit} bytes)"
                ),
                hint: "Have a superuser raise tenant_ops.import_xlsx_max_size, or export in another format.".into(),
            });
        }
        if input.bytes != first.bytes || input.hasher.hex() != first.sha256 {
            return Err(w.damaged(format!("{name}: its SHA-256 or size is not the manifest's")));
        }
        book = Some(bytes);
    }
    let book = book.ok_or_else(|| {
        w.damaged(format!(
            "it has no \"{}\", the workbook of every table",
            first.file
        ))
    })?;
    let mut spools = vec![];
    for (i, t) in m.tables.iter().enumerate() {
        let table = crate::pg::qualified(&t.schema, &t.table);
        let in_sheet = |what: String| Error::Damaged {
            archive: archive.to_string(),
            what: format!("{} ({table}): {what}", t.file),
        };
        let sheet = t
            .sheet
            .clone()
            .ok_or_else(|| in_sheet("its manifest names no sheet".into()))?;
        let read_error = |e: crate::import::error::Error| {
            use crate::error::UserError;
            in_sheet(format!("sheet \"{sheet}\": {}", e.report().message))
        };
        let mut o =
            crate::import::options::ImportOptions::parse(&serde_json::json!({ "sheet": sheet }))
                .map_err(read_error)?;
        // No text cell equals it (PostgreSQL text holds no NUL): only empty cells are NULL.
        o.csv.null = "\0".into();
        let mut reader = crate::import::formats::xlsx::XlsxReader::new(
            Box::new(std::io::Cursor::new(book.clone())),
            &o,
            &[],
            limit,
        )
        .map_err(read_error)?;
        let columns: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        if reader.fields() != Some(columns.as_slice()) {
            return Err(in_sheet(format!(
                "sheet \"{sheet}\": its header row is not the manifest's columns"
            )));
        }
        spools.push(w.spool(i, t, |each| {
            while let Some(r) = reader.next_record().map_err(read_error)? {
                if let Some((_, reason)) = r.faults.first() {
                    return Err(in_sheet(format!("row {}: {}", r.line, reason.message)));
                }
                match r.values {
                    crate::import::formats::Values::Positional(v) => each(&v)?,
                    crate::import::formats::Values::Named(_) => {
                        return Err(in_sheet("not a sheet of rows".into()))
                    }
                }
            }
            Ok(())
        })?);
    }
    Ok(spools)
}
