//! The Citus tier: one cluster of a coordinator and two workers (`pg_tenant_ops_e2e::citus`),
//! each test in databases of its own on it, driven from outside like the e2e tests.
//!
//! `cargo test --test citus [-- FILTER]` runs every test whose name contains FILTER;
//! `-- --list` lists them. Citus must be installed in the PostgreSQL of `E2E_PG_BIN`
//! (`scripts/test.sh citus` does it).

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use pg_tenant_ops_e2e::citus::CitusCluster;

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

#[path = "citus/distribute.rs"]
mod distribute;
#[path = "citus/moves.rs"]
mod moves;
#[path = "citus/schema.rs"]
mod schema;
#[path = "citus/tenants.rs"]
mod tenants;

type TestFn = fn(&CitusCluster);

fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("citus_cluster_sanity", tenants::citus_cluster_sanity),
        (
            "citus_scope_plan_and_integrity",
            tenants::citus_scope_plan_and_integrity,
        ),
        (
            "citus_migrate_out_and_verify",
            tenants::citus_migrate_out_and_verify,
        ),
        (
            "citus_between_distributed_and_backup",
            tenants::citus_between_distributed_and_backup,
        ),
        (
            "citus_migrate_into_distributed",
            distribute::citus_migrate_into_distributed,
        ),
        (
            "citus_rekeyed_into_distributed",
            distribute::citus_rekeyed_into_distributed,
        ),
        (
            "citus_schema_per_tenant",
            distribute::citus_schema_per_tenant,
        ),
        (
            "citus_distribute_refusals",
            distribute::citus_distribute_refusals,
        ),
        ("citus_move_tenant", moves::citus_move_tenant),
        (
            "citus_move_tenant_refusals",
            moves::citus_move_tenant_refusals,
        ),
    ]
}

thread_local! {
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = tests();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &all {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let selected: Vec<_> = all
        .into_iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    if selected.is_empty() {
        println!("no test matches {filter:?}");
        println!("citus: 0 passed, 0 failed");
        return;
    }
    panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        PANIC_LOCATION.with(|p| *p.borrow_mut() = loc);
    }));

    println!("running {} citus tests", selected.len());
    let started = Instant::now();
    let cluster = match panic::catch_unwind(|| CitusCluster::start(2)) {
        Ok(c) => c,
        Err(payload) => {
            println!("could not start the Citus cluster:");
            print_indented(&panic_message(payload.as_ref()));
            println!("citus: 0 passed, {} failed", selected.len());
            std::process::exit(1);
        }
    };
    println!(
        "cluster: coordinator 127.0.0.1:{}, workers {} (started in {:.1}s)",
        cluster.coordinator.port(),
        cluster.worker_names().join(", "),
        started.elapsed().as_secs_f64()
    );

    let (mut passed, mut failed) = (0usize, 0usize);
    let mut failures = Vec::new();
    for (name, test) in selected {
        if !cluster.is_running() {
            failed += 1;
            failures.push(name);
            println!("test {name} ... FAILED (not run: a node is down)");
            continue;
        }
        let offsets = cluster.log_lens();
        let t0 = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| test(&cluster)));
        let secs = t0.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({secs:.1}s)");
            }
            Err(payload) => {
                failed += 1;
                failures.push(name);
                let loc = PANIC_LOCATION
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_default();
                println!("test {name} ... FAILED ({secs:.1}s)");
                println!("    at {loc}:");
                print_indented(&panic_message(payload.as_ref()));
                let logs = cluster.logs_since(&offsets, 20);
                if !logs.trim().is_empty() {
                    println!("    --- server logs during {name} (tail) ---");
                    print_indented(&logs);
                }
            }
        }
    }
    let _ = panic::take_hook();
    if !failures.is_empty() {
        println!("failed: {}", failures.join(", "));
    }
    println!(
        "citus: {passed} passed, {failed} failed ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    drop(cluster);
    if failed > 0 {
        std::process::exit(1);
    }
}
