//! Reading a transform spec from JSON: the shapes a spec takes, every built-in's parameters,
//! and error messages that name the transform, the pipeline step and the column at fault.

use serde_json::{Map, Value};

use super::{MapDefault, Step, Transform, BUILTINS, MASK_MAX_KEEP_LAST};
use crate::error::{OpsError, OpsResult};
use crate::options::describe_json;

impl Transform {
    /// Parses a spec: a string naming a built-in ("trim"), an object {"name": "...", ...params},
    /// or an array of those applied in order (a pipeline). `context` names the column for error
    /// messages, e.g. "column \"email\" of target table app.doctors". Unknown transform names and
    /// bad parameters are errors that name the transform and the column, with a HINT listing the
    /// built-ins (or, for a bad parameter, the parameters that transform takes).
    pub fn parse(spec: &Value, context: &str) -> OpsResult<Transform> {
        let steps = match spec {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(OpsError::InvalidOption(
                        format!("the transform pipeline{} is empty", for_context(context)),
                        Some(shape_hint()),
                    ));
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
                    .collect::<OpsResult<Vec<_>>>()?
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
            return Err(OpsError::InvalidOption(
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
            ));
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
        _ => format!("Transform \"{name}\" takes no parameters: write it as \"{name}\"."),
    }
}

fn parse_step(spec: &Value, at: &Where) -> OpsResult<Step> {
    let no_params = Map::new();
    let (name, params) = match spec {
        Value::String(name) => (name.as_str(), &no_params),
        Value::Object(obj) => match obj.get("name") {
            Some(Value::String(name)) => (name.as_str(), obj),
            Some(other) => {
                return Err(OpsError::InvalidOption(
                    format!(
                        "the \"name\" of a transform{} must be a string, not {}",
                        at.describe(),
                        describe_json(other)
                    ),
                    Some(builtins_hint()),
                ))
            }
            None => {
                return Err(OpsError::InvalidOption(
                    format!("a transform object{} has no \"name\"", at.describe()),
                    Some(shape_hint()),
                ))
            }
        },
        other => {
            let what = if at.step.is_some() {
                "a step of a transform pipeline must be a name or an object with a \"name\""
            } else {
                "a transform must be a name, an object with a \"name\", or an array of those"
            };
            return Err(OpsError::InvalidOption(
                format!("{what}{}, not {}", at.describe(), describe_json(other)),
                Some(shape_hint()),
            ));
        }
    };
    let Some(&name) = BUILTINS.iter().find(|b| **b == name) else {
        return Err(OpsError::InvalidOption(
            format!("unknown transform \"{name}\"{}", at.describe()),
            Some(builtins_hint()),
        ));
    };
    let p = Params { name, params, at };
    let step = match name {
        "trim" => Step::Trim,
        "lower" => Step::Lower,
        "upper" => Step::Upper,
        "initcap" => Step::Initcap,
        "normalize_email" => Step::NormalizeEmail,
        "to_uuid" => Step::ToUuid,
        "normalize_phone" => {
            p.allow(&["default_country_code"])?;
            let default_country_code = match p.optional_string("default_country_code")? {
                None => None,
                Some(code) => {
                    let digits = code.strip_prefix('+').unwrap_or(code);
                    if digits.is_empty()
                        || digits.len() > 4
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(p.bad(format!(
                            "parameter \"default_country_code\" must be 1 to 4 digits, not {}",
                            Value::String(code.to_string())
                        )));
                    }
                    Some(digits.to_string())
                }
            };
            Step::NormalizePhone {
                default_country_code,
            }
        }
        "to_date" | "to_timestamp" => {
            p.allow(&["format"])?;
            let format = p.required_string("format")?;
            if format.trim().is_empty() {
                return Err(p.bad("parameter \"format\" must not be empty".into()));
            }
            let format = format.to_string();
            if name == "to_date" {
                Step::ToDate { format }
            } else {
                Step::ToTimestamp { format }
            }
        }
        "mask" => {
            p.allow(&["keep_last", "char"])?;
            let keep_last = match params.get("keep_last") {
                None => 4,
                Some(v) => match v.as_u64() {
                    Some(n) if n <= MASK_MAX_KEEP_LAST => n as u32,
                    _ => {
                        return Err(p.bad(format!(
                            "parameter \"keep_last\" must be an integer from 0 to \
                             {MASK_MAX_KEEP_LAST}, not {v}"
                        )))
                    }
                },
            };
            let ch = match p.optional_string("char")? {
                None => '*',
                Some(s) => {
                    let mut chars = s.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => c,
                        _ => {
                            return Err(p.bad(format!(
                                "parameter \"char\" must be exactly one character, not {}",
                                Value::String(s.to_string())
                            )))
                        }
                    }
                }
            };
            Step::Mask { keep_last, ch }
        }
        "map" => {
            p.allow(&["values", "default"])?;
            let values = match params.get("values") {
                None => return Err(p.bad("parameter \"values\" is required".into())),
                Some(Value::Object(values)) => values,
                Some(other) => {
                    return Err(p.bad(format!(
                        "parameter \"values\" must be an object, not {}",
                        describe_json(other)
                    )))
                }
            };
            if values.is_empty() {
                return Err(p.bad("parameter \"values\" must map at least one value".into()));
            }
            let mut pairs = Vec::with_capacity(values.len());
            for (from, to) in values {
                p.no_nul(from, "a key of parameter \"values\"")?;
                let to = match to {
                    Value::String(s) => {
                        p.no_nul(s, "parameter \"values\"")?;
                        Some(s.clone())
                    }
                    Value::Null => None,
                    other => {
                        return Err(p.bad(format!(
                            "parameter \"values\" must map {} to a string or null, not {}",
                            Value::String(from.clone()),
                            describe_json(other)
                        )))
                    }
                };
                pairs.push((from.clone(), to));
            }
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            let default = match params.get("default") {
                None => MapDefault::Keep,
                Some(Value::Null) => MapDefault::Null,
                Some(Value::String(s)) if s == "keep" => MapDefault::Keep,
                Some(Value::String(s)) if s == "null" => MapDefault::Null,
                Some(Value::String(s)) => {
                    p.no_nul(s, "parameter \"default\"")?;
                    MapDefault::Value(s.clone())
                }
                Some(other) => {
                    return Err(p.bad(format!(
                        "parameter \"default\" must be \"keep\", \"null\" or a string, not {}",
                        describe_json(other)
                    )))
                }
            };
            Step::Map {
                values: pairs,
                default,
            }
        }
        _ => unreachable!("every name in BUILTINS is handled"),
    };
    if !matches!(
        name,
        "normalize_phone" | "to_date" | "to_timestamp" | "mask" | "map"
    ) {
        p.allow(&[])?;
    }
    Ok(step)
}

/// The parameters of one transform object (its keys other than "name").
struct Params<'a> {
    name: &'static str,
    params: &'a Map<String, Value>,
    at: &'a Where<'a>,
}

impl<'a> Params<'a> {
    fn bad(&self, problem: String) -> OpsError {
        OpsError::InvalidOption(
            format!(
                "transform \"{}\"{}: {problem}",
                self.name,
                self.at.describe()
            ),
            Some(usage(self.name)),
        )
    }

    /// Refuses any key but "name" and `known`.
    fn allow(&self, known: &[&str]) -> OpsResult<()> {
        match self
            .params
            .keys()
            .find(|k| k.as_str() != "name" && !known.contains(&k.as_str()))
        {
            Some(key) => Err(self.bad(format!("unknown parameter {}", Value::String(key.clone())))),
            None => Ok(()),
        }
    }

    fn optional_string(&self, key: &str) -> OpsResult<Option<&'a str>> {
        match self.params.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                self.no_nul(s, &format!("parameter \"{key}\""))?;
                Ok(Some(s.as_str()))
            }
            Some(other) => Err(self.bad(format!(
                "parameter \"{key}\" must be a string, not {}",
                describe_json(other)
            ))),
        }
    }

    fn required_string(&self, key: &str) -> OpsResult<&'a str> {
        self.optional_string(key)?
            .ok_or_else(|| self.bad(format!("parameter \"{key}\" is required")))
    }

    /// PostgreSQL text cannot hold NUL characters.
    fn no_nul(&self, s: &str, what: &str) -> OpsResult<()> {
        if s.contains('\0') {
            Err(self.bad(format!("{what} must not contain a NUL character")))
        } else {
            Ok(())
        }
    }
}
