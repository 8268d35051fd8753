//! Envoy stats the filter keeps (they appear as `wasmcustom.tollgate.<name>`).
//!
//! Every stat of a request or a report that belongs to a service is kept twice: for the Envoy
//! (`tollgate.<name>`) and for its service (`tollgate.service.<label>.<name>`). The shipped Envoy
//! configurations turn the label into a Prometheus label (`tollgate_service`) with a stats tag
//! extractor, and the category of a denial into `tollgate_category`; so
//! `wasmcustom.tollgate.service.svc-1.denied.auth_failed` is exported as
//! `tollgate_service_denied{tollgate_service="svc-1",tollgate_category="auth_failed"}`,
//! a family of its own beside the Envoy-wide `tollgate_denied`, so that summing
//! one never counts the other. The labels come from the configuration only (service ids,
//! categories): nothing a client sends can add a series.

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
    /// Answers to calls to 3scale, by endpoint and HTTP status class (`None`: no answer).
    Answered(BackendEndpoint, StatusClass),
}

/// The 3scale endpoint of a call, as stats name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendEndpoint {
    Authrep,
    Authorize,
    Report,
}

impl BackendEndpoint {
    const ALL: [BackendEndpoint; 3] = [
        BackendEndpoint::Authrep,
        BackendEndpoint::Authorize,
        BackendEndpoint::Report,
    ];

    fn name(self) -> &'static str {
        match self {
            BackendEndpoint::Authrep => "authrep",
            BackendEndpoint::Authorize => "authorize",
            BackendEndpoint::Report => "report",
        }
    }
}

/// An answer's HTTP status, by class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    ClientError,
    ServerError,
    Other,
    /// No answer: refused, reset, timed out.
    None,
}

impl StatusClass {
    const ALL: [StatusClass; 5] = [
        StatusClass::Success,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Other,
        StatusClass::None,
    ];

    pub fn of(status: Option<u16>) -> StatusClass {
        match status {
            Some(200..=299) => StatusClass::Success,
            Some(400..=499) => StatusClass::ClientError,
            Some(500..=599) => StatusClass::ServerError,
            Some(_) => StatusClass::Other,
            None => StatusClass::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Other => "other",
            StatusClass::None => "none",
        }
    }
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
        let answered = BackendEndpoint::ALL.into_iter().flat_map(|endpoint| {
            StatusClass::ALL
                .into_iter()
                .map(move |class| Stat::Answered(endpoint, class))
        });
        denied
            .chain(Self::counters().map(|(stat, _)| stat))
            .chain(answered)
            .collect()
    }

    fn counters() -> impl Iterator<Item = (Stat, &'static str)> {
        COUNTERS.into_iter()
    }

    pub fn name(self) -> String {
        format!("tollgate.{}", self.suffix())
    }

    /// The name of this stat for one service (see [`service_label`]).
    pub fn service_name(self, label: &str) -> String {
        format!("tollgate.service.{label}.{}", self.suffix())
    }

    /// Whether the stat is kept per service too (the others belong to no service).
    pub fn per_service(self) -> bool {
        !matches!(
            self,
            Stat::Unmatched | Stat::PortalFetches | Stat::PortalErrors | Stat::PortalRejections
        )
    }

    fn suffix(self) -> String {
        match self {
            Stat::Denied(category) => format!("denied.{}", category.code()),
            Stat::Answered(endpoint, class) => {
                format!("backend.answers.{}.{}", endpoint.name(), class.name())
            }
            other => Self::counters()
                .find(|(stat, _)| *stat == other)
                .map_or("", |(_, n)| n)
                .to_string(),
        }
    }

    /// Position in [`Stat::all`].
    pub fn index(self) -> usize {
        match self {
            Stat::Denied(category) => Category::ALL
                .iter()
                .position(|c| *c == category)
                .unwrap_or(0),
            Stat::Answered(endpoint, class) => {
                let endpoint = BackendEndpoint::ALL
                    .iter()
                    .position(|e| *e == endpoint)
                    .unwrap_or(0);
                let class = StatusClass::ALL
                    .iter()
                    .position(|c| *c == class)
                    .unwrap_or(0);
                Category::ALL.len() + COUNTERS.len() + endpoint * StatusClass::ALL.len() + class
            }
            other => {
                Category::ALL.len()
                    + Self::counters()
                        .position(|(stat, _)| stat == other)
                        .unwrap_or(0)
            }
        }
    }
}

/// A service id as it can stand in a stat name: `.` separates the parts of a name (the tag
/// extractor would cut there) and Prometheus takes few characters, so anything but ASCII letters,
/// digits, `-` and `_` becomes `_`.
pub fn service_label(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_keep_the_label_one_part_of_the_name() {
        assert_eq!(service_label("svc-1"), "svc-1");
        assert_eq!(service_label("api.v2 é"), "api_v2__");
        assert_eq!(
            Stat::Denied(Category::AuthFailed).service_name("svc-1"),
            "tollgate.service.svc-1.denied.auth_failed"
        );
        assert_eq!(
            Stat::CacheHits.service_name("s"),
            "tollgate.service.s.cache.hits"
        );
        assert!(!Stat::Unmatched.per_service());
        assert_eq!(
            Stat::Answered(BackendEndpoint::Report, StatusClass::of(Some(503))).name(),
            "tollgate.backend.answers.report.5xx"
        );
        assert_eq!(StatusClass::of(None).name(), "none");
    }

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
