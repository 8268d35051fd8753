//! Usage that 3scale has not acknowledged yet: pending (not sent) and in flight (sent, no answer).
//!
//! Pending usage is tallied per upstream response code and metric, raw (before the hierarchy:
//! 3scale adds a child's usage to its ancestors itself). A report takes every pending tally into
//! an in-flight batch; the batch's outcome then decides whether its usage is forgotten (accepted
//! or lost) or pending again (never arrived). Nothing else removes usage, so every unit admitted
//! is always in exactly one of: pending, in flight, acknowledged, forgotten.

/// In-flight batches an entry holds at most: beyond, [`super::Entry::take_pending`] leaves usage
/// pending until a batch is resolved (acknowledged, retried or forgotten as abandoned).
pub const MAX_BATCHES: usize = 4;

/// Distinct response codes pending at once. The usage of a request answered with yet another
/// code stays under code 0 (reported without `log[code]`): the code is lost, the usage is not.
pub const MAX_CODES: usize = 8;

/// Units of one metric, for requests whose upstream answered `code` (0: not known yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub code: u16,
    pub metric: String,
    pub delta: u64,
}

/// Usage sent in one report, waiting for 3scale's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub id: u64,
    pub sent_at_ms: u64,
    pub tallies: Vec<Tally>,
}

/// The pseudo-metric that counts requests per response code. 3scale counts one `log[code]` per
/// transaction, so a report needs one transaction per request for its codes to add up; metric
/// names are never empty, so this name cannot clash with a real metric.
pub const REQUESTS: &str = "";

/// The usage of `requests` requests whose upstream answered `code` (`None`: not known, no
/// `log[code]`), summed per metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub code: Option<u16>,
    pub requests: u64,
    pub usage: Vec<(String, u64)>,
}

/// A report's transactions for one application, one per response code.
pub type Transactions = Vec<Transaction>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unreported {
    pub(super) pending: Vec<Tally>,
    pub(super) batches: Vec<Batch>,
    /// Usage of requests admitted and still in progress (their response code decides their
    /// transaction): not reportable yet, but already on the limits, so a refresh keeps counting it.
    /// Here a tally's `code` is the minute its requests were admitted in ([`admission_minute`]):
    /// a request takes back exactly its own units, and units older than [`AWAITING_TIMEOUT_MS`]
    /// belong to requests whose VM died.
    pub(super) awaiting: Vec<Tally>,
    /// When usage last started awaiting its code.
    pub(super) awaiting_at_ms: u64,
    /// Usage 3scale accepted (202) that its answers have not been seen to include yet: apisonator
    /// applies reports later, in its worker. Counted on the limits until a refresh shows it applied
    /// (see `Entry::refresh`), for [`ACCEPTED_KEPT_MS`] at most. Per metric, `code` 0.
    pub(super) accepted: Vec<Tally>,
    /// When the newest accepted batch was sent.
    pub(super) accepted_at_ms: u64,
}

/// How long accepted usage is counted at most while no answer shows it applied (an answer cannot
/// show it when every limit it lands on started a new period since).
pub const ACCEPTED_KEPT_MS: u64 = 60_000;

/// How long usage may await its response code before it is taken for the usage of requests that
/// died with their VM (no request lasts this long through a gateway).
pub const AWAITING_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Admission minutes are kept modulo this cycle (15 hours, far beyond [`AWAITING_TIMEOUT_MS`]).
const MINUTE_CYCLE: u64 = 900;

/// The minute a request was admitted in, as awaiting tallies record it in their `code`: 100 plus
/// the minute modulo [`MINUTE_CYCLE`], so that it is also a valid `log[code]` and an entry stays
/// readable by an earlier version of the module sharing it during an upgrade.
pub fn admission_minute(now_s: u64) -> u16 {
    u16::try_from(100 + now_s / 60 % MINUTE_CYCLE).unwrap_or(0)
}

/// Minutes from `minute` to `now_minute`, both from [`admission_minute`]; None for a tally an
/// earlier version wrote (code 0: its age is not known).
fn minutes_since(minute: u16, now_minute: u16) -> Option<u64> {
    let minute = u64::from(minute).checked_sub(100)?;
    let now = u64::from(now_minute).saturating_sub(100);
    Some((now + MINUTE_CYCLE - minute % MINUTE_CYCLE) % MINUTE_CYCLE)
}

/// 3scale only accepts a 3-digit `log[code]`; anything else would void the whole report.
pub fn is_reportable_code(code: u16) -> bool {
    (100..=999).contains(&code)
}

impl Unreported {
    /// Adds `delta` units of `metric` under `code`, or under code 0 when `code` cannot be
    /// reported or too many codes are pending already.
    pub fn add(&mut self, code: u16, metric: &str, delta: u64) {
        if delta == 0 {
            return;
        }
        let code = if self.accepts_code(code) { code } else { 0 };
        match self.pending_mut(code, metric) {
            Some(tally) => tally.delta = tally.delta.saturating_add(delta),
            None => self.pending.push(Tally {
                code,
                metric: metric.to_owned(),
                delta,
            }),
        }
    }

    /// Moves up to `delta` units of `metric` from code 0 to `code`. Units already taken into a
    /// batch were sent without a code and stay that way.
    pub fn record_code(&mut self, code: u16, metric: &str, delta: u64) {
        if code == 0 || !self.accepts_code(code) {
            return;
        }
        let Some(unknown) = self.pending_mut(0, metric) else {
            return;
        };
        let moved = delta.min(unknown.delta);
        unknown.delta -= moved;
        self.pending.retain(|tally| tally.delta > 0);
        self.add(code, metric, moved);
    }

    fn accepts_code(&self, code: u16) -> bool {
        if code == 0 {
            return true;
        }
        is_reportable_code(code)
            && (self.pending.iter().any(|tally| tally.code == code)
                || self.pending_codes() < MAX_CODES)
    }

    fn pending_codes(&self) -> usize {
        let mut codes: Vec<u16> = self.pending.iter().map(|tally| tally.code).collect();
        codes.sort_unstable();
        codes.dedup();
        codes.iter().filter(|&&code| code != 0).count()
    }

    fn pending_mut(&mut self, code: u16, metric: &str) -> Option<&mut Tally> {
        self.pending
            .iter_mut()
            .find(|tally| tally.code == code && tally.metric == metric)
    }

    /// Moves every pending tally into batch `id` (sent at `now_ms`) and returns them as
    /// transactions, code 0 first then by code. A batch id already in flight gets the new usage
    /// added. Returns nothing when nothing is pending or [`MAX_BATCHES`] are in flight.
    pub fn take(&mut self, id: u64, now_ms: u64) -> Transactions {
        let existing = self.batches.iter().position(|batch| batch.id == id);
        if self.pending.is_empty() || (existing.is_none() && self.batches.len() >= MAX_BATCHES) {
            return Vec::new();
        }
        let tallies = std::mem::take(&mut self.pending);
        let transactions = transactions(&tallies);
        match existing.and_then(|index| self.batches.get_mut(index)) {
            Some(batch) => {
                for tally in tallies {
                    match batch
                        .tallies
                        .iter_mut()
                        .find(|t| t.code == tally.code && t.metric == tally.metric)
                    {
                        Some(t) => t.delta = t.delta.saturating_add(tally.delta),
                        None => batch.tallies.push(tally),
                    }
                }
            }
            None => self.batches.push(Batch {
                id,
                sent_at_ms: now_ms,
                tallies,
            }),
        }
        transactions
    }

    /// Removes batch `id` and returns it; `None` when it is not in flight.
    fn remove(&mut self, id: u64) -> Option<Batch> {
        let index = self.batches.iter().position(|batch| batch.id == id)?;
        Some(self.batches.remove(index))
    }

    /// 3scale accepted batch `id`: its usage will be in 3scale's counters once applied, and is
    /// counted as accepted until then. Returns its units.
    pub fn ack(&mut self, id: u64) -> u64 {
        let Some(batch) = self.remove(id) else {
            return 0;
        };
        for tally in batch
            .tallies
            .iter()
            .filter(|t| t.metric != REQUESTS && t.delta > 0)
        {
            self.accepted_at_ms = self.accepted_at_ms.max(batch.sent_at_ms);
            match self.accepted.iter_mut().find(|a| a.metric == tally.metric) {
                Some(accepted) => accepted.delta = accepted.delta.saturating_add(tally.delta),
                None => self.accepted.push(Tally {
                    code: 0,
                    metric: tally.metric.clone(),
                    delta: tally.delta,
                }),
            }
        }
        units(&batch.tallies)
    }

    /// An answer showed the accepted usage applied, or it was kept long enough: it stops counting.
    pub fn settle_accepted(&mut self) {
        self.accepted.clear();
        self.accepted_at_ms = 0;
    }

    pub fn accepted(&self) -> &[Tally] {
        &self.accepted
    }

    /// Batch `id` never reached 3scale: its usage is pending again. Returns its units.
    pub fn retry(&mut self, id: u64) -> u64 {
        let Some(batch) = self.remove(id) else {
            return 0;
        };
        let moved = units(&batch.tallies);
        for tally in batch.tallies {
            self.add(tally.code, &tally.metric, tally.delta);
        }
        moved
    }

    /// Batch `id` may or may not have reached 3scale: drop it rather than risk counting it
    /// twice. Returns the units dropped.
    pub fn forget(&mut self, id: u64) -> u64 {
        self.ack(id)
    }

    /// Batches sent more than `older_than_ms` before `now_ms`.
    pub fn abandoned(&self, now_ms: u64, older_than_ms: u64) -> Vec<u64> {
        self.batches
            .iter()
            .filter(|batch| now_ms.saturating_sub(batch.sent_at_ms) > older_than_ms)
            .map(|batch| batch.id)
            .collect()
    }

    /// Usage of a request admitted at `now_ms` and in progress, until [`Unreported::answered`].
    pub fn awaiting(&mut self, metric: &str, delta: u64, now_ms: u64) {
        if delta == 0 {
            return;
        }
        self.awaiting_at_ms = self.awaiting_at_ms.max(now_ms);
        let minute = admission_minute(now_ms / 1000);
        match self
            .awaiting
            .iter_mut()
            .find(|tally| tally.code == minute && tally.metric == metric)
        {
            Some(tally) => tally.delta = tally.delta.saturating_add(delta),
            None => self.awaiting.push(Tally {
                code: minute,
                metric: metric.to_owned(),
                delta,
            }),
        }
    }

    /// A request admitted at `admitted_at_s` ended: up to `delta` units of `metric` admitted in
    /// its minute stop awaiting (they are then recorded as pending with their code, or given back).
    /// Units already let go as too old are not taken from other requests.
    pub fn answered(&mut self, metric: &str, delta: u64, admitted_at_s: u64) -> u64 {
        let minute = admission_minute(admitted_at_s);
        let mut found = 0;
        if let Some(tally) = self
            .awaiting
            .iter_mut()
            .find(|tally| tally.code == minute && tally.metric == metric)
        {
            found = tally.delta.min(delta);
            tally.delta -= found;
        }
        self.awaiting.retain(|tally| tally.delta > 0);
        found
    }

    /// Lets go of awaiting usage admitted more than [`AWAITING_TIMEOUT_MS`] before `now_ms`: its
    /// requests died with their VM (no request lasts this long through a gateway).
    pub fn expire_awaiting(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.awaiting_at_ms) > AWAITING_TIMEOUT_MS {
            // Nothing admitted for longer than the timeout (or a minute count that wrapped).
            self.awaiting.clear();
            return;
        }
        let now_minute = admission_minute(now_ms / 1000);
        let timeout_minutes = AWAITING_TIMEOUT_MS / 60_000;
        // Tallies of unknown age go at once: at worst a request in progress through an upgrade
        // stops counting on the limits a little early.
        self.awaiting.retain(|tally| {
            minutes_since(tally.code, now_minute).is_some_and(|age| age <= timeout_minutes)
        });
    }

    /// Everything the limits must count beyond 3scale's values: unacknowledged, in progress, and
    /// accepted but not yet seen applied.
    pub fn counted(&self) -> impl Iterator<Item = &Tally> {
        self.tallies()
            .chain(self.awaiting.iter())
            .chain(self.accepted.iter())
    }

    /// Every tally not yet acknowledged: pending, then in flight.
    pub fn tallies(&self) -> impl Iterator<Item = &Tally> {
        self.pending
            .iter()
            .chain(self.batches.iter().flat_map(|batch| batch.tallies.iter()))
    }

    pub fn pending(&self) -> &[Tally] {
        &self.pending
    }

    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    pub fn pending_units(&self) -> u64 {
        units(&self.pending)
    }

    pub fn inflight_units(&self) -> u64 {
        self.batches.iter().fold(0, |total, batch| {
            total.saturating_add(units(&batch.tallies))
        })
    }
}

/// Usage units, not counting the request counts.
fn units(tallies: &[Tally]) -> u64 {
    tallies
        .iter()
        .filter(|tally| tally.metric != REQUESTS)
        .fold(0, |total, tally| total.saturating_add(tally.delta))
}

/// Groups tallies into one transaction per code, code 0 (`None`) first, metrics in order.
fn transactions(tallies: &[Tally]) -> Transactions {
    let mut codes: Vec<u16> = tallies.iter().map(|tally| tally.code).collect();
    codes.sort_unstable();
    codes.dedup();
    codes
        .into_iter()
        .map(|code| {
            let of_code = || tallies.iter().filter(move |tally| tally.code == code);
            let usage = of_code()
                .filter(|tally| tally.metric != REQUESTS)
                .map(|tally| (tally.metric.clone(), tally.delta))
                .collect();
            let requests = of_code()
                .find(|tally| tally.metric == REQUESTS)
                .map_or(1, |tally| tally.delta);
            Transaction {
                code: (code != 0).then_some(code),
                requests,
                usage,
            }
        })
        .filter(|transaction| !transaction.usage.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn pending(unreported: &Unreported) -> Vec<(u16, &str, u64)> {
        unreported
            .pending()
            .iter()
            .map(|t| (t.code, t.metric.as_str(), t.delta))
            .collect()
    }

    #[test]
    fn admission_minutes_are_valid_codes_and_ages_wrap_with_their_cycle() {
        for now_s in [0, 59, 60, 899 * 60, 900 * 60, 1_795_000_000, u64::MAX] {
            assert!(is_reportable_code(admission_minute(now_s)), "{now_s}");
        }
        let at = |minute: u64| admission_minute(minute * 60);
        assert_eq!(minutes_since(at(5), at(5)), Some(0));
        assert_eq!(minutes_since(at(5), at(16)), Some(11));
        assert_eq!(
            minutes_since(at(895), at(905)),
            Some(10),
            "across the cycle"
        );
        assert_eq!(
            minutes_since(0, at(5)),
            None,
            "written by an earlier version"
        );
    }

    #[test]
    fn usage_adds_up_per_code_and_metric() {
        let mut unreported = Unreported::default();
        unreported.add(0, "hits", 1);
        unreported.add(0, "get", 2);
        unreported.add(0, "hits", 3);
        unreported.add(0, "zero", 0);
        assert_eq!(pending(&unreported), vec![(0, "hits", 4), (0, "get", 2)]);
        unreported.add(200, "hits", 1);
        assert_eq!(pending(&unreported).len(), 3);
        assert_eq!(unreported.pending_units(), 7);
    }

    #[test]
    fn codes_move_only_what_is_still_unknown() {
        let mut unreported = Unreported::default();
        unreported.add(0, "hits", 3);
        unreported.record_code(200, "hits", 2);
        assert_eq!(pending(&unreported), vec![(0, "hits", 1), (200, "hits", 2)]);
        unreported.record_code(503, "hits", 5);
        assert_eq!(
            pending(&unreported),
            vec![(200, "hits", 2), (503, "hits", 1)]
        );
        // Nothing unknown left: nothing moves, nothing is invented.
        unreported.record_code(404, "hits", 1);
        unreported.record_code(404, "missing", 1);
        assert_eq!(unreported.pending_units(), 3);
        assert_eq!(
            pending(&unreported),
            vec![(200, "hits", 2), (503, "hits", 1)]
        );
    }

    #[test]
    fn unreportable_codes_and_too_many_codes_stay_unknown() {
        let mut unreported = Unreported::default();
        unreported.add(0, "hits", 100);
        for code in [0, 1, 99, 1000, u16::MAX] {
            unreported.record_code(code, "hits", 1);
        }
        assert_eq!(pending(&unreported), vec![(0, "hits", 100)]);
        for code in 200..200 + MAX_CODES as u16 + 3 {
            unreported.record_code(code, "hits", 1);
        }
        assert_eq!(unreported.pending_codes(), MAX_CODES);
        assert_eq!(
            unreported.pending_mut(0, "hits").unwrap().delta,
            100 - MAX_CODES as u64
        );
        // A code already pending still takes usage.
        unreported.record_code(200, "hits", 1);
        assert_eq!(unreported.pending_mut(200, "hits").unwrap().delta, 2);
        assert_eq!(unreported.pending_units(), 100);
    }

    fn transaction(code: Option<u16>, requests: u64, usage: &[(&str, u64)]) -> Transaction {
        let usage = usage.iter().map(|(m, d)| (m.to_string(), *d)).collect();
        Transaction {
            code,
            requests,
            usage,
        }
    }

    #[test]
    fn take_groups_by_code_and_moves_everything_in_flight() {
        let mut unreported = Unreported::default();
        unreported.add(0, "hits", 1);
        unreported.add(200, "hits", 2);
        unreported.add(200, "get", 3);
        unreported.add(404, "hits", 4);
        let transactions = unreported.take(7, 1_000);
        assert_eq!(
            transactions,
            vec![
                transaction(None, 1, &[("hits", 1)]),
                transaction(Some(200), 1, &[("hits", 2), ("get", 3)]),
                transaction(Some(404), 1, &[("hits", 4)]),
            ]
        );
        assert!(unreported.pending().is_empty());
        assert_eq!(unreported.inflight_units(), 10);
        assert_eq!(unreported.take(8, 1_000), Vec::new());
        assert_eq!(unreported.batches().len(), 1);
        // Request counts travel as their own tally and become one transaction per request.
        unreported.add(200, REQUESTS, 3);
        unreported.add(200, "hits", 5);
        assert_eq!(
            unreported.take(9, 1_000),
            vec![transaction(Some(200), 3, &[("hits", 5)])]
        );
        assert_eq!(
            unreported.inflight_units(),
            15,
            "request counts are not usage"
        );
    }

    #[test]
    fn batch_outcomes() {
        let mut unreported = Unreported::default();
        unreported.add(200, "hits", 2);
        unreported.take(1, 10);
        unreported.add(200, "hits", 3);
        unreported.take(2, 20);
        unreported.add(0, "hits", 5);
        unreported.take(3, 30);
        assert_eq!(unreported.abandoned(40, 15), vec![1, 2]);
        assert_eq!(unreported.abandoned(40, 0), vec![1, 2, 3]);
        assert_eq!(unreported.ack(1), 2);
        assert_eq!(unreported.retry(2), 3);
        assert_eq!(pending(&unreported), vec![(200, "hits", 3)]);
        assert_eq!(unreported.forget(3), 5);
        assert_eq!(
            (unreported.ack(1), unreported.retry(9), unreported.forget(3)),
            (0, 0, 0)
        );
        assert!(unreported.batches().is_empty());
    }

    #[test]
    fn batches_are_capped_and_ids_merge() {
        let mut unreported = Unreported::default();
        for id in 0..MAX_BATCHES as u64 {
            unreported.add(0, "hits", 1);
            assert_eq!(unreported.take(id, 0).len(), 1);
        }
        unreported.add(0, "hits", 1);
        assert!(unreported.take(99, 0).is_empty());
        assert_eq!(unreported.pending_units(), 1);
        // The same id again joins its batch.
        unreported.add(0, "get", 1);
        assert_eq!(unreported.take(0, 5).len(), 1);
        assert_eq!(unreported.batches()[0].tallies.len(), 2);
        assert_eq!(unreported.batches()[0].tallies[0].delta, 2);
        assert_eq!(unreported.batches()[0].sent_at_ms, 0);
        assert_eq!(unreported.inflight_units(), MAX_BATCHES as u64 + 2);
    }
}
