//! Backup encryption in the age format (X25519): with `tenant_ops.backup_encryption_key`
//! (superuser-only, never shown to others) holding an age identity, a new backup file is
//! `age(tar.gz)` encrypted to that identity's recipient, and encrypted files are read with it.
//! The standard `age` tool decrypts them: `age -d -i key.txt file.tar.gz.age | tar tz`.

use std::io::{self, Read, Write};
use std::str::FromStr;

use age::x25519::Identity;

use super::error::{Error, Result};

/// How every age file begins (the header's version line).
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// How every gzip file begins.
pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// The identity backups are encrypted to, if one is set: `tenant_ops.backup_encryption_key`
/// (a session's `SET` by a superuser) or else the file `tenant_ops.backup_encryption_key_file`
/// names (the server-wide way: its path, not the key, is what PostgreSQL logs on a reload).
/// An error, never echoing the key, when what is set holds no identity.
pub fn identity() -> Result<Option<Identity>> {
    if let Some(k) = crate::gucs::backup_encryption_key() {
        return Identity::from_str(k.trim())
            .map(Some)
            .map_err(|_| Error::BadEncryptionKey(KEY_SETTING.into()));
    }
    match crate::gucs::backup_encryption_key_file() {
        None => Ok(None),
        Some(path) => identity_file(&path).map(Some),
    }
}

/// The setting that holds the key itself.
const KEY_SETTING: &str = "tenant_ops.backup_encryption_key";

/// Where [`identity`] takes the key from, for messages: the setting, or the file's setting.
fn key_source() -> String {
    if crate::gucs::backup_encryption_key().is_some() {
        KEY_SETTING.into()
    } else {
        "the key in tenant_ops.backup_encryption_key_file".into()
    }
}

/// The one identity of an age identity file (as `age-keygen -o` writes it: `#` comments, blank
/// lines, one `AGE-SECRET-KEY-1…` line, each parsed by the age crate). Like `ssl_key_file`,
/// refused when group or others may read it; relative paths are taken from the data directory.
fn identity_file(setting: &str) -> Result<Identity> {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) }
        .to_string_lossy()
        .into_owned();
    let path = std::path::Path::new(&data_dir).join(setting);
    let named = || {
        format!(
            "tenant_ops.backup_encryption_key_file \"{}\"",
            path.display()
        )
    };
    let meta = std::fs::metadata(&path).map_err(|e| super::error::io_error("read", &path, &e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::KeyFileExposed(named()));
    }
    // An identity file is a few lines; anything much larger is not one.
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
        .map_err(|e| super::error::io_error("read", &path, &e))?;
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match (keys.next().map(Identity::from_str), keys.next()) {
        (Some(Ok(identity)), None) => Ok(identity),
        _ => Err(Error::BadEncryptionKey(named())),
    }
}

/// Where an archive is written: straight to the file, or through age.
pub enum Sink<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Sink<W> {
    /// Plain without an identity; encrypted to its recipient with one.
    pub fn new(out: W, identity: Option<&Identity>) -> io::Result<Sink<W>> {
        let Some(identity) = identity else {
            return Ok(Sink::Plain(out));
        };
        let recipient = identity.to_public();
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(io::Error::other)?;
        Ok(Sink::Age(encryptor.wrap_output(out)?))
    }

    /// Ends the age stream (its last chunk and tag); returns the file's writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Age(s) => s.finish(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

/// The plaintext of an encrypted backup `what` ("backup 7", an upload), read with the
/// setting's identity: 28000 when the setting is empty or holds another key, XX001 (through
/// `damaged`) when the file is not a sound age file.
pub fn decrypt<'r, R: Read + 'r>(
    what: &str,
    input: R,
    damaged: impl Fn(String) -> Error,
) -> Result<Box<dyn Read + 'r>> {
    let identity = identity()?.ok_or_else(|| Error::EncryptionKeyMissing(what.to_string()))?;
    let decryptor = age::Decryptor::new(input)
        .map_err(|e| damaged(format!("its age header does not read: {e}")))?;
    match decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)) {
        Ok(r) => Ok(Box::new(r)),
        Err(age::DecryptError::NoMatchingKeys) => {
            Err(Error::EncryptionKeyWrong(what.to_string(), key_source()))
        }
        Err(e) => Err(damaged(format!("it does not decrypt: {e}"))),
    }
}
