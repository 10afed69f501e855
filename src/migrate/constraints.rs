//! The keys, indexes and foreign keys of the tables `create_target` made, built after the
//! load (the `constraints` stage), the way pg_restore and pgloader do it: each index is built
//! once from the loaded rows (a sort) rather than grown row by row, and each foreign key is
//! checked by one set-based query over the whole table rather than a lookup per inserted row.
//!
//! `prepare` creates the tables bare (columns, types, NOT NULL) and records, per table, what
//! the source declares ([`Deferred`]: primary key, unique and exclusion constraints, other
//! indexes; then foreign keys) in the table's checkpoint. The stage then builds one of them
//! per step — every key and index of every table first, then the foreign keys, which need the
//! keys of the tables they reference — each step in the transaction of its checkpoint, so a
//! committing run resumes at the next one after a crash and no step is larger than one index
//! build or one foreign-key check.
//!
//! Only tables the job created itself are built this way; a target that existed is written
//! with whatever constraints it has. With `continue_on_error` every constraint is built right
//! away instead, before the copy: the rows a constraint refuses go to `job_errors` one by one,
//! which a check after the load could not do.
//!
//! Until the stage is done the tables are the job's alone: the copy writes no `ON CONFLICT`
//! clause there (no unique index yet to decide a conflict; the table was empty when the job
//! created it, and no other job writes into it), and another migration into the same schema
//! waits for the job (see [`Migration::check_not_being_built`]).

use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{Error, Result};
use super::Migration;
use crate::error::OrRaise;
use crate::jobs::{self, JobTable};
use crate::pg::quote_ident;
use crate::scope::graph::{EdgeKind, TableId};
use crate::scope::LoadedScope;
use crate::sys::{try_subtransaction, with_settings};

/// A target table `create_target` made: for which source table, its oid and name, and what
/// the source declares on it (built after the load, see `constraints.rs`).
pub(super) struct Created {
    pub source: TableId,
    pub oid: u32,
    pub display: String,
    pub deferred: Deferred,
}

/// What a deferred statement adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum DdlKind {
    /// `ALTER TABLE ... ADD CONSTRAINT name <body>`: a primary key, unique or exclusion
    /// constraint (index-backed: its name is a relation of the schema too).
    Constraint,
    /// `CREATE [UNIQUE] INDEX name ON table <body>`.
    Index,
    /// `ALTER TABLE ... ADD CONSTRAINT name <body>`: a foreign key.
    ForeignKey,
}

/// One deferred key, index or foreign key of a created table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Ddl {
    pub kind: DdlKind,
    /// The name it gets: the source's, with the source table's name in it replaced by the
    /// target's (`dispatch_orders_pkey` → `orders_pkey`). Where that name is taken in the target
    /// schema when the step runs, PostgreSQL chooses one (as for an unnamed constraint).
    pub name: String,
    /// What follows the name: `PRIMARY KEY (id)`, `USING btree (patient_id)`,
    /// `FOREIGN KEY (patient_id) REFERENCES "dst"."patients" (id)`. Written by the server
    /// (pg_get_constraintdef, pg_get_indexdef under search_path pg_catalog) or from quoted
    /// catalog names: safe to splice.
    pub body: String,
    /// A unique index (kind `Index`).
    #[serde(default)]
    pub unique: bool,
}

impl Ddl {
    /// The statement on `table` (quoted, qualified), with its name or without.
    pub(super) fn statement(&self, table: &str, named: bool) -> String {
        let name = |prefix: &str| {
            if named {
                format!("{prefix}{} ", quote_ident(&self.name))
            } else {
                String::new()
            }
        };
        match self.kind {
            DdlKind::Constraint | DdlKind::ForeignKey => format!(
                "ALTER TABLE {table} ADD {}{}",
                name("CONSTRAINT "),
                self.body
            ),
            DdlKind::Index => format!(
                "CREATE {}INDEX {}ON {table} {}",
                if self.unique { "UNIQUE " } else { "" },
                name(""),
                self.body
            ),
        }
    }

    /// How an error names it: `constraint orders_pkey (PRIMARY KEY (id))`.
    pub(super) fn describe(&self) -> String {
        let what = match self.kind {
            DdlKind::Constraint | DdlKind::ForeignKey => "constraint",
            DdlKind::Index if self.unique => "unique index",
            DdlKind::Index => "index",
        };
        format!("{what} {} ({})", quote_ident(&self.name), self.body)
    }
}

/// What the source declares on one created table, built after the load: keys and indexes
/// first (every table's), then foreign keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Deferred {
    pub keys: Vec<Ddl>,
    pub fks: Vec<Ddl>,
}

/// The details a created table's checkpoint carries while its constraints are deferred
/// (`constraints` turns `built` when the stage is done).
pub(super) fn deferred_details(d: &Deferred) -> serde_json::Value {
    json!({
        "constraints": "deferred", "deferred_keys": d.keys, "deferred_fks": d.fks,
        "keys_built": 0, "fks_built": 0,
    })
}

/// Whether a table's checkpoint says its constraints are still to be built.
pub(super) fn is_deferred(jt: &JobTable) -> bool {
    jt.details.get("constraints").and_then(|v| v.as_str()) == Some("deferred")
}

/// The name a source constraint or index gets on the target: the source table's name at its
/// start replaced by the target table's, cut to 63 bytes as PostgreSQL would.
pub(super) fn target_name_of(name: &str, source_table: &str, target_table: &str) -> String {
    let renamed = match name.strip_prefix(&format!("{source_table}_")) {
        Some(rest) if source_table != target_table => format!("{target_table}_{rest}"),
        _ => name.to_string(),
    };
    super::checks::stored_name(&renamed).to_string()
}

/// Primary key, unique and exclusion constraints (primary key first), then the other indexes
/// of a source table, as the server writes them. Under search_path pg_catalog, so that every
/// name in them (functions, operators, collations, types) comes out schema-qualified and
/// means the same in the target. An index body that does not start the way pg_get_indexdef
/// always writes it comes back NULL (then refused, never guessed).
const KEYS_SQL: &str = r#"
SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'kind', x.kind, 'name', x.name, 'body', x.body, 'unique', x.uniq) ORDER BY x.ord, x.name), '[]')
  FROM (SELECT CASE k.contype WHEN 'p' THEN 0 ELSE 1 END AS ord, 'constraint' AS kind,
               k.conname::text AS name, pg_catalog.pg_get_constraintdef(k.oid) AS body, false AS uniq
          FROM pg_catalog.pg_constraint k
         WHERE k.conrelid = $1::pg_catalog.int8::pg_catalog.oid AND k.contype IN ('p', 'u', 'x')
        UNION ALL
        SELECT 2, 'index', c.relname::text,
               CASE WHEN pg_catalog.starts_with(d.def, d.prefix)
                    THEN 'USING ' || pg_catalog.substr(d.def, pg_catalog.length(d.prefix) + 1) END,
               i.indisunique
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
         CROSS JOIN LATERAL (
               SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def,
                      pg_catalog.format('CREATE %sINDEX %I ON %s%I.%I USING ',
                             CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, c.relname,
                             CASE WHEN t.relkind = 'p' THEN 'ONLY ' ELSE '' END, n.nspname, t.relname) AS prefix) d
         WHERE i.indrelid = $1::pg_catalog.int8::pg_catalog.oid AND i.indislive
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k
                            WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid
                              AND k.contype IN ('p', 'u', 'x'))) x
"#;

/// A source foreign key's match type, actions and deferrability, written as they follow
/// `REFERENCES t (cols)`; NULL when the table declares no such constraint (an FK declared on
/// partitions only: the defaults then). A scalar subquery: one row either way.
const FK_TAIL_SQL: &str = r#"
SELECT (SELECT pg_catalog.concat(
         CASE k.confmatchtype WHEN 'f' THEN ' MATCH FULL' END,
         CASE k.confupdtype WHEN 'r' THEN ' ON UPDATE RESTRICT' WHEN 'c' THEN ' ON UPDATE CASCADE'
              WHEN 'n' THEN ' ON UPDATE SET NULL' WHEN 'd' THEN ' ON UPDATE SET DEFAULT' END,
         CASE k.confdeltype WHEN 'r' THEN ' ON DELETE RESTRICT' WHEN 'c' THEN ' ON DELETE CASCADE'
              WHEN 'n' THEN ' ON DELETE SET NULL' WHEN 'd' THEN ' ON DELETE SET DEFAULT' END,
         (SELECT ' (' || pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY x.n) || ')'
            FROM pg_catalog.unnest(k.confdelsetcols) WITH ORDINALITY x(att, n)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.att),
         CASE WHEN k.condeferrable THEN ' DEFERRABLE' END,
         CASE WHEN k.condeferred THEN ' INITIALLY DEFERRED' END)
  FROM pg_catalog.pg_constraint k
 WHERE k.conrelid = $1::pg_catalog.int8::pg_catalog.oid AND k.conname = $2 AND k.contype = 'f')
"#;

impl Migration {
    /// What the source declares on `source`, for its new target `target_table`: keys and
    /// indexes, and the foreign keys to tables this migration copies (`targets`: each copied
    /// source table with its target name; `created`: those the job creates), where the
    /// referenced side will be unique in the target: a table the job creates (it gets the
    /// source's keys), or a primary key of the source. Foreign keys are always validated in
    /// the target, also those the source declares `NOT VALID`: the target's rows were checked.
    pub(super) fn deferred_of(
        &self,
        loaded: &LoadedScope,
        source: TableId,
        target_table: &str,
        targets: &[(TableId, String)],
        created: &[TableId],
    ) -> Result<Deferred> {
        let t = loaded.catalog.table(source);
        let keys = with_settings(&[("search_path", "pg_catalog")], || {
            crate::pg::query_json::<Vec<serde_json::Value>>(KEYS_SQL, &[(source as i64).into()])
        })
        .unwrap_or_default();
        let mut out = Deferred::default();
        for k in keys {
            let name = k["name"].as_str().unwrap_or_default().to_string();
            let Some(body) = k["body"].as_str() else {
                return Err(Error::UnsupportedDefinition {
                    source: t.display.clone(),
                    what: format!("index {}", quote_ident(&name)),
                });
            };
            out.keys.push(Ddl {
                kind: if k["kind"] == "index" {
                    DdlKind::Index
                } else {
                    DdlKind::Constraint
                },
                name: target_name_of(&name, &t.name, target_table),
                body: body.to_string(),
                unique: k["unique"].as_bool().unwrap_or(false),
            });
        }
        for e in loaded.catalog.edges.iter().filter(|e| e.child == source) {
            let Some((_, parent_name)) = targets.iter().find(|(s, _)| *s == e.parent) else {
                continue;
            };
            let parent = loaded.catalog.table(e.parent);
            if !created.contains(&e.parent) && parent.primary_key.as_ref() != Some(&e.parent_cols) {
                continue;
            }
            let tail = match e.kind {
                EdgeKind::ForeignKey { .. } => Spi::get_one_with_args::<String>(
                    FK_TAIL_SQL,
                    &[(source as i64).into(), e.name.clone().into()],
                )
                .or_raise(),
                EdgeKind::Link => None,
            };
            let q = |t: &crate::scope::graph::Table, cols: &[String]| {
                super::sql::quoted_cols(t, cols).join(", ")
            };
            out.fks.push(Ddl {
                kind: DdlKind::ForeignKey,
                name: target_name_of(&e.name, &t.name, target_table),
                body: format!(
                    "FOREIGN KEY ({}) REFERENCES {} ({}){}",
                    q(t, &e.child_cols),
                    super::target_table::qualified(&self.target_schema, parent_name),
                    q(parent, &e.parent_cols),
                    tail.unwrap_or_default()
                ),
                unique: false,
            });
        }
        Ok(out)
    }

    /// Refuses (55006) to use a target table another job created and has not finished
    /// building: without its unique keys the copy could not tell which rows are there already,
    /// and its foreign keys are not checked yet. [`Migration::prepare`] waits while that job
    /// runs. Tables a job created with their constraints at once (`continue_on_error`), or
    /// whose stage is done, are ordinary tables.
    pub(super) fn check_not_being_built(&self, loaded: &LoadedScope) -> Result<()> {
        let mut oids: Vec<i64> = vec![];
        for t in &loaded.resolved.tables {
            let name = self.target_name(loaded, t.oid);
            if let Some(tt) = super::target_table::read(&self.target_schema, &name) {
                oids.push(tt.oid as i64);
            }
        }
        if oids.is_empty() {
            return Ok(());
        }
        let found = crate::sys::owner::rows(
            "SELECT t.job_id, j.status, t.target FROM tenant_ops.job_tables t
               JOIN tenant_ops.jobs j ON j.id = t.job_id
              WHERE t.job_id <> $1 AND t.details->>'constraints' = 'deferred'
                AND (t.details->>'target_oid')::pg_catalog.int8 = ANY ($2)
                AND j.kind = 'migrate' AND j.status NOT IN ('succeeded', 'cancelled', 'rolled_back')
              ORDER BY t.job_id, t.step LIMIT 1",
            &[self.job_id.into(), oids.into()],
            |r| {
                Ok((
                    r.get::<i64>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?.unwrap_or_default(),
                    r.get::<String>(3)?.unwrap_or_default(),
                ))
            },
        )
        .or_raise();
        let Some((job, status, target)) = found.into_iter().next() else {
            return Ok(());
        };
        Err(Error::TargetBeingBuilt {
            target,
            job,
            driven: status == "running" && jobs::lock::is_held(job),
            status,
        })
    }

    /// One step of the `constraints` stage: the next key or index of any created table, else
    /// the next foreign key; `false` once every one is built (the tables are then marked
    /// built, and the plans read again: from here on they are ordinary tables with keys).
    pub(super) fn constraints_step(&mut self) -> Result<bool> {
        let tables = jobs::tables(self.job_id);
        let deferred: Vec<&JobTable> = tables.iter().filter(|t| is_deferred(t)).collect();
        for (list, counter) in [
            ("deferred_keys", "keys_built"),
            ("deferred_fks", "fks_built"),
        ] {
            for jt in &deferred {
                let all: Vec<Ddl> = jt
                    .details
                    .get(list)
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                let done = jt
                    .details
                    .get(counter)
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0) as usize;
                if let Some(ddl) = all.get(done) {
                    self.build(jt, ddl)?;
                    jobs::set_table_details(self.job_id, jt.step, &json!({ counter: done + 1 }));
                    return Ok(true);
                }
            }
        }
        for jt in &deferred {
            jobs::set_table_details(self.job_id, jt.step, &json!({"constraints": "built"}));
        }
        self.plans = None;
        self.bare = None;
        Ok(false)
    }

    /// Builds one deferred key, index or foreign key on the table of `jt`. A failure (rows
    /// that break a unique key, a foreign key with no parent row) is an error naming the
    /// table and the constraint, with the server's SQLSTATE and DETAIL.
    fn build(&self, jt: &JobTable, ddl: &Ddl) -> Result<()> {
        let oid = jt
            .details
            .get("target_oid")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let (table, free) = Spi::get_two_with_args::<String, bool>(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),
                    ($3 OR NOT EXISTS (SELECT FROM pg_catalog.pg_class r
                                        WHERE r.relnamespace = c.relnamespace AND r.relname = $2))
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k
                                     WHERE k.conrelid = c.oid AND k.conname = $2)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $1::pg_catalog.int8::pg_catalog.oid",
            &[
                oid.into(),
                ddl.name.clone().into(),
                (ddl.kind == DdlKind::ForeignKey).into(),
            ],
        )
        .or_raise();
        let Some(table) = table else {
            return Err(Error::MissingTarget {
                target: jt.target.clone().unwrap_or_default(),
                from: crate::pg::relation_name(jt.source),
                shared: false,
            });
        };
        let sql = ddl.statement(&table, free.unwrap_or(false));
        let started = std::time::Instant::now();
        if let Err(e) = try_subtransaction(|| Spi::run(&sql)) {
            return Err(Error::ConstraintFailed {
                sqlstate: e.sqlstate,
                target: table,
                constraint: ddl.describe(),
                reason: e.message,
                detail: e.detail,
                job: self.job_id,
            });
        }
        jobs::log(
            self.job_id,
            "constraint.built",
            Some("constraints"),
            Some(jt.source),
            None,
            Some(&sql),
            Some(json!({"seconds": started.elapsed().as_secs_f64()})),
        );
        Ok(())
    }

    /// Builds every deferred constraint of the tables just created, in `prepare` (with
    /// `continue_on_error`: the copy needs them, see the module documentation).
    pub(super) fn build_now(&self, created: &[Created]) -> Result<()> {
        for pass in 0..2 {
            for c in created {
                let list = if pass == 0 {
                    &c.deferred.keys
                } else {
                    &c.deferred.fks
                };
                for ddl in list {
                    let jt = JobTable {
                        step: 0,
                        source: c.source,
                        target: Some(c.display.clone()),
                        role: String::new(),
                        stage: String::new(),
                        rows_total: None,
                        rows_done: 0,
                        last_key: None,
                        details: json!({"target_oid": c.oid}),
                    };
                    self.build(&jt, ddl)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_table() {
        assert_eq!(
            target_name_of("dispatch_orders_pkey", "dispatch_orders", "orders"),
            "orders_pkey"
        );
        assert_eq!(
            target_name_of("orders_pkey", "orders", "orders"),
            "orders_pkey"
        );
        assert_eq!(target_name_of("my_own_name", "orders", "o"), "my_own_name");
        let long = format!("{}_x_fkey", "t".repeat(70));
        assert_eq!(target_name_of(&long, "t", "u").len(), 63);
    }

    // In a backend: names are quoted by the server's own quote_identifier (a plain test
    // binary cannot link it).
    #[pg_test]
    fn statements() {
        let pk = Ddl {
            kind: DdlKind::Constraint,
            name: "Or\"ders_pkey".into(),
            body: "PRIMARY KEY (id)".into(),
            unique: false,
        };
        assert_eq!(
            pk.statement("d.t", true),
            "ALTER TABLE d.t ADD CONSTRAINT \"Or\"\"ders_pkey\" PRIMARY KEY (id)"
        );
        assert_eq!(
            pk.statement("d.t", false),
            "ALTER TABLE d.t ADD PRIMARY KEY (id)"
        );
        let ix = Ddl {
            kind: DdlKind::Index,
            name: "t_a_idx".into(),
            body: "USING btree (a)".into(),
            unique: true,
        };
        assert_eq!(
            ix.statement("d.t", true),
            "CREATE UNIQUE INDEX t_a_idx ON d.t USING btree (a)"
        );
        assert_eq!(
            ix.statement("d.t", false),
            "CREATE UNIQUE INDEX ON d.t USING btree (a)"
        );
        assert_eq!(ix.describe(), "unique index t_a_idx (USING btree (a))");
    }
}
