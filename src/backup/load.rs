//! `load_backup`: a backup file sent back through SQL (a whole file, or chunk by chunk into a
//! named upload), verified as `verify_backup` verifies (whole-file read, manifest, every
//! table's checksum and row count, every value decodes) before it is registered. A damaged
//! upload is refused (XX001) and its file removed: nothing is left of it.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::archive::Registered;
use super::error::{Error, Result};
use super::format::Hasher;
use super::{crypt, store};
use crate::error::{Common, OrRaise};
use crate::sys::owner;

/// Appends `data` to upload `upload` (created on its first chunk); returns its size so far.
///
/// The append is as transactional as the catalog: sessions sending chunks to one upload take
/// turns (a lock held to the end of the transaction, which `load_backup_finish` takes too),
/// and should the transaction abort (a client's retry after a timeout, say), the file is cut
/// back to where this chunk began, so a chunk is in the upload exactly when its call committed.
pub fn chunk(upload: &str, data: &[u8]) -> Result<i64> {
    check_name(upload)?;
    lock_upload(upload);
    let path = store::upload_path(upload)?;
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| store::io_error("write", &path, &e))?;
    let before = f
        .metadata()
        .map_err(|e| store::io_error("read", &path, &e))?
        .len();
    let undo = path.clone();
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, move || {
        if before == 0 {
            let _ = fs::remove_file(&undo);
        } else if let Ok(f) = OpenOptions::new().write(true).open(&undo) {
            let _ = f.set_len(before);
        }
    });
    f.write_all(data)
        .map_err(|e| store::io_error("write", &path, &e))?;
    Ok((before + data.len() as u64) as i64)
}

/// Serialises the calls on one upload until the end of the transaction.
fn lock_upload(upload: &str) {
    crate::sys::owner::execute(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('tenant_ops:upload:' || $1, 0))",
        &[upload.into()],
    )
    .or_raise();
}

/// Verifies upload `upload` and registers it as a backup; returns the backup's id. A damaged
/// upload is removed and refused.
pub fn finish(upload: &str, caller: &str) -> Result<i64> {
    check_name(upload)?;
    lock_upload(upload);
    let path = store::upload_path(upload)?;
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => {}
        _ => return Err(Error::UnknownUpload(upload.to_string())),
    }
    let result = register(upload, &path, caller);
    if result.is_err() {
        let _ = fs::remove_file(&path);
    }
    result
}

/// The whole file in one call: one upload, sent and finished.
pub fn whole(data: &[u8], caller: &str) -> Result<i64> {
    let upload = format!("whole-{}", uuid::Uuid::now_v7());
    chunk(&upload, data)?;
    // The upload's name is made up here: errors do not name it.
    finish(&upload, caller).map_err(|e| match e {
        Error::BadUpload { what, detail, .. } => Error::BadUpload {
            upload: String::new(),
            what,
            detail,
        },
        e => e,
    })
}

fn check_name(upload: &str) -> Result<()> {
    if store::is_upload_name(upload) {
        return Ok(());
    }
    Err(Common::InvalidParameter(
        format!("\"{upload}\" is not an upload name"),
        Some("An upload name is 1 to 64 letters, digits, \"_\" or \"-\".".into()),
    )
    .into())
}

fn register(upload: &str, path: &Path, caller: &str) -> Result<i64> {
    let damaged = |what: String, detail: Option<String>| Error::BadUpload {
        upload: upload.to_string(),
        what,
        detail,
    };
    let (size, sha256, head) = digest(path)?;
    let encrypted = if head.starts_with(crypt::MAGIC) {
        true
    } else if head.starts_with(crypt::GZIP_MAGIC) {
        false
    } else {
        return Err(damaged(
            "it is neither a gzip-compressed tar archive nor an age-encrypted one".into(),
            None,
        ));
    };
    let as_upload = |e: Error| match e {
        Error::Corrupt { what, detail, .. } => damaged(what, detail),
        e => e,
    };
    let mut b = Registered {
        id: 0,
        scope: String::new(),
        tenant: String::new(),
        path: path.to_path_buf(),
        sha256,
        size,
        manifest: empty_manifest(),
        encrypted,
    };
    b.manifest = b.manifest_in_file().map_err(as_upload)?;
    b.scope = b.manifest.scope.name.clone();
    b.tenant = b.manifest.tenant.clone();
    super::restore::verify_file(&b).map_err(as_upload)?;
    let name = store::install_upload(path, encrypted)?;
    let rows: i64 = b.manifest.tables.iter().map(|t| t.rows).sum();
    let id = owner::get_one::<i64>(
        "INSERT INTO tenant_ops.backups (scope, tenant, label, file_name, size_bytes, sha256,
                                         tables, rows, manifest, encrypted, created_by, expires_at)
         VALUES ($1, $2, 'loaded', $3, $4, $5, $6, $7, $8, $9, $10,
                 pg_catalog.now() + pg_catalog.make_interval(mins => $11))
         RETURNING id",
        &[
            b.scope.clone().into(),
            b.tenant.clone().into(),
            name.into(),
            b.size.into(),
            b.sha256.clone().into(),
            (b.manifest.tables.len() as i32).into(),
            rows.into(),
            pgrx::JsonB(serde_json::to_value(&b.manifest).expect("a manifest serializes")).into(),
            encrypted.into(),
            caller.to_string().into(),
            crate::gucs::backup_retention_minutes().into(),
        ],
    )
    .or_raise()
    .unwrap_or_default();
    Ok(id)
}

/// The file's size, SHA-256 and first bytes.
fn digest(path: &Path) -> Result<(i64, String, Vec<u8>)> {
    let mut f = fs::File::open(path).map_err(|e| store::io_error("read", path, &e))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0i64;
    let mut head = Vec::new();
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| store::io_error("read", path, &e))?;
        if n == 0 {
            break;
        }
        if head.len() < 64 {
            head.extend_from_slice(&buf[..n.min(64 - head.len())]);
        }
        size += n as i64;
        h.update(&buf[..n]);
    }
    Ok((size, h.hex(), head))
}

fn empty_manifest() -> super::format::Manifest {
    super::format::Manifest {
        format: String::new(),
        format_version: 0,
        extension_version: String::new(),
        server_version: String::new(),
        scope: super::format::ScopeInfo {
            name: String::new(),
            root_schema: String::new(),
            root_table: String::new(),
            tenant_key: String::new(),
        },
        tenant: String::new(),
        created_at: String::new(),
        shared: false,
        tables: vec![],
        capture: None,
        incremental: None,
    }
}
