//! Leases against an in-memory shared store: what they reserve, what they decide without writing,
//! and what they give back.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::backend::parse_status;
use crate::cache::slots::{Found, Slots};
use crate::cache::{Answer, Entry, cache_key};
use crate::config::Config;
use crate::credentials::Credentials;
use crate::store::SharedStore;
use crate::store::memory::MemoryStore;
use crate::usage::usage_of;

const NOW_MS: u64 = 1_795_543_791_000;
const TTL_MS: u64 = 10_000;

const CONFIG: &str = r#"{
  "backend": {"cluster": "threescale_backend"},
  "cache": {"ttl_seconds": 10, "slots": 64},
  "services": [{
    "id": "svc1",
    "service_token": "secret-token",
    "match": {"hosts": ["api.test"]},
    "credentials": {"kind": "user_key", "locations": ["query"]},
    "mapping_rules": [{"method": "GET", "pattern": "/", "metric": "hits"}]
  }]
}"#;

fn config() -> Config {
    Config::load(CONFIG.as_bytes(), &|_| None).unwrap()
}

fn slots(store: &MemoryStore) -> Slots<'_, MemoryStore> {
    Slots {
        store,
        prefix: "t",
        count: 64,
    }
}

fn key() -> String {
    cache_key("svc1", &Credentials::UserKey("k1".into()), None)
}

/// An entry allowing `max` hits for eternity, `current` of them used, answered at `NOW_MS`.
fn place(store: &MemoryStore, max: u64, current: u64) {
    let xml = format!(
        r#"<status><authorized>true</authorized><plan>Gold</plan><usage_reports><usage_report metric="hits" period="eternity"><max_value>{max}</max_value><current_value>{current}</current_value></usage_report></usage_reports></status>"#
    );
    let status = parse_status(xml.as_bytes()).unwrap();
    let entry = Entry::new(key(), Answer::Authorized, Some(&status), NOW_MS).unwrap();
    assert!(slots(store).place(&entry, |_| {}).is_some());
}

fn entry(store: &MemoryStore) -> Entry {
    match slots(store).update(&key(), |entry| (entry.clone(), false)) {
        Found::Entry { result, .. } => result,
        _ => panic!("no entry"),
    }
}

/// Hits counted on the limit beyond 3scale's value (admitted, reserved or pending).
fn used(store: &MemoryStore) -> u64 {
    entry(store).limits().map(|(_, used)| used).sum()
}

fn pending(store: &MemoryStore) -> Vec<(u16, u64)> {
    entry(store)
        .pending()
        .map(|tally| (tally.code, tally.delta))
        .collect()
}

fn freshness() -> Freshness {
    Freshness {
        ttl_ms: TTL_MS,
        horizon_ms: 2 * TTL_MS,
        stuck_after_ms: 2000,
        lease_ms: LEASE_MS,
    }
}

/// Decides one request of one hit at `now_ms` as the flow does: from the lease, else renewed.
fn decide(store: &MemoryStore, now_ms: u64) -> Admission {
    let usage = usage_of(&[("hits", 1)]);
    if let Some(admission) = admit(&key(), &usage, now_ms, true, true) {
        return admission;
    }
    let request = Request {
        key: &key(),
        usage: &usage,
        now_ms,
        awaiting_code: true,
        rate_limit: true,
    };
    match renew(&slots(store), &config(), &request, &freshness()) {
        Found::Entry {
            result: Some(renewal),
            ..
        } => renewal.admission,
        _ => panic!("not decided from the entry"),
    }
}

fn allowed(admission: &Admission) -> bool {
    matches!(admission, Admission::Allowed { .. })
}

/// The store's values, to show that a decision wrote nothing.
fn snapshot(store: &MemoryStore) -> Vec<(String, u32)> {
    let mut values: Vec<_> = store
        .data
        .borrow()
        .iter()
        .map(|(key, (_, cas))| (key.clone(), *cas))
        .collect();
    values.sort();
    values
}

#[test]
fn a_lease_reserves_units_once_and_decides_the_next_requests_without_writing() {
    let store = MemoryStore::default();
    place(&store, 1000, 0);
    assert!(allowed(&decide(&store, NOW_MS)));
    assert_eq!(
        used(&store),
        size::FIRST,
        "the first lease holds 4 requests"
    );
    let before = snapshot(&store);
    for _ in 1..size::FIRST {
        assert!(allowed(&decide(&store, NOW_MS + 1)));
    }
    assert_eq!(snapshot(&store), before, "decided in the worker's memory");
    assert!(store.get("t.queued").is_none(), "nothing to report yet");
}

#[test]
fn renewing_returns_finished_usage_with_its_codes_and_grows_the_lease() {
    let store = MemoryStore::default();
    place(&store, 1000, 0);
    let usage = usage_of(&[("hits", 1)]);
    for n in 0..size::FIRST {
        assert!(allowed(&decide(&store, NOW_MS)));
        assert!(finish(&key(), &usage, if n == 0 { 503 } else { 200 }));
    }
    // The fifth request does not fit: one CAS returns the four and reserves twice as many.
    assert!(allowed(&decide(&store, NOW_MS + 1)));
    assert_eq!(pending(&store), vec![(503, 1), (200, 3)]);
    assert_eq!(used(&store), 4 + 2 * size::FIRST);
}

#[test]
fn a_lease_takes_at_most_a_quarter_of_what_is_left_and_one_request_at_the_last_units() {
    let store = MemoryStore::default();
    place(&store, 10, 0);
    assert!(allowed(&decide(&store, NOW_MS)));
    assert_eq!(used(&store), 2, "10 left: a lease of 10 / 4 = 2 requests");
    let store = MemoryStore::default();
    place(&store, 10, 3);
    settle_all(&slots(&store), &config(), NOW_MS);
    assert!(allowed(&decide(&store, NOW_MS)));
    assert_eq!(used(&store), 1, "7 left: only the request itself");
}

#[test]
fn with_two_workers_the_limit_is_admitted_exactly_once_every_lease_is_returned() {
    // The other worker decides in the entry directly: it can only take what no lease holds.
    let store = MemoryStore::default();
    place(&store, 40, 0);
    let usage = usage_of(&[("hits", 1)]);
    let mut admitted = 0;
    let mut other = 0;
    for round in 0..60 {
        let now = NOW_MS + round;
        if allowed(&decide(&store, now)) {
            admitted += 1;
            finish(&key(), &usage, 200);
        }
        let direct = slots(&store).update(&key(), |entry| {
            let admission = entry.admit(&usage, now / 1000);
            (allowed(&admission), true)
        });
        if let Found::Entry { result: true, .. } = direct {
            other += 1;
        }
    }
    settle_all(&slots(&store), &config(), NOW_MS + 100);
    // Units the lease still held when the other worker was refused come back with it.
    while slots(&store)
        .update(&key(), |entry| {
            let admission = entry.admit(&usage, NOW_MS / 1000);
            (allowed(&admission), true)
        })
        .is_entry_with(true)
    {
        other += 1;
    }
    assert_eq!(admitted + other, 40, "{admitted} + {other}");
}

#[test]
fn a_lease_whose_traffic_stops_is_returned_at_the_first_tick_after_it_expires() {
    let store = MemoryStore::default();
    place(&store, 1000, 0);
    let usage = usage_of(&[("hits", 1)]);
    assert!(allowed(&decide(&store, NOW_MS)));
    finish(&key(), &usage, 200);
    settle_expired(&slots(&store), &config(), NOW_MS + LEASE_MS - 1);
    assert_eq!(used(&store), size::FIRST, "still leased");
    settle_expired(&slots(&store), &config(), NOW_MS + LEASE_MS);
    assert_eq!(used(&store), 1, "only the request that was admitted");
    assert_eq!(pending(&store), vec![(200, 1)]);
    assert!(store.get("t.queued").is_some(), "and queued for the report");
}

#[test]
fn requests_in_progress_stay_counted_when_their_lease_is_returned() {
    let store = MemoryStore::default();
    place(&store, 1000, 0);
    let usage = usage_of(&[("hits", 1)]);
    assert!(allowed(&decide(&store, NOW_MS)));
    settle_expired(&slots(&store), &config(), NOW_MS + LEASE_MS);
    assert_eq!(used(&store), 1, "the request in progress");
    assert!(pending(&store).is_empty());
    assert!(finish(&key(), &usage, 201), "its lease is kept for it");
    settle_expired(&slots(&store), &config(), NOW_MS + LEASE_MS);
    assert_eq!(pending(&store), vec![(201, 1)]);
    assert_eq!(used(&store), 1);
}

#[test]
fn a_request_given_back_frees_its_units_in_the_lease() {
    let store = MemoryStore::default();
    place(&store, 1000, 0);
    let usage = usage_of(&[("hits", 1)]);
    assert!(allowed(&decide(&store, NOW_MS)));
    give_back(&key(), &usage);
    settle_expired(&slots(&store), &config(), NOW_MS + LEASE_MS);
    assert_eq!(used(&store), 0);
    assert!(pending(&store).is_empty());
}

#[test]
fn a_lease_never_outlives_the_entrys_ttl_and_a_stale_entry_decides_one_request_at_a_time() {
    let store = MemoryStore::default();
    place(&store, 1000, 0);
    let fresh_until = NOW_MS + TTL_MS;
    assert!(allowed(&decide(&store, fresh_until - 10)));
    assert!(
        admit(
            &key(),
            &usage_of(&[("hits", 1)]),
            fresh_until + 1,
            true,
            true
        )
        .is_none()
    );
    let usage = usage_of(&[("hits", 1)]);
    let request = Request {
        key: &key(),
        usage: &usage,
        now_ms: fresh_until + 1,
        awaiting_code: true,
        rate_limit: false,
    };
    let Found::Entry {
        result: Some(renewal),
        ..
    } = renew(&slots(&store), &config(), &request, &freshness())
    else {
        panic!("decided")
    };
    assert!(renewal.stale && renewal.refresh && allowed(&renewal.admission));
    assert_eq!(used(&store), 2, "the first request, then this one alone");
}

#[test]
fn a_cached_denial_is_decided_from_the_lease_until_it_expires() {
    let store = MemoryStore::default();
    let denied = Answer::Denied {
        category: crate::category::Category::AppInactive,
        reason: "application_not_active".into(),
    };
    let entry = Entry::new(key(), denied, None, NOW_MS).unwrap();
    assert!(slots(&store).place(&entry, |_| {}).is_some());
    assert!(!allowed(&decide(&store, NOW_MS)));
    let before = snapshot(&store);
    let admission = admit(&key(), &usage_of(&[("hits", 1)]), NOW_MS + 1, true, true);
    assert!(matches!(admission, Some(Admission::Refused { .. })));
    assert_eq!(snapshot(&store), before);
    assert!(
        admit(
            &key(),
            &usage_of(&[("hits", 1)]),
            NOW_MS + LEASE_MS,
            true,
            true
        )
        .is_none()
    );
}

trait FoundExt {
    fn is_entry_with(&self, value: bool) -> bool;
}

impl FoundExt for Found<bool> {
    fn is_entry_with(&self, value: bool) -> bool {
        matches!(self, Found::Entry { result, .. } if *result == value)
    }
}
