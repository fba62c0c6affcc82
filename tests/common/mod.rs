//! Helpers for the integration tests: build archives byte by byte, write configs,
//! run the real `smsdrop` binary.
#![allow(dead_code)]

pub mod ctl;
pub mod server;

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Polls `done` every 50 ms until it holds; fails the test with `what` once
/// `limit` has passed.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The account used by most tests, with a known password hash.
pub const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE";

pub fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

pub fn stored() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Stored)
}

/// A zip holding `entries` (name, bytes), deflated.
pub fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_bytes_with(entries, deflated())
}

/// A zip holding `entries` (name, bytes) written with `options`.
pub fn zip_bytes_with(entries: &[(&str, &[u8])], options: SimpleFileOptions) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        if name.ends_with('/') {
            w.add_directory(*name, options).unwrap();
        } else {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

/// A template-format archive's entries.
pub fn template_zip(contacts: &str, template: &str) -> Vec<u8> {
    zip_bytes(&[
        ("sms/contacts.csv", contacts.as_bytes()),
        ("sms/template.csv", template.as_bytes()),
    ])
}

/// Offsets of each local header and central directory header in a zip.
pub fn headers(zip: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let find = |sig: [u8; 4]| -> Vec<usize> {
        zip.windows(4)
            .enumerate()
            .filter(|(_, w)| *w == sig)
            .map(|(i, _)| i)
            .collect()
    };
    (
        find([0x50, 0x4b, 0x03, 0x04]),
        find([0x50, 0x4b, 0x01, 0x02]),
    )
}

/// Sets a little-endian u32 at `local + lo` and `central + co` for every entry.
pub fn patch_u32(zip: &mut [u8], local_off: usize, central_off: usize, value: impl Fn(u32) -> u32) {
    let (locals, centrals) = headers(zip);
    for (base, off) in locals
        .into_iter()
        .map(|b| (b, local_off))
        .chain(centrals.into_iter().map(|b| (b, central_off)))
    {
        let at = base + off;
        let old = u32::from_le_bytes(zip[at..at + 4].try_into().unwrap());
        zip[at..at + 4].copy_from_slice(&value(old).to_le_bytes());
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config with the guest account plus `extra` TOML (sections/accounts),
    /// and `account_extra` lines added to the guest account.
    pub fn config(&self, extra: &str, account_extra: &str) -> PathBuf {
        let text = format!(
            "{extra}\n\n[[accounts]]\nlogin = \"guest\"\npassword_hash = \"{HASH}\"\n\
             senders = [\"TESTSMS\", \"79031234567\"]\n{account_extra}\n"
        );
        let path = self.path("smsdrop.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn archive(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Rows and summary of `--format jsonl`.
    pub fn jsonl(&self) -> (Vec<Value>, Value) {
        let mut lines: Vec<Value> = self
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let last = lines.pop().expect("a summary line");
        (lines, last["summary"].clone())
    }
}

/// Runs smsdrop in a fresh empty folder, so the embedded config's relative
/// `var/` paths never meet a developer's own `var/`.
pub fn smsdrop(args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_smsdrop"))
        .args(args)
        .current_dir(cwd.path())
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every queued message (`smsdrop queue list --format jsonl`).
pub fn queue_messages(config: &Path) -> Vec<Value> {
    let out = smsdrop(&[
        "queue",
        "list",
        "--format",
        "jsonl",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A fresh database on the test PostgreSQL (`SMSDROP_TEST_PG_URL`, which
/// `.ci/run` sets), as a connection string; `None`, saying so, without one —
/// except in CI, which must run these tests.
pub fn test_database() -> Option<String> {
    let Ok(url) = std::env::var("SMSDROP_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the PostgreSQL tests: SMSDROP_TEST_PG_URL is not set"
        );
        eprintln!("SKIPPED: SMSDROP_TEST_PG_URL is not set, no PostgreSQL to test against");
        return None;
    };
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "smsdrop_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls)
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    Some(format!("{url} dbname={name}"))
}

pub const NOW: &str = "2026-11-23T07:00:00Z";

/// `check --format jsonl --now NOW` on `archive` with `config`.
pub fn check(config: &Path, archive: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "check",
        archive.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--format",
        "jsonl",
        "--now",
        NOW,
    ];
    args.extend_from_slice(more);
    smsdrop(&args)
}
