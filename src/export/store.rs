//! The export directory (`tenant_ops.export_directory`, superuser-only, no default): names
//! confined to it as backups' and imports' are (`backup::store`), archives written under a
//! hidden temporary name, fsynced and renamed, and removed again should the transaction that
//! wrote them abort.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::{io_error, Error, Result};
use crate::backup::store;

/// Hidden names inside the directory are ours (a user's names have no dot components).
pub const TEMP_PREFIX: &str = ".tenant_ops_export_";

/// The export directory, created (mode 0700) when missing; refused when the setting is empty.
pub fn directory() -> Result<PathBuf> {
    let setting = crate::gucs::export_directory().ok_or(Error::NoDirectory)?;
    let dir = store::setting_directory(Some(setting), "");
    Ok(store::ensure_directory(dir, "export directory")?)
}

/// An existing file of the directory.
pub fn existing(name: &str) -> Result<PathBuf> {
    let dir = directory()?;
    store::confined_file(&dir, name).map_err(|e| match Error::from(e) {
        Error::FileMissing { .. } => Error::FileMissing {
            name: name.to_string(),
        },
        other => other,
    })
}

/// The path a new archive `name` takes: confined, and not there yet.
pub fn fresh(name: &str) -> Result<PathBuf> {
    let dir = directory()?;
    let path = store::confined_path(&dir, name)?;
    if fs::symlink_metadata(&path).is_ok() {
        return Err(Error::FileExists {
            name: name.to_string(),
        });
    }
    Ok(path)
}

/// A file being written next to `path`: removed unless [`Pending::commit`] renames it there.
pub struct Pending {
    temp: PathBuf,
    path: PathBuf,
    file: Option<File>,
}

impl Pending {
    pub fn create(path: &Path) -> Result<Pending> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}.{}",
            uuid::Uuid::now_v7(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io_error("create", &temp, &e))?;
        Ok(Pending {
            temp,
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until committed")
    }

    /// fsync, link into place (refused if a file took the name meanwhile), fsync the
    /// directory; and should the current transaction abort, the file goes again.
    pub fn commit(mut self, name: &str) -> Result<()> {
        let file = self.file.take().expect("open until committed");
        file.sync_all()
            .map_err(|e| io_error("write", &self.temp, &e))?;
        drop(file);
        // A hard link never replaces a file that took the name meanwhile (a rename would).
        let linked = fs::hard_link(&self.temp, &self.path);
        let _ = fs::remove_file(&self.temp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::FileExists {
                    name: name.to_string(),
                })
            }
            Err(e) => return Err(io_error("rename", &self.temp, &e)),
        }
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("sync", dir, &e))?;
        }
        store::remove_on_abort(self.path.clone());
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Files removed when dropped (the spooled tables of one export).
#[derive(Default)]
pub struct Spools(pub Vec<PathBuf>);

impl Spools {
    /// A fresh hidden file in `dir`, removed with the others.
    pub fn create(&mut self, dir: &Path, what: &str) -> Result<(PathBuf, File)> {
        let path = dir.join(format!(
            "{TEMP_PREFIX}{}.{what}.{}",
            uuid::Uuid::now_v7(),
            std::process::id()
        ));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("create", &path, &e))?;
        self.0.push(path.clone());
        Ok((path, f))
    }
}

impl Drop for Spools {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// `length` bytes of file `name` from `offset` (fewer at its end): a download through SQL.
pub fn read_chunk(name: &str, offset: i64, length: i32) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    if offset < 0 || length <= 0 || length > 64 * 1024 * 1024 {
        return Err(crate::error::Common::InvalidParameter(
            format!("offset {offset} and length {length}: offset must be >= 0 and length 1 to 67108864"),
            Some("Read a file in chunks: tenant_ops.download_export(file, offset, 8388608) while rows come back non-empty.".into()),
        )
        .into());
    }
    let path = existing(name)?;
    let mut f = File::open(&path).map_err(|e| io_error("read", &path, &e))?;
    f.seek(SeekFrom::Start(offset as u64))
        .map_err(|e| io_error("read", &path, &e))?;
    let mut out = Vec::with_capacity(length as usize);
    f.take(length as u64)
        .read_to_end(&mut out)
        .map_err(|e| io_error("read", &path, &e))?;
    Ok(out)
}

/// The size of file `name`.
pub fn size(name: &str) -> Result<i64> {
    let path = existing(name)?;
    fs::metadata(&path)
        .map(|m| m.len() as i64)
        .map_err(|e| io_error("read", &path, &e))
}
