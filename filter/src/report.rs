//! Batched reports: pending usage of cached applications sent as `POST /transactions.xml`.
//!
//! An entry that gets pending usage is queued once (its slot number on a shared queue). A flush
//! drains the queue, moves each entry's pending usage into a batch in flight, and groups the
//! transactions into calls: applications 3scale confirmed share calls (one per service, within
//! apisonator's parameter limit); any other application gets a call of its own, because
//! apisonator voids a whole call when one transaction is invalid. The answer then settles each
//! entry's batch: accepted, back to pending (no answer came), or dropped as uncertain.

use std::rc::Rc;

use crate::backend::call::{REPORT_PARAM_BUDGET, ReportTransaction, report_body};
use crate::cache::slots::{Found, Slots};
use crate::cache::{Transaction, parse_key};
use crate::config::{Config, Service};
use crate::credentials::Credentials;
use crate::store::SharedStore;

/// How many transactions one application may add to a report: a response code is counted once
/// per transaction, so each request with a code is a transaction of its own, up to this many per
/// application and report; beyond it the last transaction carries the rest (usage stays exact,
/// the code count undercounts).
pub const MAX_TRANSACTIONS_PER_APPLICATION: u64 = 900;

/// One application's part of a call, with its transactions.
type Share = (Part, Vec<ReportTransaction>);

/// One application's share of a report call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub slot: u32,
    pub key: String,
    pub batch: u64,
    pub units: u64,
}

/// A `POST /transactions.xml` ready to send.
#[derive(Debug)]
pub struct ReportCall {
    pub service: Rc<Service>,
    pub parts: Vec<Part>,
    pub body: String,
}

impl ReportCall {
    pub fn units(&self) -> u64 {
        self.parts.iter().map(|part| part.units).sum()
    }
}

/// What the answer to a report means for its usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 202: apisonator has it.
    Accepted,
    /// It never reached apisonator (refused connection, no healthy upstream, apisonator's own
    /// 500 before enqueuing): send it again.
    Retry,
    /// It may or may not have been applied (timeout or reset after sending, a proxy's 502/504):
    /// resending could count it twice, so it is dropped and counted.
    Uncertain,
    /// apisonator refused the call itself (4xx): resending would fail the same way.
    Dropped,
}

/// Reads the answer to a report. Envoy answers for an upstream it could not reach with its own
/// 503 whose body names the reset reason; only a connection that never opened is safe to retry.
pub fn outcome(status: Option<u16>, body: &[u8]) -> Outcome {
    let body = String::from_utf8_lossy(body);
    match status {
        Some(202 | 200) => Outcome::Accepted,
        Some(503)
            if body.contains("connection failure") || body.contains("no healthy upstream") =>
        {
            Outcome::Retry
        }
        Some(503) if body.contains("upstream connect error") => Outcome::Uncertain,
        Some(500 | 503) => Outcome::Retry,
        Some(400..=499) => Outcome::Dropped,
        _ => Outcome::Uncertain,
    }
}

/// Queues slot `slot` for the next flush, and counts it for the flush's size trigger.
pub fn mark_dirty(store: &impl SharedStore, prefix: &str, slot: u32) {
    if store.enqueue(&slot.to_le_bytes()).is_err() {
        log::warn!(
            "tollgate: cannot queue a cache slot for reporting; it is picked up at its next request"
        );
        return;
    }
    let key = format!("{prefix}.queued");
    let _ = crate::store::update(store, &key, |current| {
        let n = current
            .and_then(|b| Some(u64::from_le_bytes(b.try_into().ok()?)))
            .unwrap_or(0);
        ((), Some(n.saturating_add(1).to_le_bytes().to_vec()))
    });
}

/// The next batch ids of this VM: unique across VMs sharing the cache (the high half is random
/// per VM), so entries can tell their batches apart.
#[derive(Debug)]
pub struct BatchIds {
    next: u64,
}

impl BatchIds {
    pub fn new(vm_nonce: u32) -> BatchIds {
        BatchIds {
            next: u64::from(vm_nonce) << 32,
        }
    }

    fn take(&mut self) -> u64 {
        self.next = self.next.wrapping_add(1);
        self.next
    }
}

/// What a flush found: calls to send, and usage it gave up on (batches abandoned by a VM that
/// died before their answer came).
#[derive(Debug, Default)]
pub struct Collected {
    pub calls: Vec<ReportCall>,
    pub abandoned_units: u64,
}

/// Drains up to `max_entries` queued slots into report calls.
pub fn collect(
    slots: &Slots<'_, impl SharedStore>,
    config: &Config,
    ids: &mut BatchIds,
    now_ms: u64,
    max_entries: usize,
) -> Collected {
    let abandoned_after = config.backend.timeout.as_millis().saturating_mul(2) as u64 + 1000;
    let mut collected = Collected::default();
    let mut shared: Vec<(Rc<Service>, Vec<Share>)> = Vec::new();
    for _ in 0..max_entries {
        let Some(slot) = slots
            .store
            .dequeue()
            .and_then(|bytes| Some(u32::from_le_bytes(bytes.try_into().ok()?)))
        else {
            break;
        };
        let Some(key) = slots.key_in(slot) else {
            continue;
        };
        let Some((service, application)) = service_of(config, &key) else {
            continue;
        };
        let batch = ids.take();
        let taken = slots.update_slot(slot, &key, |entry| {
            let mut abandoned = 0;
            for old in entry.abandoned_batches(now_ms, abandoned_after) {
                abandoned += entry.forget(old);
            }
            let transactions = entry.take_pending(batch, now_ms);
            let units: u64 = transactions
                .iter()
                .flat_map(|t| t.usage.iter())
                .map(|(_, d)| d)
                .sum();
            // Too many batches in flight: the rest waits for the next flush.
            let requeue = entry.has_pending();
            entry.dirty = requeue;
            (
                (transactions, units, abandoned, entry.confirmed(), requeue),
                true,
            )
        });
        let Found::Entry {
            result: (transactions, units, abandoned, confirmed, requeue),
            ..
        } = taken
        else {
            continue;
        };
        collected.abandoned_units += abandoned;
        if requeue {
            mark_dirty(slots.store, slots.prefix, slot);
        }
        if transactions.is_empty() {
            continue;
        }
        let part = Part {
            slot,
            key,
            batch,
            units,
        };
        let report = expand(&application, &transactions);
        if confirmed {
            match shared.iter_mut().find(|(s, _)| Rc::ptr_eq(s, &service)) {
                Some((_, parts)) => parts.push((part, report)),
                None => shared.push((service, vec![(part, report)])),
            }
        } else {
            collected.calls.push(call(&service, vec![(part, report)]));
        }
    }
    for (service, parts) in shared {
        collected.calls.extend(split(&service, parts));
    }
    collected
}

fn service_of(config: &Config, key: &str) -> Option<(Rc<Service>, Credentials)> {
    let (service_id, application) = parse_key(key)?;
    let service = config.services.iter().find(|s| s.id == service_id)?;
    Some((Rc::clone(service), application))
}

/// One application's transactions as 3scale needs them: one per request with a response code (so
/// the codes add up), the usage spread so that each carries some; without a code, one.
fn expand(application: &Credentials, transactions: &[Transaction]) -> Vec<ReportTransaction> {
    let mut out = Vec::new();
    for transaction in transactions {
        let total: u64 = transaction.usage.iter().map(|(_, d)| d).sum();
        let count = match transaction.code {
            Some(_) => transaction
                .requests
                .min(total)
                .clamp(1, MAX_TRANSACTIONS_PER_APPLICATION),
            None => 1,
        };
        for usage in spread(&transaction.usage, count) {
            out.push(ReportTransaction {
                application: application.clone(),
                usage,
                log_code: transaction.code,
                timestamp: None,
            });
        }
    }
    out
}

/// Splits usage into `count` parts that each carry at least one unit (`count` ≤ total units),
/// keeping every metric's total: the first `count - 1` parts take one unit each, the last the rest.
fn spread(usage: &[(String, u64)], count: u64) -> Vec<Vec<(String, u64)>> {
    let mut remaining: Vec<(String, u64)> = usage.to_vec();
    let mut parts = Vec::new();
    for _ in 1..count {
        // Prefer a metric with units to spare, so the last part keeps every metric it can.
        let index = remaining
            .iter()
            .position(|(_, left)| *left > 1)
            .or_else(|| remaining.iter().position(|(_, left)| *left > 0));
        let Some((metric, left)) = index.and_then(|i| remaining.get_mut(i)) else {
            break;
        };
        *left -= 1;
        parts.push(vec![(metric.clone(), 1)]);
    }
    remaining.retain(|(_, left)| *left > 0);
    parts.push(remaining);
    parts
}

/// Confirmed applications of one service, in as many calls as apisonator's parameter limit needs
/// (an application's transactions are never split across calls: they settle together).
fn split(service: &Rc<Service>, parts: Vec<Share>) -> Vec<ReportCall> {
    let mut calls = Vec::new();
    let mut current: Vec<Share> = Vec::new();
    let mut params = 0;
    for (part, transactions) in parts {
        let size: usize = transactions
            .iter()
            .map(ReportTransaction::param_count)
            .sum();
        if !current.is_empty() && params + size > REPORT_PARAM_BUDGET {
            calls.push(call(service, std::mem::take(&mut current)));
            params = 0;
        }
        params += size;
        current.push((part, transactions));
    }
    if !current.is_empty() {
        calls.push(call(service, current));
    }
    calls
}

fn call(service: &Rc<Service>, parts: Vec<Share>) -> ReportCall {
    let transactions: Vec<ReportTransaction> =
        parts.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
    ReportCall {
        service: Rc::clone(service),
        body: report_body(&service.auth, &service.id, &transactions),
        parts: parts.into_iter().map(|(part, _)| part).collect(),
    }
}

/// Usage units settled by an answer, by what happened to them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub accepted: u64,
    pub retried: u64,
    pub uncertain: u64,
    pub dropped: u64,
}

/// Applies a report's outcome to every application in it; retried usage is queued again.
pub fn settle(
    slots: &Slots<'_, impl SharedStore>,
    report: &ReportCall,
    outcome: Outcome,
) -> Settled {
    let mut settled = Settled::default();
    for part in &report.parts {
        let found = slots.update_slot(part.slot, &part.key, |entry| {
            let units = match outcome {
                Outcome::Accepted => entry.ack(part.batch),
                Outcome::Retry => entry.retry(part.batch),
                Outcome::Uncertain | Outcome::Dropped => entry.forget(part.batch),
            };
            let requeue = outcome == Outcome::Retry && !entry.dirty && entry.has_pending();
            if requeue {
                entry.dirty = true;
            }
            ((units, requeue), true)
        });
        // An entry replaced since (it had nothing left to report) has nothing to settle.
        let (units, requeue) = match found {
            Found::Entry { result, .. } => result,
            Found::Missing | Found::Busy => (0, false),
        };
        if requeue {
            mark_dirty(slots.store, slots.prefix, part.slot);
        }
        match outcome {
            Outcome::Accepted => settled.accepted += units,
            Outcome::Retry => settled.retried += units,
            Outcome::Uncertain => settled.uncertain += units,
            Outcome::Dropped => settled.dropped += units,
        }
    }
    settled
}
