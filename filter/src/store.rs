//! Envoy shared data and shared queues, behind a trait: what the cache and the report flush need.
//!
//! Shared data is one key-value map per `vm_id`, common to every worker (and to the singleton
//! service), guarded by a mutex in Envoy, with a CAS number per key. Keys are never deleted (a
//! removed key stays as a tombstone), which is why the cache uses a fixed set of slot keys.

/// Why a write did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read: read again and retry.
    CasMismatch,
    Other,
}

pub trait SharedStore {
    /// The value and its CAS number; None when the key was never written. An empty value is a
    /// removed key (Envoy keeps its CAS number).
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the key's CAS number is still `cas` (None: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
    /// Appends to the queue of slots with usage to report.
    fn enqueue(&self, value: &[u8]) -> Result<(), StoreError>;
    fn dequeue(&self) -> Option<Vec<u8>>;
}

const CREATE_CAS: u32 = 1;

/// How many times a read-modify-write is retried when other workers keep writing the same key.
pub const CAS_ATTEMPTS: usize = 8;

/// Reads `key`, lets `change` update the value, writes it back with CAS; retries on conflicts.
/// `change` returns what the caller wants out of the update, and whether anything must be written.
/// Gives up (None) after [`CAS_ATTEMPTS`] conflicts or on a store error.
pub fn update<T>(
    store: &impl SharedStore,
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> (T, Option<Vec<u8>>),
) -> Option<T> {
    for _ in 0..CAS_ATTEMPTS {
        let current = store.get(key);
        let value = current
            .as_ref()
            .map(|(value, _)| value.as_slice())
            .filter(|v| !v.is_empty());
        let (result, write) = change(value);
        let Some(value) = write else {
            return Some(result);
        };
        // Envoy creates a missing key whatever the CAS number, and ignores a CAS of 0. A CAS of 1 on a
        // missing key creates it, and makes a concurrent creator (whose key now has a higher number)
        // fail and read again: first writer wins.
        let cas = current.as_ref().map_or(CREATE_CAS, |(_, cas)| *cas);
        match store.set(key, &value, Some(cas)) {
            Ok(()) => return Some(result),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Other) => return None,
        }
    }
    None
}

#[cfg(test)]
pub mod memory {
    //! An in-memory [`SharedStore`] with Envoy's CAS semantics, for native tests.
    use super::{SharedStore, StoreError};
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    #[derive(Default)]
    pub struct MemoryStore {
        pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        pub queue: RefCell<VecDeque<Vec<u8>>>,
        dequeued: std::cell::Cell<usize>,
    }

    impl MemoryStore {
        /// How many times the queue was read (empty reads included).
        pub fn dequeues(&self) -> usize {
            self.dequeued.get()
        }
    }

    impl SharedStore for MemoryStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.data.borrow().get(key).cloned()
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            // Envoy's rules: a missing key is created whatever the CAS; CAS 0 or None is unconditional.
            let mut data = self.data.borrow_mut();
            let next = data.values().map(|(_, cas)| *cas).max().unwrap_or(1) + 1;
            if let (Some((_, current)), Some(expected)) = (data.get(key), cas) {
                if expected != 0 && expected != *current {
                    return Err(StoreError::CasMismatch);
                }
            }
            data.insert(key.to_string(), (value.to_vec(), next));
            Ok(())
        }

        fn enqueue(&self, value: &[u8]) -> Result<(), StoreError> {
            self.queue.borrow_mut().push_back(value.to_vec());
            Ok(())
        }

        fn dequeue(&self) -> Option<Vec<u8>> {
            self.dequeued.set(self.dequeued.get() + 1);
            self.queue.borrow_mut().pop_front()
        }
    }
}
