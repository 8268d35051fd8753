#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

//! The fetcher against a fake portal: a host whose callouts are answered by a closure, sharing one
//! in-memory shared data between fetchers (the VMs of one Envoy).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use super::Fetcher;
use crate::config::json::Json;
use crate::host::{CalloutResponse, DispatchError, Host};
use crate::portal::adoption::Adoption;
use crate::portal::settings;
use crate::stats::{Histogram, Stat};
use crate::store::memory::MemoryStore;
use crate::store::{SharedStore, StoreError};

type Portal = dyn Fn(&str) -> (u16, String);

struct FakeHost {
    store: Rc<MemoryStore>,
    now_ms: Rc<Cell<u64>>,
    portal: Rc<Portal>,
    /// Paths asked, with their token; answered by `deliver`.
    sent: RefCell<Vec<(u32, String)>>,
    answer: RefCell<Option<CalloutResponse>>,
    stats: RefCell<Vec<(Stat, u64)>>,
}

impl FakeHost {
    fn new(store: &Rc<MemoryStore>, now_ms: &Rc<Cell<u64>>, portal: Rc<Portal>) -> FakeHost {
        FakeHost {
            store: Rc::clone(store),
            now_ms: Rc::clone(now_ms),
            portal,
            sent: RefCell::new(Vec::new()),
            answer: RefCell::new(None),
            stats: RefCell::new(Vec::new()),
        }
    }

    /// Answers every call sent so far (and those they lead to), as the portal would.
    fn deliver(&self, fetcher: &mut Fetcher) {
        loop {
            let next = self.sent.borrow_mut().pop();
            let Some((token, path)) = next else { break };
            let (status, body) = (self.portal)(&path);
            *self.answer.borrow_mut() = Some(CalloutResponse {
                status: (status != 0).then_some(status),
                body: body.into_bytes(),
                ..CalloutResponse::default()
            });
            assert!(fetcher.on_response(self, token, 1, 0));
        }
    }

    fn stat(&self, stat: Stat) -> u64 {
        self.stats
            .borrow()
            .iter()
            .filter(|(s, _)| *s == stat)
            .map(|(_, n)| n)
            .sum()
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
    fn request_header(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn request_headers(&self) -> Option<Vec<u8>> {
        None
    }
    fn set_request_header(&self, _: &str, _: Option<&[u8]>) {}
    fn request_body(&self, _: usize) -> Option<Vec<u8>> {
        None
    }
    fn set_request_body(&self, _: &[u8]) {}
    fn response_header(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn set_response_header(&self, _: &str, _: &[u8]) {}
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        None
    }
    fn set_filter_state(&self, _: &str, _: &[u8]) {}
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        _: Option<&[u8]>,
        _: Duration,
    ) -> Result<u32, DispatchError> {
        assert_eq!(cluster, "portal");
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        // tollgate:the-token in Basic, never in the path.
        assert_eq!(
            header("authorization"),
            Some("Basic dG9sbGdhdGU6dGhlLXRva2Vu")
        );
        let path = header(":path").unwrap().to_string();
        assert!(!path.contains("the-token"));
        let mut sent = self.sent.borrow_mut();
        let token = u32::try_from(sent.len()).unwrap() + 100;
        sent.push((token, path));
        Ok(token)
    }
    fn callout_response(&self, _: usize, _: usize) -> CalloutResponse {
        self.answer.borrow_mut().take().unwrap()
    }
    fn send_reply(&self, _: u16, _: &[(&str, &str)], _: &[u8]) {}
    fn send_grpc_reply(&self, _: u32, _: &str, _: &[(&str, &str)]) {}
    fn resume_request(&self) {}
    fn clear_route_cache(&self) {}
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.now_ms.get())
    }
    fn add(&self, stat: Stat, n: u64) {
        self.stats.borrow_mut().push((stat, n));
    }
    fn observe(&self, _: Histogram, _: u64) {}
}

fn content(id: u64, pattern: &str) -> String {
    format!(
        r#"{{"id": {id}, "backend_version": "1", "backend_authentication_value": "tok", "proxy": {{"hosts": ["s{id}.test"],
        "proxy_rules": [{{"http_method": "GET", "pattern": "{pattern}", "metric_system_name": "hits"}}]}}}}"#
    )
}

fn config(id: u64, version: u64, pattern: &str) -> String {
    format!(
        r#"{{"proxy_config": {{"version": {version}, "environment": "production", "content": {}}}}}"#,
        content(id, pattern)
    )
}

fn page(configs: &[String]) -> String {
    format!(r#"{{"proxy_configs": [{}]}}"#, configs.join(","))
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn fetcher(host: &FakeHost, section: &str, nonce: u32) -> Fetcher {
    let section: Json = serde_json::from_str(section).unwrap();
    let settings = settings::parse(&section, &no_env).unwrap();
    let base: Json = serde_json::from_str(r#"{"backend": {"cluster": "3scale"}}"#).unwrap();
    Fetcher::new(settings, base, "test", nonce, no_env, host)
}

const SECTION: &str =
    r#"{"cluster": "portal", "access_token": "the-token", "refresh_interval_ms": 1000}"#;

/// The services of the latest publication as a VM adopts it: id → first pattern.
fn published(
    adoption: &mut Adoption,
    fetcher: &Fetcher,
    host: &FakeHost,
) -> Option<Vec<(String, String)>> {
    let (config, _) = adoption.next(host, fetcher)?.unwrap();
    Some(
        config
            .services
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    s.mapping_rules.get(0).unwrap().pattern().to_string(),
                )
            })
            .collect(),
    )
}

#[test]
fn pages_through_the_account_and_publishes_a_generation() {
    let portal: Rc<Portal> =
        Rc::new(|path: &str| {
            let first = path.contains("page=1&");
            assert!(path.starts_with(
                "/admin/api/account/proxy_configs/production.json?version=latest&page="
            ));
            let configs: Vec<String> = if first {
                (0..500).map(|n| config(1000 + n, 1, "/a")).collect()
            } else {
                vec![config(2000, 3, "/b")]
            };
            (200, page(&configs))
        });
    let store = Rc::new(MemoryStore::default());
    let now = Rc::new(Cell::new(1));
    let host = FakeHost::new(&store, &now, portal);
    let mut adoption = Adoption::default();
    let mut fetcher = fetcher(&host, SECTION, 1);
    fetcher.tick(&host);
    host.deliver(&mut fetcher);
    let services = published(&mut adoption, &fetcher, &host).unwrap();
    assert_eq!(services.len(), 501);
    assert_eq!(services[500], ("2000".to_string(), "/b".to_string()));
    assert_eq!(host.stat(Stat::PortalFetches), 1);
    // Nothing new: the next round publishes nothing.
    now.set(2000);
    fetcher.tick(&host);
    host.deliver(&mut fetcher);
    assert!(published(&mut adoption, &fetcher, &host).is_none());
}

#[test]
fn one_fetcher_per_envoy_and_a_new_version_rejected_alone() {
    let version = Rc::new(Cell::new(1u64));
    let seen = Rc::clone(&version);
    let portal: Rc<Portal> = Rc::new(move |_: &str| {
        let v = seen.get();
        let sixteen = if v == 2 {
            config(16, 2, "no-slash")
        } else {
            config(16, v, &format!("/v{v}"))
        };
        (200, page(&[sixteen, config(17, v, &format!("/w{v}"))]))
    });
    let store = Rc::new(MemoryStore::default());
    let now = Rc::new(Cell::new(1));
    let host = FakeHost::new(&store, &now, Rc::clone(&portal));
    let other = FakeHost::new(&store, &now, portal);
    let mut adoption = Adoption::default();
    let mut first = fetcher(&host, SECTION, 1);
    let mut second = fetcher(&other, SECTION, 2);
    first.tick(&host);
    second.tick(&other);
    assert_eq!(host.sent.borrow().len(), 1);
    assert!(
        other.sent.borrow().is_empty(),
        "the lease holder alone fetches"
    );
    host.deliver(&mut first);
    assert_eq!(
        published(&mut adoption, &second, &other).unwrap(),
        [("16".into(), "/v1".into()), ("17".into(), "/w1".into())]
    );

    // Version 2 of 16 does not compile: 16 keeps v1, 17 moves to v2.
    version.set(2);
    now.set(1500);
    first.tick(&host);
    host.deliver(&mut first);
    assert_eq!(
        published(&mut adoption, &second, &other).unwrap(),
        [("16".into(), "/v1".into()), ("17".into(), "/w2".into())]
    );
    assert_eq!(host.stat(Stat::PortalRejections), 1);

    // The portal failing: nothing changes and it is counted.
    let failing: Rc<Portal> = Rc::new(|_: &str| (503, String::new()));
    let down = FakeHost::new(&store, &now, failing);
    now.set(3000);
    first.tick(&down);
    down.deliver(&mut first);
    assert_eq!(down.stat(Stat::PortalErrors), 1);
    assert!(published(&mut adoption, &second, &other).is_none());
}

#[test]
fn a_missing_pin_keeps_the_current_version() {
    let portal: Rc<Portal> = Rc::new(|path: &str| match path {
        p if p.contains("/services/16/proxy/configs/production/1.json") => {
            (200, config(16, 1, "/v1"))
        }
        p if p.contains("/services/16/") => (404, r#"{"status": "Not found"}"#.into()),
        _ => (200, page(&[config(16, 2, "/v2")])),
    });
    let store = Rc::new(MemoryStore::default());
    let now = Rc::new(Cell::new(1));
    let host = FakeHost::new(&store, &now, portal);
    let pinned = r#"{"cluster": "portal", "access_token": "the-token", "services": [16], "versions": {"16": 1}}"#;
    let mut adoption = Adoption::default();
    let mut fetcher = fetcher(&host, pinned, 1);
    fetcher.tick(&host);
    assert!(
        host.sent
            .borrow()
            .iter()
            .all(|(_, p)| p.ends_with("/16/proxy/configs/production/1.json"))
    );
    host.deliver(&mut fetcher);
    assert_eq!(
        published(&mut adoption, &fetcher, &host).unwrap(),
        [("16".into(), "/v1".into())]
    );

    // A configuration update pins a version that does not exist: v1 keeps serving.
    let missing = r#"{"cluster": "portal", "access_token": "the-token", "services": [16], "versions": {"16": 9}}"#;
    let mut updated = self::fetcher(&host, missing, 2);
    now.set(100_000);
    updated.tick(&host);
    host.deliver(&mut updated);
    assert_eq!(host.stat(Stat::PortalRejections), 1);
    assert_eq!(
        published(&mut adoption, &updated, &host).unwrap(),
        [("16".into(), "/v1".into())]
    );
}

#[test]
fn a_vm_compiles_only_the_versions_it_does_not_serve_yet() {
    let version = Rc::new(Cell::new(1u64));
    let seen = Rc::clone(&version);
    let portal: Rc<Portal> = Rc::new(move |_: &str| {
        let v = seen.get();
        (
            200,
            page(&[config(16, 1, "/v1"), config(17, v, &format!("/w{v}"))]),
        )
    });
    let store = Rc::new(MemoryStore::default());
    let now = Rc::new(Cell::new(1));
    let host = FakeHost::new(&store, &now, portal);
    let mut fetcher = fetcher(&host, SECTION, 1);
    let mut adoption = Adoption::default();
    fetcher.tick(&host);
    host.deliver(&mut fetcher);
    let (before, _) = adoption.next(&host, &fetcher).unwrap().unwrap();

    version.set(2);
    now.set(1500);
    fetcher.tick(&host);
    host.deliver(&mut fetcher);
    let (after, _) = adoption.next(&host, &fetcher).unwrap().unwrap();
    assert!(
        Rc::ptr_eq(&before.services[0], &after.services[0]),
        "16 kept as compiled"
    );
    assert!(!Rc::ptr_eq(&before.services[1], &after.services[1]));
    assert_eq!(
        after.services[1].mapping_rules.get(0).unwrap().pattern(),
        "/w2"
    );
    assert!(
        store.get("test.portal.service.17.1").unwrap().0.is_empty(),
        "the replaced version's content is let go"
    );
}

#[test]
fn the_reporter_singleton_takes_the_lease_from_a_worker() {
    let portal: Rc<Portal> = Rc::new(|_: &str| (200, page(&[config(16, 1, "/v1")])));
    let store = Rc::new(MemoryStore::default());
    let now = Rc::new(Cell::new(1));
    let worker_host = FakeHost::new(&store, &now, Rc::clone(&portal));
    let reporter_host = FakeHost::new(&store, &now, portal);
    let mut worker = fetcher(&worker_host, SECTION, 1);
    let mut reporter = fetcher(&reporter_host, SECTION, 2).preempting();
    worker.tick(&worker_host);
    assert_eq!(
        worker_host.sent.borrow().len(),
        1,
        "the worker fetches first"
    );
    worker_host.deliver(&mut worker);
    now.set(1500);
    reporter.tick(&reporter_host);
    assert_eq!(
        reporter_host.sent.borrow().len(),
        1,
        "the reporter takes over"
    );
    worker.tick(&worker_host);
    assert!(worker_host.sent.borrow().is_empty(), "and keeps it");
}
