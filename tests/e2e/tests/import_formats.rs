//! import_data on XLSX workbooks written by rust_xlsxwriter (real files: typed cells, date
//! formats, formulas with error results, several sheets, a zip bomb built from one) and on
//! SQL files written by the real pg_dump (`--inserts`, `--column-inserts`, multi-row).

use std::io::{Read, Write};
use std::process::Command;

use pg_tenant_ops_e2e::postgres::Client;
use pg_tenant_ops_e2e::{assert_sqlstate, assert_sqlstate_hint, describe_error, Cluster};
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};

use crate::common::{create_extension, exec, fresh_db, scalar};

/// import_data_bytes that must succeed: its job's result.
#[track_caller]
fn import_bytes(c: &mut Client, target: &str, data: &[u8], options: &str) -> serde_json::Value {
    let job: i64 = match c.query_one(
        "SELECT tenant_ops.import_data_bytes($1::text::regclass, $2, 'auto', $3::text::jsonb)",
        &[&target, &data, &options],
    ) {
        Ok(r) => r.get(0),
        Err(e) => panic!(
            "import_data_bytes({target}, {options}): {}",
            describe_error(&e)
        ),
    };
    job_result(c, job)
}

fn job_result(c: &mut Client, job: i64) -> serde_json::Value {
    let r: String = c
        .query_one(
            "SELECT result::text FROM tenant_ops.jobs WHERE id = $1",
            &[&job],
        )
        .unwrap()
        .get(0);
    serde_json::from_str(&r).unwrap()
}

fn try_import_bytes(
    c: &mut Client,
    target: &str,
    data: &[u8],
    options: &str,
) -> Result<i64, pg_tenant_ops_e2e::postgres::Error> {
    c.query_one(
        "SELECT tenant_ops.import_data_bytes($1::text::regclass, $2, 'auto', $3::text::jsonb)",
        &[&target, &data, &options],
    )
    .map(|r| r.get(0))
}

/// Writes `data` into the import directory as `name`, by the server (lo_export).
fn put_file(c: &mut Client, name: &str, data: &[u8]) {
    let _ = c.query_one("SELECT tenant_ops.import_data('pg_class', 'none.csv')", &[]);
    let dir: String = c
        .query_one(
            "SELECT current_setting('data_directory') || '/pg_tenant_ops_imports'",
            &[],
        )
        .unwrap()
        .get(0);
    let lo: u32 = c
        .query_one("SELECT lo_from_bytea(0, $1)", &[&data])
        .unwrap()
        .get(0);
    c.execute("SELECT lo_export($1, $2)", &[&lo, &format!("{dir}/{name}")])
        .unwrap_or_else(|e| panic!("writing {name}: {}", describe_error(&e)));
    c.execute("SELECT lo_unlink($1)", &[&lo]).unwrap();
}

/// The workbook of the XLSX tests: a "Notes" sheet first, then "People" (a title, an empty
/// row, the header on row 3, typed cells, an empty row, bad rows), "Plain" (no header) and
/// "Wide" (a cell beyond the target's columns).
fn workbook() -> Vec<u8> {
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let stamp = Format::new().set_num_format("yyyy-mm-dd hh:mm");
    let notes = wb.add_worksheet().set_name("Notes").unwrap();
    notes.write_string(0, 0, "not data").unwrap();
    let p = wb.add_worksheet().set_name("People").unwrap();
    p.write_string(0, 0, "Quarterly export").unwrap();
    for (i, h) in ["id", "name", "price", "active", "born", "seen", "note"]
        .iter()
        .enumerate()
    {
        p.write_string(2, i as u16, *h).unwrap();
    }
    // Row 4: typed cells, date cells.
    p.write_number(3, 0, 1).unwrap();
    p.write_string(3, 1, "Ann").unwrap();
    p.write_number(3, 2, 3.5).unwrap();
    p.write_boolean(3, 3, true).unwrap();
    p.write_datetime_with_format(3, 4, ExcelDateTime::from_ymd(2024, 3, 5).unwrap(), &date)
        .unwrap();
    p.write_datetime_with_format(
        3,
        5,
        ExcelDateTime::from_ymd(2024, 3, 5)
            .unwrap()
            .and_hms(10, 30, 0)
            .unwrap(),
        &stamp,
    )
    .unwrap();
    p.write_string(3, 6, "x;y 'q'").unwrap();
    // Row 5: text that converts (boolean words, DD.MM.YYYY), an Excel serial as a plain number.
    p.write_number(4, 0, 2).unwrap();
    p.write_string(4, 1, "Bob").unwrap();
    p.write_number(4, 2, 10).unwrap();
    p.write_string(4, 3, "yes").unwrap();
    p.write_string(4, 4, "05.03.2024").unwrap();
    p.write_number(4, 5, 45356.5).unwrap();
    // Row 6 empty. Row 7: a formula whose cached result is an error.
    p.write_number(6, 0, 3).unwrap();
    p.write_string(6, 1, "Cem").unwrap();
    p.write_formula(6, 2, Formula::new("=1/0").set_result("#DIV/0!"))
        .unwrap();
    p.write_number(6, 6, 42).unwrap();
    // Row 8: an empty name (NOT NULL). Row 9: a date that does not exist. Row 10: 4.5 as id.
    p.write_number(7, 0, 4).unwrap();
    p.write_string(7, 1, "").unwrap();
    p.write_number(8, 0, 6).unwrap();
    p.write_string(8, 1, "Fay").unwrap();
    p.write_string(8, 4, "31.02.2024").unwrap();
    p.write_number(9, 0, 4.5).unwrap();
    p.write_string(9, 1, "Gus").unwrap();
    // Row 11: fine, a number as Excel's serial date in a date column.
    p.write_number(10, 0, 5).unwrap();
    p.write_string(10, 1, "Eve").unwrap();
    p.write_number(10, 2, 2.25).unwrap();
    p.write_boolean(10, 3, false).unwrap();
    p.write_number(10, 4, 32875).unwrap();
    p.write_string(10, 6, "last").unwrap();
    let plain = wb.add_worksheet().set_name("Plain").unwrap();
    plain.write_number(0, 0, 1).unwrap();
    plain.write_string(0, 1, "x").unwrap();
    plain
        .write_datetime_with_format(0, 2, ExcelDateTime::from_ymd(1999, 12, 31).unwrap(), &date)
        .unwrap();
    plain.write_number(1, 0, 2).unwrap();
    plain.write_string(1, 1, "y").unwrap();
    let wide = wb.add_worksheet().set_name("Wide").unwrap();
    wide.write_string(0, 0, "a").unwrap();
    wide.write_number(2, 3, 9).unwrap();
    wb.save_to_buffer().unwrap()
}

/// `bytes` with the zip part `name` replaced by `content`.
fn replace_part(bytes: &[u8], name: &str, content: &[u8]) -> Vec<u8> {
    let mut zin = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let part = f.name().unwrap().to_string();
        let mut data = vec![];
        f.read_to_end(&mut data).unwrap();
        out.start_file(part.as_str(), opts).unwrap();
        out.write_all(if part == name { content } else { &data })
            .unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn people(c: &mut Client) -> String {
    c.query_one(
        "SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s', id, name, price, active, born, seen, note), E'\\n' ORDER BY id) FROM xl.\"Peo ple\"",
        &[],
    )
    .unwrap()
    .get(0)
}

pub fn import_xlsx_workbook(cluster: &Cluster) {
    let db = "e2e_import_xlsx";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    exec(
        &mut c,
        "SET DateStyle = 'ISO, DMY'; CREATE SCHEMA xl;
         CREATE TABLE xl.\"Peo ple\" (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2),
             active boolean, born date, seen timestamp, note text)",
    );
    let book = workbook();
    let target = "xl.\"Peo ple\"";
    // By name, the header on row 3, refused rows kept by their row numbers.
    let r = import_bytes(
        &mut c,
        target,
        &book,
        r#"{"sheet": "People", "header_row": 3, "continue_on_error": true}"#,
    );
    assert_eq!(
        (
            r["format"].as_str(),
            r["format_detected"].as_bool(),
            r["sheet"].as_str(),
            r["records"].as_i64(),
            r["rows_written"].as_i64(),
            r["rows_refused"].as_i64()
        ),
        (
            Some("xlsx"),
            Some(true),
            Some("People"),
            Some(7),
            Some(3),
            Some(4)
        ),
        "{r}"
    );
    assert_eq!(
        r["fields"],
        serde_json::json!(["id", "name", "price", "active", "born", "seen", "note"])
    );
    assert_eq!(
        people(&mut c),
        "1|Ann|3.50|t|2024-03-05|2024-03-05 10:30:00|x;y 'q'\n\
         2|Bob|10.00|t|2024-03-05|2024-03-05 12:00:00|\n\
         5|Eve|2.25|f|1990-01-02||last",
    );
    let refused: Vec<(String, String, String)> = c
        .query(
            "SELECT source_key, sqlstate, reason FROM tenant_ops.job_errors ORDER BY source_key::int",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        refused,
        [
            (
                "7".to_string(),
                "22000".to_string(),
                "field \"price\": cell C7 holds the error #DIV/0!".to_string()
            ),
            (
                "8".into(),
                "23502".into(),
                "null value in column \"name\" of relation \"Peo ple\" violates not-null constraint"
                    .into()
            ),
            (
                "9".into(),
                "22007".into(),
                "column \"born\": \"31.02.2024\" is not a date".into()
            ),
            (
                "10".into(),
                "22P02".into(),
                "column \"id\": \"4.5\" is not an integer".into()
            ),
        ],
        "refused rows by XLSX row"
    );
    // By number, as a dry run: the same counts, nothing written.
    exec(&mut c, "TRUNCATE xl.\"Peo ple\"");
    let r = import_bytes(
        &mut c,
        target,
        &book,
        r#"{"sheet": 2, "header_row": 3, "dry_run": true}"#,
    );
    assert_eq!(
        (
            r["records"].as_i64(),
            r["rows_written"].as_i64(),
            r["rows_refused"].as_i64()
        ),
        (Some(7), Some(3), Some(4)),
        "dry run of sheet 2: {r}"
    );
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM xl.\"Peo ple\""), 0);
    // No header: the target's columns by position, from column A.
    exec(&mut c, "CREATE TABLE xl.plain (a int, b text, c date)");
    let r = import_bytes(
        &mut c,
        "xl.plain",
        &book,
        r#"{"sheet": "Plain", "header": false}"#,
    );
    assert_eq!(r["rows_written"].as_i64(), Some(2), "{r}");
    let got: String = c
        .query_one(
            "SELECT string_agg(concat_ws('|', a, b, c), ';' ORDER BY a) FROM xl.plain",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(got, "1|x|1999-12-31;2|y");
    // A file in the import directory, named .xlsx.
    put_file(&mut c, "people.xlsx", &book);
    let job: i64 = c
        .query_one(
            "SELECT tenant_ops.import_data('xl.\"Peo ple\"', 'people.xlsx', 'xlsx', '{\"sheet\": \"People\", \"header_row\": 3, \"continue_on_error\": true}')",
            &[],
        )
        .unwrap()
        .get(0);
    let r = job_result(&mut c, job);
    assert_eq!(
        (r["format_detected"].as_bool(), r["rows_written"].as_i64()),
        (Some(false), Some(3)),
        "{r}"
    );

    // Bad input, each with its SQLSTATE and message.
    let e = try_import_bytes(&mut c, target, &book, r#"{"sheet": "Nope"}"#);
    assert_sqlstate_hint(
        e,
        "22023",
        "the workbook has no sheet \"Nope\"",
        "Its sheets are: \"Notes\", \"People\", \"Plain\", \"Wide\".",
    );
    let e = try_import_bytes(&mut c, target, &book, r#"{"sheet": 9}"#);
    assert_sqlstate(e, "22023", "the workbook has no sheet number 9 (it has 4)");
    let e = try_import_bytes(&mut c, target, &book, r#"{"sheet": 0}"#);
    assert_sqlstate(
        e,
        "22023",
        "invalid options: option \"sheet\" must be a sheet's name or its number (from 1), not 0",
    );
    let e = try_import_bytes(&mut c, target, &book, r#"{"header_row": 0}"#);
    assert_sqlstate(
        e,
        "22023",
        "invalid options: option \"header_row\" must be a row number from 1 to 1048576, not 0",
    );
    let e = try_import_bytes(
        &mut c,
        target,
        &book,
        r#"{"header_row": 2, "header": false}"#,
    );
    assert_sqlstate(
        e,
        "22023",
        "invalid options: option \"header_row\" names the header's row, and \"header\" is false",
    );
    let e = try_import_bytes(
        &mut c,
        target,
        &book,
        r#"{"sheet": "People", "header_row": 2}"#,
    );
    assert_sqlstate_hint(
        e,
        "22P04",
        "line 2 of the file is malformed: the header row is empty",
        "The first row with a value below it is row 3.",
    );
    let e = try_import_bytes(&mut c, target, &book, r#"{"encoding": "windows-1252"}"#);
    assert_sqlstate(
        e,
        "22023",
        "invalid options: option \"encoding\" does not apply to XLSX",
    );
    let e = try_import_bytes(
        &mut c,
        "xl.plain",
        &book,
        r#"{"sheet": "Wide", "header": false, "dry_run": true}"#,
    );
    assert_sqlstate(
        e,
        "22P04",
        "line 3 of the file is malformed: cell D3 is beyond the 3 columns of the target (A to C)",
    );
    let e = try_import_bytes(&mut c, "xl.plain", &book, r#"{"sheet": "Wide"}"#);
    assert_sqlstate(
        e,
        "22P04",
        "line 3 of the file is malformed: cell D3 is outside the header's columns A to A",
    );
    let mut broken = b"PK\x03\x04".to_vec();
    broken.extend_from_slice(&[7u8; 200]);
    let e = try_import_bytes(&mut c, target, &broken, "{}");
    assert_sqlstate(e, "22P04", "the file is not a readable XLSX workbook: ");

    // Size limits: the file, and a zip bomb (a part that unpacks far beyond its size).
    let mut shared = vec![];
    zip::ZipArchive::new(std::io::Cursor::new(&book))
        .unwrap()
        .by_name("xl/sharedStrings.xml")
        .unwrap()
        .read_to_end(&mut shared)
        .unwrap();
    let at = shared.windows(2).position(|w| w == b"?>").unwrap() + 2;
    let mut padded = shared[..at].to_vec();
    padded.extend(std::iter::repeat_n(b' ', 2_000_000));
    padded.extend_from_slice(&shared[at..]);
    let bomb = replace_part(&book, "xl/sharedStrings.xml", &padded);
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {}", bomb.len());
    let mut big = Workbook::new();
    let ws = big.add_worksheet();
    let mut x: u64 = 1;
    for row in 0..8000u32 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ws.write_string(row, 0, format!("{x:016x}{:016x}", x.rotate_left(17)))
            .unwrap();
    }
    let big = big.save_to_buffer().unwrap();
    assert!(big.len() > 64 * 1024, "the big file is big: {}", big.len());
    exec(&mut c, "SET tenant_ops.import_xlsx_max_size = '64kB'");
    let e = try_import_bytes(&mut c, target, &big, "{}");
    assert_sqlstate_hint(
        e,
        "54000",
        "the XLSX file is larger than tenant_ops.import_xlsx_max_size (65536 bytes)",
        "Save the sheet as CSV",
    );
    let e = try_import_bytes(&mut c, target, &bomb, "{}");
    assert_sqlstate(
        e,
        "54000",
        &format!(
            "part \"xl/sharedStrings.xml\" of the workbook unpacks to {} bytes, more than tenant_ops.import_xlsx_max_size (65536 bytes)",
            padded.len()
        ),
    );
    exec(&mut c, "RESET tenant_ops.import_xlsx_max_size");
    // Within the limit the same (valid) workbook reads.
    let r = import_bytes(
        &mut c,
        target,
        &bomb,
        r#"{"sheet": "People", "header_row": 3, "dry_run": true}"#,
    );
    assert_eq!(r["records"].as_i64(), Some(7), "{r}");
    // The limit is a superuser's.
    exec(&mut c, "CREATE ROLE xl_user");
    exec(&mut c, "SET ROLE xl_user");
    let e = c.batch_execute("SET tenant_ops.import_xlsx_max_size = '1GB'");
    assert_sqlstate(
        e,
        "42501",
        "permission denied to set parameter \"tenant_ops.import_xlsx_max_size\"",
    );
    exec(&mut c, "RESET ROLE; DROP ROLE xl_user");
    drop(c);
    cluster.drop_database(db);
}

fn checksum(c: &mut Client, table: &str) -> (i64, String) {
    let r = c
        .query_one(
            &format!("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM {table} t"),
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// A table of awkward values dumped by the real pg_dump (`--inserts`, `--column-inserts`,
/// several rows per INSERT, `--on-conflict-do-nothing`), emptied and loaded back from each
/// dump through import_data: the same rows by checksum.
pub fn import_sql_from_pg_dump(cluster: &Cluster) {
    let db = "e2e_import_sql";
    let mut c = fresh_db(cluster, db);
    create_extension(&mut c);
    let table = "\"Sq l\".\"Dump;ed\"";
    exec(
        &mut c,
        &format!(
            "CREATE SCHEMA \"Sq l\";
             CREATE TABLE {table} (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text,
                 note text, price numeric, ok boolean, at timestamptz, tags int[], doc jsonb,
                 raw bytea, big bigint, f float8, up text GENERATED ALWAYS AS (upper(name)) STORED);
             INSERT INTO {table} (name, note, price, ok, at, tags, doc, raw, big, f) VALUES
               ('Ann', 'semi;colon ''quote'' $$dollar$$ -- not a comment /* nor this */', 1.5, true,
                '2024-03-05 10:00+02', '{{1,2}}', '{{\"a\": [1, \"x;y\"]}}', '\\x00ff', 9007199254740993, 'NaN'),
               ('Bob', E'two\\nlines\\\\back\\ttab', NULL, false, NULL, NULL, NULL, NULL, -1, '-Infinity'),
               ('Ünï', '', -0.001, NULL, '1999-12-31 23:59:59.5+00', '{{}}', 'null', '\\x', NULL, 1e-300);
             INSERT INTO {table} (name, note, price, big)
               SELECT 'n' || g, repeat(';', g % 5), g / 7.0, g::bigint * 1000000000 FROM generate_series(1, 200) g"
        ),
    );
    let want = checksum(&mut c, table);
    assert_eq!(want.0, 203);
    for (i, args) in [
        vec!["--inserts"],
        vec!["--column-inserts"],
        vec!["--inserts", "--rows-per-insert=7"],
        vec!["--column-inserts", "--on-conflict-do-nothing"],
    ]
    .into_iter()
    .enumerate()
    {
        let out = Command::new(cluster.bin("pg_dump"))
            .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string()])
            .args(["-U", "postgres", "-d", db, "--data-only", "-t", table])
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_dump: {e}"));
        assert!(
            out.status.success(),
            "pg_dump {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = out.stdout;
        assert!(
            String::from_utf8_lossy(&dump).contains("INSERT INTO \"Sq l\".\"Dump;ed\""),
            "pg_dump {args:?} wrote INSERTs"
        );
        let file = format!("dump{i}.sql");
        put_file(&mut c, &file, &dump);
        exec(&mut c, &format!("TRUNCATE {table}"));
        let job: i64 = c
            .query_one(
                "SELECT tenant_ops.import_data($1::text::regclass, $2, 'auto')",
                &[&table, &file],
            )
            .unwrap_or_else(|e| panic!("import of pg_dump {args:?}: {}", describe_error(&e)))
            .get(0);
        let r = job_result(&mut c, job);
        assert_eq!(
            (r["format"].as_str(), r["rows_written"].as_i64()),
            (Some("sql"), Some(203)),
            "pg_dump {args:?}: {r}"
        );
        assert_eq!(
            checksum(&mut c, table),
            want,
            "pg_dump {args:?} loaded back: the same rows"
        );
    }
    // A dump with a DROP TABLE slipped in is refused, naming the line; nothing is written.
    exec(&mut c, &format!("TRUNCATE {table}"));
    let text = format!(
        "-- PostgreSQL database dump\nINSERT INTO {table} OVERRIDING SYSTEM VALUE VALUES (1, 'a');\nDROP TABLE {table};\n"
    );
    let e = try_import_bytes(&mut c, table, text.as_bytes(), "{}");
    assert_sqlstate(
        e,
        "42501",
        "line 3 of the file is refused: a DROP TABLE statement",
    );
    assert_eq!(scalar(&mut c, &format!("SELECT count(*) FROM {table}")), 0);
    drop(c);
    cluster.drop_database(db);
}
