//! Envoy stats the filter keeps (they appear as `wasmcustom.tollgate.<name>`).

use crate::category::Category;

/// A distribution Envoy keeps as a histogram (percentiles in its stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Histogram {
    /// Milliseconds from a call to 3scale to its answer or failure, for every kind of call.
    BackendLatencyMs,
}

impl Histogram {
    pub const ALL: [Histogram; 1] = [Histogram::BackendLatencyMs];

    pub fn name(self) -> &'static str {
        match self {
            Histogram::BackendLatencyMs => "tollgate.backend.latency_ms",
        }
    }

    /// Position in [`Histogram::ALL`].
    pub fn index(self) -> usize {
        match self {
            Histogram::BackendLatencyMs => 0,
        }
    }
}

/// A counter. The glue defines one Envoy metric per stat at configuration time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Requests let through to the upstream.
    Allowed,
    /// Requests refused, by category.
    Denied(Category),
    /// Requests of no service passed through (unknown_service: pass).
    Unmatched,
    /// Callouts to 3scale, and how they ended.
    BackendCalls,
    BackendErrors,
    BackendDispatchFailures,
    /// Cache: decided locally / asked 3scale first / decided on an entry older than the refresh
    /// interval / background refreshes sent / could not be cached (every probed slot still had
    /// usage to report).
    CacheHits,
    CacheMisses,
    CacheStale,
    CacheRefreshes,
    CacheUncachable,
    /// Let through by a failure policy while 3scale could not answer.
    FailOpen,
    /// Reports: calls sent; usage units that entered a report (pending or awaiting its code in a
    /// cache entry, or a report of its own), then by outcome.
    ReportCalls,
    QueuedUnits,
    ReportedUnits,
    RetriedUnits,
    DroppedUnits,
    UncertainUnits,
    /// The admin portal: fetch rounds started, rounds that failed, versions refused (invalid, or a
    /// pin to a version that does not exist).
    PortalFetches,
    PortalErrors,
    PortalRejections,
}

/// Every stat but the per-category denials, in index order after them.
const COUNTERS: [(Stat, &str); 20] = [
    (Stat::Allowed, "allowed"),
    (Stat::Unmatched, "unmatched"),
    (Stat::BackendCalls, "backend.calls"),
    (Stat::BackendErrors, "backend.errors"),
    (Stat::BackendDispatchFailures, "backend.dispatch_failures"),
    (Stat::CacheHits, "cache.hits"),
    (Stat::CacheMisses, "cache.misses"),
    (Stat::CacheStale, "cache.stale"),
    (Stat::CacheRefreshes, "cache.refreshes"),
    (Stat::CacheUncachable, "cache.uncachable"),
    (Stat::FailOpen, "failure_policy.allowed"),
    (Stat::ReportCalls, "reports.calls"),
    (Stat::QueuedUnits, "reports.queued"),
    (Stat::ReportedUnits, "reports.sent"),
    (Stat::RetriedUnits, "reports.retried"),
    (Stat::DroppedUnits, "reports.dropped"),
    (Stat::UncertainUnits, "reports.uncertain"),
    (Stat::PortalFetches, "portal.fetches"),
    (Stat::PortalErrors, "portal.errors"),
    (Stat::PortalRejections, "portal.rejections"),
];

impl Stat {
    /// Every stat, in [`Stat::index`] order.
    pub fn all() -> Vec<Stat> {
        let denied = Category::ALL.into_iter().map(Stat::Denied);
        denied
            .chain(Self::counters().map(|(stat, _)| stat))
            .collect()
    }

    fn counters() -> impl Iterator<Item = (Stat, &'static str)> {
        COUNTERS.into_iter()
    }

    pub fn name(self) -> String {
        match self {
            Stat::Denied(category) => format!("tollgate.denied.{}", category.code()),
            other => {
                let name = Self::counters()
                    .find(|(stat, _)| *stat == other)
                    .map_or("", |(_, n)| n);
                format!("tollgate.{name}")
            }
        }
    }

    /// Position in [`Stat::all`].
    pub fn index(self) -> usize {
        match self {
            Stat::Denied(category) => Category::ALL
                .iter()
                .position(|c| *c == category)
                .unwrap_or(0),
            other => {
                Category::ALL.len()
                    + Self::counters()
                        .position(|(stat, _)| stat == other)
                        .unwrap_or(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_order_of_all_and_names_are_unique() {
        let all = Stat::all();
        for (i, stat) in all.iter().enumerate() {
            assert_eq!(stat.index(), i, "{stat:?}");
        }
        let mut names: Vec<String> = all.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(Stat::UncertainUnits.name(), "tollgate.reports.uncertain");
    }
}
