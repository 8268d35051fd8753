//! The TCP side: the accept loop, one hyper HTTP/1.1 connection per socket, and the refusal
//! fault (close every connection, stop listening, listen again on the same address later).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::http::{Reply, read_body};
use crate::monitor::{Endpoint, Fault, LoggedRequest, Monitor};
use crate::portal::Portal;
use crate::public::{PublicRequest, classify, respond};
use crate::shaped::{Shape, ShapedBody};
use crate::store::Store;

/// The body of a `garbage` fault: not XML at all.
const GARBAGE_BODY: &str = "this is not XML: tollgate-sim garbage fault\n";

/// Shared state of the running simulator.
pub struct App {
    store: Mutex<Store>,
    portal: Mutex<Portal>,
    monitor: Mutex<Monitor>,
    pub debug: bool,
    control: Control,
}

impl App {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn portal(&self) -> MutexGuard<'_, Portal> {
        self.portal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn monitor(&self) -> MutexGuard<'_, Monitor> {
        self.monitor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every connection but `exempt` (it finishes its answer first) and refuses
    /// connections for `for_ms`. Returns once the listener is closed.
    pub async fn refuse(&self, for_ms: u64, exempt: u64) -> bool {
        self.stop_listening(for_ms, exempt, false).await
    }

    /// A graceful restart of the listener: connections finish the request they are answering and
    /// close (idle ones at once), and connections are refused for `for_ms`.
    pub async fn restart(&self, for_ms: u64, exempt: u64) -> bool {
        self.stop_listening(for_ms, exempt, true).await
    }

    async fn stop_listening(&self, for_ms: u64, exempt: u64, graceful: bool) -> bool {
        let (ack, acked) = oneshot::channel();
        if self
            .control
            .refuse
            .send(Refusal { for_ms, ack })
            .await
            .is_err()
        {
            return false;
        }
        if acked.await.is_err() {
            return false;
        }
        self.control.kill.send_modify(|k| {
            k.generation += 1;
            k.exempt = exempt;
            k.graceful = graceful;
        });
        true
    }
}

/// Asks the accept loop to stop listening for a while.
struct Refusal {
    for_ms: u64,
    ack: oneshot::Sender<()>,
}

/// Broadcast to connections: close, except the one that asked.
#[derive(Clone, Copy, Debug, Default)]
struct Kill {
    generation: u64,
    exempt: u64,
    /// Answer what is in progress, then close (a graceful restart), rather than close at once.
    graceful: bool,
}

struct Control {
    refuse: mpsc::Sender<Refusal>,
    kill: watch::Sender<Kill>,
}

/// The connection closes without an answer (the `close` fault, or a broken request body).
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed on purpose")
    }
}

impl std::error::Error for Closed {}

/// Binds with SO_REUSEADDR so the address can be taken again right after a refusal window.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The listeners: apisonator's, and the admin portal's when asked for.
pub struct Listeners {
    pub backend: TcpListener,
    pub portal: Option<TcpListener>,
}

/// Serves until `shutdown` fires.
pub async fn serve(
    store: Store,
    portal: Portal,
    listeners: Listeners,
    debug: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = listeners.backend;
    let addr = listener.local_addr().ok();
    let (refuse_tx, mut refuse_rx) = mpsc::channel(8);
    let (kill_tx, _) = watch::channel(Kill::default());
    let app = Arc::new(App {
        store: Mutex::new(store),
        portal: Mutex::new(portal),
        monitor: Mutex::new(Monitor::default()),
        debug,
        control: Control {
            refuse: refuse_tx,
            kill: kill_tx,
        },
    });
    if let Some(portal_listener) = listeners.portal {
        tokio::spawn(serve_portal(
            Arc::clone(&app),
            portal_listener,
            shutdown.clone(),
        ));
    }
    let mut listener = Some(listener);
    let mut reopen_at = tokio::time::Instant::now();
    let mut next_id: u64 = 1;
    loop {
        let event = match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => Event::Accepted(accepted),
                refusal = refuse_rx.recv() => Event::Refuse(refusal),
                _ = shutdown.changed() => Event::Shutdown,
            },
            None => tokio::select! {
                () = tokio::time::sleep_until(reopen_at) => Event::Reopen,
                refusal = refuse_rx.recv() => Event::Refuse(refusal),
                _ = shutdown.changed() => Event::Shutdown,
            },
        };
        match event {
            Event::Accepted(Ok((stream, peer))) => {
                let kill = app.control.kill.subscribe();
                tokio::spawn(serve_connection(
                    Arc::clone(&app),
                    stream,
                    peer,
                    next_id,
                    kill,
                ));
                next_id += 1;
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Event::Accepted(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Event::Refuse(Some(refusal)) => {
                listener = None;
                let until = tokio::time::Instant::now() + Duration::from_millis(refusal.for_ms);
                reopen_at = reopen_at.max(until);
                let _ = refusal.ack.send(());
            }
            Event::Refuse(None) | Event::Shutdown => return,
            Event::Reopen => match addr.map(bind) {
                Some(Ok(l)) => listener = Some(l),
                _ => reopen_at = tokio::time::Instant::now() + Duration::from_millis(20),
            },
        }
    }
}

enum Event {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Refuse(Option<Refusal>),
    Reopen,
    Shutdown,
}

async fn serve_connection(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    mut kill: watch::Receiver<Kill>,
) {
    let _ = stream.set_nodelay(true);
    let service_app = Arc::clone(&app);
    let served = Arc::new(AtomicU64::new(0));
    let service = service_fn(move |request| {
        let before = served.fetch_add(1, Ordering::Relaxed);
        handle(
            Arc::clone(&service_app),
            request,
            Connection { id, peer, before },
        )
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = kill.changed() => {
                if changed.is_err() {
                    let _ = connection.as_mut().await;
                    return;
                }
                let order = *kill.borrow_and_update();
                if order.exempt != id && !order.graceful {
                    return;
                }
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request: the simulator's API, apisonator's internal API, or the public listener.
/// The connection a request came on: its id, its peer, and how many requests it served before.
#[derive(Clone, Copy)]
struct Connection {
    id: u64,
    peer: SocketAddr,
    before: u64,
}

async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    connection: Connection,
) -> Result<Response<ShapedBody>, Closed> {
    let Connection {
        id: conn_id,
        peer,
        before,
    } = connection;
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let body = read_body(body).await.ok_or(Closed)?;
    crate::report::run_due_jobs(&mut app.store());
    let reply = if path == "/_sim" || path.starts_with("/_sim/") {
        Ok(crate::sim_api::handle(&app, &parts.method, &path, &query, &body.bytes, conn_id).await)
    } else if path == "/internal" || path.starts_with("/internal/") {
        Ok(crate::internal_api::handle(
            &mut app.store(),
            &parts.method,
            &path,
            &query,
            &body.bytes,
        ))
    } else {
        let request = PublicRequest {
            method: &parts.method,
            path: &path,
            query: &query,
            headers: &parts.headers,
            body: &body,
            peer_ip: peer.ip().to_string(),
        };
        public_call(&app, &request, before).await
    };
    if app.debug {
        let status = reply
            .as_ref()
            .map_or_else(|_| "closed".to_owned(), |r| r.status.to_string());
        let separator = if query.is_empty() { "" } else { "?" };
        // A closed stderr must not take the request down with it: write errors are ignored.
        let _ = writeln!(
            std::io::stderr().lock(),
            "tollgate-sim: {} {path}{separator}{query} -> {status} ({} us)",
            parts.method,
            started.elapsed().as_micros()
        );
    }
    reply.map(Reply::into_response)
}

/// A public request with its counters, fault and log entry.
async fn public_call(
    app: &App,
    request: &PublicRequest<'_>,
    served_before: u64,
) -> Result<Reply, Closed> {
    let endpoint = classify(request.method, request.path);
    let parsed = request.params();
    let service_id = parsed.as_ref().ok().and_then(|p| p.str("service_id"));
    let fault = {
        let mut monitor = app.monitor();
        let fault = monitor.take_fault(endpoint);
        monitor.count(endpoint, service_id, fault.is_some());
        fault
    };
    let mut logged = LoggedRequest::new(
        request.method.as_str(),
        request.path,
        request.query,
        header_map(request.headers),
        &request.body.bytes,
    );
    let delay = fault
        .as_ref()
        .and_then(|f| f.latency_ms)
        .map(Duration::from_millis);
    let result = match fault {
        // A server closing a kept-alive connection as the next request arrives: never read, no work.
        Some(fault)
            if fault
                .close_kept_alive_after
                .is_some_and(|n| served_before >= n) =>
        {
            Err(Closed)
        }
        Some(fault) if fault.skips_work() => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if fault.close {
                Err(Closed)
            } else if let Some(status) = fault.status {
                Ok(status_fault(status, &fault))
            } else {
                Ok(Reply::new(200)
                    .header("content-type", "application/vnd.3scale-v2.0+xml")
                    .body(GARBAGE_BODY))
            }
        }
        _ => {
            // The work is done (and usage applied) before any delay, like a slow backend.
            let reply = respond(&mut app.store(), request, &parsed);
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let shape = fault.as_ref().map_or(Shape::Whole, Fault::shape);
            Ok(reply.shaped(shape))
        }
    };
    logged.status = result.as_ref().map_or(0, |r| r.status);
    app.monitor().log_request(logged);
    result
}

/// The answer of a `status` fault: apisonator's own 5xx body, or the fault's content type and body (a
/// proxy's bare page), else empty.
fn status_fault(status: u16, fault: &Fault) -> Reply {
    let mut reply = Reply::new(status);
    if let Some(content_type) = &fault.content_type {
        reply = reply.header("content-type", content_type.clone());
    }
    match &fault.body {
        Some(body) => reply.body(body.clone()),
        None if status >= 500 => reply.body("Internal Server Error\n"),
        None => reply,
    }
}

/// Request headers as the request log shows them: lower-case names, repeated ones joined.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|v| *v = format!("{v}, {value}"))
            .or_insert(value);
    }
    map
}

/// The admin portal's listener: its own accept loop over the same state.
async fn serve_portal(app: Arc<App>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let app = Arc::clone(&app);
                    let service = service_fn(move |request| portal_call(Arc::clone(&app), request));
                    tokio::spawn(
                        http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// One portal request with its counter, fault and log entry (the access token is not logged).
async fn portal_call(
    app: Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<ShapedBody>, Closed> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let body = read_body(body).await.ok_or(Closed)?;
    let fault = {
        let mut monitor = app.monitor();
        let fault = monitor.take_fault(Endpoint::Portal);
        monitor.count(Endpoint::Portal, None, fault.is_some());
        fault
    };
    let published = path.starts_with("/_sim/");
    let reply = match fault.filter(|_| !published) {
        Some(fault) => {
            if let Some(ms) = fault.latency_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if fault.close {
                return Err(Closed);
            } else if let Some(status) = fault.status {
                Reply::json(status, &serde_json::json!({"error": "injected fault"}))
            } else if fault.garbage {
                Reply::new(200)
                    .header("content-type", "application/json")
                    .body("this is not JSON: tollgate-sim garbage fault\n")
            } else {
                portal_reply(&app, &parts, &path, &query, &body.bytes)
            }
        }
        None => portal_reply(&app, &parts, &path, &query, &body.bytes),
    };
    let shown_query = crate::portal::without_token(&query);
    let mut logged = LoggedRequest::new(
        parts.method.as_str(),
        &path,
        &shown_query,
        BTreeMap::new(),
        &[],
    );
    logged.status = reply.status;
    app.monitor().log_request(logged);
    if app.debug {
        let _ = writeln!(
            std::io::stderr().lock(),
            "tollgate-sim: portal {} {path} -> {}",
            parts.method,
            reply.status
        );
    }
    Ok(reply.into_response())
}

fn portal_reply(
    app: &App,
    parts: &hyper::http::request::Parts,
    path: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    crate::portal::handle(
        &mut app.portal(),
        &parts.method,
        path,
        query,
        &parts.headers,
        body,
    )
}
