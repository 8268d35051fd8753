//! The `<status>` answer of the authorization endpoints and its `3scale-limit-*` headers.
//!
//! The document is written the way apisonator concatenates it: one line, fixed element order,
//! only the plan name escaped, usage reports per limit (metrics in set order, periods longest
//! first), `+0000` timestamps, eternity without start/end (protocol reference §4, §7).

use crate::clock::{Instant, Period, format_period_time};
use crate::extensions::Extensions;
use crate::params::{Hash, Param};
use crate::ruby;
use crate::store::{Application, Service, ServiceData, UsageLimit};
use crate::transactor::AuthEndpoint;

/// apisonator lists at most this many keys with `list_app_keys`.
const LIST_APP_KEYS_MAX: usize = 256;

/// Why an authorization was denied (a 409, never an `<error>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    ApplicationKeyInvalid(Option<String>),
    ReferrerNotAllowed(Option<String>),
    ApplicationNotActive,
    ServiceNotActive,
    LimitsExceeded,
    OauthNotEnabled,
    RedirectUriInvalid(String),
    RedirectUrlInvalid(String),
}

impl Rejection {
    /// The `3scale-rejection-reason` value.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::ApplicationKeyInvalid(_) => "application_key_invalid",
            Rejection::ReferrerNotAllowed(_) => "referrer_not_allowed",
            Rejection::ApplicationNotActive => "application_not_active",
            Rejection::ServiceNotActive => "service_not_active",
            Rejection::LimitsExceeded => "limits_exceeded",
            Rejection::OauthNotEnabled => "oauth_not_enabled",
            Rejection::RedirectUriInvalid(_) => "redirect_uri_invalid",
            Rejection::RedirectUrlInvalid(_) => "redirect_url_invalid",
        }
    }

    /// The `<reason>` text (inserted unescaped, as apisonator does).
    pub fn message(&self) -> String {
        let given = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !ruby::is_blank(s))
                .map(str::to_owned)
        };
        match self {
            Rejection::ApplicationKeyInvalid(key) => match given(key) {
                Some(k) => format!("application key \"{k}\" is invalid"),
                None => "application key is missing".into(),
            },
            Rejection::ReferrerNotAllowed(referrer) => match given(referrer) {
                Some(r) => format!("referrer \"{r}\" is not allowed"),
                None => "referrer is missing".into(),
            },
            Rejection::ApplicationNotActive => "application is not active".into(),
            Rejection::ServiceNotActive => "service is not active".into(),
            Rejection::LimitsExceeded => "usage limits are exceeded".into(),
            Rejection::OauthNotEnabled => "oauth is not enabled".into(),
            Rejection::RedirectUriInvalid(uri) => format!("redirect_uri \"{uri}\" is invalid"),
            Rejection::RedirectUrlInvalid(url) => format!("redirect_url \"{url}\" is invalid"),
        }
    }
}

/// One usage limit with the application's stored value for the current period.
#[derive(Clone, Debug)]
pub struct StatusReport {
    pub limit: UsageLimit,
    pub current: i64,
}

/// The three limit headers; `max_value` is absent when unconstrained (-1/-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitHeaders {
    pub remaining: i64,
    pub reset: i64,
    pub max_value: Option<i64>,
}

/// What the listener needs to answer: status, headers and body.
#[derive(Clone, Debug)]
pub struct StatusDoc {
    pub authorized: bool,
    pub rejection_code: Option<&'static str>,
    /// Present when the `limit_headers` extension applies to this answer.
    pub limit_headers: Option<LimitHeaders>,
    /// Empty under `no_body`.
    pub body: String,
}

/// Everything a status document is made of.
pub struct StatusInput<'a> {
    pub service: &'a Service,
    pub data: &'a ServiceData,
    pub app: &'a Application,
    pub endpoint: AuthEndpoint,
    pub rejection: Option<Rejection>,
    pub reports: Vec<StatusReport>,
    /// The request's `usage` hash (actual usage for authrep, predicted for authorize).
    pub usage: Option<&'a Hash>,
    pub redirect_field_uri: bool,
    pub extensions: &'a Extensions,
    pub now: Instant,
}

/// A usage value as apisonator reads it from the request (`usage[name]`, raw).
fn usage_value<'u>(usage: &'u Hash, name: &str) -> Option<&'u str> {
    usage.get(name).map(|p| match p {
        Param::Str(t) => t.value.as_str(),
        _ => "",
    })
}

impl StatusInput<'_> {
    fn authorized(&self) -> bool {
        self.rejection.is_none()
    }

    /// The usage actually reported by this call (authrep only).
    fn actual_usage(&self) -> Option<&Hash> {
        if self.endpoint.reports_usage() {
            self.usage
        } else {
            None
        }
    }

    /// `current_value` as shown: an authorized authrep already includes its own usage, children's
    /// usage added to parents.
    fn shown_value(&self, report: &StatusReport) -> i64 {
        match self.actual_usage() {
            Some(usage) if self.authorized() => {
                self.with_usage(usage, &report.limit.metric_name, report.current)
            }
            _ => report.current,
        }
    }

    fn with_usage(&self, usage: &Hash, name: &str, start: i64) -> i64 {
        let own = ruby::apply_usage(usage_value(usage, name).unwrap_or("0"), start);
        self.data
            .metrics
            .descendant_names(name)
            .iter()
            .fold(own, |acc, child| {
                usage_value(usage, child).map_or(acc, |v| ruby::apply_usage(v, acc))
            })
    }

    /// How many identical calls fit in this limit (`-1` = the call uses none of it).
    fn remaining_same_calls(&self, report: &StatusReport) -> i64 {
        let remaining = (report.limit.max_value - self.shown_value(report)).max(0);
        if remaining <= 0 {
            return 0;
        }
        let per_call = self
            .usage
            .map_or(0, |u| self.with_usage(u, &report.limit.metric_name, 0));
        if per_call > 0 {
            remaining / per_call
        } else {
            -1
        }
    }

    /// apisonator's `LimitHeaders.get`: the most constrained report among those of the
    /// requested metrics and their ancestors (all reports without usage).
    pub fn limit_headers(&self) -> LimitHeaders {
        let wanted: Option<Vec<String>> = self.usage.filter(|u| !u.is_empty()).map(|u| {
            let mut names: Vec<String> = u.iter().map(|(k, _)| k.to_owned()).collect();
            for (k, _) in u.iter() {
                names.extend(self.data.metrics.ancestor_names(k));
            }
            names
        });
        let candidates = self.reports.iter().filter(|r| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(&r.limit.metric_name))
        });
        // Ruby's `min` with apisonator's comparator, which is not a total order: scanning in the
        // same order keeps the same winner.
        let mut best: Option<(&StatusReport, i64)> = None;
        for report in candidates {
            let rem = self.remaining_same_calls(report);
            best = match best {
                Some((b, b_rem))
                    if !more_constrained(rem, report.limit.period, b_rem, b.limit.period) =>
                {
                    Some((b, b_rem))
                }
                _ => Some((report, rem)),
            };
        }
        match best {
            Some((report, rem)) if rem != -1 => LimitHeaders {
                remaining: rem,
                reset: report.limit.period.remaining_secs(self.now),
                max_value: Some(report.limit.max_value),
            },
            _ => LimitHeaders {
                remaining: -1,
                reset: -1,
                max_value: None,
            },
        }
    }
}

/// apisonator's comparator returning "one sorts before other".
fn more_constrained(one: i64, one_period: Period, other: i64, other_period: Period) -> bool {
    if one == other {
        other_period.granularity() < one_period.granularity()
    } else {
        other == -1 || one < other
    }
}

impl StatusDoc {
    pub fn build(input: StatusInput<'_>, no_body: bool) -> Self {
        let authorized = input.authorized();
        let rejection_code = input.rejection.as_ref().map(Rejection::code);
        let wants_limit_headers = input.extensions.limit_headers
            && (authorized || rejection_code == Some("limits_exceeded"));
        let limit_headers = wants_limit_headers.then(|| input.limit_headers());
        let body = if no_body {
            String::new()
        } else {
            render(&input)
        };
        Self {
            authorized,
            rejection_code,
            limit_headers,
            body,
        }
    }
}

/// Ruby's `encode(xml: :text)`: only `&`, `<` and `>`.
fn escape_plan(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn render(input: &StatusInput<'_>) -> String {
    let mut xml = String::with_capacity(256 + 220 * input.reports.len());
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><status>");
    match &input.rejection {
        None => xml.push_str("<authorized>true</authorized>"),
        Some(r) => {
            xml.push_str("<authorized>false</authorized><reason>");
            xml.push_str(&r.message());
            xml.push_str("</reason>");
        }
    }
    if input.endpoint.is_oauth() {
        let field = if input.redirect_field_uri {
            "redirect_uri"
        } else {
            "redirect_url"
        };
        let keys = input.data.keys_of(&input.app.id);
        xml.push_str("<application><id>");
        xml.push_str(&input.app.id);
        xml.push_str("</id><key>");
        xml.push_str(keys.first().map_or("", String::as_str));
        xml.push_str("</key><");
        xml.push_str(field);
        xml.push('>');
        // GA does not escape the redirect URL (a raw `&` makes the XML malformed).
        xml.push_str(input.app.redirect_url.as_deref().unwrap_or(""));
        xml.push_str("</");
        xml.push_str(field);
        xml.push_str("></application>");
    }
    xml.push_str("<plan>");
    xml.push_str(&escape_plan(input.app.plan_name.as_deref().unwrap_or("")));
    xml.push_str("</plan>");
    if !input.reports.is_empty() {
        xml.push_str("<usage_reports>");
        for report in &input.reports {
            render_report(&mut xml, input, report);
        }
        xml.push_str("</usage_reports>");
    }
    if input.extensions.list_app_keys {
        xml.push_str("<app_keys app=\"");
        xml.push_str(&input.app.id);
        xml.push_str("\" svc=\"");
        xml.push_str(&input.service.id);
        xml.push_str("\">");
        for key in input
            .data
            .keys_of(&input.app.id)
            .iter()
            .take(LIST_APP_KEYS_MAX)
        {
            xml.push_str("<key id=\"");
            xml.push_str(key);
            xml.push_str("\"/>");
        }
        xml.push_str("</app_keys>");
    }
    if input.extensions.hierarchy {
        xml.push_str("<hierarchy>");
        for report in &input.reports {
            let name = &report.limit.metric_name;
            xml.push_str("<metric name=\"");
            xml.push_str(name);
            xml.push_str("\" children=\"");
            xml.push_str(
                &input
                    .data
                    .metrics
                    .children_names(name)
                    .map(|c| c.join(" "))
                    .unwrap_or_default(),
            );
            xml.push_str("\"/>");
        }
        xml.push_str("</hierarchy>");
    }
    xml.push_str("</status>");
    xml
}

fn render_report(xml: &mut String, input: &StatusInput<'_>, report: &StatusReport) {
    let limit = &report.limit;
    xml.push_str("<usage_report metric=\"");
    xml.push_str(&limit.metric_name);
    xml.push_str("\" period=\"");
    xml.push_str(limit.period.name());
    xml.push_str(if report.current > limit.max_value {
        "\" exceeded=\"true\">"
    } else {
        "\">"
    });
    if limit.period != Period::Eternity {
        xml.push_str("<period_start>");
        xml.push_str(&format_period_time(limit.period.start(input.now.secs)));
        xml.push_str("</period_start><period_end>");
        xml.push_str(&format_period_time(limit.period.finish(input.now.secs)));
        xml.push_str("</period_end>");
    }
    xml.push_str("<max_value>");
    xml.push_str(&limit.max_value.to_string());
    xml.push_str("</max_value><current_value>");
    xml.push_str(&input.shown_value(report).to_string());
    xml.push_str("</current_value></usage_report>");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn rejection_texts() {
        assert_eq!(
            Rejection::ApplicationKeyInvalid(None).message(),
            "application key is missing"
        );
        assert_eq!(
            Rejection::ApplicationKeyInvalid(Some(String::new())).message(),
            "application key is missing"
        );
        assert_eq!(
            Rejection::ApplicationKeyInvalid(Some("W".into())).message(),
            "application key \"W\" is invalid"
        );
        assert_eq!(
            Rejection::ReferrerNotAllowed(None).message(),
            "referrer is missing"
        );
        assert_eq!(
            Rejection::ReferrerNotAllowed(Some("evil.com".into())).message(),
            "referrer \"evil.com\" is not allowed"
        );
        assert_eq!(
            Rejection::RedirectUriInvalid("https://evil.example/cb".into()).message(),
            "redirect_uri \"https://evil.example/cb\" is invalid"
        );
        assert_eq!(Rejection::LimitsExceeded.code(), "limits_exceeded");
    }

    #[test]
    fn comparator_prefers_fewer_calls_then_longer_periods() {
        assert!(more_constrained(0, Period::Minute, 5, Period::Day));
        assert!(!more_constrained(5, Period::Day, 0, Period::Minute));
        assert!(more_constrained(3, Period::Day, 3, Period::Minute));
        assert!(!more_constrained(3, Period::Minute, 3, Period::Day));
        assert!(more_constrained(5, Period::Day, -1, Period::Minute));
        // apisonator's quirk: -1 compared against a constrained report sorts first as well.
        assert!(more_constrained(-1, Period::Minute, 5, Period::Day));
    }

    #[test]
    fn plan_escaping() {
        assert_eq!(escape_plan("All & <Periods>"), "All &amp; &lt;Periods&gt;");
        assert_eq!(escape_plan("\"q\""), "\"q\"");
    }
}
