//! `mode: clone`: the backup loaded as another tenant (`new_tenant`) with fresh keys, next to
//! the tenant it was taken of (or into `target_schema`).
//!
//! Keys are mapped by migrate's key mapping (`migrate::plan::Planner`), the one a
//! `migrate_tenant` with `new_tenant` uses: the root's tenant key becomes the new tenant, a
//! re-keyed table's primary key gets fresh values, and every FK (and link) column takes the
//! mapping of the key it references, following FK chains, composite keys included. Where
//! migrate records new uuids in `tenant_ops.id_map`, a clone keeps its mapping in temporary
//! tables, one per re-keyed table, filled before anything is written: the fresh values come
//! from the key column's sequence (serial, identity, a `nextval` default) or, for uuid keys,
//! from the `id_strategy` (`uuid`, `uuid7`, `uuid5` as for migrate). A table whose key
//! follows a re-keyed table (an FK in its primary key) needs nothing of its own; a composite
//! key nothing references may get its fresh values in one sequence-drawn column.
//!
//! Refused before anything changes: a new tenant that exists already; a table with rows whose
//! keys cannot be made fresh (named, with why), or with a unique index none of whose columns
//! gets a fresh value (its values would repeat the original's); fresh keys from a sequence
//! that the table holds already. References to rows outside the backup (other tenants' rows,
//! shared rows) are kept as they are; shared rows are not cloned, only added where missing.
//!
//! Afterwards, per table: the new tenant's rows number the backup's, and equal the backup's
//! rows over every column that is not a key or a reference to one.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::prelude::*;
use pgrx::spi::quote_literal;
use serde_json::{json, Value};

use super::rows::{self, compare, deferred_key, insert_shared, insert_sql, set_deferred, write};
use super::target::Matched;
use super::Ctx;
use crate::backup::error::{Error, Result};
use crate::backup::TableSpec;
use crate::error::OrRaise;
use crate::migrate::options::{IdStrategy, MigrateOptions};
use crate::migrate::plan::Planner;
use crate::migrate::uuid5;
use crate::pg::quote_ident;
use crate::scope::graph::{Role, TableId};

/// A table whose rows get fresh values in one key column.
struct Fresh {
    column: String,
    /// Where the values come from, for the report (`sequence "public"."t_id_seq"`, `uuid`).
    how: String,
    /// The sequence they are drawn from, if one.
    sequence: Option<String>,
    /// The SQL of a fresh value for the staged row `s`.
    generator: String,
    /// The temporary table mapping each staged row's key to its fresh value:
    /// `__tenant_ops_o0..` (the old key) → `__tenant_ops_new_id`.
    map: String,
    /// A single-column key: re-keyed through the planner, so references follow it.
    single: bool,
}

/// One column of a cloned row: its value over the staged row `s`, and whether it is mapped
/// (a key, or a reference to one) rather than copied.
struct Column {
    name: String,
    expr: String,
    mapped: bool,
    /// A masked column (see `pii::mask`): what verification expects of it, read from the
    /// staged row `c` as the export of the written rows prints it.
    masked: Option<String>,
}

/// A table's columns as the clone writes them, with the joins their values need.
struct Exprs {
    columns: Vec<Column>,
    joins: String,
    /// The id_map-style lookups the planner asked for: (re-keyed table, input over `s`).
    lookups: Vec<crate::migrate::plan::Lookup>,
}

/// The columns the `pii` option masks in the copy: `"mask"` decided from the backup's rows
/// as staged (the job log's `pii.masked` event names them).
fn masks(ctx: &Ctx) -> Result<crate::pii::mask::Masks> {
    let staged: Vec<(TableId, String, Vec<String>)> = ctx
        .own()
        .map(|t| {
            (
                t.source,
                t.stage.clone(),
                t.spec.columns.iter().map(|c| c.name.clone()).collect(),
            )
        })
        .collect();
    let masks = crate::pii::mask::Masks::resolve(
        ctx.options.pii.as_ref(),
        ctx.loaded,
        crate::pii::mask::Sampled::Relations(&staged),
    )?;
    if !masks.is_empty() {
        crate::jobs::log(
            ctx.job_id,
            "pii.masked",
            None,
            None,
            None,
            None,
            Some(masks.to_option(&ctx.loaded.catalog)),
        );
    }
    Ok(masks)
}

pub(super) fn run(ctx: &Ctx) -> Result<Value> {
    let new_tenant = ctx
        .options
        .new_tenant
        .clone()
        .expect("the options parser requires new_tenant with mode clone");
    let l = ctx.loaded;
    let root = ctx
        .matched
        .iter()
        .find(|t| t.spec.role == Role::Root)
        .expect("a backup holds its root table");
    if rows::count(&root.spec.sql, &root.spec.filter, &new_tenant) > 0 {
        return Err(Error::TenantExists {
            backup: ctx.b.id,
            tenant: new_tenant,
            table: root.name(),
        });
    }
    // The planner maps every re-keyed key by a lookup (whose joins are ours: the temporary
    // maps below), whatever the key's type, as it does for the strategy whose keys are
    // recorded (`uuid7`; whatever the clone's own strategy); the root's tenant key becomes `$3`.
    let options = MigrateOptions {
        id_strategy: IdStrategy::Uuid7,
        new_tenant: Some(new_tenant.clone()),
        ..MigrateOptions::default()
    };
    let mut planner = Planner {
        loaded: l,
        options: &options,
        rekeyed: BTreeSet::new(),
        is_admin: false,
        lookups: Default::default(),
        // The explicit form the job stored at submission (see `pii::mask`).
        masks: masks(ctx)?,
    };
    let mut fresh: BTreeMap<usize, Fresh> = BTreeMap::new();
    for (i, t) in ctx.matched.iter().enumerate() {
        if t.spec.role == Role::Shared {
            continue;
        }
        deferred_key(t)?;
        if let Some(f) = fresh_key(ctx, &mut planner, t, i)? {
            fresh.insert(i, f);
        }
    }
    let mut exprs: BTreeMap<usize, Exprs> = BTreeMap::new();
    for (i, t) in ctx.matched.iter().enumerate() {
        if t.spec.role != Role::Shared {
            exprs.insert(i, column_exprs(ctx, &planner, t, fresh.get(&i), None));
        }
    }
    for (i, t) in ctx.matched.iter().enumerate() {
        if let Some(e) = exprs.get(&i) {
            check_unique_indexes(ctx, t, e)?;
        }
    }
    let maps: BTreeMap<TableId, String> = fresh
        .iter()
        .filter(|(_, f)| f.single)
        .map(|(i, f)| (ctx.matched[*i].source, f.map.clone()))
        .collect();
    for (i, f) in &fresh {
        make_map(ctx, &ctx.matched[*i], f)?;
    }
    // References to rows the backup does not hold (another tenant's, an orphan under a NOT
    // VALID constraint) map to themselves: kept as they are.
    let mut outside: BTreeMap<usize, i64> = BTreeMap::new();
    for (i, e) in &exprs {
        let t = &ctx.matched[*i];
        let mut n = 0;
        for l in &e.lookups {
            let (map, input) = (&maps[&l.table], &l.input);
            n += Spi::get_one::<i64>(&format!(
                "WITH kept AS (INSERT INTO {map} (__tenant_ops_o0, __tenant_ops_new_id)
                     SELECT q.x, q.x FROM (SELECT DISTINCT ({input}) AS x FROM {} s) q
                      WHERE q.x IS NOT NULL AND NOT EXISTS (SELECT FROM {map} m WHERE m.__tenant_ops_o0 = q.x)
                     RETURNING 1)
                 SELECT pg_catalog.count(*) FROM kept",
                t.stage
            ))
            .or_raise()
            .unwrap_or(0);
        }
        outside.insert(*i, n);
    }
    let report = |i: usize, t: &Matched, inserted: Option<i64>| {
        let e = exprs.get(&i);
        json!({
            "table": t.name(), "role": t.entry.role, "rows_in_backup": t.entry.rows,
            "inserted": inserted,
            "fresh_keys": fresh.get(&i).map(|f| {
                let mut m = serde_json::Map::new();
                m.insert(f.column.clone(), json!(f.how));
                Value::Object(m)
            }),
            "follows": e.map(|e| e.columns.iter().filter(|c| c.mapped && fresh.get(&i).is_none_or(|f| f.column != c.name))
                                         .map(|c| c.name.clone()).collect::<Vec<_>>()),
            "outside_references": outside.get(&i),
            "added_columns": t.added,
        })
    };
    if ctx.options.dry_run {
        let tables: Vec<Value> = ctx
            .matched
            .iter()
            .enumerate()
            .map(|(i, t)| report(i, t, None))
            .collect();
        drop_maps(&fresh);
        return Ok(json!({"new_tenant": new_tenant, "tables": tables}));
    }
    let args = || -> Vec<pgrx::datum::DatumWithOid<'static>> {
        vec![
            ctx.b.tenant.clone().into(),
            String::new().into(),
            new_tenant.clone().into(),
        ]
    };
    let mut inserted = vec![0i64; ctx.matched.len()];
    for (i, t) in ctx.matched.iter().enumerate() {
        if t.spec.role == Role::Shared {
            inserted[i] = insert_shared(ctx, t)?;
            continue;
        }
        let e = column_exprs(ctx, &planner, t, fresh.get(&i), Some(&maps));
        let values: Vec<String> = e
            .columns
            .iter()
            .map(|c| {
                if t.deferred.contains(&c.name) {
                    "NULL".to_string()
                } else {
                    c.expr.clone()
                }
            })
            .collect();
        let sql = insert_sql(t, &values, &format!("{} s{}", t.stage, e.joins), "");
        inserted[i] = write(ctx, t, &sql, &args())?;
    }
    for (i, t) in ctx.matched.iter().enumerate() {
        if t.spec.role == Role::Shared || t.deferred.is_empty() {
            continue;
        }
        let e = column_exprs(ctx, &planner, t, fresh.get(&i), Some(&maps));
        let sets: Vec<(String, String)> = e
            .columns
            .iter()
            .filter(|c| t.deferred.contains(&c.name))
            .map(|c| (c.name.clone(), c.expr.clone()))
            .collect();
        let pk = t.primary_key.as_ref().expect("checked by deferred_key");
        let key: Vec<String> = pk
            .iter()
            .map(|k| {
                e.columns
                    .iter()
                    .find(|c| &c.name == k)
                    .map(|c| c.expr.clone())
                    .unwrap_or_else(|| format!("s.{}", quote_ident(k)))
            })
            .collect();
        let where_ = format!(
            "({}) = ({})",
            t.key_list("x").expect("keyed"),
            key.join(", ")
        );
        set_deferred(
            ctx,
            t,
            &sets,
            &format!("{} s{}", t.stage, e.joins),
            &where_,
            &args(),
        )?;
    }
    verify(ctx, &exprs, &new_tenant)?;
    drop_maps(&fresh);
    Ok(json!({
        "new_tenant": new_tenant, "verified": true,
        "rows": ctx.matched.iter().zip(&inserted).filter(|(t, _)| t.spec.role != Role::Shared).map(|(_, n)| n).sum::<i64>(),
        "tables": ctx.matched.iter().enumerate().map(|(i, t)| report(i, t, Some(inserted[i]))).collect::<Vec<_>>(),
    }))
}

/// Whether column `col` of `t` is mapped by the planner (a key re-keyed, the tenant key, or a
/// reference to either) rather than copied.
fn planner_maps(ctx: &Ctx, planner: &Planner, t: &Matched, col: &str) -> bool {
    let src = ctx.loaded.catalog.table(t.source);
    let Some(c) = src.column(col) else {
        return false;
    };
    let plain = format!("s.{}", c.quoted);
    let mapped = planner.mapped_column(t.source, col) != plain;
    planner.lookups.borrow_mut().clear();
    mapped
}

/// How `t`'s rows get fresh keys: nothing of their own when a key column follows a re-keyed
/// table (or is the tenant key); else one key column drawn fresh (see the module
/// documentation). A table with rows and neither is refused, naming why.
fn fresh_key(ctx: &Ctx, planner: &mut Planner, t: &Matched, i: usize) -> Result<Option<Fresh>> {
    let src = ctx.loaded.catalog.table(t.source);
    let Some(pk) = src.primary_key.clone() else {
        // No key to repeat; its unique indexes are checked with the others.
        return Ok(None);
    };
    if pk.iter().any(|c| planner_maps(ctx, planner, t, c)) {
        return Ok(None);
    }
    let single = pk.len() == 1;
    let c = &ctx.loaded.catalog;
    // A composite key's column that something references could only be followed as part of
    // the whole key, which the planner maps column by column: not drawn fresh.
    let referenced = |col: &String| {
        c.edges.iter().any(|e| {
            e.parent == t.source
                && e.parent_cols.contains(col)
                && ctx.loaded.resolved.get(e.child).is_some()
        })
    };
    for col in pk.iter().filter(|col| single || !referenced(col)) {
        if let Some((how, sequence, generator)) = generator(ctx, t, col)? {
            if single {
                planner.rekeyed.insert(t.source);
            }
            return Ok(Some(Fresh {
                column: col.clone(),
                how,
                sequence,
                generator,
                map: ctx.temp("map", i),
                single,
            }));
        }
    }
    if t.entry.rows == 0 {
        return Ok(None);
    }
    let cols: Vec<String> = pk.iter().map(|k| quote_ident(k)).collect();
    let why = if single {
        let ty = t
            .spec
            .columns
            .iter()
            .find(|x| x.name == pk[0])
            .map_or_else(String::new, |x| format!(" ({})", x.type_full));
        format!(
            "its primary key {}{ty} references no re-keyed table and has no sequence (serial, identity or a nextval default) to draw new values from",
            cols[0]
        )
    } else {
        format!(
            "no column of its primary key ({}) references a re-keyed table, and none that nothing references has a sequence or is a uuid",
            cols.join(", ")
        )
    };
    Err(Error::NoFreshKeys {
        backup: ctx.b.id,
        table: t.name(),
        why,
        hint: "Give the key a sequence (ALTER TABLE ... ALTER COLUMN ... ADD GENERATED BY DEFAULT AS IDENTITY, started past the largest key), or restore the backup into a staging schema with target_schema instead of cloning.".into(),
    })
}

/// Where fresh values of `t.col` come from: its sequence (an identity's or serial's, or the
/// one its default is `nextval` of), else the id strategy for a uuid column; `None` if
/// neither. Returns what the report says, the sequence, and the SQL.
fn generator(
    ctx: &Ctx,
    t: &Matched,
    col: &str,
) -> Result<Option<(String, Option<String>, String)>> {
    // One row whatever is found: the sequence, or NULLs.
    let seq = Spi::get_two_with_args::<i64, String>(
        "SELECT x.oid::pg_catalog.int8, x.oid::pg_catalog.regclass::pg_catalog.text
           FROM (SELECT) one LEFT JOIN LATERAL (
                SELECT sq.oid FROM pg_catalog.pg_class sq
                 WHERE sq.relkind = 'S' AND sq.oid = coalesce(
                       pg_catalog.pg_get_serial_sequence($1::pg_catalog.int8::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text, $2)::pg_catalog.regclass::pg_catalog.oid,
                       (SELECT d.refobjid FROM pg_catalog.pg_attrdef ad
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
                          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
                                                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          JOIN pg_catalog.pg_class s2 ON s2.oid = d.refobjid AND s2.relkind = 'S'
                         WHERE ad.adrelid = $1::pg_catalog.int8::pg_catalog.oid AND a.attname = $2
                           AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)
                               = pg_catalog.format('nextval(%L::regclass)', s2.oid::pg_catalog.regclass::pg_catalog.text)
                         LIMIT 1))) x ON true",
        &[(t.oid as i64).into(), col.into()],
    )
    .or_raise();
    if let (Some(oid), Some(name)) = seq {
        return Ok(Some((
            format!("sequence {name}"),
            Some(name),
            format!("pg_catalog.nextval({oid}::pg_catalog.oid::pg_catalog.regclass)"),
        )));
    }
    let is_uuid = t
        .spec
        .columns
        .iter()
        .any(|c| c.name == col && c.type_full == "uuid");
    if !is_uuid {
        return Ok(None);
    }
    let strategy = ctx.options.id_strategy;
    let sql = match strategy {
        IdStrategy::Uuid5 => {
            // Repeatable: the namespace a migrate clone of this scope into this tenant uses.
            let ns =
                uuid5::migration_namespace(None, &ctx.b.scope, ctx.options.new_tenant.as_deref());
            format!(
                "tenant_ops.uuid5({}::uuid, {} || (s.{})::text)",
                quote_literal(ns.to_string()),
                quote_literal(format!("{}:", t.spec.sql)),
                quote_ident(col)
            )
        }
        other => other.new_id_sql().to_string(),
    };
    Ok(Some((strategy.name().to_string(), None, sql)))
}

/// `t`'s backed-up columns as the clone writes them; `maps`: the temporary map of each
/// single-key re-keyed table, to join (none: the columns only).
fn column_exprs(
    ctx: &Ctx,
    planner: &Planner,
    t: &Matched,
    fresh: Option<&Fresh>,
    maps: Option<&BTreeMap<TableId, String>>,
) -> Exprs {
    planner.lookups.borrow_mut().clear();
    let src = ctx.loaded.catalog.table(t.source);
    let root_rekeyed = t.spec.role == Role::Root && planner.rekeyed.contains(&t.source);
    let tenant_key = &ctx.loaded.resolved.tenant_key;
    let mut columns = vec![];
    for c in &t.spec.columns {
        let plain = format!("s.{}", c.quoted);
        let mut masked = None;
        let (expr, mapped) = if root_rekeyed && &c.name == tenant_key {
            let ty = &src.known_column(tenant_key).type_name;
            (format!("$3::{ty}"), true)
        } else if fresh.is_some_and(|f| !f.single && f.column == c.name) {
            ("__tenant_ops_k.__tenant_ops_new_id".to_string(), true)
        } else if let Some(sc) = src.column(&c.name) {
            let e = planner.mapped_column(t.source, &c.name);
            let mapped = e != plain;
            match planner.masks.get(t.source, &c.name) {
                // Never a key column (`pii::mask` refuses those), so never a mapped one.
                Some(spec) if !mapped => {
                    let context = format!("column {}.{} of option \"pii\"", src.display, c.quoted);
                    let t = crate::migrate::transform::Transform::parse(spec, &context)
                        .expect("checked when the job was submitted");
                    masked = Some(format!(
                        "(({})::{})::pg_catalog.text",
                        t.to_sql(&format!("c.{}", c.quoted)),
                        sc.type_name
                    ));
                    (format!("({})::{}", t.to_sql(&e), sc.type_name), false)
                }
                _ => (e, mapped),
            }
        } else {
            (plain, false)
        };
        columns.push(Column {
            name: c.name.clone(),
            expr,
            mapped,
            masked,
        });
    }
    let lookups = planner.lookups.borrow().clone();
    let mut joins = String::new();
    if let Some(maps) = maps {
        for (n, l) in lookups.iter().enumerate() {
            if let Some(map) = maps.get(&l.table) {
                joins.push_str(&format!(
                    " LEFT JOIN {map} __tenant_ops_m{n} ON __tenant_ops_m{n}.__tenant_ops_o0 = ({})",
                    l.input
                ));
            }
        }
        if let Some(f) = fresh.filter(|f| !f.single) {
            joins.push_str(&format!(
                " JOIN {} __tenant_ops_k ON ({}) = ({})",
                f.map,
                old_key_cols(t, "__tenant_ops_k"),
                t.key_list("s").expect("keyed")
            ));
        }
    }
    Exprs {
        columns,
        joins,
        lookups,
    }
}

/// `alias.__tenant_ops_o0, ...`: a map's old-key columns.
fn old_key_cols(t: &Matched, alias: &str) -> String {
    (0..t.primary_key.as_ref().map_or(0, Vec::len))
        .map(|i| format!("{alias}.__tenant_ops_o{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every unique index of a table with rows (the primary key aside: see [`fresh_key`]) needs a
/// column that gets a fresh value or follows one; else the clone's rows would repeat the
/// original's values there.
fn check_unique_indexes(ctx: &Ctx, t: &Matched, e: &Exprs) -> Result<()> {
    if t.entry.rows == 0 {
        return Ok(());
    }
    let indexes: Vec<(String, Vec<String>)> = Spi::connect(|c| {
        c.select(
            "SELECT i.indexrelid::pg_catalog.regclass::pg_catalog.text,
                    coalesce(pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY k.ord) FILTER (WHERE a.attname IS NOT NULL), '{}')
               FROM pg_catalog.pg_index i
                    CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
                    LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = $1::pg_catalog.int8::pg_catalog.oid AND i.indisunique AND NOT i.indisprimary
                AND k.ord <= i.indnkeyatts
              GROUP BY i.indexrelid ORDER BY 1",
            None,
            &[(t.oid as i64).into()],
        )?
        .map(|r| {
            Ok((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<Vec<String>>(2)?.unwrap_or_default(),
            ))
        })
        .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise();
    for (index, cols) in indexes {
        let fresh = cols
            .iter()
            .any(|c| e.columns.iter().any(|x| &x.name == c && x.mapped));
        if !fresh {
            let named: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
            return Err(Error::NoFreshKeys {
                backup: ctx.b.id,
                table: t.name(),
                why: format!(
                    "its unique index {index} on ({}) holds no column that gets a fresh key or references one, so the copy would repeat the original's values",
                    if named.is_empty() { "an expression".to_string() } else { named.join(", ") }
                ),
                hint: "Declare the column a reference to a re-keyed table (a foreign key, or a link of the scope), drop or widen the index, or restore into a staging schema with target_schema instead of cloning.".into(),
            });
        }
    }
    Ok(())
}

/// Fills `f`'s map: each staged row's key and its fresh value (a dry run draws none and no
/// sequence advances: it predicts a sequence's values, and keeps a uuid's old ones). Fresh
/// values the table holds already (a sequence behind the table's keys) are refused, by the
/// dry run too.
fn make_map(ctx: &Ctx, t: &Matched, f: &Fresh) -> Result<()> {
    let pk = t.primary_key.as_ref().expect("a fresh key is a key column");
    let old: Vec<String> = pk
        .iter()
        .enumerate()
        .map(|(i, k)| format!("s.{} AS __tenant_ops_o{i}", quote_ident(k)))
        .collect();
    let ty = t
        .spec
        .columns
        .iter()
        .find(|c| c.name == f.column)
        .map(|c| c.type_full.clone())
        .expect("key columns are backed up");
    // A dry run draws nothing: from a sequence it predicts the values the real run would
    // draw (the next ones, by its increment; `$1`, `$2`), so that keys the table holds already
    // are found then too; a uuid key keeps its old values (fresh uuids are never taken).
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![];
    let value = match (ctx.options.dry_run, &f.sequence) {
        (false, _) => format!("({})::{ty}", f.generator),
        (true, Some(seq)) => {
            let (next, step) = Spi::get_two_with_args::<i64, i64>(
                "SELECT coalesce(pg_catalog.pg_sequence_last_value(q.seqrelid) + q.seqincrement, q.seqstart), q.seqincrement
                   FROM pg_catalog.pg_sequence q WHERE q.seqrelid = $1::pg_catalog.regclass",
                &[seq.clone().into()],
            )
            .or_raise();
            args = vec![next.unwrap_or(1).into(), step.unwrap_or(1).into()];
            format!("($1::pg_catalog.int8 + (pg_catalog.row_number() OVER () - 1) * $2::pg_catalog.int8)::{ty}")
        }
        (true, None) => format!("s.{}", quote_ident(&f.column)),
    };
    Spi::run_with_args(
        &format!(
            "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, {value} AS __tenant_ops_new_id FROM {} s",
            f.map,
            old.join(", "),
            t.stage
        ),
        &args,
    )
    .or_raise();
    Spi::run(&format!("ANALYZE {}", f.map)).or_raise();
    if ctx.options.dry_run && f.sequence.is_none() {
        return Ok(());
    }
    // The new key: the fresh column's value, the key's other columns as staged.
    let new_key: Vec<String> = pk
        .iter()
        .map(|k| {
            if *k == f.column {
                "k.__tenant_ops_new_id".to_string()
            } else {
                format!("s.{}", quote_ident(k))
            }
        })
        .collect();
    let taken = rows::count(
        &format!(
            "{} s JOIN {} k ON ({}) = ({})",
            t.stage,
            f.map,
            old_key_cols(t, "k"),
            t.key_list("s").expect("keyed")
        ),
        &format!(
            "EXISTS (SELECT FROM {} x WHERE ({}) = ({}))",
            t.spec.sql,
            t.key_list("x").expect("keyed"),
            new_key.join(", ")
        ),
        &ctx.b.tenant,
    );
    if taken > 0 {
        return Err(Error::NoFreshKeys {
            backup: ctx.b.id,
            table: t.name(),
            why: format!(
                "{taken} of the new keys from {} are keys the table holds already",
                f.how
            ),
            hint: format!(
                "Move the sequence past the table's largest key: SELECT setval({}, (SELECT max({}) FROM {})).",
                quote_literal(f.sequence.as_deref().unwrap_or_default()),
                quote_ident(&f.column),
                t.name()
            ),
        });
    }
    Ok(())
}

/// The new tenant's rows against the staged ones over every column the clone copies (not
/// mapped): the same number of rows, the same values (masked where the `pii` option masks).
fn verify(ctx: &Ctx, exprs: &BTreeMap<usize, Exprs>, new_tenant: &str) -> Result<()> {
    let mut comparisons = vec![];
    for (i, e) in exprs {
        let t = &ctx.matched[*i];
        let copied: Vec<_> = t
            .spec
            .columns
            .iter()
            .filter(|c| e.columns.iter().any(|x| x.name == c.name && !x.mapped))
            .cloned()
            .collect();
        comparisons.push(rows::Comparison {
            table: t.name(),
            actual: TableSpec {
                columns: copied.clone(),
                ..t.spec.clone()
            },
            expected: TableSpec {
                sql: t.stage.clone(),
                filter: "true".into(),
                // A masked column is expected masked.
                columns: copied
                    .into_iter()
                    .map(|mut c| {
                        c.select = e
                            .columns
                            .iter()
                            .find(|x| x.name == c.name)
                            .and_then(|x| x.masked.clone());
                        c
                    })
                    .collect(),
                ..t.spec.clone()
            },
        });
    }
    compare(&comparisons, new_tenant)
}

fn drop_maps(fresh: &BTreeMap<usize, Fresh>) {
    for f in fresh.values() {
        Spi::run(&format!("DROP TABLE {}", f.map)).or_raise();
    }
}
