//! Staging a backup's rows: each table's lines decoded into rows of its column types, in
//! batches (text arrays unnested and cast by the server), into a temporary table typed as
//! the table the rows go to — or only decoded, for `verify_backup`.

use pgrx::prelude::*;

use crate::backup::archive::{corrupt, Registered};
use crate::backup::error::Result;
use crate::backup::format::{self, TableEntry};
use crate::error::OrRaise;
use crate::pg::qualified;
use crate::sys::try_subtransaction;

/// Rows per statement when loading or decoding a table's lines.
pub(super) const BATCH: usize = 5_000;

/// The manifest's column types of `t`, each resolved by the catalog (`to_regtype`, a bound
/// parameter) and written back by `format_type`: a file's text never reaches SQL. The
/// modifiers are dropped (`format_type(oid, -1)`: `bpchar`, not `character`, which would be
/// char(1)), so values are checked by their base type; a type that does not exist now
/// is named.
pub(super) fn catalog_types(b: &Registered, t: &TableEntry) -> Result<Vec<String>> {
    t.columns
        .iter()
        .map(|c| {
            let resolved = try_subtransaction(|| {
                Spi::get_one_with_args::<String>(
                    "SELECT pg_catalog.format_type(pg_catalog.to_regtype($1), -1)",
                    &[c.type_.clone().into()],
                )
            })
            .ok()
            .and_then(|r| r.ok().flatten());
            resolved.ok_or_else(|| {
                corrupt(
                    b.id,
                    format!(
                        "column {}.{} has type \"{}\", which does not exist",
                        qualified(&t.schema, &t.table),
                        crate::pg::quote_ident(&c.name),
                        c.type_
                    ),
                    None,
                )
            })
        })
        .collect()
}

/// One table's lines, column by column, waiting to be sent as text arrays.
pub(super) struct Batch {
    columns: Vec<Vec<Option<String>>>,
    /// Each column's type as SQL, made by the catalog.
    types: Vec<String>,
    /// Where each statement's arguments and plan live, reset after it.
    scratch: crate::backup::Scratch,
}

impl Batch {
    pub(super) fn new(types: Vec<String>) -> Batch {
        Batch {
            columns: vec![vec![]; types.len()],
            types,
            scratch: crate::backup::Scratch::new("pg_tenant_ops restore batch"),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    pub(super) fn push(
        &mut self,
        b: &Registered,
        t: &TableEntry,
        line: &[u8],
        n: i64,
    ) -> Result<()> {
        let fields = format::parse_line(line, t.columns.len()).map_err(|e| {
            corrupt(
                b.id,
                format!(
                    "row {n} of {} does not read: {e}",
                    qualified(&t.schema, &t.table)
                ),
                None,
            )
        })?;
        for (c, f) in self.columns.iter_mut().zip(fields) {
            c.push(f);
        }
        Ok(())
    }

    /// Runs `f` with the batch as one text array per column (the batch is emptied), in the
    /// batch's scratch memory.
    fn with_args<R>(&mut self, f: impl FnOnce(&[pgrx::datum::DatumWithOid]) -> R) -> R {
        let mut columns = std::mem::take(&mut self.columns);
        self.columns = vec![vec![]; columns.len()];
        self.scratch.run(|| {
            let args: Vec<pgrx::datum::DatumWithOid> = columns
                .iter_mut()
                .map(|c| std::mem::take(c).into())
                .collect();
            f(&args)
        })
    }

    /// `SELECT u.c0::type0, ... FROM ROWS FROM (unnest($1::text[]), ...) u(c0, ...)`: the batch
    /// as rows of its types (catalog-made type names, never a file's text).
    fn typed_select(&self) -> String {
        let casts: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("u.c{i}::{ty}"))
            .collect();
        let arrays: Vec<String> = (1..=self.types.len())
            .map(|i| format!("pg_catalog.unnest(${i}::pg_catalog.text[])"))
            .collect();
        let names: Vec<String> = (0..self.types.len()).map(|i| format!("c{i}")).collect();
        format!(
            "SELECT {} FROM ROWS FROM ({}) u({})",
            casts.join(", "),
            arrays.join(", "),
            names.join(", ")
        )
    }

    /// Checks that every value of the batch decodes as its column's type.
    pub(super) fn decode(&mut self, b: &Registered, t: &TableEntry) -> Result<()> {
        if self.len() == 0 {
            return Ok(());
        }
        let sql = format!(
            "SELECT pg_catalog.count(ROW(x.*)) FROM ({}) x",
            self.typed_select()
        );
        self.with_args(|args| try_subtransaction(|| Spi::get_one_with_args::<i64>(&sql, args)))
            .map_err(|e| {
                corrupt(
                    b.id,
                    format!(
                        "a row of {} does not decode: {}",
                        qualified(&t.schema, &t.table),
                        e.message
                    ),
                    None,
                )
            })?
            .or_raise();
        Ok(())
    }

    /// Inserts the batch into `stage` as rows of the manifest's types.
    pub(super) fn load(&mut self, stage: &str) -> Result<()> {
        if self.len() == 0 {
            return Ok(());
        }
        let sql = format!("INSERT INTO {stage} {}", self.typed_select());
        self.with_args(|args| Spi::run_with_args(&sql, args))
            .or_raise();
        Ok(())
    }
}
