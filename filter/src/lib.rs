//! Tollgate: 3scale API management inside Envoy, as one proxy-wasm module.
//!
//! Everything but `glue` is plain Rust with no hostcalls, so `cargo test` runs it natively. The glue
//! (compiled only for wasm) adapts proxy-wasm's contexts to the [`host::Host`] trait and drives
//! [`flow`].

pub mod args;
pub mod backend;
pub mod background;
pub mod cache;
pub mod callout;
pub mod category;
pub mod config;
pub mod credentials;
pub mod flow;
pub mod glob;
pub mod held;
pub mod host;
pub mod hostcalls;
pub mod lease;
pub mod mapping;
pub mod mask;
pub mod outage;
pub mod pairs;
pub mod portal;
pub mod ratelimit;
pub mod reply;
pub mod report;
pub mod service;
pub mod stats;
pub mod store;
pub mod throttle;
pub mod usage;
pub mod verdict;

#[cfg(target_arch = "wasm32")]
mod glue;
