//! Envoy stats the filter keeps (they appear as `wasmcustom.tollgate.<name>`).

use crate::category::Category;

/// A counter. The glue defines one Envoy metric per variant at configuration time.
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
}

impl Stat {
    /// Every stat, in a fixed order (the glue's metric table follows it).
    pub fn all() -> Vec<Stat> {
        let mut all = vec![Stat::Allowed, Stat::Unmatched];
        all.extend(Category::ALL.into_iter().map(Stat::Denied));
        all.extend([
            Stat::BackendCalls,
            Stat::BackendErrors,
            Stat::BackendDispatchFailures,
        ]);
        all
    }

    pub fn name(self) -> String {
        match self {
            Stat::Allowed => "tollgate.allowed".to_string(),
            Stat::Denied(category) => format!("tollgate.denied.{}", category.code()),
            Stat::Unmatched => "tollgate.unmatched".to_string(),
            Stat::BackendCalls => "tollgate.backend.calls".to_string(),
            Stat::BackendErrors => "tollgate.backend.errors".to_string(),
            Stat::BackendDispatchFailures => "tollgate.backend.dispatch_failures".to_string(),
        }
    }

    /// Position in [`Stat::all`].
    pub fn index(self) -> usize {
        match self {
            Stat::Allowed => 0,
            Stat::Unmatched => 1,
            Stat::Denied(category) => {
                2 + Category::ALL
                    .iter()
                    .position(|c| *c == category)
                    .unwrap_or(0)
            }
            Stat::BackendCalls => 2 + Category::ALL.len(),
            Stat::BackendErrors => 3 + Category::ALL.len(),
            Stat::BackendDispatchFailures => 4 + Category::ALL.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_order_of_all() {
        for (i, stat) in Stat::all().into_iter().enumerate() {
            assert_eq!(stat.index(), i, "{stat:?}");
        }
    }
}
