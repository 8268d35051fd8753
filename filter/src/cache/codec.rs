//! The binary form of an entry in shared data: small, versioned, and safe to read from anywhere.
//!
//! Every request on a cache hit decodes and re-encodes its entry, and every Envoy worker (and
//! every other build of the module running in the same Envoy, during an upgrade) may have
//! written it, so decoding trusts nothing: any malformed, truncated or over-long input is `None`,
//! never a panic and never an allocation sized by the input.
//!
//! # Formats across upgrades
//!
//! An entry carries the usage admitted but not reported yet, so a new build must never drop an
//! older build's entries, and an older build (still serving connections while Envoy drains them,
//! or brought back by a rollback) must never drop a newer one's:
//!
//! - every format starts with `u8 version · key` (the envelope, never changed), so any build
//!   finds an entry's key ([`stored_key`]) and tells a format newer than its own ([`is_newer`]);
//! - a build decodes every format from [`OLDEST_READABLE`] to [`VERSION`] and writes [`VERSION`]:
//!   an older entry is carried over, pending usage and all, at its next write. A layout change
//!   bumps [`VERSION`] and keeps the reader of the previous layout;
//! - an entry of a newer format is left alone (`slots.rs`): its slot is never reused, requests of
//!   its application are decided by 3scale one by one, and its report stays queued for a build
//!   that reads it.
//!
//! Layout (version 2); integers are LEB128 varints unless marked `u8`, strings are a varint
//! length and UTF-8 bytes, lists a varint count and their items:
//!
//! ```text
//! header: u8 version = 2 · key · refreshed_at_ms · u8 flags (1 dirty, 2 refreshing)
//!         · refreshing_since_ms (only when flag 2)
//! names: [name]                                   every metric name, once
//! answer: u8 tag (0 authorized, 1 limits only, 2 denied, 3 unknown) · [u8 category · reason]
//! plan: varint 0 = none, else length + 1 · bytes
//! links: [child index · parent index]
//! reports: [metric index · u8 period (index, | 8 when an end follows) · end (only then)
//!           · max · current · used]
//! pending: [code · metric index · delta]
//! awaiting (after the batches): [code · metric index · delta], then awaiting_at_ms
//! accepted (only when there is some): [code · metric index · delta], then accepted_at_ms
//! batches: [id · sent_at_ms · [code · metric index · delta]]
//! ```

use crate::backend::{Hierarchy, Period, UsageReport};
use crate::category::Category;

use super::entry::{Answer, Entry, MAX_LINKS, MAX_REPORTS};
use super::unreported::{Batch, MAX_BATCHES, Tally, Unreported, is_reportable_code};

/// The format this build writes; bumped on any layout change.
#[cfg(not(feature = "test-next-cache-format"))]
pub const VERSION: u8 = 2;
/// The module built for the end-to-end upgrade test writes format 3: format 2 plus one trailing
/// byte, [`NEXT_FORMAT_TAIL`], so a format-2 build cannot read its entries and it must read both.
#[cfg(feature = "test-next-cache-format")]
pub const VERSION: u8 = 3;
#[cfg(feature = "test-next-cache-format")]
const NEXT_FORMAT_TAIL: u8 = 0x5a;
/// The oldest format this build still decodes.
pub const OLDEST_READABLE: u8 = 2;

const FLAG_DIRTY: u8 = 1;
const FLAG_REFRESHING: u8 = 2;
const PERIOD_HAS_END: u8 = 8;
/// The widest varint: what `current` and `used` may grow to after the answer was cached.
const MAX_VARINT_BYTES: usize = 10;

pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut names = Names::default();
    names.add_answer(&entry.reports, &entry.hierarchy);
    for tally in entry.unreported.counted() {
        names.add(&tally.metric);
    }
    let mut out = Vec::with_capacity(64 + entry.key.len() + names.bytes + 16 * entry.reports.len());
    out.push(VERSION);
    put_str(&mut out, &entry.key);
    put_varint(&mut out, entry.refreshed_at_ms);
    let mut flags = 0;
    if entry.dirty {
        flags |= FLAG_DIRTY;
    }
    if entry.refreshing_since_ms.is_some() {
        flags |= FLAG_REFRESHING;
    }
    out.push(flags);
    if let Some(since) = entry.refreshing_since_ms {
        put_varint(&mut out, since);
    }
    names.write(&mut out);
    write_answer(
        &mut out,
        &names,
        &entry.answer,
        entry.plan.as_deref(),
        &entry.hierarchy,
    );
    write_reports(&mut out, &names, &entry.reports, &entry.used);
    write_tallies(&mut out, &names, &entry.unreported.pending);
    put_len(&mut out, entry.unreported.batches.len());
    for batch in &entry.unreported.batches {
        put_varint(&mut out, batch.id);
        put_varint(&mut out, batch.sent_at_ms);
        write_tallies(&mut out, &names, &batch.tallies);
    }
    write_tallies(&mut out, &names, &entry.unreported.awaiting);
    put_varint(&mut out, entry.unreported.awaiting_at_ms);
    #[cfg(feature = "test-next-cache-format")]
    out.push(NEXT_FORMAT_TAIL);
    // Only when there is some: an entry without accepted usage keeps the layout earlier modules read.
    if !entry.unreported.accepted.is_empty() {
        write_tallies(&mut out, &names, &entry.unreported.accepted);
        put_varint(&mut out, entry.unreported.accepted_at_ms);
    }
    out
}

/// The most bytes the answer's part of an entry (names, answer, plan, links, limits) may ever
/// take, whatever the usage admitted later: counters are counted at their widest.
pub fn answer_len(
    answer: &Answer,
    plan: Option<&str>,
    reports: &[UsageReport],
    hierarchy: &Hierarchy,
) -> usize {
    let mut names = Names::default();
    names.add_answer(reports, hierarchy);
    let mut out = Vec::new();
    names.write(&mut out);
    write_answer(&mut out, &names, answer, plan, hierarchy);
    let unused = vec![0; reports.len()];
    write_reports(&mut out, &names, reports, &unused);
    let growth = reports.len().saturating_mul(2 * MAX_VARINT_BYTES);
    out.len().saturating_add(growth)
}

pub fn decode(bytes: &[u8]) -> Option<Entry> {
    let mut input = Reader { bytes };
    let version = input.u8()?;
    if !(OLDEST_READABLE..=VERSION).contains(&version) {
        return None;
    }
    let key = input.str()?.to_owned();
    let refreshed_at_ms = input.varint()?;
    let flags = input.u8()?;
    if flags & !(FLAG_DIRTY | FLAG_REFRESHING) != 0 {
        return None;
    }
    let refreshing_since_ms = match flags & FLAG_REFRESHING {
        0 => None,
        _ => Some(input.varint()?),
    };
    let count = input.count()?;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        names.push(input.str()?);
    }
    let answer = read_answer(&mut input)?;
    let plan = input.plan()?;
    let hierarchy = read_links(&mut input, &names)?;
    let (reports, used) = read_reports(&mut input, &names)?;
    let pending = read_tallies(&mut input, &names)?;
    let batches = read_batches(&mut input, &names)?;
    let awaiting = read_tallies(&mut input, &names)?;
    let awaiting_at_ms = input.varint()?;
    #[cfg(feature = "test-next-cache-format")]
    if version == 3 && input.u8()? != NEXT_FORMAT_TAIL {
        return None;
    }
    let (accepted, accepted_at_ms) = if input.bytes.is_empty() {
        (Vec::new(), 0)
    } else {
        // Written only when there is some: an empty section is not this module's.
        let accepted = read_tallies(&mut input, &names)?;
        if accepted.is_empty() {
            return None;
        }
        (accepted, input.varint()?)
    };
    if !input.bytes.is_empty() {
        return None;
    }
    Some(Entry {
        key,
        refreshed_at_ms,
        answer,
        plan,
        dirty: flags & FLAG_DIRTY != 0,
        refreshing_since_ms,
        reports,
        used,
        hierarchy,
        unreported: Unreported {
            pending,
            batches,
            awaiting,
            awaiting_at_ms,
            accepted,
            accepted_at_ms,
        },
    })
}

/// The key stored in an encoded entry of any format, without decoding the rest: enough to tell
/// whether a slot holds the entry a request is looking for.
pub fn stored_key(bytes: &[u8]) -> Option<&str> {
    let mut input = Reader { bytes };
    input.u8()?;
    input.str()
}

/// Whether `bytes` is an entry written by a newer build, in a format this one cannot read: it
/// must be kept as it is, with the usage it holds.
pub fn is_newer(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|version| *version > VERSION)
}

/// The metric names of an entry, each once, referred to by index.
#[derive(Default)]
struct Names<'e> {
    names: Vec<&'e str>,
    bytes: usize,
}

impl<'e> Names<'e> {
    fn add(&mut self, name: &'e str) {
        if !self.names.contains(&name) {
            self.names.push(name);
            self.bytes += name.len() + 1;
        }
    }

    fn add_answer(&mut self, reports: &'e [UsageReport], hierarchy: &'e Hierarchy) {
        for report in reports {
            self.add(&report.metric);
        }
        for (parent, child) in hierarchy.links() {
            self.add(parent);
            self.add(child);
        }
    }

    /// The index of a name added before; 0 cannot be reached for names that were added.
    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| *n == name).unwrap_or(0)
    }

    fn write(&self, out: &mut Vec<u8>) {
        put_len(out, self.names.len());
        for name in &self.names {
            put_str(out, name);
        }
    }
}

fn write_answer(
    out: &mut Vec<u8>,
    names: &Names<'_>,
    answer: &Answer,
    plan: Option<&str>,
    hierarchy: &Hierarchy,
) {
    match answer {
        Answer::Authorized => out.push(0),
        Answer::LimitsOnly => out.push(1),
        Answer::Denied { category, reason } => {
            out.push(2);
            out.push(category_index(*category));
            put_str(out, reason);
        }
        Answer::Unknown => out.push(3),
    }
    match plan {
        None => out.push(0),
        Some(plan) => {
            put_varint(out, (plan.len() as u64).saturating_add(1));
            out.extend_from_slice(plan.as_bytes());
        }
    }
    put_len(out, hierarchy.len());
    for (parent, child) in hierarchy.links() {
        put_len(out, names.index(child));
        put_len(out, names.index(parent));
    }
}

fn write_reports(out: &mut Vec<u8>, names: &Names<'_>, reports: &[UsageReport], used: &[u64]) {
    put_len(out, reports.len());
    for (report, used) in reports.iter().zip(used) {
        put_len(out, names.index(&report.metric));
        let period = period_index(report.period);
        match report.period_end {
            Some(end) => {
                out.push(period | PERIOD_HAS_END);
                put_varint(out, end);
            }
            None => out.push(period),
        }
        put_varint(out, report.max_value);
        put_varint(out, report.current_value);
        put_varint(out, *used);
    }
}

fn write_tallies(out: &mut Vec<u8>, names: &Names<'_>, tallies: &[Tally]) {
    put_len(out, tallies.len());
    for tally in tallies {
        put_varint(out, u64::from(tally.code));
        put_len(out, names.index(&tally.metric));
        put_varint(out, tally.delta);
    }
}

fn read_answer(input: &mut Reader<'_>) -> Option<Answer> {
    let answer = match input.u8()? {
        0 => Answer::Authorized,
        1 => Answer::LimitsOnly,
        2 => {
            let category = *Category::ALL.get(usize::from(input.u8()?))?;
            let reason = input.str()?.to_owned();
            Answer::Denied { category, reason }
        }
        3 => Answer::Unknown,
        _ => return None,
    };
    Some(answer)
}

fn read_links(input: &mut Reader<'_>, names: &[&str]) -> Option<Hierarchy> {
    let count = input.count()?;
    if count > MAX_LINKS {
        return None;
    }
    let mut hierarchy = Hierarchy::new();
    for _ in 0..count {
        let child = input.name(names)?;
        let parent = input.name(names)?;
        hierarchy.add(parent, child);
    }
    Some(hierarchy)
}

fn read_reports(input: &mut Reader<'_>, names: &[&str]) -> Option<(Vec<UsageReport>, Vec<u64>)> {
    let count = input.count()?;
    if count > MAX_REPORTS {
        return None;
    }
    let mut reports = Vec::with_capacity(count);
    let mut used = Vec::with_capacity(count);
    for _ in 0..count {
        let metric = input.name(names)?.to_owned();
        let period_byte = input.u8()?;
        if period_byte & !(PERIOD_HAS_END | 7) != 0 {
            return None;
        }
        let period = *Period::ALL.get(usize::from(period_byte & 7))?;
        let period_end = match period_byte & PERIOD_HAS_END {
            0 => None,
            _ => Some(input.varint()?),
        };
        let max_value = input.varint()?;
        let current_value = input.varint()?;
        used.push(input.varint()?);
        reports.push(UsageReport {
            metric,
            period,
            period_start: None,
            period_end,
            max_value,
            current_value,
            exceeded: current_value > max_value,
        });
    }
    Some((reports, used))
}

fn read_tallies(input: &mut Reader<'_>, names: &[&str]) -> Option<Vec<Tally>> {
    let count = input.count()?;
    let mut tallies = Vec::with_capacity(count);
    for _ in 0..count {
        let code = u16::try_from(input.varint()?).ok()?;
        if code != 0 && !is_reportable_code(code) {
            return None;
        }
        let metric = input.name(names)?.to_owned();
        let delta = input.varint()?;
        if delta == 0 {
            return None;
        }
        tallies.push(Tally {
            code,
            metric,
            delta,
        });
    }
    Some(tallies)
}

fn read_batches(input: &mut Reader<'_>, names: &[&str]) -> Option<Vec<Batch>> {
    let count = input.count()?;
    if count > MAX_BATCHES {
        return None;
    }
    let mut batches = Vec::with_capacity(count);
    for _ in 0..count {
        let id = input.varint()?;
        let sent_at_ms = input.varint()?;
        let tallies = read_tallies(input, names)?;
        batches.push(Batch {
            id,
            sent_at_ms,
            tallies,
        });
    }
    Some(batches)
}

fn category_index(category: Category) -> u8 {
    let index = Category::ALL.iter().position(|c| *c == category);
    index.and_then(|i| u8::try_from(i).ok()).unwrap_or(u8::MAX)
}

fn period_index(period: Period) -> u8 {
    let index = Period::ALL.iter().position(|p| *p == period);
    index.and_then(|i| u8::try_from(i).ok()).unwrap_or(7)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    put_varint(out, len as u64);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds bit 63 only.
            if shift == 63 && bits > 1 {
                return None;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(len)?;
        self.bytes = rest;
        Some(head)
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// A list length. Every item takes at least one byte, so a count beyond the bytes left is
    /// malformed, and allocating for it stays bounded by the input's size.
    fn count(&mut self) -> Option<usize> {
        let count = usize::try_from(self.varint()?).ok()?;
        (count <= self.bytes.len()).then_some(count)
    }

    fn name<'n>(&mut self, names: &[&'n str]) -> Option<&'n str> {
        let index = usize::try_from(self.varint()?).ok()?;
        names.get(index).copied()
    }

    fn plan(&mut self) -> Option<Option<String>> {
        let len = usize::try_from(self.varint()?).ok()?;
        let Some(len) = len.checked_sub(1) else {
            return Some(None);
        };
        let bytes = self.take(len)?;
        Some(Some(std::str::from_utf8(bytes).ok()?.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let mut values = vec![0, 1, 127, 128, 255, 16_383, 16_384, u64::MAX - 1, u64::MAX];
        values.extend((0..64).map(|shift| 1u64 << shift));
        for value in values {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert!(out.len() <= MAX_VARINT_BYTES);
            let mut input = Reader { bytes: &out };
            assert_eq!(input.varint(), Some(value));
            assert!(input.bytes.is_empty());
        }
    }

    #[test]
    fn varints_past_64_bits_or_unterminated_are_refused() {
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(Reader { bytes: &overflow }.varint(), None);
        let eleven = [0x80; 11];
        assert_eq!(Reader { bytes: &eleven }.varint(), None);
        assert_eq!(
            Reader {
                bytes: &[0x80, 0x80]
            }
            .varint(),
            None
        );
        assert_eq!(Reader { bytes: &[] }.varint(), None);
    }

    #[test]
    fn counts_larger_than_the_input_are_refused() {
        assert_eq!(
            Reader {
                bytes: &[3, 0, 0, 0]
            }
            .count(),
            Some(3)
        );
        assert_eq!(
            Reader {
                bytes: &[4, 0, 0, 0]
            }
            .count(),
            None
        );
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::MAX);
        assert_eq!(Reader { bytes: &huge }.count(), None);
    }

    #[test]
    fn names_are_written_once() {
        let reports = vec![
            UsageReport {
                metric: "hits".into(),
                period: Period::Day,
                period_start: None,
                period_end: Some(86_400),
                max_value: 5,
                current_value: 0,
                exceeded: false,
            };
            3
        ];
        let mut hierarchy = Hierarchy::new();
        hierarchy.add("hits", "get_hello");
        let len = answer_len(&Answer::Authorized, None, &reports, &hierarchy);
        // names (1 + 5 + 10) + tag + plan + links (1 + 2) + reports (1 + 3 × 8: the end takes 3)
        // + growth (3 × 20).
        assert_eq!(len, 16 + 1 + 1 + 3 + 25 + 60);
    }
}
