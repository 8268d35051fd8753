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
use crate::host::Host;
use crate::report::{BatchIds, Outcome, ReportCall, collect, outcome, settle};
use crate::stats::Stat;
use crate::store::update;
use crate::usage::Usage;
use crate::verdict::classify;

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
}

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
        })
    });
}

/// A callout the root context is waiting for.
enum Call {
    Refresh { key: String },
    Batch(ReportCall),
    Single { units: u64 },
}

/// The root context's side of the cache and the reports.
pub struct Background {
    config: Rc<Config>,
    /// Callouts in flight, by token (a handful at a time: a list beats a hash map in size).
    calls: Vec<(u32, Call)>,
    ids: BatchIds,
}

impl Background {
    pub fn new(config: Rc<Config>, vm_nonce: u32) -> Background {
        Background {
            config,
            calls: Vec::new(),
            ids: BatchIds::new(vm_nonce),
        }
    }

    /// How often the root context ticks: often enough for the size trigger and refreshes.
    pub fn tick_period_ms(&self) -> u64 {
        self.config.cache.report_interval_ms.min(200)
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
            let units = report.transaction.usage.iter().map(|(_, d)| d).sum();
            let body = report_body(
                &report.service.auth,
                &report.service.id,
                std::slice::from_ref(&report.transaction),
            );
            if let Some(token) = self.post(host, &body) {
                self.calls.push((token, Call::Single { units }));
            }
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
            host.count(Stat::CacheRefreshes);
            self.calls.push((token, Call::Refresh { key: job.key }));
        }
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
        let collected = collect(&slots, &self.config, &mut self.ids, now_ms, 100_000);
        host.add(Stat::UncertainUnits, collected.abandoned_units);
        for call in collected.calls {
            match self.post(host, &call.body) {
                Some(token) => {
                    self.calls.push((token, Call::Batch(call)));
                }
                None => {
                    let settled = settle(&slots, &call, Outcome::Retry);
                    host.add(Stat::RetriedUnits, settled.retried);
                }
            }
        }
    }

    /// An answer to one of the root context's callouts.
    pub fn on_response(&mut self, host: &impl Host, token: u32, body_size: usize) {
        let Some(index) = self.calls.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, call) = self.calls.swap_remove(index);
        let response = host.callout_response(body_size);
        match call {
            Call::Refresh { key } => self.refreshed(host, &key, &response),
            Call::Batch(call) => {
                let result = outcome(response.status, &response.body);
                let slots = Slots {
                    store: host,
                    prefix: &self.config.cache.key_prefix,
                    count: self.config.cache.slots,
                };
                let settled = settle(&slots, &call, result);
                host.add(Stat::ReportedUnits, settled.accepted);
                host.add(Stat::RetriedUnits, settled.retried);
                host.add(Stat::UncertainUnits, settled.uncertain);
                host.add(Stat::DroppedUnits, settled.dropped);
                if result != Outcome::Accepted {
                    log::warn!(
                        "tollgate: service {}: report of {} usage units answered {:?}: {result:?}",
                        call.service.id,
                        call.units(),
                        response.status
                    );
                }
            }
            Call::Single { units } => match outcome(response.status, &response.body) {
                Outcome::Accepted => host.add(Stat::ReportedUnits, units),
                Outcome::Dropped => host.add(Stat::DroppedUnits, units),
                Outcome::Retry | Outcome::Uncertain => host.add(Stat::UncertainUnits, units),
            },
        }
    }

    fn refreshed(&self, host: &impl Host, key: &str, response: &crate::host::CalloutResponse) {
        let now_ms = host.now_ms();
        let backend_response = response.backend_response(now_ms / 1000);
        let verdict = classify(&backend_response, &Usage::new());
        let Some((answer, status)) = Answer::from_verdict(&verdict) else {
            host.count(Stat::BackendErrors);
            return;
        };
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
