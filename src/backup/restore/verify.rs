//! `verify_backup`: a backup re-read whole, every value decoded, nothing written.

use serde_json::{json, Value};

use super::stage::{catalog_types, Batch, BATCH};
use crate::backup::archive::{self, Registered};
use crate::backup::error::{Error, Result};
use crate::backup::EXPORT_SETTINGS;
use crate::pg::qualified;
use crate::sys::with_settings;

/// Re-reads backup `id`: the file's size and SHA-256, the manifest against the registered
/// one, every table's SHA-256, row count and digest, and that every value decodes as its
/// column's type. Returns a report; a damaged backup is an error naming what is wrong.
pub fn verify(id: i64) -> Result<Value> {
    let b = archive::registered(id)?;
    if b.manifest.incremental.is_none() {
        return verify_file(&b);
    }
    // An incremental: every link back to its base, each one's file whole.
    let chain = crate::backup::incremental::walk(id)?;
    let mut links = vec![];
    for link in &chain {
        links.push(verify_file(link)?);
    }
    let mut report = links.pop().expect("a chain has its last link");
    report["chain"] = json!(chain.iter().map(|b| b.id).collect::<Vec<_>>());
    report["links_verified"] = json!(chain.len());
    Ok(report)
}

/// The checks of [`verify`] over a backup file, registered or just uploaded.
pub fn verify_file(b: &Registered) -> Result<Value> {
    let id = b.id;
    b.check_file()?;
    let mut batches: Vec<Batch> = b
        .manifest
        .tables
        .iter()
        .map(|t| Ok(Batch::new(catalog_types(b, t)?)))
        .collect::<Result<_>>()?;
    let mut line_no = vec![0i64; b.manifest.tables.len()];
    with_settings(EXPORT_SETTINGS, || {
        b.read(|i, t, line| {
            line_no[i] += 1;
            batches[i].push(b, t, line, line_no[i])?;
            if batches[i].len() >= BATCH {
                batches[i].decode(b, t)?;
            }
            Ok(())
        })?;
        for (t, batch) in b.manifest.tables.iter().zip(&mut batches) {
            batch.decode(b, t)?;
        }
        Ok::<(), Error>(())
    })?;
    Ok(json!({
        "backup_id": id, "verified": true, "sha256": b.sha256, "size_bytes": b.size,
        "encrypted": b.encrypted,
        "tables": b.manifest.tables.iter().map(|t| json!({
            "table": qualified(&t.schema, &t.table), "rows": t.rows, "sha256": t.sha256
        })).collect::<Vec<_>>(),
    }))
}
