//! The `options` jsonb of `import_data`, parsed strictly (see `crate::options`): unknown keys
//! and values of the wrong shape are errors that name them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::{Error, Result};
use super::rules::{Checked, Rules};
use crate::migrate::options::{ColumnSource, OnConflict};
use crate::options::{self, invalid, present, Problem, Seg, Wording};

struct ImportWording;

impl Wording for ImportWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        let mut keys = path.iter().filter_map(Seg::key);
        match keys.next() {
            None => "options".into(),
            Some(first) => {
                let rest: Vec<String> = keys.map(|k| format!(" \"{k}\"")).collect();
                format!("option \"{first}\"{}", rest.join(""))
            }
        }
    }

    fn hint(&self, path: &[Seg], problem: &Problem) -> Option<String> {
        match (path, problem) {
            ([], Problem::UnknownField { known, .. }) => {
                Some(format!("import_data options are: {}.", known.join(", ")))
            }
            ([_, _], Problem::UnknownField { known, .. }) => {
                Some(format!("The keys are: {}.", known.join(", ")))
            }
            _ => options::default_hint(path, problem),
        }
    }
}

/// The tenant key column every imported row is stamped with (`tenant`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantStamp {
    #[serde(deserialize_with = "name")]
    pub column: String,
    pub value: Value,
}

/// How CSV is written (the options `delimiter`, `quote`, `escape`, `header`, `null`).
#[derive(Clone, Debug, PartialEq)]
pub struct CsvOptions {
    /// `None`: sniffed from the first lines.
    pub delimiter: Option<u8>,
    pub quote: u8,
    /// `None`: a quote inside a quoted field is written twice.
    pub escape: Option<u8>,
    pub header: bool,
    /// A field equal to this is NULL.
    pub null: String,
}

/// Which worksheet of an XLSX workbook is read (`sheet`): by name, or by its number in the
/// workbook's order counted from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sheet {
    Name(String),
    Number(usize),
}

/// The options of one import, checked.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub csv: CsvOptions,
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// JSON: the keys leading to the array of records inside the document (empty: the
    /// document is the array).
    pub records_path: Vec<String>,
    /// XML: the element each record is (default: every child of the root element).
    pub record_element: Option<String>,
    /// XLSX: the worksheet (default: the first).
    pub sheet: Option<Sheet>,
    /// XLSX: the row (from 1) holding the header; rows above it are skipped (default: the
    /// first row with a value).
    pub header_row: Option<u32>,
    /// Target column → how it is filled (as `migrate_tenant`'s per-table `columns`).
    pub columns: BTreeMap<String, ColumnSource>,
    pub tenant: Option<TenantStamp>,
    /// Target column → the rules its value must pass.
    pub rules: BTreeMap<String, Checked>,
    /// A strftime pattern (jiff's) tried first for dates and timestamps.
    pub date_format: Option<String>,
    pub on_conflict: OnConflict,
    pub dry_run: bool,
    pub continue_on_error: bool,
    pub max_errors: Option<i64>,
    pub batch_size: i64,
    /// Only create the job (`CALL tenant_ops.run_job` runs it, committing after each step).
    pub defer: bool,
}

/// The document as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default, deserialize_with = "one_char")]
    delimiter: Option<u8>,
    #[serde(default, deserialize_with = "one_char")]
    quote: Option<u8>,
    #[serde(default, deserialize_with = "one_char")]
    escape: Option<u8>,
    #[serde(default, deserialize_with = "present")]
    header: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    null: Option<String>,
    #[serde(default, deserialize_with = "present")]
    encoding: Option<String>,
    #[serde(default, deserialize_with = "records_path")]
    records_path: Option<Vec<String>>,
    #[serde(default, deserialize_with = "element")]
    record_element: Option<String>,
    #[serde(default, deserialize_with = "sheet")]
    sheet: Option<Sheet>,
    #[serde(default, deserialize_with = "header_row")]
    header_row: Option<u32>,
    #[serde(default)]
    columns: BTreeMap<String, ColumnSource>,
    #[serde(default, deserialize_with = "present")]
    tenant: Option<options::Object<TenantStamp>>,
    #[serde(default)]
    rules: BTreeMap<String, options::Object<Rules>>,
    #[serde(default, deserialize_with = "present")]
    date_format: Option<String>,
    #[serde(default, deserialize_with = "present")]
    on_conflict: Option<OnConflict>,
    #[serde(default, deserialize_with = "present")]
    dry_run: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    continue_on_error: Option<bool>,
    #[serde(default, deserialize_with = "max_errors")]
    max_errors: Option<i64>,
    #[serde(default, deserialize_with = "batch_size")]
    batch_size: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    defer: Option<bool>,
}

fn name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    options::name(d, "a column name")
}

/// One ASCII character (`"\t"` for a tab).
fn one_char<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u8>, D::Error> {
    match options::json(d)? {
        Value::String(s) if s.len() == 1 && s.is_ascii() && s != "\n" && s != "\r" => {
            Ok(Some(s.as_bytes()[0]))
        }
        other => Err(invalid(format!(
            "must be one ASCII character other than a line break, not {}",
            options::got(&other)
        ))),
    }
}

fn element<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    options::name(d, "an element name").map(Some)
}

fn sheet<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Sheet>, D::Error> {
    match options::json(d)? {
        Value::String(s) if !s.trim().is_empty() => Ok(Some(Sheet::Name(s))),
        Value::Number(n) if n.as_u64().is_some_and(|n| (1..=65_535).contains(&n)) => {
            Ok(Some(Sheet::Number(n.as_u64().unwrap_or(1) as usize)))
        }
        other => Err(invalid(format!(
            "must be a sheet's name or its number (from 1), not {}",
            options::got(&other)
        ))),
    }
}

fn header_row<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    match options::json(d)? {
        Value::Number(n) if n.as_u64().is_some_and(|n| (1..=1_048_576).contains(&n)) => {
            Ok(n.as_u64().map(|n| n as u32))
        }
        other => Err(invalid(format!(
            "must be a row number from 1 to 1048576, not {}",
            options::got(&other)
        ))),
    }
}

fn records_path<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    match options::json(d)? {
        Value::String(s) if !s.is_empty() => Ok(Some(s.split('.').map(str::to_string).collect())),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(Some(
            items
                .iter()
                .map(|i| i.as_str().unwrap_or_default().to_string())
                .collect(),
        )),
        other => Err(invalid(format!(
            "must be keys joined by dots (\"data.items\") or an array of keys, not {}",
            options::got(&other)
        ))),
    }
}

fn max_errors<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    match options::json(d)? {
        Value::Number(n) if n.as_i64().is_some_and(|b| b >= 0) => Ok(n.as_i64()),
        other => Err(invalid(format!(
            "must be a whole number of 0 or more, not {}",
            options::got(&other)
        ))),
    }
}

fn batch_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    match options::json(d)? {
        Value::Number(n) if n.as_i64().is_some_and(|b| (1..=1_000_000).contains(&b)) => {
            Ok(n.as_i64())
        }
        other => Err(invalid(format!(
            "must be a whole number from 1 to 1000000, not {}",
            options::got(&other)
        ))),
    }
}

/// Rows per statement and per step, unless `batch_size` says otherwise.
pub const DEFAULT_BATCH: i64 = 10_000;

impl ImportOptions {
    pub fn parse(raw: &Value) -> Result<ImportOptions> {
        let d: Document = options::parse(raw, &ImportWording)?;
        let encoding = match d.encoding {
            None => None,
            Some(label) => Some(
                encoding_rs::Encoding::for_label(label.trim().as_bytes())
                    .ok_or(Error::UnknownEncoding(label))?,
            ),
        };
        let mut rules = BTreeMap::new();
        for (column, r) in d.rules {
            rules.insert(column.clone(), r.0.checked(&column)?);
        }
        if d.max_errors.is_some() && d.continue_on_error != Some(true) {
            return Err(crate::error::Common::InvalidOption(
                "option \"max_errors\" needs \"continue_on_error\": true".into(),
                None,
            )
            .into());
        }
        if d.header_row.is_some() && d.header == Some(false) {
            return Err(crate::error::Common::InvalidOption(
                "option \"header_row\" names the header's row, and \"header\" is false".into(),
                Some("Leave \"header_row\" out for a sheet without a header.".into()),
            )
            .into());
        }
        Ok(ImportOptions {
            csv: CsvOptions {
                delimiter: d.delimiter,
                quote: d.quote.unwrap_or(b'"'),
                escape: d.escape,
                header: d.header.unwrap_or(true),
                null: d.null.unwrap_or_default(),
            },
            encoding,
            records_path: d.records_path.unwrap_or_default(),
            record_element: d.record_element,
            sheet: d.sheet,
            header_row: d.header_row,
            columns: d.columns,
            tenant: d.tenant.map(|t| t.0),
            rules,
            date_format: d.date_format,
            on_conflict: d.on_conflict.unwrap_or(OnConflict::Error),
            dry_run: d.dry_run.unwrap_or(false),
            continue_on_error: d.continue_on_error.unwrap_or(false),
            max_errors: d.max_errors,
            batch_size: d.batch_size.unwrap_or(DEFAULT_BATCH),
            defer: d.defer.unwrap_or(false),
        })
    }
}
