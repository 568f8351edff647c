//! Fuzzes the XML and JSON event parsers (kind, dedupe key, fields) for every vendor.
#![no_main]

use hookgate::event::{Event, Vendor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&v, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let vendor = Vendor::ALL[usize::from(v) % Vendor::ALL.len()];
    let _ = hookgate::event::xml::to_json(text);
    let _ = Event::parse_unverified_for_fuzzing(vendor, text);
});
