//! Running the end-to-end suite against another 3scale backend: a real apisonator (with its background worker),
//! or a simulator started by hand, named by `TOLLGATE_E2E_BACKEND=http://HOST:PORT`.
//!
//! The backend is seeded through its internal API (`tollgate-sim seed --into`, before each stack starts) and Envoy
//! talks to it instead of a simulator of the test's own. What only the simulator has (`/_sim/`: its counters, its
//! request log, faults, its clock, its worker) is not there: a check that needs it is skipped with a message naming
//! what it needed, inside a [`Cases`](crate::Cases) table, and a test that needs it throughout says so at its start
//! ([`skip_without_simulator`]). Every other check runs as usual.
//!
//! The backend keeps its counters between tests and runs: limits hold across them, so start from a fresh one (an
//! empty Redis) for a clean run.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;

/// The environment variable naming an external backend.
pub const BACKEND_VAR: &str = "TOLLGATE_E2E_BACKEND";

/// An external backend: its URL (as `seed --into` takes it) and where Envoy reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub url: String,
    pub address: SocketAddr,
}

/// The backend of `TOLLGATE_E2E_BACKEND`, if set (checked once; a bad value panics with the reason).
pub fn external_backend() -> Option<&'static External> {
    static BACKEND: OnceLock<Option<External>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let url = std::env::var(BACKEND_VAR).ok().filter(|v| !v.is_empty())?;
            Some(parse(&url).unwrap_or_else(|why| panic!("{BACKEND_VAR}={url}: {why}")))
        })
        .as_ref()
}

fn parse(url: &str) -> Result<External, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("an http://HOST:PORT URL is expected")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let address = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port:?}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{host_port:?} has no IPv4 address"))?;
    Ok(External {
        url: url.to_owned(),
        address,
    })
}

/// The payload of a check skipped because it needs the simulator.
#[derive(Debug)]
pub struct NeedsSimulator(pub String);

/// Ends the current check: it needs `what`, which only the simulator has.
pub(crate) fn needs_simulator(what: &str) -> ! {
    std::panic::panic_any(NeedsSimulator(format!(
        "needs the simulator's {what} ({BACKEND_VAR} names another backend)"
    )))
}

/// At the start of a test that needs the simulator throughout (its faults, worker or counters): `true`, after
/// saying so, when the suite runs against an external backend.
pub fn skip_without_simulator(what: &str) -> bool {
    let Some(backend) = external_backend() else {
        return false;
    };
    // The harness names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    say_skipped(&format!(
        "skipped {test}: needs the simulator's {what}; {BACKEND_VAR}={}",
        backend.url
    ));
    true
}

/// Writes a skip to the terminal even while the test harness captures the test's output (it captures
/// `print!`, not writes to the stderr handle), so a skipped check never passes silently.
pub(crate) fn say_skipped(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_host_and_port() {
        let backend = parse("http://127.0.0.1:3001").unwrap();
        assert_eq!(backend.address, "127.0.0.1:3001".parse().unwrap());
        let backend = parse("http://user:pw@localhost:3001/").unwrap();
        assert_eq!(backend.address.port(), 3001);
        assert!(parse("127.0.0.1:3001").is_err());
        assert!(parse("http://no-such-host.invalid:1").is_err());
    }
}
