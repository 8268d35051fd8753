//! Callouts to the 3scale Service Management API through Envoy's cluster: the GET of an
//! authorization and the POST of a report, with the headers every call carries.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::backend::call::options;
use crate::config::Backend;
use crate::host::{DispatchError, Host};
use crate::stats::{Histogram, Stat};

const USER_AGENT: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

thread_local! {
    /// A dispatch refused by Envoy (unknown cluster) is logged loudly once per VM, not per request.
    static DISPATCH_FAILURE_LOGGED: Cell<bool> = const { Cell::new(false) };
    /// When each callout of this VM waiting for its answer was sent: (token, ms).
    static SENT: RefCell<Vec<(u32, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Callouts remembered at most: Envoy drops the answer of a callout whose request went away, so
/// its entry is only ever removed here.
const MAX_REMEMBERED: usize = 4096;

fn remember_sent(token: u32, now_ms: u64) {
    SENT.with(|sent| {
        let mut sent = sent.borrow_mut();
        if sent.len() >= MAX_REMEMBERED {
            sent.remove(0);
        }
        sent.push((token, now_ms));
    });
}

/// A callout's answer (or failure) came: its latency joins `tollgate.backend.latency_ms`.
pub fn answered(host: &impl Host, token: u32) {
    let sent_at = SENT.with(|sent| {
        let mut sent = sent.borrow_mut();
        let index = sent.iter().position(|(t, _)| *t == token)?;
        Some(sent.swap_remove(index).1)
    });
    if let Some(sent_at) = sent_at {
        let latency = host.now_ms().saturating_sub(sent_at);
        host.observe(Histogram::BackendLatencyMs, latency);
    }
}

/// `GET path` (an authrep or authorize URL) with `3scale-options`. The token, or None when Envoy
/// refused the callout (logged once, counted).
pub fn get(host: &impl Host, backend: &Backend, path: &str) -> Option<u32> {
    let headers = [
        (":method", "GET"),
        (":path", path),
        (":authority", backend.authority.as_str()),
        ("3scale-options", options(true)),
        ("user-agent", USER_AGENT),
    ];
    dispatched(
        host,
        backend,
        host.dispatch(&backend.cluster, &headers, None, backend.timeout),
    )
}

/// `POST /transactions.xml` with a urlencoded batch.
pub fn post_report(
    host: &impl Host,
    backend: &Backend,
    timeout: Duration,
    body: &str,
) -> Option<u32> {
    let path = format!("{}/transactions.xml", backend.path_prefix);
    let headers = [
        (":method", "POST"),
        (":path", path.as_str()),
        (":authority", backend.authority.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("user-agent", USER_AGENT),
    ];
    let token = dispatched(
        host,
        backend,
        host.dispatch(&backend.cluster, &headers, Some(body.as_bytes()), timeout),
    )?;
    host.count(Stat::ReportCalls);
    Some(token)
}

fn dispatched(
    host: &impl Host,
    backend: &Backend,
    result: Result<u32, DispatchError>,
) -> Option<u32> {
    match result {
        Ok(token) => {
            host.count(Stat::BackendCalls);
            remember_sent(token, host.now_ms());
            Some(token)
        }
        Err(error) => {
            host.count(Stat::BackendDispatchFailures);
            if !DISPATCH_FAILURE_LOGGED.with(|logged| logged.replace(true)) {
                log::error!(
                    "tollgate: Envoy refused the callout to cluster `{}` ({error:?}); is backend.cluster the name \
                     of a defined Envoy cluster? (logged once; counted in tollgate.backend.dispatch_failures)",
                    backend.cluster
                );
            }
            None
        }
    }
}
