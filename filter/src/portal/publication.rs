//! How the fetcher hands the portal's services to every VM: shared data, one key per service
//! version, so a VM reads and compiles only the versions it does not serve yet.
//!
//! ```text
//! {prefix}.portal.service.{id}.{version}   the version's content (JSON text), written once
//! {prefix}.portal.index                    [[id, version], ...]: what serves, in the portal's order
//! {prefix}.portal.generation               u64, bumped by every publication, written last
//! ```
//!
//! A version's key is written before the index that names it, and emptied only after an index
//! that no longer names it; a VM that meets an empty one (it read an older index) tries again on
//! its next tick.

use std::rc::Rc;

use crate::config::json::{Json, Number};
use crate::store::SharedStore;

use super::fetch::write;

/// One service at one version, as the portal published it.
#[derive(Clone, Debug)]
pub struct Live {
    pub id: String,
    pub version: u64,
    pub content: Rc<Json>,
}

fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}.portal.{name}")
}

fn service_key(prefix: &str, id: &str, version: u64) -> String {
    key(prefix, &format!("service.{id}.{version}"))
}

/// The latest publication's number; 0 before the first.
pub fn generation(store: &impl SharedStore, prefix: &str) -> u64 {
    store
        .get(&key(prefix, "generation"))
        .and_then(|(value, _)| value.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// What the latest publication serves: (id, version), in order.
pub fn index(store: &impl SharedStore, prefix: &str) -> Option<Vec<(String, u64)>> {
    let (bytes, _) = store.get(&key(prefix, "index"))?;
    let Ok(Json::Array(items)) = serde_json::from_slice::<Json>(&bytes) else {
        return None;
    };
    items
        .into_iter()
        .map(|item| match item {
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(id), Json::Number(Number::Unsigned(version))] => {
                    Some((id.clone(), *version))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The content of one published version.
pub fn content(store: &impl SharedStore, prefix: &str, id: &str, version: u64) -> Option<Json> {
    let (bytes, _) = store.get(&service_key(prefix, id, version))?;
    serde_json::from_slice(&bytes).ok()
}

/// Everything the latest publication serves, contents included (a fetcher taking over).
pub fn load(store: &impl SharedStore, prefix: &str) -> Option<(u64, Vec<Live>)> {
    let generation = generation(store, prefix);
    if generation == 0 {
        return Some((0, Vec::new()));
    }
    let live = index(store, prefix)?
        .into_iter()
        .map(|(id, version)| {
            let content = Rc::new(content(store, prefix, &id, version)?);
            Some(Live {
                id,
                version,
                content,
            })
        })
        .collect::<Option<Vec<Live>>>()?;
    Some((generation, live))
}

/// Publishes `next`, which replaces `previous`: returns the new generation, or `None` when shared
/// data refused a write (nothing changes for the VMs then).
pub fn publish(
    store: &impl SharedStore,
    prefix: &str,
    next: &[Live],
    previous: &[Live],
) -> Option<u64> {
    let same = |a: &Live, b: &Live| a.id == b.id && a.version == b.version;
    for live in next.iter().filter(|n| !previous.iter().any(|p| same(p, n))) {
        let mut text = String::new();
        write(&live.content, &mut text);
        let key = service_key(prefix, &live.id, live.version);
        store.set(&key, text.as_bytes(), None).ok()?;
    }
    let index = Json::Array(
        next.iter()
            .map(|live| {
                Json::Array(vec![
                    Json::String(live.id.clone()),
                    Json::Number(Number::Unsigned(live.version)),
                ])
            })
            .collect(),
    );
    let mut text = String::new();
    write(&index, &mut text);
    store
        .set(&key(prefix, "index"), text.as_bytes(), None)
        .ok()?;
    let generation = generation(store, prefix) + 1;
    store
        .set(&key(prefix, "generation"), &generation.to_le_bytes(), None)
        .ok()?;
    for gone in previous.iter().filter(|p| !next.iter().any(|n| same(p, n))) {
        let _ = store.set(&service_key(prefix, &gone.id, gone.version), &[], None);
    }
    Some(generation)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::store::memory::MemoryStore;

    fn live(id: &str, version: u64) -> Live {
        let content = Json::Object(vec![
            ("id".into(), Json::String(id.into())),
            ("v".into(), Json::Number(Number::Unsigned(version))),
        ]);
        Live {
            id: id.into(),
            version,
            content: Rc::new(content),
        }
    }

    #[test]
    fn a_publication_is_read_back_and_replaced_versions_are_let_go() {
        let store = MemoryStore::default();
        assert_eq!(load(&store, "p").unwrap().0, 0);
        let first = vec![live("16", 1), live("a \"b\"", 3)];
        assert_eq!(publish(&store, "p", &first, &[]), Some(1));
        let (generation, read) = load(&store, "p").unwrap();
        assert_eq!(generation, 1);
        assert_eq!(read.len(), 2);
        assert_eq!((read[1].id.as_str(), read[1].version), ("a \"b\"", 3));
        assert_eq!(read[1].content, first[1].content);

        let second = vec![live("16", 2), live("a \"b\"", 3)];
        assert_eq!(publish(&store, "p", &second, &first), Some(2));
        assert_eq!(
            index(&store, "p").unwrap(),
            [("16".to_string(), 2), ("a \"b\"".to_string(), 3)]
        );
        assert!(content(&store, "p", "16", 1).is_none(), "let go");
        assert!(content(&store, "p", "16", 2).is_some());
    }
}
