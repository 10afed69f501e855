//! CSV (and TSV and friends) with the `csv` crate: `delimiter` (sniffed from the first lines
//! when not given), `quote`, `escape` (else a quote is doubled), `header`, `null`. Every
//! record must have as many fields as the first; a quoted field that never closes is refused
//! naming the line it opened on (the csv crate would take the rest of the file into it).

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

use super::{check_no_bom, Next, RawRows, Reader, Record, Values};
use crate::import::error::{Error, Result};
use crate::import::options::CsvOptions;

pub struct CsvReader {
    inner: csv::Reader<QuoteTracker>,
    fields: Vec<String>,
    record: csv::ByteRecord,
    null: String,
    open_quote: Rc<Cell<Option<u64>>>,
    line: u64,
    /// The delimiter used (given or sniffed).
    delimiter: u8,
}

/// Delimiters tried when none is given, most likely first.
const CANDIDATES: &[u8] = b",;\t|";

/// The delimiter of the first lines of `head`: the candidate found the same (non-zero)
/// number of times on most lines, outside quotes; ',' when nothing tells.
pub fn sniff(head: &[u8], quote: u8) -> u8 {
    let text = &head[..head.len().min(64 * 1024)];
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').take(20).collect();
    // The last piece may be cut off by the buffer's end.
    let lines = if lines.len() > 1 {
        &lines[..lines.len() - 1]
    } else {
        &lines[..]
    };
    let mut best = (b',', 0usize);
    for &c in CANDIDATES {
        let counts: Vec<usize> = lines
            .iter()
            .map(|l| {
                let mut quoted = false;
                l.iter()
                    .filter(|&&b| {
                        if b == quote {
                            quoted = !quoted;
                        }
                        !quoted && b == c
                    })
                    .count()
            })
            .collect();
        let first = counts.first().copied().unwrap_or(0);
        if first == 0 {
            continue;
        }
        let same = counts.iter().filter(|&&n| n == first).count();
        let score = same * 1000 + first;
        if score > best.1 {
            best = (c, score);
        }
    }
    best.0
}

impl CsvReader {
    pub fn new(
        mut text: Box<dyn BufRead>,
        o: &CsvOptions,
        default_fields: &[String],
    ) -> Result<CsvReader> {
        let delimiter = match o.delimiter {
            Some(d) => d,
            None => {
                let head = text.fill_buf().map_err(|e| Error::Io {
                    message: format!("could not read the file: {e}"),
                    disk_full: false,
                })?;
                sniff(head, o.quote)
            }
        };
        let open_quote = Rc::new(Cell::new(None));
        let tracker = QuoteTracker {
            inner: text,
            delimiter,
            quote: o.quote,
            escape: o.escape,
            state: State::FieldStart,
            line: 1,
            open_quote: open_quote.clone(),
        };
        let inner = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(o.quote)
            .escape(o.escape)
            .double_quote(o.escape.is_none())
            .has_headers(false)
            .flexible(false)
            .from_reader(tracker);
        let mut reader = CsvReader {
            fields: vec![],
            record: csv::ByteRecord::new(),
            null: o.null.clone(),
            open_quote,
            line: 1,
            delimiter,
            inner,
        };
        if o.header {
            match reader.read()? {
                None => reader.fields = vec![],
                Some(line) => {
                    let mut names = vec![];
                    for (i, f) in reader.record.iter().enumerate() {
                        let name = utf8(line, f)?;
                        let name = if i == 0 {
                            name.trim_start_matches('\u{feff}')
                        } else {
                            name
                        };
                        names.push(name.trim().to_string());
                    }
                    reader.fields = names;
                }
            }
        } else {
            reader.fields = default_fields.to_vec();
        }
        Ok(reader)
    }

    /// Reads the next record into `self.record`; its line, or `None` at the end.
    fn read(&mut self) -> Result<Option<u64>> {
        match self.inner.read_byte_record(&mut self.record) {
            Ok(true) => {
                let line = self.record.position().map_or(self.line, |p| p.line());
                self.line = self.inner.position().line();
                Ok(Some(line))
            }
            Ok(false) => {
                if let Some(line) = self.open_quote.get() {
                    return Err(Error::Malformed {
                        line,
                        what: "a quoted field is never closed".into(),
                        hint: Some("Quotes inside a quoted field are written twice (\"\"), or set \"escape\".".into()),
                    });
                }
                Ok(None)
            }
            Err(e) => Err(match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    pos,
                    expected_len,
                    len,
                } => {
                    let line = pos.as_ref().map_or(self.line, |p| p.line());
                    match self.open_quote.get() {
                        Some(open) if open <= line => Error::Malformed {
                            line: open,
                            what: "a quoted field is never closed".into(),
                            hint: Some("Quotes inside a quoted field are written twice (\"\"), or set \"escape\".".into()),
                        },
                        _ => Error::Malformed {
                            line,
                            what: format!("{len} fields where the first line has {expected_len}"),
                            hint: Some(format!(
                                "The delimiter is \"{}\"; set \"delimiter\" if that is wrong.",
                                (self.delimiter as char).escape_default()
                            )),
                        },
                    }
                }
                csv::ErrorKind::Io(io) => Error::Io {
                    message: format!("could not read line {} of the file: {io}", self.line),
                    disk_full: false,
                },
                _ => Error::Malformed {
                    line: self.line,
                    what: e.to_string(),
                    hint: None,
                },
            }),
        }
    }
}

fn utf8(line: u64, field: &[u8]) -> Result<&str> {
    std::str::from_utf8(field).map_err(|e| Error::BadEncoding {
        line,
        what: format!(
            "invalid UTF-8 after \"{}\"",
            String::from_utf8_lossy(&field[..e.valid_up_to()])
        ),
    })
}

impl Reader for CsvReader {
    fn fields(&self) -> Option<&[String]> {
        Some(&self.fields)
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn delimiter(&self) -> Option<u8> {
        Some(self.delimiter)
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        let Some(line) = self.read_checked()? else {
            return Ok(None);
        };
        let mut values = Vec::with_capacity(self.record.len());
        self.each_field(line, |v| values.push(v.map(str::to_string)))?;
        Ok(Some(Record {
            line,
            values: Values::Positional(values),
            faults: vec![],
        }))
    }

    fn next_into(&mut self, rows: &mut RawRows) -> Result<Next> {
        let Some(line) = self.read_checked()? else {
            return Ok(Next::End);
        };
        rows.start(line);
        match self.each_field(line, |v| rows.push_field(v)) {
            Ok(()) => Ok(Next::Raw),
            Err(e) => {
                rows.pop();
                Err(e)
            }
        }
    }
}

impl CsvReader {
    /// [`CsvReader::read`], refusing a record with more fields than the header names.
    fn read_checked(&mut self) -> Result<Option<u64>> {
        let Some(line) = self.read()? else {
            return Ok(None);
        };
        if self.record.len() > self.fields.len() {
            return Err(Error::Malformed {
                line,
                what: format!(
                    "{} fields, more than the {} the {} names",
                    self.record.len(),
                    self.fields.len(),
                    if self.fields.is_empty() {
                        "file"
                    } else {
                        "header (or the target, without a header)"
                    }
                ),
                hint: None,
            });
        }
        Ok(Some(line))
    }

    /// The fields of the record read, as text (`None`: the null string), to `f`; invalid
    /// UTF-8 or a byte order mark refuses the record.
    fn each_field(&self, line: u64, mut f: impl FnMut(Option<&str>)) -> Result<()> {
        let bytes = self.record.as_slice();
        // One UTF-8 check for the whole record, valid for each field when every field starts
        // on a character boundary (else each field is checked, to name the bad one).
        let whole = std::str::from_utf8(bytes).ok().filter(|t| {
            (0..self.record.len()).all(|i| {
                self.record
                    .range(i)
                    .is_some_and(|r| t.is_char_boundary(r.start))
            })
        });
        // A byte order mark starts with 0xEF: without one in the record, none to look for.
        let may_hold_bom = memchr::memchr(0xEF, bytes).is_some();
        for (i, field) in self.record.iter().enumerate() {
            let text = match (whole, self.record.range(i)) {
                (Some(t), Some(r)) => &t[r],
                _ => utf8(line, field)?,
            };
            if may_hold_bom {
                check_no_bom(line, text)?;
            }
            f((text != self.null).then_some(text));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// After the escape character inside quotes.
    Escaped,
    /// After a quote inside quotes: closing, or the first of a doubled quote.
    QuoteInQuoted,
}

/// Follows the quoting of the bytes read through it (as csv reads them) to tell, at the
/// end, whether a quoted field was left open, and on which line it opened.
struct QuoteTracker {
    inner: Box<dyn BufRead>,
    delimiter: u8,
    quote: u8,
    escape: Option<u8>,
    state: State,
    line: u64,
    open_quote: Rc<Cell<Option<u64>>>,
}

impl QuoteTracker {
    /// Follows `bytes`. Outside quotes only a delimiter or a line end changes anything, inside
    /// them only a quote or the escape (line ends counted): those runs are skipped with
    /// memchr, the rest taken byte by byte.
    fn follow(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            match self.state {
                State::Unquoted => match memchr::memchr3(self.delimiter, b'\n', b'\r', rest) {
                    Some(k) => i += k,
                    None => return,
                },
                State::Quoted => {
                    let stop = match self.escape {
                        Some(e) => memchr::memchr2(self.quote, e, rest),
                        None => memchr::memchr(self.quote, rest),
                    };
                    let end = stop.unwrap_or(rest.len());
                    self.line += memchr::memchr_iter(b'\n', &rest[..end]).count() as u64;
                    match stop {
                        Some(k) => i += k,
                        None => return,
                    }
                }
                _ => {}
            }
            self.step(bytes[i]);
            i += 1;
        }
    }

    /// One byte through the quoting state machine.
    fn step(&mut self, b: u8) {
        self.state = match self.state {
            State::FieldStart | State::Unquoted => {
                if b == self.quote && self.state == State::FieldStart {
                    self.open_quote.set(Some(self.line));
                    State::Quoted
                } else if b == self.delimiter || b == b'\n' || b == b'\r' {
                    State::FieldStart
                } else {
                    State::Unquoted
                }
            }
            State::Quoted => {
                if Some(b) == self.escape {
                    State::Escaped
                } else if b == self.quote {
                    State::QuoteInQuoted
                } else {
                    State::Quoted
                }
            }
            State::Escaped => State::Quoted,
            State::QuoteInQuoted => {
                if b == self.quote && self.escape.is_none() {
                    State::Quoted
                } else {
                    self.open_quote.set(None);
                    if b == self.delimiter || b == b'\n' || b == b'\r' {
                        State::FieldStart
                    } else {
                        State::Unquoted
                    }
                }
            }
        };
        if b == b'\n' {
            self.line += 1;
        }
    }
}

impl Read for QuoteTracker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n]);
        if n == 0 && self.state == State::QuoteInQuoted {
            // The file ends right after a closing quote.
            self.open_quote.set(None);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_delimiter() {
        assert_eq!(sniff(b"a;b;c\n1;2;3\n4;\"x;y\";5\n", b'"'), b';');
        assert_eq!(sniff(b"a\tb\n1\t2\n", b'"'), b'\t');
        assert_eq!(sniff(b"a,b\n1,2\n", b'"'), b',');
        assert_eq!(sniff(b"a\n1\n", b'"'), b',');
    }
}
