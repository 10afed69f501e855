//! `tenant_ops.audit_log`: who called what, with which arguments, and how it ended.
//!
//! Rows are written as the extension owner (see [`crate::sys::owner`]), so no
//! ordinary role can insert, change or delete them; they record the caller's session and
//! current user as seen before the switch.
//!
//! A call that fails rolls back with its transaction, audit row included: PostgreSQL has no
//! autonomous transactions. Failed calls are therefore also reported to the server log at
//! LOG level by the API layer, and job failures (later operations) are kept on the job row.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::OrRaise;
use crate::sys::owner;

/// Appends one entry. `arguments` is the call's arguments as JSON; `outcome` a short word
/// (`ok`) or a job reference.
pub fn record(action: &str, target: &str, arguments: serde_json::Value, outcome: &str) {
    let (session_user, current_user) =
        Spi::get_two::<String, String>("SELECT session_user::text, current_user::text").or_raise();
    owner::execute(
        "INSERT INTO tenant_ops.audit_log
                 (session_user_name, current_user_name, action, target, arguments, outcome)
             VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            session_user.unwrap_or_default().into(),
            current_user.unwrap_or_default().into(),
            action.into(),
            target.into(),
            JsonB(arguments).into(),
            outcome.into(),
        ],
    )
    .or_raise();
}

/// A failed call cannot leave an audit row (its transaction rolls back), so it goes to the
/// server log instead, with the same who/what.
pub fn log_failure(action: &str, target: &str, error: &dyn std::fmt::Display) {
    let who = Spi::get_two::<String, String>("SELECT session_user::text, current_user::text")
        .ok()
        .map(|(s, c)| format!("{}/{}", s.unwrap_or_default(), c.unwrap_or_default()))
        .unwrap_or_default();
    pgrx::log!("tenant_ops audit: {action} \"{target}\" by {who} failed: {error}");
}
