//! Ruby string semantics that apisonator's answers depend on.
//!
//! apisonator is a Ruby program: which usage values are accepted, how `"#5"` or `" 7 "` count, and
//! which keys are "blank" all follow Ruby's `String#strip`, `String#to_i` and a few regular
//! expressions. Reproducing them here keeps the simulator's answers identical on odd input.

/// Characters removed by Ruby's `String#strip` (null and ASCII whitespace).
fn is_strip_char(c: char) -> bool {
    matches!(c, '\0' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// Characters matched by `\s` in a Ruby regular expression.
fn is_regex_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// Ruby's `String#strip`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_strip_char)
}

/// ActiveSupport-style `blank?` for strings: empty or whitespace only.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(is_regex_space)
}

/// Ruby's `String#to_i`: leading whitespace, optional sign, digits (single underscores allowed
/// between digits); stops at the first other character; `0` when nothing parses. Saturates
/// instead of growing into a bignum.
pub fn to_i(s: &str) -> i64 {
    let rest = s.trim_start_matches(is_regex_space);
    let (negative, digits) = match rest.as_bytes().first() {
        Some(b'-') => (true, rest.get(1..).unwrap_or("")),
        Some(b'+') => (false, rest.get(1..).unwrap_or("")),
        _ => (false, rest),
    };
    let mut value: i64 = 0;
    let mut previous_was_digit = false;
    let mut chars = digits.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10) {
            value = value.saturating_mul(10).saturating_add(i64::from(d));
            previous_was_digit = true;
        } else if c == '_' && previous_was_digit && chars.peek().is_some_and(char::is_ascii_digit) {
            previous_was_digit = false;
        } else {
            break;
        }
    }
    if negative {
        value.saturating_neg()
    } else {
        value
    }
}

/// apisonator's check of a usage value: `\A\s*#?\d+\s*\Z`.
pub fn is_sane_usage_value(s: &str) -> bool {
    let body = s.trim_matches(is_regex_space);
    let digits = body.strip_prefix('#').unwrap_or(body);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `Usage.is_set?`: a value starting with `#` sets the counter instead of incrementing it.
pub fn is_set_operation(s: &str) -> bool {
    s.starts_with('#')
}

/// `Usage.get_from`: the counter after applying `value` to `current`.
pub fn apply_usage(value: &str, current: i64) -> i64 {
    match value.strip_prefix('#') {
        Some(set_to) => to_i(set_to),
        None => current.saturating_add(to_i(value)),
    }
}

/// Orders the members of a Redis set the way `SMEMBERS` returns small sets: an all-integer set is
/// an intset (sorted numerically), any other small set keeps insertion order. Metric ids and
/// application keys come out of Redis sets, and their order is visible in the XML answers.
pub fn redis_set_order<T, F>(items: &mut [T], key: F)
where
    F: Fn(&T) -> &str,
{
    let all_integers = items
        .iter()
        .all(|item| canonical_integer(key(item)).is_some());
    if all_integers {
        items.sort_by_key(|item| canonical_integer(key(item)).unwrap_or(0));
    }
}

/// The value of a string Redis would store as an integer (canonical decimal form only).
fn canonical_integer(s: &str) -> Option<i64> {
    let value: i64 = s.parse().ok()?;
    (value.to_string() == s).then_some(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn strip_removes_ruby_whitespace_and_nulls() {
        assert_eq!(strip("  key1 \t\n"), "key1");
        assert_eq!(strip("\0k\0"), "k");
        assert_eq!(strip(""), "");
        assert_eq!(strip(" \u{a0}x"), "\u{a0}x");
    }

    #[test]
    fn blank_means_empty_or_whitespace() {
        assert!(is_blank(""));
        assert!(is_blank(" \t"));
        assert!(!is_blank(" a "));
    }

    #[test]
    fn to_i_follows_ruby() {
        assert_eq!(to_i("42"), 42);
        assert_eq!(to_i("  42abc"), 42);
        assert_eq!(to_i("-3"), -3);
        assert_eq!(to_i("+3"), 3);
        assert_eq!(to_i("1_000"), 1000);
        assert_eq!(to_i("1__0"), 1);
        assert_eq!(to_i("_1"), 0);
        assert_eq!(to_i("#5"), 0);
        assert_eq!(to_i(""), 0);
        assert_eq!(to_i("abc"), 0);
        assert_eq!(to_i("99999999999999999999999"), i64::MAX);
        assert_eq!(to_i("-99999999999999999999999"), -i64::MAX);
    }

    #[test]
    fn sane_usage_values() {
        for ok in ["1", "0", " 7 ", "#3", " #3\n", "0001"] {
            assert!(is_sane_usage_value(ok), "{ok:?}");
        }
        for bad in [
            "", " ", "-1", "1.5", "##3", "#", "# 3", "abc", "3a", "+1", "١",
        ] {
            assert!(!is_sane_usage_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn usage_application_increments_or_sets() {
        assert_eq!(apply_usage("3", 4), 7);
        assert_eq!(apply_usage("#3", 4), 3);
        assert_eq!(
            apply_usage(" #3", 4),
            4,
            "a leading space makes it an increment of 0, as in Ruby"
        );
        assert!(is_set_operation("#1"));
        assert!(!is_set_operation(" #1"));
    }

    #[test]
    fn redis_order_sorts_integer_sets_only() {
        let mut ids = vec!["10", "2", "1"];
        redis_set_order(&mut ids, |s| s);
        assert_eq!(ids, ["1", "2", "10"]);
        let mut mixed = vec!["b", "10", "a"];
        redis_set_order(&mut mixed, |s| s);
        assert_eq!(mixed, ["b", "10", "a"]);
        let mut padded = vec!["02", "1"];
        redis_set_order(&mut padded, |s| s);
        assert_eq!(
            padded,
            ["02", "1"],
            "non-canonical integers make a listpack set"
        );
    }
}
