//! Tenant scopes: which rows belong to a tenant (see DESIGN "The tenant model").
//!
//! - [`options`]: the strict parser of `create_scope`'s options;
//! - [`graph`]: ownership, shared tables, dependency order and filters (no pgrx);
//! - [`catalog`]: reading the system catalogs into the graph's input;
//! - this module: storing scopes and computing a tenant's plan.

pub mod catalog;
pub mod error;
pub mod graph;
pub mod options;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::error::OrRaise;
use crate::sys::{owner, try_subtransaction};
use graph::{Catalog, Filters, ResolvedScope, Role, TableId};
use options::ScopeOptions;

pub use error::Error;

/// A stored scope definition.
pub struct ScopeDefinition {
    pub name: String,
    pub root: TableId,
    pub tenant_key: String,
    pub options: ScopeOptions,
}

/// A scope resolved against the current catalog, ready to build SQL from.
pub struct LoadedScope {
    pub definition: ScopeDefinition,
    pub catalog: Catalog,
    pub resolved: ResolvedScope,
}

impl LoadedScope {
    pub fn filters(&self) -> Filters<'_> {
        Filters::new(&self.catalog, &self.resolved)
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::InvalidScopeName(
            name.into(),
            "a scope name must not be empty",
        ));
    }
    if name.chars().count() > 200 {
        return Err(Error::InvalidScopeName(
            name.into(),
            "a scope name has at most 200 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidScopeName(
            name.into(),
            "a scope name must not contain control characters",
        ));
    }
    Ok(())
}

/// Validates a definition completely (every name, every path) and stores it.
pub fn create(
    name: &str,
    root: TableId,
    tenant_key: &str,
    options: &Value,
) -> Result<ResolvedSummary, Error> {
    check_name(name)?;
    // A taken name is the first thing to say; the insert below still guards against a race.
    let taken = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM tenant_ops.scope WHERE name = $1)",
        &[name.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if taken {
        return Err(Error::ScopeExists(name.into()));
    }
    let parsed = ScopeOptions::parse(options)?;
    let catalog::Prepared {
        catalog,
        spec,
        normalized,
    } = catalog::prepare(root, tenant_key, &parsed)?;
    let resolved = graph::resolve(&catalog, &spec)?;
    let summary = summarize(&catalog, &resolved);
    let stored_options = normalized.to_json();

    let inserted = owner::execute(
        "INSERT INTO tenant_ops.scope (name, root, tenant_key, options, summary)
                     VALUES ($1, $2::pg_catalog.oid::pg_catalog.regclass, $3, $4, $5)
                     ON CONFLICT (name) DO NOTHING",
        &[
            name.into(),
            (root as i64).into(),
            tenant_key.into(),
            JsonB(stored_options.clone()).into(),
            JsonB(summary.json.clone()).into(),
        ],
    )
    .or_raise();
    if inserted == 0 {
        return Err(Error::ScopeExists(name.into()));
    }
    Ok(summary)
}

/// Removes a scope definition.
pub fn drop(name: &str) -> Result<(), Error> {
    let deleted = owner::execute(
        "DELETE FROM tenant_ops.scope WHERE name = $1",
        &[name.into()],
    )
    .or_raise();
    if deleted == 0 {
        return Err(Error::UnknownScope(name.into()));
    }
    Ok(())
}

/// Reads a stored definition.
pub fn definition(name: &str) -> Result<ScopeDefinition, Error> {
    let row = Spi::connect(|client| {
        let mut rows = client.select(
            "SELECT root::pg_catalog.oid::pg_catalog.int8, tenant_key::pg_catalog.text, options
               FROM tenant_ops.scope WHERE name = $1",
            Some(1),
            &[name.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.next().expect("one row");
        Ok::<_, pgrx::spi::Error>(Some((
            row.get::<i64>(1)?.unwrap_or_default(),
            row.get::<String>(2)?.unwrap_or_default(),
            row.get::<JsonB>(3)?
                .map(|j| j.0)
                .unwrap_or_else(|| json!({})),
        )))
    })
    .or_raise();
    let Some((root, tenant_key, options)) = row else {
        return Err(Error::UnknownScope(name.into()));
    };
    Ok(ScopeDefinition {
        name: name.into(),
        root: root as TableId,
        tenant_key,
        options: ScopeOptions::parse(&options)?,
    })
}

thread_local! {
    /// The scope an inline submission loaded, with the job it created and the start of its
    /// transaction (see [`LoadedScope::keep_for`]).
    static KEPT: std::cell::RefCell<Option<(i64, pg_sys::TimestampTz, LoadedScope)>> = const { std::cell::RefCell::new(None) };
}

impl LoadedScope {
    /// Keeps the scope a submission loaded for job `job_id`, which is about to run inline in
    /// the same call, nothing but the job's own bookkeeping in between: its steps take it
    /// ([`LoadedScope::for_job`]) instead of reading the catalog again (a few ms a call). Only
    /// the same job in the same transaction takes it: a kept scope whose run never came is
    /// never taken later.
    pub fn keep_for(self, job_id: i64) {
        KEPT.with(|k| *k.borrow_mut() = Some((job_id, crate::pg::transaction_start(), self)));
    }

    /// The scope `name` for job `job_id`: the one its submission kept, if this is that call's
    /// inline run, else loaded now.
    pub fn for_job(name: &str, job_id: i64) -> Result<LoadedScope, Error> {
        match KEPT.with(|k| k.borrow_mut().take()) {
            Some((j, at, loaded))
                if j == job_id
                    && at == crate::pg::transaction_start()
                    && loaded.definition.name == name =>
            {
                Ok(loaded)
            }
            _ => Self::load(name),
        }
    }

    /// Loads a scope and resolves it against the catalog as it is now.
    pub fn load(name: &str) -> Result<LoadedScope, Error> {
        let definition = definition(name)?;
        let catalog::Prepared { catalog, spec, .. } =
            catalog::prepare(definition.root, &definition.tenant_key, &definition.options)?;
        let resolved = graph::resolve(&catalog, &spec)?;
        Ok(LoadedScope {
            definition,
            catalog,
            resolved,
        })
    }
}

/// Counts and lists of a resolved scope, kept with the definition for `tenant_ops.scopes`.
pub struct ResolvedSummary {
    pub json: Value,
}

fn summarize(catalog: &Catalog, resolved: &ResolvedScope) -> ResolvedSummary {
    let names = |role: Role| -> Vec<String> {
        resolved
            .tables
            .iter()
            .filter(|t| t.role == role)
            .map(|t| catalog.table(t.oid).display.clone())
            .collect()
    };
    ResolvedSummary {
        json: json!({
            "root": catalog.table(resolved.root).display,
            "owned_tables": names(Role::Owned),
            "shared_tables": names(Role::Shared),
            "cross_references": resolved.cross_references.len(),
        }),
    }
}

impl LoadedScope {
    /// Checks that `tenant` casts to the tenant key's type and names an existing root row.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), Error> {
        self.check_tenant_value(tenant)?;
        let root = self.catalog.table(self.resolved.root);
        let key = root
            .column(&self.resolved.tenant_key)
            .expect("checked when the scope was prepared");
        let filters = self.filters();
        let exists = format!(
            "SELECT EXISTS (SELECT FROM {} WHERE {})",
            root.sql,
            filters.filter(root.oid)
        );
        if !Spi::get_one_with_args::<bool>(&exists, &[tenant.into()])
            .or_raise()
            .unwrap_or(false)
        {
            return Err(Error::UnknownTenant {
                tenant: tenant.into(),
                scope: self.definition.name.clone(),
                table: root.display.clone(),
                column: key.quoted.clone(),
            });
        }
        Ok(())
    }

    /// Whether `value` casts to the tenant key's type (22P02 naming the key when not).
    pub fn check_tenant_value(&self, value: &str) -> Result<(), Error> {
        let root = self.catalog.table(self.resolved.root);
        let key = root
            .column(&self.resolved.tenant_key)
            .expect("checked when the scope was prepared");
        let cast = format!("SELECT $1::pg_catalog.text::{} IS NOT NULL", key.type_name);
        if try_subtransaction(|| Spi::get_one_with_args::<bool>(&cast, &[value.into()])).is_err() {
            return Err(Error::BadTenantValue {
                value: value.into(),
                type_name: key.type_full.clone(),
                table: root.display.clone(),
                column: key.quoted.clone(),
            });
        }
        Ok(())
    }
}

/// One row of `tenant_ops.plan()`.
pub struct PlanRow {
    pub step: i32,
    pub table: TableId,
    pub role: &'static str,
    pub path: String,
    pub filter: String,
    pub rows: i64,
    pub notes: Option<String>,
}

/// The dry-run plan for one tenant: every table in dependency order with its exact row count.
pub fn plan(scope: &str, tenant: &str) -> Result<Vec<PlanRow>, Error> {
    let loaded = LoadedScope::load(scope)?;
    loaded.check_tenant(tenant)?;
    let filters = loaded.filters();
    let mut rows = Vec::with_capacity(loaded.resolved.tables.len());
    for (i, t) in loaded.resolved.tables.iter().enumerate() {
        let table = loaded.catalog.table(t.oid);
        let filter = filters.filter(t.oid).to_string();
        let count_sql = format!(
            "SELECT pg_catalog.count(*) FROM {} WHERE {}",
            table.sql, filter
        );
        let count = Spi::get_one_with_args::<i64>(&count_sql, &[tenant.into()])
            .or_raise()
            .unwrap_or(0);
        rows.push(PlanRow {
            step: i as i32 + 1,
            table: t.oid,
            role: t.role.as_str(),
            path: filters.path(t.oid),
            filter,
            rows: count,
            notes: (!t.notes.is_empty()).then(|| t.notes.join("; ")),
        });
    }
    Ok(rows)
}
