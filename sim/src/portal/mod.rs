//! The 3scale admin portal's configuration API (Porta's Account Management API), as far as a
//! gateway reads it: services, and each service's versioned proxy configs per environment.
//!
//! Served on its own listener (`--portal-listen`). Every call needs one of the seeded access tokens,
//! as the `access_token` query parameter or the password of HTTP Basic; without it the answer is
//! 403. Versions are numbered per service and environment from 1, never reused; publishing (the
//! simulator's `/_sim/portal/...` on the same listener) and promoting add one.

mod api;

use serde::Deserialize;
use serde_json::{Value, json};

pub use api::handle;

/// Environments a proxy config lives in.
pub const ENVIRONMENTS: [&str; 2] = ["staging", "production"];

/// The `portal` section of a seed file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPortal {
    #[serde(default)]
    pub access_tokens: Vec<String>,
    #[serde(default)]
    pub services: Vec<SeedPortalService>,
}

/// One service and its proxy config versions (each a service `content`), oldest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPortalService {
    pub id: u64,
    #[serde(default)]
    pub system_name: Option<String>,
    #[serde(default)]
    pub staging: Vec<Value>,
    #[serde(default)]
    pub production: Vec<Value>,
}

/// One version of one service's configuration in one environment.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub id: u64,
    pub version: u64,
    pub environment: &'static str,
    pub content: Value,
}

impl ProxyConfig {
    pub fn to_json(&self) -> Value {
        json!({"proxy_config": {
            "id": self.id, "version": self.version, "environment": self.environment,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "content": self.content,
        }})
    }
}

#[derive(Debug)]
pub struct PortalService {
    pub id: u64,
    pub system_name: String,
    /// Versions per environment, in [`ENVIRONMENTS`] order, oldest first.
    pub configs: [Vec<ProxyConfig>; 2],
}

/// The portal's state.
#[derive(Debug, Default)]
pub struct Portal {
    pub access_tokens: Vec<String>,
    /// In creation order (the order the services list and exports use).
    pub services: Vec<PortalService>,
    next_config_id: u64,
}

impl Portal {
    pub fn from_seed(seed: &SeedPortal) -> Result<Portal, String> {
        let mut portal = Portal {
            access_tokens: seed.access_tokens.clone(),
            ..Portal::default()
        };
        for service in &seed.services {
            if portal.service(service.id).is_some() {
                return Err(format!("portal service {} is defined twice", service.id));
            }
            portal.services.push(PortalService {
                id: service.id,
                system_name: service
                    .system_name
                    .clone()
                    .unwrap_or_else(|| format!("service_{}", service.id)),
                configs: [Vec::new(), Vec::new()],
            });
            for (environment, versions) in ENVIRONMENTS
                .iter()
                .zip([&service.staging, &service.production])
            {
                for content in versions {
                    portal.publish(service.id, environment, content.clone())?;
                }
            }
        }
        Ok(portal)
    }

    pub fn service(&self, id: u64) -> Option<&PortalService> {
        self.services.iter().find(|s| s.id == id)
    }

    /// Adds a version of `id`'s configuration in `environment` (creating the service if new). The
    /// content's `id` is the service's; a missing `system_name` is the service's.
    pub fn publish(
        &mut self,
        id: u64,
        environment: &str,
        content: Value,
    ) -> Result<ProxyConfig, String> {
        let slot =
            env_index(environment).ok_or_else(|| format!("unknown environment {environment:?}"))?;
        let Value::Object(mut content) = content else {
            return Err("a proxy config content is a JSON object".into());
        };
        if self.service(id).is_none() {
            let system_name = content
                .get("system_name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("service_{id}"), str::to_owned);
            self.services.push(PortalService {
                id,
                system_name,
                configs: [Vec::new(), Vec::new()],
            });
        }
        self.next_config_id += 1;
        let config_id = self.next_config_id;
        let service = self
            .services
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or("the service vanished")?;
        content.insert("id".into(), id.into());
        content
            .entry("system_name")
            .or_insert_with(|| service.system_name.clone().into());
        let versions = &mut service.configs[slot];
        let config = ProxyConfig {
            id: config_id,
            version: versions.last().map_or(1, |last| last.version + 1),
            environment: ENVIRONMENTS[slot],
            content: Value::Object(content),
        };
        versions.push(config.clone());
        Ok(config)
    }
}

pub fn env_index(environment: &str) -> Option<usize> {
    ENVIRONMENTS.iter().position(|e| *e == environment)
}

/// The query string as the request log shows it: the access token is a secret.
pub fn without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.starts_with("access_token="))
        .collect::<Vec<_>>()
        .join("&")
}
