//! Bytes as `contacts.csv` and `template.csv` (split at the first 0xFF, which
//! is never valid UTF-8): the template format's CSV, headers, substitution,
//! senddates, senders, validity.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (contacts, template) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (
            data,
            &b"message;sourceaddress;senddate;localtime\n#name# #1#;TESTSMS;;1\n"[..],
        ),
    };
    common::run_archive(&common::stored_zip(&[
        ("sms/contacts.csv", contacts),
        ("sms/template.csv", template),
    ]));
});
