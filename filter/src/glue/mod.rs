//! The proxy-wasm entry points: a root context per filter configuration, an HTTP context per request.
//! Thin by design: each callback hands over to [`crate::flow::Flow`] (or the admin portal's
//! [`Fetcher`]) with an [`Adapter`] over [`ffi::Wasm`], the hostcalls that never panic.

mod ffi;

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as ProxyAction, BufferType, ContextType, LogLevel};

use crate::background::Background;
use crate::cache::slots::Slots;
use crate::config::Config;
use crate::flow::Flow;
use crate::host::{Action, Host};
use crate::hostcalls::{Abi, Adapter, MetricIds};
use crate::portal;
use crate::portal::adoption::Adoption;
use crate::portal::fetch::Fetcher;
use ffi::Wasm;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root {
            id,
            config: None,
            background: None,
            portal: None,
            adoption: Adoption::default(),
            ids: Rc::default(),
        })
    });
}}

struct Root {
    id: u32,
    config: Option<Rc<Config>>,
    background: Option<Background>,
    /// Set when the configuration follows the admin portal.
    portal: Option<Fetcher>,
    /// The portal's services this VM serves, each with its version.
    adoption: Adoption,
    ids: Rc<MetricIds>,
}

impl Context for Root {
    /// The plugin is going away (an upgrade, its configuration removed): every lease goes back to
    /// the shared cache first, so what it admitted is reported by whoever stays.
    fn on_done(&mut self) -> bool {
        self.background_work(true);
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let host = Adapter::new(Wasm, &self.ids);
        if let Some(fetcher) = &mut self.portal
            && fetcher.on_response(&host, token, headers, body_size)
        {
            // Published now: the gauges say so before any VM switches.
            for (id, version) in std::mem::take(&mut fetcher.changed) {
                host.set_gauge(&format!("tollgate.portal.service.{id}.version"), version);
            }
            return;
        }
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
        match portal::load(&json, &env) {
            Ok(portal::Loaded {
                config,
                warnings,
                portal,
            }) => {
                self.ids = Rc::new(MetricIds::register(&Wasm));
                self.portal = None;
                self.adoption = Adoption::default();
                self.background = None;
                self.config = None;
                if let Some(config) = config {
                    self.install(config, &warnings);
                }
                if let Some((settings, base)) = portal {
                    let prefix = key_prefix(self.config.as_deref(), &base);
                    let host = Adapter::new(Wasm, &self.ids);
                    let nonce = vm_nonce(&host, self.id);
                    let reporter = portal::is_reporter(&base);
                    let fetcher = Fetcher::new(settings, base, &prefix, nonce, env, &host);
                    self.portal = Some(if reporter {
                        fetcher.preempting()
                    } else {
                        fetcher
                    });
                    self.adopt_published();
                }
                let period = Duration::from_millis(
                    self.background
                        .as_ref()
                        .map_or(crate::lease::LEASE_MS, Background::tick_period_ms),
                );
                if let Err(status) = Wasm.set_tick_period(period) {
                    log::error!("tollgate: no tick ({status:?}): reports and refreshes cannot run");
                }
                match &self.config {
                    Some(config) => log::info!(
                        "tollgate: configured {} service(s) ({:?})",
                        config.services.len(),
                        config.role
                    ),
                    None => log::info!("tollgate: configured; services come from the admin portal"),
                }
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
            waiting_for_portal: self.portal.is_some(),
            ids: Rc::clone(&self.ids),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn on_tick(&mut self) {
        if let Some(fetcher) = &mut self.portal {
            fetcher.tick(&Adapter::new(Wasm, &self.ids));
            self.adopt_published();
        }
        self.background_work(false);
    }
}

impl Root {
    /// A tick's work for the requests: leases returned (expired ones, or all of them when the plugin
    /// is going away), reports and refreshes sent, counters handed to Envoy.
    fn background_work(&mut self, last: bool) {
        let host = Adapter::new(Wasm, &self.ids);
        if let Some(config) = &self.config {
            let slots = Slots {
                store: &host,
                prefix: &config.cache.key_prefix,
                count: config.cache.slots,
            };
            if last {
                crate::lease::settle_all(&slots, config, host.now_ms());
            } else {
                crate::lease::settle_expired(&slots, config, host.now_ms());
            }
        }
        if let Some(background) = &mut self.background {
            background.tick(&host);
        }
        host.flush_counters();
    }

    /// Serves `config` from now on; requests in flight keep the one they started with.
    fn install(&mut self, config: Config, unsupported: &[String]) {
        let host = Adapter::new(Wasm, &self.ids);
        host.report_unsupported(unsupported, &config.cache.key_prefix);
        for warning in &config.warnings {
            log::warn!("tollgate: config warning at {warning}");
        }
        let config = Rc::new(config);
        match &mut self.background {
            Some(background) => background.set_config(Rc::clone(&config)),
            None => {
                let queue = format!("{}.dirty", config.cache.key_prefix);
                self.ids = Rc::new(self.ids.with_queue(&Wasm, &queue));
                let nonce = vm_nonce(&Adapter::new(Wasm, &self.ids), self.id);
                self.background = Some(Background::new(Rc::clone(&config), nonce));
            }
        }
        self.config = Some(config);
    }

    /// Switches to the configuration the portal's fetcher published, if there is a new one.
    fn adopt_published(&mut self) {
        let host = Adapter::new(Wasm, &self.ids);
        let Some(fetcher) = &self.portal else {
            return;
        };
        match self.adoption.next(&host, fetcher) {
            None => {}
            Some(Ok((config, warnings))) => {
                host.set_gauge(GENERATION_GAUGE, self.adoption.generation());
                self.install(config, &warnings);
            }
            Some(Err(error)) => {
                log::error!("tollgate: portal: the published configuration: {error}")
            }
        }
    }
}

/// Envoy gauge: the admin portal's publication this Envoy serves.
const GENERATION_GAUGE: &str = "tollgate.config.generation";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The shared-data prefix: the loaded configuration's, or the default one of the document.
fn key_prefix(config: Option<&Config>, base: &crate::config::json::Json) -> String {
    match config {
        Some(config) => config.cache.key_prefix.clone(),
        None => portal::key_prefix(base),
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
    /// No configuration yet because the admin portal has not answered: `config_unavailable`.
    waiting_for_portal: bool,
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
            None if self.waiting_for_portal => {
                let body = br#"{"error":{"code":"config_unavailable","message":"the configuration has not arrived from the 3scale admin portal yet","status":503}}"#;
                host.send_reply(503, &[("content-type", "application/json")], body);
                ProxyAction::Pause
            }
            None => {
                host.send_reply(500, &[], b"tollgate is not configured\n");
                ProxyAction::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> ProxyAction {
        let host = Adapter::new(Wasm, &self.ids);
        match &mut self.flow {
            Some(flow) => action(flow.on_request_body(&host, body_size, end_of_stream)),
            None => ProxyAction::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> ProxyAction {
        let host = Adapter::new(Wasm, &self.ids);
        match &mut self.flow {
            Some(flow) => action(flow.on_request_trailers(&host)),
            None => ProxyAction::Continue,
        }
    }

    fn on_log(&mut self) {
        let host = Adapter::new(Wasm, &self.ids);
        if let Some(flow) = &mut self.flow {
            flow.on_log(&host);
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> ProxyAction {
        let host = Adapter::new(Wasm, &self.ids);
        match &mut self.flow {
            Some(flow) => action(flow.on_response_headers(&host)),
            None => ProxyAction::Continue,
        }
    }
}
