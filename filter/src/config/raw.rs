//! The filter configuration exactly as written in JSON (Envoy `configuration`, Istio `pluginConfig`).
//!
//! Every struct denies unknown fields, so a typo is an error at load with its JSON path instead of a
//! setting silently ignored (a defect of the peer module). Documented field by field in
//! `docs/configuration.md`; [`super::compile`] turns this into the runtime [`super::Config`].

use serde::Deserialize;
use std::collections::BTreeMap;

use super::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub backend: RawBackend,
    pub services: Vec<RawService>,
    #[serde(default)]
    pub unknown_service: Option<UnknownService>,
    #[serde(default)]
    pub headers: Option<RawHeaders>,
    #[serde(default)]
    pub errors: Option<RawErrors>,
    #[serde(default)]
    pub form_body_limit_bytes: Option<usize>,
    #[serde(default)]
    pub cache: Option<RawCache>,
    #[serde(default)]
    pub role: Option<Role>,
}

/// What this instance of the module does: the HTTP filter, or the optional Envoy singleton service
/// that flushes reports for every worker.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Filter,
    Reporter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default)]
    pub slots: Option<u32>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub report_interval_ms: Option<u64>,
    #[serde(default)]
    pub report_batch_size: Option<usize>,
    #[serde(default)]
    pub key_prefix: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Cache,
    PerRequest,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    Deny,
    AllowCached,
    AllowListed,
    Allow,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailure {
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub max_staleness_seconds: Option<u64>,
    #[serde(default)]
    pub allowed: Vec<String>,
    #[serde(default)]
    pub fail_open_cluster: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownService {
    Deny,
    Pass,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub debug: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub id: String,
    #[serde(default)]
    pub service_token: Option<Secret>,
    #[serde(default)]
    pub provider_key: Option<Secret>,
    #[serde(default, rename = "match")]
    pub selector: Option<RawMatch>,
    pub credentials: RawCredentials,
    #[serde(default)]
    pub referrer: bool,
    pub mapping_rules: Vec<RawMappingRule>,
    #[serde(default)]
    pub plans: Option<RawPlans>,
    #[serde(default)]
    pub upstream: Option<RawUpstream>,
    #[serde(default)]
    pub rate_limit_headers: bool,
    #[serde(default)]
    pub errors: Option<RawErrors>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub failure: Option<RawFailure>,
    #[serde(default)]
    pub report_response_codes: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub route_names: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawKind {
    UserKey,
    AppId,
    Oidc,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawLocation {
    Query,
    Form,
    Header,
    Basic,
    Bearer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    pub kind: RawKind,
    #[serde(default)]
    pub locations: Option<Vec<RawLocation>>,
    #[serde(default)]
    pub params: Option<RawNames>,
    #[serde(default)]
    pub headers: Option<RawNames>,
    #[serde(default)]
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub default: Option<RawDefaultCredentials>,
    #[serde(default)]
    pub strip: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNames {
    #[serde(default)]
    pub user_key: Option<String>,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub app_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub payload_in_metadata: Option<String>,
    #[serde(default)]
    pub claim: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaultCredentials {
    #[serde(default)]
    pub user_key: Option<Secret>,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub app_key: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMappingRule {
    pub method: String,
    pub pattern: String,
    pub metric: String,
    #[serde(default = "one")]
    pub delta: u64,
    #[serde(default)]
    pub last: bool,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlans {
    pub routes: BTreeMap<String, RawPlanRoute>,
    #[serde(default)]
    pub default: Option<RawPlanRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlanRoute {
    pub cluster: String,
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default)]
    pub secret_header: Option<RawSecretHeader>,
    #[serde(default)]
    pub send_app_id: bool,
    #[serde(default)]
    pub send_plan: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretHeader {
    #[serde(default)]
    pub name: Option<String>,
    pub value: Secret,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawFormat {
    Json,
    Xml,
    Text,
}

/// Error settings: a body format for every category, then per-category overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrors {
    #[serde(default)]
    pub format: Option<RawFormat>,
    #[serde(default)]
    pub auth_missing: Option<RawCategoryReply>,
    #[serde(default)]
    pub auth_failed: Option<RawCategoryReply>,
    #[serde(default)]
    pub app_inactive: Option<RawCategoryReply>,
    #[serde(default)]
    pub method_disabled: Option<RawCategoryReply>,
    #[serde(default)]
    pub limits_exceeded: Option<RawCategoryReply>,
    #[serde(default)]
    pub no_match: Option<RawCategoryReply>,
    #[serde(default)]
    pub service_not_found: Option<RawCategoryReply>,
    #[serde(default)]
    pub no_route_for_plan: Option<RawCategoryReply>,
    #[serde(default)]
    pub backend_unavailable: Option<RawCategoryReply>,
    #[serde(default)]
    pub backend_misconfigured: Option<RawCategoryReply>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCategoryReply {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub format: Option<RawFormat>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub grpc_status: Option<u32>,
}
