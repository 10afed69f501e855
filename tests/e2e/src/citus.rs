//! A Citus cluster on one machine for the `citus` test tier: a coordinator and workers, each a
//! [`Cluster`] of its own (own data directory and port on 127.0.0.1) with
//! `shared_preload_libraries = 'citus,pg_tenant_ops'`, driven from outside like the e2e tier.
//!
//! Citus keeps its node list per database, so [`CitusCluster::create_database`] creates the
//! database on every node, `CREATE EXTENSION citus` in each, and registers the coordinator and
//! the workers in the coordinator's copy. Tests only ever touch the clusters they start.
//!
//! Environment (besides the [`Cluster`] ones):
//! - `E2E_CITUS_PORTS`: `FIRST-LAST`, the ports to take the nodes' from (the first free ones;
//!   `scripts/test.sh citus` passes 28930-28939); unset: any free ports.

use std::net::TcpListener;

use postgres::Client;

use crate::{describe_error, Cluster};

/// The libraries every node preloads: Citus first, as it requires.
pub const PRELOAD: &str = "citus,pg_tenant_ops";

/// postgresql.conf lines of every node.
const NODE_CONF: &[&str] = &[
    // Logical replication for `citus_move_shard_placement(..., 'force_logical')`.
    "wal_level = logical",
    "max_replication_slots = 20",
    "max_wal_senders = 20",
    // The nodes talk over TCP on 127.0.0.1 with trust authentication, without TLS.
    "citus.node_conninfo = 'sslmode=disable'",
    // Few shards per table: DDL and moves stay quick, and a tenant still has a shard of its own
    // next to others'.
    "citus.shard_count = 4",
    "max_connections = 200",
];

/// A coordinator and its workers.
pub struct CitusCluster {
    pub coordinator: Cluster,
    pub workers: Vec<Cluster>,
}

impl CitusCluster {
    /// Starts a coordinator and `workers` workers.
    pub fn start(workers: usize) -> CitusCluster {
        let mut ports = node_ports(workers + 1).into_iter();
        let mut start = || Cluster::start_custom(Some(PRELOAD), ports.next().flatten(), NODE_CONF);
        let coordinator = start();
        let workers = (0..workers).map(|_| start()).collect();
        CitusCluster {
            coordinator,
            workers,
        }
    }

    /// Every node, the coordinator first.
    pub fn nodes(&self) -> impl Iterator<Item = &Cluster> {
        std::iter::once(&self.coordinator).chain(self.workers.iter())
    }

    /// The node names Citus knows them by: `127.0.0.1:port`.
    pub fn worker_names(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|w| format!("127.0.0.1:{}", w.port()))
            .collect()
    }

    /// Creates database `db` on every node with Citus in it, registers the nodes with the
    /// coordinator (the coordinator itself holds no shards) and returns a session on the
    /// coordinator's.
    pub fn create_database(&self, db: &str) -> Client {
        for node in self.nodes() {
            node.create_database(db);
            exec(&mut node.connect(db), "CREATE EXTENSION citus");
        }
        let mut c = self.coordinator.connect(db);
        exec(
            &mut c,
            &format!(
                "SELECT pg_catalog.citus_set_coordinator_host('127.0.0.1', {})",
                self.coordinator.port()
            ),
        );
        for w in &self.workers {
            exec(
                &mut c,
                &format!(
                    "SELECT pg_catalog.citus_add_node('127.0.0.1', {})",
                    w.port()
                ),
            );
        }
        c
    }

    /// Drops database `db` on every node.
    pub fn drop_database(&self, db: &str) {
        for node in self.nodes() {
            node.drop_database(db);
        }
    }

    /// Whether every node is up.
    pub fn is_running(&self) -> bool {
        self.nodes().all(Cluster::is_running)
    }

    /// The size of every node's server log, to show later what one test logged.
    pub fn log_lens(&self) -> Vec<u64> {
        self.nodes().map(Cluster::log_len).collect()
    }

    /// What every node logged since `log_lens`, `max_lines` lines each at most.
    pub fn logs_since(&self, offsets: &[u64], max_lines: usize) -> String {
        let mut out = String::new();
        for (i, (node, off)) in self.nodes().zip(offsets).enumerate() {
            let log = node.log_since(*off, max_lines);
            if !log.trim().is_empty() {
                let name = if i == 0 {
                    "coordinator".to_string()
                } else {
                    format!("worker {i}")
                };
                out.push_str(&format!(
                    "--- {name} (127.0.0.1:{}) ---\n{log}\n",
                    node.port()
                ));
            }
        }
        out
    }
}

#[track_caller]
fn exec(c: &mut Client, sql: &str) {
    if let Err(e) = c.batch_execute(sql) {
        panic!("SQL failed: {}\n--- SQL ---\n{sql}", describe_error(&e));
    }
}

/// `n` ports for the nodes: the first free ones of `E2E_CITUS_PORTS` (`FIRST-LAST`), else
/// whatever is free.
fn node_ports(n: usize) -> Vec<Option<u16>> {
    let Ok(range) = std::env::var("E2E_CITUS_PORTS") else {
        return vec![None; n];
    };
    let (first, last) = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .unwrap_or_else(|| panic!("E2E_CITUS_PORTS={range:?}: expected FIRST-LAST"));
    let free: Vec<Option<u16>> = (first..=last)
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .take(n)
        .map(Some)
        .collect();
    assert!(
        free.len() == n,
        "E2E_CITUS_PORTS={range}: {} free ports, {n} needed",
        free.len()
    );
    free
}
