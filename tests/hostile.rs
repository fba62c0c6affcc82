//! A corpus of hostile archives, generated here: zip bombs, nested zips, zip64
//! and size lies, path traversal, symlinks, encryption, truncation, garbage,
//! wrong delimiters, mixed encodings, NUL bytes, huge lines, millions of empty
//! lines, header-only files, duplicate headers, BOMs in odd places, broken
//! templates. Each must get its stable code — from `smsdrop check`, and from the
//! real server, which meanwhile keeps serving another account — with memory
//! bounded.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use serde_json::Value;

/// What a case must give.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Rejected as a whole with this code.
    Archive(&'static str),
    /// Not rejected as a whole, but every row rejected with this code.
    Rows(&'static str),
    /// Nothing to queue and no error (no data rows at all).
    Empty,
    /// Looks hostile, is fine: this many rows accepted.
    Accepted(u64),
}
use Expect::*;

struct Case {
    label: String,
    bytes: Vec<u8>,
    expect: Expect,
}

/// Limits of the corpus's config: small enough to reach without huge files.
const LIMITS: &str = "[limits]\nmax_uncompressed_bytes = 3000000\n";

const TEMPLATE: &str = "message;sourceaddress\nHello #name#;TESTSMS\n";

fn tpl(contacts: &[u8], template: &[u8]) -> Vec<u8> {
    zip_bytes(&[
        ("sms/contacts.csv", contacts),
        ("sms/template.csv", template),
    ])
}

fn plain(text: &[u8]) -> Vec<u8> {
    zip_bytes(&[("sms/m.csv", text)])
}

fn good_template() -> Vec<u8> {
    tpl(b"phone;name\n79031234567;Ivan\n", TEMPLATE.as_bytes())
}

fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_bytes_with(entries, stored())
}

/// Position of the end-of-central-directory record.
fn eocd(zip: &[u8]) -> usize {
    zip.windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x05, 0x06])
        .unwrap()
}

/// Pseudo-random bytes (incompressible).
fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn corpus() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let mut add = |label: &str, bytes: Vec<u8>, expect: Expect| {
        c.push(Case {
            label: label.to_owned(),
            bytes,
            expect,
        })
    };
    let good = good_template();

    // ---- not a zip: garbage, truncation, corruption
    add("empty file", vec![], Archive("NOT_A_ZIP"));
    add(
        "text",
        b"hello, this is not a zip".to_vec(),
        Archive("NOT_A_ZIP"),
    );
    add("noise", noise(4096, 1), Archive("NOT_A_ZIP"));
    add(
        "gzip magic",
        [&[0x1f, 0x8b, 8, 0][..], &noise(200, 2)].concat(),
        Archive("NOT_A_ZIP"),
    );
    add(
        "png magic",
        [&b"\x89PNG\r\n\x1a\n"[..], &noise(200, 3)].concat(),
        Archive("NOT_A_ZIP"),
    );
    add(
        "local header only",
        good[..30].to_vec(),
        Archive("NOT_A_ZIP"),
    );
    add(
        "truncated half",
        good[..good.len() / 2].to_vec(),
        Archive("NOT_A_ZIP"),
    );
    add(
        "truncated EOCD",
        good[..good.len() - 10].to_vec(),
        Archive("NOT_A_ZIP"),
    );
    let mut crc = good.clone();
    patch_u32(&mut crc, 14, 16, |c| c ^ 1);
    add("CRC mismatch", crc, Archive("NOT_A_ZIP"));
    let mut garbage_data = stored_zip(&[("sms/m.csv", b"TELRN_LONG;TEXT\n79031234567;hello\n")]);
    let (locals, _) = headers(&garbage_data);
    // "TELRN_LONG;TEXT\n7903…": the phone's 7 becomes 8, still valid text, so
    // only the CRC at the end of the entry can tell.
    let at = locals[0] + 30 + "sms/m.csv".len() + 16;
    assert_eq!(garbage_data[at], b'7');
    garbage_data[at] = b'8';
    add("stored data corrupted", garbage_data, Archive("NOT_A_ZIP"));
    let mut dir_off = good.clone();
    let e = eocd(&dir_off);
    dir_off[e + 16..e + 20].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    add(
        "central directory offset past the end",
        dir_off,
        Archive("NOT_A_ZIP"),
    );
    let mut zip64_sizes = good.clone();
    patch_u32(&mut zip64_sizes, 22, 24, |_| 0xffff_ffff);
    // Read as the sizes they declare: 4 GiB from a few bytes.
    add(
        "zip64 size marker without zip64 record",
        zip64_sizes,
        Archive("LIMIT_EXCEEDED"),
    );
    let mut lie = plain(&b"TELRN_LONG;TEXT\n79031234567;Hello there\n".repeat(20_000));
    patch_u32(&mut lie, 22, 24, |_| 100);
    add(
        "declared size smaller than the data",
        lie,
        Archive("NOT_A_ZIP"),
    );
    let mut junk_after = good.clone();
    junk_after.extend(noise(100_000, 4));
    add("junk after the archive", junk_after, Archive("NOT_A_ZIP"));

    // ---- limits and bombs
    add(
        "ratio bomb",
        plain(&"7".repeat(2 << 20).into_bytes()),
        Archive("LIMIT_EXCEEDED"),
    );
    add(
        "bomb inside a template archive",
        tpl(&vec![b'1'; 2 << 20], TEMPLATE.as_bytes()),
        Archive("LIMIT_EXCEEDED"),
    );
    let mut total = b"TELRN_LONG;TEXT\n".to_vec();
    for chunk in noise(3_500_000, 5).chunks(60) {
        total.extend(b"79031234567;");
        total.extend(chunk.iter().map(|b| b'a' + b % 26));
        total.push(b'\n');
    }
    add(
        "total inflated size",
        plain(&total),
        Archive("LIMIT_EXCEEDED"),
    );
    let many: Vec<(String, Vec<u8>)> = (0..20).map(|i| (format!("f{i}.txt"), vec![b'x'])).collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    add("20 entries", zip_bytes(&refs), Archive("LIMIT_EXCEEDED"));
    let mut count_lie = good.clone();
    let e = eocd(&count_lie);
    count_lie[e + 8..e + 12].copy_from_slice(&[0xe8, 0x03, 0xe8, 0x03]);
    add(
        "EOCD claims 1000 entries",
        count_lie,
        Archive("LIMIT_EXCEEDED"),
    );
    let mut zip64_count = good.clone();
    let e = eocd(&zip64_count);
    zip64_count[e + 8..e + 12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    // 0xFFFF means "see the zip64 record", which is not there.
    add(
        "EOCD zip64 entry-count marker without zip64 record",
        zip64_count,
        Archive("NOT_A_ZIP"),
    );
    let mut one_mb_line = b"TELRN_LONG;TEXT\n79031234567;".to_vec();
    one_mb_line.extend(noise(1 << 20, 6).iter().map(|b| b'a' + b % 26));
    add(
        "a 1 MB line",
        plain(&one_mb_line),
        Archive("LIMIT_EXCEEDED"),
    );
    let mut open_quote = b"TELRN_LONG;TEXT\n79031234567;\"never closed ".to_vec();
    for chunk in noise(200_000, 7).chunks(50) {
        open_quote.extend(chunk.iter().map(|b| b'a' + b % 26));
        open_quote.push(b'\n');
    }
    add(
        "an open quote running to the end",
        plain(&open_quote),
        Archive("LIMIT_EXCEEDED"),
    );
    let mut empty_lines = b"TELRN_LONG;TEXT\n".to_vec();
    empty_lines.extend(std::iter::repeat_n(b'\n', 3_000_000));
    empty_lines.extend(b"79031234567;after the void\n");
    add(
        "millions of empty lines",
        plain(&empty_lines),
        Archive("LIMIT_EXCEEDED"),
    );
    let mut separators = b"TELRN_LONG;TEXT\n".to_vec();
    separators.extend(";;\r\n".repeat(600_000).into_bytes());
    add(
        "hundreds of thousands of separator-only lines",
        plain(&separators),
        Archive("LIMIT_EXCEEDED"),
    );

    // ---- nesting and layout
    add(
        "a zip inside the zip",
        zip_bytes(&[("inner.zip", &good)]),
        Archive("UNKNOWN_LAYOUT"),
    );
    add(
        "a zip posing as contacts.csv",
        tpl(&good, TEMPLATE.as_bytes()),
        Archive("BAD_ENCODING"),
    );
    add("no entries", zip_bytes(&[]), Archive("UNKNOWN_LAYOUT"));
    add(
        "folders only",
        zip_bytes(&[("sms/", b""), ("data/", b"")]),
        Archive("UNKNOWN_LAYOUT"),
    );
    add(
        "template without contacts",
        zip_bytes(&[("sms/template.csv", TEMPLATE.as_bytes())]),
        Archive("UNKNOWN_LAYOUT"),
    );
    add(
        "contacts without template",
        zip_bytes(&[("sms/contacts.csv", b"phone\n79031234567\n")]),
        Archive("UNKNOWN_LAYOUT"),
    );
    add(
        "two message files",
        zip_bytes(&[
            ("a.csv", b"TELRN_LONG;TEXT\n"),
            ("b.csv", b"TELRN_LONG;TEXT\n"),
        ]),
        Archive("UNKNOWN_LAYOUT"),
    );
    add(
        "only a picture",
        zip_bytes(&[("photo.png", &noise(100, 8))]),
        Archive("UNKNOWN_LAYOUT"),
    );

    // ---- names and entry kinds
    for (label, name) in [
        ("parent traversal", "../m.csv"),
        ("absolute path", "/etc/m.csv"),
        ("traversal inside", "sms/../../m.csv"),
        ("drive letter", "C:/m.csv"),
        ("backslash traversal", "..\\m.csv"),
    ] {
        add(
            label,
            zip_bytes(&[(name, b"TELRN_LONG;TEXT\n79031234567;x\n")]),
            Archive("UNSAFE_ENTRY_NAME"),
        );
    }
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.add_symlink("sms/m.csv", "/etc/passwd", deflated())
        .unwrap();
    add(
        "symlink entry",
        w.finish().unwrap().into_inner(),
        Archive("UNSAFE_ENTRY_NAME"),
    );
    let mut dup = stored_zip(&[
        ("sms/m.csv", b"TELRN_LONG;TEXT\n"),
        ("sms/n.csv", b"TELRN_LONG;TEXT\n"),
    ]);
    for i in 0..dup.len() - 9 {
        if &dup[i..i + 9] == b"sms/n.csv" {
            dup[i + 4] = b'm';
        }
    }
    add("the same name twice", dup, Archive("UNSAFE_ENTRY_NAME"));
    let mut enc = good.clone();
    patch_u32(&mut enc, 6, 8, |flags| flags | 1);
    add(
        "encrypted template archive",
        enc,
        Archive("ENCRYPTED_ARCHIVE"),
    );
    let mut enc_plain = plain(b"TELRN_LONG;TEXT\n79031234567;x\n");
    patch_u32(&mut enc_plain, 6, 8, |flags| flags | 1);
    add(
        "encrypted plain archive",
        enc_plain,
        Archive("ENCRYPTED_ARCHIVE"),
    );

    // ---- encodings
    add(
        "invalid UTF-8",
        plain(b"TELRN_LONG;TEXT\n79031234567;caf\xe9\n"),
        Archive("BAD_ENCODING"),
    );
    add(
        "UTF-8 then windows-1251",
        plain(
            &[
                &b"TELRN_LONG;TEXT\n79031234567;\xd0\x9f\xd1\x80\xd0\xb8\n79031234567;"[..],
                b"\xcf\xf0\xe8\n",
            ]
            .concat(),
        ),
        Archive("BAD_ENCODING"),
    );
    add(
        "NUL in text",
        plain(b"TELRN_LONG;TEXT\n79031234567;a\0b\n"),
        Archive("BAD_ENCODING"),
    );
    add(
        "NUL in header",
        plain(b"TELRN_LONG\0;TEXT\n"),
        Archive("BAD_ENCODING"),
    );
    add(
        "overlong UTF-8",
        plain(b"TELRN_LONG;TEXT\n79031234567;\xc0\xaf\n"),
        Archive("BAD_ENCODING"),
    );
    add(
        "lone continuation byte",
        plain(b"TELRN_LONG;TEXT\n79031234567;\x80\n"),
        Archive("BAD_ENCODING"),
    );
    add(
        "UTF-16 text without BOM",
        plain(
            &"TELRN_LONG;TEXT\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<_>>(),
        ),
        Archive("BAD_ENCODING"),
    );
    add(
        "invalid UTF-8 in template",
        tpl(
            b"phone;name\n79031234567;x\n",
            b"message;sourceaddress\nHi \xff;TESTSMS\n",
        ),
        Archive("BAD_ENCODING"),
    );

    // ---- delimiters, headers, BOMs
    add(
        "comma-separated contacts",
        tpl(b"phone,name\n79031234567,Ivan\n", TEMPLATE.as_bytes()),
        Archive("MISSING_COLUMN"),
    );
    add(
        "tab-separated contacts",
        tpl(b"phone\tname\n79031234567\tIvan\n", TEMPLATE.as_bytes()),
        Archive("MISSING_COLUMN"),
    );
    add(
        "comma-separated template",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message,sourceaddress\nHi,TESTSMS\n",
        ),
        Archive("MISSING_COLUMN"),
    );
    add(
        "no phone column",
        tpl(b"name\nIvan\n", TEMPLATE.as_bytes()),
        Archive("MISSING_COLUMN"),
    );
    add(
        "duplicate phone header",
        tpl(
            b"phone;phone;name\n79031234567;79031234567;Ivan\n",
            TEMPLATE.as_bytes(),
        ),
        Archive("MISSING_COLUMN"),
    );
    add(
        "BOM twice",
        tpl(
            "\u{feff}\u{feff}phone;name\n79031234567;Ivan\n".as_bytes(),
            TEMPLATE.as_bytes(),
        ),
        Accepted(1),
    );
    add(
        "BOM before a header name",
        tpl(
            "phone;\u{feff}name\n79031234567;Ivan\n".as_bytes(),
            TEMPLATE.as_bytes(),
        ),
        Accepted(1),
    );
    add(
        "BOM at the start of a data line",
        plain("TELRN_LONG;TEXT\n\u{feff}79031234567;hi\n".as_bytes()),
        Rows("INVALID_PHONE"),
    );
    add(
        "contacts header only",
        tpl(b"phone;name\n", TEMPLATE.as_bytes()),
        Empty,
    );
    add("plain header only", plain(b"TELRN_LONG;TEXT\n"), Empty);
    add(
        "empty contacts file",
        tpl(b"", TEMPLATE.as_bytes()),
        Archive("MISSING_COLUMN"),
    );
    add(
        "empty template file",
        tpl(b"phone;name\n79031234567;Ivan\n", b""),
        Archive("MISSING_COLUMN"),
    );

    // ---- template values
    // Not a column: kept literally (SPEC §3.1).
    add(
        "unknown placeholder",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress\nHi #nobody#;TESTSMS\n",
        ),
        Accepted(1),
    );
    add(
        "two template rows",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress\nA;TESTSMS\nB;TESTSMS\n",
        ),
        Archive("BAD_TEMPLATE"),
    );
    add(
        "sender too long",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress\nHi;ABCDEFGHIJKLMNOP\n",
        ),
        Archive("INVALID_SENDER"),
    );
    add(
        "sender not approved",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress\nHi;OTHER\n",
        ),
        Archive("SENDER_NOT_ALLOWED"),
    );
    add(
        "negative validity",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress;validity\nHi;TESTSMS;-5\n",
        ),
        Archive("INVALID_VALIDITY"),
    );
    add(
        "validity not a number",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress;validity\nHi;TESTSMS;soon\n",
        ),
        Archive("INVALID_VALIDITY"),
    );
    add(
        "impossible senddate",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress;senddate\nHi;TESTSMS;2026-13-45T25:61:00\n",
        ),
        Archive("INVALID_SENDDATE"),
    );
    add(
        "localtime 2",
        tpl(
            b"phone;name\n79031234567;Ivan\n",
            b"message;sourceaddress;localtime\nHi;TESTSMS;2\n",
        ),
        Archive("INVALID_LOCALTIME"),
    );

    // ---- rows
    add(
        "every phone invalid",
        plain(b"TELRN_LONG;TEXT\n12345;a\n+0;b\n89031234567;c\n"),
        Rows("INVALID_PHONE"),
    );
    add(
        "every text empty",
        plain(b"TELRN_LONG;TEXT\n79031234567;\n79031234568;   \n"),
        Rows("EMPTY_TEXT"),
    );
    add(
        "phones with letters",
        tpl(b"phone;name\n7903123456a;x\nabc;y\n", TEMPLATE.as_bytes()),
        Rows("INVALID_PHONE"),
    );
    c
}

/// Peak RSS of every child this process has waited for, in KiB.
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage fills the struct we pass and reads nothing else.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage.ru_maxrss
    }
}

/// `guest_20261123HHMMSS` for the i-th case.
fn batch(i: usize) -> String {
    format!("guest_2026112307{:02}{:02}", i / 60, i % 60)
}

fn verify(label: &str, expect: Expect, summary: &Value, rows: Option<&[Value]>) {
    match expect {
        Archive(code) => {
            assert_eq!(summary["status"], "rejected", "{label}: {summary}");
            assert_eq!(summary["error"]["code"], code, "{label}: {summary}");
            let message = summary["error"]["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "{label}: no message");
        }
        Rows(code) => {
            assert_eq!(summary["status"], "rejected", "{label}: {summary}");
            assert!(summary["error"].is_null(), "{label}: {summary}");
            assert_eq!(summary["accepted"], 0, "{label}: {summary}");
            if let Some(rows) = rows {
                assert!(!rows.is_empty(), "{label}: no rows");
                for row in rows {
                    assert_eq!(row["code"], code, "{label}: {row}");
                }
            }
        }
        Accepted(n) => {
            assert_eq!(summary["status"], "accepted", "{label}: {summary}");
            assert_eq!(summary["accepted"], n, "{label}: {summary}");
        }
        Empty => {
            assert_eq!(summary["status"], "rejected", "{label}: {summary}");
            assert!(summary["error"].is_null(), "{label}: {summary}");
            assert_eq!(summary["rows"], 0, "{label}: {summary}");
        }
    }
}

#[test]
fn every_hostile_archive_gets_its_code_with_bounded_memory() {
    let corpus = corpus();
    assert!(corpus.len() >= 60, "{} cases", corpus.len());
    let env = Env::new();
    let config = env.config(LIMITS, "");
    let mut wrong = Vec::new();
    for (i, case) in corpus.iter().enumerate() {
        let archive = env.archive(&format!("{}.zip", batch(i)), &case.bytes);
        let out = check(&config, &archive, &[]);
        assert!(
            out.code == 0 || out.code == 1,
            "{}: exit {}: {}",
            case.label,
            out.code,
            out.stderr
        );
        let (rows, summary) = out.jsonl();
        let label = case.label.clone();
        let expect = case.expect;
        if std::panic::catch_unwind(move || verify(&label, expect, &summary, Some(&rows))).is_err()
        {
            wrong.push(case.label.clone());
        }
    }
    assert!(wrong.is_empty(), "wrong answers for: {wrong:?}");
    let peak = children_peak_rss_kib();
    eprintln!(
        "{} hostile archives checked; peak RSS of any check: {} KiB",
        corpus.len(),
        peak
    );
    assert!(peak < 64 * 1024, "a check used {peak} KiB");
}

#[test]
fn the_server_rejects_the_corpus_and_keeps_serving_another_account() {
    if !have("curl") {
        return;
    }
    let corpus = corpus();
    let server = Server::start_with(Env::new(), LIMITS, "");
    let home = server.home("guest");
    for (i, case) in corpus.iter().enumerate() {
        land(&home, &format!("{}.zip", batch(i)), &case.bytes);
    }
    // Meanwhile another account uploads and gets its answer.
    let file = server.local("other_20261123070000.zip", &sample("meanwhile"));
    let started = Instant::now();
    let other = format!("ftp://other:guest@127.0.0.1:{}/", server.port);
    assert_eq!(curl(&["-T", file.to_str().unwrap(), &other]), 0);
    assert_eq!(
        server.result("other", "other_20261123070000")["accepted"],
        1
    );
    eprintln!(
        "the other account's answer came after {:?}",
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, case) in corpus.iter().enumerate() {
        let path = home.join("results").join(format!("{}.json", batch(i)));
        while !path.exists() {
            assert!(Instant::now() < deadline, "{}: no result", case.label);
            std::thread::sleep(Duration::from_millis(50));
        }
        let summary: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        verify(&case.label, case.expect, &summary, None);
    }
    // The server's own high-water mark.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let hwm: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("server peak RSS after the corpus: {hwm} KiB");
    assert!(hwm < 128 * 1024, "the server used {hwm} KiB");
    assert!(Path::new(&home).join("results").is_dir());
}
