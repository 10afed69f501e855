//! The format readers: each turns the decoded text of one file into records, one at a time
//! (never the whole file in memory), with the line each record starts on. `detect` picks a
//! format from the content when `format` is `auto`.

pub mod csv;
pub mod json;
pub mod ndjson;
pub mod sql;
pub mod xlsx;
pub mod xml;

use std::io::BufRead;

use serde_json::{Map, Value};

use super::error::{Error, Reason, Result};
use super::options::ImportOptions;

/// A format the readers know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Ndjson,
    Xml,
    Xlsx,
    Sql,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Xml => "xml",
            Format::Xlsx => "xlsx",
            Format::Sql => "sql",
        }
    }

    /// `format` as given (`None`: auto).
    pub fn parse(format: &str) -> Result<Option<Format>> {
        match format.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(None),
            "csv" | "tsv" => Ok(Some(Format::Csv)),
            "json" => Ok(Some(Format::Json)),
            "ndjson" | "jsonl" | "jsonlines" => Ok(Some(Format::Ndjson)),
            "xml" => Ok(Some(Format::Xml)),
            "xlsx" | "xlsm" => Ok(Some(Format::Xlsx)),
            "sql" => Ok(Some(Format::Sql)),
            _ => Err(Error::UnknownFormat {
                format: format.to_string(),
            }),
        }
    }

    /// The format of a file from its first bytes (decoded), the name a hint where the content
    /// does not tell: `[` is JSON, `{` JSON when the first object does not end on its line
    /// (a document) and NDJSON when it does; a zip archive (`PK\x03\x04`) XLSX when it holds
    /// a workbook's parts or is named `.xlsx`; SQL when it starts (after comments) as SQL
    /// scripts and pg_dump's output do (`INSERT`, `SET`, `BEGIN`, `\restrict`) or is named
    /// `.sql`; anything else CSV.
    pub fn detect(head: &[u8], name: &str) -> Format {
        let lower = name.to_ascii_lowercase();
        let lower = lower.trim_end_matches(".gz");
        if head.starts_with(b"PK\x03\x04") {
            // Any other zip is read as XLSX too, and calamine says what it lacks.
            return Format::Xlsx;
        }
        if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
            return Format::Ndjson;
        }
        let head = &head[..head.len().min(64 * 1024)];
        let bare = head.strip_prefix("\u{feff}".as_bytes()).unwrap_or(head);
        if sql::looks_like_sql(bare) {
            return Format::Sql;
        }
        let text = String::from_utf8_lossy(head);
        let t = text.trim_start_matches('\u{feff}').trim_start();
        if t.starts_with('[') {
            return Format::Json;
        }
        if t.starts_with('<') {
            return Format::Xml;
        }
        if t.starts_with('{') {
            let first_line = t.lines().next().unwrap_or_default();
            return if serde_json::from_str::<Value>(first_line).is_ok() {
                Format::Ndjson
            } else {
                Format::Json
            };
        }
        if lower.ends_with(".json") {
            return Format::Json;
        }
        if lower.ends_with(".xml") {
            return Format::Xml;
        }
        if lower.ends_with(".sql") {
            return Format::Sql;
        }
        Format::Csv
    }
}

/// One record's values.
pub enum Values {
    /// By position, in the order of [`Reader::fields`] (CSV); `None` is SQL NULL.
    Positional(Vec<Option<String>>),
    /// By name (JSON objects).
    Named(Map<String, Value>),
}

/// A record and where it starts.
pub struct Record {
    pub line: u64,
    pub values: Values,
    /// Values that are there but unusable (an XLSX cell holding `#DIV/0!`): the position in
    /// [`Values::Positional`] and why; the row is refused when a column reads that field.
    pub faults: Vec<(usize, Reason)>,
}

/// A JSON value read as one record: an object, its keys the fields; anything else is refused
/// at `line`, `holds` saying where the value was ("a record is", "the line holds").
fn object_record(line: u64, value: Value, holds: &str) -> Result<Option<Record>> {
    match value {
        Value::Object(m) => Ok(Some(Record {
            line,
            values: Values::Named(m),
            faults: vec![],
        })),
        other => Err(Error::Malformed {
            line,
            what: format!(
                "{holds} {}, not a JSON object",
                crate::options::describe_json(&other)
            ),
            hint: None,
        }),
    }
}

impl Record {
    /// The record as it was read, for `tenant_ops.job_errors`.
    pub fn raw(&self, fields: &[String]) -> Value {
        match &self.values {
            Values::Named(m) => Value::Object(m.clone()),
            Values::Positional(v) => Value::Object(
                fields
                    .iter()
                    .zip(v)
                    .map(|(f, v)| (f.clone(), v.clone().map_or(Value::Null, Value::String)))
                    .collect(),
            ),
        }
    }
}

/// Positional records kept side by side without a `String` per field: every field's text in
/// one buffer, a span per field, a line per record. What a batch keeps of the CSV records it
/// read (for the rows refused later: `job_errors` wants the record as read); cleared, its
/// capacity kept, for the next batch.
#[derive(Default)]
pub struct RawRows {
    text: String,
    /// Per field: its bytes in `text`, `None` for NULL.
    spans: Vec<Option<(usize, usize)>>,
    /// Per record: its line and its first field in `spans`.
    rows: Vec<(u64, usize)>,
}

impl RawRows {
    pub fn clear(&mut self) {
        if self.text.capacity() > 64 << 20 {
            self.text = String::new();
        }
        self.text.clear();
        self.spans.clear();
        self.rows.clear();
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Starts a record at `line`; its fields follow with [`RawRows::push_field`].
    pub fn start(&mut self, line: u64) {
        self.rows.push((line, self.spans.len()));
    }

    pub fn push_field(&mut self, v: Option<&str>) {
        self.spans.push(v.map(|v| {
            let start = self.text.len();
            self.text.push_str(v);
            (start, self.text.len())
        }));
    }

    /// Removes the last record (refused, or read only to be skipped).
    pub fn pop(&mut self) {
        if let Some((_, first)) = self.rows.pop() {
            let start = self.spans[first..]
                .iter()
                .flatten()
                .next()
                .map_or(self.text.len(), |s| s.0);
            self.text.truncate(start);
            self.spans.truncate(first);
        }
    }

    fn fields(&self, row: usize) -> &[Option<(usize, usize)>] {
        let first = self.rows[row].1;
        let end = self.rows.get(row + 1).map_or(self.spans.len(), |r| r.1);
        &self.spans[first..end]
    }

    /// Record `row`'s fields.
    pub fn record(&self, row: usize) -> RawRecord<'_> {
        RawRecord {
            line: self.rows[row].0,
            text: &self.text,
            spans: self.fields(row),
        }
    }
}

/// The fields of one record of [`RawRows`].
#[derive(Clone, Copy)]
pub struct RawRecord<'a> {
    pub line: u64,
    text: &'a str,
    spans: &'a [Option<(usize, usize)>],
}

impl<'a> RawRecord<'a> {
    /// Field `i` (`None`: NULL, or the record has fewer fields).
    pub fn field(&self, i: usize) -> Option<&'a str> {
        self.spans
            .get(i)
            .copied()
            .flatten()
            .map(|(s, e)| &self.text[s..e])
    }

    /// The record as it was read, for `tenant_ops.job_errors` (as [`Record::raw`]).
    pub fn raw(&self, fields: &[String]) -> Value {
        Value::Object(
            fields
                .iter()
                .zip(self.spans)
                .map(|(f, s)| {
                    let v = s.map_or(Value::Null, |(s, e)| Value::String(self.text[s..e].into()));
                    (f.clone(), v)
                })
                .collect(),
        )
    }
}

/// What [`Reader::next_into`] read.
pub enum Next {
    /// The end of the file.
    End,
    /// A record, appended to the [`RawRows`] given.
    Raw,
    /// An NDJSON line, appended to the [`RawRows`] given as its one field, not yet read
    /// (with [`ndjson::parse_line`], which may refuse it).
    Line,
    /// A record of its own.
    Record(Record),
}

/// A format reader.
pub trait Reader {
    /// The field names every record has (CSV: the header), if the format has them.
    fn fields(&self) -> Option<&[String]>;
    /// The next record; `None` at the end.
    fn next_record(&mut self) -> Result<Option<Record>>;
    /// The next record: appended to `rows` by readers that can (CSV: no `String` per field),
    /// else as a [`Record`].
    fn next_into(&mut self, _rows: &mut RawRows) -> Result<Next> {
        Ok(match self.next_record()? {
            None => Next::End,
            Some(r) => Next::Record(r),
        })
    }
    /// The line the reader is at (the next record's).
    fn line(&self) -> u64;
    /// The field delimiter (CSV).
    fn delimiter(&self) -> Option<u8> {
        None
    }
    /// The worksheet read (XLSX).
    fn sheet(&self) -> Option<&str> {
        None
    }
}

/// A reader of `format` over `text`; `default_fields` name a CSV file's fields when it has no
/// header (the target's columns, in order); SQL statements must insert into `target`.
pub fn reader(
    format: Format,
    text: Box<dyn BufRead>,
    options: &ImportOptions,
    default_fields: &[String],
    target: u32,
) -> Result<Box<dyn Reader>> {
    Ok(match format {
        Format::Csv => Box::new(csv::CsvReader::new(text, &options.csv, default_fields)?),
        Format::Ndjson => Box::new(ndjson::NdjsonReader::new(text)),
        Format::Json => Box::new(json::JsonReader::new(text, &options.records_path)?),
        Format::Xml => Box::new(xml::XmlReader::new(text, options.record_element.clone())),
        Format::Xlsx => Box::new(xlsx::XlsxReader::new(
            text,
            options,
            default_fields,
            crate::gucs::import_xlsx_max_size(),
        )?),
        Format::Sql => Box::new(sql::SqlReader::new(text, target)),
    })
}

/// A JSON value as the text a column takes: strings as they are, other scalars as JSON
/// writes them, arrays and objects as JSON text (for json and jsonb columns); `null` is NULL.
pub fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// As [`json_text`], a string borrowed rather than copied.
pub fn json_str(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        other => Some(std::borrow::Cow::Owned(other.to_string())),
    }
}

/// A byte order mark inside the text (files concatenated with their BOMs) is refused.
pub fn check_no_bom(line: u64, text: &str) -> Result<()> {
    if text.contains('\u{feff}') {
        return Err(Error::Malformed {
            line,
            what: "a byte order mark (U+FEFF) inside the file".into(),
            hint: Some(
                "A byte order mark belongs only at the very start: were files concatenated?".into(),
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RawRows;

    #[test]
    fn raw_rows_keep_records_as_read() {
        let mut rows = RawRows::default();
        let fields = ["a".to_string(), "b".to_string()];
        rows.start(2);
        rows.push_field(Some("x"));
        rows.push_field(None);
        rows.start(3);
        rows.push_field(Some("dropped"));
        rows.pop();
        rows.start(5);
        rows.push_field(Some(""));
        rows.push_field(Some("ü"));
        assert_eq!(rows.len(), 2);
        let (first, second) = (rows.record(0), rows.record(1));
        assert_eq!(
            (first.line, first.field(0), first.field(1)),
            (2, Some("x"), None)
        );
        assert_eq!(
            (second.line, second.field(1), second.field(2)),
            (5, Some("ü"), None)
        );
        assert_eq!(second.raw(&fields), serde_json::json!({"a": "", "b": "ü"}));
        assert_eq!(first.raw(&fields), serde_json::json!({"a": "x", "b": null}));
        rows.clear();
        assert!(rows.is_empty());
    }
}
