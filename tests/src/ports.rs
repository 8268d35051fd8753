//! Loopback ports for processes that must be told their port up front (the simulator).
//!
//! Envoy and the echo upstreams do not need this: Envoy binds port 0 and reports the real port on its admin API,
//! and an [`Upstream`](crate::Upstream) keeps the listener it bound.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::sync::Mutex;

/// The lowest port handed out (below it live well-known services).
const LOWEST: u16 = 10_000;

/// A port that was free a moment ago on 127.0.0.1, never the same twice in one test process.
///
/// Ports come from below the kernel's ephemeral range, so the port cannot be taken, between this call and the
/// process binding it, by a `bind(0)` or an outgoing connection (Envoy's, the client's) that the kernel numbers.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let below = ephemeral_low().unwrap_or(32_768);
    for _ in 0..200 {
        let port = if below > LOWEST + 1_000 {
            LOWEST + (random() % u64::from(below - LOWEST)) as u16
        } else {
            kernel_port()
        };
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no unused loopback port after 200 tries");
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`).
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// A port the kernel picks (fallback when no range below the ephemeral one is usable).
fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

/// A random number from std's per-instance randomly keyed hasher (no `rand` dependency for this one use).
fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        let below = ephemeral_low().unwrap();
        assert!(
            ports.iter().all(|&p| (LOWEST..below).contains(&p)),
            "{ports:?}"
        );
        TcpListener::bind(("127.0.0.1", ports[0])).unwrap();
    }

    #[test]
    fn random_numbers_vary() {
        let numbers: HashSet<u64> = (0..10).map(|_| random()).collect();
        assert!(numbers.len() > 1);
    }
}
