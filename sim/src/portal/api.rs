//! The portal's HTTP endpoints (JSON), and the simulator's own call to publish a version.

use base64::Engine;
use hyper::Method;
use hyper::header::HeaderMap;
use serde_json::{Value, json};

use super::{ENVIRONMENTS, Portal, PortalService, ProxyConfig, env_index};
use crate::http::{Reply, query_param};

/// Porta's page size bound.
const MAX_PER_PAGE: usize = 500;

/// One portal request. `/_sim/portal/services/{id}/proxy/configs/{env}` (POST, a service `content`
/// as the body) publishes a version; every other path is Porta's.
pub fn handle(
    portal: &mut Portal,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if !authorized(portal, query, headers) {
        return Reply::json(403, &json!({"error": "Access denied"}));
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    match segments.as_slice() {
        ["_sim", "portal", "services", id, "proxy", "configs", env] if post => {
            publish(portal, id, env, body)
        }
        ["admin", "api", "services.json"] if get => services(portal, query),
        ["admin", "api", "account", "proxy_configs", env] if get => {
            account_configs(portal, env, query)
        }
        ["admin", "api", "services", id, "proxy", "configs", env] if get => {
            with_service(portal, id, env, |service, slot| {
                let all: Vec<Value> = service.configs[slot]
                    .iter()
                    .map(ProxyConfig::to_json)
                    .collect();
                Reply::json(200, &json!({"proxy_configs": all}))
            })
        }
        [
            "admin",
            "api",
            "services",
            id,
            "proxy",
            "configs",
            env,
            version,
        ] if get => with_service(portal, id, env, |service, slot| {
            let versions = &service.configs[slot];
            let found = match version.strip_suffix(".json") {
                Some("latest") => versions.last(),
                Some(number) => number
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| versions.iter().find(|c| c.version == n)),
                None => None,
            };
            found.map_or_else(not_found, |config| Reply::json(200, &config.to_json()))
        }),
        [
            "admin",
            "api",
            "services",
            id,
            "proxy",
            "configs",
            env,
            version,
            "promote.json",
        ] if post => promote(portal, id, env, version, query),
        _ => not_found(),
    }
}

fn authorized(portal: &Portal, query: &str, headers: &HeaderMap) -> bool {
    let token = query_param(query, "access_token").or_else(|| basic_password(headers));
    token.is_some_and(|token| portal.access_tokens.contains(&token))
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

fn not_found() -> Reply {
    Reply::json(404, &json!({"status": "Not found"}))
}

fn unprocessable(message: String) -> Reply {
    Reply::json(422, &json!({"errors": {"base": [message]}}))
}

/// `page` (from 1) and `per_page` (at most 500) of `items`.
fn page<'a, T>(items: &'a [T], query: &str) -> &'a [T] {
    let number = |name: &str, default: usize| {
        query_param(query, name)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let per_page = number("per_page", MAX_PER_PAGE).min(MAX_PER_PAGE);
    let start = (number("page", 1) - 1).saturating_mul(per_page);
    let end = start.saturating_add(per_page).min(items.len());
    items.get(start..end).unwrap_or(&[])
}

fn services(portal: &Portal, query: &str) -> Reply {
    let listed: Vec<Value> = page(&portal.services, query)
        .iter()
        .map(|s| {
            json!({"service": {"id": s.id, "system_name": s.system_name, "name": s.system_name,
                "backend_version": backend_version(s)}})
        })
        .collect();
    Reply::json(200, &json!({"services": listed}))
}

fn backend_version(service: &PortalService) -> Value {
    service
        .configs
        .iter()
        .rev()
        .find_map(|versions| versions.last())
        .and_then(|c| c.content.get("backend_version").cloned())
        .unwrap_or_else(|| "1".into())
}

/// The latest config of every service in `env`, optionally only those serving `host`.
fn account_configs(portal: &Portal, env: &str, query: &str) -> Reply {
    let Some(slot) = env.strip_suffix(".json").and_then(env_index) else {
        return not_found();
    };
    let host = query_param(query, "host");
    let latest: Vec<&ProxyConfig> = portal
        .services
        .iter()
        .filter_map(|s| s.configs[slot].last())
        .filter(|c| host.as_deref().is_none_or(|h| serves_host(&c.content, h)))
        .collect();
    let listed: Vec<Value> = page(&latest, query).iter().map(|c| c.to_json()).collect();
    Reply::json(200, &json!({"proxy_configs": listed}))
}

fn serves_host(content: &Value, host: &str) -> bool {
    content["proxy"]["hosts"]
        .as_array()
        .is_some_and(|hosts| hosts.iter().any(|h| h.as_str() == Some(host)))
}

fn with_service(
    portal: &Portal,
    id: &str,
    env: &str,
    answer: impl FnOnce(&PortalService, usize) -> Reply,
) -> Reply {
    let env = env.strip_suffix(".json").unwrap_or(env);
    let service = id.parse::<u64>().ok().and_then(|id| portal.service(id));
    match (service, env_index(env)) {
        (Some(service), Some(slot)) => answer(service, slot),
        _ => not_found(),
    }
}

fn publish(portal: &mut Portal, id: &str, env: &str, body: &[u8]) -> Reply {
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    let content = match serde_json::from_slice::<Value>(body) {
        Ok(content) => content,
        Err(e) => return unprocessable(format!("the body is not JSON: {e}")),
    };
    match portal.publish(id, env, content) {
        Ok(config) => Reply::json(201, &config.to_json()),
        Err(message) => unprocessable(message),
    }
}

/// Copies a staging version to production as production's next version.
fn promote(portal: &mut Portal, id: &str, env: &str, version: &str, query: &str) -> Reply {
    let to = query_param(query, "to").unwrap_or_else(|| "production".into());
    let Some(content) = id.parse::<u64>().ok().and_then(|id| {
        let service = portal.service(id)?;
        let version = version.parse::<u64>().ok()?;
        let slot = env_index(env)?;
        service.configs[slot]
            .iter()
            .find(|c| c.version == version)
            .map(|c| (id, c.content.clone()))
    }) else {
        return not_found();
    };
    if env == to || !ENVIRONMENTS.contains(&to.as_str()) {
        return unprocessable(format!("cannot promote from {env} to {to}"));
    }
    match portal.publish(content.0, &to, content.1) {
        Ok(config) => Reply::json(201, &config.to_json()),
        Err(message) => unprocessable(message),
    }
}
