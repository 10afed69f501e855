//! The six export formats: how a table's rows are written (and, for `import_tenant`, read
//! back). Values are PostgreSQL's text forms, printed under the backups' settings (ISO
//! dates, UTC, hex bytea), so that each format reads back to the same rows:
//!
//! - **csv** — RFC 4180 with a header line of column names, as `COPY ... (FORMAT csv,
//!   HEADER)` writes it: NULL is an empty unquoted field, an empty string `""`, and a field
//!   with a comma, quote, CR or LF (or `\.`) is quoted, quotes doubled. `COPY FROM` and
//!   `import_data` load it back;
//! - **json** — one array of objects (column name → value), one object per line; **ndjson** —
//!   one object per line. Integers are JSON numbers, booleans `true`/`false`, NULL `null`,
//!   everything else a string (numeric, dates, json columns too: exactly as PostgreSQL prints
//!   them, never through a float);
//! - **xml** — `<table schema=".." name=".."><row><col>value</col>…</row>…</table>`: a
//!   column whose name is no XML name (or is `column`) is written `<column name="…">`; NULL is
//!   an empty element `<col/>`, an empty string `<col></col>`; characters XML cannot hold raw
//!   (CR, other control characters) as character references;
//! - **sql** — one `INSERT INTO "schema"."table" ("col", …) VALUES (…);` per row, values as
//!   string literals (`E'…'` when they hold a backslash), `NULL`: psql and
//!   `import_data(format => 'sql')` load it;
//! - **xlsx** — one workbook, a sheet per table (see `xlsx.rs`).

use std::io::{self, BufRead, Write};

use super::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Ndjson,
    Xml,
    Sql,
    Xlsx,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            "xml" => Format::Xml,
            "sql" => Format::Sql,
            "xlsx" => Format::Xlsx,
            _ => return Err(Error::UnknownFormat(name.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Xml => "xml",
            Format::Sql => "sql",
            Format::Xlsx => "xlsx",
        }
    }
}

/// How a column's values are typed where a format has types (JSON, XLSX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Boolean,
    Text,
}

impl Kind {
    /// From a column's declared type (`ColumnSpec::type_full`).
    pub fn of(type_full: &str) -> Kind {
        match type_full {
            "smallint" | "integer" | "bigint" => Kind::Integer,
            "boolean" => Kind::Boolean,
            _ => Kind::Text,
        }
    }
}

/// A table as a writer needs it.
pub struct TableMeta {
    pub schema: String,
    pub table: String,
    /// `"schema"."table"`, quoted.
    pub qualified: String,
    pub columns: Vec<String>,
    pub kinds: Vec<Kind>,
}

/// Writes one table's rows in a text format.
pub struct TextWriter<'a> {
    format: Format,
    meta: &'a TableMeta,
    rows: u64,
    /// The part of an INSERT before its values, or XML's element names: made once.
    prefix: String,
    xml_names: Vec<(String, String)>,
}

impl<'a> TextWriter<'a> {
    pub fn new(format: Format, meta: &'a TableMeta) -> TextWriter<'a> {
        let prefix = match format {
            Format::Sql => format!(
                "INSERT INTO {} ({}) VALUES (",
                meta.qualified,
                meta.columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        };
        let xml_names = meta
            .columns
            .iter()
            .map(|c| {
                if is_xml_name(c) && c != "column" {
                    (format!("<{c}"), format!("</{c}>"))
                } else {
                    (
                        format!("<column name=\"{}\"", xml_escape(c, true)),
                        "</column>".to_string(),
                    )
                }
            })
            .collect();
        TextWriter {
            format,
            meta,
            rows: 0,
            prefix,
            xml_names,
        }
    }

    pub fn begin(&mut self, w: &mut dyn Write) -> io::Result<()> {
        match self.format {
            Format::Csv => {
                let header: Vec<Option<&str>> =
                    self.meta.columns.iter().map(|c| Some(c.as_str())).collect();
                csv_line(w, &header)
            }
            Format::Json => w.write_all(b"[\n"),
            Format::Xml => write!(
                w,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<table schema=\"{}\" name=\"{}\">\n",
                xml_escape(&self.meta.schema, true),
                xml_escape(&self.meta.table, true)
            ),
            Format::Ndjson | Format::Sql | Format::Xlsx => Ok(()),
        }
    }

    pub fn row(&mut self, w: &mut dyn Write, fields: &[Option<&str>]) -> io::Result<()> {
        match self.format {
            Format::Csv => csv_line(w, fields)?,
            Format::Json | Format::Ndjson => {
                if self.format == Format::Json && self.rows > 0 {
                    w.write_all(b",")?;
                }
                let mut line = String::with_capacity(256);
                line.push('{');
                for (i, (c, f)) in self.meta.columns.iter().zip(fields).enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(&json_string(c));
                    line.push(':');
                    match f {
                        None => line.push_str("null"),
                        Some(v) => match self.meta.kinds[i] {
                            Kind::Integer if is_integer(v) => line.push_str(v),
                            Kind::Boolean if *v == "true" || *v == "false" => line.push_str(v),
                            _ => line.push_str(&json_string(v)),
                        },
                    }
                }
                line.push_str("}\n");
                w.write_all(line.as_bytes())?;
            }
            Format::Xml => {
                let mut line = String::with_capacity(256);
                line.push_str("<row>");
                for ((open, close), f) in self.xml_names.iter().zip(fields) {
                    line.push_str(open);
                    match f {
                        None => line.push_str("/>"),
                        Some(v) => {
                            line.push('>');
                            line.push_str(&xml_escape(v, false));
                            line.push_str(close);
                        }
                    }
                }
                line.push_str("</row>\n");
                w.write_all(line.as_bytes())?;
            }
            Format::Sql => {
                let mut line = String::with_capacity(256);
                line.push_str(&self.prefix);
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        line.push_str(", ");
                    }
                    match f {
                        None => line.push_str("NULL"),
                        Some(v) => line.push_str(&sql_literal(v)),
                    }
                }
                line.push_str(");\n");
                w.write_all(line.as_bytes())?;
            }
            Format::Xlsx => unreachable!("XLSX is written by xlsx.rs"),
        }
        self.rows += 1;
        Ok(())
    }

    pub fn end(&mut self, w: &mut dyn Write) -> io::Result<()> {
        match self.format {
            Format::Json => w.write_all(b"]\n"),
            Format::Xml => w.write_all(b"</table>\n"),
            _ => Ok(()),
        }
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn csv_line(w: &mut dyn Write, fields: &[Option<&str>]) -> io::Result<()> {
    let mut line = Vec::with_capacity(256);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        if let Some(v) = f {
            let quote = v.is_empty()
                || *v == "\\."
                || v.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
            if quote {
                line.push(b'"');
                for b in v.bytes() {
                    if b == b'"' {
                        line.push(b'"');
                    }
                    line.push(b);
                }
                line.push(b'"');
            } else {
                line.extend_from_slice(v.as_bytes());
            }
        }
    }
    line.push(b'\n');
    w.write_all(&line)
}

/// Whether `name` can be an XML element name as it is (ASCII letters, digits, `_`, `-`, `.`,
/// not starting with a digit, `-`, `.` or `xml`).
pub fn is_xml_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}

fn xml_escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' | '\n' if attribute => out.push_str(&format!("&#x{:X};", c as u32)),
            '\r' => out.push_str("&#xD;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => {
                out.push_str(&format!("&#x{:X};", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

fn sql_literal(v: &str) -> String {
    if v.contains('\\') {
        format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", v.replace('\'', "''"))
    }
}

// ---------------------------------------------------------------------------------------
// Reading back (import_tenant): each reader reads exactly what the writer above writes, and
// calls the record's fields (in manifest column order) damaged otherwise.

/// Reads the rows of one table file written by [`TextWriter`]; `each` gets each row's
/// fields in column order.
pub fn read_rows(
    format: Format,
    columns: &[String],
    input: &mut dyn BufRead,
    mut each: impl FnMut(Vec<Option<String>>) -> Result<()>,
    damaged: &dyn Fn(String) -> Error,
) -> Result<()> {
    match format {
        Format::Csv => {
            let mut n = 0u64;
            while let Some(fields) = csv_record(input).map_err(|e| damaged(e.to_string()))? {
                n += 1;
                if fields.len() != columns.len() {
                    return Err(damaged(format!(
                        "line {n} has {} fields where the manifest lists {} columns",
                        fields.len(),
                        columns.len()
                    )));
                }
                if n == 1 {
                    let header: Vec<Option<String>> =
                        columns.iter().map(|c| Some(c.clone())).collect();
                    if fields != header {
                        return Err(damaged(
                            "its header line is not the manifest's columns".into(),
                        ));
                    }
                    continue;
                }
                each(fields)?;
            }
            Ok(())
        }
        Format::Json | Format::Ndjson => {
            let mut line = String::new();
            let mut n = 0u64;
            loop {
                line.clear();
                if input
                    .read_line(&mut line)
                    .map_err(|e| damaged(e.to_string()))?
                    == 0
                {
                    break;
                }
                n += 1;
                let mut text = line.trim_end_matches('\n');
                if format == Format::Json {
                    if text == "[" || text == "]" {
                        continue;
                    }
                    text = text.strip_prefix(',').unwrap_or(text);
                }
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
                    .map_err(|e| damaged(format!("line {n} is not a JSON object: {e}")))?;
                if obj.len() != columns.len() {
                    return Err(damaged(format!(
                        "line {n} has {} keys where the manifest lists {} columns",
                        obj.len(),
                        columns.len()
                    )));
                }
                let fields = columns
                    .iter()
                    .map(|c| match obj.get(c) {
                        Some(serde_json::Value::Null) => Ok(None),
                        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                        Some(serde_json::Value::Number(x)) => Ok(Some(x.to_string())),
                        Some(serde_json::Value::Bool(b)) => Ok(Some(b.to_string())),
                        Some(_) => Err(damaged(format!("line {n}: \"{c}\" is not a scalar"))),
                        None => Err(damaged(format!("line {n} has no \"{c}\""))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                each(fields)?;
            }
            Ok(())
        }
        Format::Xml => read_xml(columns, input, each, damaged),
        Format::Sql => {
            let mut n = 0u64;
            while let Some(stmt) = sql_statement(input).map_err(|e| damaged(e.to_string()))? {
                n += 1;
                let fields = parse_insert(&stmt, columns)
                    .map_err(|e| damaged(format!("statement {n} does not read: {e}")))?;
                each(fields)?;
            }
            Ok(())
        }
        Format::Xlsx => Err(Error::Unreadable {
            format: "xlsx".into(),
        }),
    }
}

/// The next CSV record (`None` at the end): an unquoted empty field is NULL.
fn csv_record(input: &mut dyn BufRead) -> io::Result<Option<Vec<Option<String>>>> {
    let mut raw = Vec::new();
    // A record may span lines inside quotes: read lines until the quotes balance.
    loop {
        let n = input.read_until(b'\n', &mut raw)?;
        if n == 0 {
            break;
        }
        if raw.iter().filter(|&&b| b == b'"').count() % 2 == 0 {
            break;
        }
    }
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.last() == Some(&b'\n') {
        raw.pop();
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut fields = vec![];
    let mut i = 0;
    loop {
        if raw.get(i) == Some(&b'"') {
            let mut v = Vec::new();
            i += 1;
            loop {
                match raw.get(i) {
                    None => return Err(bad("a quoted field is never closed")),
                    Some(b'"') if raw.get(i + 1) == Some(&b'"') => {
                        v.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        v.push(b);
                        i += 1;
                    }
                }
            }
            fields.push(Some(
                String::from_utf8(v).map_err(|_| bad("a field is not UTF-8"))?,
            ));
        } else {
            let start = i;
            while i < raw.len() && raw[i] != b',' {
                i += 1;
            }
            let v = &raw[start..i];
            fields.push(if v.is_empty() {
                None
            } else {
                Some(String::from_utf8(v.to_vec()).map_err(|_| bad("a field is not UTF-8"))?)
            });
        }
        match raw.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(bad("text follows a quoted field")),
        }
    }
    Ok(Some(fields))
}

/// The next statement (up to `;` and a newline outside quotes), `None` at the end.
fn sql_statement(input: &mut dyn BufRead) -> io::Result<Option<String>> {
    let mut raw = Vec::new();
    loop {
        let n = input.read_until(b'\n', &mut raw)?;
        if n == 0 {
            break;
        }
        let mut quoted = None;
        for &b in &raw {
            match (quoted, b) {
                (None, b'\'' | b'"') => quoted = Some(b),
                (Some(q), b) if b == q => quoted = None,
                _ => {}
            }
        }
        if quoted.is_none() && raw.ends_with(b";\n") {
            break;
        }
    }
    if raw.is_empty() {
        return Ok(None);
    }
    String::from_utf8(raw)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a statement is not UTF-8"))
}

/// The values of `INSERT INTO <table> (<columns>) VALUES (<literals>);` as [`TextWriter`]
/// writes it; the column list must be the manifest's.
fn parse_insert(
    stmt: &str,
    columns: &[String],
) -> std::result::Result<Vec<Option<String>>, String> {
    let s = stmt.trim_end();
    let s = s
        .strip_prefix("INSERT INTO ")
        .ok_or("it is not an INSERT")?;
    let mut p = Cursor { s, i: 0 };
    // The table: quoted identifiers joined by dots (checked by the manifest's sha256).
    p.ident()?;
    while p.eat(".") {
        p.ident()?;
    }
    p.expect(" (")?;
    let mut names = vec![];
    loop {
        names.push(p.ident()?);
        if !p.eat(", ") {
            break;
        }
    }
    if names != columns {
        return Err("its columns are not the manifest's".into());
    }
    p.expect(") VALUES (")?;
    let mut values = vec![];
    loop {
        values.push(p.literal()?);
        if !p.eat(", ") {
            break;
        }
    }
    p.expect(");")?;
    if p.i != p.s.len() {
        return Err("text follows the statement".into());
    }
    if values.len() != columns.len() {
        return Err(format!(
            "{} values where the manifest lists {} columns",
            values.len(),
            columns.len()
        ));
    }
    Ok(values)
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) -> std::result::Result<(), String> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(format!("expected \"{t}\""))
        }
    }
    /// `"..."` with `""` for a quote.
    fn quoted(&mut self, q: char) -> std::result::Result<String, String> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((k, c)) = chars.next() {
            if c == q {
                if self.rest()[k + 1..].starts_with(q) {
                    out.push(q);
                    chars.next();
                    continue;
                }
                self.i += k + 1;
                return Ok(out);
            }
            out.push(c);
        }
        Err("a quoted text is never closed".into())
    }
    /// A quoted identifier, or one that needs no quotes (as `quote_ident` leaves them).
    fn ident(&mut self) -> std::result::Result<String, String> {
        if self.eat("\"") {
            return self.quoted('"');
        }
        let n = self
            .rest()
            .bytes()
            .take_while(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'$'
            })
            .count();
        if n == 0 {
            return Err("expected an identifier".into());
        }
        let id = self.rest()[..n].to_string();
        self.i += n;
        Ok(id)
    }
    fn literal(&mut self) -> std::result::Result<Option<String>, String> {
        if self.eat("NULL") {
            return Ok(None);
        }
        if self.eat("E'") {
            let raw = self.quoted('\'')?;
            // The writer escapes only backslashes in E'' strings.
            let mut out = String::with_capacity(raw.len());
            let mut it = raw.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    match it.next() {
                        Some('\\') => out.push('\\'),
                        _ => return Err("an unknown escape in an E'' string".into()),
                    }
                } else {
                    out.push(c);
                }
            }
            return Ok(Some(out));
        }
        self.expect("'")?;
        self.quoted('\'').map(Some)
    }
}

fn read_xml(
    columns: &[String],
    input: &mut dyn BufRead,
    mut each: impl FnMut(Vec<Option<String>>) -> Result<()>,
    damaged: &dyn Fn(String) -> Error,
) -> Result<()> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut row: Option<Vec<Option<String>>> = None;
    // The field being read: its column index and text so far.
    let mut field: Option<(usize, String)> = None;
    let n = std::cell::Cell::new(0u64);
    let bad = |what: String| damaged(format!("row {}: {what}", n.get() + 1));
    let column_of = |e: &quick_xml::events::BytesStart| -> std::result::Result<usize, String> {
        let name = e.local_name().as_ref().to_string();
        let name = if name == "column" {
            let a = e
                .try_get_attribute("name")
                .map_err(|e| e.to_string())?
                .ok_or("a <column> without a name")?;
            a.normalized_value(Default::default())
                .map_err(|e| e.to_string())?
                .into_owned()
        } else {
            name
        };
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or(format!("\"{name}\" is not a column of the manifest"))
    };
    loop {
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(format!("not well-formed XML: {e}")))?;
        match event {
            Event::DocType(_) => return Err(bad("a DOCTYPE (never written by an export)".into())),
            Event::Start(e) => {
                depth += 1;
                match depth {
                    1 | 2 => {
                        if depth == 2 {
                            row = Some(vec![None; columns.len()]);
                        }
                    }
                    3 => field = Some((column_of(&e).map_err(&bad)?, String::new())),
                    _ => return Err(bad("elements nested too deep".into())),
                }
            }
            Event::Empty(e) if depth == 2 => {
                column_of(&e).map_err(&bad)?;
            }
            Event::Empty(_) if depth == 1 => {
                // An empty <row/>: a row of a table without columns.
                each(vec![])?;
                n.set(n.get() + 1);
            }
            Event::Text(t) => {
                if let Some((_, text)) = field.as_mut() {
                    text.push_str(&t.xml_content(Default::default()));
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.into_inner();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .map(str::to_string)
                            .ok_or_else(|| bad("an entity XML does not predefine".into()))?
                    }
                };
                if let Some((_, text)) = field.as_mut() {
                    text.push_str(&c);
                }
            }
            Event::End(_) => {
                match depth {
                    3 => {
                        if let (Some((i, text)), Some(r)) = (field.take(), row.as_mut()) {
                            r[i] = Some(text);
                        }
                    }
                    2 => {
                        each(row.take().unwrap_or_default())?;
                        n.set(n.get() + 1);
                    }
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TableMeta {
        TableMeta {
            schema: "s\"x".into(),
            table: "t;1".into(),
            qualified: "\"s\"\"x\".t_1".into(),
            columns: vec![
                "id".into(),
                "Na me\"".into(),
                "column".into(),
                "ok".into(),
                "bıg".into(),
            ],
            kinds: vec![
                Kind::Integer,
                Kind::Text,
                Kind::Text,
                Kind::Boolean,
                Kind::Text,
            ],
        }
    }

    fn rows() -> Vec<Vec<Option<&'static str>>> {
        vec![
            vec![
                Some("1"),
                Some("a,b\"c\nd\re"),
                None,
                Some("true"),
                Some(""),
            ],
            vec![
                Some("-2"),
                Some(""),
                Some("\\."),
                None,
                Some("x\\y'z\u{1}<&>"),
            ],
            vec![None, None, None, Some("false"), None],
        ]
    }

    #[test]
    fn every_text_format_reads_back() {
        let m = meta();
        for format in [
            Format::Csv,
            Format::Json,
            Format::Ndjson,
            Format::Xml,
            Format::Sql,
        ] {
            let mut out = Vec::new();
            let mut w = TextWriter::new(format, &m);
            w.begin(&mut out).unwrap();
            for r in rows() {
                w.row(&mut out, &r).unwrap();
            }
            w.end(&mut out).unwrap();
            let mut back = vec![];
            read_rows(
                format,
                &m.columns,
                &mut out.as_slice(),
                |f| {
                    back.push(f);
                    Ok(())
                },
                &|what| Error::Damaged {
                    archive: "t".into(),
                    what,
                },
            )
            .unwrap_or_else(|e| panic!("{format:?}: {e}\n{}", String::from_utf8_lossy(&out)));
            let want: Vec<Vec<Option<String>>> = rows()
                .into_iter()
                .map(|r| r.into_iter().map(|f| f.map(str::to_string)).collect())
                .collect();
            assert_eq!(back, want, "{format:?}:\n{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn json_types_integers_and_booleans() {
        let m = meta();
        let mut out = Vec::new();
        let mut w = TextWriter::new(Format::Ndjson, &m);
        w.row(&mut out, &rows()[0]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":1,\"Na me\\\"\":\"a,b\\\"c\\nd\\re\",\"column\":null,\"ok\":true,\"bıg\":\"\"}\n"
        );
    }

    #[test]
    fn sql_and_csv_are_what_psql_and_copy_read() {
        let m = meta();
        let mut out = Vec::new();
        let mut w = TextWriter::new(Format::Sql, &m);
        w.row(&mut out, &rows()[1]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "INSERT INTO \"s\"\"x\".t_1 (\"id\", \"Na me\"\"\", \"column\", \"ok\", \"bıg\") VALUES ('-2', '', E'\\\\.', NULL, E'x\\\\y''z\u{1}<&>');\n"
        );
        let mut out = Vec::new();
        csv_line(&mut out, &rows()[1]).unwrap();
        assert_eq!(out, b"-2,\"\",\"\\.\",,x\\y'z\x01<&>\n");
    }

    #[test]
    fn formats_are_named() {
        assert_eq!(Format::parse("CSV").unwrap(), Format::Csv);
        assert!(matches!(
            Format::parse("parquet"),
            Err(Error::UnknownFormat(_))
        ));
        assert!(is_xml_name("customer_id"));
        assert!(!is_xml_name("1a") && !is_xml_name("a b") && !is_xml_name("xmlns"));
    }
}
