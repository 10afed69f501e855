//! The SQL surface: one file per capability. Functions here only parse arguments, call the
//! domain modules, audit state changes and turn domain errors into PostgreSQL errors.

pub mod backups;
pub mod citus;
pub mod export;
pub mod import;
pub mod integrity;
pub mod jobs;
pub mod kv;
pub mod migrate;
pub mod pii;
pub mod schedules;
pub mod scopes;

use crate::error::{Common, UserError};

/// A required argument: SQL NULL is an error naming the argument, not a silent NULL result.
#[track_caller]
pub(crate) fn required<T>(value: Option<T>, argument: &'static str) -> T {
    match value {
        Some(v) => v,
        None => Common::NullArgument(argument).raise(),
    }
}

/// An `options` argument: the document given, `{}` for SQL NULL.
pub(crate) fn options(options: Option<JsonArg>) -> serde_json::Value {
    options
        .map(JsonArg::value)
        .unwrap_or_else(|| serde_json::json!({}))
}

/// A `background` argument (SQL NULL: no). A background job needs the launcher: without it
/// the call is refused (0A000) before anything is submitted.
pub(crate) fn background(background: Option<bool>) -> bool {
    use crate::error::OrRaise;
    let background = background.unwrap_or(false);
    if background {
        crate::worker::require_workers().or_raise();
    }
    background
}

/// Starts a job just submitted: a background one is woken for when the transaction commits,
/// an inline one runs now, in the caller's transaction.
pub(crate) fn start_job(job_id: i64, kind: &dyn crate::jobs::kind::JobKind, background: bool) {
    use crate::error::OrRaise;
    if background {
        crate::worker::wake_scheduler_after_commit();
    } else {
        crate::jobs::executor::run_inline(job_id, kind).or_raise();
    }
}

/// How deep a `jsonb` options argument may nest: serde_json's own recursion limit, reported as
/// bad input instead of the internal error pgrx's `JsonB` argument gives.
const MAX_JSON_DEPTH: usize = 128;

/// A `jsonb` argument of the SQL surface, decoded without panicking: options nested deeper
/// than [`MAX_JSON_DEPTH`] are an `InvalidOption` (22023) naming the top-level option they
/// are in, never an internal error (pgrx's `JsonB` argument panics on them).
pub(crate) struct JsonArg(Result<serde_json::Value, Common>);

impl JsonArg {
    /// The value, or the error raised as 22023.
    #[track_caller]
    pub(crate) fn value(self) -> serde_json::Value {
        match self.0 {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}

impl pgrx::datum::FromDatum for JsonArg {
    unsafe fn from_polymorphic_datum(
        datum: pgrx::pg_sys::Datum,
        is_null: bool,
        _typoid: pgrx::pg_sys::Oid,
    ) -> Option<JsonArg> {
        if is_null {
            return None;
        }
        let text = unsafe {
            let cstr = pgrx::direct_function_call::<&core::ffi::CStr>(
                pgrx::pg_sys::jsonb_out,
                &[Some(datum)],
            )?;
            let owned = cstr.to_string_lossy().into_owned();
            pgrx::pg_sys::pfree(cstr.as_ptr() as *mut core::ffi::c_void);
            owned
        };
        Some(JsonArg(parse_json_arg(&text)))
    }
}

unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for JsonArg {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(
        arg: pgrx::callconv::Arg<'_, 'fcx>,
    ) -> pgrx::nullable::Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

pgrx::impl_sql_translatable!(JsonArg, arg_only = "jsonb");

/// Decodes the text of a jsonb value (always valid JSON), refusing nesting that is too deep.
fn parse_json_arg(text: &str) -> Result<serde_json::Value, Common> {
    if let Some(option) = too_deep(text, MAX_JSON_DEPTH) {
        let what = match option {
            Some(key) => format!("option \"{key}\" is nested too deeply"),
            None => "the options are nested too deeply".into(),
        };
        return Err(Common::InvalidOption(
            format!("{what} (more than {MAX_JSON_DEPTH} levels of arrays and objects)"),
            Some("Options are flat objects of names, lists and small objects; see the README for each option's shape.".into()),
        ));
    }
    serde_json::from_str(text).map_err(|e| Common::InvalidOption(e.to_string(), None))
}

/// Whether `json` (valid JSON text) nests deeper than `limit`; if so, `Some` of the top-level
/// key under which it does (`None` inside when it is not under a key of a top-level object).
fn too_deep(json: &str, limit: usize) -> Option<Option<String>> {
    let bytes = json.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut last_key: Option<String> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 {
                    // A string at depth 1 followed by ':' is a top-level key.
                    let rest = json[i + 1..].trim_start();
                    if rest.starts_with(':') {
                        let raw = &json[start - 1..=i];
                        last_key = serde_json::from_str::<String>(raw).ok();
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(last_key);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod json_arg_tests {
    use super::*;

    #[test]
    fn deep_nesting_names_the_option() {
        let deep = format!(
            "{{\"a\": 1, \"tables\": {}{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(too_deep(&deep, 128), Some(Some("tables".into())));
        let bare = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(too_deep(&bare, 128), Some(None));
        assert_eq!(too_deep(r#"{"x": "[[[[[", "y": [[1]]}"#, 3), None);
        assert_eq!(
            too_deep(r#"{"x\"": "\\", "y": [[1]]}"#, 2),
            Some(Some("y".into()))
        );
        match parse_json_arg(&deep) {
            Err(Common::InvalidOption(m, _)) => assert!(m.contains("\"tables\""), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_json_arg(r#"{"a": [1]}"#).unwrap(),
            serde_json::json!({"a": [1]})
        );
    }
}
