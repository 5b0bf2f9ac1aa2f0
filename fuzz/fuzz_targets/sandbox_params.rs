//! Fuzz target: the sandbox's request-parameter parsers — PHP `parse_str` for query strings and
//! form bodies, the order-keeping JSON body decoder and multipart bodies — on arbitrary input.
//! They must return without panicking, in bounded time and memory, and never keep more than
//! `MAX_INPUT_VARS` top-level variables from a query or form. The parsed values are then turned
//! back into JSON and re-cased, as the server does. Run: `cargo +nightly fuzz run sandbox_params`.
#![no_main]

// The parser module, compiled as it is in the main crate (it uses nothing else of roster).
#[allow(dead_code)]
#[path = "../../src/sandbox/bitrix24/params.rs"]
mod params;

use libfuzzer_sys::fuzz_target;

fn exercise(p: &params::Params) {
    let upper = params::change_key_case(p, true);
    let _ = params::change_key_case(&upper, false);
    for (_, v) in p {
        let _ = v.to_json();
        let _ = v.to_php_string();
        let _ = v.intval();
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let query = params::parse_str(&text);
    assert!(query.len() <= params::MAX_INPUT_VARS, "parse_str kept {} vars", query.len());
    exercise(&query);
    if let Some(body) = params::parse_json_body(data) {
        exercise(&body);
    }
    // A multipart body whose boundary is the input's first line.
    if let Some(end) = data.iter().position(|&b| b == b'\n') {
        let boundary = String::from_utf8_lossy(&data[..end]).trim().to_owned();
        if !boundary.is_empty()
            && let Some(form) = params::parse_multipart(&data[end + 1..], &boundary)
        {
            exercise(&form);
        }
    }
});
