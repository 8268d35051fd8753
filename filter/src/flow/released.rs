//! Deciding after the request headers were released: the form-body path.
//!
//! A proxy-wasm filter cannot see the body while it holds the headers (proxy-wasm-cpp-host turns a
//! paused header phase into "stop all iteration"), so to read credentials from a form Tollgate lets
//! the headers go and decides at the end of the body. From then on Envoy refuses every request-header
//! change, so the headers the decision needs are read beforehand, header changes are skipped, and the
//! plan's cluster travels as filter state (`wasm.tollgate.cluster`) for a route to match on.

use std::time::{Duration, SystemTime};

use crate::host::{CalloutResponse, DispatchError, Host};
use crate::stats::Stat;
use crate::store::{SharedStore, StoreError};

/// The request headers a decision may read, copied while they were still readable.
#[derive(Debug, Default)]
pub struct HeaderSnapshot {
    headers: Vec<(String, Vec<u8>)>,
}

impl HeaderSnapshot {
    pub fn take(host: &impl Host, names: &[&str]) -> HeaderSnapshot {
        let headers = names
            .iter()
            .filter_map(|name| {
                host.request_header(name)
                    .map(|value| (name.to_string(), value))
            })
            .collect();
        HeaderSnapshot { headers }
    }

    fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// The host as seen after the headers were released: headers come from the snapshot and header
/// changes are dropped (Envoy would refuse them).
pub struct Released<'a, H: Host> {
    pub host: &'a H,
    pub snapshot: &'a HeaderSnapshot,
}

impl<H: Host> Host for Released<'_, H> {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.snapshot.get(name)
    }

    fn set_request_header(&self, name: &str, _value: Option<&[u8]>) {
        log::debug!(
            "tollgate: `{name}` not changed: the headers of a form request were already released"
        );
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.host.request_body(size)
    }

    fn set_request_body(&self, body: &[u8]) {
        self.host.set_request_body(body);
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.host.response_header(name)
    }

    fn set_response_header(&self, name: &str, value: &[u8]) {
        self.host.set_response_header(name, value);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.host.property(path)
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        self.host.set_filter_state(name, value);
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError> {
        self.host.dispatch(cluster, headers, body, timeout)
    }

    fn callout_response(&self, body_size: usize) -> CalloutResponse {
        self.host.callout_response(body_size)
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.host.send_reply(status, headers, body);
    }

    fn send_grpc_reply(&self, grpc_status: u32, message: &str, headers: &[(&str, &str)]) {
        self.host.send_grpc_reply(grpc_status, message, headers);
    }

    fn resume_request(&self) {
        self.host.resume_request();
    }

    fn clear_route_cache(&self) {
        self.host.clear_route_cache();
    }

    fn now(&self) -> SystemTime {
        self.host.now()
    }

    fn add(&self, stat: Stat, n: u64) {
        self.host.add(stat, n);
    }
}

impl<H: Host> SharedStore for Released<'_, H> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.host.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.host.set(key, value, cas)
    }

    fn enqueue(&self, value: &[u8]) -> Result<(), StoreError> {
        self.host.enqueue(value)
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        self.host.dequeue()
    }
}
