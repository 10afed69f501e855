//! A batch's prepared values, as the writers (`copy::write`, `load::insert`) read them: row
//! by row, one text (or NULL) per column filled from a field. [`Cells`] is what they need;
//! [`Rows`] is the import's own store of them: every value's text in one buffer kept across
//! batches, not a `String` per value (at a million rows of seven fields, the allocations were
//! a tenth of the import's time). Key-value imports keep their arrays of strings, which
//! are `Cells` too. No pgrx here.

/// Values by row and column.
pub trait Cells {
    /// How many rows.
    fn rows(&self) -> usize;
    /// How many columns (batch arrays).
    fn width(&self) -> usize;
    /// The value of column `col` (a batch array, from 0) in row `row`; `None` is NULL.
    fn cell(&self, row: usize, col: usize) -> Option<&str>;
    /// Whether no value holds a byte COPY text escapes (a backslash, a tab, a line end):
    /// then the values are copied into COPY text as they are, without a look at each.
    fn plain(&self) -> bool {
        false
    }
}

/// One array of texts per column (the key-value imports' batches).
impl Cells for [Vec<Option<String>>] {
    fn rows(&self) -> usize {
        self.first().map_or(0, Vec::len)
    }

    fn width(&self) -> usize {
        self.len()
    }

    fn cell(&self, row: usize, col: usize) -> Option<&str> {
        self[col][row].as_deref()
    }
}

impl Cells for Vec<Vec<Option<String>>> {
    fn rows(&self) -> usize {
        self.as_slice().rows()
    }

    fn width(&self) -> usize {
        self.len()
    }

    fn cell(&self, row: usize, col: usize) -> Option<&str> {
        self.as_slice().cell(row, col)
    }
}

/// Rows of `width` values, their text side by side in one buffer.
#[derive(Debug, Default)]
pub struct Rows {
    width: usize,
    text: String,
    /// Per value, row after row: its bytes in `text`, `None` for NULL.
    spans: Vec<Option<(usize, usize)>>,
}

impl Rows {
    pub fn new(width: usize, rows: usize) -> Rows {
        Rows {
            width,
            text: String::with_capacity(rows * 16 * width),
            spans: Vec::with_capacity(rows * width),
        }
    }

    /// Empty, its capacity kept for the next batch (unless large enough to matter to an
    /// idle backend).
    pub fn clear(&mut self) {
        if self.text.capacity() > 64 << 20 {
            self.text = String::new();
        }
        self.text.clear();
        self.spans.clear();
    }

    /// Appends a value to the row being filled (a row is complete after `width` of them).
    pub fn push(&mut self, v: Option<&str>) {
        self.spans.push(v.map(|v| {
            let start = self.text.len();
            self.text.push_str(v);
            (start, self.text.len())
        }));
    }

    /// Where the next row starts: for [`Rows::truncate`].
    pub fn mark(&self) -> (usize, usize) {
        (self.text.len(), self.spans.len())
    }

    /// Back to `mark` (a row refused half way).
    pub fn truncate(&mut self, mark: (usize, usize)) {
        self.text.truncate(mark.0);
        self.spans.truncate(mark.1);
    }

    /// The rows but those in `drop`.
    pub fn without(&self, drop: &std::collections::HashSet<usize>) -> Rows {
        let mut out = Rows::new(self.width, self.rows());
        for row in (0..self.rows()).filter(|r| !drop.contains(r)) {
            for col in 0..self.width {
                out.push(self.cell(row, col));
            }
        }
        out
    }

    /// Column `col`, every row's value.
    pub fn column(&self, col: usize) -> Vec<Option<&str>> {
        (0..self.rows()).map(|r| self.cell(r, col)).collect()
    }
}

impl Cells for Rows {
    fn rows(&self) -> usize {
        self.spans.len().checked_div(self.width).unwrap_or(0)
    }

    fn width(&self) -> usize {
        self.width
    }

    /// One vectorised pass over the whole batch's text.
    fn plain(&self) -> bool {
        memchr::memchr3(b'\\', b'\t', b'\n', self.text.as_bytes()).is_none()
            && memchr::memchr(b'\r', self.text.as_bytes()).is_none()
    }

    fn cell(&self, row: usize, col: usize) -> Option<&str> {
        self.spans[row * self.width + col].map(|(s, e)| &self.text[s..e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_cells() {
        let mut r = Rows::new(2, 4);
        r.push(Some("a"));
        r.push(None);
        let m = r.mark();
        r.push(Some("half"));
        r.truncate(m);
        r.push(Some(""));
        r.push(Some("ü"));
        assert_eq!(r.rows(), 2);
        assert_eq!(r.cell(0, 0), Some("a"));
        assert_eq!(r.cell(0, 1), None);
        assert_eq!(r.cell(1, 0), Some(""));
        assert_eq!(r.column(1), vec![None, Some("ü")]);
        let w = r.without(&[0].into_iter().collect());
        assert_eq!((w.rows(), w.cell(0, 1)), (1, Some("ü")));
        assert_eq!(Rows::new(0, 1).rows(), 0);
        assert!(r.plain());
        r.push(Some("tab\there"));
        assert!(!r.plain());
        r.clear();
        assert_eq!(r.rows(), 0);
    }
}
