//! Reading a transform spec from JSON: the shapes a spec takes, every built-in's parameters,
//! and error messages that name the transform, the pipeline step and the column at fault.

use serde::Deserializer;
use serde_json::{json, Value};

use super::{MapDefault, Step, Transform, BUILTINS, MASK_MAX_KEEP_LAST};
use crate::error::Common;
use crate::migrate::error::Error;

use crate::options::{self, describe_json, invalid, Object, Problem, Seg, Wording};

impl Transform {
    /// Parses a spec: a string naming a built-in ("trim"), an object {"name": "...", ...params},
    /// or an array of those applied in order (a pipeline). `context` names the column for error
    /// messages, e.g. "column \"email\" of target table app.doctors". Unknown transform names and
    /// bad parameters are errors that name the transform and the column, with a HINT listing the
    /// built-ins (or, for a bad parameter, the parameters that transform takes).
    pub fn parse(spec: &Value, context: &str) -> Result<Transform, Error> {
        let steps = match spec {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(Common::InvalidOption(
                        format!("the transform pipeline{} is empty", for_context(context)),
                        Some(shape_hint()),
                    )
                    .into());
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        parse_step(
                            item,
                            &Where {
                                context,
                                step: Some((i + 1, items.len())),
                            },
                        )
                    })
                    .collect::<Result<Vec<_>, Error>>()?
            }
            other => vec![parse_step(
                other,
                &Where {
                    context,
                    step: None,
                },
            )?],
        };
        let last = steps.len() - 1;
        if let Some((i, step)) = steps
            .iter()
            .enumerate()
            .find(|(i, step)| *i < last && step.result_type() != "text")
        {
            return Err(Common::InvalidOption(
                format!(
                    "transform \"{}\"{} produces a {}, so it must be the last step of the pipeline",
                    step.name(),
                    Where {
                        context,
                        step: Some((i + 1, steps.len())),
                    }
                    .describe(),
                    step.result_type()
                ),
                Some(
                    "Only text flows from one step to the next: put to_date, to_timestamp and \
                     to_uuid last."
                        .into(),
                ),
            )
            .into());
        }
        Ok(Transform { steps })
    }
}

/// Where a spec sits, for error messages.
struct Where<'a> {
    context: &'a str,
    /// 1-based position and length of the pipeline, when the spec was an array.
    step: Option<(usize, usize)>,
}

impl Where<'_> {
    /// `" (step 2 of 3) for column ..."`, to follow a transform's name.
    fn describe(&self) -> String {
        let step = match self.step {
            Some((i, n)) => format!(" (step {i} of {n})"),
            None => String::new(),
        };
        format!("{step}{}", for_context(self.context))
    }
}

fn for_context(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!(" for {context}")
    }
}

fn builtins_hint() -> String {
    format!("Built-in transforms: {}.", BUILTINS.join(", "))
}

fn shape_hint() -> String {
    format!(
        "Write a transform as a name (\"trim\"), an object ({{\"name\": \"to_date\", \"format\": \
         \"YYYY-MM-DD\"}}), or an array of those applied in order. {}",
        builtins_hint()
    )
}

/// What each built-in takes, for the HINT of a bad-parameter error.
fn usage(name: &str) -> String {
    match name {
        "normalize_phone" => "Transform \"normalize_phone\" takes one optional parameter, \
             \"default_country_code\" (1 to 4 digits, e.g. \"47\"), prefixed as \"+47\" to \
             numbers without a leading '+'."
            .into(),
        "to_date" => "Transform \"to_date\" takes one required parameter, \"format\" (a \
             PostgreSQL to_date format), e.g. {\"name\": \"to_date\", \"format\": \"YYYY-MM-DD\"}."
            .into(),
        "to_timestamp" => "Transform \"to_timestamp\" takes one required parameter, \"format\" \
             (a PostgreSQL to_timestamp format), e.g. {\"name\": \"to_timestamp\", \"format\": \
             \"YYYY-MM-DD HH24:MI:SS\"}."
            .into(),
        "mask" => format!(
            "Transform \"mask\" takes two optional parameters: \"keep_last\" (an integer from 0 \
             to {MASK_MAX_KEEP_LAST}, default 4) and \"char\" (one character, default \"*\")."
        ),
        "map" => "Transform \"map\" takes \"values\" (required: an object mapping each old value \
             to its new value, a string or null) and \"default\" (optional: \"keep\" to pass \
             unmapped values through, the default; \"null\"; or a replacement string), e.g. \
             {\"name\": \"map\", \"values\": {\"M\": \"male\", \"F\": \"female\"}, \"default\": \
             \"null\"}."
            .into(),
        "redact" => "Transform \"redact\" takes one optional parameter, \"with\" (the text that \
             replaces every value, default \"[redacted]\")."
            .into(),
        _ => format!("Transform \"{name}\" takes no parameters: write it as \"{name}\"."),
    }
}

fn parse_step(spec: &Value, at: &Where) -> Result<Step, Error> {
    let object = match spec {
        // "trim" is {"name": "trim"}: the same parameters are required and checked.
        Value::String(name) => json!({ "name": name }),
        Value::Object(obj) => {
            match obj.get("name") {
                Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(Common::InvalidOption(
                        format!(
                            "the \"name\" of a transform{} must be a string, not {}",
                            at.describe(),
                            describe_json(other)
                        ),
                        Some(builtins_hint()),
                    )
                    .into())
                }
                None => {
                    return Err(Common::InvalidOption(
                        format!("a transform object{} has no \"name\"", at.describe()),
                        Some(shape_hint()),
                    )
                    .into())
                }
            }
            spec.clone()
        }
        other => {
            let what = if at.step.is_some() {
                "a step of a transform pipeline must be a name or an object with a \"name\""
            } else {
                "a transform must be a name, an object with a \"name\", or an array of those"
            };
            return Err(Common::InvalidOption(
                format!("{what}{}, not {}", at.describe(), describe_json(other)),
                Some(shape_hint()),
            )
            .into());
        }
    };
    let name = object["name"].as_str().unwrap_or_default();
    options::deserialize::<Object<Step>>(&object)
        .map(|o| o.0)
        .map_err(|(path, problem)| {
            Error::from(options::invalid_option(
                &object,
                &path,
                &problem,
                &StepWording { name, at },
            ))
        })
}

/// How errors in one step's object read: after the transform's name and where it sits, with
/// the HINT of what that transform takes.
struct StepWording<'a> {
    name: &'a str,
    at: &'a Where<'a>,
}

impl Wording for StepWording<'_> {
    fn place(&self, _path: &[Seg], _input: &Value) -> String {
        format!("transform \"{}\"{}", self.name, self.at.describe())
    }

    fn message(&self, _path: &[Seg], place: &str, problem: &Problem) -> String {
        match problem {
            Problem::UnknownVariant { variant, .. } => {
                format!("unknown transform \"{variant}\"{}", self.at.describe())
            }
            Problem::UnknownField { field, .. } => {
                format!(
                    "{place}: unknown parameter {}",
                    Value::String(field.clone())
                )
            }
            Problem::MissingField(field) => format!("{place}: parameter \"{field}\" is required"),
            Problem::WrongValue { expected } => format!("{place}: must be {expected}"),
            Problem::Invalid(text) => format!("{place}: {text}"),
        }
    }

    fn hint(&self, _path: &[Seg], problem: &Problem) -> Option<String> {
        match problem {
            Problem::UnknownVariant { .. } => Some(builtins_hint()),
            _ => Some(usage(self.name)),
        }
    }
}

// Each parameter's own rules, for the `deserialize_with` of [`Step`]'s fields. Their texts
// follow "transform \"mask\" for column …: ".

/// A string parameter: PostgreSQL text cannot hold NUL characters.
fn string_param<E: serde::de::Error>(v: Value, key: &str) -> Result<String, E> {
    match v {
        Value::String(s) if s.contains('\0') => Err(invalid(format!(
            "parameter \"{key}\" must not contain a NUL character"
        ))),
        Value::String(s) => Ok(s),
        other => Err(invalid(format!(
            "parameter \"{key}\" must be a string, not {}",
            describe_json(&other)
        ))),
    }
}

pub(super) fn country_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let code = string_param(options::json(d)?, "default_country_code")?;
    let digits = code.strip_prefix('+').unwrap_or(&code);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "parameter \"default_country_code\" must be 1 to 4 digits, not {}",
            Value::String(code.clone())
        )));
    }
    Ok(Some(digits.to_string()))
}

pub(super) fn format<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let format = string_param(options::json(d)?, "format")?;
    if format.trim().is_empty() {
        return Err(invalid("parameter \"format\" must not be empty"));
    }
    Ok(format)
}

pub(super) fn default_keep_last() -> u32 {
    4
}

pub(super) fn keep_last<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = options::json(d)?;
    match v.as_u64() {
        Some(n) if n <= MASK_MAX_KEEP_LAST => Ok(n as u32),
        _ => Err(invalid(format!(
            "parameter \"keep_last\" must be an integer from 0 to {MASK_MAX_KEEP_LAST}, not {v}"
        ))),
    }
}

pub(super) fn default_mask_char() -> char {
    '*'
}

pub(super) fn mask_char<'de, D: Deserializer<'de>>(d: D) -> Result<char, D::Error> {
    let s = string_param(options::json(d)?, "char")?;
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(invalid(format!(
            "parameter \"char\" must be exactly one character, not {}",
            Value::String(s.clone())
        ))),
    }
}

pub(super) fn map_values<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Option<String>)>, D::Error> {
    let values = match options::json(d)? {
        Value::Object(values) => values,
        other => {
            return Err(invalid(format!(
                "parameter \"values\" must be an object, not {}",
                describe_json(&other)
            )))
        }
    };
    if values.is_empty() {
        return Err(invalid("parameter \"values\" must map at least one value"));
    }
    let mut pairs = Vec::with_capacity(values.len());
    for (from, to) in values {
        if from.contains('\0') {
            return Err(invalid(
                "a key of parameter \"values\" must not contain a NUL character",
            ));
        }
        let to = match to {
            Value::Null => None,
            s @ Value::String(_) => Some(string_param(s, "values")?),
            other => {
                return Err(invalid(format!(
                    "parameter \"values\" must map {} to a string or null, not {}",
                    Value::String(from.clone()),
                    describe_json(&other)
                )))
            }
        };
        pairs.push((from, to));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(pairs)
}

pub(super) fn default_map_default() -> MapDefault {
    MapDefault::Keep
}

pub(super) fn map_default<'de, D: Deserializer<'de>>(d: D) -> Result<MapDefault, D::Error> {
    match options::json(d)? {
        Value::Null => Ok(MapDefault::Null),
        Value::String(s) if s == "keep" => Ok(MapDefault::Keep),
        Value::String(s) if s == "null" => Ok(MapDefault::Null),
        s @ Value::String(_) => Ok(MapDefault::Value(string_param(s, "default")?)),
        other => Err(invalid(format!(
            "parameter \"default\" must be \"keep\", \"null\" or a string, not {}",
            describe_json(&other)
        ))),
    }
}

pub(super) fn default_redaction() -> String {
    "[redacted]".into()
}

pub(super) fn redaction<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match options::json(d)? {
        Value::String(s) => Ok(s),
        other => Err(invalid(format!(
            "parameter \"with\" must be a string, not {}",
            describe_json(&other)
        ))),
    }
}
