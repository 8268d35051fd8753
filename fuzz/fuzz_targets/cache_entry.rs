//! The cache entry decoder on arbitrary bytes: shared data may have been written by another version of
//! the module. Whatever decodes re-encodes to bytes that decode to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::cache::Entry;

fuzz_target!(|bytes: &[u8]| {
    if let Some(entry) = Entry::decode(bytes) {
        let again = Entry::decode(&entry.encode());
        assert_eq!(again.as_ref(), Some(&entry));
    }
});
