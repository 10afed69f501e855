//! What can be wrong with a migration: the targets it writes to, the rows it would copy, the
//! copy it verifies, and another migration of the same rows.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Another migration of the same rows is open: job `job`, or (negative) the uncommitted
    /// job of the session with pid `-job`.
    Busy {
        scope: String,
        tenant: String,
        job: i64,
    },
    /// A target table that does not exist; `shared`: a shared table `shared: expect` looks up.
    MissingTarget {
        target: String,
        from: String,
        shared: bool,
    },
    /// Two source tables that would go to one target table; `rename` is the name suggested
    /// for the second.
    SameTarget {
        first: String,
        second: String,
        target: String,
        rename: String,
    },
    /// A target without a primary key for the columns set once every row exists.
    DeferredWithoutKey {
        target: String,
    },
    /// `on_conflict` overwrite or merge into a target without a primary key.
    ConflictWithoutKey {
        on_conflict: &'static str,
        target: String,
    },
    /// The copy statement does not prepare: a type the target cannot take.
    TypeMismatch {
        source: String,
        target: String,
        reason: String,
    },
    /// A raw SQL expression in `columns` from a role that is not an admin.
    ExpressionNeedsAdmin {
        column: String,
    },
    /// A NOT NULL target column without a default that no source column fills.
    Unfilled {
        target: String,
        column: String,
        source: String,
        target_name: String,
        column_name: String,
    },
    /// A NOT NULL target column that closes a reference cycle (set only afterwards).
    DeferredNotNull {
        target: String,
        column: String,
    },
    /// `new_tenant` is not a value of the root key's type.
    BadNewTenant(crate::scope::Error),
    /// Rows of the tenant that reference rows of another tenant (`cross_tenant: error`).
    /// Boxed: the largest variant by far, and a rare one.
    CrossTenant(Box<CrossTenant>),
    /// Rows that reference rows that do not exist (a `NOT VALID` FK, a link).
    Orphans {
        rows: i64,
        child: String,
        parent: String,
        through: String,
        sample: Vec<String>,
    },
    /// A move whose deletes rows outside the tenant still reference.
    ReferencedFromOutside {
        tenant: String,
        rows: i64,
        child: String,
        parent: String,
        through: String,
    },
    /// `shared: expect` with referenced shared rows missing from the target.
    SharedRowsMissing {
        rows: i64,
        shared: String,
        tenant: String,
        target: String,
        sample: Vec<String>,
    },
    /// Rows of the tenant already in the target (`on_conflict: error`).
    Conflict {
        source: String,
        target: String,
        keys: Vec<String>,
    },
    /// A copied table whose target rows differ from its source rows.
    Unverified {
        source: String,
        target: String,
        source_rows: i64,
        source_checksum: String,
        target_rows: i64,
        target_checksum: String,
    },
    /// The copy of a table without a primary key failed (its failing row cannot be named).
    TableFailed {
        sqlstate: PgSqlErrorCode,
        source: String,
        target: String,
        reason: String,
    },
    /// One row could not be copied (without `continue_on_error`).
    RowFailed {
        sqlstate: PgSqlErrorCode,
        key: String,
        source: String,
        target: String,
        tenant: String,
        reason: String,
    },
    /// A create_target table's source declares an index we cannot reproduce.
    UnsupportedDefinition {
        source: String,
        what: String,
    },
    /// A key, index or foreign key built after the load (see `constraints.rs`) failed: rows
    /// of the copy break it.
    ConstraintFailed {
        sqlstate: PgSqlErrorCode,
        target: String,
        constraint: String,
        reason: String,
        detail: Option<String>,
        job: i64,
    },
    /// A target table another job created and whose keys, indexes and foreign keys it has not
    /// built yet; `driven`: that job is running now (worth waiting for).
    TargetBeingBuilt {
        target: String,
        job: i64,
        status: String,
        driven: bool,
    },
    /// The tenant's rows changed while the migration copied them (see `changes.rs`); the job
    /// is undone.
    TenantChanged {
        scope: String,
        tenant: String,
        tables: Vec<TableChange>,
    },
    /// Several problems found at once (a dry run reports them all): see [`Report::many`].
    Many(Vec<Error>),
    Citus(crate::citus::Error),
    Capture(crate::capture::Error),
    /// `cutover_migration` of a migration that is not online.
    NotOnline {
        job: i64,
        mode: &'static str,
    },
    /// `cutover_migration` of an online migration not (or no longer) catching up.
    NotCatchingUp {
        job: i64,
        status: String,
        stage: String,
    },
    /// The cutover could not lock the tenant's tables (or the catch-up) within lock_timeout.
    CutoverTimedOut {
        job: i64,
        lock_timeout: String,
        what: String,
    },
    /// `mode: online` without `background => true`.
    OnlineNeedsBackground,
    Scope(crate::scope::Error),
    Jobs(crate::jobs::Error),
    Common(Common),
}

/// See [`Error::CrossTenant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTenant {
    pub rows: i64,
    pub child: String,
    pub parent: String,
    pub through: String,
    pub tenant: String,
    pub scope: String,
}

/// One table of [`Error::TenantChanged`]: its tenant rows written by transactions the starting
/// snapshot does not see (`new`: inserted or updated since), and the rows of that snapshot no
/// longer there (`gone`: deleted or updated since; counted for committing runs only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    pub table: String,
    pub new: i64,
    pub gone: i64,
}

wraps!(Error {
    Citus(crate::citus::Error),
    Capture(crate::capture::Error),
    Scope(crate::scope::Error),
    Jobs(crate::jobs::Error),
    Common(Common),
});

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::Busy { scope, tenant, job } => {
                let (holder, hint) = if *job >= 0 {
                    (
                        format!("job {job}"),
                        format!("Let job {job} finish (CALL tenant_ops.run_job({job}) resumes it), or roll it back."),
                    )
                } else {
                    (
                        format!("an uncommitted job of the session with pid {}", -job),
                        "Wait for that session's transaction to end.".into(),
                    )
                };
                Report::new(
                    ERRCODE_LOCK_NOT_AVAILABLE,
                    format!("tenant \"{tenant}\" of scope \"{scope}\" is already being migrated by {holder}"),
                )
                .hint(hint)
            }
            Error::MissingTarget { target, from, shared } => Report::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("target table {target} for {from} does not exist"),
            )
            .hint(if *shared {
                "Shared rows are expected in the target: load them there first, or set \"shared\": \"copy\" to bring them along."
            } else {
                "Create it, map the source table to another name with the \"tables\" option, or set \"create_target\": true."
            }.to_string()),
            Error::SameTarget { first, second, target, rename } => Report::new(
                ERRCODE_DUPLICATE_TABLE,
                format!("source tables {first} and {second} would both be migrated into target table {target}"),
            )
            .detail("Each source table needs a target table of its own: their rows would be mixed in one.".to_string())
            .hint(format!(
                "Map one of them to another target name with the \"tables\" option, for example {{\"tables\": {{{}: {}}}}}, or change \"strip_prefix\".",
                serde_json::Value::from(second.as_str()),
                serde_json::Value::from(rename.as_str())
            )),
            Error::DeferredWithoutKey { target } => Report::new(
                ERRCODE_INVALID_OBJECT_DEFINITION,
                format!("target table {target} needs a primary key written by the migration: its self-references or cycle references are set once every row exists"),
            ),
            Error::ConflictWithoutKey { on_conflict, target } => Common::InvalidOption(
                format!("on_conflict \"{on_conflict}\" needs a primary key on target table {target}"),
                None,
            )
            .report(),
            Error::TypeMismatch { source, target, reason } => Report::new(
                ERRCODE_DATATYPE_MISMATCH,
                format!("cannot migrate {source} into {target}: {reason}"),
            )
            .hint("Map the column with the \"columns\" option (a transform or another source column), or change the target column's type.".to_string()),
            Error::ExpressionNeedsAdmin { column } => Report::new(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("a raw SQL expression for {column} needs the tenant_ops_admin role"),
            )
            .hint("Use a built-in transform, or ask an admin to run the migration.".to_string()),
            Error::Unfilled { target, column, source, target_name, column_name } => Report::new(
                ERRCODE_NOT_NULL_VIOLATION,
                format!("target column {target}.{column} is NOT NULL without a default, and no source column fills it"),
            )
            .hint(format!(
                "{source} has no column of that name; map one with the \"columns\" option, e.g. {{\"columns\": {{\"{target_name}\": {{\"{column_name}\": {{\"from\": \"...\"}}}}}}}}."
            )),
            Error::DeferredNotNull { target, column } => Report::new(
                ERRCODE_NOT_NULL_VIOLATION,
                format!("target column {target}.{column} closes a reference cycle (or self-reference) but is NOT NULL"),
            )
            .hint("Rows are written with such references unset, then updated once every row exists: make the target column nullable.".to_string()),
            Error::BadNewTenant(e) => Common::InvalidOption(
                format!("option \"new_tenant\": {e}"),
                Some("The clone's tenant key is written as the root's key: give a value of that type.".into()),
            )
            .report(),
            Error::CrossTenant(x) => {
                let CrossTenant { rows, child, parent, through, tenant, scope } = &**x;
                Report::new(
                    ERRCODE_FOREIGN_KEY_VIOLATION,
                    format!("{rows} row(s) of {child} reference rows of {parent} owned by another tenant through {through}"),
                )
                .detail(format!("Tenant \"{tenant}\" of scope \"{scope}\"."))
                .hint("Set the option \"cross_tenant\" to \"null\" to clear such references in the copy, or repair them first.".to_string())
            }
            Error::Orphans { rows, child, parent, through, sample } => Report::new(
                ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("{rows} row(s) of {child} reference rows of {parent} that do not exist (through {through})"),
            )
            .detail(format!("Missing {parent} keys include: {}.", sample.join(", ")))
            .hint("Repair the orphans first, or set continue_on_error to send those rows to tenant_ops.job_errors.".to_string()),
            Error::ReferencedFromOutside { tenant, rows, child, parent, through } => Report::new(
                ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("cannot move tenant \"{tenant}\": {rows} row(s) of {child} outside the tenant reference its rows of {parent} through {through}"),
            )
            .hint("Copy instead of moving, or repair those cross-tenant references first.".to_string()),
            Error::SharedRowsMissing { rows, shared, tenant, target, sample } => Report::new(
                ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("{rows} row(s) of shared table {shared} referenced by tenant \"{tenant}\" are missing from {target}"),
            )
            .detail(format!("Missing keys include: {}.", sample.join(", ")))
            .hint("Load them into the target first, or set the option \"shared\" to \"copy\".".to_string()),
            Error::Conflict { source, target, keys } => Report::new(
                ERRCODE_UNIQUE_VIOLATION,
                format!("rows of {source} already exist in {target} (on_conflict is \"error\")"),
            )
            .detail(format!("Conflicting keys include: {}.", keys.join(", ")))
            .hint("Choose on_conflict \"skip\", \"overwrite\" or \"merge\", or clear the target first.".to_string()),
            Error::Unverified { source, target, source_rows, source_checksum, target_rows, target_checksum } => Report::new(
                ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
                format!("verification of {source} failed: the target {target} differs from the source"),
            )
            .detail(format!(
                "source: {source_rows} rows, checksum {source_checksum}; target: {target_rows} rows, checksum {target_checksum}"
            )),
            Error::TableFailed { sqlstate, source, target, reason } => Report::new(
                *sqlstate,
                format!("copying {source} into {target} failed: {reason}"),
            )
            .detail("The table has no primary key, so the failing row cannot be singled out.".to_string()),
            Error::RowFailed { sqlstate, key, source, target, tenant, reason } => Report::new(
                *sqlstate,
                format!("row {key} of {source} could not be migrated: {reason}"),
            )
            .detail(format!("Target table {target}; nothing of tenant \"{tenant}\" was written."))
            .hint("Fix the row, change the column's transform, or set continue_on_error to send such rows to tenant_ops.job_errors.".to_string()),
            Error::UnsupportedDefinition { source, what } => Report::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("create_target cannot reproduce {what} of {source}"),
            )
            .hint("Create the target table yourself (then it is used as it is), or drop that index from the source.".to_string()),
            Error::ConstraintFailed { sqlstate, target, constraint, reason, detail, job } => Report::new(
                *sqlstate,
                format!("adding {constraint} to {target} after the load failed: {reason}"),
            )
            .detail(detail.clone())
            .hint(format!(
                "The copied rows break it: fix the source rows or the column's transform, then migrate again. An inline migration leaves nothing behind; a committing one keeps what it wrote until SELECT tenant_ops.cancel_job({job}) removes it with the tables the job created."
            )),
            Error::TargetBeingBuilt { target, job, status, driven } => Report::new(
                ERRCODE_OBJECT_IN_USE,
                format!("target table {target} is being built by job {job}: its keys, indexes and foreign keys are added once its rows are loaded"),
            )
            .detail(format!("Job {job} is {status}{}.", if *driven { "" } else { " and nobody runs it now" }))
            .hint(format!(
                "Migrate into it once job {job} has finished (CALL tenant_ops.run_job({job}) resumes it), or cancel it: SELECT tenant_ops.cancel_job({job})."
            )),
            Error::TenantChanged { scope, tenant, tables } => {
                let each: Vec<String> = tables
                    .iter()
                    .map(|t| {
                        let mut what = vec![];
                        if t.new > 0 {
                            what.push(format!("{} row(s) new or changed", t.new));
                        }
                        if t.gone > 0 {
                            what.push(format!("{} row(s) gone or changed", t.gone));
                        }
                        format!("{}: {}", t.table, what.join(", "))
                    })
                    .collect();
                Report::new(
                    ERRCODE_T_R_SERIALIZATION_FAILURE,
                    format!("tenant \"{tenant}\" of scope \"{scope}\" changed during the migration"),
                )
                .detail(format!(
                    "Since the migration began, {}. Nothing the migration wrote is kept.",
                    each.join("; ")
                ))
                .hint(
                    "Run it inline in a REPEATABLE READ transaction (it then copies one snapshot), on a quiet tenant, or with mode \"online\", which follows the changes."
                        .to_string(),
                )
                .undo()
            }
            Error::Many(all) => Report::many(all.iter().map(Error::report).collect()),
            Error::Scope(e) => e.report(),
            Error::Jobs(e) => e.report(),
            Error::Citus(e) => e.report(),
            Error::Capture(e) => e.report(),
            Error::NotOnline { job, mode } => Report::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("job {job} is not an online migration (its mode is \"{mode}\")"),
            )
            .hint("Only a migrate_tenant job with {\"mode\": \"online\"} is cut over; the others end by themselves.".to_string()),
            Error::NotCatchingUp { job, status, stage } => Report::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("online migration job {job} is not catching up (status {status}, stage {stage})"),
            )
            .hint("A cutover waits until tenant_ops.progress shows the job running at stage \"catchup\": the initial copy must be finished first.".to_string()),
            Error::CutoverTimedOut { job, lock_timeout, what } => Report::new(
                ERRCODE_LOCK_NOT_AVAILABLE,
                format!("cutover of job {job} gave up: {what} could not be locked within lock_timeout {lock_timeout}"),
            )
            .detail("Nothing was changed; the catch-up goes on.".to_string())
            .hint("Try again when the tenant's tables are less busy, or give a longer \"lock_timeout\".".to_string()),
            Error::OnlineNeedsBackground => Common::InvalidOption(
                "mode \"online\" needs background => true".into(),
                Some("An online migration follows the tenant's changes until cutover_migration(job_id): call migrate_tenant(..., background => true).".into()),
            )
            .report(),
            Error::Common(e) => e.report(),
        }
    }
}

user_error_display!(Error);

pub type Result<T> = std::result::Result<T, Error>;
