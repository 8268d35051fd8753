//! What changed between two compiled configurations, in the terms a reviewer checks: which services
//! came and went, and per service its mapping rules, credentials and error replies.
//!
//! Compiled configurations are compared rather than JSON texts, so a default written out, a field
//! moved or an APIcast service converted to Tollgate's JSON shows no change where requests would see
//! none.

use tollgate::category::Category;
use tollgate::config::{Config, Service};
use tollgate::credentials::Kind;

/// One line per change, services in the new configuration's order, removed ones last.
pub fn changes(before: &Config, after: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    for service in &after.services {
        match before.services.iter().find(|s| s.id == service.id) {
            None => lines.push(format!("+ service {}", service.id)),
            Some(old) => service_changes(old, service, &mut lines),
        }
    }
    for service in &before.services {
        if !after.services.iter().any(|s| s.id == service.id) {
            lines.push(format!("- service {}", service.id));
        }
    }
    lines
}

fn service_changes(old: &Service, new: &Service, lines: &mut Vec<String>) {
    let id = &new.id;
    let (old_rules, new_rules) = (rules(old), rules(new));
    for rule in &old_rules {
        if !new_rules.contains(rule) {
            lines.push(format!("service {id}: - rule {rule}"));
        }
    }
    for rule in &new_rules {
        if !old_rules.contains(rule) {
            lines.push(format!("service {id}: + rule {rule}"));
        }
    }
    let same_set =
        old_rules.len() == new_rules.len() && old_rules.iter().all(|r| new_rules.contains(r));
    if same_set && old_rules != new_rules {
        lines.push(format!("service {id}: rules reordered"));
    }
    let (old_credentials, new_credentials) = (credentials(old), credentials(new));
    if old_credentials != new_credentials {
        lines.push(format!(
            "service {id}: credentials {old_credentials} -> {new_credentials}"
        ));
    }
    for category in Category::ALL {
        let (before, after) = (reply(old, category), reply(new, category));
        if before != after {
            lines.push(format!(
                "service {id}: error {}: {before} -> {after}",
                category.code()
            ));
        }
    }
}

fn rules(service: &Service) -> Vec<String> {
    service
        .mapping_rules
        .iter()
        .map(|rule| {
            let last = if rule.is_last() { " (last)" } else { "" };
            format!(
                "{} {} -> {} +{}{last}",
                rule.method(),
                rule.pattern(),
                rule.metric(),
                rule.delta()
            )
        })
        .collect()
}

fn credentials(service: &Service) -> String {
    let spec = &service.credentials;
    let locations: Vec<&str> = spec.locations.iter().map(|l| l.as_str()).collect();
    let names = format!(
        "params {}/{}/{}, headers {}/{}/{}, claim {}",
        spec.params.user_key,
        spec.params.app_id,
        spec.params.app_key,
        spec.headers.user_key,
        spec.headers.app_id,
        spec.headers.app_key,
        spec.jwt_claim
    );
    format!(
        "[{} in {}; {names}; default {}]",
        match spec.kind {
            Kind::UserKey => "user_key",
            Kind::AppId => "app_id",
            Kind::Oidc => "oidc",
        },
        locations.join(","),
        if service.default_credentials.is_some() {
            "set"
        } else {
            "none"
        }
    )
}

fn reply(service: &Service, category: Category) -> String {
    match service.replies.get(category) {
        None => "default".to_string(),
        Some(reply) => format!(
            "{} {:?} ({}) {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body(None)),
            reply.content_type,
            reply.headers
        ),
    }
}
