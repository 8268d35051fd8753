//! `--seed FILE`: services, metrics, plans, limits and applications described in one JSON
//! document, loaded at start. The format is documented in `sim/README.md`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::clock::Period;
use crate::store::{Application, ServiceAttrs, Store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    pub services: Vec<SeedService>,
    /// The admin portal's services and proxy config versions (`--portal-listen`).
    #[serde(default)]
    pub portal: Option<crate::portal::SeedPortal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedService {
    pub id: String,
    pub provider_key: String,
    /// `"1"` (user_key), `"2"` (app_id/app_key) or `"oauth"` (OpenID Connect).
    pub backend_version: String,
    #[serde(default = "active")]
    pub state: String,
    #[serde(default)]
    pub referrer_filters_required: bool,
    #[serde(default)]
    pub default_service: Option<bool>,
    #[serde(default)]
    pub service_tokens: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<SeedMetric>,
    #[serde(default)]
    pub plans: Vec<SeedPlan>,
    #[serde(default)]
    pub applications: Vec<SeedApplication>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMetric {
    /// Defaults to the metric's position (1, 2, …), like Porta's numeric ids.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// The parent metric's name.
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPlan {
    pub id: String,
    pub name: String,
    /// metric name → period → max value (0 disables the metric).
    #[serde(default)]
    pub limits: BTreeMap<String, BTreeMap<String, i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApplication {
    pub id: String,
    /// The plan's id.
    pub plan: String,
    #[serde(default = "active")]
    pub state: String,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub user_key: Option<String>,
    #[serde(default)]
    pub referrer_filters: Vec<String>,
    #[serde(default)]
    pub redirect_url: Option<String>,
}

fn active() -> String {
    "active".into()
}

/// Reads and checks a seed document.
pub fn parse(text: &str) -> Result<Seed, String> {
    let seed: Seed = serde_json::from_str(text).map_err(|e| format!("invalid seed: {e}"))?;
    for service in &seed.services {
        check_service(service)?;
    }
    let mut ids = HashSet::new();
    for service in &seed.services {
        if !ids.insert(service.id.as_str()) {
            return Err(format!("service {:?} is defined twice", service.id));
        }
    }
    Ok(seed)
}

fn check_service(service: &SeedService) -> Result<(), String> {
    let at = |what: String| format!("service {:?}: {what}", service.id);
    if service.id.is_empty() || service.provider_key.is_empty() {
        return Err(at("id and provider_key must not be empty".into()));
    }
    if !["1", "2", "oauth"].contains(&service.backend_version.as_str()) {
        return Err(at(format!(
            "backend_version {:?} is not \"1\", \"2\" or \"oauth\"",
            service.backend_version
        )));
    }
    let names: HashSet<&str> = service.metrics.iter().map(|m| m.name.as_str()).collect();
    if names.len() != service.metrics.len() {
        return Err(at("metric names must be unique".into()));
    }
    for metric in &service.metrics {
        if let Some(parent) = &metric.parent
            && !names.contains(parent.as_str())
        {
            return Err(at(format!(
                "metric {:?} has unknown parent {parent:?}",
                metric.name
            )));
        }
    }
    for plan in &service.plans {
        for (metric, periods) in &plan.limits {
            if !names.contains(metric.as_str()) {
                return Err(at(format!(
                    "plan {:?} limits unknown metric {metric:?}",
                    plan.id
                )));
            }
            if let Some(bad) = periods.keys().find(|p| Period::parse(p).is_none()) {
                return Err(at(format!(
                    "plan {:?}: {bad:?} is not a period (minute … year, eternity)",
                    plan.id
                )));
            }
        }
    }
    for app in &service.applications {
        if !service.plans.iter().any(|p| p.id == app.plan) {
            return Err(at(format!(
                "application {:?} has unknown plan {:?}",
                app.id, app.plan
            )));
        }
    }
    Ok(())
}

/// Stores everything the seed describes.
impl SeedService {
    /// The id of the metric named `name`: its own, or its position (`"1"`, `"2"`, …) as Porta numbers them.
    pub fn metric_id(&self, name: &str) -> Option<String> {
        self.metrics
            .iter()
            .enumerate()
            .find(|(_, m)| m.name == name)
            .map(|(i, m)| m.id.clone().unwrap_or_else(|| (i + 1).to_string()))
    }
}

pub fn load(store: &mut Store, seed: &Seed) {
    for service in &seed.services {
        store.save_service(ServiceAttrs {
            id: service.id.clone(),
            provider_key: service.provider_key.clone(),
            backend_version: Some(service.backend_version.clone()),
            state: Some(service.state.clone()),
            referrer_filters_required: service.referrer_filters_required,
            default_service: service.default_service,
        });
        for token in &service.service_tokens {
            store.add_token(token, &service.id);
        }
        let data = store.data_mut(&service.id);
        let metric_id = |name: &str| service.metric_id(name);
        for metric in &service.metrics {
            let id = metric_id(&metric.name).unwrap_or_default();
            let parent = metric.parent.as_deref().and_then(metric_id);
            data.metrics.save(&id, &metric.name, parent.as_deref());
        }
        for plan in &service.plans {
            for (metric, periods) in &plan.limits {
                let Some(id) = metric_id(metric) else {
                    continue;
                };
                for (period, max) in periods {
                    if let Some(period) = Period::parse(period) {
                        data.set_limit(&plan.id, &id, period, *max);
                    }
                }
            }
        }
        for app in &service.applications {
            let plan_name = service
                .plans
                .iter()
                .find(|p| p.id == app.plan)
                .map(|p| p.name.clone());
            data.applications.insert(
                app.id.clone(),
                Application {
                    id: app.id.clone(),
                    state: app.state.clone(),
                    plan_id: Some(app.plan.clone()),
                    plan_name,
                    redirect_url: app.redirect_url.clone(),
                },
            );
            for key in &app.keys {
                data.add_key(&app.id, key);
            }
            if let Some(user_key) = &app.user_key {
                data.user_keys.insert(user_key.clone(), app.id.clone());
            }
            for filter in &app.referrer_filters {
                data.add_referrer_filter(&app.id, filter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const MINIMAL: &str = r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"2",
        "service_tokens":["t"],
        "metrics":[{"name":"hits"},{"name":"get","parent":"hits"},{"id":"77","name":"post","parent":"hits"}],
        "plans":[{"id":"p","name":"Plan & Co","limits":{"hits":{"minute":5},"post":{"eternity":0}}}],
        "applications":[{"id":"a","plan":"p","keys":["k"],"user_key":"uk"},{"id":"b","plan":"p","state":"suspended"}]}]}"#;

    #[test]
    fn loads_a_seed() {
        let seed = parse(MINIMAL).unwrap();
        let mut store = Store::default();
        load(&mut store, &seed);
        assert!(store.token_exists("t", "s"));
        let d = store.data("s").unwrap();
        assert_eq!(d.metrics.id_of("get"), Some("2"));
        assert_eq!(d.metrics.id_of("post"), Some("77"));
        assert_eq!(d.metrics.ancestor_names("post"), ["hits"]);
        assert_eq!(d.limit("p", "1", Period::Minute), Some(5));
        assert_eq!(d.limit("p", "77", Period::Eternity), Some(0));
        assert_eq!(d.applications["a"].plan_name.as_deref(), Some("Plan & Co"));
        assert!(d.has_key("a", "k"));
        assert_eq!(d.user_keys["uk"], "a");
        assert!(!d.applications["b"].is_active());
    }

    #[test]
    fn rejects_inconsistent_seeds() {
        let bad = [
            r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"3"}]}"#,
            r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"2","metrics":[{"name":"a","parent":"b"}]}]}"#,
            r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"2","plans":[{"id":"p","name":"P","limits":{"x":{"day":1}}}]}]}"#,
            r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"2","metrics":[{"name":"x"}],"plans":[{"id":"p","name":"P","limits":{"x":{"second":1}}}]}]}"#,
            r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"2","applications":[{"id":"a","plan":"nope"}]}]}"#,
            r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"2","surprise":1}]}"#,
            r#"{"services":[{"id":"s","provider_key":"pk","backend_version":"2"},{"id":"s","provider_key":"pk","backend_version":"2"}]}"#,
            r#"{"services":[{"id":"","provider_key":"pk","backend_version":"2"}]}"#,
            "not json",
        ];
        for text in bad {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn shipped_seeds_load() {
        for path in ["seeds/demo.json", "tests/seeds/other.json"] {
            let text =
                std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path)
                    .unwrap();
            let seed = parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            load(&mut Store::default(), &seed);
        }
    }
}
