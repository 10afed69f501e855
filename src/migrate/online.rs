//! Online migration (`mode: online`): the tenant keeps writing while it is copied.
//!
//! `submit` installs a change capture of the tenant's rows (`crate::capture`) in the
//! transaction that creates the job, so it is in force before the copy takes its first
//! snapshot. The copy then runs as always (keyset batches, a commit per step), reading a
//! tenant that changes under it; nothing is detected or undone for that (see `changes.rs`).
//!
//! ## Applying changes
//!
//! A batch of changes is applied by **reading again the rows their keys name**, not by
//! replaying each change: for every captured table, the keys of the recorded changes are
//! taken; the source rows with those keys that are the tenant's now are written to the target
//! through the migration's own plan (key mapping, transforms, new tenant), replacing what the
//! target holds under their mapped keys; the mapped keys of the others (deleted, moved to
//! another tenant, key changed) are deleted from the target. All of it — reading and deleting
//! the recorded changes, reading the source, writing every target table — is **one
//! statement**, so it reads one snapshot S of the source and the target checks its foreign
//! keys once, at its end. Afterwards every target row of the tenant equals the source row at S:
//! rows with a change visible at S were just rewritten from S; rows without one have not
//! changed since the capture began, and so since the copy read them.
//!
//! Hence nothing is missed or applied twice whatever the order or the number of records: a row
//! the copy already saw, recorded again, is written to the same value; a change committed
//! before the capture is in the copy; a record left by a step that crashed is applied by the
//! next (the records are deleted in the transaction that applies them). An update of a parent
//! key (old key deleted, new key written, children rewritten by their own records of the
//! `ON UPDATE CASCADE`), a delete cascading through foreign keys, a row moving between
//! tenants: all are the same "read the key again".
//!
//! ## Stages
//!
//! `drain` (after `copy` and `fixup`) applies what was captured during the copy, so that the
//! target is one moment of the source when `constraints` builds the keys and foreign keys of
//! the tables the job created (until then their rows are replaced by delete and insert, having
//! no key to conflict on). `catchup` applies a batch per step, continuously, with the lag in
//! `tenant_ops.progress` and `migration.lagging`/`migration.caught_up` events when it crosses
//! the thresholds. [`cutover`] ends it: locks, drains, verifies, fences. With `reverse_sync`
//! the job goes on at `reverse_sync`: a capture of the target tables (`capture::install_mirror`)
//! whose records are written back to the old tables the same way, sides swapped, until a
//! second `cutover_migration(job, '{"reverse_sync": false}')` ends it or a rollback switches
//! back (`undo.rs`).

use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{Error, Result};
use super::options::{Mode, OnConflict};
use super::plan::TablePlan;
use super::{enter, Migration, Stage};
use crate::capture::{self, Capture};
use crate::error::{Common, OrRaise};
use crate::jobs::{self, StepOutcome};
use crate::options::{self, Seg, Wording};
use crate::scope::graph::Role;
use crate::sys::{try_subtransaction, with_job_window, with_settings};

/// What one application of changes did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Applied {
    /// Change records applied (and deleted).
    pub changes: i64,
    /// Target rows written and deleted.
    pub written: i64,
    pub deleted: i64,
}

impl Migration {
    /// The job's capture, which `submit` installed.
    fn capture(&self) -> Result<Capture> {
        capture::for_job(self.job_id).ok_or_else(|| Error::NotCatchingUp {
            job: self.job_id,
            status: "without a change capture".into(),
            stage: "-".into(),
        })
    }

    /// A job started again from `prepare` (a retry after an undo stopped its capture) installs
    /// a new one: in force before the copy's first snapshot, as one made at submission.
    pub(super) fn ensure_capture(&mut self) -> Result<()> {
        if capture::for_job(self.job_id).is_some_and(|c| c.status == "capturing") {
            return Ok(());
        }
        let loaded = self.load_scope()?;
        let id = capture::install(
            self.job_id,
            &loaded,
            &self.tenant,
            capture::Purpose::OnlineMigration,
        )?;
        jobs::log(
            self.job_id,
            "capture.started",
            Some("prepare"),
            None,
            None,
            Some(&format!("capture {id}")),
            None,
        );
        Ok(())
    }

    /// The statement applying every change of capture `capture` visible to it (see the module
    /// documentation), over the job's parameters and `$4` = the capture; it returns the
    /// records applied, the target rows written and those deleted.
    fn apply_sql(&mut self) -> Result<String> {
        let plans = self.owned_plans()?;
        let bare = plans.iter().any(|p| p.target.bare);
        if let Some((was_bare, sql)) = &self.apply_sql {
            if *was_bare == bare {
                return Ok(sql.clone());
            }
        }
        let sql = self.build_apply_sql(plans)?;
        self.apply_sql = Some((bare, sql.clone()));
        Ok(sql)
    }

    fn build_apply_sql(&self, plans: Vec<TablePlan>) -> Result<String> {
        let loaded = self.load_scope()?;
        let mut ctes = vec![
            "__tenant_ops_ch AS (DELETE FROM tenant_ops.capture_changes WHERE capture_id = $4 RETURNING table_name, op, row_data)"
                .to_string(),
        ];
        let (mut written, mut deleted) = (vec![], vec![]);
        for (i, p) in plans.iter().enumerate() {
            let (Some(key), Some(tkey)) = (&p.key, &p.target_key) else {
                return Err(crate::capture::Error::NoPrimaryKey {
                    table: p.source_display.clone(),
                }
                .into());
            };
            let cols = |alias: &str| {
                key.iter()
                    .map(|c| format!("{alias}.{}", c.quoted))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // The rows recorded, and those whose parent (along the ownership path) came into
            // the tenant or left it (op I or D, or itself such a descendant: M): they moved
            // with it without a change of their own.
            let descendants = match self.ownership_parent(&loaded, p.source, &plans) {
                Some((j, parent_cols, child_cols)) => format!(
                    " UNION ALL SELECT s.*, 'M' FROM {src} s
                       WHERE ({child}) IN (SELECT {parent} FROM __tenant_ops_k{j} k
                                            WHERE k.__tenant_ops_op IN ('I', 'D', 'M'))",
                    src = p.source_sql,
                    child = child_cols
                        .iter()
                        .map(|c| format!("s.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    parent = parent_cols
                        .iter()
                        .map(|c| format!("k.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                None => String::new(),
            };
            ctes.push(format!(
                "__tenant_ops_k{i} AS (SELECT r.*, c.op::text AS __tenant_ops_op FROM __tenant_ops_ch c
                   CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::{src}, c.row_data) r
                  WHERE c.table_name = {oid}::pg_catalog.oid{descendants})",
                src = p.source_sql,
                oid = p.source
            ));
            ctes.push(format!(
                "__tenant_ops_l{i} AS (SELECT s.* FROM {src} s WHERE ({filter})
                   AND ({s}) IN (SELECT {k} FROM __tenant_ops_k{i} k))",
                src = p.source_sql,
                filter = p.filter,
                s = cols("s"),
                k = cols("k"),
            ));
            let mut target_cols: Vec<String> = p.columns.iter().map(|(c, _)| c.clone()).collect();
            let mut exprs: Vec<String> = p.columns.iter().map(|(_, e)| e.clone()).collect();
            for (c, e) in &p.deferred {
                target_cols.push(c.clone());
                exprs.push(e.clone());
            }
            let key_cols: Vec<&str> = tkey.iter().map(|(c, _)| c.as_str()).collect();
            let insert = |conflict: &str| {
                format!(
                    "INSERT INTO {tgt} ({cols}) SELECT {sel} FROM __tenant_ops_l{i} s{joins} {conflict} RETURNING 1",
                    tgt = p.target.sql,
                    cols = target_cols.join(", "),
                    sel = exprs.join(", "),
                    joins = p.joins,
                )
            };
            if p.target.bare {
                // No key to conflict on yet: every target row a record names goes, and the
                // tenant's rows of those keys come back (one snapshot: the insert does not see
                // the delete's rows gone, nor the delete the insert's rows).
                let all = format!("(SELECT k.* FROM __tenant_ops_k{i} k)");
                ctes.push(format!(
                    "__tenant_ops_d{i} AS (DELETE FROM {tgt} t WHERE {rows} RETURNING 1)",
                    tgt = p.target.sql,
                    rows = p.target_rows(&all, "true"),
                ));
                ctes.push(format!("__tenant_ops_w{i} AS ({})", insert("")));
            } else {
                let updatable: Vec<&str> = target_cols
                    .iter()
                    .map(String::as_str)
                    .filter(|c| !key_cols.contains(c))
                    .collect();
                let key_list = key_cols.join(", ");
                let conflict = OnConflict::Overwrite.clause(
                    &p.target.sql,
                    Some(key_list.as_str()),
                    &updatable,
                );
                ctes.push(format!("__tenant_ops_w{i} AS ({})", insert(&conflict)));
                let gone = format!(
                    "(SELECT k.* FROM __tenant_ops_k{i} k
                       WHERE NOT EXISTS (SELECT FROM __tenant_ops_l{i} l WHERE ({l}) = ({k})))",
                    l = cols("l"),
                    k = cols("k"),
                );
                ctes.push(format!(
                    "__tenant_ops_d{i} AS (DELETE FROM {tgt} t WHERE {rows} RETURNING 1)",
                    tgt = p.target.sql,
                    rows = p.target_rows(&gone, "true"),
                ));
            }
            written.push(format!(
                "(SELECT pg_catalog.count(*) FROM __tenant_ops_w{i})"
            ));
            deleted.push(format!(
                "(SELECT pg_catalog.count(*) FROM __tenant_ops_d{i})"
            ));
        }
        Ok(batch_statement(&ctes, &written, &deleted))
    }

    /// The ownership parent of `table` among `plans` (its position), with the parent's and the
    /// child's columns of the ownership edge (quoted).
    fn ownership_parent(
        &self,
        loaded: &crate::scope::LoadedScope,
        table: u32,
        plans: &[TablePlan],
    ) -> Option<(usize, Vec<String>, Vec<String>)> {
        let e = &loaded.catalog.edges[loaded.resolved.get(table)?.owner_edge?];
        if e.parent == table {
            return None;
        }
        let j = plans.iter().position(|p| p.source == e.parent)?;
        let (parent, child) = (loaded.catalog.table(e.parent), loaded.catalog.table(table));
        Some((
            j,
            e.parent_cols
                .iter()
                .map(|c| parent.quoted_col(c).to_string())
                .collect(),
            e.child_cols
                .iter()
                .map(|c| child.quoted_col(c).to_string())
                .collect(),
        ))
    }

    /// Applies every change of `capture` visible now, in one statement, as the job's
    /// submitter (the caller), inside the job's window (the records are its).
    pub(super) fn apply_changes(&mut self, capture: &Capture) -> Result<Applied> {
        let sql = self.apply_sql()?;
        Ok(self.run_batch(&sql, capture))
    }

    /// The plans of the tables whose changes are captured and applied: the root and owned
    /// ones (shared rows are no tenant's).
    pub(super) fn owned_plans(&mut self) -> Result<Vec<TablePlan>> {
        Ok(self
            .plans()?
            .iter()
            .filter(|p| p.role != Role::Shared)
            .cloned()
            .collect())
    }

    /// Runs a batch statement ([`batch_statement`]) over `capture`'s records (its last
    /// parameter) inside the job's window, and records what it applied.
    pub(super) fn run_batch(&self, sql: &str, capture: &Capture) -> Applied {
        let mut args = self.params.args();
        args.push(capture.id.into());
        let (changes, written, deleted) = with_job_window(self.job_id, || {
            Spi::get_three_with_args::<i64, i64, i64>(sql, &args)
        })
        .or_raise();
        let applied = Applied {
            changes: changes.unwrap_or(0),
            written: written.unwrap_or(0),
            deleted: deleted.unwrap_or(0),
        };
        if applied.changes > 0 {
            capture::record_applied(capture.id, applied.changes);
        }
        applied
    }

    /// The `drain` stage: what was captured during the copy, applied at once.
    pub(super) fn drain_step(&mut self) -> Result<()> {
        let capture = self.capture()?;
        capture::lock_apply(capture.id);
        let applied = self.apply_changes(&capture)?;
        jobs::log(
            self.job_id,
            "step",
            Some("drain"),
            None,
            Some(applied.changes),
            None,
            Some(json!({"written": applied.written, "deleted": applied.deleted})),
        );
        Ok(())
    }

    /// One `catchup` step: the changes recorded since the last one, applied; the lag events.
    /// A cutover committed meanwhile (seen once the apply lock is ours) moved the job on.
    pub(super) fn catchup_step(&mut self) -> Result<StepOutcome> {
        let capture = self.capture()?;
        let before = capture::lag(capture.id);
        if before.changes == 0 {
            // Nothing to do: wait a little for writes rather than spin; what comes meanwhile
            // is the next step's.
            Spi::run("SELECT pg_catalog.pg_sleep(0.05)").or_raise();
            if capture::set_lagging(capture.id, false) {
                self.notify_lag(before, false);
            }
            return Ok(StepOutcome::Continue);
        }
        capture::lock_apply(capture.id);
        if capture::status(capture.id) != "capturing" {
            return Ok(StepOutcome::Continue);
        }
        let applied = self.apply_changes(&capture)?;
        if applied.changes > 0 {
            jobs::log(
                self.job_id,
                "step",
                Some("catchup"),
                None,
                Some(applied.changes),
                None,
                Some(json!({"written": applied.written, "deleted": applied.deleted})),
            );
        }
        let lagging = before.changes > self.options.lag_alert_changes
            || before.seconds > self.options.lag_alert_seconds;
        if capture::set_lagging(capture.id, lagging) {
            self.notify_lag(before, lagging);
        }
        Ok(StepOutcome::Continue)
    }

    /// `migration.lagging` (the lag crossed a threshold) or `migration.caught_up`.
    fn notify_lag(&self, lag: capture::Lag, lagging: bool) {
        jobs::notify(
            self.job_id,
            if lagging {
                "migration.lagging"
            } else {
                "migration.caught_up"
            },
            Some(
                json!({"lag_changes": lag.changes, "lag_seconds": lag.seconds,
                        "lag_alert_changes": self.options.lag_alert_changes,
                        "lag_alert_seconds": self.options.lag_alert_seconds}),
            ),
        );
    }
}

/// The options of `cutover_migration`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CutoverDocument {
    #[serde(default, deserialize_with = "options::present")]
    lock_timeout: Option<Value>,
    /// Verify every table under the locks (default), or leave it to `verify_migration`: the
    /// verification reads the whole tenant, so it sets the length of the write stall.
    #[serde(default, deserialize_with = "options::present")]
    verify: Option<bool>,
    /// Keep the old tables updated from the new ones after the cutover (see [`Migration::reverse_step`]);
    /// on a job already cut over with it, `false` ends the reverse sync.
    #[serde(default, deserialize_with = "options::present")]
    reverse_sync: Option<bool>,
}

struct CutoverWording;

impl Wording for CutoverWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        match path {
            [Seg::Key(k), ..] => format!("option \"{k}\""),
            _ => "options".into(),
        }
    }

    fn hint(&self, path: &[Seg], problem: &options::Problem) -> Option<String> {
        match (path, problem) {
            ([], options::Problem::UnknownField { known, .. }) => Some(format!(
                "cutover_migration options are: {}.",
                known.join(", ")
            )),
            _ => options::default_hint(path, problem),
        }
    }
}

/// The default `lock_timeout` of a cutover: how long it may try to lock the tenant's tables.
const DEFAULT_LOCK_TIMEOUT: &str = "5000ms";

/// The longest one attempt at the cutover's locks waits (see [`cutover`]).
const LOCK_ATTEMPT_MS: u64 = 200;

/// The milliseconds of a `lock_timeout` as [`lock_timeout`] writes it (`"<n>ms"`).
/// The one statement a batch of captured changes is applied with: the CTEs (the changes
/// `__tenant_ops_ch`, each table's writes `__tenant_ops_w<i>` and deletes
/// `__tenant_ops_d<i>`), then the changes read, the rows written and the rows deleted.
pub(super) fn batch_statement(ctes: &[String], written: &[String], deleted: &[String]) -> String {
    let sum = |v: &[String]| {
        if v.is_empty() {
            "0".to_string()
        } else {
            v.join(" + ")
        }
    };
    format!(
        "WITH {} SELECT (SELECT pg_catalog.count(*) FROM __tenant_ops_ch), ({})::pg_catalog.int8, ({})::pg_catalog.int8",
        ctes.join(",\n"),
        sum(written),
        sum(deleted)
    )
}

fn lock_timeout_ms(text: &str) -> u64 {
    text.trim_end_matches("ms").parse().unwrap_or(5000)
}

/// `lock_timeout` as a setting's value: milliseconds, or an interval's text; checked by the
/// server before anything is locked.
fn lock_timeout(doc: &CutoverDocument) -> std::result::Result<String, Error> {
    let text = match &doc.lock_timeout {
        None | Some(Value::Null) => return Ok(DEFAULT_LOCK_TIMEOUT.into()),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|ms| ms > 0) => {
            return Ok(format!("{}ms", n.as_u64().unwrap_or(0)))
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(Common::InvalidOption(
                format!("option \"lock_timeout\" must be a positive number of milliseconds or an interval, not {other}"),
                Some("Write it as {\"lock_timeout\": \"2s\"} or {\"lock_timeout\": 2000}.".into()),
            )
            .into())
        }
    };
    let ms = try_subtransaction(|| {
        Spi::get_one_with_args::<f64>(
            "SELECT EXTRACT(epoch FROM $1::pg_catalog.interval)::float8 * 1000",
            &[text.clone().into()],
        )
    });
    match ms {
        Ok(Ok(Some(ms))) if ms >= 1.0 => Ok(format!("{}ms", ms.round() as i64)),
        _ => Err(Common::InvalidOption(
            format!(
                "option \"lock_timeout\" must be a positive interval, not {}",
                Value::String(text)
            ),
            Some("Write it as {\"lock_timeout\": \"2s\"} or {\"lock_timeout\": 2000}.".into()),
        )
        .into()),
    }
}

/// `cutover_migration(job_id, options)`: ends an online migration that is catching up.
///
/// In the caller's transaction: takes the catch-up's apply lock and a SHARE lock on each of
/// the tenant's source tables, parents first (reads and foreign key checks go on, writes wait), all of them within `lock_timeout`
/// (default 5 s, tried in attempts of at most 200 ms that let go of everything when one lock
/// is not had; on timeout nothing is changed, the catch-up goes on, 55P03); applies the
/// changes left; verifies every table through the key mapping (counts and checksums); then
/// fences the source (the capture's triggers now refuse writes of the tenant's rows there, so
/// none is made where nobody reads any more) and moves the job to `finish`, which its worker
/// runs once this commits. Writers wait from the table locks to the commit.
pub fn cutover(job_id: i64, raw: &Value) -> Result<Value> {
    let doc: CutoverDocument = options::parse(raw, &CutoverWording)?;
    let timeout = lock_timeout(&doc)?;
    let job = jobs::load_of_kind(
        job_id,
        "migrate",
        "a migration",
        "cutover_migration cuts over online migrate_tenant jobs.",
    )?;
    crate::pg::require_role("tenant_ops_operator", "cut a migration over")?;
    let mut m = Migration::from_job(&job)?;
    if m.options.mode != Mode::Online {
        return Err(Error::NotOnline {
            job: job_id,
            mode: m.options.mode.name(),
        });
    }
    let not_catching_up = |job: &jobs::Job| Error::NotCatchingUp {
        job: job_id,
        status: job.status.to_string(),
        stage: job.stage.clone(),
    };
    if job.status == jobs::Status::Running
        && job.stage == Stage::Reverse.as_str()
        && doc.reverse_sync == Some(false)
    {
        return m.end_reverse_sync(&timeout);
    }
    if job.status != jobs::Status::Running || job.stage != Stage::CatchUp.as_str() {
        return Err(not_catching_up(&job));
    }
    let reverse = doc.reverse_sync.unwrap_or(false);
    if reverse {
        m.check_mirror()?;
    }
    let capture = m.capture()?;
    let plans = m.owned_plans()?;
    let started = std::time::Instant::now();
    // SHARE locks, parents first: writes wait, while reads and the row locks of foreign key
    // checks (a writer of a child locks its parent row after the child) go on, and a cascade
    // from a parent to its children (the other order) finds the children not locked yet. So
    // the writers of single statements never deadlock with the cutover. A transaction that
    // writes a child, then its parent still may: the locks are tried within lock_timeout in
    // attempts of at most LOCK_ATTEMPT_MS, each in a subtransaction that lets go of every lock
    // it took when one is not had in time.
    let timeout_ms = lock_timeout_ms(&timeout);
    let deadline = started + std::time::Duration::from_millis(timeout_ms);
    let what = std::cell::RefCell::new(String::new());
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_millis() as u64;
        let step = format!("{}ms", left.clamp(1, LOCK_ATTEMPT_MS));
        let taken = try_subtransaction(|| {
            with_settings(&[("lock_timeout", step.as_str())], || {
                *what.borrow_mut() = "the catch-up of the job".into();
                capture::lock_apply(capture.id);
                for p in &plans {
                    *what.borrow_mut() = format!("table {}", p.source_display);
                    Spi::run(&format!("LOCK TABLE {} IN SHARE MODE", p.source_sql)).or_raise();
                }
            })
        });
        match taken {
            Ok(()) => break,
            Err(caught) if ["55P03", "40P01"].contains(&caught.sqlstate_text().as_str()) => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::CutoverTimedOut {
                        job: job_id,
                        lock_timeout: timeout,
                        what: what.take(),
                    });
                }
            }
            Err(caught) => caught.raise(),
        }
    }
    let lock_wait_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Read again under the lock: the worker may have moved on, or a rollback stopped it.
    let job = jobs::load(job_id)?;
    if job.status != jobs::Status::Running
        || job.stage != Stage::CatchUp.as_str()
        || capture::status(capture.id) != "capturing"
    {
        return Err(not_catching_up(&job));
    }
    let drained = m.apply_changes(&capture)?;
    let drain_ms = started.elapsed().as_secs_f64() * 1000.0 - lock_wait_ms;
    let mut tables = vec![];
    let args = m.params.args();
    let verify = doc.verify.unwrap_or(true);
    for p in plans.iter().filter(|_| verify) {
        let c = super::verify::compare(p, &p.source_sql, &p.filter, &args);
        let ok = c.source_rows == c.target_rows
            && c.source_sum == c.target_sum
            && c.missing == 0
            && c.different == 0;
        if !ok {
            return Err(Error::Unverified {
                source: p.source_display.clone(),
                target: p.target.display.clone(),
                source_rows: c.source_rows,
                source_checksum: c.source_sum,
                target_rows: c.target_rows,
                target_checksum: c.target_sum,
            });
        }
        tables.push(
            json!({"source": p.source_display, "target": p.target.display,
                            "rows": c.source_rows, "checksum": c.source_sum, "verified": true}),
        );
    }
    if reverse {
        // Every row of the targets must be the tenant's: the reverse capture records them all.
        for p in &plans {
            let (all, ours) = Spi::get_two_with_args::<i64, i64>(
                &format!(
                    "SELECT (SELECT pg_catalog.count(*) FROM {}), (SELECT pg_catalog.count(*) FROM {} s WHERE {})",
                    p.target.sql, p.source_sql, p.filter
                ),
                &args,
            )
            .or_raise();
            if all != ours {
                return Err(Common::InvalidOption(
                    format!("option \"reverse_sync\" needs target table {} to hold the tenant's rows only ({} rows there, {} of the tenant)", p.target.display, all.unwrap_or(0), ours.unwrap_or(0)),
                    Some("Migrate into a schema of the tenant's own to sync it back.".into()),
                ).into());
            }
        }
    }
    let verified_ms = started.elapsed().as_secs_f64() * 1000.0;
    capture::fence(capture.id);
    if reverse {
        let mirror: Vec<capture::MirrorTable> = plans
            .iter()
            .map(|p| capture::MirrorTable {
                oid: p.target.oid,
                sql: p.target.sql.clone(),
                display: p.target.display.clone(),
            })
            .collect();
        capture::install_mirror(job_id, &m.scope, &m.tenant, &mirror);
        enter(job_id, Stage::Reverse);
    } else {
        enter(job_id, Stage::Finish);
    }
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let held_ms = total_ms - lock_wait_ms;
    let ms = |x: f64| (x * 10.0).round() / 10.0;
    let report = json!({
        "job_id": job_id, "cut_over": true, "lock_timeout": timeout, "lock_attempts": attempts,
        "verified": verify, "reverse_sync": reverse,
        "lock_wait_ms": ms(lock_wait_ms), "locked_ms": ms(held_ms), "drain_ms": ms(drain_ms),
        "verify_ms": ms(verified_ms - lock_wait_ms - drain_ms), "fence_ms": ms(total_ms - verified_ms),
        "drained_changes": drained.changes, "drained_written": drained.written,
        "drained_deleted": drained.deleted, "tables": tables,
    });
    jobs::log(
        job_id,
        "migration.cutover",
        Some("catchup"),
        None,
        Some(drained.changes),
        None,
        Some(report.clone()),
    );
    jobs::notify(job_id, "migration.cutover", Some(report.clone()));
    Ok(report)
}

/// The last cutover's report of job `job_id` (for the job's own report), if it was cut over.
pub(super) fn cutover_report(job_id: i64) -> Option<Value> {
    Spi::get_one_with_args::<pgrx::JsonB>(
        "SELECT details FROM tenant_ops.job_log WHERE job_id = $1 AND event = 'migration.cutover'
          ORDER BY id DESC LIMIT 1",
        &[job_id.into()],
    )
    .or_raise()
    .map(|j| j.0)
}
