//! Usage: how much of each metric a request costs, as mapping rules computed it.

use std::rc::Rc;

/// Metric deltas in the order the metrics were first seen (stable, so callouts and debug headers are
/// deterministic). Metric names are shared with the compiled configuration, so building a `Usage`
/// never copies a name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    entries: Vec<(Rc<str>, u64)>,
}

/// Usage from (metric, delta) pairs: what tests write instead of mapping rules.
#[cfg(test)]
pub fn usage_of(entries: &[(&str, u64)]) -> Usage {
    let mut usage = Usage::new();
    for (metric, delta) in entries {
        usage.add(&Rc::from(*metric), *delta);
    }
    usage
}

impl Usage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `delta` to `metric`, summing with what earlier rules added.
    pub fn add(&mut self, metric: &Rc<str>, delta: u64) {
        match self.entries.iter_mut().find(|(name, _)| name == metric) {
            Some((_, total)) => *total = total.saturating_add(delta),
            None => self.entries.push((Rc::clone(metric), delta)),
        }
    }

    /// The delta for `metric`, 0 when absent.
    pub fn get(&self, metric: &str) -> u64 {
        self.entries
            .iter()
            .find(|(name, _)| &**name == metric)
            .map_or(0, |(_, delta)| *delta)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries.iter().map(|(name, delta)| (&**name, *delta))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Units over every metric (what the report stats count).
    pub fn units(&self) -> u64 {
        self.entries.iter().map(|(_, delta)| delta).sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds every delta of `other`.
    pub fn add_all(&mut self, other: &Usage) {
        for (metric, delta) in &other.entries {
            self.add(metric, *delta);
        }
    }

    /// Takes every delta of `other` off (never below 0); metrics that reach 0 stay, at 0.
    pub fn take_all(&mut self, other: &Usage) {
        for (metric, delta) in &other.entries {
            if let Some((_, total)) = self.entries.iter_mut().find(|(name, _)| name == metric) {
                *total = total.saturating_sub(*delta);
            }
        }
    }

    /// Raises each metric of `other` to at least its delta there.
    pub fn raise_to(&mut self, other: &Usage) {
        for (metric, delta) in &other.entries {
            match self.entries.iter_mut().find(|(name, _)| name == metric) {
                Some((_, total)) => *total = (*total).max(*delta),
                None => self.entries.push((Rc::clone(metric), *delta)),
            }
        }
    }

    /// Every delta multiplied by `factor`.
    pub fn times(&self, factor: u64) -> Usage {
        self.map(|_, delta| delta.saturating_mul(factor))
    }

    /// Whether `self + more` stays within `limit`, metric by metric.
    pub fn fits(&self, more: &Usage, limit: &Usage) -> bool {
        more.iter()
            .all(|(metric, delta)| self.get(metric).saturating_add(delta) <= limit.get(metric))
    }

    /// The same metrics, each delta replaced by `f(metric, delta)`, without those left at 0.
    pub fn map(&self, mut f: impl FnMut(&str, u64) -> u64) -> Usage {
        Usage {
            entries: self
                .entries
                .iter()
                .map(|(metric, delta)| (Rc::clone(metric), f(metric, *delta)))
                .filter(|(_, delta)| *delta > 0)
                .collect(),
        }
    }

    /// `self - less`, metric by metric (never below 0), without the metrics left at 0.
    pub fn minus(&self, less: &Usage) -> Usage {
        self.map(|metric, delta| delta.saturating_sub(less.get(metric)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_for_the_same_metric_add_up_in_first_seen_order() {
        let hits: Rc<str> = Rc::from("hits");
        let get: Rc<str> = Rc::from("get_hello");
        let mut usage = Usage::new();
        usage.add(&hits, 1);
        usage.add(&get, 2);
        usage.add(&hits, 3);
        assert_eq!(
            usage.iter().collect::<Vec<_>>(),
            vec![("hits", 4), ("get_hello", 2)]
        );
        assert_eq!(usage.get("missing"), 0);
    }
}
