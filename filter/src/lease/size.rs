//! How many requests a lease is sized for: what the last lease of the worker saw, within what the
//! limits have left.

use super::MAX_REQUESTS;

/// A worker's first lease on an application (nothing known yet about its rate).
pub const FIRST: u64 = 4;

/// Requests wanted for the next lease, from the one it replaces: how many that one admitted and
/// whether a request did not fit before it expired (then the rate is at least twice as high).
pub fn wanted(previous: Option<(u64, bool)>) -> u64 {
    let requests = match previous {
        None => FIRST,
        Some((admitted, true)) => admitted.saturating_mul(2),
        Some((admitted, false)) => admitted.saturating_add(admitted / 2).saturating_add(1),
    };
    requests.clamp(1, MAX_REQUESTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_grows_when_it_runs_out_and_shrinks_to_what_was_used_when_it_expires() {
        assert_eq!(wanted(None), FIRST);
        assert_eq!(wanted(Some((4, true))), 8);
        assert_eq!(wanted(Some((40, true))), MAX_REQUESTS);
        assert_eq!(wanted(Some((10, false))), 16);
        assert_eq!(wanted(Some((0, false))), 1);
    }
}
