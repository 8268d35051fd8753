//! `{{NAME}}` substitution for Envoy YAML templates.

/// Replaces every `{{NAME}}` in `template` with its value. Variables the template does not use are ignored; a
/// placeholder left without a value panics, naming it, because Envoy would fail on it later with a far less clear
/// message.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in vars {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    let leftovers = placeholders(&text);
    assert!(
        leftovers.is_empty(),
        "template placeholders without a value: {leftovers:?}"
    );
    text
}

/// The text as a double-quoted YAML scalar. A JSON string literal is one, so a filter config (JSON text) can be put
/// into a template as `configuration: {value: {{FILTER_CONFIG}}}` whatever quotes or newlines it holds.
pub fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// Every `{{...}}` still in the text.
fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                found.push(format!("{{{{{}}}}}", &after[..end]));
                rest = &after[end + 2..];
            }
            None => {
                found.push(format!("{{{{{}", after.lines().next().unwrap_or("")));
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_and_ignores_unused_vars() {
        let text = render(
            "a: {{PORT}}\nb: {{PORT}}\nc: {{NAME}}",
            &[
                ("PORT", "80".into()),
                ("NAME", "x".into()),
                ("UNUSED", "y".into()),
            ],
        );
        assert_eq!(text, "a: 80\nb: 80\nc: x");
    }

    #[test]
    #[should_panic(expected = "{{MISSING}}")]
    fn panics_on_a_leftover_placeholder() {
        render("port: {{PORT}} {{MISSING}}", &[("PORT", "1".into())]);
    }

    #[test]
    #[should_panic(expected = "without a value")]
    fn panics_on_an_unclosed_placeholder() {
        render("port: {{PORT", &[]);
    }

    #[test]
    fn a_value_is_not_rescanned_for_its_own_braces_only_leftovers_count() {
        // Values are substituted verbatim; a value that itself looks like a placeholder is reported.
        let result = std::panic::catch_unwind(|| render("{{A}}", &[("A", "{{B}}".into())]));
        assert!(result.is_err());
    }

    #[test]
    fn yaml_string_escapes_quotes_backslashes_and_newlines() {
        let json = r#"{"a":"x\"y","b":"c\\d"}"#.to_owned() + "\n";
        let quoted = yaml_string(&json);
        assert!(quoted.starts_with('"') && quoted.ends_with('"'));
        assert!(!quoted.contains('\n'));
        let back: String = serde_json::from_str(&quoted).unwrap();
        assert_eq!(back, json);
    }
}
