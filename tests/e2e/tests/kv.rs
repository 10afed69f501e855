//! Key-value sources against a real `redis-server` (started by the harness on 127.0.0.1 and
//! a free port of 28960-28969, see `pg_tenant_ops_e2e::redis`): a store seeded with legacy
//! and newer tenant formats side by side, hashes, a set, a plain string, invalid JSON, a bad
//! email and hostile key names; detect, dry run, import, one tenant; a password-protected
//! server; a server that stops in the middle of an import; `localStorage` dumps given as
//! JSON and as files of the import directory. Every count is exact.

use std::time::Duration;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::redis::{args, RedisServer};
use pg_tenant_ops_e2e::{assert_sqlstate, describe_error, Cluster};
use serde_json::{json, Value};

use crate::common::{create_extension, exec, fresh_db, scalar};

const HOSTILE_QUOTE: &str = "o'hare\"; DROP TABLE tenants;--";
const HOSTILE_UNICODE: &str = "ünïcødé ☃";
const HOSTILE_GLOB: &str = "glob*?[x]";

/// The seeded store: 9 `tenant:*` strings (3 newer JSON, 5 legacy JSON, 1 not JSON), 3
/// `tenant:*:settings` hashes (one of a tenant that does not exist), 1 set, 1 plain string.
fn seed(r: &RedisServer) {
    let newer = |name: &str, email: &str, emoji: &str, at: &str| {
        json!({"name": name, "email": email, "emoji": emoji, "createdAt": at}).to_string()
    };
    let legacy = |name: &str, email: &str| json!({"name": name, "email": email}).to_string();
    let strings: Vec<(String, String)> = vec![
        (
            "tenant:acme".into(),
            newer("Acme", "ops@acme.io", "🚀", "2021-03-04T05:06:07Z"),
        ),
        (
            "tenant:initech".into(),
            newer("Initech", "bill@initech.com", "💾", "2020-01-02T03:04:05Z"),
        ),
        (
            format!("tenant:{HOSTILE_UNICODE}"),
            newer("Unicode", "u@example.de", "☃", "2022-02-02T00:00:00Z"),
        ),
        ("tenant:globex".into(), legacy("Globex", "hi@globex.com")),
        (
            "tenant:umbrella".into(),
            legacy("Umbrella", "info@umbrella.org"),
        ),
        ("tenant:bademail".into(), legacy("Bad", "not-an-email")),
        (
            format!("tenant:{HOSTILE_QUOTE}"),
            legacy("O'Hare", "x@ohare.com"),
        ),
        (
            format!("tenant:{HOSTILE_GLOB}"),
            legacy("Glob", "g@glob.io"),
        ),
        ("tenant:broken".into(), "{\"name\": \"Broken\", ".into()),
        ("session:abc123".into(), "opaque".into()),
    ];
    let mut cmds: Vec<Vec<Vec<u8>>> = strings.iter().map(|(k, v)| args(&["SET", k, v])).collect();
    cmds.push(args(&[
        "HSET",
        "tenant:acme:settings",
        "theme",
        "dark",
        "locale",
        "de",
    ]));
    cmds.push(args(&[
        "HSET",
        "tenant:globex:settings",
        "theme",
        "light",
        "locale",
        "en",
    ]));
    cmds.push(args(&["HSET", "tenant:ghost:settings", "theme", "none"]));
    cmds.push(args(&[
        "SADD",
        "tenant:acme:members",
        "a@acme.io",
        "b@acme.io",
    ]));
    r.pipe(&cmds);
    assert_eq!(r.cmd(&["DBSIZE"]).trim(), "14");
}

const TABLES: &str = "
    CREATE TABLE tenants (subdomain text PRIMARY KEY, name text NOT NULL, email text,
                          emoji text NOT NULL, created_at timestamptz NOT NULL);
    CREATE TABLE tenant_settings (subdomain text PRIMARY KEY, theme text, locale text);";

fn mapping() -> Value {
    json!([
        {"pattern": "tenant:{subdomain}", "table": "tenants",
         "columns": {"subdomain": "{subdomain}", "name": "$.name",
                     "email": {"from": "$.email", "rules": {"email": true}},
                     "emoji": {"from": "$.emoji", "default": "🏢"},
                     "created_at": {"from": "$.createdAt", "default": "2000-01-01T00:00:00Z"}}},
        {"pattern": "tenant:{subdomain}:settings", "table": "tenant_settings",
         "columns": {"subdomain": "{subdomain}", "theme": "field:theme", "locale": "field:locale"}}
    ])
}

/// The database's backup directory (where key backups go).
fn backup_dir(c: &mut Client) -> String {
    c.query_one(
        "SELECT current_setting('data_directory') || '/pg_tenant_ops_backups/db_' || oid FROM pg_database WHERE datname = current_database()",
        &[],
    )
    .unwrap()
    .get(0)
}

/// `import_kv` that must succeed: its job's id and result.
#[track_caller]
fn import(c: &mut Client, source: &str, mapping: &Value, options: &str) -> (i64, Value) {
    let m = mapping.to_string();
    let job: i64 = match c.query_one(
        "SELECT tenant_ops.import_kv($1, $2::text::jsonb, $3::text::jsonb)",
        &[&source, &m, &options],
    ) {
        Ok(r) => r.get(0),
        Err(e) => panic!(
            "import_kv({source}, {m}, {options}): {}",
            describe_error(&e)
        ),
    };
    (job, job_result(c, job))
}

fn job_result(c: &mut Client, job: i64) -> Value {
    let r: String = c
        .query_one(
            "SELECT coalesce(result::text, 'null') FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap()
        .get(0);
    serde_json::from_str(&r).unwrap()
}

fn detect(c: &mut Client, source: &str, pattern: &str) -> Value {
    let r: String = c
        .query_one(
            "SELECT tenant_ops.detect_kv($1, $2)::text",
            &[&source, &pattern],
        )
        .unwrap_or_else(|e| panic!("detect_kv({source}): {}", describe_error(&e)))
        .get(0);
    serde_json::from_str(&r).unwrap()
}

fn create_source(c: &mut Client, name: &str, url: &str) {
    if let Err(e) = c.query_one("SELECT tenant_ops.create_kv_source($1, $2, '{\"connect_timeout_ms\": 1000, \"read_timeout_ms\": 1000}')", &[&name, &url]) {
        panic!("create_kv_source({name}): {}", describe_error(&e));
    }
}

fn pattern<'a>(report: &'a Value, glob: &str) -> &'a Value {
    report["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pattern"] == glob)
        .unwrap_or_else(|| panic!("no pattern {glob} in {report:#}"))
}

/// Detect, dry run, import (refused keys in job_errors), one tenant, hostile key names.
pub fn kv_redis_detect_and_import(cluster: &Cluster) {
    let redis = RedisServer::start(None);
    seed(&redis);
    let mut c = fresh_db(cluster, "e2e_kv_import");
    create_extension(&mut c);
    exec(&mut c, TABLES);
    create_source(&mut c, "legacy", &redis.url(0));
    // The catalog keeps no secret; operators see the URL.
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.kv_sources WHERE kind = 'redis'"
        ),
        1
    );

    // detect_kv: patterns, counts, types, shapes (legacy and newer side by side), suggestions.
    let d = detect(&mut c, "legacy", "*");
    assert_eq!(d["keys"], 14, "{d:#}");
    assert_eq!(d["complete"], true);
    assert_eq!(d["patterns"].as_array().unwrap().len(), 4, "{d:#}");
    let t = pattern(&d, "tenant:*");
    assert_eq!(t["keys"], 9);
    assert_eq!(t["types"], json!({"string": 9}));
    assert_eq!(t["json_objects"], 8);
    assert_eq!(t["not_json"], 1);
    assert_eq!(
        t["shapes"],
        json!([{"keys": ["createdAt", "email", "emoji", "name"], "count": 3},
               {"keys": ["email", "name"], "count": 5}])
    );
    let s = pattern(&d, "tenant:*:settings");
    assert_eq!(s["keys"], 3);
    assert_eq!(s["types"], json!({"hash": 3}));
    assert_eq!(s["hash_fields"], json!({"locale": 2, "theme": 3}));
    assert_eq!(pattern(&d, "tenant:*:members")["types"], json!({"set": 1}));
    assert_eq!(pattern(&d, "session:*")["not_json"], 1);
    let suggested = d["suggested_mapping"].as_array().unwrap();
    assert_eq!(suggested.len(), 2, "{d:#}");
    assert_eq!(suggested[0]["pattern"], "tenant:{tenant}");
    assert_eq!(suggested[0]["columns"]["created_at"], "$.createdAt");
    assert_eq!(suggested[1]["columns"]["theme"], "field:theme");
    // SCAN MATCH narrows it.
    assert_eq!(detect(&mut c, "legacy", "tenant:*:settings")["keys"], 3);

    // Dry run: every refused key named, nothing written.
    let (_, dry) = import(&mut c, "legacy", &mapping(), r#"{"dry_run": true}"#);
    assert_eq!(dry["keys"], 12, "{dry:#}");
    assert_eq!(dry["rows_written"], 10, "{dry:#}");
    assert_eq!(dry["keys_refused"], 2, "{dry:#}");
    let mut refused: Vec<String> = dry["first_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    refused.sort();
    assert_eq!(refused, vec!["tenant:bademail", "tenant:broken"]);
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM tenants"), 0);

    // Without continue_on_error a bad key fails the call, naming it; nothing is written.
    let err = c.query_one(
        "SELECT tenant_ops.import_kv('legacy', $1::text::jsonb, '{\"tenant\": \"broken\"}')",
        &[&mapping().to_string()],
    );
    let db = assert_sqlstate(
        err,
        "22P02",
        "key \"tenant:broken\" is refused: \"$.name\": the value is not JSON",
    );
    assert!(db.hint().unwrap_or_default().contains("continue_on_error"));
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM tenants"), 0);

    // The import: 7 tenants (2 refused into job_errors), 3 settings.
    let (job, r) = import(
        &mut c,
        "legacy",
        &mapping(),
        r#"{"continue_on_error": true, "batch_size": 3}"#,
    );
    assert_eq!(r["rows_written"], 10, "{r:#}");
    assert_eq!(r["keys_refused"], 2);
    assert_eq!(r["mappings"][0]["keys"], 9);
    assert_eq!(r["mappings"][1]["rows_written"], 3);
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM tenants"), 7);
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM tenant_settings"), 3);
    let errors = c
        .query(
            "SELECT source_key, reason, sqlstate, row_data->>'key' FROM tenant_ops.job_errors WHERE job_id = $1 ORDER BY source_key",
            &[&job],
        )
        .unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].get::<_, String>(0), "tenant:bademail");
    assert!(errors[0]
        .get::<_, String>(1)
        .contains("not an email address: \"not-an-email\""));
    assert_eq!(errors[0].get::<_, String>(2), "23514");
    assert_eq!(errors[1].get::<_, String>(0), "tenant:broken");
    assert!(errors[1]
        .get::<_, String>(1)
        .contains("the value is not JSON"));
    assert_eq!(errors[1].get::<_, String>(2), "22P02");
    // Legacy keys got the defaults, newer ones their own values; hostile names are data.
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenants WHERE emoji = '🏢' AND created_at = '2000-01-01Z'"
        ),
        4
    );
    for (sub, emoji) in [
        (HOSTILE_QUOTE, "🏢"),
        (HOSTILE_UNICODE, "☃"),
        (HOSTILE_GLOB, "🏢"),
        ("acme", "🚀"),
    ] {
        let got: String = c
            .query_one("SELECT emoji FROM tenants WHERE subdomain = $1", &[&sub])
            .unwrap_or_else(|e| panic!("tenant {sub:?}: {}", describe_error(&e)))
            .get(0);
        assert_eq!(got, emoji, "{sub}");
    }
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenants WHERE subdomain = 'acme' AND created_at = '2021-03-04T05:06:07Z'"),
        1
    );

    // One tenant, overwritten after the store changed: only that tenant's keys are read,
    // the hostile glob characters in its name included.
    redis.cmd(&[
        "SET",
        &format!("tenant:{HOSTILE_GLOB}"),
        &json!({"name": "Glob 2", "email": "g@glob.io"}).to_string(),
    ]);
    let opts = json!({"tenant": HOSTILE_GLOB, "on_conflict": "overwrite"}).to_string();
    let (_, one) = import(&mut c, "legacy", &mapping(), &opts);
    assert_eq!(one["keys"], 1, "{one:#}");
    assert_eq!(one["rows_written"], 1);
    let name: String = c
        .query_one(
            "SELECT name FROM tenants WHERE subdomain = $1",
            &[&HOSTILE_GLOB],
        )
        .unwrap()
        .get(0);
    assert_eq!(name, "Glob 2");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM tenants"), 7);

    // Bad mappings and options: named, nothing written.
    let bad = |c: &mut Client, m: &str, o: &str| {
        c.query_one(
            "SELECT tenant_ops.import_kv('legacy', $1::text::jsonb, $2::text::jsonb)",
            &[&m, &o],
        )
    };
    assert_sqlstate(
        bad(
            &mut c,
            r#"{"pattern": "tenant:{sub", "table": "tenants", "columns": {"subdomain": "{sub}"}}"#,
            "{}",
        ),
        "22023",
        "invalid mapping: \"pattern\": \"{\" without \"}\"",
    );
    assert_sqlstate(
        bad(
            &mut c,
            r#"{"pattern": "tenant:{sub}", "table": "tenants", "columns": {"subdomain": "{other}"}}"#,
            "{}",
        ),
        "22023",
        "comes from part \"{other}\", and pattern \"tenant:{sub}\" has no such part",
    );
    assert_sqlstate(
        bad(
            &mut c,
            r#"{"pattern": "tenant:{sub}", "table": "tenants", "columns": {"nope": "{sub}"}}"#,
            "{}",
        ),
        "42703",
        "column \"nope\" of table tenants does not exist",
    );
    assert_sqlstate(
        bad(
            &mut c,
            r#"{"pattern": "tenant:{sub}", "table": "no_such_table", "columns": {"subdomain": "{sub}"}}"#,
            "{}",
        ),
        "22023",
        "table \"no_such_table\" does not exist",
    );
    assert_sqlstate(
        bad(
            &mut c,
            r#"{"pattern": "tenant:{sub}", "table": "tenants", "columns": {"subdomain": "{sub}"}}"#,
            r#"{"tenat": "x"}"#,
        ),
        "22023",
        "unknown option \"tenat\"",
    );
    assert_sqlstate(
        bad(
            &mut c,
            r#"{"pattern": "session:*", "table": "tenants", "columns": {"subdomain": "$"}}"#,
            r#"{"tenant": "x"}"#,
        ),
        "22023",
        "option \"tenant\" needs a part naming the tenant",
    );
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.import_kv('nope', '{}')", &[]),
        "42704",
        "key-value source \"nope\" does not exist",
    );
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM tenants"), 7);
}

/// A password-protected server: no password and a wrong one are refused (28000), the right
/// one reads; the password is not in the readable catalog; a stopped server is unreachable
/// (08006).
pub fn kv_redis_password_and_unreachable(cluster: &Cluster) {
    let mut redis = RedisServer::start(Some("s3cr3t-pw"));
    redis.cmd(&["SET", "tenant:a", "{\"name\": \"A\"}"]);
    let mut c = fresh_db(cluster, "e2e_kv_auth");
    create_extension(&mut c);
    let port = redis.port();
    create_source(&mut c, "nopass", &format!("redis://127.0.0.1:{port}/0"));
    create_source(
        &mut c,
        "wrong",
        &format!("redis://:wrong@127.0.0.1:{port}/0"),
    );
    create_source(&mut c, "right", &redis.url(0));
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.detect_kv('nopass')", &[]),
        "28000",
        "key-value source \"nopass\" refused the credentials",
    );
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.detect_kv('wrong')", &[]),
        "28000",
        "key-value source \"wrong\" refused the credentials",
    );
    assert_eq!(detect(&mut c, "right", "*")["keys"], 1);
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.kv_sources WHERE url LIKE '%s3cr3t%'"
        ),
        0
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.kv_sources WHERE name = 'right' AND url LIKE 'redis://:***@%'"),
        1
    );
    // Operators use sources, never read their secrets.
    exec(
        &mut c,
        "CREATE ROLE kv_operator LOGIN; GRANT tenant_ops_operator TO kv_operator;",
    );
    let mut op = cluster.connect_as("e2e_kv_auth", "kv_operator");
    assert_eq!(detect(&mut op, "right", "*")["keys"], 1);
    assert_sqlstate(
        op.query("SELECT url FROM tenant_ops.kv_source_secrets", &[]),
        "42501",
        "permission denied",
    );
    assert_sqlstate(
        op.query_one(
            "SELECT tenant_ops.create_kv_source('x', 'redis://127.0.0.1:1/0')",
            &[],
        ),
        "42501",
        "permission denied",
    );
    redis.kill();
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.detect_kv('right')", &[]),
        "08006",
        "key-value source \"right\" is unreachable",
    );
}

/// Redis killed in the middle of an inline import: the call fails with 08006 naming the
/// source, and nothing is written (no row, no job).
pub fn kv_redis_stopped_mid_import(cluster: &Cluster) {
    let mut redis = RedisServer::start(None);
    let cmds: Vec<Vec<Vec<u8>>> = (0..2_000)
        .map(|i| {
            args(&[
                "SET",
                &format!("tenant:t{i:05}"),
                &format!("{{\"name\": \"T{i}\"}}"),
            ])
        })
        .collect();
    redis.pipe(&cmds);
    let mut c = fresh_db(cluster, "e2e_kv_stop");
    create_extension(&mut c);
    // Each batch's write sleeps a moment: the import is certainly in the middle (a batch
    // written, more to read) when Redis goes, whatever the machine's speed.
    exec(
        &mut c,
        "CREATE TABLE t (subdomain text PRIMARY KEY, name text);
         CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END $$;
         CREATE TRIGGER slow AFTER INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION slow();",
    );
    create_source(&mut c, "big", &redis.url(0));
    let port = cluster.port();
    let mapping = json!({"pattern": "tenant:{subdomain}", "table": "t",
                         "columns": {"subdomain": "{subdomain}", "name": "$.name"}})
    .to_string();
    let jobs_before = scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs");
    let runner = std::thread::spawn(move || {
        let mut c = pg_tenant_ops_e2e::postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .dbname("e2e_kv_stop")
            .connect(pg_tenant_ops_e2e::postgres::NoTls)
            .unwrap();
        c.query_one(
            "SELECT tenant_ops.import_kv('big', $1::text::jsonb, '{\"batch_size\": 20}')",
            &[&mapping],
        )
        .map(|r| r.get::<_, i64>(0))
    });
    crate::common::until(
        "the import writing its first batch",
        Duration::from_secs(60),
        || {
            let n = scalar(
                &mut c,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'e2e_kv_stop'
                    AND query LIKE '%import_kv%' AND wait_event = 'PgSleep'",
            );
            (n > 0).then_some(())
        },
    );
    redis.kill();
    let r = runner.join().unwrap();
    assert_sqlstate(r, "08006", "key-value source \"big\" is unreachable");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM t"), 0);
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.jobs"),
        jobs_before
    );
}

/// `localStorage` dumps: several users' dumps as JSON (one tenant per dump), and as files
/// of the import directory (one dump per file), detected and imported.
pub fn kv_local_storage_dumps(cluster: &Cluster) {
    let mut c = fresh_db(cluster, "e2e_kv_dumps");
    create_extension(&mut c);
    exec(
        &mut c,
        "CREATE TABLE prefs (username text PRIMARY KEY, theme text NOT NULL, emoji text NOT NULL)",
    );
    let dumps = json!({
        "alice": {"settings": "{\"theme\":\"dark\",\"emoji\":\"🦊\"}", "token": "abc"},
        "bob": {"settings": "{\"theme\":\"light\"}", "token": "def"},
    });
    let n: i64 = c
        .query_one(
            "SELECT tenant_ops.kv_source_from_json('browsers', $1::text::jsonb)",
            &[&dumps.to_string()],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    let d = detect(&mut c, "browsers", "*");
    assert_eq!(d["keys"], 4);
    assert_eq!(pattern(&d, "*:settings")["json_objects"], 2);
    assert_eq!(pattern(&d, "*:token")["not_json"], 2);
    assert_eq!(d["suggested_mapping"][0]["pattern"], "{dump}:settings");
    let m = json!({"pattern": "{user}:settings", "table": "prefs",
                   "columns": {"username": "{user}", "theme": "$.theme",
                               "emoji": {"from": "$.emoji", "default": "🙂"}}});
    let (_, r) = import(&mut c, "browsers", &m, "{}");
    assert_eq!(r["rows_written"], 2, "{r:#}");
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM prefs WHERE username = 'bob' AND emoji = '🙂'"
        ),
        1
    );

    // Files: one dump per *.json file in a directory of the import directory.
    let data: String = c
        .query_one("SELECT current_setting('data_directory')", &[])
        .unwrap()
        .get(0);
    let _ = c.query_one("SELECT tenant_ops.detect_kv('browsers')", &[]);
    let dir = std::path::PathBuf::from(format!("{data}/pg_tenant_ops_imports/dumps"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("carol.json"),
        r#"{"settings": "{\"theme\":\"sepia\",\"emoji\":\"🐢\"}"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("dave.json"),
        r#"{"settings": "{\"theme\":\"dark\"}", "cart": "[1,2]"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a dump").unwrap();
    for p in [
        dir.clone(),
        dir.join("carol.json"),
        dir.join("dave.json"),
        dir.join("notes.txt"),
    ] {
        cluster.give_to_server(&p);
    }
    create_source(&mut c, "files", "file:dumps/");
    assert_eq!(detect(&mut c, "files", "*")["keys"], 3);
    let (_, r) = import(&mut c, "files", &m, "{}");
    assert_eq!(r["rows_written"], 2, "{r:#}");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM prefs"), 4);
    // A file that leaves the directory, and one that is not there.
    assert_sqlstate(
        c.query_one(
            "SELECT tenant_ops.create_kv_source('out', 'file:../postgresql.conf')",
            &[],
        ),
        "22023",
        "",
    );
    assert_sqlstate(
        c.query_one(
            "SELECT tenant_ops.create_kv_source('gone', 'file:gone.json')",
            &[],
        ),
        "58P01",
        "file \"gone.json\" is not in the import directory",
    );
}

fn job_of(c: &mut Client, sql: &str, mapping: &Value, options: &str) -> Value {
    let m = mapping.to_string();
    let job: i64 = match c.query_one(sql, &[&m, &options]) {
        Ok(r) => r.get(0),
        Err(e) => panic!("{sql}: {}", describe_error(&e)),
    };
    job_result(c, job)
}

fn sync(c: &mut Client, tenant: &str, options: &str) -> Value {
    let m = mapping().to_string();
    let r: String = c
        .query_one(
            "SELECT tenant_ops.sync_kv('legacy', $1::text::jsonb, $2, $3::text::jsonb)::text",
            &[&m, &tenant, &options],
        )
        .unwrap_or_else(|e| panic!("sync_kv({tenant}, {options}): {}", describe_error(&e)))
        .get(0);
    serde_json::from_str(&r).unwrap()
}

/// After the import, a key and rows change on both sides: compare finds each difference
/// (exact counts and score), sync_kv brings one tenant in line from the store and another
/// from the table (written back into the key's JSON and hash), cleanup_kv finds the keys of
/// tenants that do not exist and the rows no key gives, and deletes them (saved first) only
/// when asked.
pub fn kv_redis_compare_sync_cleanup(cluster: &Cluster) {
    let redis = RedisServer::start(None);
    seed(&redis);
    let mut c = fresh_db(cluster, "e2e_kv_compare");
    create_extension(&mut c);
    exec(&mut c, TABLES);
    create_source(&mut c, "legacy", &redis.url(0));
    import(
        &mut c,
        "legacy",
        &mapping(),
        r#"{"continue_on_error": true}"#,
    );
    redis.cmd(&["SET", "tenant:acme", &json!({"name": "Acme 2", "email": "ops@acme.io", "emoji": "🚀", "createdAt": "2021-03-04T05:06:07Z"}).to_string()]);
    exec(
        &mut c,
        "UPDATE tenants SET emoji = 'x' WHERE subdomain = 'globex';
         DELETE FROM tenants WHERE subdomain = 'umbrella';
         INSERT INTO tenants VALUES ('stale', 'Stale', NULL, '-', now());",
    );
    let compare = "SELECT tenant_ops.compare_kv('legacy', $1::text::jsonb, $2::text::jsonb)";
    let r = job_of(&mut c, compare, &mapping(), "{}");
    assert_eq!(r["mappings"][0]["keys"], 9, "{r:#}");
    assert_eq!(r["mappings"][0]["keys_invalid"], 2);
    assert_eq!(r["mappings"][0]["keys_without_row"], 1);
    assert_eq!(r["mappings"][0]["rows_without_key"], 1);
    assert_eq!(
        r["mappings"][0]["fields_differing"],
        json!({"name": 1, "email": 0, "emoji": 1, "created_at": 0})
    );
    assert_eq!(r["mappings"][0]["rows_agreeing"], 4);
    assert_eq!(r["mappings"][1]["rows_agreeing"], 3);
    assert_eq!(
        r["by_check"],
        json!({"kv_field_differs": 2, "kv_key_invalid": 2, "kv_key_without_row": 1, "kv_row_without_key": 1})
    );
    assert_eq!(r["score"], 53.84);
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.integrity_issues WHERE check_name LIKE 'kv_%'"
        ),
        5
    );
    // One tenant from the store, one from the table.
    let s = sync(&mut c, "acme", "{}");
    assert_eq!(s["mappings"][0]["rows_updated"], 1, "{s:#}");
    assert_eq!(s["mappings"][1]["rows_updated"], 0, "{s:#}");
    let s = sync(&mut c, "globex", r#"{"wins": "table"}"#);
    assert_eq!(s["mappings"][0]["keys_written"], 1, "{s:#}");
    assert_eq!(s["mappings"][1]["keys_written"], 1, "{s:#}");
    let globex: Value = serde_json::from_str(&redis.cmd(&["GET", "tenant:globex"])).unwrap();
    assert_eq!(globex["emoji"], "x");
    assert_eq!(globex["name"], "Globex");
    assert_eq!(
        redis
            .cmd(&["HGET", "tenant:globex:settings", "theme"])
            .trim(),
        "light"
    );
    let r = job_of(&mut c, compare, &mapping(), "{}");
    assert_eq!(
        r["by_check"],
        json!({"kv_key_invalid": 2, "kv_key_without_row": 1, "kv_row_without_key": 1}),
        "{r:#}"
    );
    assert_eq!(r["score"], 69.23);
    // One tenant's comparison.
    let r = job_of(&mut c, compare, &mapping(), r#"{"tenant": "acme"}"#);
    assert_eq!(r["score"], 100.0, "{r:#}");

    // Cleanup: a dry run by default.
    let cleanup = "SELECT tenant_ops.cleanup_kv('legacy', $1::text::jsonb, $2::text::jsonb)";
    let r = job_of(&mut c, cleanup, &mapping(), "{}");
    assert_eq!(r["dry_run"], true, "{r:#}");
    assert_eq!(r["orphaned_keys"], 4, "{r:#}");
    assert_eq!(r["orphaned_rows"], 1);
    let mut names: Vec<String> = r["mappings"][0]["orphaned_key_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["tenant:bademail", "tenant:broken", "tenant:umbrella"]
    );
    assert_eq!(
        r["mappings"][1]["orphaned_key_names"],
        json!(["tenant:ghost:settings"])
    );
    assert_eq!(redis.cmd(&["DBSIZE"]).trim(), "14");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM tenants"), 7);
    // Acting: saved to the quarantine, then deleted (the keys as the transaction commits).
    let r = job_of(&mut c, cleanup, &mapping(), r#"{"dry_run": false}"#);
    assert_eq!(r["mappings"][0]["rows_deleted"], 1, "{r:#}");
    assert_eq!(r["mappings"][0]["keys_deleted"], 3);
    assert_eq!(r["mappings"][1]["keys_deleted"], 1);
    assert_eq!(redis.cmd(&["DBSIZE"]).trim(), "10");
    assert_eq!(redis.cmd(&["EXISTS", "tenant:umbrella"]).trim(), "0");
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenants WHERE subdomain = 'stale'"
        ),
        0
    );
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM tenant_ops.quarantine WHERE reason LIKE 'cleanup_kv: kv key%'"
        ),
        4
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.quarantine WHERE row_data->>'key' = 'tenant:broken' AND row_data->>'value' LIKE '{\"name\"%'"),
        1
    );
    // Rolled back: the keys stay.
    exec(&mut c, "BEGIN");
    job_of(
        &mut c,
        cleanup,
        &mapping(),
        r#"{"dry_run": false, "tenants": "tenant_settings(subdomain)"}"#,
    );
    exec(&mut c, "ROLLBACK");
    assert_eq!(redis.cmd(&["DBSIZE"]).trim(), "10");
}

/// Committing runs: a background import (check stage, then a commit per batch, the SCAN
/// cursor checkpointed) and a deferred one run with `CALL run_job`; a refused key in a
/// committing run without continue_on_error fails it in the check stage with nothing written.
pub fn kv_redis_background_import(cluster: &Cluster) {
    let redis = RedisServer::start(None);
    let cmds: Vec<Vec<Vec<u8>>> = (0..3_000)
        .map(|i| {
            args(&[
                "SET",
                &format!("tenant:t{i:04}"),
                &format!("{{\"name\": \"T{i}\"}}"),
            ])
        })
        .collect();
    redis.pipe(&cmds);
    let mut c = fresh_db(cluster, "e2e_kv_background");
    create_extension(&mut c);
    exec(
        &mut c,
        "CREATE TABLE t (subdomain text PRIMARY KEY, name text NOT NULL)",
    );
    create_source(&mut c, "bg", &redis.url(0));
    let m = json!({"pattern": "tenant:{subdomain}", "table": "t",
                   "columns": {"subdomain": "{subdomain}", "name": "$.name"}})
    .to_string();
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.import_kv('bg', $1::text::jsonb, '{\"batch_size\": 250}', true)",
            &[&m],
        )
        .unwrap_or_else(|e| panic!("background import_kv: {}", describe_error(&e)))
        .get(0);
    assert_eq!(crate::common::wait_for(&mut c, job, 120.0), "succeeded");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM t"), 3000);
    let r = job_result(&mut c, job);
    assert_eq!(r["rows_written"], 3000, "{r:#}");
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT rows_done FROM tenant_ops.job_tables WHERE job_id = {job}")
        ),
        3000
    );
    assert_eq!(
        scalar(&mut c, &format!("SELECT count(*) FROM tenant_ops.job_log WHERE job_id = {job} AND event = 'kv_import.checked'")),
        1
    );
    // Deferred, then CALL run_job (a commit per step); on_conflict skip over the same keys.
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.import_kv('bg', $1::text::jsonb, '{\"batch_size\": 500, \"defer\": true, \"on_conflict\": \"skip\"}')",
            &[&m],
        )
        .unwrap()
        .get(0);
    crate::common::run_job(&mut c, job);
    let r = job_result(&mut c, job);
    assert_eq!(r["keys"], 3000, "{r:#}");
    assert_eq!(r["rows_written"], 0);
    // A bad key: the committing run fails in its check stage, nothing written.
    redis.cmd(&["SET", "tenant:zzz-bad", "{nope"]);
    exec(&mut c, "TRUNCATE t");
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.import_kv('bg', $1::text::jsonb, '{\"batch_size\": 500, \"defer\": true}')",
            &[&m],
        )
        .unwrap()
        .get(0);
    let err = crate::common::try_run_job(&mut c, job);
    assert_sqlstate(err, "22P02", "key \"tenant:zzz-bad\" is refused");
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM t"), 0);
}

/// A background import whose worker is killed with `kill -9` mid-load resumes from its SCAN
/// cursor: every key once (the table has no key that would hide a duplicate).
pub fn kv_import_resumes_after_worker_kill9(cluster: &Cluster) {
    let redis = RedisServer::start(None);
    let n = 100_000;
    let cmds: Vec<Vec<Vec<u8>>> = (0..n)
        .map(|i| {
            args(&[
                "SET",
                &format!("tenant:t{i:06}"),
                &format!("{{\"name\": \"T{i}\"}}"),
            ])
        })
        .collect();
    redis.pipe(&cmds);
    let db = "e2e_kv_kill9";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(&mut c, "CREATE TABLE big (subdomain text, name text)");
    create_source(&mut c, "big", &redis.url(0));
    let m = json!({"pattern": "tenant:{subdomain}", "table": "big",
                   "columns": {"subdomain": "{subdomain}", "name": "$.name"}})
    .to_string();
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.import_kv('big', $1::text::jsonb, '{\"batch_size\": 500}', true)",
            &[&m],
        )
        .unwrap()
        .get(0);
    let worker: i32 = crate::common::until(
        &format!("kv_import job {job} loading in a worker"),
        Duration::from_secs(180),
        || {
            let r = c
                .query_one(
                    "SELECT j.status, j.worker_pid, t.stage, t.rows_done, j.error FROM tenant_ops.jobs j
                       LEFT JOIN tenant_ops.job_tables t ON t.job_id = j.id WHERE j.id = $1",
                    &[&job],
                )
                .unwrap();
            let status: String = r.get(0);
            let error: Option<String> = r.get(4);
            assert!(
                matches!(status.as_str(), "queued" | "running"),
                "job {job} is {status} before the kill: {error:?}"
            );
            let pid: Option<i32> = r.get(1);
            let stage: Option<String> = r.get(2);
            let done: Option<i64> = r.get(3);
            pid.filter(|_| stage.as_deref() == Some("load") && done.unwrap_or(0) >= 5_000)
        },
    );
    drop(c);
    cluster.interrupt(pg_tenant_ops_e2e::Interruption::Kill9, worker);
    let mut c = cluster.connect(db);
    assert_eq!(
        crate::common::wait_for(&mut c, job, 300.0),
        "succeeded",
        "job {job} after kill -9"
    );
    let r = c
        .query_one(
            "SELECT count(*), count(DISTINCT subdomain), (SELECT rows_done FROM tenant_ops.job_tables WHERE job_id = $1) FROM big",
            &[&job],
        )
        .unwrap();
    let got: (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(got, (n, n, n), "(rows, distinct keys, rows_done)");
    let started = scalar(
        &mut c,
        &format!("SELECT count(*) FROM tenant_ops.job_log WHERE job_id = {job} AND event = 'job.started'"),
    );
    assert!(
        started >= 2,
        "the job started again after the kill ({started} starts)"
    );
}

/// `"backup": true`: every key the import reads is saved before anything is written, in an
/// archive of the backup directory named in the result — `manifest.json` (source, patterns,
/// key count, the data file's size and SHA-256), then `keys.ndjson`, a key per line with its
/// type and value (a hash as an object, a value that is not UTF-8 in hex) — and the import
/// goes on as without it. A dry run makes none.
pub fn kv_import_backs_up_keys(cluster: &Cluster) {
    let redis = RedisServer::start(None);
    seed(&redis);
    redis.pipe(&[vec![
        b"SET".to_vec(),
        b"tenant:binary".to_vec(),
        vec![0xff, 0xfe, b'{'],
    ]]);
    let mut c = fresh_db(cluster, "e2e_kv_backup");
    create_extension(&mut c);
    exec(&mut c, TABLES);
    create_source(&mut c, "legacy", &redis.url(0));
    let dir = backup_dir(&mut c);
    let files = || -> Vec<String> {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // A dry run writes nothing, a backup neither.
    let (_, r) = import(
        &mut c,
        "legacy",
        &mapping(),
        r#"{"backup": true, "dry_run": true}"#,
    );
    assert!(r.get("backup").is_none(), "{r:#}");
    assert!(files().is_empty(), "{:?}", files());

    let (job, r) = import(
        &mut c,
        "legacy",
        &mapping(),
        r#"{"backup": true, "continue_on_error": true}"#,
    );
    let b = &r["backup"];
    // 10 tenant:* strings (the 9 seeded and the binary one) and the 3 settings hashes.
    assert_eq!(b["keys"], 13, "{r:#}");
    assert_eq!(r["keys"], 13, "{r:#}");
    assert_eq!(r["rows_written"], 10, "{r:#}");
    assert_eq!(r["keys_refused"], 3, "{r:#}");
    let file = b["file"].as_str().unwrap().to_string();
    assert!(
        file.starts_with("tenant_ops_kv_backup_") && file.ends_with(".tar.gz"),
        "{file}"
    );
    assert_eq!(files(), vec![file.clone()]);
    assert_eq!(
        scalar(
            &mut c,
            &format!("SELECT count(*) FROM tenant_ops.job_log WHERE job_id = {job} AND event = 'kv_import.backup'")
        ),
        1
    );
    // Read without the extension: tar and gzip.
    let out = std::env::temp_dir().join(format!("e2e_kv_backup.{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(format!("{dir}/{file}"))
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "pg_tenant_ops kv backup");
    assert_eq!(manifest["keys"], 13);
    assert_eq!(
        manifest["patterns"],
        json!(["tenant:{subdomain}", "tenant:{subdomain}:settings"])
    );
    let data = std::fs::read(out.join("keys.ndjson")).unwrap();
    assert_eq!(manifest["data"]["bytes"], data.len());
    let lines: Vec<Value> = String::from_utf8(data)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 13);
    let line = |key: &str| {
        lines
            .iter()
            .find(|l| l["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in the backup"))
            .clone()
    };
    assert_eq!(line("tenant:binary")["value_hex"], "fffe7b");
    assert_eq!(
        line("tenant:acme:settings"),
        json!({"key": "tenant:acme:settings", "type": "hash", "value": {"theme": "dark", "locale": "de"}})
    );
    assert_eq!(
        line(&format!("tenant:{HOSTILE_QUOTE}"))["value"],
        json!({"name": "O'Hare", "email": "x@ohare.com"}).to_string()
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// Every key of the store as text, sorted: its type and its value read with the command of
/// its type (hash fields and set members sorted), so that two readings compare equal when
/// the store holds the same keys and values.
fn store_state(r: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = r
        .cmd(&["KEYS", "*"])
        .lines()
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    keys.sort();
    keys.iter()
        .map(|k| {
            let kind = r.cmd(&["TYPE", k]).trim().to_string();
            let mut lines: Vec<String> = match kind.as_str() {
                "string" => vec![r.cmd(&["GET", k])],
                "hash" => r.cmd(&["HGETALL", k]).lines().map(str::to_string).collect(),
                "list" => r
                    .cmd(&["LRANGE", k, "0", "-1"])
                    .lines()
                    .map(str::to_string)
                    .collect(),
                "set" => r
                    .cmd(&["SMEMBERS", k])
                    .lines()
                    .map(str::to_string)
                    .collect(),
                "zset" => r
                    .cmd(&["ZRANGE", k, "0", "-1", "WITHSCORES"])
                    .lines()
                    .map(str::to_string)
                    .collect(),
                other => panic!("{k}: type {other}"),
            };
            if kind == "hash" {
                let mut pairs: Vec<String> = lines.chunks(2).map(|p| p.join("=")).collect();
                pairs.sort();
                lines = pairs;
            } else if kind == "set" {
                lines.sort();
            }
            format!("{k} {kind} {}", lines.join("|"))
        })
        .collect()
}

/// `restore_kv` of an `import_kv` backup: every type written back as saved (a binary
/// string, a list with a repeated item, a set, a sorted set with fractional scores, a hash),
/// with on_conflict error (refused while keys exist, 23505, nothing written), skip and
/// overwrite, a dry run; refused, with nothing written: a name that is not a key backup's
/// (22023), a file not there (58P01), on_conflict merge (22023), a dump source (0A000), an
/// archive with a flipped byte (XX001).
pub fn kv_restore_keys(cluster: &Cluster) {
    let redis = RedisServer::start(None);
    redis.pipe(&[
        args(&[
            "SET",
            "tenant:acme",
            &json!({"name": "Acme", "email": "ops@acme.io"}).to_string(),
        ]),
        args(&[
            "SET",
            &format!("tenant:{HOSTILE_QUOTE}"),
            &json!({"name": "O'Hare"}).to_string(),
        ]),
        vec![
            b"SET".to_vec(),
            b"tenant:binary".to_vec(),
            vec![0xff, 0xfe, b'{'],
        ],
        args(&["RPUSH", "tenant:listy", "a", "b", "a"]),
        args(&["SADD", "tenant:setty", "x", "y", "z"]),
        args(&["ZADD", "tenant:zetty", "1.5", "one", "-2.25", "two"]),
        args(&[
            "HSET",
            "tenant:acme:settings",
            "theme",
            "dark",
            "locale",
            "de",
        ]),
    ]);
    let mut c = fresh_db(cluster, "e2e_kv_restore");
    create_extension(&mut c);
    exec(&mut c, TABLES);
    create_source(&mut c, "legacy", &redis.url(0));
    let (_, r) = import(
        &mut c,
        "legacy",
        &mapping(),
        r#"{"backup": true, "continue_on_error": true}"#,
    );
    assert_eq!(r["backup"]["keys"], 7, "{r:#}");
    let file = r["backup"]["file"].as_str().unwrap().to_string();
    let before = store_state(&redis);
    assert_eq!(before.len(), 7, "{before:?}");

    let restore = |c: &mut Client, source: &str, file: &str, options: &str| {
        c.query_one(
            "SELECT tenant_ops.restore_kv($1, $2, $3::text::jsonb)::text",
            &[&source, &file, &options],
        )
        .map(|r| serde_json::from_str::<Value>(&r.get::<_, String>(0)).unwrap())
    };
    // Every key is there: refused under the default on_conflict, nothing written.
    assert_sqlstate(
        restore(&mut c, "legacy", &file, "{}"),
        "23505",
        "7 key(s) of key backup",
    );
    let dry = restore(&mut c, "legacy", &file, r#"{"dry_run": true}"#).unwrap();
    assert_eq!(
        (dry["keys"].as_i64(), dry["existing"].as_i64()),
        (Some(7), Some(7)),
        "{dry}"
    );

    // Some keys gone or changed: skip brings back the missing only.
    redis.cmd(&["DEL", "tenant:acme", "tenant:zetty"]);
    redis.cmd(&["RPUSH", "tenant:listy", "extra"]);
    redis.cmd(&["SET", "tenant:binary", "changed"]);
    let r = restore(&mut c, "legacy", &file, r#"{"on_conflict": "skip"}"#).unwrap();
    assert_eq!(
        (r["written"].as_i64(), r["skipped"].as_i64()),
        (Some(2), Some(5)),
        "{r}"
    );
    assert_eq!(redis.cmd(&["GET", "tenant:binary"]).trim(), "changed");
    assert_eq!(redis.cmd(&["LLEN", "tenant:listy"]).trim(), "4");
    // overwrite: every key exactly as saved.
    let r = restore(&mut c, "legacy", &file, r#"{"on_conflict": "overwrite"}"#).unwrap();
    assert_eq!(
        (r["written"].as_i64(), r["skipped"].as_i64()),
        (Some(7), Some(0)),
        "{r}"
    );
    assert_eq!(store_state(&redis), before);
    // Into an empty store: the default on_conflict has nothing to refuse.
    redis.cmd(&["FLUSHDB"]);
    let r = restore(&mut c, "legacy", &file, "{}").unwrap();
    assert_eq!(r["written"].as_i64(), Some(7), "{r}");
    assert_eq!(store_state(&redis), before);

    // The refusals, each with the store untouched.
    redis.cmd(&["FLUSHDB"]);
    assert_sqlstate(
        restore(&mut c, "legacy", "../x.tar.gz", "{}"),
        "22023",
        "is not a key backup's file name",
    );
    assert_sqlstate(
        restore(&mut c, "legacy", "tenant_ops_kv_backup_none.tar.gz", "{}"),
        "58P01",
        "key backup \"tenant_ops_kv_backup_none.tar.gz\" is not in the backup directory",
    );
    assert_sqlstate(
        restore(&mut c, "legacy", &file, r#"{"on_conflict": "merge"}"#),
        "22023",
        "cannot be \"merge\" for restore_kv",
    );
    c.query_one(
        "SELECT tenant_ops.kv_source_from_json('dump', '{\"a\": \"1\"}')",
        &[],
    )
    .unwrap();
    assert_sqlstate(
        restore(&mut c, "dump", &file, "{}"),
        "0A000",
        "writes only to a Redis server",
    );
    let dir = backup_dir(&mut c);
    // A byte flipped anywhere — in the compressed manifest, the keys, the tar's padding or the
    // gzip trailer's checksum — is damage, found before anything is written.
    let good = std::fs::read(format!("{dir}/{file}")).unwrap();
    for at in [
        good.len() / 4,
        good.len() / 2,
        good.len() * 3 / 4,
        good.len() - 6,
    ] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x40;
        std::fs::write(format!("{dir}/tenant_ops_kv_backup_damaged.tar.gz"), &bytes).unwrap();
        assert_sqlstate(
            restore(
                &mut c,
                "legacy",
                "tenant_ops_kv_backup_damaged.tar.gz",
                "{}",
            ),
            "XX001",
            "key backup \"tenant_ops_kv_backup_damaged.tar.gz\" is damaged",
        );
    }
    assert_eq!(
        redis.cmd(&["DBSIZE"]).trim(),
        "0",
        "nothing written by a refusal"
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.audit_log WHERE action = 'restore_kv' AND outcome = 'ok'"),
        4
    );
}

/// `restore_kv` losing its server midway: 50,000 keys restored in batches of 500, and once
/// the first batches are in, the server stops answering writes (`CLIENT PAUSE ... WRITE`,
/// longer than the source's 1 s read timeout). The restore fails with 08006 saying how many
/// keys it saw restored and that the batch it was writing may have been applied too (it was:
/// the paused server ran it once unpaused, which the first version of this message denied);
/// the store holds whole batches only (a multiple of 500); restoring again with on_conflict
/// "overwrite" completes it.
pub fn kv_restore_interrupted(cluster: &Cluster) {
    const KEYS: usize = 50_000;
    let redis = RedisServer::start(None);
    let commands: Vec<Vec<Vec<u8>>> = (0..KEYS)
        .map(|i| {
            args(&[
                "SET",
                &format!("tenant:t{i:05}"),
                &json!({"name": format!("Tenant {i}")}).to_string(),
            ])
        })
        .collect();
    redis.pipe(&commands);
    let mut c = fresh_db(cluster, "e2e_kv_restore_interrupted");
    create_extension(&mut c);
    exec(&mut c, TABLES);
    create_source(&mut c, "legacy", &redis.url(0));
    let (_, r) = import(&mut c, "legacy", &mapping(), r#"{"backup": true}"#);
    assert_eq!(r["backup"]["keys"], KEYS, "{r:#}");
    let file = r["backup"]["file"].as_str().unwrap().to_string();
    redis.cmd(&["FLUSHDB"]);

    let restore = |c: &mut Client, options: &str| {
        c.query_one(
            "SELECT tenant_ops.restore_kv('legacy', $1, $2::text::jsonb)::text",
            &[&file, &options],
        )
        .map(|r| serde_json::from_str::<Value>(&r.get::<_, String>(0)).unwrap())
    };
    let mut session = cluster.connect("e2e_kv_restore_interrupted");
    let file_arg = file.clone();
    let run = std::thread::spawn(move || {
        session
            .query_one(
                "SELECT tenant_ops.restore_kv('legacy', $1, '{}')::text",
                &[&file_arg],
            )
            .map(|r| r.get::<_, String>(0))
    });
    let dbsize = |r: &RedisServer| -> usize { r.cmd(&["DBSIZE"]).trim().parse().unwrap() };
    let started = std::time::Instant::now();
    while dbsize(&redis) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the restore wrote nothing in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    redis.cmd(&["CLIENT", "PAUSE", "4000", "WRITE"]);
    let result = run.join().expect("the restoring session panicked");
    redis.cmd(&["CLIENT", "UNPAUSE"]);
    let e = assert_sqlstate(
        result,
        "08006",
        "key-value source \"legacy\" stopped answering during restore_kv",
    );
    let restored = dbsize(&redis);
    assert!(
        restored > 0 && restored < KEYS && restored % 500 == 0,
        "whole batches only, and not all of them: {restored} keys in the store"
    );
    let detail = |written: usize| {
        format!(
            "{written} key(s) were restored before, in whole batches; the batch of 500 being written when it stopped answering may have been applied too, whole or not at all: no key is half written."
        )
    };
    let said = e.detail().unwrap_or_default().to_string();
    assert!(
        said == detail(restored) || said == detail(restored - 500),
        "{restored} keys in the store; the detail: {said}"
    );
    assert_eq!(
        e.hint(),
        Some("Restore again with on_conflict \"overwrite\" once the server is back: it completes the restore.")
    );
    let r = restore(&mut c, r#"{"on_conflict": "overwrite"}"#)
        .unwrap_or_else(|e| panic!("restore_kv overwrite: {}", describe_error(&e)));
    assert_eq!(r["written"].as_u64(), Some(KEYS as u64), "{r}");
    assert_eq!(dbsize(&redis), KEYS);
    assert_eq!(
        redis.cmd(&["GET", "tenant:t04242"]).trim(),
        json!({"name": "Tenant 4242"}).to_string()
    );
    drop(c);
    cluster.drop_database("e2e_kv_restore_interrupted");
}
