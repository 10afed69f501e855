//! XLSX workbooks with calamine. A workbook is a zip archive, and a zip archive is read from
//! its end (the central directory), so the file is read whole into memory — up to
//! `tenant_ops.import_xlsx_max_size`, else refused with a hint to save the sheet as CSV. Before
//! calamine reads anything, every part it reads whole (shared strings, styles, the workbook)
//! is unpacked once into nothing to check that it stays within the same limit: a zip bomb
//! is refused before it can take the memory. The worksheet itself is then read as a stream
//! of cells (calamine's cell reader), one row at a time.
//!
//! Rows: the header (`header`, default true) is the row `header_row` names, else the first
//! row with a value; rows above it are skipped, as are empty rows. A record's line is its
//! row number as Excel shows it. Typed cells become text the column conversions read:
//! numbers as written (`3`, `2.5`), booleans `true`/`false`, date cells ISO 8601
//! (`2024-03-05`, `2024-03-05T10:30:00`, from either date system), durations `HH:MM:SS`.
//! A cell holding an error (`#DIV/0!`, `#N/A`) refuses its row when a column reads it.

use std::io::{BufRead, Cursor, Read};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use calamine::{DataRef, Reader as _, Xlsx, XlsxCellReader, XlsxError};

use super::{Reader, Record, Values};
use crate::import::error::{Error, Reason, Result};
use crate::import::options::{ImportOptions, Sheet};

type Book = Xlsx<Cursor<Vec<u8>>>;

/// A worksheet's cell reader together with the workbook it borrows from.
///
/// calamine's `XlsxCellReader<'a>` borrows the workbook (`&'a mut Xlsx`) for its whole life,
/// and the import keeps its reader across steps, so the two live in one value: the workbook
/// on the heap behind a raw pointer (never moved or touched while the reader lives), the
/// reader dropped before it.
struct Cells {
    reader: ManuallyDrop<XlsxCellReader<'static, Cursor<Vec<u8>>>>,
    book: NonNull<Book>,
}

impl Cells {
    fn open(book: Book, sheet: &str) -> std::result::Result<Cells, XlsxError> {
        let book = NonNull::from(Box::leak(Box::new(book)));
        // SAFETY: `book` is a leaked box, so it stays at its address until `drop` frees it,
        // after the reader (which holds the only borrow of it) is gone. Nothing else
        // reaches the workbook while the reader lives.
        match unsafe { (*book.as_ptr()).worksheet_cells_reader(sheet) } {
            Ok(reader) => Ok(Cells {
                reader: ManuallyDrop::new(reader),
                book,
            }),
            Err(e) => {
                // SAFETY: the failed call left no borrow behind; the box is ours to free.
                drop(unsafe { Box::from_raw(book.as_ptr()) });
                Err(e)
            }
        }
    }

    /// The next cell with a value: (row, column) from 0, and its text or error.
    fn next(&mut self) -> std::result::Result<Option<Cell>, XlsxError> {
        loop {
            let Some(cell) = self.reader.next_cell()? else {
                return Ok(None);
            };
            let (row, col) = cell.get_position();
            // The value borrows the workbook's shared strings: made owned right here.
            let value = match cell.get_value() {
                DataRef::Empty => continue,
                DataRef::Error(e) => Err(e.to_string()),
                other => Ok(text(other)),
            };
            return Ok(Some(Cell { row, col, value }));
        }
    }
}

impl Drop for Cells {
    fn drop(&mut self) {
        // SAFETY: the reader goes first, then the workbook it borrowed (see `open`).
        unsafe {
            ManuallyDrop::drop(&mut self.reader);
            drop(Box::from_raw(self.book.as_ptr()));
        }
    }
}

struct Cell {
    row: u32,
    col: u32,
    /// The cell's text, or the Excel error it holds.
    value: std::result::Result<String, String>,
}

/// A typed cell as text the column conversions read.
fn text(v: &DataRef<'_>) -> String {
    match v {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => number(*f),
        DataRef::Bool(b) => b.to_string(),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => s.to_string(),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::DateTime(d) if d.is_duration() => {
            let seconds = (d.as_f64() * 86_400.0).round() as i64;
            let sign = if seconds < 0 { "-" } else { "" };
            let s = seconds.unsigned_abs();
            format!("{sign}{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        DataRef::DateTime(d) => {
            let (y, mo, da, h, mi, s, ms) = d.to_ymd_hms_milli();
            if (h, mi, s, ms) == (0, 0, 0, 0) {
                format!("{y:04}-{mo:02}-{da:02}")
            } else if ms == 0 {
                format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}")
            } else {
                format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{ms:03}")
            }
        }
        DataRef::Error(e) => e.to_string(),
        DataRef::Empty => String::new(),
    }
}

/// A number cell: whole numbers without a fraction (`3`, not `3.0`), others as the shortest
/// text that reads back to the same double.
fn number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Column letters of a column index from 0 (`0` → `A`, `27` → `AB`).
pub fn column_name(mut col: u32) -> String {
    let mut name = vec![];
    loop {
        name.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

/// The zip archive's parts calamine reads whole, unpacked once into nothing: each must stay
/// within `limit` (a zip bomb is refused before calamine takes the memory). Worksheets are
/// read as streams and not limited, nor are parts that are not XML (a workbook's pictures):
/// calamine does not read them.
fn check_parts(bytes: &[u8], limit: u64) -> Result<()> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| Error::BadWorkbook {
        what: e.to_string(),
    })?;
    for i in 0..zip.len() {
        let mut part = zip.by_index(i).map_err(|e| Error::BadWorkbook {
            what: e.to_string(),
        })?;
        let name = part
            .name()
            .map_err(|e| Error::BadWorkbook {
                what: e.to_string(),
            })?
            .to_string();
        if name.starts_with("xl/worksheets/") && !name.contains("/_rels/") {
            continue;
        }
        // Images, embedded objects and other binaries calamine never reads.
        let lower = name.to_ascii_lowercase();
        if !(lower.ends_with(".xml") || lower.ends_with(".rels")) {
            continue;
        }
        let too_large = |size| Error::TooLarge {
            part: Some(name.clone()),
            size,
            limit,
        };
        if part.size() > limit {
            return Err(too_large(part.size()));
        }
        // The size a zip declares can lie: count what it unpacks to.
        let n =
            std::io::copy(&mut (&mut part).take(limit + 1), &mut std::io::sink()).map_err(|e| {
                Error::BadWorkbook {
                    what: format!("part \"{name}\" does not unpack: {e}"),
                }
            })?;
        if n > limit {
            return Err(too_large(n));
        }
    }
    Ok(())
}

fn workbook_error(e: XlsxError) -> Error {
    Error::BadWorkbook {
        what: e.to_string(),
    }
}

pub struct XlsxReader {
    cells: Cells,
    /// A cell read ahead: the first of the next row.
    ahead: Option<Cell>,
    done: bool,
    fields: Vec<String>,
    /// The column of the first field.
    first_col: u32,
    null: String,
    header: bool,
    /// The row (from 1) the next record can start on.
    line: u64,
    /// The worksheet read.
    sheet: String,
}

impl XlsxReader {
    /// Reads the workbook in `text` (the file's bytes, gzip undone) and opens its sheet.
    pub fn new(
        text: Box<dyn BufRead>,
        o: &ImportOptions,
        default_fields: &[String],
        limit: u64,
    ) -> Result<XlsxReader> {
        let mut bytes = vec![];
        text.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Io {
                message: format!("could not read the file: {e}"),
                disk_full: false,
            })?;
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                part: None,
                size: bytes.len() as u64,
                limit,
            });
        }
        check_parts(&bytes, limit)?;
        let book: Book = calamine::Reader::new(Cursor::new(bytes)).map_err(workbook_error)?;
        let names = book.sheet_names();
        let sheet = match &o.sheet {
            None => names.first().cloned().ok_or_else(|| Error::BadWorkbook {
                what: "it has no worksheet".into(),
            })?,
            Some(Sheet::Name(n)) => {
                names
                    .iter()
                    .find(|s| *s == n)
                    .cloned()
                    .ok_or_else(|| Error::NoSuchSheet {
                        sheet: format!("\"{n}\""),
                        sheets: names.clone(),
                    })?
            }
            Some(Sheet::Number(i)) => {
                names
                    .get(i - 1)
                    .cloned()
                    .ok_or_else(|| Error::NoSuchSheet {
                        sheet: format!("number {i} (it has {})", names.len()),
                        sheets: names.clone(),
                    })?
            }
        };
        let cells = Cells::open(book, &sheet).map_err(workbook_error)?;
        let mut reader = XlsxReader {
            cells,
            ahead: None,
            done: false,
            fields: vec![],
            first_col: 0,
            null: o.csv.null.clone(),
            header: o.csv.header,
            line: 1,
            sheet,
        };
        if o.csv.header {
            let skip_to = o.header_row.unwrap_or(1);
            while let Some((row, cells)) = reader.row()? {
                if row < skip_to as u64 {
                    continue;
                }
                if row > skip_to as u64 && o.header_row.is_some() {
                    return Err(Error::Malformed {
                        line: o.header_row.unwrap_or(1) as u64,
                        what: "the header row is empty".into(),
                        hint: Some(format!("The first row with a value below it is row {row}.")),
                    });
                }
                let first = cells.iter().map(|c| c.col).min().unwrap_or(0);
                let last = cells.iter().map(|c| c.col).max().unwrap_or(0);
                let mut names: Vec<String> = (first..=last).map(column_name).collect();
                for c in cells {
                    let name = match c.value {
                        Ok(t) => t.trim().to_string(),
                        Err(e) => e,
                    };
                    if !name.is_empty() {
                        names[(c.col - first) as usize] = name;
                    }
                }
                reader.fields = names;
                reader.first_col = first;
                break;
            }
        } else {
            reader.fields = default_fields.to_vec();
        }
        Ok(reader)
    }

    fn next_cell(&mut self) -> Result<Option<Cell>> {
        if let Some(c) = self.ahead.take() {
            return Ok(Some(c));
        }
        if self.done {
            return Ok(None);
        }
        let line = self.line;
        match self.cells.next() {
            Ok(Some(c)) => Ok(Some(c)),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => Err(Error::Malformed {
                line,
                what: format!("the worksheet does not read: {e}"),
                hint: None,
            }),
        }
    }

    /// The next row with a value: its number (from 1) and its cells.
    fn row(&mut self) -> Result<Option<(u64, Vec<Cell>)>> {
        let Some(first) = self.next_cell()? else {
            return Ok(None);
        };
        let row = first.row;
        let mut cells = vec![first];
        loop {
            match self.next_cell()? {
                Some(c) if c.row == row => cells.push(c),
                other => {
                    self.ahead = other;
                    break;
                }
            }
        }
        let number = row as u64 + 1;
        self.line = number + 1;
        Ok(Some((number, cells)))
    }
}

impl Reader for XlsxReader {
    fn fields(&self) -> Option<&[String]> {
        Some(&self.fields)
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn sheet(&self) -> Option<&str> {
        Some(&self.sheet)
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        let Some((line, cells)) = self.row()? else {
            return Ok(None);
        };
        let mut values = vec![None; self.fields.len()];
        let mut faults = vec![];
        for c in cells {
            let i = c.col.checked_sub(self.first_col).map(|i| i as usize);
            let Some(i) = i.filter(|i| *i < self.fields.len()) else {
                let last = self.first_col + self.fields.len() as u32;
                return Err(Error::Malformed {
                    line,
                    what: match (self.header, self.fields.is_empty()) {
                        (_, true) => format!(
                            "cell {}{line} holds a value, and the header names no column",
                            column_name(c.col)
                        ),
                        (true, false) => format!(
                            "cell {}{line} is outside the header's columns {} to {}",
                            column_name(c.col),
                            column_name(self.first_col),
                            column_name(last - 1)
                        ),
                        (false, false) => format!(
                            "cell {}{line} is beyond the {} columns of the target (A to {})",
                            column_name(c.col),
                            self.fields.len(),
                            column_name(last - 1)
                        ),
                    },
                    hint: None,
                });
            };
            match c.value {
                Ok(t) => values[i] = (t != self.null).then_some(t),
                Err(e) => faults.push((
                    i,
                    Reason::new(
                        pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                        format!(
                            "field \"{}\": cell {}{line} holds the error {e}",
                            self.fields[i],
                            column_name(c.col)
                        ),
                    ),
                )),
            }
        }
        Ok(Some(Record {
            line,
            values: Values::Positional(values),
            faults,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(27), "AB");
        assert_eq!(column_name(701), "ZZ");
        assert_eq!(column_name(702), "AAA");
    }

    #[test]
    fn numbers_as_written() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(1e20), "100000000000000000000");
    }
}
