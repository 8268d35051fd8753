//! Mapping-rule patterns (compiled from configuration) and their matching (against client paths and
//! query strings).
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use tollgate::args::Args;
use tollgate::mapping::{MappingRule, MappingRules};

fuzz_target!(|input: (&str, &str, &[u8], &[u8], &[u8], u8)| {
    let (method, pattern, request_method, path, query, delta) = input;
    let Ok(rule) = MappingRule::new(method, pattern, Rc::from("hits"), u64::from(delta), false)
    else {
        return;
    };
    let args = Args::parse(query);
    let rules = MappingRules::new(vec![rule]);
    let matched = rules.evaluate(request_method, path, &args);
    // A rule that matched counts its delta; one that did not counts nothing.
    let counted: u64 = matched.usage.iter().map(|(_, d)| d).sum();
    match matched.rules.as_slice() {
        [] => assert_eq!(counted, 0),
        [0] => assert_eq!(counted, u64::from(delta)),
        other => panic!("one rule matched as {other:?}"),
    }
    let _ = rules.needs_args_for(request_method, path);
});
