//! Reading the portal's proxy-config answers.
//!
//! Parsing is most of what a round costs (an account of 1,000 services of 20 rules answers about
//! 1 MB per page of 500), so the fetcher parses a page only when its bytes differ from the same
//! page of the previous round, and takes each version it already serves as it was.

use crate::config::json::{Json, Number};

use super::format;

/// One proxy config of an answer.
#[derive(Debug)]
pub struct Item {
    pub id: String,
    pub version: u64,
    pub content: Vec<(String, Json)>,
}

/// `{"proxy_configs": [{"proxy_config": {...}}, ...]}`, one page of an account's proxy configs.
pub fn proxy_configs(body: &[u8]) -> Option<Vec<Item>> {
    let Ok(Json::Object(members)) = serde_json::from_slice::<Json>(body) else {
        return None;
    };
    let Some(Json::Array(items)) = take(members, "proxy_configs") else {
        return None;
    };
    items.into_iter().map(item).collect()
}

/// `{"proxy_config": {"version": N, "content": {...}}}`, one service's version.
pub fn proxy_config(body: &[u8]) -> Option<Item> {
    item(serde_json::from_slice::<Json>(body).ok()?)
}

fn item(wrapper: Json) -> Option<Item> {
    let Json::Object(wrapper) = wrapper else {
        return None;
    };
    let Some(Json::Object(envelope)) = take(wrapper, "proxy_config") else {
        return None;
    };
    let Some(Json::Number(Number::Unsigned(version))) = format::get(&envelope, "version").cloned()
    else {
        return None;
    };
    let Some(Json::Object(content)) = take(envelope, "content") else {
        return None;
    };
    let id = match format::get(&content, "id")? {
        Json::Number(Number::Unsigned(n)) => n.to_string(),
        Json::String(s) => s.clone(),
        _ => return None,
    };
    Some(Item {
        id,
        version,
        content,
    })
}

/// The value of member `name`, taken out of the object.
fn take(members: Vec<(String, Json)>, name: &str) -> Option<Json> {
    members
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
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
        assert_eq!(items[0].content.len(), 3);
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
