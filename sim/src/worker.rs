//! apisonator's background worker, for the simulator's asynchronous mode.
//!
//! apisonator answers a batch report 202 at once and applies it later, in a job its worker runs. By
//! default the simulator runs that job before answering (tests read the counters right after a call).
//! `PUT /_sim/worker` makes it asynchronous: accepted reports wait `delay_ms` before they are applied,
//! or wait while the worker is `paused` and are applied when it resumes, as when apisonator's worker
//! lags or is stopped. Jobs run in order, whenever the simulator handles a request and they are due.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::clock;
use crate::params::Hash;

/// A batch report accepted and not yet applied.
#[derive(Debug)]
pub struct Job {
    pub service_id: String,
    pub batch: Vec<Hash>,
    pub flat_usage: bool,
    /// The simulated time the report was accepted at (transactions without a timestamp get it).
    pub accepted_at: clock::Instant,
    due: Instant,
}

#[derive(Debug, Default)]
pub struct Worker {
    pub delay: Duration,
    pub paused: bool,
    queue: VecDeque<Job>,
}

impl Worker {
    /// Whether accepted reports wait for the worker (else they are applied before the answer).
    pub fn is_async(&self) -> bool {
        self.paused || !self.delay.is_zero()
    }

    pub fn queue(
        &mut self,
        service_id: String,
        batch: Vec<Hash>,
        flat_usage: bool,
        at: clock::Instant,
    ) {
        let due = Instant::now() + self.delay;
        self.queue.push_back(Job {
            service_id,
            batch,
            flat_usage,
            accepted_at: at,
            due,
        });
    }

    /// The jobs due now, in order (none while paused).
    pub fn due(&mut self) -> Vec<Job> {
        if self.paused {
            return Vec::new();
        }
        let now = Instant::now();
        let ready = self.queue.iter().take_while(|job| job.due <= now).count();
        self.queue.drain(..ready).collect()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Back to synchronous: every waiting job is handed back to be applied.
    pub fn reset(&mut self) -> Vec<Job> {
        self.delay = Duration::ZERO;
        self.paused = false;
        self.queue.drain(..).collect()
    }
}
