//! JSON: an array of objects, or the array `records_path` leads to inside a document (other
//! members are skipped without being kept), read one element at a time with struson's
//! streaming reader.

use std::io::BufRead;

use struson::reader::{JsonReader as _, JsonStreamReader, ReaderError, ReaderSettings, ValueType};

use super::{object_record, Reader, Record};
use crate::import::error::{Error, Result};

pub struct JsonReader {
    inner: JsonStreamReader<Box<dyn BufRead>>,
    done: bool,
    depth: usize,
}

/// The line (from 1) of the reader's position.
fn line_of(r: &JsonStreamReader<Box<dyn BufRead>>) -> u64 {
    r.current_position(false).line_pos.map_or(0, |p| p.line) + 1
}

fn error(e: ReaderError, fallback: u64) -> Error {
    let (line, what, utf8) = match &e {
        ReaderError::SyntaxError(s) => (
            s.location.line_pos.map(|p| p.line + 1),
            s.kind.to_string(),
            false,
        ),
        ReaderError::IoError { error, location } => (
            location.line_pos.map(|p| p.line + 1),
            error.to_string(),
            error.kind() == std::io::ErrorKind::InvalidData,
        ),
        ReaderError::UnexpectedValueType {
            expected,
            actual,
            location,
        } => (
            location.line_pos.map(|p| p.line + 1),
            format!(
                "{} where {} was expected",
                describe(*actual),
                describe(*expected)
            ),
            false,
        ),
        other => (None, other.to_string(), false),
    };
    let line = line.unwrap_or(fallback);
    if utf8 {
        Error::BadEncoding { line, what }
    } else {
        Error::BadJson { line, what }
    }
}

fn describe(t: ValueType) -> &'static str {
    match t {
        ValueType::Array => "an array",
        ValueType::Object => "an object",
        ValueType::String => "a string",
        ValueType::Number => "a number",
        ValueType::Boolean => "a boolean",
        ValueType::Null => "null",
    }
}

impl JsonReader {
    pub fn new(text: Box<dyn BufRead>, path: &[String]) -> Result<JsonReader> {
        let settings = ReaderSettings {
            track_path: false,
            ..Default::default()
        };
        let mut r = JsonStreamReader::new_custom(text, settings);
        let mut depth = 0;
        for key in path {
            r.begin_object().map_err(|e| error(e, 1))?;
            depth += 1;
            loop {
                if !r.has_next().map_err(|e| error(e, 1))? {
                    return Err(Error::Malformed {
                        line: line_of(&r),
                        what: format!("the document has no \"{key}\" on the way of \"records_path\""),
                        hint: Some("\"records_path\" names the keys leading to the array of records, joined by dots.".into()),
                    });
                }
                let name = r.next_name_owned().map_err(|e| error(e, 1))?;
                if &name == key {
                    break;
                }
                r.skip_value().map_err(|e| error(e, 1))?;
            }
        }
        r.begin_array().map_err(|e| {
            let line = line_of(&r);
            match e {
                ReaderError::UnexpectedValueType { actual, .. } => Error::Malformed {
                    line,
                    what: format!("the records are {}, not an array of objects", describe(actual)),
                    hint: (depth == 0 && actual == ValueType::Object).then(|| {
                        "Name the array inside the document with \"records_path\", or use format ndjson for one object per line.".into()
                    }),
                },
                other => error(other, line),
            }
        })?;
        Ok(JsonReader {
            inner: r,
            done: false,
            depth,
        })
    }
}

impl Reader for JsonReader {
    fn fields(&self) -> Option<&[String]> {
        None
    }

    fn line(&self) -> u64 {
        line_of(&self.inner)
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        let fallback = line_of(&self.inner);
        if !self.inner.has_next().map_err(|e| error(e, fallback))? {
            self.inner.end_array().map_err(|e| error(e, fallback))?;
            self.done = true;
            let _ = self.depth;
            return Ok(None);
        }
        let line = line_of(&self.inner);
        let value: serde_json::Value = self.inner.deserialize_next().map_err(|e| match e {
            struson::serde::DeserializerError::ReaderError(r) => error(r, line),
            other => Error::BadJson {
                line,
                what: other.to_string(),
            },
        })?;
        object_record(line, value, "a record is")
    }
}
