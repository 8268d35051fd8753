//! proxy-wasm's map encoding, used for header maps and list-valued properties: a little-endian u32
//! count, a (key length, value length) u32 pair per entry, then each key and each value followed by
//! a NUL byte.

use std::ops::Range;

/// Where one entry's key and value lie in the encoded bytes.
pub type Entry = (Range<usize>, Range<usize>);

/// The entries of an encoded map, in order; None when `bytes` is not exactly one well-formed map.
/// Empty bytes are the empty map (what a host returns for no entries).
pub fn decode(bytes: &[u8]) -> Option<Vec<Entry>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = u32_at(0)?;
    // Each entry takes at least 10 bytes (two lengths, two NULs): a larger count is a lie.
    if count > bytes.len() / 10 {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    let mut at = 4usize.checked_add(count.checked_mul(8)?)?;
    for i in 0..count {
        let key = span(bytes, &mut at, u32_at(4 + 8 * i)?)?;
        let value = span(bytes, &mut at, u32_at(8 + 8 * i)?)?;
        entries.push((key, value));
    }
    (at == bytes.len()).then_some(entries)
}

/// The next `len` bytes from `at`, which must be followed by a NUL; moves `at` past the NUL.
fn span(bytes: &[u8], at: &mut usize, len: usize) -> Option<Range<usize>> {
    let start = *at;
    let end = start.checked_add(len)?;
    if *bytes.get(end)? != 0 {
        return None;
    }
    *at = end + 1;
    Some(start..end)
}

/// Encodes `entries` (e.g. the headers of a local reply).
pub fn encode<'a>(entries: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let count = entries.clone().count();
    let size = entries
        .clone()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>()
        + 4;
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&length(count));
    for (key, value) in entries.clone() {
        bytes.extend_from_slice(&length(key.len()));
        bytes.extend_from_slice(&length(value.len()));
    }
    for (key, value) in entries {
        bytes.extend_from_slice(key);
        bytes.push(0);
        bytes.extend_from_slice(value);
        bytes.push(0);
    }
    bytes
}

/// Lengths beyond u32 cannot be encoded; a host could not take such a map anyway.
fn length(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn pairs(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
        decode(bytes)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (&bytes[k], &bytes[v]))
            .collect()
    }

    #[test]
    fn round_trips_entries_in_order_with_repeats_and_empty_values() {
        let entries: [(&[u8], &[u8]); 4] = [
            (b":authority", b"api.example.com"),
            (b"x-app-id", b""),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=\xff"),
        ];
        let bytes = encode(entries.iter().copied());
        assert_eq!(pairs(&bytes), entries.to_vec());
    }

    #[test]
    fn empty_bytes_and_a_zero_count_are_the_empty_map() {
        assert_eq!(decode(b""), Some(vec![]));
        assert_eq!(decode(&[0, 0, 0, 0]), Some(vec![]));
    }

    #[test]
    fn refuses_what_is_not_exactly_one_map() {
        let bytes = encode([(&b"k"[..], &b"v"[..])].into_iter());
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode(&[bytes.as_slice(), b"x"].concat()).is_none());
        let mut no_nul = bytes.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert!(decode(&no_nul).is_none());
        assert!(decode(&[255, 255, 255, 255, 1, 0, 0, 0]).is_none());
        assert!(decode(&[1, 0, 0]).is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_u32;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    // Small numbers now and then, so that lengths are sometimes plausible.
                    if i % 4 == 0 {
                        (seed % 8) as u8
                    } else {
                        seed as u8
                    }
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
