//! One log line when 3scale stops answering for a service, and one when it answers again: per Envoy,
//! whatever the number of workers.
//!
//! During an outage every request of the service fails the same way; what an operator needs is when
//! it started, why, when it ended and what the failure policy did meanwhile. The outage is a record
//! in shared data per service (`{prefix}.outage.{service}`): the worker whose compare-and-swap
//! opens it logs the start, every failed request adds to its counts, and the worker whose
//! compare-and-swap closes it (the first answer from 3scale afterwards) logs the end with the
//! duration and the counts. Requests that find no record to update cost one shared-data read.

use crate::store::{SharedStore, update};

/// What the failure policy did with a request 3scale could not decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Refused,
}

/// An open outage of one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Record {
    started_at_ms: u64,
    allowed: u64,
    refused: u64,
}

impl Record {
    fn encode(self) -> Vec<u8> {
        [self.started_at_ms, self.allowed, self.refused]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect()
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let mut words = bytes
            .chunks_exact(8)
            .map(|w| w.try_into().map(u64::from_le_bytes));
        let record = Record {
            started_at_ms: words.next()?.ok()?,
            allowed: words.next()?.ok()?,
            refused: words.next()?.ok()?,
        };
        (bytes.len() == 24).then_some(record)
    }
}

/// Where 3scale failed: what the log lines name.
pub struct Failure<'a> {
    pub service: &'a str,
    pub cluster: &'a str,
    /// `authrep`, `authorize` or `report`.
    pub endpoint: &'a str,
    /// Why (refused, timed out, HTTP status and 3scale's error code, unreadable answer).
    pub cause: &'a str,
    /// How long the call took, against its timeout: a call that took its whole timeout timed out.
    pub elapsed_ms: u64,
    pub timeout_ms: u64,
    /// The service's failure policy, as configured (`deny`, `allow`, `allow_cached`).
    pub policy: &'a str,
}

fn key(prefix: &str, service: &str) -> String {
    format!("{prefix}.outage.{service}")
}

/// 3scale could not decide a request of `failure.service`; the failure policy did `outcome` with it.
/// Logs the start of the outage when this call opens it.
pub fn failed(
    store: &impl SharedStore,
    prefix: &str,
    failure: &Failure<'_>,
    outcome: Option<Outcome>,
    now_ms: u64,
) {
    let opened = update(store, &key(prefix, failure.service), |current| {
        let open = current.and_then(Record::decode);
        let mut record = open.unwrap_or(Record {
            started_at_ms: now_ms,
            ..Record::default()
        });
        match outcome {
            Some(Outcome::Allowed) => record.allowed = record.allowed.saturating_add(1),
            Some(Outcome::Refused) => record.refused = record.refused.saturating_add(1),
            None => {}
        }
        (open.is_none(), Some(record.encode()))
    });
    if opened == Some(true) {
        log::warn!(
            "tollgate: service {}: 3scale outage started: {} through cluster `{}` failed after {} ms (timeout {} ms): {}; failure policy `{}` decides until 3scale answers",
            failure.service,
            failure.endpoint,
            failure.cluster,
            failure.elapsed_ms,
            failure.timeout_ms,
            failure.cause,
            failure.policy
        );
    }
}

/// 3scale answered a call of `service`: logs the end of its outage, if one was open.
pub fn answered(store: &impl SharedStore, prefix: &str, service: &str, now_ms: u64) {
    let key = key(prefix, service);
    let open = store
        .get(&key)
        .is_some_and(|(bytes, _)| Record::decode(&bytes).is_some());
    if !open {
        return;
    }
    let closed = update(store, &key, |current| {
        match current.and_then(Record::decode) {
            Some(record) => (Some(record), Some(Vec::new())),
            None => (None, None),
        }
    });
    if let Some(Some(record)) = closed {
        let ms = now_ms.saturating_sub(record.started_at_ms);
        log::warn!(
            "tollgate: service {service}: 3scale outage ended after {}.{} s; meanwhile the failure policy allowed {} request(s) and refused {}",
            ms / 1000,
            ms % 1000 / 100,
            record.allowed,
            record.refused
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::memory::MemoryStore;

    fn failure() -> Failure<'static> {
        Failure {
            service: "svc",
            cluster: "threescale_backend",
            endpoint: "authorize",
            cause: "connection refused",
            elapsed_ms: 2,
            timeout_ms: 1000,
            policy: "deny",
        }
    }

    fn record(store: &MemoryStore) -> Option<Record> {
        Record::decode(&store.get("p.outage.svc")?.0)
    }

    #[test]
    fn an_outage_opens_once_counts_what_the_policy_did_and_closes_once() {
        let store = MemoryStore::default();
        answered(&store, "p", "svc", 500);
        assert!(store.get("p.outage.svc").is_none(), "nothing to close");
        failed(&store, "p", &failure(), Some(Outcome::Refused), 1_000);
        failed(&store, "p", &failure(), Some(Outcome::Allowed), 1_500);
        failed(&store, "p", &failure(), None, 1_600);
        assert_eq!(
            record(&store),
            Some(Record {
                started_at_ms: 1_000,
                allowed: 1,
                refused: 1
            })
        );
        answered(&store, "p", "svc", 13_400);
        assert_eq!(record(&store), None);
        failed(&store, "p", &failure(), None, 20_000);
        assert_eq!(record(&store).unwrap().started_at_ms, 20_000, "a new one");
    }

    #[test]
    fn a_record_of_another_size_is_no_outage() {
        assert_eq!(Record::decode(&[0; 23]), None);
        assert_eq!(Record::decode(&[0; 32]), None);
        assert_eq!(Record::decode(&[]), None);
    }
}
