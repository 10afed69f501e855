//! Citus: distributed targets for `create_target` (`distribute.rs`) and moving one tenant to
//! another node (`move_tenant.rs`, the `move_tenant` job kind).
//!
//! Citus is probed for at run time, in the database at hand ([`installed`]); the extension
//! never links to it and works the same without it. Its functions and catalogs
//! (`pg_dist_partition`, `pg_dist_node`, `create_distributed_table`, ...) are only named in
//! statements run after the probe said yes.

pub mod distribute;
pub mod error;
pub mod kind;
pub mod move_tenant;

use pgrx::prelude::*;

pub use error::Error;

use crate::error::OrRaise;

/// Whether the Citus extension is created in this database.
pub fn installed() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus')",
    )
    .or_raise()
    .unwrap_or(false)
}

/// What Citus makes of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableType {
    /// Not a Citus table (or no Citus at all).
    Local,
    /// Hash-distributed by `column`, in colocation group `colocation`.
    Distributed { column: String, colocation: i32 },
    /// A copy on every node.
    Reference,
    /// Another kind of Citus table (a Citus local table, a schema-sharded one).
    Other,
}

/// How Citus holds table `oid` (the probe first: without Citus every table is local).
pub fn table_type(oid: u32) -> TableType {
    if !installed() {
        return TableType::Local;
    }
    let row = Spi::connect(|c| {
        let rows = c.select(
            "SELECT p.partmethod::pg_catalog.text, p.repmodel::pg_catalog.text,
                    pg_catalog.column_to_column_name(p.logicalrelid, p.partkey), p.colocationid
               FROM pg_catalog.pg_dist_partition p
              WHERE p.logicalrelid = $1::pg_catalog.oid::pg_catalog.regclass",
            Some(1),
            &[(oid as i64).into()],
        )?;
        let mut out = None;
        for r in rows {
            out = Some((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<String>(3)?,
                r.get::<i32>(4)?.unwrap_or_default(),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise();
    match row {
        None => TableType::Local,
        Some((method, _, Some(column), colocation)) if method == "h" => {
            TableType::Distributed { column, colocation }
        }
        Some((method, repmodel, _, _)) if method == "n" && repmodel == "t" => TableType::Reference,
        Some(_) => TableType::Other,
    }
}

/// On Citus, one connection per node for the rest of the transaction
/// (`citus.multi_shard_modify_mode = sequential`): a migration writes reference tables (shared
/// rows) and builds foreign keys to them, which Citus refuses in a transaction that has used
/// several connections to a node before; the tenant's own statements touch one shard anyway.
/// Nothing without Citus.
pub fn sequential_modifications() {
    if installed() {
        Spi::run(
            "SELECT pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true)",
        )
        .or_raise();
    }
}
