//! What apisonator keeps in Redis, kept in memory: services, service tokens, metrics and their
//! hierarchy, usage limits per plan, applications with keys, user keys and referrer filters,
//! usage counters per calendar period, response codes and integration errors.
//!
//! The shapes follow apisonator's storage rather than a tidy model where the difference is
//! visible from outside: application keys outlive a deleted application, limits are stored per
//! (service, plan id, metric id, period), and set members come back in Redis' order.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::clock::{Clock, Period};
use crate::ruby::{self, redis_set_order};

/// apisonator keeps the latest 1000 integration errors per service.
const MAX_STORED_ERRORS: usize = 1000;
/// Old period buckets kept per (application, metric, period); only current ones are ever read.
const MAX_BUCKETS: usize = 256;
/// Guard against parent cycles in a metric hierarchy (apisonator would loop forever).
const MAX_HIERARCHY_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub provider_key: String,
    /// `"1"` (user_key), `"2"` (app_id/app_key) or `"oauth"`; absent for legacy services.
    pub backend_version: Option<String>,
    pub active: bool,
    pub referrer_filters_required: bool,
}

impl Service {
    pub fn is_oauth(&self) -> bool {
        self.backend_version.as_deref() == Some("oauth")
    }

    /// Ruby's `backend_version.to_i == 1`: user_key services skip the app_key check.
    pub fn is_user_key_mode(&self) -> bool {
        self.backend_version
            .as_deref()
            .is_some_and(|v| ruby::to_i(v) == 1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
}

/// A service's metrics, with the name index and the Redis set order of their ids.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Insertion order.
    list: Vec<Metric>,
    /// Indexes into `list` in the order `SMEMBERS` would return the ids.
    ordered: Vec<usize>,
    /// name → id (the last metric saved with that name wins, as in Redis).
    by_name: HashMap<String, String>,
}

impl Metrics {
    pub fn save(&mut self, id: &str, name: &str, parent_id: Option<&str>) -> Metric {
        match self.list.iter_mut().find(|m| m.id == id) {
            Some(existing) => {
                if existing.name != name {
                    self.by_name.remove(&existing.name);
                    existing.name = name.to_owned();
                }
                if let Some(parent) = parent_id {
                    existing.parent_id = Some(parent.to_owned());
                }
            }
            None => self.list.push(Metric {
                id: id.to_owned(),
                name: name.to_owned(),
                parent_id: parent_id.map(str::to_owned),
            }),
        }
        self.by_name.insert(name.to_owned(), id.to_owned());
        self.reorder();
        self.by_id(id).cloned().unwrap_or(Metric {
            id: id.into(),
            name: name.into(),
            parent_id: None,
        })
    }

    pub fn delete(&mut self, id: &str) -> bool {
        let Some(pos) = self.list.iter().position(|m| m.id == id) else {
            return false;
        };
        let removed = self.list.remove(pos);
        if self
            .by_name
            .get(&removed.name)
            .is_some_and(|owner| *owner == removed.id)
        {
            self.by_name.remove(&removed.name);
        }
        self.reorder();
        true
    }

    fn reorder(&mut self) {
        let mut order: Vec<(usize, &str)> = self
            .list
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.id.as_str()))
            .collect();
        redis_set_order(&mut order, |(_, id)| id);
        self.ordered = order.into_iter().map(|(i, _)| i).collect();
    }

    pub fn by_id(&self, id: &str) -> Option<&Metric> {
        self.list.iter().find(|m| m.id == id)
    }

    pub fn id_of(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    pub fn name_of(&self, id: &str) -> Option<&str> {
        self.by_id(id).map(|m| m.name.as_str())
    }

    pub fn parent_id_of(&self, id: &str) -> Option<&str> {
        self.by_id(id).and_then(|m| m.parent_id.as_deref())
    }

    /// Metrics in the order apisonator loads them (Redis set order of the ids).
    pub fn ordered(&self) -> impl Iterator<Item = &Metric> {
        self.ordered.iter().filter_map(|&i| self.list.get(i))
    }

    /// Names of the parent, grandparent, … of the metric called `name`.
    pub fn ancestor_names(&self, name: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut current = self.id_of(name).map(str::to_owned);
        while let Some(id) = current {
            let Some(parent) = self.parent_id_of(&id) else {
                break;
            };
            let Some(parent_name) = self.name_of(parent) else {
                break;
            };
            if names.len() >= MAX_HIERARCHY_DEPTH {
                break;
            }
            names.push(parent_name.to_owned());
            current = Some(parent.to_owned());
        }
        names
    }

    /// Names of the direct children of the metric called `name` (`None` if it has none).
    pub fn children_names(&self, name: &str) -> Option<Vec<&str>> {
        let children: Vec<&str> = self
            .ordered()
            .filter(|m| m.parent_id.as_deref().and_then(|p| self.name_of(p)) == Some(name))
            .map(|m| m.name.as_str())
            .collect();
        (!children.is_empty()).then_some(children)
    }

    /// Children, then each child's descendants (apisonator's `Metric.descendants` order).
    pub fn descendant_names(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_descendants(name, &mut out, 0);
        out
    }

    fn collect_descendants(&self, name: &str, out: &mut Vec<String>, depth: usize) {
        if depth >= MAX_HIERARCHY_DEPTH {
            return;
        }
        let children: Vec<String> = self
            .children_names(name)
            .unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect();
        out.extend(children.iter().cloned());
        for child in &children {
            self.collect_descendants(child, out, depth + 1);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    pub id: String,
    pub state: String,
    pub plan_id: Option<String>,
    pub plan_name: Option<String>,
    pub redirect_url: Option<String>,
}

impl Application {
    pub fn is_active(&self) -> bool {
        self.state == "active"
    }
}

/// One usage limit of a plan, resolved against the service's metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageLimit {
    pub metric_id: String,
    pub metric_name: String,
    pub period: Period,
    pub max_value: i64,
}

/// Counters of one metric of one application: per period, per period start.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    buckets: [Vec<(i64, i64)>; 7],
}

impl Counters {
    pub fn get(&self, period: Period, start: i64) -> i64 {
        self.buckets
            .get(period.index())
            .and_then(|b| b.iter().rev().find(|(s, _)| *s == start))
            .map_or(0, |(_, v)| *v)
    }

    /// Applies a raw usage value (`"3"` increments, `"#3"` sets) to the bucket at `start`.
    pub fn apply(&mut self, period: Period, start: i64, value: &str) {
        let Some(buckets) = self.buckets.get_mut(period.index()) else {
            return;
        };
        match buckets.iter_mut().rev().find(|(s, _)| *s == start) {
            Some((_, v)) => *v = ruby::apply_usage(value, *v),
            None => {
                buckets.push((start, ruby::apply_usage(value, 0)));
                buckets.sort_by_key(|(s, _)| *s);
                if buckets.len() > MAX_BUCKETS {
                    buckets.remove(0);
                }
            }
        }
    }
}

/// The response codes apisonator tracks (`stats/codes_commons.rb`).
pub const TRACKED_CODES: [&str; 8] = ["200", "2XX", "403", "404", "4XX", "500", "503", "5XX"];

/// Everything counted for one application.
#[derive(Clone, Debug, Default)]
pub struct AppStats {
    pub usage: HashMap<String, Counters>,
    /// Eternity totals, indexed like [`TRACKED_CODES`].
    pub codes: [u64; 8],
}

impl AppStats {
    /// Records a `log[code]` value: only a 3-digit string counts; only tracked codes and groups.
    pub fn record_response_code(&mut self, code: &str) {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        let group = format!("{}XX", code.get(..1).unwrap_or(""));
        for (i, tracked) in TRACKED_CODES.iter().enumerate() {
            if (*tracked == code || *tracked == group)
                && let Some(n) = self.codes.get_mut(i)
            {
                *n += 1;
            }
        }
    }
}

/// An error kept for `GET /internal/services/<id>/errors/`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredError {
    pub code: String,
    pub message: String,
    pub timestamp: String,
    pub context_info: serde_json::Value,
}

/// Everything stored under one service id (the service itself may not exist: apisonator stores
/// metrics, limits and applications by id without checking).
#[derive(Clone, Debug, Default)]
pub struct ServiceData {
    pub service: Option<Service>,
    pub metrics: Metrics,
    /// plan id → metric id → limit per period (indexed by [`Period::index`]).
    pub limits: HashMap<String, HashMap<String, [Option<i64>; 7]>>,
    pub applications: HashMap<String, Application>,
    /// app id → keys, in insertion order (a Redis set: no duplicates).
    pub app_keys: HashMap<String, Vec<String>>,
    pub referrer_filters: HashMap<String, Vec<String>>,
    /// user key → app id.
    pub user_keys: HashMap<String, String>,
    pub stats: HashMap<String, AppStats>,
    /// Newest first.
    pub errors: VecDeque<StoredError>,
}

impl ServiceData {
    /// The plan's usage limits on existing metrics: metrics in set order, periods longest first.
    pub fn usage_limits(&self, plan_id: Option<&str>) -> Vec<UsageLimit> {
        let Some(plan) = self.limits.get(plan_id.unwrap_or("")) else {
            return Vec::new();
        };
        self.metrics
            .ordered()
            .filter_map(|m| plan.get(&m.id).map(|limits| (m, limits)))
            .flat_map(|(m, limits)| {
                Period::ALL.into_iter().filter_map(move |p| {
                    limits
                        .get(p.index())
                        .copied()
                        .flatten()
                        .map(|max_value| UsageLimit {
                            metric_id: m.id.clone(),
                            metric_name: m.name.clone(),
                            period: p,
                            max_value,
                        })
                })
            })
            .collect()
    }

    pub fn set_limit(&mut self, plan_id: &str, metric_id: &str, period: Period, value: i64) {
        let limits = self
            .limits
            .entry(plan_id.to_owned())
            .or_default()
            .entry(metric_id.to_owned())
            .or_default();
        if let Some(slot) = limits.get_mut(period.index()) {
            *slot = Some(value);
        }
    }

    pub fn limit(&self, plan_id: &str, metric_id: &str, period: Period) -> Option<i64> {
        self.limits
            .get(plan_id)?
            .get(metric_id)?
            .get(period.index())
            .copied()
            .flatten()
    }

    pub fn delete_limit(&mut self, plan_id: &str, metric_id: &str, period: Period) {
        if let Some(slot) = self
            .limits
            .get_mut(plan_id)
            .and_then(|p| p.get_mut(metric_id))
            .and_then(|l| l.get_mut(period.index()))
        {
            *slot = None;
        }
    }

    /// The application's keys in Redis set order.
    pub fn keys_of(&self, app_id: &str) -> Vec<String> {
        let mut keys = self.app_keys.get(app_id).cloned().unwrap_or_default();
        redis_set_order(&mut keys, |k| k.as_str());
        keys
    }

    pub fn add_key(&mut self, app_id: &str, key: &str) {
        let keys = self.app_keys.entry(app_id.to_owned()).or_default();
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_owned());
        }
    }

    pub fn delete_key(&mut self, app_id: &str, key: &str) -> bool {
        let Some(keys) = self.app_keys.get_mut(app_id) else {
            return false;
        };
        let before = keys.len();
        keys.retain(|k| k != key);
        keys.len() != before
    }

    pub fn has_key(&self, app_id: &str, key: &str) -> bool {
        self.app_keys
            .get(app_id)
            .is_some_and(|keys| keys.iter().any(|k| k == key))
    }

    pub fn has_keys(&self, app_id: &str) -> bool {
        self.app_keys
            .get(app_id)
            .is_some_and(|keys| !keys.is_empty())
    }

    pub fn filters_of(&self, app_id: &str) -> &[String] {
        self.referrer_filters.get(app_id).map_or(&[], Vec::as_slice)
    }

    pub fn add_referrer_filter(&mut self, app_id: &str, filter: &str) {
        let filters = self.referrer_filters.entry(app_id.to_owned()).or_default();
        if !filters.iter().any(|f| f == filter) {
            filters.push(filter.to_owned());
        }
    }

    /// Stored value of a metric for an application in the period containing `at`.
    pub fn current_value(&self, app_id: &str, metric_id: &str, period: Period, at: i64) -> i64 {
        self.stats
            .get(app_id)
            .and_then(|s| s.usage.get(metric_id))
            .map_or(0, |c| c.get(period, period.start(at)))
    }

    /// Applies processed usage (metric id → raw value) at time `at`, in every period.
    pub fn apply_usage(&mut self, app_id: &str, usage: &[(String, String)], at: i64) {
        let stats = self.stats.entry(app_id.to_owned()).or_default();
        for (metric_id, value) in usage {
            let counters = stats.usage.entry(metric_id.clone()).or_default();
            for period in Period::ALL {
                counters.apply(period, period.start(at), value);
            }
        }
    }

    pub fn store_error(&mut self, error: StoredError) {
        self.errors.push_front(error);
        self.errors.truncate(MAX_STORED_ERRORS);
    }
}

/// The whole simulated backend.
#[derive(Debug, Default)]
pub struct Store {
    pub services: HashMap<String, ServiceData>,
    /// token → service ids it is valid for.
    tokens: HashMap<String, HashSet<String>>,
    /// provider key → its default service id.
    default_services: HashMap<String, String>,
    pub clock: Clock,
    /// Batch reports accepted and not yet applied (asynchronous mode only).
    pub worker: crate::worker::Worker,
}

/// What a service save carries (apisonator's `Service.save!` attributes).
#[derive(Clone, Debug, Default)]
pub struct ServiceAttrs {
    pub id: String,
    pub provider_key: String,
    pub backend_version: Option<String>,
    /// `None` = active (apisonator's default); anything but "active" suspends.
    pub state: Option<String>,
    pub referrer_filters_required: bool,
    pub default_service: Option<bool>,
}

impl Store {
    pub fn data(&self, service_id: &str) -> Option<&ServiceData> {
        self.services.get(service_id)
    }

    pub fn data_mut(&mut self, service_id: &str) -> &mut ServiceData {
        self.services.entry(service_id.to_owned()).or_default()
    }

    pub fn service(&self, service_id: &str) -> Option<&Service> {
        self.services.get(service_id)?.service.as_ref()
    }

    pub fn provider_key_for(&self, service_id: &str) -> Option<&str> {
        self.service(service_id).map(|s| s.provider_key.as_str())
    }

    pub fn default_service_id(&self, provider_key: &str) -> Option<&str> {
        self.default_services.get(provider_key).map(String::as_str)
    }

    pub fn is_default_service(&self, service: &Service) -> bool {
        self.default_service_id(&service.provider_key) == Some(service.id.as_str())
    }

    /// `Service.save!`: creates or replaces a service; returns whether it is the default one.
    pub fn save_service(&mut self, attrs: ServiceAttrs) -> (Service, bool) {
        let service = Service {
            id: attrs.id.clone(),
            provider_key: attrs.provider_key.clone(),
            backend_version: attrs.backend_version,
            active: attrs.state.as_deref().is_none_or(|s| s == "active"),
            referrer_filters_required: attrs.referrer_filters_required,
        };
        let is_default = attrs
            .default_service
            .unwrap_or_else(|| self.default_service_id(&service.provider_key).is_none());
        // The first service of a provider becomes its default unless told otherwise.
        // (apisonator compares the old and new default ids with Ruby's `to_i`, which only works
        // for numeric ids; the simulator compares the ids themselves so named ids work too.)
        if is_default {
            self.default_services
                .insert(service.provider_key.clone(), service.id.clone());
        }
        self.data_mut(&attrs.id).service = Some(service.clone());
        (service, is_default)
    }

    /// `Service.delete_by_id`. `Err(true)` when it is the default service of a provider with
    /// others; `Err(false)` when it does not exist.
    pub fn delete_service(&mut self, id: &str) -> Result<(), bool> {
        let service = self.service(id).cloned().ok_or(false)?;
        let is_default = self.is_default_service(&service);
        let siblings = self
            .services
            .values()
            .filter_map(|d| d.service.as_ref())
            .filter(|s| s.provider_key == service.provider_key)
            .count();
        if is_default && siblings > 1 {
            return Err(true);
        }
        if is_default {
            self.default_services.remove(&service.provider_key);
        }
        let data = self.data_mut(id);
        data.service = None;
        data.errors.clear();
        Ok(())
    }

    pub fn add_token(&mut self, token: &str, service_id: &str) {
        self.tokens
            .entry(token.to_owned())
            .or_default()
            .insert(service_id.to_owned());
    }

    pub fn delete_token(&mut self, token: &str, service_id: &str) -> bool {
        self.tokens
            .get_mut(token)
            .is_some_and(|ids| ids.remove(service_id))
    }

    pub fn token_exists(&self, token: &str, service_id: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|ids| ids.contains(service_id))
    }

    /// Zeroes usage, response codes and stored errors; keeps configuration.
    pub fn reset_counters(&mut self) {
        for data in self.services.values_mut() {
            data.stats.clear();
            data.errors.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn metrics() -> Metrics {
        let mut m = Metrics::default();
        m.save("1", "hits", None);
        m.save("2", "get_hello", Some("1"));
        m.save("3", "disabled_m", Some("1"));
        m.save("4", "deep", Some("2"));
        m
    }

    #[test]
    fn hierarchy_queries() {
        let m = metrics();
        assert_eq!(m.ancestor_names("deep"), ["get_hello", "hits"]);
        assert!(m.ancestor_names("hits").is_empty());
        assert!(m.ancestor_names("nope").is_empty());
        assert_eq!(
            m.children_names("hits").unwrap(),
            ["get_hello", "disabled_m"]
        );
        assert!(m.children_names("deep").is_none());
        assert_eq!(
            m.descendant_names("hits"),
            ["get_hello", "disabled_m", "deep"]
        );
    }

    #[test]
    fn cycles_do_not_hang() {
        let mut m = Metrics::default();
        m.save("1", "a", Some("2"));
        m.save("2", "b", Some("1"));
        assert!(m.ancestor_names("a").len() <= MAX_HIERARCHY_DEPTH);
        assert!(!m.descendant_names("a").is_empty());
    }

    #[test]
    fn renaming_and_deleting_metrics() {
        let mut m = metrics();
        m.save("2", "get_world", None);
        assert_eq!(m.id_of("get_world"), Some("2"));
        assert_eq!(m.id_of("get_hello"), None);
        assert_eq!(
            m.parent_id_of("2"),
            Some("1"),
            "a save without parent keeps the parent"
        );
        assert!(m.delete("3"));
        assert!(!m.delete("3"));
        assert_eq!(m.id_of("disabled_m"), None);
    }

    #[test]
    fn metric_order_is_numeric_for_integer_ids() {
        let mut m = Metrics::default();
        m.save("10", "b", None);
        m.save("9", "a", None);
        assert_eq!(
            m.ordered().map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        m.save("x", "c", None);
        assert_eq!(
            m.ordered().map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["b", "a", "c"]
        );
    }

    #[test]
    fn usage_limits_order_and_deleted_metrics() {
        let mut d = ServiceData {
            metrics: metrics(),
            ..Default::default()
        };
        d.set_limit("p", "2", Period::Hour, 100);
        d.set_limit("p", "1", Period::Day, 1000);
        d.set_limit("p", "1", Period::Month, 20000);
        d.set_limit("p", "99", Period::Day, 1);
        let l = d.usage_limits(Some("p"));
        let shape: Vec<_> = l
            .iter()
            .map(|u| (u.metric_name.as_str(), u.period, u.max_value))
            .collect();
        assert_eq!(
            shape,
            [
                ("hits", Period::Month, 20000),
                ("hits", Period::Day, 1000),
                ("get_hello", Period::Hour, 100)
            ]
        );
        assert!(d.usage_limits(None).is_empty());
        d.delete_limit("p", "1", Period::Day);
        assert_eq!(d.usage_limits(Some("p")).len(), 2);
    }

    #[test]
    fn counters_increment_set_and_roll_over() {
        let mut d = ServiceData::default();
        d.apply_usage("a", &[("1".into(), "3".into())], 120);
        d.apply_usage("a", &[("1".into(), "2".into())], 150);
        assert_eq!(d.current_value("a", "1", Period::Minute, 170), 5);
        assert_eq!(d.current_value("a", "1", Period::Minute, 180), 0);
        d.apply_usage("a", &[("1".into(), "#1".into())], 181);
        assert_eq!(d.current_value("a", "1", Period::Minute, 181), 1);
        assert_eq!(
            d.current_value("a", "1", Period::Eternity, 0),
            1,
            "set propagates to every period"
        );
        assert_eq!(d.current_value("b", "1", Period::Day, 0), 0);
    }

    #[test]
    fn bucket_history_is_bounded() {
        let mut c = Counters::default();
        for minute in 0..(MAX_BUCKETS as i64 + 50) {
            c.apply(Period::Minute, minute * 60, "1");
        }
        assert_eq!(c.buckets[Period::Minute.index()].len(), MAX_BUCKETS);
        assert_eq!(c.get(Period::Minute, (MAX_BUCKETS as i64 + 49) * 60), 1);
    }

    #[test]
    fn response_codes_tracked_like_apisonator() {
        let mut s = AppStats::default();
        for code in [
            "200", "201", "302", "403", "404", "418", "500", "503", "502", "2000", "20a", "099",
        ] {
            s.record_response_code(code);
        }
        let get = |c: &str| s.codes[TRACKED_CODES.iter().position(|t| *t == c).unwrap()];
        assert_eq!(get("200"), 1);
        assert_eq!(get("2XX"), 2);
        assert_eq!(get("403"), 1);
        assert_eq!(get("404"), 1);
        assert_eq!(get("4XX"), 3);
        assert_eq!(get("500"), 1);
        assert_eq!(get("503"), 1);
        assert_eq!(get("5XX"), 3);
    }

    #[test]
    fn keys_and_filters_behave_like_sets() {
        let mut d = ServiceData::default();
        d.add_key("a", "k2");
        d.add_key("a", "k1");
        d.add_key("a", "k2");
        assert_eq!(d.keys_of("a"), ["k2", "k1"]);
        assert!(d.has_key("a", "k1") && d.has_keys("a") && !d.has_keys("b"));
        assert!(d.delete_key("a", "k1"));
        assert!(!d.delete_key("a", "k1"));
        d.add_referrer_filter("a", "*.example.com");
        d.add_referrer_filter("a", "*.example.com");
        assert_eq!(d.filters_of("a").len(), 1);
    }

    #[test]
    fn first_service_of_a_provider_is_its_default() {
        let mut s = Store::default();
        let attrs = |id: &str| ServiceAttrs {
            id: id.into(),
            provider_key: "pk".into(),
            ..Default::default()
        };
        let (_, default) = s.save_service(attrs("42"));
        assert!(default);
        assert_eq!(s.default_service_id("pk"), Some("42"));
        let (_, default) = s.save_service(attrs("43"));
        assert!(!default);
        assert_eq!(s.delete_service("42"), Err(true));
        assert_eq!(s.delete_service("43"), Ok(()));
        assert_eq!(s.delete_service("43"), Err(false));
        assert_eq!(s.delete_service("42"), Ok(()));
        let (_, default) = s.save_service(attrs("svc-a"));
        assert!(default);
        assert_eq!(s.default_service_id("pk"), Some("svc-a"));
        let (_, default) = s.save_service(ServiceAttrs {
            default_service: Some(true),
            ..attrs("svc-b")
        });
        assert!(default);
        assert_eq!(s.default_service_id("pk"), Some("svc-b"));
    }

    #[test]
    fn tokens() {
        let mut s = Store::default();
        s.add_token("t", "svc1");
        assert!(s.token_exists("t", "svc1"));
        assert!(!s.token_exists("t", "svc2"));
        assert!(s.delete_token("t", "svc1"));
        assert!(!s.token_exists("t", "svc1"));
    }

    #[test]
    fn errors_are_capped_newest_first() {
        let mut d = ServiceData::default();
        for i in 0..(MAX_STORED_ERRORS + 5) {
            d.store_error(StoredError {
                code: "c".into(),
                message: i.to_string(),
                timestamp: String::new(),
                context_info: serde_json::json!({}),
            });
        }
        assert_eq!(d.errors.len(), MAX_STORED_ERRORS);
        assert_eq!(d.errors[0].message, (MAX_STORED_ERRORS + 4).to_string());
    }
}
