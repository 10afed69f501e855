//! The SQL of every built-in and pipeline, the quoting of user text, and every parse error.

use serde_json::{json, Value};

use super::sql::quote_literal;
use super::{Transform, BUILTINS};
use crate::error::Common;
use crate::migrate::Error;

const CTX: &str = "column \"email\" of target table app.doctors";
const IN: &str = "s.\"E-mail\"";

fn sql(spec: Value) -> String {
    Transform::parse(&spec, CTX)
        .expect("spec parses")
        .to_sql(IN)
}

/// The message (as the user sees it) and hint of a parse error.
fn err(spec: Value) -> (String, Option<String>) {
    let e = Transform::parse(&spec, CTX).expect_err("spec must be refused");
    let hint = match &e {
        Error::Common(Common::InvalidOption(_, hint)) => hint.clone(),
        other => panic!("expected InvalidOption, got {other:?}"),
    };
    (e.to_string(), hint)
}

fn assert_builtins_hint(hint: &Option<String>) {
    let hint = hint.as_deref().expect("a hint");
    for b in BUILTINS {
        assert!(hint.contains(b), "hint {hint:?} lacks {b}");
    }
}

// ---- the SQL of each built-in -------------------------------------------------------------

#[test]
fn simple_builtins() {
    assert_eq!(
        sql(json!("trim")),
        "pg_catalog.btrim((s.\"E-mail\")::pg_catalog.text)"
    );
    assert_eq!(
        sql(json!("lower")),
        "pg_catalog.lower((s.\"E-mail\")::pg_catalog.text)"
    );
    assert_eq!(
        sql(json!("upper")),
        "pg_catalog.upper((s.\"E-mail\")::pg_catalog.text)"
    );
    assert_eq!(
        sql(json!("initcap")),
        "pg_catalog.initcap((s.\"E-mail\")::pg_catalog.text)"
    );
}

#[test]
fn object_form_equals_string_form() {
    for name in [
        "trim",
        "lower",
        "upper",
        "initcap",
        "normalize_email",
        "to_uuid",
        "mask",
    ] {
        assert_eq!(
            Transform::parse(&json!({"name": name}), CTX).unwrap(),
            Transform::parse(&json!(name), CTX).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn normalize_email() {
    assert_eq!(
        sql(json!("normalize_email")),
        "NULLIF(pg_catalog.lower(pg_catalog.btrim((s.\"E-mail\")::pg_catalog.text, \
         E' \\t\\n\\r')), '')"
    );
}

#[test]
fn normalize_phone() {
    assert_eq!(
        sql(json!("normalize_phone")),
        "pg_catalog.substring(pg_catalog.regexp_replace(pg_catalog.regexp_replace(\
         (s.\"E-mail\")::pg_catalog.text, '[^0-9+]', '', 'g'), '(?!^)[+]', '', 'g'), \
         '^[+]?[0-9]+$')"
    );
}

#[test]
fn normalize_phone_with_country_code() {
    let want = "pg_catalog.regexp_replace(pg_catalog.substring(pg_catalog.regexp_replace(\
                pg_catalog.regexp_replace((s.\"E-mail\")::pg_catalog.text, '[^0-9+]', '', \
                'g'), '(?!^)[+]', '', 'g'), '^[+]?[0-9]+$'), '^(?![+])', '+47')";
    assert_eq!(
        sql(json!({"name": "normalize_phone", "default_country_code": "47"})),
        want
    );
    // A leading '+' on the code is accepted and means the same.
    assert_eq!(
        sql(json!({"name": "normalize_phone", "default_country_code": "+47"})),
        want
    );
    assert!(
        sql(json!({"name": "normalize_phone", "default_country_code": "1"}))
            .ends_with(", '^(?![+])', '+1')")
    );
    assert!(
        sql(json!({"name": "normalize_phone", "default_country_code": "1684"}))
            .ends_with(", '^(?![+])', '+1684')")
    );
}

#[test]
fn to_date_and_to_timestamp() {
    assert_eq!(
        sql(json!({"name": "to_date", "format": "DD.MM.YYYY"})),
        "pg_catalog.to_date((s.\"E-mail\")::pg_catalog.text, 'DD.MM.YYYY')"
    );
    assert_eq!(
        sql(json!({"name": "to_timestamp", "format": "YYYY-MM-DD HH24:MI:SS"})),
        "pg_catalog.to_timestamp((s.\"E-mail\")::pg_catalog.text, 'YYYY-MM-DD HH24:MI:SS')"
    );
    // A to_date format may quote literal text with double quotes; kept verbatim.
    assert_eq!(
        sql(json!({"name": "to_date", "format": "YYYY\"w\"WW"})),
        "pg_catalog.to_date((s.\"E-mail\")::pg_catalog.text, 'YYYY\"w\"WW')"
    );
}

#[test]
fn to_uuid() {
    assert_eq!(
        sql(json!("to_uuid")),
        "(s.\"E-mail\")::pg_catalog.text::pg_catalog.uuid"
    );
}

/// `mask` for `s."E-mail"` keeping `n` characters and padding with the literal `fill`.
fn mask_sql(n: u64, fill: &str) -> String {
    format!(
        "pg_catalog.lpad(pg_catalog.right((s.\"E-mail\")::pg_catalog.text, {n}), \
         pg_catalog.length((s.\"E-mail\")::pg_catalog.text), {fill})"
    )
}

#[test]
fn mask_default_and_params() {
    assert_eq!(
        sql(json!("mask")),
        "pg_catalog.lpad(pg_catalog.right((s.\"E-mail\")::pg_catalog.text, 4), \
         pg_catalog.length((s.\"E-mail\")::pg_catalog.text), '*')"
    );
    assert_eq!(
        sql(json!({"name": "mask", "keep_last": 2, "char": "#"})),
        mask_sql(2, "'#'")
    );
    assert_eq!(
        sql(json!({"name": "mask", "keep_last": 0})),
        mask_sql(0, "'*'")
    );
    assert_eq!(
        sql(json!({"name": "mask", "keep_last": 2147483647, "char": "•"})),
        mask_sql(2147483647, "'•'")
    );
}

#[test]
fn mask_special_chars_are_quoted() {
    assert_eq!(
        sql(json!({"name": "mask", "char": "'"})),
        mask_sql(4, "''''")
    );
    assert_eq!(
        sql(json!({"name": "mask", "char": "\\"})),
        mask_sql(4, "E'\\\\'")
    );
    assert_eq!(
        sql(json!({"name": "mask", "char": "&"})),
        mask_sql(4, "'&'")
    );
}

#[test]
fn map_keep_null_and_constant_defaults() {
    let values = json!({"M": "male", "F": "female", "?": null});
    assert_eq!(
        sql(json!({"name": "map", "values": values})),
        "CASE (s.\"E-mail\")::pg_catalog.text WHEN '?' THEN NULL WHEN 'F' THEN 'female' \
         WHEN 'M' THEN 'male' ELSE (s.\"E-mail\")::pg_catalog.text END"
    );
    assert_eq!(
        sql(json!({"name": "map", "values": values, "default": "keep"})),
        sql(json!({"name": "map", "values": values}))
    );
    assert_eq!(
        sql(json!({"name": "map", "values": values, "default": "null"})),
        "CASE (s.\"E-mail\")::pg_catalog.text WHEN '?' THEN NULL WHEN 'F' THEN 'female' \
         WHEN 'M' THEN 'male' ELSE NULL END"
    );
    assert_eq!(
        sql(json!({"name": "map", "values": values, "default": null})),
        sql(json!({"name": "map", "values": values, "default": "null"}))
    );
    assert_eq!(
        sql(json!({"name": "map", "values": {"1": "yes"}, "default": "unknown"})),
        "CASE (s.\"E-mail\")::pg_catalog.text WHEN '1' THEN 'yes' ELSE 'unknown' END"
    );
    assert_eq!(
        sql(json!({"name": "map", "values": {"": "empty"}, "default": ""})),
        "CASE (s.\"E-mail\")::pg_catalog.text WHEN '' THEN 'empty' ELSE '' END"
    );
}

#[test]
fn map_sql_does_not_depend_on_key_order() {
    let a: Value =
        serde_json::from_str(r#"{"name": "map", "values": {"b": "2", "a": "1", "c": "3"}}"#)
            .unwrap();
    let b: Value =
        serde_json::from_str(r#"{"values": {"c": "3", "a": "1", "b": "2"}, "name": "map"}"#)
            .unwrap();
    assert_eq!(sql(a.clone()), sql(b));
    assert!(sql(a).contains("WHEN 'a' THEN '1' WHEN 'b' THEN '2' WHEN 'c' THEN '3'"));
}

// ---- pipelines ------------------------------------------------------------------------------

#[test]
fn pipeline_applies_in_order() {
    assert_eq!(
        sql(json!(["trim", "lower"])),
        "pg_catalog.lower(pg_catalog.btrim((s.\"E-mail\")::pg_catalog.text))"
    );
    assert_eq!(
        sql(json!(["lower", "trim"])),
        "pg_catalog.btrim(pg_catalog.lower((s.\"E-mail\")::pg_catalog.text))"
    );
}

#[test]
fn pipeline_of_one_equals_single() {
    assert_eq!(sql(json!(["upper"])), sql(json!("upper")));
    assert_eq!(
        Transform::parse(&json!([{"name": "mask", "keep_last": 3}]), CTX).unwrap(),
        Transform::parse(&json!({"name": "mask", "keep_last": 3}), CTX).unwrap()
    );
}

#[test]
fn pipeline_mixing_forms() {
    assert_eq!(
        sql(json!([
            "trim",
            {"name": "map", "values": {"n/a": null}, "default": "keep"},
            "upper"
        ])),
        "pg_catalog.upper(CASE pg_catalog.btrim((s.\"E-mail\")::pg_catalog.text) \
         WHEN 'n/a' THEN NULL ELSE pg_catalog.btrim((s.\"E-mail\")::pg_catalog.text) END)"
    );
}

#[test]
fn pipeline_ending_in_typed_step() {
    assert_eq!(
        sql(json!(["trim", {"name": "to_date", "format": "YYYYMMDD"}])),
        "pg_catalog.to_date(pg_catalog.btrim((s.\"E-mail\")::pg_catalog.text), 'YYYYMMDD')"
    );
    assert_eq!(
        sql(json!(["lower", "trim", "to_uuid"])),
        "pg_catalog.btrim(pg_catalog.lower((s.\"E-mail\")::pg_catalog.text))::pg_catalog.uuid"
    );
    assert_eq!(
        sql(json!([{"name": "map", "values": {"": null}, "default": "keep"}, "to_uuid"])),
        "CASE (s.\"E-mail\")::pg_catalog.text WHEN '' THEN NULL \
         ELSE (s.\"E-mail\")::pg_catalog.text END::pg_catalog.uuid"
    );
}

#[test]
fn pipeline_email_then_mask() {
    assert_eq!(
        sql(json!(["normalize_email", {"name": "mask", "keep_last": 6}])),
        "pg_catalog.lpad(pg_catalog.right(NULLIF(pg_catalog.lower(pg_catalog.btrim(\
         (s.\"E-mail\")::pg_catalog.text, E' \\t\\n\\r')), ''), 6), \
         pg_catalog.length(NULLIF(pg_catalog.lower(pg_catalog.btrim(\
         (s.\"E-mail\")::pg_catalog.text, E' \\t\\n\\r')), '')), '*')"
    );
}

#[test]
fn input_is_used_as_given() {
    let t = Transform::parse(&json!("lower"), CTX).unwrap();
    assert_eq!(
        t.to_sql("s.id + 1"),
        "pg_catalog.lower((s.id + 1)::pg_catalog.text)"
    );
    assert_eq!(t.to_sql("42"), "pg_catalog.lower((42)::pg_catalog.text)");
}

#[test]
fn deterministic() {
    let spec = json!(["trim", {"name": "map", "values": {"x": "1", "y": "2", "z": null}}]);
    let a = Transform::parse(&spec, CTX).unwrap();
    let b = Transform::parse(&spec, CTX).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_sql(IN), b.to_sql(IN));
    assert_eq!(a.to_sql(IN), a.to_sql(IN));
}

// ---- quoting ----------------------------------------------------------------------------------

#[test]
fn quote_literal_cases() {
    assert_eq!(quote_literal(""), "''");
    assert_eq!(quote_literal("abc"), "'abc'");
    assert_eq!(quote_literal("O'Brien"), "'O''Brien'");
    assert_eq!(quote_literal("'"), "''''");
    assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    assert_eq!(quote_literal("\\'"), "E'\\\\'''");
    assert_eq!(quote_literal("ø\n\"x\""), "'ø\n\"x\"'");
}

#[test]
fn hostile_map_literals_are_quoted() {
    let evil = "'; DROP TABLE x; --";
    let got = sql(json!({"name": "map", "values": {evil: evil}, "default": evil}));
    assert_eq!(
        got,
        "CASE (s.\"E-mail\")::pg_catalog.text WHEN '''; DROP TABLE x; --' \
         THEN '''; DROP TABLE x; --' ELSE '''; DROP TABLE x; --' END"
    );
    // Backslash tricks meant for standard_conforming_strings = off stay inert too.
    let evil2 = "\\'; DROP TABLE x; --";
    assert_eq!(
        sql(json!({"name": "map", "values": {"a": evil2}, "default": "null"})),
        "CASE (s.\"E-mail\")::pg_catalog.text WHEN 'a' THEN E'\\\\''; DROP TABLE x; --' \
         ELSE NULL END"
    );
}

#[test]
fn hostile_formats_are_quoted() {
    let evil = "'; DROP TABLE x; --";
    assert_eq!(
        sql(json!({"name": "to_date", "format": evil})),
        "pg_catalog.to_date((s.\"E-mail\")::pg_catalog.text, '''; DROP TABLE x; --')"
    );
    assert_eq!(
        sql(json!({"name": "to_timestamp", "format": "YYYY') || pg_sleep(10) || ('"})),
        "pg_catalog.to_timestamp((s.\"E-mail\")::pg_catalog.text, \
         'YYYY'') || pg_sleep(10) || (''')"
    );
}

/// Outside quoted literals, the generated SQL holds only what we wrote ourselves.
#[test]
fn no_user_text_outside_literals() {
    let evil = "x'); DROP TABLE y; --\\";
    let spec = json!([
        {"name": "map", "values": {evil: evil}, "default": evil},
        {"name": "mask", "char": "'"},
        {"name": "to_date", "format": evil}
    ]);
    let got = sql(spec);
    // Strip every literal ('...' with '' escapes; E'...' with \\ escapes) and look at the rest.
    let mut rest = String::new();
    let mut chars = got.chars().peekable();
    let mut escape_string = false;
    while let Some(c) = chars.next() {
        if c == 'E' && chars.peek() == Some(&'\'') {
            escape_string = true;
            continue;
        }
        if c != '\'' {
            rest.push(c);
            continue;
        }
        loop {
            match chars.next().expect("unterminated literal") {
                '\\' if escape_string => {
                    chars.next();
                }
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                '\'' => break,
                _ => {}
            }
        }
        escape_string = false;
        rest.push_str("<lit>");
    }
    assert!(!rest.contains("DROP"), "{rest}");
    assert_eq!(
        rest,
        "pg_catalog.to_date(pg_catalog.lpad(pg_catalog.right(CASE (s.\"E-mail\")::pg_catalog.text \
         WHEN <lit> THEN <lit> ELSE <lit> END, 4), pg_catalog.length(CASE \
         (s.\"E-mail\")::pg_catalog.text WHEN <lit> THEN <lit> ELSE <lit> END), <lit>), <lit>)"
    );
}

// ---- errors -----------------------------------------------------------------------------------

#[test]
fn unknown_name() {
    let (msg, hint) = err(json!("titlecase"));
    assert_eq!(
        msg,
        "invalid options: unknown transform \"titlecase\" for column \"email\" of target \
         table app.doctors"
    );
    assert_builtins_hint(&hint);
    let (msg, hint) = err(json!({"name": "Trim"}));
    assert!(
        msg.contains("unknown transform \"Trim\" for column \"email\""),
        "{msg}"
    );
    assert_builtins_hint(&hint);
}

#[test]
fn unknown_name_in_pipeline_names_the_step() {
    let (msg, hint) = err(json!(["trim", "lower", "rot13"]));
    assert_eq!(
        msg,
        "invalid options: unknown transform \"rot13\" (step 3 of 3) for column \"email\" of \
         target table app.doctors"
    );
    assert_builtins_hint(&hint);
}

#[test]
fn bad_shapes() {
    for (spec, kind) in [
        (json!(null), "null"),
        (json!(3), "a number"),
        (json!(true), "a boolean"),
    ] {
        let (msg, hint) = err(spec);
        assert_eq!(
            msg,
            format!(
                "invalid options: a transform must be a name, an object with a \"name\", or \
                 an array of those for column \"email\" of target table app.doctors, not {kind}"
            )
        );
        assert_builtins_hint(&hint);
    }
    let (msg, hint) = err(json!(["trim", ["lower"]]));
    assert_eq!(
        msg,
        "invalid options: a step of a transform pipeline must be a name or an object with a \
         \"name\" (step 2 of 2) for column \"email\" of target table app.doctors, not an array"
    );
    assert_builtins_hint(&hint);
}

#[test]
fn empty_pipeline() {
    let (msg, hint) = err(json!([]));
    assert_eq!(
        msg,
        "invalid options: the transform pipeline for column \"email\" of target table \
         app.doctors is empty"
    );
    assert_builtins_hint(&hint);
}

#[test]
fn object_without_or_with_bad_name() {
    let (msg, hint) = err(json!({"format": "YYYY"}));
    assert_eq!(
        msg,
        "invalid options: a transform object for column \"email\" of target table \
         app.doctors has no \"name\""
    );
    assert_builtins_hint(&hint);
    let (msg, hint) = err(json!({"name": 7}));
    assert_eq!(
        msg,
        "invalid options: the \"name\" of a transform for column \"email\" of target table \
         app.doctors must be a string, not a number"
    );
    assert_builtins_hint(&hint);
}

#[test]
fn parameters_on_parameterless_builtins() {
    for name in [
        "trim",
        "lower",
        "upper",
        "initcap",
        "normalize_email",
        "to_uuid",
    ] {
        let (msg, hint) = err(json!({"name": name, "chars": " "}));
        assert_eq!(
            msg,
            format!(
                "invalid options: transform \"{name}\" for column \"email\" of target table \
                 app.doctors: unknown parameter \"chars\""
            )
        );
        assert_eq!(
            hint.as_deref(),
            Some(
                format!("Transform \"{name}\" takes no parameters: write it as \"{name}\".")
                    .as_str()
            )
        );
    }
}

#[test]
fn unknown_parameters() {
    for (spec, name, key) in [
        (json!({"name": "mask", "keep": 2}), "mask", "keep"),
        (
            json!({"name": "to_date", "format": "YYYY", "fmt": "x"}),
            "to_date",
            "fmt",
        ),
        (
            json!({"name": "map", "values": {"a": "b"}, "else": "c"}),
            "map",
            "else",
        ),
        (
            json!({"name": "normalize_phone", "country": "47"}),
            "normalize_phone",
            "country",
        ),
        (
            json!({"name": "to_timestamp", "format": "YYYY", "tz": "UTC"}),
            "to_timestamp",
            "tz",
        ),
    ] {
        let (msg, hint) = err(spec);
        assert_eq!(
            msg,
            format!(
                "invalid options: transform \"{name}\" for column \"email\" of target table \
                 app.doctors: unknown parameter \"{key}\""
            )
        );
        assert!(hint
            .unwrap()
            .starts_with(&format!("Transform \"{name}\" takes")));
    }
}

#[test]
fn missing_required_parameters() {
    let (msg, hint) = err(json!("to_date"));
    assert_eq!(
        msg,
        "invalid options: transform \"to_date\" for column \"email\" of target table \
         app.doctors: parameter \"format\" is required"
    );
    assert!(hint.unwrap().contains("\"format\": \"YYYY-MM-DD\""));
    let (msg, _) = err(json!(["trim", {"name": "to_timestamp"}]));
    assert_eq!(
        msg,
        "invalid options: transform \"to_timestamp\" (step 2 of 2) for column \"email\" of \
         target table app.doctors: parameter \"format\" is required"
    );
    let (msg, hint) = err(json!("map"));
    assert_eq!(
        msg,
        "invalid options: transform \"map\" for column \"email\" of target table \
         app.doctors: parameter \"values\" is required"
    );
    assert!(hint.unwrap().contains("\"values\""));
}

#[test]
fn format_type_and_emptiness() {
    let (msg, _) = err(json!({"name": "to_date", "format": 20240101}));
    assert!(
        msg.ends_with(
            "transform \"to_date\" for column \"email\" of target table \
                          app.doctors: parameter \"format\" must be a string, not a number"
        ),
        "{msg}"
    );
    let (msg, _) = err(json!({"name": "to_date", "format": null}));
    assert!(
        msg.ends_with("parameter \"format\" must be a string, not null"),
        "{msg}"
    );
    let (msg, _) = err(json!({"name": "to_timestamp", "format": "  "}));
    assert!(
        msg.ends_with(
            "transform \"to_timestamp\" for column \"email\" of target table \
                          app.doctors: parameter \"format\" must not be empty"
        ),
        "{msg}"
    );
    let (msg, _) = err(json!({"name": "to_date", "format": "YYYY\u{0}MM"}));
    assert!(
        msg.ends_with("parameter \"format\" must not contain a NUL character"),
        "{msg}"
    );
}

#[test]
fn bad_country_codes() {
    for code in ["", "+", "12345", "4a", " 47", "47 ", "++47", "٤٧"] {
        let (msg, hint) = err(json!({"name": "normalize_phone", "default_country_code": code}));
        assert_eq!(
            msg,
            format!(
                "invalid options: transform \"normalize_phone\" for column \"email\" of \
                 target table app.doctors: parameter \"default_country_code\" must be 1 to 4 \
                 digits, not {}",
                Value::String(code.into())
            )
        );
        assert!(hint.unwrap().contains("default_country_code"));
    }
    let (msg, _) = err(json!({"name": "normalize_phone", "default_country_code": 47}));
    assert!(
        msg.ends_with("parameter \"default_country_code\" must be a string, not a number"),
        "{msg}"
    );
}

#[test]
fn bad_mask_parameters() {
    for v in [
        json!(-1),
        json!(1.5),
        json!("4"),
        json!(2147483648u64),
        json!(null),
        json!(true),
    ] {
        let (msg, hint) = err(json!({"name": "mask", "keep_last": v}));
        assert_eq!(
            msg,
            format!(
                "invalid options: transform \"mask\" for column \"email\" of target table \
                 app.doctors: parameter \"keep_last\" must be an integer from 0 to \
                 2147483647, not {v}"
            )
        );
        assert!(hint.unwrap().contains("\"keep_last\""));
    }
    for c in ["", "ab", "e\u{301}"] {
        let (msg, _) = err(json!({"name": "mask", "char": c}));
        assert!(
            msg.ends_with(&format!(
                "parameter \"char\" must be exactly one character, not {}",
                Value::String(c.into())
            )),
            "{msg}"
        );
    }
    let (msg, _) = err(json!({"name": "mask", "char": 42}));
    assert!(
        msg.ends_with("parameter \"char\" must be a string, not a number"),
        "{msg}"
    );
    let (msg, _) = err(json!({"name": "mask", "char": "\u{0}"}));
    assert!(
        msg.ends_with("parameter \"char\" must not contain a NUL character"),
        "{msg}"
    );
}

#[test]
fn bad_map_parameters() {
    let base = "invalid options: transform \"map\" for column \"email\" of target table \
                app.doctors: ";
    let cases = [
        (
            json!({"name": "map", "values": ["a", "b"]}),
            "parameter \"values\" must be an object, not an array",
        ),
        (
            json!({"name": "map", "values": "a=b"}),
            "parameter \"values\" must be an object, not a string",
        ),
        (
            json!({"name": "map", "values": {}}),
            "parameter \"values\" must map at least one value",
        ),
        (
            json!({"name": "map", "values": {"1": 1}}),
            "parameter \"values\" must map \"1\" to a string or null, not a number",
        ),
        (
            json!({"name": "map", "values": {"a": {"b": "c"}}}),
            "parameter \"values\" must map \"a\" to a string or null, not an object",
        ),
        (
            json!({"name": "map", "values": {"a": "b"}, "default": 0}),
            "parameter \"default\" must be \"keep\", \"null\" or a string, not a number",
        ),
        (
            json!({"name": "map", "values": {"a": "b"}, "default": false}),
            "parameter \"default\" must be \"keep\", \"null\" or a string, not a boolean",
        ),
        (
            json!({"name": "map", "values": {"a\u{0}": "b"}}),
            "a key of parameter \"values\" must not contain a NUL character",
        ),
        (
            json!({"name": "map", "values": {"a": "b\u{0}"}}),
            "parameter \"values\" must not contain a NUL character",
        ),
        (
            json!({"name": "map", "values": {"a": "b"}, "default": "\u{0}"}),
            "parameter \"default\" must not contain a NUL character",
        ),
    ];
    for (spec, problem) in cases {
        let (msg, hint) = err(spec);
        assert_eq!(msg, format!("{base}{problem}"));
        assert!(hint.unwrap().starts_with("Transform \"map\" takes"));
    }
}

#[test]
fn typed_step_must_be_last() {
    let (msg, hint) = err(json!([{"name": "to_date", "format": "YYYY"}, "trim"]));
    assert_eq!(
        msg,
        "invalid options: transform \"to_date\" (step 1 of 2) for column \"email\" of target \
         table app.doctors produces a date, so it must be the last step of the pipeline"
    );
    assert!(hint.unwrap().contains("last"));
    let (msg, _) = err(json!(["trim", "to_uuid", "lower"]));
    assert!(msg.contains("transform \"to_uuid\" (step 2 of 3)"), "{msg}");
    assert!(msg.ends_with("produces a uuid, so it must be the last step of the pipeline"));
    let (msg, _) = err(json!([{"name": "to_timestamp", "format": "YYYY"}, "to_uuid"]));
    assert!(msg.contains("produces a timestamp with time zone"), "{msg}");
}

#[test]
fn first_error_in_a_pipeline_wins() {
    let (msg, _) = err(json!(["nope", {"name": "mask", "keep_last": -1}]));
    assert!(
        msg.contains("unknown transform \"nope\" (step 1 of 2)"),
        "{msg}"
    );
}

#[test]
fn empty_context_is_left_out() {
    let e = Transform::parse(&json!("nope"), "").unwrap_err();
    assert_eq!(e.to_string(), "invalid options: unknown transform \"nope\"");
    let e = Transform::parse(&json!(["trim", "to_date"]), "").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid options: transform \"to_date\" (step 2 of 2): parameter \"format\" is required"
    );
}

// ---- can_fail, result_type, names --------------------------------------------------------------

#[test]
fn can_fail() {
    let fails = |spec: Value| Transform::parse(&spec, CTX).unwrap().can_fail();
    for safe in [
        json!("trim"),
        json!("lower"),
        json!("upper"),
        json!("initcap"),
        json!("normalize_email"),
        json!("normalize_phone"),
        json!({"name": "normalize_phone", "default_country_code": "47"}),
        json!("mask"),
        json!({"name": "map", "values": {"a": "b"}}),
        json!(["trim", "lower", "mask"]),
    ] {
        assert!(!fails(safe.clone()), "{safe}");
    }
    for risky in [
        json!({"name": "to_date", "format": "YYYY"}),
        json!({"name": "to_timestamp", "format": "YYYY"}),
        json!("to_uuid"),
        json!(["trim", "to_uuid"]),
        json!(["trim", {"name": "to_date", "format": "YYYY"}]),
    ] {
        assert!(fails(risky.clone()), "{risky}");
    }
}

#[test]
fn result_type_and_names() {
    let t = |spec: Value| Transform::parse(&spec, CTX).unwrap();
    assert_eq!(t(json!("trim")).result_type(), "text");
    assert_eq!(t(json!(["trim", "mask"])).result_type(), "text");
    assert_eq!(
        t(json!({"name": "to_date", "format": "YYYY"})).result_type(),
        "date"
    );
    assert_eq!(
        t(json!(["trim", {"name": "to_timestamp", "format": "YYYY"}])).result_type(),
        "timestamp with time zone"
    );
    assert_eq!(t(json!(["trim", "to_uuid"])).result_type(), "uuid");
    assert_eq!(
        t(json!(["trim", "lower", {"name": "map", "values": {"a": "b"}}])).names(),
        vec!["trim", "lower", "map"]
    );
}

#[test]
fn every_builtin_parses_and_is_listed() {
    for name in BUILTINS {
        let spec = match *name {
            "to_date" | "to_timestamp" => json!({"name": name, "format": "YYYY"}),
            "map" => json!({"name": name, "values": {"a": "b"}}),
            _ => json!(name),
        };
        let t = Transform::parse(&spec, CTX).unwrap();
        assert_eq!(t.names(), vec![*name]);
        assert!(
            t.to_sql(IN).starts_with("pg_catalog.")
                || t.to_sql(IN).starts_with("NULLIF(")
                || t.to_sql(IN).starts_with("CASE ")
                || t.to_sql(IN).starts_with("tenant_ops.pseudonymize(")
                || t.to_sql(IN)
                    .starts_with("(s.\"E-mail\")::pg_catalog.text::")
        );
    }
}

#[test]
fn builtins_are_the_names_serde_reads() {
    use crate::options::{self, Object, Problem};
    let (_, problem) = options::deserialize::<Object<super::Step>>(&json!({"name": "nope"}))
        .err()
        .expect("an unknown name is refused");
    match problem {
        Problem::UnknownVariant { known, .. } => assert_eq!(known, BUILTINS),
        other => panic!("expected an unknown variant, got {other:?}"),
    }
}

// ---- masking transforms (PII) -------------------------------------------------------------

#[test]
fn masking_builtins() {
    let t = "(s.\"E-mail\")::pg_catalog.text";
    assert_eq!(
        sql(json!("mask_email")),
        format!(
            "CASE WHEN pg_catalog.strpos({t}, '@') > 1 THEN pg_catalog.regexp_replace({t}, '^(.)[^@]*', E'\\\\1***') ELSE pg_catalog.regexp_replace({t}, '.', '*', 'g') END"
        )
    );
    assert_eq!(
        sql(json!("mask_card")),
        format!("pg_catalog.regexp_replace({t}, '[0-9](?=(?:[^0-9]*[0-9]){{4}})', '*', 'g')")
    );
    assert_eq!(
        sql(json!("pseudonymize")),
        format!("tenant_ops.pseudonymize({t})")
    );
    assert_eq!(
        sql(json!("redact")),
        format!("CASE WHEN {t} IS NULL THEN NULL ELSE '[redacted]' END")
    );
    assert_eq!(
        sql(json!({"name": "redact", "with": "it's gone"})),
        format!("CASE WHEN {t} IS NULL THEN NULL ELSE 'it''s gone' END")
    );
    assert_eq!(
        sql(json!(["trim", "mask_email"])),
        sql(json!("mask_email")).replace(t, &format!("pg_catalog.btrim({t})"))
    );
    let (message, hint) = err(json!({"name": "redact", "with": 1}));
    assert!(
        message.contains("parameter \"with\" must be a string, not a number"),
        "{message}"
    );
    assert!(hint
        .unwrap_or_default()
        .contains("takes one optional parameter, \"with\""));
    let (message, _) = err(json!({"name": "mask_card", "keep_last": 2}));
    assert!(message.contains("keep_last"), "{message}");
}
