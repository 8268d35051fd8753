//! Rack's nested parameters, as apisonator sees its input.
//!
//! apisonator reads `usage[hits]=1`, `transactions[0][usage][hits]=1` and the `3scale-options`
//! header through Rack's `parse_nested_query`, and several of its answers are decided by how that
//! parser builds (or refuses to build) the parameter tree: `usage[]=1&usage[hits]=1` is a type
//! error (400), a later `usage=2` replaces the hash (403), a key without `=` is nil. This module
//! reproduces that parser: pair by pair, same key grammar, same overwrite and type rules, plus the
//! size limits of newer Rack releases.

/// Rack refuses query strings longer than this (4 MiB).
pub const MAX_QUERY_BYTES: usize = 4 * 1024 * 1024;
/// Rack refuses more parameters than this.
pub const MAX_PARAMS: usize = 4096;
/// Rack's nesting limit.
const MAX_DEPTH: u32 = 100;

/// A decoded string and whether its bytes were valid UTF-8 (invalid bytes are replaced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub value: String,
    pub valid_utf8: bool,
}

impl Text {
    fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(value) => Self {
                value,
                valid_utf8: true,
            },
            Err(e) => Self {
                value: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                valid_utf8: false,
            },
        }
    }
}

/// One node of the parameter tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    /// A key given without `=` (Ruby `nil`).
    Nil,
    Str(Text),
    Array(Vec<Param>),
    Hash(Hash),
}

impl Param {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Str(t) => Some(&t.value),
            _ => None,
        }
    }

    pub fn as_hash(&self) -> Option<&Hash> {
        match self {
            Param::Hash(h) => Some(h),
            _ => None,
        }
    }

    /// Ruby truthiness of the value as Rack left it: everything but nil is "present".
    pub fn is_present(&self) -> bool {
        !matches!(self, Param::Nil)
    }

    /// Ruby's `to_s == '0'`: only the exact string "0".
    pub fn is_literal_zero(&self) -> bool {
        self.as_str() == Some("0")
    }

    /// Whether every string in this subtree is valid UTF-8.
    pub fn all_valid_utf8(&self) -> bool {
        match self {
            Param::Nil => true,
            Param::Str(t) => t.valid_utf8,
            Param::Array(items) => items.iter().all(Param::all_valid_utf8),
            Param::Hash(h) => h.all_valid_utf8(),
        }
    }
}

/// An insertion-ordered hash, like Ruby's: overwriting a key keeps its position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hash {
    entries: Vec<(String, Param)>,
}

impl Hash {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<&Param> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Param> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: &str, value: Param) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The string value of `key`, if it is a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Param::as_str)
    }

    pub fn all_valid_utf8(&self) -> bool {
        self.entries.iter().all(|(_, v)| v.all_valid_utf8())
    }

    /// Ruby's shallow `Hash#merge`: `other`'s keys replace ours.
    pub fn merge(&mut self, other: Hash) {
        for (k, v) in other.entries {
            self.insert(&k, v);
        }
    }

    /// The slot for `key`, created (or replacing a nil, like Ruby's `||=`) with `default`.
    fn slot_or(&mut self, key: &str, default: Param) -> &mut Param {
        let index = match self.entries.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.entries.push((key.to_owned(), Param::Nil));
                self.entries.len() - 1
            }
        };
        // `index` was just found or pushed, so it is in bounds.
        let slot = &mut self.entries[index].1;
        if matches!(slot, Param::Nil) {
            *slot = default;
        }
        slot
    }
}

/// Why a query string or form body was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamError {
    /// A `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// A parameter name that is not valid UTF-8.
    InvalidUtf8,
    /// Conflicting shapes (`usage[]=1&usage[hits]=1`) or nesting deeper than Rack allows.
    Malformed,
    /// More than [`MAX_PARAMS`] parameters: the count Rack reports.
    TooManyParams(usize),
    /// Longer than [`MAX_QUERY_BYTES`]: the size Rack reports.
    TooLarge(usize),
}

/// Rack's `parse_nested_query` (pairs separated by `&` or `;`, each `name=value` percent-decoded
/// with `+` as space), with Rack 3.1's size and count limits.
pub fn parse_nested_query(input: &[u8]) -> Result<Hash, ParamError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(ParamError::TooLarge(input.len()));
    }
    let separators = input.iter().filter(|&&b| b == b'&').count();
    if separators >= MAX_PARAMS {
        return Err(ParamError::TooManyParams(separators + 1));
    }
    let mut params = Hash::new();
    for pair in split_pairs(input) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (
                pair.get(..i).unwrap_or(&[]),
                Some(pair.get(i + 1..).unwrap_or(&[])),
            ),
            None => (pair, None),
        };
        let name = unescape(name)?;
        let value = value.map(unescape).transpose()?;
        add_pair(&mut params, name, value.map(Text::from_bytes))?;
    }
    Ok(params)
}

/// Adds one already-decoded `name=value` pair (query, form body or multipart part).
pub fn add_pair(params: &mut Hash, name: Vec<u8>, value: Option<Text>) -> Result<(), ParamError> {
    let name = String::from_utf8(name).map_err(|_| ParamError::InvalidUtf8)?;
    normalize(params, &name, value, MAX_DEPTH)
}

/// Rack 2 splits on `&` or `;` and drops spaces that follow a separator.
fn split_pairs(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    input
        .split(|&b| b == b'&' || b == b';')
        .enumerate()
        .map(|(i, piece)| {
            if i == 0 {
                piece
            } else {
                let skip = piece.iter().take_while(|&&b| b == b' ').count();
                piece.get(skip..).unwrap_or(&[])
            }
        })
        .filter(|piece| !piece.is_empty())
}

/// `application/x-www-form-urlencoded` component decoding that, like Ruby's, rejects a `%` not
/// followed by two hex digits.
pub fn unescape(input: &[u8]) -> Result<Vec<u8>, ParamError> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().and_then(|&h| hex_value(h));
                let lo = bytes.next().and_then(|&l| hex_value(l));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(ParamError::InvalidPercentEncoding),
                }
            }
            _ => out.push(b),
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Rack's key grammar `\A[\[\]]*([^\[\]]+)\]*`: the first name and what follows it.
fn split_key(name: &str) -> (&str, &str) {
    let rest = name.trim_start_matches(['[', ']']);
    let end = rest.find(['[', ']']).unwrap_or(rest.len());
    let (key, after) = rest.split_at_checked(end).unwrap_or((rest, ""));
    (key, after.trim_start_matches(']'))
}

/// `[][child]` or `[]child...`: an array of hashes, and the child key.
fn array_child(after: &str) -> Option<&str> {
    let rest = after.strip_prefix("[]")?;
    if let Some(inner) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']'))
        && !inner.is_empty()
        && !inner.contains(['[', ']'])
    {
        return Some(inner);
    }
    (!rest.is_empty()).then_some(rest)
}

/// Rack's `params_hash_has_key?`: whether a nested key path already exists.
fn hash_has_key(hash: &Hash, key: &str) -> bool {
    if key.contains("[]") {
        return false;
    }
    let mut current = hash;
    let mut parts = key.split(['[', ']']).filter(|p| !p.is_empty()).peekable();
    while let Some(part) = parts.next() {
        match current.get(part) {
            Some(Param::Hash(h)) => current = h,
            Some(_) if parts.peek().is_none() => return true,
            _ => return false,
        }
    }
    true
}

fn to_param(value: Option<Text>) -> Param {
    value.map_or(Param::Nil, Param::Str)
}

/// Rack's `normalize_params`.
fn normalize(
    params: &mut Hash,
    name: &str,
    value: Option<Text>,
    depth: u32,
) -> Result<(), ParamError> {
    if depth == 0 {
        return Err(ParamError::Malformed);
    }
    let (key, after) = split_key(name);
    if key.is_empty() {
        return Ok(());
    }
    match after {
        "" => params.insert(key, to_param(value)),
        "[" => params.insert(name, to_param(value)),
        "[]" => match params.slot_or(key, Param::Array(Vec::new())) {
            Param::Array(items) => items.push(to_param(value)),
            _ => return Err(ParamError::Malformed),
        },
        _ => {
            if let Some(child) = array_child(after) {
                let Param::Array(items) = params.slot_or(key, Param::Array(Vec::new())) else {
                    return Err(ParamError::Malformed);
                };
                match items.last_mut() {
                    Some(Param::Hash(last)) if !hash_has_key(last, child) => {
                        normalize(last, child, value, depth - 1)?;
                    }
                    _ => {
                        let mut fresh = Hash::new();
                        normalize(&mut fresh, child, value, depth - 1)?;
                        items.push(Param::Hash(fresh));
                    }
                }
            } else {
                let Param::Hash(child) = params.slot_or(key, Param::Hash(Hash::new())) else {
                    return Err(ParamError::Malformed);
                };
                normalize(child, after, value, depth - 1)?;
            }
        }
    }
    Ok(())
}

/// Parses a `multipart/form-data` body into the same tree (field values are not %-decoded).
/// `None` when the body is not well-formed multipart.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Option<Result<Hash, ParamError>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut params = Hash::new();
    let mut rest = body.get(find(body, &delimiter)? + delimiter.len()..)?;
    loop {
        if rest.starts_with(b"--") {
            return Some(Ok(params));
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let header_end = find(rest, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(rest.get(..header_end)?).into_owned();
        let content = rest.get(header_end + 4..)?;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let content_end = find(content, &closing)?;
        let value = content.get(..content_end)?.to_vec();
        rest = content.get(content_end + closing.len()..)?;
        if let Some(name) = disposition_name(&headers)
            && let Err(e) = add_pair(
                &mut params,
                name.into_bytes(),
                Some(Text::from_bytes(value)),
            )
        {
            return Some(Err(e));
        }
    }
}

fn disposition_name(headers: &str) -> Option<String> {
    let line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    let start = line.find("name=\"")? + 6;
    let tail = line.get(start..)?;
    Some(tail.get(..tail.find('"')?)?.to_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn parse(s: &str) -> Result<Hash, ParamError> {
        parse_nested_query(s.as_bytes())
    }

    fn s(v: &str) -> Param {
        Param::Str(Text {
            value: v.to_owned(),
            valid_utf8: true,
        })
    }

    #[test]
    fn flat_and_nested_pairs() {
        let p = parse(
            "service_token=tok1&service_id=svc1&usage%5Bhits%5D=3&usage[get]=1&log%5Bcode%5D=200",
        )
        .unwrap();
        assert_eq!(p.str("service_token"), Some("tok1"));
        let usage = p.get("usage").unwrap().as_hash().unwrap();
        assert_eq!(
            usage.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["hits", "get"]
        );
        assert_eq!(usage.get("hits"), Some(&s("3")));
        assert_eq!(
            p.get("log").unwrap().as_hash().unwrap().get("code"),
            Some(&s("200"))
        );
    }

    #[test]
    fn plus_is_space_and_percent_decodes() {
        let p = parse("a=x+y%20z&b=%e2%82%ac").unwrap();
        assert_eq!(p.str("a"), Some("x y z"));
        assert_eq!(p.str("b"), Some("€"));
    }

    #[test]
    fn missing_equals_is_nil_and_empty_is_empty_string() {
        let p = parse("a&b=&c=1").unwrap();
        assert_eq!(p.get("a"), Some(&Param::Nil));
        assert_eq!(p.get("b"), Some(&s("")));
        assert!(!p.get("a").unwrap().is_present());
    }

    #[test]
    fn later_pairs_overwrite_in_place() {
        let p = parse("a=1&b=2&a=3").unwrap();
        assert_eq!(p.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.str("a"), Some("3"));
        let p = parse("usage[hits]=1&usage=2").unwrap();
        assert_eq!(p.str("usage"), Some("2"));
    }

    #[test]
    fn conflicting_shapes_are_malformed() {
        assert_eq!(parse("usage[]=1&usage[hits]=1"), Err(ParamError::Malformed));
        assert_eq!(parse("usage=1&usage[hits]=1"), Err(ParamError::Malformed));
        assert_eq!(parse("usage[hits]=1&usage[]=1"), Err(ParamError::Malformed));
        // A nil value is replaced, like Ruby's ||=.
        assert!(
            parse("usage&usage[hits]=1")
                .unwrap()
                .get("usage")
                .unwrap()
                .as_hash()
                .is_some()
        );
    }

    #[test]
    fn arrays_and_arrays_of_hashes() {
        let p = parse("a[]=1&a[]=2").unwrap();
        assert_eq!(p.get("a"), Some(&Param::Array(vec![s("1"), s("2")])));
        let p = parse("t[][x]=1&t[][y]=2&t[][x]=3").unwrap();
        let Param::Array(items) = p.get("t").unwrap() else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_hash().unwrap().len(), 2);
        assert_eq!(items[1].as_hash().unwrap().str("x"), Some("3"));
    }

    #[test]
    fn transactions_by_index() {
        let p = parse(
            "transactions%5B0%5D%5Bapp_id%5D=app1&transactions%5B0%5D%5Busage%5D%5Bhits%5D=2&transactions%5B1%5D%5Bapp_id%5D=app3",
        )
        .unwrap();
        let t = p.get("transactions").unwrap().as_hash().unwrap();
        assert_eq!(t.len(), 2);
        let t0 = t.get("0").unwrap().as_hash().unwrap();
        assert_eq!(t0.str("app_id"), Some("app1"));
        assert_eq!(
            t0.get("usage").unwrap().as_hash().unwrap().str("hits"),
            Some("2")
        );
    }

    #[test]
    fn odd_key_shapes_follow_rack() {
        assert!(parse("=x&[]=y&&").unwrap().is_empty());
        let p = parse("a[b=1").unwrap();
        assert_eq!(p.get("a").unwrap().as_hash().unwrap().str("b"), Some("1"));
        let p = parse("a]b=1").unwrap();
        assert_eq!(p.get("a").unwrap().as_hash().unwrap().str("b"), Some("1"));
        let p = parse("[a]=1").unwrap();
        assert_eq!(p.str("a"), Some("1"));
        let p = parse("a[=1").unwrap();
        assert_eq!(p.str("a["), Some("1"));
    }

    #[test]
    fn semicolons_separate_and_spaces_after_separators_drop() {
        let p = parse("a=1; b=2&  c=3").unwrap();
        assert_eq!(p.str("b"), Some("2"));
        assert_eq!(p.str("c"), Some("3"));
    }

    #[test]
    fn invalid_percent_encoding() {
        assert_eq!(parse("a=value1%"), Err(ParamError::InvalidPercentEncoding));
        assert_eq!(parse("a%zz=1"), Err(ParamError::InvalidPercentEncoding));
        assert_eq!(parse("a=%4"), Err(ParamError::InvalidPercentEncoding));
    }

    #[test]
    fn invalid_utf8_in_names_is_refused_and_in_values_flagged() {
        assert_eq!(parse("usage[%ff]=1"), Err(ParamError::InvalidUtf8));
        let p = parse("app_id=%ff%fe").unwrap();
        let Some(Param::Str(t)) = p.get("app_id") else {
            panic!()
        };
        assert!(!t.valid_utf8);
        assert!(!p.all_valid_utf8());
    }

    #[test]
    fn limits() {
        let many = "a=1&".repeat(MAX_PARAMS);
        assert_eq!(parse(&many), Err(ParamError::TooManyParams(MAX_PARAMS + 1)));
        let just_enough = vec!["a=1"; MAX_PARAMS].join("&");
        assert!(parse(&just_enough).is_ok());
        let big = vec![b'a'; MAX_QUERY_BYTES + 1];
        assert_eq!(
            parse_nested_query(&big),
            Err(ParamError::TooLarge(MAX_QUERY_BYTES + 1))
        );
        let deep = format!("a{}=1", "[b]".repeat(200));
        assert_eq!(parse(&deep), Err(ParamError::Malformed));
    }

    #[test]
    fn merge_is_shallow() {
        let mut a = parse("x=1&t[0][a]=1").unwrap();
        a.merge(parse("t[1][b]=2&y=3").unwrap());
        assert_eq!(a.get("t").unwrap().as_hash().unwrap().len(), 1);
        assert_eq!(a.str("y"), Some("3"));
    }

    #[test]
    fn multipart_bodies() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"service_token\"\r\n\r\ntok1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"transactions[0][usage][hits]\"\r\n\r\n2\r\n--XyZ--\r\n";
        let p = parse_multipart(body, "XyZ").unwrap().unwrap();
        assert_eq!(p.str("service_token"), Some("tok1"));
        let t = p.get("transactions").unwrap().as_hash().unwrap();
        assert!(t.get("0").is_some());
        assert!(parse_multipart(b"garbage", "XyZ").is_none());
        assert!(parse_multipart(b"--XyZ\r\nno end", "XyZ").is_none());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let alphabet = b"[]=&;%+ab0\xff ";
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let len = (seed % 24) as usize;
            let mut input = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = parse_nested_query(&input);
            let _ = parse_multipart(&input, "a");
        }
    }
}
