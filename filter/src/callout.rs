//! Callouts to the 3scale Service Management API through Envoy's cluster: the GET of an
//! authorization and the POST of a report, with the headers every call carries.

use std::cell::Cell;
use std::time::Duration;

use crate::backend::call::options;
use crate::config::Backend;
use crate::host::{DispatchError, Host};
use crate::stats::Stat;

const USER_AGENT: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

thread_local! {
    /// A dispatch refused by Envoy (unknown cluster) is logged loudly once per VM, not per request.
    static DISPATCH_FAILURE_LOGGED: Cell<bool> = const { Cell::new(false) };
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
