//! A `usage[...]` hash turned into counter updates, as apisonator's `Metric::Collection` does it:
//! names stripped and resolved, values checked, child usage added to every ancestor.

use crate::errors::ApiError;
use crate::params::{Hash, Param};
use crate::ruby;
use crate::store::Metrics;

/// Guard against parent cycles (apisonator would loop forever).
const MAX_DEPTH: usize = 64;

/// Processed usage: metric id → raw value (`"3"` increments, `"#3"` sets), in first-seen order.
pub type ProcessedUsage = Vec<(String, String)>;

/// Validates and resolves a usage hash; with `flat_usage` parents are left alone.
///
/// Entries are checked in order, each value before its name, so the first bad entry decides
/// between `usage_value_invalid` and `metric_invalid`.
pub fn process_usage(
    metrics: &Metrics,
    usage: &Hash,
    flat_usage: bool,
) -> Result<ProcessedUsage, ApiError> {
    let mut parsed: ProcessedUsage = Vec::with_capacity(usage.len() + 1);
    for (raw_name, value) in usage.iter() {
        let name = ruby::strip(raw_name);
        let value = match value {
            Param::Str(t) if ruby::is_sane_usage_value(&t.value) => t.value.clone(),
            Param::Str(t) if !ruby::is_blank(&t.value) => {
                return Err(ApiError::UsageValueInvalid {
                    metric: name.to_owned(),
                    value: Some(t.value.clone()),
                });
            }
            _ => {
                return Err(ApiError::UsageValueInvalid {
                    metric: name.to_owned(),
                    value: None,
                });
            }
        };
        let id = metrics
            .id_of(name)
            .ok_or_else(|| ApiError::MetricInvalid(name.to_owned()))?;
        upsert(&mut parsed, id, value);
    }
    if flat_usage {
        return Ok(parsed);
    }
    let mut with_parents = parsed.clone();
    for (id, value) in &parsed {
        let is_set = ruby::is_set_operation(value);
        let mut current = id.clone();
        for _ in 0..MAX_DEPTH {
            let Some(parent) = metrics.parent_id_of(&current).map(str::to_owned) else {
                break;
            };
            if is_set {
                upsert(&mut with_parents, &parent, value.clone());
            } else {
                // Ruby's `memo[id].to_i + val.to_i`: a "#n" already there counts as 0.
                let before = with_parents
                    .iter()
                    .find(|(k, _)| *k == parent)
                    .map_or(0, |(_, v)| ruby::to_i(v));
                upsert(
                    &mut with_parents,
                    &parent,
                    before.saturating_add(ruby::to_i(value)).to_string(),
                );
            }
            current = parent;
        }
    }
    Ok(with_parents)
}

fn upsert(usage: &mut ProcessedUsage, id: &str, value: String) {
    match usage.iter_mut().find(|(k, _)| k == id) {
        Some((_, v)) => *v = value,
        None => usage.push((id.to_owned(), value)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::params::parse_nested_query;

    fn metrics() -> Metrics {
        let mut m = Metrics::default();
        m.save("1", "hits", None);
        m.save("2", "get_hello", Some("1"));
        m.save("3", "deep", Some("2"));
        m.save("4", "other", None);
        m
    }

    fn run(query: &str, flat: bool) -> Result<ProcessedUsage, ApiError> {
        let p = parse_nested_query(query.as_bytes()).unwrap();
        process_usage(&metrics(), p.get("usage").unwrap().as_hash().unwrap(), flat)
    }

    fn pairs(v: &[(&str, &str)]) -> ProcessedUsage {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn child_usage_counts_on_every_ancestor() {
        assert_eq!(
            run("usage[deep]=3", false).unwrap(),
            pairs(&[("3", "3"), ("2", "3"), ("1", "3")])
        );
    }

    #[test]
    fn hits_and_child_at_once_adds_up() {
        assert_eq!(
            run("usage[hits]=1&usage[get_hello]=1", false).unwrap(),
            pairs(&[("1", "2"), ("2", "1")])
        );
    }

    #[test]
    fn flat_usage_leaves_parents_alone() {
        assert_eq!(
            run("usage[get_hello]=1", true).unwrap(),
            pairs(&[("2", "1")])
        );
    }

    #[test]
    fn set_operations_propagate_as_sets() {
        assert_eq!(
            run("usage[get_hello]=%235", false).unwrap(),
            pairs(&[("2", "#5"), ("1", "#5")])
        );
    }

    #[test]
    fn names_are_stripped_values_checked_first() {
        assert_eq!(
            run("usage[%20hits%20]=1", false).unwrap(),
            pairs(&[("1", "1")])
        );
        assert_eq!(
            run("usage[nope]=x", false),
            Err(ApiError::UsageValueInvalid {
                metric: "nope".into(),
                value: Some("x".into())
            })
        );
        assert_eq!(
            run("usage[nope]=1", false),
            Err(ApiError::MetricInvalid("nope".into()))
        );
        assert_eq!(
            run("usage[hits]=", false),
            Err(ApiError::UsageValueInvalid {
                metric: "hits".into(),
                value: None
            })
        );
        assert_eq!(
            run("usage[hits]", false),
            Err(ApiError::UsageValueInvalid {
                metric: "hits".into(),
                value: None
            })
        );
        assert_eq!(
            run("usage[hits][x]=1", false),
            Err(ApiError::UsageValueInvalid {
                metric: "hits".into(),
                value: None
            })
        );
        assert_eq!(
            run("usage[hits]=-1", false).unwrap_err().code(),
            "usage_value_invalid"
        );
        assert_eq!(
            run("usage[other]=1&usage[nope]=x", false)
                .unwrap_err()
                .code(),
            "usage_value_invalid"
        );
    }

    #[test]
    fn zero_is_valid() {
        assert_eq!(run("usage[other]=0", false).unwrap(), pairs(&[("4", "0")]));
    }
}
