//! NDJSON: one JSON object per line; blank lines are skipped.
//!
//! A load keeps each line as it is ([`Reader::next_into`]) and reads it with [`Fields`],
//! without a `String` per key or value (what needs no unescaping is borrowed); a line
//! [`Fields`] does not take (not JSON, not an object) is read as before through
//! `serde_json::Value` for its error, so errors and values stay as they were. The record
//! kept for `job_errors` is the line, parsed in full only for a refused row.

use std::borrow::Cow;
use std::io::BufRead;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{check_no_bom, object_record, Next, RawRows, Reader, Record};
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

    /// The next line that is not blank, and its number (checked: UTF-8, no BOM inside).
    fn next_line(&mut self) -> Result<Option<(u64, &str)>> {
        let start = loop {
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
            let bare = if line == 1 {
                text.strip_prefix('\u{feff}').unwrap_or(text)
            } else {
                text
            };
            if bare.trim().is_empty() {
                continue;
            }
            check_no_bom(line, bare)?;
            break text.len() - bare.len();
        };
        // Checked above (a loop cannot hand out what it borrowed and read again).
        let text = std::str::from_utf8(&self.buf[start..]).map_err(|_| Error::BadEncoding {
            line: self.line,
            what: "invalid UTF-8".into(),
        })?;
        Ok(Some((self.line, text)))
    }
}

/// A line as a record, through `serde_json::Value` (the errors as they were).
fn record(line: u64, text: &str) -> Result<Option<Record>> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::BadJson {
        line,
        what: e.to_string(),
    })?;
    object_record(line, value, "the line holds")
}

impl Reader for NdjsonReader {
    fn fields(&self) -> Option<&[String]> {
        None
    }

    fn line(&self) -> u64 {
        self.line + 1
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        match self.next_line()? {
            None => Ok(None),
            Some((line, text)) => record(line, text),
        }
    }

    fn next_into(&mut self, rows: &mut RawRows) -> Result<Next> {
        let Some((line, text)) = self.next_line()? else {
            return Ok(Next::End);
        };
        // Read by `parse_line` when its values are taken.
        rows.start(line);
        rows.push_field(Some(text));
        Ok(Next::Line)
    }
}

/// Line `line` (kept by [`Reader::next_into`]) read; the error of a line that is not a JSON
/// object as [`Reader::next_record`] gives it.
pub fn parse_line(line: u64, text: &str) -> Result<Fields<'_>> {
    Fields::parse(text).ok_or_else(|| match record(line, text) {
        Err(e) => e,
        // Every JSON object is taken: not reached.
        Ok(_) => Error::BadJson {
            line,
            what: "the object could not be read".into(),
        },
    })
}

/// A JSON object's members, borrowed from its text where they need no unescaping. Keys
/// repeated: the last one counts, as in `serde_json::Map`.
pub struct Fields<'a>(Vec<(Cow<'a, str>, Member<'a>)>);

/// A member's value: scalars as they are, arrays and objects as `serde_json` reads them.
enum Member<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(Cow<'a, str>),
    Other(Value),
}

impl<'a> Fields<'a> {
    /// The object of `text`; `None` when it is not one (or not JSON).
    pub fn parse(text: &'a str) -> Option<Fields<'a>> {
        serde_json::from_str(text).ok()
    }

    /// Member `name` as the text a column takes (as [`super::json_text`] gives it).
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        let (_, v) = self.0.iter().rev().find(|(k, _)| k == name)?;
        match v {
            Member::Null => None,
            Member::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Member::Number(n) => Some(Cow::Owned(n.to_string())),
            Member::Str(s) => Some(Cow::Borrowed(s)),
            Member::Other(v) => Some(Cow::Owned(v.to_string())),
        }
    }
}

/// A string borrowed where the text holds it as it is.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Member<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
                Ok(Member::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
                Ok(Member::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(Member::Number(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                Ok(Member::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
                // As serde_json's Value reads it (JSON has no NaN or infinity).
                Ok(serde_json::Number::from_f64(v).map_or(Member::Null, Member::Number))
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(Member::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Member::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Member::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut items = vec![];
                while let Some(v) = seq.next_element::<Value>()? {
                    items.push(v);
                }
                Ok(Member::Other(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut m = serde_json::Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    m.insert(k, v);
                }
                Ok(Member::Other(Value::Object(m)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Text<'de>, Member<'de>>()? {
                    members.push((k.0, v));
                }
                Ok(Fields(members))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_give_what_json_text_gives() {
        let line = r#"{"s": "plain", "e": "tab\there \u00fc", "n": 12.50, "i": 42, "neg": -0, "big": 1e3,
                      "b": true, "z": null, "a": [1, "x", {"k": 2}], "o": {"b": 1, "a": [true]}, "s": "last"}"#;
        let fields = Fields::parse(line).expect("an object");
        let Value::Object(m) = serde_json::from_str::<Value>(line).unwrap() else {
            unreachable!()
        };
        for k in [
            "s", "e", "n", "i", "neg", "big", "b", "z", "a", "o", "missing",
        ] {
            assert_eq!(
                fields.text(k).map(Cow::into_owned),
                m.get(k).and_then(super::super::json_text),
                "{k}"
            );
        }
        assert!(matches!(fields.text("s"), Some(Cow::Borrowed("last"))));
        for not_an_object in ["[1]", "3", "\"x\"", "{\"a\": }", "{} x", "{\"a\": 1e400}"] {
            assert!(Fields::parse(not_an_object).is_none(), "{not_an_object}");
            // The error as the record reader gives it.
            let (Err(fast), Err(slow)) = (parse_line(7, not_an_object), record(7, not_an_object))
            else {
                panic!("{not_an_object} is refused")
            };
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
    }
}
