//! Restoring an incremental backup: its base restored (`mode: replace`), then every link up to
//! it applied in order, then the tenant compared with the state the last link recorded (see
//! `backup::incremental` for why this is the tenant at that link's moment).

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::stage::{catalog_types, Batch, BATCH};
use super::{triggers, Restore};
use crate::backup::archive::Registered;
use crate::backup::error::{Error, Result};
use crate::backup::format::{TableEntry, DELETED};
use crate::backup::{export, incremental, RowsDigest, TableSpec, EXPORT_SETTINGS};
use crate::error::OrRaise;
use crate::pg::{qualified, quote_ident};
use crate::scope::graph::Role;
use crate::scope::LoadedScope;
use crate::sys::{try_subtransaction, with_settings};

impl Restore {
    /// Restores the chain ending in `last` (an incremental).
    pub(super) fn run_chain(&self, last: &Registered) -> Result<Value> {
        let chain = incremental::walk(last.id)?;
        for b in &chain {
            b.check_file()?;
        }
        let base = Restore {
            job_id: self.job_id,
            backup_id: chain[0].id,
            options: self.options.clone(),
        };
        let mut result = base.run()?;
        let ids: Vec<i64> = chain.iter().map(|b| b.id).collect();
        if self.options.dry_run {
            result["chain"] = json!(ids);
            return Ok(result);
        }
        let loaded = LoadedScope::load(&last.scope)?;
        let apply_links = || {
            let mut applied = vec![];
            for link in &chain[1..] {
                applied.push(with_settings(EXPORT_SETTINGS, || {
                    apply(self.job_id, &loaded, link)
                })?);
            }
            Ok(applied)
        };
        // The base's restore held the triggers off for its own writes; the links' writes too.
        let applied = if self.options.disable_triggers {
            let written: Vec<triggers::Written> = loaded
                .resolved
                .tables
                .iter()
                .map(|t| (t.oid, loaded.catalog.table(t.oid).sql.clone()))
                .collect();
            triggers::suspended(&written, apply_links)?
        } else {
            apply_links()?
        };
        let state = &last
            .manifest
            .incremental
            .as_ref()
            .expect("the last link is an incremental")
            .state;
        verify_state(&loaded, last, state)?;
        Ok(json!({
            "verified": true,
            "base": chain[0].id,
            "chain": ids,
            "base_restore": result,
            "links": applied,
            "rows": state.iter().map(|t| t.rows).sum::<i64>(),
        }))
    }
}

/// The scope's table (oid, spec over it) a manifest entry names.
fn matched(loaded: &LoadedScope, b: &Registered, e: &TableEntry) -> Result<(u32, TableSpec)> {
    let specs = crate::backup::tables(loaded, false);
    let oids = loaded
        .resolved
        .tables
        .iter()
        .filter(|t| t.role != Role::Shared)
        .map(|t| t.oid);
    oids.zip(specs)
        .find(|(_, s)| s.schema == e.schema && s.table == e.table)
        .ok_or_else(|| Error::MissingTable {
            table: qualified(&e.schema, &e.table),
            backup: b.id,
        })
}

/// Applies one link: its files staged (every value decoded as its column's type), then one
/// statement deleting its deleted keys (children first) and upserting its rows (parents
/// first), so that foreign keys are checked once, at its end.
fn apply(job_id: i64, loaded: &LoadedScope, link: &Registered) -> Result<Value> {
    let entries = &link.manifest.tables;
    let mut targets = vec![];
    let mut batches = vec![];
    for (i, e) in entries.iter().enumerate() {
        let (oid, spec) = matched(loaded, link, e)?;
        let stage = format!(
            "pg_temp.{}",
            quote_ident(&format!("tenant_ops_link_{job_id}_{}_{i}", link.id))
        );
        let cols: Vec<String> = e.columns.iter().map(|c| quote_ident(&c.name)).collect();
        Spi::run(&format!(
            "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA",
            cols.join(", "),
            spec.sql
        ))
        .or_raise();
        batches.push(Batch::new(catalog_types(link, e)?));
        targets.push((oid, spec, stage, cols));
    }
    let mut n = vec![0i64; entries.len()];
    link.read(|i, e, line| {
        n[i] += 1;
        batches[i].push(link, e, line, n[i])?;
        if batches[i].len() >= BATCH {
            batches[i].load(&targets[i].2)?;
        }
        Ok(())
    })?;
    for ((_, _, stage, _), batch) in targets.iter().zip(&mut batches) {
        batch.load(stage)?;
    }
    let mut ctes = vec![];
    let mut counts = vec![];
    let mut report = vec![];
    // Deletes, children first.
    for (i, (e, (_, spec, stage, cols))) in entries.iter().zip(&targets).enumerate().rev() {
        if e.role != DELETED {
            continue;
        }
        let key = cols.join(", ");
        ctes.push(format!(
            "d{i} AS (DELETE FROM {} WHERE ({key}) IN (SELECT {key} FROM {stage}) AND ({}) RETURNING 1)",
            spec.sql, spec.filter
        ));
        counts.push(format!("(SELECT pg_catalog.count(*) FROM d{i})"));
        report.push((qualified(&e.schema, &e.table), "deleted"));
    }
    // Upserts, parents first.
    for (i, (e, (oid, spec, stage, cols))) in entries.iter().zip(&targets).enumerate() {
        if e.role == DELETED {
            continue;
        }
        let t = loaded.catalog.table(*oid);
        let pk = t.primary_key.clone().unwrap_or_default();
        let pk_sql: Vec<String> = pk.iter().map(|k| quote_ident(k)).collect();
        let overriding = if spec
            .columns
            .iter()
            .any(|c| c.identity_always && e.columns.iter().any(|m| m.name == c.name))
        {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let set: Vec<String> = spec
            .columns
            .iter()
            .filter(|c| !pk.contains(&c.name) && !c.identity_always)
            .filter(|c| e.columns.iter().any(|m| m.name == c.name))
            .map(|c| format!("{q} = EXCLUDED.{q}", q = c.quoted))
            .collect();
        let action = if set.is_empty() {
            "DO NOTHING".to_string()
        } else {
            // Only a row of the tenant is overwritten; another tenant's row with the key stays
            // (and the verification that follows names the table).
            let outer: Vec<String> = pk_sql
                .iter()
                .map(|k| format!("__tenant_ops_t.{k}"))
                .collect();
            format!(
                "DO UPDATE SET {} WHERE EXISTS (SELECT FROM {} WHERE ({}) AND ({}) = ({}))",
                set.join(", "),
                spec.sql,
                spec.filter,
                pk_sql.join(", "),
                outer.join(", ")
            )
        };
        ctes.push(format!(
            "u{i} AS (INSERT INTO {tbl} AS __tenant_ops_t ({cols}){overriding} SELECT {cols} FROM {stage} ON CONFLICT ({pk}) {action} RETURNING 1)",
            tbl = spec.sql,
            cols = cols.join(", "),
            pk = pk_sql.join(", "),
        ));
        counts.push(format!("(SELECT pg_catalog.count(*) FROM u{i})"));
        report.push((qualified(&e.schema, &e.table), "upserted"));
    }
    if ctes.is_empty() {
        return Ok(json!({"backup_id": link.id, "tables": []}));
    }
    let sql = format!(
        "WITH {} SELECT pg_catalog.jsonb_build_array({})",
        ctes.join(",\n"),
        counts.join(", ")
    );
    let tenant = link.tenant.clone();
    let out = try_subtransaction(|| {
        Spi::get_one_with_args::<pgrx::JsonB>(&sql, &[tenant.clone().into()])
    })
    .map_err(|e| Error::RowsRefused {
        backup: link.id,
        table: "the tenant's tables".into(),
        sqlstate: e.sqlstate,
        message: e.message,
    })?
    .or_raise()
    .map(|j| j.0)
    .unwrap_or(Value::Null);
    Ok(json!({
        "backup_id": link.id,
        "tables": report.iter().enumerate().map(|(k, (table, what))| json!({
            "table": table, *what: out[k].as_i64().unwrap_or(0),
        })).collect::<Vec<_>>(),
    }))
}

/// The tenant's rows now against the state the last link recorded, table by table.
fn verify_state(
    loaded: &LoadedScope,
    last: &Registered,
    state: &[crate::backup::format::TableState],
) -> Result<()> {
    let mut specs = vec![];
    for s in state {
        let e = TableEntry {
            schema: s.schema.clone(),
            table: s.table.clone(),
            role: String::new(),
            columns: vec![],
            rows: 0,
            sha256: String::new(),
            rows_digest: String::new(),
            file: String::new(),
        };
        specs.push(matched(loaded, last, &e)?.1);
    }
    let mut digests = vec![RowsDigest::default(); specs.len()];
    with_settings(EXPORT_SETTINGS, || {
        export(&specs, &last.tenant, |t, line| {
            digests[t].add(line);
            Ok(())
        })
    })?;
    for ((s, d), spec) in state.iter().zip(&digests).zip(&specs) {
        if d.rows != s.rows || d.hex() != s.rows_digest {
            return Err(Error::RestoreUnverified {
                table: qualified(&spec.schema, &spec.table),
                detail: format!(
                    "Backup {} recorded {} rows (digest {}); restored: {} rows (digest {}).",
                    last.id,
                    s.rows,
                    s.rows_digest,
                    d.rows,
                    d.hex()
                ),
            });
        }
    }
    Ok(())
}
