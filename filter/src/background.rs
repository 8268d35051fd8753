//! What a VM's root context does between requests, on its tick: background refreshes of stale
//! cache entries, reports of `per_request` mode, and the batched report flush.
//!
//! Requests only queue work here (in this VM's memory, on the same thread); the root context
//! sends it, so a callout never depends on the request that asked for it still being alive.

use std::cell::RefCell;
use std::rc::Rc;

use crate::backend::call::{AuthCall, Endpoint, ReportTransaction, report_body};
use crate::cache::Answer;
use crate::cache::slots::Slots;
use crate::config::{Config, Role, Service};
use crate::credentials::Credentials;
use crate::held::Hold;
use crate::host::Host;
use crate::report::{BatchIds, Outcome, ReportCall, collect, outcome, settle};
use crate::stats::{BackendEndpoint, Histogram, Stat, StatusClass};
use crate::store::update;
use crate::usage::Usage;
use crate::verdict::{Verdict, classify};

/// A stale entry to refresh with `authorize` (no usage: every limit is checked).
pub struct RefreshJob {
    pub service: Rc<Service>,
    pub key: String,
    pub credentials: Credentials,
    pub referrer: Option<String>,
}

/// One request's report (`per_request` mode with response codes, or a request the cache could
/// not hold).
pub struct SingleReport {
    pub service: Rc<Service>,
    pub transaction: ReportTransaction,
    /// How many times it was sent without an answer.
    attempts: u32,
    /// The usage its request holds (`per_request` mode), given back once the report is answered.
    hold: Option<Hold>,
}

impl SingleReport {
    fn units(&self) -> u64 {
        self.transaction.usage.iter().map(|(_, d)| d).sum()
    }

    /// The report was answered, or given up: its request no longer holds its usage.
    fn release(&self, store: &impl crate::store::SharedStore) {
        if let Some(hold) = &self.hold {
            hold.release(store);
        }
    }
}

/// How many times a single report is sent when it surely was not applied (connection refused, no
/// healthy upstream, apisonator's own 500/503): resent after one report interval, then two, four...
/// so the last attempt comes about
/// 31 intervals after the first; then its usage is dropped and counted.
const SINGLE_REPORT_ATTEMPTS: u32 = 6;
/// The most queued slots one flush takes, so that a tick stays short (a few milliseconds, measured by
/// `cargo bench -p tollgate -- flush`) on Envoy's thread; a longer queue takes several ticks.
const SLOTS_PER_FLUSH: usize = 2_000;

/// Single reports waiting to be resent, at most: beyond, a report that gets no answer is dropped
/// and counted rather than held in memory.
const MAX_RESENDS: usize = 10_000;

/// Resends sent per tick at most, so that 3scale coming back is not met with every one at once.
const RESENDS_PER_TICK: usize = 100;

#[derive(Default)]
struct Outbox {
    refreshes: Vec<RefreshJob>,
    reports: Vec<SingleReport>,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

pub fn request_refresh(job: RefreshJob) {
    OUTBOX.with(|outbox| outbox.borrow_mut().refreshes.push(job));
}

pub fn send_report(
    service: Rc<Service>,
    application: Credentials,
    usage: &Usage,
    code: Option<u16>,
    hold: Option<Hold>,
) {
    let usage: Vec<(String, u64)> = usage
        .iter()
        .filter(|(_, d)| *d > 0)
        .map(|(m, d)| (m.to_string(), d))
        .collect();
    if usage.is_empty() {
        return;
    }
    let transaction = ReportTransaction {
        application,
        usage,
        log_code: code,
        timestamp: None,
    };
    OUTBOX.with(|outbox| {
        outbox.borrow_mut().reports.push(SingleReport {
            service,
            transaction,
            attempts: 0,
            hold,
        })
    });
}

/// A callout the root context is waiting for.
enum Call {
    Refresh { key: String },
    Batch(ReportCall),
    Single(SingleReport),
}

/// The root context's side of the cache and the reports.
pub struct Background {
    config: Rc<Config>,
    /// Callouts in flight: token, when sent (ms), what for (a handful at a time: a list beats a
    /// hash map in size).
    calls: Vec<(u32, u64, Call)>,
    ids: BatchIds,
    /// Single reports that got no answer, with when to send them again (ms).
    resends: Vec<(u64, SingleReport)>,
}

/// Envoy gauge: applications whose usage waits for the next report (since the last flush).
pub const QUEUED_GAUGE: &str = "tollgate.reports.queued_applications";
/// Envoy gauge: cache slots that hold an application's entry (out of `cache.slots`).
pub const SLOTS_GAUGE: &str = "tollgate.cache.slots_used";

impl Background {
    pub fn new(config: Rc<Config>, vm_nonce: u32) -> Background {
        Background {
            config,
            calls: Vec::new(),
            ids: BatchIds::new(vm_nonce),
            resends: Vec::new(),
        }
    }

    /// A new configuration (the admin portal published one): reports in flight keep their services.
    pub fn set_config(&mut self, config: Rc<Config>) {
        self.config = config;
    }

    /// How often the root context ticks: often enough for the size trigger and refreshes, and for
    /// leases to be returned within one lease period of their expiry.
    pub fn tick_period_ms(&self) -> u64 {
        self.config
            .cache
            .report_interval_ms
            .min(crate::lease::LEASE_MS)
    }

    pub fn tick(&mut self, host: &impl Host) {
        let now_ms = host.now_ms();
        if self.config.role == Role::Reporter {
            let key = self.key("reporter");
            let _ = host.set(&key, &now_ms.to_le_bytes(), None);
        }
        let outbox = OUTBOX.with(|outbox| std::mem::take(&mut *outbox.borrow_mut()));
        for job in outbox.refreshes {
            self.refresh(host, job);
        }
        for report in outbox.reports {
            self.send_single(host, report, now_ms);
        }
        let mut sending = 0;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.resends)
            .into_iter()
            .partition(|(at, _)| {
                let due = *at <= now_ms && sending < RESENDS_PER_TICK;
                sending += usize::from(due);
                due
            });
        self.resends = waiting;
        for (_, report) in due {
            self.send_single(host, report, now_ms);
        }
        if self.flush_due(host, now_ms) {
            self.flush(host, now_ms);
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.config.cache.key_prefix)
    }

    fn refresh(&mut self, host: &impl Host, job: RefreshJob) {
        let usage = Usage::new();
        let call = AuthCall {
            endpoint: Endpoint::Authorize,
            auth: &job.service.auth,
            service_id: &job.service.id,
            credentials: &job.credentials,
            usage: &usage,
            referrer: job.referrer.as_deref(),
            log_code: None,
        };
        let path = call.path(&self.config.backend.path_prefix);
        if let Some(token) = crate::callout::get(host, &self.config.backend, &path) {
            host.add_for(&job.service.stats_label, Stat::CacheRefreshes, 1);
            self.calls
                .push((token, host.now_ms(), Call::Refresh { key: job.key }));
        }
    }

    fn send_single(&mut self, host: &impl Host, mut report: SingleReport, now_ms: u64) {
        let body = report_body(
            &report.service.auth,
            &report.service.id,
            std::slice::from_ref(&report.transaction),
        );
        report.attempts += 1;
        match self.post(host, &body) {
            Some(token) => self.calls.push((token, now_ms, Call::Single(report))),
            None => self.resend(host, report, now_ms),
        }
    }

    /// A single report that never reached 3scale: sent again later, or dropped once its attempts
    /// are spent.
    fn resend(&mut self, host: &impl Host, report: SingleReport, now_ms: u64) {
        let units = report.units();
        if report.attempts >= SINGLE_REPORT_ATTEMPTS || self.resends.len() >= MAX_RESENDS {
            host.add_for(&report.service.stats_label, Stat::DroppedUnits, units);
            report.release(host);
            crate::throttle::warn_dropped(
                &report.service.id,
                now_ms,
                format_args!(
                    "report of {units} usage units dropped: no answer after {} attempt(s), {} reports waiting",
                    report.attempts,
                    self.resends.len()
                ),
            );
            return;
        }
        host.add_for(&report.service.stats_label, Stat::RetriedUnits, units);
        let wait = self.config.cache.report_interval_ms << report.attempts.saturating_sub(1);
        self.resends.push((now_ms.saturating_add(wait), report));
    }

    fn post(&self, host: &impl Host, body: &str) -> Option<u32> {
        let timeout = std::time::Duration::from_millis(self.config.cache.report_timeout_ms);
        crate::callout::post_report(host, &self.config.backend, timeout, body)
    }

    /// One worker flushes per interval (a shared timestamp claimed with CAS), or as soon as enough
    /// applications wait; workers leave it to the singleton reporter while it is alive.
    fn flush_due(&self, host: &impl Host, now_ms: u64) -> bool {
        let interval = self.config.cache.report_interval_ms;
        if self.config.role == Role::Filter {
            let reporter_alive = host
                .get(&self.key("reporter"))
                .and_then(|(bytes, _)| Some(u64::from_le_bytes(bytes.try_into().ok()?)))
                .is_some_and(|beat| now_ms.saturating_sub(beat) < 3 * self.tick_period_ms() + 1000);
            if reporter_alive {
                return false;
            }
        }
        let waiting = host
            .get(&self.key("queued"))
            .and_then(|(bytes, _)| Some(u64::from_le_bytes(bytes.try_into().ok()?)))
            .unwrap_or(0);
        host.gauge(QUEUED_GAUGE, waiting);
        let slots = Slots {
            store: host,
            prefix: &self.config.cache.key_prefix,
            count: self.config.cache.slots,
        };
        host.gauge(SLOTS_GAUGE, slots.used());
        let by_size = waiting >= self.config.cache.report_batch_size as u64;
        let claimed = update(host, &self.key("flushed"), |last| {
            let last = last
                .and_then(|b| Some(u64::from_le_bytes(b.try_into().ok()?)))
                .unwrap_or(0);
            let due = by_size || now_ms.saturating_sub(last) >= interval;
            (due, due.then(|| now_ms.to_le_bytes().to_vec()))
        });
        claimed == Some(true)
    }

    fn flush(&mut self, host: &impl Host, now_ms: u64) {
        let _ = host.set(&self.key("queued"), &0u64.to_le_bytes(), None);
        let slots = Slots {
            store: host,
            prefix: &self.config.cache.key_prefix,
            count: self.config.cache.slots,
        };
        let collected = collect(&slots, &self.config, &mut self.ids, now_ms, SLOTS_PER_FLUSH);
        host.add(Stat::UncertainUnits, collected.abandoned_units);
        if collected.more {
            // What is left is flushed at the next tick, as if the batch size were reached.
            let more = self.config.cache.report_batch_size as u64;
            let _ = host.set(&self.key("queued"), &more.to_le_bytes(), None);
        }
        for call in collected.calls {
            match self.post(host, &call.body) {
                Some(token) => {
                    self.calls.push((token, now_ms, Call::Batch(call)));
                }
                None => {
                    let settled = settle(&slots, &call, Outcome::Retry);
                    host.add_for(
                        &call.service.stats_label,
                        Stat::RetriedUnits,
                        settled.retried,
                    );
                }
            }
        }
    }

    /// An answer to one of the root context's callouts.
    pub fn on_response(&mut self, host: &impl Host, token: u32, headers: usize, body_size: usize) {
        let Some(index) = self.calls.iter().position(|(t, _, _)| *t == token) else {
            return;
        };
        let (_, sent_at_ms, call) = self.calls.swap_remove(index);
        let response = host.callout_response(headers, body_size);
        let latency = host.now_ms().saturating_sub(sent_at_ms);
        host.observe(Histogram::BackendLatencyMs, latency);
        let class = StatusClass::of(response.status);
        match &call {
            Call::Refresh { key } => match self.service_of(key) {
                Some(service) => host.add_for(
                    &service.stats_label,
                    Stat::Answered(BackendEndpoint::Authorize, class),
                    1,
                ),
                None => host.count(Stat::Answered(BackendEndpoint::Authorize, class)),
            },
            Call::Batch(call) => host.add_for(
                &call.service.stats_label,
                Stat::Answered(BackendEndpoint::Report, class),
                1,
            ),
            Call::Single(report) => host.add_for(
                &report.service.stats_label,
                Stat::Answered(BackendEndpoint::Report, class),
                1,
            ),
        }
        match call {
            Call::Refresh { key } => self.refreshed(host, &key, &response, sent_at_ms),
            Call::Batch(call) => {
                let result = outcome(response.status, &response.body);
                let slots = Slots {
                    store: host,
                    prefix: &self.config.cache.key_prefix,
                    count: self.config.cache.slots,
                };
                let settled = settle(&slots, &call, result);
                let label = &call.service.stats_label;
                host.add_for(label, Stat::ReportedUnits, settled.accepted);
                host.add_for(label, Stat::RetriedUnits, settled.retried);
                host.add_for(label, Stat::UncertainUnits, settled.uncertain);
                host.add_for(label, Stat::DroppedUnits, settled.dropped);
                if result != Outcome::Accepted {
                    log::warn!(
                        "tollgate: service {}: report of {} usage units answered {:?}: {result:?}",
                        call.service.id,
                        call.units(),
                        response.status
                    );
                }
            }
            Call::Single(report) => {
                let stat = match outcome(response.status, &response.body) {
                    Outcome::Retry => return self.resend(host, report, host.now_ms()),
                    Outcome::Accepted => Stat::ReportedUnits,
                    Outcome::Dropped => Stat::DroppedUnits,
                    Outcome::Uncertain => Stat::UncertainUnits,
                };
                host.add_for(&report.service.stats_label, stat, report.units());
                report.release(host);
            }
        }
    }

    /// The service of a cache key.
    fn service_of(&self, key: &str) -> Option<&Rc<Service>> {
        let (id, _) = crate::cache::parse_key(key)?;
        self.config.services.iter().find(|s| s.id == id)
    }

    fn refreshed(
        &self,
        host: &impl Host,
        key: &str,
        response: &crate::host::CalloutResponse,
        sent_at_ms: u64,
    ) {
        let now_ms = host.now_ms();
        let backend_response = response.backend_response(now_ms / 1000);
        let verdict = classify(&backend_response, &Usage::new());
        let service = self.service_of(key);
        let Some((answer, status)) = Answer::from_verdict(&verdict) else {
            host.count(Stat::BackendErrors);
            if let (Some(service), Verdict::Unavailable { detail }) = (service, &verdict) {
                let failure = crate::outage::Failure {
                    service: &service.id,
                    cluster: &self.config.backend.cluster,
                    endpoint: "authorize (a cache refresh)",
                    cause: detail,
                    elapsed_ms: now_ms.saturating_sub(sent_at_ms),
                    timeout_ms: self.config.backend.timeout_ms(),
                    policy: service.failure.policy.name(),
                };
                crate::outage::failed(host, &self.config.cache.key_prefix, &failure, None, now_ms);
            }
            return;
        };
        if let Some(service) = service {
            crate::outage::answered(host, &self.config.cache.key_prefix, &service.id, now_ms);
        }
        let slots = Slots {
            store: host,
            prefix: &self.config.cache.key_prefix,
            count: self.config.cache.slots,
        };
        let _ = slots.update(key, |entry| {
            entry.refresh(answer.clone(), status, now_ms);
            ((), true)
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::cell::{Cell, RefCell};
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::host::{CalloutResponse, DispatchError};
    use crate::store::memory::MemoryStore;
    use crate::store::{SharedStore, StoreError};
    use crate::usage::usage_of;

    const CONFIG: &str = r#"{
      "backend": {"cluster": "backend"},
      "cache": {"report_interval_ms": 1000},
      "services": [
        {"id": "svc", "service_token": "t", "credentials": {"kind": "user_key"},
         "mode": "per_request",
         "mapping_rules": [{"method": "ANY", "pattern": "/", "metric": "hits"}]}
      ]
    }"#;

    /// The root context's host: a clock, the report callouts it dispatches and their answer.
    #[derive(Default)]
    struct RootHost {
        store: MemoryStore,
        now_ms: Cell<u64>,
        refuse_dispatch: Cell<bool>,
        posted: RefCell<Vec<String>>,
        answer: RefCell<CalloutResponse>,
        stats: RefCell<Vec<(Stat, u64)>>,
        latencies: RefCell<Vec<u64>>,
    }

    impl RootHost {
        fn total(&self, stat: Stat) -> u64 {
            self.stats
                .borrow()
                .iter()
                .filter(|(s, _)| *s == stat)
                .map(|(_, n)| n)
                .sum()
        }

        fn answer(&self, status: u16, body: &str) {
            *self.answer.borrow_mut() = CalloutResponse {
                status: Some(status),
                body: body.as_bytes().to_vec(),
                ..CalloutResponse::default()
            };
        }

        fn later(&self, ms: u64) {
            self.now_ms.set(self.now_ms.get() + ms);
        }
    }

    impl SharedStore for RootHost {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.store.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.store.set(key, value, cas)
        }
        fn enqueue(&self, value: &[u8]) -> Result<(), StoreError> {
            self.store.enqueue(value)
        }
        fn dequeue(&self) -> Option<Vec<u8>> {
            self.store.dequeue()
        }
    }

    impl Host for RootHost {
        fn request_header(&self, _name: &str) -> Option<Vec<u8>> {
            None
        }
        fn request_headers(&self) -> Option<Vec<u8>> {
            None
        }
        fn set_request_header(&self, _name: &str, _value: Option<&[u8]>) {}
        fn request_body(&self, _size: usize) -> Option<Vec<u8>> {
            None
        }
        fn set_request_body(&self, _body: &[u8]) {}
        fn response_header(&self, _name: &str) -> Option<Vec<u8>> {
            None
        }
        fn set_response_header(&self, _name: &str, _value: &[u8]) {}
        fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
            None
        }
        fn set_filter_state(&self, _name: &str, _value: &[u8]) {}
        fn dispatch(
            &self,
            _cluster: &str,
            _headers: &[(&str, &str)],
            body: Option<&[u8]>,
            _timeout: Duration,
        ) -> Result<u32, DispatchError> {
            if self.refuse_dispatch.get() {
                return Err(DispatchError::Other);
            }
            let body = String::from_utf8_lossy(body.unwrap_or_default()).into_owned();
            self.posted.borrow_mut().push(body);
            Ok(self.posted.borrow().len() as u32)
        }
        fn callout_response(&self, _headers: usize, _body_size: usize) -> CalloutResponse {
            self.answer.borrow().clone()
        }
        fn send_reply(&self, _status: u16, _headers: &[(&str, &str)], _body: &[u8]) {}
        fn send_grpc_reply(&self, _status: u32, _message: &str, _headers: &[(&str, &str)]) {}
        fn resume_request(&self) {}
        fn clear_route_cache(&self) {}
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_000 + self.now_ms.get())
        }
        fn add(&self, stat: Stat, n: u64) {
            self.stats.borrow_mut().push((stat, n));
        }
        fn observe(&self, _histogram: Histogram, value: u64) {
            self.latencies.borrow_mut().push(value);
        }
    }

    const REFUSED: &str = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";

    fn background() -> Background {
        let config = Config::load(CONFIG.as_bytes(), &|_| None).unwrap();
        Background::new(Rc::new(config), 1)
    }

    /// Queues one request's report of 3 hits with code 200.
    fn report(background: &Background) {
        let service = Rc::clone(&background.config.services[0]);
        let usage = usage_of(&[("hits", 3)]);
        send_report(
            service,
            Credentials::UserKey("uk".into()),
            &usage,
            Some(200),
            None,
        );
    }

    fn tokens(host: &RootHost) -> u32 {
        host.posted.borrow().len() as u32
    }

    #[test]
    fn a_single_report_without_an_answer_is_sent_again_until_accepted() {
        let host = RootHost::default();
        let mut background = background();
        report(&background);
        background.tick(&host);
        assert_eq!(tokens(&host), 1);
        host.answer(503, REFUSED);
        background.on_response(&host, 1, 1, 0);
        assert_eq!(host.total(Stat::RetriedUnits), 3);
        assert_eq!(host.total(Stat::UncertainUnits), 0);

        host.later(999);
        background.tick(&host);
        assert_eq!(tokens(&host), 1, "not before one report interval");
        host.later(1);
        background.tick(&host);
        assert_eq!(tokens(&host), 2);
        let posted = host.posted.borrow().clone();
        assert_eq!(posted[1], posted[0], "the same report");

        host.later(40);
        host.answer(202, "");
        background.on_response(&host, 2, 1, 0);
        assert_eq!(*host.latencies.borrow(), vec![0, 40], "each call timed");
        assert_eq!(host.total(Stat::ReportedUnits), 3);
        assert_eq!(host.total(Stat::DroppedUnits), 0);
        host.later(60_000);
        background.tick(&host);
        assert_eq!(tokens(&host), 2, "nothing left to resend");
    }

    #[test]
    fn a_single_report_is_dropped_and_counted_when_its_attempts_are_spent() {
        let host = RootHost::default();
        let mut background = background();
        report(&background);
        host.answer(503, REFUSED);
        for attempt in 1..=SINGLE_REPORT_ATTEMPTS {
            background.tick(&host);
            assert_eq!(tokens(&host), attempt, "attempt {attempt}");
            background.on_response(&host, attempt, 1, 0);
            host.later(1000 << (attempt - 1));
        }
        assert_eq!(
            host.total(Stat::RetriedUnits),
            3 * u64::from(SINGLE_REPORT_ATTEMPTS - 1)
        );
        assert_eq!(host.total(Stat::DroppedUnits), 3);
        host.later(1_000_000);
        background.tick(&host);
        assert_eq!(tokens(&host), SINGLE_REPORT_ATTEMPTS);
    }

    #[test]
    fn a_timed_out_single_report_is_uncertain_and_not_resent() {
        let host = RootHost::default();
        let mut background = background();
        report(&background);
        background.tick(&host);
        host.answer(504, "upstream request timeout");
        background.on_response(&host, 1, 1, 0);
        assert_eq!(host.total(Stat::UncertainUnits), 3);
        host.later(60_000);
        background.tick(&host);
        assert_eq!(tokens(&host), 1);
    }

    #[test]
    fn single_reports_beyond_the_resend_bound_are_dropped_and_counted() {
        let host = RootHost::default();
        let mut background = background();
        for _ in 0..MAX_RESENDS + 2 {
            report(&background);
        }
        host.refuse_dispatch.set(true);
        background.tick(&host);
        assert_eq!(host.total(Stat::RetriedUnits), 3 * MAX_RESENDS as u64);
        assert_eq!(host.total(Stat::DroppedUnits), 3 * 2);
        host.refuse_dispatch.set(false);
        host.later(1000);
        background.tick(&host);
        assert_eq!(
            tokens(&host),
            RESENDS_PER_TICK as u32,
            "resent a few per tick"
        );
    }

    #[test]
    fn a_single_report_envoy_would_not_dispatch_is_counted_and_resent() {
        let host = RootHost::default();
        let mut background = background();
        report(&background);
        host.refuse_dispatch.set(true);
        background.tick(&host);
        assert_eq!(host.total(Stat::RetriedUnits), 3);
        host.refuse_dispatch.set(false);
        host.later(1000);
        background.tick(&host);
        assert_eq!(tokens(&host), 1);
        host.answer(202, "");
        background.on_response(&host, 1, 1, 0);
        assert_eq!(host.total(Stat::ReportedUnits), 3);
    }
}
