//! Small HTTP helpers shared by the three APIs: answers, bodies, query strings.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::shaped::{Shape, ShapedBody};

/// Request bodies are read up to this size (Rack refuses more); larger ones are drained, counted
/// and refused, up to [`DRAIN_LIMIT`] after which the connection is dropped.
pub const BODY_LIMIT: usize = crate::params::MAX_QUERY_BYTES;
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// A request body as read.
pub struct Body {
    pub bytes: Bytes,
    /// The full size when it exceeded [`BODY_LIMIT`] (the bytes are then not kept).
    pub oversized: Option<usize>,
}

/// Reads a request body without keeping more than [`BODY_LIMIT`] bytes. `None` when the client
/// failed mid-body or sent more than [`DRAIN_LIMIT`].
pub async fn read_body(mut body: Incoming) -> Option<Body> {
    let mut kept: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total > DRAIN_LIMIT {
                return None;
            }
            if total <= BODY_LIMIT {
                kept.extend_from_slice(&data);
            }
        }
    }
    Some(if total > BODY_LIMIT {
        Body {
            bytes: Bytes::new(),
            oversized: Some(total),
        }
    } else {
        Body {
            bytes: Bytes::from(kept),
            oversized: None,
        }
    })
}

/// An answer under construction.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub shape: Shape,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            shape: Shape::Whole,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON answer (apisonator's internal API and the simulator's own).
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Sends the body cut or trickling (the `cut_after_headers` and `trickle_ms` faults).
    pub fn shaped(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    pub fn into_response(self) -> Response<ShapedBody> {
        let mut response = Response::new(ShapedBody::new(self.body, self.shape));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

/// Splits a query string into `key=value` pairs (simple, for the JSON APIs' own parameters).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    let parsed = crate::params::parse_nested_query(query.as_bytes()).ok()?;
    parsed.str(name).map(str::to_owned)
}

/// Percent-decodes a path segment (`+` stays `+`).
pub fn decode_segment(segment: &str) -> Option<String> {
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|h| (h as char).to_digit(16))?;
            let lo = bytes.next().and_then(|l| (l as char).to_digit(16))?;
            out.push(u8::try_from(hi << 4 | lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The path's segments, decoded; empty segments (double or trailing slashes) are dropped.
pub fn segments(path: &str) -> Option<Vec<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn path_segments() {
        assert_eq!(segments("/a/b%20c/").unwrap(), ["a", "b c"]);
        assert_eq!(segments("//x//y").unwrap(), ["x", "y"]);
        assert_eq!(segments("/a+b").unwrap(), ["a+b"]);
        assert!(segments("/%zz").is_none());
        assert!(segments("/%ff").is_none());
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("limit=5&x=1", "limit").as_deref(), Some("5"));
        assert_eq!(query_param("x=1", "limit"), None);
        assert_eq!(query_param("limit=%", "limit"), None);
    }

    #[test]
    fn replies_drop_invalid_header_values() {
        let r = Reply::new(200)
            .header("x-ok", "1")
            .header("x-bad", "a\nb")
            .into_response();
        assert!(r.headers().contains_key("x-ok"));
        assert!(!r.headers().contains_key("x-bad"));
        assert_eq!(Reply::new(1000).into_response().status(), 500);
    }
}
