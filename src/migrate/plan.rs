//! How each target row is computed from a source row: one SQL expression per target column,
//! over the source row aliased `s`, with every key and FK column mapped consistently.
//!
//! Key mapping is by value and per referenced column: a column that references `P.x` is mapped
//! the way `P.x` itself is — re-keyed if `x` is P's re-keyed primary key, replaced by the new
//! tenant if it is the root's tenant key in a clone, or, when `x` is itself an FK column of P,
//! mapped the way *its* parent column is. So composite keys, self-references and chains of
//! FKs all stay consistent without a lookup per row in Rust.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use pgrx::spi::quote_literal;

use super::error::{Error, Result};
use super::options::{ColumnSource, CrossTenant, IdStrategy, MigrateOptions};
use super::sql::{qualified_cols, quoted_cols};
use super::target_table::TargetTable;
use super::transform::Transform;
use crate::scope::graph::{Role, TableId};
use crate::scope::LoadedScope;

/// One source key column used for keyset pagination.
#[derive(Clone, Debug)]
pub struct KeyColumn {
    pub quoted: String,
    pub type_name: String,
}

/// One key lookup of a table plan: the new id of `input` (an expression over `s`) as a key of
/// the re-keyed `table`, joined as `__tenant_ops_m<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub table: TableId,
    pub input: String,
    /// `input` has the type of `table`'s key, so a staged mapping (keys of that type) can be
    /// joined on the value itself rather than its text (see `stage.rs`).
    pub same_type: bool,
}

impl Lookup {
    /// The join of lookup `n` in `tenant_ops.id_map` (`$2`: the namespace).
    pub fn id_map_join(&self, n: usize) -> String {
        format!(
            " LEFT JOIN (SELECT legacy_key AS __tenant_ops_key, new_id AS __tenant_ops_new_id FROM tenant_ops.id_map
                WHERE namespace = $2 AND source = {tbl}::pg_catalog.regclass) __tenant_ops_m{n}
               ON __tenant_ops_m{n}.__tenant_ops_key = ({input})::text",
            tbl = self.table,
            input = self.input
        )
    }
}

/// Everything needed to copy, verify, fix up, delete and roll back one table.
#[derive(Clone, Debug)]
pub struct TablePlan {
    pub step: i32,
    pub source: TableId,
    pub source_sql: String,
    pub source_display: String,
    pub role: Role,
    pub target: TargetTable,
    /// The tenant's rows of the source (`$1` = tenant value).
    pub filter: String,
    /// Target column (quoted) → expression over `s`, in target column order.
    pub columns: Vec<(String, String)>,
    /// Target columns set after every table is copied (self-references, broken cycles).
    pub deferred: Vec<(String, String)>,
    /// Target types of `columns` with their modifiers, for checksums (same order).
    pub column_types: Vec<String>,
    /// Source key for keyset batches; None: the table is copied in one statement.
    pub key: Option<Vec<KeyColumn>>,
    /// Target key columns with the expressions that produce them, to find our rows there.
    pub target_key: Option<Vec<(String, String)>>,
    /// Whether the source primary key is re-keyed through `tenant_ops.id_map` (uuid).
    pub uses_id_map: bool,
    /// Source primary key column (quoted), when single-column: what id_map keys on.
    pub single_key: Option<String>,
    /// Column plans may raise per row (transforms that parse): failing rows are isolated.
    pub can_fail: bool,
    /// Joins the column expressions need after `FROM source s` (key lookups in id_map).
    pub joins: String,
    /// The key lookups behind `joins`, in alias order (`__tenant_ops_m<n>`): a copy step of
    /// an inline run joins the keys it staged in this transaction instead (see `stage.rs`).
    pub lookups: Vec<Lookup>,
    /// The lookup of the table's ownership reference, when that is one column naming its
    /// parent's re-keyed primary key: where the parent's keys are staged and every statement
    /// reads one snapshot, joining them selects exactly the tenant's rows, in place of
    /// `filter` (see `copy.rs`, `owner_join`).
    pub owner_lookup: Option<usize>,
    /// A condition on `s` selecting the rows of `filter` copied for other tenants' sake (the
    /// managers a root row points at, rows of other tenants that `cross_tenant: copy` brings
    /// along): like shared rows, they are reused when an earlier migration into the target
    /// copied them, and recorded so an undo removes them only when nobody else uses them.
    pub borrowed: Option<String>,
}

/// The pieces of a migration that every table plan needs.
pub struct Planner<'a> {
    pub loaded: &'a LoadedScope,
    pub options: &'a MigrateOptions,
    /// Tables whose single-column primary key is re-keyed (target key column is uuid).
    pub rekeyed: BTreeSet<TableId>,
    pub is_admin: bool,
    /// id_map lookups the table being planned needs: (table, input expression) → alias.
    pub lookups: RefCell<Vec<Lookup>>,
    /// The columns the `pii` option masks (see `pii::mask`).
    pub masks: crate::pii::mask::Masks,
}

impl<'a> Planner<'a> {
    fn catalog(&self) -> &crate::scope::graph::Catalog {
        &self.loaded.catalog
    }

    fn root(&self) -> TableId {
        self.loaded.resolved.root
    }

    fn in_scope(&self, t: TableId) -> bool {
        self.loaded.resolved.get(t).is_some()
    }

    /// The (table, column) whose mapping a value of `table.col` follows, if it is mapped.
    fn value_map(
        &self,
        table: TableId,
        col: &str,
        seen: &mut BTreeSet<(TableId, String)>,
    ) -> Option<(TableId, String)> {
        if !seen.insert((table, col.to_string())) {
            return None;
        }
        let t = self.catalog().table(table);
        if self.rekeyed.contains(&table) && t.primary_key.as_deref() == Some(&[col.to_string()][..])
        {
            return Some((table, col.to_string()));
        }
        if table == self.root()
            && col == self.loaded.resolved.tenant_key
            && self.options.new_tenant.is_some()
        {
            return Some((table, col.to_string()));
        }
        // Follow references: the ownership edge first, then any other edge into the scope.
        let owner_edge = self.loaded.resolved.get(table).and_then(|st| st.owner_edge);
        let mut edges: Vec<usize> = (0..self.catalog().edges.len())
            .filter(|i| {
                let e = &self.catalog().edges[*i];
                e.child == table && self.in_scope(e.parent) && e.child_cols.iter().any(|c| c == col)
            })
            .collect();
        edges.sort_by_key(|i| Some(*i) != owner_edge);
        for i in edges {
            let e = &self.catalog().edges[i];
            let pos = e
                .child_cols
                .iter()
                .position(|c| c == col)
                .expect("filtered");
            if let Some(m) = self.value_map(e.parent, &e.parent_cols[pos], seen) {
                return Some(m);
            }
        }
        None
    }

    /// The key type of the root's tenant key, for `$1::type` and `$3::type`.
    fn tenant_key_type(&self) -> String {
        let root = self.catalog().table(self.root());
        root.known_column(&self.loaded.resolved.tenant_key)
            .type_name
            .clone()
    }

    /// The SQL mapping a value `x` of the key `table.col` to its new value.
    fn map_key(&self, table: TableId, col: &str, x: &str, x_type: &str) -> String {
        let t = self.catalog().table(table);
        // Only the re-keyed primary key goes through the key mapping: a tenant key that is
        // another column of the root keeps its values (the mapping holds primary keys only,
        // so a lookup by that column's value found nothing and gave NULL).
        let rekeyed_pk = self.rekeyed.contains(&table)
            && t.primary_key.as_deref() == Some(std::slice::from_ref(&col.to_string()));
        let strategy = if rekeyed_pk {
            match self.options.id_strategy {
                IdStrategy::Keep => x.to_string(),
                // `$2`: the namespace ('' or the clone's); the legacy table by its name, as
                // for uuid5 (see `keyed_uuid::name`).
                IdStrategy::Uuid => format!(
                    "tenant_ops.uuid4_keyed($2, {} || ({x})::text)",
                    quote_literal(format!("{}:", t.sql))
                ),
                IdStrategy::Uuid7 => {
                    // A join rather than a subquery per row: PostgreSQL hashes the mapping once
                    // per statement (four times faster on a 750k-row batch).
                    let mut lookups = self.lookups.borrow_mut();
                    let n = match lookups
                        .iter()
                        .position(|l| l.table == t.oid && l.input == x)
                    {
                        Some(n) => n,
                        None => {
                            lookups.push(Lookup {
                                table: t.oid,
                                input: x.to_string(),
                                same_type: t.known_column(col).type_name == x_type,
                            });
                            lookups.len() - 1
                        }
                    };
                    format!("__tenant_ops_m{n}.__tenant_ops_new_id")
                }
                IdStrategy::Uuid5 => format!(
                    "tenant_ops.uuid5($2::uuid, {} || ({x})::text)",
                    quote_literal(format!("{}:", t.sql))
                ),
            }
        } else {
            x.to_string()
        };
        // A clone (`new_tenant`) writes the new tenant's key where the old one was. Where the
        // key is re-keyed to UUIDs, the clone's own namespace already gives it fresh keys.
        let rekeyed_to_uuid = rekeyed_pk && self.options.id_strategy != IdStrategy::Keep;
        if table == self.root()
            && col == self.loaded.resolved.tenant_key
            && self.options.new_tenant.is_some()
            && !rekeyed_to_uuid
        {
            // `$3` (text) is cast to the key's type (an integer key gave 42804, "CASE types
            // integer and text cannot be matched").
            format!(
                "CASE WHEN ({x}) = $1::{ty} THEN $3::{ty} ELSE {strategy} END",
                ty = self.tenant_key_type()
            )
        } else {
            strategy
        }
    }

    /// The mapped value of source column `col` of `table`, read from `s`.
    pub fn mapped_column(&self, table: TableId, col: &str) -> String {
        let t = self.catalog().table(table);
        let input = format!("s.{}", t.quoted_col(col));
        match self.value_map(table, col, &mut BTreeSet::new()) {
            Some((p, pc)) => self.map_key(p, &pc, &input, &t.known_column(col).type_name),
            None => input,
        }
    }

    /// Source columns of `table` that are set only after every table is copied: the child
    /// columns of its self-references and of the edges broken to order an insertion cycle.
    fn deferred_columns(&self, table: TableId) -> BTreeSet<String> {
        let c = self.catalog();
        let mut out = BTreeSet::new();
        for (i, e) in c.edges.iter().enumerate() {
            if e.child != table || !self.in_scope(e.parent) {
                continue;
            }
            if e.is_self_reference() || self.loaded.resolved.deferred_edges.contains(&i) {
                out.extend(e.child_cols.iter().cloned());
            }
        }
        out
    }

    /// For `cross_tenant: null`: cross references out of `table`, by child column, as the
    /// condition under which the reference stays within the tenant.
    fn cross_conditions(&self, table: TableId) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if self.options.cross_tenant != CrossTenant::Null {
            return out;
        }
        let c = self.catalog();
        let filters = self.loaded.filters();
        for i in &self.loaded.resolved.cross_references {
            let e = &c.edges[*i];
            if e.child != table {
                continue;
            }
            let child = c.table(e.child);
            let parent = c.table(e.parent);
            let lhs = qualified_cols(child, &e.child_cols, "s");
            let rhs = quoted_cols(parent, &e.parent_cols);
            let cond = format!(
                "({}) IN (SELECT {} FROM {} WHERE {})",
                lhs.join(", "),
                rhs.join(", "),
                parent.sql,
                filters.filter(e.parent)
            );
            for col in &e.child_cols {
                out.insert(col.clone(), cond.clone());
            }
        }
        out
    }

    /// Plans one table: which target columns are written and how.
    pub fn plan_table(
        &self,
        step: i32,
        source: TableId,
        role: Role,
        filter: String,
        target: TargetTable,
    ) -> Result<TablePlan> {
        self.lookups.borrow_mut().clear();
        let c = self.catalog();
        let src = c.table(source);
        let target_name = target.display.clone();
        let spec = self.column_spec(&target);
        let deferred_cols = self.deferred_columns(source);
        let cross = self.cross_conditions(source);
        let mut columns = vec![];
        let mut column_types = vec![];
        let mut deferred = vec![];
        let mut can_fail = false;
        for tc in &target.columns {
            if tc.generated {
                continue;
            }
            let context = format!("column \"{}\" of target table {target_name}", tc.name);
            let given = spec.and_then(|m| m.get(&tc.name));
            // A column the `pii` option masks: after any transform `columns` gives it, so
            // that no transform lets the data through unmasked.
            let mask = match given {
                Some(ColumnSource::From { column, .. }) => self.masks.get(source, column),
                None => self.masks.get(source, &tc.name),
                _ => None,
            };
            let (expr, from_col) = match given {
                Some(ColumnSource::From { column, transform }) => {
                    if src.column(column).is_none() {
                        return Err(crate::scope::Error::UnknownColumn {
                            table: src.display.clone(),
                            column: column.clone(),
                            context: format!("option \"columns\" for {context}"),
                        }
                        .into());
                    }
                    let input = self.mapped_column(source, column);
                    match transform {
                        Some(spec) => {
                            let t = Transform::parse(spec, &context)?;
                            can_fail |= t.can_fail();
                            // Transforms give text (or a parsed type): the target's type decides.
                            (
                                format!("({})::{}", t.to_sql(&input), tc.type_name),
                                Some(column.clone()),
                            )
                        }
                        None => (input, Some(column.clone())),
                    }
                }
                Some(ColumnSource::Value(v)) => {
                    let lit = match v {
                        serde_json::Value::Null => "NULL".to_string(),
                        serde_json::Value::String(s) => quote_literal(s),
                        other => quote_literal(other.to_string()),
                    };
                    (format!("{lit}::{}", tc.type_name), None)
                }
                Some(ColumnSource::Expr(sql)) => {
                    if !self.is_admin {
                        return Err(Error::ExpressionNeedsAdmin { column: context });
                    }
                    can_fail = true;
                    (format!("({sql})"), None)
                }
                None => match src.column(&tc.name) {
                    Some(_) => (self.mapped_column(source, &tc.name), Some(tc.name.clone())),
                    None => {
                        if tc.not_null && !tc.has_default {
                            return Err(Error::Unfilled {
                                target: target_name,
                                column: tc.quoted.clone(),
                                source: src.display.clone(),
                                target_name: target.name.clone(),
                                column_name: tc.name.clone(),
                            });
                        }
                        continue;
                    }
                },
            };
            let expr = match (mask, &from_col) {
                (Some(spec), Some(_)) => {
                    let t = Transform::parse(spec, &context)?;
                    can_fail |= t.can_fail();
                    format!("({})::{}", t.to_sql(&expr), tc.type_name)
                }
                _ => expr,
            };
            let expr = match from_col.as_ref().and_then(|col| cross.get(col)) {
                Some(cond) => format!("CASE WHEN {cond} THEN {expr} END"),
                None => expr,
            };
            if from_col
                .as_ref()
                .is_some_and(|col| deferred_cols.contains(col))
            {
                if tc.not_null {
                    return Err(Error::DeferredNotNull {
                        target: target_name,
                        column: tc.quoted.clone(),
                    });
                }
                deferred.push((tc.quoted.clone(), expr));
                continue;
            }
            columns.push((tc.quoted.clone(), expr));
            // With modifiers: the source value as assignment to the target column makes it
            // (numeric(10,2) rounds, timestamp(0) truncates), so a faithful copy hashes alike.
            column_types.push(tc.type_full.clone());
        }

        let key = src.primary_key.as_ref().map(|pk| {
            pk.iter()
                .map(|col| {
                    let sc = src.known_column(col);
                    KeyColumn {
                        quoted: sc.quoted.clone(),
                        type_name: sc.type_name.clone(),
                    }
                })
                .collect::<Vec<_>>()
        });
        let written: BTreeMap<&str, &str> = columns
            .iter()
            .map(|(c, e)| (c.as_str(), e.as_str()))
            .collect();
        let target_key = target.primary_key.as_ref().and_then(|pk| {
            pk.iter()
                .map(|col| {
                    let q = target.column(col)?.quoted.clone();
                    written.get(q.as_str()).map(|e| (q.clone(), e.to_string()))
                })
                .collect::<Option<Vec<_>>>()
        });
        let single_key = match src.primary_key.as_deref() {
            Some([k]) => src.column(k).map(|c| c.quoted.clone()),
            _ => None,
        };
        let lookups = self.lookups.borrow().clone();
        let owner_lookup = self.owner_lookup(source, role, &lookups);
        let joins = lookups
            .iter()
            .enumerate()
            .map(|(n, l)| l.id_map_join(n))
            .collect::<String>();
        Ok(TablePlan {
            joins,
            lookups,
            owner_lookup,
            step,
            source,
            source_sql: src.sql.clone(),
            source_display: src.display.clone(),
            role,
            target,
            filter,
            columns,
            deferred,
            column_types,
            key,
            target_key,
            uses_id_map: self.options.id_strategy.uses_id_map() && self.rekeyed.contains(&source),
            single_key,
            can_fail,
            borrowed: None,
        })
    }

    /// [`TablePlan::owner_lookup`] of an owned `source` among its `lookups`.
    fn owner_lookup(&self, source: TableId, role: Role, lookups: &[Lookup]) -> Option<usize> {
        if role != Role::Owned {
            return None;
        }
        let c = self.catalog();
        let e = &c.edges[self.loaded.resolved.get(source)?.owner_edge?];
        let parent = c.table(e.parent);
        if e.child_cols.len() != 1
            || parent.primary_key.as_deref() != Some(&e.parent_cols[..])
            || !self.rekeyed.contains(&e.parent)
        {
            return None;
        }
        let input = format!("s.{}", c.table(source).quoted_col(&e.child_cols[0]));
        lookups
            .iter()
            .position(|l| l.table == e.parent && l.input == input)
    }

    fn column_spec(&self, target: &TargetTable) -> Option<&BTreeMap<String, ColumnSource>> {
        // The option may name the target table bare or qualified (names from the catalog,
        // never parsed out of SQL).
        let qualified = format!("{}.{}", target.schema, target.name);
        self.options
            .columns
            .get(&target.name)
            .or_else(|| self.options.columns.get(&qualified))
            .or_else(|| self.options.columns.get(&target.display))
            .or_else(|| self.options.columns.get(&target.sql))
    }
}

impl TablePlan {
    pub fn key_list(&self, alias: &str) -> Option<String> {
        self.key.as_ref().map(|k| {
            k.iter()
                .map(|c| format!("{alias}.{}", c.quoted))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// `(s.a, s.b) > (($5)[1]::t1, ($5)[2]::t2)` for the keyset lower bound in parameter `p`.
    pub fn key_after(&self, param: usize) -> Option<String> {
        self.key_compare(param, ">")
    }

    pub fn key_upto(&self, param: usize) -> Option<String> {
        self.key_compare(param, "<=")
    }

    fn key_compare(&self, param: usize, op: &str) -> Option<String> {
        let k = self.key.as_ref()?;
        let rhs: Vec<String> = k
            .iter()
            .enumerate()
            .map(|(i, c)| format!("(${param})[{}]::{}", i + 1, c.type_name))
            .collect();
        Some(format!(
            "({}) {op} ({})",
            self.key_list("s")?,
            rhs.join(", ")
        ))
    }

    /// `ARRAY[s.a::text, s.b::text]`: the key as stored in checkpoints and job_errors.
    pub fn key_text(&self, alias: &str) -> String {
        match &self.key {
            Some(k) => format!(
                "ARRAY[{}]",
                k.iter()
                    .map(|c| format!("({alias}.{})::text", c.quoted))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "ARRAY[]::text[]".into(),
        }
    }

    pub fn target_columns(&self) -> String {
        self.columns
            .iter()
            .map(|(c, _)| c.clone())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn select_list(&self) -> String {
        self.columns
            .iter()
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `ROW(e1::t1, ...)::text`: a source row as the target will hold it, for checksums.
    pub fn source_row_text(&self) -> String {
        let items: Vec<String> = self
            .columns
            .iter()
            .zip(&self.column_types)
            .map(|((_, e), t)| format!("({e})::{t}"))
            .collect();
        format!("ROW({})::text", items.join(", "))
    }

    pub fn target_row_text(&self, alias: &str) -> String {
        let items: Vec<String> = self
            .columns
            .iter()
            .map(|(c, _)| format!("{alias}.{c}"))
            .collect();
        format!("ROW({})::text", items.join(", "))
    }

    /// Whether the plan's rows include rows shared with other migrations into the target: a
    /// shared table's, or borrowed ones (see [`TablePlan::borrowed`]). Only keyed targets can
    /// tell them apart.
    pub fn shares_rows(&self) -> bool {
        self.target_key.is_some() && (self.role == Role::Shared || self.borrowed.is_some())
    }

    /// `jsonb_build_array(t.k1, ...)`: a target row's key as `tenant_ops.job_archive` records
    /// it (`shared_added`, `shared_used`).
    pub fn target_key_json(&self, alias: &str) -> String {
        let cols: Vec<String> = self
            .target_key
            .as_ref()
            .expect("keyed target")
            .iter()
            .map(|(c, _)| format!("{alias}.{c}"))
            .collect();
        format!("pg_catalog.jsonb_build_array({})", cols.join(", "))
    }

    /// The same key computed from a source row `s` (cast to the target's types, so that both
    /// give the same jsonb).
    pub fn source_key_json(&self) -> String {
        let exprs: Vec<String> = self
            .target_key
            .as_ref()
            .expect("keyed target")
            .iter()
            .map(|(c, e)| {
                let ty = self
                    .target
                    .columns
                    .iter()
                    .find(|tc| &tc.quoted == c)
                    .map(|tc| tc.type_name.as_str())
                    .expect("key columns exist");
                format!("({e})::{ty}")
            })
            .collect();
        format!("pg_catalog.jsonb_build_array({})", exprs.join(", "))
    }

    /// A condition on target rows `t` selecting the rows this plan writes from the source rows
    /// that `source_where` selects (by target key, or by whole row where there is none).
    pub fn target_rows(&self, source_from: &str, source_where: &str) -> String {
        match &self.target_key {
            Some(k) => {
                let cols: Vec<String> = k.iter().map(|(c, _)| format!("t.{c}")).collect();
                let exprs: Vec<String> = k.iter().map(|(_, e)| e.clone()).collect();
                format!(
                    "({}) IN (SELECT {} FROM {source_from} s{} WHERE {source_where})",
                    cols.join(", "),
                    exprs.join(", "),
                    self.joins
                )
            }
            None => format!(
                "{} IN (SELECT {} FROM {source_from} s{} WHERE {source_where})",
                self.target_row_text("t"),
                self.source_row_text(),
                self.joins
            ),
        }
    }
}
