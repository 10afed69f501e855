//! `import_kv` as the job kind `kv_import`: every mapping's keys, found with SCAN MATCH (the
//! `tenant` option narrows the glob to one tenant's keys), read in pipelined batches, turned
//! into rows by the import's plan (conversions, rules, transforms, `on_conflict`) and written
//! set-based (COPY where the import would use it, else its INSERT ... SELECT).
//!
//! A step is one batch: SCAN calls until `batch_size` keys are collected or the cursor is
//! back at 0, then the rows written and the SCAN cursor recorded in `tenant_ops.job_tables`
//! (one checkpoint row per mapping) in the same transaction. A committing run that resumes
//! starts SCAN from that cursor, so nothing is read or written twice. A committing run that
//! may not keep refused keys first walks every key in a `check` stage that writes nothing.
//! A store that stops answering fails the step with SQLSTATE 08006: inline, the caller's
//! transaction is rolled back whole; in the background the job is retried from its cursor.

use serde_json::{json, Value};

use super::error::{Error, Result};
use super::mapping::{self, KvOptions, Mapping};
use super::source::{self, Store};
use super::value::KvValue;
use crate::error::Report;
use crate::import::error::Reason;
use crate::import::load::{in_batch_context, insert};
use crate::import::refusals;
use crate::import::rules::Seen;
use crate::jobs::kind::{nothing_to_undo, JobKind, Steps};
use crate::jobs::{self, Executor, Job, Status, StepOutcome};
use crate::migrate::options::OnConflict;
use crate::sys::{rolled_back_subtransaction, try_subtransaction};

/// What the call decided, kept in the job's options under [`META_KEY`].
pub const META_KEY: &str = "_kv";

/// Where one mapping's pass is.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Position {
    cursor: u64,
    /// The pass is over.
    done: bool,
    /// Keys of the pattern read (matched, and the tenant's).
    keys: i64,
    written: i64,
    refused: i64,
    /// Keys SCAN gave that are not the pattern's (or another tenant's), or gone when read.
    skipped: i64,
}

/// The job's stored arguments.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub source: String,
    pub mapping: Value,
}

pub struct KvImport {
    job_id: i64,
    source: source::Source,
    mappings: Vec<Mapping>,
    options: KvOptions,
    stage: String,
    at: Vec<Position>,
    store: Option<Store>,
    seen: Vec<Seen>,
    first_errors: Vec<Value>,
    /// Where the run goes after the backup pass.
    after_backup: &'static str,
}

/// The stage of `"backup": true` that comes before anything else (see `kv::backup`).
const BACKUP: &str = "backup";
/// The job log's record of the archive the backup pass made.
const BACKUP_EVENT: &str = "kv_import.backup";

/// One batch of keys turned into rows.
struct Batch {
    arrays: Vec<Vec<Option<String>>>,
    /// Each row's key and value (the value as JSON only should the row be refused).
    keys: Vec<(String, KvValue)>,
}

impl KvImport {
    pub fn from_job(job: &Job) -> Result<KvImport> {
        let mut raw = job.options.clone();
        let meta: Meta = raw
            .as_object_mut()
            .and_then(|m| m.remove(META_KEY))
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| {
                Error::NotOurJob(format!(
                    "job {} is not a kv_import job of this version",
                    job.id
                ))
            })?;
        let options = KvOptions::parse(&raw)?;
        let source = source::load(&meta.source)?;
        let mappings = mapping::parse(&meta.mapping, &options)?;
        let continue_on_error = options.continue_on_error.unwrap_or(false);
        let dry_run = options.dry_run.unwrap_or(false);
        let check_first = job.executor != Executor::Inline && !continue_on_error && !dry_run;
        let backup_first = options.backup.unwrap_or(false) && !dry_run;
        let tables = jobs::tables(job.id);
        let (stage, at) = if tables.is_empty() {
            for (i, m) in mappings.iter().enumerate() {
                jobs::add_table(
                    job.id,
                    i as i32 + 1,
                    m.plan.target.oid as u32,
                    Some(&m.pattern.text),
                    "kv_import",
                    None,
                    json!(Position::default()),
                );
            }
            let stage = if backup_first {
                BACKUP
            } else if check_first {
                "check"
            } else {
                "load"
            };
            jobs::set_stage(job.id, stage);
            (stage.to_string(), vec![Position::default(); mappings.len()])
        } else {
            let stage = job.stage.clone();
            let at = tables
                .iter()
                .map(|t| serde_json::from_value(t.details.clone()).unwrap_or_default())
                .collect();
            (stage, at)
        };
        Ok(KvImport {
            job_id: job.id,
            source,
            seen: vec![Seen::new(); mappings.len()],
            mappings,
            options,
            stage,
            at,
            store: None,
            first_errors: vec![],
            after_backup: if check_first { "check" } else { "load" },
        })
    }

    fn writing(&self) -> bool {
        self.stage == "load"
    }

    fn dry_run(&self) -> bool {
        self.options.dry_run.unwrap_or(false)
    }

    /// Reads the next batch of mapping `i`: keys and their values, the cursor after them.
    fn read_batch(&mut self, i: usize) -> Result<(u64, Vec<KeyValue>, i64)> {
        if self.store.is_none() {
            self.store = Some(self.source.open()?);
        }
        scan_batch(
            self.store.as_mut().expect("opened"),
            self.source.options.scan_count,
            &self.mappings[i],
            self.options.tenant.as_deref(),
            self.at[i].cursor,
        )
    }

    /// The row of one key, or why it is refused.
    fn prepare(
        &mut self,
        i: usize,
        key: &str,
        parts: &[(String, String)],
        value: &KvValue,
    ) -> std::result::Result<Vec<Option<String>>, Vec<Reason>> {
        prepare_key(&self.mappings[i], &mut self.seen[i], key, parts, value)
    }

    /// A refused key: in job_errors (`continue_on_error`), counted (dry run), or the error.
    fn refuse(&mut self, i: usize, key: &str, raw: Value, reasons: Vec<Reason>) -> Result<()> {
        if self.dry_run() {
            self.at[i].refused += 1;
            refusals::describe(&mut self.first_errors, ("key", json!(key)), &reasons);
            return Ok(());
        }
        if !self.options.continue_on_error.unwrap_or(false) || !self.writing() {
            return Err(Error::BadKey {
                key: key.to_string(),
                reasons,
            });
        }
        refusals::record(
            self.job_id,
            self.mappings[i].plan.target.oid as u32,
            key,
            json!({"key": key, "value": raw}),
            &reasons,
        );
        self.at[i].refused += 1;
        if let Some(max) = self.mappings[i].options.max_errors {
            if self.at[i].refused > max {
                return Err(Error::TooManyErrors {
                    max,
                    key: key.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Keys the rules checked in the database refuse (`references`, `unique` against the
    /// table: `import::lookups`), refused and taken out of the batch.
    fn check_database_rules(&mut self, i: usize, batch: Batch) -> Result<Batch> {
        let plan = &self.mappings[i].plan;
        let bad = in_batch_context(|| {
            crate::import::lookups::refusals(self.job_id, i, plan, batch.arrays.as_slice(), true)
        });
        if bad.is_empty() {
            return Ok(batch);
        }
        let mut refused = std::collections::HashSet::new();
        for (r, reasons) in bad {
            let (key, value) = &batch.keys[r];
            self.refuse(i, key, value.raw(), reasons)?;
            refused.insert(r);
        }
        let keep = |r: &usize| !refused.contains(r);
        Ok(Batch {
            arrays: batch
                .arrays
                .into_iter()
                .map(|a| {
                    a.into_iter()
                        .enumerate()
                        .filter(|(r, _)| keep(r))
                        .map(|(_, v)| v)
                        .collect()
                })
                .collect(),
            keys: batch
                .keys
                .into_iter()
                .enumerate()
                .filter(|(r, _)| keep(r))
                .map(|(_, k)| k)
                .collect(),
        })
    }

    /// Writes the batch in one statement; should it fail, key by key (each in a
    /// subtransaction) to refuse the keys at fault.
    fn write(&mut self, i: usize, batch: &Batch) -> Result<i64> {
        if batch.keys.is_empty() {
            return Ok(0);
        }
        let plan = &self.mappings[i].plan;
        let on_conflict = self.mappings[i].options.on_conflict;
        let sql = plan.insert.clone();
        let constants = plan.constants.clone();
        let whole = if crate::import::copy::usable(plan, on_conflict) {
            in_batch_context(|| {
                try_subtransaction(|| crate::import::copy::write(plan, &batch.arrays))
            })
        } else {
            in_batch_context(|| try_subtransaction(|| insert(&sql, &batch.arrays, &constants)))
        };
        if let Ok(n) = whole {
            return Ok(n);
        }
        let mut written = 0;
        for (r, (key, value)) in batch.keys.iter().enumerate() {
            let row: Vec<Vec<Option<String>>> =
                batch.arrays.iter().map(|a| vec![a[r].clone()]).collect();
            match in_batch_context(|| try_subtransaction(|| insert(&sql, &row, &constants))) {
                Ok(n) => written += n,
                Err(e) => self.refuse(
                    i,
                    key,
                    value.raw(),
                    vec![Reason::new(e.sqlstate, e.message)],
                )?,
            }
        }
        Ok(written)
    }

    /// The backup pass: every key the import will read saved in one step (a crash redoes
    /// it from the start; the archive of an aborted step is removed).
    fn backup_step(&mut self) -> Result<StepOutcome> {
        if self.store.is_none() {
            self.store = Some(self.source.open()?);
        }
        let made = super::backup::write(
            self.store.as_mut().expect("opened"),
            self.source.options.scan_count,
            &self.mappings,
            self.options.tenant.as_deref(),
            &self.source.name,
        )?;
        jobs::log(
            self.job_id,
            BACKUP_EVENT,
            Some(BACKUP),
            None,
            made["keys"].as_i64(),
            made["file"].as_str().map(str::to_string).as_deref(),
            Some(made.clone()),
        );
        self.stage = self.after_backup.into();
        jobs::set_stage(self.job_id, &self.stage);
        Ok(StepOutcome::Continue)
    }

    fn result(&self) -> Value {
        let per: Vec<Value> = self
            .mappings
            .iter()
            .zip(&self.at)
            .map(|(m, a)| {
                json!({"pattern": m.pattern.text, "table": m.plan.target.display,
                       "keys": a.keys, "rows_written": a.written, "keys_refused": a.refused,
                       "keys_skipped": a.skipped})
            })
            .collect();
        let sum = |f: fn(&Position) -> i64| self.at.iter().map(f).sum::<i64>();
        let mut r = json!({
            "source": self.source.name,
            "tenant": self.options.tenant,
            "mappings": per,
            "keys": sum(|a| a.keys),
            "rows_written": sum(|a| a.written),
            "keys_refused": sum(|a| a.refused),
            "keys_skipped": sum(|a| a.skipped),
        });
        if self.dry_run() {
            r["dry_run"] = json!(true);
            r["first_errors"] = json!(self.first_errors);
        }
        if self.options.backup.unwrap_or(false) && !self.dry_run() {
            r["backup"] = crate::sys::owner::get_one::<pgrx::JsonB>(
                "SELECT details FROM tenant_ops.job_log WHERE job_id = $1 AND event = $2 ORDER BY id DESC LIMIT 1",
                &[self.job_id.into(), BACKUP_EVENT.into()],
            )
            .ok()
            .flatten()
            .map_or(Value::Null, |j| j.0);
        }
        r
    }

    fn one_step(&mut self) -> Result<StepOutcome> {
        if self.stage == BACKUP {
            return self.backup_step();
        }
        let Some(i) = self.at.iter().position(|a| !a.done) else {
            return Ok(self.done());
        };
        let (cursor, keys, skipped) = self.read_batch(i)?;
        let n = self.mappings[i].plan.arrays;
        let mut batch = Batch {
            arrays: (0..n).map(|_| Vec::with_capacity(keys.len())).collect(),
            keys: Vec::with_capacity(keys.len()),
        };
        let read = keys.len() as i64;
        for (key, parts, value) in keys {
            match self.prepare(i, &key, &parts, &value) {
                Ok(values) => {
                    for (a, v) in batch.arrays.iter_mut().zip(values) {
                        a.push(v);
                    }
                    batch.keys.push((key, value));
                }
                Err(reasons) => self.refuse(i, &key, value.raw(), reasons)?,
            }
        }
        let batch = self.check_database_rules(i, batch)?;
        let written = if self.writing() && !self.dry_run() {
            self.write(i, &batch)?
        } else if self.dry_run() {
            match rolled_back_subtransaction(|| self.write(i, &batch)) {
                Ok(r) => r?,
                Err(e) => {
                    return Err(Error::Server {
                        source: self.source.name.clone(),
                        why: e.message,
                    })
                }
            }
        } else {
            0
        };
        let a = &mut self.at[i];
        a.cursor = cursor;
        a.keys += read;
        a.skipped += skipped;
        a.written += written;
        a.done = cursor == 0;
        let step = i as i32 + 1;
        jobs::checkpoint(self.job_id, step, &self.stage, written, None);
        jobs::set_table_details(
            self.job_id,
            step,
            &serde_json::to_value(&*a).expect("plain data"),
        );
        jobs::notify_progress(
            self.job_id,
            json!({"stage": self.stage, "pattern": self.mappings[i].pattern.text,
                   "keys": a.keys, "rows": a.written, "refused": a.refused}),
        );
        if a.done {
            jobs::set_rows_total(self.job_id, step, a.written);
        }
        if self.at.iter().any(|a| !a.done) {
            return Ok(StepOutcome::Continue);
        }
        if self.stage == "check" {
            jobs::log(
                self.job_id,
                "kv_import.checked",
                Some("check"),
                None,
                Some(self.at.iter().map(|a| a.keys).sum()),
                Some("every key passed; loading"),
                None,
            );
            self.stage = "load".into();
            for (j, a) in self.at.iter_mut().enumerate() {
                *a = Position::default();
                jobs::restart_table(self.job_id, j as i32 + 1, "load");
                jobs::set_table_details(self.job_id, j as i32 + 1, &json!(Position::default()));
            }
            self.seen = vec![Seen::new(); self.mappings.len()];
            jobs::set_stage(self.job_id, "load");
            return Ok(StepOutcome::Continue);
        }
        for j in 0..self.at.len() {
            jobs::checkpoint(self.job_id, j as i32 + 1, "done", 0, None);
        }
        Ok(self.done())
    }

    /// The end of the import: the copies its `unique` lookups made dropped, the result.
    fn done(&self) -> StepOutcome {
        crate::import::lookups::release(self.job_id);
        StepOutcome::Done(self.result())
    }
}

/// A key read: its name, its named parts, its value.
pub type KeyValue = (String, Vec<(String, String)>, KvValue);

/// One batch of mapping `m`'s keys from `cursor`: SCAN MATCH (narrowed to `tenant`'s keys)
/// until `batch_size` keys are found or the cursor is back at 0, the keys checked against the
/// pattern exactly, their values read pipelined. Returns the cursor after them, the keys, and
/// how many SCAN gave that are not the pattern's (or the tenant's, or gone).
pub fn scan_batch(
    store: &mut Store,
    scan_count: u64,
    m: &Mapping,
    tenant: Option<&str>,
    mut cursor: u64,
) -> Result<(u64, Vec<KeyValue>, i64)> {
    let fixed = match (tenant, &m.tenant_part) {
        (Some(t), Some(p)) => Some((p.as_str(), t)),
        _ => None,
    };
    let glob = m.pattern.glob(fixed);
    let size = m.options.batch_size.max(1) as usize;
    let mut keys: Vec<Vec<u8>> = vec![];
    let mut skipped = 0i64;
    loop {
        let (next, found) = store.scan(cursor, &glob, scan_count)?;
        keys.extend(found);
        cursor = next;
        if cursor == 0 || keys.len() >= size {
            break;
        }
    }
    let mut matched: Vec<(String, Vec<(String, String)>)> = vec![];
    let mut raw: Vec<Vec<u8>> = vec![];
    for k in keys {
        let Ok(text) = String::from_utf8(k.clone()) else {
            skipped += 1;
            continue;
        };
        let Some(parts) = m.pattern.matches(&text) else {
            skipped += 1;
            continue;
        };
        if let Some((p, t)) = fixed {
            if parts.iter().find(|(n, _)| n == p).map(|(_, v)| v.as_str()) != Some(t) {
                skipped += 1;
                continue;
            }
        }
        matched.push((text, parts));
        raw.push(k);
    }
    let values = store.read(&raw)?;
    let mut out = vec![];
    for ((k, parts), v) in matched.into_iter().zip(values) {
        if matches!(v, KvValue::Missing) {
            skipped += 1;
            continue;
        }
        out.push((k, parts, v));
    }
    Ok((cursor, out, skipped))
}

/// The row of one key by mapping `m` (the import's conversions and rules), or why it is
/// refused.
pub fn prepare_key(
    m: &Mapping,
    seen: &mut Seen,
    key: &str,
    parts: &[(String, String)],
    value: &KvValue,
) -> std::result::Result<Vec<Option<String>>, Vec<Reason>> {
    let mut reasons = vec![];
    if let KvValue::Other(t) = value {
        reasons.push(Reason::new(
            pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the value is a {t}, which import_kv does not read"),
        ));
        return Err(reasons);
    }
    let mut parsed = None;
    let mut unreadable = false;
    let date_format = m.options.date_format.as_deref();
    let out = m.plan.prepare_row(
        |field, reasons| {
            let (spec, default) = &m.fields[field];
            match spec.extract(key, parts, value, &mut parsed) {
                Ok(Some(v)) => crate::import::formats::json_text(&v),
                Ok(None) => default.as_ref().and_then(crate::import::formats::json_text),
                Err(why) => {
                    // One reason for a value that is not JSON, however many paths read it.
                    if !unreadable {
                        reasons.push(Reason::new(
                            pgrx::PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                            format!("\"{}\": {why}", m.plan.fields[field]),
                        ));
                    }
                    unreadable = true;
                    None
                }
            }
        },
        seen,
        date_format,
        &mut reasons,
    );
    if reasons.is_empty() {
        Ok(out)
    } else {
        Err(reasons)
    }
}

impl Steps for KvImport {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, Report> {
        Ok(self.one_step()?)
    }

    fn stopped(&mut self) {
        crate::import::lookups::release(self.job_id);
    }
}

/// `kv_import`, the job kind of `import_kv`.
pub struct KvImportKind;

impl JobKind for KvImportKind {
    fn name(&self) -> &'static str {
        "kv_import"
    }
    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_imports()
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_operator"
    }
    fn steps(&self, job: &Job) -> std::result::Result<Box<dyn Steps>, Report> {
        Ok(Box::new(KvImport::from_job(job)?))
    }
    /// Inline, one transaction; a committing run keeps what its committed steps wrote (its
    /// checkpoints say how far it got), as the file import does.
    fn revert(&self, job: &Job, final_status: Status) -> std::result::Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}

/// Checks the call and creates the job; the caller runs it. Returns the job id and whether it
/// is only deferred (`defer`).
pub fn submit(source: &str, mapping: &Value, raw: &Value, background: bool) -> Result<(i64, bool)> {
    let options = KvOptions::parse(raw)?;
    let src = source::load(source)?;
    let mappings = mapping::parse(mapping, &options)?;
    for m in &mappings {
        if options.tenant.is_some() && m.tenant_part.is_none() {
            return Err(Error::BadMapping {
                message: format!(
                    "option \"tenant\" needs a part naming the tenant, and pattern \"{}\" has none",
                    m.pattern.text
                ),
                hint: Some("Name the tenant in the pattern: \"tenant:{subdomain}\".".into()),
            });
        }
        let privileges = match m.options.on_conflict {
            OnConflict::Overwrite | OnConflict::Merge => "INSERT, UPDATE",
            _ => "INSERT",
        };
        crate::pg::require_table_privileges(
            &m.plan.target.sql,
            &m.plan.target.display,
            privileges,
            "import_kv",
        )?;
    }
    let mut stored = raw.clone();
    if !stored.is_object() {
        stored = json!({});
    }
    stored[META_KEY] = serde_json::to_value(Meta {
        source: src.name.clone(),
        mapping: mapping.clone(),
    })
    .expect("plain data");
    let executor = if background {
        Executor::Background
    } else {
        Executor::Inline
    };
    let tenant = options.tenant.clone().unwrap_or_else(|| "*".into());
    let id = jobs::create("kv_import", &src.name, &tenant, &stored, executor);
    Ok((id, options.defer.unwrap_or(false)))
}
