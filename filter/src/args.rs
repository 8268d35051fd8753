//! Request arguments: the decoded `name=value` pairs of a query string and, for form posts, of the body.
//!
//! Credentials and mapping-rule conditions look arguments up by their decoded name, so a client cannot
//! hide `user_key` as `user%5Fkey`. Removing credentials before the request goes upstream works on the
//! raw query instead, so every other parameter reaches the upstream exactly as the client encoded it.

use std::ops::Range;

/// Decoded `name=value` pairs from a query string and, for form posts, the body (APIcast merges both).
///
/// All decoded text lives in one string and the pairs are offsets into it: parsing a query costs two
/// allocations however many parameters it has, and none when it is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    text: String,
    pairs: Vec<Pair>,
}

/// Where one pair's name and value sit in [`Args::text`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pair {
    name: Range<usize>,
    value: Range<usize>,
}

impl Args {
    /// Parses `application/x-www-form-urlencoded` text (`+` is a space, `%XX` is decoded, invalid UTF-8
    /// becomes U+FFFD). Never fails: malformed escapes are kept literally.
    pub fn parse(encoded: &[u8]) -> Args {
        let mut args = Args::default();
        args.extend(encoded);
        args
    }

    /// Appends the pairs of a form body after those already parsed.
    pub fn extend(&mut self, encoded: &[u8]) {
        for (name, value) in form_urlencoded::parse(encoded) {
            let name = self.push(&name);
            let value = self.push(&value);
            self.pairs.push(Pair { name, value });
        }
    }

    /// The value of the first `name` argument: credentials take the first occurrence.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, value)| value)
    }

    /// The value of the last `name` argument: mapping-rule conditions see the last one, as APIcast does.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, value)| value)
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs in order, decoded.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> {
        self.pairs.iter().map(|pair| {
            (
                self.text.get(pair.name.clone()).unwrap_or_default(),
                self.text.get(pair.value.clone()).unwrap_or_default(),
            )
        })
    }

    fn push(&mut self, decoded: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(decoded);
        start..self.text.len()
    }
}

/// Splits a request target `:path` into (path, query) at the first `?` (query without the `?`; empty when none).
pub fn split_path(target: &[u8]) -> (&[u8], &[u8]) {
    let mut parts = target.splitn(2, |&byte| byte == b'?');
    let path = parts.next().unwrap_or_default();
    (path, parts.next().unwrap_or_default())
}

/// Removes every parameter whose *decoded* name is in `names` from a raw query string, keeping the other parameters
/// byte for byte in their original encoding and order. Returns None when nothing was removed.
///
/// When something is removed, empty parameters (`a&&b`) are dropped from the result as they carry nothing;
/// an empty result means the request target needs no `?` at all.
pub fn remove_params(query: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    if query.is_empty() || names.is_empty() {
        return None;
    }
    let mut kept = Vec::with_capacity(query.len());
    let mut removed = false;
    for param in query.split(|&byte| byte == b'&') {
        if param.is_empty() {
            continue;
        }
        if is_named(param, names) {
            removed = true;
            continue;
        }
        if !kept.is_empty() {
            kept.push(b'&');
        }
        kept.extend_from_slice(param);
    }
    removed.then_some(kept)
}

/// Whether the raw `name[=value]` parameter's decoded name is one of `names`.
fn is_named(param: &[u8], names: &[&str]) -> bool {
    let raw_name = param.split(|&byte| byte == b'=').next().unwrap_or_default();
    if raw_name.is_ascii() && !raw_name.iter().any(|&byte| byte == b'%' || byte == b'+') {
        return names.iter().any(|name| name.as_bytes() == raw_name);
    }
    // Only encoded (or not UTF-8) names pay for decoding, as `Args` decodes them: the same name is
    // read and removed. `raw_name` holds no `&` or `=`, so it parses as exactly one pair.
    form_urlencoded::parse(raw_name)
        .next()
        .is_some_and(|(decoded, _)| names.iter().any(|name| *name == decoded))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_name_is_removed_exactly_when_it_is_read() {
        // Found by the `form` fuzz target: a name that is not UTF-8 reads as U+FFFD.
        let query = b"a=1&\xff=2";
        let read: Vec<String> = Args::parse(query)
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(read, ["a", "\u{fffd}"]);
        assert_eq!(remove_params(query, &["\u{fffd}"]).unwrap(), b"a=1");
    }

    #[test]
    fn parses_and_decodes_pairs_in_order() {
        let args = Args::parse(b"user_key=abc&a+b=c%20d&empty=&flag&x=%E2%9C%93");
        assert_eq!(
            args.iter().collect::<Vec<_>>(),
            vec![
                ("user_key", "abc"),
                ("a b", "c d"),
                ("empty", ""),
                ("flag", ""),
                ("x", "✓")
            ]
        );
        assert_eq!(args.first("user_key"), Some("abc"));
        assert_eq!(args.first("a b"), Some("c d"));
        assert_eq!(args.first("flag"), Some(""));
        assert_eq!(args.first("missing"), None);
        assert!(!args.is_empty());
    }

    #[test]
    fn encoded_names_are_found_by_their_decoded_form() {
        let args = Args::parse(b"user%5Fkey=k&%75ser_key=second");
        assert_eq!(args.first("user_key"), Some("k"));
        assert_eq!(args.last("user_key"), Some("second"));
    }

    #[test]
    fn first_and_last_pick_the_right_occurrence() {
        let args = Args::parse(b"a=1&b=2&a=3&a=4");
        assert_eq!(args.first("a"), Some("1"));
        assert_eq!(args.last("a"), Some("4"));
        assert_eq!(args.first("b"), args.last("b"));
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        assert!(Args::parse(b"").is_empty());
        assert!(Args::parse(b"&&&").is_empty());
        let args = Args::parse(b"=v&==&k==v");
        assert_eq!(args.first(""), Some("v"));
        assert_eq!(args.last(""), Some("="));
        assert_eq!(args.first("k"), Some("=v"));
    }

    #[test]
    fn malformed_escapes_and_invalid_utf8_never_fail() {
        let args = Args::parse(b"a=%&b=%4&c=%zz&d=%FF%FE&\xff=\xfe");
        assert_eq!(args.first("a"), Some("%"));
        assert_eq!(args.first("b"), Some("%4"));
        assert_eq!(args.first("c"), Some("%zz"));
        assert_eq!(args.first("d"), Some("\u{FFFD}\u{FFFD}"));
        assert_eq!(args.first("\u{FFFD}"), Some("\u{FFFD}"));
    }

    #[test]
    fn extend_appends_the_form_body_after_the_query() {
        let mut args = Args::parse(b"a=query");
        args.extend(b"a=body&app_id=x");
        assert_eq!(args.first("a"), Some("query"));
        assert_eq!(args.last("a"), Some("body"));
        assert_eq!(args.first("app_id"), Some("x"));

        let mut empty = Args::default();
        assert!(empty.is_empty());
        empty.extend(b"k=v");
        assert_eq!(empty.first("k"), Some("v"));
    }

    #[test]
    fn split_path_at_the_first_question_mark() {
        assert_eq!(split_path(b"/a/b?x=1?y"), (&b"/a/b"[..], &b"x=1?y"[..]));
        assert_eq!(split_path(b"/a"), (&b"/a"[..], &b""[..]));
        assert_eq!(split_path(b"/a?"), (&b"/a"[..], &b""[..]));
        assert_eq!(split_path(b"?q"), (&b""[..], &b"q"[..]));
        assert_eq!(split_path(b""), (&b""[..], &b""[..]));
    }

    #[test]
    fn remove_params_keeps_everything_else_verbatim() {
        let out = remove_params(b"a=%41&user_key=k&b=x+y&user_key=again", &["user_key"]).unwrap();
        assert_eq!(out, b"a=%41&b=x+y");
    }

    #[test]
    fn remove_params_matches_decoded_names() {
        let out = remove_params(
            b"user%5Fkey=k&app+id=1&app%20key=2&keep=1",
            &["user_key", "app id", "app key"],
        );
        assert_eq!(out.unwrap(), b"keep=1");
    }

    #[test]
    fn remove_params_handles_names_without_values_and_empty_segments() {
        assert_eq!(
            remove_params(b"&app_id&&x=1&", &["app_id"]).unwrap(),
            b"x=1"
        );
        assert_eq!(
            remove_params(b"app_id=1&app_key=2", &["app_id", "app_key"]).unwrap(),
            b""
        );
        // `=` inside the value does not confuse the name.
        assert_eq!(
            remove_params(b"k=app_id=1&app_id=2", &["app_id"]).unwrap(),
            b"k=app_id=1"
        );
    }

    #[test]
    fn remove_params_returns_none_when_nothing_matches() {
        assert_eq!(remove_params(b"a=1&&b=2", &["user_key"]), None);
        assert_eq!(remove_params(b"", &["user_key"]), None);
        assert_eq!(remove_params(b"user_key=1", &[]), None);
        // A prefix of a name is a different name.
        assert_eq!(remove_params(b"user_keys=1&user=2", &["user_key"]), None);
    }

    #[test]
    fn remove_params_survives_malformed_input() {
        assert_eq!(
            remove_params(b"%=1&%zz=2&\xff=3&user_key", &["user_key"]).unwrap(),
            b"%=1&%zz=2&\xff=3"
        );
        assert_eq!(remove_params(b"%FF=1", &["\u{FFFD}"]).unwrap(), b"");
    }
}
