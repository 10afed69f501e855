//! Key-value sources: `create_kv_source`, `kv_source_from_json`, `drop_kv_source`,
//! `detect_kv`, `import_kv`, `compare_kv`, `sync_kv`, `cleanup_kv`, `restore_kv`.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::{OrRaise, UserError};
use crate::kv;

/// Registers a key-value source: a Redis server (`redis://[:password@]host:port[/db]`) or a
/// `localStorage` dump file of the import directory (`file:dump.json`, or `file:dir/` for one
/// dump per file). The password is kept where only superusers can read it.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.create_kv_source(name text, url text, options jsonb DEFAULT '{}')
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.create_kv_source(text, text, jsonb) IS
'Registers a key-value source (redis://... or file:dump.json) under a name; options connect_timeout_ms, read_timeout_ms, scan_count. Returns the catalog entry (password hidden).';
"#)]
fn create_kv_source(
    name: Option<&str>,
    url: Option<&str>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> JsonB {
    let name = required(name, "name");
    let url = required(url, "url");
    let options = super::options(options);
    let row = kv::source::create(name, url, &options)
        .inspect_err(|e| audit::log_failure("create_kv_source", name, e))
        .or_raise();
    audit::record(
        "create_kv_source",
        name,
        json!({"url": kv::source::redacted(url), "options": options}),
        "ok",
    );
    JsonB(row)
}

/// Registers a `localStorage` dump given as JSON: an object of key → string, or an object
/// of dump name → such an object (several users' dumps; keys read `<dump>:<key>`). Returns
/// the number of keys.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.kv_source_from_json(name text, data jsonb)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.kv_source_from_json(text, jsonb) IS
'Registers a localStorage dump (key -> string, or dump name -> {key -> string}) as a key-value source; returns its number of keys.';
"#)]
fn kv_source_from_json(name: Option<&str>, data: Option<super::JsonArg>) -> i64 {
    let name = required(name, "name");
    let data = required(data, "data").value();
    let n = kv::source::create_from_json(name, data)
        .inspect_err(|e| audit::log_failure("kv_source_from_json", name, e))
        .or_raise();
    audit::record("kv_source_from_json", name, json!({"keys": n}), "ok");
    n
}

/// Removes a key-value source (the store itself is not touched).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.drop_kv_source(name text)
RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.drop_kv_source(text) IS 'Removes a key-value source definition (the store is not touched).';
"#)]
fn drop_kv_source(name: Option<&str>) {
    let name = required(name, "name");
    kv::source::drop(name)
        .inspect_err(|e| audit::log_failure("drop_kv_source", name, e))
        .or_raise();
    audit::record("drop_kv_source", name, json!({}), "ok");
}

/// What a source holds: key patterns (`tenant:*`, `tenant:*:settings`), counts, sizes, value
/// types, JSON shapes, hash fields, and a suggested mapping. Keys are found with SCAN MATCH
/// `pattern` (a glob), at most `max_keys` of them.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.detect_kv(source text, pattern text DEFAULT '*', max_keys bigint DEFAULT 100000)
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.detect_kv(text, text, bigint) IS
'What a key-value source holds: key patterns, counts, sizes, types, JSON shapes and a suggested mapping (SCAN MATCH pattern, at most max_keys keys).';
"#)]
fn detect_kv(
    source: Option<&str>,
    pattern: default!(Option<&str>, "'*'"),
    max_keys: default!(Option<i64>, 100000),
) -> JsonB {
    let source = required(source, "source");
    let pattern = pattern.unwrap_or("*");
    let max_keys = max_keys.unwrap_or(100_000);
    if max_keys < 1 {
        crate::error::Common::InvalidParameter(
            format!("max_keys must be 1 or more, not {max_keys}"),
            None,
        )
        .raise();
    }
    let src = kv::source::load(source).or_raise();
    JsonB(kv::detect::detect(&src, pattern, max_keys).or_raise())
}

/// Imports the keys a mapping names into its tables, as a job (`kv_import`); returns the job
/// id. Options: `tenant` (only that tenant's keys), `on_conflict`, `dry_run`,
/// `continue_on_error`, `max_errors`, `batch_size`, `date_format`, `defer`.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.import_kv(source text, mapping jsonb, options jsonb DEFAULT '{}',
                                     background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.import_kv(text, jsonb, jsonb, boolean) IS
'Imports the keys of a key-value source into tables by a mapping (key parts, JSON paths, hash fields -> columns), converted and validated, as a job; returns the job id.';
"#)]
fn import_kv(
    source: Option<&str>,
    mapping: Option<super::JsonArg>,
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let source = required(source, "source");
    let mapping = required(mapping, "mapping").value();
    let options = super::options(options);
    let background = super::background(background);
    let (job_id, defer) = kv::import::submit(source, &mapping, &options, background)
        .inspect_err(|e| audit::log_failure("import_kv", source, e))
        .or_raise();
    audit::record(
        "import_kv",
        source,
        json!({"mapping": mapping, "options": options, "background": background}),
        &format!("job {job_id}"),
    );
    if defer && !background {
        return job_id;
    }
    super::start_job(job_id, &kv::import::KvImportKind, background);
    job_id
}

/// Compares a source with the tables a mapping fills, as a job (`kv_compare`): keys with no
/// row, rows with no key, fields that differ (findings in `tenant_ops.integrity_issues`),
/// and a score. Option `tenant`: one tenant only. Returns the job id.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.compare_kv(source text, mapping jsonb, options jsonb DEFAULT '{}')
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.compare_kv(text, jsonb, jsonb) IS
'Compares a key-value source with the tables a mapping fills: keys with no row, rows with no key, differing fields (tenant_ops.integrity_issues) and a score; returns the job id.';
"#)]
fn compare_kv(
    source: Option<&str>,
    mapping: Option<super::JsonArg>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> i64 {
    let source = required(source, "source");
    let mapping = required(mapping, "mapping").value();
    let options = super::options(options);
    let job_id = kv::compare::submit(source, &mapping, &options)
        .inspect_err(|e| audit::log_failure("compare_kv", source, e))
        .or_raise();
    super::start_job(job_id, &kv::compare::KvCompareKind, false);
    job_id
}

/// Brings one tenant's rows in line with the store (`"wins": "store"`, the default: rows
/// upserted where they differ, rows with no key deleted), or the store with the rows
/// (`"wins": "table"`: keys written back, keys with no row deleted; Redis only). Returns a
/// summary per mapping.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.sync_kv(source text, mapping jsonb, tenant text, options jsonb DEFAULT '{}')
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.sync_kv(text, jsonb, text, jsonb) IS
'Brings one tenant''s rows in line with a key-value source (the store wins), or the source with the rows ("wins": "table"); returns what changed.';
"#)]
fn sync_kv(
    source: Option<&str>,
    mapping: Option<super::JsonArg>,
    tenant: Option<&str>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> JsonB {
    let source = required(source, "source");
    let mapping = required(mapping, "mapping").value();
    let tenant = required(tenant, "tenant");
    let options = super::options(options);
    let r = kv::sync::sync(source, &mapping, tenant, &options)
        .inspect_err(|e| audit::log_failure("sync_kv", source, e))
        .or_raise();
    audit::record(
        "sync_kv",
        source,
        json!({"tenant": tenant, "mapping": mapping, "options": options}),
        "ok",
    );
    JsonB(r)
}

/// Orphaned keys (their tenant does not exist) and orphaned rows (no key gives them), as a
/// job (`kv_cleanup`). A dry run unless `"dry_run": false`; what it deletes is saved to
/// `tenant_ops.quarantine` first. Returns the job id.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.cleanup_kv(source text, mapping jsonb, options jsonb DEFAULT '{}')
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.cleanup_kv(text, jsonb, jsonb) IS
'Finds (and with "dry_run": false deletes, quarantined first) keys whose tenant does not exist and rows no key gives; returns the job id.';
"#)]
fn cleanup_kv(
    source: Option<&str>,
    mapping: Option<super::JsonArg>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> i64 {
    let source = required(source, "source");
    let mapping = required(mapping, "mapping").value();
    let options = super::options(options);
    let job_id = kv::cleanup::submit(source, &mapping, &options)
        .inspect_err(|e| audit::log_failure("cleanup_kv", source, e))
        .or_raise();
    audit::record(
        "cleanup_kv",
        source,
        json!({"mapping": mapping, "options": options}),
        &format!("job {job_id}"),
    );
    super::start_job(job_id, &kv::cleanup::KvCleanupKind, false);
    job_id
}

/// Writes the keys of an `import_kv` backup (`"backup": true`; the archive its result names,
/// in the backup directory) back into a Redis source: checked whole first, then written in
/// atomic batches, each key exactly as saved. Returns a summary.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.restore_kv(source text, file text, options jsonb DEFAULT '{}')
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.restore_kv(text, text, jsonb) IS
'Writes the keys of an import_kv backup archive back into a Redis source; options on_conflict (error, skip, overwrite) and dry_run. Returns what was written.';
"#)]
fn restore_kv(
    source: Option<&str>,
    file: Option<&str>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> JsonB {
    let source = required(source, "source");
    let file = required(file, "file");
    let options = super::options(options);
    let r = kv::restore::restore(source, file, &options)
        .inspect_err(|e| audit::log_failure("restore_kv", source, e))
        .or_raise();
    audit::record(
        "restore_kv",
        source,
        json!({"file": file, "options": options, "written": r["written"]}),
        "ok",
    );
    JsonB(r)
}
