//! XML with quick-xml, streamed: each `record_element` (by default every child of the root
//! element) is a record; its attributes and its child elements are the fields (an element's
//! text, CDATA and character references; an empty element is NULL). Entities: only the five
//! XML predefines and character references; a document that declares entities (`<!ENTITY`,
//! the "billion laughs" bomb) is refused before anything is expanded.

use std::io::BufRead;

use quick_xml::events::Event;
use serde_json::{Map, Value};

use super::{Reader, Record, Values};
use crate::import::error::{Error, Result};

pub struct XmlReader {
    inner: quick_xml::Reader<Box<dyn BufRead>>,
    buf: Vec<u8>,
    record_element: Option<String>,
    line: u64,
    depth: usize,
}

/// The name of an element or attribute as text.
fn name_of(raw: &str) -> String {
    raw.to_string()
}

impl XmlReader {
    pub fn new(text: Box<dyn BufRead>, record_element: Option<String>) -> XmlReader {
        let mut inner = quick_xml::Reader::from_reader(text);
        inner.config_mut().check_end_names = true;
        XmlReader {
            inner,
            buf: Vec::with_capacity(4096),
            record_element,
            line: 1,
            depth: 0,
        }
    }

    /// A record element's attributes, as its first fields.
    fn attributes(&self, e: &quick_xml::events::BytesStart) -> Result<Map<String, Value>> {
        let mut fields = Map::new();
        for a in e.attributes() {
            let a = a.map_err(|e| self.error(e.into()))?;
            let v = a
                .normalized_value(Default::default())
                .map_err(|e| self.error(e))?;
            fields.insert(
                name_of(a.key.local_name().as_ref()),
                Value::String(v.into_owned()),
            );
        }
        Ok(fields)
    }

    fn error(&self, e: quick_xml::Error) -> Error {
        match e {
            quick_xml::Error::Encoding(e) => Error::BadEncoding {
                line: self.line,
                what: e.to_string(),
            },
            other => Error::Malformed {
                line: self.line,
                what: format!("not well-formed XML: {other}"),
                hint: None,
            },
        }
    }

    fn is_record(&self, name: &str) -> bool {
        match &self.record_element {
            Some(r) => r == name,
            None => self.depth == 2,
        }
    }
}

/// What is being read inside a record.
struct Open {
    line: u64,
    depth: usize,
    fields: Map<String, Value>,
    /// The child element being read, and its text so far.
    field: Option<(String, String)>,
}

impl Reader for XmlReader {
    fn fields(&self) -> Option<&[String]> {
        None
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        let mut open: Option<Open> = None;
        loop {
            self.buf.clear();
            let event = match self.inner.read_event_into(&mut self.buf) {
                Ok(e) => e.into_owned(),
                Err(e) => return Err(self.error(e)),
            };
            let line = self.line;
            self.line += self.buf.iter().filter(|b| **b == b'\n').count() as u64;
            match event {
                Event::DocType(d) => {
                    if d.into_inner().contains("<!ENTITY") {
                        return Err(Error::Malformed {
                            line,
                            what: "the document declares entities (<!ENTITY ...>): entity expansion is refused".into(),
                            hint: Some("Entities are how XML bombs (\"billion laughs\") and external entity attacks work; export the data without a DTD.".into()),
                        });
                    }
                }
                Event::Start(e) => {
                    self.depth += 1;
                    let name = name_of(e.local_name().as_ref());
                    match &mut open {
                        None if self.is_record(&name) => {
                            let fields = self.attributes(&e)?;
                            open = Some(Open {
                                line,
                                depth: self.depth,
                                fields,
                                field: None,
                            });
                        }
                        Some(o) if self.depth == o.depth + 1 => {
                            o.field = Some((name, String::new()));
                        }
                        _ => {}
                    }
                }
                Event::Empty(e) => {
                    let name = name_of(e.local_name().as_ref());
                    match &mut open {
                        None if {
                            self.depth += 1;
                            let r = self.is_record(&name);
                            self.depth -= 1;
                            r
                        } =>
                        {
                            let fields = self.attributes(&e)?;
                            return Ok(Some(Record {
                                line,
                                values: Values::Named(fields),
                                faults: vec![],
                            }));
                        }
                        Some(o) if self.depth == o.depth => {
                            o.fields.insert(name, Value::Null);
                        }
                        _ => {}
                    }
                }
                Event::Text(t) => {
                    if let Some((_, text)) = open.as_mut().and_then(|o| o.field.as_mut()) {
                        text.push_str(&t.xml_content(Default::default()));
                    }
                }
                Event::CData(c) => {
                    if let Some((_, text)) = open.as_mut().and_then(|o| o.field.as_mut()) {
                        text.push_str(&c.into_inner());
                    }
                }
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => {
                            let name = r.into_inner();
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(v) => v.to_string(),
                                None => {
                                    return Err(Error::Malformed {
                                        line,
                                        what: format!("entity &{name}; is not one XML predefines: entity expansion is refused"),
                                        hint: None,
                                    })
                                }
                            }
                        }
                        Err(e) => return Err(self.error(e)),
                    };
                    if let Some((_, text)) = open.as_mut().and_then(|o| o.field.as_mut()) {
                        text.push_str(&resolved);
                    }
                }
                Event::End(_) => {
                    if let Some(o) = &mut open {
                        if self.depth == o.depth + 1 {
                            if let Some((name, text)) = o.field.take() {
                                o.fields.insert(name, Value::String(text));
                            }
                        } else if self.depth == o.depth {
                            self.depth -= 1;
                            let o = open.take().expect("open");
                            return Ok(Some(Record {
                                line: o.line,
                                values: Values::Named(o.fields),
                                faults: vec![],
                            }));
                        }
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                Event::Eof => {
                    if let Some(o) = open {
                        return Err(Error::Malformed {
                            line: o.line,
                            what: "the record is never closed".into(),
                            hint: None,
                        });
                    }
                    return Ok(None);
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            }
        }
    }
}
