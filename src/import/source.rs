//! Where an import's bytes come from and how they become text: a file confined to
//! `tenant_ops.import_directory` (the backup directory code, `backup::store`, resolves and
//! confines it), gzip undone when the file starts with gzip's magic bytes, and the text
//! decoded as a stream: UTF-8 (a BOM skipped), UTF-16 by its BOM, or the single-byte
//! `encoding` named (encoding_rs). Without a BOM or an `encoding`, bytes pass through as they
//! are and the format reader refuses invalid UTF-8 naming the line.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use encoding_rs::Encoding;
use encoding_rs_io::DecodeReaderBytesBuilder;
use flate2::read::MultiGzDecoder;

use super::error::{Error, Result};
use crate::backup::store;

/// Hidden names inside the directory hold the bytes of `import_data_bytes` for a background
/// run (never a name a user can give: confined names have no dot components).
pub const SPOOL_PREFIX: &str = ".tenant_ops_import_";

/// The import directory, created (mode 0700) when missing.
pub fn directory() -> Result<PathBuf> {
    let dir = store::setting_directory(crate::gucs::import_directory(), "pg_tenant_ops_imports");
    Ok(store::ensure_directory(dir, "import directory")?)
}

/// The file `name` names inside the import directory (see `backup::store::confined_file`).
pub fn resolve(name: &str) -> Result<PathBuf> {
    let dir = directory()?;
    store::confined_file(&dir, name).map_err(|e| match Error::from(e) {
        Error::FileMissing { path, .. } => Error::FileMissing {
            name: name.to_string(),
            path,
        },
        other => other,
    })
}

/// A spool file for bytes sent over the connection (background runs read them from there).
pub fn spool(data: &[u8]) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = directory()?.join(format!("{SPOOL_PREFIX}{}", uuid::Uuid::now_v7()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(data).and_then(|_| f.sync_all()))
        .map_err(|e| io_error("write", &path, &e))?;
    Ok(path)
}

pub fn io_error(action: &str, path: &Path, e: &io::Error) -> Error {
    Error::from(store::io_error(action, path, e))
}

/// Counts the bytes read from the file itself (before gzip): the `bytes` of the progress.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// An opened input: its text as a buffered stream, and what was found out about it.
pub struct Opened {
    pub text: Box<dyn BufRead>,
    /// Bytes of the file read so far.
    pub bytes_read: Rc<Cell<u64>>,
    pub bytes_total: u64,
    pub gzip: bool,
    /// The bytes (gzip undone, before any decoding) start as a zip archive does.
    pub zip: bool,
    /// The encoding decoded from ("UTF-8" when passed through).
    pub encoding: &'static str,
}

const BUFFER: usize = 256 * 1024;

impl Opened {
    /// The first `n` bytes of the text (fewer when it is shorter), left unread: what `auto`
    /// tells the format by. Not `fill_buf`, which returns what one read gave — for a decoded
    /// stream that can be the few bytes of a BOM, too little to tell NDJSON from JSON.
    pub fn peek(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        (&mut self.text).take(n as u64).read_to_end(&mut head)?;
        let rest = std::mem::replace(&mut self.text, Box::new(io::empty()));
        self.text = Box::new(io::Cursor::new(head.clone()).chain(rest));
        Ok(head)
    }
}

/// Opens `path`: gzip by its magic bytes, the encoding by its BOM or `encoding`.
pub fn open(path: &Path, encoding: Option<&'static Encoding>) -> Result<Opened> {
    let file = File::open(path).map_err(|e| io_error("open", path, &e))?;
    let bytes_total = file
        .metadata()
        .map_err(|e| io_error("read", path, &e))?
        .len();
    let bytes_read = Rc::new(Cell::new(0));
    let mut raw = BufReader::with_capacity(
        BUFFER,
        Counting {
            inner: file,
            count: bytes_read.clone(),
        },
    );
    let head = raw.fill_buf().map_err(|e| io_error("read", path, &e))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let plain: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let mut plain = BufReader::with_capacity(BUFFER, plain);
    let head = plain.fill_buf().map_err(|e| {
        if gzip {
            Error::Malformed {
                line: 1,
                what: format!("the gzip stream does not decompress: {e}"),
                hint: None,
            }
        } else {
            io_error("read", path, &e)
        }
    })?;
    let zip = head.starts_with(b"PK\x03\x04");
    let bom = Encoding::for_bom(head).map(|(e, _)| e);
    if let (Some(given), Some(found)) = (encoding, bom) {
        if given != found {
            return Err(Error::Malformed {
                line: 1,
                what: format!(
                    "the file starts with a {} byte order mark, but \"encoding\" says {}",
                    found.name(),
                    given.name()
                ),
                hint: Some("Leave \"encoding\" out: a byte order mark names the encoding.".into()),
            });
        }
    }
    let chosen = bom.or(encoding);
    let text: Box<dyn BufRead> = match chosen {
        // UTF-8 without a BOM is passed through as it is; the readers check it.
        None => Box::new(plain),
        Some(enc) => Box::new(BufReader::with_capacity(
            BUFFER,
            DecodeReaderBytesBuilder::new()
                .encoding(Some(enc))
                .bom_sniffing(true)
                .strip_bom(true)
                .utf8_passthru(true)
                .build(plain),
        )),
    };
    Ok(Opened {
        text,
        bytes_read,
        bytes_total,
        gzip,
        zip,
        encoding: chosen.map_or("UTF-8", |e| e.name()),
    })
}

/// Removes `path` once the current transaction commits (a spool file whose job is done).
pub fn remove_on_commit(path: PathBuf) {
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
        let _ = std::fs::remove_file(&path);
    });
}
