//! apisonator's answers (or anything else the 3scale cluster sends): every status with every body is
//! classified without a panic, and what the XML readers accept is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::backend::{parse_error, parse_status};
use tollgate::report::outcome;
use tollgate::usage::Usage;
use tollgate::verdict::{BackendResponse, Verdict, classify};

fuzz_target!(|input: (u16, Option<&[u8]>, &[u8])| {
    let (status, reason, body) = input;
    let _ = parse_error(body);
    let parsed = parse_status(body);
    let response = BackendResponse {
        status: Some(status),
        rejection_reason: reason,
        limit_remaining: None,
        limit_reset: None,
        limit_max_value: None,
        body,
        now: 1_795_543_791,
    };
    let mut usage = Usage::new();
    usage.add(&"hits".into(), 1);
    let verdict = classify(&response, &usage);
    // Only a readable, authorized `<status>` in a 200 authorizes.
    if matches!(verdict, Verdict::Authorized { .. }) {
        assert_eq!(status, 200);
        assert!(parsed.is_ok_and(|s| s.authorized));
    }
    let _ = outcome(Some(status), body);
    let _ = outcome(None, body);
});
