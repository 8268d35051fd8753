//! The filter configuration exactly as written in JSON (Envoy `configuration`, Istio `pluginConfig`).
//!
//! Every struct denies unknown fields, so a typo is an error at load with its JSON path instead of a
//! setting silently ignored (a defect of the peer module). Each struct lists its JSON fields and
//! their defaults in its [`FromJson`] implementation, next to it. Documented field by field in
//! `docs/configuration.md`; [`super::compile`] turns this into the runtime [`super::Config`].

use std::collections::BTreeMap;

use super::ConfigError;
use super::json::{FromJson, Json, Object, Path, variant};
use super::secret::Secret;

#[derive(Debug)]
pub struct RawConfig {
    pub backend: RawBackend,
    pub services: Vec<RawService>,
    pub unknown_service: Option<UnknownService>,
    pub headers: Option<RawHeaders>,
    pub errors: Option<RawErrors>,
    pub form_body_limit_bytes: Option<usize>,
    pub filter_state: Option<bool>,
    pub cache: Option<RawCache>,
    pub role: Option<Role>,
}

impl FromJson for RawConfig {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &[
                "backend",
                "services",
                "unknown_service",
                "headers",
                "errors",
                "form_body_limit_bytes",
                "filter_state",
                "cache",
                "role",
            ],
        )?;
        Ok(RawConfig {
            backend: o.required("backend")?,
            services: o.required("services")?,
            unknown_service: o.or_default("unknown_service")?,
            headers: o.or_default("headers")?,
            errors: o.or_default("errors")?,
            form_body_limit_bytes: o.or_default("form_body_limit_bytes")?,
            filter_state: o.or_default("filter_state")?,
            cache: o.or_default("cache")?,
            role: o.or_default("role")?,
        })
    }
}

/// What this instance of the module does: the HTTP filter, or the optional Envoy singleton service
/// that flushes reports for every worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Filter,
    Reporter,
}

impl FromJson for Role {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        variant(
            value,
            at,
            &[("filter", Role::Filter), ("reporter", Role::Reporter)],
        )
    }
}

#[derive(Debug, Default)]
pub struct RawCache {
    pub slots: Option<u32>,
    pub ttl_seconds: Option<u64>,
    pub report_interval_ms: Option<u64>,
    pub report_batch_size: Option<usize>,
    pub report_timeout_ms: Option<u64>,
    pub lease_ms: Option<u64>,
    pub key_prefix: Option<String>,
}

impl FromJson for RawCache {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &[
                "slots",
                "ttl_seconds",
                "report_interval_ms",
                "report_batch_size",
                "report_timeout_ms",
                "lease_ms",
                "key_prefix",
            ],
        )?;
        Ok(RawCache {
            slots: o.or_default("slots")?,
            ttl_seconds: o.or_default("ttl_seconds")?,
            report_interval_ms: o.or_default("report_interval_ms")?,
            report_batch_size: o.or_default("report_batch_size")?,
            report_timeout_ms: o.or_default("report_timeout_ms")?,
            lease_ms: o.or_default("lease_ms")?,
            key_prefix: o.or_default("key_prefix")?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Cache,
    PerRequest,
}

impl FromJson for Mode {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        variant(
            value,
            at,
            &[("cache", Mode::Cache), ("per_request", Mode::PerRequest)],
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Deny,
    AllowCached,
    AllowListed,
    Allow,
}

impl Policy {
    /// The policy as the configuration names it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Deny => "deny",
            Policy::AllowCached => "allow_cached",
            Policy::AllowListed => "allow_listed",
            Policy::Allow => "allow",
        }
    }
}

impl FromJson for Policy {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        variant(
            value,
            at,
            &[
                ("deny", Policy::Deny),
                ("allow_cached", Policy::AllowCached),
                ("allow_listed", Policy::AllowListed),
                ("allow", Policy::Allow),
            ],
        )
    }
}

#[derive(Debug, Default)]
pub struct RawFailure {
    pub policy: Policy,
    pub max_staleness_seconds: Option<u64>,
    pub allowed: Vec<String>,
    pub fail_open_cluster: Option<String>,
}

impl FromJson for RawFailure {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &[
                "policy",
                "max_staleness_seconds",
                "allowed",
                "fail_open_cluster",
            ],
        )?;
        Ok(RawFailure {
            policy: o.or_default("policy")?,
            max_staleness_seconds: o.or_default("max_staleness_seconds")?,
            allowed: o.or_default("allowed")?,
            fail_open_cluster: o.or_default("fail_open_cluster")?,
        })
    }
}

#[derive(Debug)]
pub struct RawBackend {
    pub cluster: String,
    pub authority: Option<String>,
    pub path_prefix: Option<String>,
    pub timeout_ms: Option<u64>,
}

impl FromJson for RawBackend {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &["cluster", "authority", "path_prefix", "timeout_ms"],
        )?;
        Ok(RawBackend {
            cluster: o.required("cluster")?,
            authority: o.or_default("authority")?,
            path_prefix: o.or_default("path_prefix")?,
            timeout_ms: o.or_default("timeout_ms")?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownService {
    Deny,
    Pass,
}

impl FromJson for UnknownService {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        variant(
            value,
            at,
            &[
                ("deny", UnknownService::Deny),
                ("pass", UnknownService::Pass),
            ],
        )
    }
}

#[derive(Debug)]
pub struct RawHeaders {
    pub cluster: Option<String>,
    pub host: Option<String>,
    pub app_id: Option<String>,
    pub plan: Option<String>,
    pub debug: Option<String>,
}

impl FromJson for RawHeaders {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["cluster", "host", "app_id", "plan", "debug"])?;
        Ok(RawHeaders {
            cluster: o.or_default("cluster")?,
            host: o.or_default("host")?,
            app_id: o.or_default("app_id")?,
            plan: o.or_default("plan")?,
            debug: o.or_default("debug")?,
        })
    }
}

#[derive(Debug)]
pub struct RawService {
    pub id: String,
    pub service_token: Option<Secret>,
    pub provider_key: Option<Secret>,
    /// JSON `match` (a Rust keyword).
    pub selector: Option<RawMatch>,
    pub credentials: RawCredentials,
    pub referrer: bool,
    pub mapping_rules: Vec<RawMappingRule>,
    pub plans: Option<RawPlans>,
    pub upstream: Option<RawUpstream>,
    pub rate_limit_headers: bool,
    pub errors: Option<RawErrors>,
    pub mode: Mode,
    pub failure: Option<RawFailure>,
    pub report_response_codes: Option<bool>,
}

impl FromJson for RawService {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &[
                "id",
                "service_token",
                "provider_key",
                "match",
                "credentials",
                "referrer",
                "mapping_rules",
                "plans",
                "upstream",
                "rate_limit_headers",
                "errors",
                "mode",
                "failure",
                "report_response_codes",
            ],
        )?;
        Ok(RawService {
            id: o.required("id")?,
            service_token: o.or_default("service_token")?,
            provider_key: o.or_default("provider_key")?,
            selector: o.or_default("match")?,
            credentials: o.required("credentials")?,
            referrer: o.or_default("referrer")?,
            mapping_rules: o.required("mapping_rules")?,
            plans: o.or_default("plans")?,
            upstream: o.or_default("upstream")?,
            rate_limit_headers: o.or_default("rate_limit_headers")?,
            errors: o.or_default("errors")?,
            mode: o.or_default("mode")?,
            failure: o.or_default("failure")?,
            report_response_codes: o.or_default("report_response_codes")?,
        })
    }
}

#[derive(Debug, Default)]
pub struct RawMatch {
    pub route_names: Vec<String>,
    pub hosts: Vec<String>,
}

impl FromJson for RawMatch {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["route_names", "hosts"])?;
        Ok(RawMatch {
            route_names: o.or_default("route_names")?,
            hosts: o.or_default("hosts")?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKind {
    UserKey,
    AppId,
    Oidc,
}

impl FromJson for RawKind {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        variant(
            value,
            at,
            &[
                ("user_key", RawKind::UserKey),
                ("app_id", RawKind::AppId),
                ("oidc", RawKind::Oidc),
            ],
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawLocation {
    Query,
    Form,
    Header,
    Basic,
    Bearer,
}

impl FromJson for RawLocation {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        variant(
            value,
            at,
            &[
                ("query", RawLocation::Query),
                ("form", RawLocation::Form),
                ("header", RawLocation::Header),
                ("basic", RawLocation::Basic),
                ("bearer", RawLocation::Bearer),
            ],
        )
    }
}

#[derive(Debug)]
pub struct RawCredentials {
    pub kind: RawKind,
    pub locations: Option<Vec<RawLocation>>,
    pub params: Option<RawNames>,
    pub headers: Option<RawNames>,
    pub jwt: Option<RawJwt>,
    pub default: Option<RawDefaultCredentials>,
    pub strip: Option<bool>,
}

impl FromJson for RawCredentials {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &[
                "kind",
                "locations",
                "params",
                "headers",
                "jwt",
                "default",
                "strip",
            ],
        )?;
        Ok(RawCredentials {
            kind: o.required("kind")?,
            locations: o.or_default("locations")?,
            params: o.or_default("params")?,
            headers: o.or_default("headers")?,
            jwt: o.or_default("jwt")?,
            default: o.or_default("default")?,
            strip: o.or_default("strip")?,
        })
    }
}

#[derive(Debug)]
pub struct RawNames {
    pub user_key: Option<String>,
    pub app_id: Option<String>,
    pub app_key: Option<String>,
}

impl FromJson for RawNames {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["user_key", "app_id", "app_key"])?;
        Ok(RawNames {
            user_key: o.or_default("user_key")?,
            app_id: o.or_default("app_id")?,
            app_key: o.or_default("app_key")?,
        })
    }
}

#[derive(Debug)]
pub struct RawJwt {
    pub filter: Option<String>,
    pub payload_in_metadata: Option<String>,
    pub claim: Option<String>,
}

impl FromJson for RawJwt {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["filter", "payload_in_metadata", "claim"])?;
        Ok(RawJwt {
            filter: o.or_default("filter")?,
            payload_in_metadata: o.or_default("payload_in_metadata")?,
            claim: o.or_default("claim")?,
        })
    }
}

#[derive(Debug)]
pub struct RawDefaultCredentials {
    pub user_key: Option<Secret>,
    pub app_id: Option<String>,
    pub app_key: Option<Secret>,
}

impl FromJson for RawDefaultCredentials {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["user_key", "app_id", "app_key"])?;
        Ok(RawDefaultCredentials {
            user_key: o.or_default("user_key")?,
            app_id: o.or_default("app_id")?,
            app_key: o.or_default("app_key")?,
        })
    }
}

#[derive(Debug)]
pub struct RawMappingRule {
    pub method: String,
    pub pattern: String,
    pub metric: String,
    pub delta: u64,
    pub last: bool,
}

impl FromJson for RawMappingRule {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["method", "pattern", "metric", "delta", "last"])?;
        Ok(RawMappingRule {
            method: o.required("method")?,
            pattern: o.required("pattern")?,
            metric: o.required("metric")?,
            delta: o.or("delta", 1)?,
            last: o.or_default("last")?,
        })
    }
}

#[derive(Debug)]
pub struct RawPlans {
    pub routes: BTreeMap<String, RawPlanRoute>,
    pub default: Option<RawPlanRoute>,
}

impl FromJson for RawPlans {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["routes", "default"])?;
        Ok(RawPlans {
            routes: o.required("routes")?,
            default: o.or_default("default")?,
        })
    }
}

#[derive(Debug)]
pub struct RawPlanRoute {
    pub cluster: String,
    pub host: Option<String>,
}

impl FromJson for RawPlanRoute {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["cluster", "host"])?;
        Ok(RawPlanRoute {
            cluster: o.required("cluster")?,
            host: o.or_default("host")?,
        })
    }
}

#[derive(Debug)]
pub struct RawUpstream {
    pub secret_header: Option<RawSecretHeader>,
    pub send_app_id: bool,
    pub send_plan: bool,
}

impl FromJson for RawUpstream {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["secret_header", "send_app_id", "send_plan"])?;
        Ok(RawUpstream {
            secret_header: o.or_default("secret_header")?,
            send_app_id: o.or_default("send_app_id")?,
            send_plan: o.or_default("send_plan")?,
        })
    }
}

#[derive(Debug)]
pub struct RawSecretHeader {
    pub name: Option<String>,
    pub value: Secret,
}

impl FromJson for RawSecretHeader {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(value, at, &["name", "value"])?;
        Ok(RawSecretHeader {
            name: o.or_default("name")?,
            value: o.required("value")?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFormat {
    Json,
    Xml,
    Text,
}

impl FromJson for RawFormat {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        variant(
            value,
            at,
            &[
                ("json", RawFormat::Json),
                ("xml", RawFormat::Xml),
                ("text", RawFormat::Text),
            ],
        )
    }
}

/// Error settings: a body format for every category, then per-category overrides.
#[derive(Debug, Default)]
pub struct RawErrors {
    pub format: Option<RawFormat>,
    pub auth_missing: Option<RawCategoryReply>,
    pub auth_failed: Option<RawCategoryReply>,
    pub app_inactive: Option<RawCategoryReply>,
    pub method_disabled: Option<RawCategoryReply>,
    pub limits_exceeded: Option<RawCategoryReply>,
    pub no_match: Option<RawCategoryReply>,
    pub service_not_found: Option<RawCategoryReply>,
    pub no_route_for_plan: Option<RawCategoryReply>,
    pub backend_unavailable: Option<RawCategoryReply>,
    pub backend_misconfigured: Option<RawCategoryReply>,
}

impl FromJson for RawErrors {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &[
                "format",
                "auth_missing",
                "auth_failed",
                "app_inactive",
                "method_disabled",
                "limits_exceeded",
                "no_match",
                "service_not_found",
                "no_route_for_plan",
                "backend_unavailable",
                "backend_misconfigured",
            ],
        )?;
        Ok(RawErrors {
            format: o.or_default("format")?,
            auth_missing: o.or_default("auth_missing")?,
            auth_failed: o.or_default("auth_failed")?,
            app_inactive: o.or_default("app_inactive")?,
            method_disabled: o.or_default("method_disabled")?,
            limits_exceeded: o.or_default("limits_exceeded")?,
            no_match: o.or_default("no_match")?,
            service_not_found: o.or_default("service_not_found")?,
            no_route_for_plan: o.or_default("no_route_for_plan")?,
            backend_unavailable: o.or_default("backend_unavailable")?,
            backend_misconfigured: o.or_default("backend_misconfigured")?,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct RawCategoryReply {
    pub status: Option<u16>,
    pub message: Option<String>,
    pub format: Option<RawFormat>,
    pub content_type: Option<String>,
    pub body: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub grpc_status: Option<u32>,
}

impl FromJson for RawCategoryReply {
    fn from_json(value: Json, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut o = Object::new(
            value,
            at,
            &[
                "status",
                "message",
                "format",
                "content_type",
                "body",
                "headers",
                "grpc_status",
            ],
        )?;
        Ok(RawCategoryReply {
            status: o.or_default("status")?,
            message: o.or_default("message")?,
            format: o.or_default("format")?,
            content_type: o.or_default("content_type")?,
            body: o.or_default("body")?,
            headers: o.or_default("headers")?,
            grpc_status: o.or_default("grpc_status")?,
        })
    }
}
