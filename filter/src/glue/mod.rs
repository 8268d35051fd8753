//! The proxy-wasm entry points: a root context per filter configuration, an HTTP context per request.
//! Thin by design: each callback hands over to [`crate::flow::Flow`] with [`host::ProxyHost`].

mod ffi;
mod host;
mod store;

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as ProxyAction, ContextType, LogLevel};

use crate::background::Background;
use crate::config::Config;
use crate::flow::Flow;
use crate::host::{Action, Host};
use crate::portal;
use crate::portal::fetch::Fetcher;
use host::ProxyHost;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, config: None, background: None, portal: None })
    });
}}

struct Root {
    id: u32,
    config: Option<Rc<Config>>,
    background: Option<Background>,
    /// Set when the configuration follows the admin portal.
    portal: Option<Fetcher>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(fetcher) = &mut self.portal
            && fetcher.on_response(&ProxyHost, token, body_size)
        {
            // Published now: the gauges say so before any VM switches.
            for (id, version) in std::mem::take(&mut fetcher.changed) {
                host::set_gauge(&format!("tollgate.portal.service.{id}.version"), version);
            }
            return;
        }
        if let Some(background) = &mut self.background {
            background.on_response(&ProxyHost, token, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        follow_envoy_log_level();
        let json = self.get_plugin_configuration().unwrap_or_default();
        match portal::load(&json, &env) {
            Ok(portal::Loaded {
                config,
                warnings,
                portal,
            }) => {
                host::define_metrics();
                self.portal = None;
                self.background = None;
                self.config = None;
                if let Some(config) = config {
                    host::report_unsupported(&warnings, &config.cache.key_prefix);
                    self.install(config);
                }
                if let Some((settings, base)) = portal {
                    let prefix = key_prefix(self.config.as_deref(), &base);
                    let nonce = vm_nonce(self.id);
                    self.portal = Some(Fetcher::new(
                        settings, base, &prefix, nonce, env, &ProxyHost,
                    ));
                    self.adopt_published();
                }
                let period = Duration::from_millis(
                    self.background
                        .as_ref()
                        .map_or(200, Background::tick_period_ms),
                );
                if let Err(status) = proxy_wasm::hostcalls::set_tick_period(period) {
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
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn on_tick(&mut self) {
        if let Some(fetcher) = &mut self.portal {
            fetcher.tick(&ProxyHost);
            self.adopt_published();
        }
        if let Some(background) = &mut self.background {
            background.tick(&ProxyHost);
        }
    }
}

impl Root {
    /// Serves `config` from now on; requests in flight keep the one they started with.
    fn install(&mut self, config: Config) {
        let config = Rc::new(config);
        match &mut self.background {
            Some(background) => background.set_config(Rc::clone(&config)),
            None => {
                store::register_queue(&format!("{}.dirty", config.cache.key_prefix));
                self.background = Some(Background::new(Rc::clone(&config), vm_nonce(self.id)));
            }
        }
        self.config = Some(config);
    }

    /// Switches to the configuration the portal's fetcher published, if there is a new one.
    fn adopt_published(&mut self) {
        let Some(fetcher) = &mut self.portal else {
            return;
        };
        let Some(document) = fetcher.published(&ProxyHost) else {
            return;
        };
        fetcher.adopt(&document);
        match portal::load(&document, &env) {
            Ok(portal::Loaded {
                config: Some(config),
                warnings,
                ..
            }) => {
                host::report_unsupported(&warnings, &config.cache.key_prefix);
                self.install(config);
            }
            Ok(_) => log::error!("tollgate: portal: the published configuration has no services"),
            Err(error) => log::error!("tollgate: portal: the published configuration: {error}"),
        }
    }
}

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
fn vm_nonce(root_id: u32) -> u32 {
    let nanos = ProxyHost
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ root_id.rotate_left(16)
}

/// Debug lines are not even formatted unless Envoy would print them.
fn follow_envoy_log_level() {
    let level = proxy_wasm::hostcalls::get_log_level().unwrap_or(LogLevel::Info);
    proxy_wasm::set_log_level(level);
}

struct Request {
    flow: Option<Flow>,
    /// No configuration yet because the admin portal has not answered: `config_unavailable`.
    waiting_for_portal: bool,
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
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(flow) = &mut self.flow {
            flow.on_callout_response(&ProxyHost, token, body_size);
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> ProxyAction {
        #[cfg(feature = "test-hooks")]
        if ProxyHost.request_header("x-tollgate-test-crash").is_some() {
            std::process::abort();
        }
        match &mut self.flow {
            Some(flow) => action(flow.on_request_headers(&ProxyHost, end_of_stream)),
            None if self.waiting_for_portal => {
                let body = br#"{"error":{"code":"config_unavailable","message":"the configuration has not arrived from the 3scale admin portal yet","status":503}}"#;
                ProxyHost.send_reply(503, &[("content-type", "application/json")], body);
                ProxyAction::Pause
            }
            None => {
                ProxyHost.send_reply(500, &[], b"tollgate is not configured\n");
                ProxyAction::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> ProxyAction {
        match &mut self.flow {
            Some(flow) => action(flow.on_request_body(&ProxyHost, body_size, end_of_stream)),
            None => ProxyAction::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> ProxyAction {
        match &mut self.flow {
            Some(flow) => action(flow.on_request_trailers(&ProxyHost)),
            None => ProxyAction::Continue,
        }
    }

    fn on_log(&mut self) {
        if let Some(flow) = &mut self.flow {
            flow.on_log(&ProxyHost);
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> ProxyAction {
        match &mut self.flow {
            Some(flow) => action(flow.on_response_headers(&ProxyHost)),
            None => ProxyAction::Continue,
        }
    }
}
