//! Runs one archive through the whole pipeline (`process`), as the poller and
//! `check` do, and checks the summary's own arithmetic.

use std::path::PathBuf;
use std::sync::LazyLock;

use chrono::{TimeZone, Utc};
use smsdrop::config::Config;
use smsdrop::intake::error::Rejection;
use smsdrop::intake::message::RowOutcome;
use smsdrop::intake::{Job, RowSink, process};
use smsdrop::intake::zone::NumberZones;

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    let mut config = Config::embedded_default().expect("embedded config");
    // Small limits: fast executions, and the limit paths get exercised.
    config.limits.max_uncompressed_bytes = 4 << 20;
    config.limits.max_line_bytes = 4096;
    config
});
static ZONES: LazyLock<NumberZones> = LazyLock::new(|| NumberZones::new(None));
static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    tempfile::tempdir_in(base).expect("temp dir")
});

struct Count(u64, u64);

impl RowSink for Count {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        match outcome {
            RowOutcome::Accepted(_) => self.0 += 1,
            RowOutcome::Rejected { .. } => self.1 += 1,
        }
        Ok(())
    }
}

pub fn run_archive(bytes: &[u8]) {
    let name = "guest_20261123070000.zip";
    let path: PathBuf = DIR.path().join(name);
    std::fs::write(&path, bytes).expect("write the input");
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap();
    let job = Job {
        path: &path,
        file_name: name,
        account: &CONFIG.accounts[0],
        limits: CONFIG.limits.intake(),
        zones: &*ZONES,
        now,
        received_at: now,
        seen: None,
    };
    let mut count = Count(0, 0);
    let report = process(&job, &mut count);
    let s = &report.summary;
    if s.error.is_none() {
        assert_eq!(s.accepted, count.0, "accepted rows as counted by the sink");
        assert_eq!(s.rejected, count.1, "rejected rows as counted by the sink");
        assert_eq!(s.rows, s.accepted + s.rejected);
    } else {
        assert_eq!(s.accepted, 0);
    }
}

#[allow(dead_code)] // not every target builds zips
/// A zip with the given entries, stored (so the fuzzer's bytes reach the CSV
/// parsers unchanged).
pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}
