//! Rule parsing and glob matching: the first line of the input is a rule, the
//! rest request targets. Never panics; matching ignoring case admits at least
//! what exact matching does; a path matches the same after normalization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockbroker_policy::{self as policy, Case, Rule};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let Some(rule) = lines.next() else { return };
    let Ok(rule) = Rule::parse(rule) else { return };
    assert!(
        Rule::parse(rule.as_str()).is_ok(),
        "{rule} does not re-parse"
    );
    for target in lines.take(16) {
        let Ok(t) = policy::normalize(target) else {
            continue;
        };
        for method in ["GET", "POST", "head"] {
            let exact = rule.matches(method, &t.path, Case::Exact);
            let fold = rule.matches(method, &t.path, Case::Fold);
            assert!(!exact || fold, "{rule} {method} {}", t.path);
        }
    }
});
