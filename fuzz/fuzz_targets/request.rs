//! A whole request through the filter, everything the client controls taken from the fuzzer: the
//! headers (credentials in headers, `Authorization: Basic`/`Bearer`, the Host that selects a service),
//! the path and query, a form body, and the JWT claim `jwt_authn` would have put in the metadata.
//! 3scale answers authorized. Nothing may panic, and a request is always either answered or let go.
#![no_main]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate::config::Config;
use tollgate::flow::Flow;
use tollgate::host::{Action, CalloutResponse, DispatchError, Host};
use tollgate::stats::{Histogram, Stat};
use tollgate::store::{SharedStore, StoreError};

/// The end-to-end suite's services: every credential kind and location, form bodies, OIDC.
const CONFIG: &str = include_str!("../../tests/e2e/filter.json");
const HOSTS: [&str; 8] = [
    "appid.test",
    "userkey.test",
    "oidc.test",
    "oidc-aud.test",
    "referrer.test",
    "anon.test",
    "misconf.test",
    "unknown.test",
];
const AUTHORIZED: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Sandbox</plan></status>"#;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    host: u8,
    method: &'a [u8],
    path: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
    body: Option<&'a [u8]>,
    claim: Option<&'a [u8]>,
}

struct FuzzHost<'a> {
    headers: RefCell<Vec<(Vec<u8>, Vec<u8>)>>,
    body: Option<&'a [u8]>,
    claim: Option<&'a [u8]>,
    dispatched: Cell<u32>,
    answered: Cell<bool>,
    resumed: Cell<bool>,
}

impl SharedStore for FuzzHost<'_> {
    fn get(&self, _key: &str) -> Option<(Vec<u8>, u32)> {
        None
    }
    fn set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        Ok(())
    }
    fn enqueue(&self, _value: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    fn dequeue(&self) -> Option<Vec<u8>> {
        None
    }
}

impl Host for FuzzHost<'_> {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        let headers = self.headers.borrow();
        let found = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
        found.map(|(_, v)| v.clone())
    }
    fn request_headers(&self) -> Option<Vec<u8>> {
        let headers = self.headers.borrow();
        Some(tollgate::pairs::encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))))
    }
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
        if let Some(value) = value {
            headers.push((name.as_bytes().to_vec(), value.to_vec()));
        }
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.body.map(|b| b.get(..size.min(b.len())).unwrap_or_default().to_vec())
    }
    fn set_request_body(&self, _body: &[u8]) {}
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        (name == ":status").then(|| b"200".to_vec())
    }
    fn set_response_header(&self, _name: &str, _value: &[u8]) {}
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        (path.first() == Some(&"metadata")).then_some(self.claim?.to_vec())
    }
    fn set_filter_state(&self, _name: &str, _value: &[u8]) {}
    fn dispatch(
        &self,
        _cluster: &str,
        _headers: &[(&str, &str)],
        _body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, DispatchError> {
        self.dispatched.set(self.dispatched.get() + 1);
        Ok(self.dispatched.get())
    }
    fn callout_response(&self, _headers: usize, _body_size: usize) -> CalloutResponse {
        CalloutResponse {
            status: Some(200),
            body: AUTHORIZED.to_vec(),
            ..CalloutResponse::default()
        }
    }
    fn send_reply(&self, _status: u16, _headers: &[(&str, &str)], _body: &[u8]) {
        self.answered.set(true);
    }
    fn send_grpc_reply(&self, _grpc_status: u32, _message: &str, _headers: &[(&str, &str)]) {
        self.answered.set(true);
    }
    fn resume_request(&self) {
        self.resumed.set(true);
    }
    fn clear_route_cache(&self) {}
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_543_791)
    }
    fn add(&self, _stat: Stat, _n: u64) {}
    fn observe(&self, _histogram: Histogram, _value: u64) {}
}

thread_local! {
    static LOADED: Rc<Config> =
        Rc::new(Config::load(CONFIG.as_bytes(), &|_| Some("secret".into())).expect("tests/e2e/filter.json loads"));
}

fuzz_target!(|input: Input| {
    let host_name = HOSTS[usize::from(input.host) % HOSTS.len()];
    let mut headers = vec![
        (b":method".to_vec(), input.method.to_vec()),
        (b":path".to_vec(), input.path.to_vec()),
        (b":authority".to_vec(), host_name.as_bytes().to_vec()),
    ];
    headers.extend(input.headers.iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
    let host = FuzzHost {
        headers: RefCell::new(headers),
        body: input.body,
        claim: input.claim,
        dispatched: Cell::new(0),
        answered: Cell::new(false),
        resumed: Cell::new(false),
    };
    let mut flow = Flow::new(LOADED.with(Rc::clone));
    let mut action = flow.on_request_headers(&host, input.body.is_none());
    if let Some(body) = input.body {
        if action == Action::Continue && !host.answered.get() {
            action = flow.on_request_body(&host, body.len(), true);
        }
    }
    if host.dispatched.get() > 0 && !host.answered.get() {
        flow.on_callout_response(&host, host.dispatched.get(), 1, AUTHORIZED.len());
    }
    let decided = host.answered.get() || host.resumed.get() || action == Action::Continue;
    assert!(decided, "a request left waiting");
    if !host.answered.get() {
        flow.on_response_headers(&host);
    }
    flow.on_log(&host);
});
