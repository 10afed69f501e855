//! `move_tenant(scope, tenant, node, options, background)`: one tenant's rows, of every table
//! colocated with the scope's root, moved to another node of the Citus cluster.
//!
//! Citus does the moving; we check first, and verify after. The job's stages:
//! 1. `checksum`: the tenant's rows of every table of the scope counted and hashed (one
//!    router query per table: the filter names the distribution column);
//! 2. `isolate`: `isolate_tenant_to_new_shard(root, tenant, 'CASCADE')` gives the tenant a
//!    shard of its own in every colocated table (skipped when it has one already);
//! 3. `move`: `citus_move_shard_placement` moves that shard group to the node (skipped when
//!    it is there already);
//! 4. `verify`: the same counts and hashes again, which must be equal.
//!
//! Each Citus call is one statement that commits whole or not at all. Inline, the job runs in
//! the caller's transaction, so both calls share it: Citus moves by logical replication only
//! what is committed, and allows one logical transfer per transaction, so an inline move
//! isolates and moves with `block_writes`, and `force_logical` asks for a committing executor
//! (background, or `"defer": true` and `CALL tenant_ops.run_job`).

use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Error, TableType};
use crate::error::{Common, OrRaise, Report};
use crate::jobs::{self, kind::Steps, Executor, Job, StepOutcome};
use crate::scope::graph::{Role, TableId};
use crate::scope::LoadedScope;

/// Where the job keeps its own arguments in its stored options.
const META_KEY: &str = "__move_tenant";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    BlockWrites,
    ForceLogical,
}

impl TransferMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::BlockWrites => "block_writes",
            TransferMode::ForceLogical => "force_logical",
        }
    }
}

/// The options of a move.
#[derive(Clone, Debug)]
pub struct MoveOptions {
    pub transfer_mode: TransferMode,
    /// Create the job without running it (`CALL tenant_ops.run_job` runs it).
    pub defer: bool,
}

const OPTIONS: &[&str] = &["transfer_mode", "defer"];

impl MoveOptions {
    pub fn parse(raw: &Value) -> Result<MoveOptions, Error> {
        let Value::Object(m) = raw else {
            return Err(Common::InvalidOption("options must be a JSON object".into(), None).into());
        };
        if let Some(k) = m
            .keys()
            .find(|k| !OPTIONS.contains(&k.as_str()) && *k != META_KEY)
        {
            return Err(Common::InvalidOption(
                format!("unknown option \"{k}\""),
                Some(format!("The options are: {}.", OPTIONS.join(", "))),
            )
            .into());
        }
        let transfer_mode = match m.get("transfer_mode") {
            None | Some(Value::Null) => TransferMode::BlockWrites,
            Some(Value::String(s)) if s == "block_writes" => TransferMode::BlockWrites,
            Some(Value::String(s)) if s == "force_logical" => TransferMode::ForceLogical,
            Some(other) => {
                return Err(Common::InvalidOption(
                    format!("option \"transfer_mode\" must be \"block_writes\" or \"force_logical\", not {other}"),
                    None,
                )
                .into())
            }
        };
        let defer = match m.get("defer") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(Common::InvalidOption(
                    format!("option \"defer\" must be true or false, not {other}"),
                    None,
                )
                .into())
            }
        };
        Ok(MoveOptions {
            transfer_mode,
            defer,
        })
    }
}

/// A node of the cluster as `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: i32,
}

impl Node {
    /// `host:port`, or `host` (port 5432).
    pub fn parse(text: &str) -> Result<Node, Error> {
        let bad = || {
            Error::from(Common::InvalidParameter(
                format!("node \"{text}\" is not of the form host:port"),
                Some("Name a node as pg_dist_node has it, e.g. '10.0.0.5:5432'.".into()),
            ))
        };
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<i32>().map_err(|_| bad())?),
            None => (text, 5432),
        };
        if host.is_empty() || !(1..=65535).contains(&port) {
            return Err(bad());
        }
        Ok(Node {
            host: host.to_string(),
            port,
        })
    }

    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What `submit` stored, read back by the steps.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
struct Meta {
    node: String,
}

/// Checks every argument and creates the job (the caller runs it). Returns the job id and
/// the options.
pub fn submit(
    scope: &str,
    tenant: &str,
    node: &str,
    raw: &Value,
    background: bool,
) -> Result<(i64, MoveOptions), Error> {
    let options = MoveOptions::parse(raw)?;
    if !super::installed() {
        return Err(Error::NotInstalled {
            what: "move_tenant".into(),
        });
    }
    let target = Node::parse(node)?;
    let loaded = LoadedScope::load(scope)?;
    loaded.check_tenant(tenant)?;
    let root = root_of(&loaded)?;
    require_node(&target)?;
    if options.transfer_mode == TransferMode::ForceLogical {
        if !background && !options.defer {
            return Err(Common::FeatureNotSupported(
                "move_tenant with \"transfer_mode\": \"force_logical\" cannot run inline".into(),
                Some("Citus replicates only committed shards, one logical transfer per transaction: pass background => true, or \"defer\": true and CALL tenant_ops.run_job(job_id).".into()),
            )
            .into());
        }
        require_replica_identity(root)?;
    }
    let mut stored = raw.clone();
    stored[META_KEY] = serde_json::to_value(Meta {
        node: target.name(),
    })
    .expect("plain data serializes");
    let executor = if background {
        Executor::Background
    } else if options.defer {
        Executor::Procedure
    } else {
        Executor::Inline
    };
    let id = jobs::create("move_tenant", scope, tenant, &stored, executor);
    Ok((id, options))
}

/// The scope's root, which must be hash-distributed by the tenant key.
fn root_of(loaded: &LoadedScope) -> Result<TableId, Error> {
    let root = loaded.catalog.table(loaded.resolved.root);
    match super::table_type(root.oid) {
        TableType::Distributed { column, .. } if column == loaded.resolved.tenant_key => {
            Ok(root.oid)
        }
        TableType::Distributed { column, .. } => Err(Error::NotDistributed {
            table: root.display.clone(),
            why: format!(
                "is distributed by {column}, not by the scope's tenant key {}",
                loaded.resolved.tenant_key
            ),
            hint: "A tenant moves with its shard: distribute the root by the tenant key.".into(),
        }),
        _ => Err(Error::NotDistributed {
            table: root.display.clone(),
            why: "is not a distributed table".into(),
            hint: format!(
                "Distribute it by the tenant key first: SELECT create_distributed_table('{}', '{}').",
                root.display, loaded.resolved.tenant_key
            ),
        }),
    }
}

/// The active primary nodes that may hold shards, as `host:port`.
fn shard_nodes() -> Vec<String> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT nodename || ':' || nodeport FROM pg_catalog.pg_dist_node
              WHERE isactive AND noderole = 'primary' AND shouldhaveshards ORDER BY nodeid",
            None,
            &[],
        )?;
        let mut out = vec![];
        for r in rows {
            out.extend(r.get::<String>(1)?);
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise()
}

fn require_node(node: &Node) -> Result<(), Error> {
    let nodes = shard_nodes();
    if nodes.contains(&node.name()) {
        return Ok(());
    }
    Err(Error::UnknownNode {
        node: node.name(),
        nodes,
    })
}

/// Every table colocated with `root` must be able to publish its UPDATEs and DELETEs.
fn require_replica_identity(root: TableId) -> Result<(), Error> {
    let missing = Spi::get_one_with_args::<String>(
        "SELECT (SELECT p.logicalrelid::pg_catalog.text FROM pg_catalog.pg_dist_partition p
           JOIN pg_catalog.pg_class c ON c.oid = p.logicalrelid
          WHERE p.colocationid = (SELECT colocationid FROM pg_catalog.pg_dist_partition
                                   WHERE logicalrelid = $1::pg_catalog.oid::pg_catalog.regclass)
            AND c.relkind = 'r'
            AND NOT (c.relreplident = 'f'
                     OR (c.relreplident = 'd' AND EXISTS (SELECT FROM pg_catalog.pg_index i
                                                           WHERE i.indrelid = c.oid AND i.indisprimary))
                     OR (c.relreplident = 'i' AND EXISTS (SELECT FROM pg_catalog.pg_index i
                                                           WHERE i.indrelid = c.oid AND i.indisreplident)))
          ORDER BY 1 LIMIT 1)",
        &[(root as i64).into()],
    )
    .or_raise();
    match missing {
        Some(table) => Err(Error::NoReplicaIdentity { table }),
        None => Ok(()),
    }
}

/// The steps of a move.
pub struct Move {
    job_id: i64,
    tenant: String,
    scope: String,
    node: Node,
    transfer_mode: TransferMode,
    inline: bool,
}

/// The stages, in order.
const STAGES: &[&str] = &["checksum", "isolate", "move", "verify"];

impl Move {
    pub fn from_job(job: &Job) -> Result<Move, Report> {
        let options = MoveOptions::parse(&strip_meta(&job.options))?;
        let meta: Meta = job
            .options
            .get(META_KEY)
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .ok_or_else(|| {
                Report::from(Error::from(Common::InvalidParameter(
                    format!("job {} is not a move_tenant job", job.id),
                    None,
                )))
            })?;
        Ok(Move {
            job_id: job.id,
            tenant: job.tenant.clone().unwrap_or_default(),
            scope: job.scope.clone().unwrap_or_default(),
            node: Node::parse(&meta.node)?,
            transfer_mode: options.transfer_mode,
            inline: job.executor == Executor::Inline,
        })
    }

    /// The tenant key's value as its type: `$1::text::<type>`.
    fn tenant_value(loaded: &LoadedScope) -> String {
        let root = loaded.catalog.table(loaded.resolved.root);
        let key = root.known_column(&loaded.resolved.tenant_key);
        format!("$1::pg_catalog.text::{}", key.type_name)
    }

    /// The tenant's shard of the root and the node it is placed on.
    fn shard(loaded: &LoadedScope, tenant: &str) -> Result<(i64, bool, Node), Error> {
        let root = loaded.resolved.root;
        let sql = format!(
            "SELECT s.shardid, s.shardminvalue = s.shardmaxvalue, pl.nodename, pl.nodeport
               FROM pg_catalog.pg_dist_shard s
               JOIN pg_catalog.pg_dist_shard_placement pl ON pl.shardid = s.shardid
              WHERE s.shardid = pg_catalog.get_shard_id_for_distribution_column($2::pg_catalog.oid::pg_catalog.regclass, {})",
            Self::tenant_value(loaded)
        );
        let row = Spi::connect(|c| {
            let rows = c.select(&sql, Some(1), &[tenant.into(), (root as i64).into()])?;
            let mut out = None;
            for r in rows {
                out = Some((
                    r.get::<i64>(1)?.unwrap_or_default(),
                    r.get::<bool>(2)?.unwrap_or(false),
                    r.get::<String>(3)?.unwrap_or_default(),
                    r.get::<i32>(4)?.unwrap_or_default(),
                ));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .or_raise();
        let (shard, isolated, host, port) = row.ok_or_else(|| {
            Error::from(Common::InvalidParameter(
                format!("tenant {tenant} has no shard placement"),
                None,
            ))
        })?;
        Ok((shard, isolated, Node { host, port }))
    }

    /// Count and hash of the tenant's rows of every root and owned table, by step.
    fn checksums(&self, loaded: &LoadedScope) -> Vec<(TableId, i64, String)> {
        let filters = loaded.filters();
        loaded
            .resolved
            .tables
            .iter()
            .filter(|t| t.role != Role::Shared)
            .map(|t| {
                let table = loaded.catalog.table(t.oid);
                let (n, sum) = tenant_checksum(&table.sql, filters.filter(t.oid), &self.tenant);
                (t.oid, n, sum)
            })
            .collect()
    }

    fn run_stage(&mut self, stage: &str) -> Result<Option<Value>, Report> {
        let loaded = LoadedScope::load(&self.scope)?;
        match stage {
            "checksum" => {
                for (step, (oid, n, sum)) in self.checksums(&loaded).into_iter().enumerate() {
                    let role = loaded
                        .resolved
                        .get(oid)
                        .map_or("owned", |t| t.role.as_str());
                    jobs::add_table(
                        self.job_id,
                        step as i32 + 1,
                        oid,
                        None,
                        role,
                        Some(n),
                        json!({"rows_before": n, "hash_before": sum}),
                    );
                }
                Ok(None)
            }
            "isolate" => {
                let (shard, isolated, _) = Self::shard(&loaded, &self.tenant)?;
                if isolated {
                    self.log(
                        "isolate.skipped",
                        &format!("shard {shard} holds only this tenant"),
                    );
                    return Ok(None);
                }
                let mode = if self.inline {
                    TransferMode::BlockWrites
                } else {
                    self.transfer_mode
                };
                let sql = format!(
                    "SELECT pg_catalog.isolate_tenant_to_new_shard($2::pg_catalog.oid::pg_catalog.regclass, {}, 'CASCADE',
                                                                 shard_transfer_mode => $3::text::citus.shard_transfer_mode)",
                    Self::tenant_value(&loaded)
                );
                let new_shard = Spi::get_one_with_args::<i64>(
                    &sql,
                    &[
                        self.tenant.clone().into(),
                        (loaded.resolved.root as i64).into(),
                        mode.as_str().into(),
                    ],
                )
                .or_raise();
                self.log(
                    "isolated",
                    &format!(
                        "shard {shard} split ({}): the tenant's shard is {}",
                        mode.as_str(),
                        new_shard.unwrap_or_default()
                    ),
                );
                Ok(None)
            }
            "move" => {
                let (shard, _, from) = Self::shard(&loaded, &self.tenant)?;
                if from == self.node {
                    self.log(
                        "move.skipped",
                        &format!("shard {shard} is on {} already", from.name()),
                    );
                    return Ok(None);
                }
                require_node(&self.node)?;
                Spi::run_with_args(
                    "SELECT pg_catalog.citus_move_shard_placement($1, $2, $3, $4, $5,
                                                                 shard_transfer_mode => $6::text::citus.shard_transfer_mode)",
                    &[
                        shard.into(),
                        from.host.clone().into(),
                        from.port.into(),
                        self.node.host.clone().into(),
                        self.node.port.into(),
                        self.transfer_mode.as_str().into(),
                    ],
                )
                .or_raise();
                self.log(
                    "moved",
                    &format!(
                        "shard {shard} moved from {} to {} ({})",
                        from.name(),
                        self.node.name(),
                        self.transfer_mode.as_str()
                    ),
                );
                Ok(None)
            }
            "verify" => {
                let before = jobs::tables(self.job_id);
                let after = self.checksums(&loaded);
                let mut tables = vec![];
                for jt in &before {
                    let Some((_, n, sum)) = after.iter().find(|(oid, _, _)| *oid == jt.source)
                    else {
                        continue;
                    };
                    let rows_before = jt.details["rows_before"].as_i64().unwrap_or(-1);
                    let hash_before = jt.details["hash_before"].as_str().unwrap_or_default();
                    let display = loaded.catalog.table(jt.source).display.clone();
                    if rows_before != *n || hash_before != sum {
                        return Err(Error::ChecksumMismatch {
                            table: display,
                            before: format!("{rows_before} rows, hash {hash_before}"),
                            after: format!("{n} rows, hash {sum}"),
                        }
                        .into());
                    }
                    jobs::checkpoint(self.job_id, jt.step, "verified", *n, None);
                    tables.push(json!({"table": display, "rows": n, "checksum": sum}));
                }
                let (shard, _, on) = Self::shard(&loaded, &self.tenant)?;
                Ok(Some(json!({
                    "shard": shard,
                    "node": on.name(),
                    "transfer_mode": self.transfer_mode.as_str(),
                    "tables": tables,
                    "verified": true,
                })))
            }
            other => Err(Error::from(Common::InvalidParameter(
                format!(
                    "move_tenant job {} is at an unknown stage \"{other}\"",
                    self.job_id
                ),
                None,
            ))
            .into()),
        }
    }

    fn log(&self, event: &str, message: &str) {
        jobs::log(self.job_id, event, None, None, None, Some(message), None);
    }
}

impl Steps for Move {
    fn step(&mut self, job: &Job) -> Result<StepOutcome, Report> {
        let current = jobs::load(job.id)?.stage;
        let stage = if STAGES.contains(&current.as_str()) {
            current
        } else {
            STAGES[0].to_string()
        };
        let done = self.run_stage(&stage)?;
        if let Some(result) = done {
            return Ok(StepOutcome::Done(result));
        }
        let next = STAGES
            .iter()
            .position(|s| *s == stage)
            .map(|i| STAGES[i + 1])
            .unwrap_or("verify");
        jobs::set_stage(self.job_id, next);
        Ok(StepOutcome::Continue)
    }
}

/// The options as the user gave them (without what `submit` added).
fn strip_meta(options: &Value) -> Value {
    let mut o = options.clone();
    if let Value::Object(m) = &mut o {
        m.remove(META_KEY);
    }
    o
}

/// The count and a hash of the tenant's rows of `table_sql` (`filter` over `$1`, the
/// tenant): one number per row by `hash_record_extended` (the seed of the migrations' row
/// hashes, `migrate::row_hash`), summed as numeric. Rows of types without an extended hash
/// function are hashed as text. On a distributed table whose filter names the distribution
/// column, a router query on the node holding the tenant.
pub fn tenant_checksum(table_sql: &str, filter: &str, tenant: &str) -> (i64, String) {
    let hash = if crate::migrate::row_hash::has_extended_hash(table_sql) {
        format!(
            "pg_catalog.hash_record_extended(s, {})",
            crate::migrate::row_hash::HASH_SEED
        )
    } else {
        format!(
            "pg_catalog.hashtextextended(s::pg_catalog.text, {})",
            crate::migrate::row_hash::HASH_SEED
        )
    };
    let sql = format!(
        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum(({hash})::pg_catalog.numeric), 0)::pg_catalog.text
           FROM (SELECT * FROM {table_sql} WHERE {filter}) s"
    );
    let (n, sum) = Spi::get_two_with_args::<i64, String>(&sql, &[tenant.into()]).or_raise();
    (n.unwrap_or(0), sum.unwrap_or_default())
}
