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
use crate::backend::parse_error;
use crate::cache::slots::{Found, Slots};
use crate::cache::{Transaction, parse_key};
use crate::config::{Config, Service};
use crate::credentials::Credentials;
use crate::store::SharedStore;

/// How many transactions one application may add to a report, all its response codes together:
/// a code is counted once per transaction, so each request with a code is a transaction of its
/// own. Beyond this many, the codes share them and each code's last transaction
/// carries the rest of its usage (usage stays exact, that code's count undercounts). At about
/// three parameters a transaction, one application stays well within [`REPORT_PARAM_BUDGET`].
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
    // A 4xx that is not apisonator's (no `<error>`) came from a proxy in front of it, which did not
    // forward the report: it is sent again, like a refused connection.
    let apisonator_error = parse_error(body).is_some();
    let body = String::from_utf8_lossy(body);
    match status {
        // apisonator accepts a report with 202 and no body; anything else that looks like success
        // (a proxy's page, garbage) proves nothing about the usage.
        Some(202) => Outcome::Accepted,
        Some(200) if body.trim().is_empty() => Outcome::Accepted,
        Some(200..=299) => Outcome::Uncertain,
        Some(503)
            if body.contains("connection failure") || body.contains("no healthy upstream") =>
        {
            Outcome::Retry
        }
        // The server closed a kept-alive connection as the report arrived (puma does, routinely and at
        // every graceful restart): Envoy saw the connection end before any byte of an answer. apisonator
        // answers a report as soon as it queued it, so such a report was not taken: it is sent again.
        Some(503) if closed_unread(&body) => Outcome::Retry,
        Some(503) if body.contains("upstream connect error") => Outcome::Uncertain,
        Some(500 | 503) => Outcome::Retry,
        Some(400..=499) if apisonator_error => Outcome::Dropped,
        Some(400..=499) => Outcome::Retry,
        _ => Outcome::Uncertain,
    }
}

/// Whether Envoy's answer says the connection ended before any byte of an answer came back, the server
/// having closed it (`connection termination`): the request was never taken by apisonator, which
/// answers as soon as it has queued a report, and an authorization has no effect to repeat.
fn closed_unread(body: &str) -> bool {
    body.contains("before headers") && body.contains("reset reason: connection termination")
}

/// Whether a callout's answer proves the call never reached apisonator, so it can be sent again.
pub fn never_reached(status: Option<u16>, body: &[u8]) -> bool {
    status == Some(503) && closed_unread(&String::from_utf8_lossy(body))
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

/// Puts a slot that waits for its reports in flight back on the queue, without counting it towards
/// `report_batch_size`: it is not new usage, and counting it would make every tick flush again.
fn requeue(store: &impl SharedStore, slot: u32) {
    if store.enqueue(&slot.to_le_bytes()).is_err() {
        log::warn!(
            "tollgate: cannot queue a cache slot for reporting; it is picked up at its next request"
        );
    }
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
    /// The pass stopped at its bound with slots still queued: the next tick goes on.
    pub more: bool,
}

/// Drains up to `max_entries` queued slots into report calls. Each slot is taken at most once: one
/// that must wait (its maximum of reports is in flight) goes back on the queue after the pass, not
/// during it, so a pass never meets it again.
pub fn collect(
    slots: &Slots<'_, impl SharedStore>,
    config: &Config,
    ids: &mut BatchIds,
    now_ms: u64,
    max_entries: usize,
) -> Collected {
    let abandoned_after = config.cache.report_timeout_ms.saturating_mul(2) + 1000;
    let mut collected = Collected::default();
    let mut shared: Vec<(Rc<Service>, Vec<Share>)> = Vec::new();
    // Slots to take at a later flush: entries whose maximum of reports is in flight, entries
    // other workers kept writing, and entries of a newer build of the module (still to report, by
    // a build that reads them).
    let mut waiting = Vec::new();
    collected.more = true;
    for _ in 0..max_entries {
        let Some(slot) = slots
            .store
            .dequeue()
            .and_then(|bytes| Some(u32::from_le_bytes(bytes.try_into().ok()?)))
        else {
            collected.more = false;
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
            let changed = !transactions.is_empty() || abandoned > 0 || entry.dirty != requeue;
            entry.dirty = requeue;
            (
                (transactions, units, abandoned, entry.confirmed(), requeue),
                changed,
            )
        });
        let (transactions, units, abandoned, confirmed, requeue) = match taken {
            Found::Entry { result, .. } => result,
            Found::Busy => {
                waiting.push(slot);
                continue;
            }
            Found::Missing => continue,
        };
        collected.abandoned_units += abandoned;
        if requeue {
            waiting.push(slot);
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
    for slot in waiting {
        requeue(slots.store, slot);
    }
    collected
}

fn service_of(config: &Config, key: &str) -> Option<(Rc<Service>, Credentials)> {
    let (service_id, application) = parse_key(key)?;
    let service = config.services.iter().find(|s| s.id == service_id)?;
    Some((Rc::clone(service), application))
}

/// One application's transactions as 3scale needs them: one per request with a response code (so
/// the codes add up), the usage spread so that each carries some; without a code, one. At most
/// [`MAX_TRANSACTIONS_PER_APPLICATION`] in all.
fn expand(application: &Credentials, transactions: &[Transaction]) -> Vec<ReportTransaction> {
    let wanted: Vec<u64> = transactions
        .iter()
        .map(|transaction| match transaction.code {
            Some(_) => {
                let total: u64 = transaction.usage.iter().map(|(_, d)| d).sum();
                transaction.requests.min(total).max(1)
            }
            None => 1,
        })
        .collect();
    let counts = share(&wanted, MAX_TRANSACTIONS_PER_APPLICATION);
    let mut out = Vec::new();
    for (transaction, count) in transactions.iter().zip(counts) {
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

/// Shares `cap` transactions among codes that want `wanted` each: all they want when it fits;
/// otherwise every code gets at least one, and a code wanting less than an even share of what is
/// left keeps its exact count, the others splitting the rest evenly.
fn share(wanted: &[u64], cap: u64) -> Vec<u64> {
    let mut counts = wanted.to_vec();
    if wanted.iter().fold(0u64, |sum, w| sum.saturating_add(*w)) <= cap {
        return counts;
    }
    let mut order: Vec<(u64, usize)> = wanted.iter().copied().zip(0..).collect();
    order.sort_unstable();
    let mut left = cap;
    for (served, &(_, i)) in order.iter().enumerate() {
        let sharing = (order.len() - served) as u64;
        if let Some(count) = counts.get_mut(i) {
            *count = (*count).min(left / sharing).max(1);
            left = left.saturating_sub(*count);
        }
    }
    counts
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::cache::{Answer, Entry, cache_key};
    use crate::store::memory::MemoryStore;

    const CONFIG: &str = r#"{
      "backend": {"cluster": "backend"},
      "services": [
        {"id": "svc", "service_token": "t", "credentials": {"kind": "app_id"},
         "mapping_rules": [{"method": "ANY", "pattern": "/", "metric": "hits"}]},
        {"id": "other", "service_token": "t2", "credentials": {"kind": "user_key"},
         "mapping_rules": [{"method": "ANY", "pattern": "/", "metric": "hits"}]}
      ]
    }"#;
    const NOW_MS: u64 = 1_795_543_791_000;
    const AUTHORIZED: &str = "<status><authorized>true</authorized><plan>P</plan></status>";

    fn config() -> Config {
        Config::load(CONFIG.as_bytes(), &|_| None).unwrap()
    }

    fn slots(store: &MemoryStore) -> Slots<'_, MemoryStore> {
        Slots {
            store,
            prefix: "t",
            count: 1024,
        }
    }

    use crate::usage::usage_of as usage;

    fn app(id: &str) -> Credentials {
        Credentials::AppId {
            app_id: id.into(),
            app_key: Some("secret".into()),
        }
    }

    /// Places an entry for `credentials` of `service`, admits `requests` requests of `hits`
    /// with `code`, and queues it.
    fn seed(
        slots: &Slots<'_, MemoryStore>,
        service: &str,
        credentials: Credentials,
        answer: Answer,
        requests: u64,
        code: u16,
    ) -> String {
        let key = cache_key(service, &credentials, None);
        let status = crate::backend::parse_status(AUTHORIZED.as_bytes()).unwrap();
        let entry = Entry::new(key.clone(), answer, Some(&status), NOW_MS).unwrap();
        let slot = slots.place(&entry, |_| {}).unwrap();
        let request = usage(&[("hits", 2)]);
        let Found::Entry { .. } = slots.update(&key, |entry| {
            for _ in 0..requests {
                entry.admit_unchecked(&request, NOW_MS / 1000);
                entry.record_code(&request, code);
            }
            ((), true)
        }) else {
            panic!("entry not found")
        };
        mark_dirty(slots.store, slots.prefix, slot);
        key
    }

    fn pending_units(slots: &Slots<'_, MemoryStore>, key: &str) -> (u64, u64) {
        let Found::Entry { result, .. } = slots.update(key, |entry| {
            ((entry.pending_units(), entry.inflight_units()), false)
        }) else {
            panic!("entry not found")
        };
        result
    }

    #[test]
    fn answers_are_read_as_accepted_retry_uncertain_or_dropped() {
        assert_eq!(outcome(Some(202), b""), Outcome::Accepted);
        assert_eq!(
            outcome(Some(200), b"<html>not apisonator</html>"),
            Outcome::Uncertain
        );
        let refused = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: 111";
        assert_eq!(outcome(Some(503), refused), Outcome::Retry);
        assert_eq!(outcome(Some(503), b"no healthy upstream"), Outcome::Retry);
        let reset = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        assert_eq!(
            outcome(Some(503), reset),
            Outcome::Retry,
            "closed unread: resent"
        );
        let reset = b"upstream connect error or disconnect/reset before headers. reset reason: remote reset";
        assert_eq!(outcome(Some(503), reset), Outcome::Uncertain);
        assert_eq!(
            outcome(Some(504), b"upstream request timeout"),
            Outcome::Uncertain
        );
        assert_eq!(
            outcome(Some(500), b"Internal Server Error\n"),
            Outcome::Retry
        );
        assert_eq!(outcome(Some(502), b""), Outcome::Uncertain);
        assert_eq!(
            outcome(Some(403), b"<error code=\"service_token_invalid\"/>"),
            Outcome::Dropped
        );
        assert_eq!(outcome(None, b""), Outcome::Uncertain);
        assert_eq!(
            outcome(Some(404), b"<html>Not Found</html>"),
            Outcome::Retry
        );
        assert_eq!(outcome(Some(403), b""), Outcome::Retry);
    }

    #[test]
    fn a_pass_takes_each_slot_once_even_when_it_must_wait() {
        let store = MemoryStore::default();
        let slots = slots(&store);
        let config = config();
        let mut ids = BatchIds::new(1);
        let key = seed(&slots, "svc", app("a"), Answer::Authorized, 1, 200);
        // Every batch the entry can have in flight, each with usage, plus more pending.
        // Four: the most batches an entry can have in flight.
        for _ in 0..4 {
            let collected = collect(&slots, &config, &mut ids, NOW_MS, 100);
            assert_eq!(collected.calls.len(), 1);
            let Found::Entry { slot, .. } = slots.update(&key, |entry| {
                entry.admit_unchecked(&usage(&[("hits", 2)]), NOW_MS / 1000);
                entry.record_code(&usage(&[("hits", 2)]), 200);
                entry.dirty = true;
                ((), true)
            }) else {
                panic!("entry not found")
            };
            mark_dirty(&store, "t", slot);
        }
        let queued = || store.get("t.queued").map(|(value, _)| value);
        let queued_before = queued();
        let dequeues = store.dequeues();
        let collected = collect(&slots, &config, &mut ids, NOW_MS, 100_000);
        assert!(collected.calls.is_empty(), "every batch is in flight");
        assert_eq!(
            store.dequeues() - dequeues,
            2,
            "the slot, then the empty queue"
        );
        assert_eq!(pending_units(&slots, &key).0, 2, "still pending");
        assert_eq!(queued(), queued_before, "a wait is not new usage");
        // Still queued for the next pass.
        let again = store.dequeues();
        collect(&slots, &config, &mut ids, NOW_MS, 100_000);
        assert_eq!(store.dequeues() - again, 2);
    }

    #[test]
    fn usage_spreads_over_transactions_keeping_every_total() {
        let usage = vec![("hits".to_string(), 2), ("get".to_string(), 5)];
        for count in 1..=7 {
            let parts = spread(&usage, count);
            assert_eq!(parts.len() as u64, count, "{count}");
            assert!(parts.iter().all(|part| part.iter().any(|(_, d)| *d > 0)));
            for metric in ["hits", "get"] {
                let total: u64 = parts
                    .iter()
                    .flatten()
                    .filter(|(m, _)| m == metric)
                    .map(|(_, d)| d)
                    .sum();
                assert_eq!(total, if metric == "hits" { 2 } else { 5 });
            }
        }
    }

    #[test]
    fn one_transaction_per_request_with_a_code_and_one_without() {
        let transactions = vec![
            Transaction {
                code: None,
                requests: 4,
                usage: vec![("hits".into(), 4)],
            },
            Transaction {
                code: Some(200),
                requests: 3,
                usage: vec![("hits".into(), 6)],
            },
            Transaction {
                code: Some(500),
                requests: 5,
                usage: vec![("hits".into(), 2)],
            },
            Transaction {
                code: Some(404),
                requests: 5000,
                usage: vec![("hits".into(), 5000)],
            },
        ];
        let expanded = expand(&app("a"), &transactions);
        let count =
            |code: Option<u16>| expanded.iter().filter(|t| t.log_code == code).count() as u64;
        assert_eq!(count(None), 1);
        assert_eq!(count(Some(200)), 3);
        assert_eq!(count(Some(500)), 2, "never more transactions than units");
        assert_eq!(
            count(Some(404)),
            MAX_TRANSACTIONS_PER_APPLICATION - 1 - 3 - 2,
            "the codes share the application's transactions"
        );
        assert_eq!(expanded.len() as u64, MAX_TRANSACTIONS_PER_APPLICATION);
        let units: u64 = expanded
            .iter()
            .flat_map(|t| t.usage.iter())
            .map(|(_, d)| d)
            .sum();
        assert_eq!(units, 4 + 6 + 2 + 5000);
    }

    #[test]
    fn codes_share_the_transactions_evenly_small_ones_exact() {
        assert_eq!(share(&[1, 3, 2], 900), vec![1, 3, 2]);
        assert_eq!(
            share(&[2000; 8], 900),
            vec![112, 112, 112, 112, 113, 113, 113, 113]
        );
        assert_eq!(share(&[1, 10, 2000, 5000], 100), vec![1, 10, 44, 45]);
        assert_eq!(share(&[5, 5, 5], 2), vec![1, 1, 1], "at least one each");
        assert_eq!(share(&[u64::MAX, 1], 900), vec![899, 1]);
    }

    /// Units per (code, metric) in a report body.
    type Totals = Vec<((Option<u16>, String), u64)>;

    /// A report body read back: its units per code and metric, and its transactions per code.
    fn read_body(body: &str) -> (Totals, Vec<(Option<u16>, u64)>) {
        let mut codes: Vec<Option<u16>> = Vec::new();
        let mut usage: Vec<(usize, String, u64)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body.as_bytes()) {
            let Some(rest) = name.strip_prefix("transactions[") else {
                continue;
            };
            let (index, field) = rest.split_once(']').unwrap();
            let index: usize = index.parse().unwrap();
            if codes.len() <= index {
                codes.resize(index + 1, None);
            }
            if field == "[log][code]" {
                codes[index] = Some(value.parse().unwrap());
            } else if let Some(metric) = field.strip_prefix("[usage][") {
                let metric = metric.trim_end_matches(']').to_string();
                usage.push((index, metric, value.parse().unwrap()));
            }
        }
        let mut totals: Totals = Vec::new();
        for (index, metric, units) in usage {
            let key = (codes[index], metric);
            match totals.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += units,
                None => totals.push((key, units)),
            }
        }
        let mut counts: Vec<(Option<u16>, u64)> = Vec::new();
        for code in codes {
            match counts.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => counts.push((code, 1)),
            }
        }
        (totals, counts)
    }

    #[test]
    fn a_busy_application_with_every_code_stays_within_one_call() {
        let store = MemoryStore::default();
        let config = config();
        let slots = slots(&store);
        let key = seed(&slots, "svc", app("busy"), Answer::Authorized, 0, 200);
        let codes: Vec<u16> = (0..crate::cache::MAX_CODES as u16)
            .map(|i| 200 + i)
            .collect();
        let request = usage(&[("hits", 1), ("get", 3)]);
        let Found::Entry { .. } = slots.update(&key, |entry| {
            for &code in &codes {
                for _ in 0..2000 {
                    entry.admit_unchecked(&request, NOW_MS / 1000);
                    entry.record_code(&request, code);
                }
            }
            for _ in 0..500 {
                entry.admit_unchecked(&request, NOW_MS / 1000);
            }
            ((), true)
        }) else {
            panic!("entry not found")
        };
        let collected = collect(&slots, &config, &mut BatchIds::new(3), NOW_MS, 100);
        assert_eq!(collected.calls.len(), 1);
        let body = &collected.calls[0].body;
        let params = form_urlencoded::parse(body.as_bytes()).count();
        assert!(params <= REPORT_PARAM_BUDGET, "{params} parameters");

        let (totals, counts) = read_body(body);
        let total = |code: Option<u16>, metric: &str| {
            totals
                .iter()
                .find(|((c, m), _)| *c == code && m == metric)
                .map_or(0, |(_, units)| *units)
        };
        for &code in &codes {
            assert_eq!(total(Some(code), "hits"), 2000, "{code}");
            assert_eq!(total(Some(code), "get"), 6000, "{code}");
        }
        assert_eq!(total(None, "hits"), 500);
        assert_eq!(total(None, "get"), 1500);
        assert_eq!(collected.calls[0].units(), 8 * 2000 * 4 + 500 * 4);
        assert_eq!(counts.len(), codes.len() + 1);
        assert!(counts.iter().all(|(_, n)| *n >= 1));
        let transactions: u64 = counts.iter().map(|(_, n)| n).sum();
        assert!(transactions <= MAX_TRANSACTIONS_PER_APPLICATION);
    }

    #[test]
    fn an_entry_of_a_newer_build_stays_queued_for_a_build_that_reads_it() {
        let store = MemoryStore::default();
        let config = config();
        let slots = slots(&store);
        let key = seed(&slots, "svc", app("a"), Answer::Authorized, 2, 200);
        let Found::Entry { slot, .. } = slots.update(&key, |_| ((), false)) else {
            panic!("entry not found")
        };
        let (ours, _) = store.get(&slots.slot_key(slot)).unwrap();
        let mut newer = ours.clone();
        newer[0] = crate::cache::VERSION + 1;
        store.set(&slots.slot_key(slot), &newer, None).unwrap();
        let mut ids = BatchIds::new(7);
        for _ in 0..3 {
            let collected = collect(&slots, &config, &mut ids, NOW_MS, 100);
            assert!(collected.calls.is_empty());
        }
        // The build that reads it (played here by restoring this build's bytes) reports it.
        store.set(&slots.slot_key(slot), &ours, None).unwrap();
        let collected = collect(&slots, &config, &mut ids, NOW_MS, 100);
        assert_eq!(collected.calls.len(), 1);
        assert_eq!(collected.calls[0].units(), 4);
    }

    #[test]
    fn confirmed_applications_share_calls_and_others_go_alone() {
        let store = MemoryStore::default();
        let config = config();
        let slots = slots(&store);
        let a = seed(&slots, "svc", app("a"), Answer::Authorized, 2, 200);
        let b = seed(&slots, "svc", app("b"), Answer::LimitsOnly, 1, 404);
        let c = seed(&slots, "svc", app("c"), Answer::Unknown, 1, 200);
        let d = seed(
            &slots,
            "other",
            Credentials::UserKey("uk".into()),
            Answer::Authorized,
            1,
            200,
        );
        let mut ids = BatchIds::new(7);
        let collected = collect(&slots, &config, &mut ids, NOW_MS, 100);
        assert_eq!(
            collected.calls.len(),
            3,
            "svc confirmed, svc unconfirmed, other"
        );
        let svc: Vec<&ReportCall> = collected
            .calls
            .iter()
            .filter(|c| c.service.id == "svc")
            .collect();
        let shared = svc.iter().find(|c| c.parts.len() == 2).unwrap();
        assert!(
            shared.body.starts_with("service_token=t&service_id=svc&"),
            "{}",
            shared.body
        );
        assert!(shared.body.contains("app_id%5D=a"), "{}", shared.body);
        assert!(
            !shared.body.contains("secret"),
            "app keys are never reported"
        );
        assert_eq!(shared.body.matches("log%5D%5Bcode%5D=200").count(), 2);
        assert_eq!(shared.body.matches("log%5D%5Bcode%5D=404").count(), 1);
        assert_eq!(shared.units(), 6);
        let alone = svc.iter().find(|c| c.parts.len() == 1).unwrap();
        assert_eq!(alone.parts[0].key, c);
        assert!(
            collected
                .calls
                .iter()
                .any(|call| call.service.id == "other" && call.body.contains("user_key%5D=uk"))
        );
        for key in [&a, &b, &c, &d] {
            let (pending, inflight) = pending_units(&slots, key);
            assert_eq!(pending, 0);
            assert!(inflight > 0);
        }
        assert!(store.dequeue().is_none(), "the queue was drained");
    }

    #[test]
    fn outcomes_settle_every_application_of_a_call() {
        let store = MemoryStore::default();
        let config = config();
        let slots = slots(&store);
        let a = seed(&slots, "svc", app("a"), Answer::Authorized, 3, 200);
        let mut ids = BatchIds::new(1);
        let call = collect(&slots, &config, &mut ids, NOW_MS, 100)
            .calls
            .remove(0);

        // No answer: back to pending and queued again, then accepted.
        let settled = settle(&slots, &call, Outcome::Retry);
        assert_eq!(settled.retried, 6);
        assert_eq!(pending_units(&slots, &a), (6, 0));
        let again = collect(&slots, &config, &mut ids, NOW_MS, 100)
            .calls
            .remove(0);
        assert_eq!(settle(&slots, &again, Outcome::Accepted).accepted, 6);
        assert_eq!(pending_units(&slots, &a), (0, 0));

        // Uncertain: dropped and counted.
        let b = seed(&slots, "svc", app("b"), Answer::Authorized, 1, 200);
        let call = collect(&slots, &config, &mut ids, NOW_MS, 100)
            .calls
            .remove(0);
        assert_eq!(settle(&slots, &call, Outcome::Uncertain).uncertain, 2);
        assert_eq!(pending_units(&slots, &b), (0, 0));
    }

    #[test]
    fn batches_abandoned_by_a_dead_vm_are_counted_as_uncertain() {
        let store = MemoryStore::default();
        let config = config();
        let slots = slots(&store);
        let a = seed(&slots, "svc", app("a"), Answer::Authorized, 1, 200);
        let mut dead_vm = BatchIds::new(9);
        let _lost = collect(&slots, &config, &mut dead_vm, NOW_MS, 100);
        seed(&slots, "svc", app("a"), Answer::Authorized, 1, 200);
        let later = NOW_MS + 60_000;
        let collected = collect(&slots, &config, &mut BatchIds::new(10), later, 100);
        assert_eq!(collected.abandoned_units, 2);
        assert_eq!(pending_units(&slots, &a), (0, 2));
    }
}
