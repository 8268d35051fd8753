//! tollgate-sim: a 3scale Service Management API (apisonator) simulator on loopback, for
//! Tollgate's end-to-end tests and demo. See `sim/README.md`.

mod clock;
mod errors;
mod extensions;
mod http;
mod internal_api;
mod monitor;
mod params;
mod portal;
mod public;
mod report;
mod ruby;
mod seed;
mod seed_into;
mod server;
mod shaped;
mod sim_api;
mod status;
mod store;
mod transactor;
mod usage;
mod worker;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::sync::watch;

const USAGE: &str = "usage: tollgate-sim --listen ADDR:PORT [--seed FILE] [--log-level error|warn|info|debug] [--threads N] [--portal-listen ADDR:PORT]
       tollgate-sim seed --into URL FILE";

/// Command-line options.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    listen: SocketAddr,
    /// Where the admin portal answers (its own listener), if anywhere.
    portal_listen: Option<SocketAddr>,
    seed: Option<String>,
    debug: bool,
    threads: usize,
}

fn parse_args(args: &[String], rust_log: Option<&str>) -> Result<Options, String> {
    let mut listen = None;
    let mut portal_listen = None;
    let mut seed = None;
    let mut level: Option<String> = None;
    let mut threads = 2;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        match name {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--portal-listen" => {
                portal_listen = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--portal-listen: {e}"))?,
                );
            }
            "--seed" => seed = Some(value()?),
            "--log-level" => level = Some(value()?),
            "--threads" => {
                threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?;
                if threads == 0 {
                    return Err("--threads must be at least 1".into());
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let level = level
        .or_else(|| rust_log.map(str::to_owned))
        .unwrap_or_else(|| "info".into())
        .to_ascii_lowercase();
    if !["error", "warn", "info", "debug", "trace"]
        .iter()
        .any(|l| level.contains(l))
    {
        return Err(format!("unknown log level {level:?}"));
    }
    Ok(Options {
        listen: listen.ok_or("--listen is required")?,
        portal_listen,
        seed,
        debug: level.contains("debug") || level.contains("trace"),
        threads,
    })
}

/// `tollgate-sim seed --into URL FILE`: the seed into another backend, through its internal API.
fn seed_command(args: &[String]) -> ExitCode {
    let [into, url, file] = args else {
        eprintln!("usage: tollgate-sim seed --into URL FILE");
        return ExitCode::from(2);
    };
    if into != "--into" {
        eprintln!("usage: tollgate-sim seed --into URL FILE");
        return ExitCode::from(2);
    }
    let loaded = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {file}: {e}"))
        .and_then(|t| seed::parse(&t))
        .and_then(|s| seed_into::seed_into(url, &s));
    match loaded {
        Ok(calls) => {
            println!("tollgate-sim: {file} loaded into {url} ({calls} internal API calls)");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("tollgate-sim: {message}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("seed") {
        return seed_command(args.get(1..).unwrap_or_default());
    }
    let options = match parse_args(&args, std::env::var("RUST_LOG").ok().as_deref()) {
        Ok(o) => o,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("tollgate-sim: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut store = store::Store::default();
    let mut portal = portal::Portal::default();
    if let Some(path) = &options.seed {
        let loaded = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {path}: {e}"))
            .and_then(|t| seed::parse(&t))
            .and_then(|s| {
                let seeded = s
                    .portal
                    .as_ref()
                    .map(portal::Portal::from_seed)
                    .transpose()?;
                Ok((s, seeded))
            });
        match loaded {
            Ok((s, seeded)) => {
                seed::load(&mut store, &s);
                portal = seeded.unwrap_or_default();
            }
            Err(message) => {
                eprintln!("tollgate-sim: {message}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(options, store, portal))
}

async fn run(options: Options, store: store::Store, portal: portal::Portal) -> ExitCode {
    // Handlers first: a signal sent as soon as the listening line appears must be caught.
    let signals = Signals::install();
    let listener = match server::bind(options.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tollgate-sim: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(options.listen);
    // Written, not println!-ed: a reader that already went away must not stop the simulator.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "tollgate-sim listening on {bound}");
    let _ = stdout.flush();
    drop(stdout);
    let (stop, stopped) = watch::channel(false);
    let portal_listener = match options.portal_listen.map(server::bind).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tollgate-sim: cannot listen for the portal: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(bound) = portal_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "tollgate-sim portal listening on {bound}");
        let _ = stdout.flush();
    }
    let listeners = server::Listeners {
        backend: listener,
        portal: portal_listener,
    };
    let server = tokio::spawn(server::serve(
        store,
        portal,
        listeners,
        options.debug,
        stopped,
    ));
    signals.wait().await;
    let _ = stop.send(true);
    let _ = server.await;
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn wait(self) {
        match (self.term, self.int) {
            (Some(mut term), Some(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_command_line() {
        let o = parse_args(&args("--listen 127.0.0.1:0 --seed a.json"), None).unwrap();
        assert_eq!(o.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(o.seed.as_deref(), Some("a.json"));
        assert!(!o.debug);
        assert!(
            parse_args(&args("--listen=127.0.0.1:1 --log-level debug"), None)
                .unwrap()
                .debug
        );
        assert!(
            parse_args(&args("--listen 127.0.0.1:1"), Some("debug"))
                .unwrap()
                .debug
        );
        assert!(
            !parse_args(
                &args("--listen 127.0.0.1:1 --log-level info"),
                Some("debug")
            )
            .unwrap()
            .debug
        );
        assert_eq!(
            parse_args(&args("--listen 127.0.0.1:1 --threads 4"), None)
                .unwrap()
                .threads,
            4
        );
    }

    #[test]
    fn rejects_bad_command_lines() {
        for bad in [
            "",
            "--seed x",
            "--listen nowhere",
            "--listen",
            "--listen 127.0.0.1:1 --bogus",
            "--listen 127.0.0.1:1 --threads 0",
            "--listen 127.0.0.1:1 --log-level loud",
        ] {
            assert!(parse_args(&args(bad), None).is_err(), "{bad}");
        }
        assert_eq!(parse_args(&args("--help"), None), Err(String::new()));
    }
}
