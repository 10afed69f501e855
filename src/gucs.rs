//! Every `tenant_ops.*` setting: private statics, public accessors, one [`init`].
//!
//! A setting is registered with the feature that reads it (backups, schedules and their
//! settings come with them), so that nothing is advertised as working before it does.
//!
//! The prefix is reserved, so a typo such as `SET tenant_ops.batchsize = 10` is an error
//! instead of a silently ignored placeholder.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(8);
static MAX_CONCURRENT_MIGRATIONS: GucSetting<i32> = GucSetting::<i32>::new(2);
static MAX_CONCURRENT_VALIDATIONS: GucSetting<i32> = GucSetting::<i32>::new(5);
static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(100_000);
static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
static RETRY_DELAY_S: GucSetting<i32> = GucSetting::<i32>::new(30);
static HISTORY_RETENTION_MIN: GucSetting<i32> = GucSetting::<i32>::new(30 * 24 * 60);
static BACKUP_DIRECTORY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static BACKUP_ENCRYPTION_KEY: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
static BACKUP_ENCRYPTION_KEY_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
static BACKUP_RETENTION_MIN: GucSetting<i32> = GucSetting::<i32>::new(30 * 24 * 60);
static MAX_CONCURRENT_BACKUPS: GucSetting<i32> = GucSetting::<i32>::new(2);
static TIMEZONE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"UTC"));
static IMPORT_DIRECTORY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static MAX_CONCURRENT_IMPORTS: GucSetting<i32> = GucSetting::<i32>::new(2);
static EXPORT_DIRECTORY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static MAX_CONCURRENT_EXPORTS: GucSetting<i32> = GucSetting::<i32>::new(2);
static PSEUDONYMIZE_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static IMPORT_XLSX_MAX_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(100 * 1024);

/// Registers every setting. Called once from `_PG_init`.
pub fn init() {
    GucRegistry::define_string_guc(
        c"tenant_ops.databases",
        c"Databases in which the background scheduler runs (comma-separated; empty: every database with the extension).",
        c"",
        &DATABASES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_ops.max_workers",
        c"Most background job workers running at once, cluster-wide.",
        c"",
        &MAX_WORKERS,
        0,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
    for (name, setting, what) in [
        (
            c"tenant_ops.max_concurrent_migrations",
            &MAX_CONCURRENT_MIGRATIONS,
            c"Most migration jobs running at once.",
        ),
        (
            c"tenant_ops.max_concurrent_validations",
            &MAX_CONCURRENT_VALIDATIONS,
            c"Most validation jobs running at once.",
        ),
        (
            c"tenant_ops.max_concurrent_backups",
            &MAX_CONCURRENT_BACKUPS,
            c"Most backup and restore jobs running at once.",
        ),
        (
            c"tenant_ops.max_concurrent_imports",
            &MAX_CONCURRENT_IMPORTS,
            c"Most import jobs running at once.",
        ),
        (
            c"tenant_ops.max_concurrent_exports",
            &MAX_CONCURRENT_EXPORTS,
            c"Most export jobs running at once.",
        ),
    ] {
        GucRegistry::define_int_guc(
            name,
            what,
            c"",
            setting,
            0,
            256,
            GucContext::Sighup,
            GucFlags::default(),
        );
    }
    GucRegistry::define_int_guc(
        c"tenant_ops.batch_size",
        c"Rows per job step (one set-based statement and one checkpoint).",
        c"",
        &BATCH_SIZE,
        1,
        10_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_ops.max_attempts",
        c"Attempts a background job gets before it is marked failed.",
        c"",
        &MAX_ATTEMPTS,
        1,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tenant_ops.retry_delay",
        c"Delay before the first retry of a failed background job; doubles with every attempt.",
        c"",
        &RETRY_DELAY_S,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"tenant_ops.history_retention",
        c"How long finished jobs, their logs and audit entries are kept before purge_history removes them.",
        c"",
        &HISTORY_RETENTION_MIN,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MIN,
    );
    // Superuser-only: where backup files are written is a server decision, never a user's.
    GucRegistry::define_string_guc(
        c"tenant_ops.backup_directory",
        c"Directory of backup files (empty: pg_tenant_ops_backups inside the data directory).",
        c"Relative paths are taken from the data directory. Only superusers may change it.",
        &BACKUP_DIRECTORY,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Superuser-only and never shown to others (SHOW, pg_settings): the age identity that
    // encrypts new backups and decrypts encrypted ones.
    GucRegistry::define_string_guc(
        c"tenant_ops.backup_encryption_key",
        c"age identity (AGE-SECRET-KEY-1...) backups are encrypted to; empty: backups are not encrypted.",
        c"New backups are encrypted to its recipient; encrypted backups are read with it. Only superusers may see or change it.",
        &BACKUP_ENCRYPTION_KEY,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    // The server-wide way to hold the key: PostgreSQL logs a reloaded setting's new value
    // ("parameter ... changed to ...") in the server log, so the key itself never belongs in
    // postgresql.conf; a path does (as ssl_key_file's does).
    GucRegistry::define_string_guc(
        c"tenant_ops.backup_encryption_key_file",
        c"File holding the age identity backups are encrypted to (as age-keygen writes it); empty: none.",
        c"Read when a backup is written or read; must not be readable by group or others. Relative paths are taken from the data directory. tenant_ops.backup_encryption_key, when set, takes precedence.",
        &BACKUP_ENCRYPTION_KEY_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"tenant_ops.backup_retention",
        c"How long a backup is kept before purge_backups removes it, unless create_backup says otherwise.",
        c"",
        &BACKUP_RETENTION_MIN,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MIN,
    );
    GucRegistry::define_string_guc(
        c"tenant_ops.timezone",
        c"Time zone of a new schedule's cron expression unless its params name one (an IANA zone such as Europe/Oslo).",
        c"Read when a schedule is created or its params change; the zone is kept with the schedule.",
        &TIMEZONE,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Superuser-only, as backup_directory: which server files import_data may read is a
    // server decision (the files are read by the server, as pg_read_server_files would).
    GucRegistry::define_string_guc(
        c"tenant_ops.import_directory",
        c"Directory import_data reads its files from (empty: pg_tenant_ops_imports inside the data directory).",
        c"Relative paths are taken from the data directory. Only superusers may change it.",
        &IMPORT_DIRECTORY,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Superuser-only, and without a default: export files are meant to leave the server, so
    // where they are written is chosen on purpose (never silently inside the data directory,
    // where base backups would carry them).
    GucRegistry::define_string_guc(
        c"tenant_ops.export_directory",
        c"Directory export_tenant writes its archives to and import_tenant reads them from (no default: exports are refused until it is set).",
        c"Relative paths are taken from the data directory. Only superusers may change it.",
        &EXPORT_DIRECTORY,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Superuser-only: how much memory one backend may spend on a workbook is a server decision.
    GucRegistry::define_int_guc(
        c"tenant_ops.import_xlsx_max_size",
        c"Largest XLSX file import_data reads (it is read whole into memory); also the limit for each workbook part read whole once unpacked.",
        c"Worksheets themselves are read as a stream. Only superusers may change it.",
        &IMPORT_XLSX_MAX_SIZE_KB,
        64,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    // Superuser-only and never shown to others, as the backup key: whoever knows it can
    // test guesses against pseudonymized values.
    GucRegistry::define_string_guc(
        c"tenant_ops.pseudonymize_key",
        c"Key of the pseudonymize transform (HMAC-SHA256); empty: pseudonymize is an error.",
        c"The same value gives the same pseudonym under one key. Only superusers may see or change it.",
        &PSEUDONYMIZE_KEY,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
    );
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"tenant_ops".as_ptr()) };
}

fn string(s: &GucSetting<Option<CString>>) -> Option<String> {
    s.get()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
}

pub fn databases() -> Vec<String> {
    string(&DATABASES)
        .map(|v| {
            v.split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default()
}
pub fn max_workers() -> i32 {
    MAX_WORKERS.get()
}
pub fn max_concurrent_migrations() -> i32 {
    MAX_CONCURRENT_MIGRATIONS.get()
}
pub fn max_concurrent_validations() -> i32 {
    MAX_CONCURRENT_VALIDATIONS.get()
}
pub fn batch_size() -> i32 {
    BATCH_SIZE.get()
}
pub fn max_attempts() -> i32 {
    MAX_ATTEMPTS.get()
}
pub fn retry_delay_seconds() -> i32 {
    RETRY_DELAY_S.get()
}
pub fn history_retention_minutes() -> i32 {
    HISTORY_RETENTION_MIN.get()
}
pub fn backup_directory() -> Option<String> {
    string(&BACKUP_DIRECTORY)
}
pub fn backup_encryption_key() -> Option<String> {
    string(&BACKUP_ENCRYPTION_KEY)
}
pub fn backup_encryption_key_file() -> Option<String> {
    string(&BACKUP_ENCRYPTION_KEY_FILE)
}
pub fn backup_retention_minutes() -> i32 {
    BACKUP_RETENTION_MIN.get()
}
pub fn max_concurrent_backups() -> i32 {
    MAX_CONCURRENT_BACKUPS.get()
}
pub fn timezone() -> String {
    string(&TIMEZONE).unwrap_or_else(|| "UTC".into())
}
pub fn import_directory() -> Option<String> {
    string(&IMPORT_DIRECTORY)
}
pub fn max_concurrent_imports() -> i32 {
    MAX_CONCURRENT_IMPORTS.get()
}
pub fn export_directory() -> Option<String> {
    string(&EXPORT_DIRECTORY).filter(|d| !d.trim().is_empty())
}
pub fn max_concurrent_exports() -> i32 {
    MAX_CONCURRENT_EXPORTS.get()
}
/// `tenant_ops.import_xlsx_max_size` in bytes.
pub fn import_xlsx_max_size() -> u64 {
    IMPORT_XLSX_MAX_SIZE_KB.get().max(0) as u64 * 1024
}
pub fn pseudonymize_key() -> Option<String> {
    string(&PSEUDONYMIZE_KEY)
}
