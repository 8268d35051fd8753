//! The seam between the filter's logic and Envoy: every hostcall a request needs, behind one trait.
//!
//! The wasm glue implements it with proxy-wasm hostcalls that never panic; tests implement it with a
//! recording fake. Client-controlled values are always bytes: a non-UTF-8 header must not kill the VM.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::stats::{Histogram, Stat};
use crate::store::SharedStore;

/// Why a callout could not even be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchError {
    /// Envoy refused it: most often the cluster does not exist.
    BadArgument,
    Other,
}

/// The answer to a callout, read from the host when it arrives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalloutResponse {
    /// None when no response came at all (reset, connection failure).
    pub status: Option<u16>,
    pub rejection_reason: Option<Vec<u8>>,
    pub limit_remaining: Option<i64>,
    pub limit_reset: Option<i64>,
    pub limit_max_value: Option<i64>,
    pub body: Vec<u8>,
}

/// Shared data (the cache, the report queue) is reached through the same host.
impl CalloutResponse {
    /// What the verdict needs from the answer.
    pub fn backend_response(&self, now: u64) -> crate::verdict::BackendResponse<'_> {
        crate::verdict::BackendResponse {
            status: self.status,
            rejection_reason: self.rejection_reason.as_deref(),
            limit_remaining: self.limit_remaining,
            limit_reset: self.limit_reset,
            limit_max_value: self.limit_max_value,
            body: &self.body,
            now,
        }
    }
}

pub trait Host: SharedStore {
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Every request header in proxy-wasm's map encoding ([`crate::pairs`]): one hostcall where
    /// reading headers one by one costs one each. None when the host could not give them.
    fn request_headers(&self) -> Option<Vec<u8>>;
    /// Sets (Some) or removes (None) a request header. Only before the request is resumed.
    fn set_request_header(&self, name: &str, value: Option<&[u8]>);
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    fn set_request_body(&self, body: &[u8]);
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    fn set_response_header(&self, name: &str, value: &[u8]);
    /// An Envoy attribute, e.g. `["xds", "route_name"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Exposes a value to access logs (`%FILTER_STATE(wasm.<name>:PLAIN)%`).
    fn set_filter_state(&self, name: &str, value: &[u8]);
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError>;
    /// The answer of the callout being told about: `headers` and `body_size` are the counts the host
    /// gave the callback (no headers: the callout failed).
    fn callout_response(&self, headers: usize, body_size: usize) -> CalloutResponse;
    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    fn send_grpc_reply(&self, grpc_status: u32, message: &str, headers: &[(&str, &str)]);
    fn resume_request(&self);
    /// Makes Envoy pick the route again after routing headers changed.
    fn clear_route_cache(&self);
    fn now(&self) -> SystemTime;
    /// Adds `n` to a counter.
    fn add(&self, stat: Stat, n: u64);
    /// Records one value of a histogram.
    fn observe(&self, histogram: Histogram, value: u64);

    fn count(&self, stat: Stat) {
        self.add(stat, 1);
    }

    /// The service whose request this callback serves: from now on, [`Host::add`] counts its
    /// stats for that service too.
    fn set_service(&self, _label: &Rc<str>) {}

    /// Sets gauge `name` (defined on first use).
    fn gauge(&self, _name: &str, _value: u64) {}

    /// Adds `n` to a counter, for the Envoy and for service `label`.
    fn add_for(&self, _label: &str, stat: Stat, n: u64) {
        self.add(stat, n);
    }

    fn now_ms(&self) -> u64 {
        self.now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// What Envoy should do with the request after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Hold the request (waiting for the body or 3scale, or a local reply was sent).
    Pause,
}
