//! Backups end to end, on real files: a damaged file (a flipped byte, a truncation, a
//! swapped table file, a manifest edited by hand) is detected and named, and a restore of it
//! changes nothing; a backup restores with no extension at all (tar and psql, the README's
//! recipe); a backup taken while another session inserts parent-then-child pairs never holds
//! a child without its parent (one snapshot); a background backup whose worker is killed
//! ends with one complete, verified backup and no stray files; a background restore whose
//! worker is killed leaves the tenant as it was or restored, and ends restored; an encrypted
//! backup is decrypted by the age tool.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, Cluster, Interruption};

use crate::common::*;
use crate::migration::{dispatch_db, job_status};

/// `create_backup(scope, tenant, options)` inline: the backup id.
pub(crate) fn backup(c: &mut Client, tenant: &str, options: &str) -> i64 {
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.create_backup('dispatch', $1, $2::text::jsonb)",
            &[&tenant, &options],
        )
        .unwrap_or_else(|e| panic!("create_backup: {}", pg_tenant_ops_e2e::describe_error(&e)))
        .get(0);
    backup_of_job(c, job)
}

fn backup_of_job(c: &mut Client, job: i64) -> i64 {
    c.query_one(
        "SELECT (result ->> 'backup_id')::int8 FROM tenant_ops.jobs WHERE id = $1",
        &[&job],
    )
    .unwrap()
    .get(0)
}

/// The backup directory and the file of backup `id`.
pub(crate) fn file_of(c: &mut Client, id: i64) -> PathBuf {
    let row = c
        .query_one(
            "SELECT current_setting('data_directory') || '/pg_tenant_ops_backups/db_' || (SELECT oid FROM pg_database WHERE datname = current_database()), file_name
               FROM tenant_ops.backups WHERE id = $1",
            &[&id],
        )
        .unwrap();
    Path::new(&row.get::<_, String>(0)).join(row.get::<_, String>(1))
}

fn backup_dir(c: &mut Client) -> PathBuf {
    let dir: String = c
        .query_one(
            "SELECT current_setting('data_directory') || '/pg_tenant_ops_backups/db_' || (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    PathBuf::from(dir)
}

/// Per dispatch table: the office's row count and an md5 of its rows in key order.
///
/// Sorted by table: the branches of a UNION ALL come back in no set order (a parallel append
/// runs them in several workers and returns each row as its branch finishes), and two readings
/// of the same rows must compare equal.
pub(crate) fn office_sums(c: &mut Client, office: i32) -> Vec<(String, i64, String)> {
    let mut sums: Vec<(String, i64, String)> = c.query(
        "SELECT 'offices', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM legacy.dispatch_offices x WHERE id = $1
         UNION ALL SELECT 'doctors', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM legacy.dispatch_doctors x WHERE office_id = $1
         UNION ALL SELECT 'patients', count(*), md5(string_agg(p::text, '|' ORDER BY p.id)) FROM legacy.dispatch_patients p
                   JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = $1
         UNION ALL SELECT 'orders', count(*), md5(string_agg(o::text, '|' ORDER BY o.id)) FROM legacy.dispatch_orders o
                   JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = $1
         UNION ALL SELECT 'order_items', count(*), md5(string_agg(i::text, '|' ORDER BY i.order_id, i.line_no)) FROM legacy.dispatch_order_items i
                   JOIN legacy.dispatch_orders o ON o.id = i.order_id JOIN legacy.dispatch_patients p ON p.id = o.patient_id
                   JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = $1",
        &[&office],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get::<_, Option<String>>(2).unwrap_or_default()))
    .collect();
    sums.sort();
    sums
}

/// Deletes one office's rows by hand, children first.
pub(crate) fn delete_office(c: &mut Client, office: i32) {
    c.batch_execute(&format!(
        "DELETE FROM legacy.dispatch_order_items i USING legacy.dispatch_orders o, legacy.dispatch_patients p, legacy.dispatch_doctors d
          WHERE o.id = i.order_id AND p.id = o.patient_id AND d.id = p.doctor_id AND d.office_id = {office};
         DELETE FROM legacy.dispatch_orders o USING legacy.dispatch_patients p, legacy.dispatch_doctors d
          WHERE p.id = o.patient_id AND d.id = p.doctor_id AND d.office_id = {office};
         DELETE FROM legacy.dispatch_patients p USING legacy.dispatch_doctors d WHERE d.id = p.doctor_id AND d.office_id = {office};
         UPDATE legacy.dispatch_doctors SET supervisor_id = NULL WHERE office_id = {office};
         DELETE FROM legacy.dispatch_doctors WHERE office_id = {office};
         DELETE FROM legacy.dispatch_offices WHERE id = {office};"
    ))
    .unwrap();
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Extracts the archive into a fresh directory.
fn extract(file: &Path, into: &Path) {
    let _ = fs::remove_dir_all(into);
    fs::create_dir_all(into).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(file)
        .arg("-C")
        .arg(into));
}

/// Re-packs an extracted archive in the manifest's order into `file`, and registers the new
/// file's size and SHA-256 (as someone who also edits the catalog would): what is left to
/// catch the damage is the manifest and the per-table checksums.
fn repack(c: &mut Client, id: i64, dir: &Path, file: &Path) {
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut names = vec!["manifest.json".to_string(), "restore.sql".to_string()];
    for t in manifest["tables"].as_array().unwrap() {
        names.push(t["file"].as_str().unwrap().to_string());
    }
    run(Command::new("tar")
        .arg("-czf")
        .arg(file)
        .arg("-C")
        .arg(dir)
        .args(&names));
    register_file_as_is(c, id, file);
}

fn register_file_as_is(c: &mut Client, id: i64, file: &Path) {
    let bytes = fs::read(file).unwrap();
    let size = bytes.len() as i64;
    c.execute(
        "UPDATE tenant_ops.backups SET size_bytes = $2, sha256 = encode(sha256($3), 'hex') WHERE id = $1",
        &[&id, &size, &bytes],
    )
    .unwrap();
}

pub fn backup_damage_is_detected(cluster: &Cluster) {
    let db = "e2e_backup_damage";
    let mut c = dispatch_db(cluster, db, 1);
    let id = backup(&mut c, "2", "{}");
    let file = file_of(&mut c, id);
    let pristine = fs::read(&file).unwrap();
    let before = office_sums(&mut c, 2);
    let verified: serde_json::Value = c
        .query_one("SELECT tenant_ops.verify_backup($1)::text", &[&id])
        .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
        .unwrap();
    assert_eq!(
        verified["verified"], true,
        "a fresh backup verifies: {verified}"
    );
    let verify = |c: &mut Client| c.query_one("SELECT tenant_ops.verify_backup($1)", &[&id]);
    let restore = |c: &mut Client| c.query_one("SELECT tenant_ops.restore_backup($1)", &[&id]);

    // a flipped byte
    let mut flipped = pristine.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    fs::write(&file, &flipped).unwrap();
    assert_sqlstate(
        verify(&mut c),
        "XX001",
        "the file's checksum does not match",
    );
    delete_some(&mut c);
    let damaged_now = office_sums(&mut c, 2);
    assert_sqlstate(
        restore(&mut c),
        "XX001",
        "the file's checksum does not match",
    );
    assert_eq!(
        office_sums(&mut c, 2),
        damaged_now,
        "a refused restore changes nothing"
    );

    // a truncated file
    fs::write(&file, &pristine[..pristine.len() - 100]).unwrap();
    assert_sqlstate(
        verify(&mut c),
        "XX001",
        "the file's checksum does not match",
    );

    // the manifest edited by hand (a row count), the file re-registered
    let work = Path::new(cluster.work_dir()).join("backup_damage");
    fs::write(&file, &pristine).unwrap();
    extract(&file, &work);
    let text = fs::read_to_string(work.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["tables"][2]["rows"] = serde_json::json!(m["tables"][2]["rows"].as_i64().unwrap() - 1);
    fs::write(
        work.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    repack(&mut c, id, &work, &file);
    assert_sqlstate(
        verify(&mut c),
        "XX001",
        "its manifest differs from the one registered",
    );

    // two table files swapped
    fs::write(&file, &pristine).unwrap();
    extract(&file, &work);
    let (a, b) = (work.join("data/002.copy"), work.join("data/003.copy"));
    let tmp = work.join("swap");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    repack(&mut c, id, &work, &file);
    assert_sqlstate(verify(&mut c), "XX001", "of legacy.dispatch_doctors");
    assert_sqlstate(restore(&mut c), "XX001", "of legacy.dispatch_doctors");
    assert_eq!(
        office_sums(&mut c, 2),
        damaged_now,
        "a refused restore changes nothing"
    );

    // the pristine file again: the restore brings office 2 back exactly
    fs::write(&file, &pristine).unwrap();
    register_file_as_is(&mut c, id, &file);
    c.query_one("SELECT tenant_ops.restore_backup($1)", &[&id])
        .unwrap();
    assert_eq!(office_sums(&mut c, 2), before, "office 2 after the restore");
}

/// Damages office 2 a little: a deleted order item and a changed patient.
fn delete_some(c: &mut Client) {
    c.batch_execute(
        "DELETE FROM legacy.dispatch_order_items WHERE (order_id, line_no) IN (
             SELECT i.order_id, i.line_no FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id
               JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
              WHERE d.office_id = 2 LIMIT 1);
         UPDATE legacy.dispatch_patients SET full_name = 'changed' WHERE id = (
             SELECT min(p.id) FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 2);",
    )
    .unwrap();
}

/// The README's recipe: tar and psql, no extension.
pub fn backup_restores_without_the_extension(cluster: &Cluster) {
    let db = "e2e_backup_plain";
    let mut c = dispatch_db(cluster, db, 1);
    let before = office_sums(&mut c, 3);
    let other = office_sums(&mut c, 1);
    let id = backup(&mut c, "3", "{}");
    let file = file_of(&mut c, id);
    let work = Path::new(cluster.work_dir()).join("backup_plain");
    extract(&file, &work);
    delete_office(&mut c, 3);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM legacy.dispatch_offices WHERE id = $1::text::int",
            "3"
        ),
        0
    );
    // psql -f restore.sql from the directory the archive was extracted into
    let mut psql = Command::new(cluster.bin("psql"));
    psql.current_dir(&work)
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(cluster.port().to_string())
        .args(["-v", "ON_ERROR_STOP=1", "-f", "restore.sql", db]);
    run(&mut psql);
    assert_eq!(
        office_sums(&mut c, 3),
        before,
        "office 3 restored by tar and psql alone"
    );
    assert_eq!(office_sums(&mut c, 1), other, "office 1 untouched");
}

/// A session inserts a doctor then a patient of it (two transactions) in a loop while
/// backups are taken: no backup may hold a patient whose doctor it lacks.
pub fn backup_is_one_snapshot(cluster: &Cluster) {
    let db = "e2e_backup_snapshot";
    let mut c = dispatch_db(cluster, db, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let inserter = {
        let stop = stop.clone();
        let mut w = cluster.connect(db);
        thread::spawn(move || {
            let mut pairs = 0;
            while !stop.load(Ordering::Relaxed) {
                let doctor: i32 = w
                    .query_one(
                        "INSERT INTO legacy.dispatch_doctors (id, office_id, full_name)
                         SELECT max(id) + 1, 1, 'new' FROM legacy.dispatch_doctors RETURNING id",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                w.execute(
                    "INSERT INTO legacy.dispatch_patients (id, doctor_id, full_name)
                     SELECT max(id) + 1, $1, 'new' FROM legacy.dispatch_patients",
                    &[&doctor],
                )
                .unwrap();
                pairs += 1;
            }
            pairs
        })
    };
    let work = Path::new(cluster.work_dir()).join("backup_snapshot");
    for round in 0..4 {
        let id = backup(&mut c, "1", "{}");
        extract(&file_of(&mut c, id), &work);
        let manifest: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(work.join("manifest.json")).unwrap()).unwrap();
        let file_of_table = |name: &str| {
            manifest["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["table"] == name)
                .map(|t| work.join(t["file"].as_str().unwrap()))
                .unwrap()
        };
        let first_column = |path: PathBuf, col: usize| -> Vec<String> {
            fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| l.split('\t').nth(col).unwrap().to_string())
                .collect()
        };
        let doctors: std::collections::BTreeSet<String> =
            first_column(file_of_table("dispatch_doctors"), 0)
                .into_iter()
                .collect();
        let patients = first_column(file_of_table("dispatch_patients"), 1);
        let orphans: Vec<&String> = patients.iter().filter(|d| !doctors.contains(*d)).collect();
        assert!(
            orphans.is_empty(),
            "backup {id} (round {round}) holds patients of {} doctors it lacks, e.g. {:?}",
            orphans.len(),
            &orphans[..orphans.len().min(3)]
        );
    }
    stop.store(true, Ordering::Relaxed);
    let pairs = inserter.join().unwrap();
    assert!(pairs > 0, "the inserter inserted pairs during the backups");
}

/// `kill -9` of the worker running a background backup: the job is retried and ends with one
/// complete, verified backup; no temporary file is left.
pub fn backup_survives_worker_kill9(cluster: &Cluster) {
    let db = "e2e_backup_kill9";
    let mut c = dispatch_db(cluster, db, 10);
    let dir = backup_dir(&mut c);
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.create_backup('dispatch', '1', '{}', background => true)",
            &[],
        )
        .unwrap()
        .get(0);
    // The worker, once it is writing (a temporary file of ours exists).
    let worker: i32 = until("the backup worker writing", Duration::from_secs(60), || {
        let pid: Option<i32> = c
            .query_one(
                "SELECT worker_pid FROM tenant_ops.jobs WHERE id = $1",
                &[&job],
            )
            .unwrap()
            .get(0);
        let writing = fs::read_dir(&dir).ok()?.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".tenant_ops_backup_")
        });
        pid.filter(|_| writing)
    });
    drop(c);
    cluster.interrupt(Interruption::Kill9, worker);
    let mut c = cluster.connect(db);
    assert_eq!(
        wait_for(&mut c, job, 180.0),
        "succeeded",
        "backup job {job} after kill -9"
    );
    let backups: Vec<i64> = c
        .query("SELECT id FROM tenant_ops.backups", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(backups.len(), 1, "one backup registered: {backups:?}");
    c.query_one("SELECT tenant_ops.verify_backup($1)", &[&backups[0]])
        .unwrap();
    let files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let name: String = c
        .query_one("SELECT file_name FROM tenant_ops.backups", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        files,
        vec![name],
        "the backup directory holds the one backup, nothing else"
    );
}

/// Resets `tenant_ops.backup_encryption_key` (ALTER SYSTEM, reload) when dropped: whether
/// the test passes or panics, the cluster's other tests see no key.
struct KeyReset<'a> {
    cluster: &'a Cluster,
    db: &'a str,
}

impl Drop for KeyReset<'_> {
    fn drop(&mut self) {
        let mut c = self.cluster.connect(self.db);
        let _ = c.batch_execute("ALTER SYSTEM RESET tenant_ops.backup_encryption_key_file");
        let _ = c.batch_execute("SELECT pg_reload_conf()");
        let _ = until_setting(&mut c, "tenant_ops.backup_encryption_key_file", "");
    }
}

/// Points `tenant_ops.backup_encryption_key_file` at `path` (ALTER SYSTEM, one statement a
/// call: it runs outside a transaction block) and waits until the reload reached this session.
fn set_key_file(c: &mut Client, path: &Path) {
    let path = path.to_string_lossy();
    c.batch_execute(&format!(
        "ALTER SYSTEM SET tenant_ops.backup_encryption_key_file = {}",
        pg_tenant_ops_e2e::quote_literal(&path)
    ))
    .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    until_setting(c, "tenant_ops.backup_encryption_key_file", &path);
}

/// Waits until the reloaded setting `name` reads `want` in this session.
fn until_setting(c: &mut Client, name: &str, want: &str) -> String {
    until(&format!("{name} reloaded"), Duration::from_secs(10), || {
        let v: String = c
            .query_one("SELECT current_setting($1)", &[&name])
            .ok()?
            .get(0);
        (v == want).then_some(v)
    })
}

/// With `tenant_ops.backup_encryption_key` set (ALTER SYSTEM, reload) to a key made by
/// `age-keygen`, a backup is `age(tar.gz)` (`.tar.gz.age`); the standard `age` tool decrypts
/// it into the archive (manifest first, the registered manifest), the extension verifies and
/// restores it; with the key reset, verify and restore are refused (28000), nothing changed.
pub fn backup_encrypted_age_interop(cluster: &Cluster) {
    let db = "e2e_backup_age";
    let mut c = dispatch_db(cluster, db, 1);
    let work = Path::new(cluster.work_dir()).join("backup_age");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let keyfile = work.join("key.txt");
    run(Command::new("age-keygen").arg("-o").arg(&keyfile));
    let key = fs::read_to_string(&keyfile)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("age-keygen writes an identity")
        .to_string();
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let _reset = KeyReset { cluster, db };
    let log_start = cluster.log_len();
    // The server-wide key is a file the server alone reads (the setting holds its path: what
    // PostgreSQL logs on a reload). One the group may read is refused, naming it.
    let server_key = work.join("server key 'ü'.txt");
    fs::copy(&keyfile, &server_key).unwrap();
    cluster.give_to_server(&server_key);
    fs::set_permissions(&server_key, fs::Permissions::from_mode(0o640)).unwrap();
    let backups_before = scalar(&mut c, "SELECT count(*) FROM tenant_ops.backups");
    let missing = work.join("no such key.txt");
    set_key_file(&mut c, &missing);
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.create_backup('dispatch', '3')", &[]),
        "58030",
        "no such key.txt\": No such file or directory",
    );
    set_key_file(&mut c, &server_key);
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.create_backup('dispatch', '3')", &[]),
        "22023",
        "key 'ü'.txt\" can be read by group or others",
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.backups"),
        backups_before,
        "a refused backup registers nothing"
    );
    fs::set_permissions(&server_key, fs::Permissions::from_mode(0o600)).unwrap();

    let before = office_sums(&mut c, 3);
    let id = backup(&mut c, "3", "{}");
    let file = file_of(&mut c, id);
    assert!(
        file.to_string_lossy().ends_with(".tar.gz.age"),
        "{file:?} is named as encrypted"
    );
    let (encrypted, manifest): (bool, serde_json::Value) = {
        let row = c
            .query_one(
                "SELECT encrypted, manifest::text FROM tenant_ops.backups WHERE id = $1",
                &[&id],
            )
            .unwrap();
        (
            row.get(0),
            serde_json::from_str(row.get::<_, &str>(1)).unwrap(),
        )
    };
    assert!(encrypted);
    assert!(fs::read(&file)
        .unwrap()
        .starts_with(b"age-encryption.org/v1\n"));
    // the standard tool decrypts it: a gzip tar, manifest first
    let listing = run(Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; age -d -i \"$1\" \"$2\" | tar tz")
        .arg("sh")
        .arg(&keyfile)
        .arg(&file));
    let names: Vec<&str> = listing.lines().collect();
    let tables = manifest["tables"].as_array().unwrap().len();
    assert_eq!(names.first(), Some(&"manifest.json"), "{listing}");
    assert_eq!(names.get(1), Some(&"restore.sql"), "{listing}");
    assert_eq!(names.len(), 2 + tables, "{listing}");
    let plain = work.join("plain.tar.gz");
    run(Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&keyfile)
        .arg("-o")
        .arg(&plain)
        .arg(&file));
    let extracted = work.join("x");
    extract(&plain, &extracted);
    let in_file: serde_json::Value =
        serde_json::from_slice(&fs::read(extracted.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        in_file, manifest,
        "the decrypted manifest is the registered one"
    );

    // the extension reads it back with the key
    let verified: bool = c
        .query_one(
            "SELECT (tenant_ops.verify_backup($1) ->> 'encrypted')::bool",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(verified);
    delete_office(&mut c, 3);
    c.query_one("SELECT tenant_ops.restore_backup($1)", &[&id])
        .unwrap_or_else(|e| panic!("restore: {}", pg_tenant_ops_e2e::describe_error(&e)));
    assert_eq!(office_sums(&mut c, 3), before, "office 3 restored");

    // the README's psql one-liners: download, drop, upload in chunks, verify
    let psql = format!(
        "{} -X -h 127.0.0.1 -U postgres -p {} -d {db}",
        cluster.bin("psql").display(),
        cluster.port()
    );
    let download = format!(
        "{psql} -At -c \"SELECT encode(tenant_ops.read_backup({id}, o, 8388608), 'base64')
           FROM generate_series(0, (SELECT size_bytes FROM tenant_ops.backups WHERE id = {id}), 8388608) o
           ORDER BY o\" | base64 -d > down.tar.gz.age"
    );
    run(Command::new("bash")
        .current_dir(&work)
        .arg("-c")
        .arg(&download));
    assert_eq!(
        fs::read(work.join("down.tar.gz.age")).unwrap(),
        fs::read(&file).unwrap()
    );
    c.query_one("SELECT tenant_ops.drop_backup($1)", &[&id])
        .unwrap();
    let upload = format!(
        "set -e; split -b 2000 down.tar.gz.age part.; for p in part.*; do
           {{ printf \"SELECT tenant_ops.load_backup_chunk('up7', decode('\"; base64 -w0 \"$p\"; printf \"', 'base64'));\\n\"; }} | {psql} -Atq -v ON_ERROR_STOP=1 >/dev/null
         done; {psql} -At -v ON_ERROR_STOP=1 -c \"SELECT tenant_ops.load_backup_finish('up7')\""
    );
    let loaded: i64 = run(Command::new("bash")
        .current_dir(&work)
        .arg("-c")
        .arg(&upload))
    .trim()
    .parse()
    .unwrap();
    let (encrypted, same): (bool, bool) = {
        let row = c
            .query_one(
                "SELECT b.encrypted, b.manifest = $2::text::jsonb FROM tenant_ops.backups b WHERE id = $1",
                &[&loaded, &manifest.to_string()],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        encrypted && same,
        "the uploaded backup is the same, encrypted"
    );
    let id = loaded;

    // without the key: refused, nothing changed
    c.batch_execute("ALTER SYSTEM RESET tenant_ops.backup_encryption_key_file")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    until_setting(&mut c, "tenant_ops.backup_encryption_key_file", "");
    delete_office(&mut c, 3);
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.verify_backup($1)", &[&id]),
        "28000",
        "is encrypted and no backup encryption key is set",
    );
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.restore_backup($1)", &[&id]),
        "28000",
        "is encrypted and no backup encryption key is set",
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM legacy.dispatch_offices WHERE id = $1::text::int",
            "3"
        ),
        0,
        "a refused restore changes nothing"
    );
    // The key never reached the server log (the path did, on each reload).
    let log = cluster.log_since(log_start, usize::MAX);
    assert!(
        !log.contains("AGE-SECRET-KEY"),
        "the server log holds no key: {log}"
    );
    assert!(
        log.contains("tenant_ops.backup_encryption_key_file"),
        "{log}"
    );
}
/// `kill -9` of the worker running a background restore: the restore is one transaction, so
/// the tenant is either as it was or fully restored; the job is retried and ends restored.
pub fn restore_survives_worker_kill9(cluster: &Cluster) {
    let db = "e2e_restore_kill9";
    let mut c = dispatch_db(cluster, db, 10);
    let before = office_sums(&mut c, 1);
    let id = backup(&mut c, "1", "{}");
    delete_some_of_office_1(&mut c);
    let damaged = office_sums(&mut c, 1);
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.restore_backup($1, '{}', background => true)",
            &[&id],
        )
        .unwrap()
        .get(0);
    let worker: i32 = until(
        "the restore worker running",
        Duration::from_secs(60),
        || {
            c.query_one(
                "SELECT worker_pid FROM tenant_ops.jobs WHERE id = $1 AND status = 'running'",
                &[&job],
            )
            .ok()
            .and_then(|r| r.get::<_, Option<i32>>(0))
        },
    );
    drop(c);
    cluster.interrupt(Interruption::Kill9, worker);
    let mut c = cluster.connect(db);
    let now = office_sums(&mut c, 1);
    assert!(
        now == damaged || now == before,
        "right after the kill the tenant is as it was or fully restored"
    );
    assert_eq!(
        wait_for(&mut c, job, 180.0),
        "succeeded",
        "restore job {job} after kill -9"
    );
    assert_eq!(office_sums(&mut c, 1), before, "office 1 fully restored");
}

fn delete_some_of_office_1(c: &mut Client) {
    c.batch_execute(
        "DELETE FROM legacy.dispatch_order_items i USING legacy.dispatch_orders o, legacy.dispatch_patients p, legacy.dispatch_doctors d
          WHERE o.id = i.order_id AND p.id = o.patient_id AND d.id = p.doctor_id AND d.office_id = 1 AND i.line_no = 1",
    )
    .unwrap();
}

/// A full disk and a directory the server cannot write: each a clear error (53100 naming the
/// file; 58030 naming the directory), no backup registered, no file left behind; the next
/// backup into a sound directory works.
///
/// The full disk is real: a 256 kB tmpfs mounted as the backup directory when we are root,
/// else the backend's file size limit (`prlimit --fsize`: writes beyond it fail with EFBIG,
/// the same error path).
pub fn backup_disk_full_or_unwritable(cluster: &Cluster) {
    let db = "e2e_backup_disk_full";
    let mut c = dispatch_db(cluster, db, 1);
    let work = Path::new(cluster.work_dir()).join("backup_disk_full");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let registered = |c: &mut Client| scalar(c, "SELECT count(*) FROM tenant_ops.backups");
    let leftovers = |dir: &Path| -> Vec<String> {
        walk(dir)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect()
    };

    // Unwritable: the server's OS user may enter the directory but not write into it.
    let ro = work.join("read only");
    fs::create_dir_all(&ro).unwrap();
    cluster.give_to_server(&ro);
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    c.batch_execute(&format!(
        "SET tenant_ops.backup_directory = {}",
        pg_tenant_ops_e2e::quote_literal(&ro.to_string_lossy())
    ))
    .unwrap();
    assert_sqlstate(
        c.query_one("SELECT tenant_ops.create_backup('dispatch', '1')", &[]),
        "58030",
        "could not create the backup directory",
    );
    assert_eq!(registered(&mut c), 0, "nothing registered");
    assert_eq!(leftovers(&ro), Vec::<String>::new());

    // Full: the spool of office 1's rows (about 1 MB) does not fit.
    let full = work.join("full");
    fs::create_dir_all(&full).unwrap();
    let mounted = pg_tenant_ops_e2e::running_as_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k,mode=0700"])
            .arg("tmpfs")
            .arg(&full)
            .status()
            .is_ok_and(|s| s.success());
    let _unmount = Unmount(mounted.then(|| full.clone()));
    cluster.give_to_server(&full);
    c.batch_execute(&format!(
        "SET tenant_ops.backup_directory = {}",
        pg_tenant_ops_e2e::quote_literal(&full.to_string_lossy())
    ))
    .unwrap();
    let (state, message) = if mounted {
        ("53100", "No space left on device")
    } else {
        let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        run(Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg("--fsize=262144"));
        ("58030", "File too large")
    };
    let err = c
        .query_one("SELECT tenant_ops.create_backup('dispatch', '1')", &[])
        .expect_err("a backup into a full directory fails");
    let text = pg_tenant_ops_e2e::describe_error(&err);
    assert_eq!(
        err.code().map(|s| s.code()),
        Some(state),
        "SQLSTATE of: {text}"
    );
    assert!(
        text.contains(message) && text.contains(&*full.to_string_lossy()),
        "the error names the file and the cause: {text}"
    );
    assert_eq!(registered(&mut c), 0, "nothing registered");
    assert_eq!(
        leftovers(&full),
        Vec::<String>::new(),
        "no file left behind"
    );

    // A sound directory again: the backup is made and verifies.
    c.batch_execute("RESET tenant_ops.backup_directory")
        .unwrap();
    let mut c = cluster.connect(db);
    let id = backup(&mut c, "1", "{}");
    let ok: bool = c
        .query_one(
            "SELECT (tenant_ops.verify_backup($1) ->> 'verified')::bool",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(ok, "the next backup verifies");
}

/// Every file below `dir` (directories themselves left out).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Unmount(Option<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = Command::new("umount").arg(p).status();
        }
    }
}

/// Chunks of one upload are as transactional as the catalog: a chunk whose transaction rolls
/// back is cut off again, and calls on one upload take turns (a finish waits for the session
/// still sending the last chunk, then registers the whole file).
pub fn upload_chunks_are_transactional(cluster: &Cluster) {
    let db = "e2e_upload_chunks";
    let mut c = dispatch_db(cluster, db, 1);
    let id = backup(&mut c, "3", "{}");
    let bytes = fs::read(file_of(&mut c, id)).unwrap();
    let third = bytes.len() / 3;
    let (p1, rest) = bytes.split_at(third);
    let (p2, p3) = rest.split_at(third);
    let name = "up-1";
    let chunk_named = |c: &mut Client, data: &[u8]| -> i64 {
        c.query_one(
            "SELECT tenant_ops.load_backup_chunk($1, $2)",
            &[&name, &data],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("chunk: {}", pg_tenant_ops_e2e::describe_error(&e)))
    };
    // (a bad name first: refused before anything is written)
    assert_sqlstate(
        c.query_one(
            "SELECT tenant_ops.load_backup_chunk('up 1'::text, '\\x00')",
            &[],
        ),
        "22023",
        "\"up 1\" is not an upload name",
    );
    assert_eq!(chunk_named(&mut c, p1), p1.len() as i64);
    // a chunk rolled back is not in the upload
    c.batch_execute("BEGIN").unwrap();
    assert_eq!(chunk_named(&mut c, p2), (p1.len() + p2.len()) as i64);
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(chunk_named(&mut c, p2), (p1.len() + p2.len()) as i64);
    // a finish waits for the session still sending the last chunk
    c.batch_execute("BEGIN").unwrap();
    assert_eq!(chunk_named(&mut c, p3), bytes.len() as i64);
    let finisher = {
        let mut other = cluster.connect(db);
        thread::spawn(move || -> i64 {
            other
                .query_one("SELECT tenant_ops.load_backup_finish('up-1')", &[])
                .map(|r| r.get(0))
                .unwrap_or_else(|e| panic!("finish: {}", pg_tenant_ops_e2e::describe_error(&e)))
        })
    };
    until(
        "the finish waits on the upload's lock",
        Duration::from_secs(10),
        || {
            // Inside a transaction the activity view is read once and kept: clear that
            // snapshot on every poll, or a finisher not yet waiting at the first is never seen.
            c.batch_execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
                .unwrap();
            let waiting: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'
                    AND wait_event = 'advisory' AND query LIKE '%load_backup_finish%'",
                    &[],
                )
                .unwrap()
                .get(0);
            (waiting == 1).then_some(())
        },
    );
    c.batch_execute("COMMIT").unwrap();
    let loaded = finisher.join().unwrap();
    let same: bool = c
        .query_one(
            "SELECT a.sha256 = b.sha256 AND a.size_bytes = b.size_bytes FROM tenant_ops.backups a, tenant_ops.backups b
              WHERE a.id = $1 AND b.id = $2",
            &[&id, &loaded],
        )
        .unwrap()
        .get(0);
    assert!(same, "the upload is the whole file, once");
}

/// A background backup and a background restore are one step each, one transaction: their
/// progress shows in tenant_ops.progress before they commit, from what the step posts in
/// shared memory (the rows with bytes_done). Each is held by another session's lock, so the
/// watcher sees it mid-way, deterministically: the backup has read every order and waits
/// for order_items (locked ACCESS EXCLUSIVE, the last table); the restore has staged every
/// order item (the file's last table) and waits to delete one the other session holds FOR
/// UPDATE. Once the jobs end, nothing is posted any more.
pub fn progress_live_before_commit(cluster: &Cluster) {
    let db = "e2e_backup_live_progress";
    let mut c = dispatch_db(cluster, db, 2);
    let office = "JOIN legacy.dispatch_patients p ON p.id = o.patient_id
                  JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = 1";
    let orders = scalar(
        &mut c,
        &format!("SELECT count(*) FROM legacy.dispatch_orders o {office}"),
    );
    let items = scalar(
        &mut c,
        &format!("SELECT count(*) FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id {office}"),
    );
    assert!(
        orders > 1000 && items > orders,
        "office 1: {orders} orders, {items} items"
    );
    let live = |c: &mut Client, job: i64, table: &str| -> Option<(i64, i64)> {
        c.query_opt(
            "SELECT rows_done, bytes_done FROM tenant_ops.progress
              WHERE job_id = $1 AND table_name = $2::text::regclass AND bytes_done IS NOT NULL",
            &[&job, &table],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
    };
    let mut blocker = cluster.connect(db);
    let mut held = |c: &mut Client, lock: &str, start: &str, table: &str, rows: i64| {
        blocker.batch_execute(&format!("BEGIN; {lock}")).unwrap();
        let job: i64 = c.query_one(start, &[]).unwrap().get(0);
        let (_, bytes) = until(
            &format!("job {job} posting {rows} rows of {table}"),
            Duration::from_secs(60),
            || live(c, job, table).filter(|(done, _)| *done == rows),
        );
        assert_eq!(job_status(c, job), "running", "job {job} still running");
        blocker.batch_execute("COMMIT").unwrap();
        assert_eq!(wait_for(c, job, 120.0), "succeeded", "job {job}");
        assert_eq!(
            live(c, job, table),
            None,
            "job {job}: nothing live once committed"
        );
        (job, bytes)
    };
    let (backup_job, bytes) = held(
        &mut c,
        "LOCK legacy.dispatch_order_items IN ACCESS EXCLUSIVE MODE",
        "SELECT tenant_ops.create_backup('dispatch', '1', '{}', background => true)",
        "legacy.dispatch_orders",
        orders,
    );
    assert!(
        bytes > orders * 10,
        "backup: bytes_done {bytes} for {orders} orders"
    );
    let id = backup_of_job(&mut c, backup_job);
    let (_, bytes) = held(
        &mut c,
        &format!("SELECT FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id {office} LIMIT 1 FOR UPDATE OF i"),
        &format!("SELECT tenant_ops.restore_backup({id}, '{{}}', background => true)"),
        "legacy.dispatch_order_items",
        items,
    );
    assert!(
        bytes > items * 5,
        "restore: bytes_done {bytes} for {items} items"
    );
    assert_eq!(
        scalar(&mut c, "SELECT count(*) FROM tenant_ops.live_progress()"),
        0,
        "every slot free"
    );
}
