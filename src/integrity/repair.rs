//! `repair_integrity` and `restore_quarantined`: act on what a validation found, losing
//! nothing. The offending rows are selected again from each finding, by `(tableoid, ctid)`
//! within the repair's transaction, and then quarantined (saved as jsonb, then removed),
//! deleted, or have their references set to NULL. Removing a row also handles the rows that
//! reference it: a quarantine takes them along, a delete refuses rather than leave orphans.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::Error;
use super::{quoted, tenant_chain};
use crate::error::{Common, OrRaise};
use crate::jobs;
use crate::scope::graph::{Edge, EdgeKind, TableId};
use crate::scope::LoadedScope;
use crate::sys::{owner, rolled_back_subtransaction, with_job_window, with_replica_role};

pub const STRATEGIES: &[&str] = &["quarantine", "delete", "set_null"];

struct Finding {
    check: String,
    table: TableId,
    constraint: String,
}

fn findings(validation: i64) -> Vec<Finding> {
    Spi::connect(|c| {
        c.select(
            "SELECT check_name, table_name::pg_catalog.oid::pg_catalog.int8, coalesce(constraint_name, '')
               FROM tenant_ops.integrity_issues WHERE job_id = $1 ORDER BY id",
            None,
            &[validation.into()],
        )?
        .map(|r| {
            Ok(Finding {
                check: r.get::<String>(1)?.unwrap_or_default(),
                table: r.get::<i64>(2)?.unwrap_or_default() as TableId,
                constraint: r.get::<String>(3)?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise()
}

/// A SQL set of `(tableoid, ctid)` of the rows a finding is about.
fn offending(
    l: &LoadedScope,
    tenant: &Option<String>,
    f: &Finding,
) -> Option<(String, Option<usize>)> {
    let (c, r) = (&l.catalog, &l.resolved);
    let t = c.table(f.table);
    let scope_rows = match tenant {
        Some(_) => format!(
            " AND (c.tableoid, c.ctid) IN (SELECT tableoid, ctid FROM {} WHERE {})",
            t.sql,
            l.filters().filter(f.table)
        ),
        None => String::new(),
    };
    let edge = c
        .edges
        .iter()
        .position(|e| e.child == f.table && e.answers_to(&f.constraint));
    match f.check.as_str() {
        "foreign_keys" => {
            let e = &c.edges[edge?];
            let lhs = quoted(c, e.child, &e.child_cols, "c");
            let rhs = quoted(c, e.parent, &e.parent_cols, "p");
            let nn: Vec<String> = lhs.iter().map(|x| format!("{x} IS NOT NULL")).collect();
            Some((
                format!(
                    "SELECT c.tableoid AS r_oid, c.ctid AS r_tid FROM {} c WHERE {} AND NOT EXISTS (SELECT FROM {} p WHERE ({}) = ({})){scope_rows}",
                    t.sql,
                    nn.join(" AND "),
                    c.table(e.parent).sql,
                    rhs.join(", "),
                    lhs.join(", ")
                ),
                edge,
            ))
        }
        "isolation" => {
            let e = &c.edges[edge?];
            let (cj, ct) = tenant_chain(c, r, e.child, "c", false)?;
            let (pj, pt) = tenant_chain(c, r, e.parent, "p", false)?;
            Some((
                format!(
                    "SELECT c.tableoid AS r_oid, c.ctid AS r_tid FROM {} c{cj} JOIN {} p ON ({}) = ({}){pj}
                      WHERE ({ct}) IS DISTINCT FROM ({pt}){scope_rows}",
                    t.sql,
                    c.table(e.parent).sql,
                    quoted(c, e.parent, &e.parent_cols, "p").join(", "),
                    quoted(c, e.child, &e.child_cols, "c").join(", ")
                ),
                edge,
            ))
        }
        _ => {
            // Duplicates: every copy after the first of each key.
            let link = c.edges.iter().find(|e| {
                matches!(e.kind, EdgeKind::Link) && f.constraint == format!("link {}", e.name)
            });
            let key = match link {
                Some(e) => format!(
                    "ROW({})::text",
                    quoted(c, e.parent, &e.parent_cols, "c").join(", ")
                ),
                None => "c::text".into(),
            };
            Some((
                format!(
                    "SELECT r_oid, r_tid FROM (SELECT c.tableoid AS r_oid, c.ctid AS r_tid,
                            pg_catalog.row_number() OVER (PARTITION BY {key} ORDER BY c.tableoid, c.ctid) AS n
                       FROM {} c WHERE true{scope_rows}) x WHERE n > 1",
                    t.sql
                ),
                None,
            ))
        }
    }
}

struct Repair<'a> {
    loaded: &'a LoadedScope,
    repair_id: i64,
    validation: i64,
    strategy: String,
    actions: Vec<Value>,
    depth: usize,
}

/// A frozen set of rows as `(tableoid, ctid)` pairs (ctids change as rows are removed), handed
/// to every statement that uses it as two array parameters, `$1` and `$2`: never spliced into
/// SQL text. Statements put [`ROWS`] where they need the set.
struct RowSet {
    oids: Vec<i64>,
    tids: Vec<String>,
}

/// The rows of a [`RowSet`] as a subquery of `(r_oid, r_tid)`.
const ROWS: &str = "SELECT v.r_oid::pg_catalog.oid AS r_oid, v.r_tid::pg_catalog.tid AS r_tid
                      FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[])) v(r_oid, r_tid)";

impl RowSet {
    /// Runs `query` (which selects `r_oid, r_tid`) with `args` and keeps its rows.
    fn freeze(query: &str, args: &[pgrx::datum::DatumWithOid]) -> RowSet {
        let rows: Vec<(i64, String)> = Spi::connect(|c| {
            c.select(
                &format!(
                    "SELECT x.r_oid::pg_catalog.int8, x.r_tid::pg_catalog.text FROM ({query}) x"
                ),
                None,
                args,
            )?
            .map(|r| {
                Ok((
                    r.get::<i64>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .or_raise();
        let (oids, tids) = rows.into_iter().unzip();
        RowSet { oids, tids }
    }

    /// Runs `query`, which uses the set as `$1`/`$2` (through [`ROWS`]), and keeps its rows.
    fn derive(&self, query: &str) -> RowSet {
        RowSet::freeze(query, &self.args(vec![]))
    }

    fn len(&self) -> usize {
        self.oids.len()
    }

    /// `$1` and `$2`, followed by `extra` as `$3`...
    fn args(
        &self,
        extra: Vec<pgrx::datum::DatumWithOid<'static>>,
    ) -> Vec<pgrx::datum::DatumWithOid<'static>> {
        let mut a: Vec<pgrx::datum::DatumWithOid<'static>> =
            vec![self.oids.clone().into(), self.tids.clone().into()];
        a.extend(extra);
        a
    }
}

impl Repair<'_> {
    /// Removes the rows of `set` from `table`: first, recursively, the rows that reference
    /// them (quarantine) or a refusal (delete); then the rows themselves.
    fn remove(&mut self, table: TableId, set: &RowSet, reason: &str) -> Result<(), Error> {
        let c = &self.loaded.catalog;
        let t = c.table(table).clone();
        self.depth += 1;
        if self.depth > 32 {
            return Err(Common::InvalidDefinition {
                message: "references between removed rows are nested too deep".into(),
                hint: None,
            }
            .into());
        }
        let children: Vec<Edge> = c
            .edges
            .iter()
            .filter(|e| e.parent == table)
            .cloned()
            .collect();
        for e in children {
            let child = c.table(e.child).clone();
            let child_set = set.derive(&format!(
                "SELECT c.tableoid AS r_oid, c.ctid AS r_tid FROM {} c WHERE ({}) IN (SELECT {} FROM {} p WHERE (p.tableoid, p.ctid) IN ({ROWS}))
                   AND (c.tableoid, c.ctid) NOT IN ({ROWS})",
                child.sql,
                quoted(c, e.child, &e.child_cols, "c").join(", "),
                quoted(c, e.parent, &e.parent_cols, "p").join(", "),
                t.sql
            ));
            let n = child_set.len();
            if n == 0 {
                continue;
            }
            if self.strategy == "delete" {
                return Err(Common::ForeignKeyViolation {
                    message: format!(
                        "deleting the rows of {} would leave {n} row(s) of {} referencing nothing (through {})",
                        t.display, child.display, e.name
                    ),
                    detail: None,
                    hint: Some("Use the strategy \"quarantine\", which takes those rows along (and can restore them).".into()),
                }.into());
            }
            self.remove(
                e.child,
                &child_set,
                &format!("references a row removed from {} ({})", t.display, e.name),
            )?;
        }
        if self.strategy == "quarantine" {
            // As the caller (the rows' output and cast functions are the user's), inside the
            // window of the validation job that the quarantine policy admits.
            with_job_window(self.validation, || {
                Spi::run_with_args(
                    &format!(
                        "INSERT INTO tenant_ops.quarantine (repair_id, validation_job, table_name, reason, row_data)
                         SELECT $3, $4, {table}::pg_catalog.oid::pg_catalog.regclass, $5, pg_catalog.to_jsonb(c) FROM {sql} c
                          WHERE (c.tableoid, c.ctid) IN ({ROWS})",
                        sql = t.sql
                    ),
                    &set.args(vec![
                        self.repair_id.into(),
                        self.validation.into(),
                        reason.into(),
                    ]),
                )
            })
            .or_raise();
        }
        let n = Spi::connect_mut(|cl| {
            cl.update(
                &format!(
                    "DELETE FROM {} c WHERE (c.tableoid, c.ctid) IN ({ROWS})",
                    t.sql
                ),
                None,
                &set.args(vec![]),
            )
            .map(|r| r.len() as i64)
        })
        .or_raise();
        self.actions.push(
            json!({"table": t.display, "action": self.strategy, "rows": n, "reason": reason}),
        );
        self.depth -= 1;
        Ok(())
    }

    /// Sets the finding's reference columns to NULL (refused where a column is NOT NULL).
    fn set_null(&mut self, edge: usize, set: &RowSet) -> Result<(), Error> {
        let c = &self.loaded.catalog;
        let e = &c.edges[edge];
        let t = c.table(e.child);
        for col in &e.child_cols {
            if t.column(col).is_some_and(|x| x.not_null) {
                return Err(Common::NotNullViolation {
                    message: format!(
                        "column {}.{col} is NOT NULL: the strategy \"set_null\" cannot clear it",
                        t.display
                    ),
                    hint: Some("Use \"quarantine\" or \"delete\" for this finding.".into()),
                }
                .into());
            }
        }
        let sets: Vec<String> = quoted(c, e.child, &e.child_cols, "")
            .iter()
            .map(|x| format!("{} = NULL", &x[1..]))
            .collect();
        let n = Spi::connect_mut(|cl| {
            cl.update(
                &format!(
                    "UPDATE {} c SET {} WHERE (c.tableoid, c.ctid) IN ({ROWS})",
                    t.sql,
                    sets.join(", ")
                ),
                None,
                &set.args(vec![]),
            )
            .map(|r| r.len() as i64)
        })
        .or_raise();
        self.actions.push(
            json!({"table": t.display, "action": "set_null", "columns": e.child_cols, "rows": n}),
        );
        Ok(())
    }
}

/// Repairs what validation job `validation` found. Returns the report; with `dry_run` it
/// reports what would change and changes nothing.
pub fn repair(validation: i64, strategy: &str, dry_run: bool) -> Result<Value, Error> {
    if !STRATEGIES.contains(&strategy) {
        return Err(Common::InvalidParameter(
            format!("unknown repair strategy \"{strategy}\""),
            Some(format!("Strategies: {}.", STRATEGIES.join(", "))),
        )
        .into());
    }
    let job = jobs::load_of_kind(
        validation,
        "validate",
        "a validation",
        "repair_integrity repairs what a validate_integrity job found.",
    )?;
    if job.status != jobs::Status::Succeeded {
        return Err(jobs::Error::State {
            job: validation,
            status: job.status.to_string(),
            action: "be repaired",
            hint: None,
        }
        .into());
    }
    let found = findings(validation);
    if found.is_empty() {
        return Err(Error::NothingToRepair(validation));
    }
    if strategy == "set_null" {
        if let Some(f) = found.iter().find(|f| f.check == "primary_keys") {
            return Err(Common::InvalidParameter(
                format!(
                    "the strategy \"set_null\" does not apply to duplicate keys (found in {})",
                    super::relation(f.table)
                ),
                Some("Use \"quarantine\" or \"delete\" for primary_keys findings.".into()),
            )
            .into());
        }
    }
    let loaded = LoadedScope::load(job.scope.as_deref().unwrap_or_default())?;
    let tenant = job.tenant.clone().filter(|t| !t.is_empty());
    // The sequence is the extension's: its next value is taken as the owner.
    let repair_id = owner::get_one::<i64>(
        "SELECT pg_catalog.nextval('tenant_ops.quarantine_repair_seq'::pg_catalog.regclass)",
        &[],
    )
    .or_raise()
    .unwrap_or(0);
    let run = || -> Result<Vec<Value>, Error> {
        let mut rep = Repair {
            loaded: &loaded,
            repair_id,
            validation,
            strategy: strategy.into(),
            actions: vec![],
            depth: 0,
        };
        for f in &found {
            let Some((set, edge)) = offending(&loaded, &tenant, f) else {
                continue;
            };
            // The tenant is the filter's `$1`, bound like every value.
            let set = match &tenant {
                Some(t) => RowSet::freeze(&set, &[t.clone().into()]),
                None => RowSet::freeze(&set, &[]),
            };
            match (strategy, edge) {
                ("set_null", Some(edge)) => rep.set_null(edge, &set)?,
                _ => rep.remove(f.table, &set, &format!("{} {}", f.check, f.constraint))?,
            }
        }
        Ok(rep.actions)
    };
    let actions = if dry_run {
        match rolled_back_subtransaction(run) {
            Ok(r) => r?,
            Err(e) => {
                return Err(Common::InvalidDefinition {
                    message: e.message,
                    hint: None,
                }
                .into())
            }
        }
    } else {
        run()?
    };
    Ok(json!({
        "validation_job": validation, "strategy": strategy, "dry_run": dry_run,
        "repair_id": if dry_run || strategy != "quarantine" { Value::Null } else { json!(repair_id) },
        "actions": actions,
    }))
}

/// Puts back the rows a quarantine removed (parents before the rows that reference them).
pub fn restore(repair_id: i64) -> Result<Value, Error> {
    let tables: Vec<(i64, i64)> = Spi::connect(|c| {
        c.select(
            "SELECT table_name::pg_catalog.oid::pg_catalog.int8, pg_catalog.max(id) FROM tenant_ops.quarantine
              WHERE repair_id = $1 AND restored_at IS NULL GROUP BY 1 ORDER BY 2 DESC",
            None,
            &[repair_id.into()],
        )?
        .map(|r| Ok((r.get::<i64>(1)?.unwrap_or(0), r.get::<i64>(2)?.unwrap_or(0))))
        .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise();
    if tables.is_empty() {
        return Err(Error::NothingToRestore(repair_id));
    }
    let mut restored = vec![];
    for (table, _) in tables {
        let name = Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::pg_catalog.oid",
            &[table.into()],
        )
        .or_raise()
        .unwrap_or_default();
        let cols: Vec<String> = Spi::connect(|c| {
            c.select(
                "SELECT pg_catalog.quote_ident(attname) FROM pg_catalog.pg_attribute
                  WHERE attrelid = $1::pg_catalog.oid AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
                  ORDER BY attnum",
                None,
                &[table.into()],
            )?
            .map(|r| r.get::<String>(1).map(|v| v.unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()
        })
        .or_raise();
        let r: Vec<String> = cols.iter().map(|c| format!("r.{c}")).collect();
        // The extension's bookkeeping, as the owner: which rows come back.
        let rows: Vec<Value> = owner::rows(
            "UPDATE tenant_ops.quarantine SET restored_at = pg_catalog.clock_timestamp()
              WHERE repair_id = $1 AND table_name = $2::pg_catalog.oid::pg_catalog.regclass AND restored_at IS NULL
             RETURNING row_data",
            &[repair_id.into(), table.into()],
            |r| Ok(r.get::<JsonB>(1)?.map(|j| j.0).unwrap_or(Value::Null)),
        )
        .or_raise();
        let data = Value::Array(rows);
        crate::pg::require_table_privileges(
            &name,
            &super::relation(table as TableId),
            "INSERT",
            "restore_quarantined",
        )?;
        // The rows go back as the caller (their triggers and input functions run with the
        // caller's rights), exactly as they were: with the foreign key triggers off for this
        // statement, since a row quarantined for a broken reference (an orphan under a NOT
        // VALID foreign key) would be refused as a new row.
        let n = with_replica_role(|| {
            Spi::connect_mut(|c| {
                c.update(
                    &format!(
                        "INSERT INTO {name} ({cols}) OVERRIDING SYSTEM VALUE
                         SELECT {r} FROM pg_catalog.jsonb_array_elements($1) AS e(v), pg_catalog.jsonb_populate_record(NULL::{name}, e.v) r",
                        cols = cols.join(", "),
                        r = r.join(", ")
                    ),
                    None,
                    &[JsonB(data).into()],
                )
                .map(|t| t.len() as i64)
            })
        })
        .or_raise();
        restored.push(json!({"table": super::relation(table as TableId), "rows": n}));
    }
    Ok(json!({"repair_id": repair_id, "restored": restored}))
}
