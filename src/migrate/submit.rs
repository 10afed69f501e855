//! Starting a migration: [`submit`] checks the arguments and creates the job (one migration of
//! a tenant at a time); [`Migration::from_job`] reads a job's options back into a step driver.

use pgrx::prelude::*;
use serde_json::Value;

use super::error::{Error, Result};
use super::keys::namespace;
use super::options::MigrateOptions;
use super::{Migration, Params, WHOLE_TABLE};
use crate::error::OrRaise;
use crate::jobs::{self, Job};
use crate::pii::mask::{Masks, PiiOption, Sampled};
use crate::scope::LoadedScope;

impl Migration {
    pub fn from_job(job: &Job) -> Result<Migration> {
        let mut raw = job.options.clone();
        let target_schema = raw
            .as_object_mut()
            .and_then(|m| m.remove(TARGET_SCHEMA_KEY))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let options = MigrateOptions::parse(&raw)?;
        let online = options.mode == super::options::Mode::Online;
        let scope = job.scope.clone().unwrap_or_default();
        let tenant = job.tenant.clone().unwrap_or_default();
        let namespace = namespace(&options, &scope);
        // Steps exist so that a committing run can resume where it stopped. An inline run is
        // one transaction whatever its steps, so unless the caller sized them it takes each
        // table in one statement, the way hand-written SQL would.
        let batch_size = match (options.batch_size, job.executor) {
            (Some(n), _) => n,
            (None, jobs::Executor::Inline) => WHOLE_TABLE,
            (None, _) => crate::gucs::batch_size() as i64,
        };
        Ok(Migration {
            job_id: job.id,
            params: Params {
                tenant: tenant.clone(),
                namespace,
                new_tenant: options.new_tenant.clone(),
            },
            scope,
            tenant,
            target_schema,
            options,
            batch_size,
            // Online, the tenant's changes during the copy are captured and applied afterwards
            // (see `online.rs`): nothing to detect, as when every statement reads one snapshot.
            one_snapshot: online || super::changes::reads_one_snapshot(job.executor),
            plans: None,
            bare: None,
            apply_sql: None,
            joined_parents: Default::default(),
        })
    }
}

impl Migration {
    /// A step driver for no job yet: what the checks at submission read (options, names).
    fn for_checks(
        scope: &str,
        tenant: &str,
        target_schema: &str,
        options: &MigrateOptions,
    ) -> Migration {
        Migration {
            job_id: 0,
            params: Params {
                tenant: tenant.into(),
                namespace: namespace(options, scope),
                new_tenant: options.new_tenant.clone(),
            },
            scope: scope.into(),
            tenant: tenant.into(),
            target_schema: target_schema.into(),
            options: options.clone(),
            batch_size: WHOLE_TABLE,
            one_snapshot: false,
            plans: None,
            bare: None,
            apply_sql: None,
            joined_parents: Default::default(),
        }
    }
}

/// The target schema is kept in the job's options under this key.
const TARGET_SCHEMA_KEY: &str = "target_schema";

/// Creates a migration job after checking the arguments; the caller runs it.
pub fn submit(
    scope_name: &str,
    tenant: &str,
    target_schema: &str,
    raw_options: &Value,
    background: bool,
) -> Result<(i64, MigrateOptions)> {
    let mut options = MigrateOptions::parse(raw_options)?;
    let online = options.mode == super::options::Mode::Online;
    if online && !background {
        return Err(Error::OnlineNeedsBackground);
    }
    let loaded = LoadedScope::load(scope_name)?;
    if options.id_strategy == super::options::IdStrategy::Uuid {
        super::keyed_uuid::check_sources(&loaded)?;
        // Drawn now, so that every step (and every later reader) finds the secret committed.
        super::keyed_uuid::ensure_secret()?;
    }
    loaded.check_tenant_value(tenant)?;
    if online {
        crate::capture::check(&loaded)?;
    }
    if let Some(new_tenant) = &options.new_tenant {
        loaded
            .check_tenant_value(new_tenant)
            .map_err(Error::BadNewTenant)?;
    }
    crate::pg::require_schema(target_schema)?;
    if options.distribute {
        if !crate::citus::installed() {
            return Err(crate::citus::Error::NotInstalled {
                what: "option \"distribute\"".into(),
            }
            .into());
        }
        // Every table the job may create must have a tenant column to be distributed by.
        let sources: Vec<_> = loaded.resolved.tables.iter().map(|t| t.oid).collect();
        crate::citus::distribute::plan(&loaded.catalog, &loaded.resolved, &sources)?;
    }
    // A job that cannot succeed is refused now rather than failing later in a worker: every
    // privilege the whole job needs, and one target per source table (`prepare` checks both
    // again, before any DDL). A dry run reports such problems as its outcome instead.
    if !options.dry_run {
        let checker = Migration::for_checks(scope_name, tenant, target_schema, &options);
        if let Some(e) = checker.privilege_problems(&loaded).into_iter().next() {
            return Err(e);
        }
        checker.check_target_names(&loaded)?;
    }
    loaded.check_tenant(tenant)?;
    // `"pii": "mask"` is resolved now, once: the job follows the columns the scan found
    // today, whatever the scan would say on a later step (see `pii::mask`).
    let pii = match &options.pii {
        Some(_) => {
            let masks = Masks::resolve(
                options.pii.as_ref(),
                &loaded,
                Sampled::Tenant {
                    scope: scope_name,
                    tenant,
                },
            )?;
            let explicit = masks.to_option(&loaded.catalog);
            options.pii = PiiOption::parse(&explicit)?;
            Some(explicit)
        }
        None => None,
    };
    // One migration of a tenant's rows at a time, whatever the scope they are read through
    // and whatever the target: keyed on the root table (its oid) and the tenant value. Two
    // scopes over one root are the same rows; a second migration of the same rows (into this
    // target or another) shares their key mappings and, for a move, deletes the same source
    // rows, so it waits for the first to end. A transaction-level lock against concurrent
    // submissions, and the open jobs already committed.
    let root = loaded.resolved.root as i64;
    let got = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('tenant_ops:migrate:' || $1::pg_catalog.text || ':' || $2, 0))",
        &[root.into(), tenant.into()],
    )
    .or_raise()
    .unwrap_or(false);
    let open = Spi::get_two_with_args::<i64, String>(
        "SELECT x.id, x.scope FROM (SELECT) one LEFT JOIN LATERAL (
           SELECT j.id, j.scope FROM tenant_ops.jobs j JOIN tenant_ops.scope s ON s.name = j.scope
            WHERE j.kind = 'migrate' AND s.root = $1::pg_catalog.int8::pg_catalog.oid::pg_catalog.regclass AND j.tenant = $2
              AND j.status IN ('queued', 'running', 'paused')
            ORDER BY j.id LIMIT 1) x ON true",
        &[root.into(), tenant.into()],
    )
    .or_raise();
    if let (Some(job), busy_scope) = open {
        return Err(Error::Busy {
            scope: busy_scope.unwrap_or_else(|| scope_name.into()),
            tenant: tenant.into(),
            job,
        });
    }
    if !got {
        let holder = Spi::get_one_with_args::<i32>(
            "SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted
                AND objid = (pg_catalog.hashtextextended('tenant_ops:migrate:' || $1::pg_catalog.text || ':' || $2, 0) & 4294967295)::oid
              LIMIT 1",
            &[root.into(), tenant.into()],
        )
        .or_raise();
        return Err(Error::Busy {
            scope: scope_name.into(),
            tenant: tenant.into(),
            job: -(holder.unwrap_or(0) as i64),
        });
    }
    let mut stored = raw_options.clone();
    if let Value::Object(m) = &mut stored {
        m.insert(
            TARGET_SCHEMA_KEY.into(),
            Value::String(target_schema.into()),
        );
        if let Some(pii) = pii {
            m.insert("pii".into(), pii);
        }
    }
    let id = jobs::create(
        "migrate",
        scope_name,
        tenant,
        &stored,
        if background {
            jobs::Executor::Background
        } else if options.defer {
            jobs::Executor::Procedure
        } else {
            jobs::Executor::Inline
        },
    );
    jobs::log(id, "job.queued", Some("prepare"), None, None, None, None);
    if online {
        // Before the copy's first snapshot: the capture commits with the job, so every write
        // of the tenant's rows after that is recorded, and every one before is in the copy.
        let capture = crate::capture::install(
            id,
            &loaded,
            tenant,
            crate::capture::Purpose::OnlineMigration,
        )?;
        jobs::log(
            id,
            "capture.started",
            Some("prepare"),
            None,
            None,
            Some(&format!("capture {capture}")),
            None,
        );
    }
    Ok((id, options))
}
