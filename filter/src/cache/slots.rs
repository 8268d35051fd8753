//! Where entries live in Envoy shared data: a fixed number of hashed slots, each a key of its own.
//!
//! Shared data has no eviction and never forgets a key, so the cache may only ever use
//! `slots` keys (`<prefix>.slot.<n>`): that is its memory bound. An application's key hashes to a
//! slot and may sit in any of the [`PROBES`] slots from there; each slot stores its entry's full
//! key, so a reader never mistakes another application's entry for its own.

use super::{Entry, PROBES, slot, stored_key};
use crate::store::{CAS_ATTEMPTS, SharedStore, StoreError};

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
            let Some(mut entry) = Entry::decode(&bytes) else {
                return Found::Missing;
            };
            let (result, write) = change(&mut entry);
            if !write {
                return Found::Entry { slot: n, result };
            }
            match self.store.set(&name, &entry.encode(), Some(cas)) {
                Ok(()) => return Found::Entry { slot: n, result },
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
                Ok(()) => return Some(n),
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Other) => return None,
            }
        }
        None
    }

    /// The slot to store `key` in, with what it holds now.
    fn choose(&self, key: &str) -> Option<(u32, Stored)> {
        let mut candidates = Vec::with_capacity(PROBES as usize);
        for probe in 0..PROBES {
            let n = slot(key, self.count, probe);
            let current = self.store.get(&self.slot_key(n));
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
