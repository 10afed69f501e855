//! Personal data: finding it (`scan_pii`: `detect` classifies values, `scan` samples a
//! scope's tables) and masking what SQL alone cannot (the keyed `pseudonymize`). The masking
//! transforms themselves (`mask_email`, `mask_card`, `redact`, `pseudonymize`) are steps of
//! `migrate::transform`, so migrations and imports share them.

pub mod detect;
pub mod mask;
pub mod scan;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `value` under `key`, as 64 lowercase hex digits: deterministic under one
/// key (equal inputs give equal outputs, so joins and uniqueness survive), and neither the
/// input nor the key can be read back from it.
pub fn pseudonymize(key: &[u8], value: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(value.as_bytes());
    crate::backup::format::hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_as_rfc_4231_has_it() {
        // RFC 4231, test case 2.
        assert_eq!(
            pseudonymize(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(pseudonymize(b"k1", "x"), pseudonymize(b"k2", "x"));
        assert_eq!(pseudonymize(b"k1", "x"), pseudonymize(b"k1", "x"));
    }
}
