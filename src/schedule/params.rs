//! A schedule's `params`: the arguments of its operation (as that operation's function takes
//! them) and the schedule's own settings (`timezone`, `overlap`, `catch_up`, `alert_after`,
//! `engine`), read strictly: a key the operation does not take is refused, naming it.

use serde_json::{Map, Value};

use super::error::Error;
use super::SCHEDULE_KEYS;
use crate::error::Report;
use crate::jobs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Backup,
    Validate,
    Migrate,
    Export,
    Import,
    PurgeBackups,
    PurgeHistory,
}

impl Operation {
    pub fn parse(name: &str) -> Result<Operation, Error> {
        Ok(match name {
            "backup" => Operation::Backup,
            "validate" => Operation::Validate,
            "migrate" => Operation::Migrate,
            "export" => Operation::Export,
            "import" => Operation::Import,
            "purge_backups" => Operation::PurgeBackups,
            "purge_history" => Operation::PurgeHistory,
            _ => return Err(Error::UnknownOperation(name.into())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Validate => "validate",
            Operation::Migrate => "migrate",
            Operation::Export => "export",
            Operation::Import => "import",
            Operation::PurgeBackups => "purge_backups",
            Operation::PurgeHistory => "purge_history",
        }
    }

    /// The job kind its runs are (the same names).
    pub fn kind(self) -> &'static dyn crate::jobs::kind::JobKind {
        crate::kinds::lookup(self.name()).expect("every operation is a job kind")
    }

    /// The arguments it takes in `params`, those of its SQL function but `background`.
    pub fn accepted(self) -> &'static [&'static str] {
        match self {
            Operation::Backup => &["scope", "tenant", "options"],
            Operation::Validate => &["scope", "tenant", "checks"],
            Operation::Migrate => &["scope", "tenant", "target_schema", "options"],
            Operation::Export => &["scope", "tenant", "format", "options"],
            Operation::Import => &["target", "source", "format", "options"],
            Operation::PurgeBackups | Operation::PurgeHistory => &[],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    Queue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    Once,
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Builtin,
    PgCron,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }
    pub fn parse(s: &str) -> Option<Overlap> {
        [Overlap::Skip, Overlap::Queue]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::Skip => "skip",
        }
    }
    pub fn parse(s: &str) -> Option<CatchUp> {
        [CatchUp::Once, CatchUp::Skip]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Builtin => "builtin",
            Engine::PgCron => "pg_cron",
        }
    }
    pub fn parse(s: &str) -> Option<Engine> {
        [Engine::Builtin, Engine::PgCron]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// `params` read: the schedule's settings, and the operation's arguments (the rest).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub timezone: Option<String>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub alert_after: i32,
    pub engine: Engine,
    pub args: Map<String, Value>,
}

fn bad(key: &str, message: impl Into<String>, hint: Option<&str>) -> Error {
    Error::BadParam {
        key: key.into(),
        message: message.into(),
        hint: hint.map(str::to_string),
    }
}

fn text_of<'a>(
    args: &'a Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<&'a str>, Error> {
    match args.get(key) {
        None | Some(Value::Null) if required => Err(bad(
            key,
            "is required",
            Some("Give it in params as for the operation's function."),
        )),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(key, format!("must be a string, not {other}"), None)),
    }
}

fn one_of<T>(
    m: &Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Option<T>,
    names: &str,
    default: T,
) -> Result<T, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => {
            parse(s).ok_or_else(|| bad(key, format!("must be one of {names}, not \"{s}\""), None))
        }
        Some(other) => Err(bad(
            key,
            format!("must be one of {names}, not {other}"),
            None,
        )),
    }
}

impl Params {
    /// Reads `params` for `operation`: unknown keys, values of the wrong kind and missing
    /// required arguments are refused, naming the key.
    pub fn parse(operation: Operation, params: &Value) -> Result<Params, Error> {
        let m = match params {
            Value::Object(m) => m,
            Value::Null => &Map::new(),
            other => {
                return Err(bad(
                    "params",
                    format!("must be a JSON object, not {other}"),
                    Some("For example '{\"scope\": \"shop\", \"tenant\": \"42\"}'."),
                ))
            }
        };
        let accepted = operation.accepted();
        for key in m.keys() {
            if !accepted.contains(&key.as_str()) && !SCHEDULE_KEYS.contains(&key.as_str()) {
                return Err(Error::UnknownParam {
                    operation: operation.name().into(),
                    key: key.clone(),
                    accepted: accepted.to_vec(),
                });
            }
        }
        let timezone = text_of(m, "timezone", false)?.map(str::to_string);
        let alert_after = match m.get("alert_after") {
            None | Some(Value::Null) => 3,
            Some(v) => match v.as_i64() {
                Some(n) if (1..=1_000_000).contains(&n) => n as i32,
                _ => {
                    return Err(bad(
                        "alert_after",
                        format!("must be a whole number of consecutive failures from 1, not {v}"),
                        None,
                    ))
                }
            },
        };
        let args: Map<String, Value> = m
            .iter()
            .filter(|(k, _)| accepted.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parsed = Params {
            timezone,
            overlap: one_of(
                m,
                "overlap",
                Overlap::parse,
                "\"skip\", \"queue\"",
                Overlap::Skip,
            )?,
            catch_up: one_of(
                m,
                "catch_up",
                CatchUp::parse,
                "\"once\", \"skip\"",
                CatchUp::Once,
            )?,
            alert_after,
            engine: one_of(
                m,
                "engine",
                Engine::parse,
                "\"builtin\", \"pg_cron\"",
                Engine::Builtin,
            )?,
            args,
        };
        parsed.check_args(operation)?;
        Ok(parsed)
    }

    /// The shapes of the operation's arguments (what they mean is checked by a trial
    /// submission, see `define`).
    fn check_args(&self, operation: Operation) -> Result<(), Error> {
        let a = &self.args;
        match operation {
            Operation::Backup => {
                text_of(a, "scope", true)?;
                text_of(a, "tenant", true)?;
                object_of(a, "options")?;
            }
            Operation::Validate => {
                text_of(a, "scope", true)?;
                text_of(a, "tenant", false)?;
                checks_of(a)?;
            }
            Operation::Migrate => {
                text_of(a, "scope", true)?;
                text_of(a, "tenant", true)?;
                text_of(a, "target_schema", true)?;
                object_of(a, "options")?;
            }
            Operation::Export => {
                text_of(a, "scope", true)?;
                text_of(a, "tenant", true)?;
                text_of(a, "format", true)?;
                object_of(a, "options")?;
            }
            Operation::Import => {
                text_of(a, "target", true)?;
                text_of(a, "source", true)?;
                text_of(a, "format", false)?;
                object_of(a, "options")?;
            }
            Operation::PurgeBackups | Operation::PurgeHistory => {}
        }
        Ok(())
    }
}

fn object_of(args: &Map<String, Value>, key: &str) -> Result<Value, Error> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(other) => Err(bad(
            key,
            format!("must be a JSON object, not {other}"),
            None,
        )),
    }
}

fn checks_of(args: &Map<String, Value>) -> Result<Vec<String>, Error> {
    match args.get("checks") {
        None | Some(Value::Null) => Ok(crate::integrity::CHECKS
            .iter()
            .map(|c| c.to_string())
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    bad(
                        "checks",
                        format!("must be an array of check names, not one holding {v}"),
                        None,
                    )
                })
            })
            .collect(),
        Some(other) => Err(bad(
            "checks",
            format!("must be an array of check names, not {other}"),
            None,
        )),
    }
}

/// Submits one run of `operation` with `args` as a background job of the current role (the
/// caller switches to the schedule's owner first): the operation's own submission, with every
/// check it makes, after the owner's membership in the role its kind needs.
pub fn submit(operation: Operation, args: &Map<String, Value>) -> Result<i64, Report> {
    let kind = operation.kind();
    crate::pg::require_role(kind.required_role(), &format!("run a {} job", kind.name()))?;
    let text = |k: &str| -> Result<String, Report> {
        Ok(text_of(args, k, true)?.unwrap_or_default().to_string())
    };
    Ok(match operation {
        Operation::Backup => crate::backup::submit(
            &text("scope")?,
            &text("tenant")?,
            &object_of(args, "options")?,
            true,
        )?,
        Operation::Validate => {
            let tenant = text_of(args, "tenant", false)?;
            crate::integrity::submit(&text("scope")?, tenant, &checks_of(args)?, true)?.0
        }
        Operation::Migrate => {
            crate::migrate::submit(
                &text("scope")?,
                &text("tenant")?,
                &text("target_schema")?,
                &object_of(args, "options")?,
                true,
            )?
            .0
        }
        // A scheduled export names no `file` (each run's archive takes the job id in its
        // name) unless the schedule means to fail once that file exists.
        Operation::Export => crate::export::job::submit(
            &text("scope")?,
            &text("tenant")?,
            &text("format")?,
            &object_of(args, "options")?,
            true,
        )?,
        // The target by name, resolved at each run as the owner's search_path has it.
        Operation::Import => {
            let target = text("target")?;
            let oid = crate::pg::regclass(&target).ok_or_else(|| {
                Report::new(
                    pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                    format!("parameter \"target\": table \"{target}\" does not exist"),
                )
                .hint(
                    "Name the table as import_data's target takes it, schema-qualified."
                        .to_string(),
                )
            })?;
            let format = text_of(args, "format", false)?
                .unwrap_or("auto")
                .to_string();
            crate::import::submit::submit(
                oid,
                crate::import::submit::Source::File(&text("source")?),
                &format,
                &object_of(args, "options")?,
                true,
            )?
            .0
        }
        Operation::PurgeBackups | Operation::PurgeHistory => jobs::create_unscoped(
            operation.name(),
            &Value::Object(Map::new()),
            jobs::Executor::Background,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_read_strictly() {
        let p = Params::parse(
            Operation::Backup,
            &json!({"scope": "s", "tenant": "1", "timezone": "Europe/Oslo", "overlap": "queue"}),
        )
        .unwrap();
        assert_eq!(p.overlap, Overlap::Queue);
        assert_eq!(p.catch_up, CatchUp::Once);
        assert_eq!(p.alert_after, 3);
        assert_eq!(p.timezone.as_deref(), Some("Europe/Oslo"));
        assert_eq!(p.args.len(), 2);
        match Params::parse(
            Operation::Backup,
            &json!({"scope": "s", "tenant": "1", "checks": []}),
        ) {
            Err(Error::UnknownParam { key, .. }) => assert_eq!(key, "checks"),
            other => panic!("{other:?}"),
        }
        match Params::parse(Operation::Migrate, &json!({"scope": "s", "tenant": "1"})) {
            Err(Error::BadParam { key, .. }) => assert_eq!(key, "target_schema"),
            other => panic!("{other:?}"),
        }
        match Params::parse(Operation::PurgeHistory, &json!({"overlap": "sometimes"})) {
            Err(Error::BadParam { key, .. }) => assert_eq!(key, "overlap"),
            other => panic!("{other:?}"),
        }
        match Params::parse(Operation::PurgeHistory, &json!({"alert_after": 0})) {
            Err(Error::BadParam { key, .. }) => assert_eq!(key, "alert_after"),
            other => panic!("{other:?}"),
        }
        assert!(Params::parse(Operation::PurgeBackups, &json!({})).is_ok());
        assert!(Operation::parse("vacuum").is_err());
    }
}
