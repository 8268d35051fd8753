//! authorize, authrep, oauth_authorize and oauth_authrep: caller authentication, application
//! lookup, the validators in apisonator's order, usage reporting and the status answer.
//!
//! The steps and their order follow apisonator's listener and transactor (protocol reference
//! §2, §4.3, §6): whichever check fails first decides the answer, so the order is the behaviour.

use crate::clock::Instant;
use crate::errors::ApiError;
use crate::extensions::Extensions;
use crate::params::{Hash, Param};
use crate::ruby;
use crate::status::{Rejection, StatusDoc, StatusInput, StatusReport};
use crate::store::{Application, Service, ServiceData, Store, StoredError, UsageLimit};
use crate::usage::process_usage;

/// The four authorization endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthEndpoint {
    Authorize,
    Authrep,
    OauthAuthorize,
    OauthAuthrep,
}

impl AuthEndpoint {
    pub fn is_oauth(self) -> bool {
        matches!(
            self,
            AuthEndpoint::OauthAuthorize | AuthEndpoint::OauthAuthrep
        )
    }

    /// authrep variants report the usage they authorize.
    pub fn reports_usage(self) -> bool {
        matches!(self, AuthEndpoint::Authrep | AuthEndpoint::OauthAuthrep)
    }
}

/// How the listener answers.
#[derive(Debug)]
pub enum AuthOutcome {
    /// A `<status>` answer (200 or 409).
    Status(StatusDoc),
    /// An `<error>` answer.
    Error(ApiError),
    /// `usage` that is not a hash: 403 with an empty body.
    EmptyForbidden,
    /// What apisonator's unhandled exceptions become: 500.
    InternalError,
}

/// Request details apisonator stores with integration errors (`context_info`).
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub url: String,
    pub method: String,
    pub user_agent: Option<String>,
    pub ip: String,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
}

impl RequestInfo {
    pub fn to_json(&self, extensions: &Extensions) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "method": self.method,
            "form_vars": null,
            "user_agent": self.user_agent,
            "ip": self.ip,
            "content_type": self.content_type,
            "content_length": self.content_length,
            "extensions": extensions.to_json(),
        })
    }
}

/// The five credential parameters after apisonator's `normalize_non_empty_keys!`: non-strings
/// dropped, blank ones dropped, only `app_key` stripped (and kept even when empty).
#[derive(Clone, Debug, Default)]
struct Credentials {
    service_id: Option<String>,
    app_id: Option<String>,
    app_key: Option<String>,
    user_key: Option<String>,
    provider_key: Option<String>,
}

fn normalize_credentials(params: &Hash) -> Result<Credentials, ApiError> {
    let read = |name: &str| -> Result<Option<String>, ApiError> {
        let Some(Param::Str(text)) = params.get(name) else {
            return Ok(None);
        };
        if !text.valid_utf8 {
            return Err(ApiError::NotValidData);
        }
        let stripped = ruby::strip(&text.value);
        Ok(if name == "app_key" {
            Some(stripped.to_owned())
        } else if stripped.is_empty() {
            None
        } else {
            Some(text.value.clone())
        })
    };
    Ok(Credentials {
        service_id: read("service_id")?,
        app_id: read("app_id")?,
        app_key: read("app_key")?,
        user_key: read("user_key")?,
        provider_key: read("provider_key")?,
    })
}

/// Ruby's `blank?` as the listener defines it: nil or empty.
fn blank(s: Option<&str>) -> bool {
    s.is_none_or(str::is_empty)
}

/// The provider key a service token stands for, if the token is valid for that service.
pub fn provider_key_from_token(
    store: &Store,
    token: Option<&str>,
    service_id: Option<&str>,
) -> Option<String> {
    let (Some(token), Some(service_id)) = (token, service_id) else {
        return None;
    };
    if token.is_empty() || service_id.is_empty() || !store.token_exists(token, service_id) {
        return None;
    }
    store.provider_key_for(service_id).map(str::to_owned)
}

/// The error for a request whose caller could not be authenticated (§2).
pub fn provider_key_error(token: Option<&str>, service_id: Option<&str>) -> ApiError {
    match (token, service_id) {
        (t, _) if blank(t) => ApiError::ProviderKeyOrServiceTokenRequired,
        (_, s) if blank(s) => ApiError::ServiceIdMissing,
        (t, s) => ApiError::ServiceTokenInvalid {
            token: t.unwrap_or_default().to_owned(),
            service_id: s.unwrap_or_default().to_owned(),
        },
    }
}

/// Ruby's `id.split('-').last` (trailing empty fields dropped).
fn last_dash_field(id: &str) -> Option<&str> {
    id.split('-')
        .rev()
        .find(|f| !f.is_empty())
        .filter(|_| !id.trim_end_matches('-').is_empty())
}

/// `Service.load_with_provider_key!`.
pub fn load_service<'a>(
    store: &'a Store,
    service_id: Option<&str>,
    provider_key: &str,
) -> Result<&'a Service, ApiError> {
    let id = match service_id.filter(|s| !s.is_empty()) {
        Some(id) => id.to_owned(),
        None => store
            .default_service_id(provider_key)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::ProviderKeyInvalidOrServiceMissing(provider_key.to_owned()))?,
    };
    // apisonator first tries the part after the last dash (a legacy id format), then the id.
    let service = last_dash_field(&id)
        .and_then(|short| store.service(short))
        .or_else(|| store.service(&id))
        .ok_or_else(|| ApiError::ServiceIdInvalid(id.clone()))?;
    if service.provider_key != provider_key {
        if store.default_service_id(provider_key).is_none() {
            return Err(ApiError::ProviderKeyInvalid(provider_key.to_owned()));
        }
        return Err(ApiError::ServiceIdInvalid(id));
    }
    Ok(service)
}

/// `Application.load_by_id_or_user_key!`.
fn load_application<'a>(
    data: Option<&'a ServiceData>,
    app_id: Option<&str>,
    user_key: Option<&str>,
) -> Result<&'a Application, ApiError> {
    let id = match (app_id, user_key) {
        (Some(_), Some(_)) => return Err(ApiError::AuthenticationError),
        (Some(id), None) => id.to_owned(),
        (None, Some(key)) => data
            .and_then(|d| d.user_keys.get(key))
            .cloned()
            .ok_or_else(|| ApiError::UserKeyInvalid(key.to_owned()))?,
        (None, None) => return Err(ApiError::ApplicationNotFound(String::new())),
    };
    data.and_then(|d| d.applications.get(&id))
        .ok_or(ApiError::ApplicationNotFound(id))
}

/// Where apisonator's listener stores an error raised while serving a request: the service
/// the caller is authenticated for, if any.
fn error_target(
    store: &Store,
    service_id: Option<&str>,
    provider_key: Option<&str>,
) -> Option<String> {
    match service_id {
        None => provider_key
            .and_then(|pk| store.default_service_id(pk))
            .map(str::to_owned),
        Some(id) => {
            let owner = store.provider_key_for(id)?;
            (Some(owner) == provider_key).then(|| id.to_owned())
        }
    }
}

/// One authorization call, start to finish.
pub fn authorize(
    store: &mut Store,
    endpoint: AuthEndpoint,
    params: &Hash,
    extensions: &Extensions,
    info: &RequestInfo,
) -> AuthOutcome {
    let now = store.clock.now();
    let credentials = match normalize_credentials(params) {
        Ok(c) => c,
        Err(e) => return AuthOutcome::Error(e),
    };
    // Invalid UTF-8 anywhere else is refused up front too (apisonator would fail somewhere later).
    if !params.all_valid_utf8() {
        return AuthOutcome::Error(ApiError::NotValidData);
    }
    let token = params.str("service_token");
    let provider_key = credentials
        .provider_key
        .clone()
        .or_else(|| provider_key_from_token(store, token, credentials.service_id.as_deref()));
    let Some(provider_key) = provider_key else {
        return AuthOutcome::Error(provider_key_error(token, credentials.service_id.as_deref()));
    };
    if params.get("user_id").is_some_and(Param::is_present) {
        let error = ApiError::EndUsersNoLongerSupported;
        // Raised before the listener replaces the provider key: the one given, if any, counts.
        store_auth_error(
            store,
            &credentials,
            credentials.provider_key.as_deref(),
            &error,
            extensions,
            info,
            now,
        );
        return AuthOutcome::Error(error);
    }
    let usage = match params.get("usage") {
        None | Some(Param::Nil) => None,
        Some(Param::Hash(h)) => Some(h),
        Some(_) => return AuthOutcome::EmptyForbidden,
    };
    let log = match params.get("log") {
        None | Some(Param::Nil) => None,
        // `log.select!` on a string raises NoMethodError in apisonator.
        Some(Param::Str(_)) => return AuthOutcome::InternalError,
        Some(other) => Some(other),
    };
    let call = Call {
        endpoint,
        params,
        credentials: &credentials,
        provider_key: &provider_key,
        usage,
        extensions,
        now,
    };
    match call.validate(store) {
        Ok(validated) => {
            if endpoint.reports_usage() && validated.doc.authorized {
                report_authorized_usage(store, &validated, usage, log, extensions.flat_usage, now);
            }
            AuthOutcome::Status(validated.doc)
        }
        Err(error) => {
            store_auth_error(
                store,
                &credentials,
                Some(&provider_key),
                &error,
                extensions,
                info,
                now,
            );
            AuthOutcome::Error(error)
        }
    }
}

fn store_auth_error(
    store: &mut Store,
    credentials: &Credentials,
    provider_key: Option<&str>,
    error: &ApiError,
    extensions: &Extensions,
    info: &RequestInfo,
    now: Instant,
) {
    if let Some(service_id) = error_target(store, credentials.service_id.as_deref(), provider_key) {
        store.data_mut(&service_id).store_error(StoredError {
            code: error.code().to_owned(),
            message: error.message(),
            timestamp: crate::clock::format_error_time(now.secs),
            context_info: info.to_json(extensions),
        });
    }
}

/// The report half of authrep: only authorized calls, only non-zero usage; `log[code]` is
/// recorded only together with usage. Applied before answering (apisonator queues it).
fn report_authorized_usage(
    store: &mut Store,
    validated: &Validated,
    usage: Option<&Hash>,
    log: Option<&Param>,
    flat_usage: bool,
    now: Instant,
) {
    let mut reported = Hash::new();
    for (name, value) in usage.into_iter().flat_map(Hash::iter) {
        if !value.is_literal_zero() {
            reported.insert(name, value.clone());
        }
    }
    // A `log` that is an array makes apisonator's report job fail: nothing is recorded.
    if reported.is_empty() || matches!(log, Some(Param::Array(_))) {
        return;
    }
    let data = store.data_mut(&validated.service_id);
    let Ok(processed) = process_usage(&data.metrics, &reported, flat_usage) else {
        return;
    };
    data.apply_usage(&validated.app_id, &processed, now.secs);
    if let Some(code) = log.and_then(Param::as_hash).and_then(|l| l.str("code")) {
        data.stats
            .entry(validated.app_id.clone())
            .or_default()
            .record_response_code(code);
    }
}

/// The result of validation: the status document and who it is about.
struct Validated {
    doc: StatusDoc,
    service_id: String,
    app_id: String,
}

/// One call's inputs, once the caller is authenticated.
struct Call<'a> {
    endpoint: AuthEndpoint,
    params: &'a Hash,
    credentials: &'a Credentials,
    provider_key: &'a str,
    usage: Option<&'a Hash>,
    extensions: &'a Extensions,
    now: Instant,
}

/// The checks that can deny an authorization, in the orders apisonator applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validator {
    Key,
    OauthSetting,
    OauthKey,
    RedirectUri,
    Referrer,
    State,
    ServiceState,
    Limits,
}

const VALIDATORS: [Validator; 5] = [
    Validator::Key,
    Validator::Referrer,
    Validator::State,
    Validator::ServiceState,
    Validator::Limits,
];
/// A non-oauth endpoint on an `oauth` (OpenID Connect) service: the key only if given.
const OIDC_VALIDATORS: [Validator; 5] = [
    Validator::OauthKey,
    Validator::Referrer,
    Validator::State,
    Validator::ServiceState,
    Validator::Limits,
];
const OAUTH_VALIDATORS: [Validator; 7] = [
    Validator::OauthSetting,
    Validator::OauthKey,
    Validator::RedirectUri,
    Validator::Referrer,
    Validator::State,
    Validator::ServiceState,
    Validator::Limits,
];

/// The outcome of the validators.
#[derive(Default)]
struct Verdict {
    rejection: Option<Rejection>,
    /// Set by the redirect validator when the request used `redirect_uri` (not `redirect_url`).
    redirect_field_uri: bool,
}

impl Call<'_> {
    /// apisonator's `Transactor#validate`: service, application, limits to load, validators.
    fn validate(&self, store: &Store) -> Result<Validated, ApiError> {
        let oauth = self.endpoint.is_oauth();
        let service = load_service(
            store,
            self.credentials.service_id.as_deref(),
            self.provider_key,
        )?;
        let data = store.data(&service.id);
        if oauth && self.credentials.app_id.is_none() {
            return Err(ApiError::ApplicationNotFound(String::new()));
        }
        let app = load_application(
            data,
            self.credentials.app_id.as_deref(),
            self.credentials.user_key.as_deref(),
        )?;
        let empty = ServiceData::default();
        let data = data.unwrap_or(&empty);
        let limits = self.load_limits(data, app)?;
        let reports: Vec<StatusReport> = limits
            .into_iter()
            .map(|limit| {
                let current =
                    data.current_value(&app.id, &limit.metric_id, limit.period, self.now.secs);
                StatusReport { limit, current }
            })
            .collect();
        let validators: &[Validator] = if oauth {
            &OAUTH_VALIDATORS
        } else if service.is_oauth() {
            &OIDC_VALIDATORS
        } else {
            &VALIDATORS
        };
        let mut verdict = Verdict::default();
        for validator in validators {
            if let Some(rejection) =
                self.apply(*validator, service, data, app, &reports, &mut verdict)?
            {
                verdict.rejection = Some(rejection);
                break;
            }
        }
        let doc = StatusDoc::build(
            StatusInput {
                service,
                data,
                app,
                endpoint: self.endpoint,
                rejection: verdict.rejection,
                reports,
                usage: self.usage,
                redirect_field_uri: verdict.redirect_field_uri,
                extensions: self.extensions,
                now: self.now,
            },
            self.extensions.no_body,
        );
        Ok(Validated {
            doc,
            service_id: service.id.clone(),
            app_id: app.id.clone(),
        })
    }

    /// With `no_body` and a usage, only the limits of the requested metrics and their ancestors
    /// are loaded, and unknown metric names fail right away (before any validator).
    fn load_limits(
        &self,
        data: &ServiceData,
        app: &Application,
    ) -> Result<Vec<UsageLimit>, ApiError> {
        let all = data.usage_limits(app.plan_id.as_deref());
        let Some(usage) = self
            .usage
            .filter(|u| self.extensions.no_body && !u.is_empty())
        else {
            return Ok(all);
        };
        let mut ids: Vec<String> = Vec::new();
        for (name, _) in usage.iter() {
            let names = std::iter::once(name.to_owned()).chain(data.metrics.ancestor_names(name));
            for n in names {
                let id = data
                    .metrics
                    .id_of(&n)
                    .ok_or_else(|| ApiError::MetricInvalid(n.clone()))?;
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_owned());
                }
            }
        }
        // apisonator sorts these ids (as strings) before loading their limits.
        ids.sort();
        Ok(ids
            .iter()
            .flat_map(|id| all.iter().filter(move |l| &l.metric_id == id).cloned())
            .collect())
    }

    /// One validator: `Ok(Some(_))` rejects, `Err(_)` is an error answer (limits only).
    fn apply(
        &self,
        validator: Validator,
        service: &Service,
        data: &ServiceData,
        app: &Application,
        reports: &[StatusReport],
        verdict: &mut Verdict,
    ) -> Result<Option<Rejection>, ApiError> {
        let app_key = self.credentials.app_key.as_deref();
        let reject = |ok: bool, rejection: Rejection| if ok { None } else { Some(rejection) };
        Ok(match validator {
            Validator::Key => reject(
                service.is_user_key_mode()
                    || !data.has_keys(&app.id)
                    || data.has_key(&app.id, app_key.unwrap_or("")),
                Rejection::ApplicationKeyInvalid(app_key.map(str::to_owned)),
            ),
            Validator::OauthSetting => reject(service.is_oauth(), Rejection::OauthNotEnabled),
            Validator::OauthKey => match app_key {
                None => None,
                Some(key) => reject(
                    !key.is_empty() && data.has_key(&app.id, key),
                    Rejection::ApplicationKeyInvalid(Some(key.to_owned())),
                ),
            },
            Validator::RedirectUri => self.check_redirect(app, verdict),
            Validator::Referrer => self.check_referrer(service, data, app),
            Validator::State => reject(app.is_active(), Rejection::ApplicationNotActive),
            Validator::ServiceState => reject(service.active, Rejection::ServiceNotActive),
            Validator::Limits => reject(
                self.within_limits(data, reports)?,
                Rejection::LimitsExceeded,
            ),
        })
    }

    /// `redirect_url` takes precedence over `redirect_uri`; blank values are not checked.
    fn check_redirect(&self, app: &Application, verdict: &mut Verdict) -> Option<Rejection> {
        let (value, is_url) = if self.params.contains_key("redirect_url") {
            (self.params.get("redirect_url"), true)
        } else if self.params.contains_key("redirect_uri") {
            verdict.redirect_field_uri = true;
            (self.params.get("redirect_uri"), false)
        } else {
            (None, true)
        };
        let given = match value {
            None | Some(Param::Nil) => return None,
            Some(Param::Str(t)) if t.value.is_empty() => return None,
            Some(p) => p.as_str().unwrap_or_default().to_owned(),
        };
        if app.redirect_url.as_deref() == Some(given.as_str()) {
            return None;
        }
        Some(if is_url {
            Rejection::RedirectUrlInvalid(given)
        } else {
            Rejection::RedirectUriInvalid(given)
        })
    }

    /// Only when the service requires referrer filters and the application has some.
    fn check_referrer(
        &self,
        service: &Service,
        data: &ServiceData,
        app: &Application,
    ) -> Option<Rejection> {
        let filters = data.filters_of(&app.id);
        if !service.referrer_filters_required || filters.is_empty() {
            return None;
        }
        let referrer = self.params.str("referrer");
        let allowed =
            referrer.is_some_and(|r| r == "*" || filters.iter().any(|f| referrer_matches(f, r)));
        if allowed {
            None
        } else {
            Some(Rejection::ReferrerNotAllowed(referrer.map(str::to_owned)))
        }
    }

    /// The limits validator: with a usage, only limits of the requested metrics (and their
    /// ancestors) are checked, against stored + requested; without, every limit against stored.
    fn within_limits(
        &self,
        data: &ServiceData,
        reports: &[StatusReport],
    ) -> Result<bool, ApiError> {
        let Some(usage) = self.usage else {
            return Ok(reports.iter().all(|r| r.current <= r.limit.max_value));
        };
        let processed = process_usage(&data.metrics, usage, self.extensions.flat_usage)?;
        Ok(reports.iter().all(|r| {
            let after = processed
                .iter()
                .find(|(id, _)| *id == r.limit.metric_id)
                .map_or(0, |(_, value)| ruby::apply_usage(value, r.current));
            after <= r.limit.max_value
        }))
    }
}

/// apisonator's referrer filters: `*` matches any run of characters (not newlines, like Ruby's
/// `.`), everything else literally, anchored at both ends.
pub fn referrer_matches(filter: &str, referrer: &str) -> bool {
    let pattern: Vec<char> = filter.chars().collect();
    let text: Vec<char> = referrer.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(c) if Some(c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) if text.get(matched) != Some(&'\n') => {
                    backtrack = Some((star, matched + 1));
                    p = star + 1;
                    t = matched + 1;
                }
                _ => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn referrer_globs() {
        assert!(referrer_matches("*.example.com", "www.example.com"));
        assert!(referrer_matches("*.example.com", ".example.com"));
        assert!(!referrer_matches("*.example.com", "example.com"));
        assert!(!referrer_matches("*.example.com", "www.example.com.evil"));
        assert!(referrer_matches("example.com", "example.com"));
        assert!(
            !referrer_matches("example.com", "exampleXcom"),
            "dots are literal"
        );
        assert!(referrer_matches("a*b*c", "aXXbYYc"));
        assert!(
            !referrer_matches("a*c", "a\nc"),
            "star does not match newlines"
        );
        assert!(referrer_matches("*", ""));
        assert!(!referrer_matches("", "x"));
    }

    #[test]
    fn dash_field() {
        assert_eq!(last_dash_field("svc-appid"), Some("appid"));
        assert_eq!(last_dash_field("svc1"), Some("svc1"));
        assert_eq!(last_dash_field("svc-"), Some("svc"));
        assert_eq!(last_dash_field("-"), None);
        assert_eq!(last_dash_field(""), None);
    }

    #[test]
    fn provider_key_errors() {
        assert_eq!(
            provider_key_error(None, Some("s")),
            ApiError::ProviderKeyOrServiceTokenRequired
        );
        assert_eq!(
            provider_key_error(Some(""), None),
            ApiError::ProviderKeyOrServiceTokenRequired
        );
        assert_eq!(
            provider_key_error(Some("t"), None),
            ApiError::ServiceIdMissing
        );
        assert_eq!(
            provider_key_error(Some("bad"), Some("svc1")),
            ApiError::ServiceTokenInvalid {
                token: "bad".into(),
                service_id: "svc1".into()
            }
        );
    }
}
