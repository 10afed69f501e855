//! End-to-end harness for pg_tenant_ops: a real, private PostgreSQL 15 cluster started from
//! outside, the sample datasets loaded into it through psql, and a few assertion helpers.
//!
//! The cluster is run the way `scripts/lib.sh` runs ours: initdb as the `postgres` OS user when
//! we are root (initdb refuses root), trust authentication, TCP on 127.0.0.1 only.
//!
//! Environment:
//! - `E2E_PRELOAD`: `shared_preload_libraries` (default `pg_tenant_ops`; empty for none);
//! - `E2E_KEEP=1`: leave the data directory (and its `server.log`) behind;
//! - `E2E_PG_BIN`: PostgreSQL binaries (default `/usr/lib/postgresql/15/bin`);
//! - `E2E_TMPDIR`: where the cluster's directory goes (default `/tmp`);
//! - `PGTO_DATASETS`: the sample databases (default `<project>/../shared/datasets`).

use std::fmt::Debug;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod citus;
pub mod redis;

pub use postgres;
use postgres::error::DbError;
use postgres::{Client, NoTls};

/// Default location of the PostgreSQL 15 binaries on Debian.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Clusters this process has created (each gets its own directory).
static CLUSTERS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Lines of server log shown with a failure.
const LOG_TAIL_LINES: usize = 40;

/// How `stop` shuts the server down (`pg_ctl stop -m ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    Smart,
    Fast,
    /// No shutdown checkpoint: the next start runs crash recovery.
    Immediate,
}

/// How a crash test interrupts a running job (`Cluster::interrupt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// `kill -9` of the process running the job: the postmaster resets every backend.
    Kill9,
    /// `pg_ctl stop -m immediate` of the whole server, then start.
    ImmediateShutdown,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A private PostgreSQL cluster in a temporary directory, started on a free port.
///
/// Dropping it stops the server (`-m immediate`) and removes the directory unless `E2E_KEEP=1`.
pub struct Cluster {
    base: PathBuf,
    data: PathBuf,
    port: u16,
    bin: PathBuf,
    as_root: bool,
    keep: bool,
    running: Mutex<bool>,
    /// The server log was already shown with a failure (do not repeat it on drop).
    log_shown: AtomicBool,
}

impl Cluster {
    /// Creates and starts a cluster with the default settings.
    pub fn start_new() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Creates and starts a cluster; `extra_conf` lines are appended to postgresql.conf.
    pub fn start_with(extra_conf: &[&str]) -> Cluster {
        Cluster::start_custom(None, None, extra_conf)
    }

    /// Creates and starts a cluster with `shared_preload_libraries = preload` (default:
    /// `E2E_PRELOAD`, else `pg_tenant_ops`) on `port` (default: a free one); `extra_conf` lines
    /// are appended to postgresql.conf. The multi-node clusters (`citus.rs`) start theirs so.
    pub fn start_custom(preload: Option<&str>, port: Option<u16>, extra_conf: &[&str]) -> Cluster {
        let bin =
            PathBuf::from(std::env::var("E2E_PG_BIN").unwrap_or_else(|_| DEFAULT_PG_BIN.into()));
        let as_root = running_as_root();
        // Not $TMPDIR: the `postgres` OS user must be able to enter every parent directory.
        let tmp = std::env::var_os("E2E_TMPDIR").unwrap_or_else(|| "/tmp".into());
        let n = CLUSTERS_STARTED.fetch_add(1, Ordering::Relaxed);
        let name = match n {
            0 => format!("pg_tenant_ops_e2e.{}", std::process::id()),
            _ => format!("pg_tenant_ops_e2e.{}.{n}", std::process::id()),
        };
        let base = PathBuf::from(tmp).join(name);
        let data = base.join("data");
        if base.exists() {
            fs::remove_dir_all(&base)
                .unwrap_or_else(|e| panic!("cannot clear {}: {e}", base.display()));
        }
        fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        set_mode(&data, 0o700);
        if as_root {
            run_checked(
                Command::new("chown").arg("-R").arg("postgres").arg(&base),
                "chown postgres",
            );
        }
        let port = port.unwrap_or_else(free_port);
        let keep = std::env::var("E2E_KEEP").map(|v| v == "1").unwrap_or(false);
        let cluster = Cluster {
            base,
            data,
            port,
            bin,
            as_root,
            keep,
            running: Mutex::new(false),
            log_shown: AtomicBool::new(false),
        };

        let out = cluster
            .pg_command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        if !out.status.success() {
            panic!(
                "initdb failed in {}:\n{}",
                cluster.data.display(),
                output_text(&out)
            );
        }

        let preload = match preload {
            Some(p) => p.to_string(),
            None => std::env::var("E2E_PRELOAD").unwrap_or_else(|_| "pg_tenant_ops".into()),
        };
        // Every test database with the extension keeps a scheduler (a background worker slot)
        // for the rest of the run, and each background job takes one more: room for many.
        let mut conf = format!(
            "\n# added by pg_tenant_ops_e2e\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             shared_preload_libraries = '{preload}'\n\
             fsync = off\n\
             max_worker_processes = 160\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n"
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = cluster.data.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot append to {}: {e}", conf_path.display()));

        cluster.start();
        cluster
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A scratch directory beside the data directory, writable by us (and by `postgres`).
    pub fn work_dir(&self) -> &Path {
        &self.base
    }

    /// Makes `path` the server's OS user's (when we are root, the server runs as `postgres`):
    /// for files only the server may read, such as a key file of mode 0600.
    pub fn give_to_server(&self, path: &Path) {
        if self.as_root {
            run_checked(
                Command::new("chown").arg("postgres").arg(path),
                "chown postgres",
            );
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.data.join("server.log")
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }

    /// A command for a server program (initdb, pg_ctl), run as `postgres` when we are root.
    fn pg_command(&self, program: &str) -> Command {
        let mut c = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin(program));
            c
        } else {
            Command::new(self.bin(program))
        };
        // The extension must keep Rust backtraces out of every ERROR whatever the server's
        // environment: run it with what a developer's shell often has.
        c.env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LIB_BACKTRACE");
        c
    }

    /// Starts the server (after `stop`, or a crash: recovery runs first) and waits until it
    /// accepts connections.
    pub fn start(&self) {
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "120", "start"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        if !out.status.success() {
            let log = self.log_tail(LOG_TAIL_LINES);
            let hint = if log.contains("could not access file") {
                "\n(a library in shared_preload_libraries is not installed: install the extension \
                 with `cargo pgrx install`, or run with E2E_PRELOAD= to preload nothing)"
            } else {
                ""
            };
            self.log_shown.store(true, Ordering::Relaxed);
            panic!(
                "could not start the cluster in {}:\n{}\n--- server log (tail) ---\n{log}{hint}",
                self.data.display(),
                output_text(&out),
            );
        }
        *self.lock_running() = true;
        self.wait_ready(Duration::from_secs(60));
    }

    /// Stops the server with `pg_ctl stop -m MODE`.
    pub fn stop(&self, mode: StopMode) {
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode.as_arg(), "-w", "-t", "120", "stop"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        if !out.status.success() {
            panic!(
                "pg_ctl stop -m {} failed:\n{}",
                mode.as_arg(),
                output_text(&out)
            );
        }
        *self.lock_running() = false;
    }

    /// `stop(mode)` then `start()`.
    pub fn restart(&self, mode: StopMode) {
        self.stop(mode);
        self.start();
    }

    /// Interrupts the server process `pid` runs a job in, as `how` says, and waits until the
    /// server accepts connections again.
    pub fn interrupt(&self, how: Interruption, pid: i32) {
        match how {
            Interruption::Kill9 => self.crash_process(pid),
            Interruption::ImmediateShutdown => self.restart(StopMode::Immediate),
        }
    }

    /// Whether `pg_ctl status` sees a running server.
    pub fn is_running(&self) -> bool {
        self.pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Sends SIGKILL to a server process (a backend or a background worker). The postmaster
    /// then resets every session and runs crash recovery; `wait_ready` waits for the end of it.
    pub fn kill9(&self, pid: i32) {
        assert!(pid > 0, "kill9: bad pid {pid}");
        let out = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        if !out.status.success() {
            panic!("kill -9 {pid} failed:\n{}", output_text(&out));
        }
    }

    /// `kill -9` of a server process, then waits for the crash recovery that follows to end
    /// (the log says "ready to accept connections" again) and for a session to work.
    pub fn crash_process(&self, pid: i32) {
        let offset = self.log_len();
        self.kill9(pid);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self
            .log_since(offset, usize::MAX)
            .contains("ready to accept connections")
        {
            if Instant::now() >= deadline {
                panic!(
                    "no recovery after kill -9 {pid} within 120s\n--- server log (tail) ---\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_ready(Duration::from_secs(60));
    }

    /// Waits until the server accepts connections to database `postgres`.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let last_error = match self.try_connect("postgres", "postgres") {
                Ok(mut c) => match c.simple_query("SELECT 1") {
                    Ok(_) => return,
                    Err(e) => describe_error(&e),
                },
                Err(e) => describe_error(&e),
            };
            if Instant::now() >= deadline {
                panic!(
                    "the server did not accept connections within {timeout:?}: {last_error}\n--- server log (tail) ---\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, bool> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A libpq-style configuration for `user` on database `db`.
    pub fn config(&self, db: &str, user: &str) -> postgres::Config {
        let mut cfg = postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(db)
            .application_name("pg_tenant_ops_e2e")
            .connect_timeout(Duration::from_secs(10));
        cfg
    }

    pub fn try_connect(&self, db: &str, user: &str) -> Result<Client, postgres::Error> {
        self.config(db, user).connect(NoTls)
    }

    /// A session as the bootstrap superuser `postgres`.
    pub fn connect(&self, db: &str) -> Client {
        self.connect_as(db, "postgres")
    }

    /// A session as a LOGIN role (trust authentication: no password).
    pub fn connect_as(&self, db: &str, role: &str) -> Client {
        self.try_connect(db, role).unwrap_or_else(|e| {
            panic!(
                "cannot connect to database {db:?} as {role:?}: {}",
                describe_error(&e)
            )
        })
    }

    /// `CREATE DATABASE` (name quoted as an identifier).
    pub fn create_database(&self, name: &str) {
        let mut c = self.connect("postgres");
        c.batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}", describe_error(&e)));
    }

    /// `DROP DATABASE IF EXISTS ... WITH (FORCE)`.
    pub fn drop_database(&self, name: &str) {
        let mut c = self.connect("postgres");
        c.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {}", describe_error(&e)));
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut c = Command::new(self.bin("psql"));
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db]);
        c.env_remove("PGOPTIONS").env_remove("PGSERVICE");
        c
    }

    /// `psql -X -q -v ON_ERROR_STOP=1 ... -d DB -f PATH`; panics with psql's output on failure.
    pub fn psql_file(&self, db: &str, path: &Path) {
        let out = self
            .psql_command(db)
            .arg("-f")
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        if !out.status.success() {
            panic!(
                "psql -d {db} -f {} failed:\n{}",
                path.display(),
                output_tail(&out)
            );
        }
    }

    /// Feeds `sql` to psql's standard input.
    pub fn psql_stdin(&self, db: &str, sql: &[u8]) {
        let mut child = self
            .psql_command(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        let mut stdin = child.stdin.take().expect("psql stdin is piped");
        let data = sql.to_vec();
        // Write from a thread so that a psql that stops reading (an error) cannot block us.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        let _ = writer.join();
        if !out.status.success() {
            panic!("psql -d {db} (stdin) failed:\n{}", output_tail(&out));
        }
    }

    /// `gunzip -c PATH | psql ... -d DB`.
    pub fn psql_gz_file(&self, db: &str, path: &Path) {
        let mut gunzip = Command::new("gunzip")
            .arg("-c")
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run gunzip: {e}"));
        let pipe = gunzip.stdout.take().expect("gunzip stdout is piped");
        let out = self
            .psql_command(db)
            .stdin(Stdio::from(pipe))
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        let gz = gunzip
            .wait_with_output()
            .unwrap_or_else(|e| panic!("gunzip: {e}"));
        if !gz.status.success() {
            panic!("gunzip -c {} failed:\n{}", path.display(), output_text(&gz));
        }
        if !out.status.success() {
            panic!(
                "gunzip -c {} | psql -d {db} failed:\n{}",
                path.display(),
                output_tail(&out)
            );
        }
    }

    /// Creates database `db` and loads pagila into it (schema file, then the gzipped data).
    pub fn load_pagila(&self, db: &str) {
        let dir = datasets_dir().join("pagila");
        self.create_database(db);
        self.psql_file(db, &dir.join("pagila-schema.sql"));
        self.psql_gz_file(db, &dir.join("pagila-data.sql.gz"));
    }

    /// Creates database `db` and loads chinook into it. The upstream script drops, creates and
    /// connects to a database named `chinook` itself; we feed it with that name replaced by
    /// `db`, so that two loads never collide (nor drop each other's database).
    pub fn load_chinook(&self, db: &str) {
        assert!(
            !db.is_empty()
                && db
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "load_chinook: database name {db:?} must be [a-z0-9_]+"
        );
        let path = datasets_dir()
            .join("chinook")
            .join("Chinook_PostgreSql.sql");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut replaced = 0;
        let rewritten: Vec<String> = text
            .lines()
            .map(|line| {
                let new = match line.trim() {
                    "DROP DATABASE IF EXISTS chinook;" => {
                        Some(format!("DROP DATABASE IF EXISTS {db};"))
                    }
                    "CREATE DATABASE chinook;" => Some(format!("CREATE DATABASE {db};")),
                    "\\c chinook;" | "\\c chinook" | "\\connect chinook" => {
                        Some(format!("\\connect {db}"))
                    }
                    _ => None,
                };
                match new {
                    Some(n) => {
                        replaced += 1;
                        n
                    }
                    None => line.to_string(),
                }
            })
            .collect();
        assert_eq!(
            replaced,
            3,
            "{}: expected its DROP DATABASE / CREATE DATABASE / \\c chinook lines (has the file changed?)",
            path.display()
        );
        self.psql_stdin("postgres", (rewritten.join("\n") + "\n").as_bytes());
    }

    /// Creates database `db` and loads northwind into it.
    pub fn load_northwind(&self, db: &str) {
        self.create_database(db);
        self.psql_file(db, &datasets_dir().join("northwind").join("northwind.sql"));
    }

    /// The current size of the server log, to show later what one test logged (`log_since`).
    pub fn log_len(&self) -> u64 {
        fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0)
    }

    /// The last `max_lines` lines the server logged after byte `offset`.
    pub fn log_since(&self, offset: u64, max_lines: usize) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = fs::File::open(self.log_path()) {
            let _ = f.seek(SeekFrom::Start(offset));
            let _ = f.read_to_end(&mut buf);
        }
        last_lines(&String::from_utf8_lossy(&buf), max_lines)
    }

    /// The last `max_lines` lines of the server log.
    pub fn log_tail(&self, max_lines: usize) -> String {
        self.log_since(0, max_lines)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.log_shown.load(Ordering::Relaxed) {
            eprintln!(
                "--- server log (tail) ---\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        if *self.lock_running() || self.data.join("postmaster.pid").exists() {
            let _ = self
                .pg_command("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "60", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if self.keep {
            eprintln!(
                "E2E_KEEP=1: cluster kept in {} (log: {})",
                self.data.display(),
                self.log_path().display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("could not remove {}: {e}", self.base.display());
        }
    }
}

/// Where the sample databases are: `PGTO_DATASETS`, else `<project>/../shared/datasets`
/// (this package is `<project>/tests/e2e`).
pub fn datasets_dir() -> PathBuf {
    let dir = match std::env::var_os("PGTO_DATASETS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"),
    };
    fs::canonicalize(&dir).unwrap_or_else(|e| {
        panic!(
            "datasets directory {} not found ({e}); set PGTO_DATASETS",
            dir.display()
        )
    })
}

/// Quotes an SQL identifier the way `quote_ident` does (always quoted).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (standard_conforming_strings = on).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// One line describing an error: SQLSTATE, message, detail and hint when the server sent them.
pub fn describe_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => describe_db_error(db),
        None => format!("(no server error) {e}"),
    }
}

fn describe_db_error(db: &DbError) -> String {
    let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(d) = db.detail() {
        s.push_str(&format!(" | DETAIL: {d}"));
    }
    if let Some(h) = db.hint() {
        s.push_str(&format!(" | HINT: {h}"));
    }
    s
}

/// Asserts that `result` is a server error with SQLSTATE `code` whose message contains
/// `message_part` (empty: any message). Returns the error for further checks.
#[track_caller]
pub fn assert_sqlstate<T: Debug>(
    result: Result<T, postgres::Error>,
    code: &str,
    message_part: &str,
) -> DbError {
    assert_sqlstate_any(result, code, &[message_part])
}

/// As `assert_sqlstate`, and the HINT must contain `hint_part`.
#[track_caller]
pub fn assert_sqlstate_hint<T: Debug>(
    result: Result<T, postgres::Error>,
    code: &str,
    message_part: &str,
    hint_part: &str,
) -> DbError {
    let db = assert_sqlstate(result, code, message_part);
    match db.hint() {
        Some(h) if h.contains(hint_part) => db,
        _ => panic!(
            "expected SQLSTATE {code} with a HINT containing {hint_part:?}, got: {}",
            describe_db_error(&db)
        ),
    }
}

/// As `assert_sqlstate`, where the message must contain at least one of `message_parts`.
#[track_caller]
pub fn assert_sqlstate_any<T: Debug>(
    result: Result<T, postgres::Error>,
    code: &str,
    message_parts: &[&str],
) -> DbError {
    let err = match result {
        Ok(v) => {
            panic!("expected an error with SQLSTATE {code}, but the statement succeeded: {v:?}")
        }
        Err(e) => e,
    };
    let Some(db) = err.as_db_error() else {
        panic!("expected a server error with SQLSTATE {code}, got a client error: {err}");
    };
    let code_ok = db.code().code() == code;
    let msg_ok = message_parts.is_empty() || message_parts.iter().any(|p| db.message().contains(p));
    if !code_ok || !msg_ok {
        panic!(
            "expected SQLSTATE {code} with a message containing {}, got: {}",
            message_parts
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(" or "),
            describe_db_error(db)
        );
    }
    db.clone()
}

/// Whether the tests run as root (the clusters then run as `postgres`).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !out.status.success() {
        panic!("{what} failed:\n{}", output_text(&out));
    }
}

/// A TCP port free on 127.0.0.1: the kernel's choice, else the first free one from 28830.
fn free_port() -> u16 {
    if let Ok(l) = TcpListener::bind(("127.0.0.1", 0)) {
        if let Ok(addr) = l.local_addr() {
            return addr.port();
        }
    }
    (28830..29830)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("no free TCP port on 127.0.0.1")
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn output_tail(out: &Output) -> String {
    last_lines(&output_text(out), LOG_TAIL_LINES)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
