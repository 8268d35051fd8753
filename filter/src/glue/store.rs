//! [`SharedStore`] over Envoy's shared data and shared queues.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use super::host::ProxyHost;
use crate::store::{Queue, SharedStore, StoreError};

thread_local! {
    /// The shared queues of this VM's `vm_id` (dirty slots, response codes), registered in
    /// `on_configure`.
    static QUEUES: Cell<[Option<u32>; 2]> = const { Cell::new([None, None]) };
}

fn index(queue: Queue) -> usize {
    match queue {
        Queue::Dirty => 0,
        Queue::Codes => 1,
    }
}

/// Registers (or finds: the id is the same for every VM sharing the `vm_id`) Tollgate's queues.
pub fn register_queues(prefix: &str) {
    for (queue, name) in [(Queue::Dirty, "dirty"), (Queue::Codes, "codes")] {
        let name = format!("{prefix}.{name}");
        match hostcalls::register_shared_queue(&name) {
            Ok(id) => QUEUES.with(|queues| {
                let mut ids = queues.get();
                if let Some(slot) = ids.get_mut(index(queue)) {
                    *slot = Some(id);
                }
                queues.set(ids);
            }),
            Err(status) => {
                log::error!("tollgate: cannot register the shared queue {name}: {status:?}")
            }
        }
    }
}

fn queue_id(queue: Queue) -> Option<u32> {
    QUEUES.with(|queues| queues.get().get(index(queue)).copied().flatten())
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

    fn enqueue(&self, queue: Queue, value: &[u8]) -> Result<(), StoreError> {
        let id = queue_id(queue).ok_or(StoreError::Other)?;
        hostcalls::enqueue_shared_queue(id, Some(value)).map_err(|_| StoreError::Other)
    }

    fn dequeue(&self, queue: Queue) -> Option<Vec<u8>> {
        let id = queue_id(queue)?;
        hostcalls::dequeue_shared_queue(id).ok().flatten()
    }
}
