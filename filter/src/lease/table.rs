//! The leases a VM holds: one per application it served in the last lease period, in the VM's
//! own memory (a VM is one worker thread, so nothing here is shared or locked).

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::Lease;
use crate::cache::Admission;
use crate::usage::Usage;

thread_local! {
    static LEASES: RefCell<BTreeMap<String, Lease>> = const { RefCell::new(BTreeMap::new()) };
}

/// Decides a request from the lease on `key`, if there is one that can (see `Lease::admit`).
pub fn admit(
    key: &str,
    usage: &Usage,
    now_ms: u64,
    awaiting_code: bool,
    rate_limit: bool,
) -> Option<Admission> {
    LEASES.with(|leases| {
        leases
            .borrow_mut()
            .get_mut(key)?
            .admit(usage, now_ms, awaiting_code, rate_limit)
    })
}

/// A request admitted from the lease on `key` got response `code`. `false` when there is no such
/// lease (the caller reports the usage some other way).
pub fn finish(key: &str, usage: &Usage, code: u16) -> bool {
    LEASES.with(|leases| {
        leases
            .borrow_mut()
            .get_mut(key)
            .map(|lease| lease.finish(usage, code))
            .is_some()
    })
}

/// A request admitted from the lease on `key` was refused before reaching the upstream.
pub fn give_back(key: &str, usage: &Usage) {
    LEASES.with(|leases| {
        if let Some(lease) = leases.borrow_mut().get_mut(key) {
            lease.give_back(usage);
        }
    });
}

pub(super) fn take(key: &str) -> Option<Lease> {
    LEASES.with(|leases| leases.borrow_mut().remove(key))
}

pub(super) fn put(lease: Lease) {
    LEASES.with(|leases| {
        leases.borrow_mut().insert(lease.key.clone(), lease);
    });
}

/// Takes every lease expired at `now_ms` out of the table.
pub(super) fn take_expired(now_ms: u64) -> Vec<Lease> {
    LEASES.with(|leases| {
        let mut leases = leases.borrow_mut();
        let expired: Vec<String> = leases
            .values()
            .filter(|lease| lease.expires_ms <= now_ms)
            .map(|lease| lease.key.clone())
            .collect();
        expired
            .iter()
            .filter_map(|key| leases.remove(key))
            .collect()
    })
}
