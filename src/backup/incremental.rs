//! Incremental backups: a chain of a base backup and the changes after it, from the change
//! capture of `crate::capture` (the one online migration uses).
//!
//! - **Base**: `create_backup(scope, tenant, '{"capture": true}')` installs a capture of the
//!   tenant's rows in the backup's own transaction, before its snapshot is taken. Creating the
//!   capture's triggers waits for the writes in flight on every captured table and holds off
//!   new ones until the backup commits, so every write is either in the base's snapshot or
//!   recorded by the capture afterwards: nothing missed, nothing doubled. (The price: writes to
//!   the tenant's tables wait for the base backup, once. A base at REPEATABLE READ, whose
//!   snapshot predates the triggers, is refused.) The capture's id is in the manifest.
//! - **Incremental**: `create_backup(scope, tenant, '{"incremental": previous_id}')`, where
//!   `previous_id` is the base or the last incremental of its chain. It locks the captured
//!   tables in SHARE mode for its transaction (writers wait; an incremental reads few rows),
//!   takes **and deletes** every change the capture recorded, and writes, per table, the
//!   current rows of the keys those changes name (the upserts) and the keys no longer the
//!   tenant's (the deletes) — the state of each changed row at that one moment, not a replay of
//!   each change, which is why a change recorded twice, or a key changed back and forth, is
//!   harmless (see `crate::migrate::online` for the same argument). Its manifest names the base,
//!   the previous link and its SHA-256, its link number, the sequence range consumed, and the
//!   digest of the tenant's whole state at that moment (what a restore is verified against).
//!   Consumed changes are deleted in the transaction that writes the link: a chain is linear
//!   (an incremental of a link that already has a successor is refused), so no later link needs
//!   them.
//! - **Restore** of link N restores the base (`mode: replace`), then applies links 1..N in
//!   order — each in one statement: the deleted keys children first, the upserts parents first
//!   (`INSERT ... ON CONFLICT (key) DO UPDATE`), foreign keys checked at its end — and compares
//!   the tenant's rows with link N's recorded state, table by table.
//! - **Verify** of link N checks that every link back to the base exists, that each follows the
//!   one before (link numbers contiguous, the base the same, the SHA-256 the next one recorded),
//!   and each file's checksums and values.
//! - `drop_backup` of the base (or its expiry) stops the capture: triggers removed, records
//!   deleted.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::archive::{self, Registered};
use super::error::{Error, Result};
use super::format::{Link, TableState};
use super::{export, tables, ColumnSpec, RowsDigest, TableSpec};
use crate::error::OrRaise;
use crate::pg::quote_ident;
use crate::scope::graph::Role;
use crate::scope::LoadedScope;
use crate::sys::owner;

fn chain_error(code: PgSqlErrorCode, message: String, hint: &str) -> Error {
    Error::Chain {
        code,
        message,
        hint: Some(hint.to_string()),
    }
}

/// Where the next incremental after `previous_id` goes: checked, nothing written.
pub struct Head {
    pub previous: Registered,
    pub base: i64,
    pub capture: i64,
    pub link: i32,
}

/// Checks that an incremental of `scope`/`tenant` can follow backup `previous_id`.
pub fn head(previous_id: i64, scope: &str, tenant: &str) -> Result<Head> {
    let chain = walk(previous_id)?;
    let previous = chain.into_iter().last().expect("a chain has its last link");
    if previous.scope != scope || previous.tenant != tenant {
        return Err(chain_error(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "backup {previous_id} is of tenant \"{}\" of scope \"{}\", not of tenant \"{tenant}\" of scope \"{scope}\"",
                previous.tenant, previous.scope
            ),
            "An incremental backup continues a chain of the same scope and tenant.",
        ));
    }
    let (base, capture, link) = match &previous.manifest.incremental {
        Some(l) => (l.base, Some(l.capture), l.link + 1),
        None => (previous.id, previous.manifest.capture, 1),
    };
    let Some(capture) = capture else {
        return Err(chain_error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("backup {previous_id} was taken without a change capture: no incremental backup can follow it"),
            "Take a base backup with create_backup(scope, tenant, '{\"capture\": true}'), then incrementals of it.",
        ));
    };
    let status = owner::get_one::<String>(
        "SELECT status FROM tenant_ops.captures WHERE id = $1 AND scope = $2 AND tenant = $3 AND kind = 'source'",
        &[capture.into(), scope.into(), tenant.into()],
    )
    .or_raise();
    if status.as_deref() != Some("capturing") {
        return Err(chain_error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "the change capture {capture} of base backup {base} is {}: the chain of backup {previous_id} cannot go on",
                status.map(|s| format!("\"{s}\"")).unwrap_or_else(|| "gone".into())
            ),
            "Take a new base backup with create_backup(scope, tenant, '{\"capture\": true}').",
        ));
    }
    let next = owner::get_one::<i64>(
        "SELECT id FROM tenant_ops.backups WHERE manifest->'incremental'->>'previous' = $1::pg_catalog.text ORDER BY id LIMIT 1",
        &[previous_id.into()],
    )
    .or_raise();
    if let Some(next) = next {
        return Err(chain_error(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("backup {previous_id} already has incremental backup {next} after it"),
            "A chain is linear: an incremental follows the last link of its chain (the newest incremental, or the base when it has none).",
        ));
    }
    Ok(Head {
        previous,
        base,
        capture,
        link,
    })
}

/// The chain of backup `id`, base first: every link registered, each one following the one
/// before it (same base, link numbers contiguous, the SHA-256 it recorded of its predecessor).
/// A plain backup is a chain of one.
pub fn walk(id: i64) -> Result<Vec<Registered>> {
    let mut out = vec![];
    let mut cur = archive::registered(id)?;
    loop {
        let Some(l) = cur.manifest.incremental.clone() else {
            out.push(cur);
            break;
        };
        let what = if l.link == 1 {
            format!("its base backup {}", l.previous)
        } else {
            format!("link {} (backup {})", l.link - 1, l.previous)
        };
        let broken = |why: String| {
            chain_error(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("the chain of incremental backup {id} is broken: {what} {why}"),
                "A restore needs the base and every link up to the one restored; take a new base backup with '{\"capture\": true}'.",
            )
        };
        let prev = match archive::registered(l.previous) {
            Ok(p) => p,
            Err(Error::UnknownBackup(_)) => return Err(broken("is missing".into())),
            Err(Error::FileMissing(path)) => {
                return Err(broken(format!("has lost its file \"{path}\"")))
            }
            Err(e) => return Err(e),
        };
        let follows = match &prev.manifest.incremental {
            Some(pl) => pl.link == l.link - 1 && pl.base == l.base,
            None => l.link == 1 && prev.id == l.base,
        };
        if !follows {
            return Err(broken("is not the link before it".into()));
        }
        if prev.sha256 != l.previous_sha256 {
            return Err(broken(format!(
                "is not the file it followed (SHA-256 {}, recorded {})",
                prev.sha256, l.previous_sha256
            )));
        }
        if prev.scope != cur.scope || prev.tenant != cur.tenant {
            return Err(broken("is of another scope or tenant".into()));
        }
        out.push(cur);
        cur = prev;
    }
    out.reverse();
    Ok(out)
}

/// The tenant's own tables (root and owned) of `loaded`, parents first, with their specs.
fn own_tables(loaded: &LoadedScope) -> Vec<(u32, TableSpec)> {
    let oids = loaded
        .resolved
        .tables
        .iter()
        .filter(|t| t.role != Role::Shared)
        .map(|t| t.oid);
    oids.zip(tables(loaded, false)).collect()
}

/// The tenant's rows of every own table digested, in one snapshot.
fn state(loaded: &LoadedScope, tenant: &str) -> Result<Vec<TableState>> {
    let own = own_tables(loaded);
    let specs: Vec<TableSpec> = own.iter().map(|(_, s)| s.clone()).collect();
    let mut digests = vec![RowsDigest::default(); specs.len()];
    export(&specs, tenant, |t, line| {
        digests[t].add(line);
        Ok(())
    })?;
    Ok(specs
        .iter()
        .zip(digests)
        .map(|(s, d)| TableState {
            schema: s.schema.clone(),
            table: s.table.clone(),
            rows: d.rows,
            rows_digest: d.hex(),
        })
        .collect())
}

/// The primary key of `oid` as (quoted column list over `alias`, key column specs).
fn key_of(loaded: &LoadedScope, oid: u32, spec: &TableSpec) -> Result<Vec<ColumnSpec>> {
    let t = loaded.catalog.table(oid);
    let pk = t.primary_key.clone().ok_or_else(|| {
        Error::Capture(crate::capture::Error::NoPrimaryKey {
            table: t.display.clone(),
        })
    })?;
    Ok(pk
        .iter()
        .filter_map(|k| spec.columns.iter().find(|c| &c.name == k).cloned())
        .collect())
}

fn list(cols: &[ColumnSpec], alias: &str) -> String {
    cols.iter()
        .map(|c| {
            if alias.is_empty() {
                c.quoted.clone()
            } else {
                format!("{alias}.{}", c.quoted)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The temporary table a link's consumed changes go to (see [`prepare`]).
const CONSUMED: &str = "pg_temp.tenant_ops_consumed_changes";

/// Takes the changes of the chain's capture (locking the captured tables so that nothing
/// changes until the link commits) and returns what the link writes: per own table the specs of
/// its upserted rows, then per own table the specs of its deleted keys, and the link's
/// manifest entry. The changes are deleted in the caller's transaction.
pub fn prepare(
    job_id: i64,
    loaded: &LoadedScope,
    tenant: &str,
    head: &Head,
) -> Result<(Vec<TableSpec>, usize, Link)> {
    crate::capture::lock_writes(head.capture);
    // The capture's changes move into a temporary table of the caller's (the owner deletes
    // them from the capture and writes them there): however many there are, they stay on
    // the server's side, in a table that spills to disk, never in one value in memory.
    Spi::run(&format!(
        "CREATE TEMP TABLE {CONSUMED} (seq int8, table_name pg_catalog.oid, op \"char\", row_data jsonb) ON COMMIT DROP"
    ))
    .or_raise();
    Spi::run(&format!(
        "DO $$ BEGIN EXECUTE pg_catalog.format('GRANT INSERT ON {CONSUMED} TO %I',
             (SELECT r.rolname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid = e.extowner
               WHERE e.extname = 'pg_tenant_ops')); END $$"
    ))
    .or_raise();
    owner::execute(
        "WITH d AS (DELETE FROM tenant_ops.capture_changes WHERE capture_id = $1
                    RETURNING seq, table_name, op, row_data)
         INSERT INTO pg_temp.tenant_ops_consumed_changes SELECT * FROM d",
        &[head.capture.into()],
    )
    .or_raise();
    let (changes, first, last) = Spi::get_three::<i64, i64, i64>(&format!(
        "SELECT pg_catalog.count(*)::int8, coalesce(pg_catalog.min(seq), 0)::int8, coalesce(pg_catalog.max(seq), 0)::int8 FROM {CONSUMED}"
    ))
    .or_raise();
    let (changes, first, last) = (changes.unwrap_or(0), first.unwrap_or(0), last.unwrap_or(0));
    let own = own_tables(loaded);
    let mut ups = vec![];
    let mut dels = vec![];
    // Per table, the keys of rows new to the tenant or gone from it (`moved`): their
    // descendants follow them without a change of their own, and are read again with them.
    let mut moved_of: Vec<(u32, String, Vec<ColumnSpec>)> = vec![];
    for (i, (oid, spec)) in own.iter().enumerate() {
        let key = key_of(loaded, *oid, spec)?;
        let keys = format!(
            "pg_temp.{}",
            quote_ident(&format!("tenant_ops_incr_{job_id}_{i}"))
        );
        let moved = format!(
            "pg_temp.{}",
            quote_ident(&format!("tenant_ops_incr_{job_id}_{i}_moved"))
        );
        for t in [&keys, &moved] {
            Spi::run(&format!(
                "CREATE TEMP TABLE {t} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA",
                list(&key, ""),
                spec.sql
            ))
            .or_raise();
        }
        // Every recorded row's key, and those of rows new to the tenant or gone from it.
        for (ops, into) in [("'I', 'U', 'D'", &keys), ("'I', 'D'", &moved)] {
            Spi::run_with_args(
                &format!(
                    "INSERT INTO {into} SELECT DISTINCT k.* FROM {CONSUMED} c,
                            pg_catalog.jsonb_populate_record(NULL::{into}, c.row_data) k
                      WHERE c.table_name = $1::pg_catalog.oid AND c.op IN ({ops})"
                ),
                &[(*oid as i64).into()],
            )
            .or_raise();
        }
        // The rows whose ownership parent moved (in or out): read again, and moved themselves.
        let parent = loaded
            .resolved
            .get(*oid)
            .and_then(|st| st.owner_edge)
            .map(|e| &loaded.catalog.edges[e])
            .filter(|e| e.parent != *oid)
            .and_then(|e| {
                moved_of
                    .iter()
                    .find(|(p, _, _)| *p == e.parent)
                    .map(|m| (e, m))
            });
        if let Some((e, (_, parent_moved, parent_key))) = parent {
            let child = loaded.catalog.table(*oid);
            let parent_t = loaded.catalog.table(e.parent);
            let child_cols: Vec<String> = e
                .child_cols
                .iter()
                .map(|c| format!("c.{}", child.quoted_col(c)))
                .collect();
            let parent_cols: Vec<String> = e
                .parent_cols
                .iter()
                .map(|c| format!("p.{}", parent_t.quoted_col(c)))
                .collect();
            let by_key = e.parent_cols.len() == parent_key.len()
                && e.parent_cols
                    .iter()
                    .zip(parent_key)
                    .all(|(a, b)| a == &b.name);
            let sql = if by_key {
                format!(
                    "INSERT INTO {moved} SELECT {} FROM {} c WHERE ({}) IN (SELECT {} FROM {parent_moved})",
                    list(&key, "c"),
                    spec.sql,
                    child_cols.join(", "),
                    list(parent_key, "")
                )
            } else {
                format!(
                    "INSERT INTO {moved} SELECT {} FROM {} c JOIN {} p ON ({}) = ({})
                      WHERE ({}) IN (SELECT {} FROM {parent_moved})",
                    list(&key, "c"),
                    spec.sql,
                    parent_t.sql,
                    child_cols.join(", "),
                    parent_cols.join(", "),
                    list(parent_key, "p"),
                    list(parent_key, "")
                )
            };
            Spi::run(&sql).or_raise();
            Spi::run(&format!("INSERT INTO {keys} SELECT * FROM {moved}")).or_raise();
        }
        moved_of.push((*oid, moved, key.clone()));
        let mut up = spec.clone();
        up.filter = format!(
            "({}) AND ({}) IN (SELECT {} FROM {keys})",
            spec.filter,
            list(&key, ""),
            list(&key, "")
        );
        ups.push(up);
        let alias = "__tenant_ops_k";
        dels.push(TableSpec {
            schema: spec.schema.clone(),
            table: spec.table.clone(),
            sql: format!("(SELECT DISTINCT * FROM {keys}) {alias}"),
            role: spec.role,
            filter: format!(
                "NOT EXISTS (SELECT FROM {} WHERE ({}) AND ({}) = ({}))",
                spec.sql,
                spec.filter,
                list(&key, ""),
                list(&key, alias)
            ),
            columns: key,
        });
    }
    // Gone now (not only at commit): another link may be taken in the same transaction.
    Spi::run(&format!("DROP TABLE {CONSUMED}")).or_raise();
    let n = ups.len();
    ups.extend(dels);
    let link = Link {
        base: head.base,
        previous: head.previous.id,
        previous_sha256: head.previous.sha256.clone(),
        link: head.link,
        capture: head.capture,
        changes,
        first_seq: first,
        last_seq: last,
        state: state(loaded, tenant)?,
    };
    Ok((ups, n, link))
}

/// A base with a capture is taken at READ COMMITTED: its snapshot must be taken after the
/// capture's triggers are in force (a REPEATABLE READ transaction's predates them, and writes
/// committed in between would be in neither the base nor the capture).
pub fn check_isolation() -> Result<()> {
    let level =
        Spi::get_one::<String>("SELECT pg_catalog.current_setting('transaction_isolation')")
            .or_raise()
            .unwrap_or_default();
    if level == "read committed" {
        return Ok(());
    }
    Err(chain_error(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("a base backup with \"capture\" cannot be taken in a {} transaction", level.to_uppercase()),
        "Its snapshot must follow the installation of the capture: take it at READ COMMITTED, or with background => true.",
    ))
}

/// Stops the change capture of a base backup being dropped (its chain cannot go on).
pub fn stop_capture(capture: Option<i64>) {
    if let Some(c) = capture {
        let running = owner::get_one::<bool>(
            "SELECT stopped_at IS NULL FROM tenant_ops.captures WHERE id = $1",
            &[c.into()],
        )
        .or_raise()
        .unwrap_or(false);
        if running {
            crate::capture::stop(c);
        }
    }
}
