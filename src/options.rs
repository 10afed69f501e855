//! Strict parsing of every `options` document (scopes, migrations, transform specs): serde
//! derive with `deny_unknown_fields` does the walking, and this module turns what serde reports
//! into our messages and hints, so every document words its errors the same way.
//!
//! A document is deserialized from a [`serde_value::Value`] tree, whose errors keep their kind
//! (unknown field and the known ones, missing field, wrong type...) instead of flattening them
//! into text, through [`serde_path_to_error`], which says where in the document the error is.
//! Each document supplies a [`Wording`]: what its places are called ("option \"links\" item 1")
//! and which hints help there. Field types with their own rules (a non-empty name, a number in a
//! range) fail with [`Problem::Invalid`] texts that follow the place: "must be a name, not 1".
//! No pgrx here.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_value::DeserializerError;

use crate::error::Common;

/// One step into a document: an object's key or an array's index.
#[derive(Clone, Debug, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    /// The key, if this step is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Seg::Key(k) => Some(k),
            Seg::Index(_) => None,
        }
    }
}

/// What was wrong at a place, as serde reported it.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// A key the object does not take; `known` are the ones it does, in declaration order.
    UnknownField {
        field: String,
        known: &'static [&'static str],
    },
    /// A required key is absent.
    MissingField(&'static str),
    /// A string that names none of the choices.
    UnknownVariant {
        variant: String,
        known: &'static [&'static str],
    },
    /// The value has the wrong JSON type (or is out of a built-in type's range); `expected` is
    /// in our words ("an object", "true or false").
    WrongValue { expected: String },
    /// A field type's own rule failed; the text follows the place ("must be a name, not 1").
    Invalid(String),
}

/// How one kind of document names its places and what it hints.
pub trait Wording {
    /// The place at `path` as messages name it ("option \"tables\""); `input` is the whole
    /// document, for places named after what they hold (a link's name). The empty path is the
    /// document itself (for options documents: "options").
    fn place(&self, path: &[Seg], input: &Value) -> String;

    /// A HINT for `problem` at `path`, if one helps ([`default_hint`] unless overridden).
    fn hint(&self, path: &[Seg], problem: &Problem) -> Option<String> {
        default_hint(path, problem)
    }

    /// The message for `problem` at `path`, named `place` ([`default_message`] unless a
    /// document's own wording reads better there).
    fn message(&self, path: &[Seg], place: &str, problem: &Problem) -> String {
        default_message(path, place, problem)
    }
}

/// The wording of a function's flat options document: a place is `option "name"`, and an
/// unknown option's hint lists the function's options. The field is the function's name.
pub struct FunctionWording(pub &'static str);

impl Wording for FunctionWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        match path.first().and_then(Seg::key) {
            Some(k) => format!("option \"{k}\""),
            None => "options".into(),
        }
    }

    fn hint(&self, path: &[Seg], problem: &Problem) -> Option<String> {
        match (path, problem) {
            ([], Problem::UnknownField { known, .. }) => {
                Some(format!("{} options are: {}.", self.0, known.join(", ")))
            }
            _ => default_hint(path, problem),
        }
    }
}

/// The hint every document gives unless it says better: the choices of an unknown variant.
pub fn default_hint(path: &[Seg], problem: &Problem) -> Option<String> {
    match problem {
        Problem::UnknownVariant { known, .. } => {
            let key = path.last().and_then(Seg::key).unwrap_or("it");
            Some(format!("\"{key}\" is one of: {}.", known.join(", ")))
        }
        _ => None,
    }
}

/// The project's wording of each problem at `place` (for a wrong value, [`error`] adds what it
/// got: "…, not \"yes\"").
pub fn default_message(path: &[Seg], place: &str, problem: &Problem) -> String {
    match problem {
        Problem::UnknownField { field, .. } if path.is_empty() => {
            format!("unknown option \"{field}\"")
        }
        Problem::UnknownField { field, .. } => format!("unknown key \"{field}\" in {place}"),
        Problem::MissingField(field) => format!("{place} has no \"{field}\""),
        Problem::UnknownVariant { variant, .. } => format!("{place} cannot be \"{variant}\""),
        Problem::WrongValue { expected } => format!("{place} must be {expected}"),
        Problem::Invalid(text) => format!("{place} {text}"),
    }
}

/// Deserializes `input` into `T`, turning the first error into a [`Common::InvalidOption`]
/// worded by `wording`.
pub fn parse<T: DeserializeOwned>(input: &Value, wording: &dyn Wording) -> Result<T, Common> {
    deserialize::<Object<T>>(input)
        .map(|o| o.0)
        .map_err(|(path, problem)| invalid_option(input, &path, &problem, wording))
}

/// Deserializes `input` into `T`; on failure, where and what (for documents that word errors
/// around more context than a place, such as one step of a transform pipeline).
pub fn deserialize<T: DeserializeOwned>(input: &Value) -> Result<T, (Vec<Seg>, Problem)> {
    // Serializing a JSON value into a value tree cannot fail: every key is a string.
    let tree =
        serde_value::to_value(input).map_err(|e| (vec![], Problem::Invalid(e.to_string())))?;
    let de = serde_value::ValueDeserializer::<DeserializerError>::new(tree);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path: Vec<Seg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                _ => None,
            })
            .collect();
        let inner = e.into_inner();
        // An unknown key's path ends in that key; the place is the object that has it.
        if let DeserializerError::UnknownField(field, _) = &inner {
            if path.last().and_then(Seg::key) == Some(field.as_str()) {
                path.pop();
            }
        }
        let root = path.is_empty();
        (path, problem(inner, root))
    })
}

/// The error for `problem` at `path` of `input`, in `wording`'s words.
pub fn invalid_option(
    input: &Value,
    path: &[Seg],
    problem: &Problem,
    wording: &dyn Wording,
) -> Common {
    let place = wording.place(path, input);
    let mut message = wording.message(path, &place, problem);
    if let Problem::WrongValue { .. } = problem {
        if let Some(v) = value_at(input, path) {
            message = format!("{message}, not {}", got(v));
        }
    }
    Common::InvalidOption(message, wording.hint(path, problem))
}

fn problem(e: DeserializerError, root: bool) -> Problem {
    match e {
        DeserializerError::UnknownField(field, known) => Problem::UnknownField { field, known },
        DeserializerError::MissingField(field) => Problem::MissingField(field),
        DeserializerError::UnknownVariant(variant, known) => {
            Problem::UnknownVariant { variant, known }
        }
        DeserializerError::InvalidType(_, expected)
        | DeserializerError::InvalidValue(_, expected)
        | DeserializerError::InvalidLength(_, expected) => Problem::WrongValue {
            expected: if root {
                "a JSON object".into()
            } else {
                our_words(&expected)
            },
        },
        DeserializerError::Custom(text) => Problem::Invalid(text),
        DeserializerError::DuplicateField(field) => {
            Problem::Invalid(format!("gives \"{field}\" twice"))
        }
    }
}

/// serde's expectation ("a sequence", "struct LinkOption") as a JSON user would say it.
fn our_words(expected: &str) -> String {
    match expected {
        "a boolean" => "true or false".into(),
        "a map" => "an object".into(),
        "a sequence" => "an array".into(),
        // How serde-value asks for an enum (a unit variant is a string).
        "string or map" | "variant identifier" => "a string".into(),
        e if e.starts_with("struct ") => "an object".into(),
        e => e.into(),
    }
}

/// The value at `path` in `v`, if there is one.
pub fn value_at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

/// What a message says it got: a scalar as written (`"yes"`, `0`, `null`), an array or object
/// by its kind (they may be long).
pub fn got(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => describe_json(v).into(),
        scalar => scalar.to_string(),
    }
}

/// "a string", "an array", ...: how option errors name the JSON value they got.
pub fn describe_json(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `T` read from a JSON object only. A derived struct also accepts an array, its fields by
/// position (serde's compact form), which no document of ours means to allow: wrap every
/// struct that is read from a document in this (or use [`objects`] for an array of them).
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(OnlyMaps(PhantomData)).map(Object)
    }
}

/// For `#[serde(deserialize_with = "objects")]`: an array of objects, each read as `T`.
pub fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<Object<T>>::deserialize(d)?;
    Ok(items.into_iter().map(|o| o.0).collect())
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option`: a key given as `null`
/// is a value the field's type judges (and usually refuses), not the same as no key at all.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A field type's rule failed: `text` follows the place in the message.
pub fn invalid<E: serde::de::Error>(text: impl std::fmt::Display) -> E {
    E::custom(text)
}

/// The JSON value of a field, for field types that check it themselves.
pub fn json<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

/// A non-empty string, or `must be {what}, not {kind}` (blank strings count as empty).
pub fn name<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<String, D::Error> {
    match json(d)? {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        other => Err(D::Error::custom(format!(
            "must be {what}, not {}",
            describe_json(&other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        flag: Option<bool>,
        #[serde(default, deserialize_with = "objects")]
        items: Vec<Item>,
        choice: Option<Choice>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: String,
        #[serde(default, deserialize_with = "present")]
        note: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Choice {
        One,
        Two,
    }

    struct Plain;
    impl Wording for Plain {
        fn place(&self, path: &[Seg], _: &Value) -> String {
            if path.is_empty() {
                return "options".into();
            }
            let parts: Vec<String> = path
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => k.clone(),
                    Seg::Index(i) => i.to_string(),
                })
                .collect();
            format!("option \"{}\"", parts.join("."))
        }
    }

    fn err(v: Value) -> (String, Option<String>) {
        match parse::<Doc>(&v, &Plain).unwrap_err() {
            Common::InvalidOption(m, h) => (m, h),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn places_and_problems() {
        assert_eq!(err(json!({"flg": 1})).0, "unknown option \"flg\"");
        assert_eq!(
            err(json!({"items": [{"id": "a"}, {"id": "b", "x": 1}]})).0,
            "unknown key \"x\" in option \"items.1\""
        );
        assert_eq!(
            err(json!({"items": [{}]})).0,
            "option \"items.0\" has no \"id\""
        );
        assert_eq!(
            err(json!({"flag": "yes"})).0,
            "option \"flag\" must be true or false, not \"yes\""
        );
        assert_eq!(
            err(json!({"items": {"id": "a"}})).0,
            "option \"items\" must be an array, not an object"
        );
        assert_eq!(
            err(json!({"items": ["a"]})).0,
            "option \"items.0\" must be an object, not \"a\""
        );
        assert_eq!(
            err(json!({"items": [{"id": "a", "note": null}]})).0,
            "option \"items.0.note\" must be a string, not null"
        );
        assert_eq!(
            err(json!([])).0,
            "options must be a JSON object, not an array"
        );
        assert_eq!(
            err(json!({"choice": "three"})),
            (
                "option \"choice\" cannot be \"three\"".into(),
                Some("\"choice\" is one of: one, two.".into())
            )
        );
        assert_eq!(
            err(json!({"choice": 3})).0,
            "option \"choice\" must be a string, not 3"
        );
        assert!(parse::<Doc>(&json!({"flag": null, "choice": "two"}), &Plain).is_ok());
        // serde's positional form of a struct is no form of ours.
        assert_eq!(
            err(json!([true])).0,
            "options must be a JSON object, not an array"
        );
        assert_eq!(
            err(json!({"items": [["a"]]})).0,
            "option \"items.0\" must be an object, not an array"
        );
    }
}
