//! Renewing and returning leases in the shared entry: one CAS returns what the old lease did and
//! reserves the next one.

use std::rc::Rc;

use super::{HEADROOM_SHARE, Lease, Terms, size, table};
use crate::cache::slots::{Found, Slots};
use crate::cache::{Admission, Answer, Entry, is_newer, parse_key};
use crate::config::Config;
use crate::report::mark_dirty;
use crate::store::SharedStore;
use crate::usage::Usage;

/// The request a lease is renewed for.
pub struct Request<'a> {
    pub key: &'a str,
    pub usage: &'a Usage,
    pub now_ms: u64,
    /// Its usage is finished only with its response code.
    pub awaiting_code: bool,
    /// Compute the most constraining limit for `RateLimit-*` headers.
    pub rate_limit: bool,
}

/// How old an entry may be: fresh within `ttl_ms` (leases are granted), usable within
/// `horizon_ms` (requests are decided one by one while a refresh runs).
pub struct Freshness {
    pub ttl_ms: u64,
    pub horizon_ms: u64,
    /// A refresh claimed longer ago than this is taken over.
    pub stuck_after_ms: u64,
    /// How long a lease decides (`cache.lease_ms`); 0: no lease beyond the request itself.
    pub lease_ms: u64,
}

/// The decision on the request a lease was renewed for.
pub struct Renewal {
    pub admission: Admission,
    /// The entry is older than its ttl: the request was decided in it, without a lease.
    pub stale: bool,
    /// This request claimed the entry's refresh: the caller asks 3scale in the background.
    pub refresh: bool,
}

/// What the CAS decided, before the lease is built from it.
struct Grant {
    /// Allowed: the units reserved and what they are decided under. Refused: the refusal.
    reserved: Result<(Usage, Terms), Admission>,
    /// A cached denial decides requests until then too.
    denied: Option<Terms>,
    expires_ms: u64,
    period_end_s: Option<u64>,
    stale: bool,
    refresh: bool,
}

/// Returns the worker's lease on `request.key` (if any) and decides `request` from a new one, in
/// one CAS. `Found::Entry` with `None`: the entry is too old to decide (ask 3scale).
pub fn renew<S: SharedStore>(
    slots: &Slots<'_, S>,
    config: &Config,
    request: &Request<'_>,
    freshness: &Freshness,
) -> Found<Option<Renewal>> {
    let old = table::take(request.key);
    let now_ms = request.now_ms;
    let found = slots.update(request.key, |entry| {
        if let Some(old) = &old {
            old.settle_into(entry, now_ms);
        }
        let age = entry.age_ms(now_ms);
        let grant = (age <= freshness.horizon_ms && entry.answer != Answer::Unknown)
            .then(|| grant(entry, old.as_ref(), request, freshness));
        let newly_dirty = entry.mark_dirty();
        let write = old.is_some()
            || grant
                .as_ref()
                .is_some_and(|grant| grant.refresh || grant.reserved.is_ok());
        ((grant, newly_dirty), write)
    });
    match found {
        Found::Entry {
            slot,
            result: (grant, newly_dirty),
        } => {
            if newly_dirty {
                mark_dirty(slots.store, slots.prefix, slot);
            }
            let mut lease = Lease::carried(request.key, slot, old, now_ms);
            let renewal = grant.map(|grant| lease.start(grant, request));
            if lease.terms.is_some() || !lease.is_idle() {
                table::put(lease);
            }
            Found::Entry {
                slot,
                result: renewal,
            }
        }
        Found::Busy => {
            if let Some(old) = old {
                keep_or_orphan(slots, config, old, now_ms, false);
            }
            Found::Busy
        }
        Found::Missing => {
            if let Some(old) = old {
                orphan(config, old, now_ms);
            }
            Found::Missing
        }
    }
}

/// Reserves the units of the next lease in `entry` (settled already), or refuses the request.
fn grant(
    entry: &mut Entry,
    old: Option<&Lease>,
    request: &Request<'_>,
    freshness: &Freshness,
) -> Grant {
    let now_ms = request.now_ms;
    let now_s = now_ms / 1000;
    let stale = entry.age_ms(now_ms) > freshness.ttl_ms;
    let refresh = stale && entry.claim_refresh(now_ms, freshness.stuck_after_ms);
    let mut shape = old.map_or_else(Usage::new, |old| old.shape.clone());
    shape.raise_to(request.usage);
    let leasing = !stale && freshness.lease_ms > 0;
    let wanted = match (leasing, old) {
        (false, _) => 1,
        (true, old) => size::wanted(old.map(|old| (old.requests, old.ran_out))),
    };
    let requests = wanted.min(entry.requests_within(&shape, HEADROOM_SHARE, now_s));
    let reports = entry.usage_reports().to_vec();
    let mut reservation = if requests >= 2 {
        shape.times(requests)
    } else {
        request.usage.clone()
    };
    let mut admission = entry.admit_awaiting_code(&reservation, now_s);
    if requests >= 2 && matches!(admission, Admission::Refused { .. }) {
        reservation = request.usage.clone();
        admission = entry.admit_awaiting_code(&reservation, now_s);
    }
    let expires_ms = if !leasing {
        now_ms
    } else {
        let fresh_until = entry
            .refreshed_at_ms
            .saturating_add(freshness.ttl_ms)
            .saturating_add(1);
        let period_end = entry
            .first_period_end()
            .map_or(u64::MAX, |end| end.saturating_mul(1000));
        now_ms
            .saturating_add(freshness.lease_ms)
            .min(fresh_until)
            .min(period_end)
    };
    let plan = entry.plan.clone();
    let denied = match (&entry.answer, leasing) {
        (Answer::Denied { category, .. }, true) => Some(Terms::Denied {
            category: *category,
            plan: plan.clone(),
        }),
        _ => None,
    };
    let reserved = match admission {
        Admission::Allowed { .. } => Ok((
            reservation,
            Terms::Allowed {
                plan,
                reports,
                hierarchy: entry.hierarchy().clone(),
            },
        )),
        refused @ Admission::Refused { .. } => Err(refused),
    };
    Grant {
        reserved,
        denied,
        expires_ms,
        period_end_s: entry.first_period_end(),
        stale,
        refresh,
    }
}

impl Lease {
    /// What is left of `old` once settled at `now_ms`: its requests still in progress, stamped now.
    fn carried(key: &str, slot: u32, old: Option<Lease>, now_ms: u64) -> Lease {
        let (in_progress, shape) = old.map_or_else(
            || (Usage::new(), Usage::new()),
            |old| (old.in_progress, old.shape),
        );
        Lease {
            key: key.to_string(),
            slot,
            expires_ms: now_ms,
            terms: None,
            reserved: in_progress.clone(),
            reserved_at_s: now_ms / 1000,
            period_end_s: None,
            spent: in_progress.clone(),
            in_progress,
            finished: Vec::new(),
            requests: 0,
            ran_out: false,
            shape,
        }
    }

    /// Takes `grant` and decides `request` from it.
    fn start(&mut self, grant: Grant, request: &Request<'_>) -> Renewal {
        self.shape.raise_to(request.usage);
        self.period_end_s = grant.period_end_s;
        let admission = match grant.reserved {
            Ok((reservation, mut terms)) => {
                // The reservation was made for this request: it covers it.
                self.reserved.add_all(&reservation);
                let admission = terms.decide(request.usage, request.now_ms, request.rate_limit);
                self.spend(request.usage, request.awaiting_code);
                self.terms = Some(terms);
                self.expires_ms = grant.expires_ms;
                admission
            }
            Err(refusal) => {
                if grant.denied.is_some() {
                    self.terms = grant.denied;
                    self.expires_ms = grant.expires_ms;
                }
                refusal
            }
        };
        Renewal {
            admission,
            stale: grant.stale,
            refresh: grant.refresh,
        }
    }
}

/// Returns every lease of this VM that expired at `now_ms` (the root context's tick): a worker
/// whose traffic stopped gives its units back within a tick of their expiry.
pub fn settle_expired<S: SharedStore>(slots: &Slots<'_, S>, config: &Config, now_ms: u64) {
    settle(slots, config, table::take_expired(now_ms), now_ms, false);
}

/// Returns every lease of this VM, expired or not: the plugin is going away (an upgrade, a
/// configuration removed), so nothing it admitted stays in its memory.
pub fn settle_all<S: SharedStore>(slots: &Slots<'_, S>, config: &Config, now_ms: u64) {
    settle(slots, config, table::take_expired(u64::MAX), now_ms, true);
}

/// `last`: the VM will not tick again, so a lease that cannot be returned is reported on its own.
fn settle<S: SharedStore>(
    slots: &Slots<'_, S>,
    config: &Config,
    leases: Vec<Lease>,
    now_ms: u64,
    last: bool,
) {
    for lease in leases {
        let mut settle = |entry: &mut Entry| {
            lease.settle_into(entry, now_ms);
            let newly_dirty = entry.mark_dirty();
            (newly_dirty, true)
        };
        let found = match slots.update_slot(lease.slot, &lease.key, &mut settle) {
            Found::Missing => slots.update(&lease.key, &mut settle),
            found => found,
        };
        match found {
            Found::Entry { slot, result } => {
                if result {
                    mark_dirty(slots.store, slots.prefix, slot);
                }
                if !lease.is_idle() {
                    let key = lease.key.clone();
                    table::put(Lease::carried(&key, slot, Some(lease), now_ms));
                }
            }
            Found::Busy => keep_or_orphan(slots, config, lease, now_ms, last),
            Found::Missing => orphan(config, lease, now_ms),
        }
    }
}

/// A lease that could not be returned: kept to try again at the next tick while its entry is only
/// busy; reported on its own when it never can be (a newer build of the module wrote the entry
/// during an upgrade, or this is the VM's last chance).
fn keep_or_orphan<S: SharedStore>(
    slots: &Slots<'_, S>,
    config: &Config,
    lease: Lease,
    now_ms: u64,
    last: bool,
) {
    let newer = slots
        .store
        .get(&slots.slot_key(lease.slot))
        .is_some_and(|(bytes, _)| is_newer(&bytes));
    if last || newer {
        orphan(config, lease, now_ms);
    } else {
        table::put(lease);
    }
}

/// A lease whose entry is gone (its slot was reused): its finished usage is reported on its own,
/// its requests in progress are kept for when they finish.
fn orphan(config: &Config, lease: Lease, now_ms: u64) {
    for finished in &lease.finished {
        report_alone(config, &lease.key, &finished.usage, finished.code);
    }
    if !lease.is_idle() {
        let key = lease.key.clone();
        let slot = lease.slot;
        table::put(Lease::carried(&key, slot, Some(lease), now_ms));
    }
}

/// Reports usage of the application of cache key `key` in a report of its own (`code` 0: none).
pub fn report_alone(config: &Config, key: &str, usage: &Usage, code: u16) {
    let service = parse_key(key).and_then(|(id, application)| {
        Some((config.services.iter().find(|s| s.id == id)?, application))
    });
    if let Some((service, application)) = service {
        crate::background::send_report(
            Rc::clone(service),
            application,
            usage,
            (code != 0).then_some(code),
            None,
        );
    }
}
