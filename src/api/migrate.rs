//! `migrate_tenant`, `rollback_migration`, `map_id`, `uuid5`.

use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::OrRaise;
use crate::jobs::{self, executor};
use crate::migrate;
use crate::sys::{rolled_back_subtransaction, sqlstate_text};

/// Copies (or moves) every owned row of one tenant into same-named (or mapped) tables of
/// `target_schema`, in dependency order, re-keying as asked. Returns the job id.
///
/// Inline (the default) it runs in the caller's transaction: atomic, progress as NOTICEs.
/// With `options.defer = true` the job is only created; `CALL tenant_ops.run_job(id)` runs it
/// with a commit per step.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.migrate_tenant(scope text, tenant text, target_schema name,
                                          options jsonb DEFAULT '{}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.migrate_tenant(text, text, name, jsonb, boolean) IS
'Copies or moves one tenant''s rows into target_schema (re-keyed, mapped, verified) as a job; returns the job id.';
"#)]
fn migrate_tenant(
    scope: Option<&str>,
    tenant: Option<&str>,
    target_schema: Option<&std::ffi::CStr>,
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let scope = required(scope, "scope");
    let tenant = required(tenant, "tenant");
    let target_schema = required(target_schema, "target_schema")
        .to_string_lossy()
        .into_owned();
    let options = super::options(options);
    let background = super::background(background);
    let (job_id, parsed) = migrate::submit(scope, tenant, &target_schema, &options, background)
        .inspect_err(|e| audit::log_failure("migrate_tenant", scope, e))
        .or_raise();
    audit::record(
        "migrate_tenant",
        &format!("{scope}/{tenant}"),
        json!({"target_schema": target_schema, "options": options}),
        &format!("job {job_id}"),
    );
    if background {
        crate::worker::wake_scheduler_after_commit();
        return job_id;
    }
    if parsed.defer {
        return job_id;
    }
    if parsed.dry_run {
        run_dry(job_id);
        return job_id;
    }
    executor::run_inline(job_id, &migrate::kind::Migrate).or_raise();
    job_id
}

/// A dry run does everything the real run would, inside a subtransaction that is always rolled
/// back; the job keeps the outcome: the per-table plan and counts, or the error the real run
/// would meet.
fn run_dry(job_id: i64) {
    let outcome =
        rolled_back_subtransaction(|| executor::run_inline(job_id, &migrate::kind::Migrate));
    let problems: Vec<(String, String)> = match outcome {
        Ok(Ok(mut result)) => {
            result["dry_run"] = json!(true);
            jobs::finish(job_id, jobs::Status::Succeeded, None, Some(&result));
            return;
        }
        // Each problem a dry run found, as it would be reported alone.
        Ok(Err(report)) => report
            .problems()
            .iter()
            .map(|r| (sqlstate_text(r.sqlstate), r.message.clone()))
            .collect(),
        Err(caught) => vec![(caught.sqlstate_text(), caught.message)],
    };
    let errors: Vec<_> = problems
        .iter()
        .map(|(code, msg)| json!({"sqlstate": code, "message": msg}))
        .collect();
    let result = json!({"dry_run": true, "errors": errors});
    jobs::finish(
        job_id,
        jobs::Status::Failed,
        Some(&problems[0].1),
        Some(&result),
    );
}

/// Ends an online migration (`migrate_tenant(..., '{"mode": "online"}', background => true)`)
/// that is catching up: holds the writes to the tenant's source tables (within
/// `options.lock_timeout`, default 5 s; on timeout nothing changes, 55P03, and the catch-up
/// goes on), applies the changes left, verifies every table through the key mapping, and from
/// then on refuses writes of the tenant's rows in the source. Returns what it did.
///
/// ```sql
/// SELECT tenant_ops.cutover_migration(42, '{"lock_timeout": "2s"}');
/// ```
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.cutover_migration(job_id bigint, options jsonb DEFAULT '{}')
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.cutover_migration(bigint, jsonb) IS
'Cuts an online migration over: holds the tenant''s writes (lock_timeout), applies the changes left, verifies, fences the source.';
"#)]
fn cutover_migration(
    job_id: Option<i64>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> JsonB {
    let job_id = required(job_id, "job_id");
    let options = super::options(options);
    let result = migrate::cutover(job_id, &options)
        .inspect_err(|e| audit::log_failure("cutover_migration", &job_id.to_string(), e))
        .or_raise();
    audit::record(
        "cutover_migration",
        &format!("job {job_id}"),
        json!({"job_id": job_id, "options": options}),
        "ok",
    );
    JsonB(result)
}

/// Undoes a migration job: deletes what it wrote (children first), restores target rows it
/// overwrote, and for a move puts the source rows back. Returns what was done.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.rollback_migration(job_id bigint)
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.rollback_migration(bigint) IS
'Undoes a migration: removes what it wrote and, for a move, restores the source rows.';
"#)]
fn rollback_migration(job_id: Option<i64>) -> JsonB {
    let job_id = required(job_id, "job_id");
    let result = migrate::rollback(job_id)
        .inspect_err(|e| audit::log_failure("rollback_migration", &job_id.to_string(), e))
        .or_raise();
    audit::record(
        "rollback_migration",
        &format!("job {job_id}"),
        json!({"job_id": job_id}),
        "ok",
    );
    JsonB(result)
}

/// The new UUID of a legacy key after a `uuid`, `uuid5` or `uuid7` migration; NULL if
/// unknown. Parallel restricted: a `uuid` key is computed with the secret, read as the
/// extension owner (a role switch, which a parallel worker may not make).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.map_id(source regclass, legacy_key text)
RETURNS uuid STABLE STRICT PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.map_id(regclass, text) IS 'New UUID of a legacy key (uuid, uuid5 and uuid7 migrations).';
"#)]
fn map_id(source: pg_sys::Oid, legacy_key: &str) -> Option<Uuid> {
    migrate::map_id(source.to_u32(), legacy_key)
}

/// RFC 4122 version-5 UUID of `name` in `namespace`: what `id_strategy: uuid5` computes.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.uuid5(namespace uuid, name text)
RETURNS uuid IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.uuid5(uuid, text) IS 'RFC 4122 version-5 (SHA-1) UUID of name in namespace.';
"#)]
fn uuid5(namespace: Uuid, name: &str) -> Uuid {
    let ns = uuid::Uuid::from_bytes(*namespace.as_bytes());
    Uuid::from_bytes(migrate::uuid5::uuid5(&ns, name.as_bytes()).into_bytes())
}

/// The version-4 UUID `id_strategy: uuid` gives the legacy key `name` (`schema.table:key`) in
/// `namespace` ('' or a clone's): pseudo-random bits keyed by the database's secret (see
/// `migrate/keyed_uuid.rs`). Stable, not immutable: the secret is a table's row. Parallel
/// restricted: the secret is read as the extension owner.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.uuid4_keyed(namespace text, name text)
RETURNS uuid STABLE STRICT PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.uuid4_keyed(text, text) IS 'Version-4 UUID of name in namespace under this database''s secret, as id_strategy uuid computes it.';
"#)]
fn uuid4_keyed(namespace: &str, name: &str) -> Uuid {
    Uuid::from_bytes(migrate::keyed_uuid::uuid4_keyed(namespace, name).into_bytes())
}

/// A random (RFC 9562 version-4) UUID: what a clone from a backup gives each new key. The same
/// kind of key as `gen_random_uuid()`, from the same source (the operating system's CSPRNG),
/// drawn in blocks: a tenth of the cost per key (see `migrate/uuid4.rs`).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.uuid4()
RETURNS uuid VOLATILE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.uuid4() IS 'Random (version-4) UUID, as a clone from a backup generates.';
"#)]
fn uuid4() -> Uuid {
    // This process's pid as PostgreSQL keeps it (MyProcPid): getpid() without a system call.
    let pid = unsafe { pg_sys::MyProcPid } as u32;
    match migrate::uuid4::new_v4(pid) {
        Ok(id) => Uuid::from_bytes(id.into_bytes()),
        Err(e) => crate::error::internal_error(format!("could not generate random values: {e}")),
    }
}

/// A time-ordered (RFC 9562 version-7) UUID: what `id_strategy: uuid7` gives each new key.
/// Monotonic within a backend (a counter orders the ones drawn in the same millisecond).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.uuid7()
RETURNS uuid VOLATILE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.uuid7() IS 'Time-ordered (version-7) UUID, as id_strategy uuid7 generates.';
"#)]
fn uuid7() -> Uuid {
    Uuid::from_bytes(uuid::Uuid::now_v7().into_bytes())
}

/// Completeness of a finished migration, per table: the tenant's source rows against the
/// target rows their mapped keys name (counts and checksums), and a sample of the keys that
/// are missing or different. After a rollback it reports the target empty of the tenant.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.verify_migration(job_id bigint)
RETURNS TABLE(table_name regclass, target text, source_rows bigint, target_rows bigint, missing bigint,
              different bigint, complete boolean, sample jsonb)
STABLE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.verify_migration(bigint) IS
'Completeness of a finished migration per table, through the key mapping, with the keys that differ.';
"#)]
#[allow(clippy::type_complexity)]
fn verify_migration(
    job_id: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(table_name, pgrx::pg_sys::Oid),
        name!(target, String),
        name!(source_rows, i64),
        name!(target_rows, i64),
        name!(missing, i64),
        name!(different, i64),
        name!(complete, bool),
        name!(sample, JsonB),
    ),
> {
    let job_id = required(job_id, "job_id");
    let rows = migrate::verify_report(job_id).or_raise();
    TableIterator::new(rows.into_iter().map(|r| {
        let c = r.comparison;
        let complete = c.missing == 0 && c.different == 0 && c.source_rows == c.target_rows;
        (
            pgrx::pg_sys::Oid::from(r.source),
            r.target,
            c.source_rows,
            c.target_rows,
            c.missing,
            c.different,
            complete,
            JsonB(c.sample),
        )
    }))
}
