//! The authorization cache entry: one per (service, credentials, referrer), shared by every Envoy
//! worker through proxy-wasm shared data, written (with CAS) when a worker renews or returns its
//! lease on it (`crate::lease`), when 3scale answers, and when reports go out.
//!
//! An [`Entry`] holds 3scale's last answer for the application (authorized, denied and why, or
//! only its limits deciding), its plan, every usage limit and the metric hierarchy, plus what
//! Tollgate did since: the usage admitted on each limit, the usage not reported yet (pending, per
//! response code and metric) and the usage reported but not acknowledged (in flight, per batch).
//! Requests are decided locally, as apisonator would: a limit applies when the request uses its
//! metric or a descendant, and allows the request while
//! `current at refresh + used since + this request's share <= max`.
//!
//! Accuracy rests on two rules. At a refresh, 3scale's counters include what it acknowledged but
//! not what is pending or in flight, so the new `used` is exactly that unacknowledged usage.
//! Between refreshes, limits roll over at the same UTC calendar boundaries as apisonator's
//! (`period.rs`).
//!
//! Pure logic, no hostcalls: the shared-data store, the refresh callouts and the report loop use
//! this module; it never calls them.
//!
//! # Bytes per entry
//!
//! The encoding (`codec.rs`) writes each metric name once and every number as a varint. An entry
//! is bounded part by part, each bound enforced here:
//!
//! - header: the key, at most [`MAX_KEY_BYTES`] ([`Entry::new`] refuses longer ones), plus 24;
//! - the answer (plan, reason, names, limits, hierarchy): at most [`MAX_ANSWER_BYTES`], counted
//!   with every counter at its widest so that usage admitted later cannot grow it; at most
//!   [`MAX_REPORTS`] limits and [`MAX_LINKS`] parent links. [`Entry::new`] returns `None` and
//!   [`Entry::refresh`] `false` for larger answers;
//! - the usage: pending holds at most `M × (1 + MAX_CODES)` tallies for the `M` metrics the
//!   service's mapping rules name, a batch in flight at most as many (ids are not reused), and
//!   at most [`MAX_BATCHES`] are in flight. A tally takes at most 14 bytes, a batch header 22,
//!   the two list counts 3, and each metric name not already in the answer its length plus 2.
//!
//! So an entry never exceeds `6259 + 630 × M + Σ (usage-only name + 2)` bytes: about 9.2 KiB
//! for `M = 5`. That needs a 2 KiB key, an answer at the 4 KiB limit, 8 response codes and 4
//! batches in flight at once. A typical entry (a 10-byte key, a plan with 4 limits on 3 metrics
//! and its hierarchy, 2 metrics pending under 3 codes) takes 129 bytes (asserted in the tests),
//! so 100k applications fit in about 12 MB of values at that size.
//!
//! Entries outlive the build that wrote them: a build reads every older format from
//! [`OLDEST_READABLE`] on and leaves newer ones alone, so an upgrade or a rollback of the module
//! loses no pending usage (`codec.rs`).

mod codec;
mod entry;
mod key;
pub mod known;
mod period;
pub mod slots;
#[cfg(test)]
mod tests;
mod unreported;

pub use codec::{OLDEST_READABLE, VERSION, is_newer, stored_key};
pub use entry::{
    Admission, Answer, Entry, MAX_ANSWER_BYTES, MAX_KEY_BYTES, MAX_LINKS, MAX_REASON_BYTES,
    MAX_REPORTS,
};
pub use key::{PROBES, cache_key, parse_key, slot};
pub use period::period_end_after;
pub use unreported::{
    ACCEPTED_KEPT_MS, AWAITING_TIMEOUT_MS, Batch, MAX_BATCHES, MAX_CODES, REQUESTS, Tally,
    Transaction, Transactions,
};
