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

/// The identity of the setting, if set; an error (never echoing the value) when it is not one.
pub fn identity() -> Result<Option<Identity>> {
    match crate::gucs::backup_encryption_key() {
        None => Ok(None),
        Some(k) => Identity::from_str(k.trim())
            .map(Some)
            .map_err(|_| Error::BadEncryptionKey),
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
        Err(age::DecryptError::NoMatchingKeys) => Err(Error::EncryptionKeyWrong(what.to_string())),
        Err(e) => Err(damaged(format!("it does not decrypt: {e}"))),
    }
}
