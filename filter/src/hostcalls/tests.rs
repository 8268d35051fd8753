//! The adapter over a host that fails each hostcall in turn: no panic, and every request still answered.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

use super::{Abi, Adapter, MetricIds};
use crate::background::Background;
use crate::config::Config;
use crate::flow::Flow;
use crate::host::{Action, Host};
use crate::pairs;

const CONFIG: &str = r#"{
  "backend": {"cluster": "threescale_backend", "authority": "backend.test", "timeout_ms": 500},
  "cache": {"report_interval_ms": 100},
  "services": [{
    "id": "svc1",
    "service_token": "secret-token",
    "match": {"hosts": ["api.test"]},
    "credentials": {"kind": "app_id", "locations": ["query"]},
    "mapping_rules": [{"method": "GET", "pattern": "/items", "metric": "hits"}]
  }]
}"#;

const AUTHORIZED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><status><authorized>true</authorized><plan>Basic</plan><usage_reports><usage_report metric="hits" period="minute"><period_start>2026-11-24 18:09:00 +0000</period_start><period_end>2026-11-24 18:10:00 +0000</period_end><max_value>100</max_value><current_value>1</current_value></usage_report></usage_reports></status>"#;

/// Which hostcalls answered what: the host fails call number `fail_at` with `status`.
type Calls = RefCell<Vec<&'static str>>;

/// A host that works like Envoy for one request at a time, except for one chosen hostcall.
struct ScriptedAbi {
    fail_at: Option<usize>,
    status: Status,
    calls: Calls,
    request_headers: RefCell<Vec<(String, Vec<u8>)>>,
    callout_status: &'static str,
    callout_body: RefCell<Vec<u8>>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    queue: RefCell<VecDeque<Vec<u8>>>,
    tokens: Cell<u32>,
    replied: Cell<Option<u32>>,
    resumed: Cell<bool>,
    clock: Cell<u64>,
}

impl ScriptedAbi {
    fn new(fail_at: Option<usize>, status: Status) -> Self {
        ScriptedAbi {
            fail_at,
            status,
            calls: RefCell::default(),
            request_headers: RefCell::default(),
            callout_status: "200",
            callout_body: RefCell::new(AUTHORIZED.as_bytes().to_vec()),
            shared: RefCell::default(),
            queue: RefCell::default(),
            tokens: Cell::new(0),
            replied: Cell::new(None),
            resumed: Cell::new(false),
            clock: Cell::new(1_795_543_791),
        }
    }

    /// Counts the call; Err when it is the one to fail.
    fn call(&self, name: &'static str) -> Result<(), Status> {
        let mut calls = self.calls.borrow_mut();
        calls.push(name);
        if Some(calls.len() - 1) == self.fail_at {
            return Err(self.status);
        }
        Ok(())
    }

    fn new_request(&self, path: &str) {
        *self.request_headers.borrow_mut() = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (":authority".into(), b"api.test".to_vec()),
        ];
        self.replied.set(None);
        self.resumed.set(false);
    }

    fn failed(&self, name: &str) -> bool {
        self.fail_at
            .and_then(|at| self.calls.borrow().get(at).copied())
            .is_some_and(|failed| failed == name)
    }
}

impl Abi for &ScriptedAbi {
    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
        self.call("header")?;
        Ok(match map {
            MapType::HttpCallResponseHeaders => {
                (name == ":status").then(|| self.callout_status.as_bytes().to_vec())
            }
            MapType::HttpRequestHeaders => self
                .request_headers
                .borrow()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone()),
            _ => None,
        })
    }

    fn headers(&self, _map: MapType) -> Result<Vec<u8>, Status> {
        self.call("headers")?;
        let headers = self.request_headers.borrow();
        Ok(pairs::encode(
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())),
        ))
    }

    fn set_header(&self, _map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
        self.call("set_header")?;
        let mut headers = self.request_headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            headers.push((name.to_string(), value.to_vec()));
        }
        Ok(())
    }

    fn buffer(&self, kind: BufferType, _: usize, size: usize) -> Result<Option<Vec<u8>>, Status> {
        self.call("buffer")?;
        Ok(match kind {
            BufferType::HttpCallResponseBody => {
                let body = self.callout_body.borrow();
                Some(body[..size.min(body.len())].to_vec())
            }
            _ => None,
        })
    }

    fn set_buffer(&self, _: BufferType, _: &[u8]) -> Result<(), Status> {
        self.call("set_buffer")
    }

    fn property(&self, _path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        self.call("property")?;
        Ok(None)
    }

    fn set_property(&self, _path: &[&str], _value: &[u8]) -> Result<(), Status> {
        self.call("set_property")
    }

    fn dispatch(
        &self,
        _: &str,
        _: &[(&str, &str)],
        _: Option<&[u8]>,
        _: Duration,
    ) -> Result<u32, Status> {
        self.call("dispatch")?;
        self.tokens.set(self.tokens.get() + 1);
        Ok(self.tokens.get())
    }

    fn send_local_response(
        &self,
        status: u32,
        _: &[(&str, &str)],
        _: &[u8],
        _: i32,
    ) -> Result<(), Status> {
        self.call("send_local_response")?;
        self.replied.set(Some(status));
        Ok(())
    }

    fn resume_request(&self) -> Result<(), Status> {
        self.call("resume_request")?;
        self.resumed.set(true);
        Ok(())
    }

    fn call_foreign_function(&self, _name: &str) -> Result<(), Status> {
        self.call("call_foreign_function")
    }

    fn current_time(&self) -> Result<SystemTime, Status> {
        self.call("current_time")?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(self.clock.get()))
    }

    fn log_level(&self) -> Result<LogLevel, Status> {
        self.call("log_level")?;
        Ok(LogLevel::Info)
    }

    fn set_tick_period(&self, _: Duration) -> Result<(), Status> {
        self.call("set_tick_period")
    }

    fn define_metric(&self, _: MetricType, _: &str) -> Result<u32, Status> {
        self.call("define_metric")?;
        Ok(1)
    }

    fn increment_metric(&self, _: u32, _: i64) -> Result<(), Status> {
        self.call("increment_metric")
    }

    fn record_metric(&self, _: u32, _: u64) -> Result<(), Status> {
        self.call("record_metric")
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        self.call("shared_data")?;
        Ok(match self.shared.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        self.call("set_shared_data")?;
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map_or(0, |(_, cas)| *cas);
        if let Some(cas) = cas.filter(|cas| *cas != 0 && current != 0)
            && cas != current
        {
            return Err(Status::CasMismatch);
        }
        shared.insert(key.to_string(), (value.to_vec(), current + 1));
        Ok(())
    }

    fn register_shared_queue(&self, _: &str) -> Result<u32, Status> {
        self.call("register_shared_queue")?;
        Ok(1)
    }

    fn enqueue_shared_queue(&self, _: u32, value: &[u8]) -> Result<(), Status> {
        self.call("enqueue_shared_queue")?;
        self.queue.borrow_mut().push_back(value.to_vec());
        Ok(())
    }

    fn dequeue_shared_queue(&self, _: u32) -> Result<Option<Vec<u8>>, Status> {
        self.call("dequeue_shared_queue")?;
        Ok(self.queue.borrow_mut().pop_front())
    }
}

/// How one request ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    Replied(u32),
    Resumed,
    /// Neither: only acceptable when the reply or resume hostcall itself failed.
    Stuck,
}

/// One request from headers to log, answering its callout when it makes one.
fn request(abi: &ScriptedAbi, ids: &MetricIds, flow: &mut Flow, callout_headers: usize) -> Outcome {
    abi.new_request("/items?app_id=a1");
    let host = Adapter::new(abi, ids);
    let action = flow.on_request_headers(&host, true);
    if action == Action::Pause && abi.replied.get().is_none() {
        let token = abi.tokens.get();
        let body = abi.callout_body.borrow().len();
        flow.on_callout_response(&host, token, callout_headers, body);
    }
    let outcome = match (
        abi.replied.get(),
        abi.resumed.get() || action == Action::Continue,
    ) {
        (Some(status), _) => Outcome::Replied(status),
        (None, true) => Outcome::Resumed,
        (None, false) => Outcome::Stuck,
    };
    if outcome == Outcome::Resumed {
        flow.on_response_headers(&host);
    }
    flow.on_log(&host);
    outcome
}

/// Two requests (a cache miss, then a hit), a report flush and its answer.
fn scenario(abi: &ScriptedAbi) -> Vec<Outcome> {
    let config = Rc::new(Config::load(CONFIG.as_bytes(), &|_| None).unwrap());
    let ids = MetricIds::register(&abi).with_queue(&abi, "tollgate.dirty");
    let mut background = Background::new(Rc::clone(&config), 1);
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let mut flow = Flow::new(Rc::clone(&config));
        outcomes.push(request(abi, &ids, &mut flow, 1));
    }
    abi.clock.set(abi.clock.get() + 1);
    let host = Adapter::new(abi, &ids);
    let before = abi.tokens.get();
    background.tick(&host);
    if abi.tokens.get() > before {
        *abi.callout_body.borrow_mut() = Vec::new();
        background.on_response(&host, abi.tokens.get(), 1, 0);
    }
    outcomes
}

const STATUSES: [Status; 4] = [
    Status::BadArgument,
    Status::NotFound,
    Status::InternalFailure,
    Status::Empty,
];

#[test]
fn every_hostcall_failing_in_turn_leaves_every_request_answered() {
    let clean = ScriptedAbi::new(None, Status::Ok);
    let outcomes = scenario(&clean);
    assert_eq!(outcomes, [Outcome::Resumed, Outcome::Resumed]);
    let total = clean.calls.borrow().len();
    assert!(total > 20, "the scenario exercises the hostcalls ({total})");
    for fail_at in 0..total {
        for status in STATUSES {
            let abi = ScriptedAbi::new(Some(fail_at), status);
            let outcomes = scenario(&abi);
            let exempt = abi.failed("send_local_response") || abi.failed("resume_request");
            for outcome in &outcomes {
                assert!(
                    *outcome != Outcome::Stuck || exempt,
                    "call {fail_at} ({:?}) failing with {status:?} left a request unanswered",
                    abi.calls.borrow().get(fail_at)
                );
            }
        }
    }
}

#[test]
fn a_callout_that_failed_after_its_headers_is_no_answer() {
    let abi = ScriptedAbi::new(None, Status::Ok);
    let ids = MetricIds::register(&&abi).with_queue(&&abi, "tollgate.dirty");
    let host = Adapter::new(&abi, &ids);
    let reads = abi.calls.borrow().len();
    assert_eq!(
        host.callout_response(0, 10).status,
        None,
        "no headers: failed"
    );
    assert_eq!(
        abi.calls.borrow().len(),
        reads,
        "a failed callout's headers are not read"
    );
    assert_eq!(host.callout_response(3, 10).status, Some(200));
}

#[test]
fn a_request_whose_callout_headers_cannot_be_read_gets_the_failure_policy() {
    let config = Rc::new(Config::load(CONFIG.as_bytes(), &|_| None).unwrap());
    for status in STATUSES {
        // Every header read after the request's own (the callout's) fails, as Envoy does once a
        // callout failed mid-body.
        let abi = ScriptedAbi::new(None, status);
        let ids = MetricIds::register(&&abi).with_queue(&&abi, "tollgate.dirty");
        let mut flow = Flow::new(Rc::clone(&config));
        abi.new_request("/items?app_id=a1");
        let host = Adapter::new(&abi, &ids);
        assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
        let failing = FailingCalloutHeaders(&abi, status);
        let host = Adapter::new(failing, &ids);
        flow.on_callout_response(&host, abi.tokens.get(), 3, 100);
        assert_eq!(
            abi.replied.get(),
            Some(503),
            "{status:?}: deny policy answers"
        );
    }
}

/// The scripted host, except that the callout's headers and body fail.
struct FailingCalloutHeaders<'a>(&'a ScriptedAbi, Status);

impl Abi for FailingCalloutHeaders<'_> {
    fn header(&self, map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
        match map {
            MapType::HttpCallResponseHeaders => Err(self.1),
            _ => self.0.header(map, name),
        }
    }
    fn headers(&self, map: MapType) -> Result<Vec<u8>, Status> {
        (&self.0).headers(map)
    }
    fn set_header(&self, map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
        (&self.0).set_header(map, name, value)
    }
    fn buffer(
        &self,
        kind: BufferType,
        start: usize,
        size: usize,
    ) -> Result<Option<Vec<u8>>, Status> {
        match kind {
            BufferType::HttpCallResponseBody => Err(self.1),
            _ => (&self.0).buffer(kind, start, size),
        }
    }
    fn set_buffer(&self, kind: BufferType, value: &[u8]) -> Result<(), Status> {
        (&self.0).set_buffer(kind, value)
    }
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        (&self.0).property(path)
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        (&self.0).set_property(path, value)
    }
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Status> {
        (&self.0).dispatch(cluster, headers, body, timeout)
    }
    fn send_local_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        grpc: i32,
    ) -> Result<(), Status> {
        (&self.0).send_local_response(status, headers, body, grpc)
    }
    fn resume_request(&self) -> Result<(), Status> {
        (&self.0).resume_request()
    }
    fn call_foreign_function(&self, name: &str) -> Result<(), Status> {
        (&self.0).call_foreign_function(name)
    }
    fn current_time(&self) -> Result<SystemTime, Status> {
        (&self.0).current_time()
    }
    fn log_level(&self) -> Result<LogLevel, Status> {
        (&self.0).log_level()
    }
    fn set_tick_period(&self, period: Duration) -> Result<(), Status> {
        (&self.0).set_tick_period(period)
    }
    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        (&self.0).define_metric(kind, name)
    }
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        (&self.0).increment_metric(id, offset)
    }
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        (&self.0).record_metric(id, value)
    }
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        (&self.0).shared_data(key)
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        (&self.0).set_shared_data(key, value, cas)
    }
    fn register_shared_queue(&self, name: &str) -> Result<u32, Status> {
        (&self.0).register_shared_queue(name)
    }
    fn enqueue_shared_queue(&self, queue: u32, value: &[u8]) -> Result<(), Status> {
        (&self.0).enqueue_shared_queue(queue, value)
    }
    fn dequeue_shared_queue(&self, queue: u32) -> Result<Option<Vec<u8>>, Status> {
        (&self.0).dequeue_shared_queue(queue)
    }
}

/// What a cache hit decided from the worker's lease asks of Envoy, from its headers to its log: the
/// hostcalls a request cannot do without (its headers, the time, routing, the response code), no
/// shared data and no stats (counted in the VM, handed over at the tick).
#[test]
fn a_cache_hit_from_a_lease_makes_only_these_hostcalls() {
    let abi = ScriptedAbi::new(None, Status::Ok);
    let config = Rc::new(Config::load(CONFIG.as_bytes(), &|_| None).unwrap());
    let ids = MetricIds::register(&&abi).with_queue(&&abi, "tollgate.dirty");
    // A miss fills the entry, the next request takes a lease, the third is decided from it.
    for _ in 0..2 {
        let mut flow = Flow::new(Rc::clone(&config));
        assert_eq!(request(&abi, &ids, &mut flow, 1), Outcome::Resumed);
    }
    abi.calls.borrow_mut().clear();
    let mut flow = Flow::new(Rc::clone(&config));
    assert_eq!(request(&abi, &ids, &mut flow, 1), Outcome::Resumed);
    assert_eq!(
        *abi.calls.borrow(),
        [
            "headers",      // the request headers, all in one call
            "property",     // the route's metadata: this service does not answer every host
            "current_time", // the lease's expiry
            "set_header",   // :path without the credentials
            "header",       // :status, the response code to report
        ]
    );
}
