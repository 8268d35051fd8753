//! Reading the configuration JSON into the schema types of [`super::raw`], with the JSON path of
//! every error.
//!
//! serde_json parses the text into a [`Json`] tree; each schema type then reads its part of the tree
//! through [`FromJson`]. This replaces serde derive plus `serde_path_to_error`, whose visitors and
//! path-tracking wrappers were monomorphized for every config struct and cost ~140 KB of the
//! `.wasm`: here one mostly non-generic walker serves every struct. The tree is ours rather than
//! `serde_json::Value` because the configuration refuses duplicate fields (which `Value`'s maps
//! silently collapse to the last one) and reports unknown fields in document order.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ConfigError;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Json>),
    /// Members in document order, duplicate keys included (they are refused when read as a struct).
    Object(Vec<(String, Json)>),
}

/// A JSON number as serde_json classifies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Unsigned(u64),
    Negative(i64),
    /// Has a fraction or an exponent, or is beyond the 64-bit integers.
    Float(f64),
}

/// Where a value sits in the document: a chain of borrowed segments on the stack, so that nothing is
/// allocated unless an error writes the path out (`services[0].plans.routes.Sandbox`, `.` for the root).
#[derive(Debug, Clone, Copy)]
pub enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("."),
            // A key that is not a plain name (empty, a space, a dot...) is written as a JSON string.
            Path::Key(Path::Root, key) if !plain(key) => write!(f, "[{}]", quoted(key)),
            Path::Key(parent, key) if !plain(key) => write!(f, "{parent}[{}]", quoted(key)),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(Path::Root, index) => write!(f, "[{index}]"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// `key` as the next segment of a path written by hand: `.key`, or `["key"]` when it is not a plain
/// name.
pub fn key_segment(key: &str) -> String {
    if plain(key) {
        format!(".{key}")
    } else {
        format!("[{}]", quoted(key))
    }
}

fn plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn quoted(key: &str) -> String {
    serde_json::Value::from(key).to_string()
}

/// A type the configuration reads from JSON. `at` is where `value` sits, for errors.
pub trait FromJson: Sized {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError>;
}

/// Parses `bytes` and reads the whole document as a `T`. Syntax errors keep serde_json's message,
/// with its line and column, at the root path.
pub fn decode<T: FromJson>(bytes: &[u8]) -> Result<T, ConfigError> {
    let document: Json =
        serde_json::from_slice(bytes).map_err(|e| error(&Path::Root, e.to_string()))?;
    T::from_json(document, &Path::Root)
}

fn error(at: &Path<'_>, reason: String) -> ConfigError {
    ConfigError {
        path: at.to_string(),
        reason,
    }
}

/// What was found instead of what a field takes, in an error message.
struct Found<'a>(&'a Json);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Json::Null => f.write_str("null"),
            Json::Bool(value) => write!(f, "boolean `{value}`"),
            Json::Number(Number::Unsigned(value)) => write!(f, "integer `{value}`"),
            Json::Number(Number::Negative(value)) => write!(f, "integer `{value}`"),
            Json::Number(Number::Float(_)) => f.write_str("a number with a fraction or exponent"),
            Json::String(value) => write!(f, "string {value:?}"),
            Json::Array(_) => f.write_str("an array"),
            Json::Object(_) => f.write_str("an object"),
        }
    }
}

/// The error for a value of the wrong JSON type.
pub fn invalid_type(found: &Json, at: &Path<'_>, expected: &str) -> ConfigError {
    error(
        at,
        format!("invalid type: {}, expected {expected}", Found(found)),
    )
}

/// "`a`, `b`, `c`": the names a field or a value may take.
fn listing(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    quoted.join(", ")
}

fn expected_names(names: &[&str]) -> String {
    match names {
        [] => "nothing".to_string(),
        [only] => format!("`{only}`"),
        _ => format!("one of {}", listing(names)),
    }
}

/// The members of a JSON object being read into a struct with the given `fields`.
///
/// Unknown and duplicate fields are refused up front, in document order, so that a misspelt field
/// is reported as such rather than as the required field it was meant to be.
pub struct Object<'a> {
    members: Vec<(String, Json)>,
    at: &'a Path<'a>,
}

impl<'a> Object<'a> {
    pub fn new(value: Json, at: &'a Path<'a>, fields: &[&str]) -> Result<Self, ConfigError> {
        let members = match value {
            Json::Object(members) => members,
            other => return Err(invalid_type(&other, at, "an object")),
        };
        for (index, (key, _)) in members.iter().enumerate() {
            let key_at = Path::Key(at, key);
            if !fields.contains(&key.as_str()) {
                let reason = format!("unknown field `{key}`, expected {}", expected_names(fields));
                return Err(error(&key_at, reason));
            }
            if members
                .iter()
                .take(index)
                .any(|(earlier, _)| earlier == key)
            {
                return Err(error(&key_at, format!("duplicate field `{key}`")));
            }
        }
        Ok(Object { members, at })
    }

    /// Removes the member `name` (there is at most one: duplicates were refused).
    fn take(&mut self, name: &str) -> Option<Json> {
        let index = self.members.iter().position(|(key, _)| key == name)?;
        Some(self.members.remove(index).1)
    }

    pub fn required<T: FromJson>(&mut self, name: &str) -> Result<T, ConfigError> {
        match self.take(name) {
            Some(value) => T::from_json(value, &Path::Key(self.at, name)),
            None => Err(error(self.at, format!("missing field `{name}`"))),
        }
    }

    /// The field, or `default` when it is absent.
    pub fn or<T: FromJson>(&mut self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.take(name) {
            Some(value) => T::from_json(value, &Path::Key(self.at, name)),
            None => Ok(default),
        }
    }

    /// The field, or `T::default()` when it is absent (for an `Option`, also when it is `null`).
    pub fn or_default<T: FromJson + Default>(&mut self, name: &str) -> Result<T, ConfigError> {
        self.or(name, T::default())
    }
}

/// A value written as one of `variants`' names (the configuration's enums).
pub fn variant<T: Copy>(
    value: Json,
    at: &Path<'_>,
    variants: &[(&str, T)],
) -> Result<T, ConfigError> {
    if let Json::String(name) = &value {
        if let Some((_, found)) = variants.iter().find(|(known, _)| known == name) {
            return Ok(*found);
        }
    }
    let names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
    Err(not_a_variant(&value, at, &names))
}

fn not_a_variant(value: &Json, at: &Path<'_>, names: &[&str]) -> ConfigError {
    let expected = expected_names(names);
    match value {
        Json::String(name) => error(at, format!("unknown variant `{name}`, expected {expected}")),
        other => invalid_type(other, at, &expected),
    }
}

impl FromJson for String {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        match value {
            Json::String(value) => Ok(value),
            other => Err(invalid_type(&other, at, "a string")),
        }
    }
}

impl FromJson for bool {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        match value {
            Json::Bool(value) => Ok(value),
            other => Err(invalid_type(&other, at, "a boolean")),
        }
    }
}

/// A non-negative integer that fits `T`, whose largest value is `max`.
fn unsigned<T: TryFrom<u64>>(value: Json, at: &Path<'_>, max: u64) -> Result<T, ConfigError> {
    if let Json::Number(Number::Unsigned(number)) = value {
        if let Ok(number) = T::try_from(number) {
            return Ok(number);
        }
    }
    Err(not_unsigned(&value, at, max))
}

fn not_unsigned(value: &Json, at: &Path<'_>, max: u64) -> ConfigError {
    let expected = if max == u64::MAX {
        "a non-negative integer".to_string()
    } else {
        format!("an integer from 0 to {max}")
    };
    match value {
        Json::Number(Number::Unsigned(_) | Number::Negative(_)) => error(
            at,
            format!("invalid value: {}, expected {expected}", Found(value)),
        ),
        other => invalid_type(other, at, &expected),
    }
}

macro_rules! unsigned_from_json {
    ($($integer:ty),*) => {$(
        impl FromJson for $integer {
            fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
                unsigned(value, at, u64::try_from(<$integer>::MAX).unwrap_or(u64::MAX))
            }
        }
    )*};
}

unsigned_from_json!(u16, u32, u64, usize);

/// `null` reads as `None`, as an absent field does.
impl<T: FromJson> FromJson for Option<T> {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        match value {
            Json::Null => Ok(None),
            value => T::from_json(value, at).map(Some),
        }
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        match value {
            Json::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| T::from_json(item, &Path::Index(at, index)))
                .collect(),
            other => Err(invalid_type(&other, at, "an array")),
        }
    }
}

/// A JSON object with free keys (plan names, header names). A repeated key keeps its last value.
impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let members = match value {
            Json::Object(members) => members,
            other => return Err(invalid_type(&other, at, "an object")),
        };
        let mut map = BTreeMap::new();
        for (key, value) in members {
            let value = T::from_json(value, &Path::Key(at, &key))?;
            map.insert(key, value);
        }
        Ok(map)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Number(Number::Unsigned(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Json, E> {
        let number = u64::try_from(value).map_or(Number::Negative(value), Number::Unsigned);
        Ok(Json::Number(number))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Json, E> {
        Ok(Json::Number(Number::Float(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Json, E> {
        Ok(Json::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Json, E> {
        Ok(Json::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn parse(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    fn read<T: FromJson>(text: &str) -> Result<T, ConfigError> {
        decode(text.as_bytes())
    }

    fn reason<T: FromJson + fmt::Debug>(text: &str) -> String {
        read::<T>(text).unwrap_err().reason
    }

    /// A two-field struct, as the schema types read themselves.
    #[derive(Debug, PartialEq)]
    struct Pair {
        name: String,
        count: u64,
        tags: Option<Vec<String>>,
    }

    impl FromJson for Pair {
        fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
            let mut o = Object::new(value, at, &["name", "count", "tags"])?;
            Ok(Pair {
                name: o.required("name")?,
                count: o.or("count", 7)?,
                tags: o.or_default("tags")?,
            })
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Colour {
        Red,
        Green,
    }

    impl FromJson for Colour {
        fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
            variant(value, at, &[("red", Colour::Red), ("green", Colour::Green)])
        }
    }

    #[test]
    fn the_tree_keeps_document_order_duplicates_and_number_kinds() {
        assert_eq!(
            parse(r#"{"b": 1, "a": -2, "b": 1.5, "c": [true, null, "x"], "d": {}}"#),
            Json::Object(vec![
                ("b".into(), Json::Number(Number::Unsigned(1))),
                ("a".into(), Json::Number(Number::Negative(-2))),
                ("b".into(), Json::Number(Number::Float(1.5))),
                (
                    "c".into(),
                    Json::Array(vec![Json::Bool(true), Json::Null, Json::String("x".into())])
                ),
                ("d".into(), Json::Object(vec![])),
            ])
        );
        assert_eq!(
            parse("18446744073709551615"),
            Json::Number(Number::Unsigned(u64::MAX))
        );
        assert_eq!(
            parse("18446744073709551616"),
            Json::Number(Number::Float(18446744073709551616.0))
        );
        assert_eq!(parse("1e2"), Json::Number(Number::Float(100.0)));
        // serde_json reads a negative zero as a float, so no integer field takes it.
        assert!(matches!(parse("-0"), Json::Number(Number::Float(_))));
        assert_eq!(parse(r#""\u00e9\n""#), Json::String("é\n".into()));
    }

    #[test]
    fn paths_are_written_as_in_the_documentation() {
        let root = Path::Root;
        assert_eq!(root.to_string(), ".");
        let services = Path::Key(&root, "services");
        let first = Path::Index(&services, 0);
        let plans = Path::Key(&first, "plans");
        let routes = Path::Key(&plans, "routes");
        assert_eq!(
            Path::Key(&routes, "Sandbox").to_string(),
            "services[0].plans.routes.Sandbox"
        );
        let locations = Path::Key(&first, "locations");
        assert_eq!(
            Path::Index(&locations, 2).to_string(),
            "services[0].locations[2]"
        );
        assert_eq!(Path::Index(&root, 3).to_string(), "[3]");
        assert_eq!(Path::Key(&root, "backend").to_string(), "backend");
    }

    #[test]
    fn structs_read_their_fields_with_defaults() {
        assert_eq!(
            read::<Pair>(r#"{"name": "a"}"#).unwrap(),
            Pair {
                name: "a".into(),
                count: 7,
                tags: None
            }
        );
        assert_eq!(
            read::<Pair>(r#"{"tags": ["x", "y"], "count": 0, "name": ""}"#).unwrap(),
            Pair {
                name: String::new(),
                count: 0,
                tags: Some(vec!["x".into(), "y".into()])
            }
        );
        let null_option = read::<Pair>(r#"{"name": "a", "tags": null}"#).unwrap();
        assert_eq!(null_option.tags, None);
    }

    #[test]
    fn unknown_duplicate_and_missing_fields_are_named() {
        let e = read::<Pair>(r#"{"name": "a", "cuont": 1}"#).unwrap_err();
        assert_eq!(e.path, "cuont");
        assert_eq!(
            e.reason,
            "unknown field `cuont`, expected one of `name`, `count`, `tags`"
        );
        // A misspelt required field is reported as unknown, not as missing.
        assert_eq!(read::<Pair>(r#"{"nmae": "a"}"#).unwrap_err().path, "nmae");
        let e = read::<Pair>(r#"{"name": "a", "name": "b"}"#).unwrap_err();
        assert_eq!(e.path, "name");
        assert_eq!(e.reason, "duplicate field `name`");
        let e = read::<Pair>(r#"{"count": 1}"#).unwrap_err();
        assert_eq!(e.path, ".");
        assert_eq!(e.reason, "missing field `name`");
        let e = read::<Vec<Pair>>(r#"[{"name": "a"}, {"count": 1}]"#).unwrap_err();
        assert_eq!(e.path, "[1]");
        assert_eq!(e.reason, "missing field `name`");
    }

    #[test]
    fn wrong_types_say_what_was_expected_and_found() {
        let cases = [
            (
                r#"{"name": 1}"#,
                "name",
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"name": null}"#,
                "name",
                "invalid type: null, expected a string",
            ),
            (
                r#"{"name": "a", "count": "5"}"#,
                "count",
                "invalid type: string \"5\", expected a non-negative integer",
            ),
            (
                r#"{"name": "a", "count": -1}"#,
                "count",
                "invalid value: integer `-1`, expected a non-negative integer",
            ),
            (
                r#"{"name": "a", "count": 1.5}"#,
                "count",
                "invalid type: a number with a fraction or exponent, expected a non-negative integer",
            ),
            (
                r#"{"name": "a", "count": null}"#,
                "count",
                "invalid type: null, expected a non-negative integer",
            ),
            (
                r#"{"name": "a", "tags": "x"}"#,
                "tags",
                "invalid type: string \"x\", expected an array",
            ),
            (
                r#"{"name": "a", "tags": ["x", false]}"#,
                "tags[1]",
                "invalid type: boolean `false`, expected a string",
            ),
        ];
        for (text, path, reason) in cases {
            let e = read::<Pair>(text).unwrap_err();
            assert_eq!(
                (e.path.as_str(), e.reason.as_str()),
                (path, reason),
                "{text}"
            );
        }
        assert_eq!(
            reason::<Pair>("[]"),
            "invalid type: an array, expected an object"
        );
        assert_eq!(
            reason::<Vec<String>>("{}"),
            "invalid type: an object, expected an array"
        );
        assert_eq!(
            reason::<bool>("\"true\""),
            "invalid type: string \"true\", expected a boolean"
        );
    }

    #[test]
    fn integers_must_fit_their_field() {
        assert_eq!(read::<u16>("65535").unwrap(), 65535);
        assert_eq!(
            reason::<u16>("65536"),
            "invalid value: integer `65536`, expected an integer from 0 to 65535"
        );
        assert_eq!(read::<u32>("4294967295").unwrap(), u32::MAX);
        assert!(read::<u32>("4294967296").is_err());
        assert_eq!(read::<u64>("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(
            reason::<u64>("18446744073709551616"),
            "invalid type: a number with a fraction or exponent, expected a non-negative integer"
        );
        assert_eq!(read::<usize>("0").unwrap(), 0);
        assert!(read::<usize>("-1").is_err());
        assert!(read::<u64>("1e3").is_err());
        assert!(read::<u64>("1.0").is_err());
    }

    #[test]
    fn enums_list_their_values() {
        assert_eq!(read::<Colour>(r#""green""#).unwrap(), Colour::Green);
        assert_eq!(
            reason::<Colour>(r#""Green""#),
            "unknown variant `Green`, expected one of `red`, `green`"
        );
        assert_eq!(
            reason::<Colour>("1"),
            "invalid type: integer `1`, expected one of `red`, `green`"
        );
        assert!(read::<Colour>(r#"{"red": null}"#).is_err());
        assert_eq!(read::<Option<Colour>>("null").unwrap(), None);
    }

    #[test]
    fn maps_take_any_key_as_a_path_segment() {
        let map = read::<BTreeMap<String, u16>>(r#"{"b": 2, "a.b c": 1}"#).unwrap();
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            vec![("a.b c".to_string(), 1), ("b".to_string(), 2)]
        );
        let e = read::<BTreeMap<String, u16>>(r#"{"ok": 1, "Gold plan": "x"}"#).unwrap_err();
        assert_eq!(e.path, r#"["Gold plan"]"#);
        let repeated = read::<BTreeMap<String, u16>>(r#"{"a": 1, "a": 2}"#).unwrap();
        assert_eq!(repeated.get("a"), Some(&2));
    }

    #[test]
    fn syntax_errors_keep_serde_json_message_at_the_root() {
        for text in [
            "{",
            r#"{"name": "a",}"#,
            "{\"name\": \"a\"} x",
            "nul",
            "\"\\x\"",
        ] {
            let e = read::<Pair>(text).unwrap_err();
            assert_eq!(e.path, ".", "{text}");
            assert!(e.reason.contains("line 1 column"), "{text}: {}", e.reason);
        }
        let e = read::<Pair>("{\n  \"name\": \"a\"\n  \"count\": 1\n}").unwrap_err();
        assert_eq!(e.reason, "expected `,` or `}` at line 3 column 3");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = read::<Vec<String>>(&deep).unwrap_err();
        assert!(e.reason.contains("recursion limit"), "{}", e.reason);
    }

    #[test]
    fn no_input_panics_the_reader() {
        let text = r#"{"name": "a\u0041", "count": 18446744073709551615, "tags": ["x", "y"]}"#;
        for end in 0..=text.len() {
            let _ = read::<Pair>(&text[..end]);
        }
        for byte in 0..=u8::MAX {
            let mut bytes = text.as_bytes().to_vec();
            for index in 0..bytes.len() {
                let saved = bytes[index];
                bytes[index] = byte;
                let _ = decode::<Pair>(&bytes);
                bytes[index] = saved;
            }
        }
    }
}
