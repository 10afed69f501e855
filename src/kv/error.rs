//! What can go wrong with a key-value source: the catalog (a source that does not exist, a
//! bad URL), the store (unreachable, a password refused, stopped in the middle), a dump that
//! is not a `localStorage` document, a mapping that does not fit, and the import's own errors.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No source of that name.
    UnknownSource(String),
    /// A source of that name exists already.
    DuplicateSource(String),
    /// A URL that does not name a Redis server or a dump file.
    BadUrl {
        url: String,
        why: String,
    },
    /// The server could not be reached, or stopped answering (timeouts included).
    Unreachable {
        source: String,
        why: String,
    },
    /// The server refused the credentials.
    AuthFailed {
        source: String,
        why: String,
    },
    /// The server answered with an error.
    Server {
        source: String,
        why: String,
    },
    /// A dump that is not a `localStorage` document.
    BadDump {
        source: String,
        why: String,
    },
    /// A mapping that does not fit (pattern, columns, table).
    BadMapping {
        message: String,
        hint: Option<String>,
    },
    /// A key refused (its reasons), without `continue_on_error`.
    BadKey {
        key: String,
        reasons: Vec<crate::import::error::Reason>,
    },
    /// More keys refused than `max_errors`.
    TooManyErrors {
        max: i64,
        key: String,
    },
    /// No key backup of that name in the backup directory.
    BackupMissing(String),
    /// A key backup whose archive does not read back as written.
    Damaged {
        file: String,
        what: String,
    },
    /// `restore_kv` with `on_conflict` `error`: keys of the backup exist in the store.
    KeysExist {
        file: String,
        source: String,
        count: i64,
        sample: Vec<String>,
    },
    /// `restore_kv` lost the server while writing: `written` keys in batches it saw applied,
    /// and the `in_doubt` keys of the batch it was writing (sent, its reply never came: applied
    /// whole or not at all).
    RestoreInterrupted {
        source: String,
        why: String,
        written: i64,
        in_doubt: i64,
    },
    /// A job whose stored arguments this version cannot read.
    NotOurJob(String),
    Common(Common),
    Import(Box<crate::import::Error>),
}

wraps!(Error { Common(Common) });

impl From<crate::import::Error> for Error {
    fn from(e: crate::import::Error) -> Error {
        Error::Import(Box::new(e))
    }
}

impl From<crate::migrate::Error> for Error {
    fn from(e: crate::migrate::Error) -> Error {
        Error::Import(Box::new(e.into()))
    }
}

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::UnknownSource(name) => Report::new(
                ERRCODE_UNDEFINED_OBJECT,
                format!("key-value source \"{name}\" does not exist"),
            )
            .hint("Create it with tenant_ops.create_kv_source(name, url) or tenant_ops.kv_source_from_json(name, data); tenant_ops.kv_sources lists them.".to_string()),
            Error::DuplicateSource(name) => Report::new(
                ERRCODE_DUPLICATE_OBJECT,
                format!("key-value source \"{name}\" already exists"),
            )
            .hint("Drop it first with tenant_ops.drop_kv_source(name).".to_string()),
            Error::BadUrl { url, why } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("\"{url}\" is not a key-value source URL: {why}"),
            )
            .hint("Write redis://[:password@]host:port[/db] (TLS is not supported) or file:name.json for a localStorage dump in tenant_ops.import_directory.".to_string()),
            Error::Unreachable { source, why } => Report::new(
                ERRCODE_CONNECTION_FAILURE,
                format!("key-value source \"{source}\" is unreachable: {why}"),
            )
            .hint("Nothing was written by this step. Check that the server runs and the URL's host and port; the timeouts are the source's connect_timeout_ms and read_timeout_ms options.".to_string()),
            Error::AuthFailed { source, why } => Report::new(
                ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                format!("key-value source \"{source}\" refused the credentials: {why}"),
            )
            .hint("Recreate the source with the right password in its URL (redis://:password@host:port).".to_string()),
            Error::Server { source, why } => Report::new(
                ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                format!("key-value source \"{source}\" answered with an error: {why}"),
            ),
            Error::BadDump { source, why } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("key-value source \"{source}\" is not a localStorage dump: {why}"),
            )
            .hint("A dump is a JSON object of key → string (as localStorage holds them), or an object of dump name → such an object for several users' dumps.".to_string()),
            Error::BadMapping { message, hint } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid mapping: {message}"),
            )
            .hint(hint.clone()),
            Error::BadKey { key, reasons } => {
                let first = reasons.first().cloned().unwrap_or(crate::import::error::Reason::new(
                    ERRCODE_DATA_EXCEPTION,
                    "refused",
                ));
                Report::new(
                    first.sqlstate,
                    format!("key \"{}\" is refused: {}", crate::import::rules::shorten(key), first.message),
                )
                .detail(crate::import::error::also(reasons))
                .hint("Nothing was written. With \"continue_on_error\": true, refused keys go to tenant_ops.job_errors and the rest is imported.".to_string())
            }
            Error::TooManyErrors { max, key } => Report::new(
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("more than {max} keys refused (the last \"{}\")", crate::import::rules::shorten(key)),
            )
            .hint("The refused keys are in tenant_ops.job_errors; raise \"max_errors\" or fix the values.".to_string()),
            Error::BackupMissing(file) => Report::new(
                ERRCODE_UNDEFINED_FILE,
                format!("key backup \"{file}\" is not in the backup directory"),
            )
            .hint("import_kv with \"backup\": true names its archive in its result (backup.file); it is kept in the directory of tenant_ops.backup_directory.".to_string()),
            Error::Damaged { file, what } => Report::new(
                ERRCODE_DATA_CORRUPTED,
                format!("key backup \"{file}\" is damaged: {what}"),
            )
            .hint("Nothing was written. The archive is not as import_kv wrote it: restore another backup.".to_string()),
            Error::KeysExist { file, source, count, sample } => Report::new(
                ERRCODE_UNIQUE_VIOLATION,
                format!("{count} key(s) of key backup \"{file}\" exist in source \"{source}\" (on_conflict is \"error\")"),
            )
            .detail(format!("Existing keys include: {}.", sample.join(", ")))
            .hint("Nothing was written. Choose on_conflict \"skip\" (the store's keys stay) or \"overwrite\" (the backup's values).".to_string()),
            Error::RestoreInterrupted { source, why, written, in_doubt } => Report::new(
                ERRCODE_CONNECTION_FAILURE,
                format!("key-value source \"{source}\" stopped answering during restore_kv: {why}"),
            )
            .detail(if *in_doubt == 0 {
                format!("{written} key(s) were restored before, in whole batches; no key is half written.")
            } else {
                format!("{written} key(s) were restored before, in whole batches; the batch of {in_doubt} being written when it stopped answering may have been applied too, whole or not at all: no key is half written.")
            })
            .hint("Restore again with on_conflict \"overwrite\" once the server is back: it completes the restore.".to_string()),
            Error::NotOurJob(m) => Report::new(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, m.clone()),
            Error::Common(e) => e.report(),
            Error::Import(e) => e.report(),
        }
    }
}

user_error_display!(Error);

pub type Result<T, E = Error> = std::result::Result<T, E>;
