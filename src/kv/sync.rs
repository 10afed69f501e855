//! `sync_kv`: one tenant's rows brought in line with the store, or the store with the rows.
//!
//! - the store wins (default): the tenant's keys become rows as `import_kv` makes them (the
//!   same plan, in [`super::compare::EXPECTED`]), upserted set-based where they differ, and
//!   the tenant's rows that no key gives any more deleted. A key of the tenant that does not
//!   import (bad JSON, a rule broken) stops the sync before anything is written: deleting its
//!   row would lose data the store still has;
//! - the table wins (`"wins": "table"`): each of the tenant's rows is written back to its key
//!   (the pattern filled from the row's key columns): hash fields with HSET, JSON paths set
//!   inside the key's JSON document (other keys of the document kept), `$` as the whole
//!   value; the tenant's keys with no row are deleted. Only a Redis source can be written.

use std::collections::BTreeMap;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};

use super::compare::{fill_expected, key_columns, key_join, tenant_column, EXPECTED};
use super::error::{Error, Result};
use super::mapping::{self, KvOptions, Mapping};
use super::source::{self, Store};
use super::value::{Field, Step};
use crate::error::{Common, OrRaise};
use crate::import::plan::Fill;
use crate::migrate::options::OnConflict;
use crate::pg::quote_ident;

/// `sync_kv`'s summary.
pub fn sync(source_name: &str, mapping_doc: &Value, tenant: &str, raw: &Value) -> Result<Value> {
    let mut options = KvOptions::parse(raw)?;
    options.tenant = Some(tenant.to_string());
    let wins = options.wins.clone().unwrap_or_else(|| "store".into());
    if wins != "store" && wins != "table" {
        return Err(Common::InvalidOption(
            format!("option \"wins\" cannot be \"{wins}\""),
            Some("\"wins\" is one of: store, table.".into()),
        )
        .into());
    }
    let src = source::load(source_name)?;
    let mappings = mapping::parse(mapping_doc, &options)?;
    for m in &mappings {
        key_columns(m, "sync_kv")?;
        if tenant_column(m).is_none() {
            return Err(Error::BadMapping {
                message: format!(
                    "sync_kv needs the column the tenant's part fills, and mapping \"{}\" has none",
                    m.pattern.text
                ),
                hint: Some("Name the tenant in the pattern (\"tenant:{subdomain}\") and fill a column from it.".into()),
            });
        }
    }
    let mut store = src.open()?;
    let mut per = vec![];
    for m in &mappings {
        let figures = if wins == "store" {
            crate::pg::require_table_privileges(
                &m.plan.target.sql,
                &m.plan.target.display,
                "SELECT, INSERT, UPDATE, DELETE",
                "sync_kv",
            )?;
            store_wins(&mut store, src.options.scan_count, m, tenant)?
        } else {
            crate::pg::require_table_privileges(
                &m.plan.target.sql,
                &m.plan.target.display,
                "SELECT",
                "sync_kv",
            )?;
            table_wins(&mut store, src.options.scan_count, m, tenant)?
        };
        per.push(figures);
    }
    Ok(json!({"source": source_name, "tenant": tenant, "wins": wins, "mappings": per}))
}

fn store_wins(store: &mut Store, scan_count: u64, m: &Mapping, tenant: &str) -> Result<Value> {
    let keys = key_columns(m, "sync_kv")?;
    let expected = fill_expected(store, scan_count, m, Some(tenant))?;
    if expected.invalid > 0 {
        return Err(Error::BadMapping {
            message: format!(
                "sync_kv stops: {} key(s) of tenant \"{tenant}\" do not import ({})",
                expected.invalid,
                expected.invalid_sample.join(", ")
            ),
            hint: Some("Nothing was written. import_kv with \"dry_run\": true says why each key is refused.".into()),
        });
    }
    let t = &m.plan.target;
    let cols: Vec<&str> = m
        .plan
        .columns
        .iter()
        .map(|c| c.column.quoted.as_str())
        .collect();
    let updatable: Vec<&str> = m
        .plan
        .columns
        .iter()
        .filter(|c| !keys.contains(&c.column.name))
        .map(|c| c.column.quoted.as_str())
        .collect();
    let key_sql = keys
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let mut clause = OnConflict::Overwrite.clause("t", Some(&key_sql), &updatable);
    if updatable.is_empty() {
        clause = "ON CONFLICT DO NOTHING".into();
    } else {
        clause.push_str(&format!(
            " WHERE ROW({}) IS DISTINCT FROM ROW({})",
            updatable
                .iter()
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            updatable
                .iter()
                .map(|c| format!("EXCLUDED.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let upsert = format!(
        "WITH w AS (INSERT INTO {} AS t ({}) SELECT {} FROM {EXPECTED} e {clause} RETURNING (xmax = 0) AS inserted)
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM w",
        t.sql,
        cols.join(", "),
        cols.iter().map(|c| format!("e.{c}")).collect::<Vec<_>>().join(", "),
    );
    let (inserted, updated) = Spi::connect_mut(|c| {
        let r = c.update(&upsert, Some(1), &[])?;
        let row = r.first();
        Ok::<_, pgrx::spi::Error>((
            row.get::<i64>(1)?.unwrap_or(0),
            row.get::<i64>(2)?.unwrap_or(0),
        ))
    })
    .or_raise();
    let tcol = tenant_column(m).expect("checked");
    let delete = format!(
        "WITH d AS (DELETE FROM {} t WHERE t.{}::pg_catalog.text = $1 AND NOT EXISTS (SELECT FROM {EXPECTED} e WHERE {}) RETURNING 1)
         SELECT count(*) FROM d",
        t.sql,
        quote_ident(&tcol),
        key_join(&keys)
    );
    let deleted = Spi::connect_mut(|c| {
        let r = c.update(&delete, Some(1), &[tenant.into()])?;
        r.first().get::<i64>(1)
    })
    .or_raise()
    .unwrap_or(0);
    Spi::run(&format!("DROP TABLE IF EXISTS {EXPECTED}")).or_raise();
    Ok(
        json!({"pattern": m.pattern.text, "table": t.display, "keys": expected.keys,
              "rows_inserted": inserted, "rows_updated": updated, "rows_deleted": deleted}),
    )
}

/// Sets `path` inside `doc` to `v` (objects made on the way).
fn set_path(doc: &mut Value, path: &[Step], v: Value) {
    let Some((first, rest)) = path.split_first() else {
        *doc = v;
        return;
    };
    match first {
        Step::Key(k) => {
            if !doc.is_object() {
                *doc = Value::Object(Map::new());
            }
            let o = doc.as_object_mut().expect("made an object");
            set_path(o.entry(k.clone()).or_insert(Value::Null), rest, v);
        }
        Step::Index(i) => {
            if !doc.is_array() {
                *doc = Value::Array(vec![]);
            }
            let a = doc.as_array_mut().expect("made an array");
            while a.len() <= *i {
                a.push(Value::Null);
            }
            set_path(&mut a[*i], rest, v);
        }
    }
}

fn table_wins(store: &mut Store, scan_count: u64, m: &Mapping, tenant: &str) -> Result<Value> {
    let Store::Redis {
        source: sname,
        conn,
    } = &mut *store
    else {
        return Err(Common::FeatureNotSupported(
            "\"wins\": \"table\" writes to the store, and a localStorage dump is read-only".into(),
            Some("Sync from a Redis source, or let the store win.".into()),
        )
        .into());
    };
    let sname = sname.clone();
    let tcol = tenant_column(m).expect("checked");
    // Which column writes which part of the key or of the value.
    let mut parts: Vec<(String, String)> = vec![];
    let mut writes: Vec<(String, Field)> = vec![];
    for c in &m.plan.columns {
        if let Fill::Field { field, .. } = &c.fill {
            match &m.fields[*field].0 {
                Field::Part(p) => parts.push((c.column.name.clone(), p.clone())),
                Field::Key => {}
                f => writes.push((c.column.name.clone(), f.clone())),
            }
        }
    }
    let rows: Vec<Value> = Spi::connect(|c| {
        let r = c.select(
            &format!(
                "SELECT pg_catalog.to_jsonb(t) FROM {} t WHERE t.{}::pg_catalog.text = $1",
                m.plan.target.sql,
                quote_ident(&tcol)
            ),
            None,
            &[tenant.into()],
        )?;
        let mut out = vec![];
        for row in r {
            if let Some(j) = row.get::<JsonB>(1)? {
                out.push(j.0);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise();
    let mut written = 0i64;
    let mut row_keys: Vec<String> = vec![];
    for row in &rows {
        let mut values = BTreeMap::new();
        for (col, part) in &parts {
            if let Some(t) = crate::import::formats::json_text(&row[col]) {
                values.insert(part.clone(), t);
            }
        }
        let Some(key) = m.pattern.render(&values) else {
            continue;
        };
        let e = |err: redis::RedisError| source::redis_error(&sname, &err);
        let hash = writes.iter().any(|(_, f)| matches!(f, Field::HashField(_)));
        if hash {
            let mut pipe = redis::pipe();
            for (col, f) in &writes {
                if let Field::HashField(h) = f {
                    match crate::import::formats::json_text(&row[col]) {
                        Some(v) => pipe.cmd("HSET").arg(&key).arg(h).arg(v).ignore(),
                        None => pipe.cmd("HDEL").arg(&key).arg(h).ignore(),
                    };
                }
            }
            pipe.query::<()>(conn.as_mut()).map_err(e)?;
        } else {
            let current: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query(conn.as_mut())
                .ok()
                .flatten();
            let mut doc: Value = current
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Object(Map::new()));
            let mut whole: Option<String> = None;
            for (col, f) in &writes {
                if let Field::Path(p) = f {
                    if p.is_empty() {
                        whole = crate::import::formats::json_text(&row[col]);
                    } else {
                        set_path(&mut doc, p, row[col].clone());
                    }
                }
            }
            let text = whole.unwrap_or_else(|| doc.to_string());
            redis::cmd("SET")
                .arg(&key)
                .arg(text)
                .query::<()>(conn.as_mut())
                .map_err(e)?;
        }
        written += 1;
        row_keys.push(key);
    }
    // The tenant's keys with no row are deleted.
    let mut orphans = vec![];
    let mut cursor = 0;
    loop {
        let (next, keys, _) =
            super::import::scan_batch(store, scan_count, m, Some(tenant), cursor)?;
        orphans.extend(
            keys.into_iter()
                .map(|(k, _, _)| k)
                .filter(|k| !row_keys.contains(k)),
        );
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let deleted = store.delete(&orphans)?;
    Ok(
        json!({"pattern": m.pattern.text, "table": m.plan.target.display, "rows": rows.len(),
              "keys_written": written, "keys_deleted": deleted, "deleted_keys": orphans}),
    )
}
