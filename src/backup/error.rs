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
    /// A table of a `target_schema` restore missing there.
    MissingTarget {
        target: String,
        table: String,
        backup: i64,
    },
    /// Rows outside the tenant reference the rows a replace would delete (`constraint` and
    /// `count` known when found before anything changed; else PostgreSQL's words in `detail`).
    Referenced {
        backup: i64,
        table: String,
        by: Option<(String, String, i64)>,
        detail: Option<String>,
    },
    /// A merge under `on_conflict: error` meets rows the tenant holds already.
    Conflict {
        backup: i64,
        table: String,
        count: i64,
        keys: Vec<String>,
    },
    /// A merge whose rows have the keys of other tenants' rows.
    OthersKeys {
        backup: i64,
        table: String,
        count: i64,
        keys: Vec<String>,
    },
    /// A clone's new tenant exists already.
    TenantExists {
        backup: i64,
        tenant: String,
        table: String,
    },
    /// A clone cannot give a table's rows fresh keys.
    NoFreshKeys {
        backup: i64,
        table: String,
        why: String,
        hint: String,
    },
    /// A statement of the restore failed on the rows of a table (a constraint, a trigger).
    RowsRefused {
        backup: i64,
        table: String,
        sqlstate: PgSqlErrorCode,
        message: String,
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
    /// An incremental backup's chain: a link missing or out of place, a base without a
    /// capture, another tenant's backup (see `backup::incremental`).
    Chain {
        code: PgSqlErrorCode,
        message: String,
        hint: Option<String>,
    },
    /// A base backup's change capture cannot be installed.
    Capture(crate::capture::Error),
    Scope(crate::scope::Error),
    /// A `pii` option the transform machinery refuses (see `pii::mask`).
    Mask(Box<crate::migrate::Error>),
    Common(Common),
}

impl From<crate::migrate::Error> for Error {
    fn from(e: crate::migrate::Error) -> Error {
        Error::Mask(Box::new(e))
    }
}

wraps!(Error {
    Capture(crate::capture::Error),
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
            .detail(detail.clone())
            .hint("A trigger of the table that changes rows as they are written (an updated_at stamp) makes them differ from the backup's: restore with {\"disable_triggers\": true}.".to_string()),
            Error::MissingTarget { target, table, backup } => Report::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("table {target} for {table} of backup {backup} does not exist"),
            )
            .hint("A restore into target_schema needs every table of the backup there, with its columns: CREATE TABLE ... (LIKE ... INCLUDING ALL) makes one.".to_string()),
            Error::Referenced { backup, table, by, detail } => Report::new(
                ERRCODE_FOREIGN_KEY_VIOLATION,
                match by {
                    Some((child, constraint, n)) => format!(
                        "backup {backup} cannot replace the rows of {table}: {n} row(s) of {child} outside the tenant reference them through {constraint}"
                    ),
                    None => format!("backup {backup} cannot replace the rows of {table}: other rows still reference them"),
                },
            )
            .detail(detail.clone())
            .hint("A replace deletes the tenant's rows first; remove those references (validate_integrity's isolation check lists them), or restore with mode \"merge\".".to_string()),
            Error::Conflict { backup, table, count, keys } => Report::new(
                ERRCODE_UNIQUE_VIOLATION,
                format!("{count} row(s) of {table} in backup {backup} already exist (on_conflict is \"error\")"),
            )
            .detail(format!("Conflicting keys include: {}.", keys.join(", ")))
            .hint("Choose on_conflict \"skip\", \"overwrite\" or \"merge\", or restore with mode \"replace\".".to_string()),
            Error::OthersKeys { backup, table, count, keys } => Report::new(
                ERRCODE_UNIQUE_VIOLATION,
                format!("backup {backup} cannot be merged: {count} of its row(s) of {table} have the keys of other tenants' rows"),
            )
            .detail(format!("Keys include: {}.", keys.join(", ")))
            .hint("Restore it as a copy with fresh keys instead: {\"mode\": \"clone\", \"new_tenant\": ...}.".to_string()),
            Error::TenantExists { backup, tenant, table } => Report::new(
                ERRCODE_UNIQUE_VIOLATION,
                format!("backup {backup} cannot be cloned as tenant \"{tenant}\": {table} holds that tenant already"),
            )
            .hint("Choose another new_tenant, or restore over it with mode \"replace\" or \"merge\".".to_string()),
            Error::NoFreshKeys { backup, table, why, hint } => Report::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("backup {backup} cannot be cloned: the rows of {table} cannot get fresh keys: {why}"),
            )
            .hint(hint.clone()),
            Error::RowsRefused { backup, table, sqlstate, message } => Report::new(
                *sqlstate,
                format!("restoring backup {backup} into {table} failed: {message}"),
            )
            .detail("Nothing was changed.".to_string()),
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
            Error::Chain { code, message, hint } => Report::new(*code, message.clone()).hint(hint.clone()),
            Error::Capture(e) => e.report(),
            Error::Scope(e) => e.report(),
            Error::Mask(e) => e.report(),
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
