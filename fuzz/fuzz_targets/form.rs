//! Query strings and form bodies: parsing, and removing credentials from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::args::{Args, remove_params, split_path};

fuzz_target!(|input: (&[u8], Vec<String>)| {
    let (encoded, names) = input;
    let args = Args::parse(encoded);
    for (name, _) in args.iter() {
        let _ = (args.first(name), args.last(name));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if let Some(rest) = remove_params(encoded, &names) {
        // What was removed is gone; the rest is still there.
        let left = Args::parse(&rest);
        for name in &names {
            assert!(left.first(name).is_none(), "{name} left in {rest:?}");
        }
        assert!(rest.len() <= encoded.len());
    }
    let (path, query) = split_path(encoded);
    assert!(path.len() + query.len() <= encoded.len());
});
