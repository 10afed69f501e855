//! The export job: one step reads the tenant's rows (`backup::export_rows`: one cursor per
//! table, one snapshot for all of them, one fetch in memory), writes each table in the
//! format to a hidden spool file of the export directory (or, for XLSX, a sheet of one
//! workbook), then the archive — `manifest.json` first, the data files after it — through
//! gzip into a hidden temporary file, fsynced and renamed to its name. Should the step's
//! transaction abort, the archive is removed again; a crash leaves at most hidden files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use pgrx::prelude::*;
use serde_json::{json, Value};

use super::error::{io_error, Error, Result};
use super::format::{Format, Kind, TableMeta, TextWriter};
use super::manifest::{self, ColumnEntry, Manifest, ScopeInfo, TableEntry};
use super::options::ExportOptions;
use super::store::{self, Pending, Spools};
use super::xlsx::{sheet_name, XlsxWriter};
use crate::backup::format::HashingWriter;
use crate::backup::{role_name, TableSpec};
use crate::error::OrRaise;
use crate::jobs::kind::Steps;
use crate::jobs::{self, Job, StepOutcome};
use crate::pii::mask::{Masks, Sampled};
use crate::scope::graph::Role;
use crate::scope::LoadedScope;

/// Where the job keeps the format in its options (the user's options never have this key).
const FORMAT_KEY: &str = "_format";

/// Creates an export job after checking every argument; nothing is written when one is bad.
pub fn submit(
    scope_name: &str,
    tenant: &str,
    format: &str,
    raw: &Value,
    background: bool,
) -> Result<i64> {
    let format = Format::parse(format)?;
    let options = ExportOptions::parse(raw)?;
    let loaded = LoadedScope::load(scope_name)?;
    loaded.check_tenant(tenant)?;
    let chosen = choose(&loaded, &options, scope_name)?;
    // `"pii": "mask"` is resolved now, once (see `pii::mask`).
    let pii = match &options.pii {
        Some(p) => Some(
            Masks::resolve(
                Some(p),
                &loaded,
                Sampled::Tenant {
                    scope: scope_name,
                    tenant,
                },
            )?
            .to_option(&loaded.catalog),
        ),
        None => None,
    };
    for (_, t) in &chosen {
        crate::pg::require_table_privileges(
            &t.sql,
            &crate::pg::qualified(&t.schema, &t.table),
            "SELECT",
            "export_tenant",
        )?;
    }
    store::directory()?;
    if let Some(file) = &options.file {
        store::fresh(file)?;
    }
    let mut stored = raw.clone();
    if !stored.is_object() {
        stored = json!({});
    }
    stored[FORMAT_KEY] = json!(format.name());
    if let Some(pii) = pii {
        stored["pii"] = pii;
    }
    Ok(jobs::create(
        "export",
        scope_name,
        tenant,
        &stored,
        if background {
            jobs::Executor::Background
        } else {
            jobs::Executor::Inline
        },
    ))
}

/// The tables exported, parents first, with their oids: the root and owned tables, or those
/// `tables` names (in the scope's order), with the columns it names (in its order).
fn choose(l: &LoadedScope, options: &ExportOptions, scope: &str) -> Result<Vec<(u32, TableSpec)>> {
    let oids: Vec<u32> = l
        .resolved
        .tables
        .iter()
        .filter(|t| t.role != Role::Shared)
        .map(|t| t.oid)
        .collect();
    let all: Vec<(u32, TableSpec)> = oids
        .into_iter()
        .zip(crate::backup::tables(l, false))
        .collect();
    let Some(choices) = &options.tables else {
        return Ok(all);
    };
    let mut picked: Vec<(u32, Option<&Vec<String>>)> = vec![];
    for c in choices {
        let oid =
            crate::pg::regclass(&c.name).ok_or_else(|| Error::UnknownTable(c.name.clone()))?;
        if !all.iter().any(|(o, _)| *o == oid) {
            return Err(Error::NotInScope {
                table: crate::pg::relation_name(oid),
                scope: scope.to_string(),
            });
        }
        picked.push((oid, c.columns.as_ref()));
    }
    let mut out = vec![];
    for (oid, mut spec) in all {
        let Some((_, columns)) = picked.iter().find(|(o, _)| *o == oid) else {
            continue;
        };
        if let Some(names) = columns {
            let mut cols = vec![];
            for n in names.iter() {
                let c = spec.columns.iter().find(|c| c.name == *n).ok_or_else(|| {
                    Error::UnknownColumn {
                        table: crate::pg::qualified(&spec.schema, &spec.table),
                        column: n.clone(),
                    }
                })?;
                if !cols
                    .iter()
                    .any(|x: &crate::backup::ColumnSpec| x.name == c.name)
                {
                    cols.push(c.clone());
                }
            }
            spec.columns = cols;
        }
        out.push((oid, spec));
    }
    Ok(out)
}

/// A file name made of free text: letters, digits, `_` and `-` kept, the rest `_`.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}

pub struct Export {
    job_id: i64,
    scope: String,
    tenant: String,
    format: Format,
    options: ExportOptions,
}

impl Export {
    pub fn from_job(job: &Job) -> Result<Export> {
        let mut raw = job.options.clone();
        let format = raw
            .as_object_mut()
            .and_then(|m| m.remove(FORMAT_KEY))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Export {
            job_id: job.id,
            scope: job.scope.clone().unwrap_or_default(),
            tenant: job.tenant.clone().unwrap_or_default(),
            format: Format::parse(&format)?,
            options: ExportOptions::parse(&raw)?,
        })
    }

    fn run(&self) -> Result<Value> {
        let loaded = LoadedScope::load(&self.scope)?;
        loaded.check_tenant(&self.tenant)?;
        let mut chosen = choose(&loaded, &self.options, &self.scope)?;
        let masks = Masks::resolve(
            self.options.pii.as_ref(),
            &loaded,
            Sampled::Tenant {
                scope: &self.scope,
                tenant: &self.tenant,
            },
        )?;
        for (oid, spec) in &mut chosen {
            for c in &mut spec.columns {
                if let Some(t) = masks.get(*oid, &c.name) {
                    let context = format!("column {}.{} of option \"pii\"", spec.table, c.name);
                    let t = crate::migrate::transform::Transform::parse(t, &context)?;
                    c.select = Some(format!(
                        "({})::pg_catalog.text",
                        t.to_sql(&format!("c.{}", c.quoted))
                    ));
                }
            }
        }
        let extension = if self.options.gzip { "tar.gz" } else { "tar" };
        let name = self.options.file.clone().unwrap_or_else(|| {
            format!(
                "{}_{}_{}.{extension}",
                safe(&self.scope),
                safe(&self.tenant),
                self.job_id
            )
        });
        let path = store::fresh(&name)?;
        let dir = store::directory()?;
        let specs: Vec<TableSpec> = chosen.iter().map(|(_, s)| s.clone()).collect();
        let metas: Vec<TableMeta> = specs
            .iter()
            .map(|s| TableMeta {
                schema: s.schema.clone(),
                table: s.table.clone(),
                qualified: crate::pg::qualified(&s.schema, &s.table),
                columns: s.columns.iter().map(|c| c.name.clone()).collect(),
                kinds: s.columns.iter().map(|c| Kind::of(&c.type_full)).collect(),
            })
            .collect();
        // An attempt that failed before (and is retried) may have left its tables.
        jobs::restart_from_scratch(self.job_id, "export");
        for (i, (oid, s)) in chosen.iter().enumerate() {
            jobs::add_table(
                self.job_id,
                i as i32,
                *oid,
                None,
                role_name(s.role),
                None,
                json!({}),
            );
        }
        let mut spools = Spools::default();
        let mut rows = vec![0i64; specs.len()];
        // Per table: its data file in the archive, spool path, bytes, sha256.
        let mut files: Vec<(String, std::path::PathBuf, u64, String)> = vec![];
        if self.format == Format::Xlsx {
            let (book_path, _) = spools.create(&dir, "xlsx")?;
            let mut book = XlsxWriter::new(&metas, &dir)?;
            crate::backup::export_rows(&specs, &self.tenant, |t, fields| {
                rows[t] += 1;
                book.row(t, &metas[t], fields)
            })?;
            book.save(&book_path)?;
            let (bytes, sha) = hash_file(&book_path)?;
            for _ in &specs {
                files.push((
                    "data/tenant.xlsx".into(),
                    book_path.clone(),
                    bytes,
                    sha.clone(),
                ));
            }
        } else {
            let mut writers = vec![];
            for (i, m) in metas.iter().enumerate() {
                let (p, f) = spools.create(&dir, &format!("t{i}"))?;
                let mut out = HashingWriter {
                    inner: BufWriter::with_capacity(256 * 1024, f),
                    hasher: Default::default(),
                    bytes: 0,
                };
                let mut w = TextWriter::new(self.format, m);
                w.begin(&mut out).map_err(|e| io_error("write", &p, &e))?;
                writers.push((p, out, w));
            }
            crate::backup::export_rows(&specs, &self.tenant, |t, fields| {
                rows[t] += 1;
                let (p, out, w) = &mut writers[t];
                w.row(out, fields).map_err(|e| io_error("write", p, &e))
            })?;
            for (i, (p, mut out, mut w)) in writers.into_iter().enumerate() {
                w.end(&mut out).map_err(|e| io_error("write", &p, &e))?;
                out.flush().map_err(|e| io_error("write", &p, &e))?;
                let file =
                    manifest::data_file(i, &metas[i].schema, &metas[i].table, self.format.name());
                files.push((file, p, out.bytes, out.hasher.hex()));
            }
        }
        let root = loaded.catalog.table(loaded.resolved.root);
        let m = Manifest {
            format: manifest::FORMAT.into(),
            format_version: manifest::FORMAT_VERSION,
            extension_version: env!("CARGO_PKG_VERSION").into(),
            server_version: Spi::get_one::<String>("SELECT pg_catalog.current_setting('server_version')")
                .or_raise()
                .unwrap_or_default(),
            scope: ScopeInfo {
                name: self.scope.clone(),
                root_schema: root.schema.clone(),
                root_table: root.name.clone(),
                tenant_key: loaded.resolved.tenant_key.clone(),
            },
            tenant: self.tenant.clone(),
            created_at: Spi::get_one::<String>(
                "SELECT pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            )
            .or_raise()
            .unwrap_or_default(),
            data_format: self.format.name().into(),
            tables: specs
                .iter()
                .zip(&files)
                .enumerate()
                .map(|(i, (s, (file, _, bytes, sha)))| TableEntry {
                    schema: s.schema.clone(),
                    table: s.table.clone(),
                    role: role_name(s.role).into(),
                    columns: s
                        .columns
                        .iter()
                        .map(|c| ColumnEntry {
                            name: c.name.clone(),
                            type_: c.type_full.clone(),
                        })
                        .collect(),
                    rows: rows[i],
                    file: file.clone(),
                    sheet: (self.format == Format::Xlsx).then(|| sheet_name(i, &s.table)),
                    bytes: *bytes,
                    sha256: sha.clone(),
                })
                .collect(),
        };
        let mut pending = Pending::create(&path)?;
        let (size, sha256) = write_archive(pending.file(), &m, &files, self.options.gzip)?;
        drop(spools);
        pending.commit(&name)?;
        for (i, t) in m.tables.iter().enumerate() {
            jobs::set_rows_total(self.job_id, i as i32, t.rows);
            jobs::checkpoint(self.job_id, i as i32, "done", t.rows, None);
            jobs::set_table_details(
                self.job_id,
                i as i32,
                &json!({"bytes": t.bytes, "file": t.file}),
            );
        }
        let total: i64 = m.tables.iter().map(|t| t.rows).sum();
        let data_bytes: u64 = if self.format == Format::Xlsx {
            m.tables.first().map_or(0, |t| t.bytes)
        } else {
            m.tables.iter().map(|t| t.bytes).sum()
        };
        Ok(json!({
            "file": name, "format": self.format.name(), "gzip": self.options.gzip,
            "size_bytes": size, "sha256": sha256, "data_bytes": data_bytes,
            "tables": m.tables.len(), "rows": total,
            "per_table": m.tables.iter().map(|t| json!({
                "table": crate::pg::qualified(&t.schema, &t.table), "rows": t.rows,
                "bytes": t.bytes, "file": t.file,
            })).collect::<Vec<_>>(),
        }))
    }
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(|e| io_error("read", path, &e))?;
    let mut w = HashingWriter {
        inner: std::io::sink(),
        hasher: Default::default(),
        bytes: 0,
    };
    std::io::copy(&mut f, &mut w).map_err(|e| io_error("read", path, &e))?;
    Ok((w.bytes, w.hasher.hex()))
}

/// Writes the archive into `file`: `manifest.json`, then each data file once; returns the
/// archive's size and SHA-256 (over the file as written).
fn write_archive(
    file: &mut File,
    m: &Manifest,
    files: &[(String, std::path::PathBuf, u64, String)],
    gzip: bool,
) -> Result<(u64, String)> {
    let err = |e: std::io::Error| Error::Io {
        message: format!("could not write the export archive: {e}"),
        disk_full: e.raw_os_error() == Some(libc::ENOSPC),
    };
    let out = HashingWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        hasher: Default::default(),
        bytes: 0,
    };
    let mut out = if gzip {
        let gz = entries(GzEncoder::new(out, Compression::default()), m, files)?;
        gz.finish().map_err(err)?
    } else {
        entries(out, m, files)?
    };
    out.flush().map_err(err)?;
    Ok((out.bytes, out.hasher.hex()))
}

/// The tar entries, into `w`; returns `w`.
fn entries<W: Write>(
    w: W,
    m: &Manifest,
    files: &[(String, std::path::PathBuf, u64, String)],
) -> Result<W> {
    let err = |e: std::io::Error| Error::Io {
        message: format!("could not write the export archive: {e}"),
        disk_full: e.raw_os_error() == Some(libc::ENOSPC),
    };
    let mut tar = tar::Builder::new(w);
    tar.mode(tar::HeaderMode::Deterministic);
    let add = |tar: &mut tar::Builder<W>, path: &str, size: u64, data: &mut dyn std::io::Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data)
    };
    let manifest_bytes = serde_json::to_vec_pretty(m).expect("a manifest serializes");
    add(
        &mut tar,
        manifest::MANIFEST,
        manifest_bytes.len() as u64,
        &mut manifest_bytes.as_slice(),
    )
    .map_err(err)?;
    let mut written: Vec<&str> = vec![];
    for (name, path, bytes, _) in files {
        if written.contains(&name.as_str()) {
            continue;
        }
        written.push(name);
        let mut f = File::open(path).map_err(|e| io_error("read", path, &e))?;
        add(&mut tar, name, *bytes, &mut f).map_err(err)?;
    }
    tar.into_inner().map_err(err)
}

impl Steps for Export {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, crate::error::Report> {
        let result = self.run()?;
        jobs::log(
            self.job_id,
            "exported",
            Some("export"),
            None,
            result["rows"].as_i64(),
            None,
            Some(result.clone()),
        );
        jobs::notify(
            self.job_id,
            "job.progress",
            Some(json!({
                "rows": result["rows"], "bytes": result["size_bytes"],
            })),
        );
        Ok(StepOutcome::Done(result))
    }
}
