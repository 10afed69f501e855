//! What can be wrong with an import: the file (where it is, how it is written), a record that
//! does not parse, a row that breaks a rule or the target's constraints, and the options.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

/// Why one row is refused: each reason with its own SQLSTATE (the first one's is the row's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub sqlstate: PgSqlErrorCode,
    pub message: String,
}

/// The reasons after the first, as a report's DETAIL (`Also: …` a line each); `None` when
/// there is only one.
pub fn also(reasons: &[Reason]) -> Option<String> {
    (reasons.len() > 1).then(|| {
        reasons[1..]
            .iter()
            .map(|r| format!("Also: {}", r.message))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

impl Reason {
    pub fn new(sqlstate: PgSqlErrorCode, message: impl Into<String>) -> Reason {
        Reason {
            sqlstate,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A file could not be read (a full disk is 53100, anything else 58030).
    Io {
        message: String,
        disk_full: bool,
    },
    /// `tenant_ops.import_directory` names something that is not a directory.
    NotADirectory(String),
    /// The named file is not in the import directory.
    FileMissing {
        name: String,
        path: String,
    },
    /// A name that leaves the directory, a symbolic link, something not a regular file.
    BadFile {
        message: String,
        hint: Option<String>,
    },
    /// A record the format's rules cannot read (an unclosed quote, a field too many).
    Malformed {
        line: u64,
        what: String,
        hint: Option<String>,
    },
    /// Bytes that are not text in the file's encoding.
    BadEncoding {
        line: u64,
        what: String,
    },
    /// A JSON document or line that does not parse.
    BadJson {
        line: u64,
        what: String,
    },
    /// A row that breaks a rule or does not convert, without `continue_on_error`.
    BadRow {
        line: u64,
        reasons: Vec<Reason>,
    },
    /// More rejected rows than `max_errors`.
    TooManyErrors {
        max: i64,
        line: u64,
    },
    /// A `format` this version does not read, or that detection could not tell.
    UnknownFormat {
        format: String,
    },
    /// A SQL statement that is not an INSERT of constants into the target.
    RefusedStatement {
        line: u64,
        sqlstate: PgSqlErrorCode,
        what: String,
        hint: Option<String>,
    },
    /// An XLSX file that is not a workbook calamine can read (a broken zip, a missing part).
    BadWorkbook {
        what: String,
    },
    /// `sheet` names no worksheet of the workbook.
    NoSuchSheet {
        sheet: String,
        sheets: Vec<String>,
    },
    /// An XLSX file (or a part of it read whole) larger than the limit.
    TooLarge {
        /// The part of the workbook, or `None` for the file.
        part: Option<String>,
        size: u64,
        limit: u64,
    },
    /// An `encoding` label encoding_rs does not know.
    UnknownEncoding(String),
    /// A column of `columns`, `rules` or `tenant` that the target does not have.
    UnknownColumn {
        column: String,
        target: String,
    },
    /// A field `columns` reads that the file's header does not have.
    UnknownField {
        field: String,
        known: Vec<String>,
    },
    /// Nothing in the file fills any column of the target.
    NothingToLoad {
        target: String,
        fields: Vec<String>,
    },
    /// `on_conflict` overwrite or merge into a target without a primary key.
    ConflictWithoutKey {
        target: String,
    },
    Common(Common),
    /// A `transform` of `columns` that does not parse (migrate_tenant's wording). Boxed: the
    /// migration's error is large, and this one rare.
    Transform(Box<crate::migrate::Error>),
}

wraps!(Error { Common(Common) });

impl From<crate::migrate::Error> for Error {
    fn from(e: crate::migrate::Error) -> Error {
        Error::Transform(Box::new(e))
    }
}

impl From<crate::backup::error::Error> for Error {
    /// The backup directory code is shared (`backup::store`); its errors are worded here for
    /// the import directory.
    fn from(e: crate::backup::error::Error) -> Error {
        use crate::backup::error::Error as B;
        match e {
            B::Io { message, disk_full } => Error::Io { message, disk_full },
            B::NotADirectory(d) => Error::NotADirectory(d),
            B::FileMissing(path) => Error::FileMissing {
                name: std::path::Path::new(&path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path,
            },
            B::BadFile { message, hint } => Error::BadFile { message, hint },
            other => Error::Io {
                message: other.to_string(),
                disk_full: false,
            },
        }
    }
}

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::Io { message, disk_full } => Report::new(
                if *disk_full { ERRCODE_DISK_FULL } else { ERRCODE_IO_ERROR },
                message.clone(),
            ),
            Error::NotADirectory(dir) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("import directory \"{dir}\" is not a directory"),
            )
            .hint("Set tenant_ops.import_directory to a directory the server can read.".to_string()),
            Error::FileMissing { name, path } => Report::new(
                ERRCODE_UNDEFINED_FILE,
                format!("file \"{name}\" is not in the import directory"),
            )
            .detail(format!("There is no \"{path}\"."))
            .hint("Put the file into tenant_ops.import_directory, or send its bytes with import_data_bytes().".to_string()),
            Error::BadFile { message, hint } => {
                Report::new(ERRCODE_INVALID_PARAMETER_VALUE, message.clone()).hint(hint.clone())
            }
            Error::Malformed { line, what, hint } => Report::new(
                ERRCODE_BAD_COPY_FILE_FORMAT,
                format!("line {line} of the file is malformed: {what}"),
            )
            .hint(hint.clone()),
            Error::BadEncoding { line, what } => Report::new(
                ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
                format!("line {line} of the file is not valid text: {what}"),
            )
            .hint("Name the file's encoding with the \"encoding\" option (e.g. \"windows-1252\"); UTF-16 files need a byte order mark.".to_string()),
            Error::BadJson { line, what } => Report::new(
                ERRCODE_INVALID_TEXT_REPRESENTATION,
                format!("line {line} of the file is not valid JSON: {what}"),
            ),
            Error::BadRow { line, reasons } => {
                let first = reasons.first().cloned().unwrap_or(Reason::new(
                    ERRCODE_DATA_EXCEPTION,
                    "refused",
                ));
                Report::new(
                    first.sqlstate,
                    format!("line {line} of the file is refused: {}", first.message),
                )
                .detail(also(reasons))
                .hint("Nothing was written. With \"continue_on_error\": true, refused rows go to tenant_ops.job_errors and the rest is loaded.".to_string())
            }
            Error::TooManyErrors { max, line } => Report::new(
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("more than {max} rows refused (the last at line {line})"),
            )
            .hint("The refused rows are in tenant_ops.job_errors; raise \"max_errors\" or fix the file.".to_string()),
            Error::UnknownFormat { format } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("\"{format}\" is not a format import_data reads"),
            )
            .hint(format!("The formats are: {}.", super::FORMATS.join(", "))),
            Error::RefusedStatement { line, sqlstate, what, hint } => Report::new(
                *sqlstate,
                format!("line {line} of the file is refused: {what}"),
            )
            .hint(hint.clone()),
            Error::BadWorkbook { what } => Report::new(
                ERRCODE_BAD_COPY_FILE_FORMAT,
                format!("the file is not a readable XLSX workbook: {what}"),
            ),
            Error::NoSuchSheet { sheet, sheets } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("the workbook has no sheet {sheet}"),
            )
            .hint(format!("Its sheets are: {}.", sheets.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "))),
            Error::TooLarge { part, size, limit } => Report::new(
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                match part {
                    None => format!("the XLSX file is larger than tenant_ops.import_xlsx_max_size ({limit} bytes)"),
                    Some(p) => format!("part \"{p}\" of the workbook unpacks to {size} bytes, more than tenant_ops.import_xlsx_max_size ({limit} bytes)"),
                },
            )
            .detail("An XLSX file is a zip archive that is read whole into memory (the worksheet itself is then read as a stream).".to_string())
            .hint("Save the sheet as CSV, which is streamed whatever its size, or have a superuser raise tenant_ops.import_xlsx_max_size.".to_string()),
            Error::UnknownEncoding(label) => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid options: option \"encoding\" names no known encoding: \"{label}\""),
            )
            .hint("Encodings are named as the WHATWG Encoding Standard does: \"windows-1252\", \"iso-8859-2\", \"koi8-r\", ...".to_string()),
            Error::UnknownColumn { column, target } => Report::new(
                ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of table {target} does not exist"),
            ),
            Error::UnknownField { field, known } => Report::new(
                ERRCODE_UNDEFINED_COLUMN,
                format!("the file has no field \"{field}\""),
            )
            .hint(format!("Its fields are: {}.", known.join(", "))),
            Error::NothingToLoad { target, fields } => Report::new(
                ERRCODE_UNDEFINED_COLUMN,
                format!("no field of the file names a column of table {target}"),
            )
            .detail(format!("The file's fields: {}.", fields.join(", ")))
            .hint("Map fields to columns with the \"columns\" option: {\"column\": \"field\"}.".to_string()),
            Error::ConflictWithoutKey { target } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("on_conflict overwrite and merge need a primary key, and table {target} has none"),
            ),
            Error::Common(e) => e.report(),
            Error::Transform(e) => e.report(),
        }
    }
}

user_error_display!(Error);

pub type Result<T, E = Error> = std::result::Result<T, E>;
