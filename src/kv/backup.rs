//! `"backup": true` of `import_kv`: every key the import is about to read, saved before it
//! writes anything. One pass over each mapping's keys (narrowed to `tenant` as the import
//! reads them), their values streamed into a spool file of the backup directory and then into
//! an archive laid out as backups are — a gzip-compressed tar whose first entry is
//! `manifest.json` (what it holds: the source, the patterns, the tenant, the key count, the
//! data file's size and SHA-256), then `keys.ndjson`, one key per line:
//! `{"key", "type", "value"}` (a string as text, or `value_hex` when it is not UTF-8; a hash
//! as an object, a list and a set as arrays, a sorted set as `[member, score]` pairs). The
//! archive is written to a hidden file, fsynced, renamed into place, and removed again should
//! the step's transaction abort; a crash leaves at most hidden files.
//!
//! Named `tenant_ops_kv_backup_<uuid v7>.tar.gz`, never a tenant backup's name (those are
//! registered in `tenant_ops.backups`, and `purge_backups` removes the unregistered ones).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use super::error::Result;
use super::import::scan_batch;
use super::mapping::Mapping;
use super::source::Store;
use super::value::KvValue;
use crate::backup::format::Hasher;

/// The file name's start: what tells a key backup from a tenant backup in the directory.
pub const PREFIX: &str = "tenant_ops_kv_backup_";

fn io(action: &str, path: &Path, e: std::io::Error) -> super::error::Error {
    crate::import::Error::Io {
        message: format!("could not {action} \"{}\": {e}", path.display()),
        disk_full: e.raw_os_error() == Some(28),
    }
    .into()
}

/// One key as a line of `keys.ndjson`.
fn line(key: &str, value: &KvValue) -> Value {
    let mut o = json!({"key": key, "type": value.type_name()});
    match value {
        KvValue::String(b) => match std::str::from_utf8(b) {
            Ok(text) => o["value"] = json!(text),
            Err(_) => o["value_hex"] = json!(crate::backup::format::hex(b)),
        },
        KvValue::Hash(fields) => {
            o["value"] = Value::Object(fields.iter().map(|(f, v)| (f.clone(), json!(v))).collect())
        }
        KvValue::List(items) | KvValue::Set(items) => o["value"] = json!(items),
        KvValue::ZSet(members) => o["value"] = json!(members),
        KvValue::Missing | KvValue::Other(_) => o["value"] = Value::Null,
    }
    o
}

/// Saves every key of `mappings` (the import's own reads: SCAN MATCH, pipelined) into a new
/// archive of the backup directory; returns what the job reports of it (`file`, `keys`,
/// `bytes`, `sha256`).
pub fn write(
    store: &mut Store,
    scan_count: u64,
    mappings: &[Mapping],
    tenant: Option<&str>,
    source: &str,
) -> Result<Value> {
    let dir = crate::backup::store::directory().map_err(crate::import::Error::from)?;
    let name = format!("{PREFIX}{}.tar.gz", uuid::Uuid::now_v7());
    let pid = std::process::id();
    let spool_path = dir.join(format!(".{name}.keys.{pid}"));
    let temp_path = dir.join(format!(".{name}.{pid}"));
    // Both hidden files go however this ends (the archive's, once renamed, is not there any
    // more).
    let _cleanup = crate::export::store::Spools(vec![spool_path.clone(), temp_path.clone()]);
    let create = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
            .map_err(|e| io("create", p, e))
    };
    let mut spool = BufWriter::with_capacity(256 * 1024, create(&spool_path)?);
    let mut hasher = Hasher::default();
    let mut bytes = 0u64;
    let mut keys = 0i64;
    let mut text = Vec::with_capacity(4096);
    for m in mappings {
        let mut cursor = 0;
        loop {
            let (next, batch, _) = scan_batch(store, scan_count, m, tenant, cursor)?;
            for (key, _, value) in &batch {
                text.clear();
                serde_json::to_writer(&mut text, &line(key, value)).expect("plain JSON");
                text.push(b'\n');
                hasher.update(&text);
                bytes += text.len() as u64;
                spool
                    .write_all(&text)
                    .map_err(|e| io("write", &spool_path, e))?;
                keys += 1;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    let mut spool = spool
        .into_inner()
        .map_err(|e| io("write", &spool_path, e.into_error()))?;
    spool.rewind().map_err(|e| io("read", &spool_path, e))?;
    let sha256 = hasher.hex();
    let manifest = json!({
        "format": "pg_tenant_ops kv backup",
        "format_version": 1,
        "extension_version": env!("CARGO_PKG_VERSION"),
        "source": source,
        "patterns": mappings.iter().map(|m| m.pattern.text.clone()).collect::<Vec<_>>(),
        "tenant": tenant,
        "created_at": jiff::Timestamp::now().to_string(),
        "keys": keys,
        "data": {"file": "keys.ndjson", "bytes": bytes, "sha256": sha256},
    });
    let archive = create(&temp_path)?;
    let gz = GzEncoder::new(
        BufWriter::with_capacity(256 * 1024, archive),
        Compression::new(6),
    );
    let mut tar = tar::Builder::new(gz);
    let add = |tar: &mut tar::Builder<_>, path: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        h.set_cksum();
        tar.append_data(&mut h, path, data)
            .map_err(|e| io("write", &temp_path, e))
    };
    let m = serde_json::to_vec_pretty(&manifest).expect("plain JSON");
    add(&mut tar, "manifest.json", m.len() as u64, &mut m.as_slice())?;
    add(&mut tar, "keys.ndjson", bytes, &mut spool)?;
    let file = tar
        .into_inner()
        .and_then(|gz| gz.finish())
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(|e| io("write", &temp_path, e))?;
    file.sync_all().map_err(|e| io("write", &temp_path, e))?;
    let size = file
        .metadata()
        .map_err(|e| io("read", &temp_path, e))?
        .len();
    drop(file);
    let path = dir.join(&name);
    std::fs::rename(&temp_path, &path).map_err(|e| io("rename", &temp_path, e))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", &dir, e))?;
    crate::backup::store::remove_on_abort(path);
    Ok(json!({"file": name, "keys": keys, "size_bytes": size, "data_sha256": sha256}))
}
