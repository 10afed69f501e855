//! Text from a file turned into what a target column's type reads: integers, numbers with a
//! decimal comma, boolean words, UUIDs in any of their spellings, and dates and times in the
//! formats people write them (with jiff). The result is the canonical text PostgreSQL's input
//! function takes (the load casts it); a value that does not convert is a [`Reason`] naming
//! the column, before anything is written. Types not listed pass through unchanged (their
//! own input function judges them when the row is written). No pgrx here.

use std::borrow::Cow;

use jiff::civil::{Date, DateTime};
use jiff::fmt::strtime::BrokenDownTime;
use jiff::{Timestamp, ToSpan};
use pgrx::PgSqlErrorCode::*;

use super::error::Reason;
use super::rules::shorten;

/// What a column's text is turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    Integer,
    Number,
    Boolean,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
    /// Passed to the type's input function as it is.
    AsIs,
}

impl Conversion {
    /// The conversion for a column of type `type_name` (as `format_type` spells it).
    pub fn for_type(type_name: &str) -> Conversion {
        let base = type_name.split('(').next().unwrap_or(type_name).trim();
        match base {
            "smallint" | "integer" | "bigint" => Conversion::Integer,
            "numeric" | "real" | "double precision" | "money" => Conversion::Number,
            "boolean" => Conversion::Boolean,
            "uuid" => Conversion::Uuid,
            "date" => Conversion::Date,
            "timestamp without time zone" => Conversion::Timestamp,
            "timestamp with time zone" => Conversion::TimestampTz,
            _ => Conversion::AsIs,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Conversion::Integer => "an integer",
            Conversion::Number => "a number",
            Conversion::Boolean => "a boolean",
            Conversion::Uuid => "a UUID",
            Conversion::Date => "a date",
            Conversion::Timestamp | Conversion::TimestampTz => "a timestamp",
            Conversion::AsIs => "a value",
        }
    }

    /// `value` as the column's input function reads it, or why it cannot be.
    pub fn apply<'a>(
        self,
        column: &str,
        value: &'a str,
        date_format: Option<&str>,
    ) -> Result<Cow<'a, str>, Reason> {
        if self == Conversion::AsIs {
            return Ok(Cow::Borrowed(value));
        }
        let v = value.trim();
        let converted = match self {
            Conversion::Integer => integer(v).map(Cow::Borrowed),
            Conversion::Number => number(v),
            Conversion::Boolean => boolean(v).map(Cow::Borrowed),
            Conversion::Uuid => uuid::Uuid::try_parse(v)
                .ok()
                .map(|u| Cow::Owned(u.hyphenated().to_string())),
            // `YYYY-MM-DD` already as a date is written: the text itself, not a copy.
            Conversion::Date if date_format.is_none() && iso_date(v).is_some() => {
                Some(Cow::Borrowed(v))
            }
            Conversion::Date => {
                parse_when(v, date_format).map(|w| Cow::Owned(w.date().to_string()))
            }
            Conversion::Timestamp => {
                parse_when(v, date_format).map(|w| Cow::Owned(w.civil().to_string()))
            }
            Conversion::TimestampTz => {
                parse_when(v, date_format).map(|w| Cow::Owned(w.with_zone()))
            }
            Conversion::AsIs => unreachable!("returned above"),
        };
        converted.ok_or_else(|| {
            let code = match self {
                Conversion::Date | Conversion::Timestamp | Conversion::TimestampTz => {
                    ERRCODE_INVALID_DATETIME_FORMAT
                }
                _ => ERRCODE_INVALID_TEXT_REPRESENTATION,
            };
            Reason::new(
                code,
                format!(
                    "column \"{column}\": \"{}\" is not {}",
                    shorten(value),
                    self.noun()
                ),
            )
        })
    }
}

fn integer(v: &str) -> Option<&str> {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(v)
}

/// A number; a decimal comma (`3,5`) when there is no point, for the files of half the world.
fn number(v: &str) -> Option<Cow<'_, str>> {
    // The common case as it is: digits with at most one point.
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v).as_bytes();
    if digits.iter().any(u8::is_ascii_digit)
        && digits.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && memchr::memchr_iter(b'.', digits).count() <= 1
    {
        return Some(Cow::Borrowed(v));
    }
    let v: Cow<str> = if v.contains(',') && !v.contains('.') && v.matches(',').count() == 1 {
        Cow::Owned(v.replace(',', "."))
    } else {
        Cow::Borrowed(v)
    };
    let ok = v.parse::<f64>().is_ok()
        && !v.eq_ignore_ascii_case("inf")
        && !v.to_ascii_lowercase().contains("infinity")
        || matches!(
            v.to_ascii_lowercase().as_str(),
            "nan" | "infinity" | "-infinity"
        );
    ok.then_some(v)
}

fn boolean(v: &str) -> Option<&'static str> {
    // The spellings PostgreSQL writes itself, without lowering a copy.
    match v {
        "t" | "true" => return Some("t"),
        "f" | "false" => return Some("f"),
        _ => {}
    }
    match v.to_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" | "ja" | "j" | "oui" | "si" | "sí" | "x" => {
            Some("t")
        }
        "f" | "false" | "n" | "no" | "off" | "0" | "nein" | "non" | "" => Some("f"),
        _ => None,
    }
}

/// A point in time as written: an instant (it named its zone or offset, or is a Unix time),
/// a civil date and time, or a date alone.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Instant(Timestamp),
    Civil(DateTime),
    Day(Date),
}

impl When {
    fn date(self) -> Date {
        self.civil().date()
    }

    fn civil(self) -> DateTime {
        match self {
            When::Instant(t) => t.to_zoned(jiff::tz::TimeZone::UTC).datetime(),
            When::Civil(d) => d,
            When::Day(d) => d.to_datetime(jiff::civil::Time::midnight()),
        }
    }

    /// For `timestamptz`: an instant in UTC; civil times without a zone are read in the
    /// session's TimeZone, as PostgreSQL reads them.
    fn with_zone(self) -> String {
        match self {
            When::Instant(t) => t.to_string(),
            other => other.civil().to_string(),
        }
    }
}

/// Dates and times, with the time where there is one. `%d`, `%m` take one or two digits.
const DATE_TIME_FORMATS: &[&str] = &[
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d %b %Y %H:%M:%S",
];

/// With an offset: instants.
const INSTANT_FORMATS: &[&str] = &[
    "%a, %d %b %Y %H:%M:%S %z", // RFC 2822 (e-mail, HTTP)
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S%z",
    "%d.%m.%Y %H:%M:%S %z",
];

const DATE_FORMATS: &[&str] = &[
    "%d.%m.%Y",
    "%d.%m.%y",
    "%m/%d/%Y",
    "%m/%d/%y",
    "%Y/%m/%d",
    "%d-%m-%Y",
    "%Y%m%d",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d-%b-%Y",
    "%a, %d %b %Y",
];

/// The date format patterns read, for docs and tests (besides ISO 8601 with or without zone,
/// Unix seconds and milliseconds, and Excel serial dates).
pub fn patterns() -> impl Iterator<Item = &'static str> {
    DATE_TIME_FORMATS
        .iter()
        .chain(INSTANT_FORMATS)
        .chain(DATE_FORMATS)
        .copied()
}

/// `YYYY-MM-DD` exactly, read without trying the general parsers first (the common case,
/// and the one COPY writes).
fn iso_date(v: &str) -> Option<Date> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i32> {
        b[r].iter().try_fold(0i32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + (d - b'0') as i32)
        })
    };
    Date::new(num(0..4)? as i16, num(5..7)? as i8, num(8..10)? as i8).ok()
}

fn parse_when(v: &str, user: Option<&str>) -> Option<When> {
    if v.is_empty() {
        return None;
    }
    if user.is_none() {
        if let Some(d) = iso_date(v) {
            return Some(When::Day(d));
        }
    }
    if let Some(fmt) = user {
        if let Some(w) = strtime(fmt, v) {
            return Some(w);
        }
    }
    // ISO 8601 / RFC 3339: with an offset or `Z` an instant; else civil.
    if let Ok(t) = v.parse::<Timestamp>() {
        return Some(When::Instant(t));
    }
    if let Ok(d) = v.parse::<DateTime>() {
        return Some(if v.len() <= 10 {
            When::Day(d.date())
        } else {
            When::Civil(d)
        });
    }
    if v.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && v.bytes().any(|b| b.is_ascii_digit())
    {
        if let Some(w) = numeric_time(v) {
            return Some(w);
        }
    }
    INSTANT_FORMATS
        .iter()
        .chain(DATE_TIME_FORMATS)
        .chain(DATE_FORMATS)
        .find_map(|f| strtime(f, v))
}

fn strtime(fmt: &str, v: &str) -> Option<When> {
    let tm = BrokenDownTime::parse(fmt, v).ok()?;
    // `%Y` also takes two digits: "05.03.24" is for `%y`, not the year 24.
    if fmt.contains("%Y") && tm.year().is_some_and(|y| y < 100) {
        return None;
    }
    if tm.offset().is_some() {
        return tm.to_timestamp().ok().map(When::Instant);
    }
    if tm.hour().is_some() {
        return tm.to_datetime().ok().map(When::Civil);
    }
    tm.to_date().ok().map(When::Day)
}

/// Digits: `YYYYMMDD` (eight), an Excel serial date (up to five digits, a fraction for the
/// time of day), Unix milliseconds (thirteen), else Unix seconds.
fn numeric_time(v: &str) -> Option<When> {
    let (whole, _) = v.split_once('.').unwrap_or((v, ""));
    let digits = whole.trim_start_matches('-');
    if !v.contains('.') && !v.starts_with('-') && digits.len() == 8 {
        return strtime("%Y%m%d", v);
    }
    let n: f64 = v.parse().ok()?;
    if !v.starts_with('-') && digits.len() <= 5 {
        return excel(n);
    }
    let seconds = if !v.contains('.') && digits.len() == 13 {
        n / 1000.0
    } else {
        n
    };
    let nanos = (seconds * 1e9).round() as i128;
    Timestamp::from_nanosecond(nanos).ok().map(When::Instant)
}

/// Excel's serial dates: days since 1899-12-30 (which absorbs Lotus 1-2-3's 29 February 1900
/// for every date after it), the fraction the time of day.
fn excel(n: f64) -> Option<When> {
    if !(1.0..2_958_466.0).contains(&n) {
        return None;
    }
    let days = n.trunc() as i64;
    let seconds = ((n - n.trunc()) * 86_400.0).round() as i64;
    let base = Date::constant(1899, 12, 30).to_datetime(jiff::civil::Time::midnight());
    let at = base
        .checked_add(days.days())
        .ok()?
        .checked_add(seconds.seconds())
        .ok()?;
    Some(if seconds == 0 {
        When::Day(at.date())
    } else {
        When::Civil(at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(v: &str) -> String {
        Conversion::Date
            .apply("d", v, None)
            .map(|c| c.into_owned())
            .unwrap_or_else(|r| r.message)
    }

    #[test]
    fn dates_people_write() {
        for (input, want) in [
            ("2024-03-05", "2024-03-05"),
            ("05.03.2024", "2024-03-05"),
            ("5.3.2024", "2024-03-05"),
            ("05.03.24", "2024-03-05"),
            ("03/05/2024", "2024-03-05"),
            ("3/5/2024", "2024-03-05"),
            ("2024/03/05", "2024-03-05"),
            ("05-03-2024", "2024-03-05"),
            ("20240305", "2024-03-05"),
            ("5 Mar 2024", "2024-03-05"),
            ("5 March 2024", "2024-03-05"),
            ("Mar 5, 2024", "2024-03-05"),
            ("March 5, 2024", "2024-03-05"),
            ("05-Mar-2024", "2024-03-05"),
            ("Tue, 05 Mar 2024", "2024-03-05"),
            ("2024-03-05T10:00:00Z", "2024-03-05"),
            ("2024-03-05T10:00:00+02:00", "2024-03-05"),
            ("1709632800", "2024-03-05"),
            ("1709632800000", "2024-03-05"),
            ("45356", "2024-03-05"),
            ("45356.5", "2024-03-05"),
        ] {
            assert_eq!(date(input), want, "{input}");
        }
        assert!(date("31.02.2024").contains("is not a date"));
        assert!(date("tomorrow").contains("is not a date"));
    }

    #[test]
    fn timestamps_keep_their_zone() {
        let tz = |v| {
            Conversion::TimestampTz
                .apply("t", v, None)
                .unwrap()
                .into_owned()
        };
        assert_eq!(tz("2024-03-05T10:00:00+02:00"), "2024-03-05T08:00:00Z");
        assert_eq!(tz("2024-03-05 10:00:00"), "2024-03-05T10:00:00");
        assert_eq!(tz("05.03.2024 10:30"), "2024-03-05T10:30:00");
        assert_eq!(tz("03/05/2024 02:30 PM"), "2024-03-05T14:30:00");
        assert_eq!(
            tz("Tue, 05 Mar 2024 10:00:00 +0100"),
            "2024-03-05T09:00:00Z"
        );
        assert_eq!(tz("1709632800"), "2024-03-05T10:00:00Z");
        assert_eq!(tz("45356.5"), "2024-03-05T12:00:00");
        // As COPY writes them (DateStyle ISO).
        assert_eq!(tz("2022-01-27 03:30:39.123+00"), "2022-01-27T03:30:39.123Z");
        assert_eq!(tz("2022-01-27 03:30:39+05:30"), "2022-01-26T22:00:39Z");
        let ts = |v| {
            Conversion::Timestamp
                .apply("t", v, None)
                .unwrap()
                .into_owned()
        };
        assert_eq!(
            ts("2022-02-15 09:46:27.123456"),
            "2022-02-15T09:46:27.123456"
        );
        let custom = Conversion::Date
            .apply("d", "2024|05|03", Some("%Y|%d|%m"))
            .unwrap();
        assert_eq!(custom, "2024-03-05");
    }

    #[test]
    fn other_types() {
        let c = |k: Conversion, v| k.apply("c", v, None).map(|c| c.into_owned()).ok();
        assert_eq!(c(Conversion::Integer, " 42 "), Some("42".into()));
        assert_eq!(c(Conversion::Integer, "4.2"), None);
        assert_eq!(c(Conversion::Number, "3,5"), Some("3.5".into()));
        assert_eq!(c(Conversion::Number, "1e3"), Some("1e3".into()));
        assert_eq!(c(Conversion::Number, "abc"), None);
        // the fast path: digits with at most one point, a sign
        assert_eq!(c(Conversion::Number, "-12.50"), Some("-12.50".into()));
        assert_eq!(c(Conversion::Number, ".5"), Some(".5".into()));
        assert_eq!(c(Conversion::Number, "1.2.3"), None);
        assert_eq!(c(Conversion::Number, "."), None);
        assert_eq!(c(Conversion::Number, "-"), None);
        assert_eq!(c(Conversion::Boolean, "1"), Some("t".into()));
        assert_eq!(c(Conversion::Boolean, "Yes"), Some("t".into()));
        assert_eq!(c(Conversion::Boolean, "nein"), Some("f".into()));
        assert_eq!(c(Conversion::Boolean, "maybe"), None);
        assert_eq!(
            c(Conversion::Uuid, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        );
        assert_eq!(Conversion::for_type("numeric(8,2)"), Conversion::Number);
        assert_eq!(
            Conversion::for_type("character varying(20)"),
            Conversion::AsIs
        );
    }
}
