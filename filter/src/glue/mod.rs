//! The proxy-wasm entry points: a root context per filter configuration, an HTTP context per request.
//! Thin by design: each callback hands over to [`crate::flow::Flow`] with an [`Adapter`] over
//! [`ffi::Wasm`], the hostcalls that never panic.

mod ffi;

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as ProxyAction, BufferType, ContextType, LogLevel};

use crate::background::Background;
use crate::config::Config;
use crate::flow::Flow;
use crate::host::{Action, Host};
use crate::hostcalls::{Abi, Adapter, MetricIds};
use ffi::Wasm;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, config: None, background: None, ids: Rc::default() })
    });
}}

struct Root {
    id: u32,
    config: Option<Rc<Config>>,
    background: Option<Background>,
    ids: Rc<MetricIds>,
}

impl Root {
    fn host(&self) -> Adapter<'_, Wasm> {
        Adapter::new(Wasm, &self.ids)
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let host = Adapter::new(Wasm, &self.ids);
        if let Some(background) = &mut self.background {
            background.on_response(&host, token, headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        follow_envoy_log_level();
        let json = Wasm
            .buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::load(&json, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                for warning in &config.warnings {
                    log::warn!("tollgate: config warning at {warning}");
                }
                let queue = format!("{}.dirty", config.cache.key_prefix);
                self.ids = Rc::new(MetricIds::register(&Wasm, &queue));
                let config = Rc::new(config);
                let nonce = vm_nonce(&self.host(), self.id);
                let background = Background::new(Rc::clone(&config), nonce);
                let period = Duration::from_millis(background.tick_period_ms());
                if let Err(status) = Wasm.set_tick_period(period) {
                    log::error!("tollgate: no tick ({status:?}): reports and refreshes cannot run");
                }
                log::info!(
                    "tollgate: configured {} service(s) ({:?})",
                    config.services.len(),
                    config.role
                );
                self.background = Some(background);
                self.config = Some(config);
                true
            }
            Err(error) => {
                log::error!("tollgate: {error}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            flow: self.config.as_ref().map(|c| Flow::new(Rc::clone(c))),
            ids: Rc::clone(&self.ids),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn on_tick(&mut self) {
        let host = Adapter::new(Wasm, &self.ids);
        if let Some(background) = &mut self.background {
            background.tick(&host);
        }
    }
}

/// Distinguishes this VM's report batches from other VMs' (workers, reloads).
fn vm_nonce(host: &impl Host, root_id: u32) -> u32 {
    let nanos = host
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ root_id.rotate_left(16)
}

/// Debug lines are not even formatted unless Envoy would print them.
fn follow_envoy_log_level() {
    let level = Wasm.log_level().unwrap_or(LogLevel::Info);
    proxy_wasm::set_log_level(level);
}

struct Request {
    flow: Option<Flow>,
    ids: Rc<MetricIds>,
}

fn action(action: Action) -> ProxyAction {
    match action {
        Action::Continue => ProxyAction::Continue,
        Action::Pause => ProxyAction::Pause,
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let host = Adapter::new(Wasm, &self.ids);
        if let Some(flow) = &mut self.flow {
            flow.on_callout_response(&host, token, headers, body_size);
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> ProxyAction {
        let host = Adapter::new(Wasm, &self.ids);
        #[cfg(feature = "test-hooks")]
        if host.request_header("x-tollgate-test-crash").is_some() {
            std::process::abort();
        }
        match &mut self.flow {
            Some(flow) => action(flow.on_request_headers(&host, end_of_stream)),
            None => {
                host.send_reply(500, &[], b"tollgate is not configured\n");
                ProxyAction::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> ProxyAction {
        match &mut self.flow {
            Some(flow) => action(flow.on_request_body(
                &Adapter::new(Wasm, &self.ids),
                body_size,
                end_of_stream,
            )),
            None => ProxyAction::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> ProxyAction {
        match &mut self.flow {
            Some(flow) => action(flow.on_request_trailers(&Adapter::new(Wasm, &self.ids))),
            None => ProxyAction::Continue,
        }
    }

    fn on_log(&mut self) {
        if let Some(flow) = &mut self.flow {
            flow.on_log(&Adapter::new(Wasm, &self.ids));
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> ProxyAction {
        match &mut self.flow {
            Some(flow) => action(flow.on_response_headers(&Adapter::new(Wasm, &self.ids))),
            None => ProxyAction::Continue,
        }
    }
}
