//! What the simulator adds for tests: call counters, the log of received requests and the fault
//! table. None of this exists in apisonator; it lives under `/_sim/`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shaped::Shape;

/// At most this many requests are kept for `/_sim/requests`.
pub const MAX_LOGGED_REQUESTS: usize = 10_000;
/// Longer request bodies are truncated in the log.
const MAX_LOGGED_BODY: usize = 256 * 1024;

/// The public endpoints, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Authorize,
    Authrep,
    OauthAuthorize,
    OauthAuthrep,
    Report,
    Status,
    Other,
    /// Every call to the admin portal's listener.
    Portal,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Authorize,
        Endpoint::Authrep,
        Endpoint::OauthAuthorize,
        Endpoint::OauthAuthrep,
        Endpoint::Report,
        Endpoint::Status,
        Endpoint::Other,
        Endpoint::Portal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Authorize => "authorize",
            Endpoint::Authrep => "authrep",
            Endpoint::OauthAuthorize => "oauth_authorize",
            Endpoint::OauthAuthrep => "oauth_authrep",
            Endpoint::Report => "report",
            Endpoint::Status => "status",
            Endpoint::Other => "other",
            Endpoint::Portal => "portal",
        }
    }

    /// Faults apply to the transaction endpoints only: `/status` stays healthy for readiness checks.
    pub fn can_fault(self) -> bool {
        !matches!(self, Endpoint::Status | Endpoint::Other)
    }
}

/// An injected failure for one endpoint (or `*`: all transaction endpoints).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub endpoint: String,
    /// Delay before answering (the work is done first: usage is applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Answer this status instead (no usage applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Answer 200 with a body that is not XML (no usage applied).
    #[serde(default)]
    pub garbage: bool,
    /// Close the connection without answering (no usage applied).
    #[serde(default)]
    pub close: bool,
    /// Do the work, then send the answer's headers (with the full Content-Length) and half its body,
    /// and reset the connection.
    #[serde(default)]
    pub cut_after_headers: bool,
    /// Do the work, then send the headers at once and the body one byte every N ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trickle_ms: Option<u64>,
    /// With `status`: the answer's content type, as a proxy in front of 3scale would send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// With `status`: the answer's body instead of the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A connection that already served N requests is closed when the next one arrives, which is
    /// neither read nor answered (a server closing idle kept-alive connections, as puma does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_kept_alive_after: Option<u64>,
    /// Apply to the next N requests only, then clear itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

impl Fault {
    pub fn validate(&self) -> Result<(), String> {
        let known = self.endpoint == "*"
            || Endpoint::ALL
                .iter()
                .any(|e| e.can_fault() && e.name() == self.endpoint);
        if !known {
            return Err(format!(
                "unknown endpoint {:?}: use authorize, authrep, oauth_authorize, oauth_authrep, report, portal or *",
                self.endpoint
            ));
        }
        if let Some(status) = self.status
            && !(100..=999).contains(&status)
        {
            return Err(format!("status {status} is not an HTTP status"));
        }
        if (self.content_type.is_some() || self.body.is_some()) && self.status.is_none() {
            return Err("content_type and body go with status".to_owned());
        }
        if self.trickle_ms == Some(0) {
            return Err("trickle_ms must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Whether the request is answered (or dropped) without doing its work.
    pub fn skips_work(&self) -> bool {
        self.close || self.status.is_some() || self.garbage
    }

    /// How the answer's body is sent.
    pub fn shape(&self) -> Shape {
        match (self.cut_after_headers, self.trickle_ms) {
            (true, _) => Shape::Cut,
            (false, Some(ms)) => Shape::Trickle(Duration::from_millis(ms)),
            (false, None) => Shape::Whole,
        }
    }
}

/// One received request, as `/_sim/requests` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// 0 when the connection was closed without an answer.
    pub status: u16,
}

impl LoggedRequest {
    pub fn new(
        method: &str,
        path: &str,
        query: &str,
        headers: BTreeMap<String, String>,
        body: &[u8],
    ) -> Self {
        let body = body.get(..MAX_LOGGED_BODY).unwrap_or(body);
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
            status: 0,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Counts {
    per_endpoint: HashMap<Endpoint, u64>,
}

impl Counts {
    fn add(&mut self, endpoint: Endpoint) {
        *self.per_endpoint.entry(endpoint).or_default() += 1;
    }

    fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        // The portal's counter shows once the portal was called: a backend-only run keeps its shape.
        Endpoint::ALL
            .iter()
            .filter(|e| **e != Endpoint::Portal || self.per_endpoint.contains_key(e))
            .map(|e| {
                (
                    e.name().to_owned(),
                    self.per_endpoint.get(e).copied().unwrap_or(0).into(),
                )
            })
            .collect()
    }
}

/// Counters, request log and faults.
#[derive(Debug, Default)]
pub struct Monitor {
    total: Counts,
    faulted: u64,
    per_service: BTreeMap<String, Counts>,
    requests: VecDeque<LoggedRequest>,
    faults: BTreeMap<String, Fault>,
}

impl Monitor {
    /// Counts a received request (every one, whatever its answer).
    pub fn count(&mut self, endpoint: Endpoint, service_id: Option<&str>, faulted: bool) {
        self.total.add(endpoint);
        if faulted {
            self.faulted += 1;
        }
        if let Some(id) = service_id {
            self.per_service
                .entry(id.to_owned())
                .or_default()
                .add(endpoint);
        }
    }

    pub fn log_request(&mut self, request: LoggedRequest) {
        if self.requests.len() == MAX_LOGGED_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }

    pub fn calls_json(&self) -> serde_json::Value {
        let mut total = self.total.to_json();
        total.insert("faulted".into(), self.faulted.into());
        let services: serde_json::Map<String, serde_json::Value> = self
            .per_service
            .iter()
            .map(|(id, c)| (id.clone(), c.to_json().into()))
            .collect();
        serde_json::json!({ "total": total, "services": services })
    }

    /// The last `limit` requests, oldest first.
    pub fn requests(&self, limit: usize) -> Vec<&LoggedRequest> {
        let skip = self.requests.len().saturating_sub(limit);
        self.requests.iter().skip(skip).collect()
    }

    pub fn set_fault(&mut self, fault: Fault) {
        self.faults.insert(fault.endpoint.clone(), fault);
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub fn faults(&self) -> Vec<&Fault> {
        self.faults.values().collect()
    }

    /// The fault for this request, if any (an endpoint's own fault wins over `*`); counts down
    /// faults limited by `times`.
    pub fn take_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        if !endpoint.can_fault() {
            return None;
        }
        let key = if self.faults.contains_key(endpoint.name()) {
            endpoint.name()
        } else if endpoint == Endpoint::Portal {
            // `*` means apisonator's transaction endpoints; the portal is faulted by name.
            return None;
        } else {
            "*"
        };
        let fault = self.faults.get_mut(key)?;
        let taken = fault.clone();
        if let Some(times) = fault.times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                self.faults.remove(key);
            }
        }
        Some(taken)
    }

    /// Zeroes counters, forgets requests and clears faults.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn counts_per_endpoint_and_service() {
        let mut m = Monitor::default();
        m.count(Endpoint::Authrep, Some("svc1"), false);
        m.count(Endpoint::Authrep, Some("svc1"), true);
        m.count(Endpoint::Report, Some("svc2"), false);
        m.count(Endpoint::Status, None, false);
        let j = m.calls_json();
        assert_eq!(j["total"]["authrep"], 2);
        assert_eq!(j["total"]["report"], 1);
        assert_eq!(j["total"]["status"], 1);
        assert_eq!(j["total"]["faulted"], 1);
        assert_eq!(j["total"]["other"], 0);
        assert_eq!(j["services"]["svc1"]["authrep"], 2);
        assert_eq!(j["services"]["svc2"]["report"], 1);
    }

    #[test]
    fn request_log_is_bounded_and_ordered() {
        let mut m = Monitor::default();
        for i in 0..(MAX_LOGGED_REQUESTS + 3) {
            m.log_request(LoggedRequest::new(
                "GET",
                &format!("/{i}"),
                "",
                BTreeMap::new(),
                b"",
            ));
        }
        let last = m.requests(2);
        assert_eq!(last[0].path, format!("/{}", MAX_LOGGED_REQUESTS + 1));
        assert_eq!(last[1].path, format!("/{}", MAX_LOGGED_REQUESTS + 2));
        assert_eq!(m.requests(usize::MAX).len(), MAX_LOGGED_REQUESTS);
    }

    #[test]
    fn bodies_are_logged_lossily_and_truncated() {
        let r = LoggedRequest::new("POST", "/", "", BTreeMap::new(), b"a\xffb");
        assert_eq!(r.body, "a\u{fffd}b");
        let big = vec![b'x'; MAX_LOGGED_BODY + 10];
        assert_eq!(
            LoggedRequest::new("POST", "/", "", BTreeMap::new(), &big)
                .body
                .len(),
            MAX_LOGGED_BODY
        );
    }

    #[test]
    fn faults_specific_wins_and_times_count_down() {
        let mut m = Monitor::default();
        m.set_fault(Fault {
            endpoint: "*".into(),
            status: Some(503),
            ..Default::default()
        });
        m.set_fault(Fault {
            endpoint: "authrep".into(),
            garbage: true,
            times: Some(2),
            ..Default::default()
        });
        assert!(m.take_fault(Endpoint::Authrep).unwrap().garbage);
        assert!(m.take_fault(Endpoint::Authrep).unwrap().garbage);
        assert_eq!(m.take_fault(Endpoint::Authrep).unwrap().status, Some(503));
        assert_eq!(m.take_fault(Endpoint::Report).unwrap().status, Some(503));
        assert!(m.take_fault(Endpoint::Status).is_none());
        m.clear_faults();
        assert!(m.take_fault(Endpoint::Authrep).is_none());
    }

    #[test]
    fn fault_validation() {
        assert!(
            Fault {
                endpoint: "authrep".into(),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Fault {
                endpoint: "status".into(),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Fault {
                endpoint: "*".into(),
                status: Some(42),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        let parsed: Result<Fault, _> = serde_json::from_str(r#"{"endpoint":"*","bogus":1}"#);
        assert!(parsed.is_err());
        assert!(
            !Fault {
                endpoint: "*".into(),
                latency_ms: Some(5),
                ..Default::default()
            }
            .skips_work()
        );
    }

    #[test]
    fn reset_clears_everything() {
        let mut m = Monitor::default();
        m.count(Endpoint::Authrep, Some("s"), true);
        m.log_request(LoggedRequest::new("GET", "/", "", BTreeMap::new(), b""));
        m.set_fault(Fault {
            endpoint: "*".into(),
            close: true,
            ..Default::default()
        });
        m.reset();
        assert_eq!(m.calls_json()["total"]["authrep"], 0);
        assert!(m.requests(10).is_empty());
        assert!(m.faults().is_empty());
    }
}
