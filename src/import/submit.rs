//! Starting an import: every argument checked before the job exists (the options, the
//! format, the target and the caller's privileges on it, the file), then the job created.

use std::path::PathBuf;

use pgrx::{register_xact_callback, PgXactCallbackEvent};
use serde_json::Value;

use super::error::Result;
use super::formats::Format;
use super::options::ImportOptions;
use super::plan::Target;
use super::{source, Meta, META_KEY};
use crate::jobs;
use crate::migrate::options::OnConflict;

/// Where the rows come from.
pub enum Source<'a> {
    /// A file name inside `tenant_ops.import_directory`.
    File(&'a str),
    /// Bytes sent over the connection.
    Bytes(&'a [u8]),
}

/// Creates an import job after checking the arguments; the caller runs it. Returns the job id
/// and the options parsed.
pub fn submit(
    target: u32,
    from: Source,
    format: &str,
    raw: &Value,
    background: bool,
) -> Result<(i64, ImportOptions)> {
    let options = ImportOptions::parse(raw)?;
    Format::parse(format)?;
    let t = Target::load(target)?;
    let privileges = match options.on_conflict {
        OnConflict::Overwrite | OnConflict::Merge => "INSERT, UPDATE",
        _ => "INSERT",
    };
    crate::pg::require_table_privileges(&t.sql, &t.display, privileges, "import_data")?;
    let (file, spooled, label) = match from {
        Source::File(name) => {
            source::resolve(name)?;
            (name.to_string(), false, name.to_string())
        }
        Source::Bytes(data) => {
            let path = source::spool(data)?;
            remove_on_abort(path.clone());
            (
                path.display().to_string(),
                true,
                format!("({} bytes)", data.len()),
            )
        }
    };
    let mut stored = raw.clone();
    if !stored.is_object() {
        stored = serde_json::json!({});
    }
    stored[META_KEY] = serde_json::to_value(Meta {
        target: target as i64,
        file,
        spooled,
        format: format.to_string(),
    })
    .expect("plain data serializes");
    let executor = if background {
        jobs::Executor::Background
    } else {
        jobs::Executor::Inline
    };
    let id = jobs::create("import", &t.display, &label, &stored, executor);
    Ok((id, options))
}

/// A spool file goes with the transaction that made it, should it abort; else the job
/// removes it when it ends (`load`).
fn remove_on_abort(path: PathBuf) {
    register_xact_callback(PgXactCallbackEvent::Abort, move || {
        let _ = std::fs::remove_file(&path);
    });
}
