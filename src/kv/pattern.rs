//! Key patterns with named parts: `tenant:{subdomain}:settings`. A part matches one or more
//! characters up to the next `:` (so `tenant:{subdomain}` never takes `tenant:a:settings`),
//! `*` matches the same without a name. A pattern gives the SCAN MATCH glob the server
//! filters with (literal text escaped: a key may hold `*`, `?`, `[` or `\`) and the matcher
//! that decides here, exactly, which keys are the pattern's and what their parts are.
//! Free of pgrx: covered by plain `cargo test`.

/// One piece of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// A named part (`None`: `*`).
    Part(Option<String>),
}

/// A parsed key pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub text: String,
    pieces: Vec<Piece>,
}

/// The separator a part never crosses.
pub const SEPARATOR: char = ':';

impl Pattern {
    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("the pattern is empty".into());
        }
        let mut pieces: Vec<Piece> = vec![];
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                            Some(c) => {
                                return Err(format!(
                                    "a part's name holds letters, digits and _, not \"{c}\" (in \"{text}\")"
                                ))
                            }
                            None => return Err(format!("\"{{\" without \"}}\" in \"{text}\"")),
                        }
                    }
                    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                        return Err(format!(
                            "\"{{{name}}}\" is not a part's name (in \"{text}\")"
                        ));
                    }
                    if pieces
                        .iter()
                        .any(|p| matches!(p, Piece::Part(Some(n)) if *n == name))
                    {
                        return Err(format!("part \"{name}\" appears twice in \"{text}\""));
                    }
                    push_part(&mut pieces, &mut literal, Some(name), text)?;
                }
                '*' => push_part(&mut pieces, &mut literal, None, text)?,
                '}' => return Err(format!("\"}}\" without \"{{\" in \"{text}\"")),
                '\\' => match chars.next() {
                    Some(c) => literal.push(c),
                    None => return Err(format!("\"{text}\" ends with \\")),
                },
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Pattern {
            text: text.to_string(),
            pieces,
        })
    }

    /// The named parts, in order.
    pub fn parts(&self) -> Vec<&str> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Part(Some(n)) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The SCAN MATCH glob; `fixed` gives a part a value (the `tenant` option), escaped.
    pub fn glob(&self, fixed: Option<(&str, &str)>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(l) => out.push_str(&glob_escape(l)),
                Piece::Part(Some(n)) if fixed.is_some_and(|(f, _)| f == n) => {
                    out.push_str(&glob_escape(fixed.map(|(_, v)| v).unwrap_or_default()))
                }
                Piece::Part(_) => out.push('*'),
            }
        }
        out
    }

    /// The parts of `key` when it is this pattern's (named parts only), else `None`.
    pub fn matches(&self, key: &str) -> Option<Vec<(String, String)>> {
        let mut out = vec![];
        let mut rest = key;
        for (i, p) in self.pieces.iter().enumerate() {
            match p {
                Piece::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Piece::Part(name) => {
                    // Up to the next separator, or up to where the next literal starts when
                    // that literal comes before it (`{a}-{b}` splits at the first `-`).
                    let limit = rest.find(SEPARATOR).unwrap_or(rest.len());
                    let end = match self.pieces.get(i + 1) {
                        Some(Piece::Literal(next)) => {
                            let first = next.chars().next().unwrap_or(SEPARATOR);
                            if first == SEPARATOR {
                                limit
                            } else {
                                rest[..limit].find(next.as_str()).unwrap_or(limit)
                            }
                        }
                        _ => limit,
                    };
                    if end == 0 {
                        return None;
                    }
                    if let Some(n) = name {
                        out.push((n.clone(), rest[..end].to_string()));
                    }
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(out)
    }

    /// The key these part values make (`None`: a part without a value, or a `*`).
    pub fn render(&self, values: &std::collections::BTreeMap<String, String>) -> Option<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(l) => out.push_str(l),
                Piece::Part(Some(n)) => out.push_str(values.get(n)?),
                Piece::Part(None) => return None,
            }
        }
        Some(out)
    }

    /// The part `name`'s value in `key`.
    pub fn part_of(&self, key: &str, name: &str) -> Option<String> {
        self.matches(key)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

fn push_part(
    pieces: &mut Vec<Piece>,
    literal: &mut String,
    name: Option<String>,
    text: &str,
) -> Result<(), String> {
    if literal.is_empty() && matches!(pieces.last(), Some(Piece::Part(_))) {
        return Err(format!(
            "two parts follow each other without text between them in \"{text}\""
        ));
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal)));
    }
    pieces.push(Piece::Part(name));
    Ok(())
}

/// `text` as a glob that matches only itself.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `key` matches the glob `pattern` as Redis's `stringmatchlen` does (`*`, `?`,
/// `[...]` with ranges and `^`, `\` escapes): how dump sources filter, as a server would.
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let k: Vec<char> = key.chars().collect();
    glob_at(&p, &k)
}

fn glob_at(p: &[char], k: &[char]) -> bool {
    match p.first() {
        None => k.is_empty(),
        Some('*') => (0..=k.len()).any(|i| glob_at(&p[1..], &k[i..])),
        Some('?') => !k.is_empty() && glob_at(&p[1..], &k[1..]),
        Some('[') => {
            let Some(&c) = k.first() else { return false };
            let mut i = 1;
            let negate = p.get(1) == Some(&'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            while i < p.len() && p[i] != ']' {
                if p[i] == '\\' && i + 1 < p.len() {
                    hit |= p[i + 1] == c;
                    i += 2;
                } else if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                    let (a, b) = if p[i] <= p[i + 2] {
                        (p[i], p[i + 2])
                    } else {
                        (p[i + 2], p[i])
                    };
                    hit |= a <= c && c <= b;
                    i += 3;
                } else {
                    hit |= p[i] == c;
                    i += 1;
                }
            }
            if hit == negate {
                return false;
            }
            glob_at(p.get(i + 1..).unwrap_or(&[]), &k[1..])
        }
        Some('\\') if p.len() > 1 => !k.is_empty() && k[0] == p[1] && glob_at(&p[2..], &k[1..]),
        Some(&c) => !k.is_empty() && k[0] == c && glob_at(&p[1..], &k[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_named_and_stop_at_the_separator() {
        let p = Pattern::parse("tenant:{subdomain}").unwrap();
        assert_eq!(p.parts(), vec!["subdomain"]);
        assert_eq!(p.glob(None), "tenant:*");
        assert_eq!(
            p.matches("tenant:acme"),
            Some(vec![("subdomain".into(), "acme".into())])
        );
        assert_eq!(p.matches("tenant:acme:settings"), None);
        assert_eq!(p.matches("tenant:"), None);
        let s = Pattern::parse("tenant:{t}:settings").unwrap();
        assert_eq!(
            s.part_of("tenant:acme:settings", "t").as_deref(),
            Some("acme")
        );
        assert_eq!(s.matches("tenant:acme"), None);
        let mut values = std::collections::BTreeMap::new();
        values.insert("t".to_string(), "o'hare ☃".to_string());
        assert_eq!(
            s.render(&values).as_deref(),
            Some("tenant:o'hare ☃:settings")
        );
        assert_eq!(Pattern::parse("a:*").unwrap().render(&values), None);
        let d = Pattern::parse("user-{id}.{lang}").unwrap();
        assert_eq!(d.part_of("user-7.de", "lang").as_deref(), Some("de"));
    }

    #[test]
    fn hostile_text_is_escaped_in_the_glob() {
        let p = Pattern::parse("t[1]*:{x}").unwrap();
        assert_eq!(p.glob(None), "t\\[1\\]*:*");
        assert_eq!(p.glob(Some(("x", "a*b?"))), "t\\[1\\]*:a\\*b\\?");
        assert!(glob_matches(&p.glob(Some(("x", "a*b?"))), "t[1]zz:a*b?"));
        assert!(!glob_matches(&p.glob(Some(("x", "a*b?"))), "t[1]zz:aXb?"));
        assert!(glob_matches("tenant:*", "tenant:ac'me; DROP"));
        assert!(glob_matches("h[a-c]llo", "hbllo"));
        assert!(!glob_matches("h[^a-c]llo", "hbllo"));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("a:{b").unwrap_err().contains("without"));
        assert!(Pattern::parse("a:{b}{c}").unwrap_err().contains("follow"));
        assert!(Pattern::parse("{a}:{a}").unwrap_err().contains("twice"));
        assert!(Pattern::parse("{a-b}").unwrap_err().contains("letters"));
    }
}
