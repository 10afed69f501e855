//! Checks a migration makes before it writes anything, at submission and again in `prepare`
//! (before any DDL): every privilege the whole job needs, and one target table per source
//! table. They read the scope and the catalog only, never the plans (which need the targets
//! to exist).

use std::collections::BTreeMap;

use super::error::{Error, Result};
use super::options::{Mode, OnConflict, SharedMode};
use super::target_table;
use super::Migration;
use crate::pg::{require_schema_privileges, require_table_privileges};
use crate::scope::graph::Role;
use crate::scope::LoadedScope;

/// PostgreSQL keeps at most this many bytes of an identifier (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// `name` as PostgreSQL would store it: cut to 63 bytes, on a character boundary.
pub(super) fn stored_name(name: &str) -> &str {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name;
    }
    let mut end = MAX_IDENTIFIER_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl Migration {
    /// Every privilege the job needs, each problem once (a dry run reports them all, a real
    /// run stops at the first): USAGE on the source schemas and SELECT on every table read
    /// (the copied ones, and the shared ones `shared: expect` looks up), DELETE on the source
    /// tables a move deletes from, USAGE on the target schema and CREATE there when
    /// `create_target` will create a table, and on each existing target SELECT and INSERT
    /// (UPDATE too for `on_conflict` overwrite or merge). A target that is missing without
    /// `create_target` is reported too.
    pub(super) fn privilege_problems(&self, loaded: &LoadedScope) -> Vec<Error> {
        const WHY: &str = "migrate_tenant";
        let mut problems = vec![];
        let mut push = |r: Result<()>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };
        let copied = self.copied(loaded);
        let mut read: Vec<(crate::scope::graph::TableId, Role)> = copied.clone();
        if self.options.shared == SharedMode::Expect {
            read.extend(
                loaded
                    .resolved
                    .tables
                    .iter()
                    .filter(|t| t.role == Role::Shared)
                    .map(|t| (t.oid, t.role)),
            );
        }
        let mut schemas: Vec<&str> = vec![];
        for (source, _) in &read {
            let t = loaded.catalog.table(*source);
            if !schemas.contains(&t.schema.as_str()) {
                schemas.push(&t.schema);
            }
        }
        for s in schemas {
            push(require_schema_privileges(s, "USAGE", WHY).map_err(Into::into));
        }
        for (source, role) in &read {
            let t = loaded.catalog.table(*source);
            let privileges = if self.options.mode == Mode::Move && *role != Role::Shared {
                "SELECT, DELETE"
            } else {
                "SELECT"
            };
            push(require_table_privileges(&t.sql, &t.display, privileges, WHY).map_err(Into::into));
        }
        let target_schema_privileges = if self.options.create_target
            && copied.iter().any(|(source, _)| {
                target_table::read(&self.target_schema, &self.target_name(loaded, *source))
                    .is_none()
            }) {
            "USAGE, CREATE"
        } else {
            "USAGE"
        };
        push(
            require_schema_privileges(&self.target_schema, target_schema_privileges, WHY)
                .map_err(Into::into),
        );
        let target_privileges = match self.options.on_conflict {
            OnConflict::Overwrite | OnConflict::Merge => "SELECT, INSERT, UPDATE",
            _ => "SELECT, INSERT",
        };
        for (source, _) in &copied {
            let name = self.target_name(loaded, *source);
            match target_table::read(&self.target_schema, &name) {
                Some(t) => push(
                    require_table_privileges(&t.sql, &t.display, target_privileges, WHY)
                        .map_err(Into::into),
                ),
                None if self.options.create_target => {}
                None => push(Err(Error::MissingTarget {
                    target: target_table::qualified(&self.target_schema, &name),
                    from: loaded.catalog.table(*source).display.clone(),
                    shared: false,
                })),
            }
        }
        problems
    }

    /// Refuses (42P07) two source tables that would go to the same target table (the same
    /// name in two schemas, or a name `strip_prefix` or the `tables` map makes equal to
    /// another): their rows would be mixed, or `create_target` would fail half-way.
    pub(super) fn check_target_names(&self, loaded: &LoadedScope) -> Result<()> {
        let mut seen: BTreeMap<String, crate::scope::graph::TableId> = BTreeMap::new();
        for (source, _) in self.copied(loaded) {
            let name = self.target_name(loaded, source);
            let stored = stored_name(&name).to_string();
            if let Some(first) = seen.get(&stored) {
                let (a, b) = (loaded.catalog.table(*first), loaded.catalog.table(source));
                return Err(Error::SameTarget {
                    first: a.display.clone(),
                    second: b.display.clone(),
                    target: target_table::qualified(&self.target_schema, &stored),
                    rename: format!("{}_{}", b.schema, b.name),
                });
            }
            seen.insert(stored, source);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::stored_name;

    #[test]
    fn identifiers_are_cut_like_postgresql_does() {
        assert_eq!(stored_name("abc"), "abc");
        let long = "x".repeat(70);
        assert_eq!(stored_name(&long).len(), 63);
        // 31 two-byte characters and one more: cut before the character that would straddle.
        let wide = format!("a{}", "é".repeat(40));
        assert_eq!(stored_name(&wide).len(), 63);
        let wide2 = "é".repeat(40);
        assert_eq!(stored_name(&wide2).len(), 62);
    }
}
