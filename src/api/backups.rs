//! Backups: `create_backup`, `verify_backup`, `restore_backup`, `read_backup`, `drop_backup`,
//! `purge_backups`.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use super::required;
use crate::audit;
use crate::backup;
use crate::error::OrRaise;

/// Backs up every owned row of one tenant (and with `shared: "include"` the shared rows it
/// references), read in one snapshot, into one gzip-compressed tar file in
/// `tenant_ops.backup_directory`, registered in `tenant_ops.backups`. Options: `label`,
/// `retention` (an interval), `shared`; `capture: true` makes it the base of a chain of
/// incremental backups (a change capture of the tenant starts in its snapshot's transaction),
/// `incremental: id` an incremental holding only the rows changed since backup `id` (the base
/// or the last link of its chain; see `backup::incremental`). Returns the job id; its result
/// names the backup.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.create_backup(scope text, tenant text, options jsonb DEFAULT '{}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.create_backup(text, text, jsonb, boolean) IS
'Backs up one tenant''s rows (one snapshot) into a checksummed open-format file; returns the job id.';
"#)]
fn create_backup(
    scope: Option<&str>,
    tenant: Option<&str>,
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let scope = required(scope, "scope");
    let tenant = required(tenant, "tenant");
    let options = super::options(options);
    let background = super::background(background);
    let job_id = backup::submit(scope, tenant, &options, background)
        .inspect_err(|e| audit::log_failure("create_backup", scope, e))
        .or_raise();
    audit::record(
        "create_backup",
        &format!("{scope}/{tenant}"),
        options,
        &format!("job {job_id}"),
    );
    super::start_job(job_id, &backup::kind::BackupKind, background);
    job_id
}

/// Re-reads a backup: the file's SHA-256, the manifest, every table's checksum and row count,
/// and that every value decodes as its column's type. A damaged backup is an error (XX001)
/// naming what is wrong; a sound one returns a report. For an incremental, every link back to
/// its base is checked too: present, following the one before (55000 naming the break), whole.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.verify_backup(backup_id bigint)
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.verify_backup(bigint) IS 'Re-reads a backup file and checks every checksum and value.';
"#)]
fn verify_backup(backup_id: Option<i64>) -> JsonB {
    let id = required(backup_id, "backup_id");
    let report = backup::restore::verify(id)
        .inspect_err(|e| audit::log_failure("verify_backup", &id.to_string(), e))
        .or_raise();
    audit::record(
        "verify_backup",
        &format!("backup {id}"),
        json!({}),
        "verified",
    );
    JsonB(report)
}

/// Restores a backup, in one transaction: `mode: "replace"` deletes the tenant's current rows
/// and loads the backup's; `"merge"` adds them to the tenant's (`on_conflict` as for
/// migrate_tenant); `"clone"` loads them as tenant `new_tenant` with fresh keys;
/// `target_schema` restores into the same-named tables of another schema; `dry_run: true`
/// reports per table what would change. Everything is checked (the file, the scope, the tables
/// and columns now, every value, the mode's own checks) before anything changes, and the rows
/// written are compared with the backup's afterwards. An incremental is restored (mode
/// `replace` only) as its base and then every link up to it, compared afterwards with the state
/// the link recorded. Returns the job id.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.restore_backup(backup_id bigint, options jsonb DEFAULT '{}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.restore_backup(bigint, jsonb, boolean) IS
'Restores a backup (replace, merge, clone; into another schema; dry_run), checked before and verified after; returns the job id.';
"#)]
fn restore_backup(
    backup_id: Option<i64>,
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let id = required(backup_id, "backup_id");
    let options = super::options(options);
    let background = super::background(background);
    let job_id = backup::restore::submit(id, &options, background)
        .inspect_err(|e| audit::log_failure("restore_backup", &id.to_string(), e))
        .or_raise();
    audit::record(
        "restore_backup",
        &format!("backup {id}"),
        options,
        &format!("job {job_id}"),
    );
    super::start_job(job_id, &backup::kind::RestoreKind, background);
    job_id
}

/// `length` bytes of a backup file from `offset`: download it in chunks through SQL (see the
/// README for a psql one-liner).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.read_backup(backup_id bigint, "offset" bigint DEFAULT 0, length integer DEFAULT 8388608)
RETURNS bytea VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.read_backup(bigint, bigint, integer) IS 'A chunk of a backup file, to download it through SQL.';
"#)]
fn read_backup(
    backup_id: Option<i64>,
    offset: default!(Option<i64>, 0),
    length: default!(Option<i32>, 8388608),
) -> Vec<u8> {
    let id = required(backup_id, "backup_id");
    backup::read_chunk(id, offset.unwrap_or(0), length.unwrap_or(8 << 20)).or_raise()
}

/// Unregisters a backup and removes its file (when the transaction commits); the base of an
/// incremental chain stops its change capture.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.drop_backup(backup_id bigint)
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.drop_backup(bigint) IS 'Unregisters a backup and removes its file.';
"#)]
fn drop_backup(backup_id: Option<i64>) -> JsonB {
    let id = required(backup_id, "backup_id");
    let report = backup::drop_backup(id).or_raise();
    audit::record("drop_backup", &format!("backup {id}"), json!({}), "dropped");
    JsonB(report)
}

/// Drops the expired backups (file and row) and removes leftover files of crashed backups.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.purge_backups()
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.purge_backups() IS 'Drops expired backups and removes leftover files.';
"#)]
fn purge_backups() -> JsonB {
    let report = backup::purge().or_raise();
    audit::record("purge_backups", "backups", json!({}), &report.to_string());
    JsonB(report)
}

/// The name of the calling role (who a loaded backup is registered as created by).
fn caller() -> String {
    Spi::get_one::<String>("SELECT current_user::pg_catalog.text")
        .or_raise()
        .unwrap_or_default()
}

/// Loads a whole backup file (as `read_backup` gave it) and registers it after verifying it
/// as `verify_backup` does; a damaged file is refused (XX001) and nothing is kept. Returns
/// the new backup's id. For files larger than one bytea, see `load_backup_chunk`.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.load_backup(data bytea)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.load_backup(bytea) IS 'Uploads a whole backup file, verifies and registers it; returns the backup id.';
"#)]
fn load_backup(data: Option<&[u8]>) -> i64 {
    let data = required(data, "data");
    let id = backup::load::whole(data, &caller())
        .inspect_err(|e| audit::log_failure("load_backup", "upload", e))
        .or_raise();
    audit::record(
        "load_backup",
        &format!("backup {id}"),
        json!({"bytes": data.len()}),
        "loaded",
    );
    id
}

/// Appends a chunk to upload `upload` (1 to 64 letters, digits, `_`, `-`; created by its
/// first chunk); returns the upload's size so far. `load_backup_finish` verifies and
/// registers it.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.load_backup_chunk(upload text, data bytea)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.load_backup_chunk(text, bytea) IS 'Appends a chunk to a backup upload; returns its size so far.';
"#)]
fn load_backup_chunk(upload: Option<&str>, data: Option<&[u8]>) -> i64 {
    let upload = required(upload, "upload");
    let data = required(data, "data");
    backup::load::chunk(upload, data).or_raise()
}

/// Verifies upload `upload` as `verify_backup` does and registers it; returns the backup id.
/// A damaged upload is refused (XX001) and removed.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.load_backup_finish(upload text)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.load_backup_finish(text) IS 'Verifies and registers a backup upload; returns the backup id.';
"#)]
fn load_backup_finish(upload: Option<&str>) -> i64 {
    let upload = required(upload, "upload");
    let id = backup::load::finish(upload, &caller())
        .inspect_err(|e| audit::log_failure("load_backup", upload, e))
        .or_raise();
    audit::record(
        "load_backup",
        &format!("backup {id}"),
        json!({"upload": upload}),
        "loaded",
    );
    id
}
