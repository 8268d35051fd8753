//! The request flow against a recording fake host: what Envoy would be asked to do, natively.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use super::Flow;
use crate::category::Category;
use crate::config::Config;
use crate::host::{Action, CalloutResponse, DispatchError, Host};
use crate::stats::{BackendEndpoint, Histogram, Stat, StatusClass};
use crate::store::memory::MemoryStore;
use crate::store::{SharedStore, StoreError};

/// A local reply: status, headers, body.
type Reply = (u16, Vec<(String, String)>, String);

#[derive(Default)]
struct FakeHost {
    request_headers: RefCell<Vec<(String, Vec<u8>)>>,
    properties: Vec<(String, Vec<u8>)>,
    body: RefCell<Vec<u8>>,
    dispatched: RefCell<Vec<Vec<(String, String)>>>,
    dispatch_fails: bool,
    callout: RefCell<CalloutResponse>,
    reply: RefCell<Option<Reply>>,
    grpc_reply: RefCell<Option<(u32, String)>>,
    resumed: Cell<bool>,
    stats: RefCell<Vec<Stat>>,
    response_headers: RefCell<Vec<(String, String)>>,
    filter_state: RefCell<Vec<(String, String)>>,
    store: MemoryStore,
    /// Seconds added to the fake clock.
    elapsed: Cell<u64>,
    /// The upstream's `:status`, as `on_log` reads it.
    status: RefCell<Option<String>>,
    /// Request headers read one by one (rather than from the map).
    single_reads: Cell<usize>,
    /// The host cannot give the header map.
    no_header_map: bool,
    observed: RefCell<Vec<(Histogram, u64)>>,
}

impl FakeHost {
    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> FakeHost {
        let mut all = vec![
            (":method".to_string(), method.as_bytes().to_vec()),
            (":path".to_string(), path.as_bytes().to_vec()),
        ];
        all.extend(
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
        );
        FakeHost {
            request_headers: RefCell::new(all),
            ..FakeHost::default()
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.request_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    fn answer(&self, status: u16, reason: Option<&str>, body: &str) {
        *self.callout.borrow_mut() = CalloutResponse {
            status: Some(status),
            rejection_reason: reason.map(|r| r.as_bytes().to_vec()),
            body: body.as_bytes().to_vec(),
            ..CalloutResponse::default()
        };
    }

    fn reply_status(&self) -> Option<u16> {
        self.reply.borrow().as_ref().map(|(status, _, _)| *status)
    }

    fn reply_header(&self, name: &str) -> Option<String> {
        let reply = self.reply.borrow();
        let (_, headers, _) = reply.as_ref()?;
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn reply_code(&self) -> String {
        let reply = self.reply.borrow();
        let body: serde_json::Value = serde_json::from_str(&reply.as_ref().unwrap().2).unwrap();
        body["error"]["code"].as_str().unwrap().to_string()
    }

    fn callout_path(&self) -> String {
        let calls = self.dispatched.borrow();
        let call = calls.last().unwrap();
        call.iter().find(|(n, _)| n == ":path").unwrap().1.clone()
    }
}

impl SharedStore for FakeHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.store.set(key, value, cas)
    }
    fn enqueue(&self, value: &[u8]) -> Result<(), StoreError> {
        self.store.enqueue(value)
    }
    fn dequeue(&self) -> Option<Vec<u8>> {
        self.store.dequeue()
    }
}

impl Host for FakeHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.single_reads.set(self.single_reads.get() + 1);
        self.request_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn request_headers(&self) -> Option<Vec<u8>> {
        if self.no_header_map {
            return None;
        }
        let headers = self.request_headers.borrow();
        Some(crate::pairs::encode(
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())),
        ))
    }
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        let mut headers = self.request_headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            headers.push((name.to_string(), value.to_vec()));
        }
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        Some(self.body.borrow().iter().take(size).copied().collect())
    }
    fn set_request_body(&self, body: &[u8]) {
        *self.body.borrow_mut() = body.to_vec();
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        (name == ":status")
            .then(|| self.status.borrow().clone().map(String::into_bytes))
            .flatten()
    }
    fn set_response_header(&self, name: &str, value: &[u8]) {
        self.response_headers.borrow_mut().push((
            name.to_string(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join("/");
        self.properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
    fn set_filter_state(&self, name: &str, value: &[u8]) {
        self.filter_state.borrow_mut().push((
            name.to_string(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    fn dispatch(
        &self,
        _cluster: &str,
        headers: &[(&str, &str)],
        _body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, DispatchError> {
        if self.dispatch_fails {
            return Err(DispatchError::BadArgument);
        }
        self.dispatched.borrow_mut().push(
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        );
        Ok(7)
    }
    fn callout_response(&self, _headers: usize, _body_size: usize) -> CalloutResponse {
        self.callout.borrow().clone()
    }
    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        *self.reply.borrow_mut() =
            Some((status, headers, String::from_utf8_lossy(body).into_owned()));
    }
    fn send_grpc_reply(&self, grpc_status: u32, message: &str, _headers: &[(&str, &str)]) {
        *self.grpc_reply.borrow_mut() = Some((grpc_status, message.to_string()));
    }
    fn resume_request(&self) {
        self.resumed.set(true);
    }
    fn clear_route_cache(&self) {}
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + self.elapsed.get())
    }
    fn add(&self, stat: Stat, n: u64) {
        for _ in 0..n {
            self.stats.borrow_mut().push(stat);
        }
    }
    fn observe(&self, histogram: Histogram, value: u64) {
        self.observed.borrow_mut().push((histogram, value));
    }
}

const CONFIG: &str = r#"{
  "filter_state": true,
  "backend": {"cluster": "threescale_backend", "authority": "backend.test"},
  "services": [{
    "id": "svc1",
    "service_token": "secret-token",
    "match": {"hosts": ["api.test"]},
    "credentials": {"kind": "app_id", "locations": ["query", "form", "header"]},
    "mapping_rules": [
      {"method": "GET", "pattern": "/items", "metric": "get_items"},
      {"method": "POST", "pattern": "/items", "metric": "create_item", "delta": 2}
    ],
    "plans": {"routes": {"Sandbox": {"cluster": "staging", "host": "sandbox.internal"}}},
    "upstream": {"send_plan": true},
    "mode": "per_request",
    "report_response_codes": false
  }]
}"#;

const SANDBOX: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Sandbox</plan></status>"#;

fn new_flow() -> Flow {
    Flow::new(Rc::new(Config::load(CONFIG.as_bytes(), &|_| None).unwrap()))
}

#[test]
fn without_filter_state_nothing_is_written_for_access_logs() {
    let host = api("GET", "/items?app_id=a1&app_key=k1", &[]);
    let config = CONFIG.replace(r#""filter_state": true,"#, "");
    let mut flow = Flow::new(Rc::new(Config::load(config.as_bytes(), &|_| None).unwrap()));
    flow.on_request_headers(&host, true);
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert!(host.resumed.get());
    assert_eq!(*host.filter_state.borrow(), Vec::new());
}

fn api(method: &str, path: &str, extra: &[(&str, &str)]) -> FakeHost {
    let mut headers = vec![(":authority", "api.test")];
    headers.extend_from_slice(extra);
    FakeHost::request(method, path, &headers)
}

#[test]
fn an_authorized_request_is_routed_by_plan_with_credentials_stripped() {
    let host = api(
        "GET",
        "/items?app_id=a1&app_key=k1&page=2",
        &[("x-tollgate-cluster", "production")],
    );
    let mut flow = new_flow();
    assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
    assert_eq!(
        host.header("x-tollgate-cluster"),
        None,
        "forged routing header removed"
    );
    assert_eq!(
        host.callout_path(),
        "/transactions/authrep.xml?service_token=secret-token&service_id=svc1&app_id=a1&app_key=k1&usage%5Bget_items%5D=1"
    );
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert!(host.resumed.get());
    assert_eq!(
        host.header("x-tollgate-cluster").as_deref(),
        Some("staging")
    );
    assert_eq!(
        host.header("x-tollgate-host").as_deref(),
        Some("sandbox.internal")
    );
    assert_eq!(host.header("x-tollgate-plan").as_deref(), Some("Sandbox"));
    assert_eq!(host.header(":path").as_deref(), Some("/items?page=2"));
    assert!(
        host.filter_state
            .borrow()
            .contains(&("tollgate.app_id".into(), "a1".into()))
    );
    assert_eq!(
        *host.stats.borrow(),
        vec![
            Stat::BackendCalls,
            Stat::Answered(BackendEndpoint::Authrep, StatusClass::Success),
            Stat::Allowed
        ]
    );
}

#[test]
fn request_headers_are_read_in_one_hostcall_and_one_by_one_without_the_map() {
    let headers = [
        ("app_id", "a1"),
        ("app_key", "k1"),
        ("x-tollgate-plan", "forged"),
    ];
    let authrep = "/transactions/authrep.xml?service_token=secret-token&service_id=svc1&app_id=a1&app_key=k1&usage%5Bget_items%5D=1";

    let host = api("GET", "/items", &headers);
    assert_eq!(new_flow().on_request_headers(&host, true), Action::Pause);
    assert_eq!(host.callout_path(), authrep);
    assert_eq!(host.single_reads.get(), 0);
    assert_eq!(
        host.header("x-tollgate-plan"),
        None,
        "forged header removed"
    );

    let host = FakeHost {
        no_header_map: true,
        ..api("GET", "/items", &headers)
    };
    assert_eq!(new_flow().on_request_headers(&host, true), Action::Pause);
    assert_eq!(host.callout_path(), authrep);
    assert!(host.single_reads.get() > 0);
    assert_eq!(
        host.header("x-tollgate-plan"),
        None,
        "forged header removed"
    );
}

#[test]
fn missing_credentials_come_before_a_missing_rule_and_never_reach_3scale() {
    let host = api("DELETE", "/nothing", &[]);
    assert_eq!(new_flow().on_request_headers(&host, true), Action::Pause);
    assert_eq!(host.reply_status(), Some(401));
    assert_eq!(host.reply_code(), "auth_missing");
    assert!(
        host.reply_header("www-authenticate")
            .unwrap()
            .contains("realm=\"svc1\"")
    );
    assert!(host.dispatched.borrow().is_empty());

    let host = api("DELETE", "/nothing?app_id=a1", &[]);
    new_flow().on_request_headers(&host, true);
    assert_eq!(host.reply_status(), Some(404));
    assert_eq!(host.reply_code(), "no_match");
    assert!(host.dispatched.borrow().is_empty());
}

#[test]
fn limits_exceeded_answers_429_with_retry_after_and_rate_limit_headers() {
    let host = api("GET", "/items", &[("app_id", "a1")]);
    let mut flow = new_flow();
    flow.on_request_headers(&host, true);
    *host.callout.borrow_mut() = CalloutResponse {
        status: Some(409),
        rejection_reason: Some(b"limits_exceeded".to_vec()),
        limit_remaining: Some(0),
        limit_reset: Some(42),
        limit_max_value: Some(5),
        body: br#"<status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Sandbox</plan></status>"#.to_vec(),
    };
    flow.on_callout_response(&host, 7, 1, 0);
    assert!(!host.resumed.get());
    assert_eq!(host.reply_status(), Some(429));
    assert_eq!(host.reply_header("retry-after").as_deref(), Some("42"));
    assert_eq!(host.reply_header("ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(
        host.reply_header("ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(
        host.stats.borrow().last(),
        Some(&Stat::Denied(Category::LimitsExceeded))
    );
}

#[test]
fn an_unknown_plan_has_no_route() {
    let host = api("GET", "/items?app_id=a1", &[]);
    let mut flow = new_flow();
    flow.on_request_headers(&host, true);
    host.answer(200, None, &SANDBOX.replace("Sandbox", "Gold"));
    flow.on_callout_response(&host, 7, 1, 0);
    assert_eq!(host.reply_status(), Some(403));
    assert_eq!(host.reply_code(), "no_route_for_plan");
    assert_eq!(host.header("x-tollgate-cluster"), None);
}

#[test]
fn unreachable_3scale_is_503_and_a_refused_dispatch_is_500() {
    let host = api("GET", "/items?app_id=a1", &[]);
    let mut flow = new_flow();
    flow.on_request_headers(&host, true);
    *host.callout.borrow_mut() = CalloutResponse::default();
    flow.on_callout_response(&host, 7, 1, 0);
    assert_eq!(host.reply_status(), Some(503));

    let mut host = api("GET", "/items?app_id=a1", &[]);
    host.dispatch_fails = true;
    flow_with(&host);
    assert_eq!(host.reply_status(), Some(500));
    assert!(host.stats.borrow().contains(&Stat::BackendDispatchFailures));
}

fn flow_with(host: &FakeHost) -> Flow {
    let mut flow = new_flow();
    flow.on_request_headers(host, true);
    flow
}

#[test]
fn form_credentials_release_the_headers_and_route_through_filter_state() {
    let host = api(
        "POST",
        "/items",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "27"),
        ],
    );
    *host.body.borrow_mut() = b"name=x&app_id=a1&app_key=k1".to_vec();
    let mut flow = new_flow();
    assert_eq!(
        flow.on_request_headers(&host, false),
        Action::Continue,
        "headers released"
    );
    assert_eq!(
        host.header("content-length"),
        None,
        "Envoy frames the stripped body"
    );
    assert!(host.dispatched.borrow().is_empty());
    assert_eq!(flow.on_request_body(&host, 10, false), Action::Pause);
    assert_eq!(flow.on_request_body(&host, 27, true), Action::Pause);
    assert!(
        host.callout_path()
            .contains("app_id=a1&app_key=k1&usage%5Bcreate_item%5D=2")
    );
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert!(host.resumed.get());
    assert_eq!(&*host.body.borrow(), b"name=x");
    assert_eq!(
        host.header("x-tollgate-cluster"),
        None,
        "no header change after release"
    );
    assert!(
        host.filter_state
            .borrow()
            .contains(&("tollgate.cluster".into(), "staging".into()))
    );
}

#[test]
fn form_posts_with_credentials_before_the_form_keep_the_headers() {
    let host = api(
        "POST",
        "/items?app_id=a1",
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    let mut flow = new_flow();
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert_eq!(
        host.header("x-tollgate-cluster").as_deref(),
        Some("staging")
    );
}

fn form_post(extra: &[(&str, &str)]) -> FakeHost {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    api("POST", "/items?page=2&app_key=k1", &headers)
}

#[test]
fn credentials_outside_the_form_leave_the_headers_before_they_are_released() {
    let config = CONFIG.replace(
        r#""upstream": {"send_plan": true}"#,
        r#""upstream": {"send_plan": true, "secret_header": {"value": "s3cret"}}"#,
    );
    let mut flow = Flow::new(Rc::new(Config::load(config.as_bytes(), &|_| None).unwrap()));
    let host = form_post(&[("app_id", "a1"), ("app_key", "k1")]);
    *host.body.borrow_mut() = b"name=x".to_vec();
    assert_eq!(flow.on_request_headers(&host, false), Action::Continue);
    assert_eq!(host.header("app_id"), None, "stripped before release");
    assert_eq!(host.header("app_key"), None);
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/items?page=2&app_key=k1")
    );
    assert_eq!(
        host.header("x-3scale-proxy-secret-token").as_deref(),
        Some("s3cret")
    );
    assert_eq!(flow.on_request_body(&host, 6, true), Action::Pause);
    assert!(
        host.callout_path().contains("app_id=a1&app_key=k1"),
        "the decision still reads the headers as they came"
    );
}

#[test]
fn trailers_end_a_form_body_instead_of_letting_it_through() {
    let host = form_post(&[]);
    *host.body.borrow_mut() = b"name=x&app_id=a1&app_key=k2".to_vec();
    let mut flow = new_flow();
    assert_eq!(flow.on_request_headers(&host, false), Action::Continue);
    assert_eq!(flow.on_request_body(&host, 27, false), Action::Pause);
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    assert!(host.callout_path().contains("app_id=a1&app_key=k2"));
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert!(host.resumed.get());
    assert_eq!(&*host.body.borrow(), b"name=x");

    let host = form_post(&[]);
    *host.body.borrow_mut() = b"name=x".to_vec();
    let mut flow = new_flow();
    flow.on_request_headers(&host, false);
    flow.on_request_body(&host, 6, false);
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    assert_eq!(host.reply_status(), Some(401), "no credentials anywhere");
}

#[test]
fn trailers_wait_with_a_request_that_waits_for_3scale() {
    let host = api("GET", "/items?app_id=a1", &[]);
    let mut flow = new_flow();
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(flow.on_request_body(&host, 3, false), Action::Pause);
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert_eq!(flow.on_request_trailers(&host), Action::Continue);
}

#[test]
fn a_callout_latency_is_observed_from_dispatch_to_answer() {
    let host = api("GET", "/items?app_id=a1", &[]);
    let mut flow = new_flow();
    assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
    host.elapsed.set(2);
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert_eq!(
        *host.observed.borrow(),
        vec![(Histogram::BackendLatencyMs, 2000)]
    );
}

#[test]
fn debug_headers_need_the_service_token() {
    let host = api(
        "GET",
        "/items?app_id=a1&app_key=k1-long-key",
        &[("x-3scale-debug", "secret-token")],
    );
    let mut flow = new_flow();
    flow.on_request_headers(&host, true);
    assert_eq!(host.header("x-3scale-debug"), None, "never forwarded");
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    flow.on_response_headers(&host);
    let headers = host.response_headers.borrow();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("x-3scale-matched-rules").as_deref(), Some("/items"));
    assert_eq!(
        get("x-3scale-usage").as_deref(),
        Some("usage%5Bget_items%5D=1")
    );
    assert_eq!(
        get("x-3scale-credentials").as_deref(),
        Some("app_id=a1&app_key=k1…(11)")
    );
    assert_eq!(get("x-3scale-plan").as_deref(), Some("Sandbox"));

    let host = api(
        "GET",
        "/items?app_id=a1",
        &[("x-3scale-debug", "secret-tokem")],
    );
    let mut flow = new_flow();
    flow.on_request_headers(&host, true);
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    flow.on_response_headers(&host);
    assert!(host.response_headers.borrow().is_empty());
}

#[test]
fn grpc_clients_get_a_grpc_status() {
    let host = api(
        "GET",
        "/items",
        &[("content-type", "application/grpc+proto")],
    );
    new_flow().on_request_headers(&host, true);
    assert_eq!(host.reply_status(), None);
    assert_eq!(host.grpc_reply.borrow().as_ref().map(|(s, _)| *s), Some(16));
}

#[test]
fn requests_of_no_service_are_refused_or_passed_as_configured() {
    let host = FakeHost::request(
        "GET",
        "/",
        &[(":authority", "other.test"), ("x-tollgate-plan", "forged")],
    );
    new_flow().on_request_headers(&host, true);
    assert_eq!(host.reply_status(), Some(404));
    assert_eq!(host.reply_code(), "service_not_found");
    assert_eq!(host.header("x-tollgate-plan"), None);

    let pass = CONFIG.replacen('{', r#"{"unknown_service": "pass","#, 1);
    let mut flow = Flow::new(Rc::new(Config::load(pass.as_bytes(), &|_| None).unwrap()));
    let host = FakeHost::request("GET", "/", &[(":authority", "other.test")]);
    assert_eq!(flow.on_request_headers(&host, true), Action::Continue);
    assert_eq!(*host.stats.borrow(), vec![Stat::Unmatched]);
}

#[test]
fn a_report_after_the_response_counts_its_usage_queued() {
    let config = CONFIG.replace(
        r#""report_response_codes": false"#,
        r#""report_response_codes": true"#,
    );
    let config = Rc::new(Config::load(config.as_bytes(), &|_| None).unwrap());
    let host = api("POST", "/items?app_id=a1&app_key=k1", &[]);
    let mut flow = Flow::new(config);
    assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
    assert!(
        host.callout_path()
            .starts_with("/transactions/authorize.xml?")
    );
    host.answer(200, None, SANDBOX);
    flow.on_callout_response(&host, 7, 1, 0);
    assert!(!host.stats.borrow().contains(&Stat::QueuedUnits));
    *host.status.borrow_mut() = Some("201".into());
    flow.on_log(&host);
    let queued = host
        .stats
        .borrow()
        .iter()
        .filter(|s| **s == Stat::QueuedUnits)
        .count();
    assert_eq!(queued, 2, "create_item counts 2");
}

mod cache_mode {
    //! The same flow in `cache` mode: 3scale fills a shared entry once, later requests are decided
    //! from it without a callout, usage waits in the entry for the report flush.
    use super::*;

    const CACHED: &str = r#"{
      "backend": {"cluster": "threescale_backend", "timeout_ms": 500},
      "cache": {"ttl_seconds": 10, "slots": 1024},
      "services": [{
        "id": "svc1",
        "service_token": "secret-token",
        "match": {"hosts": ["api.test"]},
        "credentials": {"kind": "app_id", "locations": ["query"]},
        "mapping_rules": [{"method": "GET", "pattern": "/items", "metric": "hits"}],
        "plans": {"routes": {"Tiny": {"cluster": "staging"}}, "default": {"cluster": "production"}},
        "failure": FAILURE
      }]
    }"#;

    const TINY: &str = r#"<status><authorized>true</authorized><plan>Tiny</plan><usage_reports><usage_report metric="hits" period="eternity"><max_value>2</max_value><current_value>0</current_value></usage_report></usage_reports></status>"#;

    fn config(failure: &str) -> Rc<Config> {
        Rc::new(Config::load(CACHED.replace("FAILURE", failure).as_bytes(), &|_| None).unwrap())
    }

    fn request(host: &FakeHost, config: &Rc<Config>, app: &str) -> Flow {
        *host.request_headers.borrow_mut() = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), format!("/items?app_id={app}").into_bytes()),
            (":authority".into(), b"api.test".to_vec()),
        ];
        *host.reply.borrow_mut() = None;
        host.resumed.set(false);
        let mut flow = Flow::new(Rc::clone(config));
        flow.on_request_headers(host, true);
        flow
    }

    fn slots(host: &FakeHost) -> crate::cache::slots::Slots<'_, MemoryStore> {
        crate::cache::slots::Slots {
            store: &host.store,
            prefix: "tollgate.v1",
            count: 1024,
        }
    }

    fn key(app: &str) -> String {
        crate::cache::cache_key(
            "svc1",
            &crate::credentials::Credentials::AppId {
                app_id: app.into(),
                app_key: None,
            },
            None,
        )
    }

    fn with_entry<T: Default>(
        host: &FakeHost,
        app: &str,
        read: impl Fn(&crate::cache::Entry) -> T,
    ) -> T {
        match slots(host).update(&key(app), |entry| (read(entry), false)) {
            crate::cache::slots::Found::Entry { result, .. } => result,
            _ => T::default(),
        }
    }

    fn entry_pending(host: &FakeHost, app: &str) -> Vec<(u16, String, u64)> {
        with_entry(host, app, |entry| {
            entry
                .pending()
                .map(|t| (t.code, t.metric.clone(), t.delta))
                .collect()
        })
    }

    /// Per limit: the usage admitted on it since the refresh.
    fn entry_used(host: &FakeHost, app: &str) -> Vec<u64> {
        with_entry(host, app, |entry| {
            entry.limits().map(|(_, used)| used).collect()
        })
    }

    /// Every slot `app`'s key may use holds another application's unreported usage.
    fn fill_probed_slots(host: &FakeHost, app: &str) {
        use crate::cache::{Answer, Entry, PROBES, slot};
        let usage = crate::usage::usage_of(&[("hits", 1)]);
        for probe in 0..PROBES {
            let n = slot(&key(app), 1024, probe);
            let mut other =
                Entry::new(key(&format!("other-{n}")), Answer::Authorized, None, 0).unwrap();
            other.admit_unchecked(&usage, 0);
            host.store
                .set(&slots(host).slot_key(n), &other.encode(), None)
                .unwrap();
        }
    }

    #[test]
    fn an_entry_written_by_a_newer_build_is_left_alone_and_3scale_decides_with_the_code_reported() {
        let host = FakeHost::default();
        let config = config(r#"{"policy": "deny"}"#);
        let mut flow = request(&host, &config, "a1");
        host.answer(200, None, TINY);
        flow.on_callout_response(&host, 7, 1, 0);
        let crate::cache::slots::Found::Entry { slot, .. } =
            slots(&host).update(&key("a1"), |_| ((), false))
        else {
            panic!("no entry")
        };
        let name = slots(&host).slot_key(slot);
        let mut newer = host.store.get(&name).unwrap().0;
        newer[0] = crate::cache::VERSION + 1;
        host.store.set(&name, &newer, None).unwrap();
        let calls = host.dispatched.borrow().len();
        let mut flow = request(&host, &config, "a1");
        assert_eq!(host.dispatched.borrow().len(), calls + 1, "3scale is asked");
        assert_eq!(
            host.callout_path(),
            "/transactions/authorize.xml?service_token=secret-token&service_id=svc1&app_id=a1&usage%5Bhits%5D=1",
            "authorize with the usage, so that the code is reported with it afterwards"
        );
        assert!(host.stats.borrow().contains(&Stat::CacheUncachable));
        host.answer(200, None, TINY);
        flow.on_callout_response(&host, 7, 1, 0);
        assert!(host.resumed.get());
        assert_eq!(host.store.get(&name).unwrap().0, newer, "left as it was");
    }

    #[test]
    fn an_application_the_cache_cannot_hold_is_decided_by_3scale_limits_and_all() {
        let host = FakeHost::default();
        let config = config(r#"{"policy": "deny"}"#);
        fill_probed_slots(&host, "a1");
        let mut flow = request(&host, &config, "a1");
        *host.callout.borrow_mut() = CalloutResponse {
            status: Some(409),
            rejection_reason: Some(b"limits_exceeded".to_vec()),
            body: br#"<status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Tiny</plan><usage_reports><usage_report metric="hits" period="eternity" exceeded="true"><max_value>2</max_value><current_value>2</current_value></usage_report></usage_reports></status>"#.to_vec(),
            ..CalloutResponse::default()
        };
        flow.on_callout_response(&host, 7, 1, 0);
        assert!(host.stats.borrow().contains(&Stat::CacheUncachable));
        assert_eq!(host.reply_status(), Some(429));
        assert_eq!(host.reply_header("ratelimit-limit").as_deref(), Some("2"));
        assert_eq!(
            host.reply_header("ratelimit-remaining").as_deref(),
            Some("0")
        );
        assert_eq!(entry_pending(&host, "a1"), vec![], "no entry of its own");
    }

    #[test]
    fn one_authorize_fills_the_entry_then_requests_are_decided_locally() {
        let host = FakeHost::default();
        let config = config(r#"{"policy": "deny"}"#);
        let mut flow = request(&host, &config, "a1");
        assert_eq!(
            host.callout_path(),
            "/transactions/authorize.xml?service_token=secret-token&service_id=svc1&app_id=a1&usage%5Bhits%5D=1"
        );
        host.answer(200, None, TINY);
        flow.on_callout_response(&host, 7, 1, 0);
        assert!(host.resumed.get());
        assert_eq!(
            host.header("x-tollgate-cluster").as_deref(),
            Some("staging")
        );
        *host.status.borrow_mut() = Some("201".into());
        flow.on_log(&host);
        assert_eq!(
            entry_pending(&host, "a1"),
            vec![(201, "hits".to_string(), 1)],
            "usage and its code together"
        );

        let calls_before = host.dispatched.borrow().len();
        request(&host, &config, "a1");
        assert_eq!(
            host.dispatched.borrow().len(),
            calls_before,
            "a hit makes no callout"
        );
        assert_eq!(
            host.header("x-tollgate-cluster").as_deref(),
            Some("staging")
        );
        request(&host, &config, "a1");
        assert_eq!(
            host.reply_status(),
            Some(429),
            "the eternity limit of 2 is decided locally"
        );
        assert_eq!(host.dispatched.borrow().len(), calls_before);
        assert!(
            host.store.dequeue().is_some(),
            "the entry was queued for the report flush"
        );
        assert!(host.store.dequeue().is_none(), "once, not per request");
    }

    #[test]
    fn usage_is_counted_queued_once_when_admitted() {
        let host = FakeHost::default();
        let config = config(r#"{"policy": "deny"}"#);
        let queued = || {
            host.stats
                .borrow()
                .iter()
                .filter(|s| **s == Stat::QueuedUnits)
                .count()
        };
        let mut flow = request(&host, &config, "a1");
        host.answer(200, None, TINY);
        flow.on_callout_response(&host, 7, 1, 0);
        assert_eq!(queued(), 1, "awaiting its code in the entry");
        *host.status.borrow_mut() = Some("200".into());
        flow.on_log(&host);
        assert_eq!(queued(), 1, "pending with its code: the same unit");
        let mut flow = request(&host, &config, "a1");
        flow.on_log(&host);
        let mut flow = request(&host, &config, "a1");
        assert_eq!(host.reply_status(), Some(429));
        flow.on_log(&host);
        assert_eq!(queued(), 2, "a refused request queues nothing");
    }

    #[test]
    fn an_unreachable_3scale_is_denied_or_let_through_per_policy() {
        for (failure, status) in [
            (r#"{"policy": "deny"}"#, Some(503)),
            (r#"{"policy": "allow_cached"}"#, Some(503)),
            (r#"{"policy": "allow_listed", "allowed": ["a1"]}"#, None),
            (
                r#"{"policy": "allow_listed", "allowed": ["other"]}"#,
                Some(503),
            ),
            (
                r#"{"policy": "allow", "fail_open_cluster": "fallback"}"#,
                None,
            ),
        ] {
            let host = FakeHost::default();
            let config = config(failure);
            let mut flow = request(&host, &config, "a1");
            *host.callout.borrow_mut() = CalloutResponse {
                status: Some(503),
                ..CalloutResponse::default()
            };
            flow.on_callout_response(&host, 7, 1, 0);
            assert_eq!(host.reply_status(), status, "{failure}");
            if status.is_none() {
                assert!(host.resumed.get());
                let expected = match failure.contains("fail_open_cluster") {
                    true => "fallback",
                    false => "production",
                };
                assert_eq!(
                    host.header("x-tollgate-cluster").as_deref(),
                    Some(expected),
                    "no plan known: the fail-open cluster wins over the default"
                );
                assert_eq!(entry_pending(&host, "a1"), Vec::new(), "until the response");
                *host.status.borrow_mut() = Some("502".into());
                flow.on_log(&host);
                assert_eq!(
                    entry_pending(&host, "a1"),
                    vec![(502, "hits".to_string(), 1)],
                    "kept for the report, with the code the client got"
                );
                assert!(host.stats.borrow().contains(&Stat::FailOpen));
                let queued = host
                    .stats
                    .borrow()
                    .iter()
                    .filter(|s| **s == Stat::QueuedUnits)
                    .count();
                assert_eq!(queued, 1, "{failure}");
            }
        }
    }

    #[test]
    fn a_cached_decision_standing_in_for_3scale_routes_an_unrouted_plan_to_the_fail_open_cluster() {
        let host = FakeHost::default();
        let config = config(r#"{"policy": "allow_cached", "fail_open_cluster": "fallback"}"#);
        let other = crate::backend::parse_status(TINY.replace("Tiny", "Other").as_bytes()).unwrap();
        let entry = crate::cache::Entry::new(
            key("a1"),
            crate::cache::Answer::Authorized,
            Some(&other),
            host.now_ms(),
        )
        .unwrap();
        assert!(slots(&host).place(&entry, |_| {}).is_some());
        // This worker has not seen the metric yet: it asks 3scale, which is down.
        let mut flow = request(&host, &config, "a1");
        *host.callout.borrow_mut() = CalloutResponse::default();
        flow.on_callout_response(&host, 7, 1, 0);
        assert_eq!(host.reply_status(), None);
        assert_eq!(
            host.header("x-tollgate-cluster").as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn a_request_refused_for_its_plan_after_admission_leaves_no_usage() {
        let host = FakeHost::default();
        let no_default = CACHED
            .replace(r#", "default": {"cluster": "production"}"#, "")
            .replace("FAILURE", r#"{"policy": "deny"}"#);
        let config = Rc::new(Config::load(no_default.as_bytes(), &|_| None).unwrap());
        let mut flow = request(&host, &config, "a1");
        host.answer(200, None, &TINY.replace("Tiny", "Other"));
        flow.on_callout_response(&host, 7, 1, 0);
        assert_eq!(host.reply_code(), "no_route_for_plan");
        for _ in 0..3 {
            let mut flow = request(&host, &config, "a1");
            assert_eq!(
                host.reply_code(),
                "no_route_for_plan",
                "never limits_exceeded: refused requests use none of the limit of 2"
            );
            flow.on_log(&host);
        }
        // The unit the worker's lease reserved comes back when the lease is returned.
        let later = host.now_ms() + crate::lease::LEASE_MS;
        crate::lease::settle_expired(&slots(&host), &config, later);
        assert_eq!(entry_used(&host, "a1"), vec![0]);
        assert_eq!(entry_pending(&host, "a1"), Vec::new(), "nothing to report");
        assert!(
            !host.stats.borrow().contains(&Stat::QueuedUnits),
            "and nothing queued"
        );
    }

    #[test]
    fn allow_cached_keeps_deciding_from_an_old_entry_when_3scale_is_down() {
        let host = FakeHost::default();
        let config = config(r#"{"policy": "allow_cached", "max_staleness_seconds": 600}"#);
        let mut flow = request(&host, &config, "a1");
        host.answer(200, None, TINY);
        flow.on_callout_response(&host, 7, 1, 0);
        host.elapsed.set(300);
        let before = host.dispatched.borrow().len();
        request(&host, &config, "a1");
        assert_eq!(
            host.dispatched.borrow().len(),
            before,
            "within max staleness: decided from the cache"
        );
        assert!(host.resumed.get() || host.reply_status().is_none());
        host.elapsed.set(900);
        let mut flow = request(&host, &config, "a1");
        assert_eq!(
            host.dispatched.borrow().len(),
            before + 1,
            "too old: 3scale is asked"
        );
        *host.callout.borrow_mut() = CalloutResponse::default();
        flow.on_callout_response(&host, 7, 1, 0);
        assert_eq!(
            host.reply_status(),
            Some(503),
            "older than max staleness: no cached decision stands"
        );
    }
}
