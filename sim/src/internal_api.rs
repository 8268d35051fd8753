//! The subset of apisonator's internal API (`/internal/...`) that seeds a backend and reads it
//! back: services, service tokens, metrics, usage limits, applications, keys, user keys,
//! referrer filters, utilization and integration errors. Open, as apisonator is without
//! `CONFIG_INTERNAL_API_USER`; same routes, bodies and answers, so one seeding script serves both.

use hyper::Method;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::Period;
use crate::http::{Reply, query_param, segments};
use crate::ruby;
use crate::store::{Application, Service, ServiceAttrs, Store};

/// Answers one `/internal/...` request.
pub fn handle(store: &mut Store, method: &Method, path: &str, query: &str, body: &[u8]) -> Reply {
    let Some(segments) = segments(path) else {
        return not_found();
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).skip(1).collect();
    let body = match parse_body(body) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let m = method.as_str();
    match parts.as_slice() {
        ["status"] if m == "GET" => Reply::json(
            200,
            &json!({"status": "ok", "version": {"backend": "3.4.3"}}),
        ),
        ["check.json"] if m == "GET" => Reply::json(200, &json!({"status": "ok"})),
        ["services"] if m == "POST" => save_service(store, None, &body, true),
        ["services", id] => match m {
            "GET" => get_service(store, id),
            "PUT" => save_service(store, Some(id), &body, false),
            "DELETE" => delete_service(store, id),
            _ => not_found(),
        },
        ["service_tokens"] => match m {
            "POST" => save_tokens(store, &body),
            "DELETE" => delete_tokens(store, &body),
            _ => not_found(),
        },
        ["service_tokens", token, sid] if m == "HEAD" => {
            Reply::new(if store.token_exists(token, sid) {
                200
            } else {
                404
            })
        }
        ["service_tokens", token, sid, "provider_key"] if m == "GET" => {
            match store.token_exists(token, sid) {
                true => Reply::json(
                    200,
                    &json!({"status": "found", "provider_key": store.provider_key_for(sid)}),
                ),
                false => not_found_because("token/service combination not found"),
            }
        }
        ["services", sid, "metrics", id] => metric(store, m, sid, id, &body),
        [
            "services",
            sid,
            "plans",
            plan,
            "usagelimits",
            metric_id,
            period,
        ] => usage_limit(store, m, sid, plan, metric_id, period, &body),
        ["services", sid, "applications", "key", user_key] if m == "GET" || m == "DELETE" => {
            user_key_lookup(store, m, sid, user_key)
        }
        ["services", sid, "applications", id, "key", user_key] if m == "PUT" => {
            store
                .data_mut(sid)
                .user_keys
                .insert((*user_key).to_owned(), (*id).to_owned());
            Reply::json(
                200,
                &json!({"status": "modified", "application": {"id": id}}),
            )
        }
        ["services", sid, "applications", id] => application(store, m, sid, id, &body),
        ["services", sid, "applications", app_id, "keys", rest @ ..] => {
            app_keys(store, m, sid, app_id, rest, &body)
        }
        [
            "services",
            sid,
            "applications",
            app_id,
            "referrer_filters",
            rest @ ..,
        ] => referrer_filters(store, m, sid, app_id, rest, &body),
        ["services", sid, "applications", app_id, "utilization"] if m == "GET" => {
            utilization(store, sid, app_id)
        }
        ["services", sid, "errors"] => errors(store, m, sid, query),
        _ => not_found(),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| {
        Reply::json(
            400,
            &json!({"status": "error", "error": format!("invalid JSON: {e}")}),
        )
    })
}

fn not_found() -> Reply {
    Reply::json(404, &json!({"status": "not_found", "error": "Not found"}))
}

fn not_found_because(message: &str) -> Reply {
    Reply::json(404, &json!({"status": "not_found", "error": message}))
}

fn missing(name: &str) -> Reply {
    Reply::json(
        400,
        &json!({"status": "error", "error": format!("missing parameter '{name}'")}),
    )
}

/// A JSON scalar as Redis would store it (`to_s`); `None` for null/absent.
fn as_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Ruby truthiness of a JSON value (only false and null are false).
fn truthy(value: Option<&Value>) -> bool {
    !matches!(value, None | Some(Value::Null | Value::Bool(false)))
}

fn service_json(store: &Store, service: &Service) -> Value {
    json!({
        "id": service.id,
        "state": if service.active { "active" } else { "suspended" },
        "provider_key": service.provider_key,
        "backend_version": service.backend_version,
        "referrer_filters_required": service.referrer_filters_required,
        "default_service": store.is_default_service(service),
    })
}

fn get_service(store: &Store, id: &str) -> Reply {
    match store.service(id) {
        Some(service) => Reply::json(
            200,
            &json!({"status": "found", "service": service_json(store, service)}),
        ),
        None => Reply::json(404, &json!({"error": "not_found"})),
    }
}

fn save_service(store: &mut Store, path_id: Option<&str>, body: &Value, create: bool) -> Reply {
    let Some(attrs) = body.get("service").filter(|v| !v.is_null()) else {
        return missing("service");
    };
    let existing = path_id.and_then(|id| store.service(id)).cloned();
    let id = as_text(attrs.get("id"))
        .or_else(|| path_id.map(str::to_owned))
        .unwrap_or_default();
    let provider_key = as_text(attrs.get("provider_key"))
        .or_else(|| existing.as_ref().map(|s| s.provider_key.clone()));
    let Some(provider_key) = provider_key else {
        return missing("provider_key");
    };
    let state = match attrs.get("state") {
        Some(v) if !v.is_null() => as_text(Some(v)),
        _ => existing.as_ref().map(|s| {
            if s.active {
                "active".to_owned()
            } else {
                "suspended".to_owned()
            }
        }),
    };
    let service = ServiceAttrs {
        id,
        provider_key,
        backend_version: as_text(attrs.get("backend_version"))
            .or_else(|| existing.as_ref().and_then(|s| s.backend_version.clone())),
        state,
        referrer_filters_required: match attrs.get("referrer_filters_required") {
            Some(v) => truthy(Some(v)),
            None => existing
                .as_ref()
                .is_some_and(|s| s.referrer_filters_required),
        },
        default_service: attrs
            .get("default_service")
            .filter(|v| !v.is_null())
            .map(|v| truthy(Some(v))),
    };
    let (saved, is_default) = store.save_service(service);
    let mut shown = service_json(store, &saved);
    if let Some(obj) = shown.as_object_mut() {
        obj.insert("default_service".into(), is_default.into());
    }
    if create {
        Reply::json(201, &json!({"service": shown, "status": "created"}))
    } else {
        Reply::json(200, &json!({"service": shown, "status": "ok"}))
    }
}

fn delete_service(store: &mut Store, id: &str) -> Reply {
    match store.delete_service(id) {
        Ok(()) => Reply::json(200, &json!({"status": "deleted"})),
        Err(true) => Reply::json(
            400,
            &json!({"error": format!("Service id=\"{id}\" is the default service, cannot be removed")}),
        ),
        Err(false) => not_found_because(&format!("service id \"{id}\" is invalid")),
    }
}

fn save_tokens(store: &mut Store, body: &Value) -> Reply {
    let Some(tokens) = body.get("service_tokens").and_then(Value::as_object) else {
        return Reply::json(400, &json!({"error": "missing parameter 'service_tokens'"}));
    };
    let pairs: Vec<(String, Option<String>)> = tokens
        .iter()
        .map(|(token, info)| (token.clone(), as_text(info.get("service_id"))))
        .collect();
    if pairs.iter().any(|(token, _)| token.is_empty()) {
        return Reply::json(
            422,
            &json!({"status": "error", "error": "Service token cannot be blank"}),
        );
    }
    if pairs
        .iter()
        .any(|(_, sid)| sid.as_deref().is_none_or(str::is_empty))
    {
        return Reply::json(
            422,
            &json!({"status": "error", "error": "Service ID cannot be blank"}),
        );
    }
    for (token, sid) in pairs {
        store.add_token(&token, sid.as_deref().unwrap_or_default());
    }
    Reply::json(201, &json!({"status": "created"}))
}

fn delete_tokens(store: &mut Store, body: &Value) -> Reply {
    let Some(tokens) = body.get("service_tokens").and_then(Value::as_array) else {
        return Reply::json(400, &json!({"error": "missing parameter 'service_tokens'"}));
    };
    let count = tokens
        .iter()
        .filter(|t| {
            let token = as_text(t.get("service_token")).unwrap_or_default();
            let sid = as_text(t.get("service_id")).unwrap_or_default();
            store.delete_token(&token, &sid)
        })
        .count();
    Reply::json(200, &json!({"status": "deleted", "count": count}))
}

fn metric_json(sid: &str, id: &str, name: &str, parent_id: Option<&str>) -> Value {
    json!({"service_id": sid, "id": id, "parent_id": parent_id, "name": name})
}

fn metric(store: &mut Store, method: &str, sid: &str, id: &str, body: &Value) -> Reply {
    match method {
        "GET" => match store.data(sid).and_then(|d| d.metrics.by_id(id)) {
            Some(m) => Reply::json(
                200,
                &json!({"status": "found", "metric": metric_json(sid, id, &m.name, m.parent_id.as_deref())}),
            ),
            None => not_found_because("metric not found"),
        },
        "POST" | "PUT" => {
            let Some(attrs) = body.get("metric").filter(|v| !v.is_null()) else {
                return missing("metric");
            };
            let name = as_text(attrs.get("name")).unwrap_or_default();
            let parent = as_text(attrs.get("parent_id"));
            let data = store.data_mut(sid);
            let saved = data.metrics.save(id, &name, parent.as_deref());
            // Children given inline are saved under this metric, as apisonator does.
            for child in attrs
                .get("children")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(child_id), Some(child_name)) =
                    (as_text(child.get("id")), as_text(child.get("name")))
                {
                    data.metrics.save(&child_id, &child_name, Some(id));
                }
            }
            let shown = metric_json(sid, id, &saved.name, saved.parent_id.as_deref());
            if method == "POST" {
                Reply::json(201, &json!({"status": "created", "metric": shown}))
            } else {
                Reply::json(200, &json!({"status": "modified", "metric": shown}))
            }
        }
        "DELETE" => {
            if store.data_mut(sid).metrics.delete(id) {
                Reply::json(200, &json!({"status": "deleted"}))
            } else {
                not_found_because("metric not found")
            }
        }
        _ => not_found(),
    }
}

fn usage_limit(
    store: &mut Store,
    method: &str,
    sid: &str,
    plan: &str,
    metric_id: &str,
    period: &str,
    body: &Value,
) -> Reply {
    let limit_json = |value: i64| {
        let mut obj = Map::new();
        obj.insert("service_id".into(), sid.into());
        obj.insert("plan_id".into(), plan.into());
        obj.insert("metric_id".into(), metric_id.into());
        obj.insert(period.into(), value.into());
        Value::Object(obj)
    };
    match method {
        "GET" => {
            match Period::parse(period).and_then(|p| store.data(sid)?.limit(plan, metric_id, p)) {
                Some(value) => Reply::json(
                    200,
                    &json!({"status": "found", "usagelimit": limit_json(value)}),
                ),
                None => not_found_because("usagelimit not found"),
            }
        }
        "PUT" => {
            let Some(attrs) = body.get("usagelimit").filter(|v| !v.is_null()) else {
                return missing("usagelimit");
            };
            let Some(raw) = attrs
                .get(period)
                .filter(|v| !matches!(v, Value::Null | Value::Bool(false)))
            else {
                return missing(period);
            };
            let value = ruby::to_i(&as_text(Some(raw)).unwrap_or_default());
            // Unknown periods are accepted and ignored, as apisonator does.
            if let Some(p) = Period::parse(period) {
                store.data_mut(sid).set_limit(plan, metric_id, p, value);
            }
            Reply::json(
                200,
                &json!({"status": "modified", "usagelimit": limit_json(value)}),
            )
        }
        "DELETE" => {
            if let Some(p) = Period::parse(period) {
                store.data_mut(sid).delete_limit(plan, metric_id, p);
            }
            Reply::json(200, &json!({"status": "deleted"}))
        }
        _ => not_found(),
    }
}

fn application_json(sid: &str, app: &Application) -> Value {
    json!({
        "service_id": sid,
        "id": app.id,
        "state": app.state,
        "plan_id": app.plan_id,
        "plan_name": app.plan_name,
        "redirect_url": app.redirect_url,
    })
}

fn application(store: &mut Store, method: &str, sid: &str, id: &str, body: &Value) -> Reply {
    let app_missing = || not_found_because("application not found");
    match method {
        "GET" => match store.data(sid).and_then(|d| d.applications.get(id)) {
            Some(app) => Reply::json(
                200,
                &json!({"status": "found", "application": application_json(sid, app)}),
            ),
            None => app_missing(),
        },
        "POST" | "PUT" => {
            let Some(attrs) = body.get("application").filter(|v| !v.is_null()) else {
                return missing("application");
            };
            let data = store.data_mut(sid);
            let existing = data.applications.get(id).cloned();
            if method == "POST" && existing.is_some() {
                return Reply::json(
                    405,
                    &json!({"status": "exists", "error": "application cannot be created, exists already"}),
                );
            }
            // Attributes not given keep their stored value (apisonator only writes non-nil ones).
            let keep = |name: &str, old: Option<String>| as_text(attrs.get(name)).or(old);
            let Some(state) = keep("state", existing.as_ref().map(|a| a.state.clone())) else {
                return Reply::json(
                    400,
                    &json!({"status": "bad_request", "error": format!("Application with id=\"{id}\" has no state ")}),
                );
            };
            let app = Application {
                id: id.to_owned(),
                state,
                plan_id: keep("plan_id", existing.as_ref().and_then(|a| a.plan_id.clone())),
                plan_name: keep(
                    "plan_name",
                    existing.as_ref().and_then(|a| a.plan_name.clone()),
                ),
                redirect_url: keep(
                    "redirect_url",
                    existing.as_ref().and_then(|a| a.redirect_url.clone()),
                ),
            };
            let shown = application_json(sid, &app);
            data.applications.insert(id.to_owned(), app);
            match (method, existing) {
                ("POST", _) => {
                    Reply::json(201, &json!({"status": "created", "application": shown}))
                }
                (_, Some(_)) => {
                    Reply::json(200, &json!({"status": "modified", "application": shown}))
                }
                (_, None) => Reply::json(200, &json!({"status": "created", "application": shown})),
            }
        }
        "DELETE" => match store.data_mut(sid).applications.remove(id) {
            Some(_) => Reply::json(200, &json!({"status": "deleted"})),
            None => app_missing(),
        },
        _ => not_found(),
    }
}

fn user_key_lookup(store: &mut Store, method: &str, sid: &str, user_key: &str) -> Reply {
    if method == "DELETE" {
        store.data_mut(sid).user_keys.remove(user_key);
        return Reply::json(200, &json!({"status": "deleted"}));
    }
    match store.data(sid).and_then(|d| d.user_keys.get(user_key)) {
        Some(id) => Reply::json(200, &json!({"status": "found", "application": {"id": id}})),
        None => not_found_because("application key not found"),
    }
}

fn app_exists(store: &Store, sid: &str, app_id: &str) -> bool {
    store
        .data(sid)
        .is_some_and(|d| d.applications.contains_key(app_id))
}

fn app_keys(
    store: &mut Store,
    method: &str,
    sid: &str,
    app_id: &str,
    rest: &[&str],
    body: &Value,
) -> Reply {
    if !app_exists(store, sid, app_id) {
        return not_found_because("application not found");
    }
    match (method, rest) {
        ("GET", []) => {
            let keys: Vec<Value> = store
                .data(sid)
                .map(|d| d.keys_of(app_id))
                .unwrap_or_default()
                .into_iter()
                .map(|k| json!({"service_id": sid, "app_id": app_id, "value": k}))
                .collect();
            Reply::json(200, &json!({"status": "found", "application_keys": keys}))
        }
        ("POST", []) => {
            let value = body
                .get("application_key")
                .and_then(|k| as_text(k.get("value")))
                .filter(|v| !v.is_empty());
            let value = value.unwrap_or_else(random_key);
            store.data_mut(sid).add_key(app_id, &value);
            Reply::json(
                201,
                &json!({"status": "created", "application_key": {"app_id": app_id, "value": value}}),
            )
        }
        ("DELETE", [key]) => {
            if store.data_mut(sid).delete_key(app_id, key) {
                Reply::json(200, &json!({"status": "deleted"}))
            } else {
                not_found_because("application key not found")
            }
        }
        _ => not_found(),
    }
}

/// 32 hex characters, like apisonator's `SecureRandom.hex(16)` (unique, not secret).
fn random_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::with_capacity(32);
    for part in 0..2u8 {
        let mut hasher = state.build_hasher();
        hasher.write_u8(part);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out
}

fn referrer_filters(
    store: &mut Store,
    method: &str,
    sid: &str,
    app_id: &str,
    rest: &[&str],
    body: &Value,
) -> Reply {
    if !app_exists(store, sid, app_id) {
        return not_found_because("application not found");
    }
    match (method, rest) {
        ("GET", []) => {
            let mut filters = store
                .data(sid)
                .map(|d| d.filters_of(app_id).to_vec())
                .unwrap_or_default();
            filters.sort();
            Reply::json(
                200,
                &json!({"status": "found", "referrer_filters": filters}),
            )
        }
        ("POST", []) => {
            let value = as_text(body.get("referrer_filter")).filter(|v| !ruby::is_blank(v));
            let Some(value) = value else {
                return Reply::json(400, &json!({"error": "referrer filter can't be blank"}));
            };
            store.data_mut(sid).add_referrer_filter(app_id, &value);
            Reply::json(201, &json!({"status": "created", "referrer_filter": value}))
        }
        ("DELETE", [value]) => {
            let filter = decode_urlsafe_base64(value).unwrap_or_else(|| (*value).to_owned());
            if let Some(filters) = store.data_mut(sid).referrer_filters.get_mut(app_id) {
                filters.retain(|f| *f != filter);
            }
            Reply::json(200, &json!({"status": "deleted"}))
        }
        _ => not_found(),
    }
}

/// Ruby's `Base64.urlsafe_decode64` (padding optional); `None` if not valid base64 text.
fn decode_urlsafe_base64(input: &str) -> Option<String> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in input.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = bits << 6 | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from(bits >> count & 0xff).ok()?);
        }
    }
    String::from_utf8(out).ok()
}

/// apisonator's utilization: every usage report of the application's plan with stored values.
fn utilization(store: &Store, sid: &str, app_id: &str) -> Reply {
    if store.service(sid).is_none() {
        return not_found_because("service not found");
    }
    let Some(data) = store.data(sid) else {
        return not_found_because("service not found");
    };
    let Some(app) = data.applications.get(app_id) else {
        return not_found_because("application not found");
    };
    let now = store.clock.now().secs;
    let utilization = data
        .usage_limits(app.plan_id.as_deref())
        .into_iter()
        .map(|l| UtilizationRow {
            period: l.period.name(),
            current_value: data.current_value(app_id, &l.metric_id, l.period, now),
            metric_name: l.metric_name,
            max_value: l.max_value,
        })
        .collect();
    ordered_json(
        200,
        &UtilizationBody {
            status: "found",
            utilization,
        },
    )
}

/// Bodies whose key order is part of what the protocol reference shows are serialized from
/// structs (field order), not from `json!` (sorted keys).
fn ordered_json<T: Serialize>(status: u16, body: &T) -> Reply {
    match serde_json::to_string(body) {
        Ok(text) => Reply::new(status)
            .header("content-type", "application/json")
            .body(text),
        Err(_) => Reply::new(500).body("Internal Server Error\n"),
    }
}

#[derive(Serialize)]
struct UtilizationBody {
    status: &'static str,
    utilization: Vec<UtilizationRow>,
}

#[derive(Serialize)]
struct UtilizationRow {
    period: &'static str,
    metric_name: String,
    max_value: i64,
    current_value: i64,
}

#[derive(Serialize)]
struct ErrorsBody<'a> {
    status: &'static str,
    errors: Vec<ErrorRow<'a>>,
    count: usize,
}

#[derive(Serialize)]
struct ErrorRow<'a> {
    code: &'a str,
    message: &'a str,
    timestamp: &'a str,
    context_info: &'a Value,
}

fn errors(store: &mut Store, method: &str, sid: &str, query: &str) -> Reply {
    if store.service(sid).is_none() {
        return not_found_because("service not found");
    }
    match method {
        "GET" => {
            let page = query_param(query, "page").map_or(1, |p| ruby::to_i(&p));
            let per_page = match query_param(query, "per_page") {
                Some(p) if ruby::to_i(&p) <= 0 => {
                    return Reply::json(400, &json!({"error": "per_page needs to be > 0"}));
                }
                Some(p) => ruby::to_i(&p),
                None => 100,
            };
            let data = store.data_mut(sid);
            let start = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
            let take = usize::try_from(per_page).unwrap_or(0);
            let errors = data
                .errors
                .iter()
                .skip(start)
                .take(take)
                .map(|e| ErrorRow {
                    code: &e.code,
                    message: &e.message,
                    timestamp: &e.timestamp,
                    context_info: &e.context_info,
                })
                .collect();
            ordered_json(
                200,
                &ErrorsBody {
                    status: "found",
                    errors,
                    count: data.errors.len(),
                },
            )
        }
        "DELETE" => {
            store.data_mut(sid).errors.clear();
            Reply::json(200, &json!({"status": "deleted"}))
        }
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn call(store: &mut Store, method: Method, path: &str, body: &str) -> (u16, Value) {
        let reply = handle(store, &method, path, "", body.as_bytes());
        let value = if reply.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&reply.body).unwrap()
        };
        (reply.status, value)
    }

    /// The seeding calls of the protocol reference §10, in order.
    #[test]
    fn reference_seeding_sequence() {
        let mut s = Store::default();
        let steps: &[(Method, &str, &str, u16)] = &[
            (
                Method::POST,
                "/internal/services/",
                r#"{"service":{"id":"svc1","provider_key":"pk1","backend_version":"2","state":"active"}}"#,
                201,
            ),
            (
                Method::POST,
                "/internal/service_tokens/",
                r#"{"service_tokens":{"tok1":{"service_id":"svc1"}}}"#,
                201,
            ),
            (
                Method::POST,
                "/internal/services/svc1/metrics/1",
                r#"{"metric":{"name":"hits"}}"#,
                201,
            ),
            (
                Method::POST,
                "/internal/services/svc1/metrics/2",
                r#"{"metric":{"name":"get_hello","parent_id":"1"}}"#,
                201,
            ),
            (
                Method::PUT,
                "/internal/services/svc1/plans/plan_prod/usagelimits/1/day",
                r#"{"usagelimit":{"day":1000}}"#,
                200,
            ),
            (
                Method::PUT,
                "/internal/services/svc1/plans/plan_sandbox/usagelimits/1/minute",
                r#"{"usagelimit":{"minute":5}}"#,
                200,
            ),
            (
                Method::POST,
                "/internal/services/svc1/applications/app1",
                r#"{"application":{"state":"active","plan_id":"plan_prod","plan_name":"Production"}}"#,
                201,
            ),
            (
                Method::POST,
                "/internal/services/svc1/applications/app1/keys/",
                r#"{"application_key":{"value":"key1"}}"#,
                201,
            ),
            (
                Method::PUT,
                "/internal/services/svc1/applications/app3/key/ukey1",
                "{}",
                200,
            ),
            (
                Method::POST,
                "/internal/services/svc1/applications/app4",
                r#"{"application":{"state":"suspended","plan_id":"plan_prod","plan_name":"Production"}}"#,
                201,
            ),
            (
                Method::POST,
                "/internal/services/",
                r#"{"service":{"id":"svc2","provider_key":"pk1","backend_version":"oauth","state":"active","default_service":false}}"#,
                201,
            ),
            (
                Method::POST,
                "/internal/services/svc2/applications/oapp1",
                r#"{"application":{"state":"active","plan_id":"plan_oprod","plan_name":"Production","redirect_url":"https://example.com/cb"}}"#,
                201,
            ),
        ];
        for (method, path, body, status) in steps {
            let (got, value) = call(&mut s, method.clone(), path, body);
            assert_eq!(got, *status, "{path}: {value}");
        }
        assert!(s.token_exists("tok1", "svc1"));
        assert_eq!(
            s.data("svc1").unwrap().metrics.ancestor_names("get_hello"),
            ["hits"]
        );
        assert_eq!(
            s.data("svc1").unwrap().limit("plan_prod", "1", Period::Day),
            Some(1000)
        );
        assert_eq!(s.data("svc1").unwrap().user_keys["ukey1"], "app3");
        assert!(!s.data("svc1").unwrap().applications["app4"].is_active());
        let (status, v) = call(&mut s, Method::GET, "/internal/services/svc2", "");
        assert_eq!(status, 200);
        assert_eq!(v["service"]["backend_version"], "oauth");
        assert_eq!(v["service"]["default_service"], false);
    }

    #[test]
    fn applications_crud() {
        let mut s = Store::default();
        let (st, _) = call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a",
            r#"{"application":{"plan_id":"p"}}"#,
        );
        assert_eq!(st, 400);
        let (st, _) = call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a",
            r#"{"application":{"state":"active","plan_id":"p"}}"#,
        );
        assert_eq!(st, 201);
        let (st, v) = call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a",
            r#"{"application":{"state":"active"}}"#,
        );
        assert_eq!((st, v["status"].as_str()), (405, Some("exists")));
        let (st, v) = call(
            &mut s,
            Method::PUT,
            "/internal/services/s/applications/a",
            r#"{"application":{"plan_name":"P"}}"#,
        );
        assert_eq!(
            (
                st,
                v["status"].as_str(),
                v["application"]["plan_id"].as_str()
            ),
            (200, Some("modified"), Some("p"))
        );
        let (st, v) = call(
            &mut s,
            Method::GET,
            "/internal/services/s/applications/a",
            "",
        );
        assert_eq!(
            (st, v["application"]["plan_name"].as_str()),
            (200, Some("P"))
        );
        assert_eq!(
            call(
                &mut s,
                Method::DELETE,
                "/internal/services/s/applications/a",
                ""
            )
            .0,
            200
        );
        assert_eq!(
            call(
                &mut s,
                Method::DELETE,
                "/internal/services/s/applications/a",
                ""
            )
            .0,
            404
        );
        assert_eq!(
            call(
                &mut s,
                Method::GET,
                "/internal/services/s/applications/a",
                ""
            )
            .0,
            404
        );
    }

    #[test]
    fn keys_and_filters() {
        let mut s = Store::default();
        call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a",
            r#"{"application":{"state":"active"}}"#,
        );
        let (st, v) = call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a/keys/",
            "{}",
        );
        assert_eq!(st, 201);
        assert_eq!(v["application_key"]["value"].as_str().unwrap().len(), 32);
        call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a/keys/",
            r#"{"application_key":{"value":"k1"}}"#,
        );
        let (_, v) = call(
            &mut s,
            Method::GET,
            "/internal/services/s/applications/a/keys/",
            "",
        );
        assert_eq!(v["application_keys"].as_array().unwrap().len(), 2);
        assert_eq!(
            call(
                &mut s,
                Method::DELETE,
                "/internal/services/s/applications/a/keys/k1",
                ""
            )
            .0,
            200
        );
        assert_eq!(
            call(
                &mut s,
                Method::DELETE,
                "/internal/services/s/applications/a/keys/k1",
                ""
            )
            .0,
            404
        );
        assert_eq!(
            call(
                &mut s,
                Method::GET,
                "/internal/services/s/applications/zz/keys/",
                ""
            )
            .0,
            404
        );
        let (st, _) = call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a/referrer_filters",
            r#"{"referrer_filter":" "}"#,
        );
        assert_eq!(st, 400);
        call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a/referrer_filters",
            r#"{"referrer_filter":"b.com"}"#,
        );
        call(
            &mut s,
            Method::POST,
            "/internal/services/s/applications/a/referrer_filters",
            r#"{"referrer_filter":"a.com"}"#,
        );
        let (_, v) = call(
            &mut s,
            Method::GET,
            "/internal/services/s/applications/a/referrer_filters",
            "",
        );
        assert_eq!(v["referrer_filters"], json!(["a.com", "b.com"]));
        // "YS5jb20" is a.com in URL-safe base64.
        call(
            &mut s,
            Method::DELETE,
            "/internal/services/s/applications/a/referrer_filters/YS5jb20",
            "",
        );
        call(
            &mut s,
            Method::DELETE,
            "/internal/services/s/applications/a/referrer_filters/b.com",
            "",
        );
        let (_, v) = call(
            &mut s,
            Method::GET,
            "/internal/services/s/applications/a/referrer_filters",
            "",
        );
        assert_eq!(v["referrer_filters"], json!([]));
    }

    #[test]
    fn tokens_validation_and_deletion() {
        let mut s = Store::default();
        assert_eq!(
            call(&mut s, Method::POST, "/internal/service_tokens/", "{}").0,
            400
        );
        let (st, v) = call(
            &mut s,
            Method::POST,
            "/internal/service_tokens/",
            r#"{"service_tokens":{"t":{"service_id":""}}}"#,
        );
        assert_eq!(
            (st, v["error"].as_str()),
            (422, Some("Service ID cannot be blank"))
        );
        call(
            &mut s,
            Method::POST,
            "/internal/service_tokens/",
            r#"{"service_tokens":{"t":{"service_id":"s"}}}"#,
        );
        assert_eq!(
            call(&mut s, Method::HEAD, "/internal/service_tokens/t/s/", "").0,
            200
        );
        assert_eq!(
            call(&mut s, Method::HEAD, "/internal/service_tokens/t/x/", "").0,
            404
        );
        let (_, v) = call(
            &mut s,
            Method::DELETE,
            "/internal/service_tokens/",
            r#"{"service_tokens":[{"service_token":"t","service_id":"s"}]}"#,
        );
        assert_eq!(v["count"], 1);
    }

    #[test]
    fn limits_metrics_and_services() {
        let mut s = Store::default();
        let (st, _) = call(
            &mut s,
            Method::PUT,
            "/internal/services/s/plans/p/usagelimits/1/day",
            r#"{"usagelimit":{"hour":5}}"#,
        );
        assert_eq!(st, 400);
        call(
            &mut s,
            Method::PUT,
            "/internal/services/s/plans/p/usagelimits/1/day",
            r#"{"usagelimit":{"day":"7"}}"#,
        );
        let (st, v) = call(
            &mut s,
            Method::GET,
            "/internal/services/s/plans/p/usagelimits/1/day",
            "",
        );
        assert_eq!((st, v["usagelimit"]["day"].as_i64()), (200, Some(7)));
        call(
            &mut s,
            Method::DELETE,
            "/internal/services/s/plans/p/usagelimits/1/day",
            "",
        );
        assert_eq!(
            call(
                &mut s,
                Method::GET,
                "/internal/services/s/plans/p/usagelimits/1/day",
                ""
            )
            .0,
            404
        );
        assert_eq!(
            call(&mut s, Method::GET, "/internal/services/s/metrics/1", "").0,
            404
        );
        assert_eq!(
            call(
                &mut s,
                Method::PUT,
                "/internal/services/s/metrics/1",
                r#"{"metric":{"name":"hits","children":[{"id":"2","name":"c"}]}}"#
            )
            .0,
            200
        );
        let (_, v) = call(&mut s, Method::GET, "/internal/services/s/metrics/2", "");
        assert_eq!(v["metric"]["parent_id"], "1");
        assert_eq!(
            call(&mut s, Method::DELETE, "/internal/services/s/metrics/2", "").0,
            200
        );
        assert_eq!(
            call(&mut s, Method::GET, "/internal/services/nope", "").0,
            404
        );
        assert_eq!(
            call(&mut s, Method::DELETE, "/internal/services/nope", "").0,
            404
        );
        assert_eq!(
            call(&mut s, Method::GET, "/internal/services/s/errors/", "").0,
            404
        );
        assert_eq!(call(&mut s, Method::GET, "/internal/nothing", "").0, 404);
        assert_eq!(
            call(&mut s, Method::POST, "/internal/services/", "{not json").0,
            400
        );
        assert_eq!(call(&mut s, Method::GET, "/internal/%zz", "").0, 404);
    }

    #[test]
    fn base64() {
        assert_eq!(decode_urlsafe_base64("YS5jb20").as_deref(), Some("a.com"));
        assert_eq!(decode_urlsafe_base64("YS5jb20=").as_deref(), Some("a.com"));
        assert_eq!(decode_urlsafe_base64("a.com"), None);
    }
}
