//! The sample databases (chinook, pagila, northwind): plans checked against hand-written SQL.

use pg_tenant_ops_e2e::{assert_sqlstate, assert_sqlstate_hint, Cluster, StopMode};

use crate::common::*;

/// The harness itself: the cluster starts, answers, loads every dataset, survives an
/// immediate shutdown and a backend's kill -9. Needs no extension.
pub fn sanity_cluster(cluster: &Cluster) {
    let mut c = cluster.connect("postgres");
    assert_eq!(scalar(&mut c, "SELECT 1::int8"), 1);
    let version: String = c.query_one("SHOW server_version_num", &[]).unwrap().get(0);
    assert!(
        version.starts_with("15"),
        "expected PostgreSQL 15, got {version}"
    );

    cluster.load_pagila("e2e_sanity_pagila");
    cluster.load_chinook("e2e_sanity_chinook");
    cluster.load_northwind("e2e_sanity_northwind");

    let mut p = cluster.connect("e2e_sanity_pagila");
    assert_eq!(scalar(&mut p, "SELECT count(*) FROM film"), 1000);
    assert_eq!(scalar(&mut p, "SELECT count(*) FROM rental"), 16044);
    assert_eq!(scalar(&mut p, "SELECT count(*) FROM payment"), 16049);
    let mut ch = cluster.connect("e2e_sanity_chinook");
    assert_eq!(scalar(&mut ch, "SELECT count(*) FROM employee"), 8);
    assert_eq!(scalar(&mut ch, "SELECT count(*) FROM invoice_line"), 2240);
    let mut n = cluster.connect("e2e_sanity_northwind");
    assert_eq!(scalar(&mut n, "SELECT count(*) FROM orders"), 830);
    drop((p, ch, n));

    // An immediate shutdown (crash recovery on start), then a backend killed with -9.
    cluster.restart(StopMode::Immediate);
    let mut c = cluster.connect("e2e_sanity_chinook");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM invoice"), 412);
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    cluster.crash_process(pid);
    assert!(
        c.simple_query("SELECT 1").is_err(),
        "the killed backend's session must be gone"
    );
    let mut c = cluster.connect("e2e_sanity_chinook");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM customer"), 59);
    drop(c);

    for db in [
        "e2e_sanity_pagila",
        "e2e_sanity_chinook",
        "e2e_sanity_northwind",
    ] {
        cluster.drop_database(db);
    }
}

/// Chinook's tenant column is `customer.support_rep_id`: employee is the root, customer,
/// invoice and invoice_line are owned, the catalogue (track, album, artist, genre, media_type)
/// is shared. `employee.reports_to` is a self-reference on the root.
pub const CHINOOK_ORACLE: &[(&str, &str)] = &[
    (
        "employee",
        "SELECT count(*) FROM employee WHERE employee_id = $1::text::int",
    ),
    (
        "customer",
        "SELECT count(*) FROM customer WHERE support_rep_id = $1::text::int",
    ),
    (
        "invoice",
        "SELECT count(*) FROM invoice i JOIN customer c ON c.customer_id = i.customer_id
         WHERE c.support_rep_id = $1::text::int",
    ),
    (
        "invoice_line",
        "SELECT count(*) FROM invoice_line il
         JOIN invoice i ON i.invoice_id = il.invoice_id
         JOIN customer c ON c.customer_id = i.customer_id
         WHERE c.support_rep_id = $1::text::int",
    ),
    (
        "track",
        "SELECT count(DISTINCT il.track_id) FROM invoice_line il
         JOIN invoice i ON i.invoice_id = il.invoice_id
         JOIN customer c ON c.customer_id = i.customer_id
         WHERE c.support_rep_id = $1::text::int",
    ),
    (
        "album",
        "SELECT count(DISTINCT t.album_id) FROM track t WHERE t.track_id IN (
           SELECT il.track_id FROM invoice_line il
           JOIN invoice i ON i.invoice_id = il.invoice_id
           JOIN customer c ON c.customer_id = i.customer_id
           WHERE c.support_rep_id = $1::text::int)",
    ),
    (
        "artist",
        "SELECT count(DISTINCT a.artist_id) FROM album a WHERE a.album_id IN (
           SELECT t.album_id FROM track t WHERE t.track_id IN (
             SELECT il.track_id FROM invoice_line il
             JOIN invoice i ON i.invoice_id = il.invoice_id
             JOIN customer c ON c.customer_id = i.customer_id
             WHERE c.support_rep_id = $1::text::int))",
    ),
    (
        "genre",
        "SELECT count(DISTINCT t.genre_id) FROM track t WHERE t.track_id IN (
           SELECT il.track_id FROM invoice_line il
           JOIN invoice i ON i.invoice_id = il.invoice_id
           JOIN customer c ON c.customer_id = i.customer_id
           WHERE c.support_rep_id = $1::text::int)",
    ),
    (
        "media_type",
        "SELECT count(DISTINCT t.media_type_id) FROM track t WHERE t.track_id IN (
           SELECT il.track_id FROM invoice_line il
           JOIN invoice i ON i.invoice_id = il.invoice_id
           JOIN customer c ON c.customer_id = i.customer_id
           WHERE c.support_rep_id = $1::text::int)",
    ),
];

pub fn chinook_plan(cluster: &Cluster) {
    let db = "e2e_chinook_plan";
    cluster.load_chinook(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);

    create_scope(&mut c, "chinook", "employee", "employee_id", "{}");
    let listed = scalar(
        &mut c,
        "SELECT count(*) FROM tenant_ops.scopes
         WHERE name = 'chinook' AND root = 'employee'::regclass AND tenant_key::text = 'employee_id'",
    );
    assert_eq!(
        listed, 1,
        "tenant_ops.scopes lists the new scope with its root and key"
    );

    let p4 = plan(&mut c, "chinook", "4");
    assert_roles(
        &mut c,
        &p4,
        &[
            ("employee", "root", Some(1)),
            ("customer", "owned", Some(20)),
            ("invoice", "owned", Some(140)),
            ("invoice_line", "owned", Some(760)),
            ("track", "shared", None),
            ("album", "shared", None),
            ("artist", "shared", None),
            ("genre", "shared", None),
            ("media_type", "shared", None),
        ],
    );
    assert_dependency_order(&mut c, &p4, &[]);

    for tenant in ["3", "4", "5"] {
        let p = plan(&mut c, "chinook", tenant);
        assert_counts(&mut c, &p, tenant, CHINOOK_ORACLE);
        assert_dependency_order(&mut c, &p, &[]);
    }
}

/// Pagila: store is the root; staff, customer, inventory carry store_id; rental hangs below
/// inventory, customer and staff (three equally near FKs), payment (partitioned by month; only
/// some partitions declare FKs) below customer, staff and rental.
const PAGILA_ORACLE: &[(&str, &str)] = &[
    (
        "store",
        "SELECT count(*) FROM store WHERE store_id = $1::text::int",
    ),
    (
        "staff",
        "SELECT count(*) FROM staff WHERE store_id = $1::text::int",
    ),
    (
        "customer",
        "SELECT count(*) FROM customer WHERE store_id = $1::text::int",
    ),
    (
        "inventory",
        "SELECT count(*) FROM inventory WHERE store_id = $1::text::int",
    ),
    (
        "rental",
        "SELECT count(*) FROM rental r JOIN inventory i ON i.inventory_id = r.inventory_id
         WHERE i.store_id = $1::text::int",
    ),
    (
        "payment",
        "SELECT count(*) FROM payment p
         JOIN rental r ON r.rental_id = p.rental_id
         JOIN inventory i ON i.inventory_id = r.inventory_id
         WHERE i.store_id = $1::text::int",
    ),
    (
        "address",
        "SELECT count(DISTINCT address_id) FROM (
           SELECT address_id FROM store WHERE store_id = $1::text::int
           UNION ALL SELECT address_id FROM staff WHERE store_id = $1::text::int
           UNION ALL SELECT address_id FROM customer WHERE store_id = $1::text::int) a",
    ),
    (
        "city",
        "SELECT count(DISTINCT ad.city_id) FROM address ad WHERE ad.address_id IN (
           SELECT address_id FROM store WHERE store_id = $1::text::int
           UNION ALL SELECT address_id FROM staff WHERE store_id = $1::text::int
           UNION ALL SELECT address_id FROM customer WHERE store_id = $1::text::int)",
    ),
    (
        "country",
        "SELECT count(DISTINCT ci.country_id) FROM city ci WHERE ci.city_id IN (
           SELECT ad.city_id FROM address ad WHERE ad.address_id IN (
             SELECT address_id FROM store WHERE store_id = $1::text::int
             UNION ALL SELECT address_id FROM staff WHERE store_id = $1::text::int
             UNION ALL SELECT address_id FROM customer WHERE store_id = $1::text::int))",
    ),
    (
        "film",
        "SELECT count(DISTINCT film_id) FROM inventory WHERE store_id = $1::text::int",
    ),
    (
        "language",
        "SELECT count(DISTINCT l.id) FROM film f
         CROSS JOIN LATERAL (VALUES (f.language_id), (f.original_language_id)) AS l(id)
         WHERE f.film_id IN (SELECT film_id FROM inventory WHERE store_id = $1::text::int)",
    ),
];

pub fn pagila_plan(cluster: &Cluster) {
    let db = "e2e_pagila_plan";
    cluster.load_pagila(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    let before = scope_count(&mut c);

    // rental (inventory, customer, staff) and payment (customer, staff: its FKs are declared on
    // some partitions only) have several equally near FKs towards the root: no guessing. With
    // no owner at all the error names one of them; with the other one settled, the remaining one.
    let cases = [
        ("{}", &["rental", "payment"][..]),
        (r#"{"owner": {"payment": "rental"}}"#, &["rental"][..]),
        (r#"{"owner": {"rental": "inventory"}}"#, &["payment"][..]),
    ];
    for (options, tables) in cases {
        let err = assert_sqlstate_hint(
            try_create_scope(&mut c, "pagila_auto", "store", "store_id", options),
            "42P17",
            "",
            "owner",
        );
        let msg = err.message();
        let named: Vec<&str> = tables.iter().copied().filter(|t| msg.contains(t)).collect();
        assert!(
            !named.is_empty(),
            "options {options}: the ambiguity error must name {}: {msg}",
            tables.join(" or ")
        );
        for table in named {
            let candidates: &[&str] = match table {
                "rental" => &["inventory", "customer", "staff"],
                _ => &["customer", "staff"],
            };
            for candidate in candidates {
                assert!(
                    msg.contains(candidate),
                    "options {options}: the error must name every candidate of {table} ({candidate} missing): {msg}"
                );
            }
        }
        assert_eq!(
            scope_count(&mut c),
            before,
            "a failed create_scope writes nothing"
        );
    }

    let variants = [
        (
            "pagila_by_table",
            r#"{"owner": {"rental": "inventory", "payment": "rental"}}"#,
        ),
        (
            "pagila_by_fkey",
            r#"{"owner": {"rental": "rental_inventory_id_fkey", "payment": "rental"}}"#,
        ),
        // A constraint declared on one partition only stands for the whole partitioned table.
        (
            "pagila_by_partition_fkey",
            r#"{"owner": {"rental": "inventory", "payment": "payment_p2022_01_rental_id_fkey"}}"#,
        ),
    ];
    for (scope, options) in variants {
        create_scope(&mut c, scope, "store", "store_id", options);
        for tenant in ["1", "2"] {
            let p = plan(&mut c, scope, tenant);
            assert_roles(
                &mut c,
                &p,
                &[
                    ("store", "root", Some(1)),
                    ("staff", "owned", None),
                    ("customer", "owned", None),
                    ("inventory", "owned", None),
                    ("rental", "owned", None),
                    ("payment", "owned", None),
                    ("address", "shared", None),
                    ("city", "shared", None),
                    ("country", "shared", None),
                    ("film", "shared", None),
                    ("language", "shared", None),
                ],
            );
            assert_counts(&mut c, &p, tenant, PAGILA_ORACLE);
            // The ownership paths follow the owner option.
            for (table, via) in [("rental", "inventory"), ("payment", "rental")] {
                let path = row_of(&mut c, &p, table).path.clone().unwrap_or_default();
                assert!(
                    path.contains(via),
                    "{scope}: {table}'s path should go through {via}: {path:?}"
                );
            }
            assert_dependency_order(&mut c, &p, &[]);
        }
    }
}

/// Northwind with customers as the root: a varchar tenant key.
pub fn northwind_plan(cluster: &Cluster) {
    let db = "e2e_northwind_plan";
    cluster.load_northwind(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);

    create_scope(&mut c, "northwind", "customers", "customer_id", "{}");
    let tenant = "ALFKI";
    let p = plan(&mut c, "northwind", tenant);
    let orders = count(
        &mut c,
        "SELECT count(*) FROM orders WHERE customer_id = $1::text",
        tenant,
    );
    let details = count(
        &mut c,
        "SELECT count(*) FROM order_details d JOIN orders o ON o.order_id = d.order_id
         WHERE o.customer_id = $1::text",
        tenant,
    );
    assert!(orders > 0 && details > 0, "ALFKI has orders in northwind");
    let demo = count(
        &mut c,
        "SELECT count(*) FROM customer_customer_demo WHERE customer_id = $1::text",
        tenant,
    );
    assert_roles(
        &mut c,
        &p,
        &[
            ("customers", "root", Some(1)),
            ("orders", "owned", Some(orders)),
            ("order_details", "owned", Some(details)),
            ("customer_customer_demo", "owned", Some(demo)),
            ("employees", "shared", None),
            ("shippers", "shared", None),
            ("products", "shared", None),
        ],
    );
    assert_dependency_order(&mut c, &p, &[]);

    // A key value is compared as the key's type: not as a pattern, nor case-insensitively.
    assert_sqlstate(try_plan(&mut c, "northwind", "ALFK%"), "P0002", "ALFK%");
    assert_sqlstate(try_plan(&mut c, "northwind", "alfki"), "P0002", "alfki");
}
