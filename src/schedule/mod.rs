//! Schedules: operations (backup, validate, migrate, purge_backups, purge_history) run on a
//! cron expression in a time zone, by the per-database scheduler or by pg_cron, as the role
//! that created the schedule.
//!
//! - [`cron`]: expressions and zones, free of PostgreSQL (croner + jiff; DST rules, tests);
//! - [`params`]: a schedule's `params`, read strictly, and one run's submission;
//! - [`define`]: `schedule_operation`, `alter_schedule`, `unschedule` on `tenant_ops.schedule`;
//! - [`fire`]: a firing (overlap, catch-up, history, alerts) and the scheduler's tick;
//! - [`health`]: `scheduler_health`, `scheduler_stats`;
//! - [`pg_cron`]: the `engine: "pg_cron"` registration, kept in step.

pub mod cron;
pub mod define;
pub mod error;
pub mod fire;
pub mod health;
pub mod params;
pub mod pg_cron;

use serde::Deserialize;
use serde_json::Value;

pub use error::Error;
use params::{CatchUp, Engine, Operation, Overlap, Params};

/// Every operation a schedule may run.
pub const OPERATIONS: &[&str] = &[
    "backup",
    "validate",
    "migrate",
    "purge_backups",
    "purge_history",
];

/// The keys of `params` every schedule takes, whatever its operation.
pub const SCHEDULE_KEYS: &[&str] = &["timezone", "overlap", "catch_up", "alert_after", "engine"];

/// A schedule as stored in `tenant_ops.schedule`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub id: i64,
    pub name: String,
    pub cron: String,
    pub operation: Operation,
    pub params: Params,
    pub raw_params: Value,
    pub enabled: bool,
    pub owner: String,
    pub time_zone: String,
    pub cron_job_id: Option<i64>,
    /// Microseconds since the epoch.
    pub next_run_us: Option<i64>,
    pub last_job: Option<i64>,
    pub pending: bool,
}

#[derive(Deserialize)]
struct Row {
    id: i64,
    name: String,
    cron: String,
    operation: String,
    params: Value,
    enabled: bool,
    owner: String,
    time_zone: String,
    overlap: String,
    catch_up: String,
    alert_after: i32,
    engine: String,
    cron_job_id: Option<i64>,
    next_run_us: Option<i64>,
    last_job: Option<i64>,
    pending: bool,
}

/// The columns [`Schedule::from_json`] reads, as one jsonb (`s`: `tenant_ops.schedule`); a
/// macro so that statements are literals (`concat!`).
macro_rules! row_json {
    () => {
        "pg_catalog.jsonb_build_object(
    'id', s.id, 'name', s.name, 'cron', s.cron, 'operation', s.operation, 'params', s.params,
    'enabled', s.enabled, 'owner', s.owner, 'time_zone', s.time_zone, 'overlap', s.overlap,
    'catch_up', s.catch_up, 'alert_after', s.alert_after, 'engine', s.engine,
    'cron_job_id', s.cron_job_id,
    'next_run_us', (EXTRACT(epoch FROM s.next_run) * 1000000)::pg_catalog.int8,
    'last_job', s.last_job, 'pending', s.pending)"
    };
}
pub(crate) use row_json;

impl Schedule {
    /// A row as [`ROW_JSON`] gives it. The catalog's CHECKs keep every field readable.
    pub fn from_json(v: Value) -> Schedule {
        let r: Row = serde_json::from_value(v).unwrap_or_else(|e| {
            crate::error::internal_error(format!("pg_tenant_ops: unexpected schedule row: {e}"))
        });
        let operation = Operation::parse(&r.operation).unwrap_or(Operation::PurgeHistory);
        let mut params = Params::parse(operation, &r.params).unwrap_or_else(|_| Params {
            timezone: None,
            overlap: Overlap::Skip,
            catch_up: CatchUp::Once,
            alert_after: 3,
            engine: Engine::Builtin,
            args: Default::default(),
        });
        // The columns are what counts (they are what the params said when last set).
        params.overlap = Overlap::parse(&r.overlap).unwrap_or(Overlap::Skip);
        params.catch_up = CatchUp::parse(&r.catch_up).unwrap_or(CatchUp::Once);
        params.alert_after = r.alert_after;
        params.engine = Engine::parse(&r.engine).unwrap_or(Engine::Builtin);
        Schedule {
            id: r.id,
            name: r.name,
            cron: r.cron,
            operation,
            params,
            raw_params: r.params,
            enabled: r.enabled,
            owner: r.owner,
            time_zone: r.time_zone,
            cron_job_id: r.cron_job_id,
            next_run_us: r.next_run_us,
            last_job: r.last_job,
            pending: r.pending,
        }
    }

    /// When it fires: its expression in its zone. Both were checked when they were set; a
    /// zone that has since gone from the system's database falls back to UTC.
    pub fn timetable(&self) -> Option<cron::Timetable> {
        let c = cron::parse(&self.cron).ok()?;
        let zone = cron::zone(&self.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
        Some(cron::Timetable::new(c, zone))
    }
}

/// Microseconds since the epoch of a jiff instant, and back.
pub fn to_us(t: jiff::Timestamp) -> i64 {
    t.as_microsecond()
}

pub fn from_us(us: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(us).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
