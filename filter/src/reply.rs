//! Error replies: the status, headers and body a refused request gets, per category.
//!
//! Everything that does not depend on the request is rendered once at configuration time; a reply
//! costs one copy of a prepared body (plus the request id when a template asks for it). Templates
//! take `{code}`, `{message}`, `{status}` and `{request_id}`, escaped for the body format; any other
//! text, braces included, is literal, so a JSON template needs no escaping of its own braces.

use crate::category::Category;
use crate::config::raw::{RawCategoryReply, RawErrors, RawFormat};

/// How a body is escaped and what content type it gets by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
    Text,
}

impl Format {
    fn from_raw(raw: RawFormat) -> Format {
        match raw {
            RawFormat::Json => Format::Json,
            RawFormat::Xml => Format::Xml,
            RawFormat::Text => Format::Text,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
        }
    }

    fn default_template(self) -> &'static str {
        match self {
            Format::Json => {
                r#"{"error":{"code":"{code}","message":"{message}","status":{status}}}"#
            }
            Format::Xml => {
                r#"<?xml version="1.0" encoding="UTF-8"?><error><code>{code}</code><message>{message}</message><status>{status}</status></error>"#
            }
            Format::Text => "{message}\n",
        }
    }

    fn escape(self, text: &str, out: &mut String) {
        match self {
            Format::Json => escape_json(text, out),
            Format::Xml => escape_xml(text, out),
            Format::Text => out.push_str(text),
        }
    }
}

fn escape_json(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

fn escape_xml(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
}

/// The largest error body template or message.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A body prepared at load time: text with everything but the request id already rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    RequestId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Body {
    parts: Vec<Part>,
}

const SLOTS: [&str; 4] = ["code", "message", "status", "request_id"];

impl Body {
    fn prepare(template: &str, format: Format, code: &str, message: &str, status: u16) -> Body {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let (before, from_brace) = rest.split_at(open);
            text.push_str(before);
            let after_brace = from_brace.get(1..).unwrap_or("");
            let slot = SLOTS.into_iter().find(|name| {
                after_brace
                    .strip_prefix(name)
                    .is_some_and(|s| s.starts_with('}'))
            });
            match slot {
                Some("code") => format.escape(code, &mut text),
                Some("message") => format.escape(message, &mut text),
                Some("status") => text.push_str(&status.to_string()),
                Some(_) => {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                    parts.push(Part::RequestId);
                }
                None => text.push('{'),
            }
            let consumed = slot.map_or(0, |name| name.len() + 1);
            rest = after_brace.get(consumed..).unwrap_or("");
        }
        text.push_str(rest);
        parts.push(Part::Text(text));
        Body { parts }
    }

    fn render(&self, format: Format, request_id: Option<&str>) -> Vec<u8> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::RequestId => format.escape(request_id.unwrap_or(""), &mut out),
            }
        }
        out.into_bytes()
    }
}

/// gRPC status codes for gRPC clients (`content-type: application/grpc*`), which cannot read an HTTP
/// error body. Chosen by meaning, not derived from the HTTP status (Envoy's own mapping turns 429 into
/// UNAVAILABLE, which invites retries).
fn default_grpc_status(category: Category) -> u32 {
    const NOT_FOUND: u32 = 5;
    const PERMISSION_DENIED: u32 = 7;
    const RESOURCE_EXHAUSTED: u32 = 8;
    const UNIMPLEMENTED: u32 = 12;
    const INTERNAL: u32 = 13;
    const UNAVAILABLE: u32 = 14;
    const UNAUTHENTICATED: u32 = 16;
    match category {
        Category::AuthMissing | Category::AuthFailed => UNAUTHENTICATED,
        Category::AppInactive | Category::MethodDisabled | Category::NoRouteForPlan => {
            PERMISSION_DENIED
        }
        Category::LimitsExceeded => RESOURCE_EXHAUSTED,
        Category::NoMatch => UNIMPLEMENTED,
        Category::ServiceNotFound => NOT_FOUND,
        Category::BackendUnavailable => UNAVAILABLE,
        Category::BackendMisconfigured => INTERNAL,
    }
}

/// The reply of one category, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryReply {
    pub category: Category,
    pub status: u16,
    pub message: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub grpc_status: u32,
    format: Format,
    body: Body,
}

impl CategoryReply {
    pub fn body(&self, request_id: Option<&str>) -> Vec<u8> {
        self.body.render(self.format, request_id)
    }

    /// Whether the body needs the request id (so the glue reads `x-request-id` only then).
    pub fn wants_request_id(&self) -> bool {
        self.body.parts.contains(&Part::RequestId)
    }
}

/// One reply per category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replies {
    replies: Vec<CategoryReply>,
}

impl Replies {
    /// Built-in defaults, overridden by the global `errors`, overridden by the service's `errors`,
    /// field by field. Errors are `(path below errors, reason)`.
    pub fn build(layers: &[&RawErrors]) -> Result<Replies, (String, String)> {
        let replies = Category::ALL
            .into_iter()
            .map(|category| build_one(category, layers))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Replies { replies })
    }

    pub fn get(&self, category: Category) -> Option<&CategoryReply> {
        self.replies.iter().find(|r| r.category == category)
    }
}

fn category_layer(errors: &RawErrors, category: Category) -> Option<&RawCategoryReply> {
    match category {
        Category::AuthMissing => errors.auth_missing.as_ref(),
        Category::AuthFailed => errors.auth_failed.as_ref(),
        Category::AppInactive => errors.app_inactive.as_ref(),
        Category::MethodDisabled => errors.method_disabled.as_ref(),
        Category::LimitsExceeded => errors.limits_exceeded.as_ref(),
        Category::NoMatch => errors.no_match.as_ref(),
        Category::ServiceNotFound => errors.service_not_found.as_ref(),
        Category::NoRouteForPlan => errors.no_route_for_plan.as_ref(),
        Category::BackendUnavailable => errors.backend_unavailable.as_ref(),
        Category::BackendMisconfigured => errors.backend_misconfigured.as_ref(),
    }
}

fn build_one(category: Category, layers: &[&RawErrors]) -> Result<CategoryReply, (String, String)> {
    let code = category.code();
    let mut merged = RawCategoryReply::default();
    let mut format = Format::Json;
    for layer in layers {
        if let Some(f) = layer.format {
            format = Format::from_raw(f);
        }
        if let Some(own) = category_layer(layer, category) {
            merge(&mut merged, own);
        }
    }
    if let Some(f) = merged.format {
        format = Format::from_raw(f);
    }
    let status = merged.status.unwrap_or_else(|| category.default_status());
    if !(300..=599).contains(&status) {
        return Err((
            format!("{code}.status"),
            format!(
                "{status} would not read as a refusal: use a status from 300 to 599 (a redirect, or an error)"
            ),
        ));
    }
    let message = merged
        .message
        .unwrap_or_else(|| category.default_message().to_string());
    let content_type = merged
        .content_type
        .unwrap_or_else(|| format.content_type().to_string());
    check_header_value(&content_type).map_err(|why| (format!("{code}.content_type"), why))?;
    let mut headers = Vec::with_capacity(merged.headers.len());
    for (name, value) in merged.headers {
        let path = format!("{code}.headers.{name}");
        check_header_name(&name).map_err(|why| (path.clone(), why))?;
        check_header_value(&value).map_err(|why| (path.clone(), why))?;
        let name = name.to_ascii_lowercase();
        if headers.iter().any(|(own, _)| *own == name) {
            return Err((
                path,
                "set twice (header names are case-insensitive)".to_string(),
            ));
        }
        headers.push((name, value));
    }
    let template = merged
        .body
        .as_deref()
        .unwrap_or_else(|| format.default_template());
    for (what, text) in [("body", template), ("message", message.as_str())] {
        if text.len() > MAX_BODY_BYTES {
            return Err((
                format!("{code}.{what}"),
                format!(
                    "{} bytes; at most {MAX_BODY_BYTES} (every worker keeps it in memory)",
                    text.len()
                ),
            ));
        }
    }
    let body = Body::prepare(template, format, code, &message, status);
    Ok(CategoryReply {
        category,
        status,
        message,
        content_type,
        headers,
        grpc_status: merged
            .grpc_status
            .unwrap_or_else(|| default_grpc_status(category)),
        format,
        body,
    })
}

fn merge(into: &mut RawCategoryReply, from: &RawCategoryReply) {
    let from = from.clone();
    into.status = from.status.or(into.status);
    into.message = from.message.or(into.message.take());
    into.format = from.format.or(into.format);
    into.content_type = from.content_type.or(into.content_type.take());
    into.body = from.body.or(into.body.take());
    into.grpc_status = from.grpc_status.or(into.grpc_status);
    into.headers.retain(|name, _| {
        !from
            .headers
            .keys()
            .any(|own| own.eq_ignore_ascii_case(name))
    });
    into.headers.extend(from.headers);
}

/// A header name Envoy accepts and that cannot smuggle a pseudo-header or a second header.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`{name}` is not a valid HTTP header name"));
    }
    Ok(())
}

pub fn check_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("header values cannot contain control characters (CR, LF, ...)".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn errors(json: &str) -> RawErrors {
        crate::config::json::decode(json.as_bytes()).unwrap()
    }

    fn body(replies: &Replies, category: Category, request_id: Option<&str>) -> String {
        String::from_utf8(replies.get(category).unwrap().body(request_id)).unwrap()
    }

    #[test]
    fn defaults_are_json_with_code_message_and_status() {
        let replies = Replies::build(&[]).unwrap();
        let reply = replies.get(Category::LimitsExceeded).unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.content_type, "application/json");
        let parsed: serde_json::Value = serde_json::from_slice(&reply.body(None)).unwrap();
        assert_eq!(parsed["error"]["code"], "limits_exceeded");
        assert_eq!(parsed["error"]["status"], 429);
        assert_eq!(parsed["error"]["message"], "Usage limits exceeded");
        assert_eq!(replies.get(Category::AuthMissing).unwrap().status, 401);
        assert_eq!(
            replies.get(Category::BackendUnavailable).unwrap().status,
            503
        );
    }

    #[test]
    fn service_settings_override_global_ones_field_by_field() {
        let global = errors(r#"{"format":"xml","auth_failed":{"status":401,"message":"Global"}}"#);
        let service = errors(r#"{"auth_failed":{"message":"Service & <co>"}}"#);
        let replies = Replies::build(&[&global, &service]).unwrap();
        let reply = replies.get(Category::AuthFailed).unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(reply.content_type, "application/xml; charset=utf-8");
        assert!(
            body(&replies, Category::AuthFailed, None)
                .contains("<message>Service &amp; &lt;co&gt;</message>")
        );
    }

    #[test]
    fn messages_are_escaped_for_json() {
        let e = errors(r#"{"no_match":{"message":"say \"hi\" \\ <b>"}}"#);
        let replies = Replies::build(&[&e]).unwrap();
        let parsed: serde_json::Value =
            serde_json::from_str(&body(&replies, Category::NoMatch, None)).unwrap();
        assert_eq!(parsed["error"]["message"], "say \"hi\" \\ <b>");
    }

    #[test]
    fn templates_keep_unknown_braces_and_fill_the_request_id_escaped() {
        let e = errors(
            r#"{"auth_missing":{"body":"{\"id\":\"{request_id}\",\"x\":{nope},\"s\":{status}}"}}"#,
        );
        let replies = Replies::build(&[&e]).unwrap();
        assert!(
            replies
                .get(Category::AuthMissing)
                .unwrap()
                .wants_request_id()
        );
        assert!(
            !replies
                .get(Category::AuthFailed)
                .unwrap()
                .wants_request_id()
        );
        assert_eq!(
            body(&replies, Category::AuthMissing, Some("a\"b")),
            r#"{"id":"a\"b","x":{nope},"s":401}"#
        );
        assert_eq!(
            body(&replies, Category::AuthMissing, None),
            r#"{"id":"","x":{nope},"s":401}"#
        );
    }

    #[test]
    fn text_format_and_custom_headers() {
        let e = errors(
            r#"{"format":"text","limits_exceeded":{"headers":{"X-Quota":"none"},"grpc_status":14}}"#,
        );
        let replies = Replies::build(&[&e]).unwrap();
        let reply = replies.get(Category::LimitsExceeded).unwrap();
        assert_eq!(reply.content_type, "text/plain; charset=utf-8");
        assert_eq!(
            reply.headers,
            vec![("x-quota".to_string(), "none".to_string())]
        );
        assert_eq!(reply.grpc_status, 14);
        assert_eq!(
            body(&replies, Category::LimitsExceeded, None),
            "Usage limits exceeded\n"
        );
    }

    #[test]
    fn a_service_header_replaces_the_global_one_of_the_same_name() {
        let global = errors(r#"{"no_match":{"headers":{"X-Why":"global","x-keep":"1"}}}"#);
        let service = errors(r#"{"no_match":{"headers":{"x-why":"service"}}}"#);
        let replies = Replies::build(&[&global, &service]).unwrap();
        assert_eq!(
            replies.get(Category::NoMatch).unwrap().headers,
            vec![
                ("x-keep".to_string(), "1".to_string()),
                ("x-why".to_string(), "service".to_string()),
            ]
        );
        let twice = errors(r#"{"no_match":{"headers":{"X-Why":"a","x-why":"b"}}}"#);
        assert_eq!(
            Replies::build(&[&twice]).unwrap_err(),
            (
                "no_match.headers.x-why".to_string(),
                "set twice (header names are case-insensitive)".to_string()
            )
        );
    }

    #[test]
    fn bad_settings_are_rejected_with_their_path() {
        let e = errors(r#"{"auth_failed":{"status":99}}"#);
        assert_eq!(Replies::build(&[&e]).unwrap_err().0, "auth_failed.status");
        let e = errors(r#"{"no_match":{"headers":{"bad name":"x"}}}"#);
        assert_eq!(
            Replies::build(&[&e]).unwrap_err().0,
            "no_match.headers.bad name"
        );
        let e = errors(r#"{"no_match":{"headers":{"x-ok":"a\r\nset-cookie: 1"}}}"#);
        assert!(Replies::build(&[&e]).is_err());
    }

    #[test]
    fn grpc_statuses_follow_meaning() {
        let replies = Replies::build(&[]).unwrap();
        assert_eq!(
            replies.get(Category::LimitsExceeded).unwrap().grpc_status,
            8
        );
        assert_eq!(replies.get(Category::AuthMissing).unwrap().grpc_status, 16);
        assert_eq!(
            replies
                .get(Category::BackendUnavailable)
                .unwrap()
                .grpc_status,
            14
        );
    }
}
