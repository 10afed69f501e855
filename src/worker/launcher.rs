//! The launcher: one per cluster. Keeps a scheduler worker running in every database that
//! allows connections (or those `tenant_ops.databases` lists). A scheduler started in a
//! database without the extension exits at once; the launcher tries that database again a
//! little later, which is how `CREATE EXTENSION` and new databases are noticed without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::prelude::*;

use super::{Signals, LIBRARY, SCHEDULER_TYPE};
use crate::gucs;

/// How soon a database whose scheduler stopped (no extension, or dropped) is tried again.
const RETRY: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_secs(2);

struct Slot {
    worker: Option<DynamicBackgroundWorker>,
    next_try: Instant,
    warned: bool,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn tenant_ops_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // pg_database is a shared catalog, but SPI needs a database to plan in: the launcher sits
    // in `postgres` (never template1, which would block CREATE DATABASE).
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    pgrx::log!("pg_tenant_ops launcher started");
    let mut slots: HashMap<String, Slot> = HashMap::new();
    loop {
        let wanted = gucs::databases();
        let databases: Vec<String> = BackgroundWorker::transaction(|| {
            Spi::connect(|c| {
                c.select(
                    "SELECT datname::text FROM pg_catalog.pg_database
                      WHERE datallowconn AND NOT datistemplate ORDER BY datname",
                    None,
                    &[],
                )
                .map(|rows| {
                    rows.filter_map(|r| r.get::<String>(1).ok().flatten())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
            })
        })
        .into_iter()
        .filter(|d: &String| wanted.is_empty() || wanted.contains(d))
        .collect();

        slots.retain(|db, _| databases.contains(db));
        let now = Instant::now();
        for db in &databases {
            let slot = slots.entry(db.clone()).or_insert(Slot {
                worker: None,
                next_try: now,
                warned: false,
            });
            let alive = match &slot.worker {
                Some(w) => !matches!(
                    w.pid(),
                    Err(pgrx::bgworkers::BackgroundWorkerStatus::Stopped)
                ),
                None => false,
            };
            if alive {
                continue;
            }
            if slot.worker.take().is_some() {
                // It stopped: no extension there (or it was dropped). Try again later.
                slot.next_try = now + RETRY;
                continue;
            }
            if now < slot.next_try {
                continue;
            }
            match BackgroundWorkerBuilder::new(&format!("{SCHEDULER_TYPE} {db}"))
                .set_type(SCHEDULER_TYPE)
                .set_library(LIBRARY)
                .set_function("tenant_ops_scheduler_main")
                .set_extra(db)
                .set_notify_pid(unsafe { pg_sys::MyProcPid })
                .enable_spi_access()
                .load_dynamic()
            {
                Ok(w) => {
                    slot.worker = Some(w);
                    slot.warned = false;
                }
                Err(_) => {
                    if !slot.warned {
                        pgrx::warning!(
                            "pg_tenant_ops: no background worker slot free for the scheduler of database \"{db}\"; will retry (consider raising max_worker_processes)"
                        );
                        slot.warned = true;
                    }
                    slot.next_try = now + RETRY;
                }
            }
        }
        if !Signals::wait(POLL) {
            break;
        }
    }
    pgrx::log!("pg_tenant_ops launcher exiting");
}
