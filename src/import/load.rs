//! The import step driver: one batch of records per step, prepared (fields extracted,
//! converted, checked against the rules), checked against `references`, written in one
//! statement, and checkpointed with the position reached.
//!
//! A committing run (`CALL run_job`, background) that may not keep bad rows
//! (`continue_on_error` off) first reads the whole file in a `check` stage that writes
//! nothing, so that a bad line fails the job before any step commits; inline runs are one
//! transaction anyway and load straight away.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use serde_json::{json, Value};

use super::cells::{Cells, Rows};
use super::error::{Error, Reason, Result};
use super::formats::{self, Format, Next, RawRecord, RawRows, Reader, Record, Values};
use super::options::ImportOptions;
use super::plan::{Plan, Target};
use super::refusals;
use super::rules::Seen;
use super::{source, Meta, META_KEY};
use crate::error::{OrRaise, Report};
use crate::jobs::kind::Steps;
use crate::jobs::{self, Executor, Job, StepOutcome};
use crate::sys::{rolled_back_subtransaction, try_subtransaction};

/// The job's one checkpoint row in `tenant_ops.job_tables`.
const STEP: i32 = 1;

/// Where a run is: what `job_tables.details` keeps after each step.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Position {
    /// Records consumed (written, refused or skipped by a conflict).
    records: i64,
    /// The line the next record starts on.
    line: u64,
    /// Bytes of the file read.
    bytes: u64,
    refused: i64,
    written: i64,
    /// Whether the target held rows when the import began (decided at its first step): the
    /// only rows a `unique` value must be looked up in, the import's own being in its
    /// file-wide set (rebuilt on a resume). None until decided.
    #[serde(default)]
    target_held_rows: Option<bool>,
}

/// An open file with its reader and plan.
struct Open {
    reader: Box<dyn Reader>,
    plan: Plan,
    /// For positional records: each plan field's index in the record.
    positions: Vec<Option<usize>>,
    /// SQL: a row's value for a column the plan does not fill refuses the row (JSON's extra
    /// keys are skipped, but an INSERT's values are all meant for the table).
    every_key: bool,
    /// A record read ahead (the first JSON record, read for its keys).
    ahead: Option<Record>,
    bytes_read: Rc<Cell<u64>>,
    bytes_total: u64,
    described: Value,
}

pub struct Import {
    job_id: i64,
    meta: Meta,
    options: ImportOptions,
    stage: String,
    at: Position,
    open: Option<Open>,
    seen: Seen,
    first_errors: Vec<Value>,
    /// The last step's batch, emptied: its buffers for the next (touching fresh memory each
    /// step cost page faults).
    spare: Option<Batch>,
}

/// Where a batch's row came from: record number `n` of the batch's [`RawRows`] (CSV; an
/// NDJSON line), or a record of its own (the other formats).
enum Source {
    Raw(usize),
    Line(usize),
    Record(Record),
}

/// A record to prepare.
enum Row<'a> {
    Raw(RawRecord<'a>),
    Line(RawRecord<'a>),
    Record(&'a Record),
}

impl Source {
    fn row<'a>(&'a self, raw: &'a RawRows) -> Row<'a> {
        match self {
            Source::Raw(n) => Row::Raw(raw.record(*n)),
            Source::Line(n) => Row::Line(raw.record(*n)),
            Source::Record(r) => Row::Record(r),
        }
    }
}

impl<'a> Row<'a> {
    fn line(&self) -> u64 {
        match self {
            Row::Raw(r) | Row::Line(r) => r.line,
            Row::Record(r) => r.line,
        }
    }

    /// An NDJSON line's members (the job's error when the line is not a JSON object).
    fn members(&self) -> Result<Option<formats::ndjson::Fields<'a>>> {
        match self {
            Row::Line(r) => Ok(Some(formats::ndjson::parse_line(
                r.line,
                r.field(0).unwrap_or_default(),
            )?)),
            _ => Ok(None),
        }
    }

    /// The record as it was read, for `tenant_ops.job_errors`.
    fn raw(&self, fields: &[String]) -> Value {
        match self {
            Row::Raw(r) => r.raw(fields),
            // The object as serde_json reads it (it did when the line was read).
            Row::Line(r) => r
                .field(0)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null),
            Row::Record(r) => r.raw(fields),
        }
    }
}

/// One batch of prepared rows: their values (one per column filled from a field, in the
/// order of the batch arrays) and where each came from, kept for the rows refused later
/// (`references`, a batch the database refuses).
struct Batch {
    cells: Rows,
    raw: RawRows,
    sources: Vec<Source>,
}

impl Batch {
    fn new(n: usize, capacity: usize) -> Batch {
        Batch {
            cells: Rows::new(n, capacity),
            raw: RawRows::default(),
            sources: Vec::with_capacity(capacity),
        }
    }

    /// Empty for the next step, its buffers kept.
    fn clear(&mut self) {
        self.cells.clear();
        self.raw.clear();
        self.sources.clear();
    }

    fn len(&self) -> usize {
        self.sources.len()
    }

    fn row(&self, i: usize) -> Row<'_> {
        self.sources[i].row(&self.raw)
    }

    /// The batch without the rows at `drop`.
    fn without(self, drop: &HashSet<usize>) -> Batch {
        Batch {
            cells: self.cells.without(drop),
            raw: self.raw,
            sources: self
                .sources
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, r)| r)
                .collect(),
        }
    }
}

impl Import {
    pub fn from_job(job: &Job) -> Result<Import> {
        let mut raw = job.options.clone();
        let meta: Meta = raw
            .as_object_mut()
            .and_then(|m| m.remove(META_KEY))
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| Error::Io {
                message: format!("job {} is not an import job of this version", job.id),
                disk_full: false,
            })?;
        let options = ImportOptions::parse(&raw)?;
        let check_first =
            job.executor != Executor::Inline && !options.continue_on_error && !options.dry_run;
        let tables = jobs::tables(job.id);
        let (stage, at) = match tables.first() {
            Some(t) => (
                t.stage.clone(),
                serde_json::from_value(t.details.clone()).unwrap_or_default(),
            ),
            None => {
                let stage = if check_first { "check" } else { "load" };
                jobs::add_table(
                    job.id,
                    STEP,
                    meta.target as u32,
                    None,
                    "import",
                    None,
                    json!({}),
                );
                jobs::set_stage(job.id, stage);
                (stage.to_string(), Position::default())
            }
        };
        Ok(Import {
            job_id: job.id,
            meta,
            options,
            stage,
            at,
            open: None,
            seen: Seen::new(),
            first_errors: vec![],
            spare: None,
        })
    }

    fn writing(&self) -> bool {
        self.stage == "load"
    }

    /// Opens the file, plans the import and moves to the checkpoint (re-reading the records
    /// before it without writing them: `unique` needs their values).
    fn open(&mut self) -> Result<()> {
        let path = if self.meta.spooled {
            std::path::PathBuf::from(&self.meta.file)
        } else {
            source::resolve(&self.meta.file)?
        };
        let mut opened = source::open(&path, self.options.encoding)?;
        let format = match Format::parse(&self.meta.format)? {
            Some(f) => f,
            // A zip archive, told before any decoding of the text.
            None if opened.zip => Format::Xlsx,
            None => {
                let head = opened
                    .peek(64 * 1024)
                    .map_err(|e| source::io_error("read", &path, &e))?;
                Format::detect(&head, &self.meta.file)
            }
        };
        if format == Format::Xlsx && self.options.encoding.is_some() {
            return Err(crate::error::Common::InvalidOption(
                "option \"encoding\" does not apply to XLSX (a workbook's text is UTF-8 or UTF-16 by its own rules)".into(),
                Some("Leave \"encoding\" out.".into()),
            )
            .into());
        }
        let target = Target::load(self.meta.target as u32)?;
        let defaults: Vec<String> = target.writable().map(|c| c.name.clone()).collect();
        let mut reader = formats::reader(
            format,
            opened.text,
            &self.options,
            &defaults,
            self.meta.target as u32,
        )?;
        let (known, exact, ahead) = match reader.fields() {
            Some(f) => (f.to_vec(), true, None),
            None => {
                // JSON records name their fields each: the first record's keys, and every
                // column without a default (a record without its key gives NULL, as the
                // default would); a column with a default is filled only when the first
                // record has it (or `columns` names it), else its default applies.
                let first = reader.next_record()?;
                let mut keys: Vec<String> = match &first {
                    Some(Record {
                        values: Values::Named(m),
                        ..
                    }) => m.keys().cloned().collect(),
                    _ => vec![],
                };
                if first.is_some() {
                    for c in target.writable().filter(|c| !c.has_default) {
                        if !keys.contains(&c.name) {
                            keys.push(c.name.clone());
                        }
                    }
                }
                (keys, false, first)
            }
        };
        // Without a header or a record (an empty file) the target's own names plan it.
        let plan = if known.is_empty() {
            Plan::new(target, &self.options, &defaults, false)?
        } else {
            Plan::new(target, &self.options, &known, exact)?
        };
        let positions = plan
            .fields
            .iter()
            .map(|f| known.iter().position(|k| k == f))
            .collect();
        let delimiter = reader.delimiter().map(|d| (d as char).to_string());
        let sniffed = delimiter.is_some() && self.options.csv.delimiter.is_none();
        let mut described = json!({
            "format": format.name(),
            "format_detected": self.meta.format.eq_ignore_ascii_case("auto") || self.meta.format.is_empty(),
            "encoding": opened.encoding,
            "gzip": opened.gzip,
            "delimiter": delimiter,
            "delimiter_sniffed": sniffed,
            "fields": known,
            "columns": plan.columns.iter().map(|c| c.column.name.clone()).collect::<Vec<_>>(),
        });
        if let Some(sheet) = reader.sheet() {
            described["sheet"] = json!(sheet);
        }
        if self.at.records == 0 && self.stage != "load_started" {
            jobs::log(
                self.job_id,
                "import.opened",
                Some(&self.stage),
                Some(self.meta.target as u32),
                None,
                Some(&format!("reading {} as {}", self.label(), format.name())),
                Some(described.clone()),
            );
        }
        self.open = Some(Open {
            reader,
            plan,
            positions,
            every_key: format == Format::Sql,
            ahead,
            bytes_read: opened.bytes_read,
            bytes_total: opened.bytes_total,
            described,
        });
        // Back to the checkpoint.
        self.seen.clear();
        let mut skipped = 0;
        let mut raw = RawRows::default();
        let mut cells = Rows::new(self.open.as_ref().expect("opened").plan.arrays, 1);
        while skipped < self.at.records {
            raw.clear();
            let source = match self.next_into(&mut raw)? {
                Next::End => break,
                Next::Raw => Source::Raw(0),
                Next::Line => Source::Line(0),
                Next::Record(r) => Source::Record(r),
            };
            let row = source.row(&raw);
            let members = row.members()?;
            let mark = cells.mark();
            let _ = self.prepare(row, members.as_ref(), &mut cells);
            cells.truncate(mark);
            skipped += 1;
        }
        Ok(())
    }

    fn label(&self) -> String {
        if self.meta.spooled {
            "the bytes sent".into()
        } else {
            format!("\"{}\"", self.meta.file)
        }
    }

    /// The next record, appended to `raw` where the reader can.
    fn next_into(&mut self, raw: &mut RawRows) -> Result<Next> {
        let open = self.open.as_mut().expect("opened");
        if let Some(r) = open.ahead.take() {
            return Ok(Next::Record(r));
        }
        open.reader.next_into(raw)
    }

    /// The record's values (converted) appended to `cells` as one row, or why it is refused
    /// (and `cells` as it was).
    /// `members`: an NDJSON line's, read by [`Row::members`].
    fn prepare(
        &mut self,
        row: Row<'_>,
        members: Option<&formats::ndjson::Fields<'_>>,
        cells: &mut Rows,
    ) -> std::result::Result<(), Vec<Reason>> {
        let open = self.open.as_ref().expect("opened");
        let plan = &open.plan;
        let date_format = self.options.date_format.as_deref();
        let mut reasons = vec![];
        if let (
            true,
            Row::Record(Record {
                values: Values::Named(m),
                ..
            }),
        ) = (open.every_key, &row)
        {
            for k in m.keys().filter(|k| !plan.fields.contains(k)) {
                reasons.push(Reason::new(
                    pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("column \"{k}\" is not filled by this import: the first row does not give it"),
                ));
            }
        }
        let seen = &mut self.seen;
        let positions = &open.positions;
        let mark = cells.mark();
        plan.prepare_row_into(
            |field, reasons| match &row {
                Row::Raw(r) => positions[field].and_then(|i| r.field(i)).map(Cow::Borrowed),
                Row::Line(_) => members?.text(&plan.fields[field]),
                Row::Record(record) => match &record.values {
                    Values::Positional(v) => {
                        let at = positions[field];
                        if let Some(i) = at {
                            reasons.extend(
                                record
                                    .faults
                                    .iter()
                                    .filter(|(f, _)| *f == i)
                                    .map(|(_, r)| r.clone()),
                            );
                        }
                        at.and_then(|i| v.get(i))
                            .and_then(|v| v.as_deref())
                            .map(Cow::Borrowed)
                    }
                    Values::Named(m) => m.get(&plan.fields[field]).and_then(formats::json_str),
                },
            },
            seen,
            date_format,
            &mut reasons,
            |v| cells.push(v.as_deref()),
        );
        if reasons.is_empty() {
            Ok(())
        } else {
            cells.truncate(mark);
            Err(reasons)
        }
    }

    /// A refused row: kept in job_errors (`continue_on_error`), counted (dry run), or the
    /// job's error.
    fn refuse(&mut self, row: Row<'_>, reasons: Vec<Reason>) -> Result<()> {
        let line = row.line();
        if self.options.dry_run {
            self.at.refused += 1;
            refusals::describe(&mut self.first_errors, ("line", json!(line)), &reasons);
            return Ok(());
        }
        if !self.options.continue_on_error || !self.writing() {
            return Err(Error::BadRow { line, reasons });
        }
        let fields = self
            .open
            .as_ref()
            .and_then(|o| o.reader.fields().map(|f| f.to_vec()))
            .unwrap_or_default();
        refusals::record(
            self.job_id,
            self.meta.target as u32,
            &line.to_string(),
            row.raw(&fields),
            &reasons,
        );
        self.at.refused += 1;
        if let Some(max) = self.options.max_errors {
            if self.at.refused > max {
                return Err(Error::TooManyErrors { max, line });
            }
        }
        Ok(())
    }

    /// Rows the rules checked in the database refuse (`references`, `unique` against the
    /// table: `lookups`).
    fn check_database_rules(&mut self, batch: Batch) -> Result<Batch> {
        let plan = &self.open.as_ref().expect("opened").plan;
        let looks_up = plan.columns.iter().any(|c| c.unique_in_table.is_some());
        if looks_up && self.at.target_held_rows.is_none() {
            self.at.target_held_rows = Some(
                Spi::get_one::<bool>(&format!("SELECT EXISTS (SELECT FROM {})", plan.target.sql))
                    .or_raise()
                    .unwrap_or(true),
            );
        }
        let against_table = self.at.target_held_rows != Some(false);
        let bad = in_batch_context(|| {
            super::lookups::refusals(self.job_id, 0, plan, &batch.cells, against_table)
        });
        if bad.is_empty() {
            return Ok(batch);
        }
        let mut drop = HashSet::new();
        for (i, reasons) in bad {
            self.refuse(batch.row(i), reasons)?;
            drop.insert(i);
        }
        Ok(batch.without(&drop))
    }

    /// Writes the batch in one statement; should it fail, row by row (each in a
    /// subtransaction) to refuse the rows at fault. Returns the rows written.
    fn write(&mut self, batch: &Batch) -> Result<i64> {
        if batch.len() == 0 {
            return Ok(0);
        }
        let open = self.open.as_ref().expect("opened");
        let sql = open.plan.insert.clone();
        let constants = open.plan.constants.clone();
        let plan = &open.plan;
        let whole = if super::copy::usable(plan, self.options.on_conflict) {
            in_batch_context(|| try_subtransaction(|| super::copy::write(plan, &batch.cells)))
        } else {
            in_batch_context(|| try_subtransaction(|| insert(&sql, &batch.cells, &constants)))
        };
        if let Ok(n) = whole {
            return Ok(n);
        }
        let mut written = 0;
        for i in 0..batch.len() {
            let row: Vec<Vec<Option<String>>> = (0..batch.cells.width())
                .map(|k| vec![batch.cells.cell(i, k).map(str::to_string)])
                .collect();
            match in_batch_context(|| try_subtransaction(|| insert(&sql, &row, &constants))) {
                Ok(n) => written += n,
                Err(e) => self.refuse(batch.row(i), vec![Reason::new(e.sqlstate, e.message)])?,
            }
        }
        Ok(written)
    }

    fn result(&self) -> Value {
        let open = self.open.as_ref();
        let mut r = open
            .map(|o| o.described.clone())
            .unwrap_or_else(|| json!({}));
        r["target"] = json!(open.map(|o| o.plan.target.display.clone()));
        r["source"] = json!(if self.meta.spooled {
            "(bytes)".to_string()
        } else {
            self.meta.file.clone()
        });
        r["records"] = json!(self.at.records);
        r["rows_written"] = json!(self.at.written);
        r["rows_refused"] = json!(self.at.refused);
        r["lines"] = json!(self.at.line.saturating_sub(1));
        r["bytes"] = json!(open.map(|o| o.bytes_total));
        if self.options.dry_run {
            r["dry_run"] = json!(true);
            r["first_errors"] = json!(self.first_errors);
        }
        r
    }

    fn one_step(&mut self) -> Result<StepOutcome> {
        if self.open.is_none() {
            self.open()?;
        }
        let n = self.open.as_ref().expect("opened").plan.arrays;
        let size = self.options.batch_size as usize;
        let mut batch = match self.spare.take() {
            Some(mut b) if b.cells.width() == n => {
                b.clear();
                b
            }
            _ => Batch::new(n, size),
        };
        let mut consumed = 0i64;
        let mut eof = false;
        while batch.len() < size {
            let source = match self.next_into(&mut batch.raw)? {
                Next::End => {
                    eof = true;
                    break;
                }
                Next::Raw => Source::Raw(batch.raw.len() - 1),
                Next::Line => Source::Line(batch.raw.len() - 1),
                Next::Record(r) => Source::Record(r),
            };
            consumed += 1;
            let row = source.row(&batch.raw);
            let members = row.members()?;
            match self.prepare(row, members.as_ref(), &mut batch.cells) {
                Ok(()) => batch.sources.push(source),
                Err(reasons) => {
                    self.refuse(source.row(&batch.raw), reasons)?;
                    if let Source::Raw(_) | Source::Line(_) = source {
                        batch.raw.pop();
                    }
                }
            }
        }
        let batch = self.check_database_rules(batch)?;
        let written = if self.writing() && !self.options.dry_run {
            self.write(&batch)?
        } else if self.options.dry_run {
            match rolled_back_subtransaction(|| self.write(&batch)) {
                Ok(r) => r?,
                Err(e) => {
                    return Err(Error::Io {
                        message: e.message,
                        disk_full: false,
                    })
                }
            }
        } else {
            0
        };
        self.spare = Some(batch);
        let open = self.open.as_ref().expect("opened");
        self.at.records += consumed;
        self.at.written += written;
        self.at.line = open.reader.line();
        self.at.bytes = open.bytes_read.get();
        let bytes_total = open.bytes_total;
        jobs::checkpoint(self.job_id, STEP, &self.stage, written, None);
        jobs::set_table_details(
            self.job_id,
            STEP,
            &serde_json::to_value(&self.at).expect("plain data"),
        );
        jobs::notify_progress(
            self.job_id,
            json!({"stage": self.stage, "rows": self.at.written, "records": self.at.records,
                   "refused": self.at.refused, "bytes": self.at.bytes, "bytes_total": bytes_total}),
        );
        if !eof {
            return Ok(StepOutcome::Continue);
        }
        if self.stage == "check" {
            // The whole file passed: load it from the start.
            jobs::log(
                self.job_id,
                "import.checked",
                Some("check"),
                Some(self.meta.target as u32),
                Some(self.at.records),
                Some("every record passed; loading"),
                None,
            );
            self.stage = "load".into();
            self.at = Position::default();
            self.open = None;
            jobs::restart_table(self.job_id, STEP, "load");
            jobs::set_table_details(self.job_id, STEP, &json!(Position::default()));
            jobs::set_stage(self.job_id, "load");
            return Ok(StepOutcome::Continue);
        }
        super::lookups::release(self.job_id);
        jobs::set_rows_total(self.job_id, STEP, self.at.written);
        jobs::checkpoint(self.job_id, STEP, "done", 0, None);
        if self.meta.spooled {
            source::remove_on_commit(std::path::PathBuf::from(&self.meta.file));
        }
        Ok(StepOutcome::Done(self.result()))
    }
}

impl Steps for Import {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, Report> {
        Ok(self.one_step()?)
    }

    fn stopped(&mut self) {
        super::lookups::release(self.job_id);
    }
}

/// Runs `f` in a memory context of its own, deleted afterwards: a batch's arrays and
/// parameters never pile up over a long inline run.
pub fn in_batch_context<R>(f: impl FnOnce() -> R) -> R {
    let mut cx = PgMemoryContexts::new("tenant_ops import batch");
    unsafe { cx.switch_to(|_| f()) }
}

/// The batch INSERT with its arrays and constants bound; the rows written. The arrays are
/// bound by reference (their text is copied once, into the array datums).
pub fn insert(sql: &str, arrays: &(impl Cells + ?Sized), constants: &[Option<String>]) -> i64 {
    let mut args: Vec<pgrx::datum::DatumWithOid> =
        Vec::with_capacity(arrays.width() + constants.len());
    for k in 0..arrays.width() {
        let texts: Vec<Option<&str>> = (0..arrays.rows()).map(|r| arrays.cell(r, k)).collect();
        args.push(texts.into());
    }
    for c in constants {
        args.push(c.clone().into());
    }
    Spi::connect_mut(|c| c.update(sql, None, &args).map(|t| t.len() as i64)).or_raise()
}
