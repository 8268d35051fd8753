//! [`Host`](crate::host::Host) over Envoy's raw hostcalls, in plain Rust so that it is tested natively.
//!
//! The proxy-wasm SDK's hostcall wrappers `panic!` on any status they do not expect, and a panic kills
//! the VM (with it every request of its worker, until Envoy reloads it). Envoy does answer unexpected
//! statuses: after a callout fails once its headers arrived (an answer reset mid-body, a body still
//! trickling at the timeout), reading the callout's headers gets `BadArgument`. So every hostcall the
//! filter makes goes through [`Abi`], whose every method returns the host's status as a value, and
//! [`Adapter`] turns each failure into the filter's own fallback (no header, no answer, a logged
//! warning). The wasm implementation of [`Abi`] is the module's only `unsafe` code (`glue/ffi.rs`);
//! `tests.rs` drives the adapter through a host that fails each hostcall in turn.
//!
//! One call still goes through the SDK: dispatching a callout, because the SDK must record its token to
//! route the answer back to the context that asked. Its wrapper only panics on statuses Envoy never
//! returns from `dispatch_http_call` (it answers Ok, BadArgument or InternalFailure).

mod abi;
mod adapter;
#[cfg(test)]
mod tests;

pub use abi::Abi;
pub use adapter::{Adapter, MetricIds};
