//! What can be wrong with a Citus operation.

use pgrx::PgSqlErrorCode;

use crate::error::{user_error_display, wraps, Common, Report, UserError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Citus is not created in this database: `what` needs it.
    NotInstalled {
        what: String,
    },
    /// A table is not distributed the way the operation needs.
    NotDistributed {
        table: String,
        why: String,
        hint: String,
    },
    /// The node argument names no node of the cluster.
    UnknownNode {
        node: String,
        nodes: Vec<String>,
    },
    /// A logical move of a table without a replica identity.
    NoReplicaIdentity {
        table: String,
    },
    /// A table has no column that carries the tenant (`distribute`).
    NoTenantColumn {
        table: String,
        path: String,
    },
    /// The tenant's rows differ after the move from what they were before.
    ChecksumMismatch {
        table: String,
        before: String,
        after: String,
    },
    Scope(crate::scope::Error),
    Jobs(crate::jobs::Error),
    Common(Common),
}

wraps!(Error {
    Scope(crate::scope::Error),
    Jobs(crate::jobs::Error),
    Common(Common),
});

impl UserError for Error {
    fn report(&self) -> Report {
        use PgSqlErrorCode::*;
        match self {
            Error::NotInstalled { what } => Report::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("{what} needs the Citus extension, which is not installed in this database"),
            )
            .hint(Some(
                "Run it on the coordinator of a Citus cluster (CREATE EXTENSION citus).".into(),
            )),
            Error::NotDistributed { table, why, hint } => Report::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("table {table} {why}"),
            )
            .hint(Some(hint.clone())),
            Error::UnknownNode { node, nodes } => Report::new(
                ERRCODE_UNDEFINED_OBJECT,
                format!("node \"{node}\" is not an active primary node of this Citus cluster"),
            )
            .hint(Some(if nodes.is_empty() {
                "The cluster has no worker node that may hold shards (citus_add_node).".into()
            } else {
                format!("Nodes that may hold shards: {}.", nodes.join(", "))
            })),
            Error::NoReplicaIdentity { table } => Report::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "cannot move by logical replication: table {table} has no replica identity"
                ),
            )
            .detail(Some(
                "Its UPDATE and DELETE statements would fail while the move replicates them.".into(),
            ))
            .hint(Some(
                "Give it a primary key (or REPLICA IDENTITY FULL), or use \"transfer_mode\": \"block_writes\".".into(),
            )),
            Error::NoTenantColumn { table, path } => Report::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("option \"distribute\": table {table} has no column that holds the tenant"),
            )
            .detail(Some(format!(
                "Its ownership path ({path}) does not carry the tenant key, so there is nothing to distribute it by."
            )))
            .hint(Some(
                "Distributed targets need the tenant column in every table (composite keys like (tenant_id, id)); add it to the source, or migrate without \"distribute\".".into(),
            )),
            Error::ChecksumMismatch { table, before, after } => Report::new(
                ERRCODE_DATA_CORRUPTED,
                format!("the tenant's rows of {table} differ after the move"),
            )
            .detail(Some(format!("before: {before}; after: {after}"))),
            Error::Scope(e) => e.report(),
            Error::Jobs(e) => e.report(),
            Error::Common(e) => e.report(),
        }
    }
}

user_error_display!(Error);
