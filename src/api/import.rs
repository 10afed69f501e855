//! `import_data`, `import_data_bytes`: rows from a file into a table, as a job.

use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::OrRaise;
use crate::import::{self, kind::ImportKind, Source};

/// Loads the rows of file `source` (a name inside `tenant_ops.import_directory`) into
/// `target`: CSV, JSON, NDJSON, XML, XLSX or SQL INSERTs (`auto`: told from the content), gzip and the text encoding
/// recognized, fields mapped to columns (`columns`, as migrate_tenant's), converted to the
/// columns' types and checked against `rules`. Returns the job id; its result counts the rows.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.import_data(target regclass, source text, format text DEFAULT 'auto',
                                       options jsonb DEFAULT '{}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.import_data(regclass, text, text, jsonb, boolean) IS
'Loads a file of the import directory (CSV, JSON, NDJSON, XML, XLSX, SQL) into a table, converted and validated, as a job; returns the job id.';
"#)]
fn import_data(
    target: Option<pg_sys::Oid>,
    source: Option<&str>,
    format: default!(Option<&str>, "'auto'"),
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let target = required(target, "target");
    let source = required(source, "source");
    run(
        target,
        Source::File(source),
        source,
        format,
        options,
        background,
    )
}

/// As `import_data`, for the bytes of a file sent over the connection.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.import_data_bytes(target regclass, data bytea, format text DEFAULT 'auto',
                                             options jsonb DEFAULT '{}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.import_data_bytes(regclass, bytea, text, jsonb, boolean) IS
'Loads the bytes of a file (CSV, JSON, NDJSON, XML, XLSX, SQL) into a table, converted and validated, as a job; returns the job id.';
"#)]
fn import_data_bytes(
    target: Option<pg_sys::Oid>,
    data: Option<&[u8]>,
    format: default!(Option<&str>, "'auto'"),
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let target = required(target, "target");
    let data = required(data, "data");
    let label = format!("({} bytes)", data.len());
    run(
        target,
        Source::Bytes(data),
        &label,
        format,
        options,
        background,
    )
}

fn run(
    target: pg_sys::Oid,
    from: Source,
    label: &str,
    format: Option<&str>,
    options: Option<super::JsonArg>,
    background: Option<bool>,
) -> i64 {
    let format = format.unwrap_or("auto");
    let options = super::options(options);
    let background = super::background(background);
    let table = crate::pg::relation_name(u32::from(target));
    let (job_id, parsed) = import::submit(u32::from(target), from, format, &options, background)
        .inspect_err(|e| audit::log_failure("import_data", &table, e))
        .or_raise();
    audit::record(
        "import_data",
        &table,
        json!({"source": label, "format": format, "options": options, "background": background}),
        &format!("job {job_id}"),
    );
    if parsed.defer && !background {
        return job_id;
    }
    super::start_job(job_id, &ImportKind, background);
    job_id
}
