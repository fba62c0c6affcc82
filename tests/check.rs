//! `smsdrop check --format jsonl` end to end, written from SPEC.md: every format
//! rule, every error code `check` can reach, scheduling, segments, encodings and
//! hostile archives. Each test runs the real binary on an archive built here.

mod common;

use common::*;
use serde_json::Value;

const NAME: &str = "guest_20261123070000.zip";

struct Run {
    code: i32,
    rows: Vec<Value>,
    summary: Value,
}

fn run_with(bytes: &[u8], config_extra: &str, account_extra: &str, name: &str) -> Run {
    let env = Env::new();
    let config = env.config(config_extra, account_extra);
    let archive = env.archive(name, bytes);
    let out = check(&config, &archive, &[]);
    assert!(
        out.code == 0 || out.code == 1,
        "exit {}: {}",
        out.code,
        out.stderr
    );
    let (rows, summary) = out.jsonl();
    Run {
        code: out.code,
        rows,
        summary,
    }
}

fn run(bytes: &[u8]) -> Run {
    run_with(bytes, "", "", NAME)
}

/// Asserts an archive-level rejection and returns its message.
fn rejected(r: &Run, code: &str) -> String {
    assert_eq!(r.code, 1, "{:?}", r.summary);
    assert_eq!(r.summary["status"], "rejected");
    assert_eq!(r.summary["error"]["code"], code, "{:?}", r.summary);
    assert!(r.rows.is_empty(), "a rejected archive shows no rows");
    assert_eq!(r.summary["accepted"], 0);
    r.summary["error"]["message"].as_str().unwrap().to_owned()
}

fn tpl(contacts: &str, template: &str) -> Run {
    run(&template_zip(contacts, template))
}

const T_BASIC: &str = "message;sourceaddress\nHello #name#;TESTSMS\n";

// ---- template format -------------------------------------------------------

#[test]
fn template_rows_are_built_as_the_spec_says() {
    let r = tpl(
        "phone;name;attr1\n79031234567;Иван;x\n+7 (916) 123-45-67;Anna;y\n",
        "message;sourceaddress;validity\nУважаемый #NAME#! #attr1# #nope#;TESTSMS;180\n",
    );
    assert_eq!(r.code, 0);
    assert_eq!(r.summary["status"], "accepted");
    assert_eq!(r.summary["format"], "template");
    assert_eq!(r.summary["rows"], 2);
    assert_eq!(r.summary["accepted"], 2);
    assert_eq!(r.summary["batch"], "guest_20261123070000");
    assert_eq!(r.summary["processed_at"], NOW);
    let row = &r.rows[0];
    assert_eq!(row["line"], 2);
    assert_eq!(row["phone"], "79031234567");
    assert_eq!(row["status"], "accepted");
    assert_eq!(row["code"], Value::Null);
    assert_eq!(row["message_id"], "guest_20261123070000:2");
    assert_eq!(row["sender"], "TESTSMS");
    assert_eq!(row["text"], "Уважаемый Иван! x ");
    assert_eq!(row["encoding"], "ucs2");
    assert_eq!(row["segments"], 1);
    assert_eq!(row["send_at"], NOW);
    assert_eq!(row["expires_at"], "2026-11-23T10:00:00Z");
    assert_eq!(row["timezone"], "Europe/Moscow");
    assert_eq!(r.rows[1]["phone"], "79161234567");
    assert_eq!(r.rows[1]["text"], "Уважаемый Anna! y ");
}

#[test]
fn files_at_the_root_and_any_name_case_are_accepted() {
    let bytes = zip_bytes(&[
        ("Contacts.CSV", b"PHONE\n79031234567\n"),
        ("TEMPLATE.csv", b"Message;SourceAddress\nHi;TESTSMS\n"),
    ]);
    let r = run(&bytes);
    assert_eq!(r.summary["accepted"], 1);
    assert_eq!(r.summary["format"], "template");
}

#[test]
fn literal_hashes_stay_and_values_are_not_re_expanded() {
    let r = tpl(
        "phone;a;b\n79031234567;#b#;B\n",
        "message;sourceaddress\nOrder #42 ready: #a# # #;TESTSMS\n",
    );
    assert_eq!(r.rows[0]["text"], "Order #42 ready: #b# # #");
}

#[test]
fn quoted_fields_crlf_and_bom() {
    let contacts = "\u{feff}phone;name\r\n\"79031234567\";\"Smith; \"\"Jr\"\"\r\nand co\"\r\n";
    let r = tpl(
        contacts,
        "\u{feff}message;sourceaddress\r\n\"Hi #name#\";TESTSMS\r\n",
    );
    assert_eq!(r.summary["accepted"], 1, "{:?}", r.summary);
    assert_eq!(r.rows[0]["text"], "Hi Smith; \"Jr\"\r\nand co");
}

#[test]
fn row_errors_reject_only_their_row() {
    let r = tpl(
        "phone;senddate;name\n\
         79031234567;;Ann\n\
         89031234567;;Bob\n\
         79031234567;2026-13-01T00:00:00;Cid\n\
         79031234567;;\n\
         79031234567;2026-11-20T10:00:00;Dan\n\
         abc;;Eve\n",
        "message;sourceaddress;validity\n#name#;TESTSMS;60\n",
    );
    assert_eq!(r.code, 0);
    assert_eq!(r.summary["status"], "partially_accepted");
    assert_eq!(r.summary["rows"], 6);
    assert_eq!(r.summary["accepted"], 1);
    assert_eq!(r.summary["rejected"], 5);
    let codes: Vec<(u64, &str)> = r
        .rows
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["code"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (2, "-"),
            (3, "INVALID_PHONE"),
            (4, "INVALID_SENDDATE"),
            (5, "EMPTY_TEXT"),
            (6, "EXPIRED"),
            (7, "INVALID_PHONE"),
        ]
    );
    // Messages name the file, the line and the value.
    let msg = r.rows[1]["message"].as_str().unwrap();
    assert!(
        msg.contains("sms/contacts.csv line 3") && msg.contains("89031234567"),
        "{msg}"
    );
    let msg = r.rows[2]["message"].as_str().unwrap();
    assert!(
        msg.contains("line 4") && msg.contains("2026-13-01T00:00:00"),
        "{msg}"
    );
    assert_eq!(r.rows[1]["status"], "rejected");
    assert_eq!(r.rows[1]["phone"], "89031234567");
    assert_eq!(r.rows[1]["message_id"], Value::Null);
}

#[test]
fn all_rows_rejected_is_a_rejected_batch_without_archive_error() {
    let r = tpl("phone\n123\n", T_BASIC);
    assert_eq!(r.code, 1);
    assert_eq!(r.summary["status"], "rejected");
    assert_eq!(r.summary["error"], Value::Null);
    assert_eq!(r.summary["rows"], 1);
    assert_eq!(r.summary["rejected"], 1);
    assert_eq!(r.rows.len(), 1);
}

#[test]
fn blank_lines_and_separator_only_lines_are_not_rows() {
    let r = tpl(
        "phone;name\n\n79031234567;a\n;\n\n79031234567;b\n\n",
        T_BASIC,
    );
    assert_eq!(r.summary["rows"], 2);
    let lines: Vec<u64> = r.rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![3, 6]);
}

// ---- scheduling --------------------------------------------------------------

#[test]
fn senddate_formats_and_contact_over_template_precedence() {
    let r = tpl(
        "phone;senddate\n\
         79031234567;\n\
         79031234567;20261201T10:00:00\n\
         79031234567;2026-12-01T11:00:00\n\
         79031234567;2026-12-01 12:00:00\n",
        "message;sourceaddress;senddate\nHi;TESTSMS;2026-12-24T09:30:00\n",
    );
    let send_at: Vec<&str> = r
        .rows
        .iter()
        .map(|r| r["send_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        send_at,
        vec![
            "2026-12-24T06:30:00Z", // template senddate, Moscow = UTC+3
            "2026-12-01T07:00:00Z",
            "2026-12-01T08:00:00Z",
            "2026-12-01T09:00:00Z",
        ]
    );
    assert_eq!(r.rows[0]["expires_at"], "2026-12-25T06:30:00Z");
}

#[test]
fn a_past_senddate_sends_now_and_expires_from_the_request() {
    let r = tpl(
        "phone;senddate\n79031234567;2026-11-23T09:00:00\n",
        "message;sourceaddress;validity\nHi;TESTSMS;120\n",
    );
    // 09:00 Moscow = 06:00Z, one hour before now; expires 08:00Z.
    assert_eq!(r.rows[0]["send_at"], NOW);
    assert_eq!(r.rows[0]["expires_at"], "2026-11-23T08:00:00Z");
    let r = tpl(
        "phone;senddate\n79031234567;2026-11-23T09:00:00\n",
        "message;sourceaddress;validity\nHi;TESTSMS;60\n",
    );
    assert_eq!(r.rows[0]["code"], "EXPIRED");
}

#[test]
fn the_account_zone_reads_senddates() {
    let bytes = template_zip(
        "phone;senddate\n79031234567;2027-07-01T12:00:00\n",
        "message;sourceaddress\nHi;TESTSMS\n",
    );
    let r = run_with(&bytes, "", "timezone = \"Europe/Berlin\"", NAME);
    assert_eq!(r.rows[0]["send_at"], "2027-07-01T10:00:00Z");
    assert_eq!(r.rows[0]["timezone"], "Europe/Berlin");
}

#[test]
fn dst_gap_moves_forward_and_ambiguous_takes_the_earlier_instant() {
    let bytes = template_zip(
        "phone;senddate\n\
         79031234567;2027-03-14T02:30:00\n\
         79031234567;2027-11-07T01:30:00\n",
        "message;sourceaddress\nHi;TESTSMS\n",
    );
    let r = run_with(&bytes, "", "timezone = \"America/New_York\"", NAME);
    assert_eq!(r.rows[0]["send_at"], "2027-03-14T07:30:00Z"); // 03:30 EDT
    assert_eq!(r.rows[1]["send_at"], "2027-11-07T05:30:00Z"); // 01:30 EDT
}

#[test]
fn localtime_one_reports_the_zone_used() {
    let r = tpl(
        "phone;senddate\n79031234567;2026-12-01T10:00:00\n79031234567;\n",
        "message;sourceaddress;localtime\nHi;TESTSMS;1\n",
    );
    assert_eq!(r.summary["accepted"], 2);
    assert!(r.rows[0]["timezone"].as_str().unwrap().contains('/'));
}

// ---- segments ------------------------------------------------------------------

#[test]
fn segments_and_encoding() {
    let cases = [
        ("a".repeat(160), "gsm7", 1),
        ("a".repeat(161), "gsm7", 2),
        ("€".repeat(80), "gsm7", 1),
        ("€".repeat(81), "gsm7", 2),
        ("ж".repeat(70), "ucs2", 1),
        ("ж".repeat(71), "ucs2", 2),
        ("ж".repeat(135), "ucs2", 3),
    ];
    for (text, encoding, segments) in cases {
        let r = tpl(
            "phone\n79031234567\n",
            &format!("message;sourceaddress\n{text};TESTSMS\n"),
        );
        assert_eq!(r.rows[0]["encoding"], encoding, "{text}");
        assert_eq!(r.rows[0]["segments"], segments, "{text}");
    }
}

// ---- template.csv errors ---------------------------------------------------------

#[test]
fn template_errors_reject_the_archive() {
    let c = "phone\n79031234567\n";
    let cases = [
        ("sourceaddress\nTESTSMS\n", "MISSING_COLUMN", "message"),
        ("message\nHi\n", "MISSING_COLUMN", "sourceaddress"),
        ("", "MISSING_COLUMN", "template.csv"),
        ("message;sourceaddress\n", "BAD_TEMPLATE", "no data row"),
        (
            "message;sourceaddress\nA;TESTSMS\nB;TESTSMS\n",
            "BAD_TEMPLATE",
            "line 3",
        ),
        (
            "message;sourceaddress\n  ;TESTSMS\n",
            "BAD_TEMPLATE",
            "empty",
        ),
        (
            "message;sourceaddress\nHi;TEST SMS\n",
            "INVALID_SENDER",
            "TEST SMS",
        ),
        (
            "message;sourceaddress\nHi;ABCDEFGHIJKL\n",
            "INVALID_SENDER",
            "ABCDEFGHIJKL",
        ),
        ("message;sourceaddress\nHi;\n", "INVALID_SENDER", "line 2"),
        (
            "message;sourceaddress\nHi;testsms\n",
            "SENDER_NOT_ALLOWED",
            "testsms",
        ),
        (
            "message;sourceaddress\nHi;OTHER\n",
            "SENDER_NOT_ALLOWED",
            "OTHER",
        ),
        (
            "message;sourceaddress;validity\nHi;TESTSMS;0\n",
            "INVALID_VALIDITY",
            "\"0\"",
        ),
        (
            "message;sourceaddress;validity\nHi;TESTSMS;-5\n",
            "INVALID_VALIDITY",
            "-5",
        ),
        (
            "message;sourceaddress;validity\nHi;TESTSMS;1.5\n",
            "INVALID_VALIDITY",
            "1.5",
        ),
        (
            "message;sourceaddress;senddate\nHi;TESTSMS;tomorrow\n",
            "INVALID_SENDDATE",
            "tomorrow",
        ),
        (
            "message;sourceaddress;localtime\nHi;TESTSMS;yes\n",
            "INVALID_LOCALTIME",
            "yes",
        ),
        (
            "message;sourceaddress;localtime\nHi;TESTSMS;2\n",
            "INVALID_LOCALTIME",
            "\"2\"",
        ),
    ];
    for (template, code, needle) in cases {
        let r = tpl(c, template);
        let msg = rejected(&r, code);
        assert!(msg.contains(needle), "{code}: {msg}");
        assert!(msg.contains("template.csv"), "{code}: {msg}");
    }
}

#[test]
fn numeric_senders_and_validity_default() {
    let r = tpl(
        "phone\n79031234567\n",
        "message;sourceaddress;validity\nHi;79031234567;\n",
    );
    assert_eq!(r.rows[0]["sender"], "79031234567");
    assert_eq!(r.rows[0]["expires_at"], "2026-11-24T07:00:00Z");
}

#[test]
fn contacts_without_phone_column() {
    let msg = rejected(&tpl("name\nAnn\n", T_BASIC), "MISSING_COLUMN");
    assert!(
        msg.contains("contacts.csv") && msg.contains("phone"),
        "{msg}"
    );
    rejected(&tpl("", T_BASIC), "MISSING_COLUMN");
    let msg = rejected(&tpl("phone;x;PHONE\n1;2;3\n", T_BASIC), "MISSING_COLUMN");
    assert!(msg.contains("twice"), "{msg}");
}

#[test]
fn a_header_only_contacts_file_queues_nothing() {
    let r = tpl("phone\n", T_BASIC);
    assert_eq!(r.code, 1);
    assert_eq!(r.summary["status"], "rejected");
    assert_eq!(r.summary["rows"], 0);
}

// ---- template-less format ------------------------------------------------------------

#[test]
fn plain_format_by_name_position_and_joined_text() {
    let bytes = zip_bytes(&[(
        "sms/list.txt",
        "ID;TEXT;TELRN_LONG\n1;Hi;79031234567\n".as_bytes(),
    )]);
    let r = run(&bytes);
    assert_eq!(r.summary["format"], "plain");
    assert_eq!(r.rows[0]["phone"], "79031234567");
    assert_eq!(r.rows[0]["text"], "Hi");
    assert_eq!(r.rows[0]["sender"], "TESTSMS");

    let bytes = zip_bytes(&[(
        "data.csv",
        "number;message\r\n79031234567;Code 1; valid; 10 min\r\n".as_bytes(),
    )]);
    let r = run(&bytes);
    assert_eq!(r.rows[0]["text"], "Code 1; valid; 10 min");
    assert_eq!(r.rows[0]["line"], 2);
    assert_eq!(r.rows[0]["expires_at"], "2026-11-24T07:00:00Z");
}

#[test]
fn plain_format_uses_the_account_defaults() {
    let bytes = zip_bytes(&[("m.csv", b"TELRN_LONG;TEXT\n79031234567;Hi\n")]);
    let r = run_with(
        &bytes,
        "",
        "default_sender = \"79031234567\"\ndefault_validity_minutes = 30",
        NAME,
    );
    assert_eq!(r.rows[0]["sender"], "79031234567");
    assert_eq!(r.rows[0]["expires_at"], "2026-11-23T07:30:00Z");
}

#[test]
fn plain_format_row_errors() {
    let bytes = zip_bytes(&[(
        "m.csv",
        b"TELRN_LONG;TEXT\n79031234567;\n12;Hi\n79031234567;   \n",
    )]);
    let r = run(&bytes);
    let codes: Vec<&str> = r.rows.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["EMPTY_TEXT", "INVALID_PHONE", "EMPTY_TEXT"]);
}

// ---- layout ------------------------------------------------------------------------

#[test]
fn unknown_layouts() {
    type Entries<'a> = Vec<(&'a str, &'a [u8])>;
    let cases: Vec<(Entries, &str)> = vec![
        (
            vec![("sms/contacts.csv", b"phone\n")],
            "template.csv is missing",
        ),
        (
            vec![("sms/template.csv", b"x\n")],
            "contacts.csv is missing",
        ),
        (
            vec![("a.csv", b"x\n"), ("b.txt", b"y\n")],
            "2 .csv/.txt files",
        ),
        (vec![("readme.pdf", b"x")], "no .csv or .txt"),
        (vec![("sms/", b""), ("inner.zip", b"PK")], "no .csv or .txt"),
        (vec![("deep/dir/data.csv", b"x\n")], "no .csv or .txt"),
    ];
    for (entries, needle) in cases {
        let msg = rejected(&run(&zip_bytes(&entries)), "UNKNOWN_LAYOUT");
        assert!(msg.contains(needle), "{msg}");
    }
    rejected(&run(&zip_bytes(&[])), "UNKNOWN_LAYOUT");
}

// ---- names ---------------------------------------------------------------------------

#[test]
fn bad_archive_names() {
    let bytes = template_zip("phone\n79031234567\n", T_BASIC);
    for name in [
        "guest.zip",
        "guest_20261131000000.zip",
        "guest_2026112307000.zip",
    ] {
        let r = run_with(&bytes, "", "", name);
        let msg = rejected(&r, "BAD_ARCHIVE_NAME");
        assert!(msg.contains(name), "{msg}");
        assert_eq!(r.summary["format"], Value::Null);
    }
}

#[test]
fn bad_name_with_explicit_account() {
    let env = Env::new();
    let config = env.config("", "");
    let archive = env.archive("notes.zip", &template_zip("phone\n79031234567\n", T_BASIC));
    let out = check(&config, &archive, &["--account", "guest"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.jsonl().1["error"]["code"], "BAD_ARCHIVE_NAME");
}

#[test]
fn login_mismatch() {
    let env = Env::new();
    let config = env.config("", "");
    let archive = env.archive(
        "other_20261123070000.zip",
        &template_zip("phone\n79031234567\n", T_BASIC),
    );
    let out = check(&config, &archive, &["--account", "guest"]);
    assert_eq!(out.code, 1);
    let (rows, summary) = out.jsonl();
    assert!(rows.is_empty());
    assert_eq!(summary["error"]["code"], "LOGIN_MISMATCH");
    assert!(
        summary["error"]["message"]
            .as_str()
            .unwrap()
            .contains("other")
    );
}

// ---- broken and hostile zips -------------------------------------------------------

#[test]
fn not_a_zip() {
    let good = template_zip("phone\n79031234567\n", T_BASIC);
    let mut crc = good.clone();
    patch_u32(&mut crc, 14, 16, |c| c ^ 1);
    for bytes in [
        b"".to_vec(),
        b"hello, this is not a zip".to_vec(),
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 10].to_vec(),
        crc,
    ] {
        rejected(&run(&bytes), "NOT_A_ZIP");
    }
}

#[test]
fn encrypted_entries() {
    let mut bytes = template_zip("phone\n79031234567\n", T_BASIC);
    patch_u32(&mut bytes, 6, 8, |flags| flags | 1);
    let msg = rejected(&run(&bytes), "ENCRYPTED_ARCHIVE");
    assert!(msg.contains("contacts.csv"), "{msg}");
}

#[test]
fn unsafe_entry_names() {
    for name in [
        "../contacts.csv",
        "/etc/passwd.csv",
        "sms/../../x.csv",
        "C:/x.csv",
    ] {
        let msg = rejected(
            &run(&zip_bytes(&[(name, b"TELRN_LONG;TEXT\n")])),
            "UNSAFE_ENTRY_NAME",
        );
        assert!(msg.contains(name), "{msg}");
    }
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.add_symlink("sms/data.csv", "/etc/passwd", deflated())
        .unwrap();
    let bytes = w.finish().unwrap().into_inner();
    let msg = rejected(&run(&bytes), "UNSAFE_ENTRY_NAME");
    assert!(msg.contains("symbolic link"), "{msg}");
}

#[test]
fn limits() {
    let line = format!("79031234567;{}\n", "x".repeat(100));
    let plain = |rows: usize| {
        let mut text = String::from("TELRN_LONG;TEXT\n");
        text.push_str(&line.repeat(rows));
        zip_bytes(&[("m.csv", text.as_bytes())])
    };
    // Archive size.
    let r = run_with(&plain(1), "[limits]\nmax_archive_bytes = 100", "", NAME);
    assert!(rejected(&r, "LIMIT_EXCEEDED").contains("bytes"));
    // Entry count.
    let many: Vec<(String, Vec<u8>)> = (0..20).map(|i| (format!("f{i}.png"), vec![1])).collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let r = run(&zip_bytes(&refs));
    assert!(rejected(&r, "LIMIT_EXCEEDED").contains("20 entries"));
    // Compression ratio: 1 MB of one repeated line.
    let bomb = zip_bytes(&[("m.csv", "7".repeat(1 << 20).as_bytes())]);
    let r = run(&bomb);
    assert!(rejected(&r, "LIMIT_EXCEEDED").contains(":1"));
    // Total uncompressed size.
    let r = run_with(
        &plain(50),
        "[limits]\nmax_uncompressed_bytes = 2000",
        "",
        NAME,
    );
    rejected(&r, "LIMIT_EXCEEDED");
    // Line length, naming the line.
    let long = zip_bytes(&[(
        "m.csv",
        format!(
            "TELRN_LONG;TEXT\n79031234567;ok\n79031234567;{}\n",
            "y".repeat(300)
        )
        .as_bytes(),
    )]);
    let r = run_with(&long, "[limits]\nmax_line_bytes = 200", "", NAME);
    assert!(rejected(&r, "LIMIT_EXCEEDED").contains("line 3"));
}

#[test]
fn an_entry_that_lies_about_its_size_is_stopped_while_read() {
    // Declared 100 bytes, inflates to 1 MiB; the ratio check on declared sizes
    // passes, the one on inflated bytes must not.
    let mut text = String::from("TELRN_LONG;TEXT\n");
    while text.len() < 1 << 20 {
        text.push_str("79031234567;Hello there\n");
    }
    let mut bytes = zip_bytes(&[("m.csv", text.as_bytes())]);
    patch_u32(&mut bytes, 22, 24, |_| 100);
    let r = run(&bytes);
    // The zip crate notices the lie before our own counter does.
    let msg = rejected(&r, "NOT_A_ZIP");
    assert!(msg.contains("declared"), "{msg}");
    assert!(r.rows.is_empty());
}

// ---- encodings -------------------------------------------------------------------------

#[test]
fn bad_utf8_names_the_line() {
    let bytes = zip_bytes(&[(
        "m.csv",
        b"TELRN_LONG;TEXT\n79031234567;fine\n79031234567;caf\xE9\n".as_slice(),
    )]);
    let msg = rejected(&run(&bytes), "BAD_ENCODING");
    assert!(msg.contains("m.csv line 3") && msg.contains("E9"), "{msg}");
}

#[test]
fn account_encoding_windows_1251() {
    let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode("phone;name\n79031234567;Иван\n");
    let (tpl1251, _, _) =
        encoding_rs::WINDOWS_1251.encode("message;sourceaddress\nПривет, #name#;TESTSMS\n");
    let bytes = zip_bytes(&[
        ("sms/contacts.csv", &cp1251),
        ("sms/template.csv", &tpl1251),
    ]);
    let r = run_with(&bytes, "", "encoding = \"windows-1251\"", NAME);
    assert_eq!(r.rows[0]["text"], "Привет, Иван");
    // The same bytes read as UTF-8 are invalid.
    rejected(&run(&bytes), "BAD_ENCODING");
}

#[test]
fn nul_bytes_are_bad_encoding() {
    let bytes = zip_bytes(&[("m.csv", b"TELRN_LONG;TEXT\n7903\x001234567;x\n".as_slice())]);
    assert!(rejected(&run(&bytes), "BAD_ENCODING").contains("line 2"));
}

// ---- command line ---------------------------------------------------------------------------

#[test]
fn usage_and_config_errors_exit_2() {
    let env = Env::new();
    let config = env.config("", "");
    let archive = env.archive(NAME, &template_zip("phone\n79031234567\n", T_BASIC));
    let out = check(&config, &env.path("missing_20261123070000.zip"), &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // The cause is told once (an error chain prints each cause once).
    assert_eq!(
        out.stderr.matches("os error 2").count(),
        1,
        "{}",
        out.stderr
    );
    let out = check(&config, &archive, &["--account", "nobody"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nobody"));
    let out = smsdrop(&[
        "check",
        archive.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--now",
        "yesterday",
    ]);
    assert_eq!(out.code, 2);
    let bad = env.config("[poller]\nintervl_secs = 5", "");
    let out = check(&bad, &archive, &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("intervl_secs"), "{}", out.stderr);
    let bad = env.config("", "timezone = \"Mars/Olympus\"");
    let out = check(&bad, &archive, &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("accounts[0].timezone"),
        "{}",
        out.stderr
    );
}

#[test]
fn text_output_lists_rejected_rows() {
    let env = Env::new();
    let config = env.config("", "");
    let archive = env.archive(NAME, &template_zip("phone\n79031234567\n123\n", T_BASIC));
    let out = smsdrop(&[
        "check",
        archive.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--now",
        NOW,
    ]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("partially accepted"), "{}", out.stdout);
    assert!(out.stdout.contains("line 3"), "{}", out.stdout);
    assert!(out.stdout.contains("INVALID_PHONE"), "{}", out.stdout);
}

#[test]
fn the_embedded_config_checks_the_samples() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/guest_20120207231932.zip"
    );
    let out = smsdrop(&["check", sample, "--format", "jsonl", "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (rows, summary) = out.jsonl();
    assert_eq!(summary["status"], "partially_accepted");
    assert_eq!(
        rows[0]["text"],
        "Уважаемый Иван Петрович Сидоров! Заказ #42 готов."
    );
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/guest_20120207231933.zip"
    );
    let out = smsdrop(&["check", sample, "--format", "jsonl", "--now", NOW]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.jsonl().0[0]["text"],
        "Your code is 4512; it expires in 10 minutes"
    );
}

#[test]
fn config_check_prints_the_configuration_or_names_the_key() {
    let out = smsdrop(&["config", "check"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("account:  guest"), "{}", out.stdout);
    assert!(!out.stdout.contains("argon2"), "no secrets: {}", out.stdout);
    let env = Env::new();
    let bad = env.config(
        "[ftp.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"",
        "",
    );
    let out = smsdrop(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("ftp.tls.cert"), "{}", out.stderr);
    // What `serve` would refuse or misuse is refused here too.
    for (extra, key) in [
        (
            "[queue]\nbackend = \"postgres\"\nurl = \"host=db port=notaport\"",
            "queue.url",
        ),
        (
            "[ftp]\npassive_host = \"no-such-host.invalid\"",
            "ftp.passive_host",
        ),
    ] {
        let env = Env::new();
        let bad = env.config(extra, "");
        let out = smsdrop(&["config", "check", "--config", bad.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{extra}: {}", out.stdout);
        assert!(out.stderr.contains(key), "{}", out.stderr);
    }
    // And everything it would run with is printed, the password redacted.
    let env = Env::new();
    let good = env.config(
        "[ftp]\npassive_host = \"127.0.0.1\"\nsync_uploads = false\n\
         [queue]\nbackend = \"postgres\"\nurl = \"host=db user=s password=hunter2\"\n\
         tls_ca = \"\"",
        "",
    );
    let out = smsdrop(&["config", "check", "--config", good.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for shown in [
        "127.0.0.1",
        "sync_uploads = false",
        "host=db user=s password=<redacted>",
    ] {
        assert!(out.stdout.contains(shown), "{shown}: {}", out.stdout);
    }
    assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
    let out = smsdrop(&["config", "check"]);
    assert!(
        out.stdout
            .contains("rows enter while the archive is read: Auto"),
        "{}",
        out.stdout
    );
}

#[test]
fn bzip2_lzma_and_zstandard_entries_are_read() {
    use zip::CompressionMethod;
    let csv: &[u8] = b"TELRN_LONG;TEXT\n79031234567;packed\n";
    let mut archives = Vec::new();
    for method in [CompressionMethod::Bzip2, CompressionMethod::Zstd] {
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        archives.push((
            method.to_string(),
            zip_bytes_with(&[("sms/m.csv", csv)], options),
        ));
    }
    // The zip crate cannot write LZMA; Python's zipfile can (as 7-Zip does).
    let lzma = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, sys, zipfile\n\
             b = io.BytesIO()\n\
             with zipfile.ZipFile(b, 'w', zipfile.ZIP_LZMA) as z:\n\
             \x20   z.writestr('sms/m.csv', 'TELRN_LONG;TEXT\\n79031234567;packed\\n')\n\
             sys.stdout.buffer.write(b.getvalue())",
        ])
        .output()
        .unwrap();
    assert!(
        lzma.status.success(),
        "{}",
        String::from_utf8_lossy(&lzma.stderr)
    );
    archives.push(("LZMA".into(), lzma.stdout));
    for (method, bytes) in archives {
        let r = run(&bytes);
        assert_eq!(r.summary["status"], "accepted", "{method}: {:?}", r.summary);
        assert_eq!(r.rows[0]["text"], "packed", "{method}");
    }
}

#[test]
fn an_unsupported_compression_method_is_named() {
    let mut bytes = zip_bytes_with(
        &[("sms/m.csv", b"TELRN_LONG;TEXT\n79031234567;x\n")],
        stored(),
    );
    // Method 98 (PPMd) in the local and central headers.
    let (locals, centrals) = headers(&bytes);
    for at in locals
        .iter()
        .map(|l| l + 8)
        .chain(centrals.iter().map(|c| c + 10))
    {
        bytes[at..at + 2].copy_from_slice(&98u16.to_le_bytes());
    }
    let r = run(&bytes);
    let message = rejected(&r, "NOT_A_ZIP");
    assert!(
        message.contains("98") || message.to_lowercase().contains("ppmd"),
        "{message}"
    );
    assert!(message.contains("BZIP2"), "{message}");
}

#[test]
fn macos_and_windows_metadata_entries_are_ignored() {
    let csv: &[u8] = b"TELRN_LONG;TEXT\n79031234567;from a Mac\n";
    let bytes = zip_bytes(&[
        ("sms/m.csv", csv),
        ("sms/._m.csv", b"\x00\x05\x16\x07 AppleDouble"),
        ("._m.csv", b"\x00\x05\x16\x07"),
        ("__MACOSX/sms/._m.csv", b"\x00\x05\x16\x07"),
        (".DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("sms/Thumbs.db", b"\xd0\xcf"),
        ("desktop.ini", b"[.ShellClassInfo]"),
    ]);
    let r = run(&bytes);
    assert_eq!(r.summary["status"], "accepted", "{:?}", r.summary);
    assert_eq!(r.rows[0]["text"], "from a Mac");
}
