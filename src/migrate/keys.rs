//! The key mapping of re-keyed tables: new uuids recorded in `tenant_ops.id_map` (`uuid7`),
//! ones computed from the legacy key (`uuid`: keyed, see `keyed_uuid.rs`; `uuid5`: from a
//! namespace), and [`map_id`], which finds any of them.

use pgrx::prelude::*;

use super::options::{IdStrategy, MigrateOptions};
use super::plan::TablePlan;
use super::{keyed_uuid, uuid5, Migration};
use crate::error::OrRaise;
use crate::jobs;
use crate::scope::graph::TableId;
use crate::sys::owner;

impl Migration {
    /// Whether id_map holds mappings of `source` in this migration's namespace.
    pub(super) fn mapped_before(&self, source: TableId) -> bool {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM tenant_ops.id_map
                             WHERE namespace = $1 AND source = $2::pg_catalog.oid::pg_catalog.regclass)",
            &[
                self.params.namespace.clone().into(),
                (source as i64).into(),
            ],
        )
        .or_raise()
        .unwrap_or(true)
    }
}

/// `INSERT INTO tenant_ops.id_map` of a fresh uuid (`new_id`: the strategy's generator) for
/// the single-column key `key` of every row of `from` (aliased `alias`); `keep_existing`:
/// keys mapped before keep their ids.
pub(super) fn record_new_ids(
    p: &TablePlan,
    key: &str,
    new_id: &str,
    job_id: i64,
    from: &str,
    alias: &str,
    keep_existing: bool,
) -> String {
    format!(
        "INSERT INTO tenant_ops.id_map (namespace, source, legacy_key, new_id, job_id)
         SELECT $2, {oid}::pg_catalog.regclass, ({alias}.{key})::text, {new_id}, {job_id}
           FROM {from}{conflict}",
        oid = p.source,
        conflict = if keep_existing {
            " ON CONFLICT DO NOTHING"
        } else {
            ""
        },
    )
}

/// Fresh planner statistics for `tenant_ops.id_map` (as the owner: only a table's owner may
/// analyze it, and its columns are all built-in types).
pub(super) fn analyze_id_map() {
    owner::execute("ANALYZE tenant_ops.id_map", &[]).or_raise();
}

/// The key mapping namespace: id_map's and `uuid`'s (empty, or the clone's), or the uuid5 namespace.
pub(super) fn namespace(options: &MigrateOptions, scope: &str) -> String {
    match options.id_strategy {
        IdStrategy::Uuid5 => uuid5::migration_namespace(
            options.uuid_namespace.as_ref(),
            scope,
            options.new_tenant.as_deref(),
        )
        .to_string(),
        _ => options
            .new_tenant
            .as_ref()
            .map(|t| format!("clone:{t}"))
            .unwrap_or_default(),
    }
}

/// The new UUID of a legacy key, as the latest successful migration of its table (outside a
/// clone) gave it: computed for `uuid` and `uuid5`, recorded in id_map for `uuid7` (and for
/// `uuid` in a database whose extension predates its secret, whose `uuid` keys were
/// recorded). NULL when none knows it.
pub fn map_id(source: u32, legacy_key: &str) -> Option<pgrx::Uuid> {
    let recorded = || {
        Spi::get_one_with_args::<pgrx::Uuid>(
            "SELECT (SELECT new_id FROM tenant_ops.id_map
                      WHERE namespace = '' AND source = $1::pg_catalog.oid::pg_catalog.regclass AND legacy_key = $2)",
            &[(source as i64).into(), legacy_key.into()],
        )
        .or_raise()
    };
    let (job, strategy) = Spi::get_two_with_args::<i64, String>(
        "SELECT l.id, l.strategy FROM (SELECT) one LEFT JOIN LATERAL
                (SELECT j.id, j.options ->> 'id_strategy' AS strategy
                   FROM tenant_ops.jobs j JOIN tenant_ops.job_tables t ON t.job_id = j.id
                  WHERE j.kind = 'migrate' AND j.status = 'succeeded'
                    AND j.options ->> 'id_strategy' IN ('uuid', 'uuid5', 'uuid7')
                    AND j.options ->> 'new_tenant' IS NULL AND t.source = $1::pg_catalog.oid::pg_catalog.regclass
                  ORDER BY j.id DESC LIMIT 1) l ON true",
        &[(source as i64).into()],
    )
    .or_raise();
    let (Some(job), Some("uuid" | "uuid5")) = (job, strategy.as_deref()) else {
        return recorded();
    };
    // Both name the legacy table as its qualified name (what a dump keeps; an oid it does not).
    let table = Spi::get_one_with_args::<String>(
        "SELECT (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::pg_catalog.oid)",
        &[(source as i64).into()],
    )
    .or_raise()?;
    if strategy.as_deref() == Some("uuid") {
        return match keyed_uuid::mapped(&table, legacy_key) {
            Some(id) => Some(pgrx::Uuid::from_bytes(id.into_bytes())),
            None => recorded(),
        };
    }
    let j = jobs::load(job).ok()?;
    let m = Migration::from_job(&j).ok()?;
    let ns = uuid5::parse_uuid(&m.params.namespace)?;
    Some(pgrx::Uuid::from_bytes(
        uuid5::uuid5(&ns, format!("{table}:{legacy_key}").as_bytes()).into_bytes(),
    ))
}
