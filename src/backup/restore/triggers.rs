//! `disable_triggers`: the tables' own triggers held off while a restore writes, as
//! `pg_restore --disable-triggers` does.
//!
//! A restore puts back rows as they were backed up and then checks every one of them; a user
//! trigger that rewrites rows as they are written (an `updated_at` stamp, pagila's
//! `last_update`) makes the restored rows differ from the backup's, and the verification
//! refuses the restore. With the option, every enabled user trigger of the tables written is
//! disabled by name, in the restore's own transaction, and put back as it was (`ENABLE`,
//! `ENABLE ALWAYS` or `ENABLE REPLICA`) once the rows are written and checked; a trigger the
//! user had disabled stays disabled. The foreign keys' internal triggers are not user triggers: the
//! references are still enforced. An ERROR rolls the `ALTER TABLE`s back with everything else.
//!
//! `ALTER TABLE ... DISABLE TRIGGER` needs the table's owner and takes a SHARE ROW EXCLUSIVE
//! lock: other sessions' writes to those tables wait until the restore commits.

use pgrx::prelude::*;

use crate::backup::error::Result;
use crate::error::{Common, OrRaise};
use crate::pg::quote_ident;

/// One enabled user trigger, and how it was enabled (`pg_trigger.tgenabled`: O, A or R).
struct Trigger {
    table: String,
    name: String,
    enabled: String,
}

/// A table the restore writes: its oid and its name as SQL.
pub(super) type Written = (u32, String);

/// Refuses (42501, nothing written) unless the caller owns every table in `tables`: run
/// before anything of the restore is written.
pub(super) fn require_owner(tables: &[Written]) -> Result<()> {
    for (oid, _) in tables {
        let owner = Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
               FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.oid",
            &[(*oid as i64).into()],
        )
        .or_raise()
        .unwrap_or(false);
        if !owner {
            return Err(Common::InsufficientPrivilege(
                format!(
                    "restore_backup with \"disable_triggers\": must be the owner of table {}",
                    crate::pg::relation_name(*oid)
                ),
                Some("Disabling a table's triggers needs its owner (or a member of the owning role): restore without the option, or as the owner.".into()),
            )
            .into());
        }
    }
    Ok(())
}

/// Runs `write` with every enabled user trigger of `tables` disabled, and puts them back as
/// they were afterwards (on success; an ERROR rolls the whole transaction back anyway).
pub(super) fn suspended<R>(tables: &[Written], write: impl FnOnce() -> Result<R>) -> Result<R> {
    let mut triggers = vec![];
    for (oid, sql) in tables {
        let found = Spi::connect(|c| {
            c.select(
                "SELECT tgname::text, tgenabled::text FROM pg_catalog.pg_trigger
                  WHERE tgrelid = $1::pg_catalog.oid AND NOT tgisinternal AND tgenabled <> 'D'
                  ORDER BY tgname",
                None,
                &[(*oid as i64).into()],
            )?
            .map(|r| {
                Ok(Trigger {
                    table: sql.clone(),
                    name: r.get::<String>(1)?.unwrap_or_default(),
                    enabled: r.get::<String>(2)?.unwrap_or_default(),
                })
            })
            .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
        })
        .or_raise();
        triggers.extend(found);
    }
    for t in &triggers {
        Spi::run(&format!(
            "ALTER TABLE {} DISABLE TRIGGER {}",
            t.table,
            quote_ident(&t.name)
        ))
        .or_raise();
    }
    let r = write()?;
    for t in &triggers {
        let how = match t.enabled.as_str() {
            "A" => "ENABLE ALWAYS",
            "R" => "ENABLE REPLICA",
            _ => "ENABLE",
        };
        Spi::run(&format!(
            "ALTER TABLE {} {how} TRIGGER {}",
            t.table,
            quote_ident(&t.name)
        ))
        .or_raise();
    }
    Ok(r)
}
