//! One service in APIcast's format (the `content` of a 3scale proxy config) rewritten as a service of
//! Tollgate's own JSON, which the configuration compiler then checks like any other.
//!
//! The rewrite applies APIcast's defaults where the portal leaves a field out, so a service behaves as
//! APIcast would serve it: credentials in the query or body under `user_key` / `app_id` / `app_key`,
//! header names as APIcast reads them (`auth_user_key: "user_key"` is the `User-Key` header),
//! the four error replies with APIcast's messages, statuses and `text/plain` bodies (the message
//! exactly, no newline). A denial APIcast has no reply for (`app_inactive`, `method_disabled`) gets the
//! `auth_failed` reply, which is what APIcast answers for any refusal but limits.
//!
//! Fields a gateway does not act on (`api_backend`, `backend`, `endpoint`, timestamps…) are ignored:
//! Envoy's routes choose the upstream and the `backend` section says where 3scale is. What Tollgate
//! cannot honour is listed in [`Translated::unsupported`] instead of being silently dropped: a policy
//! it does not map, a Liquid client-id claim, a `hostname_rewrite`.

use crate::config::ConfigError;
use crate::config::json::{Json, Number};

/// The policies of a `policy_chain` Tollgate carries out itself.
const MAPPED_POLICIES: [&str; 3] = ["apicast", "default_credentials", "3scale_referrer"];

/// APIcast's error settings: the category, its message, status and content type fields, and the
/// default message and status.
type ErrorFields = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
);
const ERRORS: [ErrorFields; 4] = [
    (
        "auth_failed",
        "error_auth_failed",
        "error_status_auth_failed",
        "error_headers_auth_failed",
        "Authentication failed",
        403,
    ),
    (
        "auth_missing",
        "error_auth_missing",
        "error_status_auth_missing",
        "error_headers_auth_missing",
        "Authentication parameters missing",
        401,
    ),
    (
        "limits_exceeded",
        "error_limits_exceeded",
        "error_status_limits_exceeded",
        "error_headers_limits_exceeded",
        "Limits exceeded",
        429,
    ),
    (
        "no_match",
        "error_no_match",
        "error_status_no_match",
        "error_headers_no_match",
        "No Mapping Rule matched",
        404,
    ),
];

const ERROR_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A service rewritten in Tollgate's terms.
#[derive(Debug)]
pub struct Translated {
    pub id: String,
    pub system_name: Option<String>,
    /// The members of a Tollgate `services[]` entry.
    pub service: Vec<(String, Json)>,
    /// What the portal asks for and Tollgate does not do, one phrase each.
    pub unsupported: Vec<String>,
}

/// Rewrites the service `content` found at `at` (a JSON path, for errors).
/// `provider_key` is the account's key from an APIcast configuration file, for services that name
/// no `backend_authentication_value` of their own.
pub fn service(
    content: &Json,
    at: &str,
    provider_key: Option<&str>,
) -> Result<Translated, ConfigError> {
    let top = members(content, at)?;
    let id = match get(top, "id") {
        Some(Json::Number(Number::Unsigned(n))) => n.to_string(),
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(error(at, "id", "a service id (a number)")),
        None => return Err(error(at, "id", "required: the service id")),
    };
    let system_name = string(top, "system_name", at)?;
    let empty = Json::Object(Vec::new());
    let proxy_at = format!("{at}.proxy");
    let proxy = members(get(top, "proxy").unwrap_or(&empty), &proxy_at)?;
    let mut out = Translated {
        id: id.clone(),
        system_name,
        service: vec![("id".into(), Json::String(id))],
        unsupported: Vec::new(),
    };
    if let Some(value) = string(top, "backend_authentication_value", at)? {
        let field = match string(top, "backend_authentication_type", at)?.as_deref() {
            Some("provider_key") => "provider_key",
            _ => "service_token",
        };
        out.service.push((field.into(), Json::String(value)));
    } else if let Some(key) = provider_key {
        out.service
            .push(("provider_key".into(), Json::String(key.to_string())));
    }
    let hosts = match get(proxy, "hosts") {
        None | Some(Json::Null) => Json::Array(vec![Json::String("localhost".into())]),
        Some(hosts) => hosts.clone(),
    };
    out.service
        .push(("match".into(), Json::Object(vec![("hosts".into(), hosts)])));
    let kind = kind(top, proxy, at)?;
    let (credentials, referrer) = credentials(kind, proxy, &proxy_at, &mut out.unsupported)?;
    out.service.push(("credentials".into(), credentials));
    if referrer {
        out.service.push(("referrer".into(), Json::Bool(true)));
    }
    out.service
        .push(("mapping_rules".into(), mapping_rules(proxy, &proxy_at)?));
    out.service
        .push(("errors".into(), errors(proxy, &proxy_at)?));
    if let Some(token) = string(proxy, "secret_token", &proxy_at)?.filter(|t| !t.is_empty()) {
        let header = Json::Object(vec![("value".into(), Json::String(token))]);
        out.service.push((
            "upstream".into(),
            Json::Object(vec![("secret_header".into(), header)]),
        ));
    }
    if string(proxy, "hostname_rewrite", &proxy_at)?.is_some_and(|h| !h.is_empty()) {
        out.unsupported
            .push("`hostname_rewrite` (set the upstream Host in Envoy's route)".into());
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    UserKey,
    AppId,
    Oidc,
}

/// `authentication_method` overrides `backend_version` (APIcast's rule); both default to user_key.
fn kind(top: &[(String, Json)], proxy: &[(String, Json)], at: &str) -> Result<Kind, ConfigError> {
    let (value, path) = match get(proxy, "authentication_method") {
        Some(value) if !matches!(value, Json::Null) => (value, format!("{at}.proxy")),
        _ => match get(top, "backend_version") {
            Some(value) => (value, at.to_string()),
            None => return Ok(Kind::UserKey),
        },
    };
    let field = if path.ends_with(".proxy") {
        "authentication_method"
    } else {
        "backend_version"
    };
    match text(value).as_deref() {
        Some("1") => Ok(Kind::UserKey),
        Some("2") => Ok(Kind::AppId),
        Some("oauth" | "oidc") => Ok(Kind::Oidc),
        _ => Err(error(&path, field, "one of `1`, `2`, `oauth`, `oidc`")),
    }
}

/// The credentials section, and whether the `3scale_referrer` policy asks for the referrer.
fn credentials(
    kind: Kind,
    proxy: &[(String, Json)],
    at: &str,
    unsupported: &mut Vec<String>,
) -> Result<(Json, bool), ConfigError> {
    let kind_name = match kind {
        Kind::UserKey => "user_key",
        Kind::AppId => "app_id",
        Kind::Oidc => "oidc",
    };
    let mut out = vec![("kind".to_string(), Json::String(kind_name.into()))];
    if kind == Kind::Oidc {
        oidc_claim(proxy, at, &mut out, unsupported)?;
    } else {
        let location = string(proxy, "credentials_location", at)?;
        let (locations, names_key): (&[&str], &str) = match location.as_deref() {
            None | Some("query") => (&["query", "form"], "params"),
            Some("headers") => (&["header"], "headers"),
            Some("authorization") => (&["basic", "bearer"], ""),
            Some(_) => {
                return Err(error(
                    at,
                    "credentials_location",
                    "one of `query`, `headers`, `authorization`",
                ));
            }
        };
        let locations = locations.iter().map(|l| Json::String((*l).into()));
        out.push(("locations".into(), Json::Array(locations.collect())));
        if !names_key.is_empty() {
            out.push((
                names_key.into(),
                names(kind, proxy, at, names_key == "headers")?,
            ));
        }
    }
    let mut referrer = false;
    for (index, policy) in policies(proxy, at)?.iter().enumerate() {
        let policy_at = format!("{at}.policy_chain[{index}]");
        let fields = members(policy, &policy_at)?;
        let name = string(fields, "name", &policy_at)?.unwrap_or_default();
        // APIcast also takes a policy by its module name (`apicast.policy.apicast`).
        match name.strip_prefix("apicast.policy.").unwrap_or(&name) {
            "default_credentials" if kind != Kind::Oidc => {
                out.push(("default".into(), default_credentials(fields, &policy_at)?));
            }
            "3scale_referrer" => referrer = true,
            known if MAPPED_POLICIES.contains(&known) => {}
            other => unsupported.push(format!("policy `{other}`")),
        }
    }
    Ok((Json::Object(out), referrer))
}

fn policies<'a>(proxy: &'a [(String, Json)], at: &str) -> Result<&'a [Json], ConfigError> {
    match get(proxy, "policy_chain") {
        None | Some(Json::Null) => Ok(&[]),
        Some(Json::Array(items)) => Ok(items),
        Some(_) => Err(error(at, "policy_chain", "an array of policies")),
    }
}

/// The OpenID Connect client id claim: a plain claim name; Liquid templates are not evaluated.
fn oidc_claim(
    proxy: &[(String, Json)],
    at: &str,
    out: &mut Vec<(String, Json)>,
    unsupported: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Some(claim) = string(proxy, "jwt_claim_with_client_id", at)?.filter(|c| !c.is_empty())
    else {
        return Ok(());
    };
    let liquid = string(proxy, "jwt_claim_with_client_id_type", at)?.as_deref() == Some("liquid");
    if liquid || claim.contains("{{") || claim.contains("{%") {
        unsupported.push(format!(
            "Liquid claim `{claim}` (the client id is read from `azp`)"
        ));
        return Ok(());
    }
    let jwt = Json::Object(vec![("claim".into(), Json::String(claim))]);
    out.push(("jwt".into(), jwt));
    Ok(())
}

/// Parameter or header names, lower-cased as APIcast compares them; only those of the kind.
fn names(
    kind: Kind,
    proxy: &[(String, Json)],
    at: &str,
    headers: bool,
) -> Result<Json, ConfigError> {
    let fields: &[(&str, &str)] = match kind {
        Kind::UserKey => &[("auth_user_key", "user_key")],
        _ => &[("auth_app_id", "app_id"), ("auth_app_key", "app_key")],
    };
    let mut out = Vec::new();
    for (portal, tollgate) in fields {
        if let Some(name) = string(proxy, portal, at)?.filter(|n| !n.is_empty()) {
            let mut name = name.to_ascii_lowercase();
            if headers {
                // APIcast reads headers through nginx variables, where `_` stands for `-`.
                name = name.replace('_', "-");
            }
            out.push(((*tollgate).into(), Json::String(name)));
        }
    }
    Ok(Json::Object(out))
}

/// The `default_credentials` policy: `auth_type` `user_key` or `app_id_and_app_key`.
fn default_credentials(policy: &[(String, Json)], at: &str) -> Result<Json, ConfigError> {
    let empty = Json::Object(Vec::new());
    let config_at = format!("{at}.configuration");
    let config = members(get(policy, "configuration").unwrap_or(&empty), &config_at)?;
    let fields: &[&str] = match string(config, "auth_type", &config_at)?.as_deref() {
        Some("user_key") => &["user_key"],
        Some("app_id_and_app_key") => &["app_id", "app_key"],
        _ => {
            return Err(error(
                &config_at,
                "auth_type",
                "`user_key` or `app_id_and_app_key`",
            ));
        }
    };
    let mut out = Vec::new();
    for field in fields {
        let value = string(config, field, &config_at)?
            .ok_or_else(|| error(&config_at, field, "required by this auth_type"))?;
        out.push(((*field).into(), Json::String(value)));
    }
    Ok(Json::Object(out))
}

fn mapping_rules(proxy: &[(String, Json)], at: &str) -> Result<Json, ConfigError> {
    let rules = match get(proxy, "proxy_rules") {
        None | Some(Json::Null) => return Ok(Json::Array(Vec::new())),
        Some(Json::Array(rules)) => rules,
        Some(_) => return Err(error(at, "proxy_rules", "an array of mapping rules")),
    };
    let mut out = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        out.push(mapping_rule(rule, &format!("{at}.proxy_rules[{index}]"))?);
    }
    Ok(Json::Array(out))
}

fn mapping_rule(rule: &Json, at: &str) -> Result<Json, ConfigError> {
    let fields = members(rule, at)?;
    let method =
        string(fields, "http_method", at)?.ok_or_else(|| error(at, "http_method", "required"))?;
    let mut pattern =
        string(fields, "pattern", at)?.ok_or_else(|| error(at, "pattern", "required"))?;
    if !pattern.contains('?') {
        pattern.push_str(&query_conditions(fields, at)?);
    }
    let metric = string(fields, "metric_system_name", at)?
        .ok_or_else(|| error(at, "metric_system_name", "required"))?;
    let delta = match get(fields, "delta") {
        None | Some(Json::Null) => 1,
        Some(value) => text(value)
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| error(at, "delta", "a whole number"))?,
    };
    let last = match get(fields, "last") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(last)) => *last,
        Some(value) => text(value).as_deref() == Some("true"),
    };
    Ok(Json::Object(vec![
        ("method".into(), Json::String(method.to_ascii_uppercase())),
        ("pattern".into(), Json::String(pattern)),
        ("metric".into(), Json::String(metric)),
        ("delta".into(), Json::Number(Number::Unsigned(delta))),
        ("last".into(), Json::Bool(last)),
    ]))
}

/// `querystring_parameters` (an object) as the `?name=value&...` a pattern would carry.
fn query_conditions(rule: &[(String, Json)], at: &str) -> Result<String, ConfigError> {
    let parameters = match get(rule, "querystring_parameters") {
        None | Some(Json::Null) => return Ok(String::new()),
        Some(Json::Object(parameters)) => parameters,
        Some(Json::Array(empty)) if empty.is_empty() => return Ok(String::new()),
        Some(_) => return Err(error(at, "querystring_parameters", "an object")),
    };
    let mut query = String::new();
    for (name, value) in parameters {
        let value = text(value).ok_or_else(|| {
            error(
                &format!("{at}.querystring_parameters"),
                name,
                "a string value",
            )
        })?;
        query.push(if query.is_empty() { '?' } else { '&' });
        query.push_str(name);
        query.push('=');
        query.push_str(&value);
    }
    Ok(query)
}

/// The four error replies, APIcast's default for every field the portal leaves out.
fn errors(proxy: &[(String, Json)], at: &str) -> Result<Json, ConfigError> {
    let mut out = Vec::new();
    for (category, message_field, status_field, type_field, message, status) in ERRORS {
        let message = string(proxy, message_field, at)?.unwrap_or_else(|| message.to_string());
        let status = match get(proxy, status_field) {
            None | Some(Json::Null) => status,
            Some(value) => text(value)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| error(at, status_field, "an HTTP status"))?,
        };
        let content_type = string(proxy, type_field, at)?
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| ERROR_CONTENT_TYPE.to_string());
        let reply = Json::Object(vec![
            ("status".into(), Json::Number(Number::Unsigned(status))),
            ("message".into(), Json::String(message)),
            ("format".into(), Json::String("text".into())),
            ("content_type".into(), Json::String(content_type)),
            ("body".into(), Json::String("{message}".into())),
        ]);
        if category == "auth_failed" {
            out.push(("app_inactive".into(), reply.clone()));
            out.push(("method_disabled".into(), reply.clone()));
        }
        out.push((category.into(), reply));
    }
    Ok(Json::Object(out))
}

pub(super) fn members<'a>(value: &'a Json, at: &str) -> Result<&'a [(String, Json)], ConfigError> {
    match value {
        Json::Object(members) => Ok(members),
        _ => Err(ConfigError {
            path: at.to_string(),
            reason: "an object is expected here".into(),
        }),
    }
}

pub(super) fn get<'a>(members: &'a [(String, Json)], name: &str) -> Option<&'a Json> {
    members.iter().find(|(key, _)| key == name).map(|(_, v)| v)
}

/// A string field; null is absent. Numbers are accepted as their text (the portal mixes both).
fn string(members: &[(String, Json)], name: &str, at: &str) -> Result<Option<String>, ConfigError> {
    match get(members, name) {
        None | Some(Json::Null) => Ok(None),
        Some(value) => text(value)
            .map(Some)
            .ok_or_else(|| error(at, name, "a string")),
    }
}

fn text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(Number::Unsigned(n)) => Some(n.to_string()),
        Json::Number(Number::Negative(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn error(at: &str, field: &str, expected: &str) -> ConfigError {
    ConfigError {
        path: format!("{at}.{field}"),
        reason: expected.to_string(),
    }
}
