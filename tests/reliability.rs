//! SPEC §8's promises under stress: `kill -9` at random moments while archives
//! stream in, and many FTP sessions at once. Each test checks the outcome from
//! the queue and the results files, not from the server's word.
//!
//! Counts are small by default so that CI stays fast; the full runs:
//!   SMSDROP_KILL_CYCLES=200 cargo test --release --test reliability -- --nocapture

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use serde_json::Value;

/// An archive of `rows` rows, every `bad`-th with an invalid number.
fn plain_archive(rows: usize, bad: usize) -> (Vec<u8>, usize) {
    let mut text = String::from("TELRN_LONG;TEXT\n");
    let mut accepted = 0;
    for i in 0..rows {
        if bad > 0 && i % bad == bad - 1 {
            text.push_str(&format!("12345;bad row {i}\n"));
        } else {
            text.push_str(&format!("7903{:07};message {i}\n", i % 10_000_000));
            accepted += 1;
        }
    }
    (zip_bytes(&[("sms/m.csv", text.as_bytes())]), accepted)
}

/// `<login>_<YYYYMMDDhhmmss>` for the n-th second after 2026-11-23 00:00:00.
fn batch_name(login: &str, n: i64) -> String {
    let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        + chrono::Duration::seconds(n);
    format!("{login}_{}", t.format("%Y%m%d%H%M%S"))
}

fn count_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift: reproducible "random" moments.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Kills the server with SIGKILL at pseudo-random moments while a stream of
/// small and large archives lands, restarts it each time, and then proves
/// from the queue and the results files that every archive was processed
/// exactly once, whole: no archive lost, none queued twice, no torn file.
#[test]
fn kill_9_at_random_moments_loses_nothing_and_doubles_nothing() {
    let cycles = count_env("SMSDROP_KILL_CYCLES", 20);
    let mut env = Env::new();
    let mut expected: BTreeMap<String, (usize, usize)> = BTreeMap::new(); // batch -> (rows, accepted)
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut n: i64 = 0;
    let mut interrupted = 0;
    // Every other run inserts the rows while the archive is read (the kill
    // then lands inside an open transaction with rows in it), the others
    // spool them first; a release build decides by speed, the debug build
    // would always spool.
    let restart = |env, cycle: usize| {
        let pipeline = if cycle.is_multiple_of(2) {
            "always"
        } else {
            "never"
        };
        Server::start_opts(
            env,
            Options {
                queue_extra: format!("pipeline = \"{pipeline}\"\n"),
                ..Options::default()
            },
        )
    };
    let mut server = restart(env, 0);
    let home = server.home("guest");
    for cycle in 0..cycles {
        // A few archives per cycle, now and then a large one.
        for _ in 0..3 {
            n += 1;
            let rows = if next(&mut seed).is_multiple_of(4) {
                20_000
            } else {
                1 + (next(&mut seed) % 50) as usize
            };
            let (bytes, accepted) = plain_archive(rows, 7);
            let batch = batch_name("guest", n);
            land(&home, &format!("{batch}.zip"), &bytes);
            expected.insert(batch, (rows, accepted));
        }
        std::thread::sleep(Duration::from_millis(20 + next(&mut seed) % 400));
        env = server.kill9();
        // An archive in work/ means the kill caught one being processed.
        let caught = std::fs::read_dir(env.path("state/work/guest"))
            .map(|d| d.count())
            .unwrap_or(0);
        interrupted += usize::from(caught > 0);
        eprintln!(
            "cycle {cycle}: killed after {} archives, mid-archive: {}",
            expected.len(),
            caught > 0
        );
        server = restart(env, cycle + 1);
    }
    // Let the last one finish everything.
    let deadline = Instant::now() + Duration::from_secs(120);
    let results = home.join("results");
    loop {
        let done = expected
            .keys()
            .filter(|b| results.join(format!("{b}.json")).exists())
            .count();
        if done == expected.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {} archives have results",
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, env) = server.stop();
    assert_eq!(code, 0);
    eprintln!("{interrupted} of {cycles} kills caught an archive mid-processing");
    assert!(
        interrupted > 0,
        "no kill hit an archive being processed: the test proves nothing"
    );

    // The results files: whole JSON, and a CSV with one line per row.
    for (batch, (rows, accepted)) in &expected {
        let json: Value =
            serde_json::from_slice(&std::fs::read(results.join(format!("{batch}.json"))).unwrap())
                .unwrap_or_else(|e| panic!("{batch}.json is torn: {e}"));
        assert_eq!(json["rows"], *rows as u64, "{batch}");
        assert_eq!(json["accepted"], *accepted as u64, "{batch}");
        assert!(json["error"].is_null(), "{batch}: {json}");
        let csv = std::fs::read_to_string(results.join(format!("{batch}.csv"))).unwrap();
        assert_eq!(csv.lines().count(), rows + 1, "{batch}.csv is torn");
    }
    // Nothing answered DUPLICATE_BATCH (a re-run after a crash must finish the
    // first run, not reject its own archive), and no part file is left.
    for entry in std::fs::read_dir(&results).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains(".duplicate."), "{name}");
        assert!(!name.starts_with('.'), "left over: {name}");
    }
    // The queue: exactly the accepted rows of every archive, once.
    let mut per_batch: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    for m in queue_messages(&env.path("smsdrop.toml")) {
        let id = m["message_id"].as_str().unwrap().to_owned();
        let batch = id.rsplit_once(':').unwrap().0.to_owned();
        assert!(ids.insert(id.clone()), "{id} queued twice");
        *per_batch.entry(batch).or_default() += 1;
    }
    for (batch, (_, accepted)) in &expected {
        assert_eq!(
            per_batch.get(batch).copied().unwrap_or(0),
            *accepted,
            "{batch}"
        );
    }
    assert_eq!(per_batch.len(), expected.len());
    // Every archive left the customer's folder and the work folder.
    let left: Vec<_> = std::fs::read_dir(env.path("spool/guest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "results")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// 50 FTP sessions at once, 5 accounts, 1,000 archives in all: none refused,
/// each processed exactly once, and each session's archives processed in the
/// order it uploaded them.
#[test]
fn fifty_sessions_upload_a_thousand_archives() {
    let (accounts, sessions_per_account, per_session): (usize, usize, usize) = (5, 10, 20);
    let mut extra_accounts = String::new();
    for a in 1..accounts {
        extra_accounts.push_str(&format!(
            "\n[[accounts]]\nlogin = \"acct{a}\"\npassword_hash = \"{HASH}\"\nsenders = [\"TESTSMS\"]\n"
        ));
    }
    let server = Server::start_opts(
        Env::new(),
        Options {
            ftp_extra:
                "max_sessions = 100\nmax_sessions_per_ip = 60\nmax_unauthenticated_per_ip = 60\n"
                    .into(),
            passive_span: 200,
            extra: &extra_accounts,
            ..Options::default()
        },
    );
    let script = r#"
import ftplib, io, sys, threading, time, zipfile, datetime
port, accounts, sessions, per = (int(a) for a in sys.argv[1:5])
logins = ["guest"] + [f"acct{a}" for a in range(1, accounts)]
base = datetime.datetime(2026, 11, 23)
def archive():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("sms/m.csv", "TELRN_LONG;TEXT\n" + "".join(f"7903123456{i};hello {i}\n" for i in range(5)))
    return buf.getvalue()
data = archive()
errors = []
def session(login, s):
    try:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=60)
        ftp.login(login, "guest")
        for i in range(per):
            name = (base + datetime.timedelta(seconds=s * 1000 + i)).strftime(f"{login}_%Y%m%d%H%M%S.zip")
            ftp.storbinary("STOR " + name, io.BytesIO(data))
        ftp.quit()
    except Exception as e:
        errors.append(f"{login}/{s}: {e!r}")
threads = [threading.Thread(target=session, args=(login, s)) for login in logins for s in range(sessions)]
start = time.time()
for t in threads: t.start()
for t in threads: t.join()
print(f"{time.time() - start:.2f}")
for e in errors: print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
"#;
    let start = Instant::now();
    let args = [
        server.port as usize,
        accounts,
        sessions_per_account,
        per_session,
    ]
    .map(|n| n.to_string());
    let uploads_secs = python(script, &args).trim().to_owned();
    let total = accounts * sessions_per_account * per_session;
    let logins: Vec<String> = std::iter::once("guest".to_owned())
        .chain((1..accounts).map(|a| format!("acct{a}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: usize = logins
            .iter()
            .map(|l| {
                std::fs::read_dir(server.home(l).join("results"))
                    .unwrap()
                    .filter(|e| {
                        e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .ends_with(".json")
                    })
                    .count()
            })
            .sum();
        if done == total {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {total} processed");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{total} archives over {} sessions: uploads took {uploads_secs} s, all results after {:.1} s",
        accounts * sessions_per_account,
        start.elapsed().as_secs_f64()
    );
    let (_, metrics) = http_get(server.http_port, "/metrics");
    assert_eq!(
        sample_value(
            &metrics,
            "smsdrop_sessions_refused_total",
            &["cap=\"per_ip\""]
        ),
        Some(0.0)
    );
    let (code, env) = server.stop();
    assert_eq!(code, 0);

    // Exactly once: one batch record and five messages per archive.
    let db = rusqlite::Connection::open(env.path("state/queue.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT COUNT(*) FROM batches WHERE status = 'accepted'"),
        total as i64
    );
    assert_eq!(count("SELECT COUNT(*) FROM messages"), 5 * total as i64);
    // Each session's archives in upload order (batches are a rowid table: its
    // rowids are the commit order).
    let mut stmt = db
        .prepare("SELECT batch FROM batches ORDER BY rowid")
        .unwrap();
    let order: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut last: BTreeMap<(String, i64), String> = BTreeMap::new();
    for batch in order {
        let (login, stamp) = batch.rsplit_once('_').unwrap();
        let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S").unwrap();
        let seconds = (t - chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap())
        .num_seconds();
        let key = (login.to_owned(), seconds / 1000);
        if let Some(previous) = last.get(&key) {
            assert!(previous < &batch, "{batch} was processed after {previous}");
        }
        last.insert(key, batch);
    }
}

/// A full disk (simulated with RLIMIT_FSIZE: writes past 1 MiB fail with
/// EFBIG, which SQLite and the results writer see as failed writes): the
/// archive stays in the work folder, nothing is half-queued or half-published,
/// the error is logged and counted; once space is back (the limit lifted with
/// prlimit) the next poll processes it, once.
#[test]
fn a_full_disk_leaves_the_archive_for_a_retry() {
    if !have("prlimit") {
        return;
    }
    let env = Env::new();
    let log = env.path("serve.log");
    let server = Server::start_opts(
        env,
        Options {
            log: Some(log.clone()),
            // Room for a new queue database (64 KiB pages), not for the archive.
            file_size_limit: Some(1 << 20),
            ..Options::default()
        },
    );
    let home = server.home("guest");
    let (bytes, accepted) = plain_archive(20_000, 0);
    land(&home, "guest_20261123070000.zip", &bytes);

    // The failure: counted, logged, the archive kept, no results.
    wait_until("no archive error counted", Duration::from_secs(60), || {
        let (_, metrics) = http_get(server.http_port, "/metrics");
        sample_value(&metrics, "smsdrop_archive_errors_total", &[]).is_some_and(|n| n >= 1.0)
    });
    let work = server.env.path("state/work/guest/guest_20261123070000.zip");
    assert!(work.exists(), "the archive waits in work/");
    let results = home.join("results");
    assert!(!results.join("guest_20261123070000.json").exists());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("archive left for the next poll"), "{text}");

    // Space again: the retry goes through, once.
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("prlimit")
            .args(["--pid", &pid, "--fsize=unlimited"])
            .status()
            .unwrap()
            .success()
    );
    let summary = server.result("guest", "guest_20261123070000");
    assert_eq!(summary["accepted"], accepted as u64);
    assert!(summary["error"].is_null());
    assert_eq!(server.queued(), accepted);
    assert!(!work.exists());
}
