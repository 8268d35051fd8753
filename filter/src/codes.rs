//! Ended requests' usage with the response code its client got, on its way into the cache entries.
//!
//! Writing the code into the entry at the end of every request would cost a second read-modify-
//! write of the whole entry; instead the request appends a small record to a shared queue (one
//! cheap hostcall) and the next tick of any VM folds the records into their entries, one write per
//! entry. Until then the usage is "awaiting" in the entry: counted on the limits, not reportable,
//! so no flush can report it without its code. The queue lives in the host, so a VM that dies
//! loses no record.

use std::rc::Rc;

use crate::background::send_report;
use crate::cache::slots::{Found, Slots};
use crate::cache::{Entry, parse_key};
use crate::config::Config;
use crate::report::mark_dirty;
use crate::store::{Queue, SharedStore};
use crate::usage::Usage;

/// One ended request: where its entry is, its usage, the code its client got (0: no response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub slot: u32,
    pub key: String,
    pub usage: Vec<(String, u64)>,
    pub code: u16,
}

impl CodeRecord {
    pub fn new(slot: u32, key: &str, usage: &Usage, code: u16) -> CodeRecord {
        let usage = usage
            .iter()
            .map(|(metric, delta)| (metric.to_string(), delta))
            .collect();
        CodeRecord {
            slot,
            key: key.to_string(),
            usage,
            code,
        }
    }

    /// `slot u32 · code u16 · key (u16 length) · count u8 · [metric (u8 length) · delta u64]`,
    /// little-endian. Names longer than a length field can hold are never valid metrics or keys.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.key.len() + self.usage.len() * 24);
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&self.code.to_le_bytes());
        let key_len = u16::try_from(self.key.len()).unwrap_or(0);
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(
            self.key
                .as_bytes()
                .get(..usize::from(key_len))
                .unwrap_or_default(),
        );
        let usage: Vec<&(String, u64)> = self
            .usage
            .iter()
            .filter(|(m, _)| m.len() <= 255)
            .take(255)
            .collect();
        out.push(u8::try_from(usage.len()).unwrap_or(0));
        for (metric, delta) in usage {
            out.push(u8::try_from(metric.len()).unwrap_or(0));
            out.extend_from_slice(metric.as_bytes());
            out.extend_from_slice(&delta.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<CodeRecord> {
        let mut input = bytes;
        let slot = u32::from_le_bytes(take(&mut input, 4)?.try_into().ok()?);
        let code = u16::from_le_bytes(take(&mut input, 2)?.try_into().ok()?);
        let key_len = u16::from_le_bytes(take(&mut input, 2)?.try_into().ok()?);
        let key = std::str::from_utf8(take(&mut input, usize::from(key_len))?)
            .ok()?
            .to_string();
        let count = *take(&mut input, 1)?.first()?;
        let mut usage = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let len = *take(&mut input, 1)?.first()?;
            let metric = std::str::from_utf8(take(&mut input, usize::from(len))?)
                .ok()?
                .to_string();
            let delta = u64::from_le_bytes(take(&mut input, 8)?.try_into().ok()?);
            usage.push((metric, delta));
        }
        input.is_empty().then_some(CodeRecord {
            slot,
            key,
            usage,
            code,
        })
    }

    /// The usage as the cache entry takes it.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::new();
        for (metric, delta) in &self.usage {
            usage.add(&Rc::from(metric.as_str()), *delta);
        }
        usage
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = input.split_at_checked(n)?;
    *input = rest;
    Some(head)
}

/// Queues an ended request's record; false when the queue refused it (the caller folds it now).
pub fn queue(store: &impl SharedStore, record: &CodeRecord) -> bool {
    store.enqueue(Queue::Codes, &record.encode()).is_ok()
}

/// Folds every queued record into its entry (what a tick does before flushing).
pub fn drain(store: &impl SharedStore, config: &Config) {
    let mut records = Vec::new();
    while let Some(bytes) = store.dequeue(Queue::Codes) {
        match CodeRecord::decode(&bytes) {
            Some(record) => records.push(record),
            None => log::warn!("tollgate: an unreadable response-code record was skipped"),
        }
    }
    fold(store, config, records);
}

/// Writes records into their entries, one write per entry: each request's usage becomes pending
/// under its code. A record whose entry is gone (its slot was reused) becomes a report of its own.
pub fn fold(store: &impl SharedStore, config: &Config, mut records: Vec<CodeRecord>) {
    records.sort_by(|a, b| (a.slot, &a.key).cmp(&(b.slot, &b.key)));
    let slots = Slots {
        store,
        prefix: &config.cache.key_prefix,
        count: config.cache.slots,
    };
    for group in records.chunk_by(|a, b| a.slot == b.slot && a.key == b.key) {
        let Some(first) = group.first() else { continue };
        let mut change = |entry: &mut Entry| {
            for record in group {
                entry.record(&record.usage(), record.code);
            }
            let newly_dirty = !entry.dirty && entry.has_pending();
            entry.dirty |= newly_dirty;
            (newly_dirty, true)
        };
        let found = match slots.update_slot(first.slot, &first.key, &mut change) {
            Found::Missing => slots.update(&first.key, &mut change),
            found => found,
        };
        match found {
            Found::Entry {
                slot,
                result: newly_dirty,
            } => {
                if newly_dirty {
                    mark_dirty(store, &config.cache.key_prefix, slot);
                }
            }
            Found::Missing | Found::Busy => report_alone(config, group),
        }
    }
}

fn report_alone(config: &Config, records: &[CodeRecord]) {
    for record in records {
        let Some((service_id, application)) = parse_key(&record.key) else {
            continue;
        };
        let Some(service) = config.services.iter().find(|s| s.id == service_id) else {
            continue;
        };
        let code = (record.code != 0).then_some(record.code);
        send_report(Rc::clone(service), application, &record.usage(), code);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let record = CodeRecord {
            slot: 77,
            key: "s3:svca5:app-1".into(),
            usage: vec![("hits".into(), 1), ("get_items".into(), 3)],
            code: 404,
        };
        let bytes = record.encode();
        assert_eq!(CodeRecord::decode(&bytes), Some(record));
        for cut in 0..bytes.len() {
            assert_eq!(CodeRecord::decode(bytes.get(..cut).unwrap()), None, "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(CodeRecord::decode(&longer), None);
    }
}
