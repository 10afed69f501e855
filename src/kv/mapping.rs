//! The mapping document: which keys (`pattern`) become rows of which `table`, and where each
//! column's value comes from (see `value::Field`). One mapping or an array of them (several
//! patterns feeding several tables). A mapping becomes the import's options and plan
//! (`import::options`, `import::plan`): the fields of the plan are the `from` specs, so the
//! conversions, rules, transforms and `on_conflict` clause are the import's own.
//!
//! ```json
//! {"pattern": "tenant:{subdomain}", "table": "tenants",
//!  "columns": {"subdomain": {"from": "{subdomain}"},
//!              "emoji": {"from": "$.emoji", "default": "🙂"},
//!              "created_at": {"from": "$.createdAt", "transform": "trim"},
//!              "name": "field:name", "plan": {"value": "free"}},
//!  "rules": {"email": {"email": true}},
//!  "tenant_part": "subdomain", "key_columns": ["subdomain"]}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{Error, Result};
use super::pattern::Pattern;
use super::value::Field;
use crate::error::{Common, OrRaise};
use crate::import::options::ImportOptions;
use crate::import::plan::{Fill, Plan, Target};
use crate::options::{self, present, Seg, Wording};

/// One column as the mapping writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnDoc {
    #[serde(default, deserialize_with = "present")]
    from: Option<String>,
    #[serde(default, deserialize_with = "present")]
    transform: Option<Value>,
    /// The value when the key's value lacks the field (a legacy format).
    #[serde(default, deserialize_with = "present")]
    default: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    rules: Option<Value>,
}

#[derive(Clone, Debug)]
struct ColumnSpec(ColumnDoc);

impl<'de> Deserialize<'de> for ColumnSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match options::json(d)? {
            Value::String(s) => Ok(ColumnSpec(ColumnDoc {
                from: Some(s),
                transform: None,
                default: None,
                value: None,
                rules: None,
            })),
            v @ Value::Object(_) => {
                let doc: options::Object<ColumnDoc> =
                    options::deserialize(&v).map_err(|(path, p)| {
                        let place = path
                            .iter()
                            .filter_map(Seg::key)
                            .collect::<Vec<_>>()
                            .join(".");
                        options::invalid(match p {
                            options::Problem::UnknownField { field, known } => format!(
                                "has an unknown key \"{field}\" (the keys are: {})",
                                known.join(", ")
                            ),
                            other => {
                                options::default_message(&path, &format!("\"{place}\""), &other)
                            }
                        })
                    })?;
                Ok(ColumnSpec(doc.0))
            }
            other => Err(options::invalid(format!(
                "must be a \"from\" spec or an object, not {}",
                options::got(&other)
            ))),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingDoc {
    #[serde(deserialize_with = "pattern_text")]
    pattern: String,
    #[serde(deserialize_with = "table_text")]
    table: String,
    columns: BTreeMap<String, ColumnSpec>,
    #[serde(default)]
    rules: BTreeMap<String, Value>,
    #[serde(default, deserialize_with = "present")]
    tenant_part: Option<String>,
    #[serde(default, deserialize_with = "present")]
    key_columns: Option<Vec<String>>,
}

fn pattern_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    options::name(d, "a key pattern such as \"tenant:{subdomain}\"")
}

fn table_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    options::name(d, "a table name")
}

struct MappingWording(Option<usize>);

impl Wording for MappingWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        let mut s = match self.0 {
            Some(i) => format!("item {}", i + 1),
            None => String::new(),
        };
        let keys: Vec<&str> = path.iter().filter_map(Seg::key).collect();
        if !keys.is_empty() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("\"{}\"", keys.join("\" \"")));
        }
        if s.is_empty() {
            "the mapping".into()
        } else {
            s
        }
    }
    fn message(&self, path: &[Seg], place: &str, problem: &options::Problem) -> String {
        match problem {
            options::Problem::UnknownField { field, .. } if path.is_empty() => {
                format!("{place} has an unknown key \"{field}\"")
            }
            _ => options::default_message(path, place, problem),
        }
    }
    fn hint(&self, path: &[Seg], problem: &options::Problem) -> Option<String> {
        match problem {
            options::Problem::UnknownField { known, .. } if path.is_empty() => {
                Some(format!("A mapping's keys are: {}.", known.join(", ")))
            }
            options::Problem::MissingField(_) => Some(
                "A mapping is {\"pattern\": \"tenant:{subdomain}\", \"table\": \"tenants\", \"columns\": {\"subdomain\": \"{subdomain}\", ...}}.".into(),
            ),
            _ => options::default_hint(path, problem),
        }
    }
}

/// The `options` of `import_kv` (and `compare_kv`, `sync_kv`, `cleanup_kv`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvOptions {
    #[serde(default, deserialize_with = "present")]
    pub tenant: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub on_conflict: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub dry_run: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub continue_on_error: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub max_errors: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub batch_size: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub date_format: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub defer: Option<bool>,
    /// sync_kv: `store` (default) or `table`.
    #[serde(default, deserialize_with = "present")]
    pub wins: Option<String>,
    /// import_kv: save the keys read in an archive of the backup directory before anything
    /// is written (see `kv::backup`).
    #[serde(default, deserialize_with = "present")]
    pub backup: Option<bool>,
}

struct OptionsWording;

impl Wording for OptionsWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        match path.first().and_then(Seg::key) {
            Some(k) => format!("option \"{k}\""),
            None => "options".into(),
        }
    }
    fn hint(&self, path: &[Seg], problem: &options::Problem) -> Option<String> {
        match problem {
            options::Problem::UnknownField { known, .. } if path.is_empty() => {
                Some(format!("The options are: {}.", known.join(", ")))
            }
            _ => options::default_hint(path, problem),
        }
    }
}

impl KvOptions {
    pub fn parse(raw: &Value) -> Result<KvOptions> {
        Ok(options::parse(raw, &OptionsWording)?)
    }

    /// The import's options these give (for one mapping's columns and rules).
    fn import_document(&self, columns: Value, rules: Value) -> Value {
        let mut d = json!({"columns": columns, "rules": rules});
        let o = d.as_object_mut().expect("an object");
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                o.insert(k.to_string(), v);
            }
        };
        put("on_conflict", self.on_conflict.clone());
        put("dry_run", self.dry_run.map(Value::Bool));
        put("continue_on_error", self.continue_on_error.map(Value::Bool));
        put("max_errors", self.max_errors.clone());
        put("batch_size", self.batch_size.clone());
        put("date_format", self.date_format.clone());
        d
    }
}

/// One mapping, checked against its table.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub pattern: Pattern,
    pub plan: Plan,
    pub options: ImportOptions,
    /// Per plan field: where its text comes from, and its default.
    pub fields: Vec<(Field, Option<Value>)>,
    /// The part that names the tenant.
    pub tenant_part: Option<String>,
    /// The columns that identify a key's row (compare, sync, cleanup).
    pub key_columns: Vec<String>,
    /// The document as given (kept with jobs).
    pub document: Value,
}

fn bad(message: String, hint: Option<String>) -> Error {
    Error::BadMapping { message, hint }
}

fn as_mapping_error(e: Common) -> Error {
    match e {
        Common::InvalidOption(m, h) => bad(m, h),
        other => other.into(),
    }
}

/// Parses a mapping document (one object or an array) against the tables.
pub fn parse(doc: &Value, kv: &KvOptions) -> Result<Vec<Mapping>> {
    let items: Vec<(Option<usize>, &Value)> = match doc {
        Value::Array(a) if a.is_empty() => {
            return Err(bad("the array of mappings is empty".into(), None))
        }
        Value::Array(a) => a.iter().enumerate().map(|(i, v)| (Some(i), v)).collect(),
        Value::Object(_) => vec![(None, doc)],
        other => {
            return Err(bad(
                format!(
                    "it must be an object or an array of objects, not {}",
                    options::got(other)
                ),
                None,
            ))
        }
    };
    items.into_iter().map(|(i, v)| one(i, v, kv)).collect()
}

fn one(index: Option<usize>, raw: &Value, kv: &KvOptions) -> Result<Mapping> {
    let at = match index {
        Some(i) => format!("item {}: ", i + 1),
        None => String::new(),
    };
    let d: MappingDoc = options::parse(raw, &MappingWording(index)).map_err(as_mapping_error)?;
    let pattern = Pattern::parse(&d.pattern).map_err(|e| {
        bad(
            format!("{at}\"pattern\": {e}"),
            Some("Name a key's parts in braces: \"tenant:{subdomain}:settings\"; \\ escapes a brace.".into()),
        )
    })?;
    if d.columns.is_empty() {
        return Err(bad(format!("{at}\"columns\" is empty"), None));
    }
    let oid = pgrx::Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8",
        &[d.table.clone().into()],
    )
    .or_raise()
    .ok_or_else(|| {
        Error::from(crate::import::Error::Common(Common::InvalidParameter(
            format!("{at}table \"{}\" does not exist", d.table),
            Some(
                "Name the table as in SQL, schema-qualified where it is not on the search_path."
                    .into(),
            ),
        )))
    })?;
    let target = Target::load(oid as u32)?;
    let parts = pattern.parts();
    let mut columns = Map::new();
    let mut rules: Map<String, Value> = d.rules.clone().into_iter().collect();
    let mut specs: Vec<(String, Field, Option<Value>)> = vec![];
    let mut key_columns = vec![];
    for (column, ColumnSpec(c)) in &d.columns {
        if let Some(r) = &c.rules {
            rules.insert(column.clone(), r.clone());
        }
        match (&c.from, &c.value) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad(
                    format!("{at}column \"{column}\" needs exactly one of \"from\" or \"value\""),
                    None,
                ))
            }
            (None, Some(v)) => {
                if c.transform.is_some() || c.default.is_some() {
                    return Err(bad(
                        format!("{at}column \"{column}\": a \"value\" takes no \"transform\" or \"default\""),
                        None,
                    ));
                }
                columns.insert(column.clone(), json!({"value": v}));
            }
            (Some(from), None) => {
                let field = Field::parse(from)
                    .map_err(|e| bad(format!("{at}column \"{column}\" \"from\": {e}"), Some("A column comes from \"{part}\" of the key, \"$.json.path\" of a string value, \"field:name\" of a hash, \"key\" or \"$\".".into())))?;
                if let Field::Part(p) = &field {
                    if !parts.contains(&p.as_str()) {
                        return Err(bad(
                            format!("{at}column \"{column}\" comes from part \"{{{p}}}\", and pattern \"{}\" has no such part", pattern.text),
                            Some(format!("The pattern's parts are: {}.", if parts.is_empty() { "(none)".to_string() } else { parts.join(", ") })),
                        ));
                    }
                    key_columns.push(column.clone());
                }
                let canonical = canonical(&field, from);
                let mut col = json!({"from": canonical});
                if let Some(t) = &c.transform {
                    col["transform"] = t.clone();
                }
                columns.insert(column.clone(), col);
                specs.push((canonical, field, c.default.clone()));
            }
        }
    }
    let tenant_part = match &d.tenant_part {
        Some(t) if !parts.contains(&t.as_str()) => {
            return Err(bad(
                format!(
                    "{at}\"tenant_part\" \"{t}\" is not a part of pattern \"{}\"",
                    pattern.text
                ),
                None,
            ))
        }
        Some(t) => Some(t.clone()),
        None => parts.first().map(|p| p.to_string()),
    };
    if let Some(k) = &d.key_columns {
        for c in k {
            if !d.columns.contains_key(c) {
                return Err(bad(
                    format!("{at}\"key_columns\" names \"{c}\", which \"columns\" does not fill"),
                    None,
                ));
            }
        }
        key_columns = k.clone();
    } else if let Some(pk) = &target.primary_key {
        if pk.iter().all(|c| d.columns.contains_key(c)) {
            key_columns = pk.clone();
        }
    }
    let import_doc = kv.import_document(Value::Object(columns), Value::Object(rules));
    // The import's options are made of the mapping's columns and rules and of the call's
    // options: an error about the former is the mapping's, about the latter the options'.
    let options = ImportOptions::parse(&import_doc).map_err(|e| match e {
        crate::import::Error::Common(Common::InvalidOption(m, h))
            if m.starts_with("option \"columns\"") || m.starts_with("option \"rules\"") =>
        {
            bad(format!("{at}{m}"), h)
        }
        other => other.into(),
    })?;
    let known: Vec<String> = specs.iter().map(|(s, _, _)| s.clone()).collect();
    let plan = Plan::new(target, &options, &known, false)?;
    let fields = plan
        .fields
        .iter()
        .map(|f| {
            let (_, field, default) = specs
                .iter()
                .find(|(s, _, _)| s == f)
                .expect("every plan field is a spec");
            (field.clone(), default.clone())
        })
        .collect();
    Ok(Mapping {
        pattern,
        plan,
        options,
        fields,
        tenant_part,
        key_columns,
        document: raw.clone(),
    })
}

/// A spec as the plan names its field: as written, but a bare name as `$.name` (so that it
/// is never a column's own name, which the plan would fill from it on its own).
fn canonical(f: &Field, written: &str) -> String {
    match f {
        Field::Path(steps) if !written.starts_with('$') => match steps.as_slice() {
            [super::value::Step::Key(k)] => format!("$.{k}"),
            _ => format!("${written}"),
        },
        _ => written.to_string(),
    }
}

impl Mapping {
    /// The plan columns filled from a field, with their field numbers.
    pub fn field_columns(&self) -> impl Iterator<Item = (&str, usize)> {
        self.plan.columns.iter().filter_map(|c| match &c.fill {
            Fill::Field { field, .. } => Some((c.column.name.as_str(), *field)),
            _ => None,
        })
    }
}
