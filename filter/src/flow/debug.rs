//! APIcast's debug headers: what Tollgate saw and decided, for whoever holds the service's token.

use super::{Decided, RequestInfo};
use crate::host::Host;

/// Values of the `X-3scale-*` debug headers, gathered while deciding.
#[derive(Debug, Clone, Default)]
pub struct DebugInfo {
    service_id: String,
    matched_rules: String,
    credentials: Option<String>,
    usage: String,
    plan: Option<String>,
}

impl DebugInfo {
    /// Before credentials and mapping rules are known (e.g. auth_missing).
    pub(super) fn for_request(info: &RequestInfo) -> DebugInfo {
        DebugInfo {
            service_id: info.service.id.clone(),
            ..DebugInfo::default()
        }
    }

    pub(super) fn new(decided: &Decided, plan: Option<String>) -> DebugInfo {
        let rules = &decided.info.service.mapping_rules;
        let matched_rules = decided
            .matched_rules
            .iter()
            .filter_map(|i| rules.get(*i).map(|rule| rule.pattern()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut usage = form_urlencoded::Serializer::new(String::new());
        for (metric, delta) in decided.usage.iter() {
            usage.append_pair(&format!("usage[{metric}]"), &delta.to_string());
        }
        DebugInfo {
            service_id: decided.info.service.id.clone(),
            matched_rules,
            credentials: Some(super::decide::describe(&decided.credentials)),
            usage: usage.finish(),
            plan,
        }
    }

    pub(super) fn headers(&self, host: &impl Host) -> Vec<(String, String)> {
        let mut headers = vec![
            ("x-3scale-service-id".to_string(), self.service_id.clone()),
            (
                "x-3scale-matched-rules".to_string(),
                self.matched_rules.clone(),
            ),
            ("x-3scale-usage".to_string(), self.usage.clone()),
        ];
        if let Some(credentials) = &self.credentials {
            headers.push(("x-3scale-credentials".to_string(), credentials.clone()));
        }
        if let Some(plan) = &self.plan {
            headers.push(("x-3scale-plan".to_string(), plan.clone()));
        }
        if let Some(node) = host.property(&["node", "id"]) {
            headers.push((
                "x-3scale-hostname".to_string(),
                String::from_utf8_lossy(&node).into_owned(),
            ));
        }
        headers
    }
}
