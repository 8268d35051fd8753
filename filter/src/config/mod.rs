//! The filter configuration: parsed strictly at load, compiled once into what requests use.
//!
//! `on_configure` calls [`Config::load`]; an error names the JSON path and the reason
//! (`services[0].mapping_rules[2].pattern: ...`) and makes Envoy refuse the configuration.

pub mod raw;
pub mod secret;

mod compile;
pub(crate) mod json;
#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::Duration;

use crate::backend::call::BackendAuth;
use crate::credentials::{Credentials, Spec};
use crate::glob::HostGlob;
use crate::mapping::MappingRules;
use crate::reply::Replies;

pub use compile::{ConfigError, MAX_SERVICES};
pub use raw::{Mode, Policy, Role};

/// Default bound on buffered form bodies (credentials and rule conditions in POST forms).
pub const DEFAULT_FORM_BODY_LIMIT: usize = 64 * 1024;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The whole configuration of one filter instance, shared by every request of a VM.
#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    pub services: Vec<Rc<Service>>,
    /// What to do with a request no service serves.
    pub pass_unknown: bool,
    pub headers: InternalHeaders,
    /// Replies for requests that reach no service (service_not_found).
    pub replies: Replies,
    pub form_body_limit: usize,
    /// Expose service, application, plan, category and usage to access logs as filter state: five
    /// hostcalls per request, so only when an access log reads them.
    pub filter_state: bool,
    /// Whether any service is selected by route name (so the route name is read only then).
    pub uses_route_names: bool,
    /// The only service, when it answers for every host: it serves every request, and neither the
    /// route metadata nor the Host is read to find out (about 3 µs of hostcalls per request).
    pub sole_service: Option<Rc<Service>>,
    pub cache: CacheSettings,
    pub role: Role,
    /// Settings that load but probably do not do what was meant, as `path: reason`: logged once at
    /// load (warn level), never refused.
    pub warnings: Vec<String>,
}

/// The shared authorization cache and the batched reports (docs/design.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Fixed number of hashed slots in Envoy shared data: the memory bound.
    pub slots: u32,
    /// How old an entry may get before a request triggers a background refresh.
    pub ttl_ms: u64,
    /// How often pending usage is reported.
    pub report_interval_ms: u64,
    /// Report as soon as this many applications have pending usage.
    pub report_batch_size: usize,
    /// How long a report may take: longer than an authorization, since no request waits for it
    /// and a timed-out report can only be counted as uncertain.
    pub report_timeout_ms: u64,
    /// How long a worker decides from its lease on an application before returning it
    /// (`crate::lease`); 0: every request is decided in the shared entry.
    pub lease_ms: u64,
    /// Prefix of every shared-data key and queue name (Istio gives every plugin the same `vm_id`).
    pub key_prefix: String,
}

/// What to do when 3scale cannot answer in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    pub policy: Policy,
    /// `allow_cached`: how old a cached decision may be and still stand in for 3scale.
    pub max_staleness_ms: u64,
    /// `allow_listed`: application ids / user keys that pass.
    pub allowed: Vec<String>,
    /// Where requests let through go when their plan is unknown.
    pub fail_open_cluster: Option<String>,
}

/// Where the 3scale Service Management API is, as an Envoy cluster.
#[derive(Debug, Clone)]
pub struct Backend {
    pub cluster: String,
    pub authority: String,
    pub path_prefix: String,
    pub timeout: Duration,
}

/// Names of the headers Tollgate sets for Envoy or the upstream. Incoming copies are always removed.
#[derive(Debug, Clone)]
pub struct InternalHeaders {
    pub cluster: String,
    pub host: String,
    pub app_id: String,
    pub plan: String,
    pub debug: String,
}

impl Backend {
    /// The timeout of a call to 3scale, in milliseconds.
    pub fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

impl InternalHeaders {
    /// Every header a client must never be able to set on the way upstream.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.cluster,
            &self.host,
            &self.app_id,
            &self.plan,
            &self.debug,
        ]
    }
}

/// One 3scale service (an API product) and how requests to it are authorized.
#[derive(Debug)]
pub struct Service {
    pub id: String,
    /// The service in its stats' names (`tollgate.service.<label>.…`).
    pub stats_label: Rc<str>,
    pub auth: BackendAuth,
    /// The value `X-3scale-Debug` must carry (the service token or provider key, as APIcast).
    pub debug_secret: String,
    pub route_names: Vec<String>,
    pub hosts: Vec<HostGlob>,
    pub credentials: Spec,
    pub jwt: JwtSource,
    pub default_credentials: Option<Credentials>,
    pub strip_credentials: bool,
    pub referrer: bool,
    pub mapping_rules: MappingRules,
    pub routing: Option<PlanRouting>,
    pub secret_header: Option<(String, String)>,
    pub send_app_id: bool,
    pub send_plan: bool,
    pub rate_limit_headers: bool,
    pub replies: Replies,
    pub mode: Mode,
    pub failure: FailurePolicy,
    /// Report the upstream's response code (`log[code]`) with the usage.
    pub report_response_codes: bool,
}

/// Where `jwt_authn` left the verified token's payload (`payload_in_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSource {
    pub filter: String,
    pub payload_key: String,
}

/// Plan name → Envoy cluster (and optional Host rewrite).
#[derive(Debug)]
pub struct PlanRouting {
    pub plans: Vec<(String, PlanRoute)>,
    pub default: Option<PlanRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRoute {
    pub cluster: String,
    pub host: Option<String>,
}

impl PlanRouting {
    /// The route for `plan`, falling back to the default; None means `no_route_for_plan`.
    pub fn route(&self, plan: Option<&str>) -> Option<&PlanRoute> {
        self.plan_route(plan).or(self.default.as_ref())
    }

    /// The route configured for `plan` itself, without the default.
    pub fn plan_route(&self, plan: Option<&str>) -> Option<&PlanRoute> {
        plan.and_then(|plan| self.plans.iter().find(|(name, _)| name == plan))
            .map(|(_, route)| route)
    }
}

impl Config {
    /// Parses and validates the configuration JSON. `env` reads the VM's environment (secrets).
    pub fn load(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        compile::load(json, env)
    }

    /// Compiles a document already parsed and built by another source (`crate::portal`).
    pub(crate) fn load_tree(
        document: json::Json,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        compile::load_tree(document, env)
    }

    /// This configuration serving `services` instead of its own (the admin portal's services,
    /// compiled one version at a time).
    pub fn with_services(&self, services: Vec<Rc<Service>>) -> Config {
        Config {
            uses_route_names: services.iter().any(|s| !s.route_names.is_empty()),
            sole_service: compile::sole_service(&services),
            services,
            ..self.clone()
        }
    }
}
