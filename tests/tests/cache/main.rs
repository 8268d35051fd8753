//! Issue 4 end to end: the authorization cache, batched reports with response codes and the failure policies,
//! with the built module in the real Envoy and `tollgate-sim` as 3scale. Every scenario is asserted from the
//! simulator's counters (usage per application and metric, response codes, calls) against what the clients
//! received, and from Envoy's stats.
//!
//! One test binary, so the scenarios (each on its own stack: simulator, echo upstreams, Envoy) run in parallel;
//! the 30 s outage sets the pace.

mod accounting;
mod backend_restart;
mod faults;
mod leases;
mod limits;
mod misbehaving;
mod outage;
mod singleton;
mod soak;
mod support;
mod upgrade;
