//! A table of named checks that all run even when some fail, so one Envoy start reports every broken case.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::backend::NeedsSimulator;
use std::time::Instant;

/// Runs each case as it is added, catching its panic, and prints `ok   <name>` or `FAIL <name>: <message>`.
/// [`Cases::finish`] (or dropping the table) panics with the list of failures. A case that needs the simulator's
/// own API while the suite runs against another backend prints `skip <name>: <why>` instead, and does not fail.
pub struct Cases {
    title: String,
    passed: usize,
    skipped: usize,
    failures: Vec<(String, String)>,
    finished: bool,
}

impl Cases {
    pub fn new(title: &str) -> Cases {
        println!("== {title}");
        Cases {
            title: title.to_owned(),
            passed: 0,
            skipped: 0,
            failures: Vec::new(),
            finished: false,
        }
    }

    /// Runs one case now.
    pub fn case(&mut self, name: &str, check: impl FnOnce()) -> &mut Cases {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(check));
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("ok   {name} ({ms} ms)");
            }
            Err(payload) if payload.is::<NeedsSimulator>() => {
                self.skipped += 1;
                // The case stopped at its first read of the simulator's own API: what it checked
                // before passed, the rest did not run.
                crate::backend::say_skipped(&format!(
                    "skip {}: {name}: the rest {}",
                    self.title,
                    panic_message(payload.as_ref())
                ));
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                println!("FAIL {name}: {message} ({ms} ms)");
                self.failures.push((name.to_owned(), message));
            }
        }
        self
    }

    /// Names of the cases that failed so far.
    pub fn failed(&self) -> Vec<&str> {
        self.failures
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Panics listing every failed case, if any.
    pub fn finish(mut self) {
        self.finished = true;
        self.report();
    }

    fn report(&self) {
        let total = self.passed + self.failures.len();
        let skipped = match self.skipped {
            0 => String::new(),
            n => format!(" ({n} more skipped: they need the simulator)"),
        };
        println!(
            "== {}: {} of {total} cases passed{skipped}",
            self.title, self.passed
        );
        if !self.failures.is_empty() {
            let list: Vec<String> = self
                .failures
                .iter()
                .map(|(name, message)| format!("  {name}: {message}"))
                .collect();
            panic!(
                "{}: {} of {total} cases failed\n{}",
                self.title,
                self.failures.len(),
                list.join("\n")
            );
        }
    }
}

impl Drop for Cases {
    /// A table nobody finished still fails the test, unless the test is already failing.
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            self.finished = true;
            self.report();
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(NeedsSimulator(text)) = payload.downcast_ref::<NeedsSimulator>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panicked with a non-text payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(result: std::thread::Result<()>) -> String {
        panic_message(result.unwrap_err().as_ref())
    }

    #[test]
    fn passing_cases_finish_quietly() {
        let mut cases = Cases::new("all good");
        let mut ran = 0;
        cases.case("one", || ran += 1).case("two", || ran += 1);
        assert!(cases.failed().is_empty());
        cases.finish();
        assert_eq!(ran, 2);
    }

    #[test]
    fn every_failure_is_reported_after_all_cases_ran() {
        let mut ran_last = false;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut cases = Cases::new("table");
            cases
                .case("first", || panic!("boom {}", 1))
                .case("second", || assert_eq!(1, 2, "numbers differ"))
                .case("fine", || {})
                .case("last", || ran_last = true);
            assert_eq!(cases.failed(), ["first", "second"]);
            cases.finish();
        }));
        assert!(ran_last);
        let message = message_of(result);
        assert!(message.contains("table: 2 of 4 cases failed"), "{message}");
        assert!(message.contains("first: boom 1"), "{message}");
        assert!(
            message.contains("second: assertion `left == right` failed: numbers differ"),
            "{message}"
        );
        assert!(!message.contains("fine"), "{message}");
    }

    #[test]
    fn an_unfinished_table_with_failures_still_fails() {
        let result = catch_unwind(|| {
            let mut cases = Cases::new("forgotten");
            cases.case("bad", || panic!("static text"));
        });
        assert!(message_of(result).contains("bad: static text"));
    }

    #[test]
    fn cases_needing_the_simulator_are_skipped_not_failed() {
        let mut cases = Cases::new("external");
        cases
            .case("own api", || {
                std::panic::panic_any(NeedsSimulator("needs the simulator's counters".into()))
            })
            .case("fine", || {});
        assert!(cases.failed().is_empty());
        assert_eq!((cases.passed, cases.skipped), (1, 1));
        cases.finish();
    }

    #[test]
    fn non_text_payloads_are_named() {
        let result = catch_unwind(|| std::panic::panic_any(42));
        assert_eq!(message_of(result), "panicked with a non-text payload");
    }
}
