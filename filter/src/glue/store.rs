//! [`SharedStore`] over Envoy's shared data and shared queues.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use super::host::ProxyHost;
use crate::store::{SharedStore, StoreError};

thread_local! {
    /// The dirty-slot queue of this VM's `vm_id`, registered in `on_configure`.
    static QUEUE: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Registers (or finds: the id is the same for every VM sharing the `vm_id`) the dirty-slot queue.
pub fn register_queue(name: &str) {
    match hostcalls::register_shared_queue(name) {
        Ok(id) => QUEUE.with(|q| q.set(Some(id))),
        Err(status) => log::error!("tollgate: cannot register the shared queue {name}: {status:?}"),
    }
}

impl SharedStore for ProxyHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((value, Some(cas))) => Some((value.unwrap_or_default(), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => StoreError::CasMismatch,
            _ => StoreError::Other,
        })
    }

    fn enqueue(&self, value: &[u8]) -> Result<(), StoreError> {
        let id = QUEUE.with(Cell::get).ok_or(StoreError::Other)?;
        hostcalls::enqueue_shared_queue(id, Some(value)).map_err(|_| StoreError::Other)
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        let id = QUEUE.with(Cell::get)?;
        hostcalls::dequeue_shared_queue(id).ok().flatten()
    }
}
