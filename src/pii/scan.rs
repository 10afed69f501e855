//! `scan_pii`: a sample of every text-like column of a scope's tables (a tenant's rows, or
//! every row), each value classified by `detect`, the verdict per column.

use pgrx::prelude::*;

use super::detect::{Kind, Tally};
use crate::error::{Common, Report, UserError};
use crate::scope::graph::{Catalog, Column, TableId};
use crate::scope::LoadedScope;

/// One column found to hold personal data.
pub struct Finding {
    pub table: u32,
    pub column: String,
    pub kind: Kind,
    pub matched: u64,
    pub sampled: u64,
}

impl Finding {
    /// The share of the sampled values that matched, rounded to four places.
    pub fn share(&self) -> f64 {
        (self.matched as f64 / self.sampled.max(1) as f64 * 10_000.0).round() / 10_000.0
    }
}

fn is_dated(type_name: &str) -> bool {
    matches!(
        type_name,
        "date" | "timestamp without time zone" | "timestamp with time zone"
    )
}

/// Whether a column of this type is read: text types and addresses; dates and timestamps
/// only when the name says birth.
fn readable(type_name: &str, column: &str) -> bool {
    let base = type_name.rsplit('.').next().unwrap_or(type_name);
    match base {
        "text" | "character varying" | "bpchar" | "character" | "citext" | "inet" | "cidr"
        | "name" => true,
        "date" | "timestamp without time zone" | "timestamp with time zone" => {
            super::detect::birth_name(column)
        }
        _ => false,
    }
}

/// Scans up to `sample` rows of each table of `scope` (the tenant's rows when `tenant` is
/// given), in the scope's table order.
pub fn scan(scope: &str, tenant: Option<&str>, sample: i32) -> Result<Vec<Finding>, Report> {
    if sample < 1 {
        return Err(Common::InvalidParameter(
            format!("sample must be 1 or more, not {sample}"),
            Some("sample is the number of rows read from each table.".into()),
        )
        .report());
    }
    let loaded = LoadedScope::load(scope).map_err(|e| e.report())?;
    if let Some(t) = tenant {
        loaded.check_tenant(t).map_err(|e| e.report())?;
    }
    let this_year = jiff::Zoned::now().year();
    let filters = loaded.filters();
    let mut out = vec![];
    for t in &loaded.resolved.tables {
        let table = loaded.catalog.table(t.oid);
        let columns: Vec<&Column> = table
            .columns
            .iter()
            .filter(|c| readable(&c.type_name, &c.name))
            .collect();
        if columns.is_empty() {
            continue;
        }
        let list = value_list(&columns);
        let (sql, args): (String, Vec<pgrx::datum::DatumWithOid>) = match tenant {
            Some(tenant) => (
                format!(
                    "SELECT ARRAY[{list}] FROM {} WHERE {} LIMIT $2",
                    table.sql,
                    filters.filter(t.oid)
                ),
                vec![tenant.into(), (sample as i64).into()],
            ),
            None => (
                format!("SELECT ARRAY[{list}] FROM {} LIMIT $1", table.sql),
                vec![(sample as i64).into()],
            ),
        };
        out.extend(classify(t.oid, &columns, &sql, &args, this_year)?);
    }
    Ok(out)
}

/// As [`scan`], over other relations holding rows of the scope's tables (a restore's staging
/// tables): `(table, relation, the columns it has)`, up to `sample` rows of each.
pub fn scan_relations(
    catalog: &Catalog,
    relations: &[(TableId, String, Vec<String>)],
    sample: i32,
) -> Result<Vec<Finding>, Report> {
    let this_year = jiff::Zoned::now().year();
    let mut out = vec![];
    for (oid, relation, has) in relations {
        let table = catalog.table(*oid);
        let columns: Vec<&Column> = table
            .columns
            .iter()
            .filter(|c| has.contains(&c.name) && readable(&c.type_name, &c.name))
            .collect();
        if columns.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT ARRAY[{}] FROM {relation} LIMIT $1",
            value_list(&columns)
        );
        out.extend(classify(
            *oid,
            &columns,
            &sql,
            &[(sample as i64).into()],
            this_year,
        )?);
    }
    Ok(out)
}

/// `c1::text, to_char(c2, 'YYYY-MM-DD'), ...`: the values `classify` reads, as text.
fn value_list(columns: &[&Column]) -> String {
    columns
        .iter()
        .map(|c| {
            if is_dated(&c.type_name) {
                // Whatever the session's DateStyle.
                format!("pg_catalog.to_char({}, 'YYYY-MM-DD')", c.quoted)
            } else {
                format!("{}::pg_catalog.text", c.quoted)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `sql` (one `text[]` of the columns' values per row) and classifies each column.
fn classify(
    table: TableId,
    columns: &[&Column],
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
    this_year: i16,
) -> Result<Vec<Finding>, Report> {
    let mut tallies = vec![Tally::default(); columns.len()];
    Spi::connect(|c| {
        for row in c.select(sql, None, args)? {
            let values = row.get::<Vec<Option<String>>>(1)?.unwrap_or_default();
            for ((tally, column), v) in tallies.iter_mut().zip(columns).zip(values) {
                if let Some(v) = v {
                    tally.add(&column.name, &v, this_year);
                }
            }
        }
        Ok::<_, pgrx::spi::Error>(())
    })
    .map_err(|e| Report::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()))?;
    Ok(tallies
        .iter()
        .zip(columns)
        .filter_map(|(tally, column)| {
            tally.verdict().map(|(kind, matched)| Finding {
                table,
                column: column.name.clone(),
                kind,
                matched,
                sampled: tally.sampled,
            })
        })
        .collect())
}
