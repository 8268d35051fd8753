//! Mapping rules: which metrics a request costs, with APIcast's semantics.
//!
//! A rule is a method (or `ANY`), a pattern and a metric with a delta. Every matching rule counts, in
//! order, deltas adding up per metric, until a matching rule marked `last`.
//!
//! Patterns use APIcast/Porta syntax: `/path` with `{var}` placeholders, an optional trailing `$`, and
//! optional `?name=value&name={var}` query conditions. How they match:
//! * Without `$` a pattern is a prefix anchored at the start (`/foo` matches `/foo`, `/foobar` and
//!   `/foo/1`, as in APIcast); with `$` the whole path must match. A `$` anywhere else is refused at
//!   load: APIcast would read it as an anchor in the middle, a rule that never matches.
//! * `{var}` matches one non-empty path segment, never a `/`. APIcast's class
//!   `[\w\-.~%!$&'()*+,;=@:]` is applied there to a re-escaped URI, where every other byte appears as
//!   `%XX`; on Envoy's path (percent-encoding kept) the equivalent is "any byte but `/`".
//! * Unlike APIcast, which hands the pattern to PCRE, regex metacharacters (`+`, `(`, `*`, `.`, …) are
//!   literal: `/v1+json` means exactly that text. Nobody writes regexes in Porta patterns on purpose,
//!   and it removes a class of surprises (APIcast issues #1001, #1002).
//! * Percent-escapes are compared by what they mean: `%6F` and `o` are the same (unreserved characters
//!   need no escape, so a client cannot dodge `/foo` with `/f%6Fo`), `%2f` and `%2F` are the same, but
//!   `%2F` is not a `/`. Everything else is case-sensitive.
//! * Query conditions compare decoded names and values with the *last* value of the request argument (a
//!   literal must be equal, `{var}` only requires presence); extra arguments do not matter.

use std::rc::Rc;

use crate::args::Args;
use crate::usage::Usage;

/// Porta refuses longer patterns.
const MAX_PATTERN_CHARS: usize = 255;

/// One mapping rule, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingRule {
    method: Method,
    pattern: String,
    /// The path segments after the leading `/` (with `//` collapsed).
    segments: Box<[Segment]>,
    /// Trailing `$`: the path must end where the pattern does.
    exact: bool,
    conditions: Box<[Condition]>,
    metric: Rc<str>,
    delta: u64,
    last: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Method {
    Any,
    /// Upper-cased.
    Named(Box<str>),
}

type Segment = Box<[Item]>;

/// One step of a segment matcher: a `{var}` compiles to `One` then `Star` (one or more units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Unit(Unit),
    One,
    Star,
}

/// A path character as it is meant: a raw byte, or a percent-escape. Escapes of unreserved characters
/// are the raw character (RFC 3986 §2.3); others stay distinct from their raw byte (`%2F` is no `/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unit {
    byte: u8,
    escaped: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Condition {
    name: Box<str>,
    expected: Expected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    Equals(Box<str>),
    Present,
}

impl MappingRule {
    /// method: an HTTP method (GET POST PUT PATCH DELETE HEAD OPTIONS ... any token, case-insensitive) or `ANY`.
    /// pattern: APIcast/Porta syntax (see the module documentation). Err(reason) says what is wrong and
    /// where, e.g. "`{id` is not closed at column 7"; the config loader prefixes it with the JSON path.
    pub fn new(
        method: &str,
        pattern: &str,
        metric: Rc<str>,
        delta: u64,
        last: bool,
    ) -> Result<MappingRule, String> {
        let method = parse_method(method)?;
        let compiled = Compiler::new(pattern).compile()?;
        Ok(MappingRule {
            method,
            pattern: pattern.to_owned(),
            segments: compiled.segments.into(),
            exact: compiled.exact,
            conditions: compiled.conditions.into(),
            metric,
            delta,
            last,
        })
    }

    /// The pattern as configured, for debug headers.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The method as configured, upper-cased (`ANY` for any).
    pub fn method(&self) -> &str {
        match &self.method {
            Method::Any => "ANY",
            Method::Named(name) => name,
        }
    }

    pub fn metric(&self) -> &str {
        &self.metric
    }

    pub fn delta(&self) -> u64 {
        self.delta
    }

    /// Whether a match stops the evaluation of later rules.
    pub fn is_last(&self) -> bool {
        self.last
    }

    pub fn has_query_conditions(&self) -> bool {
        !self.conditions.is_empty()
    }

    /// Whether the request matches: cheapest checks first.
    fn matches(&self, method: &[u8], path: &[u8], args: &Args) -> bool {
        self.matches_method(method) && self.matches_path(path) && self.matches_args(args)
    }

    fn matches_method(&self, method: &[u8]) -> bool {
        match &self.method {
            Method::Any => true,
            Method::Named(name) => name.as_bytes().eq_ignore_ascii_case(method),
        }
    }

    fn matches_path(&self, path: &[u8]) -> bool {
        let Some(rest) = path.strip_prefix(b"/") else {
            return false;
        };
        let mut path_segments = rest.split(|&byte| byte == b'/');
        let last_index = self.segments.len().saturating_sub(1);
        for (index, pattern) in self.segments.iter().enumerate() {
            let Some(segment) = path_segments.next() else {
                return false;
            };
            let prefix = index == last_index && !self.exact;
            if !segment_matches(pattern, segment, prefix) {
                return false;
            }
        }
        !self.exact || path_segments.next().is_none()
    }

    fn matches_args(&self, args: &Args) -> bool {
        self.conditions.iter().all(|condition| {
            let value = args.last(&condition.name);
            match &condition.expected {
                Expected::Equals(expected) => value == Some(&**expected),
                Expected::Present => value.is_some(),
            }
        })
    }
}

/// The rules of one service, in evaluation order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingRules {
    rules: Vec<MappingRule>,
    needs_args: bool,
}

/// What the mapping rules made of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    pub usage: Usage,
    /// Indexes of the matched rules, in order.
    pub rules: Vec<usize>,
}

impl MappingRules {
    pub fn new(rules: Vec<MappingRule>) -> MappingRules {
        let needs_args = rules.iter().any(MappingRule::has_query_conditions);
        MappingRules { rules, needs_args }
    }

    /// Whether any rule has query conditions, i.e. whether the request's arguments must be parsed at all.
    pub fn needs_args(&self) -> bool {
        self.needs_args
    }

    /// Whether a rule that could match this method and path has query conditions: only then do the
    /// request's arguments (and a form body's fields) matter for its usage.
    pub fn needs_args_for(&self, method: &[u8], path: &[u8]) -> bool {
        self.needs_args
            && self.rules.iter().any(|rule| {
                rule.has_query_conditions()
                    && rule.matches_method(method)
                    && rule.matches_path(path)
            })
    }

    /// Applies every matching rule in order, summing deltas per metric, stopping after a matching rule with `last`.
    /// `path` is the request path without the query; `method` the request method bytes.
    pub fn evaluate(&self, method: &[u8], path: &[u8], args: &Args) -> Matched {
        let mut matched = Matched::default();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches(method, path, args) {
                continue;
            }
            matched.usage.add(&rule.metric, rule.delta);
            matched.rules.push(index);
            if rule.last {
                break;
            }
        }
        matched
    }

    pub fn get(&self, index: usize) -> Option<&MappingRule> {
        self.rules.get(index)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &MappingRule> {
        self.rules.iter()
    }
}

/// Matches one path segment (no `/` in it) against compiled items; with `prefix`, the items only need
/// to match a prefix of the segment. Wildcard matching that only ever retries the latest `Star`: linear
/// in practice, O(items × segment) at worst, however many placeholders a pattern has.
fn segment_matches(items: &[Item], text: &[u8], prefix: bool) -> bool {
    let (mut i, mut t) = (0usize, 0usize);
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if prefix && i == items.len() {
            return true;
        }
        match (items.get(i), unit_at(text, t)) {
            (Some(Item::Star), _) => {
                i += 1;
                resume = Some((i, t));
                continue;
            }
            (Some(Item::One), Some((_, len))) => {
                i += 1;
                t += len;
                continue;
            }
            (Some(Item::Unit(expected)), Some((actual, len))) if *expected == actual => {
                i += 1;
                t += len;
                continue;
            }
            (None, None) => return true,
            _ => {}
        }
        let Some((star_i, star_t)) = resume else {
            return false;
        };
        let Some((_, len)) = unit_at(text, star_t) else {
            return false;
        };
        resume = Some((star_i, star_t + len));
        i = star_i;
        t = star_t + len;
    }
}

/// The unit starting at byte `at` and its length in bytes; None at the end.
fn unit_at(text: &[u8], at: usize) -> Option<(Unit, usize)> {
    let &byte = text.get(at)?;
    if byte == b'%' {
        let high = text.get(at + 1).copied().and_then(hex_value);
        let low = text.get(at + 2).copied().and_then(hex_value);
        if let (Some(high), Some(low)) = (high, low) {
            let decoded = (high << 4) | low;
            return Some((
                Unit {
                    byte: decoded,
                    escaped: !is_unreserved(decoded),
                },
                3,
            ));
        }
    }
    Some((
        Unit {
            byte,
            escaped: false,
        },
        1,
    ))
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path pattern may hold literally (RFC 3986 `pchar` without `%`, which starts an escape).
fn is_path_char(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Characters a query condition may hold literally (RFC 3986 query characters, minus the separators).
fn is_query_char(byte: u8) -> bool {
    (is_path_char(byte) && !matches!(byte, b'&' | b'=')) || matches!(byte, b'/' | b'?')
}

fn is_var_name_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn parse_method(method: &str) -> Result<Method, String> {
    if method.is_empty() {
        return Err("the method is empty".to_owned());
    }
    if !method.bytes().all(is_token_char) {
        return Err(format!("`{method}` is not an HTTP method"));
    }
    if method.eq_ignore_ascii_case("ANY") {
        return Ok(Method::Any);
    }
    Ok(Method::Named(method.to_ascii_uppercase().into()))
}

/// What a pattern compiles to.
struct Compiled {
    segments: Vec<Segment>,
    exact: bool,
    conditions: Vec<Condition>,
}

/// Compiles one pattern, remembering where it is so errors can name a column.
struct Compiler<'a> {
    pattern: &'a str,
    bytes: &'a [u8],
    /// Placeholder names seen so far: Porta refuses repeats.
    vars: Vec<&'a str>,
}

impl<'a> Compiler<'a> {
    fn new(pattern: &'a str) -> Self {
        Compiler {
            pattern,
            bytes: pattern.as_bytes(),
            vars: Vec::new(),
        }
    }

    fn compile(mut self) -> Result<Compiled, String> {
        let chars = self.pattern.chars().count();
        if chars == 0 {
            return Err("the pattern is empty".to_owned());
        }
        if chars > MAX_PATTERN_CHARS {
            return Err(format!(
                "the pattern is {chars} characters long; at most {MAX_PATTERN_CHARS} are allowed"
            ));
        }
        if !self.pattern.starts_with('/') {
            return Err(format!(
                "the pattern `{}` must start with `/`",
                self.pattern
            ));
        }
        let query_at = self.bytes.iter().position(|&byte| byte == b'?');
        let mut path_end = query_at.unwrap_or(self.bytes.len());
        let exact = path_end > 1 && self.bytes.get(path_end - 1) == Some(&b'$');
        if exact {
            path_end -= 1;
        }
        // APIcast turns a pattern into a regular expression, where a `$` anywhere else anchors the
        // end in the middle: such a rule never matches there, and matching it here would differ.
        if self
            .bytes
            .get(..path_end)
            .is_some_and(|path| path.contains(&b'$'))
        {
            return Err(format!(
                "`$` ends a pattern and can only be its last character (before any `?`): `{}` (in APIcast it would never match)",
                self.pattern
            ));
        }
        let segments = self.path(path_end)?;
        let conditions = match query_at {
            Some(at) => self.query(at + 1)?,
            None => Vec::new(),
        };
        Ok(Compiled {
            segments,
            exact,
            conditions,
        })
    }

    /// Compiles `bytes[1..end]` (after the leading `/`) into segments.
    fn path(&mut self, end: usize) -> Result<Vec<Segment>, String> {
        let mut segments = Vec::new();
        let mut segment: Vec<Item> = Vec::new();
        let mut after_slash = true;
        let mut at = 1;
        while at < end {
            let byte = self.byte(at);
            match byte {
                b'/' => {
                    // `//` collapses to `/`, as APIcast does.
                    if !after_slash {
                        segments.push(std::mem::take(&mut segment).into());
                    }
                    after_slash = true;
                    at += 1;
                    continue;
                }
                b'{' => {
                    at = self.placeholder(at, end)?;
                    segment.extend([Item::One, Item::Star]);
                }
                b'%' => {
                    let (unit, len) = self.escape(at, end)?;
                    segment.push(Item::Unit(unit));
                    at += len;
                }
                _ if is_path_char(byte) => {
                    segment.push(Item::Unit(Unit {
                        byte,
                        escaped: false,
                    }));
                    at += 1;
                }
                _ => return Err(self.bad_char(at, "in a pattern's path")),
            }
            after_slash = false;
        }
        segments.push(segment.into());
        Ok(segments)
    }

    /// Compiles the query conditions in `bytes[start..]`.
    fn query(&mut self, start: usize) -> Result<Vec<Condition>, String> {
        let mut conditions = Vec::new();
        let mut at = start;
        while at <= self.bytes.len() {
            let end = self.find(at, b'&').unwrap_or(self.bytes.len());
            if end > at {
                conditions.push(self.condition(at, end)?);
            }
            at = end + 1;
        }
        Ok(conditions)
    }

    /// Compiles `name=value` or `name={var}` in `bytes[start..end]`.
    fn condition(&mut self, start: usize, end: usize) -> Result<Condition, String> {
        let Some(equals) = self.find(start, b'=').filter(|&at| at < end) else {
            return Err(format!(
                "query condition `{}` at column {} needs `=value` or `={{var}}`",
                self.text(start, end),
                self.column(start)
            ));
        };
        if equals == start {
            return Err(format!(
                "query condition at column {} has no name",
                self.column(start)
            ));
        }
        let name = self.query_text(
            start,
            equals,
            "query parameter names cannot be placeholders",
        )?;
        let value_start = equals + 1;
        let expected = if self.byte(value_start) == b'{'
            && self.byte(end - 1) == b'}'
            && end - value_start > 1
        {
            let close = self.placeholder(value_start, end)?;
            if close != end {
                return Err(self.bad_char(close, "after a placeholder in a query condition"));
            }
            Expected::Present
        } else {
            Expected::Equals(self.query_text(
                value_start,
                end,
                "a query placeholder must be the whole value",
            )?)
        };
        Ok(Condition { name, expected })
    }

    /// Checks and decodes a literal name or value of a query condition.
    fn query_text(&self, start: usize, end: usize, brace_error: &str) -> Result<Box<str>, String> {
        let mut at = start;
        while at < end {
            let byte = self.byte(at);
            match byte {
                b'{' | b'}' => return Err(format!("{brace_error} (column {})", self.column(at))),
                b'%' => at += self.escape(at, end)?.1,
                _ if is_query_char(byte) => at += 1,
                _ => return Err(self.bad_char(at, "in a query condition")),
            }
        }
        let raw = self.bytes.get(start..end).unwrap_or_default();
        let decoded: String = form_urlencoded::parse(raw).map(|(name, _)| name).collect();
        Ok(decoded.into())
    }

    /// Checks the placeholder opening at `open` and returns the index after its `}`.
    fn placeholder(&mut self, open: usize, end: usize) -> Result<usize, String> {
        let Some(close) = self.find(open + 1, b'}').filter(|&close| close < end) else {
            let unclosed = self.text(open, end);
            return Err(format!(
                "`{unclosed}` is not closed at column {}",
                self.column(open)
            ));
        };
        let name = self.text(open + 1, close);
        if name.is_empty() {
            return Err(format!(
                "empty placeholder `{{}}` at column {}",
                self.column(open)
            ));
        }
        if !name.bytes().all(is_var_name_char) {
            return Err(format!(
                "placeholder `{{{name}}}` at column {}: names may hold only letters, digits and `_`",
                self.column(open)
            ));
        }
        if self.vars.contains(&name) {
            return Err(format!(
                "placeholder `{{{name}}}` at column {} is used twice",
                self.column(open)
            ));
        }
        self.vars.push(name);
        Ok(close + 1)
    }

    /// Decodes the escape at `at`, which must be `%` and two hex digits before `end`.
    fn escape(&self, at: usize, end: usize) -> Result<(Unit, usize), String> {
        let slice = self.bytes.get(at..end).unwrap_or_default();
        match unit_at(slice, 0) {
            Some((unit, 3)) => Ok((unit, 3)),
            _ => Err(format!(
                "`%` at column {} must be followed by two hex digits",
                self.column(at)
            )),
        }
    }

    fn bad_char(&self, at: usize, place: &str) -> String {
        let bad = self
            .pattern
            .get(at..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or('?');
        let shown = if bad == '}' {
            "`}` closes no placeholder".to_owned()
        } else {
            format!("`{}` is not allowed", bad.escape_debug())
        };
        format!("{shown} {place} (column {})", self.column(at))
    }

    fn byte(&self, at: usize) -> u8 {
        self.bytes.get(at).copied().unwrap_or_default()
    }

    fn find(&self, from: usize, wanted: u8) -> Option<usize> {
        let offset = self
            .bytes
            .get(from..)?
            .iter()
            .position(|&byte| byte == wanted)?;
        Some(from + offset)
    }

    fn text(&self, start: usize, end: usize) -> &'a str {
        self.pattern.get(start..end).unwrap_or_default()
    }

    /// The 1-based column of byte `at`, counted in characters.
    fn column(&self, at: usize) -> usize {
        self.pattern
            .get(..at)
            .map_or(at, |before| before.chars().count())
            + 1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn rule(method: &str, pattern: &str) -> MappingRule {
        MappingRule::new(method, pattern, Rc::from("hits"), 1, false).unwrap()
    }

    fn matches(pattern: &str, path: &str) -> bool {
        rule("GET", pattern).matches(b"GET", path.as_bytes(), &Args::default())
    }

    fn matches_query(pattern: &str, query: &str) -> bool {
        rule("GET", pattern).matches(b"GET", b"/p", &Args::parse(query.as_bytes()))
    }

    fn error(pattern: &str) -> String {
        MappingRule::new("GET", pattern, Rc::from("hits"), 1, false).unwrap_err()
    }

    fn rules(specs: &[(&str, &str, &str, u64, bool)]) -> MappingRules {
        MappingRules::new(
            specs
                .iter()
                .map(|&(method, pattern, metric, delta, last)| {
                    MappingRule::new(method, pattern, Rc::from(metric), delta, last).unwrap()
                })
                .collect(),
        )
    }

    #[test]
    fn patterns_without_dollar_are_prefixes_anchored_at_the_start() {
        assert!(matches("/foo", "/foo"));
        assert!(matches("/foo", "/foobar"));
        assert!(matches("/foo", "/foo/1"));
        assert!(matches("/foo", "/foo/"));
        assert!(!matches("/foo", "/fo"));
        assert!(!matches("/foo", "/bar/foo"));
        assert!(!matches("/foo", "foo"));
        assert!(!matches("/foo", ""));
        assert!(matches("/", "/"));
        assert!(matches("/", "/anything/at/all"));
        assert!(matches("/foo/", "/foo/bar"));
        assert!(!matches("/foo/", "/foo"));
    }

    #[test]
    fn a_trailing_dollar_means_exact() {
        assert!(matches("/foo$", "/foo"));
        assert!(!matches("/foo$", "/foobar"));
        assert!(!matches("/foo$", "/foo/"));
        assert!(!matches("/foo$", "/foo/1"));
        assert!(matches("/$", "/"));
        assert!(!matches("/$", "/a"));
        assert!(matches("/foo/$", "/foo/"));
        assert!(!matches("/foo/$", "/foo"));
    }

    #[test]
    fn placeholders_match_one_non_empty_segment() {
        assert!(matches("/users/{id}", "/users/42"));
        assert!(matches("/users/{id}", "/users/42/orders"));
        assert!(!matches("/users/{id}", "/users/"));
        assert!(!matches("/users/{id}", "/users"));
        assert!(matches("/users/{id}$", "/users/42"));
        assert!(!matches("/users/{id}$", "/users/42/orders"));
        assert!(matches(
            "/users/{id}/orders$",
            "/users/a-b_c.d~e%20f!$&'()*+,;=@:/orders"
        ));
        assert!(!matches("/users/{id}/orders", "/users/42/x/orders"));
        assert!(matches("/{a}/{b}$", "/x/y"));
        assert!(!matches("/{a}/{b}$", "/x//y"));
    }

    #[test]
    fn placeholders_backtrack_within_a_segment() {
        assert!(matches("/{id}.json$", "/42.json"));
        assert!(matches("/{id}.json$", "/4.2.json"));
        assert!(!matches("/{id}.json$", "/.json"));
        assert!(!matches("/{id}.json$", "/42.xml"));
        assert!(matches("/{id}.json", "/42.jsonp"));
        assert!(matches("/v{major}.{minor}/x$", "/v1.2/x"));
        assert!(matches("/{a}{b}$", "/xy"));
        assert!(!matches("/{a}{b}$", "/x"));
        assert!(matches("/a{x}b{y}c$", "/aXbYbZc"));
        assert!(!matches("/a{x}b{y}c$", "/abc"));
    }

    #[test]
    fn many_placeholders_do_not_blow_up() {
        let pattern = format!(
            "/{}z$",
            (0..40).map(|i| format!("{{v{i}}}")).collect::<String>()
        );
        let path = format!("/{}", "a".repeat(5000));
        assert!(!matches(&pattern, &path));
        let path = format!("/{}z", "a".repeat(5000));
        assert!(matches(&pattern, &path));
    }

    #[test]
    fn double_slashes_in_patterns_collapse() {
        assert!(matches("//foo//bar", "/foo/bar"));
        assert!(matches("/foo//{id}$", "/foo/1"));
        assert_eq!(rule("GET", "//foo").pattern(), "//foo");
    }

    #[test]
    fn metacharacters_are_literal() {
        assert!(matches("/v1+json", "/v1+json"));
        assert!(!matches("/v1+json", "/v11json"));
        assert!(matches("/a.b", "/a.b"));
        assert!(!matches("/a.b", "/axb"));
        assert!(matches("/(x)*$", "/(x)*"));
        assert!(!matches("/(x)*$", "/"));
        assert!(error("/price$5").contains("`$` ends a pattern"));
        assert!(error("/a$/b$").contains("`$` ends a pattern"));
        assert!(MappingRule::new("GET", "/a$?x=1", Rc::from("hits"), 1, false).is_ok());
        assert!(matches("/user@host:1", "/user@host:1"));
    }

    #[test]
    fn percent_escapes_compare_by_meaning() {
        assert!(matches("/foo%20bar$", "/foo%20bar"));
        assert!(matches("/a%2Fb$", "/a%2fb"));
        assert!(!matches("/a%2Fb$", "/a/b"));
        assert!(!matches("/a/b", "/a%2Fb"));
        assert!(matches("/foo", "/f%6Fo"));
        assert!(matches("/f%6fo", "/foo"));
        assert!(matches("/%7Euser$", "/~user"));
        assert!(!matches("/foo%20bar$", "/foo bar%"));
        // A placeholder takes escapes, an escaped slash included, but never a raw slash.
        assert!(matches("/files/{name}$", "/files/a%2Fb%20c"));
        assert!(!matches("/files/{name}$", "/files/a/b"));
        // Malformed escapes in the path are plain bytes.
        assert!(matches("/{x}$", "/%"));
        assert!(matches("/{x}$", "/%4"));
        assert!(matches("/{x}$", "/%zz"));
        assert!(!matches("/%25$", "/%"));
        assert!(matches("/%25$", "/%25"));
    }

    #[test]
    fn paths_are_case_sensitive() {
        assert!(!matches("/Foo", "/foo"));
    }

    #[test]
    fn any_bytes_in_the_path_never_panic() {
        let rule = rule("GET", "/{a}/b{c}d$");
        for path in [
            &b""[..],
            b"/",
            b"//",
            b"\xff",
            b"/\xff/b\xfed",
            b"/%",
            b"/%%%/b%d",
            b"/a/b%2",
            b"/a/bd",
        ] {
            let _ = rule.matches(b"GET", path, &Args::default());
        }
        assert!(rule.matches(b"GET", b"/\xff/b\xfed", &Args::default()));
        assert!(!rule.matches(b"GET", b"/a/bd", &Args::default()));
    }

    #[test]
    fn methods_match_case_insensitively_and_any_matches_all() {
        let get = rule("get", "/");
        assert_eq!(get.method(), "GET");
        assert!(get.matches(b"GET", b"/", &Args::default()));
        assert!(get.matches(b"get", b"/", &Args::default()));
        assert!(!get.matches(b"POST", b"/", &Args::default()));
        assert!(!get.matches(b"", b"/", &Args::default()));
        let any = rule("Any", "/");
        assert_eq!(any.method(), "ANY");
        for method in [&b"GET"[..], b"DELETE", b"PROPFIND", b""] {
            assert!(any.matches(method, b"/", &Args::default()));
        }
        assert!(rule("PURGE", "/").matches(b"PURGE", b"/", &Args::default()));
    }

    #[test]
    fn query_conditions_with_literals() {
        assert!(matches_query("/p?a=1", "a=1"));
        assert!(matches_query("/p?a=1", "x=0&a=1&y=2"));
        assert!(!matches_query("/p?a=1", "a=2"));
        assert!(!matches_query("/p?a=1", ""));
        assert!(!matches_query("/p?a=1", "a=11"));
        assert!(matches_query("/p?a=1&b=2", "b=2&a=1"));
        assert!(!matches_query("/p?a=1&b=2", "a=1"));
        assert!(matches_query("/p?a=", "a="));
        assert!(matches_query("/p?a=", "a"));
        assert!(!matches_query("/p?a=", "b="));
    }

    #[test]
    fn query_conditions_with_placeholders_require_presence() {
        assert!(matches_query("/p?a={x}", "a=anything"));
        assert!(matches_query("/p?a={x}", "a="));
        assert!(matches_query("/p?a={x}", "a"));
        assert!(!matches_query("/p?a={x}", "b=1"));
        assert!(matches_query("/p?a={x}&b=2", "a=1&b=2"));
    }

    #[test]
    fn query_conditions_see_the_last_repeated_value() {
        assert!(matches_query("/p?a=2", "a=1&a=2"));
        assert!(!matches_query("/p?a=1", "a=1&a=2"));
    }

    #[test]
    fn query_conditions_compare_decoded_values() {
        assert!(matches_query("/p?q=a%20b", "q=a+b"));
        assert!(matches_query("/p?q=a+b", "q=a%20b"));
        assert!(matches_query("/p?my%5Fkey=%E2%9C%93", "my_key=%E2%9C%93"));
        assert!(matches_query("/p?q=a/b?c", "q=a%2Fb%3Fc"));
        assert!(matches_query("/p?q=%26", "q=%26"));
        assert!(!matches_query("/p?q=%26", "q=&"));
    }

    #[test]
    fn query_conditions_combine_with_dollar_and_placeholders() {
        let rule = rule("GET", "/users/{id}$?format={f}&v=2");
        assert!(rule.has_query_conditions());
        assert!(rule.matches(b"GET", b"/users/1", &Args::parse(b"format=json&v=2")));
        assert!(!rule.matches(b"GET", b"/users/1/x", &Args::parse(b"format=json&v=2")));
        assert!(!rule.matches(b"GET", b"/users/1", &Args::parse(b"v=2")));
        assert!(!self::rule("GET", "/p?").has_query_conditions());
        assert!(self::rule("GET", "/p?&&a=1&").matches(b"GET", b"/p", &Args::parse(b"a=1")));
    }

    #[test]
    fn all_matching_rules_count_and_deltas_add_up() {
        // APIcast t/apicast-mapping-rules.t TEST 5.
        let rules = rules(&[
            ("GET", "/", "hits", 1, false),
            ("GET", "/abc", "hits", 2, false),
        ]);
        let matched = rules.evaluate(b"GET", b"/abc/def", &Args::default());
        assert_eq!(matched.usage.get("hits"), 3);
        assert_eq!(matched.rules, vec![0, 1]);
    }

    #[test]
    fn usage_keeps_metrics_apart_in_first_seen_order() {
        let rules = rules(&[
            ("GET", "/a", "get_a", 2, false),
            ("ANY", "/", "hits", 1, false),
            ("POST", "/a", "post_a", 5, false),
            ("GET", "/a/{id}", "get_a", 3, false),
        ]);
        let matched = rules.evaluate(b"GET", b"/a/1", &Args::default());
        assert_eq!(
            matched.usage.iter().collect::<Vec<_>>(),
            vec![("get_a", 5), ("hits", 1)]
        );
        assert_eq!(matched.rules, vec![0, 1, 3]);
        assert_eq!(rules.get(3).unwrap().pattern(), "/a/{id}");
        assert!(rules.get(4).is_none());
    }

    #[test]
    fn last_stops_after_a_matching_rule_only() {
        let rules = rules(&[
            ("GET", "/x", "x", 1, true),
            ("GET", "/", "hits", 1, true),
            ("GET", "/a", "a", 1, false),
        ]);
        let matched = rules.evaluate(b"GET", b"/a", &Args::default());
        assert_eq!(matched.rules, vec![1]);
        assert_eq!(matched.usage.get("hits"), 1);
        assert_eq!(matched.usage.get("a"), 0);

        let matched = rules.evaluate(b"GET", b"/x", &Args::default());
        assert_eq!(matched.rules, vec![0]);
    }

    #[test]
    fn no_match_gives_empty_usage() {
        let rules = rules(&[("POST", "/", "hits", 1, false)]);
        let matched = rules.evaluate(b"GET", b"/", &Args::default());
        assert!(matched.usage.is_empty());
        assert!(matched.rules.is_empty());
        let empty = MappingRules::new(Vec::new());
        assert!(empty.is_empty());
        assert!(
            empty
                .evaluate(b"GET", b"/", &Args::default())
                .rules
                .is_empty()
        );
    }

    #[test]
    fn zero_deltas_still_count_as_a_match() {
        let rules = rules(&[("GET", "/", "hits", 0, false)]);
        let matched = rules.evaluate(b"GET", b"/", &Args::default());
        assert_eq!(matched.rules, vec![0]);
        assert_eq!(matched.usage.iter().collect::<Vec<_>>(), vec![("hits", 0)]);
    }

    #[test]
    fn needs_args_for_looks_at_the_rules_that_could_match() {
        let rules = MappingRules::new(vec![rule("GET", "/search?q={q}"), rule("POST", "/items")]);
        assert!(rules.needs_args_for(b"GET", b"/search"));
        assert!(!rules.needs_args_for(b"POST", b"/search"));
        assert!(!rules.needs_args_for(b"POST", b"/items"));
        assert!(!MappingRules::new(vec![rule("ANY", "/")]).needs_args_for(b"GET", b"/"));
    }

    #[test]
    fn needs_args_only_with_query_conditions() {
        assert!(!rules(&[("GET", "/", "hits", 1, false)]).needs_args());
        assert!(
            rules(&[
                ("GET", "/", "hits", 1, false),
                ("GET", "/?a=1", "hits", 1, false)
            ])
            .needs_args()
        );
    }

    #[test]
    fn accessors_report_the_configuration() {
        let rule = MappingRule::new("post", "/x$", Rc::from("m"), 7, true).unwrap();
        assert_eq!(
            (
                rule.method(),
                rule.pattern(),
                rule.metric(),
                rule.delta(),
                rule.is_last()
            ),
            ("POST", "/x$", "m", 7, true)
        );
    }

    #[test]
    fn bad_patterns_say_what_and_where() {
        for (pattern, expected) in [
            ("", "the pattern is empty"),
            ("foo", "must start with `/`"),
            ("/users/{id", "`{id` is not closed at column 8"),
            ("/users/{id?x=1", "`{id` is not closed at column 8"),
            ("/{}", "empty placeholder `{}` at column 2"),
            (
                "/{a-b}",
                "placeholder `{a-b}` at column 2: names may hold only letters",
            ),
            ("/{a}/{a}", "placeholder `{a}` at column 6 is used twice"),
            ("/{a}?x={a}", "placeholder `{a}` at column 8 is used twice"),
            (
                "/a}",
                "`}` closes no placeholder in a pattern's path (column 3)",
            ),
            ("/a b", "` ` is not allowed in a pattern's path (column 3)"),
            ("/a#b", "`#` is not allowed"),
            ("/a\\b", "`\\\\` is not allowed"),
            ("/é/x", "`é` is not allowed in a pattern's path (column 2)"),
            (
                "/ab/é/{x",
                "`é` is not allowed in a pattern's path (column 5)",
            ),
            ("/a%2", "`%` at column 3 must be followed by two hex digits"),
            ("/a%zz", "`%` at column 3"),
            (
                "/p?flag",
                "query condition `flag` at column 4 needs `=value` or `={var}`",
            ),
            ("/p?=1", "query condition at column 4 has no name"),
            (
                "/p?{k}=1",
                "query parameter names cannot be placeholders (column 4)",
            ),
            (
                "/p?k=a{x}",
                "a query placeholder must be the whole value (column 7)",
            ),
            (
                "/p?k={x",
                "a query placeholder must be the whole value (column 6)",
            ),
            ("/p?k={x}y", "a query placeholder must be the whole value"),
            ("/p?k={a-b}", "placeholder `{a-b}` at column 6"),
            (
                "/p?k=a b",
                "` ` is not allowed in a query condition (column 7)",
            ),
            ("/p?k=%g0", "`%` at column 6"),
        ] {
            let err = error(pattern);
            assert!(
                err.contains(expected),
                "{pattern:?}: got {err:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn long_patterns_are_refused_at_porta_s_limit() {
        let ok = format!("/{}", "a".repeat(254));
        assert!(MappingRule::new("GET", &ok, Rc::from("hits"), 1, false).is_ok());
        let too_long = format!("/{}", "a".repeat(255));
        assert!(error(&too_long).contains("256 characters long; at most 255"));
    }

    #[test]
    fn bad_methods_are_refused() {
        for method in ["", "GE T", "GET\n", "GÉT", "(GET)"] {
            let err = MappingRule::new(method, "/", Rc::from("hits"), 1, false).unwrap_err();
            assert!(err.contains("method"), "{method:?}: {err}");
        }
    }

    #[test]
    fn any_pattern_compiles_or_errs_without_panicking() {
        let alphabet = [
            "/", "{", "}", "a", "%", "2", "F", "$", "?", "=", "&", "é", " ", "_",
        ];
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize
        };
        for _ in 0..5000 {
            let mut pattern = String::from("/");
            for _ in 0..next() % 9 {
                pattern.push_str(alphabet[next() % alphabet.len()]);
            }
            if let Ok(rule) = MappingRule::new("GET", &pattern, Rc::from("hits"), 1, false) {
                let _ = rule.matches(b"GET", pattern.as_bytes(), &Args::parse(b"a=1"));
            }
        }
    }
}
