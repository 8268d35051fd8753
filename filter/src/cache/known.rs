//! The metrics 3scale has accepted for each service, shared by every VM of the Envoy.
//!
//! A request whose usage names a metric 3scale has not yet accepted (in an authorize with that usage)
//! asks 3scale before deciding from the cache, so a mapping rule naming an unknown metric is caught
//! (`metric_invalid`) instead of voiding a report later. The set lives in shared data, one key per
//! service, so that a VM started after the fact (another worker, a reloaded VM) decides from a cached
//! entry at once, even while 3scale is down, and an application is asked once per Envoy, not once per
//! worker. Each VM keeps a copy of what it has seen, so a request of a known metric costs no hostcall.

use std::cell::RefCell;

use crate::store::{SharedStore, update};
use crate::usage::Usage;

/// The most metric names kept per service (bounds the shared value; the rest are asked each time).
const MAX_METRICS: usize = 1024;

thread_local! {
    /// `(service id, metric)` pairs this VM has seen accepted: looked up on every cache hit, so
    /// without building a key.
    static SEEN: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

fn shared_key(prefix: &str, service: &str) -> String {
    format!("{prefix}.metrics.{service}")
}

fn seen(service: &str, metric: &str) -> bool {
    SEEN.with(|seen| {
        seen.borrow()
            .iter()
            .any(|(s, m)| s == service && m == metric)
    })
}

fn remember(service: &str, metric: &str) {
    if !seen(service, metric) {
        SEEN.with(|seen| {
            seen.borrow_mut()
                .push((service.to_string(), metric.to_string()));
        });
    }
}

/// The names in a shared value: one per line.
fn names(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b'\n').filter(|name| !name.is_empty())
}

/// Whether 3scale accepted every metric of `usage` for `service`, here or in another VM.
pub fn knows(store: &impl SharedStore, prefix: &str, service: &str, usage: &Usage) -> bool {
    if usage.iter().all(|(metric, _)| seen(service, metric)) {
        return true;
    }
    let Some((value, _)) = store.get(&shared_key(prefix, service)) else {
        return false;
    };
    let shared: Vec<&[u8]> = names(&value).collect();
    for (metric, _) in usage.iter() {
        if !shared.contains(&metric.as_bytes()) {
            return false;
        }
        remember(service, metric);
    }
    true
}

/// Records that 3scale accepted every metric of `usage` for `service`.
pub fn learn(store: &impl SharedStore, prefix: &str, service: &str, usage: &Usage) {
    let new: Vec<&str> = usage
        .iter()
        .map(|(metric, _)| metric)
        .filter(|metric| !seen(service, metric))
        .collect();
    if new.is_empty() {
        return;
    }
    for metric in &new {
        remember(service, metric);
    }
    let _ = update(store, &shared_key(prefix, service), |current| {
        let current = current.unwrap_or_default();
        let have: Vec<&[u8]> = names(current).collect();
        let missing: Vec<&str> = new
            .iter()
            .copied()
            .filter(|metric| !have.contains(&metric.as_bytes()))
            .take(MAX_METRICS.saturating_sub(have.len()))
            .collect();
        if missing.is_empty() {
            return ((), None);
        }
        let mut value = current.to_vec();
        for metric in missing {
            if !value.is_empty() {
                value.push(b'\n');
            }
            value.extend_from_slice(metric.as_bytes());
        }
        ((), Some(value))
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::usage::usage_of;

    fn forget_this_vm() {
        SEEN.with(|seen| seen.borrow_mut().clear());
    }

    #[test]
    fn another_vm_knows_what_one_vm_learnt() {
        let store = MemoryStore::default();
        let usage = usage_of(&[("hits", 1), ("search", 2)]);
        forget_this_vm();
        assert!(!knows(&store, "p", "svc", &usage));
        learn(&store, "p", "svc", &usage);
        forget_this_vm(); // as a fresh VM
        assert!(knows(&store, "p", "svc", &usage));
        assert!(!knows(&store, "p", "other", &usage), "per service");
        assert!(!knows(&store, "p", "svc", &usage_of(&[("bulk", 1)])));
    }

    #[test]
    fn learning_merges_with_what_others_wrote() {
        let store = MemoryStore::default();
        forget_this_vm();
        learn(&store, "p", "svc", &usage_of(&[("hits", 1)]));
        forget_this_vm();
        learn(&store, "p", "svc", &usage_of(&[("search", 1)]));
        forget_this_vm();
        assert!(knows(
            &store,
            "p",
            "svc",
            &usage_of(&[("hits", 1), ("search", 1)])
        ));
        let (value, _) = store.get("p.metrics.svc").unwrap();
        assert_eq!(value, b"hits\nsearch");
    }
}
