//! Cron expressions and time zones, free of PostgreSQL: parsing with `croner` (5 fields, or 6
//! with a leading seconds field; `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@hourly`; ranges, steps, lists, names, `L`, `W`, `#`) and evaluation in a zone of the IANA
//! database with `jiff`.
//!
//! Daylight saving time (croner's rules, tested below on Europe/Oslo):
//! - a wall-clock time that does not exist (the spring-forward gap) runs at the first instant
//!   after the gap, once (a daily 02:30 runs at 03:00 that day);
//! - a wall-clock time that happens twice (the fall-back overlap) runs once, at the earlier
//!   instant, for an expression that names fixed times; an interval or wildcard expression
//!   (`*/15 * * * *`) runs at both, so its runs stay evenly spaced in real time.

use std::fmt;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The names of the fields of a 6-field expression, in order (a 5-field one has no seconds).
const FIELDS: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day of month",
    "month",
    "day of week",
];

/// The `@` macros, each standing for a whole expression.
const MACROS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// What is wrong with a cron expression: the field at fault where one is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronProblem {
    pub field: Option<&'static str>,
    pub reason: String,
}

impl fmt::Display for CronProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "its {field} field is invalid: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses a cron expression, naming the field at fault when it is malformed.
pub fn parse(expression: &str) -> Result<Cron, CronProblem> {
    let trimmed = expression.trim();
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if !(trimmed.starts_with('@') || fields.len() == 5 || fields.len() == 6) {
        return Err(CronProblem {
            field: None,
            reason: format!(
                "it has {} field(s); a cron expression has 5 (minute hour day-of-month month day-of-week) or 6 with a leading seconds field",
                fields.len()
            ),
        });
    }
    if trimmed.starts_with('@') && !MACROS.iter().any(|m| m.eq_ignore_ascii_case(trimmed)) {
        return Err(CronProblem {
            field: None,
            reason: format!(
                "\"{trimmed}\" is not a macro; the macros are {}",
                MACROS.join(", ")
            ),
        });
    }
    match parser().parse(trimmed) {
        Ok(c) => Ok(c),
        Err(e) => Err(CronProblem {
            field: culprit(&fields),
            reason: reason(&e),
        }),
    }
}

/// The first field that is wrong on its own (every other field a `*`).
fn culprit(fields: &[&str]) -> Option<&'static str> {
    if fields.first().is_some_and(|f| f.starts_with('@')) {
        return None;
    }
    let names = &FIELDS[6 - fields.len()..];
    (0..fields.len()).find_map(|i| {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { fields[i] } else { "*" })
            .collect();
        parser().parse(&alone.join(" ")).err().map(|_| names[i])
    })
}

/// croner's message, without its own prefixes.
fn reason(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError::*;
    match e {
        EmptyPattern => "it is empty".into(),
        InvalidPattern(m) | IllegalCharacters(m) | ComponentError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A zone of the IANA time zone database (`UTC`, `Europe/Oslo`), as the operating system has it.
pub fn zone(name: &str) -> Option<TimeZone> {
    if name.trim().is_empty() {
        return None;
    }
    TimeZone::get(name).ok()
}

/// A cron expression in a time zone: when it fires.
#[derive(Clone, Debug)]
pub struct Timetable {
    cron: Cron,
    zone: TimeZone,
}

impl Timetable {
    pub fn new(cron: Cron, zone: TimeZone) -> Timetable {
        Timetable { cron, zone }
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let z = Zoned::new(t, self.zone.clone());
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|n| n.timestamp())
    }

    /// The first firing at or after `t`.
    pub fn next_from(&self, t: Timestamp) -> Option<Timestamp> {
        let z = Zoned::new(t, self.zone.clone());
        self.cron
            .find_next_occurrence(&z, true)
            .ok()
            .map(|n| n.timestamp())
    }

    /// How many firings fall in `[from, to]` (at most `cap`), and the last of them.
    pub fn firings_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        cap: usize,
    ) -> (usize, Option<Timestamp>) {
        let mut n = 0;
        let mut last = None;
        let mut at = self.next_from(from);
        while let Some(t) = at {
            if t > to || n >= cap {
                break;
            }
            n += 1;
            last = Some(t);
            at = self.next_after(t);
        }
        (n, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn oslo(expr: &str) -> Timetable {
        Timetable::new(parse(expr).unwrap(), zone("Europe/Oslo").unwrap())
    }

    /// The next `n` firings after `from`, as UTC instants.
    fn next_n(t: &Timetable, from: &str, n: usize) -> Vec<String> {
        let mut out = vec![];
        let mut at = ts(from);
        for _ in 0..n {
            at = t.next_after(at).unwrap();
            out.push(at.to_string());
        }
        out
    }

    #[test]
    fn fields_macros_and_specials_parse() {
        for ok in [
            "* * * * *",
            "*/5 * * * * *",
            "0 3 * * MON-FRI",
            "0 0 L * *",
            "0 9 15W * *",
            "0 9 * * 5#2",
            "0 9 * * 5L",
            "0 0 1,15 JAN,JUL *",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@hourly",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok).err());
        }
    }

    #[test]
    fn malformed_expressions_name_the_field() {
        let field = |e: &str| parse(e).unwrap_err().field;
        assert_eq!(field("61 * * * *"), Some("minute"));
        assert_eq!(field("* 24 * * *"), Some("hour"));
        assert_eq!(field("* * 32 * *"), Some("day of month"));
        assert_eq!(field("* * * 13 *"), Some("month"));
        assert_eq!(field("* * * * FUNDAY"), Some("day of week"));
        assert_eq!(field("75 * * * * *"), Some("second"));
        let few = parse("* * *").unwrap_err();
        assert_eq!(few.field, None);
        assert!(few.reason.contains("3 field(s)"), "{}", few.reason);
        assert!(parse("1 2 3 4 5 6 2030").is_err());
        assert!(parse("@fortnightly").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn zones() {
        assert!(zone("UTC").is_some());
        assert!(zone("Europe/Oslo").is_some());
        assert!(zone("Mars/Olympus_Mons").is_none());
        assert!(zone("").is_none());
    }

    #[test]
    fn seconds_and_l_w_hash() {
        let utc = |e: &str| Timetable::new(parse(e).unwrap(), TimeZone::UTC);
        assert_eq!(
            next_n(&utc("*/20 * * * * *"), "2026-01-01T00:00:05Z", 3),
            [
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:40Z",
                "2026-01-01T00:01:00Z"
            ]
        );
        // The last day of February 2028 (a leap year).
        assert_eq!(
            next_n(&utc("0 0 L * *"), "2028-02-02T00:00:00Z", 1),
            ["2028-02-29T00:00:00Z"]
        );
        // The weekday nearest the 15th of August 2026 (a Saturday): Friday the 14th.
        assert_eq!(
            next_n(&utc("0 9 15W * *"), "2026-08-01T00:00:00Z", 1),
            ["2026-08-14T09:00:00Z"]
        );
        // The second Friday of March 2026.
        assert_eq!(
            next_n(&utc("0 9 * * 5#2"), "2026-03-01T00:00:00Z", 1),
            ["2026-03-13T09:00:00Z"]
        );
    }

    // Europe/Oslo, 2026: clocks go from 02:00 CET to 03:00 CEST on 29 March (the hour
    // 02:00-02:59 does not exist) and from 03:00 CEST back to 02:00 CET on 25 October (the
    // hour 02:00-02:59 happens twice).

    #[test]
    fn dst_spring_forward_fixed_time_runs_once_after_the_gap() {
        let t = oslo("30 2 * * *");
        assert_eq!(
            next_n(&t, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST, the end of the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
        // A time outside the gap keeps its wall-clock time across the change.
        assert_eq!(
            next_n(&oslo("0 9 * * *"), "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"]
        );
    }

    #[test]
    fn dst_spring_forward_interval_stays_in_real_time() {
        let t = oslo("*/30 * * * *");
        assert_eq!(
            next_n(&t, "2026-03-29T00:15:00Z", 3),
            [
                "2026-03-29T00:30:00Z", // 01:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST (02:00 and 02:30 do not exist)
                "2026-03-29T01:30:00Z", // 03:30 CEST
            ]
        );
    }

    #[test]
    fn dst_fall_back_fixed_time_runs_once_at_the_earlier_instant() {
        let t = oslo("30 2 * * *");
        assert_eq!(
            next_n(&t, "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, the first of the two 02:30s
                "2026-10-26T01:30:00Z", // 02:30 CET the next day: not again at 02:30 CET on the 25th
                "2026-10-27T01:30:00Z",
            ]
        );
    }

    #[test]
    fn dst_fall_back_interval_runs_in_both_hours() {
        let t = oslo("*/30 * * * *");
        assert_eq!(
            next_n(&t, "2026-10-24T23:45:00Z", 5),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T01:30:00Z", // 02:30 CET
                "2026-10-25T02:00:00Z", // 03:00 CET
            ]
        );
    }

    #[test]
    fn firings_between_counts_and_caps() {
        let t = Timetable::new(parse("*/5 * * * * *").unwrap(), TimeZone::UTC);
        let (n, last) =
            t.firings_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:00:12Z"), 100);
        assert_eq!((n, last), (3, Some(ts("2026-01-01T00:00:10Z"))));
        let (n, _) = t.firings_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-02T00:00:00Z"), 50);
        assert_eq!(n, 50);
    }
}
