//! From a 3scale answer to a decision: the brief's category table, answer by answer.
//!
//! apisonator says "yes" with 200, "no" with 409 and a rejection reason, and "your request is
//! wrong" with a 4xx `<error code>`. Tollgate tells apart the client's fault (its credentials,
//! its plan) from the gateway's own (a bad service token, an unknown metric) and from 3scale
//! being unreachable, because each calls for a different answer and a different alarm.

use crate::backend::{AuthStatus, BackendError, Hierarchy, UsageReport, parse_error, parse_status};
use crate::category::Category;
use crate::ratelimit::applicable_reports;
use crate::usage::Usage;

/// What came back from a 3scale callout, as the glue read it.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackendResponse<'a> {
    /// `None`: no answer at all (connection refused or reset, timeout).
    pub status: Option<u16>,
    /// The `3scale-rejection-reason` header.
    pub rejection_reason: Option<&'a [u8]>,
    /// `3scale-limit-remaining`, `3scale-limit-reset`, `3scale-limit-max-value`.
    pub limit_remaining: Option<i64>,
    pub limit_reset: Option<i64>,
    pub limit_max_value: Option<i64>,
    pub body: &'a [u8],
    /// UNIX seconds when the answer arrived: turns a report's period end into a `Retry-After`
    /// when 3scale sent no `3scale-limit-reset`.
    pub now: u64,
}

/// 3scale's own view of the most constraining limit (`3scale-limit-*` headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitHeaders {
    /// Identical calls left; -1 when nothing constrains the call.
    pub remaining: i64,
    /// Seconds until that limit's period ends; -1 for never (eternity) or unconstrained.
    pub reset: i64,
    /// That limit's maximum; absent when nothing constrains the call.
    pub max_value: Option<i64>,
}

/// The decision drawn from one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Authorized {
        status: AuthStatus,
        limits: Option<LimitHeaders>,
    },
    Denied {
        category: Category,
        /// The 3scale code (`application_key_invalid`, `user_key_invalid`, …); `unknown` when
        /// 3scale gave none Tollgate could read. Never the free text, which may quote keys.
        reason: String,
        /// The `<status>` document, when the denial came with a readable one.
        status: Option<AuthStatus>,
        limits: Option<LimitHeaders>,
        /// Seconds the client should wait (`Retry-After`), for `limits_exceeded` only.
        retry_after: Option<u64>,
    },
    /// 3scale could not give an answer: `backend_unavailable`, subject to the failure policy.
    Unavailable { detail: String },
    /// 3scale refuses what the gateway itself sent: `backend_misconfigured`.
    Misconfigured { code: String, detail: String },
}

/// Classifies an answer to an authorize or authrep call. `usage` is what the call asked for.
///
/// Detail strings go to warn/error logs, so they never contain credentials.
pub fn classify(response: &BackendResponse, usage: &Usage) -> Verdict {
    let Some(http) = response.status else {
        return unavailable("no answer from 3scale".into());
    };
    match http {
        200 | 409 => status_document(http, response, usage),
        400 | 403 | 404 | 422 => match parse_error(response.body) {
            Some(error) => error_document(http, response.body, error),
            None => not_apisonator(http, response.body),
        },
        _ => unavailable(
            envoy_reply(http, response.body)
                .unwrap_or_else(|| format!("3scale answered HTTP {http}")),
        ),
    }
}

/// apisonator always explains a 4xx with an `<error code="…">` document. Without one the answer came
/// from something between Envoy and apisonator (an ingress, a proxy, a load balancer with no backend):
/// 3scale did not answer, and the failure policy decides, rather than every application being refused
/// as if Tollgate were misconfigured.
fn not_apisonator(http: u16, body: &[u8]) -> Verdict {
    let what = if body.trim_ascii().is_empty() {
        "an empty body"
    } else {
        "a body that is not 3scale's"
    };
    unavailable(format!(
        "the 3scale cluster answered HTTP {http} with {what}: not apisonator's answer"
    ))
}

/// What Envoy's own answer says when the call never got an answer from 3scale: the reset reason of
/// a connection that failed, its timeout, no healthy host.
fn envoy_reply(http: u16, body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body.get(..body.len().min(300))?);
    if let Some((_, reason)) = text.split_once("reset reason: ") {
        let reason: String = reason
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || " _-".contains(*c))
            .collect();
        let what = match reason.trim() {
            "connection failure" | "remote connection failure" => {
                "connection refused or 3scale unreachable"
            }
            "connection termination" | "remote reset" => "connection closed by 3scale",
            "overflow" => "Envoy's circuit breaker for the cluster is open",
            other if other.contains("timeout") => "connection timed out",
            _ => "connection reset",
        };
        return Some(format!(
            "{what} (HTTP {http} from Envoy, reset reason: {})",
            reason.trim()
        ));
    }
    if text.starts_with("upstream request timeout") {
        return Some(format!(
            "timed out (HTTP {http} from Envoy: the call's timeout)"
        ));
    }
    if text.starts_with("no healthy upstream") {
        return Some(format!("no healthy 3scale host (HTTP {http} from Envoy)"));
    }
    None
}

fn unavailable(detail: String) -> Verdict {
    Verdict::Unavailable { detail }
}

/// 200 and 409 carry `<status>`. The HTTP status and `<authorized>` always agree with a real
/// apisonator; should they not, the call is treated as denied rather than let through.
fn status_document(http: u16, response: &BackendResponse, usage: &Usage) -> Verdict {
    match parse_status(response.body) {
        Ok(status) if http == 200 && status.authorized => Verdict::Authorized {
            status,
            limits: limit_headers(response),
        },
        Ok(status) => {
            let reason = rejection_code(response.rejection_reason, status.reason.as_deref());
            denial(reason, Some(status), response, usage)
        }
        // An unreadable body with a readable rejection header is still a definite "no": letting
        // it through under a fail-open policy would turn a truncated 409 into an authorization.
        Err(_) if http == 409 && header_code(response.rejection_reason).is_some() => {
            let reason = rejection_code(response.rejection_reason, None);
            denial(reason, None, response, usage)
        }
        Err(error) => unavailable(format!("unreadable 3scale answer (HTTP {http}): {error}")),
    }
}

/// The rejection code from the header when it holds one, else derived from the `<reason>` text.
fn rejection_code(header: Option<&[u8]>, reason_text: Option<&str>) -> String {
    if let Some(code) = header_code(header) {
        return code.to_owned();
    }
    reason_text
        .and_then(code_from_reason)
        .unwrap_or("unknown")
        .to_owned()
}

/// The header's value when it looks like a 3scale code (`[a-z0-9_]`, bounded): anything else
/// is not trusted into logs and stats.
fn header_code(header: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(header?).ok()?.trim();
    is_code(value).then_some(value)
}

fn is_code(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// apisonator's `<reason>` texts (exact wording observed on GA), mapped back to their codes.
fn code_from_reason(text: &str) -> Option<&'static str> {
    let code = match text {
        "usage limits are exceeded" => "limits_exceeded",
        "application is not active" => "application_not_active",
        "service is not active" => "service_not_active",
        "oauth is not enabled" => "oauth_not_enabled",
        _ if text.starts_with("application key") => "application_key_invalid",
        _ if text.starts_with("referrer") => "referrer_not_allowed",
        _ if text.starts_with("redirect_uri") => "redirect_uri_invalid",
        _ if text.starts_with("redirect_url") => "redirect_url_invalid",
        _ => return None,
    };
    Some(code)
}

fn denial(
    reason: String,
    status: Option<AuthStatus>,
    response: &BackendResponse,
    usage: &Usage,
) -> Verdict {
    let limits = limit_headers(response);
    let category = match reason.as_str() {
        "limits_exceeded" if method_disabled(response, status.as_ref(), usage) => {
            Category::MethodDisabled
        }
        "limits_exceeded" => Category::LimitsExceeded,
        "application_not_active" | "service_not_active" => Category::AppInactive,
        "oauth_not_enabled" => {
            return Verdict::Misconfigured {
                code: reason,
                detail: "3scale refused the call: oauth is not enabled for this service".into(),
            };
        }
        // application_key_invalid, referrer_not_allowed, redirect_*_invalid and anything new.
        _ => Category::AuthFailed,
    };
    let retry_after = match category {
        Category::LimitsExceeded => retry_after(response, status.as_ref(), usage),
        _ => None,
    };
    Verdict::Denied {
        category,
        reason,
        status,
        limits,
        retry_after,
    }
}

/// A limit of 0 on a requested metric or an ancestor: the plan withholds the method, which no
/// amount of waiting fixes (APIcast reads the same from `3scale-limit-max-value: 0`).
fn method_disabled(response: &BackendResponse, status: Option<&AuthStatus>, usage: &Usage) -> bool {
    if response.limit_max_value == Some(0) {
        return true;
    }
    let Some(status) = status else {
        return false;
    };
    let requested =
        |report: &UsageReport| status.hierarchy.applied_delta(&report.metric, usage) > 0;
    status
        .usage_reports
        .iter()
        .any(|report| report.max_value == 0 && requested(report))
}

/// `Retry-After` for `limits_exceeded`: 3scale's `3scale-limit-reset` (none when it says -1,
/// i.e. never), else the latest end among the limits that block this call.
fn retry_after(
    response: &BackendResponse,
    status: Option<&AuthStatus>,
    usage: &Usage,
) -> Option<u64> {
    if let Some(reset) = response.limit_reset {
        return u64::try_from(reset).ok();
    }
    let status = status?;
    latest_blocking_end(&status.usage_reports, &status.hierarchy, usage)
        .map(|end| end.saturating_sub(response.now))
}

/// When every limit that blocks the call has reset; `None` if one never resets or none is found.
fn latest_blocking_end(
    reports: &[UsageReport],
    hierarchy: &Hierarchy,
    usage: &Usage,
) -> Option<u64> {
    let mut latest = None;
    for (report, delta) in applicable_reports(reports, hierarchy, usage) {
        let blocks =
            report.exceeded || report.current_value.saturating_add(delta) > report.max_value;
        if blocks {
            let end = report.period_end?;
            latest = latest.max(Some(end));
        }
    }
    latest
}

/// Both the remaining count and the reset must be there for the headers to mean anything.
fn limit_headers(response: &BackendResponse) -> Option<LimitHeaders> {
    Some(LimitHeaders {
        remaining: response.limit_remaining?,
        reset: response.limit_reset?,
        max_value: response.limit_max_value,
    })
}

/// A 4xx with apisonator's `<error>`: the client's credentials are unknown to 3scale (403, 404), or the
/// gateway sent something 3scale cannot accept.
fn error_document(http: u16, body: &[u8], error: BackendError) -> Verdict {
    match error {
        error
            if (http == 403 || http == 404)
                && (error.code == "user_key_invalid" || error.code == "application_not_found") =>
        {
            Verdict::Denied {
                category: Category::AuthFailed,
                reason: error.code,
                status: None,
                limits: None,
                retry_after: None,
            }
        }
        error => misconfigured_by_error(http, body, Some(error)),
    }
}

/// An answer blaming the gateway's request. The detail names the status, the code and the
/// message with quoted values masked (they can be service tokens, provider keys or user keys).
fn misconfigured_by_error(http: u16, body: &[u8], error: Option<BackendError>) -> Verdict {
    let Some(error) = error else {
        let what = if body.trim_ascii().is_empty() {
            "an empty body"
        } else {
            "an unreadable body"
        };
        return Verdict::Misconfigured {
            code: "unknown".into(),
            detail: format!("3scale answered HTTP {http} with {what}"),
        };
    };
    let code = if is_code(&error.code) {
        error.code
    } else {
        "unknown".into()
    };
    let message = match code.as_str() {
        // Metric names are configuration, not secrets, and say which mapping rule is wrong.
        "metric_invalid" => sanitize(&error.message),
        _ => mask_quoted(&error.message),
    };
    let detail = format!("3scale answered HTTP {http} {code}: {message}");
    Verdict::Misconfigured { code, detail }
}

/// Replaces every double-quoted value with `"***"`.
fn mask_quoted(message: &str) -> String {
    let mut masked = String::with_capacity(message.len());
    for (index, part) in message.split('"').enumerate() {
        if index > 0 {
            masked.push('"');
        }
        masked.push_str(if index % 2 == 1 { "***" } else { part });
    }
    sanitize(&masked)
}

/// Keeps log lines single-line and bounded whatever the backend sent.
fn sanitize(message: &str) -> String {
    const MAX_CHARS: usize = 200;
    message
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable
    )]
    use super::*;

    #[test]
    fn envoys_own_answers_say_why_3scale_did_not_answer() {
        let cases: [(u16, &[u8], &str); 4] = [
            (
                503,
                b"upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: 111",
                "connection refused or 3scale unreachable (HTTP 503 from Envoy, reset reason: connection failure)",
            ),
            (504, b"upstream request timeout", "timed out (HTTP 504 from Envoy: the call's timeout)"),
            (503, b"no healthy upstream", "no healthy 3scale host (HTTP 503 from Envoy)"),
            (502, b"<html>bad gateway</html>", "3scale answered HTTP 502"),
        ];
        for (http, body, expected) in cases {
            let response = BackendResponse {
                status: Some(http),
                body,
                ..BackendResponse::default()
            };
            assert_eq!(
                classify(&response, &Usage::new()),
                Verdict::Unavailable {
                    detail: expected.into()
                }
            );
        }
    }

    const AUTHORIZED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Production</plan><usage_reports><usage_report metric="hits" period="month"><period_start>2026-11-01 00:00:00 +0000</period_start><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>20000</max_value><current_value>0</current_value></usage_report><usage_report metric="hits" period="day"><period_start>2026-11-24 00:00:00 +0000</period_start><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>1000</max_value><current_value>0</current_value></usage_report><usage_report metric="get_hello" period="hour"><period_start>2026-11-24 18:00:00 +0000</period_start><period_end>2026-11-24 19:00:00 +0000</period_end><max_value>100</max_value><current_value>0</current_value></usage_report><usage_report metric="disabled_m" period="eternity"><max_value>0</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;
    const LIMITS_EXCEEDED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric="hits" period="minute"><period_start>2026-11-24 18:09:00 +0000</period_start><period_end>2026-11-24 18:10:00 +0000</period_end><max_value>2</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;
    const EXCEEDED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric="hits" period="minute" exceeded="true"><period_start>2026-11-24 18:10:00 +0000</period_start><period_end>2026-11-24 18:11:00 +0000</period_end><max_value>2</max_value><current_value>3</current_value></usage_report></usage_reports></status>"#;
    /// 18:09:51, nine seconds before the minute of LIMITS_EXCEEDED ends.
    const NOW: u64 = 1_795_543_791;

    use crate::usage::usage_of as usage;

    fn answer(status: u16, body: &str) -> BackendResponse<'_> {
        BackendResponse {
            status: Some(status),
            body: body.as_bytes(),
            now: NOW,
            ..BackendResponse::default()
        }
    }

    fn denied(body: &str, header: Option<&'static str>) -> Verdict {
        let mut response = answer(409, body);
        response.rejection_reason = header.map(str::as_bytes);
        classify(&response, &usage(&[("hits", 1)]))
    }

    fn category_of(verdict: &Verdict) -> Option<Category> {
        match verdict {
            Verdict::Denied { category, .. } => Some(*category),
            _ => None,
        }
    }

    fn denial_with_reason(text: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>false</authorized><reason>{text}</reason><plan>Production</plan></status>"#
        )
    }

    #[test]
    fn authorized_with_limit_headers() {
        let mut response = answer(200, AUTHORIZED);
        response.limit_remaining = Some(996);
        response.limit_reset = Some(21_009);
        response.limit_max_value = Some(1000);
        let Verdict::Authorized { status, limits } = classify(&response, &usage(&[("hits", 1)]))
        else {
            panic!("not authorized");
        };
        assert_eq!(status.plan.as_deref(), Some("Production"));
        assert_eq!(
            limits,
            Some(LimitHeaders {
                remaining: 996,
                reset: 21_009,
                max_value: Some(1000)
            })
        );
        let Verdict::Authorized { limits, .. } = classify(&answer(200, AUTHORIZED), &Usage::new())
        else {
            panic!("not authorized");
        };
        assert_eq!(limits, None);
    }

    #[test]
    fn limits_exceeded_uses_the_reset_header() {
        let mut response = answer(409, LIMITS_EXCEEDED);
        response.rejection_reason = Some(b"limits_exceeded");
        response.limit_remaining = Some(0);
        response.limit_reset = Some(9);
        response.limit_max_value = Some(2);
        let verdict = classify(&response, &usage(&[("hits", 3)]));
        let Verdict::Denied {
            category,
            reason,
            status,
            limits,
            retry_after,
        } = verdict
        else {
            panic!("not denied");
        };
        assert_eq!(category, Category::LimitsExceeded);
        assert_eq!(reason, "limits_exceeded");
        assert_eq!(status.unwrap().plan.as_deref(), Some("Basic"));
        assert_eq!(limits.unwrap().max_value, Some(2));
        assert_eq!(retry_after, Some(9));
    }

    #[test]
    fn reset_minus_one_means_no_retry_after() {
        let mut response = answer(409, LIMITS_EXCEEDED);
        response.rejection_reason = Some(b"limits_exceeded");
        response.limit_remaining = Some(0);
        response.limit_reset = Some(-1);
        response.limit_max_value = Some(2);
        let Verdict::Denied { retry_after, .. } = classify(&response, &usage(&[("hits", 3)]))
        else {
            panic!("not denied");
        };
        assert_eq!(retry_after, None);
    }

    #[test]
    fn without_headers_the_reason_text_and_period_end_decide() {
        let verdict = classify(&answer(409, LIMITS_EXCEEDED), &usage(&[("hits", 3)]));
        let Verdict::Denied {
            category,
            reason,
            retry_after,
            limits,
            ..
        } = verdict
        else {
            panic!("not denied");
        };
        assert_eq!(category, Category::LimitsExceeded);
        assert_eq!(reason, "limits_exceeded");
        assert_eq!(limits, None);
        assert_eq!(retry_after, Some(9));

        // Stored usage already over: the exceeded minute ends at 18:11:00.
        let Verdict::Denied { retry_after, .. } =
            classify(&answer(409, EXCEEDED), &usage(&[("hits", 1)]))
        else {
            panic!("not denied");
        };
        assert_eq!(retry_after, Some(69));

        // Without usage every limit counts; the exceeded one still blocks.
        let Verdict::Denied { retry_after, .. } = classify(&answer(409, EXCEEDED), &Usage::new())
        else {
            panic!("not denied");
        };
        assert_eq!(retry_after, Some(69));
    }

    #[test]
    fn retry_after_waits_for_the_latest_blocking_limit() {
        let body = r#"<status><authorized>false</authorized><reason>usage limits are exceeded</reason><usage_reports>
            <usage_report metric="hits" period="day"><period_end>2026-11-25 00:00:00 +0000</period_end><max_value>10</max_value><current_value>10</current_value></usage_report>
            <usage_report metric="hits" period="minute"><period_end>2026-11-24 18:10:00 +0000</period_end><max_value>5</max_value><current_value>5</current_value></usage_report>
            <usage_report metric="hits" period="month"><period_end>2026-12-01 00:00:00 +0000</period_end><max_value>1000</max_value><current_value>10</current_value></usage_report>
            <usage_report metric="other" period="year"><period_end>2027-01-01 00:00:00 +0000</period_end><max_value>1</max_value><current_value>9</current_value></usage_report>
        </usage_reports></status>"#;
        let Verdict::Denied { retry_after, .. } =
            classify(&answer(409, body), &usage(&[("hits", 1)]))
        else {
            panic!("not denied");
        };
        assert_eq!(retry_after, Some(1_795_564_800 - NOW));

        let eternal = body.replace(
            r#"period="day"><period_end>2026-11-25 00:00:00 +0000</period_end>"#,
            r#"period="eternity">"#,
        );
        let Verdict::Denied { retry_after, .. } =
            classify(&answer(409, &eternal), &usage(&[("hits", 1)]))
        else {
            panic!("not denied");
        };
        assert_eq!(retry_after, None);
    }

    #[test]
    fn a_zero_limit_on_a_requested_metric_or_ancestor_disables_the_method() {
        let body = LIMITS_EXCEEDED.replace(
            "</usage_reports>",
            r#"<usage_report metric="writes" period="eternity"><max_value>0</max_value><current_value>0</current_value></usage_report></usage_reports><hierarchy><metric name="writes" children="post_item delete_item"/><metric name="hits" children="writes"/></hierarchy>"#,
        );
        let header = Some(&b"limits_exceeded"[..]);
        let mut response = answer(409, &body);
        response.rejection_reason = header;
        for requested in ["writes", "post_item", "delete_item"] {
            let verdict = classify(&response, &usage(&[(requested, 1)]));
            assert_eq!(
                category_of(&verdict),
                Some(Category::MethodDisabled),
                "{requested}"
            );
            let Verdict::Denied { retry_after, .. } = verdict else {
                unreachable!()
            };
            assert_eq!(retry_after, None);
        }
        // Not requested (delta 0) or unrelated: a plain limits_exceeded.
        for requested in [
            usage(&[("hits", 3)]),
            usage(&[("hits", 3), ("post_item", 0)]),
            Usage::new(),
        ] {
            assert_eq!(
                category_of(&classify(&response, &requested)),
                Some(Category::LimitsExceeded)
            );
        }
    }

    #[test]
    fn max_value_header_zero_disables_the_method() {
        let mut response = answer(409, LIMITS_EXCEEDED);
        response.rejection_reason = Some(b"limits_exceeded");
        response.limit_remaining = Some(0);
        response.limit_reset = Some(-1);
        response.limit_max_value = Some(0);
        let verdict = classify(&response, &usage(&[("disabled_m", 1)]));
        assert_eq!(category_of(&verdict), Some(Category::MethodDisabled));
    }

    #[test]
    fn rejection_reasons_map_to_categories() {
        let cases = [
            (
                "application_key_invalid",
                r#"application key "WRONG" is invalid"#,
                Category::AuthFailed,
            ),
            (
                "application_key_invalid",
                "application key is missing",
                Category::AuthFailed,
            ),
            (
                "referrer_not_allowed",
                r#"referrer "evil.com" is not allowed"#,
                Category::AuthFailed,
            ),
            (
                "referrer_not_allowed",
                "referrer is missing",
                Category::AuthFailed,
            ),
            (
                "redirect_uri_invalid",
                r#"redirect_uri "https://evil.example/cb" is invalid"#,
                Category::AuthFailed,
            ),
            (
                "redirect_url_invalid",
                r#"redirect_url "https://evil.example/cb" is invalid"#,
                Category::AuthFailed,
            ),
            (
                "application_not_active",
                "application is not active",
                Category::AppInactive,
            ),
            (
                "service_not_active",
                "service is not active",
                Category::AppInactive,
            ),
            (
                "limits_exceeded",
                "usage limits are exceeded",
                Category::LimitsExceeded,
            ),
        ];
        for (code, text, expected) in cases {
            let body = denial_with_reason(text);
            for header in [Some(code), None] {
                let verdict = denied(&body, header);
                let Verdict::Denied {
                    category,
                    reason,
                    status,
                    ..
                } = verdict
                else {
                    panic!("{code} not denied");
                };
                assert_eq!(
                    (category, reason.as_str()),
                    (expected, code),
                    "{text} / {header:?}"
                );
                assert_eq!(status.unwrap().plan.as_deref(), Some("Production"));
            }
        }
    }

    #[test]
    fn oauth_not_enabled_is_the_gateways_fault() {
        for header in [Some("oauth_not_enabled"), None] {
            let verdict = denied(&denial_with_reason("oauth is not enabled"), header);
            let Verdict::Misconfigured { code, .. } = verdict else {
                panic!("not misconfigured");
            };
            assert_eq!(code, "oauth_not_enabled");
        }
    }

    #[test]
    fn unknown_reasons_fail_authentication_without_leaking_text() {
        let verdict = denied(
            &denial_with_reason(r#"something new about key "s3cr3t""#),
            None,
        );
        let Verdict::Denied {
            category, reason, ..
        } = verdict
        else {
            panic!("not denied");
        };
        assert_eq!(
            (category, reason.as_str()),
            (Category::AuthFailed, "unknown")
        );

        let verdict = denied(&denial_with_reason("whatever"), Some("brand_new_reason"));
        assert_eq!(category_of(&verdict), Some(Category::AuthFailed));
        let Verdict::Denied { reason, .. } = verdict else {
            unreachable!()
        };
        assert_eq!(reason, "brand_new_reason");

        // A header that does not look like a code is not trusted: the text decides.
        let verdict = denied(
            &denial_with_reason("application is not active"),
            Some("Bad Header\r\nX: y"),
        );
        assert_eq!(category_of(&verdict), Some(Category::AppInactive));
    }

    #[test]
    fn the_header_wins_over_the_text() {
        let verdict = denied(
            &denial_with_reason("usage limits are exceeded"),
            Some("application_not_active"),
        );
        assert_eq!(category_of(&verdict), Some(Category::AppInactive));
    }

    #[test]
    fn unreadable_status_documents() {
        for status in [200, 409] {
            for body in [
                "",
                "Internal Server Error\n",
                &AUTHORIZED[..AUTHORIZED.len() - 3],
            ] {
                let verdict = classify(&answer(status, body), &Usage::new());
                assert!(
                    matches!(verdict, Verdict::Unavailable { .. }),
                    "{status} {body:?}"
                );
            }
        }
        // A truncated 409 whose header names the reason is still a denial.
        let mut response = answer(409, "");
        response.rejection_reason = Some(b"application_key_invalid");
        let verdict = classify(&response, &Usage::new());
        assert_eq!(
            verdict,
            Verdict::Denied {
                category: Category::AuthFailed,
                reason: "application_key_invalid".into(),
                status: None,
                limits: None,
                retry_after: None,
            }
        );
        response.rejection_reason = Some(b"limits_exceeded");
        response.limit_reset = Some(30);
        response.limit_remaining = Some(0);
        response.limit_max_value = Some(5);
        let Verdict::Denied {
            category,
            retry_after,
            ..
        } = classify(&response, &Usage::new())
        else {
            panic!("not denied");
        };
        assert_eq!(
            (category, retry_after),
            (Category::LimitsExceeded, Some(30))
        );
    }

    #[test]
    fn contradictions_are_denials() {
        let verdict = classify(&answer(200, LIMITS_EXCEEDED), &usage(&[("hits", 3)]));
        assert_eq!(category_of(&verdict), Some(Category::LimitsExceeded));
        let verdict = classify(&answer(409, AUTHORIZED), &Usage::new());
        assert_eq!(category_of(&verdict), Some(Category::AuthFailed));
    }

    #[test]
    fn error_answers() {
        let cases: &[(u16, &str, Option<Category>, &str)] = &[
            (
                403,
                r#"<error code="user_key_invalid">user key "uk1" is invalid</error>"#,
                Some(Category::AuthFailed),
                "user_key_invalid",
            ),
            (
                404,
                r#"<error code="application_not_found">application with id="nope" was not found</error>"#,
                Some(Category::AuthFailed),
                "application_not_found",
            ),
            (
                403,
                r#"<error code="provider_key_or_service_token_required">Provider key or service token are required</error>"#,
                None,
                "provider_key_or_service_token_required",
            ),
            (
                403,
                r#"<error code="service_token_invalid">service token "bad" or service id "svc1" is invalid</error>"#,
                None,
                "service_token_invalid",
            ),
            (
                403,
                r#"<error code="provider_key_invalid">provider key "bad" is invalid</error>"#,
                None,
                "provider_key_invalid",
            ),
            (
                403,
                r#"<error code="provider_key_invalid_or_service_missing">provider key "bad" invalid and/or service ID missing</error>"#,
                None,
                "provider_key_invalid_or_service_missing",
            ),
            (
                403,
                r#"<error code="service_id_invalid">service id "nosuch" is invalid</error>"#,
                None,
                "service_id_invalid",
            ),
            (
                403,
                r#"<error code="authentication_error">either app_id or user_key is allowed, not both</error>"#,
                None,
                "authentication_error",
            ),
            (
                403,
                r#"<error code="usage_value_invalid">usage value "x" for metric "hits" is invalid</error>"#,
                None,
                "usage_value_invalid",
            ),
            (
                404,
                r#"<error code="metric_invalid">metric "nope" is invalid</error>"#,
                None,
                "metric_invalid",
            ),
            (
                422,
                r#"<error code="service_id_missing">Service ID is missing</error>"#,
                None,
                "service_id_missing",
            ),
            (
                400,
                r#"<error code="bad_request">request contains syntax errors, should not be repeated without modification</error>"#,
                None,
                "bad_request",
            ),
            (
                400,
                r#"<error code="end_users_no_longer_supported">End-users are no longer supported, do not specify the user_id parameter</error>"#,
                None,
                "end_users_no_longer_supported",
            ),
            (
                400,
                r#"<error code="not_valid_data">all data must be valid UTF8</error>"#,
                None,
                "not_valid_data",
            ),
            (
                422,
                r#"<error code="not_valid_data">all data must be valid UTF8</error>"#,
                None,
                "not_valid_data",
            ),
            (
                403,
                r#"<error code="Weird Code!">x</error>"#,
                None,
                "unknown",
            ),
        ];
        for (http, body, expected, code) in cases {
            let verdict = classify(&answer(*http, body), &usage(&[("hits", 1)]));
            match (expected, verdict) {
                (
                    Some(expected),
                    Verdict::Denied {
                        category,
                        reason,
                        status,
                        limits,
                        retry_after,
                    },
                ) => {
                    assert_eq!((category, reason.as_str()), (*expected, *code), "{body}");
                    assert_eq!((status, limits, retry_after), (None, None, None));
                }
                (None, Verdict::Misconfigured { code: got, detail }) => {
                    assert_eq!(got, *code, "{body}");
                    assert!(
                        detail.starts_with(&format!("3scale answered HTTP {http}")),
                        "{detail}"
                    );
                }
                (_, verdict) => panic!("{http} {body}: {verdict:?}"),
            }
        }
    }

    #[test]
    fn answers_that_are_not_apisonators_are_unavailable() {
        for http in [400, 403, 404, 422] {
            for body in ["", "<html><body>404 Not Found</body></html>", "Forbidden\n"] {
                let verdict = classify(&answer(http, body), &usage(&[("hits", 1)]));
                let Verdict::Unavailable { detail } = &verdict else {
                    panic!("{http} {body:?}: {verdict:?}");
                };
                assert!(detail.contains(&format!("HTTP {http}")), "{detail}");
            }
        }
    }

    #[test]
    fn details_never_carry_credentials() {
        let secrets = [
            (
                403,
                r#"<error code="service_token_invalid">service token "tok-SECRET" or service id "svc1" is invalid</error>"#,
            ),
            (
                403,
                r#"<error code="provider_key_invalid">provider key "pk-SECRET" is invalid</error>"#,
            ),
            (
                403,
                r#"<error code="provider_key_invalid_or_service_missing">provider key "pk-SECRET" invalid and/or service ID missing</error>"#,
            ),
            (
                404,
                r#"<error code="weird">user key "uk-SECRET" is whatever</error>"#,
            ),
            (400, r#"<error code="bad_request">key "a-SECRET</error>"#),
        ];
        for (http, body) in secrets {
            let verdict = classify(&answer(http, body), &Usage::new());
            let Verdict::Misconfigured { detail, .. } = &verdict else {
                panic!("{verdict:?}");
            };
            assert!(!detail.contains("SECRET"), "{detail}");
        }
        let verdict = classify(&answer(403, secrets[0].1), &Usage::new());
        assert_eq!(
            verdict,
            Verdict::Misconfigured {
                code: "service_token_invalid".into(),
                detail: r#"3scale answered HTTP 403 service_token_invalid: service token "***" or service id "***" is invalid"#.into(),
            }
        );
        // Metric names stay visible: they point at the wrong mapping rule.
        let verdict = classify(
            &answer(
                404,
                r#"<error code="metric_invalid">metric "get_helo" is invalid</error>"#,
            ),
            &Usage::new(),
        );
        let Verdict::Misconfigured { detail, .. } = verdict else {
            unreachable!()
        };
        assert_eq!(
            detail,
            r#"3scale answered HTTP 404 metric_invalid: metric "get_helo" is invalid"#
        );
        // Denials keep the code, never the text (which may quote the wrong app key).
        let Verdict::Denied { reason, .. } = denied(
            &denial_with_reason(r#"application key "k-SECRET" is invalid"#),
            None,
        ) else {
            unreachable!()
        };
        assert_eq!(reason, "application_key_invalid");
    }

    #[test]
    fn details_are_single_line_and_bounded() {
        let long = format!(
            r#"<error code="bad_request">line1&#10;line2{}</error>"#,
            "x".repeat(1000)
        );
        let Verdict::Misconfigured { detail, .. } = classify(&answer(400, &long), &Usage::new())
        else {
            unreachable!()
        };
        assert!(!detail.contains('\n'));
        assert!(detail.chars().count() < 260);
    }

    #[test]
    fn no_answer_and_other_statuses_are_unavailable() {
        let none = BackendResponse::default();
        assert_eq!(
            classify(&none, &Usage::new()),
            Verdict::Unavailable {
                detail: "no answer from 3scale".into()
            }
        );
        for status in [
            0, 100, 201, 202, 204, 301, 401, 405, 429, 499, 500, 502, 503, 504, 599, 999,
        ] {
            let verdict = classify(&answer(status, "Internal Server Error\n"), &Usage::new());
            assert_eq!(
                verdict,
                Verdict::Unavailable {
                    detail: format!("3scale answered HTTP {status}")
                }
            );
        }
    }

    #[test]
    fn limit_headers_need_remaining_and_reset() {
        let mut response = answer(200, AUTHORIZED);
        response.limit_remaining = Some(-1);
        response.limit_reset = Some(-1);
        let Verdict::Authorized { limits, .. } = classify(&response, &Usage::new()) else {
            unreachable!()
        };
        assert_eq!(
            limits,
            Some(LimitHeaders {
                remaining: -1,
                reset: -1,
                max_value: None
            })
        );
        response.limit_reset = None;
        let Verdict::Authorized { limits, .. } = classify(&response, &Usage::new()) else {
            unreachable!()
        };
        assert_eq!(limits, None);
    }

    #[test]
    fn garbage_never_panics() {
        let bodies = [
            AUTHORIZED,
            LIMITS_EXCEEDED,
            EXCEEDED,
            r#"<error code="x">y</error>"#,
        ];
        for body in bodies {
            for end in 0..body.len() {
                for status in [200, 403, 404, 409, 422] {
                    let mut response = answer(status, &body[..end]);
                    response.rejection_reason = Some(&[0xff, b'\n']);
                    response.limit_reset = Some(i64::MIN);
                    response.limit_remaining = Some(i64::MAX);
                    response.now = u64::MAX;
                    let _ = classify(&response, &usage(&[("hits", u64::MAX)]));
                }
            }
        }
    }
}
