//! Fuzz target: the spec loader's byte-level entry, `spec::parse_bytes`, on arbitrary input.
//! It must return (a state or diagnostics) without panicking, in bounded time and memory, and
//! every diagnostic must point inside the input. Run: `cargo +nightly fuzz run spec_parse`.
#![no_main]

// The loader's modules, compiled as they are in the main crate (`crate::model` resolves here).
#[allow(dead_code)]
#[path = "../../src/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../../src/spec/mod.rs"]
mod spec;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(diags) = spec::parse_bytes("fuzz.yaml", data) {
        assert!(!diags.shown.is_empty(), "an error without a diagnostic");
        assert!(diags.shown.len() <= spec::MAX_DIAGNOSTICS);
        if data.len() <= spec::MAX_FILE_BYTES {
            for d in &diags.shown {
                assert!(
                    spec::position_is_inside(data, d.line, d.column),
                    "{d} is outside the input"
                );
            }
        }
    }
});
