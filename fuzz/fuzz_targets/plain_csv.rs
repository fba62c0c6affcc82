//! Bytes as the template-less format's file: `TELRN_LONG;TEXT` rows, phones,
//! text joined across unquoted separators, encodings.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::run_archive(&common::stored_zip(&[("sms/messages.txt", data)]));
});
