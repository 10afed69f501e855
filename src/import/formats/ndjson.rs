//! NDJSON: one JSON object per line; blank lines are skipped.

use std::io::BufRead;

use super::{check_no_bom, object_record, Reader, Record};
use crate::import::error::{Error, Result};

pub struct NdjsonReader {
    text: Box<dyn BufRead>,
    line: u64,
    buf: Vec<u8>,
}

impl NdjsonReader {
    pub fn new(text: Box<dyn BufRead>) -> NdjsonReader {
        NdjsonReader {
            text,
            line: 0,
            buf: Vec::with_capacity(4096),
        }
    }
}

impl Reader for NdjsonReader {
    fn fields(&self) -> Option<&[String]> {
        None
    }

    fn line(&self) -> u64 {
        self.line + 1
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            self.buf.clear();
            let n = self
                .text
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::Io {
                    message: format!("could not read line {} of the file: {e}", self.line + 1),
                    disk_full: false,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let line = self.line;
            let text = std::str::from_utf8(&self.buf).map_err(|e| Error::BadEncoding {
                line,
                what: format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1),
            })?;
            let text = if line == 1 {
                text.strip_prefix('\u{feff}').unwrap_or(text)
            } else {
                text
            };
            if text.trim().is_empty() {
                continue;
            }
            check_no_bom(line, text)?;
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| Error::BadJson {
                    line,
                    what: e.to_string(),
                })?;
            return object_record(line, value, "the line holds");
        }
    }
}
