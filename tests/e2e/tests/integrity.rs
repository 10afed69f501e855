//! validate_integrity and repair_integrity on real data: chinook's tenants are isolated, the
//! demo's dirty tenant shows exactly what was planted, and a quarantine repair loses nothing.

use pg_tenant_ops_e2e::Cluster;

use crate::common::{count, create_extension, create_scope, exec, scalar};
use crate::datasets::CHINOOK_ORACLE;
use crate::migration::{dispatch_db, text, DISPATCH_TABLES};

/// One finding: (check, table, tenant, other tenant, count).
type Issue = (String, String, Option<String>, Option<String>, i64);

/// Issues of a validation job, sorted.
fn issues(c: &mut postgres::Client, job: i64) -> Vec<Issue> {
    c.query(
        "SELECT check_name, table_name::text, tenant, other_tenant, count FROM tenant_ops.integrity_issues
          WHERE job_id = $1 ORDER BY 1, 2, 3",
        &[&job],
    )
    .expect("integrity_issues")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// What a validation job says it checked: `result ->> 'rows_checked'` (the score is 100 when
/// nothing was checked, so a clean result means nothing without it).
fn rows_checked(c: &mut postgres::Client, job: i64) -> i64 {
    text(
        c,
        &format!("SELECT result ->> 'rows_checked' FROM tenant_ops.jobs WHERE id = {job}"),
    )
    .parse()
    .expect("rows_checked is a number")
}

/// The tenant's rows of the owned (not shared) tables of `oracle`, by hand-written SQL.
fn owned_rows(
    c: &mut postgres::Client,
    oracle: &[(&str, &str)],
    owned: &[&str],
    tenant: &str,
) -> i64 {
    oracle
        .iter()
        .filter(|(t, _)| owned.contains(t))
        .map(|(_, sql)| count(c, sql, tenant))
        .sum()
}

fn validate(c: &mut postgres::Client, scope: &str, tenant: Option<&str>) -> i64 {
    c.query_one(
        "SELECT tenant_ops.validate_integrity($1, $2)",
        &[&scope, &tenant],
    )
    .expect("validate_integrity")
    .get(0)
}

/// Chinook, root employee: customers hang off support_rep_id, invoices and lines two and three
/// hops below; the manager chain (reports_to) is a self-reference of the root. No tenant may
/// show an isolation violation, and the all-tenant pass finds nothing either.
pub fn chinook_isolation_clean(cluster: &Cluster) {
    let db = "e2e_chinook_integrity";
    cluster.load_chinook(db);
    let mut c = cluster.connect(db);
    create_extension(&mut c);
    create_scope(&mut c, "chinook", "employee", "employee_id", "{}");
    let owned = ["employee", "customer", "invoice", "invoice_line"];
    for (tenant, rows) in [("3", 964), ("4", 921), ("5", 829)] {
        let job = validate(&mut c, "chinook", Some(tenant));
        assert_eq!(
            issues(&mut c, job),
            vec![],
            "tenant {tenant} of chinook is clean"
        );
        let score = text(
            &mut c,
            &format!("SELECT result ->> 'score' FROM tenant_ops.jobs WHERE id = {job}"),
        );
        assert_eq!(score, "100.0", "tenant {tenant}: score");
        assert_eq!(
            (
                rows_checked(&mut c, job),
                owned_rows(&mut c, CHINOOK_ORACLE, &owned, tenant)
            ),
            (rows, rows),
            "tenant {tenant}: rows checked (by the job, by hand-written SQL)"
        );
    }
    let all = validate(&mut c, "chinook", None);
    assert_eq!(
        issues(&mut c, all),
        vec![],
        "no tenant of chinook has a problem"
    );
    // Every employee, customer, invoice and line: 8 + 59 + 412 + 2240.
    assert_eq!(
        rows_checked(&mut c, all),
        2719,
        "every tenant: rows checked"
    );
}

/// The demo's dirty office 5: exactly the planted orphan and cross-tenant reference, nothing
/// else, for the whole scope too; a quarantine repair makes a new validation clean, and the
/// restore puts every row back (checksums of every legacy table).
pub fn demo_dirty_tenant_repair(cluster: &Cluster) {
    let db = "e2e_dirty_tenant";
    let mut c = dispatch_db(cluster, db, 1);
    let checksum = |c: &mut postgres::Client| {
        text(
            c,
            "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
               SELECT 'd' || d::text AS x FROM legacy.dispatch_doctors d UNION ALL
               SELECT 'p' || p::text FROM legacy.dispatch_patients p UNION ALL
               SELECT 'o' || o::text FROM legacy.dispatch_orders o UNION ALL
               SELECT 'i' || i::text FROM legacy.dispatch_order_items i) t",
        )
    };
    let before = checksum(&mut c);
    let expected = vec![
        (
            "foreign_keys".to_string(),
            "legacy.dispatch_order_items".to_string(),
            Some("5".to_string()),
            None,
            1,
        ),
        (
            "isolation".to_string(),
            "legacy.dispatch_doctors".to_string(),
            Some("5".to_string()),
            Some("4".to_string()),
            1,
        ),
    ];
    let all = validate(&mut c, "dispatch", None);
    assert_eq!(
        issues(&mut c, all),
        expected,
        "the whole scope: exactly the planted problems"
    );
    let five = validate(&mut c, "dispatch", Some("5"));
    assert_eq!(
        issues(&mut c, five),
        expected,
        "office 5: exactly the planted problems"
    );
    // Office 5's owned rows as the hand-written joins find them (the orphan item has no order
    // to reach its office through, so neither counts it); the whole scope is every office's.
    let owned: Vec<&str> = DISPATCH_TABLES[1..].iter().map(|(t, _, _)| *t).collect();
    let oracle: Vec<(&str, &str)> = DISPATCH_TABLES
        .iter()
        .map(|(t, _, sql)| (*t, *sql))
        .collect();
    assert_eq!(
        (
            rows_checked(&mut c, five),
            owned_rows(&mut c, &oracle, &owned, "5")
        ),
        (118, 118),
        "office 5: rows checked (by the job, by hand-written SQL)"
    );
    assert_eq!(
        rows_checked(&mut c, all),
        11551 + 6931 + 3466 + 1156 + 118 + 1,
        "the whole scope: rows checked"
    );
    for (clean, rows) in [
        ("1", 11551),
        ("2", 6931),
        ("3", 3466),
        ("4", 1156),
        ("6", 1),
    ] {
        let job = validate(&mut c, "dispatch", Some(clean));
        assert_eq!(issues(&mut c, job), vec![], "office {clean} is clean");
        assert_eq!(
            (
                rows_checked(&mut c, job),
                owned_rows(&mut c, &oracle, &owned, clean)
            ),
            (rows, rows),
            "office {clean}: rows checked (by the job, by hand-written SQL)"
        );
    }

    let repair: i64 = text(
        &mut c,
        &format!("SELECT tenant_ops.repair_integrity({five}, 'quarantine', false) ->> 'repair_id'"),
    )
    .parse()
    .expect("repair id");
    assert!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM tenant_ops.quarantine WHERE repair_id = {repair}")
        ) > 0
    );
    let after = validate(&mut c, "dispatch", Some("5"));
    assert_eq!(
        issues(&mut c, after),
        vec![],
        "after the quarantine office 5 is clean"
    );
    assert_eq!(
        rows_checked(&mut c, after),
        owned_rows(&mut c, &oracle, &owned, "5"),
        "after the quarantine: rows checked are the rows left"
    );
    assert_ne!(checksum(&mut c), before, "the quarantine removed rows");

    exec(
        &mut c,
        &format!("SELECT tenant_ops.restore_quarantined({repair})"),
    );
    assert_eq!(
        checksum(&mut c),
        before,
        "the restore put every row back as it was"
    );
    let again = validate(&mut c, "dispatch", Some("5"));
    assert_eq!(
        issues(&mut c, again),
        expected,
        "and the planted problems are back"
    );
    assert_eq!(rows_checked(&mut c, again), 118, "restored: rows checked");
}
