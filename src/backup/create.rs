//! The backup job: one step reads the tenant's rows (`export`, one snapshot), spools each
//! table's lines to a temporary file in the backup directory (memory stays at one fetch),
//! then writes the archive — manifest, restore script, data files — through gzip into a
//! temporary file, hashing it as it goes, fsyncs and renames it, and registers it in
//! `tenant_ops.backups`. The file exists under its final name only from the step that
//! registers it; should that transaction abort, the file is removed (see `store.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::Compression;
use pgrx::prelude::*;
use serde_json::{json, Value};

use super::crypt::Sink;
use super::error::{Error, Result};
use super::format::{self, ColumnEntry, HashingWriter, Manifest, ScopeInfo, TableEntry};
use super::options::{BackupOptions, Shared};
use super::store::{self, io_error, Pending};
use super::{export, role_name, tables, RowsDigest, TableSpec};
use crate::error::{Common, OrRaise};
use crate::jobs::kind::Steps;
use crate::jobs::{self, Job, StepOutcome};
use crate::scope;
use crate::sys::owner;

/// Creates a backup job after checking every argument; nothing is written when one is bad.
pub fn submit(scope_name: &str, tenant: &str, raw: &Value, background: bool) -> Result<i64> {
    let options = BackupOptions::parse(raw)?;
    let loaded = scope::LoadedScope::load(scope_name)?;
    loaded.check_tenant(tenant)?;
    if let Some(r) = &options.retention {
        retention_interval(r)?;
    }
    for t in tables(&loaded, options.shared == Shared::Include) {
        crate::pg::require_table_privileges(
            &t.sql,
            &crate::pg::qualified(&t.schema, &t.table),
            "SELECT",
            "create_backup",
        )?;
    }
    check_chain(&loaded, scope_name, tenant, &options)?;
    store::directory()?;
    super::crypt::identity()?;
    Ok(jobs::create(
        "backup",
        scope_name,
        tenant,
        raw,
        if background {
            jobs::Executor::Background
        } else {
            jobs::Executor::Inline
        },
    ))
}

/// The incremental options: `capture` and `incremental` exclusive (a link continues its base's
/// capture), a capture installable (primary keys, the TRIGGER privilege), an incremental's
/// predecessor the last link of a chain of the same scope and tenant with a running capture.
fn check_chain(
    loaded: &scope::LoadedScope,
    scope_name: &str,
    tenant: &str,
    options: &BackupOptions,
) -> Result<()> {
    if options.capture && options.incremental.is_some() {
        return Err(Common::InvalidOption(
            "options \"capture\" and \"incremental\" exclude each other".into(),
            Some("An incremental backup continues the capture of its base: take the base with \"capture\", its incrementals with \"incremental\".".into()),
        )
        .into());
    }
    if options.capture {
        crate::capture::check(loaded)?;
    }
    if let Some(previous) = options.incremental {
        if options.shared == Shared::Include {
            return Err(Common::InvalidOption(
                "option \"shared\" cannot be \"include\" for an incremental backup".into(),
                Some("An incremental holds the tenant's own rows that changed; shared rows are not captured.".into()),
            )
            .into());
        }
        super::incremental::head(previous, scope_name, tenant)?;
    }
    Ok(())
}

/// Checks an interval text; 22007 naming it when PostgreSQL cannot read it.
fn retention_interval(text: &str) -> Result<()> {
    let ok = crate::sys::try_subtransaction(|| {
        Spi::get_one_with_args::<bool>("SELECT $1::pg_catalog.interval > '0'", &[text.into()])
    });
    match ok {
        Ok(Ok(Some(true))) => Ok(()),
        _ => Err(Common::InvalidOption(
            format!("option \"retention\" must be a positive interval, not \"{text}\""),
            Some("For example '90 days' or '12 hours'.".into()),
        )
        .into()),
    }
}

pub struct Backup {
    job_id: i64,
    scope: String,
    tenant: String,
    options: BackupOptions,
}

impl Backup {
    pub fn from_job(job: &Job) -> Result<Backup> {
        Ok(Backup {
            job_id: job.id,
            scope: job.scope.clone().unwrap_or_default(),
            tenant: job.tenant.clone().unwrap_or_default(),
            options: BackupOptions::parse(&job.options)?,
        })
    }

    fn run(&self) -> Result<Value> {
        let loaded = scope::LoadedScope::load(&self.scope)?;
        loaded.check_tenant(&self.tenant)?;
        let dir = store::directory()?;
        let identity = super::crypt::identity()?;
        // A base with a capture: the capture is in force before the snapshot is taken (below,
        // in the same transaction). An incremental: the changes since the previous link, read
        // with the captured tables locked (see `backup::incremental`).
        let mut capture = None;
        let mut link = None;
        let mut deleted_from = usize::MAX;
        let specs = match self.options.incremental {
            Some(previous) => {
                // Two incrementals of one link at once: the second waits for the first, then
                // finds the link taken (a branch, refused) rather than an empty change set.
                let head = super::incremental::head(previous, &self.scope, &self.tenant)?;
                crate::capture::lock_apply(head.capture);
                let head = super::incremental::head(previous, &self.scope, &self.tenant)?;
                let (specs, n, l) =
                    super::incremental::prepare(self.job_id, &loaded, &self.tenant, &head)?;
                deleted_from = n;
                link = Some(l);
                specs
            }
            None => {
                if self.options.capture {
                    super::incremental::check_isolation()?;
                    capture = Some(crate::capture::install(
                        self.job_id,
                        &loaded,
                        &self.tenant,
                        crate::capture::Purpose::IncrementalBackups,
                    )?);
                }
                tables(&loaded, self.options.shared == Shared::Include)
            }
        };
        // What an attempt killed mid-write left behind (this job's earlier attempt, say).
        store::sweep_temporaries()?;
        let mut pending = Pending::create(&dir, identity.is_some())?;
        let spools = Spools::write(&dir, pending.name(), &specs, &self.tenant)?;
        let root = loaded.catalog.table(loaded.resolved.root);
        let manifest = Manifest {
            format: format::FORMAT.into(),
            format_version: format::FORMAT_VERSION,
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
            shared: self.options.shared == Shared::Include,
            tables: specs
                .iter()
                .zip(&spools.tables)
                .enumerate()
                .map(|(i, (s, t))| TableEntry {
                    schema: s.schema.clone(),
                    table: s.table.clone(),
                    role: if i >= deleted_from {
                        format::DELETED.into()
                    } else {
                        role_name(s.role).into()
                    },
                    columns: s
                        .columns
                        .iter()
                        .map(|c| ColumnEntry {
                            name: c.name.clone(),
                            type_: c.type_full.clone(),
                        })
                        .collect(),
                    rows: t.digest.rows,
                    sha256: t.sha256.clone(),
                    rows_digest: t.digest.hex(),
                    file: format::data_file(i),
                })
                .collect(),
            capture,
            incremental: link,
        };
        let (size, sha256) = write_archive(pending.file(), &manifest, &spools, identity.as_ref())?;
        drop(spools);
        let name = pending.name().to_string();
        let rows: i64 = manifest.tables.iter().map(|t| t.rows).sum();
        let tables_count = manifest.tables.len().min(deleted_from);
        let manifest_json = serde_json::to_value(&manifest).expect("a manifest serializes");
        let retention = match &self.options.retention {
            Some(r) => r.clone(),
            None => format!("{} minutes", crate::gucs::backup_retention_minutes()),
        };
        let id = owner::get_one::<i64>(
            "INSERT INTO tenant_ops.backups (scope, tenant, label, job_id, file_name, size_bytes, sha256,
                                             tables, rows, manifest, encrypted, created_by, expires_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, j.submitted_by, pg_catalog.now() + $11::pg_catalog.interval
               FROM tenant_ops.jobs j WHERE j.id = $4
             RETURNING id",
            &[
                self.scope.clone().into(),
                self.tenant.clone().into(),
                self.options.label.clone().into(),
                self.job_id.into(),
                name.clone().into(),
                (size as i64).into(),
                sha256.clone().into(),
                (tables_count as i32).into(),
                rows.into(),
                pgrx::JsonB(manifest_json).into(),
                retention.into(),
                identity.is_some().into(),
            ],
        )
        .or_raise()
        .unwrap_or_default();
        // Last: the file takes its final name only once its row is written.
        pending.commit()?;
        Ok(json!({
            "backup_id": id, "file": name, "size_bytes": size, "sha256": sha256,
            "encrypted": identity.is_some(),
            "tables": tables_count, "rows": rows,
            "per_table": manifest.tables.iter().map(|t| {
                let mut e = json!({"table": crate::pg::qualified(&t.schema, &t.table), "rows": t.rows});
                if manifest.incremental.is_some() {
                    e["role"] = json!(t.role);
                }
                e
            }).collect::<Vec<_>>(),
            "capture": manifest.capture,
            "incremental": manifest.incremental.as_ref().map(|l| json!({
                "base": l.base, "previous": l.previous, "link": l.link, "changes": l.changes,
                "first_seq": l.first_seq, "last_seq": l.last_seq,
            })),
        }))
    }
}

impl Steps for Backup {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, crate::error::Report> {
        let result = self.run()?;
        jobs::log(
            self.job_id,
            "backed_up",
            Some("backup"),
            None,
            result["rows"].as_i64(),
            None,
            Some(result.clone()),
        );
        Ok(StepOutcome::Done(result))
    }
}

/// One table's spooled lines.
pub(crate) struct Spool {
    pub path: PathBuf,
    pub sha256: String,
    pub digest: RowsDigest,
    pub bytes: u64,
}

/// The spool files of one backup, removed when dropped (also what `import_tenant` converts an
/// export into before it writes the archive).
pub(crate) struct Spools {
    pub tables: Vec<Spool>,
}

impl Drop for Spools {
    fn drop(&mut self) {
        for t in &self.tables {
            let _ = fs::remove_file(&t.path);
        }
    }
}

impl Spools {
    fn write(
        dir: &std::path::Path,
        name: &str,
        specs: &[TableSpec],
        tenant: &str,
    ) -> Result<Spools> {
        let mut spools = Spools { tables: vec![] };
        let mut writers: Vec<(HashingWriter<BufWriter<File>>, RowsDigest)> = vec![];
        for i in 0..specs.len() {
            // Named like the archive's temporary file, so a crash's leftovers are swept alike.
            let path = dir.join(format!(".{name}.t{i}.{}", std::process::id()));
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io_error("create", &path, &e))?;
            spools.tables.push(Spool {
                path,
                sha256: String::new(),
                digest: RowsDigest::default(),
                bytes: 0,
            });
            writers.push((
                HashingWriter {
                    inner: BufWriter::with_capacity(256 * 1024, f),
                    hasher: Default::default(),
                    bytes: 0,
                },
                RowsDigest::default(),
            ));
        }
        export(specs, tenant, |t, line| {
            let (w, d) = &mut writers[t];
            d.add(line);
            w.write_all(line)
                .map_err(|e| io_error("write", &spools.tables[t].path, &e))
        })?;
        for (spool, (mut w, d)) in spools.tables.iter_mut().zip(writers) {
            w.flush().map_err(|e| io_error("write", &spool.path, &e))?;
            spool.bytes = w.bytes;
            spool.sha256 = w.hasher.hex();
            spool.digest = d;
        }
        Ok(spools)
    }
}

/// Writes the archive into `file`, encrypted to `identity`'s recipient when given; returns
/// the file's size and SHA-256 (over the file as written).
pub(crate) fn write_archive(
    file: &mut File,
    manifest: &Manifest,
    spools: &Spools,
    identity: Option<&age::x25519::Identity>,
) -> Result<(u64, String)> {
    let out = HashingWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        hasher: Default::default(),
        bytes: 0,
    };
    let err = |e: std::io::Error| Error::Io {
        message: format!("could not write the backup archive: {e}"),
        disk_full: e.raw_os_error() == Some(libc::ENOSPC),
    };
    let out = Sink::new(out, identity).map_err(err)?;
    let gz = GzEncoder::new(out, Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let add = |tar: &mut tar::Builder<_>, path: &str, size: u64, data: &mut dyn std::io::Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data)
    };
    let manifest_bytes = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    add(
        &mut tar,
        format::MANIFEST,
        manifest_bytes.len() as u64,
        &mut manifest_bytes.as_slice(),
    )
    .map_err(err)?;
    let script = format::restore_script(manifest);
    add(
        &mut tar,
        format::RESTORE_SCRIPT,
        script.len() as u64,
        &mut script.as_bytes(),
    )
    .map_err(err)?;
    for (t, spool) in manifest.tables.iter().zip(&spools.tables) {
        let mut f = File::open(&spool.path).map_err(|e| io_error("read", &spool.path, &e))?;
        add(&mut tar, &t.file, spool.bytes, &mut f).map_err(err)?;
    }
    let gz = tar.into_inner().map_err(err)?;
    let mut out = gz.finish().map_err(err)?.finish().map_err(err)?;
    out.flush().map_err(err)?;
    Ok((out.bytes, out.hasher.hex()))
}
