//! How a row is hashed for a checksum: the source row as the target will hold it, and the
//! target row, each one 64-bit hash by the column types' own extended hash functions. The
//! copy's own checksums (`checksums.rs`) and the verify stage (`verify.rs`) hash alike.

use std::collections::BTreeMap;

use pgrx::prelude::*;

use super::plan::TablePlan;
use crate::error::internal_error;
use crate::sys::try_subtransaction;

/// Row hashes for checksums: (source row as the target will hold it, target row `t`), each
/// a bigint. Columns are hashed by their type's own extended hash function (no text output on
/// the way), or as text where the type has none (tsvector, money, point, ...).
pub(super) fn verify_hashes(p: &TablePlan) -> (String, String) {
    hashes_over(p, |_, e| e.to_string())
}

/// [`verify_hashes`] with each source value given by `source(i, expression)` for the `i`-th
/// column hashed (the plan's columns, then its deferred ones): its expression over `s`, or
/// what holds its value already (the copy's own checksums, see `checksums.rs`).
pub(super) fn hashes_over(
    p: &TablePlan,
    source: impl Fn(usize, &str) -> String,
) -> (String, String) {
    // Deferred columns are planned from the target's own columns: one missing is our bug.
    let deferred = p.deferred.iter().map(|(c, e)| {
        let ty = match p.target.columns.iter().find(|tc| &tc.quoted == c) {
            Some(tc) => tc.type_full.clone(),
            None => internal_error(format!(
                "pg_tenant_ops: deferred column {c} is not a column of {}",
                p.target.display
            )),
        };
        (c, e, ty)
    });
    let columns = p
        .columns
        .iter()
        .zip(&p.column_types)
        .map(|((c, e), t)| (c, e, t.clone()))
        .chain(deferred);
    let mut hashable: BTreeMap<String, bool> = BTreeMap::new();
    let mut src = vec![];
    let mut tgt = vec![];
    for (i, (c, e, ty)) in columns.enumerate() {
        let native = *hashable
            .entry(ty.clone())
            .or_insert_with(|| has_extended_hash(&ty));
        let cast = if native { "" } else { "::text" };
        src.push(format!("(({})::{ty}){cast}", source(i, e)));
        tgt.push(format!("(t.{c}){cast}"));
    }
    let hash = |items: Vec<String>| {
        format!(
            "pg_catalog.hash_record_extended(ROW({}), {HASH_SEED})",
            items.join(", ")
        )
    };
    (hash(src), hash(tgt))
}

/// The seed of the row hashes. Not 0: a NULL column adds 0 to its row's hash, and with seed 0
/// so do a float's 0 and -0 and an empty jsonb (their hash functions return the seed), so a
/// 0 NULLed in the target, or a NULL given 0, went unnoticed.
pub(crate) const HASH_SEED: i64 = 0x5ca1_ab1e_0dd5_eed5;

/// Whether values of `type_sql` can be hashed by `hash_record_extended` (asked of the server:
/// arrays, domains and composites follow their element and base types).
pub(crate) fn has_extended_hash(type_sql: &str) -> bool {
    try_subtransaction(|| {
        Spi::get_one::<i64>(&format!(
            "SELECT pg_catalog.hash_record_extended(ROW(NULL::{type_sql}), 0)"
        ))
    })
    .is_ok_and(|r| r.is_ok())
}
