//! Unit tests of the scope graph.

use super::*;
use crate::error::UserError;
use crate::scope::Error;

fn col(name: &str, not_null: bool) -> Column {
    Column {
        name: name.into(),
        quoted: name.into(),
        type_oid: 23,
        type_name: "integer".into(),
        type_full: "integer".into(),
        not_null,
    }
}

fn table(oid: TableId, name: &str, cols: &[(&str, bool)]) -> Table {
    Table {
        oid,
        display: name.into(),
        sql: format!("public.{name}"),
        schema: "public".into(),
        name: name.into(),
        kind: "r".into(),
        columns: cols.iter().map(|(n, nn)| col(n, *nn)).collect(),
        primary_key: Some(vec![cols[0].0.into()]),
    }
}

fn fk(name: &str, child: TableId, cc: &[&str], parent: TableId, pc: &[&str]) -> Edge {
    Edge {
        name: name.into(),
        kind: EdgeKind::ForeignKey {
            not_valid: false,
            found_on: vec![],
            names: vec![name.into()],
        },
        child,
        child_cols: cc.iter().map(|s| s.to_string()).collect(),
        parent,
        parent_cols: pc.iter().map(|s| s.to_string()).collect(),
    }
}

/// chinook's shape: employee(1) ← customer(2) ← invoice(3) ← invoice_line(4) → track(5) → album(6).
fn chinook() -> Catalog {
    let mut c = Catalog::default();
    for t in [
        table(
            1,
            "employee",
            &[("employee_id", true), ("reports_to", false)],
        ),
        table(
            2,
            "customer",
            &[("customer_id", true), ("support_rep_id", false)],
        ),
        table(3, "invoice", &[("invoice_id", true), ("customer_id", true)]),
        table(
            4,
            "invoice_line",
            &[
                ("invoice_line_id", true),
                ("invoice_id", true),
                ("track_id", true),
            ],
        ),
        table(5, "track", &[("track_id", true), ("album_id", false)]),
        table(6, "album", &[("album_id", true)]),
        table(
            7,
            "playlist_track",
            &[("playlist_id", true), ("track_id", true)],
        ),
    ] {
        c.tables.insert(t.oid, t);
    }
    c.edges = vec![
        fk("fk_reports_to", 1, &["reports_to"], 1, &["employee_id"]),
        fk(
            "fk_support_rep",
            2,
            &["support_rep_id"],
            1,
            &["employee_id"],
        ),
        fk(
            "fk_invoice_customer",
            3,
            &["customer_id"],
            2,
            &["customer_id"],
        ),
        fk("fk_line_invoice", 4, &["invoice_id"], 3, &["invoice_id"]),
        fk("fk_line_track", 4, &["track_id"], 5, &["track_id"]),
        fk("fk_track_album", 5, &["album_id"], 6, &["album_id"]),
        fk("fk_pt_track", 7, &["track_id"], 5, &["track_id"]),
    ];
    c
}

fn spec(root: TableId, key: &str) -> ScopeSpec {
    ScopeSpec {
        root,
        tenant_key: key.into(),
        ..Default::default()
    }
}

#[test]
fn chinook_roles_order_and_filters() {
    let c = chinook();
    let s = resolve(&c, &spec(1, "employee_id")).unwrap();
    let roles: Vec<(&str, Role)> = s
        .tables
        .iter()
        .map(|t| (c.table(t.oid).display.as_str(), t.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("album", Role::Shared),
            ("track", Role::Shared),
            ("employee", Role::Root),
            ("customer", Role::Owned),
            ("invoice", Role::Owned),
            ("invoice_line", Role::Owned),
        ]
    );
    assert!(
        s.get(7).is_none(),
        "playlist_track only references shared data"
    );
    let f = Filters::new(&c, &s);
    assert_eq!(f.filter(1), "employee_id = $1::integer");
    assert_eq!(f.filter(2), "support_rep_id = $1::integer");
    assert_eq!(
        f.filter(3),
        "customer_id IN (SELECT customer_id FROM public.customer WHERE support_rep_id = $1::integer)"
    );
    assert_eq!(
        f.path(4),
        "invoice_line.invoice_id → invoice.customer_id → customer.support_rep_id → employee"
    );
    assert_eq!(
        f.filter(6),
        "album_id IN (WITH refs AS MATERIALIZED (SELECT DISTINCT album_id FROM public.track WHERE track_id IN (WITH refs AS MATERIALIZED (SELECT DISTINCT track_id FROM public.invoice_line WHERE invoice_id IN (SELECT invoice_id FROM public.invoice WHERE customer_id IN (SELECT customer_id FROM public.customer WHERE support_rep_id = $1::integer))) SELECT * FROM refs)) SELECT * FROM refs)"
    );
    assert!(s.tables[2].notes[0].contains("self-reference foreign key fk_reports_to"));
    assert!(s.cross_references.is_empty());
}

/// pagila's shape: rental has three equally near parents.
fn pagila() -> Catalog {
    let mut c = Catalog::default();
    for t in [
        table(
            1,
            "store",
            &[("store_id", true), ("manager_staff_id", true)],
        ),
        table(2, "staff", &[("staff_id", true), ("store_id", true)]),
        table(3, "customer", &[("customer_id", true), ("store_id", true)]),
        table(
            4,
            "inventory",
            &[("inventory_id", true), ("store_id", true)],
        ),
        table(
            5,
            "rental",
            &[
                ("rental_id", true),
                ("inventory_id", true),
                ("customer_id", true),
                ("staff_id", true),
            ],
        ),
    ] {
        c.tables.insert(t.oid, t);
    }
    c.edges = vec![
        fk(
            "store_manager_staff_id_fkey",
            1,
            &["manager_staff_id"],
            2,
            &["staff_id"],
        ),
        fk("staff_store_id_fkey", 2, &["store_id"], 1, &["store_id"]),
        fk("customer_store_id_fkey", 3, &["store_id"], 1, &["store_id"]),
        fk(
            "inventory_store_id_fkey",
            4,
            &["store_id"],
            1,
            &["store_id"],
        ),
        fk(
            "rental_inventory_id_fkey",
            5,
            &["inventory_id"],
            4,
            &["inventory_id"],
        ),
        fk(
            "rental_customer_id_fkey",
            5,
            &["customer_id"],
            3,
            &["customer_id"],
        ),
        fk("rental_staff_id_fkey", 5, &["staff_id"], 2, &["staff_id"]),
    ];
    c
}

#[test]
fn equally_near_paths_need_an_owner() {
    let c = pagila();
    let err = resolve(&c, &spec(1, "store_id")).unwrap_err();
    match &err {
        Error::AmbiguousOwnership {
            table,
            count,
            candidates,
            hint,
            ..
        } => {
            assert_eq!(table, "rental");
            assert_eq!(*count, 3);
            assert!(candidates.contains("rental_inventory_id_fkey"));
            assert!(candidates.contains("rental_customer_id_fkey"));
            assert!(candidates.contains("rental_staff_id_fkey"));
            assert!(hint.contains("\"owner\""));
        }
        other => panic!("unexpected {other:?}"),
    }

    let mut sp = spec(1, "store_id");
    sp.owner.insert(
        5,
        OwnerChoice {
            text: "inventory".into(),
            as_table: Some(4),
        },
    );
    let s = resolve(&c, &sp).unwrap();
    assert_eq!(s.get(5).unwrap().owner_edge, Some(4));
    // customer and staff references from rental are cross references, as is the store's manager.
    let cross: BTreeSet<&str> = s
        .cross_references
        .iter()
        .map(|i| c.edges[*i].name.as_str())
        .collect();
    assert_eq!(
        cross,
        BTreeSet::from([
            "rental_customer_id_fkey",
            "rental_staff_id_fkey",
            "store_manager_staff_id_fkey"
        ])
    );
    // store ↔ staff is a NOT NULL cycle: broken at the non-ownership edge, with a note.
    assert_eq!(s.deferred_edges, vec![0]);
    assert!(s.get(1).unwrap().notes[0].contains("DEFERRABLE"));
    let order: Vec<TableId> = s.tables.iter().map(|t| t.oid).collect();
    assert_eq!(order, vec![1, 3, 4, 2, 5]);

    // By constraint name works too, and an unknown name says what there is.
    sp.owner.insert(
        5,
        OwnerChoice {
            text: "rental_staff_id_fkey".into(),
            as_table: None,
        },
    );
    assert_eq!(
        resolve(&c, &sp).unwrap().get(5).unwrap().owner_edge,
        Some(6)
    );
    sp.owner.insert(
        5,
        OwnerChoice {
            text: "nope".into(),
            as_table: None,
        },
    );
    let err = resolve(&c, &sp).unwrap_err();
    assert!(
        matches!(err, Error::UnknownObject { ref name, .. } if name == "nope"),
        "{err:?}"
    );
    assert!(err
        .report()
        .hint
        .unwrap()
        .contains("rental_customer_id_fkey"));
}

#[test]
fn nullable_cycle_is_broken_at_the_nullable_edge() {
    let mut c = Catalog::default();
    for t in [
        table(1, "org", &[("id", true)]),
        table(
            2,
            "dept",
            &[("id", true), ("org_id", true), ("head_id", false)],
        ),
        table(3, "person", &[("id", true), ("dept_id", true)]),
    ] {
        c.tables.insert(t.oid, t);
    }
    c.edges = vec![
        fk("dept_org", 2, &["org_id"], 1, &["id"]),
        fk("person_dept", 3, &["dept_id"], 2, &["id"]),
        fk("dept_head", 2, &["head_id"], 3, &["id"]),
    ];
    let s = resolve(&c, &spec(1, "id")).unwrap();
    assert_eq!(s.deferred_edges, vec![2]);
    assert!(s.get(2).unwrap().notes[0].contains("nullable"));
    let order: Vec<TableId> = s.tables.iter().map(|t| t.oid).collect();
    assert_eq!(order, vec![1, 2, 3]);
}

#[test]
fn composite_keys_exclusions_and_shared_self_references() {
    let mut c = Catalog::default();
    for t in [
        table(1, "tenant", &[("id", true)]),
        table(
            2,
            "ord",
            &[("tenant_id", true), ("ord_no", true), ("rep_id", false)],
        ),
        table(
            3,
            "line",
            &[("tenant_id", true), ("ord_no", true), ("line_no", true)],
        ),
        table(4, "rep", &[("id", true), ("boss_id", false)]),
        table(5, "audit", &[("id", true), ("tenant_id", true)]),
    ] {
        c.tables.insert(t.oid, t);
    }
    c.edges = vec![
        fk("ord_tenant", 2, &["tenant_id"], 1, &["id"]),
        fk(
            "line_ord",
            3,
            &["tenant_id", "ord_no"],
            2,
            &["tenant_id", "ord_no"],
        ),
        fk("ord_rep", 2, &["rep_id"], 4, &["id"]),
        fk("rep_boss", 4, &["boss_id"], 4, &["id"]),
        fk("audit_tenant", 5, &["tenant_id"], 1, &["id"]),
    ];
    let mut sp = spec(1, "id");
    sp.exclude.insert(5);
    let s = resolve(&c, &sp).unwrap();
    assert!(s.get(5).is_none());
    let f = Filters::new(&c, &s);
    assert_eq!(
        f.filter(3),
        "(tenant_id, ord_no) IN (SELECT tenant_id, ord_no FROM public.ord WHERE tenant_id = $1::integer)"
    );
    assert_eq!(
        f.path(3),
        "line(tenant_id, ord_no) → ord.tenant_id → tenant"
    );
    assert_eq!(
        f.filter(4),
        "id IN (WITH RECURSIVE r AS (SELECT id, boss_id FROM public.rep WHERE id IN (WITH refs AS MATERIALIZED (SELECT DISTINCT rep_id FROM public.ord WHERE tenant_id = $1::integer) SELECT * FROM refs) UNION SELECT s.id, s.boss_id FROM public.rep s JOIN r ON s.id = r.boss_id) SELECT id FROM r)"
    );

    // `tables` restricts ownership; a referenced table left out becomes shared.
    let mut sp = spec(1, "id");
    sp.include = Some(BTreeSet::from([2]));
    let s = resolve(&c, &sp).unwrap();
    assert_eq!(s.get(2).unwrap().role, Role::Owned);
    assert!(s.get(3).is_none());
    assert_eq!(s.get(4).unwrap().role, Role::Shared);
}

#[test]
fn owner_for_a_table_outside_the_scope_is_refused() {
    let c = chinook();
    let mut sp = spec(1, "employee_id");
    sp.owner.insert(
        7,
        OwnerChoice {
            text: "fk_pt_track".into(),
            as_table: None,
        },
    );
    let err = resolve(&c, &sp).unwrap_err();
    assert!(
        err.to_string()
            .contains("playlist_track, which the scope does not own"),
        "{err}"
    );
}

/// Ambiguities on several layers are reported at once (a deeper one would otherwise show only
/// after the first was settled), with one `owner` option that settles them all.
#[test]
fn every_ambiguity_is_reported_with_one_owner_option() {
    // r(1) ← a(2), r ← b(3); c(4) → a and → b; e(5) → c twice.
    let mut c = Catalog::default();
    for t in [
        table(1, "r", &[("id", true)]),
        table(2, "a", &[("id", true), ("r_id", true)]),
        table(3, "b", &[("id", true), ("r_id", true)]),
        table(4, "c", &[("id", true), ("a_id", true), ("b_id", true)]),
        table(5, "e", &[("id", true), ("c1", true), ("c2", true)]),
    ] {
        c.tables.insert(t.oid, t);
    }
    c.edges = vec![
        fk("a_r", 2, &["r_id"], 1, &["id"]),
        fk("b_r", 3, &["r_id"], 1, &["id"]),
        fk("c_a", 4, &["a_id"], 2, &["id"]),
        fk("c_b", 4, &["b_id"], 3, &["id"]),
        fk("e_c1", 5, &["c1"], 4, &["id"]),
        fk("e_c2", 5, &["c2"], 4, &["id"]),
    ];
    let err = resolve(&c, &spec(1, "id")).unwrap_err();
    match &err {
        Error::AmbiguousOwnership {
            table, also, hint, ..
        } => {
            assert_eq!(table, "c");
            assert_eq!(also.len(), 1, "{also:?}");
            assert!(also[0].starts_with("e ("), "{also:?}");
            assert!(
                hint.contains(r#"'{"owner": {"c": "c_a", "e": "e_c1"}}'"#),
                "{hint}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // The hint's option, pasted, resolves the scope.
    let mut sp = spec(1, "id");
    for (t, name) in [(4, "c_a"), (5, "e_c1")] {
        sp.owner.insert(
            t,
            OwnerChoice {
                text: name.into(),
                as_table: None,
            },
        );
    }
    let s = resolve(&c, &sp).unwrap();
    assert_eq!(s.get(4).unwrap().owner_edge, Some(2));
    assert_eq!(s.get(5).unwrap().owner_edge, Some(4));
}

/// A column lookup that fails is our bug and stops (an internal error in the server), never
/// falling back to the raw name: the quoted name where the column exists.
#[test]
fn column_lookups_never_fall_back_to_the_raw_name() {
    let mut t = table(1, "t", &[("id", true), ("A b", false)]);
    t.columns[1].quoted = "\"A b\"".into();
    assert_eq!(t.quoted_col("A b"), "\"A b\"");
    assert_eq!(t.known_column("id").name, "id");
    let missing = std::panic::catch_unwind(|| t.quoted_col("x; DROP TABLE t").to_string());
    let message = missing.expect_err("a missing column panics");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert_eq!(
        message,
        "pg_tenant_ops internal error: table t has no column \"x; DROP TABLE t\""
    );
}
