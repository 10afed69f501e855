//! `compare_kv`: is the table what the store says? Every key of a mapping is turned into the
//! row it would be imported as (the import's plan, conversions and rules), collected in a
//! temporary table typed as the target's columns, and compared with the table by the
//! mapping's key columns in three set-based queries: keys with no row, rows with no key, and
//! per column the rows whose value differs. Findings go to `tenant_ops.integrity_issues` as
//! `validate_integrity`'s do (check names `kv_key_without_row`, `kv_row_without_key`,
//! `kv_field_differs`, `kv_key_invalid`), the job's result holds the counts and a score: the
//! share of keys and rows that agree, rounded down.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::error::{Error, Result};
use super::import::{prepare_key, scan_batch};
use super::mapping::{self, KvOptions, Mapping};
use super::source::{self, Store};
use crate::error::{OrRaise, Report};
use crate::import::load::in_batch_context;
use crate::import::plan::Fill;
use crate::import::rules::Seen;
use crate::jobs::kind::{nothing_to_undo, JobKind, Steps};
use crate::jobs::{self, Executor, Job, Status, StepOutcome};
use crate::pg::quote_ident;
use crate::sys::owner;

/// The temporary table a mapping's expected rows are collected in.
pub const EXPECTED: &str = "pg_temp.tenant_ops_kv_expected";
const SAMPLE: i64 = 10;

/// What filling the expected rows found.
#[derive(Debug, Default)]
pub struct Expected {
    pub keys: i64,
    pub invalid: i64,
    pub invalid_sample: Vec<String>,
}

/// The columns that identify a key's row, or why a mapping has none.
pub fn key_columns(m: &Mapping, what: &str) -> Result<Vec<String>> {
    if m.key_columns.is_empty() {
        return Err(Error::BadMapping {
            message: format!(
                "{what} needs the columns that identify a key's row, and mapping \"{}\" fills none from the key",
                m.pattern.text
            ),
            hint: Some("Fill a column from a part of the key (\"{subdomain}\"), or name them with \"key_columns\".".into()),
        });
    }
    Ok(m.key_columns.clone())
}

/// The column the tenant part fills (for a `tenant` filter on the table's rows).
pub fn tenant_column(m: &Mapping) -> Option<String> {
    let part = m.tenant_part.as_deref()?;
    m.plan.columns.iter().find_map(|c| match &c.fill {
        Fill::Field { field, .. } => {
            matches!(&m.fields[*field].0, super::value::Field::Part(p) if p == part)
                .then(|| c.column.name.clone())
        }
        _ => None,
    })
}

/// Collects the rows mapping `m` makes of the store's keys (only `tenant`'s) in [`EXPECTED`]:
/// `_label` (the key) and the plan's columns, typed as the target's.
pub fn fill_expected(
    store: &mut Store,
    scan_count: u64,
    m: &Mapping,
    tenant: Option<&str>,
) -> Result<Expected> {
    let cols: Vec<String> = m
        .plan
        .columns
        .iter()
        .map(|c| format!("{} {}", c.column.quoted, c.column.type_full))
        .collect();
    Spi::run(&format!("DROP TABLE IF EXISTS {EXPECTED}")).or_raise();
    Spi::run(&format!(
        "CREATE TEMPORARY TABLE tenant_ops_kv_expected (_label text, {}) ON COMMIT DROP",
        cols.join(", ")
    ))
    .or_raise();
    let labels = m.plan.arrays + m.plan.constants.len() + 1;
    let sql = format!(
        "INSERT INTO {EXPECTED} {}",
        m.plan.select_labelled_sql(labels)
    );
    let mut out = Expected::default();
    let mut seen = Seen::new();
    let mut cursor = 0;
    loop {
        let (next, keys, _) = scan_batch(store, scan_count, m, tenant, cursor)?;
        let mut arrays: Vec<Vec<Option<String>>> = (0..m.plan.arrays).map(|_| vec![]).collect();
        let mut names: Vec<Option<String>> = vec![];
        for (key, parts, value) in &keys {
            out.keys += 1;
            match prepare_key(m, &mut seen, key, parts, value) {
                Ok(values) => {
                    for (a, v) in arrays.iter_mut().zip(values) {
                        a.push(v);
                    }
                    names.push(Some(key.clone()));
                }
                Err(_) => {
                    out.invalid += 1;
                    if out.invalid_sample.len() < SAMPLE as usize {
                        out.invalid_sample.push(key.clone());
                    }
                }
            }
        }
        if !names.is_empty() {
            in_batch_context(|| {
                let mut args: Vec<pgrx::datum::DatumWithOid> = vec![];
                for a in &arrays {
                    let texts: Vec<Option<&str>> = a.iter().map(|v| v.as_deref()).collect();
                    args.push(texts.into());
                }
                for c in &m.plan.constants {
                    args.push(c.clone().into());
                }
                let labels: Vec<Option<&str>> = names.iter().map(|v| v.as_deref()).collect();
                args.push(labels.into());
                Spi::connect_mut(|c| c.update(&sql, None, &args).map(|_| ())).or_raise()
            });
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(out)
}

/// The join of [`EXPECTED`] `e` and the target `t` on the key columns.
pub fn key_join(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("t.{q} = e.{q}", q = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `t`'s rows of `tenant` (all rows without one).
pub fn tenant_filter(m: &Mapping, tenant: Option<&str>) -> String {
    match (tenant, tenant_column(m)) {
        (Some(_), Some(c)) => format!("t.{}::pg_catalog.text = $1", quote_ident(&c)),
        _ => "true".into(),
    }
}

/// A finding, as `validate_integrity` records them.
struct Finding {
    check: &'static str,
    table: i64,
    constraint: String,
    count: i64,
    sample: Value,
}

fn count_and_sample(sql: &str, tenant: Option<&str>) -> (i64, Value) {
    let args: Vec<pgrx::datum::DatumWithOid> = match tenant {
        Some(t) => vec![t.into()],
        None => vec![None::<String>.into()],
    };
    Spi::connect(|c| {
        let r = c.select(sql, Some(1), &args)?;
        let row = r.first();
        Ok::<_, pgrx::spi::Error>((
            row.get::<i64>(1)?.unwrap_or(0),
            row.get::<JsonB>(2)?.map(|j| j.0).unwrap_or(json!([])),
        ))
    })
    .or_raise()
}

/// Compares one mapping; its findings and figures.
fn compare_one(
    store: &mut Store,
    scan_count: u64,
    m: &Mapping,
    tenant: Option<&str>,
) -> Result<(Vec<Finding>, Value)> {
    let keys = key_columns(m, "compare_kv")?;
    crate::pg::require_table_privileges(
        &m.plan.target.sql,
        &m.plan.target.display,
        "SELECT",
        "compare_kv",
    )?;
    let expected = fill_expected(store, scan_count, m, tenant)?;
    let t = &m.plan.target.sql;
    let on = key_join(&keys);
    let filter = tenant_filter(m, tenant);
    let oid = m.plan.target.oid;
    let mut findings = vec![];
    // A row's key columns as an object named by the columns themselves.
    let key_obj = |alias: &str| {
        format!(
            "pg_catalog.to_jsonb((SELECT x FROM (SELECT {}) x))",
            keys.iter()
                .map(|k| format!("{alias}.{}", quote_ident(k)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    // $1 is the tenant in every query (unused without one).
    let (no_row, s1) = count_and_sample(
        &format!(
            "SELECT count(*), pg_catalog.to_jsonb((pg_catalog.array_agg(e._label ORDER BY e._label))[1:{SAMPLE}])
               FROM {EXPECTED} e WHERE NOT EXISTS (SELECT FROM {t} t WHERE {on})"
        ),
        tenant,
    );
    let (no_key, s2) = count_and_sample(
        &format!(
            "SELECT count(*), pg_catalog.to_jsonb((pg_catalog.array_agg({} ORDER BY {}))[1:{SAMPLE}])
               FROM {t} t WHERE {filter} AND NOT EXISTS (SELECT FROM {EXPECTED} e WHERE {on})",
            key_obj("t"),
            keys.iter().map(|k| format!("t.{}", quote_ident(k))).collect::<Vec<_>>().join(", ")
        ),
        tenant,
    );
    if no_row > 0 {
        findings.push(Finding {
            check: "kv_key_without_row",
            table: oid,
            constraint: m.pattern.text.clone(),
            count: no_row,
            sample: s1,
        });
    }
    if no_key > 0 {
        findings.push(Finding {
            check: "kv_row_without_key",
            table: oid,
            constraint: m.pattern.text.clone(),
            count: no_key,
            sample: s2,
        });
    }
    if expected.invalid > 0 {
        findings.push(Finding {
            check: "kv_key_invalid",
            table: oid,
            constraint: m.pattern.text.clone(),
            count: expected.invalid,
            sample: json!(expected.invalid_sample),
        });
    }
    let mut differing = serde_json::Map::new();
    let mut any_differs = vec![];
    for c in m
        .plan
        .columns
        .iter()
        .filter(|c| !keys.contains(&c.column.name))
    {
        let q = &c.column.quoted;
        any_differs.push(format!("e.{q} IS DISTINCT FROM t.{q}"));
        let (n, s) = count_and_sample(
            &format!(
                "SELECT count(*), pg_catalog.to_jsonb((pg_catalog.array_agg(e._label ORDER BY e._label))[1:{SAMPLE}])
                   FROM {EXPECTED} e JOIN {t} t ON {on} WHERE e.{q} IS DISTINCT FROM t.{q}"
            ),
            tenant,
        );
        differing.insert(c.column.name.clone(), json!(n));
        if n > 0 {
            findings.push(Finding {
                check: "kv_field_differs",
                table: oid,
                constraint: c.column.name.clone(),
                count: n,
                sample: s,
            });
        }
    }
    let agree_filter = if any_differs.is_empty() {
        "true".to_string()
    } else {
        format!("NOT ({})", any_differs.join(" OR "))
    };
    let (agree, _) = count_and_sample(
        &format!("SELECT count(*), NULL::jsonb FROM {EXPECTED} e JOIN {t} t ON {on} WHERE {agree_filter}"),
        tenant,
    );
    let figures = json!({
        "pattern": m.pattern.text, "table": m.plan.target.display, "keys": expected.keys,
        "keys_invalid": expected.invalid, "keys_without_row": no_row, "rows_without_key": no_key,
        "rows_agreeing": agree, "fields_differing": differing,
    });
    Spi::run(&format!("DROP TABLE IF EXISTS {EXPECTED}")).or_raise();
    Ok((findings, figures))
}

/// The job's stored arguments.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub source: String,
    pub mapping: Value,
}

pub struct Compare {
    job_id: i64,
    meta: Meta,
    options: KvOptions,
}

impl Compare {
    fn run(&mut self) -> Result<Value> {
        let src = source::load(&self.meta.source)?;
        let mappings = mapping::parse(&self.meta.mapping, &self.options)?;
        let mut store = src.open()?;
        let tenant = self.options.tenant.as_deref();
        let mut all = vec![];
        let mut per = vec![];
        let (mut considered, mut agree) = (0i64, 0i64);
        for m in &mappings {
            let (f, figures) = compare_one(&mut store, src.options.scan_count, m, tenant)?;
            considered += figures["keys"].as_i64().unwrap_or(0)
                + figures["rows_without_key"].as_i64().unwrap_or(0);
            agree += figures["rows_agreeing"].as_i64().unwrap_or(0);
            per.push(figures);
            all.extend(f);
        }
        for f in &all {
            owner::execute(
                "INSERT INTO tenant_ops.integrity_issues
                    (job_id, check_name, table_name, constraint_name, tenant, count, sample)
                 VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5, $6, $7)",
                &[
                    self.job_id.into(),
                    f.check.into(),
                    f.table.into(),
                    f.constraint.clone().into(),
                    self.options.tenant.clone().into(),
                    f.count.into(),
                    JsonB(f.sample.clone()).into(),
                ],
            )
            .or_raise();
        }
        let score = if considered == 0 {
            100.0
        } else {
            ((agree as f64 / considered as f64).clamp(0.0, 1.0) * 10000.0).floor() / 100.0
        };
        let mut by_check = serde_json::Map::new();
        for f in &all {
            let e = by_check.entry(f.check.to_string()).or_insert(json!(0));
            *e = json!(e.as_i64().unwrap_or(0) + f.count);
        }
        Ok(json!({
            "source": self.meta.source, "tenant": self.options.tenant, "mappings": per,
            "issues": all.len(), "by_check": by_check, "considered": considered,
            "agreeing": agree, "score": score,
        }))
    }
}

impl Steps for Compare {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, Report> {
        let r = self.run()?;
        Ok(StepOutcome::Done(r))
    }
}

/// `kv_compare`, the job kind of `compare_kv`.
pub struct KvCompareKind;

impl JobKind for KvCompareKind {
    fn name(&self) -> &'static str {
        "kv_compare"
    }
    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_validations()
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_operator"
    }
    fn steps(&self, job: &Job) -> std::result::Result<Box<dyn Steps>, Report> {
        let mut raw = job.options.clone();
        let meta: Meta = raw
            .as_object_mut()
            .and_then(|m| m.remove(super::import::META_KEY))
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| {
                Error::NotOurJob(format!(
                    "job {} is not a kv_compare job of this version",
                    job.id
                ))
            })?;
        Ok(Box::new(Compare {
            job_id: job.id,
            meta,
            options: KvOptions::parse(&raw)?,
        }))
    }
    fn revert(&self, job: &Job, final_status: Status) -> std::result::Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}

/// Checks the call and creates a `kv_compare` job; the caller runs it.
pub fn submit(source: &str, mapping: &Value, raw: &Value) -> Result<i64> {
    let options = KvOptions::parse(raw)?;
    let src = source::load(source)?;
    let mappings = mapping::parse(mapping, &options)?;
    for m in &mappings {
        key_columns(m, "compare_kv")?;
    }
    let mut stored = if raw.is_object() {
        raw.clone()
    } else {
        json!({})
    };
    stored[super::import::META_KEY] = serde_json::to_value(Meta {
        source: src.name.clone(),
        mapping: mapping.clone(),
    })
    .expect("plain data");
    let tenant = options.tenant.clone().unwrap_or_else(|| "*".into());
    Ok(jobs::create(
        "kv_compare",
        &src.name,
        &tenant,
        &stored,
        Executor::Inline,
    ))
}
