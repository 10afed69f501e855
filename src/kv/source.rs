//! The source catalog and the stores behind it.
//!
//! `tenant_ops.kv_sources` lists every source (name, kind, the URL *without* its password,
//! options) and is readable by viewers; the URL with its password and a dump's data live in
//! `tenant_ops.kv_source_secrets`, on which no role but the extension owner (a superuser) has
//! any privilege: operators use a source by name, the extension reads its secret as the
//! owner. Kinds:
//!
//! - `redis` — `redis://[user][:password@]host[:port][/db]`, blocking connections with a
//!   connect timeout and read/write timeouts (TLS is not built in);
//! - `file` — `file:name.json`, a `localStorage` dump in `tenant_ops.import_directory`
//!   (confined as the import's files are), or `file:dir/`, every `*.json` in it one user's
//!   dump named after the file;
//! - `json` — a dump given to `kv_source_from_json`, kept in the catalog.
//!
//! A dump is an object of key → string (what `localStorage` holds), or an object of dump
//! name → such an object (several users' dumps); keys of several dumps read as
//! `<dump>:<key>`, so that `{user}:settings` names one tenant per dump.

use std::time::Duration;

use pgrx::JsonB;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{Error, Result};
use super::pattern::glob_matches;
use super::value::KvValue;
use crate::error::{Common, OrRaise};
use crate::options::{self, invalid, present, Seg, Wording};
use crate::sys::owner;

/// A source's options.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceOptions {
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
    /// Keys asked of each SCAN (its COUNT) and read per pipeline.
    pub scan_count: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsDoc {
    #[serde(default, deserialize_with = "millis")]
    connect_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "millis")]
    read_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "scan_count")]
    scan_count: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    #[allow(dead_code)]
    comment: Option<String>,
}

fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    match options::json(d)? {
        Value::Number(n) if n.as_u64().is_some_and(|m| (1..=600_000).contains(&m)) => {
            Ok(n.as_u64())
        }
        other => Err(invalid(format!(
            "must be milliseconds from 1 to 600000, not {}",
            options::got(&other)
        ))),
    }
}

fn scan_count<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    match options::json(d)? {
        Value::Number(n) if n.as_u64().is_some_and(|m| (1..=100_000).contains(&m)) => {
            Ok(n.as_u64())
        }
        other => Err(invalid(format!(
            "must be a whole number from 1 to 100000, not {}",
            options::got(&other)
        ))),
    }
}

struct SourceWording;

impl Wording for SourceWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        match path.first().and_then(Seg::key) {
            Some(k) => format!("option \"{k}\""),
            None => "options".into(),
        }
    }
    fn hint(&self, path: &[Seg], problem: &options::Problem) -> Option<String> {
        match problem {
            options::Problem::UnknownField { known, .. } if path.is_empty() => Some(format!(
                "Key-value source options are: {}.",
                known.join(", ")
            )),
            _ => options::default_hint(path, problem),
        }
    }
}

impl SourceOptions {
    pub fn parse(raw: &Value) -> Result<SourceOptions> {
        let d: OptionsDoc = options::parse(raw, &SourceWording)?;
        Ok(SourceOptions {
            connect_timeout_ms: d.connect_timeout_ms.unwrap_or(2_000),
            read_timeout_ms: d.read_timeout_ms.unwrap_or(10_000),
            scan_count: d.scan_count.unwrap_or(1_000),
        })
    }
}

/// Where a source's keys are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    File,
    Json,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::File => "file",
            Kind::Json => "json",
        }
    }
}

/// A source as the catalog keeps it, its secret included (read as the owner).
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub kind: Kind,
    /// The URL as given (password included) or the file name.
    pub url: String,
    pub options: SourceOptions,
    /// A `json` source's dump.
    pub data: Option<Value>,
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Common::InvalidParameter(
            "a key-value source's name must be 1 to 200 characters and not blank".into(),
            None,
        )
        .into());
    }
    Ok(())
}

/// The URL without its password, for the readable catalog and messages.
pub fn redacted(url: &str) -> String {
    let Some(rest) = url.strip_prefix("redis://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("redis://{user}:***@{host}"),
            None => format!("redis://{auth}@{host}"),
        },
        None => url.to_string(),
    }
}

/// What `url` names: checked, never connected to.
fn kind_of(url: &str) -> Result<Kind> {
    let bad = |why: &str| Error::BadUrl {
        url: redacted(url),
        why: why.into(),
    };
    if let Some(name) = url.strip_prefix("file:") {
        if name.is_empty() {
            return Err(bad("a file source names a file (file:dump.json)"));
        }
        return Ok(Kind::File);
    }
    if url.starts_with("rediss://") {
        return Err(Error::BadUrl {
            url: redacted(url),
            why: "TLS (rediss://) is not supported by this build".into(),
        });
    }
    if !url.starts_with("redis://") {
        return Err(bad("it starts with neither redis:// nor file:"));
    }
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .map_err(|e| bad(&e.to_string()))?;
    Ok(Kind::Redis)
}

/// `create_kv_source`: a Redis server or a dump file. Returns the catalog row.
pub fn create(name: &str, url: &str, raw_options: &Value) -> Result<Value> {
    check_name(name)?;
    let options = SourceOptions::parse(raw_options)?;
    let kind = kind_of(url)?;
    if kind == Kind::File {
        // The file must be there, and a dump, now (it is read again at each use).
        read_file(name, url.trim_start_matches("file:"))?;
    }
    insert(name, &kind, url, raw_options, None)?;
    Ok(json!({"name": name, "kind": kind.as_str(), "url": redacted(url), "options": options}))
}

/// `kv_source_from_json`: a dump given as a document. Returns the number of keys.
pub fn create_from_json(name: &str, data: Value) -> Result<i64> {
    check_name(name)?;
    let dump = Dump::from_document(name, data.clone())?;
    insert(name, &Kind::Json, "json:", &json!({}), Some(data))?;
    Ok(dump.keys.len() as i64)
}

fn insert(name: &str, kind: &Kind, url: &str, options: &Value, data: Option<Value>) -> Result<()> {
    let exists = owner::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM tenant_ops.kv_sources WHERE name = $1)",
        &[name.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if exists {
        return Err(Error::DuplicateSource(name.to_string()));
    }
    owner::execute(
        "INSERT INTO tenant_ops.kv_sources (name, kind, url, options, created_by)
         VALUES ($1, $2, $3, $4, $5::name)",
        &[
            name.into(),
            kind.as_str().into(),
            redacted(url).into(),
            JsonB(options.clone()).into(),
            crate::jobs::current_user().into(),
        ],
    )
    .or_raise();
    owner::execute(
        "INSERT INTO tenant_ops.kv_source_secrets (name, url, data) VALUES ($1, $2, $3)",
        &[name.into(), url.into(), data.map(JsonB).into()],
    )
    .or_raise();
    Ok(())
}

/// `drop_kv_source`.
pub fn drop(name: &str) -> Result<()> {
    let n = owner::execute(
        "DELETE FROM tenant_ops.kv_sources WHERE name = $1",
        &[name.into()],
    )
    .or_raise();
    if n == 0 {
        return Err(Error::UnknownSource(name.to_string()));
    }
    Ok(())
}

/// The source `name`, its secret included.
pub fn load(name: &str) -> Result<Source> {
    let row = owner::get_one::<JsonB>(
        "SELECT pg_catalog.jsonb_build_object('kind', s.kind, 'url', x.url, 'options', s.options, 'data', x.data)
           FROM tenant_ops.kv_sources s JOIN tenant_ops.kv_source_secrets x USING (name)
          WHERE s.name = $1",
        &[name.into()],
    )
    .or_raise()
    .ok_or_else(|| Error::UnknownSource(name.to_string()))?
    .0;
    let kind = match row["kind"].as_str() {
        Some("redis") => Kind::Redis,
        Some("file") => Kind::File,
        _ => Kind::Json,
    };
    Ok(Source {
        name: name.to_string(),
        kind,
        url: row["url"].as_str().unwrap_or_default().to_string(),
        options: SourceOptions::parse(&row["options"])?,
        data: match &row["data"] {
            Value::Null => None,
            v => Some(v.clone()),
        },
    })
}

/// A dump's keys and values, in key order.
#[derive(Clone, Debug, Default)]
pub struct Dump {
    pub keys: Vec<(String, String)>,
    /// Several users' dumps (keys read `<dump>:<key>`).
    pub several: bool,
}

impl Dump {
    /// A `localStorage` document (see the module comment).
    pub fn from_document(source: &str, data: Value) -> Result<Dump> {
        let bad = |why: String| Error::BadDump {
            source: source.to_string(),
            why,
        };
        let Value::Object(top) = data else {
            return Err(bad(format!(
                "it is {}, not a JSON object",
                options::describe_json(&data)
            )));
        };
        let several = !top.is_empty() && top.values().all(Value::is_object);
        let mut keys = vec![];
        if several {
            for (dump, inner) in top {
                if dump.is_empty() || dump.contains(super::pattern::SEPARATOR) {
                    return Err(bad(format!(
                        "dump name \"{dump}\" is empty or holds \"{}\"",
                        super::pattern::SEPARATOR
                    )));
                }
                let Value::Object(inner) = inner else {
                    unreachable!("checked above")
                };
                for (k, v) in inner {
                    keys.push((format!("{dump}:{k}"), text_of(v)));
                }
            }
        } else {
            for (k, v) in top {
                keys.push((k, text_of(v)));
            }
        }
        keys.sort();
        Ok(Dump { keys, several })
    }

    /// Several dumps, one per file, each named after its file.
    fn from_files(source: &str, files: Vec<(String, Value)>) -> Result<Dump> {
        let mut top = Map::new();
        for (name, v) in files {
            if !v.is_object() {
                return Err(Error::BadDump {
                    source: source.to_string(),
                    why: format!("file \"{name}.json\" is not a JSON object"),
                });
            }
            top.insert(name, v);
        }
        let mut d = Dump::from_document(source, Value::Object(top))?;
        d.several = true;
        Ok(d)
    }
}

/// `localStorage` holds strings; a dump that parsed them already gives other JSON, kept as
/// its text.
fn text_of(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A `file:` source's dump: one file, or (a directory) one dump per `*.json` file in it.
fn read_file(source: &str, name: &str) -> Result<Dump> {
    let dir = crate::import::source::directory()?;
    let trimmed = name.trim_end_matches('/');
    let path =
        crate::backup::store::confined_path(&dir, trimmed).map_err(crate::import::Error::from)?;
    let parse = |p: &std::path::Path| -> Result<Value> {
        let f =
            std::fs::File::open(p).map_err(|e| crate::import::source::io_error("open", p, &e))?;
        serde_json::from_reader(std::io::BufReader::new(f)).map_err(|e| Error::BadDump {
            source: source.to_string(),
            why: format!("{} is not JSON: {e}", p.display()),
        })
    };
    let meta = std::fs::symlink_metadata(&path).map_err(|_| crate::import::Error::FileMissing {
        name: name.to_string(),
        path: path.display().to_string(),
    })?;
    if meta.is_dir() {
        let mut files = vec![];
        let entries = std::fs::read_dir(&path)
            .map_err(|e| crate::import::source::io_error("read", &path, &e))?;
        let mut names: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for p in names {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((stem, parse(&p)?));
        }
        return Dump::from_files(source, files);
    }
    let file = crate::import::source::resolve(trimmed)?;
    Dump::from_document(source, parse(&file)?)
}

/// An open store: a Redis connection, or a dump in memory.
pub enum Store {
    Redis {
        source: String,
        conn: Box<redis::Connection>,
    },
    Dump {
        dump: Dump,
        /// Keys deleted by a cleanup (a dump is never written back: its deletions are
        /// reported).
        deleted: Vec<String>,
    },
}

/// A Redis error in our words.
pub fn redis_error(source: &str, e: &redis::RedisError) -> Error {
    let why = e.to_string();
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS") | Some("NOAUTH"));
    if auth {
        Error::AuthFailed {
            source: source.to_string(),
            why,
        }
    } else if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
    {
        Error::Unreachable {
            source: source.to_string(),
            why,
        }
    } else {
        Error::Server {
            source: source.to_string(),
            why,
        }
    }
}

impl Source {
    /// Connects (Redis: with the connect timeout, then a PING under the read timeout) or
    /// reads the dump.
    pub fn open(&self) -> Result<Store> {
        match self.kind {
            Kind::Redis => {
                let e = |err: redis::RedisError| redis_error(&self.name, &err);
                let client =
                    redis::Client::open(self.url.as_str()).map_err(|err| Error::BadUrl {
                        url: redacted(&self.url),
                        why: err.to_string(),
                    })?;
                let conn = client
                    .get_connection_with_timeout(Duration::from_millis(
                        self.options.connect_timeout_ms,
                    ))
                    .map_err(e)?;
                let read = Some(Duration::from_millis(self.options.read_timeout_ms));
                conn.set_read_timeout(read).map_err(e)?;
                conn.set_write_timeout(read).map_err(e)?;
                let mut store = Store::Redis {
                    source: self.name.clone(),
                    conn: Box::new(conn),
                };
                if let Store::Redis { conn, .. } = &mut store {
                    redis::cmd("PING")
                        .query::<String>(conn.as_mut())
                        .map_err(e)?;
                }
                Ok(store)
            }
            Kind::File => Ok(Store::Dump {
                dump: read_file(&self.name, self.url.trim_start_matches("file:"))?,
                deleted: vec![],
            }),
            Kind::Json => Ok(Store::Dump {
                dump: Dump::from_document(&self.name, self.data.clone().unwrap_or(Value::Null))?,
                deleted: vec![],
            }),
        }
    }
}

impl Store {
    /// One SCAN step: the keys matching `glob` from `cursor`, and the next cursor (0: done).
    /// A dump's cursor is a position in its sorted keys.
    pub fn scan(&mut self, cursor: u64, glob: &str, count: u64) -> Result<(u64, Vec<Vec<u8>>)> {
        match self {
            Store::Redis { source, conn } => {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(glob)
                    .arg("COUNT")
                    .arg(count)
                    .query(conn.as_mut())
                    .map_err(|e| redis_error(source, &e))?;
                Ok((next, keys))
            }
            Store::Dump { dump, .. } => {
                let start = cursor as usize;
                let end = (start + count as usize).min(dump.keys.len());
                let keys = dump.keys[start.min(end)..end]
                    .iter()
                    .filter(|(k, _)| glob_matches(glob, k))
                    .map(|(k, _)| k.as_bytes().to_vec())
                    .collect();
                Ok((
                    if end >= dump.keys.len() {
                        0
                    } else {
                        end as u64
                    },
                    keys,
                ))
            }
        }
    }

    /// The values of `keys`, pipelined: their TYPEs in one round trip, then each read with
    /// the command of its type in a second.
    pub fn read(&mut self, keys: &[Vec<u8>]) -> Result<Vec<KvValue>> {
        match self {
            Store::Redis { source, conn } => super::value::read_redis(source, conn.as_mut(), keys),
            Store::Dump { dump, .. } => Ok(keys
                .iter()
                .map(|k| {
                    let k = String::from_utf8_lossy(k);
                    match dump.keys.binary_search_by(|(d, _)| d.as_str().cmp(&k)) {
                        Ok(i) => KvValue::String(dump.keys[i].1.clone().into_bytes()),
                        Err(_) => KvValue::Missing,
                    }
                })
                .collect()),
        }
    }

    /// Deletes `keys` (cleanup); a dump records them only. Returns how many were there.
    pub fn delete(&mut self, keys: &[String]) -> Result<i64> {
        if keys.is_empty() {
            return Ok(0);
        }
        match self {
            Store::Redis { source, conn } => redis::cmd("DEL")
                .arg(keys)
                .query::<i64>(conn.as_mut())
                .map_err(|e| redis_error(source, &e)),
            Store::Dump { dump, deleted } => {
                let before = dump.keys.len();
                dump.keys.retain(|(k, _)| !keys.contains(k));
                deleted.extend(keys.iter().cloned());
                Ok((before - dump.keys.len()) as i64)
            }
        }
    }

    /// Whether the store is a Redis server (writable) rather than a dump.
    pub fn is_redis(&self) -> bool {
        matches!(self, Store::Redis { .. })
    }
}
