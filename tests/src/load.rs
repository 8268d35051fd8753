//! Load for the tests that need many requests: keep-alive connections, several clients in parallel, and a request
//! rate held over time (so a fault can be injected while traffic keeps flowing at a known pace).
//!
//! One request per connection (what [`send`](crate::send) does) would leave tens of thousands of sockets in
//! `TIME_WAIT` at 1,000 requests/s; a [`Connection`] reuses its socket until the server closes it.

use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Request, Response, read_response};

/// How long one request may take on a [`Connection`] before it fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive HTTP/1.1 connection to 127.0.0.1:`port`, opened on the first request and again after the server
/// closed it (or after any error).
#[derive(Debug)]
pub struct Connection {
    port: u16,
    stream: Option<TcpStream>,
}

impl Connection {
    pub fn new(port: u16) -> Connection {
        Connection { port, stream: None }
    }

    /// Sends `request` (with `connection: keep-alive` unless it names its own `connection` header) and reads the
    /// whole response. An error drops the connection; the next request opens a new one.
    pub fn send(&mut self, request: &Request) -> io::Result<Response> {
        let result = self.exchange(request);
        let keep = matches!(&result, Ok(response) if !closes(response));
        if !keep && let Some(stream) = self.stream.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        result
    }

    fn exchange(&mut self, request: &Request) -> io::Result<Response> {
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => open(self.port)?,
        };
        let stream = self.stream.insert(stream);
        let mut request = request.clone();
        if !request
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("connection"))
        {
            request = request.header("connection", "keep-alive");
        }
        (&*stream).write_all(&request.to_bytes())?;
        read_response(stream, &request.method)
    }
}

fn open(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn closes(response: &Response) -> bool {
    response
        .header("connection")
        .is_some_and(|value| value.to_ascii_lowercase().contains("close"))
}

/// How much load to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Requests per second, all clients together; `None` sends as fast as the clients can.
    pub rate: Option<f64>,
    /// Parallel clients, each with its own keep-alive connection.
    pub clients: usize,
    /// Stop after this many requests (`None`: until stopped or `duration` is over).
    pub total: Option<u64>,
    /// Stop sending after this long (`None`: until stopped or `total` is reached).
    pub duration: Option<Duration>,
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The request's number, from 0 in the order requests were started; it is what the request was built from.
    pub seq: u64,
    /// When it was sent, since the load started.
    pub sent_at: Duration,
    pub latency: Duration,
    /// `None` when no response came (refused, reset, timed out: see `failure`).
    pub status: Option<u16>,
    /// The echo upstream that answered, if one did.
    pub upstream: Option<String>,
    /// `error.code` of a JSON error body (Tollgate's refusals), if any.
    pub error_code: Option<String>,
    /// The I/O error when no response came.
    pub failure: Option<String>,
}

impl Sample {
    /// The request reached an echo upstream (whatever status that upstream chose).
    pub fn reached_upstream(&self) -> bool {
        self.upstream.is_some()
    }
}

/// Load running in the background; [`Load::finish`] or [`Load::stop`] collects what every request got.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `spec.clients` threads sending `request(seq)` for seq = 0, 1, 2, … to 127.0.0.1:`port`. With a rate,
    /// request `seq` is sent no earlier than `seq / rate` seconds after the start (late clients catch up).
    pub fn start(
        port: u16,
        spec: &LoadSpec,
        request: impl Fn(u64) -> Request + Send + Sync + 'static,
    ) -> Load {
        assert!(spec.clients > 0, "a load needs at least one client");
        let shared = Arc::new(Shared {
            port,
            spec: spec.clone(),
            request: Box::new(request),
            origin: Instant::now(),
            next: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicU64::new(0));
        let clients = (0..spec.clients)
            .map(|_| {
                let shared = Arc::clone(&shared);
                let stop = Arc::clone(&stop);
                let started = Arc::clone(&started);
                std::thread::spawn(move || client(&shared, &stop, &started))
            })
            .collect();
        Load {
            stop,
            started,
            clients,
        }
    }

    /// Requests started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Stops starting requests, waits for those in flight and returns every sample, by `seq`.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish()
    }

    /// Waits until `total` or `duration` is reached (a spec with neither runs forever: use [`Load::stop`]) and
    /// returns every sample, by `seq`.
    pub fn finish(self) -> Vec<Sample> {
        let mut samples: Vec<Sample> = self
            .clients
            .into_iter()
            .flat_map(|client| {
                client
                    .join()
                    .unwrap_or_else(|_| panic!("a load client panicked"))
            })
            .collect();
        samples.sort_by_key(|sample| sample.seq);
        samples
    }
}

/// Runs a load to its end: `spec` needs `total` or `duration`.
pub fn run_load(
    port: u16,
    spec: &LoadSpec,
    request: impl Fn(u64) -> Request + Send + Sync + 'static,
) -> Vec<Sample> {
    assert!(
        spec.total.is_some() || spec.duration.is_some(),
        "a load run to its end needs a total or a duration"
    );
    Load::start(port, spec, request).finish()
}

type RequestFn = Box<dyn Fn(u64) -> Request + Send + Sync>;

struct Shared {
    port: u16,
    spec: LoadSpec,
    request: RequestFn,
    origin: Instant,
    next: AtomicU64,
}

fn client(shared: &Shared, stop: &AtomicBool, started: &AtomicU64) -> Vec<Sample> {
    let mut connection = Connection::new(shared.port);
    let mut samples = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let seq = shared.next.fetch_add(1, Ordering::Relaxed);
        if shared.spec.total.is_some_and(|total| seq >= total) {
            break;
        }
        if let Some(rate) = shared.spec.rate {
            let due = shared.origin + Duration::from_secs_f64(seq as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let sent_at = shared.origin.elapsed();
        if shared.spec.duration.is_some_and(|limit| sent_at >= limit)
            || stop.load(Ordering::Relaxed)
        {
            break;
        }
        started.fetch_add(1, Ordering::Relaxed);
        let request = (shared.request)(seq);
        let begun = Instant::now();
        let result = connection.send(&request);
        samples.push(sample(seq, sent_at, begun.elapsed(), result));
    }
    samples
}

fn sample(seq: u64, sent_at: Duration, latency: Duration, result: io::Result<Response>) -> Sample {
    match result {
        Ok(response) => {
            let json: Option<serde_json::Value> = serde_json::from_slice(&response.body).ok();
            let field = |pointer: &str| {
                json.as_ref()
                    .and_then(|json| json.pointer(pointer))
                    .and_then(|value| value.as_str())
                    .map(str::to_owned)
            };
            Sample {
                seq,
                sent_at,
                latency,
                status: Some(response.status),
                upstream: field("/upstream"),
                error_code: field("/error/code"),
                failure: None,
            }
        }
        Err(error) => Sample {
            seq,
            sent_at,
            latency,
            status: None,
            upstream: None,
            error_code: None,
            failure: Some(match error.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => format!("timed out: {error}"),
                _ => error.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Upstream;

    #[test]
    fn a_connection_is_reused_and_reopened_after_a_close() {
        let upstream = Upstream::start("keep");
        let mut connection = Connection::new(upstream.port);
        for path in ["/a", "/b", "/c"] {
            let response = connection.send(&Request::get(path)).unwrap();
            assert_eq!(response.json()["path"], path);
        }
        assert_eq!(upstream.connections(), 1);
        let closing = Request::get("/d").header("connection", "close");
        assert_eq!(connection.send(&closing).unwrap().status, 200);
        assert_eq!(connection.send(&Request::get("/e")).unwrap().status, 200);
        assert_eq!(upstream.connections(), 2);
        assert_eq!(upstream.received().len(), 5);
    }

    #[test]
    fn a_refused_connection_is_an_error_not_a_panic() {
        let port = crate::free_port();
        let mut connection = Connection::new(port);
        assert!(connection.send(&Request::get("/")).is_err());
    }

    #[test]
    fn a_load_sends_every_request_once_at_the_rate() {
        let upstream = Upstream::start("load");
        let spec = LoadSpec {
            rate: Some(200.0),
            clients: 3,
            total: Some(60),
            duration: None,
        };
        let started = Instant::now();
        let samples = run_load(upstream.port, &spec, |seq| {
            Request::get(&format!("/{seq}")).header(crate::upstream::STATUS_HEADER, "404")
        });
        // 60 requests at 200/s: the last is due after 295 ms.
        assert!(started.elapsed() >= Duration::from_millis(290));
        let seqs: Vec<u64> = samples.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..60).collect::<Vec<_>>());
        assert!(samples.iter().all(|s| s.status == Some(404)));
        assert!(samples.iter().all(Sample::reached_upstream));
        let mut paths: Vec<String> = upstream.received().iter().map(|r| r.path.clone()).collect();
        paths.sort();
        let mut expected: Vec<String> = (0..60).map(|seq| format!("/{seq}")).collect();
        expected.sort();
        assert_eq!(paths, expected);
        assert!(upstream.connections() <= 3);
    }

    #[test]
    fn a_load_stops_when_asked_or_after_its_duration() {
        let upstream = Upstream::start("stop");
        let spec = LoadSpec {
            rate: Some(100.0),
            clients: 2,
            total: None,
            duration: None,
        };
        let load = Load::start(upstream.port, &spec, |_| Request::get("/"));
        std::thread::sleep(Duration::from_millis(200));
        let samples = load.stop();
        assert!((5..=40).contains(&samples.len()), "{}", samples.len());
        let timed = LoadSpec {
            duration: Some(Duration::from_millis(150)),
            ..spec
        };
        let samples = run_load(upstream.port, &timed, |_| Request::get("/"));
        assert!((5..=25).contains(&samples.len()), "{}", samples.len());
    }

    #[test]
    fn samples_read_the_upstream_and_error_codes() {
        let ok = Response {
            status: 200,
            headers: vec![],
            body: br#"{"upstream":"production"}"#.to_vec(),
        };
        let refused = Response {
            status: 429,
            headers: vec![],
            body: br#"{"error":{"code":"limits_exceeded"}}"#.to_vec(),
        };
        let a = sample(1, Duration::ZERO, Duration::ZERO, Ok(ok));
        assert_eq!(a.upstream.as_deref(), Some("production"));
        assert_eq!(a.error_code, None);
        let b = sample(2, Duration::ZERO, Duration::ZERO, Ok(refused));
        assert_eq!(b.error_code.as_deref(), Some("limits_exceeded"));
        assert!(!b.reached_upstream());
        let c = sample(
            3,
            Duration::ZERO,
            Duration::ZERO,
            Err(io::Error::new(ErrorKind::TimedOut, "slow")),
        );
        assert_eq!(c.status, None);
        assert!(c.failure.unwrap().starts_with("timed out"));
    }
}
