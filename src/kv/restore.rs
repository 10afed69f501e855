//! `restore_kv`: the keys an `import_kv` backup saved (`kv::backup`), written back into a
//! Redis source — the way back when an import's later cleanup or a bad sync removed them.
//!
//! The archive is read twice, streamed. The first pass checks it whole before anything is
//! written: its manifest (format and version), every line of `keys.ndjson` a key of a type
//! this version writes, and the data's size, SHA-256 and key count against the manifest
//! (`XX001` naming what differs); on the way, which of the keys the store holds now
//! (pipelined EXISTS). With `on_conflict` `error` (the default) any such key refuses the
//! restore (`23505` naming the count and the first keys); `dry_run` reports and stops there.
//! The second pass writes, in batches of [`BATCH`] keys, each batch one MULTI/EXEC (a
//! reader never sees a key half written): a key is deleted first and written again with the
//! command of its type (SET, HSET, RPUSH, SADD, ZADD), so the store holds exactly the value
//! saved; under `skip` a key the store holds (checked again per batch) is left alone.
//!
//! Redis has no transaction across batches: should the server go away in the middle, the
//! keys of the batches before are written, and the batch being written may be too, whole or
//! not at all (its MULTI/EXEC sent, the reply lost: the error says both); restoring again
//! with `overwrite` completes it. Expiries are not saved by the backup and not set. A dump source
//! is never written (`0A000`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use flate2::read::GzDecoder;
use serde::Deserialize;
use serde_json::{json, Value};

use super::backup::PREFIX;
use super::error::{Error, Result};
use super::source::{self, Store};
use super::value::KvValue;
use crate::backup::format::Hasher;
use crate::error::Common;
use crate::migrate::options::OnConflict;
use crate::options::{self, present};

/// Keys written per MULTI/EXEC.
const BATCH: usize = 500;
/// Keys named in a conflict's message.
const NAMED: usize = 5;

#[derive(Debug, Default, Deserialize)]
struct RestoreDoc {
    #[serde(default, deserialize_with = "present")]
    on_conflict: Option<OnConflict>,
    #[serde(default, deserialize_with = "present")]
    dry_run: Option<bool>,
}

/// The manifest fields a restore needs.
#[derive(Debug, Deserialize)]
struct Manifest {
    format: String,
    format_version: i64,
    source: String,
    keys: i64,
    data: DataEntry,
}

#[derive(Debug, Deserialize)]
struct DataEntry {
    file: String,
    bytes: u64,
    sha256: String,
}

/// One line of `keys.ndjson`.
#[derive(Debug, Deserialize)]
struct Line {
    key: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    value_hex: Option<String>,
}

fn corrupt(file: &str, what: String) -> Error {
    Error::Damaged {
        file: file.to_string(),
        what,
    }
}

/// Restores key backup `file` (a name in the backup directory) into source `source_name`.
pub fn restore(source_name: &str, file: &str, raw: &Value) -> Result<Value> {
    let doc: RestoreDoc = options::parse(raw, &options::FunctionWording("restore_kv"))?;
    let on_conflict = doc.on_conflict.unwrap_or(OnConflict::Error);
    if matches!(on_conflict, OnConflict::Merge) {
        return Err(Common::InvalidOption(
            "option \"on_conflict\" cannot be \"merge\" for restore_kv".into(),
            Some(
                "A key is restored whole: \"error\" (the default), \"skip\" or \"overwrite\"."
                    .into(),
            ),
        )
        .into());
    }
    let dry_run = doc.dry_run.unwrap_or(false);
    if !file.starts_with(PREFIX) || file.contains('/') {
        return Err(Common::InvalidParameter(
            format!("\"{file}\" is not a key backup's file name"),
            Some(format!(
                "import_kv with \"backup\": true names its archive in its result, {PREFIX}<id>.tar.gz, in the backup directory."
            )),
        )
        .into());
    }
    let dir = crate::backup::store::directory().map_err(crate::import::Error::from)?;
    let path = crate::backup::store::confined_file(&dir, file).map_err(|e| match e {
        crate::backup::error::Error::FileMissing(_) => Error::BackupMissing(file.to_string()),
        other => crate::import::Error::from(other).into(),
    })?;
    let src = source::load(source_name)?;
    let mut store = src.open()?;
    if !store.is_redis() {
        return Err(Common::FeatureNotSupported(
            format!("source \"{source_name}\" is a dump: restore_kv writes only to a Redis server"),
            None,
        )
        .into());
    }
    // Pass 1: the archive whole, and which keys the store holds.
    let manifest = {
        let mut present_keys = 0i64;
        let mut named = vec![];
        let mut batch: Vec<String> = Vec::with_capacity(BATCH);
        let mut flush = |store: &mut Store, batch: &mut Vec<String>| -> Result<()> {
            for (key, there) in batch.iter().zip(exists(store, batch)?) {
                if there {
                    present_keys += 1;
                    if named.len() < NAMED {
                        named.push(key.clone());
                    }
                }
            }
            batch.clear();
            Ok(())
        };
        let manifest = read(&path, file, |key, _| {
            batch.push(key);
            if batch.len() >= BATCH {
                flush(&mut store, &mut batch)?;
            }
            Ok(())
        })?;
        flush(&mut store, &mut batch)?;
        if present_keys > 0 && on_conflict == OnConflict::Error && !dry_run {
            return Err(Error::KeysExist {
                file: file.to_string(),
                source: source_name.to_string(),
                count: present_keys,
                sample: named,
            });
        }
        if dry_run {
            return Ok(json!({
                "dry_run": true, "file": file, "source": source_name, "backed_up_from": manifest.source,
                "keys": manifest.keys, "existing": present_keys, "existing_sample": named,
                "on_conflict": on_conflict,
            }));
        }
        manifest
    };
    // Pass 2: write.
    let (mut written, mut skipped) = (0i64, 0i64);
    let mut batch: Vec<(String, KvValue)> = Vec::with_capacity(BATCH);
    let mut write_batch = |store: &mut Store, batch: &mut Vec<(String, KvValue)>| -> Result<()> {
        // The server answered the first pass: losing it now interrupts a restore under way.
        let before = written;
        let interrupted = |e: Error, in_doubt: i64| match e {
            Error::Unreachable { source, why } => Error::RestoreInterrupted {
                source,
                why,
                written: before,
                in_doubt,
            },
            other => other,
        };
        let keep: Vec<bool> = if on_conflict == OnConflict::Skip {
            let keys: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
            exists(store, &keys).map_err(|e| interrupted(e, 0))?
        } else {
            vec![false; batch.len()]
        };
        let Store::Redis { source, conn } = store else {
            unreachable!("checked to be Redis")
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for ((key, value), keep) in batch.iter().zip(keep) {
            if keep {
                skipped += 1;
                continue;
            }
            pipe.cmd("DEL").arg(key).ignore();
            match value {
                KvValue::String(b) => {
                    pipe.cmd("SET").arg(key).arg(b.as_slice()).ignore();
                }
                KvValue::Hash(fields) if !fields.is_empty() => {
                    let c = pipe.cmd("HSET").arg(key);
                    for (f, v) in fields {
                        c.arg(f).arg(v);
                    }
                    c.ignore();
                }
                KvValue::List(items) if !items.is_empty() => {
                    pipe.cmd("RPUSH").arg(key).arg(items).ignore();
                }
                KvValue::Set(items) if !items.is_empty() => {
                    pipe.cmd("SADD").arg(key).arg(items).ignore();
                }
                KvValue::ZSet(members) if !members.is_empty() => {
                    let c = pipe.cmd("ZADD").arg(key);
                    for (m, score) in members {
                        c.arg(*score).arg(m);
                    }
                    c.ignore();
                }
                // An empty collection is no key in Redis: deleting it is restoring it.
                _ => {}
            }
            written += 1;
        }
        if written > before {
            pipe.query::<()>(conn.as_mut())
                .map_err(|e| interrupted(source::redis_error(source, &e), written - before))?;
        }
        batch.clear();
        Ok(())
    };
    read(&path, file, |key, value| {
        batch.push((key, value));
        if batch.len() >= BATCH {
            write_batch(&mut store, &mut batch)?;
        }
        Ok(())
    })?;
    write_batch(&mut store, &mut batch)?;
    Ok(json!({
        "file": file, "source": source_name, "backed_up_from": manifest.source,
        "keys": manifest.keys, "written": written, "skipped": skipped,
        "on_conflict": on_conflict,
    }))
}

/// Whether each of `keys` exists in the store (one pipelined round trip).
fn exists(store: &mut Store, keys: &[String]) -> Result<Vec<bool>> {
    if keys.is_empty() {
        return Ok(vec![]);
    }
    let Store::Redis { source, conn } = store else {
        return Ok(vec![false; keys.len()]);
    };
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("EXISTS").arg(k);
    }
    let found: Vec<i64> = pipe
        .query(conn.as_mut())
        .map_err(|e| source::redis_error(source, &e))?;
    Ok(found.into_iter().map(|n| n > 0).collect())
}

/// Streams the archive: its manifest first, checked, then every line of the data file to
/// `each` as its key and value (each a key of a type this version writes), then the data's
/// size, SHA-256 and key count against the manifest. Returns the manifest.
fn read(
    path: &std::path::Path,
    file: &str,
    mut each: impl FnMut(String, KvValue) -> Result<()>,
) -> Result<Manifest> {
    let f = File::open(path).map_err(|e| crate::import::Error::Io {
        message: format!("could not open \"{}\": {e}", path.display()),
        disk_full: false,
    })?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(256 * 1024, f)));
    let bad = |what: String| corrupt(file, what);
    let manifest = read_entries(&mut archive, file, &mut each)?;
    // The rest of the stream (the tar's end blocks) read too: the gzip trailer's CRC-32 and
    // length are checked only at its end, and a damaged byte there or in the padding is
    // damage all the same.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(|e| bad(format!("the archive does not read to its end: {e}")))?;
    Ok(manifest)
}

/// The manifest and data entries of a key backup's archive (see [`read`]).
fn read_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    file: &str,
    each: &mut impl FnMut(String, KvValue) -> Result<()>,
) -> Result<Manifest> {
    let bad = |what: String| corrupt(file, what);
    let mut entries = archive
        .entries()
        .map_err(|e| bad(format!("the archive does not read: {e}")))?;
    let mut next = |want: &str| {
        let e = entries
            .next()
            .ok_or_else(|| bad(format!("the archive ends before {want}")))?
            .map_err(|e| bad(format!("the archive does not read: {e}")))?;
        let name = e
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name != want {
            return Err(bad(format!("{want} expected, found \"{name}\"")));
        }
        Ok(e)
    };
    let mut text = String::new();
    next("manifest.json")?
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("manifest.json does not read: {e}")))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| bad(format!("manifest.json: {e}")))?;
    if manifest.format != "pg_tenant_ops kv backup" || manifest.format_version != 1 {
        return Err(bad(format!(
            "manifest.json is of format \"{}\" version {}, not a key backup of version 1",
            manifest.format, manifest.format_version
        )));
    }
    let data = next(&manifest.data.file.clone())?;
    let mut reader = BufReader::with_capacity(256 * 1024, data);
    let mut hasher = Hasher::default();
    let (mut bytes, mut keys, mut line_no) = (0u64, 0i64, 0u64);
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| bad(format!("{} does not read: {e}", manifest.data.file)))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        hasher.update(&buf);
        bytes += n as u64;
        let line: Line = serde_json::from_slice(&buf)
            .map_err(|e| bad(format!("line {line_no} of {}: {e}", manifest.data.file)))?;
        let value = value_of(file, &line)?;
        keys += 1;
        each(line.key, value)?;
    }
    let sha256 = hasher.hex();
    if bytes != manifest.data.bytes || sha256 != manifest.data.sha256 || keys != manifest.keys {
        return Err(bad(format!(
            "{} holds {keys} key(s) in {bytes} bytes (SHA-256 {sha256}), the manifest says {} in {} ({})",
            manifest.data.file, manifest.keys, manifest.data.bytes, manifest.data.sha256
        )));
    }
    Ok(manifest)
}

/// A line's value as the type it was saved as.
fn value_of(file: &str, line: &Line) -> Result<KvValue> {
    let bad = |why: &str| corrupt(file, format!("key \"{}\": {why}", line.key));
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    Ok(match line.kind.as_str() {
        "string" => match (&line.value, &line.value_hex) {
            (Value::String(s), None) => KvValue::String(s.clone().into_bytes()),
            (Value::Null, Some(hex)) => KvValue::String(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| bad("value_hex is not hexadecimal"))?,
            ),
            _ => return Err(bad("a string needs value (text) or value_hex")),
        },
        "hash" => KvValue::Hash(
            line.value
                .as_object()
                .and_then(|o| {
                    o.iter()
                        .map(|(f, v)| v.as_str().map(|v| (f.clone(), v.to_string())))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad("a hash needs an object of text values"))?,
        ),
        "list" => {
            KvValue::List(strings(&line.value).ok_or_else(|| bad("a list needs an array of text"))?)
        }
        "set" => {
            KvValue::Set(strings(&line.value).ok_or_else(|| bad("a set needs an array of text"))?)
        }
        "zset" => KvValue::ZSet(
            line.value
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|p| Some((p.get(0)?.as_str()?.to_string(), p.get(1)?.as_f64()?)))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad("a sorted set needs [member, score] pairs"))?,
        ),
        other => {
            return Err(bad(&format!(
                "type \"{other}\" is not one restore_kv writes"
            )))
        }
    })
}
