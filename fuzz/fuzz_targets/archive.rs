//! Raw bytes as an uploaded archive: the zip reader, limits, layout detection
//! and whatever it finds inside.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::run_archive(data);
});
