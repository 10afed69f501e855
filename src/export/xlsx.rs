//! XLSX exports: one workbook, a sheet per table (rust_xlsxwriter in its constant-memory
//! mode: each sheet's rows go to a temporary file as they are written, so memory stays flat
//! whatever the tenant's size). Row 1 holds the column names; integers (within ±2^53) are
//! numbers, booleans booleans, NULL an empty cell, everything else a text cell exactly as
//! PostgreSQL prints it — but the empty string, which is an empty cell too (Excel has no
//! empty text cell), so `import_tenant` reads it back as NULL.

use std::path::Path;

use rust_xlsxwriter::{Formula, Workbook, XlsxError};

use super::error::{Error, Result};
use super::format::{Kind, TableMeta};

/// The most rows a sheet holds (the header row takes one of Excel's 1,048,576).
const MAX_ROWS: u32 = 1_048_575;

pub struct XlsxWriter {
    book: Workbook,
    rows: Vec<u32>,
}

/// A sheet name Excel accepts: at most 31 characters, none of `[]:*?/\`, unique (a number
/// in front).
pub fn sheet_name(index: usize, table: &str) -> String {
    let clean: String = table
        .chars()
        .map(|c| if "[]:*?/\\'".contains(c) { '_' } else { c })
        .collect();
    format!("{:03}_{clean}", index + 1)
        .chars()
        .take(31)
        .collect()
}

fn xlsx_error(e: XlsxError) -> Error {
    Error::Io {
        message: format!("could not write the workbook: {e}"),
        disk_full: false,
    }
}

impl XlsxWriter {
    /// A workbook with one sheet per table (its header row written); temporary files go to
    /// `temp_dir`.
    pub fn new(tables: &[TableMeta], temp_dir: &Path) -> Result<XlsxWriter> {
        let mut book = Workbook::new();
        book.set_tempdir(temp_dir).map_err(xlsx_error)?;
        for (i, t) in tables.iter().enumerate() {
            let sheet = book
                .add_worksheet_with_constant_memory()
                .map_err(xlsx_error)?;
            sheet
                .set_name(sheet_name(i, &t.table))
                .map_err(xlsx_error)?;
            // The only formulas written are the empty strings' (see `row`): their result is
            // "" (rust_xlsxwriter would otherwise record an empty result as 0).
            sheet.set_formula_result_default("");
            for (c, name) in t.columns.iter().enumerate() {
                sheet
                    .write_string(0, c as u16, name)
                    .map_err(|e| too_large(t, name, 0, e))?;
            }
        }
        Ok(XlsxWriter {
            book,
            rows: vec![0; tables.len()],
        })
    }

    pub fn row(&mut self, index: usize, t: &TableMeta, fields: &[Option<&str>]) -> Result<()> {
        self.rows[index] += 1;
        let row = self.rows[index];
        if row > MAX_ROWS {
            return Err(Error::TooLarge {
                message: format!("{} has more rows than an XLSX sheet holds ({MAX_ROWS})", t.qualified),
                hint: "Export that table in another format, or in parts (\"tables\" with fewer tables).".into(),
            });
        }
        let sheet = self.book.worksheet_from_index(index).map_err(xlsx_error)?;
        for (c, f) in fields.iter().enumerate() {
            let Some(v) = f else { continue };
            let col = c as u16;
            let written = match t.kinds[c] {
                // Excel has no empty text cell (rust_xlsxwriter writes nothing for ""), so
                // the empty string is the formula ="" with its result "": a text cell that
                // reads back as "" (Excel shows it empty), apart from NULL's missing cell.
                _ if v.is_empty() => sheet.write_formula(row, col, Formula::new("=\"\"")),
                Kind::Integer => match v.parse::<i64>() {
                    Ok(n) if n.unsigned_abs() < (1u64 << 53) => {
                        sheet.write_number(row, col, n as f64)
                    }
                    _ => sheet.write_string(row, col, *v),
                },
                Kind::Boolean if *v == "true" || *v == "false" => {
                    sheet.write_boolean(row, col, *v == "true")
                }
                _ => sheet.write_string(row, col, *v),
            };
            written.map_err(|e| too_large(t, &t.columns[c], row, e))?;
        }
        Ok(())
    }

    pub fn save(mut self, path: &Path) -> Result<()> {
        self.book.save(path).map_err(xlsx_error)
    }
}

fn too_large(t: &TableMeta, column: &str, row: u32, e: XlsxError) -> Error {
    match e {
        XlsxError::MaxStringLengthExceeded => Error::TooLarge {
            message: format!(
                "a value of column \"{column}\" of {} (row {}) is longer than an XLSX cell holds (32,767 characters)",
                t.qualified, row + 1
            ),
            hint: "Export that table in another format, or leave the column out (\"tables\": {...: {\"columns\": [...]}}).".into(),
        },
        other => xlsx_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_excels() {
        assert_eq!(sheet_name(0, "customer"), "001_customer");
        assert_eq!(sheet_name(11, "a/b[c]"), "012_a_b_c_");
        assert_eq!(sheet_name(2, &"x".repeat(40)).chars().count(), 31);
    }
}
