//! What can be wrong with an export or an import of one: options, the directory, the
//! archive.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `tenant_ops.export_directory` is not set.
    NoDirectory,
    /// The setting names something that is not a directory.
    NotADirectory(String),
    /// A file could not be read or written (a full disk is 53100, anything else 58030).
    Io {
        message: String,
        disk_full: bool,
    },
    /// A name that leaves the directory, a symbolic link, something not a regular file.
    BadFile {
        message: String,
        hint: Option<String>,
    },
    /// A file named that is not in the directory.
    FileMissing {
        name: String,
    },
    /// The file to write exists already.
    FileExists {
        name: String,
    },
    UnknownFormat(String),
    /// A `tables` entry that names no table at all.
    UnknownTable(String),
    /// A `tables` entry that is a table, but not one of the scope's tenant tables.
    NotInScope {
        table: String,
        scope: String,
    },
    UnknownColumn {
        table: String,
        column: String,
    },
    /// A value the format cannot hold (an XLSX cell over 32,767 characters, a sheet over
    /// 1,048,576 rows).
    TooLarge {
        message: String,
        hint: String,
    },
    /// An archive that is not what it claims (checksum, manifest, contents).
    Damaged {
        archive: String,
        what: String,
    },
    /// An export of another root table or tenant key than the scope's.
    OtherScope {
        archive: String,
        what: String,
    },
    /// A format import_tenant cannot read back.
    Unreadable {
        format: String,
    },
    Scope(crate::scope::Error),
    Backup(crate::backup::error::Error),
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
    Scope(crate::scope::Error),
    Common(Common),
});

impl From<crate::backup::error::Error> for Error {
    /// The directory code is the backups' (`backup::store`); its errors are worded here for
    /// the export directory.
    fn from(e: crate::backup::error::Error) -> Error {
        use crate::backup::error::Error as B;
        match e {
            B::Io { message, disk_full } => Error::Io { message, disk_full },
            B::NotADirectory(d) => Error::NotADirectory(d),
            B::FileMissing(path) => Error::FileMissing {
                name: std::path::Path::new(&path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(path),
            },
            B::BadFile { message, hint } => Error::BadFile { message, hint },
            other => Error::Backup(other),
        }
    }
}

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::NoDirectory => Report::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "tenant_ops.export_directory is not set",
            )
            .hint("A superuser chooses where exports go: ALTER SYSTEM SET tenant_ops.export_directory = '/srv/exports'; SELECT pg_reload_conf();".to_string()),
            Error::NotADirectory(dir) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("export directory \"{dir}\" is not a directory"),
            )
            .hint("Set tenant_ops.export_directory to a directory the server can write.".to_string()),
            Error::Io { message, disk_full } => Report::new(
                if *disk_full { ERRCODE_DISK_FULL } else { ERRCODE_IO_ERROR },
                message.clone(),
            ),
            Error::BadFile { message, hint } => {
                Report::new(ERRCODE_INVALID_PARAMETER_VALUE, message.clone()).hint(hint.clone())
            }
            Error::FileMissing { name } => Report::new(
                ERRCODE_UNDEFINED_FILE,
                format!("file \"{name}\" is not in the export directory"),
            )
            .hint("Name a file of tenant_ops.export_directory, as export_tenant's result gives it.".to_string()),
            Error::FileExists { name } => Report::new(
                ERRCODE_DUPLICATE_FILE,
                format!("file \"{name}\" exists already in the export directory"),
            )
            .hint("Choose another \"file\", or leave it out for a name of the job's own.".to_string()),
            Error::UnknownFormat(f) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown export format \"{f}\""),
            )
            .hint("The formats are: csv, json, ndjson, xml, sql, xlsx.".to_string()),
            Error::UnknownTable(t) => Report::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("option \"tables\": table \"{t}\" does not exist"),
            ),
            Error::NotInScope { table, scope } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("option \"tables\": {table} is not a tenant table of scope \"{scope}\""),
            )
            .hint(format!("SELECT table_name FROM tenant_ops.plan('{}', <tenant>) WHERE role <> 'shared' lists them.", scope.replace('\'', "''"))),
            Error::UnknownColumn { table, column } => Report::new(
                ERRCODE_UNDEFINED_COLUMN,
                format!("option \"tables\": column \"{column}\" of {table} does not exist"),
            )
            .hint("Generated columns are not exported; name stored columns only.".to_string()),
            Error::TooLarge { message, hint } => {
                Report::new(ERRCODE_PROGRAM_LIMIT_EXCEEDED, message.clone()).hint(hint.clone())
            }
            Error::Damaged { archive, what } => Report::new(
                ERRCODE_DATA_CORRUPTED,
                format!("export archive \"{archive}\" is damaged: {what}"),
            )
            .hint("Nothing was changed. Export the tenant again, or copy the file again.".to_string()),
            Error::OtherScope { archive, what } => Report::new(
                ERRCODE_INVALID_OBJECT_DEFINITION,
                format!("export archive \"{archive}\" does not fit the scope: {what}"),
            )
            .hint("Import it through a scope over the root table and tenant key it was exported with.".to_string()),
            Error::Unreadable { format } => Report::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("import_tenant cannot read back {format} exports yet"),
            )
            .hint("Export in csv, json, ndjson, xml or sql for a round trip; load a workbook's sheets with import_data.".to_string()),
            Error::Scope(e) => e.report(),
            Error::Backup(e) => e.report(),
            Error::Mask(e) => e.report(),
            Error::Common(e) => e.report(),
        }
    }
}

user_error_display!(Error);

pub type Result<T> = std::result::Result<T, Error>;

pub fn io_error(action: &str, path: &std::path::Path, e: &std::io::Error) -> Error {
    Error::from(crate::backup::store::io_error(action, path, e))
}
