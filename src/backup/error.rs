//! What can be wrong with a backup call: the file system, a damaged file, a backup that does
//! not fit the tables as they are now.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    UnknownBackup(i64),
    /// A file could not be read or written (a full disk is 53100, anything else 58030).
    Io {
        message: String,
        disk_full: bool,
    },
    /// The backup directory setting names something that is not a directory.
    NotADirectory(String),
    /// A registered file that is gone from the directory.
    FileMissing(String),
    /// A name that is not one of ours, or a file that is not a plain file.
    BadFile {
        message: String,
        hint: Option<String>,
    },
    /// A backup file that is not what it claims (checksum, manifest, contents).
    Corrupt {
        backup: i64,
        what: String,
        detail: Option<String>,
    },
    /// A table of the backup that no longer exists.
    MissingTable {
        table: String,
        backup: i64,
    },
    /// The restored rows differ from the backup's.
    RestoreUnverified {
        table: String,
        detail: String,
    },
    /// Rows outside the tenant reference the rows a replace would delete.
    Referenced {
        backup: i64,
        table: String,
        detail: String,
    },
    /// The key setting (named), or the key file it names, holds no age identity.
    BadEncryptionKey(String),
    /// The key file (named) may be read by group or others.
    KeyFileExposed(String),
    /// An encrypted backup (named) read with the key setting empty.
    EncryptionKeyMissing(String),
    /// An encrypted backup (named) encrypted to another key than the one set (where it is set).
    EncryptionKeyWrong(String, String),
    /// A `load_backup_finish` of an upload nothing was sent to.
    UnknownUpload(String),
    /// An uploaded file that is not a sound backup: refused, removed.
    BadUpload {
        upload: String,
        what: String,
        detail: Option<String>,
    },
    Scope(crate::scope::Error),
    Common(Common),
}

wraps!(Error {
    Scope(crate::scope::Error),
    Common(Common),
});

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::UnknownBackup(id) => Report::new(ERRCODE_UNDEFINED_OBJECT, format!("backup {id} does not exist"))
                .hint("SELECT id, scope, tenant, created_at FROM tenant_ops.backups lists the backups.".to_string()),
            Error::Io { message, disk_full } => Report::new(
                if *disk_full { ERRCODE_DISK_FULL } else { ERRCODE_IO_ERROR },
                message.clone(),
            ),
            Error::NotADirectory(dir) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("backup directory \"{dir}\" is not a directory"),
            )
            .hint("Set tenant_ops.backup_directory to a directory the server can write.".to_string()),
            Error::FileMissing(path) => Report::new(
                ERRCODE_UNDEFINED_FILE,
                format!("backup file \"{path}\" is missing from the backup directory"),
            )
            .hint("drop_backup() unregisters a backup whose file is gone.".to_string()),
            Error::BadFile { message, hint } => Report::new(ERRCODE_UNDEFINED_FILE, message.clone()).hint(hint.clone()),
            Error::Corrupt { backup, what, detail } => {
                Report::new(ERRCODE_DATA_CORRUPTED, format!("backup {backup} is damaged: {what}")).detail(detail.clone())
            }
            Error::MissingTable { table, backup } => Report::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("table {table} of backup {backup} does not exist"),
            )
            .hint("Create the table as it was when the backup was taken, then restore.".to_string()),
            Error::RestoreUnverified { table, detail } => Report::new(
                ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
                format!("verification of the restore of {table} failed"),
            )
            .detail(detail.clone()),
            Error::Referenced { backup, table, detail } => Report::new(
                ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("backup {backup} cannot replace the rows of {table}: other rows still reference them"),
            )
            .detail(detail.clone())
            .hint("Rows outside the tenant reference its rows; remove those references first (validate_integrity's isolation check lists them).".to_string()),
            Error::BadEncryptionKey(source) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("{source} is not an age identity"),
            )
            .hint("Generate one with age-keygen: a line beginning AGE-SECRET-KEY-1 (a key file holds one such line, and # comments).".to_string()),
            Error::KeyFileExposed(source) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("{source} can be read by group or others"),
            )
            .hint("Make it readable by the server's OS user only: chmod 600.".to_string()),
            Error::EncryptionKeyMissing(what) => Report::new(
                ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                format!("{what} is encrypted and no backup encryption key is set"),
            )
            .hint("A superuser sets tenant_ops.backup_encryption_key_file (server-wide) or tenant_ops.backup_encryption_key (a session) to the age identity the backup was encrypted to.".to_string()),
            Error::EncryptionKeyWrong(what, source) => Report::new(
                ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                format!("{what} is encrypted to another key than {source}"),
            )
            .hint("Set tenant_ops.backup_encryption_key_file or tenant_ops.backup_encryption_key to the age identity the backup was encrypted to.".to_string()),
            Error::UnknownUpload(upload) => Report::new(
                ERRCODE_UNDEFINED_OBJECT,
                format!("upload \"{upload}\" does not exist"),
            )
            .hint("Send the file first: tenant_ops.load_backup_chunk(upload, data) for each chunk.".to_string()),
            Error::BadUpload { upload, what, detail } => Report::new(
                ERRCODE_DATA_CORRUPTED,
                if upload.is_empty() {
                    format!("uploaded backup is damaged: {what}")
                } else {
                    format!("uploaded backup \"{upload}\" is damaged: {what}")
                },
            )
            .detail(detail.clone())
            .hint("Nothing was registered and the upload was removed; send the file again.".to_string()),
            Error::Scope(e) => e.report(),
            Error::Common(e) => e.report(),
        }
    }
}

user_error_display!(Error);

pub type Result<T> = std::result::Result<T, Error>;

/// A file system error, named with the file and what was being done.
pub fn io_error(action: &str, path: &std::path::Path, e: &std::io::Error) -> Error {
    Error::Io {
        message: format!("could not {action} \"{}\": {e}", path.display()),
        disk_full: e.raw_os_error() == Some(libc::ENOSPC),
    }
}
