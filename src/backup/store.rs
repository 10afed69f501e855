//! Where backup files live and how they get there: one directory (`tenant_ops.backup_directory`,
//! superuser-only), file names the extension makes up itself (never a user's path), and the
//! write that leaves either a complete file or none: a temporary name, fsync, rename, fsync of
//! the directory, and removal again should the transaction that registered it abort.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pgrx::{register_xact_callback, PgXactCallbackEvent};

pub use super::error::io_error;
use super::error::{Error, Result};

/// The prefix of every backup file name, and of every temporary one (with a leading dot).
const PREFIX: &str = "tenant_ops_backup_";
const SUFFIX: &str = ".tar.gz";
/// The suffix of an encrypted backup: `age(tar.gz)`.
const AGE_SUFFIX: &str = ".tar.gz.age";
/// The prefix of an upload being received (`load_backup_chunk`), with a leading dot.
const UPLOAD_PREFIX: &str = ".tenant_ops_upload_";

/// This database's backup directory (`db_<oid>` under the setting's), created (mode 0700)
/// when missing. Relative settings are taken from the data directory, as every relative
/// path of the server is.
pub fn directory() -> Result<PathBuf> {
    let dir = setting_directory(crate::gucs::backup_directory(), "pg_tenant_ops_backups");
    // One directory per database: each database's tenant_ops.backups names only its own
    // files, and a purge in one must never take another's for leftovers.
    let dir = dir.join(format!("db_{}", unsafe {
        u32::from(pgrx::pg_sys::MyDatabaseId)
    }));
    ensure_directory(dir, "backup directory")
}

/// The directory a superuser setting names: absolute, or taken from the data directory
/// (`default_name` there when the setting is empty). Shared by every directory setting
/// (backups, imports).
pub fn setting_directory(setting: Option<String>, default_name: &str) -> PathBuf {
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) }
        .to_string_lossy()
        .into_owned();
    match setting {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => Path::new(&data_dir).join(d),
        None => Path::new(&data_dir).join(default_name),
    }
}

/// `dir`, created (mode 0700) when missing; refused when it is something else than a
/// directory. `what` names it in errors ("backup directory").
pub fn ensure_directory(dir: PathBuf, what: &str) -> Result<PathBuf> {
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::NotADirectory(dir.display().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(&dir)
                .and_then(|_| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
                .map_err(|e| io_error(&format!("create the {what}"), &dir, &e))?;
        }
        Err(e) => return Err(io_error(&format!("read the {what}"), &dir, &e)),
    }
    Ok(dir)
}

/// A file a user names inside `dir`, confined to it: a relative path of plain components (no
/// `..`, no absolute path, no hidden names: those are the extension's own), reached without
/// following a symbolic link anywhere on the way, ending in a regular file.
pub fn confined_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = confined_path(dir, name)?;
    regular_file(path, "file")
}

/// As [`confined_file`], for a file that need not exist yet (one to be written): every
/// component before the last must exist (directories, never symbolic links); the last, when
/// it exists, is not a symbolic link either. Shared by every directory setting (backups,
/// imports, exports).
pub fn confined_path(dir: &Path, name: &str) -> Result<PathBuf> {
    use std::path::Component;
    let relative = Path::new(name);
    let plain = !name.is_empty()
        && relative.components().all(
            |c| matches!(c, Component::Normal(part) if !part.to_string_lossy().starts_with('.')),
        );
    if !plain {
        return Err(Error::BadFile {
            message: format!("\"{name}\" is not a file name inside the directory"),
            hint: Some(
                "Name a file relative to the directory, without \"..\", a leading \"/\" or hidden (dot) names."
                    .into(),
            ),
        });
    }
    let mut path = dir.to_path_buf();
    let parts: Vec<_> = relative.components().collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::BadFile {
                    message: format!("\"{}\" is a symbolic link", path.display()),
                    hint: Some("Files are never followed through symbolic links.".into()),
                })
            }
            Ok(_) => {}
            // The file itself may be missing (one to be written; `confined_file` refuses it).
            Err(e) if e.kind() == io::ErrorKind::NotFound && i + 1 == parts.len() => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::FileMissing(path.display().to_string()))
            }
            Err(e) => return Err(io_error("read", &path, &e)),
        }
    }
    Ok(path)
}

/// `path` if it is a regular file (never a symbolic link, a directory or a device); `noun`
/// names such a file in errors ("backup file").
fn regular_file(path: PathBuf, noun: &str) -> Result<PathBuf> {
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => Ok(path),
        Ok(_) => Err(Error::BadFile {
            message: format!("{noun} \"{}\" is not a regular file", path.display()),
            hint: Some(format!(
                "{}s are never followed through symbolic links.",
                capitalized(noun)
            )),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Error::FileMissing(path.display().to_string()))
        }
        Err(e) => Err(io_error("read", &path, &e)),
    }
}

/// A fresh file name: time-ordered, so that a listing sorts by age; `.tar.gz.age` when
/// encrypted.
pub fn new_file_name(encrypted: bool) -> String {
    let suffix = if encrypted { AGE_SUFFIX } else { SUFFIX };
    format!("{PREFIX}{}{suffix}", uuid::Uuid::now_v7())
}

/// Whether `name` is one of ours: the only names ever joined to the directory.
pub fn is_backup_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| {
            r.strip_suffix(AGE_SUFFIX)
                .or_else(|| r.strip_suffix(SUFFIX))
        })
        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

/// The path of a registered backup file, refused unless it is a plain file of ours directly
/// in the directory (no other name, no symlink out of it).
pub fn path_of(name: &str) -> Result<PathBuf> {
    if !is_backup_name(name) {
        return Err(Error::BadFile {
            message: format!("\"{name}\" is not a backup file name"),
            hint: None,
        });
    }
    regular_file(directory()?.join(name), "backup file")
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A backup file being written: a hidden temporary file, removed unless [`Pending::commit`]
/// renames it into place.
pub struct Pending {
    dir: PathBuf,
    temp: PathBuf,
    name: String,
    file: Option<File>,
}

impl Pending {
    pub fn create(dir: &Path, encrypted: bool) -> Result<Pending> {
        let name = new_file_name(encrypted);
        let temp = dir.join(format!(".{name}.{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io_error("create", &temp, &e))?;
        Ok(Pending {
            dir: dir.to_path_buf(),
            temp,
            name,
            file: Some(file),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until committed")
    }

    /// fsync, rename into place, fsync the directory; and should the current transaction
    /// abort (the `backups` row with it), the file goes too.
    pub fn commit(mut self) -> Result<PathBuf> {
        let file = self.file.take().expect("open until committed");
        file.sync_all()
            .map_err(|e| io_error("write", &self.temp, &e))?;
        drop(file);
        let path = self.dir.join(&self.name);
        fs::rename(&self.temp, &path).map_err(|e| io_error("rename", &self.temp, &e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync", &self.dir, &e))?;
        remove_on_abort(path.clone());
        Ok(path)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Removes `path` if the current transaction aborts.
pub fn remove_on_abort(path: PathBuf) {
    register_xact_callback(PgXactCallbackEvent::Abort, move || {
        let _ = fs::remove_file(&path);
    });
}

/// Files of ours in the directory that no `backups` row names (`registered`), and temporary
/// files left by a crash: removed, and their names returned. Temporary files of a backup
/// still being written by a live backend are kept (their name carries its pid).
pub fn sweep(registered: &[String]) -> Result<Vec<String>> {
    sweep_where(|name, entry| match name.strip_prefix('.') {
        // An upload nobody has added to for a day is abandoned.
        Some(_) if name.starts_with(UPLOAD_PREFIX) => idle_for(entry, 24 * 3600),
        Some(temp) => is_orphaned_temporary(temp),
        // A file renamed into place by a transaction not yet committed has no visible row:
        // only files older than an hour are taken for leftovers.
        None => {
            is_backup_name(name) && !registered.iter().any(|r| r == name) && idle_for(entry, 3600)
        }
    })
}

/// Whether the file was last written more than `seconds` ago.
fn idle_for(entry: &fs::DirEntry, seconds: u64) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > seconds)
}

/// Whether `upload` may name an upload: letters, digits, `_` and `-`, 1 to 64 of them (it
/// becomes part of a file name, never a path).
pub fn is_upload_name(upload: &str) -> bool {
    (1..=64).contains(&upload.len())
        && upload
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The file an upload is received into (a hidden name in the directory).
pub fn upload_path(upload: &str) -> Result<PathBuf> {
    debug_assert!(is_upload_name(upload));
    Ok(directory()?.join(format!("{UPLOAD_PREFIX}{upload}")))
}

/// Moves a verified upload into place under a fresh backup name (fsync, rename, fsync of the
/// directory), removed again should the transaction that registers it abort.
pub fn install_upload(temp: &Path, encrypted: bool) -> Result<String> {
    let dir = directory()?;
    let name = new_file_name(encrypted);
    File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("sync", temp, &e))?;
    let path = dir.join(&name);
    fs::rename(temp, &path).map_err(|e| io_error("rename", temp, &e))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync", &dir, &e))?;
    remove_on_abort(path);
    Ok(name)
}

/// Temporary files of backups whose backend is gone (a crash, a `kill -9`): removed.
pub fn sweep_temporaries() -> Result<Vec<String>> {
    sweep_where(|name, _| name.strip_prefix('.').is_some_and(is_orphaned_temporary))
}

/// A temporary name (without its leading dot) of ours whose writer's pid is not alive.
fn is_orphaned_temporary(temp: &str) -> bool {
    temp.starts_with(PREFIX)
        && temp
            .rsplit('.')
            .next()
            .and_then(|pid| pid.parse::<i32>().ok())
            .is_some_and(|pid| !backend_alive(pid))
}

fn sweep_where(stray: impl Fn(&str, &fs::DirEntry) -> bool) -> Result<Vec<String>> {
    let dir = directory()?;
    let mut removed = vec![];
    for entry in fs::read_dir(&dir).map_err(|e| io_error("list", &dir, &e))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if stray(&name, &entry) && fs::remove_file(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    Ok(removed)
}

fn backend_alive(pid: i32) -> bool {
    pid as u32 == std::process::id() || unsafe { libc::kill(pid, 0) } == 0
}
