//! What an import does with a row (or key) it refuses, other than failing: a dry run
//! describes the first few in its result, a `continue_on_error` run records each in
//! `tenant_ops.job_errors`. Shared by `import_data` (rows, named by their line) and
//! `import_kv` (keys, named by themselves).

use serde_json::{json, Value};

use super::error::Reason;
use crate::jobs;
use crate::sys::sqlstate_text;

/// How many refused rows a dry run describes (`first_errors` of its result).
pub const FIRST_ERRORS: usize = 10;

/// Adds a dry run's description of a refused row, named by `at` (`("line", 7)`,
/// `("key", "user:1")`), while fewer than [`FIRST_ERRORS`] are described.
pub fn describe(first_errors: &mut Vec<Value>, at: (&str, Value), reasons: &[Reason]) {
    if first_errors.len() >= FIRST_ERRORS {
        return;
    }
    let mut row = serde_json::Map::new();
    row.insert(at.0.to_string(), at.1);
    row.insert(
        "reasons".into(),
        json!(reasons.iter().map(|r| &r.message).collect::<Vec<_>>()),
    );
    row.insert("sqlstate".into(), json!(sqlstate_text(reasons[0].sqlstate)));
    first_errors.push(Value::Object(row));
}

/// Records a refused row of target table `target` for job `job_id`: where it was (`at`), what
/// it held (`raw`), every reason (the first one's SQLSTATE is the row's).
pub fn record(job_id: i64, target: u32, at: &str, raw: Value, reasons: &[Reason]) {
    let messages: Vec<&str> = reasons.iter().map(|r| r.message.as_str()).collect();
    jobs::record_row_error(
        job_id,
        target,
        at,
        raw,
        &messages.join("; "),
        &sqlstate_text(reasons[0].sqlstate),
    );
}
