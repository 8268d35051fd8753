//! Echo upstreams: the services Envoy forwards to. Each answers every request with a JSON description of what it
//! received and records the request with its raw bytes, so tests can check what the filter let through.
//!
//! A request may choose its own answer's status with the header [`STATUS_HEADER`] (e.g. `x-echo-status: 404`), so
//! concurrent clients can get different response codes from one upstream.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::wire;

/// A request header naming the status of its answer (3 digits); it wins over [`Upstream::set_status`].
pub const STATUS_HEADER: &str = "x-echo-status";

/// Request heads larger than this are refused (Envoy never forwards more than its own 60 KiB default).
const MAX_HEAD: usize = 1 << 20;
/// An idle kept-alive connection is dropped after this long (Envoy reconnects as needed).
const IDLE: Duration = Duration::from_secs(120);

/// A request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of a header (case-insensitive name), lossy UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        wire::header(&self.headers, name)
    }

    /// The JSON the upstream answers with (bytes shown as lossy UTF-8).
    fn echo(&self, upstream: &str) -> serde_json::Value {
        let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let headers: Vec<[String; 2]> = self
            .headers
            .iter()
            .map(|(n, v)| [n.clone(), lossy(v)])
            .collect();
        json!({
            "upstream": upstream,
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": lossy(&self.body),
        })
    }
}

/// What all connections of one upstream share.
#[derive(Debug)]
struct State {
    name: String,
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
    connections: AtomicUsize,
    stopped: AtomicBool,
}

/// An echo server on 127.0.0.1 (HTTP/1.1, keep-alive, Content-Length and chunked request bodies). Stops accepting
/// when dropped.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub port: u16,
    state: Arc<State>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("upstream {name}: cannot bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("upstream {name}: no local address: {e}"))
            .port();
        let state = Arc::new(State {
            name: name.to_owned(),
            received: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&state);
        std::thread::spawn(move || accept(&listener, &accepting));
        Upstream {
            name: name.to_owned(),
            port,
            state,
        }
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.lock().clone()
    }

    /// The most recent request; panics when there is none.
    pub fn last(&self) -> Received {
        self.lock()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("upstream {} received no request", self.name))
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The status of every later answer (default 200), e.g. 500 to check that the upstream's code is reported.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    /// Waits this long before every later answer (default none).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// How many connections were accepted so far (Envoy pools them, so usually far fewer than requests).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        self.state
            .received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept(listener: &TcpListener, state: &Arc<State>) {
    for stream in listener.incoming() {
        if state.stopped.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        state.connections.fetch_add(1, Ordering::Relaxed);
        let state = Arc::clone(state);
        std::thread::spawn(move || serve(&stream, &state));
    }
}

/// Answers requests on one connection until the peer closes, asks to close, or sends something unparseable.
fn serve(stream: &TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    while let Some(received) = read_request(&mut reader) {
        let closing = wants_close(&received) || state.stopped.load(Ordering::Relaxed);
        let asked = asked_status(&received);
        let body = received.echo(&state.name).to_string();
        state
            .received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(received);
        let delay = state.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let status = asked.unwrap_or_else(|| state.status.load(Ordering::Relaxed));
        let mut answer = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            reason(status),
            body.len()
        );
        if closing {
            answer.push_str("connection: close\r\n");
        }
        answer.push_str("\r\n");
        answer.push_str(&body);
        if (&*stream).write_all(answer.as_bytes()).is_err() || closing {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn read_request(reader: &mut BufReader<&TcpStream>) -> Option<Received> {
    let head = wire::read_head(reader, MAX_HEAD).ok()??;
    let mut parts = head.start_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let framing = wire::request_framing(&head).ok()?;
    let body = wire::read_body(reader, framing).ok()?;
    Some(Received {
        method,
        path,
        headers: head.headers,
        body,
    })
}

/// The status a request asks for with [`STATUS_HEADER`], when it is a valid one.
fn asked_status(received: &Received) -> Option<u16> {
    let status: u16 = received.header(STATUS_HEADER)?.trim().parse().ok()?;
    (200..=599).contains(&status).then_some(status)
}

fn wants_close(received: &Received) -> bool {
    received
        .header("connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, send, send_raw};

    #[test]
    fn echoes_and_records_raw_bytes() {
        let upstream = Upstream::start("staging");
        let response = send(
            upstream.port,
            &Request::post("/a/b?c=d")
                .header("x-raw", b"caf\xe9")
                .body(b"\x00\xffbody".to_vec()),
        )
        .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.upstream().as_deref(), Some("staging"));
        let echo = response.json();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/a/b?c=d");
        assert!(
            echo["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "x-raw" && h[1] == "caf\u{fffd}")
        );
        let received = upstream.last();
        assert_eq!(received.header_bytes("X-Raw"), Some(&b"caf\xe9"[..]));
        assert_eq!(received.body, b"\x00\xffbody");
        assert_eq!(upstream.received().len(), 1);
        upstream.clear();
        assert!(upstream.received().is_empty());
    }

    #[test]
    fn serves_several_requests_per_connection_with_both_framings() {
        let upstream = Upstream::start("production");
        let mut raw = Vec::new();
        raw.extend(
            Request::post("/one")
                .body("abc")
                .header("connection", "keep-alive")
                .to_bytes(),
        );
        raw.extend(
            Request::post("/two")
                .body("chunky")
                .chunked()
                .header("connection", "keep-alive")
                .to_bytes(),
        );
        raw.extend(Request::get("/three").to_bytes());
        // send_raw reads only the first answer; the others are still served on the same connection.
        let first = send_raw(upstream.port, &raw).unwrap();
        assert_eq!(first.json()["path"], "/one");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while upstream.received().len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let received = upstream.received();
        let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/one", "/two", "/three"]);
        assert_eq!(received[1].body, b"chunky");
        assert_eq!(upstream.connections(), 1);
    }

    #[test]
    fn answers_with_the_configured_status_after_the_delay() {
        let upstream = Upstream::start("s");
        upstream.set_status(503);
        upstream.set_delay(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let response = send(upstream.port, &Request::get("/")).unwrap();
        assert_eq!(response.status, 503);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(response.upstream().as_deref(), Some("s"));
    }

    #[test]
    fn a_request_can_ask_for_its_own_status() {
        let upstream = Upstream::start("s");
        upstream.set_status(503);
        let asked = |value: &str| {
            send(
                upstream.port,
                &Request::get("/").header(STATUS_HEADER, value),
            )
            .unwrap()
            .status
        };
        assert_eq!(asked("404"), 404);
        assert_eq!(asked(" 201 "), 201);
        assert_eq!(asked("99"), 503, "not a valid status: the upstream's own");
        assert_eq!(asked("abc"), 503);
        assert_eq!(send(upstream.port, &Request::get("/")).unwrap().status, 503);
    }

    #[test]
    fn garbage_closes_the_connection_without_killing_the_server() {
        let upstream = Upstream::start("g");
        assert!(send_raw(upstream.port, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").is_err());
        assert_eq!(
            send(upstream.port, &Request::get("/ok")).unwrap().status,
            200
        );
        assert_eq!(upstream.received().len(), 1);
    }
}
