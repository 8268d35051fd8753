//! Local replies: a refused request gets its category's status, body and headers, never the upstream.

use super::{DebugInfo, Flow, RequestInfo, Stage};
use crate::category::Category;
use crate::config::Config;
use crate::credentials::{Kind, Location};
use crate::host::{Action, Host};
use crate::ratelimit::RateLimit;
use crate::reply::{CategoryReply, Replies};
use crate::stats::Stat;

/// What 3scale said beyond the category, for the client's benefit.
#[derive(Debug, Default)]
pub(super) struct Denial {
    pub retry_after: Option<u64>,
    pub rate_limit: Option<RateLimit>,
}

impl Flow {
    pub(super) fn refuse(
        &mut self,
        host: &impl Host,
        info: &RequestInfo,
        category: Category,
        denial: Option<Denial>,
    ) -> Action {
        let debug = info.debug.then(|| DebugInfo::for_request(info));
        self.refuse_with(host, info, category, denial, debug)
    }

    pub(super) fn refuse_with(
        &mut self,
        host: &impl Host,
        info: &RequestInfo,
        category: Category,
        denial: Option<Denial>,
        debug: Option<DebugInfo>,
    ) -> Action {
        self.stage = Stage::Done;
        if let Some(hold) = info.hold.borrow_mut().take() {
            hold.release(host);
        }
        if self.config.filter_state {
            host.set_filter_state("tollgate.service_id", info.service.id.as_bytes());
            host.set_filter_state("tollgate.category", category.code().as_bytes());
        }
        let mut extra = Vec::new();
        if category == Category::AuthMissing {
            extra.push(("www-authenticate".to_string(), challenge(info)));
        }
        if let Some(denial) = denial {
            if let Some(seconds) = denial.retry_after {
                extra.push(("retry-after".to_string(), seconds.to_string()));
            }
            if let Some(limit) = denial.rate_limit {
                extra.extend(super::forward::rate_limit_headers(&limit));
            }
        }
        if let Some(debug) = debug {
            extra.extend(debug.headers(host));
        }
        send(host, &info.service.replies, category, extra, info.grpc)
    }
}

/// The answer for requests no service serves (`service_not_found`).
pub(super) fn without_service(host: &impl Host, config: &Config, grpc: bool) -> Action {
    send(
        host,
        &config.replies,
        Category::ServiceNotFound,
        Vec::new(),
        grpc,
    )
}

/// gRPC clients cannot read an HTTP error body: they get a gRPC status instead.
pub(super) fn is_grpc(host: &impl Host) -> bool {
    host.request_header("content-type")
        .is_some_and(|ct| is_grpc_type(&ct))
}

pub(super) fn is_grpc_type(content_type: &[u8]) -> bool {
    content_type
        .get(..16)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"application/grpc"))
}

/// RFC 9110 requires a challenge on every 401: the scheme the service accepts.
fn challenge(info: &RequestInfo) -> String {
    let spec = &info.service.credentials;
    let scheme = if spec.kind == Kind::Oidc || spec.locations.first() == Some(&Location::Bearer) {
        "Bearer"
    } else if spec.locations.contains(&Location::Basic) {
        "Basic"
    } else {
        "APIKey"
    };
    format!("{scheme} realm=\"{}\"", info.service.id)
}

fn send(
    host: &impl Host,
    replies: &Replies,
    category: Category,
    mut extra: Vec<(String, String)>,
    grpc: bool,
) -> Action {
    host.count(Stat::Denied(category));
    let Some(reply) = replies.get(category) else {
        host.send_reply(500, &[], b"");
        return Action::Pause;
    };
    // Configured headers win over the ones Tollgate adds by default.
    extra.retain(|(name, _)| !reply.headers.iter().any(|(own, _)| own == name));
    let mut headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers.extend(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    if grpc {
        host.send_grpc_reply(reply.grpc_status, &reply.message, &headers);
    } else {
        headers.push(("content-type", reply.content_type.as_str()));
        host.send_reply(reply.status, &headers, &body(host, reply));
    }
    Action::Pause
}

fn body(host: &impl Host, reply: &CategoryReply) -> Vec<u8> {
    let request_id = if reply.wants_request_id() {
        host.request_header("x-request-id").and_then(|id| {
            let safe = !id.is_empty()
                && id.len() <= 128
                && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
            safe.then(|| String::from_utf8_lossy(&id).into_owned())
        })
    } else {
        None
    };
    reply.body(request_id.as_deref())
}
