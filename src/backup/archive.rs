//! Reading a backup back: the registered row, the whole file's checksum, the manifest, and
//! each table's lines, checked against the manifest as they stream by.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use flate2::read::GzDecoder;
use pgrx::JsonB;
use serde_json::Value;

use super::error::{Error, Result};
use super::format::{self, Hasher, Manifest, TableEntry};
use super::{not_found, store, RowsDigest};
use crate::error::OrRaise;
use crate::sys::owner;

/// A registered backup.
pub struct Registered {
    pub id: i64,
    pub scope: String,
    pub tenant: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: i64,
    pub manifest: Manifest,
    /// `age(tar.gz)`: read with `tenant_ops.backup_encryption_key`.
    pub encrypted: bool,
}

/// The backup `id` as registered, its file located (not yet read).
pub fn registered(id: i64) -> Result<Registered> {
    let row = owner::get_one::<JsonB>(
        "SELECT pg_catalog.jsonb_build_object('scope', scope, 'tenant', tenant, 'file', file_name,
                'sha256', sha256, 'size', size_bytes, 'manifest', manifest, 'encrypted', encrypted)
           FROM tenant_ops.backups WHERE id = $1",
        &[id.into()],
    )
    .or_raise()
    .ok_or_else(|| not_found(id))?
    .0;
    let text = |k: &str| row[k].as_str().unwrap_or_default().to_string();
    let manifest: Manifest = serde_json::from_value(row["manifest"].clone()).map_err(|e| {
        corrupt(
            id,
            format!("its registered manifest does not read: {e}"),
            None,
        )
    })?;
    Ok(Registered {
        id,
        scope: text("scope"),
        tenant: text("tenant"),
        path: store::path_of(&text("file"))?,
        sha256: text("sha256"),
        size: row["size"].as_i64().unwrap_or(-1),
        manifest,
        encrypted: row["encrypted"].as_bool().unwrap_or(false),
    })
}

pub fn corrupt(id: i64, what: String, detail: Option<String>) -> Error {
    Error::Corrupt {
        backup: id,
        what,
        detail,
    }
}

impl Registered {
    /// How errors name it: `backup 7`, or an upload not yet registered (id 0).
    pub fn what(&self) -> String {
        if self.id > 0 {
            format!("backup {}", self.id)
        } else {
            "the uploaded backup".into()
        }
    }

    /// The file's tar stream: gunzipped, and first decrypted when the backup is encrypted.
    fn tar_stream(&self) -> Result<Box<dyn Read>> {
        let f = File::open(&self.path).map_err(|e| store::io_error("read", &self.path, &e))?;
        let f = BufReader::with_capacity(1 << 20, f);
        let plain: Box<dyn Read> = if self.encrypted {
            super::crypt::decrypt(&self.what(), f, |what| corrupt(self.id, what, None))?
        } else {
            Box::new(f)
        };
        Ok(Box::new(GzDecoder::new(plain)))
    }

    /// The manifest in the file (its first entry), not the registered one: what an upload is
    /// registered with.
    pub fn manifest_in_file(&self) -> Result<Manifest> {
        let mut archive = tar::Archive::new(self.tar_stream()?);
        let bad = |what: String| corrupt(self.id, what, None);
        let tar_err = |e: std::io::Error| bad(format!("the archive does not read: {e}"));
        let mut entry = archive
            .entries()
            .map_err(tar_err)?
            .next()
            .ok_or_else(|| bad("the archive is empty".into()))?
            .map_err(tar_err)?;
        let path = entry
            .path()
            .map_err(tar_err)?
            .to_string_lossy()
            .into_owned();
        if path != format::MANIFEST {
            return Err(bad(format!(
                "found \"{path}\" where \"{}\" belongs",
                format::MANIFEST
            )));
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(tar_err)?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| bad(format!("its manifest does not read: {e}")))?;
        if m.format != format::FORMAT || m.format_version > format::FORMAT_VERSION {
            return Err(bad(format!(
                "its manifest is of format \"{}\" version {}, not \"{}\" up to version {}",
                m.format,
                m.format_version,
                format::FORMAT,
                format::FORMAT_VERSION
            )));
        }
        Ok(m)
    }

    /// The whole file against its registered size and SHA-256.
    pub fn check_file(&self) -> Result<()> {
        let mut f = File::open(&self.path).map_err(|e| store::io_error("read", &self.path, &e))?;
        let mut h = Hasher::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0i64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| store::io_error("read", &self.path, &e))?;
            if n == 0 {
                break;
            }
            size += n as i64;
            h.update(&buf[..n]);
        }
        let got = h.hex();
        if size != self.size || got != self.sha256 {
            return Err(corrupt(
                self.id,
                "the file's checksum does not match the one recorded when it was written".into(),
                Some(format!(
                    "Recorded: {} bytes, SHA-256 {}; the file: {size} bytes, SHA-256 {got}.",
                    self.size, self.sha256
                )),
            ));
        }
        Ok(())
    }

    /// Streams the archive: its manifest must equal the registered one, its data files come
    /// in manifest order, and each one's lines go to `each(table index, entry, line without
    /// its newline)`; each file's SHA-256, row count and digest are checked at its end.
    pub fn read(
        &self,
        mut each: impl FnMut(usize, &TableEntry, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut archive = tar::Archive::new(self.tar_stream()?);
        let bad = |what: String| corrupt(self.id, what, None);
        let tar_err = |e: std::io::Error| bad(format!("the archive does not read: {e}"));
        let mut entries = archive.entries().map_err(tar_err)?;
        let mut next_entry = |want: &str| -> Result<_> {
            let e = entries
                .next()
                .ok_or_else(|| bad(format!("the archive ends before {want}")))?
                .map_err(tar_err)?;
            let path = e.path().map_err(tar_err)?.to_string_lossy().into_owned();
            if path != want {
                return Err(bad(format!("found \"{path}\" where \"{want}\" belongs")));
            }
            Ok(e)
        };
        let mut text = String::new();
        next_entry(format::MANIFEST)?
            .read_to_string(&mut text)
            .map_err(tar_err)?;
        let in_file: Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("its manifest does not read: {e}")))?;
        let registered = serde_json::to_value(&self.manifest).expect("a manifest serializes");
        if in_file != registered {
            return Err(bad(
                "its manifest differs from the one registered when it was written".into(),
            ));
        }
        std::io::copy(
            &mut next_entry(format::RESTORE_SCRIPT)?,
            &mut std::io::sink(),
        )
        .map_err(tar_err)?;
        for (i, t) in self.manifest.tables.iter().enumerate() {
            let entry = next_entry(&t.file)?;
            let mut reader = BufReader::with_capacity(1 << 20, entry);
            let mut hasher = Hasher::default();
            let mut digest = RowsDigest::default();
            let mut line = Vec::with_capacity(4096);
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(tar_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&line);
                digest.add(&line);
                if line.last() != Some(&b'\n') {
                    return Err(bad(format!("{} ends in the middle of a row", t.file)));
                }
                each(i, t, &line[..line.len() - 1])?;
            }
            let sha = hasher.hex();
            let table = crate::pg::qualified(&t.schema, &t.table);
            if digest.rows != t.rows || sha != t.sha256 || digest.hex() != t.rows_digest {
                return Err(corrupt(
                    self.id,
                    format!(
                        "the data of {table} ({}) does not match its manifest",
                        t.file
                    ),
                    Some(format!(
                        "Manifest: {} rows, SHA-256 {}; the file: {} rows, SHA-256 {sha}.",
                        t.rows, t.sha256, digest.rows
                    )),
                ));
            }
        }
        if entries.next().is_some() {
            return Err(bad(
                "the archive holds more files than its manifest lists".into()
            ));
        }
        // What follows the last file (tar's end blocks, gzip's CRC and length, age's last
        // tag) is read too: damage there is found as well.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(tar_err)?;
        Ok(())
    }
}
