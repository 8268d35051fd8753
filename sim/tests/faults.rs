//! Fault injection, on both seeds: latency (work done), forced statuses, garbage bodies, closed
//! connections (no work done), and refusing connections for a while.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{FIXTURES, Fixture, Sim};

fn authrep(f: &Fixture) -> String {
    f.url(
        "authrep",
        f.all_app,
        f.all_key,
        &format!("&usage%5B{}%5D=1", f.parent),
    )
}

fn report_body(f: &Fixture) -> String {
    format!(
        "service_token={}&service_id={}&transactions[0][app_id]={}&transactions[0][usage][{}]=1",
        f.token, f.service, f.all_app, f.parent
    )
}

fn set_fault(sim: &Sim, fault: &str) {
    let (status, v) = sim.json("PUT", "/_sim/faults", fault);
    assert_eq!(status, 200, "{v}");
}

fn used(sim: &Sim, f: &Fixture) -> i64 {
    sim.usage_in(f.service, f.all_app, f.parent, "eternity")
}

fn calls(sim: &Sim) -> serde_json::Value {
    sim.json("GET", "/_sim/calls", "").1
}

#[test]
fn latency_delays_but_does_the_work() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"authrep","latency_ms":300}"#);
        let started = Instant::now();
        let r = sim.get(&authrep(f));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with(support::XML_DECL));
        assert_eq!(used(&sim, f), 1);
        // The usage is applied before the delay: visible while the answer is still pending.
        let addr = sim.addr.clone();
        let target = authrep(f);
        let pending = std::thread::spawn(move || {
            support::send(&addr, "GET", &target, &[], None)
                .unwrap()
                .status
        });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(used(&sim, f), 2);
        assert_eq!(pending.join().unwrap(), 200);
        // Other endpoints are not faulted.
        assert_eq!(
            sim.get(&f.url("authorize", f.all_app, f.all_key, ""))
                .status,
            200
        );
        assert_eq!(calls(&sim)["total"]["faulted"], 2);
    }
}

#[test]
fn forced_status_does_no_work() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"authrep","status":503,"times":2}"#);
        for _ in 0..2 {
            let r = sim.get(&authrep(f));
            assert_eq!(
                (r.status, r.text()),
                (503, "Internal Server Error\n".to_owned())
            );
        }
        assert_eq!(used(&sim, f), 0);
        assert_eq!(
            sim.get(&authrep(f)).status,
            200,
            "the fault cleared itself after two requests"
        );
        assert_eq!(used(&sim, f), 1);

        set_fault(&sim, r#"{"endpoint":"report","status":500}"#);
        let r = sim.post_form("/transactions.xml", &report_body(f));
        assert_eq!(
            (r.status, r.text()),
            (500, "Internal Server Error\n".to_owned())
        );
        assert_eq!(used(&sim, f), 1);
        set_fault(&sim, r#"{"endpoint":"report","status":429}"#);
        let r = sim.post_form("/transactions.xml", &report_body(f));
        assert_eq!((r.status, r.body.len()), (429, 0));

        // latency applies first, then the status.
        set_fault(
            &sim,
            r#"{"endpoint":"authorize","latency_ms":200,"status":502}"#,
        );
        let started = Instant::now();
        assert_eq!(
            sim.get(&f.url("authorize", f.all_app, f.all_key, ""))
                .status,
            502
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        let c = calls(&sim);
        assert_eq!(c["total"]["faulted"], 5);
        assert_eq!(c["services"][f.service]["authrep"], 3);
        assert_eq!(c["services"][f.service]["report"], 2);
    }
}

#[test]
fn garbage_bodies_do_no_work() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"oauth_authrep","garbage":true}"#);
        set_fault(&sim, r#"{"endpoint":"authrep","garbage":true}"#);
        let r = sim.get(&authrep(f));
        assert_eq!(r.status, 200);
        assert!(!r.text().contains('<'), "not XML: {}", r.text());
        assert_eq!(used(&sim, f), 0);
        let (_, listed) = sim.json("GET", "/_sim/faults", "");
        assert_eq!(listed["faults"].as_array().unwrap().len(), 2);
        assert_eq!(sim.json("DELETE", "/_sim/faults", "").0, 200);
        assert_eq!(sim.get(&authrep(f)).status, 200);
        assert_eq!(used(&sim, f), 1);
    }
}

#[test]
fn closed_connections_do_no_work() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"*","close":true}"#);
        let err = sim.try_request("GET", &authrep(f), &[], None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
        let err = sim
            .try_request(
                "POST",
                "/transactions.xml",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                Some(report_body(f).as_bytes()),
            )
            .unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ),
            "{err}"
        );
        assert_eq!(used(&sim, f), 0);
        // /status is never faulted (readiness checks).
        assert_eq!(sim.get("/status").status, 200);
        // The closed requests were received: counted and logged with status 0.
        let c = calls(&sim);
        assert_eq!(
            (
                c["total"]["authrep"].as_i64(),
                c["total"]["report"].as_i64(),
                c["total"]["faulted"].as_i64()
            ),
            (Some(1), Some(1), Some(2))
        );
        let (_, requests) = sim.json("GET", "/_sim/requests?limit=3", "");
        assert_eq!(requests[0]["status"], 0);
        assert_eq!(requests[1]["status"], 0);
        assert_eq!(requests[1]["path"], "/transactions.xml");
        assert_eq!(requests[2]["path"], "/status");
        // An endpoint's own fault wins over "*".
        set_fault(&sim, r#"{"endpoint":"authrep","latency_ms":1}"#);
        assert_eq!(sim.get(&authrep(f)).status, 200);
    }
}

#[test]
fn bad_fault_definitions_are_refused() {
    let sim = Sim::start(None);
    for bad in [
        r#"{"endpoint":"status","close":true}"#,
        r#"{"endpoint":"nope"}"#,
        r#"{"endpoint":"*","status":42}"#,
        r#"{"endpoint":"*","body":"no status"}"#,
        r#"{"endpoint":"*","trickle_ms":0}"#,
        r#"{"endpoint":"*","colse":true}"#,
        "not json",
        r#"{"close":true}"#,
    ] {
        assert_eq!(sim.json("PUT", "/_sim/faults", bad).0, 400, "{bad}");
    }
    assert_eq!(sim.json("POST", "/_sim/faults/refuse", "{}").0, 400);
}

#[test]
fn refusing_connections_for_a_while() {
    for f in FIXTURES {
        let sim = f.start();
        // A keep-alive connection that is open (and idle) when the outage starts.
        let mut idle = TcpStream::connect(&sim.addr).unwrap();
        idle.write_all(format!("GET /status HTTP/1.1\r\nHost: {}\r\n\r\n", sim.addr).as_bytes())
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = idle.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

        let (status, v) = sim.json("POST", "/_sim/faults/refuse", r#"{"for_ms":700}"#);
        assert_eq!(status, 200, "{v}");
        let refused_at = Instant::now();
        let err = TcpStream::connect(&sim.addr).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let closed = matches!(idle.read(&mut buf), Ok(0) | Err(_));
        assert!(closed, "open connections are closed");

        let deadline = Instant::now() + Duration::from_secs(5);
        let back = loop {
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(r) = sim.try_request("GET", "/status", &[], None) {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "the simulator never listened again"
            );
        };
        assert_eq!(back.status, 200);
        assert!(
            refused_at.elapsed() >= Duration::from_millis(600),
            "not before the window ends"
        );
        assert_eq!(sim.get(&authrep(f)).status, 200);
        assert_eq!(used(&sim, f), 1, "state survives the outage");
    }
}

/// Sends one raw GET and reads until the peer closes or `wait` passes: what arrived, and when the
/// header block was complete.
fn raw_get(sim: &Sim, target: &str, wait: Duration) -> (String, Option<Duration>) {
    let mut stream = TcpStream::connect(&sim.addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    write!(stream, "GET {target} HTTP/1.1\r\nHost: sim\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut headers_at = None;
    let mut buffer = [0u8; 4096];
    while started.elapsed() < wait {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
        if headers_at.is_none() && received.windows(4).any(|w| w == b"\r\n\r\n") {
            headers_at = Some(started.elapsed());
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), headers_at)
}

fn content_length(answer: &str) -> usize {
    answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").unwrap().1
}

#[test]
fn cut_answers_send_the_headers_and_half_the_body_after_doing_the_work() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"authrep","cut_after_headers":true}"#);
        let (answer, headers_at) = raw_get(&sim, &authrep(f), Duration::from_secs(5));
        assert!(headers_at.is_some(), "{answer}");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let announced = content_length(&answer);
        let sent = body_of(&answer).len();
        assert!(sent > 0 && sent < announced, "{sent} of {announced}");
        assert_eq!(used(&sim, f), 1, "the work was done");
        assert_eq!(calls(&sim)["total"]["faulted"], 1);
    }
}

#[test]
fn trickling_answers_send_the_headers_at_once_and_the_body_slowly() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"authrep","trickle_ms":100,"times":1}"#);
        let (answer, headers_at) = raw_get(&sim, &authrep(f), Duration::from_millis(800));
        assert!(headers_at.unwrap() < Duration::from_millis(500), "{answer}");
        let sent = body_of(&answer).len();
        assert!(
            sent >= 1 && sent < content_length(&answer),
            "{sent} bytes in 800 ms"
        );
        assert_eq!(used(&sim, f), 1);
        // `times` spent: the next answer is whole at once.
        assert_eq!(sim.get(&authrep(f)).status, 200);
    }
}

#[test]
fn a_status_fault_can_look_like_a_proxy_page() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(
            &sim,
            r#"{"endpoint":"*","status":404,"content_type":"text/html","body":"<html>Not Found</html>"}"#,
        );
        let r = sim.get(&authrep(f));
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_eq!(r.text(), "<html>Not Found</html>");
        assert_eq!(used(&sim, f), 0, "no work");
    }
}

#[test]
fn a_paused_or_lagging_worker_applies_accepted_reports_later() {
    for f in FIXTURES {
        let sim = f.start();
        let (status, worker) = sim.json("PUT", "/_sim/worker", r#"{"paused":true}"#);
        assert_eq!(status, 200, "{worker}");
        let report = sim.post_form("/transactions.xml", &report_body(f));
        assert_eq!(report.status, 202);
        assert_eq!(used(&sim, f), 0, "accepted, not applied while paused");
        assert_eq!(sim.json("GET", "/_sim/worker", "").1["queued"], 1);
        sim.json("PUT", "/_sim/worker", r#"{"paused":false,"delay_ms":300}"#);
        assert_eq!(used(&sim, f), 1, "applied on resume (it was due)");
        assert_eq!(
            sim.post_form("/transactions.xml", &report_body(f)).status,
            202
        );
        assert_eq!(used(&sim, f), 1, "lagging 300 ms");
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(used(&sim, f), 2, "applied once due");
        let (status, _) = sim.json("PUT", "/_sim/worker", r#"{"lag":1}"#);
        assert_eq!(status, 400);
    }
}

#[test]
fn kept_alive_connections_can_be_closed_as_the_next_request_arrives() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"*","close_kept_alive_after":1}"#);
        let mut stream = TcpStream::connect(&sim.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let target = authrep(f);
        write!(stream, "GET {target} HTTP/1.1\r\nHost: sim\r\n\r\n").unwrap();
        let mut first = vec![0u8; 65536];
        let n = stream.read(&mut first).unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        // The same connection again: closed without an answer, and nothing done.
        write!(stream, "GET {target} HTTP/1.1\r\nHost: sim\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        assert_eq!(used(&sim, f), 1);
        // A new connection is served.
        assert_eq!(sim.get(&target).status, 200);
        assert_eq!(used(&sim, f), 2);
    }
}

#[test]
fn a_graceful_restart_answers_what_is_in_progress_then_refuses_for_a_while() {
    for f in FIXTURES {
        let sim = f.start();
        set_fault(&sim, r#"{"endpoint":"authrep","latency_ms":500}"#);
        let addr = sim.addr.clone();
        let target = authrep(f);
        let slow = std::thread::spawn(move || support::send(&addr, "GET", &target, &[], None));
        std::thread::sleep(Duration::from_millis(100));
        let (status, body) = sim.json("POST", "/_sim/faults/restart", r#"{"for_ms":800}"#);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "restarting");
        let answered = slow
            .join()
            .unwrap()
            .expect("the request in progress is answered");
        assert_eq!(answered.status, 200);
        assert!(TcpStream::connect(&sim.addr).is_err(), "refusing");
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(sim.get("/status").status, 200, "listening again");
    }
}
