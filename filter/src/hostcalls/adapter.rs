//! [`Host`] and [`SharedStore`] over an [`Abi`]: each hostcall failure becomes the filter's fallback.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use super::Abi;
use crate::host::{CalloutResponse, DispatchError, Host};
use crate::stats::{Histogram, Stat};
use crate::store::{SharedStore, StoreError};

/// What a VM registered with the host once (in `on_configure`): metric ids, in [`Stat::all`] and
/// [`Histogram::ALL`] order, and the dirty-slot queue.
#[derive(Clone, Debug, Default)]
pub struct MetricIds {
    counters: Vec<u32>,
    histograms: Vec<u32>,
    queue: Option<u32>,
    /// Per service label, the ids of its counters in [`Stat::all`] order, each defined the first
    /// time it counts (a configuration of 1,000 services does not define 30,000 metrics up front).
    per_service: RefCell<BTreeMap<Rc<str>, Vec<u32>>>,
}

thread_local! {
    /// Counter increments not handed to Envoy yet, per metric id: a request adds to its counters
    /// here, in the VM's memory, and the root context's tick hands the sums over
    /// ([`Adapter::flush_counters`]). One hostcall per counter and tick instead of one per counter
    /// and request; Envoy's stats lag by one tick at most (50 ms by default).
    static UNFLUSHED: RefCell<BTreeMap<u32, i64>> = const { RefCell::new(BTreeMap::new()) };
}

fn buffer(id: u32, n: i64) {
    UNFLUSHED.with(|unflushed| {
        let mut unflushed = unflushed.borrow_mut();
        let total = unflushed.entry(id).or_insert(0);
        *total = total.saturating_add(n);
    });
}

/// A per-service counter not defined yet, and one the host refused to define.
const UNDEFINED: u32 = u32::MAX;
const REFUSED: u32 = u32::MAX - 1;

impl MetricIds {
    /// These ids with the dirty-slot queue `queue` registered (or found: every VM sharing the
    /// `vm_id` gets the same id), for a configuration whose key prefix is known only now.
    pub fn with_queue(&self, abi: &impl Abi, queue: &str) -> Self {
        MetricIds {
            queue: abi
                .register_shared_queue(queue)
                .map_err(|status| {
                    log::error!("tollgate: cannot register the shared queue {queue}: {status:?}");
                })
                .ok(),
            ..self.clone()
        }
    }

    /// Defines every metric; the dirty-slot queue comes with [`MetricIds::with_queue`] once the
    /// configuration is known. What the host refuses stays undefined, and is logged.
    pub fn register(abi: &impl Abi) -> Self {
        let counters = Stat::all()
            .into_iter()
            .filter_map(|stat| {
                logged(
                    "define metric",
                    abi.define_metric(MetricType::Counter, &stat.name()),
                )
            })
            .collect();
        let histograms = Histogram::ALL
            .into_iter()
            .filter_map(|h| {
                logged(
                    "define metric",
                    abi.define_metric(MetricType::Histogram, h.name()),
                )
            })
            .collect();
        MetricIds {
            counters,
            histograms,
            queue: None,
            per_service: RefCell::default(),
        }
    }
}

/// The host for one callback: the ABI plus this VM's registered ids.
pub struct Adapter<'a, A> {
    abi: A,
    ids: &'a MetricIds,
    /// The service of the request this callback serves, once known.
    service: RefCell<Option<Rc<str>>>,
}

impl<'a, A: Abi> Adapter<'a, A> {
    pub fn new(abi: A, ids: &'a MetricIds) -> Self {
        Adapter {
            abi,
            ids,
            service: RefCell::new(None),
        }
    }

    pub fn abi(&self) -> &A {
        &self.abi
    }

    /// A header of the callout's answer; None when absent or unreadable.
    fn callout_header(&self, name: &str) -> Option<Vec<u8>> {
        self.abi
            .header(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn callout_number(&self, name: &str) -> Option<i64> {
        std::str::from_utf8(&self.callout_header(name)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl<A: Abi> Adapter<'_, A> {
    fn add_global(&self, stat: Stat, n: u64) {
        let Ok(n) = i64::try_from(n) else { return };
        if n == 0 {
            return;
        }
        if let Some(id) = self.ids.counters.get(stat.index()) {
            buffer(*id, n);
        }
    }

    /// Hands every counter increment made since the last call to Envoy.
    pub fn flush_counters(&self) {
        let unflushed = UNFLUSHED.with(|unflushed| std::mem::take(&mut *unflushed.borrow_mut()));
        for (id, n) in unflushed {
            let _ = self.abi.increment_metric(id, n);
        }
    }

    /// The id of `stat` for service `label`, defined on its first use.
    fn service_counter(&self, label: &str, stat: Stat) -> Option<u32> {
        let mut services = self.ids.per_service.borrow_mut();
        if !services.contains_key(label) {
            services.insert(Rc::from(label), vec![UNDEFINED; Stat::all().len()]);
        }
        let slot = services.get_mut(label)?.get_mut(stat.index())?;
        if *slot == UNDEFINED {
            *slot = logged(
                "define metric",
                self.abi
                    .define_metric(MetricType::Counter, &stat.service_name(label)),
            )
            .unwrap_or(REFUSED);
        }
        (*slot != REFUSED).then_some(*slot)
    }

    /// Sets a gauge, defining it on first use.
    pub fn set_gauge(&self, name: &str, value: u64) {
        if let Some(gauge) = logged(
            "define metric",
            self.abi.define_metric(MetricType::Gauge, name),
        ) {
            logged("record gauge", self.abi.record_metric(gauge, value));
        }
    }

    /// What the configuration asks for and Tollgate does not do: one warning per service (once per
    /// Envoy: every VM loads the same configuration, and shared data remembers what was said), and a
    /// gauge of how many.
    pub fn report_unsupported(&self, warnings: &[String], key_prefix: &str) {
        let key = format!("{key_prefix}.config.warned");
        let text = warnings.join("\n");
        let seen = self.abi.shared_data(&key).ok().and_then(|(value, _)| value);
        if seen.as_deref() != Some(text.as_bytes()) {
            logged(
                "set shared data",
                self.abi.set_shared_data(&key, text.as_bytes(), None),
            );
            for warning in warnings {
                log::warn!("tollgate: {warning}");
            }
        }
        let count = u64::try_from(warnings.len()).unwrap_or(u64::MAX);
        self.set_gauge(crate::portal::UNSUPPORTED_GAUGE, count);
    }
}

fn logged<T>(what: &str, result: Result<T, Status>) -> Option<T> {
    result
        .map_err(|status| log::warn!("tollgate: hostcall {what} failed: {status:?}"))
        .ok()
}

impl<A: Abi> Host for Adapter<'_, A> {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.abi
            .header(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn request_headers(&self) -> Option<Vec<u8>> {
        self.abi
            .headers(MapType::HttpRequestHeaders)
            .map_err(|status| log::debug!("tollgate: request headers unavailable ({status:?})"))
            .ok()
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        logged(
            "set request header",
            self.abi
                .set_header(MapType::HttpRequestHeaders, name, value),
        );
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.abi
            .buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
    }

    fn set_request_body(&self, body: &[u8]) {
        logged(
            "set request body",
            self.abi.set_buffer(BufferType::HttpRequestBody, body),
        );
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.abi
            .header(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn set_response_header(&self, name: &str, value: &[u8]) {
        logged(
            "set response header",
            self.abi
                .set_header(MapType::HttpResponseHeaders, name, Some(value)),
        );
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.abi.property(path).ok().flatten()
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        logged("set filter state", self.abi.set_property(&[name], value));
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, DispatchError> {
        self.abi
            .dispatch(cluster, headers, body, timeout)
            .map_err(|status| match status {
                Status::BadArgument => DispatchError::BadArgument,
                _ => DispatchError::Other,
            })
    }

    /// A callout that failed (reset, timeout, connection failure) is told with no headers; one that
    /// failed after its headers arrived may still announce them, and reading them then fails: both
    /// are "no answer" (status None), never a partial answer.
    fn callout_response(&self, headers: usize, body_size: usize) -> CalloutResponse {
        let status = (headers > 0)
            .then(|| self.callout_number(":status"))
            .flatten()
            .and_then(|s| u16::try_from(s).ok());
        if status.is_none() {
            return CalloutResponse::default();
        }
        let body = match self
            .abi
            .buffer(BufferType::HttpCallResponseBody, 0, body_size)
        {
            Ok(body) => body.unwrap_or_default(),
            Err(_) if body_size > 0 => return CalloutResponse::default(),
            Err(_) => Vec::new(),
        };
        CalloutResponse {
            status,
            rejection_reason: self.callout_header("3scale-rejection-reason"),
            limit_remaining: self.callout_number("3scale-limit-remaining"),
            limit_reset: self.callout_number("3scale-limit-reset"),
            limit_max_value: self.callout_number("3scale-limit-max-value"),
            body,
        }
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        logged(
            "send local reply",
            self.abi
                .send_local_response(u32::from(status), headers, body, -1),
        );
    }

    fn send_grpc_reply(&self, grpc_status: u32, message: &str, headers: &[(&str, &str)]) {
        let grpc_status = i32::try_from(grpc_status).unwrap_or(2);
        logged(
            "send gRPC reply",
            self.abi
                .send_local_response(200, headers, message.as_bytes(), grpc_status),
        );
    }

    fn resume_request(&self) {
        logged("resume request", self.abi.resume_request());
    }

    /// Envoy clears the route cache itself after a header change for ABI 0.2.1 modules; the
    /// foreign function keeps routing right if a future ABI stops doing so. NotFound (other hosts)
    /// is expected and ignored.
    fn clear_route_cache(&self) {
        match self.abi.call_foreign_function("clear_route_cache") {
            Ok(()) | Err(Status::NotFound) => {}
            Err(status) => log::debug!("tollgate: clear_route_cache failed: {status:?}"),
        }
    }

    fn now(&self) -> SystemTime {
        self.abi.current_time().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn add(&self, stat: Stat, n: u64) {
        let service = self.service.borrow().clone();
        match service {
            Some(label) => self.add_for(&label, stat, n),
            None => self.add_global(stat, n),
        }
    }

    fn gauge(&self, name: &str, value: u64) {
        self.set_gauge(name, value);
    }

    fn set_service(&self, label: &Rc<str>) {
        *self.service.borrow_mut() = Some(Rc::clone(label));
    }

    fn add_for(&self, label: &str, stat: Stat, n: u64) {
        self.add_global(stat, n);
        if n == 0 || !stat.per_service() {
            return;
        }
        if let Some(id) = self.service_counter(label, stat) {
            buffer(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn observe(&self, histogram: Histogram, value: u64) {
        if let Some(id) = self.ids.histograms.get(histogram.index()) {
            let _ = self.abi.record_metric(*id, value);
        }
    }
}

impl<A: Abi> SharedStore for Adapter<'_, A> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match self.abi.shared_data(key) {
            Ok((value, Some(cas))) => Some((value.unwrap_or_default(), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.abi
            .set_shared_data(key, value, cas)
            .map_err(|status| match status {
                Status::CasMismatch => StoreError::CasMismatch,
                _ => StoreError::Other,
            })
    }

    fn enqueue(&self, value: &[u8]) -> Result<(), StoreError> {
        let queue = self.ids.queue.ok_or(StoreError::Other)?;
        self.abi
            .enqueue_shared_queue(queue, value)
            .map_err(|_| StoreError::Other)
    }

    fn dequeue(&self) -> Option<Vec<u8>> {
        self.abi
            .dequeue_shared_queue(self.ids.queue?)
            .ok()
            .flatten()
    }
}
