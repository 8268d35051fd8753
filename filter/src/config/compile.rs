//! From the JSON schema ([`super::raw`]) to the runtime [`super::Config`], checking what the schema cannot.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use super::raw::{
    Mode, Policy, RawCache, RawConfig, RawCredentials, RawDefaultCredentials, RawFailure, RawKind,
    RawLocation, RawMappingRule, RawNames, RawPlanRoute, RawService, UnknownService,
};
use super::secret::Secret;
use super::{
    Backend, CacheSettings, Config, DEFAULT_FORM_BODY_LIMIT, DEFAULT_TIMEOUT, FailurePolicy,
    InternalHeaders, JwtSource, PlanRoute, PlanRouting, Service,
};
use crate::backend::call::BackendAuth;
use crate::credentials::{Credentials, Kind, Location, Names, Spec};
use crate::glob::HostGlob;
use crate::mapping::{MappingRule, MappingRules};
use crate::reply::{Replies, check_header_name, check_header_value};

/// A configuration refused at load: where in the JSON, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error at {}: {}", self.path, self.reason)
    }
}

fn error(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        reason: reason.into(),
    }
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn load(json: &[u8], env: Env) -> Result<Config, ConfigError> {
    let raw = parse(json)?;
    compile(raw, env)
}

/// Compiles a document another source built (the APIcast format, `crate::portal`).
#[inline(never)]
pub fn load_tree(document: super::json::Json, env: Env) -> Result<Config, ConfigError> {
    use super::json::{FromJson, Path};
    compile(RawConfig::from_json(document, &Path::Root)?, env)
}

fn parse(json: &[u8]) -> Result<RawConfig, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(error(
            ".",
            "the configuration is empty; see docs/configuration.md",
        ));
    }
    super::json::decode(json)
}

#[inline(never)]
fn compile(raw: RawConfig, env: Env) -> Result<Config, ConfigError> {
    let backend = backend(&raw)?;
    let headers = internal_headers(&raw)?;
    let global_errors = raw.errors.unwrap_or_default();
    let replies = Replies::build(&[&global_errors])
        .map_err(|(path, why)| error(format!("errors.{path}"), why))?;
    if raw.services.is_empty() {
        return Err(error("services", "at least one service is required"));
    }
    if raw.services.len() > MAX_SERVICES {
        return Err(error(
            "services",
            format!(
                "{} services; at most {MAX_SERVICES} per filter configuration",
                raw.services.len()
            ),
        ));
    }
    let mut warnings = Vec::new();
    let mut services: Vec<Rc<Service>> = Vec::with_capacity(raw.services.len());
    for (index, raw_service) in raw.services.into_iter().enumerate() {
        let path = format!("services[{index}]");
        warnings.extend(rule_warnings(&raw_service.mapping_rules, &path));
        let service = service(raw_service, &path, &global_errors, env)?;
        check_collisions(&headers, &service, &path)?;
        if services.iter().any(|s| s.id == service.id) {
            return Err(error(
                format!("{path}.id"),
                format!("service `{}` is defined twice", service.id),
            ));
        }
        services.push(Rc::new(service));
    }
    let form_body_limit = raw.form_body_limit_bytes.unwrap_or(DEFAULT_FORM_BODY_LIMIT);
    if form_body_limit > 16 * 1024 * 1024 {
        return Err(error(
            "form_body_limit_bytes",
            "at most 16 MiB (Envoy buffers the body in memory)",
        ));
    }
    let cache = cache_settings(raw.cache.as_ref().unwrap_or(&RawCache::default()))?;
    Ok(Config {
        cache,
        role: raw.role.unwrap_or_default(),
        backend,
        uses_route_names: services.iter().any(|s| !s.route_names.is_empty()),
        sole_service: sole_service(&services),
        services,
        pass_unknown: raw.unknown_service == Some(UnknownService::Pass),
        headers,
        replies,
        form_body_limit,
        filter_state: raw.filter_state.unwrap_or(false),
        warnings,
    })
}

/// The most services one filter configuration may hold: beyond, a linear host match and the memory of
/// every worker's copy of the configuration stop being small.
pub const MAX_SERVICES: usize = 5_000;

/// The largest usage delta of one mapping rule.
const MAX_DELTA: u64 = 1_000_000_000;

/// Headers Envoy, HTTP or the upstream give a meaning that Tollgate's own headers must not take over.
const RESERVED_HEADERS: [&str; 12] = [
    "host",
    "authorization",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "cookie",
    "x-request-id",
];

fn check_internal_headers(headers: &InternalHeaders) -> Result<(), ConfigError> {
    let named = [
        ("headers.cluster", &headers.cluster),
        ("headers.host", &headers.host),
        ("headers.app_id", &headers.app_id),
        ("headers.plan", &headers.plan),
        ("headers.debug", &headers.debug),
    ];
    for (i, (path, name)) in named.iter().enumerate() {
        if RESERVED_HEADERS.contains(&name.as_str()) || name.starts_with("x-envoy-") {
            return Err(error(
                *path,
                format!(
                    "`{name}` is a header Envoy or HTTP already gives a meaning; pick another name"
                ),
            ));
        }
        if let Some((other, _)) = named.iter().take(i).find(|(_, n)| n == name) {
            return Err(error(*path, format!("`{name}` is also {other}")));
        }
    }
    Ok(())
}

/// A service's credential headers must not be one of Tollgate's own: Tollgate sets and removes those.
fn check_collisions(
    headers: &InternalHeaders,
    service: &Service,
    path: &str,
) -> Result<(), ConfigError> {
    let own = [
        &headers.cluster,
        &headers.host,
        &headers.app_id,
        &headers.plan,
        &headers.debug,
    ];
    for name in service.credentials.names_at(Location::Header) {
        if own.iter().any(|own| own.eq_ignore_ascii_case(name)) {
            return Err(error(
                format!("{path}.credentials.headers"),
                format!("`{name}` is one of Tollgate's own headers (see `headers`)"),
            ));
        }
    }
    Ok(())
}

/// Rules that load but count nothing.
fn rule_warnings(rules: &[RawMappingRule], path: &str) -> Vec<String> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.delta == 0)
        .map(|(i, _)| {
            format!("{path}.mapping_rules[{i}].delta: 0 matches requests but counts nothing")
        })
        .collect()
}

/// With one service answering for every host, route metadata, route names and the Host cannot
/// change which service serves a request.
pub(super) fn sole_service(services: &[Rc<Service>]) -> Option<Rc<Service>> {
    match services {
        [only] if only.hosts.iter().any(HostGlob::matches_every_host) => Some(Rc::clone(only)),
        _ => None,
    }
}

fn backend(raw: &RawConfig) -> Result<Backend, ConfigError> {
    let b = &raw.backend;
    if b.cluster.is_empty() {
        return Err(error(
            "backend.cluster",
            "the Envoy cluster of the 3scale backend is required",
        ));
    }
    check_header_value(&b.cluster).map_err(|why| error("backend.cluster", why))?;
    let authority = b.authority.clone().unwrap_or_else(|| b.cluster.clone());
    if authority.is_empty() || authority.contains(['/', ' ', '?', '#']) {
        return Err(error(
            "backend.authority",
            "a host[:port] such as su1.3scale.net",
        ));
    }
    check_header_value(&authority).map_err(|why| error("backend.authority", why))?;
    let prefix = b.path_prefix.clone().unwrap_or_default();
    let prefix = prefix.trim_end_matches('/').to_string();
    if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.contains(['?', '#', ' '])) {
        return Err(error(
            "backend.path_prefix",
            "a path starting with `/`, without query",
        ));
    }
    let timeout = match b.timeout_ms {
        None => DEFAULT_TIMEOUT,
        Some(ms @ 1..=60_000) => Duration::from_millis(ms),
        Some(ms) => {
            return Err(error(
                "backend.timeout_ms",
                format!("{ms} is not between 1 and 60000"),
            ));
        }
    };
    Ok(Backend {
        cluster: b.cluster.clone(),
        authority,
        path_prefix: prefix,
        timeout,
    })
}

fn header_name(value: Option<&String>, default: &str, path: &str) -> Result<String, ConfigError> {
    let name = value.map_or(default, String::as_str);
    check_header_name(name).map_err(|why| error(path, why))?;
    Ok(name.to_ascii_lowercase())
}

fn internal_headers(raw: &RawConfig) -> Result<InternalHeaders, ConfigError> {
    let h = raw.headers.as_ref();
    let headers = InternalHeaders {
        cluster: header_name(
            h.and_then(|h| h.cluster.as_ref()),
            "x-tollgate-cluster",
            "headers.cluster",
        )?,
        host: header_name(
            h.and_then(|h| h.host.as_ref()),
            "x-tollgate-host",
            "headers.host",
        )?,
        app_id: header_name(
            h.and_then(|h| h.app_id.as_ref()),
            "x-tollgate-app-id",
            "headers.app_id",
        )?,
        plan: header_name(
            h.and_then(|h| h.plan.as_ref()),
            "x-tollgate-plan",
            "headers.plan",
        )?,
        debug: header_name(
            h.and_then(|h| h.debug.as_ref()),
            "x-3scale-debug",
            "headers.debug",
        )?,
    };
    check_internal_headers(&headers)?;
    Ok(headers)
}

fn service(
    raw: RawService,
    path: &str,
    global_errors: &super::raw::RawErrors,
    env: Env,
) -> Result<Service, ConfigError> {
    if raw.id.is_empty() || raw.id.contains(|c: char| c.is_control() || c == ' ') {
        return Err(error(
            format!("{path}.id"),
            "the 3scale service id is required (no spaces)",
        ));
    }
    let (auth, debug_secret) = backend_auth(&raw, path, env)?;
    let selector = raw.selector.unwrap_or_default();
    let hosts = selector
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            HostGlob::new(h).map_err(|why| error(format!("{path}.match.hosts[{i}]"), why))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let credentials_path = format!("{path}.credentials");
    let credentials = credentials_spec(&raw.credentials, &credentials_path)?;
    let jwt = jwt_source(&raw.credentials);
    let default_credentials = raw
        .credentials
        .default
        .as_ref()
        .map(|d| {
            default_credentials(
                d,
                credentials.kind,
                &format!("{credentials_path}.default"),
                env,
            )
        })
        .transpose()?;
    let mapping_rules = mapping_rules(&raw.mapping_rules, &format!("{path}.mapping_rules"))?;
    let routing = raw
        .plans
        .as_ref()
        .map(|plans| {
            let mut routes = Vec::with_capacity(plans.routes.len());
            for (plan, route) in &plans.routes {
                routes.push((
                    plan.clone(),
                    plan_route(
                        route,
                        &format!("{path}.plans.routes{}", super::json::key_segment(plan)),
                    )?,
                ));
            }
            let default = plans
                .default
                .as_ref()
                .map(|route| plan_route(route, &format!("{path}.plans.default")))
                .transpose()?;
            Ok(PlanRouting {
                plans: routes,
                default,
            })
        })
        .transpose()?;
    let upstream = raw.upstream.as_ref();
    let secret_header = upstream
        .and_then(|u| u.secret_header.as_ref())
        .map(|s| {
            let name_path = format!("{path}.upstream.secret_header.name");
            let name = header_name(s.name.as_ref(), "x-3scale-proxy-secret-token", &name_path)?;
            let value_path = format!("{path}.upstream.secret_header.value");
            let value = s
                .value
                .resolve(env)
                .map_err(|why| error(&value_path, why))?;
            check_header_value(&value).map_err(|why| error(&value_path, why))?;
            Ok((name, value))
        })
        .transpose()?;
    let failure = failure_policy(raw.failure.as_ref(), &format!("{path}.failure"))?;
    if failure.fail_open_cluster.is_some() && routing.is_none() {
        return Err(error(
            format!("{path}.failure.fail_open_cluster"),
            "needs `plans`: without plan routing Tollgate sets no cluster header",
        ));
    }
    if failure.policy == Policy::AllowCached && raw.mode == Mode::PerRequest {
        return Err(error(
            format!("{path}.failure.policy"),
            "allow_cached needs `mode` `cache`: per_request answers are not cached, \
             so no cached decision would ever stand (it would act as `deny`)",
        ));
    }
    let service_errors = raw.errors.unwrap_or_default();
    let replies = Replies::build(&[global_errors, &service_errors])
        .map_err(|(sub, why)| error(format!("{path}.errors.{sub}"), why))?;
    Ok(Service {
        stats_label: crate::stats::service_label(&raw.id).into(),
        id: raw.id,
        auth,
        debug_secret,
        route_names: selector.route_names,
        hosts,
        credentials,
        jwt,
        default_credentials,
        strip_credentials: raw.credentials.strip.unwrap_or(true),
        referrer: raw.referrer,
        mapping_rules,
        routing,
        secret_header,
        send_app_id: upstream.is_some_and(|u| u.send_app_id),
        send_plan: upstream.is_some_and(|u| u.send_plan),
        rate_limit_headers: raw.rate_limit_headers,
        replies,
        mode: raw.mode,
        failure,
        report_response_codes: raw.report_response_codes.unwrap_or(true),
    })
}

fn backend_auth(
    raw: &RawService,
    path: &str,
    env: Env,
) -> Result<(BackendAuth, String), ConfigError> {
    let resolve = |secret: &Secret, field: &str| {
        let value = secret
            .resolve(env)
            .map_err(|why| error(format!("{path}.{field}"), why))?;
        if value.contains(|c: char| c.is_control()) {
            return Err(error(
                format!("{path}.{field}"),
                "contains control characters",
            ));
        }
        Ok(value)
    };
    match (&raw.service_token, &raw.provider_key) {
        (Some(token), None) => {
            let token = resolve(token, "service_token")?;
            Ok((BackendAuth::ServiceToken(token.clone()), token))
        }
        (None, Some(key)) => {
            let key = resolve(key, "provider_key")?;
            Ok((BackendAuth::ProviderKey(key.clone()), key))
        }
        (Some(_), Some(_)) => Err(error(
            path,
            "set either service_token or provider_key, not both",
        )),
        (None, None) => Err(error(
            path,
            "service_token (or provider_key) is required to call 3scale",
        )),
    }
}

fn kind(raw: RawKind) -> Kind {
    match raw {
        RawKind::UserKey => Kind::UserKey,
        RawKind::AppId => Kind::AppId,
        RawKind::Oidc => Kind::Oidc,
    }
}

fn location(raw: RawLocation) -> Location {
    match raw {
        RawLocation::Query => Location::Query,
        RawLocation::Form => Location::Form,
        RawLocation::Header => Location::Header,
        RawLocation::Basic => Location::Basic,
        RawLocation::Bearer => Location::Bearer,
    }
}

fn credentials_spec(raw: &RawCredentials, path: &str) -> Result<Spec, ConfigError> {
    let kind = kind(raw.kind);
    let mut spec = Spec::default_for(kind);
    if kind == Kind::Oidc {
        if raw.locations.is_some() || raw.params.is_some() || raw.headers.is_some() {
            return Err(error(
                path,
                "an oidc service takes the client id from the JWT verified by jwt_authn; \
                 locations, params and headers do not apply (use `jwt`)",
            ));
        }
    } else if raw.jwt.is_some() {
        return Err(error(format!("{path}.jwt"), "only for kind `oidc`"));
    }
    if let Some(locations) = &raw.locations {
        if locations.is_empty() {
            return Err(error(
                format!("{path}.locations"),
                "at least one location is required",
            ));
        }
        for (i, l) in locations.iter().enumerate() {
            if locations.iter().take(i).any(|earlier| earlier == l) {
                return Err(error(format!("{path}.locations[{i}]"), "listed twice"));
            }
        }
        spec.locations = locations.iter().copied().map(location).collect();
    }
    if let Some(params) = &raw.params {
        apply_names(
            &mut spec.params,
            params,
            kind,
            &format!("{path}.params"),
            false,
        )?;
    }
    if let Some(headers) = &raw.headers {
        apply_names(
            &mut spec.headers,
            headers,
            kind,
            &format!("{path}.headers"),
            true,
        )?;
    }
    if let Some(claim) = raw.jwt.as_ref().and_then(|j| j.claim.as_ref()) {
        if claim.is_empty() {
            return Err(error(
                format!("{path}.jwt.claim"),
                "the claim name cannot be empty",
            ));
        }
        spec.jwt_claim = claim.clone();
    }
    spec.check().map_err(|why| error(path, why))?;
    Ok(spec)
}

fn apply_names(
    names: &mut Names,
    raw: &RawNames,
    kind: Kind,
    path: &str,
    headers: bool,
) -> Result<(), ConfigError> {
    let fields: [(&Option<String>, &mut String, &str, bool); 3] = [
        (
            &raw.user_key,
            &mut names.user_key,
            "user_key",
            kind == Kind::UserKey,
        ),
        (
            &raw.app_id,
            &mut names.app_id,
            "app_id",
            kind == Kind::AppId,
        ),
        (
            &raw.app_key,
            &mut names.app_key,
            "app_key",
            kind == Kind::AppId,
        ),
    ];
    for (value, slot, field, applies) in fields {
        let Some(value) = value else { continue };
        let field_path = format!("{path}.{field}");
        if !applies {
            return Err(error(field_path, "does not apply to this credentials kind"));
        }
        if headers {
            check_header_name(value).map_err(|why| error(&field_path, why))?;
            *slot = value.to_ascii_lowercase();
        } else {
            if value.is_empty() || value.contains(['&', '=', '#', ' ']) {
                return Err(error(
                    field_path,
                    "a parameter name without `&`, `=`, `#` or spaces",
                ));
            }
            *slot = value.clone();
        }
    }
    Ok(())
}

fn jwt_source(raw: &RawCredentials) -> JwtSource {
    let jwt = raw.jwt.as_ref();
    JwtSource {
        filter: jwt
            .and_then(|j| j.filter.clone())
            .unwrap_or_else(|| "envoy.filters.http.jwt_authn".to_string()),
        payload_key: jwt
            .and_then(|j| j.payload_in_metadata.clone())
            .unwrap_or_else(|| "jwt_payload".to_string()),
    }
}

fn default_credentials(
    raw: &RawDefaultCredentials,
    kind: Kind,
    path: &str,
    env: Env,
) -> Result<Credentials, ConfigError> {
    let secret = |s: &Secret, field: &str| {
        s.resolve(env)
            .map_err(|why| error(format!("{path}.{field}"), why))
    };
    match (kind, &raw.user_key, &raw.app_id, &raw.app_key) {
        (Kind::UserKey, Some(key), None, None) => {
            Ok(Credentials::UserKey(secret(key, "user_key")?))
        }
        (Kind::AppId, None, Some(app_id), app_key) if !app_id.is_empty() => {
            Ok(Credentials::AppId {
                app_id: app_id.clone(),
                app_key: app_key.as_ref().map(|k| secret(k, "app_key")).transpose()?,
            })
        }
        (Kind::Oidc, None, Some(app_id), None) if !app_id.is_empty() => Ok(Credentials::AppId {
            app_id: app_id.clone(),
            app_key: None,
        }),
        (Kind::UserKey, ..) => Err(error(path, "a user_key service takes {\"user_key\": ...}")),
        (Kind::AppId, ..) => Err(error(
            path,
            "an app_id service takes {\"app_id\": ..., \"app_key\": ...}",
        )),
        (Kind::Oidc, ..) => Err(error(
            path,
            "an oidc service takes {\"app_id\": <client id>}",
        )),
    }
}

fn mapping_rules(raw: &[RawMappingRule], path: &str) -> Result<MappingRules, ConfigError> {
    if raw.is_empty() {
        return Err(error(
            path,
            "at least one mapping rule is required, e.g. {\"method\":\"ANY\",\"pattern\":\"/\",\"metric\":\"hits\"}",
        ));
    }
    let mut metrics: Vec<Rc<str>> = Vec::new();
    let mut rules = Vec::with_capacity(raw.len());
    for (i, rule) in raw.iter().enumerate() {
        let rule_path = format!("{path}[{i}]");
        check_method(&rule.method).map_err(|why| error(format!("{rule_path}.method"), why))?;
        if rule.delta > MAX_DELTA {
            return Err(error(
                format!("{rule_path}.delta"),
                format!("{} is more than {MAX_DELTA}", rule.delta),
            ));
        }
        check_metric(&rule.metric).map_err(|why| error(format!("{rule_path}.metric"), why))?;
        let metric = match metrics.iter().find(|m| ***m == *rule.metric) {
            Some(known) => Rc::clone(known),
            None => {
                let new: Rc<str> = Rc::from(rule.metric.as_str());
                metrics.push(Rc::clone(&new));
                new
            }
        };
        let compiled = MappingRule::new(&rule.method, &rule.pattern, metric, rule.delta, rule.last)
            .map_err(|why| error(format!("{rule_path}.pattern"), why))?;
        rules.push(compiled);
    }
    Ok(MappingRules::new(rules))
}

/// The methods a mapping rule can name (3scale's list), and ANY.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "ANY",
];

fn check_method(method: &str) -> Result<(), String> {
    if METHODS.contains(&method) {
        return Ok(());
    }
    let upper = method.to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        return Err(format!(
            "methods are upper case, as Envoy sees them: write `{upper}`"
        ));
    }
    Err(format!(
        "`{method}` is not a method a mapping rule can name: {}",
        METHODS.join(", ")
    ))
}

/// 3scale system names: letters, digits, `_`, `-`, `.`; they travel in `usage[<name>]`.
fn check_metric(metric: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if metric.is_empty() || !metric.chars().all(ok) {
        return Err(format!(
            "`{metric}` is not a 3scale metric system name (letters, digits, _ - .)"
        ));
    }
    Ok(())
}

fn plan_route(raw: &RawPlanRoute, path: &str) -> Result<PlanRoute, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(error(
            format!("{path}.cluster"),
            "an Envoy cluster name is required",
        ));
    }
    check_header_value(&raw.cluster).map_err(|why| error(format!("{path}.cluster"), why))?;
    if let Some(host) = &raw.host {
        if host.is_empty() || host.contains(['/', ' ', '?', '#', '@']) {
            return Err(error(
                format!("{path}.host"),
                "a host[:port] for the upstream Host header",
            ));
        }
        check_header_value(host).map_err(|why| error(format!("{path}.host"), why))?;
    }
    Ok(PlanRoute {
        cluster: raw.cluster.clone(),
        host: raw.host.clone(),
    })
}

fn bounded(
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    path: &str,
) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if !range.contains(&value) {
        return Err(error(
            path,
            format!(
                "{value} is not between {} and {}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

fn cache_settings(raw: &RawCache) -> Result<CacheSettings, ConfigError> {
    let slots = bounded(
        raw.slots.map(u64::from),
        131_072,
        16..=4_194_304,
        "cache.slots",
    )?;
    let key_prefix = raw
        .key_prefix
        .clone()
        .unwrap_or_else(|| "tollgate.v1".to_string());
    if key_prefix.is_empty() || key_prefix.chars().any(|c| c.is_control() || c == ' ') {
        return Err(error(
            "cache.key_prefix",
            "a non-empty prefix without spaces",
        ));
    }
    Ok(CacheSettings {
        slots: u32::try_from(slots).unwrap_or(u32::MAX),
        ttl_ms: bounded(raw.ttl_seconds, 20, 1..=3600, "cache.ttl_seconds")? * 1000,
        report_interval_ms: bounded(
            raw.report_interval_ms,
            1000,
            50..=60_000,
            "cache.report_interval_ms",
        )?,
        report_batch_size: usize::try_from(bounded(
            raw.report_batch_size.map(|n| n as u64),
            500,
            1..=2000,
            "cache.report_batch_size",
        )?)
        .unwrap_or(500),
        report_timeout_ms: bounded(
            raw.report_timeout_ms,
            5000,
            100..=60_000,
            "cache.report_timeout_ms",
        )?,
        lease_ms: bounded(
            raw.lease_ms,
            crate::lease::LEASE_MS,
            0..=10_000,
            "cache.lease_ms",
        )?,
        key_prefix,
    })
}

fn failure_policy(raw: Option<&RawFailure>, path: &str) -> Result<FailurePolicy, ConfigError> {
    let default = RawFailure::default();
    let raw = raw.unwrap_or(&default);
    let max_staleness = bounded(
        raw.max_staleness_seconds,
        3600,
        1..=7 * 86_400,
        &format!("{path}.max_staleness_seconds"),
    )?;
    match (raw.policy, raw.allowed.is_empty()) {
        (Policy::AllowListed, true) => {
            return Err(error(
                format!("{path}.allowed"),
                "allow_listed needs the application ids / user keys that may pass",
            ));
        }
        (Policy::Deny | Policy::AllowCached | Policy::Allow, false) => {
            return Err(error(
                format!("{path}.allowed"),
                "only for the allow_listed policy",
            ));
        }
        _ => {}
    }
    if let Some(cluster) = &raw.fail_open_cluster {
        if cluster.is_empty() {
            return Err(error(
                format!("{path}.fail_open_cluster"),
                "an Envoy cluster name",
            ));
        }
        check_header_value(cluster)
            .map_err(|why| error(format!("{path}.fail_open_cluster"), why))?;
    }
    Ok(FailurePolicy {
        policy: raw.policy,
        max_staleness_ms: max_staleness * 1000,
        allowed: raw.allowed.clone(),
        fail_open_cluster: raw.fail_open_cluster.clone(),
    })
}
