//! Child processes of the tests (Envoy, the simulator): stopping them politely and waiting on conditions.

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Polls `probe` every `interval` until it returns `Some`, or `timeout` passes (then `None`).
pub fn wait_until<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// SIGTERM, then SIGKILL if the process is still there after `grace`. Reaps it either way.
pub fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // std only sends SIGKILL; `kill` from procps/util-linux sends SIGTERM without a libc dependency.
    let asked = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|status| status.success());
    let exited = asked
        && wait_until(grace, Duration::from_millis(20), || {
            child.try_wait().ok().flatten()
        })
        .is_some();
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A finished command as a check's result: `Err` with everything it printed when it failed.
pub fn succeeded(output: &Output) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_the_first_value_or_times_out() {
        let mut calls = 0;
        let found = wait_until(Duration::from_secs(1), Duration::from_millis(1), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
        let started = Instant::now();
        assert_eq!(
            wait_until(Duration::from_millis(50), Duration::from_millis(10), || {
                None::<()>
            }),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn terminate_stops_a_process_that_handles_sigterm_and_one_that_ignores_it() {
        let mut polite = Command::new("sleep").arg("30").spawn().unwrap();
        let started = Instant::now();
        terminate(&mut polite, Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(polite.try_wait().unwrap().is_some());

        let mut stubborn = Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        terminate(&mut stubborn, Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(stubborn.try_wait().unwrap().is_some());
        terminate(&mut stubborn, Duration::from_millis(200));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
