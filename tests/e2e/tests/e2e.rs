//! The end-to-end tests: one shared cluster, each test in its own database.
//!
//! `cargo test --test e2e [-- FILTER]` runs every test whose name contains FILTER.
//! `cargo test --test e2e -- --list` lists them.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use pg_tenant_ops_e2e::Cluster;

mod background;
mod backups;
mod common;
mod concurrent_change;
mod datasets;
mod export;
mod import;
mod import_formats;
mod incremental;
mod integrity;
mod kv;
mod migration;
mod online;
mod post_load;
mod restore_modes;
mod schedules;
mod security;
mod shared_rows;
mod submission;
mod surface;
mod verify_types;

type TestFn = fn(&Cluster);

fn tests() -> Vec<(&'static str, TestFn)> {
    let mut all: Vec<(&'static str, TestFn)> = vec![
        ("sanity_cluster", datasets::sanity_cluster),
        (
            "incremental_chain_restores",
            incremental::incremental_chain_restores,
        ),
        (
            "incremental_chain_background",
            incremental::incremental_chain_background,
        ),
        (
            "incremental_moves_between_tenants",
            incremental::incremental_moves_between_tenants,
        ),
        (
            "incremental_under_writers",
            incremental::incremental_under_writers,
        ),
        (
            "backup_damage_is_detected",
            backups::backup_damage_is_detected,
        ),
        (
            "backup_restores_without_the_extension",
            backups::backup_restores_without_the_extension,
        ),
        ("backup_is_one_snapshot", backups::backup_is_one_snapshot),
        (
            "backup_encrypted_age_interop",
            backups::backup_encrypted_age_interop,
        ),
        (
            "backup_disk_full_or_unwritable",
            backups::backup_disk_full_or_unwritable,
        ),
        (
            "upload_chunks_are_transactional",
            backups::upload_chunks_are_transactional,
        ),
        (
            "backup_survives_worker_kill9",
            backups::backup_survives_worker_kill9,
        ),
        (
            "progress_live_before_commit",
            backups::progress_live_before_commit,
        ),
        (
            "restore_survives_worker_kill9",
            backups::restore_survives_worker_kill9,
        ),
        ("restore_clone_pagila", restore_modes::restore_clone_pagila),
        (
            "restore_overwrite_pagila_triggers",
            restore_modes::restore_overwrite_pagila_triggers,
        ),
        ("import_pagila_round_trip", import::import_pagila_round_trip),
        ("export_pagila_round_trip", export::export_pagila_round_trip),
        (
            "export_hostile_names_background",
            export::export_hostile_names_background,
        ),
        (
            "import_refused_rows_by_line",
            import::import_refused_rows_by_line,
        ),
        (
            "import_resumes_after_worker_kill9",
            import::import_resumes_after_worker_kill9,
        ),
        ("import_xlsx_workbook", import_formats::import_xlsx_workbook),
        (
            "import_sql_from_pg_dump",
            import_formats::import_sql_from_pg_dump,
        ),
        (
            "restore_merge_chinook",
            restore_modes::restore_merge_chinook,
        ),
        (
            "restore_target_schema_northwind",
            restore_modes::restore_target_schema_northwind,
        ),
        ("chinook_plan", datasets::chinook_plan),
        (
            "chinook_isolation_clean",
            integrity::chinook_isolation_clean,
        ),
        (
            "demo_dirty_tenant_repair",
            integrity::demo_dirty_tenant_repair,
        ),
        ("pagila_plan", datasets::pagila_plan),
        ("northwind_plan", datasets::northwind_plan),
        (
            "concurrent_change_inline_repeatable_read",
            concurrent_change::concurrent_change_inline_repeatable_read,
        ),
        (
            "concurrent_change_inline_read_committed",
            concurrent_change::concurrent_change_inline_read_committed,
        ),
        (
            "concurrent_change_without_failing_statement",
            concurrent_change::concurrent_change_without_failing_statement,
        ),
        (
            "concurrent_change_background_undone",
            concurrent_change::concurrent_change_background_undone,
        ),
        (
            "concurrent_change_run_job_undone",
            concurrent_change::concurrent_change_run_job_undone,
        ),
        ("privileges_and_audit", surface::privileges_and_audit),
        ("hostile_identifiers", surface::hostile_identifiers),
        ("bad_input", surface::bad_input),
        (
            "migration_resumes_after_kill9",
            migration::migration_resumes_after_kill9,
        ),
        (
            "migration_resumes_after_immediate_shutdown",
            migration::migration_resumes_after_immediate_shutdown,
        ),
        (
            "progress_visible_from_another_session",
            migration::progress_visible_from_another_session,
        ),
        (
            "chinook_migration_with_manager_chain",
            migration::chinook_migration_with_manager_chain,
        ),
        ("privileges_migration", migration::privileges_migration),
        (
            "uuid_keys_survive_dump_and_restore",
            migration::uuid_keys_survive_dump_and_restore,
        ),
        ("online_writers_cutover", online::online_writers_cutover),
        (
            "online_catchup_survives_kill9",
            online::online_catchup_survives_kill9,
        ),
        (
            "online_errors_and_rollback",
            online::online_errors_and_rollback,
        ),
        ("online_hostile_names", online::online_hostile_names),
        ("online_reverse_sync", online::online_reverse_sync),
        (
            "online_catchup_survives_immediate_shutdown",
            online::online_catchup_survives_immediate_shutdown,
        ),
        (
            "background_job_runs_and_notifies",
            background::background_job_runs_and_notifies,
        ),
        (
            "background_pause_resume_cancel",
            background::background_pause_resume_cancel,
        ),
        (
            "background_resumes_after_worker_kill9",
            background::background_resumes_after_worker_kill9,
        ),
        (
            "background_resumes_after_immediate_shutdown",
            background::background_resumes_after_immediate_shutdown,
        ),
        (
            "background_job_runs_as_submitter",
            background::background_job_runs_as_submitter,
        ),
        (
            "background_slot_exhaustion",
            background::background_slot_exhaustion,
        ),
        (
            "background_job_starts_despite_slow_claim",
            background::background_job_starts_despite_slow_claim,
        ),
        (
            "background_extension_created_later",
            background::background_extension_created_later,
        ),
        (
            "run_job_cancel_that_fails_releases_the_lock",
            background::run_job_cancel_that_fails_releases_the_lock,
        ),
        (
            "security_spy_catches_superuser_runs",
            security::security_spy_catches_superuser_runs,
        ),
        (
            "security_planted_migrate_inline",
            security::security_planted_migrate_inline,
        ),
        (
            "security_planted_migrate_deferred",
            security::security_planted_migrate_deferred,
        ),
        (
            "security_planted_migrate_background",
            security::security_planted_migrate_background,
        ),
        ("security_planted_move", security::security_planted_move),
        (
            "security_planted_cancel_failed_and_retry",
            security::security_planted_cancel_failed_and_retry,
        ),
        (
            "security_planted_cancel_running_paused_queued",
            security::security_planted_cancel_running_paused_queued,
        ),
        (
            "security_planted_validate",
            security::security_planted_validate,
        ),
        (
            "security_planted_admin_rollback",
            security::security_planted_admin_rollback,
        ),
        (
            "security_planted_admin_repair_restore",
            security::security_planted_admin_repair_restore,
        ),
        (
            "security_hostile_tenant_values",
            security::security_hostile_tenant_values,
        ),
        (
            "security_admin_repair_without_superuser",
            security::security_admin_repair_without_superuser,
        ),
        (
            "security_dry_run_never_writes",
            security::security_dry_run_never_writes,
        ),
        (
            "security_bad_input_is_not_internal",
            security::security_bad_input_is_not_internal,
        ),
        (
            "security_errors_carry_no_backtrace",
            security::security_errors_carry_no_backtrace,
        ),
        (
            "verify_types_created_target",
            verify_types::verify_types_created_target,
        ),
        (
            "verify_types_precreated_target",
            verify_types::verify_types_precreated_target,
        ),
        (
            "verify_types_before_insert_trigger",
            verify_types::verify_types_before_insert_trigger,
        ),
        (
            "verify_types_char_keys",
            verify_types::verify_types_char_keys,
        ),
        (
            "verify_types_link_column_renamed",
            verify_types::verify_types_link_column_renamed,
        ),
        (shared_rows::ENTRY, shared_rows::shared_rows),
        (
            "post_load_constraints_match_source",
            post_load::post_load_constraints_match_source,
        ),
        (
            "post_load_duplicate_key_fails",
            post_load::post_load_duplicate_key_fails,
        ),
        (
            "post_load_second_job_waits",
            post_load::post_load_second_job_waits,
        ),
        (
            "post_load_resumes_after_kill9",
            post_load::post_load_resumes_after_kill9,
        ),
        ("kv_redis_detect_and_import", kv::kv_redis_detect_and_import),
        (
            "kv_redis_password_and_unreachable",
            kv::kv_redis_password_and_unreachable,
        ),
        (
            "kv_redis_stopped_mid_import",
            kv::kv_redis_stopped_mid_import,
        ),
        ("kv_local_storage_dumps", kv::kv_local_storage_dumps),
        (
            "kv_redis_compare_sync_cleanup",
            kv::kv_redis_compare_sync_cleanup,
        ),
        ("kv_redis_background_import", kv::kv_redis_background_import),
        (
            "kv_import_resumes_after_worker_kill9",
            kv::kv_import_resumes_after_worker_kill9,
        ),
        ("kv_import_backs_up_keys", kv::kv_import_backs_up_keys),
        ("kv_restore_keys", kv::kv_restore_keys),
        ("kv_restore_interrupted", kv::kv_restore_interrupted),
    ];
    all.extend(submission::tests());
    all.extend(schedules::tests());
    all
}

thread_local! {
    /// Where the last panic happened (the hook records it; the runner prints it).
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
        println!("e2e: 0 passed, 0 failed");
        return;
    }

    panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        PANIC_LOCATION.with(|p| *p.borrow_mut() = loc);
    }));

    println!("running {} e2e tests", selected.len());
    let cluster = match panic::catch_unwind(Cluster::start_new) {
        Ok(c) => c,
        Err(payload) => {
            println!("could not set up the cluster:");
            print_indented(&panic_message(payload.as_ref()));
            println!("e2e: 0 passed, {} failed", selected.len());
            std::process::exit(1);
        }
    };
    println!(
        "cluster: {} on 127.0.0.1:{}",
        cluster.data_dir().display(),
        cluster.port()
    );

    let (mut passed, mut failed) = (0usize, 0usize);
    let mut failures = Vec::new();
    let mut server_lost = false;
    for (name, test) in selected {
        if server_lost {
            failed += 1;
            failures.push(name);
            println!("test {name} ... FAILED (not run: the server could not be restarted)");
            continue;
        }
        let log_offset = cluster.log_len();
        let started = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| test(&cluster)));
        let secs = started.elapsed().as_secs_f64();
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
                let log = cluster.log_since(log_offset, 30);
                if !log.trim().is_empty() {
                    println!("    --- server log during {name} (tail) ---");
                    print_indented(&log);
                }
            }
        }
        if !cluster.is_running() {
            println!("    (the server is down after {name}: restarting it for the next tests)");
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| cluster.start())) {
                print_indented(&panic_message(payload.as_ref()));
                server_lost = true;
            }
        }
    }
    let _ = panic::take_hook();
    if !failures.is_empty() {
        println!("failed: {}", failures.join(", "));
    }
    println!("e2e: {passed} passed, {failed} failed");
    drop(cluster);
    if failed > 0 {
        std::process::exit(1);
    }
}
