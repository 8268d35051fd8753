//! Rate-limited logging: during a 3scale outage every request fails the same way, and one line per
//! request would flood the logs.

use std::cell::RefCell;

/// At most one line of a kind per service in this interval.
pub const OUTAGE_LOG_INTERVAL_MS: u64 = 10_000;

/// Per key: the first occurrence is logged at once, then at most one per interval, carrying how
/// many were suppressed since the last line.
#[derive(Debug)]
pub struct Throttle {
    interval_ms: u64,
    /// Few keys (one per service that failed): a list is smaller in the module than a map.
    keys: Vec<(String, Seen)>,
}

#[derive(Debug)]
struct Seen {
    logged_at_ms: u64,
    suppressed: u64,
}

impl Throttle {
    pub fn new(interval_ms: u64) -> Throttle {
        Throttle {
            interval_ms,
            keys: Vec::new(),
        }
    }

    /// An occurrence for `key` at `now_ms`: `Some(suppressed since the last line)` when it is to
    /// be logged, `None` when it is suppressed.
    pub fn allow(&mut self, key: &str, now_ms: u64) -> Option<u64> {
        let Some((_, seen)) = self.keys.iter_mut().find(|(k, _)| k == key) else {
            let seen = Seen {
                logged_at_ms: now_ms,
                suppressed: 0,
            };
            self.keys.push((key.to_string(), seen));
            return Some(0);
        };
        if now_ms.saturating_sub(seen.logged_at_ms) < self.interval_ms {
            seen.suppressed = seen.suppressed.saturating_add(1);
            return None;
        }
        seen.logged_at_ms = now_ms;
        Some(std::mem::take(&mut seen.suppressed))
    }
}

thread_local! {
    static OUTAGE: RefCell<Throttle> = RefCell::new(Throttle::new(OUTAGE_LOG_INTERVAL_MS));
}

/// Warns that `service_id`'s usage was dropped, at most once per [`OUTAGE_LOG_INTERVAL_MS`] per
/// service (drops come in bursts during an outage).
pub fn warn_dropped(service_id: &str, now_ms: u64, what: std::fmt::Arguments<'_>) {
    warn_service(&format!("{service_id}\0dropped"), service_id, now_ms, what);
}

fn warn_service(key: &str, service_id: &str, now_ms: u64, what: std::fmt::Arguments<'_>) {
    let Some(suppressed) = OUTAGE.with(|throttle| throttle.borrow_mut().allow(key, now_ms)) else {
        return;
    };
    if suppressed == 0 {
        log::warn!("tollgate: service {service_id}: {what}");
    } else {
        log::warn!(
            "tollgate: service {service_id}: {what} ({suppressed} more since the last such line)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_per_interval_with_the_count_suppressed() {
        let mut throttle = Throttle::new(10_000);
        assert_eq!(throttle.allow("a", 1_000), Some(0));
        assert_eq!(throttle.allow("a", 1_001), None);
        assert_eq!(throttle.allow("a", 10_999), None);
        assert_eq!(throttle.allow("b", 5_000), Some(0), "per key");
        assert_eq!(throttle.allow("a", 11_000), Some(2));
        assert_eq!(throttle.allow("a", 11_500), None);
        assert_eq!(throttle.allow("a", 60_000), Some(1));
        assert_eq!(throttle.allow("a", 90_000), Some(0), "nothing in between");
        assert_eq!(throttle.allow("b", 5_001), None);
    }

    #[test]
    fn a_clock_going_back_suppresses_until_the_interval_has_passed() {
        let mut throttle = Throttle::new(10_000);
        assert_eq!(throttle.allow("a", 50_000), Some(0));
        assert_eq!(throttle.allow("a", 40_000), None);
        assert_eq!(throttle.allow("a", 60_000), Some(1));
    }
}
