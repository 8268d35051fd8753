//! From request headers (and a form body) to credentials, usage and an authorization.

use std::cell::RefCell;
use std::rc::Rc;

use super::forward::Allow;
use super::forward::unix_now;
use super::refuse::Denial;
use super::source::{RequestSource, Route};
use super::{Decided, Flow, Purpose, Report, RequestInfo, Stage};
use crate::args::{Args, split_path};
use crate::backend::answer::AuthStatus;
use crate::backend::call::{AuthCall, Endpoint};
use crate::category::Category;
use crate::config::Mode;
use crate::credentials::{Extracted, Location, extract};
use crate::host::{Action, CalloutResponse, Host};
use crate::mask::mask;
use crate::ratelimit::{RateLimit, from_limit_headers, most_constraining};
use crate::service::select;
use crate::stats::Stat;
use crate::verdict::{LimitHeaders, Verdict, classify};

impl Flow {
    /// Cleans the incoming headers and finds the service; None when no service serves the request.
    pub(super) fn read_request(&self, host: &impl Host) -> Option<RequestInfo> {
        let headers = &self.config.headers;
        let debug_value = host.request_header(&headers.debug);
        // Reading an absent header is cheaper than removing it (a removal also clears Envoy's route
        // cache): remove only the copies a client actually sent.
        for name in headers.all() {
            let sent = match name == headers.debug {
                true => debug_value.is_some(),
                false => host.request_header(name).is_some(),
            };
            if sent {
                host.set_request_header(name, None);
            }
        }
        let service = select(&self.config, &mut Route { host })?;
        let debug =
            debug_value.is_some_and(|v| constant_time_eq(&v, service.debug_secret.as_bytes()));
        let content_type = host.request_header("content-type");
        Some(RequestInfo {
            grpc: content_type
                .as_deref()
                .is_some_and(super::refuse::is_grpc_type),
            content_type,
            method: host.request_header(":method").unwrap_or_default(),
            target: host.request_header(":path").unwrap_or_default(),
            service,
            debug,
            snapshot: None,
            released: false,
            hold: RefCell::default(),
        })
    }

    pub(super) fn decide(
        &mut self,
        host: &impl Host,
        info: RequestInfo,
        form_body: Option<Vec<u8>>,
    ) -> Action {
        let service = Rc::clone(&info.service);
        let (path, query) = split_path(&info.target);
        let wants_query = service.credentials.locations.contains(&Location::Query)
            || service.mapping_rules.needs_args();
        let query_args = if wants_query {
            Args::parse(query)
        } else {
            Args::parse(b"")
        };
        let form_args = form_body.as_deref().map(Args::parse);
        let mut source = RequestSource {
            host,
            query: &query_args,
            form: form_args.as_ref(),
            jwt: &service.jwt,
        };
        let (credentials, location) = match extract(&service.credentials, &mut source) {
            Extracted::Found(found) => (found.credentials, Some(found.location)),
            Extracted::Missing => match &service.default_credentials {
                Some(default) => (default.clone(), None),
                None => return self.refuse(host, &info, Category::AuthMissing, None),
            },
            Extracted::Invalid(location) => {
                log::debug!(
                    "tollgate: service {}: unusable credentials in {location:?}",
                    service.id
                );
                return self.refuse(host, &info, Category::AuthFailed, None);
            }
        };
        let rule_args = match &form_body {
            Some(body) if service.mapping_rules.needs_args() => {
                let mut merged = query_args.clone();
                merged.extend(body);
                merged
            }
            _ => query_args,
        };
        let matched = service
            .mapping_rules
            .evaluate(&info.method, path, &rule_args);
        if matched.rules.is_empty() {
            return self.refuse(host, &info, Category::NoMatch, None);
        }
        let referrer = if service.referrer {
            referrer(host)
        } else {
            None
        };
        let decided = Decided {
            info,
            credentials,
            location,
            usage: matched.usage,
            matched_rules: matched.rules,
            form_body,
            referrer,
            purpose: Purpose::Authrep,
            asked_at_ms: 0,
            asked_usage: None,
            asked_again: false,
        };
        match service.mode {
            Mode::Cache => self.authorize_cached(host, decided),
            Mode::PerRequest if service.report_response_codes => {
                let mut decided = decided;
                let held = crate::held::hold(
                    host,
                    &self.config.cache.key_prefix,
                    &service.id,
                    &decided.credentials,
                    &decided.usage,
                    unix_now(host),
                );
                if let Some((hold, asked)) = held {
                    *decided.info.hold.borrow_mut() = Some(hold);
                    decided.asked_usage = Some(asked);
                }
                self.ask(host, decided, Purpose::Authorize)
            }
            Mode::PerRequest => self.ask(host, decided, Purpose::Authrep),
        }
    }

    /// Asks 3scale about this request and waits: `authrep` (per request), or `authorize` with the
    /// request's usage (per request with response codes, or to fill the cache).
    pub(super) fn ask(
        &mut self,
        host: &impl Host,
        mut decided: Decided,
        purpose: Purpose,
    ) -> Action {
        let service = Rc::clone(&decided.info.service);
        let endpoint = match purpose {
            Purpose::Authrep => Endpoint::Authrep,
            Purpose::Authorize | Purpose::Fill { .. } => Endpoint::Authorize,
        };
        let call = AuthCall {
            endpoint,
            auth: &service.auth,
            service_id: &service.id,
            credentials: &decided.credentials,
            usage: decided.asked_usage.as_ref().unwrap_or(&decided.usage),
            referrer: decided.referrer.as_deref(),
            log_code: None,
        };
        let path = call.path(&self.config.backend.path_prefix);
        decided.purpose = purpose;
        decided.asked_at_ms = host.now_ms();
        match crate::callout::get(host, &self.config.backend, &path) {
            Some(_token) => {
                self.stage = Stage::WaitingForBackend(Box::new(decided));
                Action::Pause
            }
            None => self.refuse(host, &decided.info, Category::BackendMisconfigured, None),
        }
    }

    /// Turns 3scale's answer into the request's fate.
    pub(super) fn conclude(
        &mut self,
        host: &impl Host,
        mut decided: Decided,
        response: &CalloutResponse,
    ) -> Action {
        let backend_response = response.backend_response(unix_now(host));
        let service_id = decided.info.service.id.clone();
        let verdict = classify(&backend_response, &decided.usage);
        // The server closed the kept-alive connection as the call arrived: it never reached 3scale.
        // Asked once more (on another connection) rather than let the failure policy decide.
        if matches!(verdict, Verdict::Unavailable { .. })
            && !decided.asked_again
            && crate::report::never_reached(response.status, &response.body)
        {
            decided.asked_again = true;
            let purpose = std::mem::replace(&mut decided.purpose, Purpose::Authrep);
            return self.ask(host, decided, purpose);
        }
        if !matches!(verdict, Verdict::Unavailable { .. }) {
            crate::outage::answered(
                host,
                &self.config.cache.key_prefix,
                &decided.info.service.id,
                host.now_ms(),
            );
        }
        if let Purpose::Fill { key } = &decided.purpose {
            let key = key.clone();
            return self.conclude_fill(host, decided, &key, verdict);
        }
        match verdict {
            Verdict::Authorized { status, limits } => {
                let mut allow = Allow::from_answer(
                    &decided.info.service,
                    &status,
                    limits.as_ref(),
                    &decided.usage,
                    unix_now(host),
                );
                if matches!(decided.purpose, Purpose::Authorize) {
                    allow.report = Some(Report::single(&decided));
                }
                self.forward(host, decided, allow)
            }
            Verdict::Denied {
                category,
                reason,
                status,
                limits,
                retry_after,
            } => {
                log::debug!("tollgate: service {service_id}: denied by 3scale ({reason})");
                let rate_limit = refused_rate_limit(
                    category,
                    limits.as_ref(),
                    status.as_ref(),
                    &decided.usage,
                    unix_now(host),
                );
                let debug = decided_debug(&decided, status.as_ref());
                let denial = Denial {
                    retry_after,
                    rate_limit,
                };
                self.refuse_with(host, &decided.info, category, Some(denial), debug)
            }
            Verdict::Unavailable { detail } => {
                host.count(Stat::BackendErrors);
                self.fail(host, decided, None, &detail)
            }
            Verdict::Misconfigured { code, detail } => {
                host.count(Stat::BackendErrors);
                log::error!(
                    "tollgate: service {service_id}: 3scale refused the gateway's own call ({code}): {detail}; \
                     check service_id, service_token/provider_key and the metrics of the mapping rules"
                );
                self.refuse(host, &decided.info, Category::BackendMisconfigured, None)
            }
        }
    }
}

/// The RateLimit headers of a `limits_exceeded` answer: from 3scale's limit headers, else from its
/// usage reports. None for other refusals.
pub(super) fn refused_rate_limit(
    category: Category,
    limits: Option<&LimitHeaders>,
    status: Option<&AuthStatus>,
    usage: &crate::usage::Usage,
    now: u64,
) -> Option<RateLimit> {
    if category != Category::LimitsExceeded {
        return None;
    }
    limits.and_then(from_limit_headers).or_else(|| {
        let status = status?;
        most_constraining(&status.usage_reports, &status.hierarchy, usage, now)
    })
}

fn decided_debug(decided: &Decided, status: Option<&AuthStatus>) -> Option<super::DebugInfo> {
    decided
        .info
        .debug
        .then(|| super::DebugInfo::new(decided, status.and_then(|s| s.plan.clone())))
}

/// A form request whose decision waits for its body: the headers are let go first.
pub(super) struct FormWait {
    /// Where the headers or the query already hold credentials: stripped before the headers
    /// leave, since nothing can change them afterwards (a form that holds credentials too wins
    /// the decision; these are removed all the same).
    pub(super) strip_at_release: Option<Location>,
}

/// Whether the decision needs the form body: a form post to a service that reads forms, unless the
/// credentials were already found at a location listed before `form` and no rule reads arguments.
pub(super) fn form_wait(host: &impl Host, info: &RequestInfo) -> Option<FormWait> {
    let service = &info.service;
    let spec = &service.credentials;
    let (path, query) = split_path(&info.target);
    let rules_read_args = service.mapping_rules.needs_args_for(&info.method, path);
    let reads_form = spec.locations.contains(&Location::Form) || rules_read_args;
    let is_form_post = matches!(info.method.as_slice(), b"POST" | b"PUT" | b"PATCH")
        && info
            .content_type
            .as_deref()
            .is_some_and(|ct| starts_with_ignore_case(ct, b"application/x-www-form-urlencoded"));
    if !reads_form || !is_form_post {
        return None;
    }
    let position = |location: Location| spec.locations.iter().position(|l| *l == location);
    let form = position(Location::Form);
    let query_args = Args::parse(query);
    let mut source = RequestSource {
        host,
        query: &query_args,
        form: None,
        jwt: &service.jwt,
    };
    let (strip_at_release, after_form) = match extract(spec, &mut source) {
        Extracted::Found(found) => (Some(found.location), position(found.location) > form),
        Extracted::Invalid(location) => (None, position(location) > form),
        Extracted::Missing => (None, true),
    };
    (rules_read_args || after_form).then_some(FormWait { strip_at_release })
}

/// Before letting the headers go, everything the upstream must (not) see in them: no
/// `content-length` when form credentials may be stripped (Envoy then frames the shortened body
/// itself), no credentials the headers or the query carry, the secret header. `host` writes to
/// Envoy only: the decision still reads the credentials from the snapshot.
pub(super) fn release_headers(host: &impl Host, info: &RequestInfo, wait: &FormWait) {
    let service = &info.service;
    if service.strip_credentials {
        if service.credentials.locations.contains(&Location::Form) {
            host.set_request_header("content-length", None);
        }
        if let Some(location) = wait.strip_at_release {
            super::forward::strip_at(host, info, location, None);
        }
    }
    if let Some((name, value)) = &service.secret_header {
        host.set_request_header(name, Some(value.as_bytes()));
    }
}

fn starts_with_ignore_case(value: &[u8], prefix: &[u8]) -> bool {
    value
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// The `Referer` header, when it can be sent to 3scale as is.
fn referrer(host: &impl Host) -> Option<String> {
    let value = host.request_header("referer")?;
    let text = String::from_utf8(value).ok()?;
    let usable = !text.is_empty() && text.len() <= 1024 && !text.chars().any(char::is_control);
    usable.then_some(text)
}

/// Compares a secret without revealing, through timing, how much of it matched.
pub(super) fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut difference = given.len() ^ secret.len();
    for (i, byte) in secret.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

/// For logs: the credentials with their secrets masked.
pub(super) fn describe(credentials: &crate::credentials::Credentials) -> String {
    match credentials {
        crate::credentials::Credentials::UserKey(key) => format!("user_key={}", mask(key)),
        crate::credentials::Credentials::AppId {
            app_id,
            app_key: Some(key),
        } => {
            format!("app_id={app_id}&app_key={}", mask(key))
        }
        crate::credentials::Credentials::AppId {
            app_id,
            app_key: None,
        } => format!("app_id={app_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"tokem", b"token"));
        assert!(!constant_time_eq(b"tok", b"token"));
        assert!(!constant_time_eq(b"token-longer", b"token"));
        assert!(!constant_time_eq(b"", b"token"));
    }
}
