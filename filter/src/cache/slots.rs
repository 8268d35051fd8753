//! Where entries live in Envoy shared data: a fixed number of hashed slots, each a key of its own.
//!
//! Shared data has no eviction and never forgets a key, so the cache may only ever use
//! `slots` keys (`<prefix>.slot.<n>`): that is its memory bound. An application's key hashes to a
//! slot and may sit in any of the [`PROBES`] slots from there; each slot stores its entry's full
//! key, so a reader never mistakes another application's entry for its own.
//!
//! An entry written by a newer build of the module, in a format this one cannot read, is never
//! reused nor overwritten: updates of it answer [`Found::Busy`] (the request is decided by 3scale
//! alone, its usage reported on its own) until a build that reads it takes it over.

use std::cell::{Cell, RefCell};

use super::{Entry, PROBES, VERSION, is_newer, slot, stored_key};
use crate::store::{CAS_ATTEMPTS, SharedStore, StoreError};

/// A slot number, the bytes it held, and their decoding.
type Decoded = Option<(u32, Vec<u8>, Entry)>;

/// How many decoded entries a VM keeps (direct-mapped by slot).
const DECODED_SLOTS: usize = 512;

thread_local! {
    /// The entries this VM last read or wrote, decoded, with their bytes: while a slot still holds
    /// exactly those bytes (no other worker wrote it since), the copy stands in for decoding, which
    /// is most of a cache hit's own work.
    static DECODED: RefCell<Vec<Decoded>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    static WARNED_NEWER: Cell<bool> = const { Cell::new(false) };
}

/// Said once per VM: a newer build shares this Envoy's cache (an upgrade under way, or a rollback).
fn warn_newer(bytes: &[u8]) {
    if !WARNED_NEWER.replace(true) {
        log::warn!(
            "tollgate: the cache holds entries in format {} of a newer build (this one writes {VERSION}): \
             they are kept with their usage, and their requests are decided by 3scale one by one",
            bytes.first().copied().unwrap_or_default()
        );
    }
}

fn take_decoded(n: u32, bytes: &[u8]) -> Option<Entry> {
    DECODED.with(|decoded| {
        let mut decoded = decoded.borrow_mut();
        let cell = decoded.get_mut(n as usize % DECODED_SLOTS)?;
        match cell.take() {
            Some((slot, known, entry)) if slot == n && known == bytes => Some(entry),
            other => {
                *cell = other;
                None
            }
        }
    })
}

fn remember(n: u32, bytes: Vec<u8>, entry: Entry) {
    DECODED.with(|decoded| {
        let mut decoded = decoded.borrow_mut();
        if decoded.is_empty() {
            decoded.resize_with(DECODED_SLOTS, || None);
        }
        if let Some(cell) = decoded.get_mut(n as usize % DECODED_SLOTS) {
            *cell = Some((n, bytes, entry));
        }
    });
}

/// A slot's raw value and CAS number, as read.
type Stored = Option<(Vec<u8>, u32)>;

/// The cache in one VM's view of shared data.
pub struct Slots<'a, S: SharedStore> {
    pub store: &'a S,
    pub prefix: &'a str,
    pub count: u32,
}

/// What an update saw in the slot.
pub enum Found<T> {
    /// The key's entry was there; the closure ran and its result is here.
    Entry { slot: u32, result: T },
    /// No slot holds the key.
    Missing,
    /// Other workers kept writing the slot; nothing was changed.
    Busy,
}

impl<S: SharedStore> Slots<'_, S> {
    pub fn slot_key(&self, slot: u32) -> String {
        format!("{}.slot.{slot}", self.prefix)
    }

    /// Runs `change` on the entry of `key` and writes it back (with CAS, retried on conflicts).
    /// `change` returns its result and whether the entry must be written. One read per probed slot
    /// and one write on a hit.
    pub fn update<T>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Entry) -> (T, bool),
    ) -> Found<T> {
        for probe in 0..PROBES {
            match self.update_slot(slot(key, self.count, probe), key, &mut change) {
                Found::Missing => continue,
                found => return found,
            }
        }
        Found::Missing
    }

    /// Runs `change` on the entry in slot `n` if it holds `key` (the report flush knows its slots).
    pub fn update_slot<T>(
        &self,
        n: u32,
        key: &str,
        mut change: impl FnMut(&mut Entry) -> (T, bool),
    ) -> Found<T> {
        let name = self.slot_key(n);
        for _ in 0..CAS_ATTEMPTS {
            let Some((bytes, cas)) = self.store.get(&name) else {
                return Found::Missing;
            };
            if stored_key(&bytes) != Some(key) {
                return Found::Missing;
            }
            let Some(mut entry) = take_decoded(n, &bytes).or_else(|| Entry::decode(&bytes)) else {
                if is_newer(&bytes) {
                    warn_newer(&bytes);
                    return Found::Busy;
                }
                return Found::Missing;
            };
            let (result, write) = change(&mut entry);
            if !write {
                remember(n, bytes, entry);
                return Found::Entry { slot: n, result };
            }
            let encoded = entry.encode();
            match self.store.set(&name, &encoded, Some(cas)) {
                Ok(()) => {
                    remember(n, encoded, entry);
                    return Found::Entry { slot: n, result };
                }
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Other) => return Found::Busy,
            }
        }
        Found::Busy
    }

    /// The key of the entry in slot `n`, if any.
    pub fn key_in(&self, n: u32) -> Option<String> {
        let (bytes, _) = self.store.get(&self.slot_key(n))?;
        stored_key(&bytes).map(str::to_string)
    }

    /// Stores a new entry for its key: in the slot that already holds the key, else an empty one,
    /// else the one whose entry is oldest and has nothing left to report. None when every probed
    /// slot holds usage still to report (the caller then does without the cache: nothing is lost).
    /// `merge` combines the new entry with one found for the same key (a concurrent refresh).
    pub fn place(&self, entry: &Entry, mut merge: impl FnMut(&mut Entry)) -> Option<u32> {
        for _ in 0..CAS_ATTEMPTS {
            let (n, current) = self.choose(&entry.key)?;
            let name = self.slot_key(n);
            let (bytes, cas) = match current {
                Some((bytes, cas)) => (Some(bytes), Some(cas)),
                None => (None, None),
            };
            let same_key = bytes.as_deref().and_then(stored_key) == Some(entry.key.as_str());
            let value = match bytes.as_deref().and_then(Entry::decode) {
                Some(mut existing) if same_key => {
                    merge(&mut existing);
                    existing.encode()
                }
                _ => entry.encode(),
            };
            // A slot never written is created whatever the CAS; 1 makes a concurrent creator retry.
            match self.store.set(&name, &value, Some(cas.unwrap_or(1))) {
                Ok(()) => {
                    if bytes.is_none() {
                        self.count_slot_taken();
                    }
                    return Some(n);
                }
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Other) => return None,
            }
        }
        None
    }

    /// How many slots ever held an entry (slots are reused, never emptied): the cache's fill.
    pub fn used(&self) -> u64 {
        self.store
            .get(&self.used_key())
            .and_then(|(bytes, _)| Some(u64::from_le_bytes(bytes.try_into().ok()?)))
            .unwrap_or(0)
    }

    /// A slot never written was taken: one shared-data update per slot, ever.
    fn count_slot_taken(&self) {
        let _ = crate::store::update(self.store, &self.used_key(), |current| {
            let n = current
                .and_then(|b| Some(u64::from_le_bytes(b.try_into().ok()?)))
                .unwrap_or(0);
            ((), Some(n.saturating_add(1).to_le_bytes().to_vec()))
        });
    }

    fn used_key(&self) -> String {
        format!("{}.slots_used", self.prefix)
    }

    /// The slot to store `key` in, with what it holds now.
    fn choose(&self, key: &str) -> Option<(u32, Stored)> {
        let mut candidates = Vec::with_capacity(PROBES as usize);
        for probe in 0..PROBES {
            let n = slot(key, self.count, probe);
            let current = self.store.get(&self.slot_key(n));
            if current.as_ref().is_some_and(|(bytes, _)| is_newer(bytes)) {
                continue;
            }
            match current
                .as_ref()
                .map(|(bytes, _)| (stored_key(bytes), Entry::decode(bytes)))
            {
                None | Some((_, None)) => return Some((n, current)),
                Some((Some(k), _)) if k == key => return Some((n, current)),
                Some((_, Some(other))) if other.pending_units() + other.inflight_units() == 0 => {
                    candidates.push((other.refreshed_at_ms, n, current));
                }
                Some(_) => {}
            }
        }
        candidates.sort_by_key(|(refreshed, _, _)| *refreshed);
        candidates
            .into_iter()
            .next()
            .map(|(_, n, current)| (n, current))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use crate::cache::{Answer, cache_key};
    use crate::credentials::Credentials;
    use crate::store::memory::MemoryStore;

    fn entry(key: &str) -> Entry {
        Entry::new(key.to_string(), Answer::Authorized, None, 1_000).unwrap()
    }

    #[test]
    fn the_slots_ever_taken_are_counted_once_each() {
        let store = MemoryStore::default();
        let slots = Slots {
            store: &store,
            prefix: "p",
            count: 1024,
        };
        assert_eq!(slots.used(), 0);
        for key in ["a", "b", "a"] {
            let entry = Entry::new(key.into(), Answer::Authorized, None, 0).unwrap();
            slots.place(&entry, |_| {}).unwrap();
        }
        assert_eq!(slots.used(), 2, "a's entry placed again is not a new slot");
    }

    #[test]
    fn a_slot_written_by_another_worker_is_decoded_again() {
        let store = MemoryStore::default();
        let slots = Slots {
            store: &store,
            prefix: "t",
            count: 64,
        };
        let key = cache_key("s", &Credentials::UserKey("k".into()), None);
        let n = slots.place(&entry(&key), |_| {}).unwrap();
        let Found::Entry { .. } = slots.update(&key, |e| {
            ((), {
                e.plan = Some("Mine".into());
                true
            })
        }) else {
            panic!()
        };
        // Another worker rewrites the slot behind this VM's back.
        let mut theirs = entry(&key);
        theirs.plan = Some("Theirs".into());
        store
            .set(&slots.slot_key(n), &theirs.encode(), None)
            .unwrap();
        let Found::Entry { result, .. } = slots.update(&key, |e| (e.plan.clone(), false)) else {
            panic!()
        };
        assert_eq!(result.as_deref(), Some("Theirs"));
        // And this VM's own writes are read back without decoding, identical.
        let Found::Entry { result, .. } = slots.update(&key, |e| (e.plan.clone(), false)) else {
            panic!()
        };
        assert_eq!(result.as_deref(), Some("Theirs"));
    }

    #[test]
    fn an_entry_of_a_newer_build_is_never_overwritten_nor_reused() {
        let store = MemoryStore::default();
        let slots = Slots {
            store: &store,
            prefix: "t",
            count: 16,
        };
        let key = cache_key("s", &Credentials::UserKey("k".into()), None);
        let n = slots.place(&entry(&key), |_| {}).unwrap();
        let mut newer = entry(&key).encode();
        newer[0] = VERSION + 1;
        store.set(&slots.slot_key(n), &newer, None).unwrap();
        assert!(matches!(slots.update(&key, |e| ((), e.dirty)), Found::Busy));
        // A refresh of the same application, or other applications probing the same slots.
        let others: Vec<String> = (0..40)
            .map(|i| cache_key("s", &Credentials::UserKey(format!("o{i}")), None))
            .collect();
        assert_ne!(slots.place(&entry(&key), |_| {}), Some(n));
        for other in &others {
            assert_ne!(slots.place(&entry(other), |_| {}), Some(n));
        }
        assert_eq!(store.get(&slots.slot_key(n)).unwrap().0, newer);
    }

    #[test]
    fn keys_that_share_probes_keep_their_own_entries() {
        let store = MemoryStore::default();
        let slots = Slots {
            store: &store,
            prefix: "t",
            count: 16,
        };
        let keys: Vec<String> = (0..12)
            .map(|i| cache_key("s", &Credentials::UserKey(format!("k{i}")), None))
            .collect();
        for key in &keys {
            let mut e = entry(key);
            e.plan = Some(key.clone());
            slots.place(&e, |_| {});
        }
        for key in &keys {
            if let Found::Entry { result, .. } = slots.update(key, |e| (e.plan.clone(), false)) {
                assert_eq!(
                    result.as_deref(),
                    Some(key.as_str()),
                    "a slot answers only for its own key"
                );
            }
        }
    }
}
