//! SQL files of INSERT statements (as `pg_dump --data-only --inserts` or `--column-inserts`
//! writes them, or psql scripts), parsed with PostgreSQL's own parser (`raw_parser`) and
//! never executed: each statement's parse tree is walked, and only an `INSERT INTO` the
//! target table with `VALUES` lists of constants gives rows, which then go the way every
//! other format's records go (conversions, rules, `job_errors`, `on_conflict`).
//!
//! The text is cut into pieces of about 256 kB that end at statement boundaries (a small
//! scanner that knows PostgreSQL's quoting: string literals, `E''` escapes, quoted
//! identifiers, dollar quotes, nested comments); each piece is parsed in one `raw_parser`
//! call, in a memory context of its own. Should a piece not parse, its statements are parsed
//! one by one to name the line at fault.
//!
//! Also read, and not executed: what pg_dump writes around the rows — `SET` statements,
//! `SELECT pg_catalog.set_config(...)` and `SELECT pg_catalog.setval(...)` with constant
//! arguments, `BEGIN`/`COMMIT`, and psql's `\restrict`/`\unrestrict` lines. Any other
//! statement (a `DROP TABLE`, a `DELETE`, a `SELECT`), an INSERT into another table, or a
//! value that is not a constant (a function call, a subquery) refuses the file, naming the
//! statement's line and what it is, before any row of that piece is written.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io::BufRead;

use pgrx::pg_sys::{self, NodeTag};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::{self, *};
use serde_json::{Map, Value};

use super::{Reader, Record, Values};
use crate::import::error::{Error, Result};

/// Bytes of SQL parsed in one call (a piece ends at the first statement boundary after it).
const PIECE: usize = 256 * 1024;
/// Bytes read from the text at a time.
const READ: usize = 256 * 1024;
/// The longest statement read.
pub const MAX_STATEMENT: usize = 64 * 1024 * 1024;

/// What [`next_piece`] found at the start of some text.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A statement ending (after its `;`, or at the end of the text) at this offset.
    Statement(usize),
    /// Whitespace and comments only (or an empty statement `;`), up to this offset.
    Blank(usize),
    /// A psql meta-command line (`\restrict ...`), up to and including its line break.
    Meta(usize),
    /// The text ends inside a statement: more is needed.
    More,
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The end of the comment starting at `i` (`--` or `/*`, nested as PostgreSQL nests them),
/// `None` when the text ends first.
fn comment_end(b: &[u8], i: usize) -> Option<usize> {
    if b[i] == b'-' {
        return b[i..].iter().position(|c| *c == b'\n').map(|p| i + p + 1);
    }
    let mut depth = 0;
    let mut j = i;
    while j + 1 < b.len() {
        if b[j] == b'/' && b[j + 1] == b'*' {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b[j + 1] == b'/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return Some(j);
            }
        } else {
            j += 1;
        }
    }
    None
}

/// Whether a comment starts at `i`; `None` when one more byte is needed to tell.
fn comment_at(b: &[u8], i: usize, eof: bool) -> Option<bool> {
    if b[i] != b'-' && b[i] != b'/' {
        return Some(false);
    }
    match b.get(i + 1) {
        None if eof => Some(false),
        None => None,
        Some(n) => Some((b[i] == b'-' && *n == b'-') || (b[i] == b'/' && *n == b'*')),
    }
}

/// The first statement (or blank run, or meta-command) at the start of `b`, read the way
/// PostgreSQL's lexer reads it (`standard_conforming_strings` on).
pub fn next_piece(b: &[u8], eof: bool) -> Piece {
    let more_or = |end: usize, started: bool| {
        if !eof {
            Piece::More
        } else if started {
            Piece::Statement(end)
        } else {
            Piece::Blank(end)
        }
    };
    let mut i = 0;
    let mut started = false;
    while i < b.len() {
        let c = b[i];
        match comment_at(b, i, eof) {
            None => return Piece::More,
            Some(true) => match comment_end(b, i) {
                Some(end) => {
                    i = end;
                    continue;
                }
                None => return more_or(b.len(), started),
            },
            Some(false) => {}
        }
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
            b'\\' if !started => {
                return match b[i..].iter().position(|c| *c == b'\n') {
                    Some(p) => Piece::Meta(i + p + 1),
                    None if eof => Piece::Meta(b.len()),
                    None => Piece::More,
                }
            }
            b';' => {
                return if started {
                    Piece::Statement(i + 1)
                } else {
                    Piece::Blank(i + 1)
                }
            }
            b'\'' => {
                started = true;
                // E'...' takes backslash escapes: an E right before, not ending a word.
                let escapes = i >= 1
                    && (b[i - 1] == b'e' || b[i - 1] == b'E')
                    && (i < 2 || !ident_char(b[i - 2]));
                let mut j = i + 1;
                loop {
                    if j >= b.len() {
                        return more_or(b.len(), true);
                    }
                    if escapes && b[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if b[j] == b'\'' {
                        match b.get(j + 1) {
                            Some(b'\'') => j += 2,
                            None if !eof => return Piece::More,
                            _ => break,
                        }
                        continue;
                    }
                    j += 1;
                }
                i = j + 1;
            }
            b'"' => {
                started = true;
                let mut j = i + 1;
                loop {
                    if j >= b.len() {
                        return more_or(b.len(), true);
                    }
                    if b[j] == b'"' {
                        match b.get(j + 1) {
                            Some(b'"') => j += 2,
                            None if !eof => return Piece::More,
                            _ => break,
                        }
                        continue;
                    }
                    j += 1;
                }
                i = j + 1;
            }
            b'$' if i == 0 || !ident_char(b[i - 1]) => {
                started = true;
                // $tag$: the tag is an identifier without `$`, or empty; `$1` is a parameter.
                let tag_len = b[i + 1..]
                    .iter()
                    .position(|c| !ident_char(*c))
                    .unwrap_or(b.len() - i - 1);
                let close = i + 1 + tag_len;
                if close >= b.len() {
                    if !eof {
                        return Piece::More;
                    }
                    i = b.len();
                    continue;
                }
                if b[close] != b'$' || b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                    continue;
                }
                let tag = &b[i..=close];
                match b[close + 1..].windows(tag.len()).position(|w| w == tag) {
                    Some(p) => i = close + 1 + p + tag.len(),
                    None => return more_or(b.len(), true),
                }
            }
            _ => {
                started = true;
                i += 1;
            }
        }
    }
    more_or(b.len(), started)
}

/// The offset of the first token at or after `from` (skipping whitespace and comments).
pub fn first_token(b: &[u8], mut from: usize) -> usize {
    while from < b.len() {
        if b[from].is_ascii_whitespace() {
            from += 1;
        } else if comment_at(b, from, true) == Some(true) {
            match comment_end(b, from) {
                Some(end) => from = end,
                None => return b.len(),
            }
        } else {
            break;
        }
    }
    from
}

fn newlines(b: &[u8]) -> u64 {
    b.iter().filter(|c| **c == b'\n').count() as u64
}

/// Whether the head of a file (after comments) starts the way SQL scripts and pg_dump's
/// output do: `INSERT`, `SET`, `BEGIN`, or a psql `\restrict` line.
pub fn looks_like_sql(head: &[u8]) -> bool {
    let at = first_token(head, 0);
    let rest = &head[at..];
    let word: Vec<u8> = rest
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let after = &rest[word.len()..];
    let spaced = after.first().is_some_and(|c| c.is_ascii_whitespace());
    let next: Vec<u8> = after
        .iter()
        .skip_while(|c| c.is_ascii_whitespace())
        .take_while(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (word == b"INSERT" && spaced && next == b"INTO")
        || (word == b"SET" && spaced && !next.is_empty())
        || (word == b"BEGIN" && (spaced || after.first() == Some(&b';')))
        || rest.starts_with(b"\\restrict")
        // pg_dump's header comment with nothing after it yet.
        || (at > 0 && head.starts_with(b"--\n-- PostgreSQL database dump"))
}

/// A statement refused: where, why, with which SQLSTATE.
struct Refusal {
    sqlstate: PgSqlErrorCode,
    what: String,
    hint: Option<String>,
}

fn refuse(sqlstate: PgSqlErrorCode, what: impl Into<String>) -> Refusal {
    Refusal {
        sqlstate,
        what: what.into(),
        hint: None,
    }
}

/// The target the statements must insert into.
pub struct Target {
    pub oid: pg_sys::Oid,
    /// As `regclass` prints it.
    pub display: String,
    /// Every column in order (an INSERT without a column list fills them in that order),
    /// and whether it is generated.
    pub columns: Vec<(String, bool)>,
}

impl Target {
    pub fn load(oid: u32) -> Target {
        let columns = Spi::connect(|c| {
            c.select(
                "SELECT attname::text, attgenerated <> '' FROM pg_catalog.pg_attribute
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                None,
                &[pg_sys::Oid::from(oid).into()],
            )?
            .map(|r| {
                Ok((
                    r.get::<String>(1)?.unwrap_or_default(),
                    r.get::<bool>(2)?.unwrap_or(false),
                ))
            })
            .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap_or_default();
        let display = Spi::get_one_with_args::<String>(
            "SELECT $1::pg_catalog.regclass::text",
            &[pg_sys::Oid::from(oid).into()],
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        Target {
            oid: pg_sys::Oid::from(oid),
            display,
            columns,
        }
    }
}

/// The rows of one statement (none for what is read and skipped).
type Rows = Vec<Map<String, Value>>;

unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

unsafe fn list<T>(l: *mut pg_sys::List) -> Vec<*mut T> {
    pgrx::PgList::<T>::from_pg(l).iter_ptr().collect()
}

/// What a statement is, as PostgreSQL names it, with its article (`a DROP TABLE statement`,
/// `an UPDATE statement`).
unsafe fn command_name(node: *mut pg_sys::Node) -> String {
    let name = cstr(pg_sys::CreateCommandName(node));
    let article = if name.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name} statement")
}

/// A constant's text (`None` for NULL), an outer `DEFAULT` as `Err(None)`, anything else as
/// `Err(Some(what it is))`.
unsafe fn constant(
    node: *mut pg_sys::Node,
) -> std::result::Result<Option<String>, Option<&'static str>> {
    if node.is_null() {
        return Err(Some("nothing"));
    }
    match (*node).type_ {
        NodeTag::T_A_Const => {
            let c = node as *mut pg_sys::A_Const;
            if (*c).isnull {
                return Ok(None);
            }
            let v = &(*c).val;
            Ok(Some(match v.node.type_ {
                NodeTag::T_Integer => v.ival.ival.to_string(),
                NodeTag::T_Float => cstr(v.fval.fval),
                NodeTag::T_Boolean => v.boolval.boolval.to_string(),
                NodeTag::T_String => cstr(v.sval.sval),
                NodeTag::T_BitString => cstr(v.bsval.bsval),
                _ => return Err(Some("a constant of an unknown kind")),
            }))
        }
        // 'text'::type: the text; the target column's own type reads it.
        NodeTag::T_TypeCast => constant((*(node as *mut pg_sys::TypeCast)).arg),
        NodeTag::T_SetToDefault => Err(None),
        NodeTag::T_FuncCall => Err(Some("a function call")),
        NodeTag::T_ColumnRef => Err(Some("a column reference")),
        NodeTag::T_SubLink => Err(Some("a subquery")),
        NodeTag::T_ParamRef => Err(Some("a parameter")),
        NodeTag::T_A_ArrayExpr => Err(Some("an ARRAY constructor")),
        NodeTag::T_RowExpr => Err(Some("a ROW constructor")),
        _ => Err(Some("an expression")),
    }
}

/// pg_dump's `SELECT pg_catalog.set_config(...)` and `SELECT pg_catalog.setval(...)`, with
/// constant arguments and nothing else.
unsafe fn pg_dump_call(s: *mut pg_sys::SelectStmt) -> bool {
    let s = &*s;
    if !s.fromClause.is_null()
        || !s.whereClause.is_null()
        || !s.valuesLists.is_null()
        || !s.withClause.is_null()
        || s.op != pg_sys::SetOperation::SETOP_NONE
    {
        return false;
    }
    let targets = list::<pg_sys::ResTarget>(s.targetList);
    let [t] = targets.as_slice() else {
        return false;
    };
    let f = (**t).val;
    if f.is_null() || (*f).type_ != NodeTag::T_FuncCall {
        return false;
    }
    let f = f as *mut pg_sys::FuncCall;
    let name: Vec<String> = list::<pg_sys::Node>((*f).funcname)
        .into_iter()
        .map(|n| cstr((*(n as *mut pg_sys::String)).sval))
        .collect();
    let known = matches!(
        name.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["pg_catalog", "set_config" | "setval"] | ["set_config" | "setval"]
    );
    known
        && list::<pg_sys::Node>((*f).args)
            .into_iter()
            .all(|a| constant(a).is_ok())
}

/// The statement's rows, `Ok(None)` for what is skipped, or why it is refused.
unsafe fn statement(
    node: *mut pg_sys::Node,
    target: &Target,
) -> std::result::Result<Option<Rows>, Refusal> {
    let only = || {
        Some(format!(
            "Only INSERT INTO {} ... VALUES with constants is loaded from SQL.",
            target.display
        ))
    };
    match (*node).type_ {
        NodeTag::T_InsertStmt => insert(node as *mut pg_sys::InsertStmt, target).map(Some),
        NodeTag::T_VariableSetStmt => {
            let v = &*(node as *mut pg_sys::VariableSetStmt);
            if cstr(v.name) == "standard_conforming_strings" {
                let off = list::<pg_sys::Node>(v.args).into_iter().any(|a| {
                    constant(a)
                        .ok()
                        .flatten()
                        .is_some_and(|t| matches!(t.to_lowercase().as_str(), "off" | "false"))
                });
                if off {
                    return Err(Refusal {
                        sqlstate: ERRCODE_FEATURE_NOT_SUPPORTED,
                        what: "SET standard_conforming_strings = off: strings with backslash escapes are not read".into(),
                        hint: Some("Dump the table with a pg_dump of version 9.1 or later, which writes standard strings.".into()),
                    });
                }
            }
            Ok(None)
        }
        NodeTag::T_TransactionStmt => {
            use pg_sys::TransactionStmtKind::*;
            match (*(node as *mut pg_sys::TransactionStmt)).kind {
                TRANS_STMT_BEGIN | TRANS_STMT_START | TRANS_STMT_COMMIT => Ok(None),
                _ => Err(Refusal {
                    sqlstate: ERRCODE_INSUFFICIENT_PRIVILEGE,
                    what: command_name(node),
                    hint: only(),
                }),
            }
        }
        NodeTag::T_SelectStmt if pg_dump_call(node as *mut pg_sys::SelectStmt) => Ok(None),
        _ => Err(Refusal {
            sqlstate: ERRCODE_INSUFFICIENT_PRIVILEGE,
            what: command_name(node),
            hint: only(),
        }),
    }
}

unsafe fn insert(
    i: *mut pg_sys::InsertStmt,
    target: &Target,
) -> std::result::Result<Rows, Refusal> {
    let i = &*i;
    let rv = &*i.relation;
    let written = [rv.catalogname, rv.schemaname, rv.relname]
        .into_iter()
        .filter(|p| !p.is_null())
        .map(|p| crate::pg::quote_ident(&cstr(p)))
        .collect::<Vec<_>>()
        .join(".");
    let oid = pg_sys::RangeVarGetRelidExtended(
        i.relation,
        pg_sys::NoLock as pg_sys::LOCKMODE,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    if oid != target.oid {
        return Err(Refusal {
            sqlstate: ERRCODE_INSUFFICIENT_PRIVILEGE,
            what: format!(
                "an INSERT into {written}{}, not into {}",
                if oid == pg_sys::InvalidOid {
                    ", which does not exist"
                } else {
                    ""
                },
                target.display
            ),
            hint: Some("A SQL file loads into the table named as the target only.".into()),
        });
    }
    if !i.withClause.is_null() {
        return Err(refuse(
            ERRCODE_FEATURE_NOT_SUPPORTED,
            "an INSERT with a WITH clause",
        ));
    }
    if !i.returningList.is_null() {
        return Err(refuse(
            ERRCODE_FEATURE_NOT_SUPPORTED,
            "an INSERT ... RETURNING",
        ));
    }
    if !i.onConflictClause.is_null()
        && (*i.onConflictClause).action != pg_sys::OnConflictAction::ONCONFLICT_NOTHING
    {
        return Err(Refusal {
            sqlstate: ERRCODE_FEATURE_NOT_SUPPORTED,
            what: "an INSERT ... ON CONFLICT DO UPDATE".into(),
            hint: Some(
                "The \"on_conflict\" option says what happens to rows already there.".into(),
            ),
        });
    }
    // The columns filled, in order: the list given, else every column.
    let mut columns = vec![];
    if i.cols.is_null() {
        columns.extend(target.columns.iter().cloned());
    } else {
        for r in list::<pg_sys::ResTarget>(i.cols) {
            let name = cstr((*r).name);
            if !(*r).indirection.is_null() {
                return Err(refuse(
                    ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("an INSERT into a part of column \"{name}\" (a subscript or field)"),
                ));
            }
            match target.columns.iter().find(|(c, _)| *c == name) {
                Some(c) => columns.push(c.clone()),
                None => {
                    return Err(refuse(
                        ERRCODE_UNDEFINED_COLUMN,
                        format!(
                            "an INSERT naming column \"{name}\", which {} does not have",
                            target.display
                        ),
                    ))
                }
            }
        }
    }
    let select = i.selectStmt;
    if select.is_null() {
        // DEFAULT VALUES: one row of defaults.
        return Ok(vec![Map::new()]);
    }
    let s = &*(select as *mut pg_sys::SelectStmt);
    if (*select).type_ != NodeTag::T_SelectStmt
        || s.valuesLists.is_null()
        || !s.sortClause.is_null()
        || !s.limitCount.is_null()
        || !s.limitOffset.is_null()
        || !s.withClause.is_null()
    {
        return Err(refuse(
            ERRCODE_FEATURE_NOT_SUPPORTED,
            "an INSERT ... SELECT (only VALUES lists of constants are loaded)",
        ));
    }
    let mut rows = vec![];
    for (n, values) in list::<pg_sys::List>(s.valuesLists).into_iter().enumerate() {
        let values = list::<pg_sys::Node>(values);
        if values.len() > columns.len() {
            return Err(refuse(
                ERRCODE_SYNTAX_ERROR,
                format!(
                    "row {} of the INSERT has {} values for {} columns",
                    n + 1,
                    values.len(),
                    columns.len()
                ),
            ));
        }
        if !i.cols.is_null() && values.len() < columns.len() {
            return Err(refuse(
                ERRCODE_SYNTAX_ERROR,
                format!(
                    "row {} of the INSERT has {} values for {} columns",
                    n + 1,
                    values.len(),
                    columns.len()
                ),
            ));
        }
        let mut row = Map::new();
        for (v, (column, generated)) in values.into_iter().zip(&columns) {
            match constant(v) {
                Ok(_) if *generated => {}
                Ok(text) => {
                    row.insert(column.clone(), text.map_or(Value::Null, Value::String));
                }
                // DEFAULT: the column is left to its default.
                Err(None) => {}
                Err(Some(what)) => {
                    return Err(Refusal {
                        sqlstate: ERRCODE_FEATURE_NOT_SUPPORTED,
                        what: format!(
                            "row {} of the INSERT holds {what} for column \"{column}\"",
                            n + 1
                        ),
                        hint: Some(
                            "Only constants are loaded from SQL: nothing in the file is evaluated."
                                .into(),
                        ),
                    })
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// A piece's statements: each with its line and rows, or the first refusal and its line.
type Parsed = std::result::Result<Vec<(u64, Rows)>, (u64, Refusal)>;

/// Parses `piece` (complete statements, starting at line `line`) and walks the trees. Runs
/// inside a subtransaction: a syntax error is an ERROR.
unsafe fn parse(piece: &CStr, line: u64, target: &Target) -> Parsed {
    let bytes = piece.to_bytes();
    let tree = pg_sys::raw_parser(piece.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
    let mut out = vec![];
    // Lines counted on from the statement before (the statements come in order).
    let (mut counted, mut stmt_line) = (0, line);
    for raw in list::<pg_sys::RawStmt>(tree) {
        let at = first_token(
            bytes,
            ((*raw).stmt_location.max(0) as usize).min(bytes.len()),
        );
        if at >= counted {
            stmt_line += newlines(&bytes[counted..at]);
            counted = at;
        }
        match statement((*raw).stmt, target) {
            Ok(Some(rows)) => out.push((stmt_line, rows)),
            Ok(None) => {}
            Err(r) => return Err((stmt_line, r)),
        }
    }
    Ok(out)
}

pub struct SqlReader {
    text: Box<dyn BufRead>,
    target: Target,
    /// Text read and not yet parsed.
    buf: Vec<u8>,
    eof: bool,
    /// The line `buf` starts on.
    buf_line: u64,
    pending: VecDeque<Record>,
}

impl SqlReader {
    pub fn new(text: Box<dyn BufRead>, target: u32) -> SqlReader {
        SqlReader {
            text,
            target: Target::load(target),
            buf: Vec::with_capacity(READ * 2),
            eof: false,
            buf_line: 1,
            pending: VecDeque::new(),
        }
    }

    fn read_more(&mut self) -> Result<()> {
        let start = self.buf.len();
        // At least as much again as is held: a long statement is read in O(its length).
        let mut chunk = std::io::Read::take(&mut self.text, READ.max(start) as u64);
        std::io::Read::read_to_end(&mut chunk, &mut self.buf).map_err(|e| Error::Io {
            message: format!("could not read line {} of the file: {e}", self.buf_line),
            disk_full: false,
        })?;
        if self.buf.len() == start {
            self.eof = true;
        }
        Ok(())
    }

    /// The next piece of complete statements (psql meta-commands blanked out), its first
    /// line; `None` at the end.
    fn piece(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        let mut piece: Vec<u8> = vec![];
        let line = self.buf_line;
        let mut pos = 0;
        loop {
            if pos == self.buf.len() && self.eof {
                break;
            }
            match next_piece(&self.buf[pos..], self.eof) {
                Piece::More => {
                    if !piece.is_empty() {
                        break;
                    }
                    if self.buf.len() - pos > MAX_STATEMENT {
                        return Err(Error::RefusedStatement {
                            line: self.buf_line + newlines(&self.buf[..first_token(&self.buf, 0)]),
                            sqlstate: ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                            what: format!("a statement longer than {} MB", MAX_STATEMENT >> 20),
                            hint: None,
                        });
                    }
                    self.read_more()?;
                }
                Piece::Statement(end) | Piece::Blank(end) => {
                    piece.extend_from_slice(&self.buf[pos..pos + end]);
                    pos += end;
                }
                Piece::Meta(end) => {
                    let command = &self.buf[pos..pos + end];
                    let at = first_token(command, 0);
                    let name: Vec<u8> = command[at..]
                        .iter()
                        .take_while(|c| !c.is_ascii_whitespace())
                        .copied()
                        .collect();
                    if name != b"\\restrict" && name != b"\\unrestrict" {
                        return Err(Error::RefusedStatement {
                            line: line + newlines(&piece) + newlines(&command[..at]),
                            sqlstate: ERRCODE_INSUFFICIENT_PRIVILEGE,
                            what: format!(
                                "a psql meta-command ({})",
                                String::from_utf8_lossy(&name)
                            ),
                            hint: Some("psql's \\restrict and \\unrestrict lines (pg_dump writes them) are skipped; no other meta-command is read.".into()),
                        });
                    }
                    piece.extend(
                        command
                            .iter()
                            .map(|c| if *c == b'\n' { b'\n' } else { b' ' }),
                    );
                    pos += end;
                }
            }
            if piece.len() >= PIECE {
                break;
            }
        }
        self.buf.drain(..pos);
        self.buf_line += newlines(&piece);
        if piece.is_empty() {
            return Ok(None);
        }
        Ok(Some((piece, line)))
    }

    /// Parses the next piece into records; false at the end.
    fn fill(&mut self) -> Result<bool> {
        let Some((piece, line)) = self.piece()? else {
            return Ok(false);
        };
        if let Err(e) = std::str::from_utf8(&piece) {
            return Err(Error::BadEncoding {
                line: line + newlines(&piece[..e.valid_up_to()]),
                what: format!(
                    "invalid UTF-8 at byte {} of the statement",
                    e.valid_up_to()
                        - piece[..e.valid_up_to()]
                            .iter()
                            .rposition(|c| *c == b'\n')
                            .map_or(0, |p| p + 1)
                        + 1
                ),
            });
        }
        let Ok(text) = CString::new(piece.clone()) else {
            let at = piece.iter().position(|c| *c == 0).unwrap_or(0);
            return Err(Error::Malformed {
                line: line + newlines(&piece[..at]),
                what: "a NUL byte".into(),
                hint: None,
            });
        };
        let target = &self.target;
        let parsed = in_own_context(|| {
            crate::sys::try_subtransaction(|| unsafe { parse(&text, line, target) })
        });
        let statements = match parsed {
            Ok(Ok(s)) => s,
            Ok(Err((line, r))) => {
                return Err(Error::RefusedStatement {
                    line,
                    sqlstate: r.sqlstate,
                    what: r.what,
                    hint: r.hint,
                })
            }
            Err(whole) => {
                // Find the statement at fault, parsing one at a time.
                let mut pos = 0;
                let mut stmt_line = line;
                while pos < piece.len() {
                    let end = match next_piece(&piece[pos..], true) {
                        Piece::Statement(e) | Piece::Blank(e) | Piece::Meta(e) => e,
                        Piece::More => piece.len() - pos,
                    };
                    let one = &piece[pos..pos + end];
                    let first = stmt_line + newlines(&one[..first_token(one, 0)]);
                    if let Ok(c) = CString::new(one) {
                        let r = in_own_context(|| {
                            crate::sys::try_subtransaction(|| unsafe { parse(&c, first, target) })
                        });
                        if let Err(e) = r {
                            return Err(Error::RefusedStatement {
                                line: first,
                                sqlstate: e.sqlstate,
                                what: e.message,
                                hint: e.hint,
                            });
                        }
                    }
                    stmt_line += newlines(one);
                    pos += end;
                }
                return Err(Error::RefusedStatement {
                    line,
                    sqlstate: whole.sqlstate,
                    what: whole.message,
                    hint: whole.hint,
                });
            }
        };
        for (line, rows) in statements {
            for row in rows {
                self.pending.push_back(Record {
                    line,
                    values: Values::Named(row),
                    faults: vec![],
                });
            }
        }
        Ok(true)
    }
}

/// Runs `f` in a memory context of its own, deleted afterwards (the parse trees).
fn in_own_context<R>(f: impl FnOnce() -> R) -> R {
    let mut cx = pgrx::PgMemoryContexts::new("tenant_ops import sql");
    unsafe { cx.switch_to(|_| f()) }
}

impl Reader for SqlReader {
    fn fields(&self) -> Option<&[String]> {
        None
    }

    fn line(&self) -> u64 {
        self.pending.front().map_or(self.buf_line, |r| r.line)
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(r));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements of `text` as the scanner cuts them.
    fn cut(text: &str) -> Vec<String> {
        let b = text.as_bytes();
        let mut out = vec![];
        let mut pos = 0;
        while pos < b.len() {
            match next_piece(&b[pos..], true) {
                Piece::Statement(e) => {
                    out.push(text[pos..pos + e].trim().to_string());
                    pos += e;
                }
                Piece::Meta(e) => {
                    out.push(format!("META {}", text[pos..pos + e].trim()));
                    pos += e;
                }
                Piece::Blank(e) => pos += e,
                Piece::More => unreachable!("eof"),
            }
        }
        out
    }

    #[test]
    fn cuts_at_semicolons_outside_quotes() {
        assert_eq!(
            cut("INSERT INTO t VALUES ('a;b', 'it''s;'); INSERT INTO t VALUES (E'x\\';y');\n"),
            vec![
                "INSERT INTO t VALUES ('a;b', 'it''s;');",
                "INSERT INTO t VALUES (E'x\\';y');"
            ]
        );
        assert_eq!(
            cut("insert into \"a;\"\"b\" values ($$;$$, $q$ $$ ; $q$);select 1"),
            vec![
                "insert into \"a;\"\"b\" values ($$;$$, $q$ $$ ; $q$);",
                "select 1"
            ]
        );
        assert_eq!(
            cut("-- a; comment\n/* nested /* ; */ still; */ INSERT INTO t VALUES (1); ;; "),
            vec!["-- a; comment\n/* nested /* ; */ still; */ INSERT INTO t VALUES (1);"]
        );
        // A backslash in a standard string is a character; $1 is no dollar quote.
        assert_eq!(
            cut("INSERT INTO t VALUES ('a\\'); SELECT $1; x$y$;"),
            vec!["INSERT INTO t VALUES ('a\\');", "SELECT $1;", "x$y$;"]
        );
        assert_eq!(
            cut("\\restrict abc\nSET x = 1;\n\\unrestrict abc\n"),
            vec!["META \\restrict abc", "SET x = 1;", "META \\unrestrict abc"]
        );
    }

    #[test]
    fn asks_for_more_inside_a_statement() {
        for head in [
            "INSERT INTO t VALUES ('abc",
            "INSERT INTO t VALUES ('abc'",
            "INSERT INTO t VALUES ($x$ ;",
            "INSERT /* ; ",
            "INSERT INTO t VALUES (1)",
            "-",
            "\\restrict",
        ] {
            assert_eq!(next_piece(head.as_bytes(), false), Piece::More, "{head}");
        }
        assert_eq!(
            next_piece(b"INSERT INTO t VALUES (1)", true),
            Piece::Statement(24)
        );
        assert_eq!(next_piece(b"  -- x\n", true), Piece::Blank(7));
    }

    #[test]
    fn first_tokens_and_detection() {
        let b = b"-- dump\n\n/* c */  INSERT";
        assert_eq!(first_token(b, 0), 18);
        assert!(looks_like_sql(
            b"--\n-- PostgreSQL database dump\n--\n\n\\restrict x\n"
        ));
        assert!(looks_like_sql(b"insert into t values (1);"));
        assert!(looks_like_sql(b"/* x */ SET client_encoding = 'UTF8';"));
        assert!(!looks_like_sql(b"id,name\n1,insert\n"));
        assert!(!looks_like_sql(b"set,name\n1,x\n"));
        assert!(!looks_like_sql(b"insert;name\n"));
    }
}
