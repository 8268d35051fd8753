//! Worker-local leases on cache entries: how a cache hit is decided without writing shared data.
//!
//! Deciding every request in the shared entry costs a read, a decode, an encode and a CAS write
//! under Envoy's shared-data lock, twice per request with response codes (admission, then the
//! code). A lease moves that work off the request path: one CAS reserves units of the request's
//! metrics in the entry, and the worker then decides requests from those units in its own memory
//! until they run out or the lease expires. Renewing returns what the lease did in the same CAS:
//! finished requests' usage joins the entry's pending report under their response codes, unspent
//! units come off the limits, requests still in progress stay counted. The report loop, refreshes
//! and every other worker keep seeing the truth in shared data, a lease later.
//!
//! A reservation is usage awaiting its response code in the entry (the same tallies an admitted
//! request holds until its response), so it counts on every limit it lands on, survives a refresh,
//! and no other worker can spend it: the limits stay exact between the workers of one Envoy.
//!
//! # Size, and what it costs in accuracy
//!
//! A lease is sized in requests of the largest usage its requests had (`size.rs`): 4 at first,
//! then from how many the last lease served (doubled when it ran out, half as many again when it
//! expired), at most [`MAX_REQUESTS`]; and never more than 1/[`HEADROOM_SHARE`] of what is left
//! under any limit the usage lands on. Near a limit that share is below two requests, so the
//! lease holds exactly the request it was renewed for: at the last units every request is decided
//! in the entry, one unit at a time, as without leases. Hence:
//!
//! - a busy worker holds back from the others at most 1/4 of what was left of a limit when its
//!   lease was renewed, and at most [`MAX_REQUESTS`] requests' worth, for at most [`LEASE_MS`];
//!   a lease whose traffic stopped is returned at the first tick after it expired (ticks come
//!   every [`LEASE_MS`] at most), and its units are then the other workers';
//! - a lease never outlives the entry's freshness (`ttl`) nor the end of a limit's period, so a
//!   suspension, a changed key or a new plan bites within one `ttl`, as without leases;
//! - a VM that dies (a panic, Envoy's `FAIL_RELOAD`) loses the usage its leases admitted since
//!   their last renewal: at most [`MAX_REQUESTS`] requests per application it served in the last
//!   [`LEASE_MS`]. Their reservation stays counted on the limits until it is dropped as abandoned
//!   (10 minutes), like the units of any request in progress when a VM dies.

mod renew;
mod size;
mod table;
#[cfg(test)]
mod tests;

pub use renew::{Freshness, Renewal, Request, renew, report_alone, settle_all, settle_expired};
pub use table::{admit, finish, give_back};

use crate::backend::{Hierarchy, UsageReport};
use crate::cache::{Admission, Entry};
use crate::category::Category;
use crate::ratelimit::most_constraining;
use crate::usage::Usage;

/// How long a lease decides before it is renewed or returned (ms), unless `cache.lease_ms` says.
pub const LEASE_MS: u64 = 50;
/// The most requests one lease is sized for.
pub const MAX_REQUESTS: u64 = 64;
/// A lease takes at most `1 / HEADROOM_SHARE` of what is left under a limit.
pub const HEADROOM_SHARE: u64 = 4;

/// What 3scale's last answer lets a lease decide.
#[derive(Clone, Debug)]
enum Terms {
    /// Requests are allowed within the reserved units. `reports` are the limits as the entry held
    /// them at the grant, without this lease's reservation, charged with each request it admits:
    /// what `RateLimit-*` headers are computed from.
    Allowed {
        plan: Option<String>,
        reports: Vec<UsageReport>,
        hierarchy: Hierarchy,
    },
    /// Every request is refused (a cached denial).
    Denied {
        category: Category,
        plan: Option<String>,
    },
}

impl Terms {
    /// The decision these terms give a request; an allowed one is charged on the copy of the
    /// limits, so that `RateLimit-*` counts it.
    fn decide(&mut self, usage: &Usage, now_ms: u64, rate_limit: bool) -> Admission {
        match self {
            Terms::Denied { category, plan } => Admission::Refused {
                category: *category,
                retry_after: None,
                rate_limit: None,
                plan: plan.clone(),
            },
            Terms::Allowed {
                plan,
                reports,
                hierarchy,
            } => {
                let rate_limit = rate_limit
                    .then(|| {
                        charge(reports, hierarchy, usage);
                        most_constraining(reports, hierarchy, usage, now_ms / 1000)
                    })
                    .flatten();
                Admission::Allowed {
                    plan: plan.clone(),
                    rate_limit,
                }
            }
        }
    }
}

/// Finished requests' usage under one response code (0: no response).
#[derive(Clone, Debug)]
struct Finished {
    code: u16,
    usage: Usage,
    requests: u64,
}

/// One worker's lease on one application's cache entry.
#[derive(Clone, Debug)]
pub struct Lease {
    key: String,
    slot: u32,
    /// Decisions from the lease stop at this instant (ms).
    expires_ms: u64,
    /// None: the lease only carries requests in progress and decides nothing.
    terms: Option<Terms>,
    /// Units held in the entry, awaiting since `reserved_at_s`.
    reserved: Usage,
    reserved_at_s: u64,
    /// The first end of a limit's period (s) at the grant: unspent units come off the limits only
    /// before it (after it, the period they were charged in is gone).
    period_end_s: Option<u64>,
    /// Admitted from `reserved`, in progress or finished.
    spent: Usage,
    in_progress: Usage,
    finished: Vec<Finished>,
    /// Requests admitted since the grant, and whether one did not fit: what sizes the next grant.
    requests: u64,
    ran_out: bool,
    /// The largest usage per metric a request had: what one request is reckoned to cost.
    shape: Usage,
}

impl Lease {
    /// Decides one request from the lease at `now_ms`; `None` when the lease cannot (expired, or
    /// its units do not cover the request): renew it. `awaiting_code`: the usage is finished only
    /// with the response code ([`Lease::finish`]). `rate_limit`: compute the most constraining limit.
    fn admit(
        &mut self,
        usage: &Usage,
        now_ms: u64,
        awaiting_code: bool,
        rate_limit: bool,
    ) -> Option<Admission> {
        if now_ms >= self.expires_ms {
            return None;
        }
        let terms = self.terms.as_mut()?;
        let allowing = matches!(terms, Terms::Allowed { .. });
        if allowing && !self.spent.fits(usage, &self.reserved) {
            self.ran_out = true;
            return None;
        }
        let admission = terms.decide(usage, now_ms, rate_limit);
        if allowing {
            self.spend(usage, awaiting_code);
        }
        Some(admission)
    }

    /// Charges an allowed request on the lease's units.
    fn spend(&mut self, usage: &Usage, awaiting_code: bool) {
        self.spent.add_all(usage);
        self.requests += 1;
        if awaiting_code {
            self.in_progress.add_all(usage);
        } else {
            self.finished_with(usage, 0);
        }
    }

    /// A request admitted from this lease got response `code` (0: none).
    fn finish(&mut self, usage: &Usage, code: u16) {
        self.in_progress.take_all(usage);
        self.finished_with(usage, code);
    }

    fn finished_with(&mut self, usage: &Usage, code: u16) {
        match self.finished.iter_mut().find(|f| f.code == code) {
            Some(finished) => {
                finished.usage.add_all(usage);
                finished.requests += 1;
            }
            None => self.finished.push(Finished {
                code,
                usage: usage.clone(),
                requests: 1,
            }),
        }
    }

    /// A request admitted from this lease was refused before reaching the upstream: its units are
    /// the lease's again.
    fn give_back(&mut self, usage: &Usage) {
        self.in_progress.take_all(usage);
        self.spent.take_all(usage);
        self.requests = self.requests.saturating_sub(1);
    }

    /// Returns what the lease did to `entry` at `now_ms`: finished usage pending under its codes,
    /// unspent units off the limits, in-progress usage kept (stamped now).
    fn settle_into(&self, entry: &mut Entry, now_ms: u64) {
        let at = self.reserved_at_s;
        for finished in &self.finished {
            entry.record_requests(&finished.usage, finished.code, finished.requests, at);
        }
        let unspent = self.reserved.minus(&self.spent);
        let same_period = self.period_end_s.is_none_or(|end| now_ms / 1000 < end);
        entry.release(&unspent, at, same_period);
        entry.restamp(&self.in_progress, at, now_ms);
    }

    /// Whether nothing is left to return or wait for.
    fn is_idle(&self) -> bool {
        self.in_progress.iter().all(|(_, delta)| delta == 0)
    }
}

/// Charges `usage` on the limits it lands on.
fn charge(reports: &mut [UsageReport], hierarchy: &Hierarchy, usage: &Usage) {
    for report in reports {
        let delta = hierarchy.applied_delta(&report.metric, usage);
        report.current_value = report.current_value.saturating_add(delta);
        report.exceeded = report.current_value > report.max_value;
    }
}
