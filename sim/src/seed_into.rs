//! `tollgate-sim seed --into URL FILE`: loads a seed file into any apisonator through its internal API,
//! so the demo's and the tests' seeds can set up a real backend as they set up the simulator.
//!
//! The calls are the ones the README lists for the internal API, in dependency order: services, their
//! tokens, metrics (parents first), plan limits, applications with their keys, user key and referrer
//! filters. HTTP/1.1 over plain TCP, one connection per call: the internal API is not a public endpoint
//! (`http://127.0.0.1:3001`, or a port-forward to a backend-listener). Existing objects are updated
//! (apisonator answers 405 to a second POST of an application: it is then PUT).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::seed::{Seed, SeedService};

/// `http://host:port` and an optional path prefix.
struct Target {
    authority: String,
    prefix: String,
}

fn target(url: &str) -> Result<Target, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url}: only http:// URLs (the internal API is not served over TLS here)")
    })?;
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let prefix = prefix.trim_end_matches('/');
    Ok(Target {
        authority: authority.to_owned(),
        prefix: if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        },
    })
}

/// One call: the status and body.
fn call(target: &Target, method: &str, path: &str, body: &Value) -> Result<(u16, String), String> {
    let what = format!("{method} {}{path}", target.prefix);
    let mut stream = TcpStream::connect(&target.authority).map_err(|e| format!("{what}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let body = body.to_string();
    let request = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.prefix,
        target.authority,
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{what}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{what}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: not an HTTP answer"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

fn ok(target: &Target, method: &str, path: &str, body: &Value) -> Result<(), String> {
    match call(target, method, path, body)? {
        (200..=299, _) => Ok(()),
        (status, answer) => Err(format!("{method} {path}: {status} {}", answer.trim())),
    }
}

fn load_service(target: &Target, service: &SeedService) -> Result<usize, String> {
    let sid = &service.id;
    let mut calls = 0;
    let mut attributes = json!({
        "id": sid, "provider_key": service.provider_key,
        "backend_version": service.backend_version, "state": service.state,
        "referrer_filters_required": service.referrer_filters_required,
    });
    if let Some(default) = service.default_service {
        attributes["default_service"] = json!(default);
    }
    ok(
        target,
        "POST",
        "/internal/services/",
        &json!({ "service": attributes }),
    )?;
    calls += 1;
    for token in &service.service_tokens {
        let tokens = json!({ "service_tokens": { token: { "service_id": sid } } });
        ok(target, "POST", "/internal/service_tokens/", &tokens)?;
        calls += 1;
    }
    // Parents first: a metric's parent must exist when it is saved.
    let mut saved: Vec<&str> = Vec::new();
    while saved.len() < service.metrics.len() {
        let before = saved.len();
        for metric in &service.metrics {
            let ready = metric.parent.as_deref().is_none_or(|p| saved.contains(&p));
            if saved.contains(&metric.name.as_str()) || !ready {
                continue;
            }
            let id = service.metric_id(&metric.name).unwrap_or_default();
            let mut body = json!({ "name": metric.name });
            if let Some(parent) = metric.parent.as_deref().and_then(|p| service.metric_id(p)) {
                body["parent_id"] = json!(parent);
            }
            ok(
                target,
                "POST",
                &format!("/internal/services/{sid}/metrics/{id}"),
                &json!({ "metric": body }),
            )?;
            saved.push(&metric.name);
            calls += 1;
        }
        if saved.len() == before {
            return Err(format!("service {sid}: metric parents form a cycle"));
        }
    }
    for plan in &service.plans {
        for (metric, periods) in &plan.limits {
            let id = service
                .metric_id(metric)
                .ok_or_else(|| format!("plan {}: no metric {metric}", plan.id))?;
            for (period, max) in periods {
                let path = format!(
                    "/internal/services/{sid}/plans/{}/usagelimits/{id}/{period}",
                    plan.id
                );
                ok(
                    target,
                    "PUT",
                    &path,
                    &json!({ "usagelimit": { period: max } }),
                )?;
                calls += 1;
            }
        }
    }
    for app in &service.applications {
        let plan_name = service
            .plans
            .iter()
            .find(|p| p.id == app.plan)
            .map(|p| p.name.clone());
        let mut attributes =
            json!({ "state": app.state, "plan_id": app.plan, "plan_name": plan_name });
        if let Some(url) = &app.redirect_url {
            attributes["redirect_url"] = json!(url);
        }
        let path = format!("/internal/services/{sid}/applications/{}", app.id);
        let body = json!({ "application": attributes });
        match call(target, "POST", &path, &body)? {
            (200..=299, _) => {}
            (405, _) => ok(target, "PUT", &path, &body)?,
            (status, answer) => return Err(format!("POST {path}: {status} {}", answer.trim())),
        }
        calls += 1;
        for key in &app.keys {
            ok(
                target,
                "POST",
                &format!("{path}/keys/"),
                &json!({ "application_key": { "value": key } }),
            )?;
            calls += 1;
        }
        if let Some(user_key) = &app.user_key {
            ok(target, "PUT", &format!("{path}/key/{user_key}"), &json!({}))?;
            calls += 1;
        }
        for filter in &app.referrer_filters {
            ok(
                target,
                "POST",
                &format!("{path}/referrer_filters"),
                &json!({ "referrer_filter": filter }),
            )?;
            calls += 1;
        }
    }
    Ok(calls)
}

/// Loads `seed` into the apisonator at `url`; returns how many calls it took.
pub fn seed_into(url: &str, seed: &Seed) -> Result<usize, String> {
    let target = target(url)?;
    let mut calls = 0;
    for service in &seed.services {
        calls += load_service(&target, service)?;
    }
    Ok(calls)
}
