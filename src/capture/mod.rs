//! Change capture: one tenant's inserts, updates and deletes on the tables of a scope,
//! recorded in order into `tenant_ops.capture_changes` from the moment a capture is installed
//! until it is removed. An online migration (`migrate_tenant` with `"mode": "online"`) installs
//! one when it is submitted and applies what it records while it catches up.
//!
//! ## Why triggers, not logical decoding
//!
//! Capture is done by row triggers the extension installs on each captured table (and removes),
//! not by a logical replication slot:
//!
//! - a trigger writes the change **in the writer's own transaction**: it is durable exactly when
//!   the write is, rolled back with it, and needs no slot to be advanced or dropped. A forgotten
//!   slot retains WAL until the disk fills; a forgotten trigger only costs writes;
//! - it works on **every server**: no `wal_level = logical` (a restart on most installations,
//!   unavailable on some managed ones), no replication privilege, no output plugin;
//! - the trigger decides **which tenant a row belongs to** with the scope's own filter (the
//!   ownership path), in SQL, at write time: decoding gives every tenant's changes of the whole
//!   table, and a child row's tenant cannot be told from the WAL record alone (its parents are
//!   not in it);
//! - the change log is a **table**: the catch-up reads and deletes it in the transaction that
//!   applies it (exactly once, crash-safe), and `tenant_ops.progress` counts it.
//!
//! The price is the write overhead of the trigger on the captured tables while a capture runs
//! (measured by `bench/online.sh`, figures in the README). Logical decoding (a slot with
//! `test_decoding`/`pgoutput` on the scope's tables) stays the documented alternative for
//! write-heavy tables where that overhead matters more than the points above.
//!
//! ## What is recorded
//!
//! Per captured table a PL/pgSQL trigger function (SECURITY DEFINER with a safe search_path,
//! owned by the extension owner, EXECUTE revoked from PUBLIC) decides with the scope's filter
//! (a predicate function it calls, which needs neither: it runs inside it) whether the row before (`OLD`) and after (`NEW`) the
//! change is one of the tenant's, and records:
//!
//! - `I` with the new row when the row is new to the tenant (inserted, or moved in from another
//!   tenant), `U` when it was the tenant's before and still is;
//! - `D` with the old row when the row before was the tenant's and is no longer (deleted, moved
//!   to another tenant), or its key changed.
//!
//! A row's descendants follow it between tenants without a change of their own: the catch-up
//! reads them again under an `I` or `D` of their parent (see `crate::migrate::online`). A child deleted by an `ON DELETE
//! CASCADE` (or cleared by `SET NULL`) has lost the parent its filter goes through; it is still
//! recorded when that parent's own delete was recorded in the same transaction (deletes are
//! captured by a BEFORE trigger, so a parent's record exists before its children cascade).
//! `TRUNCATE` of a captured table is refused while the capture runs. Changes are applied by
//! reading the rows their keys name again (see `crate::migrate::online`), so a change recorded
//! twice, or recorded for a row the copy already saw, is applied once.

pub mod error;

use pgrx::prelude::*;
use pgrx::spi::quote_literal;

use crate::error::OrRaise;
use crate::pg::quote_ident;
use crate::scope::graph::{Role, TableId};
use crate::scope::LoadedScope;
use crate::sys::owner;
pub use error::Error;

/// A capture as stored in `tenant_ops.captures`.
#[derive(Clone, Debug)]
pub struct Capture {
    pub id: i64,
    pub job_id: i64,
    pub status: String,
}

/// What the catch-up of a capture has not applied yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lag {
    pub changes: i64,
    /// Age of the oldest change not applied, in seconds (0 with none).
    pub seconds: f64,
}

/// The tables a capture of `loaded` records: the root and every owned table (shared tables
/// belong to no tenant).
pub fn captured_tables(loaded: &LoadedScope) -> Vec<TableId> {
    loaded
        .resolved
        .tables
        .iter()
        .filter(|t| t.role != Role::Shared)
        .map(|t| t.oid)
        .collect()
}

/// Checks what a capture of `loaded` needs, before anything is written: a primary key on
/// every captured table (a change is applied by the key of the row it names), and the
/// caller's TRIGGER privilege on it.
pub fn check(loaded: &LoadedScope) -> Result<(), Error> {
    for oid in captured_tables(loaded) {
        let t = loaded.catalog.table(oid);
        if t.primary_key.is_none() {
            return Err(Error::NoPrimaryKey {
                table: t.display.clone(),
            });
        }
        let ok = Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.has_table_privilege($1::pg_catalog.oid, 'TRIGGER')",
            &[(oid as i64).into()],
        )
        .or_raise()
        .unwrap_or(false);
        if !ok {
            return Err(Error::NoTriggerPrivilege {
                table: t.display.clone(),
            });
        }
    }
    Ok(())
}

/// What a capture is for: it words the refusals its triggers give (a TRUNCATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// An online migration's catch-up.
    OnlineMigration,
    /// The changes an incremental backup's links are made of.
    IncrementalBackups,
}

impl Purpose {
    /// What the TRUNCATE refusal says the table is captured for, and what to do.
    fn truncate_words(self, job_id: i64) -> (String, &'static str) {
        match self {
            Purpose::OnlineMigration => (
                format!("online migration job {job_id}"),
                "Cut the migration over or roll it back first.",
            ),
            Purpose::IncrementalBackups => (
                format!("the incremental backups of backup job {job_id}"),
                "Take the next incremental first if its changes matter, then drop the base backup (drop_backup), which stops the capture.",
            ),
        }
    }
}

/// Installs a capture of `tenant`'s rows of `loaded` for job `job_id` (`purpose` words its
/// refusals): its trigger functions and triggers, created as the extension owner. Creating a
/// trigger waits for the writes in flight on the table and holds off new ones until the
/// caller's transaction commits, so once it has, every write of the tenant's rows is either
/// recorded or was committed before.
pub fn install(
    job_id: i64,
    loaded: &LoadedScope,
    tenant: &str,
    purpose: Purpose,
) -> Result<i64, Error> {
    check(loaded)?;
    let tables = captured_tables(loaded);
    let id = owner::get_one::<i64>(
        "SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('tenant_ops.captures', 'id'))",
        &[],
    )
    .or_raise()
    .expect("nextval gives a value");
    let filters = loaded.filters();
    let mut install = vec![];
    let mut remove = vec![];
    let mut fence = vec![];
    for oid in &tables {
        let ddl = table_ddl(loaded, &filters, *oid, id, job_id, tenant, purpose);
        install.push(ddl.install);
        remove.push(ddl.remove);
        fence.push(ddl.fence);
    }
    let oids: Vec<i64> = tables.iter().map(|t| *t as i64).collect();
    owner::execute(
        "INSERT INTO tenant_ops.captures (id, job_id, scope, tenant, tables, install_ddl, remove_ddl, fence_ddl)
         OVERRIDING SYSTEM VALUE
         VALUES ($1, $2, $3, $4, $5::pg_catalog.oid[]::pg_catalog.regclass[], $6, $7, $8)",
        &[
            id.into(),
            job_id.into(),
            loaded.definition.name.clone().into(),
            tenant.into(),
            oids.into(),
            install.join("\n").into(),
            remove.join("\n").into(),
            fence.join("\n").into(),
        ],
    )
    .or_raise();
    owner::execute("SELECT tenant_ops.capture_ddl($1, 'install')", &[id.into()]).or_raise();
    Ok(id)
}

/// The DDL of the capture of one table.
struct TableDdl {
    /// A predicate function saying whether a row is the tenant's, the trigger function, and
    /// its triggers.
    install: String,
    /// The trigger function replaced by one refusing writes of the tenant's rows (cut over).
    fence: String,
    /// Triggers and functions dropped.
    remove: String,
}

fn table_ddl(
    loaded: &LoadedScope,
    filters: &crate::scope::graph::Filters,
    oid: TableId,
    capture: i64,
    job_id: i64,
    tenant: &str,
    purpose: Purpose,
) -> TableDdl {
    let catalog = &loaded.catalog;
    let t = catalog.table(oid);
    let n = oid;
    let pred = format!(
        "tenant_ops.{}",
        quote_ident(&format!("capture_{capture}_{n}_in"))
    );
    let func = format!(
        "tenant_ops.{}",
        quote_ident(&format!("capture_{capture}_{n}"))
    );
    let trig = quote_ident(&format!("tenant_ops_capture_{capture}"));
    let trig_del = quote_ident(&format!("tenant_ops_capture_{capture}_del"));
    let trig_trunc = quote_ident(&format!("tenant_ops_capture_{capture}_truncate"));
    // The filter's columns are unqualified (they name the row `s`'s), its tenant value is `$1`:
    // the predicate's first parameter, text, as everywhere else.
    let filter = filters.filter(oid);
    // A child whose parent was deleted in this transaction (a cascade): its filter, which goes
    // through that parent, no longer finds the tenant; the parent's own `D` record says.
    let cascade = loaded
        .resolved
        .get(oid)
        .and_then(|st| st.owner_edge)
        .map(|i| &catalog.edges[i])
        .filter(|e| e.parent != oid)
        .map(|e| {
            let parent = catalog.table(e.parent);
            let on: Vec<String> = e
                .parent_cols
                .iter()
                .zip(&e.child_cols)
                .map(|(pc, cc)| format!("p.{} = ($2).{}", parent.quoted_col(pc), t.quoted_col(cc)))
                .collect();
            let image: Vec<String> = e
                .parent_cols
                .iter()
                .zip(&e.child_cols)
                .map(|(pc, cc)| format!("{}, ($2).{}", quote_literal(pc), t.quoted_col(cc)))
                .collect();
            format!(
                "IF NOT $3 THEN
                   RETURN false;
                 END IF;
                 RETURN NOT EXISTS (SELECT FROM {} p WHERE {})
                     AND EXISTS (SELECT FROM tenant_ops.capture_changes c
                                  WHERE c.capture_id = {capture} AND c.xid = pg_catalog.pg_current_xact_id()
                                    AND c.table_name = {} AND c.op = 'D'
                                    AND c.row_data @> pg_catalog.jsonb_build_object({}));",
                parent.sql,
                on.join(" AND "),
                e.parent,
                image.join(", ")
            )
        })
        .unwrap_or_else(|| "RETURN false;".into());
    // The row is the tenant's: where the filter compares a column of the row with the tenant
    // value (the root; a table whose foreign key holds the tenant key), that comparison alone,
    // which PL/pgSQL evaluates without running a query; else the filter, over the row.
    let key_type = &catalog
        .table(loaded.resolved.root)
        .known_column(&loaded.resolved.tenant_key)
        .type_name;
    let direct = match loaded.resolved.get(oid).and_then(|st| st.owner_edge) {
        None if oid == loaded.resolved.root => Some(loaded.resolved.tenant_key.clone()),
        Some(i) => {
            let e = &catalog.edges[i];
            (e.parent == loaded.resolved.root
                && e.parent_cols.len() == 1
                && e.parent_cols[0] == loaded.resolved.tenant_key)
                .then(|| e.child_cols[0].clone())
        }
        None => None,
    };
    let in_tenant = match direct {
        Some(col) => format!("($2).{} = $1::{key_type}", t.quoted_col(&col)),
        None => format!("EXISTS (SELECT FROM (SELECT ($2).*) s WHERE {filter})"),
    };
    // The columns the filter reads of the row itself: the tenant key (root), or the ownership
    // path's first hop. An update that leaves them alone leaves the row's tenant as it was
    // (both images would be tested against the same parent rows, at the same moment).
    let owning: Vec<String> = match loaded.resolved.get(oid).and_then(|st| st.owner_edge) {
        Some(i) => catalog.edges[i].child_cols.clone(),
        None => vec![loaded.resolved.tenant_key.clone()],
    };
    let owning_of = |rec: &str| -> String {
        let cols: Vec<String> = owning
            .iter()
            .map(|c| format!("{rec}.{}", t.quoted_col(c)))
            .collect();
        format!("ROW({})", cols.join(", "))
    };
    let key: Vec<&String> = t
        .primary_key
        .as_ref()
        .map(|k| k.iter().collect())
        .unwrap_or_default();
    let key_of = |rec: &str| -> String {
        let cols: Vec<String> = key
            .iter()
            .map(|c| format!("{rec}.{}", t.quoted_col(c)))
            .collect();
        format!("ROW({})", cols.join(", "))
    };
    // The tenant value is the triggers' argument (TG_ARGV[0]): data the function reads, never
    // part of its code.
    let tenant_arg = quote_literal(tenant);
    let tenant_lit = "TG_ARGV[0]";
    let record = |op: &str, rec: &str| {
        format!(
            "INSERT INTO tenant_ops.capture_changes (capture_id, job_id, table_name, op, row_data)
                 VALUES ({capture}, {job_id}, {n}, '{op}', pg_catalog.to_jsonb({rec}));"
        )
    };
    let (captured_for, truncate_hint) = purpose.truncate_words(job_id);
    let refuse = quote_literal(format!(
        "{} is captured for {captured_for}: TRUNCATE would lose its changes",
        t.display
    ));
    let truncate_hint = quote_literal(truncate_hint);
    let pred_body = format!(
        "BEGIN
           IF {in_tenant} THEN
             RETURN true;
           END IF;
           {cascade}
         END"
    );
    let func_body = format!(
        "DECLARE
           __tenant_ops_old boolean := false;
           __tenant_ops_new boolean := false;
         BEGIN
           IF TG_OP = 'TRUNCATE' THEN
             RAISE EXCEPTION USING ERRCODE = '55006', MESSAGE = {refuse},
               HINT = {truncate_hint};
           END IF;
           IF TG_OP = 'DELETE' THEN
             IF {pred}({tenant_lit}, OLD, true) THEN
               {del}
             END IF;
             RETURN OLD;
           END IF;
           __tenant_ops_new := {pred}({tenant_lit}, NEW, false);
           IF TG_OP = 'UPDATE' THEN
             IF {old_owning} IS NOT DISTINCT FROM {new_owning} THEN
               __tenant_ops_old := __tenant_ops_new;
             ELSE
               __tenant_ops_old := {pred}({tenant_lit}, OLD, true);
             END IF;
             IF __tenant_ops_old AND (NOT __tenant_ops_new OR {old_key} IS DISTINCT FROM {new_key}) THEN
               {del}
             END IF;
           END IF;
           IF __tenant_ops_new THEN
             IF TG_OP = 'INSERT' OR NOT __tenant_ops_old THEN {new_row} ELSE {changed_row} END IF;
           END IF;
           RETURN NULL;
         END",
        del = record("D", "OLD"),
        // A row new to the tenant (inserted, or moved in from another tenant) is an `I`: its
        // descendants, which follow it without a change of their own, come with it.
        new_row = record("I", "NEW"),
        changed_row = record("U", "NEW"),
        old_key = key_of("OLD"),
        new_key = key_of("NEW"),
        old_owning = owning_of("OLD"),
        new_owning = owning_of("NEW"),
    );
    let install = format!(
        "CREATE FUNCTION {pred}(text, {tbl}, boolean) RETURNS boolean
           LANGUAGE plpgsql STABLE AS {pred_body};
         REVOKE ALL ON FUNCTION {pred}(text, {tbl}, boolean) FROM PUBLIC;
         CREATE FUNCTION {func}() RETURNS trigger
           LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {func_body};
         REVOKE ALL ON FUNCTION {func}() FROM PUBLIC;
         CREATE TRIGGER {trig} AFTER INSERT OR UPDATE ON {tbl} FOR EACH ROW EXECUTE FUNCTION {func}({tenant_arg});
         CREATE TRIGGER {trig_del} BEFORE DELETE ON {tbl} FOR EACH ROW EXECUTE FUNCTION {func}({tenant_arg});
         CREATE TRIGGER {trig_trunc} BEFORE TRUNCATE ON {tbl} FOR EACH STATEMENT EXECUTE FUNCTION {func}({tenant_arg});",
        tbl = t.sql,
        pred_body = dollar_quoted(&pred_body),
        func_body = dollar_quoted(&func_body),
    );
    let remove = format!(
        "DROP TRIGGER IF EXISTS {trig} ON {tbl};
         DROP TRIGGER IF EXISTS {trig_del} ON {tbl};
         DROP TRIGGER IF EXISTS {trig_trunc} ON {tbl};
         DROP FUNCTION IF EXISTS {func}();
         DROP FUNCTION IF EXISTS {pred}(text, {tbl}, boolean);",
        tbl = t.sql
    );
    let fenced = format!(
        "'tenant \"' || TG_ARGV[0] || {}",
        quote_literal(format!(
            "\" of scope \"{}\" was cut over by online migration job {job_id}: its rows of {} are read-only",
            loaded.definition.name, t.display
        ))
    );
    let fence_body = format!(
        "BEGIN
           -- The reverse sync writes here, inside the job's window (crate::sys::with_job_window).
           IF TG_OP <> 'TRUNCATE' AND tenant_ops.job_window_open({job_id}) THEN
             IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
             RETURN NULL;
           END IF;
           IF TG_OP = 'TRUNCATE'
              OR (TG_OP IN ('UPDATE', 'DELETE') AND {pred}({tenant_lit}, OLD, false))
              OR (TG_OP IN ('INSERT', 'UPDATE') AND {pred}({tenant_lit}, NEW, false)) THEN
             RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = {fenced},
               HINT = 'Write to the migration''s target; rollback_migration({job_id}) switches back.';
           END IF;
           IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
           RETURN NULL;
         END"
    );
    let fence = format!(
        "CREATE OR REPLACE FUNCTION {func}() RETURNS trigger
           LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {};",
        dollar_quoted(&fence_body)
    );
    TableDdl {
        install,
        fence,
        remove,
    }
}

/// `body` as a dollar-quoted string whose tag it does not contain (identifiers in it are
/// quoted, but a quoted identifier may hold anything).
fn dollar_quoted(body: &str) -> String {
    let mut tag = "$__tenant_ops$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$__tenant_ops{n}$");
    }
    format!("{tag}{body}{tag}")
}

/// The capture of job `job_id`, if it has one.
pub fn for_job(job_id: i64) -> Option<Capture> {
    of_kind(job_id, "source")
}

/// The capture of the target tables of job `job_id` (its reverse sync), if it has one.
pub fn reverse_for_job(job_id: i64) -> Option<Capture> {
    of_kind(job_id, "target")
}

fn of_kind(job_id: i64, kind: &str) -> Option<Capture> {
    Spi::connect(|c| {
        let t = c.select(
            "SELECT id, status FROM tenant_ops.captures WHERE job_id = $1 AND kind = $2 ORDER BY id DESC LIMIT 1",
            None,
            &[job_id.into(), kind.into()],
        )?;
        let mut out = None;
        for r in t {
            out = Some(Capture {
                id: r.get::<i64>(1)?.unwrap_or_default(),
                job_id,
                status: r.get::<String>(2)?.unwrap_or_default(),
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise()
}

/// One table whose every row a mirror capture records (see [`install_mirror`]).
pub struct MirrorTable {
    pub oid: u32,
    /// Qualified, quoted.
    pub sql: String,
    pub display: String,
}

/// Installs a capture of every row of `tables` (the target tables of job `job_id` after its
/// cutover, which hold the tenant's rows only): the reverse sync's. The records are those of
/// a source capture (I, U, D), without a tenant test; TRUNCATE is refused.
pub fn install_mirror(job_id: i64, scope: &str, tenant: &str, tables: &[MirrorTable]) -> i64 {
    let id = owner::get_one::<i64>(
        "SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('tenant_ops.captures', 'id'))",
        &[],
    )
    .or_raise()
    .expect("nextval gives a value");
    let (mut install, mut remove) = (vec![], vec![]);
    for t in tables {
        let func = format!(
            "tenant_ops.{}",
            quote_ident(&format!("capture_{id}_{}", t.oid))
        );
        let trig = quote_ident(&format!("tenant_ops_capture_{id}"));
        let trig_del = quote_ident(&format!("tenant_ops_capture_{id}_del"));
        let trig_trunc = quote_ident(&format!("tenant_ops_capture_{id}_truncate"));
        let record = |op: &str, rec: &str| {
            format!(
                "INSERT INTO tenant_ops.capture_changes (capture_id, job_id, table_name, op, row_data)
                     VALUES ({id}, {job_id}, {}, '{op}', pg_catalog.to_jsonb({rec}));",
                t.oid
            )
        };
        let refuse = quote_literal(format!(
            "{} is synchronised back to the source by online migration job {job_id}: TRUNCATE would lose its changes",
            t.display
        ));
        let body = format!(
            "BEGIN
               IF TG_OP = 'TRUNCATE' THEN
                 RAISE EXCEPTION USING ERRCODE = '55006', MESSAGE = {refuse},
                   HINT = 'End the reverse sync first.';
               END IF;
               IF TG_OP = 'DELETE' THEN
                 {del}
                 RETURN OLD;
               END IF;
               IF TG_OP = 'INSERT' THEN {ins} ELSE {upd} END IF;
               RETURN NULL;
             END",
            del = record("D", "OLD"),
            ins = record("I", "NEW"),
            upd = record("U", "NEW"),
        );
        install.push(format!(
            "CREATE FUNCTION {func}() RETURNS trigger
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {};
             REVOKE ALL ON FUNCTION {func}() FROM PUBLIC;
             CREATE TRIGGER {trig} AFTER INSERT OR UPDATE ON {tbl} FOR EACH ROW EXECUTE FUNCTION {func}();
             CREATE TRIGGER {trig_del} BEFORE DELETE ON {tbl} FOR EACH ROW EXECUTE FUNCTION {func}();
             CREATE TRIGGER {trig_trunc} BEFORE TRUNCATE ON {tbl} FOR EACH STATEMENT EXECUTE FUNCTION {func}();",
            dollar_quoted(&body),
            tbl = t.sql
        ));
        remove.push(format!(
            "DROP TRIGGER IF EXISTS {trig} ON {tbl};
             DROP TRIGGER IF EXISTS {trig_del} ON {tbl};
             DROP TRIGGER IF EXISTS {trig_trunc} ON {tbl};
             DROP FUNCTION IF EXISTS {func}();",
            tbl = t.sql
        ));
    }
    let oids: Vec<i64> = tables.iter().map(|t| t.oid as i64).collect();
    owner::execute(
        "INSERT INTO tenant_ops.captures (id, job_id, scope, tenant, tables, kind, install_ddl, remove_ddl, fence_ddl)
         OVERRIDING SYSTEM VALUE
         VALUES ($1, $2, $3, $4, $5::pg_catalog.oid[]::pg_catalog.regclass[], 'target', $6, $7, '')",
        &[
            id.into(),
            job_id.into(),
            scope.into(),
            tenant.into(),
            oids.into(),
            install.join("\n").into(),
            remove.join("\n").into(),
        ],
    )
    .or_raise();
    owner::execute("SELECT tenant_ops.capture_ddl($1, 'install')", &[id.into()]).or_raise();
    id
}

/// Removes a capture's triggers and functions (nothing more is recorded once the caller's
/// transaction commits; writers wait for it from here).
pub fn remove_triggers(capture_id: i64) {
    owner::execute(
        "SELECT tenant_ops.capture_ddl($1, 'remove')",
        &[capture_id.into()],
    )
    .or_raise();
}

/// Removes a capture's triggers and functions and the changes it recorded and nobody applied;
/// the capture is kept, `stopped` (or `cut_over` stays as it is, with `stopped_at` set).
pub fn stop(capture_id: i64) {
    remove_triggers(capture_id);
    owner::execute(
        "DELETE FROM tenant_ops.capture_changes WHERE capture_id = $1",
        &[capture_id.into()],
    )
    .or_raise();
    owner::execute(
        "UPDATE tenant_ops.captures
            SET status = CASE WHEN status = 'capturing' THEN 'stopped' ELSE status END,
                stopped_at = pg_catalog.clock_timestamp()
          WHERE id = $1 AND stopped_at IS NULL",
        &[capture_id.into()],
    )
    .or_raise();
}

/// Stops the capture of job `job_id`, if it has one still installed.
pub fn stop_for_job(job_id: i64) {
    let ids = owner::rows(
        "SELECT id FROM tenant_ops.captures WHERE job_id = $1 AND stopped_at IS NULL",
        &[job_id.into()],
        |r| r.get::<i64>(1).map(|v| v.unwrap_or_default()),
    )
    .or_raise();
    for id in ids {
        stop(id);
    }
}

/// Ends a capture at a cutover: its trigger functions no longer record but refuse writes of
/// the tenant's rows (the "fence", removed by [`stop`]), the changes left are dropped (the
/// cutover applied them), and it is marked `cut_over`.
pub fn fence(capture_id: i64) {
    owner::execute(
        "SELECT tenant_ops.capture_ddl($1, 'fence')",
        &[capture_id.into()],
    )
    .or_raise();
    owner::execute(
        "DELETE FROM tenant_ops.capture_changes WHERE capture_id = $1",
        &[capture_id.into()],
    )
    .or_raise();
    owner::execute(
        "UPDATE tenant_ops.captures SET status = 'cut_over' WHERE id = $1",
        &[capture_id.into()],
    )
    .or_raise();
}

/// Locks the captured tables of `capture_id` in SHARE mode until the transaction ends: writers
/// wait, so what the capture recorded and the rows it names are read at one moment (an
/// incremental backup, `crate::backup::incremental`).
///
/// The tables are locked one after the other while writers lock them in their own order
/// (a writer of a child holds it and then needs its parent): waiting for the whole set could
/// deadlock with one, and the deadlock detector would abort either side. So the locks are
/// taken in attempts of at most 200 ms each (well before `deadlock_timeout`): an attempt that
/// does not get them all gives back what it got, and the next tries again.
pub fn lock_writes(capture_id: i64) {
    const ATTEMPTS: u32 = 50;
    for attempt in 1..=ATTEMPTS {
        let got = crate::sys::with_settings(&[("lock_timeout", "200ms")], || {
            crate::sys::try_subtransaction(|| {
                owner::execute(
                    "SELECT tenant_ops.capture_ddl($1, 'lock')",
                    &[capture_id.into()],
                )
                .or_raise()
            })
        });
        match got {
            Ok(_) => return,
            Err(e)
                if attempt < ATTEMPTS
                    && matches!(
                        e.sqlstate,
                        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
                            | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
                    ) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => crate::error::Report::new(e.sqlstate, e.message)
                .detail(e.detail)
                .hint(e.hint)
                .raise(),
        }
    }
}

/// Counts `applied` more changes applied.
pub fn record_applied(capture_id: i64, applied: i64) {
    owner::execute(
        "UPDATE tenant_ops.captures SET applied = applied + $2, applied_at = pg_catalog.clock_timestamp()
          WHERE id = $1",
        &[capture_id.into(), applied.into()],
    )
    .or_raise();
}

/// What is recorded and not applied yet.
pub fn lag(capture_id: i64) -> Lag {
    let (n, s) = owner::rows(
        "SELECT pg_catalog.count(*),
                coalesce(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.min(captured_at)), 0)::float8
           FROM tenant_ops.capture_changes WHERE capture_id = $1",
        &[capture_id.into()],
        |r| Ok((r.get::<i64>(1)?.unwrap_or(0), r.get::<f64>(2)?.unwrap_or(0.0))),
    )
    .or_raise()
    .into_iter()
    .next()
    .unwrap_or((0, 0.0));
    Lag {
        changes: n,
        seconds: s,
    }
}

/// Sets whether the capture is past its lag threshold; returns whether that changed.
pub fn set_lagging(capture_id: i64, lagging: bool) -> bool {
    owner::execute(
        "UPDATE tenant_ops.captures SET lagging = $2 WHERE id = $1 AND lagging <> $2",
        &[capture_id.into(), lagging.into()],
    )
    .or_raise()
        == 1
}

/// Takes the lock that serializes applying a capture's changes (the catch-up steps, a
/// cutover, a rollback) for the rest of the transaction; waits at most `lock_timeout`.
pub fn lock_apply(capture_id: i64) {
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('tenant_ops:capture:' || $1::pg_catalog.text, 0))",
        &[capture_id.into()],
    )
    .or_raise();
}

/// The status of a capture, read again (after [`lock_apply`]: what a cutover committed).
pub fn status(capture_id: i64) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT status FROM tenant_ops.captures WHERE id = $1",
        &[capture_id.into()],
    )
    .or_raise()
    .unwrap_or_default()
}
