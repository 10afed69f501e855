//! `manifest.json`, the first entry of every export archive: what it holds, so that the
//! archive is read without the extension (and checked by `import_tenant`).

use serde::{Deserialize, Serialize};

pub use crate::backup::format::{ColumnEntry, ScopeInfo};

/// `manifest.format`: what the archive is.
pub const FORMAT: &str = "pg_tenant_ops export";
/// Bumped when a reader of the old version could misread an archive.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub extension_version: String,
    pub server_version: String,
    pub scope: ScopeInfo,
    pub tenant: String,
    pub created_at: String,
    /// `csv`, `json`, `ndjson`, `xml`, `sql` or `xlsx`.
    pub data_format: String,
    /// Parents first: the order to load in.
    pub tables: Vec<TableEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableEntry {
    pub schema: String,
    pub table: String,
    /// `root` or `owned`.
    pub role: String,
    pub columns: Vec<ColumnEntry>,
    pub rows: i64,
    /// The data file inside the archive (for XLSX the one workbook, every table's).
    pub file: String,
    /// XLSX: the table's sheet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub bytes: u64,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
}

/// The data file of the table at `index`: numbered, with the table's name made safe for
/// any file system.
pub fn data_file(index: usize, schema: &str, table: &str, extension: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect()
    };
    format!(
        "data/{:03}_{}.{}.{extension}",
        index + 1,
        safe(schema),
        safe(table)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_files_are_safe_names() {
        assert_eq!(
            super::data_file(0, "public", "Cus tömer;\"x", "csv"),
            "data/001_public.Cus_t_mer__x.csv"
        );
    }
}
