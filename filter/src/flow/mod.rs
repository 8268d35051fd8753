//! One request's way through the filter: a small state machine driven by Envoy's callbacks.
//!
//! headers → (body, when credentials or rule conditions may be in a form) → decision → either a
//! local reply, or the upstream (with routing headers set) → response headers (debug and RateLimit
//! headers). The decision core does not care where an authorization comes from: today a callout,
//! tomorrow the cache.

mod cached;
mod debug;
mod decide;
mod forward;
mod headers;
mod refuse;
mod source;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::{Config, Service};
use crate::credentials::{Credentials, Location};
use crate::held::Hold;
use crate::host::{Action, Host};
use crate::ratelimit::RateLimit;
use crate::stats::{BackendEndpoint, Histogram, Stat, StatusClass};
use crate::usage::Usage;
use headers::{HeaderSnapshot, HeaderView};

pub use debug::DebugInfo;

/// Per-request state.
pub struct Flow {
    config: Rc<Config>,
    stage: Stage,
    /// The request body Envoy buffered for this filter so far.
    body_size: usize,
    /// The service of the request, once found: its stats are counted for it too.
    service_label: Option<Rc<str>>,
}

enum Stage {
    Start,
    WaitingForBody(Box<RequestInfo>),
    WaitingForBackend(Box<Decided>),
    Forwarded(Box<Forwarded>),
    Done,
}

/// What the request headers told us.
struct RequestInfo {
    service: Rc<Service>,
    method: Vec<u8>,
    target: Vec<u8>,
    grpc: bool,
    debug: bool,
    content_type: Option<Vec<u8>>,
    /// Set once the headers were released to read a form body (see `released`).
    snapshot: Option<HeaderSnapshot>,
    /// The headers were released: routing goes through filter state.
    released: bool,
    /// `per_request` mode with response codes: the usage this request holds ([`crate::held`]),
    /// given back when it is refused, or handed to its report.
    hold: RefCell<Option<Hold>>,
}

/// A request whose credentials and usage are known, waiting for its authorization.
struct Decided {
    info: RequestInfo,
    credentials: Credentials,
    /// Where the credentials were found (None for default credentials): what to strip upstream.
    location: Option<Location>,
    usage: Usage,
    matched_rules: Vec<usize>,
    /// The buffered form body, kept to strip credentials from it.
    form_body: Option<Vec<u8>>,
    referrer: Option<String>,
    purpose: Purpose,
    /// When 3scale was asked (ms), for `tollgate.backend.latency_ms`.
    asked_at_ms: u64,
    /// What 3scale is asked to authorize when it is not `usage`: the application's held usage.
    asked_usage: Option<Usage>,
    /// Asked a second time: the first call never reached 3scale (a kept-alive connection closed).
    asked_again: bool,
}

/// What the response phase still needs to know about an allowed request.
struct Forwarded {
    rate_limit: Option<RateLimit>,
    debug: Option<DebugInfo>,
    report: Option<Report>,
}

/// How an allowed request's usage (and the upstream's response code) reaches 3scale after the
/// response.
enum Report {
    /// Its usage awaits the response code in a cache entry.
    Cached { admitted: Admitted, usage: Usage },
    /// Its usage awaits the response code in the worker's lease on the cache entry of `key`.
    Leased { key: String, usage: Usage },
    /// `per_request` mode with response codes: one report of its own.
    Single {
        service: Rc<Service>,
        application: Credentials,
        usage: Usage,
        hold: Option<Hold>,
    },
}

impl Report {
    /// A report of its own for this request's usage.
    fn single(decided: &Decided) -> Report {
        Report::Single {
            service: Rc::clone(&decided.info.service),
            application: decided.credentials.clone(),
            usage: decided.usage.clone(),
            hold: decided.info.hold.borrow_mut().take(),
        }
    }
}

/// Where an admitted request's usage waits for its response code.
enum Held {
    Entry(Admitted),
    Lease(String),
}

/// The cache entry a request was admitted in, and when.
struct Admitted {
    slot: u32,
    key: String,
    at_s: u64,
}

/// Why a request waits for 3scale.
enum Purpose {
    /// `per_request` mode: authrep (usage reported by the call itself).
    Authrep,
    /// `per_request` mode with response codes: authorize now, report after the response.
    Authorize,
    /// `cache` mode: authorize to fill (or refresh) the entry of this key.
    Fill { key: String },
}

impl Flow {
    pub fn new(config: Rc<Config>) -> Flow {
        Flow {
            config,
            stage: Stage::Start,
            body_size: 0,
            service_label: None,
        }
    }

    /// Has the callback's host count this request's stats for its service too.
    fn for_service(&self, host: &impl Host) {
        if let Some(label) = &self.service_label {
            host.set_service(label);
        }
    }

    pub fn on_request_headers(&mut self, host: &impl Host, end_of_stream: bool) -> Action {
        let snapshot = HeaderSnapshot::take(host);
        let view = HeaderView {
            host,
            snapshot: &snapshot,
            released: false,
        };
        let Some(mut info) = self.read_request(&view) else {
            return self.unmatched(&view);
        };
        self.service_label = Some(Rc::clone(&info.service.stats_label));
        self.for_service(host);
        let wait = (!end_of_stream)
            .then(|| decide::form_wait(&view, &info))
            .flatten();
        if let Some(wait) = wait {
            decide::release_headers(host, &info, &wait);
            info.snapshot = Some(snapshot);
            info.released = true;
            self.stage = Stage::WaitingForBody(Box::new(info));
            return Action::Continue;
        }
        self.decide(&view, info, None)
    }

    pub fn on_request_body(
        &mut self,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        self.for_service(host);
        let Stage::WaitingForBody(_) = &self.stage else {
            return self.hold_while_deciding();
        };
        self.body_size = body_size;
        let too_big = body_size > self.config.form_body_limit;
        if !end_of_stream && !too_big {
            return Action::Pause;
        }
        let Stage::WaitingForBody(mut info) = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return Action::Continue;
        };
        let body = if too_big {
            None
        } else {
            host.request_body(body_size)
        };
        let snapshot = info.snapshot.take().unwrap_or_default();
        let released = HeaderView {
            host,
            snapshot: &snapshot,
            released: true,
        };
        let action = self.decide(&released, *info, body);
        self.keep_snapshot(snapshot);
        action
    }

    /// Trailers end the body (HTTP/2, or HTTP/1.1 with Envoy's `enable_trailers`): a request
    /// waiting for its form body is decided now, one waiting for 3scale keeps waiting. Letting
    /// trailers continue would send the held request upstream undecided.
    pub fn on_request_trailers(&mut self, host: &impl Host) -> Action {
        self.for_service(host);
        match self.stage {
            Stage::WaitingForBody(_) => self.on_request_body(host, self.body_size, true),
            _ => self.hold_while_deciding(),
        }
    }

    pub fn on_callout_response(
        &mut self,
        host: &impl Host,
        token: u32,
        headers: usize,
        body_size: usize,
    ) {
        self.for_service(host);
        let Stage::WaitingForBackend(mut decided) = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            log::warn!("tollgate: unexpected callout answer (token {token})");
            return;
        };
        let response = host.callout_response(headers, body_size);
        let endpoint = match decided.purpose {
            Purpose::Authrep => BackendEndpoint::Authrep,
            Purpose::Authorize | Purpose::Fill { .. } => BackendEndpoint::Authorize,
        };
        host.count(Stat::Answered(endpoint, StatusClass::of(response.status)));
        let latency = host.now_ms().saturating_sub(decided.asked_at_ms);
        host.observe(Histogram::BackendLatencyMs, latency);
        let action = match decided.info.snapshot.take() {
            Some(snapshot) => {
                let released = HeaderView {
                    host,
                    snapshot: &snapshot,
                    released: true,
                };
                self.conclude(&released, *decided, &response)
            }
            None => self.conclude(host, *decided, &response),
        };
        if action == Action::Continue {
            host.resume_request();
        }
    }

    /// The stream ended: the usage joins the report with the response code (if a response came).
    pub fn on_log(&mut self, host: &impl Host) {
        self.for_service(host);
        let Stage::Forwarded(forwarded) = &mut self.stage else {
            return;
        };
        let Some(report) = forwarded.report.take() else {
            return;
        };
        let code = host
            .response_header(":status")
            .and_then(|status| std::str::from_utf8(&status).ok()?.parse::<u16>().ok());
        match report {
            Report::Cached { admitted, usage } => {
                cached::record(host, &self.config, &admitted, &usage, code.unwrap_or(0));
            }
            Report::Leased { key, usage } => {
                let code = code.unwrap_or(0);
                if !crate::lease::finish(&key, &usage, code) {
                    crate::lease::report_alone(&self.config, &key, &usage, code);
                }
            }
            Report::Single {
                service,
                application,
                usage,
                hold,
            } => {
                let code = code.filter(|_| service.report_response_codes);
                host.add(Stat::QueuedUnits, usage.units());
                crate::background::send_report(service, application, &usage, code, hold);
            }
        }
    }

    pub fn on_response_headers(&mut self, host: &impl Host) -> Action {
        self.for_service(host);
        if let Stage::Forwarded(forwarded) = &self.stage {
            forward::response_headers(host, forwarded);
        }
        Action::Continue
    }

    /// A form request waiting for 3scale still answers from its snapshot when the answer comes.
    fn keep_snapshot(&mut self, snapshot: HeaderSnapshot) {
        if let Stage::WaitingForBackend(decided) = &mut self.stage {
            decided.info.snapshot = Some(snapshot);
        }
    }

    /// Body chunks that arrive while 3scale is being asked must wait too.
    fn hold_while_deciding(&self) -> Action {
        match self.stage {
            Stage::WaitingForBackend(_) => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn unmatched(&mut self, host: &impl Host) -> Action {
        self.stage = Stage::Done;
        if self.config.pass_unknown {
            host.count(Stat::Unmatched);
            return Action::Continue;
        }
        let grpc = refuse::is_grpc(host);
        refuse::without_service(host, &self.config, grpc)
    }
}
