//! The filter configuration loader on arbitrary documents: refused with a path, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::Config;

fuzz_target!(|json: &[u8]| {
    match Config::load(json, &|name| (name == "TOKEN").then(|| "secret".to_string())) {
        Ok(config) => assert!(!config.services.is_empty()),
        Err(error) => assert!(!error.path.is_empty() && !error.reason.is_empty()),
    }
});
