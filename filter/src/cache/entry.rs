//! One application's cache entry: 3scale's last answer and what Tollgate admitted since.
//!
//! The limits are kept as 3scale's usage reports whose `current_value` is the *effective*
//! current: the backend's value at the refresh plus the usage admitted since (`used`, through
//! the hierarchy). That is the value apisonator would hold once the pending reports arrive, so
//! deciding against it, and computing `RateLimit-*` from it with [`most_constraining`], is
//! deciding as apisonator would.

use crate::backend::{AuthStatus, Hierarchy, Period, UsageReport};
use crate::category::Category;
use crate::ratelimit::{RateLimit, applicable_reports, most_constraining};
use crate::usage::Usage;
use crate::verdict::Verdict;

use super::codec;
use super::period::roll;
use super::unreported::{ACCEPTED_KEPT_MS, Batch, REQUESTS, Tally, Transactions, Unreported};

/// Longest key an entry accepts (bytes): credentials are at most 512 bytes each.
pub const MAX_KEY_BYTES: usize = 2048;
/// Most usage reports (limits) an answer may carry to be cached.
pub const MAX_REPORTS: usize = 255;
/// Most parent links a hierarchy may carry to be cached.
pub const MAX_LINKS: usize = 255;
/// Largest encoding of an answer (plan, reason, metric names, limits, hierarchy) to be cached.
pub const MAX_ANSWER_BYTES: usize = 4096;
/// Longest denial reason kept: 3scale's codes are short (`application_key_invalid`).
pub const MAX_REASON_BYTES: usize = 64;

/// What 3scale last said about the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the application may call, within its limits.
    Authorized,
    /// 409 `limits_exceeded` at refresh: the credentials are valid and the limits decide each
    /// request (a refresh without usage fails when any limit is over, even one this request
    /// does not touch).
    LimitsOnly,
    /// Any other denial: every request gets `category` until the next refresh. `reason` is the
    /// 3scale code (never free text, which may quote credentials).
    Denied { category: Category, reason: String },
    /// No 3scale answer yet: the entry only holds usage a fail-open policy let through.
    Unknown,
}

impl Answer {
    /// The answer to cache for a classified authorize call, with the status document to take
    /// the plan, limits and hierarchy from. `None` when 3scale gave no answer about the
    /// application (unavailable, misconfigured gateway): nothing to cache.
    ///
    /// A `limits_exceeded` denial (`method_disabled` included, which depends on the request's
    /// usage) becomes [`Answer::LimitsOnly`] when its limits are readable; without them the
    /// cache cannot decide per request, so it denies until the next refresh.
    pub fn from_verdict(verdict: &Verdict) -> Option<(Answer, Option<&AuthStatus>)> {
        match verdict {
            Verdict::Authorized { status, .. } => Some((Answer::Authorized, Some(status))),
            Verdict::Denied {
                category: Category::LimitsExceeded | Category::MethodDisabled,
                status: Some(status),
                ..
            } => Some((Answer::LimitsOnly, Some(status))),
            Verdict::Denied {
                category,
                reason,
                status,
                ..
            } => Some((
                Answer::Denied {
                    category: *category,
                    reason: reason.clone(),
                },
                status.as_ref(),
            )),
            Verdict::Unavailable { .. } | Verdict::Misconfigured { .. } => None,
        }
    }

    /// 3scale confirmed the credentials: reports for this application will be accepted.
    pub fn confirmed(&self) -> bool {
        matches!(self, Answer::Authorized | Answer::LimitsOnly)
    }
}

/// The local decision on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed {
        plan: Option<String>,
        /// The most constraining limit, counting this request.
        rate_limit: Option<RateLimit>,
    },
    Refused {
        category: Category,
        /// Seconds until every blocking limit has reset; `None` when one never does.
        retry_after: Option<u64>,
        rate_limit: Option<RateLimit>,
        plan: Option<String>,
    },
}

/// See the module documentation of [`crate::cache`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// When 3scale's answer arrived (ms since the epoch); 0 for [`Answer::Unknown`].
    pub refreshed_at_ms: u64,
    pub answer: Answer,
    pub plan: Option<String>,
    /// Set by the reporter when it queued the entry; cleared by [`Entry::take_pending`].
    pub dirty: bool,
    pub(super) refreshing_since_ms: Option<u64>,
    /// The limits, `current_value` effective (backend + `used`); period starts are not kept.
    pub(super) reports: Vec<UsageReport>,
    /// Per report: usage admitted on it since the refresh (or the last rollover).
    pub(super) used: Vec<u64>,
    pub(super) hierarchy: Hierarchy,
    pub(super) unreported: Unreported,
}

impl Entry {
    /// An entry for a 3scale answer (`status` may be `None` for [`Answer::Unknown`] or a denial
    /// without a status document). `None` when the key or the answer is too large to cache
    /// (see the size limits in [`crate::cache`]).
    pub fn new(
        key: String,
        answer: Answer,
        status: Option<&AuthStatus>,
        now_ms: u64,
    ) -> Option<Entry> {
        if key.len() > MAX_KEY_BYTES {
            return None;
        }
        let mut entry = Entry {
            key,
            refreshed_at_ms: 0,
            answer: Answer::Unknown,
            plan: None,
            dirty: false,
            refreshing_since_ms: None,
            reports: Vec::new(),
            used: Vec::new(),
            hierarchy: Hierarchy::new(),
            unreported: Unreported::default(),
        };
        entry.refresh(answer, status, now_ms).then_some(entry)
    }

    /// A new 3scale answer for the same key: replaces the answer, plan, limits (rolled to now)
    /// and hierarchy, and charges the usage 3scale has not counted yet (pending and in flight)
    /// on the new limits. Releases the refresh claim.
    ///
    /// Returns `false`, leaving the entry as it was (claim released), when the answer is too
    /// large to cache.
    pub fn refresh(&mut self, answer: Answer, status: Option<&AuthStatus>, now_ms: u64) -> bool {
        self.refreshing_since_ms = None;
        let answer = match answer {
            Answer::Denied { category, reason } => Answer::Denied {
                category,
                reason: truncated(reason, MAX_REASON_BYTES),
            },
            other => other,
        };
        let plan = status.and_then(|status| status.plan.clone());
        let reports: Vec<UsageReport> = status.map_or_else(Vec::new, |status| {
            status.usage_reports.iter().map(backend_report).collect()
        });
        let hierarchy = status.map_or_else(Hierarchy::new, |status| status.hierarchy.clone());
        if reports.len() > MAX_REPORTS
            || hierarchy.len() > MAX_LINKS
            || codec::answer_len(&answer, plan.as_deref(), &reports, &hierarchy) > MAX_ANSWER_BYTES
        {
            return false;
        }
        self.settle_accepted(&reports, now_ms);
        self.refreshed_at_ms = if answer == Answer::Unknown { 0 } else { now_ms };
        self.answer = answer;
        self.plan = plan;
        self.used = vec![0; reports.len()];
        self.reports = reports;
        self.hierarchy = hierarchy;
        self.roll_periods(now_ms / 1000);
        self.unreported.expire_awaiting(now_ms);
        self.charge_unreported();
        true
    }

    /// Whether 3scale's new values (`fresh`, before any local usage) show the usage it accepted
    /// applied: for every limit it lands on whose period did not change since the last answer, the
    /// value grew by at least that usage. Then (or after [`ACCEPTED_KEPT_MS`]) it stops counting;
    /// until then a refresh does not forget usage apisonator's worker has not applied yet. Another
    /// gateway's usage can make the growth look sufficient early: then this entry counts less, as
    /// any gateway that shares an application does between refreshes.
    fn settle_accepted(&mut self, fresh: &[UsageReport], now_ms: u64) {
        let accepted = self.unreported.accepted();
        if accepted.is_empty() {
            return;
        }
        let expired = now_ms.saturating_sub(self.unreported.accepted_at_ms) > ACCEPTED_KEPT_MS;
        let mut comparable = false;
        let mut shown = true;
        for (old, used) in self.reports.iter().zip(&self.used) {
            let landing: u64 = accepted
                .iter()
                .filter(|tally| lands_on(&self.hierarchy, &old.metric, &tally.metric))
                .map(|tally| tally.delta)
                .sum();
            let Some(new) = fresh.iter().find(|new| {
                new.metric == old.metric
                    && new.period == old.period
                    && new.period_end == old.period_end
            }) else {
                continue;
            };
            if landing == 0 {
                continue;
            }
            comparable = true;
            let before = old.current_value.saturating_sub(*used);
            shown &= new.current_value >= before.saturating_add(landing);
        }
        if expired || (comparable && shown) {
            self.unreported.settle_accepted();
        }
    }

    /// Rolls every limit whose period ended before `now_s` into the current period.
    fn roll_periods(&mut self, now_s: u64) {
        for (report, used) in self.reports.iter_mut().zip(self.used.iter_mut()) {
            roll(report, used, now_s);
        }
    }

    /// Sets each limit's `used` to the unacknowledged usage landing on it.
    fn charge_unreported(&mut self) {
        for (report, used) in self.reports.iter_mut().zip(self.used.iter_mut()) {
            let applied = self
                .unreported
                .counted()
                .filter(|tally| lands_on(&self.hierarchy, &report.metric, &tally.metric))
                .fold(0u64, |total, tally| total.saturating_add(tally.delta));
            *used = applied;
            add_to_report(report, applied);
        }
    }

    /// How old 3scale's answer is.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.refreshed_at_ms)
    }

    /// 3scale confirmed the application: its usage may share a report with other applications'
    /// (apisonator voids a whole report when one transaction is invalid).
    pub fn confirmed(&self) -> bool {
        self.answer.confirmed()
    }

    /// Claims the refresh so that one worker calls 3scale: `true` when no refresh is running or
    /// the running one started more than `stuck_after_ms` ago (its worker died or its callout
    /// was lost). Records `now_ms` as the start of this one.
    pub fn claim_refresh(&mut self, now_ms: u64, stuck_after_ms: u64) -> bool {
        let free = self
            .refreshing_since_ms
            .is_none_or(|since| now_ms.saturating_sub(since) > stuck_after_ms);
        if free {
            self.refreshing_since_ms = Some(now_ms);
        }
        free
    }

    /// When the running refresh was claimed, if one is.
    pub fn refreshing_since_ms(&self) -> Option<u64> {
        self.refreshing_since_ms
    }

    /// Decides one request against the cached answer and limits, at `now_s` (UNIX seconds).
    ///
    /// Allowed: the usage is charged on the limits and pending under code 0. Refused: nothing
    /// is charged (limits may still roll over; writing that back is optional). An
    /// [`Answer::Unknown`] entry refuses with `backend_unavailable`: it holds no decision, so the
    /// caller's failure policy applies.
    pub fn admit(&mut self, usage: &Usage, now_s: u64) -> Admission {
        self.admit_with(usage, now_s, true)
    }

    /// Like [`Entry::admit`], but an allowed request's usage joins the pending report only when
    /// its response code is known ([`Entry::record`]), so every reported transaction pairs usage
    /// with the code its client got (a flush can never catch it in between).
    pub fn admit_awaiting_code(&mut self, usage: &Usage, now_s: u64) -> Admission {
        self.admit_with(usage, now_s, false)
    }

    fn admit_with(&mut self, usage: &Usage, now_s: u64, pending: bool) -> Admission {
        match &self.answer {
            Answer::Authorized | Answer::LimitsOnly => {}
            Answer::Denied { category, .. } => return self.refused(*category, None, None),
            Answer::Unknown => return self.refused(Category::BackendUnavailable, None, None),
        }
        self.roll_periods(now_s);
        if let Some((category, retry_after)) = self.blocking(usage, now_s) {
            let rate_limit = most_constraining(&self.reports, &self.hierarchy, usage, now_s);
            return self.refused(category, retry_after, rate_limit);
        }
        self.charge_limits(usage);
        if pending {
            self.add_pending(usage, 0);
        } else {
            self.await_code(usage, now_s);
        }
        Admission::Allowed {
            plan: self.plan.clone(),
            rate_limit: most_constraining(&self.reports, &self.hierarchy, usage, now_s),
        }
    }

    fn refused(
        &self,
        category: Category,
        retry_after: Option<u64>,
        rate_limit: Option<RateLimit>,
    ) -> Admission {
        Admission::Refused {
            category,
            retry_after,
            rate_limit,
            plan: self.plan.clone(),
        }
    }

    /// The refusal `usage` earns, as apisonator decides it: a limit blocks when its effective
    /// current plus the request's share exceeds its maximum. A blocking limit of 0 means the
    /// plan withholds the method; otherwise the client may retry once the latest blocking
    /// period has ended.
    fn blocking(&self, usage: &Usage, now_s: u64) -> Option<(Category, Option<u64>)> {
        let mut blocked = false;
        let mut disabled = false;
        // `None` once a blocking limit never resets.
        let mut latest_end = Some(now_s);
        for (report, delta) in applicable_reports(&self.reports, &self.hierarchy, usage) {
            if report.current_value.saturating_add(delta) <= report.max_value {
                continue;
            }
            blocked = true;
            disabled |= report.max_value == 0;
            latest_end = match (latest_end, report.period, report.period_end) {
                (Some(latest), period, Some(end)) if period != Period::Eternity => {
                    Some(latest.max(end))
                }
                _ => None,
            };
        }
        if !blocked {
            return None;
        }
        if disabled {
            return Some((Category::MethodDisabled, None));
        }
        let retry_after = latest_end.map(|end| end.saturating_sub(now_s));
        Some((Category::LimitsExceeded, retry_after))
    }

    /// Charges `usage` on every limit it lands on and records it as pending.
    fn charge_limits(&mut self, usage: &Usage) {
        for (report, used) in self.reports.iter_mut().zip(self.used.iter_mut()) {
            let delta = self.hierarchy.applied_delta(&report.metric, usage);
            *used = used.saturating_add(delta);
            add_to_report(report, delta);
        }
    }

    fn await_code(&mut self, usage: &Usage, now_s: u64) {
        for (metric, delta) in usage.iter() {
            self.unreported
                .awaiting(metric, delta, now_s.saturating_mul(1000));
        }
    }

    /// A request admitted at `admitted_at_s` with `usage` awaiting its code got `code` (0: no
    /// response): its usage stops awaiting and joins the pending report under that code.
    pub fn record(&mut self, usage: &Usage, code: u16, admitted_at_s: u64) {
        self.record_requests(usage, code, 1, admitted_at_s);
    }

    /// [`Entry::record`] for `requests` requests at once, `usage` their sum: how a worker's lease
    /// returns its finished requests (`crate::lease`).
    pub fn record_requests(&mut self, usage: &Usage, code: u16, requests: u64, admitted_at_s: u64) {
        for (metric, delta) in usage.iter() {
            self.unreported.answered(metric, delta, admitted_at_s);
        }
        self.add_pending_requests(usage, code, requests);
    }

    /// Usage awaiting its code since `admitted_at_s` awaits it from `now_ms` on: a lease renewed
    /// while its requests are in progress keeps their units counted under its new stamp.
    pub fn restamp(&mut self, usage: &Usage, admitted_at_s: u64, now_ms: u64) {
        for (metric, delta) in usage.iter() {
            self.unreported.answered(metric, delta, admitted_at_s);
            self.unreported.awaiting(metric, delta, now_ms);
        }
    }

    /// How many requests of `shape` fit in `1 / share` of what is left under every limit they
    /// land on, at `now_s` (`u64::MAX` when no limit applies).
    pub fn requests_within(&mut self, shape: &Usage, share: u64, now_s: u64) -> u64 {
        self.roll_periods(now_s);
        applicable_reports(&self.reports, &self.hierarchy, shape)
            .filter(|(_, delta)| *delta > 0)
            .map(|(report, delta)| {
                report.max_value.saturating_sub(report.current_value) / share.max(1) / delta
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// When the first of the limits' current periods ends (UNIX seconds), if one ever does.
    pub fn first_period_end(&self) -> Option<u64> {
        self.reports
            .iter()
            .filter(|report| report.period != Period::Eternity)
            .filter_map(|report| report.period_end)
            .min()
    }

    /// Adds one request's usage to the pending report, under its response code (0: not known).
    fn add_pending(&mut self, usage: &Usage, code: u16) {
        self.add_pending_requests(usage, code, 1);
    }

    fn add_pending_requests(&mut self, usage: &Usage, code: u16, requests: u64) {
        for (metric, delta) in usage.iter() {
            self.unreported.add(code, metric, delta);
        }
        if requests > 0 && usage.iter().any(|(_, delta)| delta > 0) {
            self.unreported.add(code, REQUESTS, requests);
        }
    }

    /// A request admitted at `admitted_at_s` with `usage` awaiting its code was refused before
    /// reaching the upstream (`no_route_for_plan`): its usage stops awaiting and comes off the
    /// limits, never reported.
    pub fn give_back(&mut self, usage: &Usage, admitted_at_s: u64) {
        self.release(usage, admitted_at_s, true);
    }

    /// Usage awaiting its code since `admitted_at_s` stops awaiting; with `uncharge`, it also
    /// comes off the limits (a lease's unspent units, when no period rolled over since).
    /// Only what was found awaiting comes off: an entry that replaced the one the usage was
    /// admitted in (its slot was reused) never counted it.
    pub fn release(&mut self, usage: &Usage, admitted_at_s: u64, uncharge: bool) {
        let found =
            usage.map(|metric, delta| self.unreported.answered(metric, delta, admitted_at_s));
        if !uncharge {
            return;
        }
        let usage = &found;
        for (report, used) in self.reports.iter_mut().zip(self.used.iter_mut()) {
            // At most what the period holds. Admission and give-back happen in one callback, so a
            // period rolling in between (another worker, at the boundary) is rare; it then takes
            // this request's units from others' and undercounts by them once.
            let delta = self
                .hierarchy
                .applied_delta(&report.metric, usage)
                .min(*used);
            *used -= delta;
            report.current_value = report.current_value.saturating_sub(delta);
            report.exceeded = report.current_value > report.max_value;
        }
    }

    /// Charges usage let through without consulting the limits (fail-open policies, entries
    /// without an answer).
    pub fn admit_unchecked(&mut self, usage: &Usage, now_s: u64) {
        self.roll_periods(now_s);
        self.charge_limits(usage);
        self.add_pending(usage, 0);
    }

    /// [`Entry::admit_unchecked`] whose usage waits for its response code ([`Entry::record`]).
    pub fn admit_unchecked_awaiting_code(&mut self, usage: &Usage, now_s: u64) {
        self.roll_periods(now_s);
        self.charge_limits(usage);
        self.await_code(usage, now_s);
    }

    /// The upstream answered `code` to a request admitted with `usage`: its pending usage moves
    /// from "code not known" to `code`. Usage already sent, codes 3scale would reject (not
    /// 100-999) and codes beyond [`super::MAX_CODES`] distinct ones stay without a code.
    pub fn record_code(&mut self, usage: &Usage, code: u16) {
        for (metric, delta) in usage.iter() {
            self.unreported.record_code(code, metric, delta);
        }
        self.unreported.record_code(code, REQUESTS, 1);
    }

    /// Marks the entry as queued for the report when usage waits in it and it was not queued
    /// yet: `true` when the caller must queue its slot ([`crate::report::mark_dirty`]).
    pub fn mark_dirty(&mut self) -> bool {
        let newly = !self.dirty && self.has_pending();
        self.dirty |= newly;
        newly
    }

    /// Whether usage waits to be reported.
    pub fn has_pending(&self) -> bool {
        !self.unreported.pending.is_empty()
    }

    /// Moves all pending usage into in-flight batch `batch`, sent at `now_ms`, and returns it as
    /// one transaction per response code (`None`: code not known, no `log[code]`). Clears
    /// `dirty`. Returns nothing when nothing is pending or [`super::MAX_BATCHES`] batches are
    /// already in flight (resolve abandoned ones first).
    pub fn take_pending(&mut self, batch: u64, now_ms: u64) -> Transactions {
        self.dirty = false;
        self.unreported.take(batch, now_ms)
    }

    /// 3scale accepted `batch` (202): its usage is in 3scale's counters now. Returns its units.
    pub fn ack(&mut self, batch: u64) -> u64 {
        self.unreported.ack(batch)
    }

    /// `batch` never reached 3scale (no answer at all): its usage is pending again. Returns its
    /// units.
    pub fn retry(&mut self, batch: u64) -> u64 {
        self.unreported.retry(batch)
    }

    /// `batch` timed out after being sent, or was abandoned: drop its usage (uncertain) rather
    /// than risk reporting it twice. Returns the units dropped.
    pub fn forget(&mut self, batch: u64) -> u64 {
        self.unreported.forget(batch)
    }

    /// In-flight batches sent more than `older_than_ms` ago: their sender is gone (VM reload),
    /// so the caller should [`Entry::forget`] them.
    pub fn abandoned_batches(&self, now_ms: u64, older_than_ms: u64) -> Vec<u64> {
        self.unreported.abandoned(now_ms, older_than_ms)
    }

    /// The limits with their effective current (`current_value`) and the usage admitted on each
    /// since the refresh.
    pub fn limits(&self) -> impl Iterator<Item = (&UsageReport, u64)> {
        self.reports.iter().zip(self.used.iter().copied())
    }

    pub fn usage_reports(&self) -> &[UsageReport] {
        &self.reports
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// Pending usage, per response code (0: not known yet) and metric.
    pub fn pending(&self) -> impl Iterator<Item = &Tally> {
        self.unreported
            .pending()
            .iter()
            .filter(|tally| tally.metric != REQUESTS)
    }

    pub fn inflight(&self) -> &[Batch] {
        self.unreported.batches()
    }

    /// Usage 3scale accepted that no answer has shown applied yet.
    pub fn accepted(&self) -> &[Tally] {
        self.unreported.accepted()
    }

    pub fn pending_units(&self) -> u64 {
        self.unreported.pending_units()
    }

    pub fn inflight_units(&self) -> u64 {
        self.unreported.inflight_units()
    }

    /// The compact binary form stored in shared data (see [`crate::cache`]).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Reads [`Entry::encode`]'s output; `None` for anything else. Never panics.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        codec::decode(bytes)
    }
}

/// A 3scale usage report as the cache keeps it: no period start, `exceeded` recomputed.
fn backend_report(report: &UsageReport) -> UsageReport {
    UsageReport {
        metric: report.metric.clone(),
        period: report.period,
        period_start: None,
        period_end: report.period_end,
        max_value: report.max_value,
        current_value: report.current_value,
        exceeded: report.current_value > report.max_value,
    }
}

fn add_to_report(report: &mut UsageReport, delta: u64) {
    report.current_value = report.current_value.saturating_add(delta);
    report.exceeded = report.current_value > report.max_value;
}

/// Whether usage of `metric` lands on a limit of `limited`: itself or one of its descendants.
fn lands_on(hierarchy: &Hierarchy, limited: &str, metric: &str) -> bool {
    metric == limited || hierarchy.is_ancestor(limited, metric)
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncated(mut text: String, max: usize) -> String {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}
