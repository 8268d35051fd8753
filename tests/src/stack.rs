//! The usual test setup in one call: simulator, two echo upstreams (`staging`, `production`) and Envoy running a
//! config rendered from a template.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::client::{Request, Response, send};
use crate::envoy::Envoy;
use crate::paths::{wasm_path, workspace_root};
use crate::process::{tail, wait_until};
use crate::scratch::Scratch;
use crate::sim::Sim;
use crate::template::{render, yaml_string};
use crate::upstream::Upstream;

/// What a [`Stack`] runs.
///
/// The template (a path, relative to the workspace root unless absolute) may use:
/// `{{ADMIN_PORT}}`, `{{LISTEN_PORT}}` (both rendered as `0`: Envoy picks free ports and the harness reads them
/// back), `{{SIM_ADDRESS}}` and `{{SIM_PORT}}` (the 3scale backend: the simulator, or `TOLLGATE_E2E_BACKEND`), `{{STAGING_PORT}}`, `{{PRODUCTION_PORT}}`, `{{WASM_PATH}}`, `{{FILTER_CONFIG}}` (the filter
/// config as a double-quoted YAML scalar: write `value: {{FILTER_CONFIG}}` without quotes), `{{ACCESS_LOG}}` (a file
/// path, read back with [`Stack::access_log`]) and every name in `extra_vars`.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub template: PathBuf,
    pub filter_config: Value,
    /// The simulator's seed file (relative to the workspace root unless absolute).
    pub seed: PathBuf,
    pub concurrency: u32,
    pub extra_vars: Vec<(String, String)>,
    /// The module for `{{WASM_PATH}}`; `None` for [`wasm_path`] (e.g. [`test_hooks_wasm_path`] for a test that
    /// crashes the VM on purpose).
    ///
    /// [`test_hooks_wasm_path`]: crate::test_hooks_wasm_path
    pub wasm: Option<PathBuf>,
}

impl StackOptions {
    /// One worker, no extra variables.
    pub fn new(
        template: impl Into<PathBuf>,
        filter_config: Value,
        seed: impl Into<PathBuf>,
    ) -> StackOptions {
        StackOptions {
            template: template.into(),
            filter_config,
            seed: seed.into(),
            concurrency: 1,
            extra_vars: Vec::new(),
            wasm: None,
        }
    }
}

/// Envoy in front of the echo upstreams, with the simulator as its 3scale backend. Envoy is stopped first on drop.
#[derive(Debug)]
pub struct Stack {
    pub envoy: Envoy,
    pub sim: Sim,
    pub staging: Upstream,
    pub production: Upstream,
    yaml: String,
    scratch: Scratch,
}

impl Stack {
    pub fn start(options: StackOptions) -> Stack {
        let template_path = in_workspace(&options.template);
        let template = std::fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("cannot read template {}: {e}", template_path.display()));
        let sim = Sim::start(&in_workspace(&options.seed));
        let staging = Upstream::start("staging");
        let production = Upstream::start("production");
        let scratch = Scratch::new("stack");
        let mut vars: Vec<(&str, String)> = vec![
            ("ADMIN_PORT", "0".to_owned()),
            ("LISTEN_PORT", "0".to_owned()),
            ("SIM_PORT", sim.port.to_string()),
            ("SIM_ADDRESS", sim.address().ip().to_string()),
            ("STAGING_PORT", staging.port.to_string()),
            ("PRODUCTION_PORT", production.port.to_string()),
            (
                "FILTER_CONFIG",
                yaml_string(&options.filter_config.to_string()),
            ),
            (
                "ACCESS_LOG",
                scratch.path().join("access.log").display().to_string(),
            ),
        ];
        // Only a template that loads the filter needs it built, so the harness can be tested without it.
        if template.contains("{{WASM_PATH}}") {
            let wasm = options.wasm.clone().unwrap_or_else(wasm_path);
            vars.push(("WASM_PATH", wasm.display().to_string()));
        }
        vars.extend(
            options
                .extra_vars
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone())),
        );
        let yaml = render(&template, &vars);
        let envoy = Envoy::start(&yaml, options.concurrency);
        Stack {
            envoy,
            sim,
            staging,
            production,
            yaml,
            scratch,
        }
    }

    /// Sends a request to Envoy's listener; panics (with the end of Envoy's log) when no response comes back.
    pub fn send(&self, request: &Request) -> Response {
        self.try_send(request).unwrap_or_else(|e| {
            panic!(
                "{} {} through Envoy: {e}\n{}",
                request.method,
                request.path,
                tail(&self.envoy.log(), 30)
            )
        })
    }

    /// Sends a request to Envoy's listener, returning I/O errors (e.g. for requests Envoy is expected to drop).
    pub fn try_send(&self, request: &Request) -> io::Result<Response> {
        send(self.envoy.listen_port, request)
    }

    /// The access log so far (empty when the template has no `{{ACCESS_LOG}}` or nothing was logged yet).
    pub fn access_log(&self) -> String {
        self.scratch.read("access.log")
    }

    /// Waits up to 5 s for the access log to satisfy `done` (Envoy writes an entry after the response and flushes
    /// the file within 50 ms); panics with the log as it is when it never does.
    pub fn wait_access_log(&self, done: impl Fn(&str) -> bool) -> String {
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let log = self.access_log();
            done(&log).then_some(log)
        })
        .unwrap_or_else(|| {
            panic!(
                "access log never got the expected entries:\n{}",
                self.access_log()
            )
        })
    }

    /// The Envoy config as rendered.
    pub fn yaml(&self) -> &str {
        &self.yaml
    }
}

fn in_workspace(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        workspace_root().join(path)
    }
}
