//! Masking secrets for logs and debug headers: enough to tell two keys apart, never enough to use one.

/// `abcdef123456` → `ab…(12)`; short values show no character at all.
pub fn mask(secret: &str) -> String {
    let count = secret.chars().count();
    if count < 8 {
        return format!("…({count})");
    }
    let head: String = secret.chars().take(2).collect();
    format!("{head}…({count})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_two_characters_and_the_length() {
        assert_eq!(mask("abcdef123456"), "ab…(12)");
        assert_eq!(mask("short"), "…(5)");
        assert_eq!(mask(""), "…(0)");
    }
}
