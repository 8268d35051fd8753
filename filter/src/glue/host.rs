//! [`Host`] over proxy-wasm hostcalls, for the request being processed.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use super::ffi;
use crate::host::{CalloutResponse, DispatchError, Host};
use crate::stats::{Histogram, Stat};

thread_local! {
    /// Envoy metric ids, in [`Stat::all`] order, defined once per VM in `on_configure`.
    static METRICS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Envoy histogram ids, in [`Histogram::ALL`] order.
    static HISTOGRAMS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

pub fn define_metrics() {
    let ids = Stat::all()
        .into_iter()
        .filter_map(|stat| hostcalls::define_metric(MetricType::Counter, &stat.name()).ok())
        .collect::<Vec<_>>();
    METRICS.with(|metrics| *metrics.borrow_mut() = ids);
    let ids = Histogram::ALL
        .into_iter()
        .filter_map(|histogram| {
            hostcalls::define_metric(MetricType::Histogram, histogram.name()).ok()
        })
        .collect::<Vec<_>>();
    HISTOGRAMS.with(|histograms| *histograms.borrow_mut() = ids);
}

/// What the configuration asks for and Tollgate does not do: one warning per service, and a gauge.
/// Every VM of the Envoy loads the same configuration; shared data keeps the warnings to one VM.
pub fn report_unsupported(warnings: &[String], key_prefix: &str) {
    let key = format!("{key_prefix}.config.warned");
    let text = warnings.join("\n");
    let seen = hostcalls::get_shared_data(&key)
        .ok()
        .and_then(|(value, _)| value);
    if seen.as_deref() != Some(text.as_bytes()) {
        logged(
            "set shared data",
            hostcalls::set_shared_data(&key, Some(text.as_bytes()), None),
        );
        for warning in warnings {
            log::warn!("tollgate: {warning}");
        }
    }
    let gauge = hostcalls::define_metric(MetricType::Gauge, crate::portal::UNSUPPORTED_GAUGE);
    if let Ok(gauge) = gauge {
        let count = u64::try_from(warnings.len()).unwrap_or(u64::MAX);
        logged("record gauge", hostcalls::record_metric(gauge, count));
    }
}

/// Sets a gauge, defining it on first use.
pub fn set_gauge(name: &str, value: u64) {
    if let Ok(gauge) = hostcalls::define_metric(MetricType::Gauge, name) {
        logged("record gauge", hostcalls::record_metric(gauge, value));
    }
}

pub struct ProxyHost;

fn logged<T>(what: &str, result: Result<T, Status>) -> Option<T> {
    result
        .map_err(|status| log::warn!("tollgate: hostcall {what} failed: {status:?}"))
        .ok()
}

impl Host for ProxyHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn request_headers(&self) -> Option<Vec<u8>> {
        ffi::header_map(MapType::HttpRequestHeaders)
            .map_err(|status| log::debug!("tollgate: request headers unavailable ({status:?})"))
            .ok()
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        logged(
            "set request header",
            ffi::set_header(MapType::HttpRequestHeaders, name, value),
        );
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
    }

    fn set_request_body(&self, body: &[u8]) {
        logged("set request body", ffi::set_request_body(body));
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn set_response_header(&self, name: &str, value: &[u8]) {
        logged(
            "set response header",
            ffi::set_header(MapType::HttpResponseHeaders, name, Some(value)),
        );
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        logged("set filter state", ffi::set_property(&[name], value));
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, Vec::new(), timeout).map_err(
            |status| match status {
                Status::BadArgument => DispatchError::BadArgument,
                _ => DispatchError::Other,
            },
        )
    }

    fn callout_response(&self, body_size: usize) -> CalloutResponse {
        let header = |name: &str| {
            hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
        };
        let number = |name: &str| -> Option<i64> {
            std::str::from_utf8(&header(name)?)
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let status = number(":status").and_then(|s| u16::try_from(s).ok());
        CalloutResponse {
            status,
            rejection_reason: header("3scale-rejection-reason"),
            limit_remaining: number("3scale-limit-remaining"),
            limit_reset: number("3scale-limit-reset"),
            limit_max_value: number("3scale-limit-max-value"),
            body: hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        logged(
            "send local reply",
            ffi::send_local_response(u32::from(status), headers, body, -1),
        );
    }

    fn send_grpc_reply(&self, grpc_status: u32, message: &str, headers: &[(&str, &str)]) {
        let grpc_status = i32::try_from(grpc_status).unwrap_or(2);
        logged(
            "send gRPC reply",
            ffi::send_local_response(200, headers, message.as_bytes(), grpc_status),
        );
    }

    fn resume_request(&self) {
        logged("resume request", ffi::resume_request());
    }

    /// Envoy clears the route cache itself after a header change for ABI 0.2.1 modules; the
    /// foreign function keeps routing right if a future ABI stops doing so. NotFound (other hosts)
    /// is expected and ignored.
    fn clear_route_cache(&self) {
        match hostcalls::call_foreign_function("clear_route_cache", None) {
            Ok(_) | Err(Status::NotFound) => {}
            Err(status) => log::debug!("tollgate: clear_route_cache failed: {status:?}"),
        }
    }

    fn now(&self) -> SystemTime {
        hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn add(&self, stat: Stat, n: u64) {
        let Ok(n) = i64::try_from(n) else { return };
        if n == 0 {
            return;
        }
        METRICS.with(|metrics| {
            if let Some(id) = metrics.borrow().get(stat.index()) {
                let _ = hostcalls::increment_metric(*id, n);
            }
        });
    }

    fn observe(&self, histogram: Histogram, value: u64) {
        HISTOGRAMS.with(|histograms| {
            if let Some(id) = histograms.borrow().get(histogram.index()) {
                let _ = hostcalls::record_metric(*id, value);
            }
        });
    }
}
