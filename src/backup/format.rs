//! The backup file format: open, so that a backup is readable without the extension.
//!
//! A gzip-compressed tar archive holding, in this order:
//! - `manifest.json` — [`Manifest`]: format version, extension and server versions, the scope
//!   (name, root table, tenant key), the tenant, when, and per table its name, columns with
//!   their types, row count and the SHA-256 of its data file;
//! - `restore.sql` — a psql script that loads the data files with `\copy`, parents first
//!   (how to restore with no extension at all; see the README);
//! - `data/NNN.copy` — one file per table in PostgreSQL's COPY text format (tab-separated,
//!   `\N` for NULL, backslash escapes), the columns in manifest order.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `manifest.format`: what the archive is.
pub const FORMAT: &str = "pg_tenant_ops backup";
/// `manifest.format_version`: bumped when a reader of the old version could misread a file.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const RESTORE_SCRIPT: &str = "restore.sql";
/// The role of an incremental's entries holding the keys deleted from a table.
pub const DELETED: &str = "deleted";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub extension_version: String,
    pub server_version: String,
    pub scope: ScopeInfo,
    pub tenant: String,
    pub created_at: String,
    /// Whether the shared rows the tenant references are included.
    pub shared: bool,
    /// Parents first: the order to load in. In an incremental, the rows upserted per table,
    /// then (role `deleted`) the keys deleted per table, each table's primary key columns.
    pub tables: Vec<TableEntry>,
    /// A base backup taken with `"capture": true`: the change capture its incrementals read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<i64>,
    /// An incremental backup: its place in its chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Link>,
}

/// An incremental backup's place in its chain (see `backup::incremental`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Link {
    /// The base backup of the chain.
    pub base: i64,
    /// The link before this one (the base for the first incremental).
    pub previous: i64,
    /// The previous link's file SHA-256, as registered when this one was taken.
    pub previous_sha256: String,
    /// 1 for the first incremental after the base, then 2, 3...
    pub link: i32,
    /// The change capture read.
    pub capture: i64,
    /// Change records consumed, and the range of their sequence numbers (0, 0 for none).
    pub changes: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    /// The tenant's whole state at this link's snapshot, per table (parents first): what a
    /// restore of the chain up to here is verified against.
    pub state: Vec<TableState>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableState {
    pub schema: String,
    pub table: String,
    pub rows: i64,
    /// Order-independent digest of the rows (see `RowsDigest`), hex.
    pub rows_digest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScopeInfo {
    pub name: String,
    /// The root table's schema and name, as in the catalog.
    pub root_schema: String,
    pub root_table: String,
    pub tenant_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableEntry {
    pub schema: String,
    pub table: String,
    /// `root`, `owned` or `shared`.
    pub role: String,
    pub columns: Vec<ColumnEntry>,
    pub rows: i64,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
    /// Order-independent digest of the rows (see `RowsDigest`), hex: what a restore's
    /// verification compares the restored rows with.
    pub rows_digest: String,
    /// The data file's path inside the archive.
    pub file: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ColumnEntry {
    pub name: String,
    /// As declared, with modifiers, schema-qualified where not in pg_catalog.
    #[serde(rename = "type")]
    pub type_: String,
}

/// The data file of the table at `index`.
pub fn data_file(index: usize) -> String {
    format!("data/{:03}.copy", index + 1)
}

/// Appends one row as a COPY text line: fields escaped, tab-separated, `\N` for NULL.
pub fn write_line<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = Option<&'a str>>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match f {
            None => out.extend_from_slice(b"\\N"),
            Some(v) => {
                for &b in v.as_bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        _ => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

/// The fields of one COPY text line (without its newline), unescaped; `None` for `\N`.
/// Errors name what is wrong; the caller adds where.
pub fn parse_line(line: &[u8], columns: usize) -> Result<Vec<Option<String>>, String> {
    let mut fields = Vec::with_capacity(columns);
    for raw in line.split(|&b| b == b'\t') {
        if raw == b"\\N" {
            fields.push(None);
            continue;
        }
        let mut v = Vec::with_capacity(raw.len());
        let mut it = raw.iter();
        while let Some(&b) = it.next() {
            if b != b'\\' {
                v.push(b);
                continue;
            }
            match it.next() {
                Some(b'\\') => v.push(b'\\'),
                Some(b'n') => v.push(b'\n'),
                Some(b'r') => v.push(b'\r'),
                Some(b't') => v.push(b'\t'),
                Some(&c) => return Err(format!("unknown escape \\{}", c as char)),
                None => return Err("a field ends in a lone backslash".into()),
            }
        }
        fields.push(Some(
            String::from_utf8(v).map_err(|_| "a field is not valid UTF-8".to_string())?,
        ));
    }
    if fields.len() != columns {
        return Err(format!(
            "{} fields where the manifest lists {columns} columns",
            fields.len()
        ));
    }
    Ok(fields)
}

/// Lowercase hex of bytes (a digest, an HMAC, a key backup's binary string value).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running SHA-256.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn hex(self) -> String {
        hex(&self.0.finalize())
    }
}

/// A writer that hashes what passes through it and counts the bytes.
pub struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Hasher,
    pub bytes: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The psql script that restores the archive's data without the extension: `\copy` of each
/// data file into its table, parents first, in one transaction (run from the directory the
/// archive was extracted into). The tenant's current rows must be gone first (the README says
/// how).
pub fn restore_script(m: &Manifest) -> String {
    if let Some(l) = &m.incremental {
        return format!(
            "-- Incremental backup (link {} of the chain of base backup {}) of tenant {} of scope {}:\n\
             -- per table the rows changed since backup {} (data files of role owned/root) and the\n\
             -- keys deleted (role deleted). tenant_ops.restore_backup applies the chain from its base.\n\
             \\echo 'An incremental backup: restore it with tenant_ops.restore_backup(id).'\n\\quit\n",
            l.link,
            l.base,
            sql_comment(&m.tenant),
            sql_comment(&m.scope.name),
            l.previous
        );
    }
    let mut s = format!(
        "-- Restores the backup of tenant {} of scope {} without pg_tenant_ops:\n\
         --   tar xzf <backup>.tar.gz && psql -v ON_ERROR_STOP=1 -f restore.sql <database>\n\
         -- Tables are loaded parents first, in one transaction.\n\\set ON_ERROR_STOP 1\nBEGIN;\n",
        sql_comment(&m.tenant),
        sql_comment(&m.scope.name)
    );
    for t in &m.tables {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| crate::pg::quote_ident(&c.name))
            .collect();
        s.push_str(&format!(
            "\\copy {} ({}) FROM '{}'\n",
            crate::pg::qualified(&t.schema, &t.table),
            cols.join(", "),
            t.file
        ));
    }
    s.push_str("COMMIT;\n");
    s
}

fn sql_comment(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest written before incrementals (no `capture`, no `incremental`) reads, and
    /// writes back byte for byte the same: the registered and in-file manifests of old backups
    /// still compare equal.
    #[test]
    fn manifest_without_chain_fields_round_trips() {
        let old = r#"{"format":"pg_tenant_ops backup","format_version":1,"extension_version":"0.1.0",
            "server_version":"15","scope":{"name":"s","root_schema":"a","root_table":"t","tenant_key":"id"},
            "tenant":"1","created_at":"2026-01-01T00:00:00Z","shared":false,"tables":[]}"#;
        let m: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!(m.capture, None);
        assert_eq!(m.incremental, None);
        let back: serde_json::Value = serde_json::to_value(&m).unwrap();
        let orig: serde_json::Value = serde_json::from_str(old).unwrap();
        assert_eq!(back, orig);
        // (restore_script quotes names with PostgreSQL's quote_identifier: not in a plain
        // #[test], whose binary links without the server.)
    }

    #[test]
    fn lines_round_trip() {
        let fields = [
            Some("a\tb\\c\nd\re"),
            None,
            Some(""),
            Some("\\N"),
            Some("ünï"),
        ];
        let mut out = vec![];
        write_line(&mut out, fields.iter().copied());
        assert_eq!(
            out,
            b"a\\tb\\\\c\\nd\\re\t\\N\t\t\\\\N\t\xc3\xbcn\xc3\xaf\n"
        );
        let parsed = parse_line(&out[..out.len() - 1], 5).unwrap();
        assert_eq!(
            parsed,
            fields
                .iter()
                .map(|f| f.map(str::to_string))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse_line(b"a\tb", 3).unwrap_err(),
            "2 fields where the manifest lists 3 columns"
        );
        assert_eq!(parse_line(b"a\\x", 1).unwrap_err(), "unknown escape \\x");
        assert_eq!(
            parse_line(b"a\\", 1).unwrap_err(),
            "a field ends in a lone backslash"
        );
    }

    #[test]
    fn sha256_is_standard() {
        let mut h = Hasher::default();
        h.update(b"abc");
        assert_eq!(
            h.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
