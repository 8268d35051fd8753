//! apisonator's public listener: routes, parameter parsing, and the headers every answer carries.

use hyper::Method;
use hyper::header::HeaderMap;

use crate::errors::{ApiError, INVALID_PERCENT_ENCODING_MESSAGE};
use crate::extensions::Extensions;
use crate::http::{Body, Reply};
use crate::monitor::Endpoint;
use crate::params::{self, Hash, ParamError, parse_multipart, parse_nested_query};
use crate::report::{ReportOutcome, report};
use crate::store::Store;
use crate::transactor::{AuthEndpoint, AuthOutcome, RequestInfo, authorize};

const XML_CONTENT_TYPE: &str = "application/vnd.3scale-v2.0+xml";
const STATUS_BODY: &str = r#"{"status":"ok","version":{"backend":"3.4.3"}}"#;
const INTERNAL_ERROR_BODY: &str = "Internal Server Error\n";
const CORS_ALLOW_METHODS: &str = "GET, POST, PATCH, PUT, DELETE";
const CORS_ALLOW_HEADERS: &str = "Authorization, Accept-Encoding, Content-Type, Cache-Control, Accept, If-Match, \
     If-Modified-Since, If-None-Match, If-Unmodified-Since, X-Requested-With, X-HTTP-Method-Override, 3scale-options";

/// Which public endpoint a request is for (for counters and faults).
pub fn classify(method: &Method, path: &str) -> Endpoint {
    let get = method == Method::GET || method == Method::HEAD;
    match path {
        "/transactions/authorize.xml" if get => Endpoint::Authorize,
        "/transactions/authrep.xml" if get => Endpoint::Authrep,
        "/transactions/oauth_authorize.xml" if get => Endpoint::OauthAuthorize,
        "/transactions/oauth_authrep.xml" if get => Endpoint::OauthAuthrep,
        "/transactions.xml" if method == Method::POST => Endpoint::Report,
        "/status" if get => Endpoint::Status,
        _ => Endpoint::Other,
    }
}

/// A public request, read.
pub struct PublicRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Body,
    pub peer_ip: String,
}

impl PublicRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Rack's `media_type`: the content type without parameters, lower-cased.
    pub fn media_type(&self) -> Option<String> {
        let raw = self.headers.get("content-type")?;
        let raw = String::from_utf8_lossy(raw.as_bytes());
        Some(
            raw.split([';', ','])
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
        )
    }

    /// Parameters as Sinatra sees them: the query, merged with a form body on POST. Parsing
    /// happens for every request, before routing, as in Sinatra.
    pub fn params(&self) -> Result<Hash, ApiError> {
        let mut params = parse_nested_query(self.query.as_bytes()).map_err(param_error)?;
        let media_type = self.media_type();
        let form = match media_type.as_deref() {
            None => true,
            Some(t) => t == "application/x-www-form-urlencoded" || t == "multipart/form-data",
        };
        if self.method == Method::POST && form {
            if let Some(size) = self.body.oversized {
                return Err(param_error(ParamError::TooLarge(size)));
            }
            let body = if media_type.as_deref() == Some("multipart/form-data") {
                let boundary = self.boundary().ok_or_else(ApiError::syntax)?;
                parse_multipart(&self.body.bytes, &boundary)
                    .ok_or_else(ApiError::syntax)?
                    .map_err(param_error)?
            } else {
                parse_nested_query(&self.body.bytes).map_err(param_error)?
            };
            params.merge(body);
        }
        Ok(params)
    }

    fn boundary(&self) -> Option<String> {
        let raw = self.header("content-type")?;
        let at = raw.to_ascii_lowercase().find("boundary=")? + "boundary=".len();
        let value = raw.get(at..)?.split(';').next()?.trim().trim_matches('"');
        (!value.is_empty()).then(|| value.to_owned())
    }

    fn info(&self) -> RequestInfo {
        let host = self.header("host").unwrap_or("localhost");
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        RequestInfo {
            url: format!("http://{host}{}{query}", self.path),
            method: self.method.as_str().to_owned(),
            user_agent: self.header("user-agent").map(str::to_owned),
            ip: self.peer_ip.clone(),
            content_type: self.header("content-type").map(str::to_owned),
            content_length: self.header("content-length").map(str::to_owned),
        }
    }

    fn extensions(&self, params: &Hash) -> Extensions {
        Extensions::parse(
            self.headers.get("3scale-options").map(|v| v.as_bytes()),
            params,
        )
    }
}

/// How Rack/Sinatra parameter failures reach the client (master's texts for the size limits).
fn param_error(error: ParamError) -> ApiError {
    match error {
        ParamError::InvalidPercentEncoding => {
            ApiError::BadRequest(INVALID_PERCENT_ENCODING_MESSAGE.into())
        }
        ParamError::InvalidUtf8 => ApiError::NotValidData,
        ParamError::Malformed => ApiError::syntax(),
        ParamError::TooManyParams(n) => ApiError::BadRequest(format!(
            "total number of query parameters ({n}) exceeds limit ({})",
            params::MAX_PARAMS
        )),
        ParamError::TooLarge(n) => ApiError::BadRequest(format!(
            "total query size ({n}) exceeds limit ({})",
            params::MAX_QUERY_BYTES
        )),
    }
}

/// The headers of every listener answer.
fn listener_reply(status: u16) -> Reply {
    Reply::new(status)
        .header("content-type", XML_CONTENT_TYPE)
        .header("access-control-allow-origin", "*")
        .header(
            "access-control-expose-headers",
            "ETag, Link, 3scale-rejection-reason",
        )
}

fn error_reply(error: &ApiError, no_body: bool) -> Reply {
    let reply = listener_reply(error.http_status());
    if no_body {
        reply
    } else {
        reply.body(error.to_xml())
    }
}

/// apisonator's answer to an unhandled exception.
pub fn internal_error() -> Reply {
    Reply::new(500).body(INTERNAL_ERROR_BODY)
}

/// Answers one public request.
pub fn respond(
    store: &mut Store,
    request: &PublicRequest<'_>,
    parsed: &Result<Hash, ApiError>,
) -> Reply {
    let params = match parsed {
        Ok(p) => p,
        Err(error) => {
            let no_body = request.extensions(&Hash::new()).no_body;
            return error_reply(error, no_body);
        }
    };
    let method = request.method;
    let get = method == Method::GET || method == Method::HEAD;
    if method == Method::OPTIONS {
        return Reply::new(204)
            .header("access-control-allow-origin", "*")
            .header(
                "access-control-expose-headers",
                "ETag, Link, 3scale-rejection-reason",
            )
            .header("access-control-max-age", "86400")
            .header("access-control-allow-methods", CORS_ALLOW_METHODS)
            .header("access-control-allow-headers", CORS_ALLOW_HEADERS);
    }
    let auth_endpoint = match request.path {
        "/transactions/authorize.xml" if get => AuthEndpoint::Authorize,
        "/transactions/authrep.xml" if get => AuthEndpoint::Authrep,
        "/transactions/oauth_authorize.xml" if get => AuthEndpoint::OauthAuthorize,
        "/transactions/oauth_authrep.xml" if get => AuthEndpoint::OauthAuthrep,
        "/transactions.xml" if method == Method::POST => {
            return report_reply(store, request, params);
        }
        "/status" if get => {
            return listener_reply(200)
                .with_content_type("application/json")
                .body(STATUS_BODY);
        }
        "/check.txt" if get => {
            return listener_reply(200)
                .body("ok")
                .with_content_type("text/plain;charset=utf-8");
        }
        "/available" if method == Method::HEAD => return listener_reply(200),
        _ => return listener_reply(404).header("x-cascade", "pass"),
    };
    let extensions = request.extensions(params);
    match authorize(store, auth_endpoint, params, &extensions, &request.info()) {
        AuthOutcome::Status(doc) => {
            let mut reply = listener_reply(if doc.authorized { 200 } else { 409 });
            if let Some(code) = doc
                .rejection_code
                .filter(|_| extensions.rejection_reason_header)
            {
                reply = reply.header("3scale-rejection-reason", code);
            }
            if let Some(limits) = doc.limit_headers {
                reply = reply
                    .header("3scale-limit-remaining", limits.remaining.to_string())
                    .header("3scale-limit-reset", limits.reset.to_string());
                if let Some(max) = limits.max_value {
                    reply = reply.header("3scale-limit-max-value", max.to_string());
                }
            }
            reply.body(doc.body)
        }
        AuthOutcome::Error(error) => error_reply(&error, extensions.no_body),
        AuthOutcome::EmptyForbidden => listener_reply(403),
        AuthOutcome::InternalError => internal_error(),
    }
}

fn report_reply(store: &mut Store, request: &PublicRequest<'_>, params: &Hash) -> Reply {
    let extensions = request.extensions(params);
    match report(store, params, request.media_type().as_deref(), &extensions) {
        ReportOutcome::Accepted => listener_reply(202),
        ReportOutcome::Error(error) => error_reply(&error, extensions.no_body),
        ReportOutcome::InternalError => internal_error(),
    }
}

impl Reply {
    /// Keeps only the last `content-type` header given.
    fn replace_content_type(mut self) -> Self {
        if let Some(last) = self.headers.iter().rposition(|(n, _)| *n == "content-type") {
            let value = self.headers.remove(last);
            self.headers.retain(|(n, _)| *n != "content-type");
            self.headers.insert(0, value);
        }
        self
    }

    fn with_content_type(self, value: &str) -> Self {
        self.header("content-type", value).replace_content_type()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(&Method::GET, "/transactions/authrep.xml"),
            Endpoint::Authrep
        );
        assert_eq!(
            classify(&Method::HEAD, "/transactions/authorize.xml"),
            Endpoint::Authorize
        );
        assert_eq!(
            classify(&Method::POST, "/transactions/authrep.xml"),
            Endpoint::Other
        );
        assert_eq!(
            classify(&Method::POST, "/transactions.xml"),
            Endpoint::Report
        );
        assert_eq!(classify(&Method::GET, "/transactions.xml"), Endpoint::Other);
        assert_eq!(classify(&Method::GET, "/status"), Endpoint::Status);
    }

    #[test]
    fn parameter_errors_map_to_apisonator_errors() {
        assert_eq!(
            param_error(ParamError::InvalidUtf8).code(),
            "not_valid_data"
        );
        assert_eq!(
            param_error(ParamError::InvalidPercentEncoding).message(),
            "Invalid query parameters: invalid %-encoding"
        );
        assert_eq!(
            param_error(ParamError::Malformed).message(),
            "request contains syntax errors, should not be repeated without modification"
        );
        assert_eq!(
            param_error(ParamError::TooManyParams(4097)).message(),
            "total number of query parameters (4097) exceeds limit (4096)"
        );
        assert_eq!(param_error(ParamError::TooLarge(5)).http_status(), 400);
    }

    #[test]
    fn content_type_replacement() {
        let r = listener_reply(200).with_content_type("text/plain;charset=utf-8");
        let types: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| *n == "content-type")
            .collect();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].1, "text/plain;charset=utf-8");
    }
}
