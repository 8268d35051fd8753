//! An authorized request on its way upstream: plan routing, credentials stripped, headers for the
//! upstream and for access logs; then, on the response, debug and RateLimit headers.

use std::rc::Rc;

use super::{DebugInfo, Decided, Flow, Forwarded, Report, RequestInfo, Stage};
use crate::args::{remove_params, split_path};
use crate::backend::answer::AuthStatus;
use crate::category::Category;
use crate::config::{PlanRoute, Service};
use crate::credentials::{Credentials, Location};
use crate::host::{Action, Host};
use crate::ratelimit::{RateLimit, from_limit_headers, most_constraining};
use crate::stats::Stat;
use crate::verdict::LimitHeaders;

/// How an allowed request goes on: its plan, what to tell the client, and how its usage is reported.
pub(super) struct Allow {
    pub plan: Option<String>,
    pub rate_limit: Option<RateLimit>,
    pub report: Option<Report>,
    /// Let through by a failure policy: without a route of its own plan, the request goes to the
    /// fail-open cluster (before the default).
    pub fail_open: bool,
}

impl Allow {
    /// An authrep/authorize answer: the plan and, when wanted, RateLimit headers from 3scale's
    /// limit headers (else computed from the usage reports).
    pub(super) fn from_answer(
        service: &Service,
        status: &AuthStatus,
        limits: Option<&LimitHeaders>,
        usage: &crate::usage::Usage,
        now: u64,
    ) -> Allow {
        let rate_limit = if service.rate_limit_headers {
            limits
                .and_then(from_limit_headers)
                .or_else(|| most_constraining(&status.usage_reports, &status.hierarchy, usage, now))
        } else {
            None
        };
        Allow {
            plan: status.plan.clone(),
            rate_limit,
            report: None,
            fail_open: false,
        }
    }
}

impl Flow {
    pub(super) fn forward(&mut self, host: &impl Host, decided: Decided, allow: Allow) -> Action {
        let service = Rc::clone(&decided.info.service);
        let plan = allow.plan.as_deref();
        let headers = &self.config.headers;
        let debug = decided
            .info
            .debug
            .then(|| DebugInfo::new(&decided, allow.plan.clone()));
        if let Some(routing) = &service.routing {
            let fail_open = allow
                .fail_open
                .then_some(service.failure.fail_open_cluster.as_deref())
                .flatten();
            let cluster = match fail_open {
                Some(cluster) => Some(routing.plan_route(plan).map_or((cluster, None), target)),
                None => routing.route(plan).map(target),
            };
            let Some((cluster, upstream_host)) = cluster else {
                log::debug!(
                    "tollgate: service {}: no cluster for plan {plan:?}",
                    service.id
                );
                match &allow.report {
                    Some(Report::Cached { admitted, usage }) => {
                        super::cached::give_back(host, &self.config, admitted, usage);
                    }
                    Some(Report::Leased { key, usage }) => crate::lease::give_back(key, usage),
                    _ => {}
                }
                return self.refuse_with(
                    host,
                    &decided.info,
                    Category::NoRouteForPlan,
                    None,
                    debug,
                );
            };
            host.set_request_header(&headers.cluster, Some(cluster.as_bytes()));
            if decided.info.released {
                // The headers were released (form body): the route matches on filter state.
                host.set_filter_state("tollgate.cluster", cluster.as_bytes());
            }
            if let Some(upstream_host) = upstream_host {
                host.set_request_header(&headers.host, Some(upstream_host.as_bytes()));
            }
        }
        if service.strip_credentials {
            strip_credentials(host, &decided);
        }
        if let Some((name, value)) = &service.secret_header {
            host.set_request_header(name, Some(value.as_bytes()));
        }
        let app_id = match &decided.credentials {
            Credentials::AppId { app_id, .. } => Some(app_id.as_str()),
            Credentials::UserKey(_) => None,
        };
        if let (true, Some(app_id)) = (service.send_app_id, app_id) {
            host.set_request_header(&headers.app_id, Some(app_id.as_bytes()));
        }
        if let (true, Some(plan)) = (service.send_plan, plan) {
            host.set_request_header(&headers.plan, Some(plan.as_bytes()));
        }
        if self.config.filter_state {
            host.set_filter_state("tollgate.service_id", service.id.as_bytes());
            if let Some(app_id) = app_id {
                host.set_filter_state("tollgate.app_id", app_id.as_bytes());
            }
            if let Some(plan) = plan {
                host.set_filter_state("tollgate.plan", plan.as_bytes());
            }
            host.set_filter_state("tollgate.category", b"allowed");
            host.set_filter_state("tollgate.usage", usage_text(&decided.usage).as_bytes());
        }
        if service.routing.is_some() {
            host.clear_route_cache();
        }
        host.count(Stat::Allowed);
        let rate_limit = if service.rate_limit_headers {
            allow.rate_limit
        } else {
            None
        };
        self.stage = Stage::Forwarded(Box::new(Forwarded {
            rate_limit,
            debug,
            report: allow.report,
        }));
        Action::Continue
    }
}

/// A route's cluster and Host rewrite.
fn target(route: &PlanRoute) -> (&str, Option<&str>) {
    (route.cluster.as_str(), route.host.as_deref())
}

pub(super) fn unix_now(host: &impl Host) -> u64 {
    host.now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The upstream never sees the application's credentials (APIcast forwards them; we do not): not
/// those that were used, nor others in the service's other credential locations (a request may carry
/// credentials in two places; only the first, in location order, was checked). `Authorization` is
/// removed for a location that did not win only when it holds that location's scheme, so an
/// unrelated `Authorization` the upstream needs goes through.
fn strip_credentials(host: &impl Host, decided: &Decided) {
    for &location in &decided.info.service.credentials.locations {
        let used = decided.location == Some(location);
        if used || holds_credentials(host, location) {
            strip_at(host, &decided.info, location, decided.form_body.as_deref());
        }
    }
}

/// Whether a location that did not win still carries something to remove.
fn holds_credentials(host: &impl Host, location: Location) -> bool {
    let scheme: &[u8] = match location {
        Location::Basic => b"basic ",
        Location::Bearer => b"bearer ",
        _ => return true,
    };
    host.request_header("authorization").is_some_and(|value| {
        value
            .get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

/// Removes the credentials at `location` from the request (`form_body`: the buffered form).
pub(super) fn strip_at(
    host: &impl Host,
    info: &RequestInfo,
    location: Location,
    form_body: Option<&[u8]>,
) {
    let names = info.service.credentials.names_at(location);
    match location {
        Location::Query => {
            let (path, query) = split_path(&info.target);
            if let Some(rest) = remove_params(query, &names) {
                let mut target = path.to_vec();
                if !rest.is_empty() {
                    target.push(b'?');
                    target.extend_from_slice(&rest);
                }
                host.set_request_header(":path", Some(&target));
            }
        }
        Location::Form => {
            let stripped = form_body.and_then(|body| remove_params(body, &names));
            if let Some(body) = stripped {
                host.set_request_body(&body);
                host.set_request_header("content-length", Some(body.len().to_string().as_bytes()));
            }
        }
        Location::Header | Location::Basic | Location::Bearer => {
            for name in names {
                host.set_request_header(name, None);
            }
        }
        Location::JwtClaim => {}
    }
}

pub(super) fn rate_limit_headers(limit: &RateLimit) -> Vec<(String, String)> {
    let mut headers = vec![
        ("ratelimit-limit".to_string(), limit.limit.to_string()),
        (
            "ratelimit-remaining".to_string(),
            limit.remaining.to_string(),
        ),
    ];
    if let Some(reset) = limit.reset {
        headers.push(("ratelimit-reset".to_string(), reset.to_string()));
    }
    headers
}

pub(super) fn response_headers(host: &impl Host, forwarded: &Forwarded) {
    if let Some(limit) = &forwarded.rate_limit {
        for (name, value) in rate_limit_headers(limit) {
            host.set_response_header(&name, value.as_bytes());
        }
    }
    if let Some(debug) = &forwarded.debug {
        for (name, value) in debug.headers(host) {
            host.set_response_header(&name, value.as_bytes());
        }
    }
}

/// The usage the matched mapping rules gave, for access logs: `metric:delta` pairs, comma-separated.
fn usage_text(usage: &crate::usage::Usage) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(16 * usage.len());
    for (metric, delta) in usage.iter() {
        let comma = if text.is_empty() { "" } else { "," };
        let _ = write!(text, "{comma}{metric}:{delta}");
    }
    text
}
