//! What a column's values are, told from a sample of them: e-mail addresses, phone numbers,
//! payment card numbers (by the Luhn check), IBANs (by their mod-97 checksum), IP addresses,
//! dates of birth (a column named so, values dates in a living person's range), and free
//! text that contains any of the first five. No pgrx here.

use std::sync::LazyLock;

use regex::Regex;

/// A kind of personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Email,
    Card,
    Iban,
    Phone,
    Ip,
    BirthDate,
    /// Text holding one of the others inside it.
    FreeText,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Card => "payment_card",
            Kind::Iban => "iban",
            Kind::Phone => "phone",
            Kind::Ip => "ip_address",
            Kind::BirthDate => "date_of_birth",
            Kind::FreeText => "free_text",
        }
    }

    /// The transform that masks it (the spec `columns` takes).
    pub fn transform(self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Kind::Email => json!("mask_email"),
            Kind::Card => json!("mask_card"),
            Kind::Iban => json!({"name": "mask", "keep_last": 4}),
            Kind::Phone => json!({"name": "mask", "keep_last": 2}),
            Kind::Ip => json!("pseudonymize"),
            Kind::BirthDate | Kind::FreeText => json!("redact"),
        }
    }
}

/// The share of a column's values (not NULL, not empty) that must be of one kind for the
/// column to be called that kind.
pub const WHOLE_SHARE: f64 = 0.5;
/// The share of values that must hold personal data inside them for free text.
pub const FREE_TEXT_SHARE: f64 = 0.05;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$").expect("valid")
});
static EMAIL_IN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").expect("valid")
});
/// Runs of digits with spaces or dashes between them (card numbers as written).
static DIGIT_RUN_IN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9][0-9 -]{11,22}[0-9]").expect("valid"));
static IBAN_IN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b").expect("valid")
});
static IP_IN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b").expect("valid"));

/// The Luhn check of a string of digits.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = (c - b'0') as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// A payment card number: 13 to 19 digits (spaces and dashes between them allowed) that pass
/// the Luhn check, not all the same digit.
pub fn is_card(v: &str) -> bool {
    if !v
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
    {
        return false;
    }
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    (13..=19).contains(&digits.len())
        && !digits.bytes().all(|b| b == digits.as_bytes()[0])
        && luhn(&digits)
}

/// An IBAN: country code, check digits, up to 30 letters and digits (spaces allowed), whose
/// mod-97 checksum is 1.
pub fn is_iban(v: &str) -> bool {
    let s: String = v.chars().filter(|c| *c != ' ').collect();
    let b = s.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b[4..]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        let n = if c.is_ascii_digit() {
            (c - b'0') as u32
        } else {
            (c - b'A') as u32 + 10
        };
        rem = if n >= 10 {
            (rem * 100 + n) % 97
        } else {
            (rem * 10 + n) % 97
        };
    }
    rem == 1
}

/// A phone number as people write them: 7 to 15 digits, optionally a leading `+`, with
/// spaces, dashes, dots or parentheses; bare digits only when the column is named for phones
/// (else every integer key would be one).
pub fn is_phone(v: &str, named: bool) -> bool {
    let v = v.trim();
    if !v
        .bytes()
        .all(|b| b.is_ascii_digit() || b" +-.()/".contains(&b))
    {
        return false;
    }
    if v[1.min(v.len())..].contains('+') {
        return false;
    }
    if DATE_LIKE.is_match(v) || v.contains('/') && is_ip(v) {
        return false;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let formatted = v.starts_with('+') || v.bytes().any(|b| b" -.()/".contains(&b));
    (7..=15).contains(&digits) && (formatted || named) && !is_card(v)
}

/// An IPv4 or IPv6 address, with or without a prefix length (`10.0.0.1/32`, as `inet`
/// and `cidr` print).
pub fn is_ip(v: &str) -> bool {
    let v = v.trim();
    let (addr, prefix) = v.split_once('/').unwrap_or((v, "128"));
    addr.parse::<std::net::IpAddr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 128)
}

static DATE_LIKE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]{1,4}[-./][0-9]{1,2}[-./][0-9]{1,4}$").expect("valid"));

/// Whether a column's name says it holds dates of birth.
pub fn birth_name(column: &str) -> bool {
    let c = column.to_lowercase();
    ["birth", "dob", "born", "geburt", "naissance", "nacimiento"]
        .iter()
        .any(|w| c.contains(w))
}

/// Whether a column's name says it holds phone numbers.
pub fn phone_name(column: &str) -> bool {
    let c = column.to_lowercase();
    ["phone", "mobile", "fax", "tel", "handy", "cell"]
        .iter()
        .any(|w| c.contains(w))
}

/// A date of birth: a date (as the import conversions read dates) from 1900 on and not in
/// the future (`this_year` is the current year).
pub fn is_birth_date(v: &str, this_year: i16) -> bool {
    let Ok(text) = crate::import::convert::Conversion::Date.apply("", v, None) else {
        return false;
    };
    let year: i16 = text.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    (1900..=this_year).contains(&year)
}

/// Whether a text holds one of the kinds inside it (for free text).
pub fn holds_pii(v: &str) -> bool {
    EMAIL_IN.is_match(v)
        || DIGIT_RUN_IN.find_iter(v).any(|m| is_card(m.as_str()))
        || IBAN_IN.find_iter(v).any(|m| is_iban(m.as_str()))
        || IP_IN.find_iter(v).any(|m| is_ip(m.as_str()))
}

/// What one column holds, from its sampled values.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Values looked at (not NULL, not blank).
    pub sampled: u64,
    pub email: u64,
    pub card: u64,
    pub iban: u64,
    pub phone: u64,
    pub ip: u64,
    pub birth: u64,
    pub inside: u64,
}

impl Tally {
    /// Counts one value of column `column`.
    pub fn add(&mut self, column: &str, v: &str, this_year: i16) {
        let v = v.trim();
        if v.is_empty() {
            return;
        }
        self.sampled += 1;
        if EMAIL.is_match(v) {
            self.email += 1;
        } else if is_card(v) {
            self.card += 1;
        } else if is_iban(v) {
            self.iban += 1;
        } else if is_ip(v) {
            self.ip += 1;
        } else if birth_name(column) && is_birth_date(v, this_year) {
            self.birth += 1;
        } else if is_phone(v, phone_name(column)) {
            self.phone += 1;
        } else if v.len() > 12 && holds_pii(v) {
            self.inside += 1;
        }
    }

    /// The kind the column holds, with how many of the sampled values are of it.
    pub fn verdict(&self) -> Option<(Kind, u64)> {
        if self.sampled == 0 {
            return None;
        }
        let whole = [
            (Kind::Email, self.email),
            (Kind::Card, self.card),
            (Kind::Iban, self.iban),
            (Kind::Ip, self.ip),
            (Kind::Phone, self.phone),
            (Kind::BirthDate, self.birth),
        ];
        let (kind, n) = whole
            .iter()
            .copied()
            .max_by_key(|(_, n)| *n)
            .expect("not empty");
        let share = |n: u64| n as f64 / self.sampled as f64;
        if share(n) >= WHOLE_SHARE {
            return Some((kind, n));
        }
        let any = whole.iter().map(|(_, n)| n).sum::<u64>() + self.inside;
        (share(any) >= FREE_TEXT_SHARE).then_some((Kind::FreeText, any))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(is_card("4111 1111 1111 1111"));
        assert!(is_card("5500-0000-0000-0004"));
        assert!(!is_card("4111 1111 1111 1112"));
        assert!(!is_card("0000000000000000"));
        assert!(!is_card("12345"));
        assert!(is_iban("DE89 3704 0044 0532 0130 00"));
        assert!(is_iban("GB82WEST12345698765432"));
        assert!(!is_iban("GB82WEST12345698765433"));
        assert!(!is_iban("DE89"));
    }

    #[test]
    fn kinds() {
        assert!(is_phone("+47 22 33 44 55", false));
        assert!(is_phone("(555) 123-4567", false));
        assert!(!is_phone("12345678", false));
        assert!(is_phone("12345678", true));
        assert!(!is_phone("1+2", true));
        assert!(is_ip("192.168.0.1"));
        assert!(is_ip("2001:db8::1"));
        assert!(!is_ip("999.1.1.1"));
        assert!(is_ip("10.0.0.7/32"));
        assert!(!is_phone("10.0.0.7/32", false));
        assert!(!is_phone("1990-01-02", true));
        assert!(!is_phone("02.01.1990", false));
        assert!(is_birth_date("1990-01-02", 2026));
        assert!(is_birth_date("02.01.1990", 2026));
        assert!(!is_birth_date("1850-01-01", 2026));
        assert!(!is_birth_date("2030-01-01", 2026));
        assert!(holds_pii("write to ann@example.com please"));
        assert!(holds_pii("card 4111-1111-1111-1111 on file"));
        assert!(holds_pii("IBAN DE89 3704 0044 0532 0130 00 for refunds"));
        assert!(holds_pii("login from 10.0.0.7 at noon"));
        assert!(!holds_pii("nothing to see here, order 12345"));
    }

    #[test]
    fn verdicts() {
        let mut t = Tally::default();
        for v in ["a@b.org", "c@d.com", "not one", ""] {
            t.add("contact", v, 2026);
        }
        assert_eq!(t.sampled, 3);
        assert_eq!(t.verdict(), Some((Kind::Email, 2)));
        let mut t = Tally::default();
        for v in ["1990-01-02", "1985-12-31"] {
            t.add("birthday", v, 2026);
        }
        assert_eq!(t.verdict(), Some((Kind::BirthDate, 2)));
        let mut t = Tally::default();
        for v in ["1990-01-02", "1985-12-31"] {
            t.add("created", v, 2026);
        }
        assert_eq!(t.verdict(), None);
        let mut t = Tally::default();
        for i in 0..19 {
            t.add("note", &format!("plain note number {i}"), 2026);
        }
        t.add("note", "call me at +47 22 33 44 55 or mail x@y.no", 2026);
        assert_eq!(t.verdict(), Some((Kind::FreeText, 1)));
    }
}
