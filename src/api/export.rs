//! Exports: `export_tenant`, `download_export`, `import_tenant`.

use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::OrRaise;
use crate::export;

/// Exports every root and owned table of one tenant (or `tables`, and per table `columns`)
/// read in one snapshot, one file per table in `format` (csv, json, ndjson, xml, sql; xlsx:
/// one workbook, a sheet per table), into one tar archive (gzip unless `"gzip": false`) with
/// a manifest, in `tenant_ops.export_directory` (`file` names it). Returns the job id; its
/// result names the file.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.export_tenant(scope text, tenant text, format text, options jsonb DEFAULT '{}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.export_tenant(text, text, text, jsonb, boolean) IS
'Exports one tenant''s tables (one snapshot) as CSV, JSON, NDJSON, XML, SQL or XLSX into a tar archive with a manifest, in the export directory; returns the job id.';
"#)]
fn export_tenant(
    scope: Option<&str>,
    tenant: Option<&str>,
    format: Option<&str>,
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let scope = required(scope, "scope");
    let tenant = required(tenant, "tenant");
    let format = required(format, "format");
    let options = super::options(options);
    let background = super::background(background);
    let job_id = export::submit(scope, tenant, format, &options, background)
        .inspect_err(|e| audit::log_failure("export_tenant", scope, e))
        .or_raise();
    audit::record(
        "export_tenant",
        &format!("{scope}/{tenant}"),
        json!({"format": format, "options": options, "background": background}),
        &format!("job {job_id}"),
    );
    super::start_job(job_id, &export::kind::ExportKind, background);
    job_id
}

/// `length` bytes of file `file` of the export directory from `offset`: download an export
/// through SQL in chunks (see the README for a psql one-liner).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.download_export(file text, "offset" bigint DEFAULT 0, length integer DEFAULT 8388608)
RETURNS bytea VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.download_export(text, bigint, integer) IS 'A chunk of a file of the export directory, to download it through SQL.';
"#)]
fn download_export(
    file: Option<&str>,
    offset: default!(Option<i64>, 0),
    length: default!(Option<i32>, 8388608),
) -> Vec<u8> {
    let file = required(file, "file");
    export::store::read_chunk(file, offset.unwrap_or(0), length.unwrap_or(8 << 20)).or_raise()
}

/// The size in bytes of file `file` of the export directory (how far to download).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.export_size(file text)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.export_size(text) IS 'The size of a file of the export directory.';
"#)]
fn export_size(file: Option<&str>) -> i64 {
    let file = required(file, "file");
    export::store::size(file).or_raise()
}

/// Loads an export archive (a file of the export directory) back into the scope's tables:
/// checked against its manifest, converted into a backup of the tenant (registered, label
/// `import of <archive>`) and restored as `restore_backup` restores — `mode` `merge` by
/// default (`replace`, or `clone` with `new_tenant` and fresh keys; `id_strategy` other than
/// `keep` means clone), `on_conflict`, `target_schema`, `dry_run`. Returns the restore job's
/// id.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.import_tenant(scope text, archive text, options jsonb DEFAULT '{}')
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.import_tenant(text, text, jsonb) IS
'Loads an export archive back into a scope''s tables (merge, replace, or clone with fresh keys), checked and verified as a restore; returns the job id.';
"#)]
fn import_tenant(
    scope: Option<&str>,
    archive: Option<&str>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> i64 {
    let scope = required(scope, "scope");
    let archive = required(archive, "archive");
    let options = super::options(options);
    let caller = Spi::get_one::<String>("SELECT current_user::pg_catalog.text")
        .or_raise()
        .unwrap_or_default();
    let (backup_id, job_id) = export::import::submit(scope, archive, &options, &caller)
        .inspect_err(|e| audit::log_failure("import_tenant", archive, e))
        .or_raise();
    audit::record(
        "import_tenant",
        &format!("{scope}/{archive}"),
        json!({"options": options, "backup_id": backup_id}),
        &format!("job {job_id}"),
    );
    super::start_job(job_id, &crate::backup::kind::RestoreKind, false);
    job_id
}
