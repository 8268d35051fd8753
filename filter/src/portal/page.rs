//! Reading the portal's proxy-config answers without building every service.
//!
//! A round asks for every service's latest proxy config, every refresh interval: with 1,000
//! services of 20 rules that is about 1 MB of JSON a second, almost all of it versions already
//! serving. So a page is only skimmed: each item's version, its service id, and where its
//! `content` lies in the answer ([`RawValue`]: a slice of the body, not a tree). The caller builds
//! the tree of a content only for a version it does not serve yet.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::json::{Json, Number};

/// One proxy config of an answer, its content not read yet.
#[derive(Debug)]
pub struct Item<'a> {
    pub id: String,
    pub version: u64,
    pub content: &'a RawValue,
}

impl Item<'_> {
    /// The content as a tree.
    pub fn content(&self) -> Option<Json> {
        serde_json::from_str(self.content.get()).ok()
    }
}

/// `{"proxy_configs": [{"proxy_config": {...}}, ...]}`, one page of an account's proxy configs.
pub fn proxy_configs(body: &[u8]) -> Option<Vec<Item<'_>>> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let items = deserializer.deserialize_map(Page).ok()?;
    deserializer.end().ok()?;
    items
}

/// `{"proxy_config": {"version": N, "content": {...}}}`, one service's version.
pub fn proxy_config(body: &[u8]) -> Option<Item<'_>> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let item = deserializer.deserialize_map(Wrapper).ok()?;
    deserializer.end().ok()?;
    item
}

/// Reads the members of a map: `read` takes the one named `wanted[i]` as `i`; the others are
/// skipped unread.
fn members<'de, A: MapAccess<'de>>(
    mut map: A,
    wanted: &'static [&'static str],
    mut read: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key_seed(Key(wanted))? {
        match key {
            Some(index) => read(index, &mut map)?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// A member's name, as its place in a list of wanted names (no allocation).
struct Key(&'static [&'static str]);

impl<'de> de::DeserializeSeed<'de> for Key {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|wanted| *wanted == name))
    }
}

struct Page;

impl<'de> Visitor<'de> for Page {
    type Value = Option<Vec<Item<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a page of proxy configs")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut items = None;
        members(map, &["proxy_configs"], |_, map| {
            items = map.next_value::<Seq>()?.0;
            Ok(())
        })?;
        Ok(items)
    }
}

/// The list of a page; `None` when any item is not a proxy config.
struct Seq<'a>(Option<Vec<Item<'a>>>);

impl<'de> de::Deserialize<'de> for Seq<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(SeqVisitor)
    }
}

struct SeqVisitor;

impl<'de> Visitor<'de> for SeqVisitor {
    type Value = Seq<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of proxy configs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Some(Vec::new());
        while let Some(item) = seq.next_element::<WrapperValue>()? {
            match (&mut items, item.0) {
                (Some(list), Some(item)) => list.push(item),
                _ => items = None,
            }
        }
        Ok(Seq(items))
    }
}

struct WrapperValue<'a>(Option<Item<'a>>);

impl<'de> de::Deserialize<'de> for WrapperValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Wrapper).map(WrapperValue)
    }
}

struct Wrapper;

impl<'de> Visitor<'de> for Wrapper {
    type Value = Option<Item<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a proxy config")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut item = None;
        members(map, &["proxy_config"], |_, map| {
            item = map.next_value::<EnvelopeValue>()?.0;
            Ok(())
        })?;
        Ok(item)
    }
}

struct EnvelopeValue<'a>(Option<Item<'a>>);

impl<'de> de::Deserialize<'de> for EnvelopeValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Envelope).map(EnvelopeValue)
    }
}

/// `{"version": N, "content": {"id": ..., ...}, ...}`.
struct Envelope;

impl<'de> Visitor<'de> for Envelope {
    type Value = Option<Item<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a proxy config envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut version = None;
        let mut content: Option<&'de RawValue> = None;
        members(map, &["version", "content"], |index, map| {
            match index {
                0 => version = unsigned(map.next_value::<Json>()?),
                _ => content = Some(map.next_value()?),
            }
            Ok(())
        })?;
        let (Some(version), Some(content)) = (version, content) else {
            return Ok(None);
        };
        let Ok(ServiceId(Some(id))) = serde_json::from_str::<ServiceId>(content.get()) else {
            return Ok(None);
        };
        Ok(Some(Item {
            id,
            version,
            content,
        }))
    }
}

fn unsigned(json: Json) -> Option<u64> {
    match json {
        Json::Number(Number::Unsigned(n)) => Some(n),
        _ => None,
    }
}

/// A content's `id` (a number or a string), nothing else of it read.
struct ServiceId(Option<String>);

impl<'de> de::Deserialize<'de> for ServiceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ServiceIdVisitor)
    }
}

struct ServiceIdVisitor;

impl<'de> Visitor<'de> for ServiceIdVisitor {
    type Value = ServiceId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a service")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        members(map, &["id"], |_, map| {
            id = match map.next_value::<Json>()? {
                Json::Number(Number::Unsigned(n)) => Some(n.to_string()),
                Json::String(s) => Some(s),
                _ => None,
            };
            Ok(())
        })?;
        Ok(ServiceId(id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_page_is_skimmed_into_ids_versions_and_contents() {
        let body = br#"{"proxy_configs": [
            {"proxy_config": {"id": 1, "version": 7, "environment": "production",
              "content": {"proxy": {"hosts": ["a"]}, "id": 16, "system_name": "api"}}},
            {"proxy_config": {"content": {"id": "s2"}, "version": 1}}
        ], "metadata": {"total": 2}}"#;
        let items = proxy_configs(body).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].id.as_str(), items[0].version), ("16", 7));
        assert_eq!((items[1].id.as_str(), items[1].version), ("s2", 1));
        let Json::Object(content) = items[0].content().unwrap() else {
            panic!("not an object")
        };
        assert_eq!(content.len(), 3);
    }

    #[test]
    fn anything_else_is_not_a_page() {
        for body in [
            &br#"{"proxy_configs": [{"proxy_config": {"version": 7}}]}"#[..],
            br#"{"proxy_configs": [{"proxy_config": {"version": -1, "content": {"id": 1}}}]}"#,
            br#"{"proxy_configs": [{"proxy_config": {"version": 1, "content": {"id": 1.5}}}]}"#,
            br#"{"proxy_configs": [{"other": 1}]}"#,
            br#"{"proxy_configs": {}}"#,
            br#"{"services": []}"#,
            br#"{"proxy_configs": []} trailing"#,
            br#"[1, 2]"#,
            b"<html>",
            b"",
        ] {
            assert!(
                proxy_configs(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn one_proxy_config_is_read_the_same_way() {
        let item =
            proxy_config(br#"{"proxy_config": {"version": 3, "content": {"id": 9}}}"#).unwrap();
        assert_eq!((item.id.as_str(), item.version), ("9", 3));
        assert!(proxy_config(br#"{"proxy_config": {"version": 3}}"#).is_none());
    }
}
