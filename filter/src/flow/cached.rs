//! `cache` mode: decide from the worker's lease on the shared cache entry (`crate::lease`), fill
//! the entry from 3scale on a miss, refresh it in the background when stale, and apply the failure
//! policy when 3scale cannot answer.

use std::rc::Rc;

use super::forward::{Allow, unix_now};
use super::refuse::Denial;
use super::{Admitted, Decided, Flow, Held, Purpose, Report, Stage};
use crate::background::{RefreshJob, request_refresh};
use crate::cache::slots::{Found, Slots};
use crate::cache::{Admission, Answer, Entry, cache_key, known};
use crate::category::Category;
use crate::config::{Policy, Service};
use crate::credentials::Credentials;
use crate::host::{Action, Host};
use crate::lease;
use crate::outage::Outcome;
use crate::report::mark_dirty;
use crate::stats::Stat;
use crate::usage::Usage;
use crate::verdict::Verdict;

/// Admits a request; with response codes tracked, its usage joins the report at the end of the
/// request (see [`record`]).
fn admit(entry: &mut Entry, usage: &Usage, now_s: u64, codes: bool) -> Admission {
    if codes {
        entry.admit_awaiting_code(usage, now_s)
    } else {
        entry.admit(usage, now_s)
    }
}

fn admit_unchecked(entry: &mut Entry, usage: &Usage, now_s: u64, codes: bool) {
    if codes {
        entry.admit_unchecked_awaiting_code(usage, now_s);
    } else {
        entry.admit_unchecked(usage, now_s);
    }
}

/// The end of an allowed request: its usage joins the entry's pending report with the response
/// code its client got (0 when no response came). An entry gone meanwhile (its slot was reused)
/// means a report of its own: usage is never dropped.
pub(super) fn record(
    host: &impl Host,
    config: &crate::config::Config,
    admitted: &Admitted,
    usage: &Usage,
    code: u16,
) {
    let found = update_admitted(host, config, admitted, |entry| {
        entry.record(usage, code, admitted.at_s);
        let newly_dirty = entry.mark_dirty();
        (newly_dirty, true)
    });
    match found {
        Found::Entry {
            slot,
            result: newly_dirty,
        } => {
            if newly_dirty {
                mark_dirty(host, &config.cache.key_prefix, slot);
            }
        }
        Found::Missing | Found::Busy => lease::report_alone(config, &admitted.key, usage, code),
    }
}

/// An admitted request was refused before reaching the upstream: its usage awaiting a code is
/// let go, never reported. An entry gone meanwhile took it along; one kept busy by other workers
/// keeps it awaiting.
pub(super) fn give_back(
    host: &impl Host,
    config: &crate::config::Config,
    admitted: &Admitted,
    usage: &Usage,
) {
    update_admitted(host, config, admitted, |entry| {
        entry.give_back(usage, admitted.at_s);
        ((), true)
    });
}

/// Runs `change` on the entry a request was admitted in: in its slot, else wherever the key went.
fn update_admitted<T>(
    host: &impl Host,
    config: &crate::config::Config,
    admitted: &Admitted,
    mut change: impl FnMut(&mut Entry) -> (T, bool),
) -> Found<T> {
    let slots = Slots {
        store: host,
        prefix: &config.cache.key_prefix,
        count: config.cache.slots,
    };
    match slots.update_slot(admitted.slot, &admitted.key, &mut change) {
        Found::Missing => slots.update(&admitted.key, &mut change),
        found => found,
    }
}

impl Flow {
    fn slots<'a, H: Host>(&'a self, host: &'a H) -> Slots<'a, H> {
        Slots {
            store: host,
            prefix: &self.config.cache.key_prefix,
            count: self.config.cache.slots,
        }
    }

    /// How old an entry may be and still decide without asking 3scale first.
    fn horizon_ms(&self, service: &Service) -> u64 {
        match service.failure.policy {
            Policy::AllowCached => service
                .failure
                .max_staleness_ms
                .max(self.config.cache.ttl_ms),
            Policy::Deny | Policy::AllowListed | Policy::Allow => {
                self.config.cache.ttl_ms.saturating_mul(2)
            }
        }
    }

    pub(super) fn authorize_cached(&mut self, host: &impl Host, decided: Decided) -> Action {
        let service = Rc::clone(&decided.info.service);
        let key = cache_key(
            &service.id,
            &decided.credentials,
            decided.referrer.as_deref(),
        );
        let prefix = &self.config.cache.key_prefix;
        if !known::knows(host, prefix, &service.id, &decided.usage) {
            host.count(Stat::CacheMisses);
            return self.ask(host, decided, Purpose::Fill { key });
        }
        let now_ms = host.now_ms();
        let codes = service.report_response_codes;
        let headers = service.rate_limit_headers;
        if let Some(admission) = lease::admit(&key, &decided.usage, now_ms, codes, headers) {
            host.count(Stat::CacheHits);
            return self.admitted(host, decided, admission, Some(Held::Lease(key)), false);
        }
        let request = lease::Request {
            key: &key,
            usage: &decided.usage,
            now_ms,
            awaiting_code: codes,
            rate_limit: headers,
        };
        let freshness = lease::Freshness {
            ttl_ms: self.config.cache.ttl_ms,
            horizon_ms: self.horizon_ms(&service),
            stuck_after_ms: self.config.backend.timeout_ms().saturating_mul(2) + 1000,
            lease_ms: self.config.cache.lease_ms,
        };
        match lease::renew(&self.slots(host), &self.config, &request, &freshness) {
            Found::Entry {
                result: Some(renewal),
                ..
            } => {
                host.count(Stat::CacheHits);
                if renewal.stale {
                    host.count(Stat::CacheStale);
                }
                if renewal.refresh {
                    request_refresh(RefreshJob {
                        service: Rc::clone(&service),
                        key: key.clone(),
                        credentials: decided.credentials.clone(),
                        referrer: decided.referrer.clone(),
                    });
                }
                let held = Some(Held::Lease(key));
                self.admitted(host, decided, renewal.admission, held, false)
            }
            Found::Entry { result: None, .. } | Found::Missing => {
                host.count(Stat::CacheMisses);
                self.ask(host, decided, Purpose::Fill { key })
            }
            Found::Busy => {
                // Other workers keep writing this entry, or a newer build of the module wrote it:
                // this request is decided by 3scale alone, as in `per_request` mode (its response
                // code, when reported, goes with its usage in a report of its own).
                host.count(Stat::CacheUncachable);
                let purpose = if decided.info.service.report_response_codes {
                    Purpose::Authorize
                } else {
                    Purpose::Authrep
                };
                self.ask(host, decided, purpose)
            }
        }
    }

    /// A local decision: forward with the plan, or refuse with the limit's category. `fail_open`:
    /// decided from the cache because 3scale could not answer.
    fn admitted(
        &mut self,
        host: &impl Host,
        decided: Decided,
        admission: Admission,
        held: Option<Held>,
        fail_open: bool,
    ) -> Action {
        match admission {
            Admission::Allowed { plan, rate_limit } => {
                let units = decided.usage.units();
                let codes = decided.info.service.report_response_codes;
                let usage = || decided.usage.clone();
                let report = held.filter(|_| codes).map(|held| match held {
                    Held::Entry(admitted) => Report::Cached {
                        admitted,
                        usage: usage(),
                    },
                    Held::Lease(key) => Report::Leased {
                        key,
                        usage: usage(),
                    },
                });
                let allow = Allow {
                    plan,
                    rate_limit,
                    report,
                    fail_open,
                };
                let action = self.forward(host, decided, allow);
                self.count_queued(host, units, codes);
                action
            }
            Admission::Refused {
                category,
                retry_after,
                rate_limit,
                plan,
            } => {
                let debug = decided
                    .info
                    .debug
                    .then(|| super::DebugInfo::new(&decided, plan));
                let denial = Denial {
                    retry_after,
                    rate_limit: (category == Category::LimitsExceeded)
                        .then_some(rate_limit)
                        .flatten(),
                };
                self.refuse_with(host, &decided.info, category, Some(denial), debug)
            }
        }
    }

    /// 3scale answered the authorize that fills (or refreshes) `key`'s entry.
    pub(super) fn conclude_fill(
        &mut self,
        host: &impl Host,
        decided: Decided,
        key: &str,
        verdict: Verdict,
    ) -> Action {
        let service = Rc::clone(&decided.info.service);
        let Some((answer, status)) = Answer::from_verdict(&verdict) else {
            return match verdict {
                Verdict::Misconfigured { code, detail } => {
                    host.count(Stat::BackendErrors);
                    log::error!(
                        "tollgate: service {}: 3scale refused the gateway's own call ({code}): {detail}; \
                         check service_id, service_token/provider_key and the metrics of the mapping rules",
                        service.id
                    );
                    self.refuse(host, &decided.info, Category::BackendMisconfigured, None)
                }
                Verdict::Unavailable { detail } => {
                    host.count(Stat::BackendErrors);
                    self.fail(host, decided, Some(key), &detail)
                }
                _ => {
                    host.count(Stat::BackendErrors);
                    self.fail(host, decided, Some(key), "no usable answer")
                }
            };
        };
        if answer.confirmed() {
            known::learn(
                host,
                &self.config.cache.key_prefix,
                &service.id,
                &decided.usage,
            );
        }
        let now_ms = host.now_ms();
        let Some(fresh) = Entry::new(key.to_string(), answer.clone(), status, now_ms) else {
            return self.decide_uncached(host, decided, &verdict);
        };
        let slots = self.slots(host);
        let placed = slots.place(&fresh, |existing| {
            existing.refresh(answer.clone(), status, now_ms);
        });
        if placed.is_none() {
            return self.decide_uncached(host, decided, &verdict);
        }
        let usage = decided.usage.clone();
        let found = slots.update(key, |entry| {
            let admission = admit(entry, &usage, now_ms / 1000, service.report_response_codes);
            let newly_dirty = entry.mark_dirty();
            ((admission, newly_dirty), true)
        });
        match found {
            Found::Entry {
                slot,
                result: (admission, newly_dirty),
            } => {
                if newly_dirty {
                    mark_dirty(host, &self.config.cache.key_prefix, slot);
                }
                let admitted = Admitted {
                    slot,
                    key: key.to_string(),
                    at_s: now_ms / 1000,
                };
                self.admitted(host, decided, admission, Some(Held::Entry(admitted)), false)
            }
            Found::Missing | Found::Busy => self.decide_uncached(host, decided, &verdict),
        }
    }

    /// The cache could not hold this application (every probed slot still has usage to report):
    /// decide from 3scale's answer and report this request on its own.
    fn decide_uncached(&mut self, host: &impl Host, decided: Decided, verdict: &Verdict) -> Action {
        host.count(Stat::CacheUncachable);
        match verdict {
            Verdict::Authorized { status, limits } => {
                let mut allow = Allow::from_answer(
                    &decided.info.service,
                    status,
                    limits.as_ref(),
                    &decided.usage,
                    unix_now(host),
                );
                allow.report = Some(Report::single(&decided));
                self.forward(host, decided, allow)
            }
            Verdict::Denied {
                category,
                retry_after,
                status,
                limits,
                ..
            } => {
                let denial = Denial {
                    retry_after: *retry_after,
                    rate_limit: super::decide::refused_rate_limit(
                        *category,
                        limits.as_ref(),
                        status.as_ref(),
                        &decided.usage,
                        unix_now(host),
                    ),
                };
                let category = *category;
                self.refuse(host, &decided.info, category, Some(denial))
            }
            Verdict::Unavailable { .. } | Verdict::Misconfigured { .. } => {
                self.refuse(host, &decided.info, Category::BackendUnavailable, None)
            }
        }
    }

    /// 3scale could not answer in time: the service's failure policy decides.
    /// 3scale could not decide (`cause` says why): the failure policy does, and the outage is
    /// recorded (`crate::outage`).
    pub(super) fn fail(
        &mut self,
        host: &impl Host,
        decided: Decided,
        key: Option<&str>,
        cause: &str,
    ) -> Action {
        let service = Rc::clone(&decided.info.service);
        let endpoint = match decided.purpose {
            Purpose::Authrep => "authrep",
            Purpose::Authorize | Purpose::Fill { .. } => "authorize",
        };
        let asked_at_ms = decided.asked_at_ms;

        let policy = &service.failure;
        let key = key.map_or_else(
            || {
                cache_key(
                    &service.id,
                    &decided.credentials,
                    decided.referrer.as_deref(),
                )
            },
            str::to_string,
        );
        let now_ms = host.now_ms();
        if policy.policy == Policy::AllowCached {
            let max = policy.max_staleness_ms;
            let usage = decided.usage.clone();
            let found = self.slots(host).update(&key, |entry| {
                if entry.answer == Answer::Unknown || entry.age_ms(now_ms) > max {
                    return (None, false);
                }
                let admission = admit(entry, &usage, now_ms / 1000, service.report_response_codes);
                let newly_dirty = entry.mark_dirty();
                (Some((admission, newly_dirty)), true)
            });
            if let Found::Entry {
                slot,
                result: Some((admission, newly_dirty)),
            } = found
            {
                if newly_dirty {
                    mark_dirty(host, &self.config.cache.key_prefix, slot);
                }
                let outcome = if matches!(admission, Admission::Allowed { .. }) {
                    host.count(Stat::FailOpen);
                    Outcome::Allowed
                } else {
                    Outcome::Refused
                };
                self.outage(host, (&service, asked_at_ms), endpoint, cause, outcome);
                let admitted = Admitted {
                    slot,
                    key,
                    at_s: now_ms / 1000,
                };
                return self.admitted(host, decided, admission, Some(Held::Entry(admitted)), true);
            }
        }
        let listed = |credentials: &Credentials| {
            let id = match credentials {
                Credentials::UserKey(key) => key,
                Credentials::AppId { app_id, .. } => app_id,
            };
            policy.allowed.iter().any(|allowed| allowed == id)
        };
        let passes = match policy.policy {
            Policy::Allow => true,
            Policy::AllowListed => listed(&decided.credentials),
            Policy::Deny | Policy::AllowCached => false,
        };
        if !passes {
            self.outage(
                host,
                (&service, asked_at_ms),
                endpoint,
                cause,
                Outcome::Refused,
            );
            return self.refuse(host, &decided.info, Category::BackendUnavailable, None);
        }
        self.outage(
            host,
            (&service, asked_at_ms),
            endpoint,
            cause,
            Outcome::Allowed,
        );
        self.fail_open(host, decided, &key, now_ms)
    }

    /// Counts a request the failure policy decided in the service's outage (logged at its start).
    fn outage(
        &self,
        host: &impl Host,
        (service, asked_at_ms): (&Service, u64),
        endpoint: &str,
        cause: &str,
        outcome: Outcome,
    ) {
        let failure = crate::outage::Failure {
            service: &service.id,
            cluster: &self.config.backend.cluster,
            endpoint,
            cause,
            elapsed_ms: host.now_ms().saturating_sub(asked_at_ms),
            timeout_ms: self.config.backend.timeout_ms(),
            policy: service.failure.policy.name(),
        };
        crate::outage::failed(
            host,
            &self.config.cache.key_prefix,
            &failure,
            Some(outcome),
            host.now_ms(),
        );
    }

    /// Lets a request through without 3scale; its usage waits in the cache (an entry without an
    /// answer if there is none) and is reported once 3scale is back.
    fn fail_open(&mut self, host: &impl Host, decided: Decided, key: &str, now_ms: u64) -> Action {
        host.count(Stat::FailOpen);
        let usage = decided.usage.clone();
        let codes = decided.info.service.report_response_codes;
        let slots = self.slots(host);
        let mut plan = None;
        let mut record = |entry: &mut Entry| {
            plan = entry.plan.clone();
            admit_unchecked(entry, &usage, now_ms / 1000, codes);
            let newly_dirty = entry.mark_dirty();
            (newly_dirty, true)
        };
        let mut found = slots.update(key, &mut record);
        if matches!(found, Found::Missing) {
            if let Some(empty) = Entry::new(key.to_string(), Answer::Unknown, None, now_ms) {
                if slots.place(&empty, |_| {}).is_some() {
                    found = slots.update(key, &mut record);
                }
            }
        }
        let codes = decided.info.service.report_response_codes;
        let units = decided.usage.units();
        let mut in_entry = false;
        let report = match found {
            Found::Entry {
                slot,
                result: newly_dirty,
            } => {
                in_entry = true;
                if newly_dirty {
                    mark_dirty(host, &self.config.cache.key_prefix, slot);
                }
                codes.then(|| Report::Cached {
                    admitted: Admitted {
                        slot,
                        key: key.to_string(),
                        at_s: now_ms / 1000,
                    },
                    usage: decided.usage.clone(),
                })
            }
            Found::Missing | Found::Busy => Some(Report::single(&decided)),
        };
        let allow = Allow {
            plan,
            rate_limit: None,
            report,
            fail_open: true,
        };
        let action = self.forward(host, decided, allow);
        if in_entry {
            self.count_queued(host, units, codes);
        }
        action
    }

    /// Counts usage admitted into a cache entry's report, once per request. With response codes
    /// tracked, a request refused after its admission (`no_route_for_plan`) gave its usage back;
    /// without, its usage was already pending and is reported.
    fn count_queued(&self, host: &impl Host, units: u64, codes: bool) {
        if !codes || matches!(self.stage, Stage::Forwarded(_)) {
            host.add(Stat::QueuedUnits, units);
        }
    }
}
