//! `per_request` mode with response codes: usage 3scale authorized that it has not been told yet.
//!
//! That mode asks `authorize` before the request and reports its usage with the response code after
//! the response (3scale keeps a `log[code]` only with usage in the same transaction). Between the two,
//! 3scale's counters do not show the request, so every request of a burst would be authorized against
//! the same count. So each application's admitted, not yet reported usage is held in shared data (every
//! worker of the Envoy sees it), and an authorization asks with that usage plus its own: 3scale then
//! refuses exactly the request that would pass the limit, sequential or concurrent. A request holds its
//! usage from just before it asks (so concurrent requests see each other) until its report is answered,
//! or until it is refused. Usage is held per minute of admission and let go after
//! [`HOLD_MINUTES`], so that the usage of requests whose VM died does not stay held for ever.

use std::rc::Rc;

use crate::credentials::Credentials;
use crate::store::{SharedStore, update};
use crate::usage::Usage;

/// How long usage stays held at most (a report is resent for about half a minute at most).
pub const HOLD_MINUTES: u64 = 5;

/// One request's held usage: what to give back, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    key: String,
    minute: u64,
    usage: Vec<(String, u64)>,
}

/// Minute buckets of held usage: `minute metric=n metric=n` per line.
type Buckets = Vec<(u64, Vec<(String, u64)>)>;

fn decode(value: Option<&[u8]>) -> Buckets {
    let text = value.map(String::from_utf8_lossy).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let minute = parts.next()?.parse().ok()?;
            let usage = parts
                .filter_map(|pair| {
                    let (metric, n) = pair.split_once('=')?;
                    Some((metric.to_string(), n.parse().ok()?))
                })
                .collect();
            Some((minute, usage))
        })
        .collect()
}

fn encode(buckets: &Buckets) -> Vec<u8> {
    let mut text = String::new();
    for (minute, usage) in buckets
        .iter()
        .filter(|(_, u)| u.iter().any(|(_, n)| *n > 0))
    {
        text.push_str(&minute.to_string());
        for (metric, n) in usage.iter().filter(|(_, n)| *n > 0) {
            text.push_str(&format!(" {metric}={n}"));
        }
        text.push('\n');
    }
    text.into_bytes()
}

fn add(into: &mut Vec<(String, u64)>, metric: &str, n: u64) {
    match into.iter_mut().find(|(m, _)| m == metric) {
        Some((_, held)) => *held = held.saturating_add(n),
        None => into.push((metric.to_string(), n)),
    }
}

/// Holds `usage` of an application and returns what to ask 3scale with: the usage every request of the
/// application holds, this one's included. None when shared data could not be written (the request
/// then asks with its own usage only, as without holding).
pub fn hold(
    store: &impl SharedStore,
    prefix: &str,
    service: &str,
    application: &Credentials,
    usage: &Usage,
    now_s: u64,
) -> Option<(Hold, Usage)> {
    let key = format!(
        "{prefix}.held.{}",
        crate::cache::cache_key(service, application, None)
    );
    let minute = now_s / 60;
    let own: Vec<(String, u64)> = usage.iter().map(|(m, n)| (m.to_string(), n)).collect();
    let total = update(store, &key, |value| {
        let mut buckets = decode(value);
        buckets.retain(|(m, _)| m + HOLD_MINUTES > minute);
        match buckets.iter_mut().find(|(m, _)| *m == minute) {
            Some((_, held)) => own.iter().for_each(|(metric, n)| add(held, metric, *n)),
            None => buckets.push((minute, own.clone())),
        }
        let mut total = Vec::new();
        for (_, held) in &buckets {
            held.iter()
                .for_each(|(metric, n)| add(&mut total, metric, *n));
        }
        (total, Some(encode(&buckets)))
    })?;
    let mut asked = Usage::new();
    for (metric, n) in total {
        asked.add(&Rc::from(metric.as_str()), n);
    }
    Some((
        Hold {
            key,
            minute,
            usage: own,
        },
        asked,
    ))
}

impl Hold {
    /// Gives the usage back: the request was refused, or its report was answered.
    pub fn release(&self, store: &impl SharedStore) {
        let _ = update(store, &self.key, |value| {
            let mut buckets = decode(value);
            if let Some((_, held)) = buckets.iter_mut().find(|(m, _)| *m == self.minute) {
                for (metric, n) in &self.usage {
                    if let Some((_, h)) = held.iter_mut().find(|(m, _)| m == metric) {
                        *h = h.saturating_sub(*n);
                    }
                }
            }
            ((), Some(encode(&buckets)))
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::usage::usage_of;

    fn app() -> Credentials {
        Credentials::AppId {
            app_id: "a".into(),
            app_key: None,
        }
    }

    fn units(usage: &Usage, metric: &str) -> u64 {
        usage
            .iter()
            .find(|(m, _)| *m == metric)
            .map_or(0, |(_, n)| n)
    }

    #[test]
    fn requests_ask_with_the_usage_held_before_them_until_it_is_released() {
        let store = MemoryStore::default();
        let one = usage_of(&[("hits", 1)]);
        let (first, asked) = hold(&store, "p", "svc", &app(), &one, 600).unwrap();
        assert_eq!(units(&asked, "hits"), 1);
        let (second, asked) = hold(&store, "p", "svc", &app(), &one, 601).unwrap();
        assert_eq!(units(&asked, "hits"), 2);
        first.release(&store);
        let (_, asked) = hold(&store, "p", "svc", &app(), &one, 602).unwrap();
        assert_eq!(units(&asked, "hits"), 2, "the second and this one");
        second.release(&store);
        let other = Credentials::UserKey("u".into());
        let (_, asked) = hold(&store, "p", "svc", &other, &one, 602).unwrap();
        assert_eq!(units(&asked, "hits"), 1, "per application");
    }

    #[test]
    fn held_usage_is_let_go_after_a_few_minutes() {
        let store = MemoryStore::default();
        let one = usage_of(&[("hits", 1)]);
        let _never_released = hold(&store, "p", "svc", &app(), &one, 0).unwrap();
        let (_, asked) = hold(&store, "p", "svc", &app(), &one, 60 * HOLD_MINUTES).unwrap();
        assert_eq!(units(&asked, "hits"), 1);
    }
}
