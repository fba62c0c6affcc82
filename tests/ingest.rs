//! `smsdrop ingest` and `smsdrop queue`: real results files and a real queue —
//! every test runs on both back-ends, a SQLite file and a PostgreSQL database
//! (`SMSDROP_TEST_PG_URL`, which `.ci/run` sets after starting a throwaway
//! server; without it the PostgreSQL variants say so and skip, except in CI).

mod common;

use common::*;
use serde_json::Value;

#[derive(Clone)]
enum Backend {
    /// With `[queue] pipeline` set to this.
    Sqlite(&'static str),
    /// A connection string to a database of the test's own.
    Postgres(String),
}

impl Backend {
    /// A fresh database on the test server, or `None` (skip) without one.
    fn postgres() -> Option<Backend> {
        test_database().map(Backend::Postgres)
    }

    fn queue_section(&self, root: &str) -> String {
        match self {
            Backend::Sqlite(pipeline) => {
                format!("[queue]\npath = \"{root}/state/queue.db\"\npipeline = \"{pipeline}\"")
            }
            Backend::Postgres(url) => {
                format!("[queue]\nbackend = \"postgres\"\nurl = \"{url}\"")
            }
        }
    }
}

/// Runs each listed test body once per back-end, SQLite with the rows
/// inserted while the archive is read (`always`), after (`never`), or as
/// the reading speed decides (`auto`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite("auto")) } )*
        }
        mod sqlite_pipelined {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite("always")) } )*
        }
        mod sqlite_spooled {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite("never")) } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(backend) = super::Backend::postgres() {
                    super::$name(backend)
                }
            } )*
        }
    };
}

on_both_backends!(
    an_archive_is_queued_once_with_its_results,
    a_rejected_archive_queues_nothing_and_may_be_uploaded_again,
    results_csv_is_in_the_account_encoding,
    queue_list_filters_by_batch,
    login_mismatch_writes_no_queue_rows,
    a_run_that_died_after_its_commit_is_finished_not_repeated,
);

struct Spool {
    env: Env,
    config: std::path::PathBuf,
    backend: Backend,
}

impl Spool {
    fn new(backend: Backend, account_extra: &str) -> Spool {
        Spool::with_queue(backend, account_extra, None)
    }

    /// `queue`: the `[queue]` section instead of the back-end's own.
    fn with_queue(backend: Backend, account_extra: &str, queue: Option<String>) -> Spool {
        let env = Env::new();
        let root = env.dir.path().to_str().unwrap().to_owned();
        let queue = queue.unwrap_or_else(|| backend.queue_section(&root));
        let config = env.config(
            &format!("[spool]\ndir = \"{root}/spool\"\nstate_dir = \"{root}/state\"\n{queue}"),
            account_extra,
        );
        // No state folder yet: smsdrop creates what it needs.
        Spool {
            env,
            config,
            backend,
        }
    }

    fn ingest(&self, name: &str, bytes: &[u8]) -> (i32, Value) {
        let archive = self.env.archive(name, bytes);
        let out = smsdrop(&[
            "ingest",
            archive.to_str().unwrap(),
            "--config",
            self.config.to_str().unwrap(),
        ]);
        assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
        (out.code, serde_json::from_str(out.stdout.trim()).unwrap())
    }

    fn queue(&self, args: &[&str]) -> String {
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", self.config.to_str().unwrap()]);
        let out = smsdrop(&all);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    }

    fn listed(&self, batch: Option<&str>) -> Vec<Value> {
        let mut args = vec!["list", "--format", "jsonl"];
        if let Some(b) = batch {
            args.extend_from_slice(&["--batch", b]);
        }
        self.queue(&args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn results(&self, file: &str) -> Option<Vec<u8>> {
        std::fs::read(self.env.path("spool/guest/results").join(file)).ok()
    }
}

const TEMPLATE: &str = "message;sourceaddress\nПривет, #name#;TESTSMS\n";

fn an_archive_is_queued_once_with_its_results(backend: Backend) {
    let spool = Spool::new(backend, "");
    let bytes = template_zip(
        "phone;name\n79031234567;Ann\n123;Bob\n79161234567;Cid\n",
        TEMPLATE,
    );
    let (code, summary) = spool.ingest("guest_20261123070000.zip", &bytes);
    assert_eq!(code, 0);
    assert_eq!(summary["status"], "partially_accepted");
    assert_eq!(summary["accepted"], 2);

    let messages = spool.listed(None);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["message_id"], "guest_20261123070000:2");
    assert_eq!(messages[0]["phone"], "79031234567");
    assert_eq!(messages[0]["text"], "Привет, Ann");
    assert_eq!(messages[0]["status"], "queued");
    assert_eq!(messages[1]["line"], 4);
    // The keys of `check --format jsonl` (SPEC §9), which a stored message has
    // empty: it was accepted.
    for key in ["code", "message"] {
        assert!(
            messages[0].get(key).is_some_and(Value::is_null),
            "{key}: {}",
            messages[0]
        );
    }

    let json: Value =
        serde_json::from_slice(&spool.results("guest_20261123070000.json").unwrap()).unwrap();
    assert_eq!(json["status"], "partially_accepted");
    assert_eq!(json["rows"], 3);
    let csv = String::from_utf8(spool.results("guest_20261123070000.csv").unwrap()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "line;phone;status;code;error;message_id;send_at;expires_at;timezone;segments"
    );
    assert!(lines[1].starts_with("2;79031234567;accepted;;;guest_20261123070000:2;"));
    assert!(
        lines[2].starts_with("3;123;rejected;INVALID_PHONE;"),
        "{}",
        lines[2]
    );
    assert_eq!(lines.len(), 4);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(spool.env.path("spool/guest/results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same archive again: DUPLICATE_BATCH, queue and first result untouched.
    let first = spool.results("guest_20261123070000.json").unwrap();
    let (code, again) = spool.ingest("guest_20261123070000.zip", &bytes);
    assert_eq!(code, 1);
    assert_eq!(again["error"]["code"], "DUPLICATE_BATCH");
    assert_eq!(spool.listed(None).len(), 2);
    assert_eq!(spool.results("guest_20261123070000.json").unwrap(), first);
    let dup: Value = serde_json::from_slice(
        &spool
            .results("guest_20261123070000.duplicate.json")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(dup["error"]["code"], "DUPLICATE_BATCH");

    // check (a dry run) sees the duplicate too.
    let archive = spool.env.path("guest_20261123070000.zip");
    let out = check(&spool.config, &archive, &[]);
    assert_eq!(out.jsonl().1["error"]["code"], "DUPLICATE_BATCH");

    let stats = spool.queue(&["stats"]);
    assert!(stats.contains("batches:   1"), "{stats}");
    assert!(stats.contains("queued    2"), "{stats}");
}

fn a_rejected_archive_queues_nothing_and_may_be_uploaded_again(backend: Backend) {
    let spool = Spool::new(backend, "");
    // Rows are read and built — and, pipelined, inserted — before the damage
    // at the end of the entry is found: enough of them to be handed over.
    let mut contacts = String::from("phone;name\n");
    for i in 0..20_000 {
        contacts.push_str(&format!("7903{:07};Ann\n", i));
    }
    let mut damaged = template_zip(&contacts, TEMPLATE);
    patch_u32(&mut damaged, 14, 16, |c| c ^ 1);
    let (code, summary) = spool.ingest("guest_20261123070000.zip", &damaged);
    assert_eq!(code, 1);
    assert_eq!(summary["error"]["code"], "NOT_A_ZIP");
    assert!(spool.listed(None).is_empty());
    assert!(spool.results("guest_20261123070000.csv").is_none());
    assert!(spool.results("guest_20261123070000.json").is_some());

    let good = template_zip("phone;name\n79031234567;Ann\n79161234567;Bob\n", TEMPLATE);
    let (code, summary) = spool.ingest("guest_20261123070000.zip", &good);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(spool.listed(None).len(), 2);
}

fn results_csv_is_in_the_account_encoding(backend: Backend) {
    let spool = Spool::new(backend, "encoding = \"windows-1251\"");
    let (contacts, _, _) =
        encoding_rs::WINDOWS_1251.encode("phone;name\n79031234567;Иван\nтел12;Пётр\n");
    let (template, _, _) = encoding_rs::WINDOWS_1251.encode(TEMPLATE);
    let bytes = zip_bytes(&[
        ("sms/contacts.csv", &contacts),
        ("sms/template.csv", &template),
    ]);
    let (code, _) = spool.ingest("guest_20261123070000.zip", &bytes);
    assert_eq!(code, 0);
    assert_eq!(spool.listed(None)[0]["text"], "Привет, Иван");
    let csv = spool.results("guest_20261123070000.csv").unwrap();
    assert!(std::str::from_utf8(&csv).is_err(), "not UTF-8");
    let (text, _, bad) = encoding_rs::WINDOWS_1251.decode(&csv);
    assert!(!bad);
    assert!(text.contains("3;тел12;rejected;INVALID_PHONE"), "{text}");
}

fn queue_list_filters_by_batch(backend: Backend) {
    let spool = Spool::new(backend, "");
    let a = template_zip("phone;name\n79031234567;A\n", TEMPLATE);
    let b = zip_bytes(&[(
        "m.csv",
        b"TELRN_LONG;TEXT\n79031234567;one\n79161234567;two\n",
    )]);
    spool.ingest("guest_20261123070000.zip", &a);
    spool.ingest("guest_20261123070001.zip", &b);
    assert_eq!(spool.listed(None).len(), 3);
    let only_b = spool.listed(Some("guest_20261123070001"));
    assert_eq!(only_b.len(), 2);
    assert_eq!(only_b[1]["text"], "two");
    let text = spool.queue(&["list", "--batch", "guest_20261123070000"]);
    assert!(
        text.contains("guest_20261123070000:2") && text.contains("79031234567"),
        "{text}"
    );
}

fn login_mismatch_writes_no_queue_rows(backend: Backend) {
    let spool = Spool::new(backend, "");
    let env = &spool.env;
    let archive = env.archive(
        "other_20261123070000.zip",
        &template_zip("phone;name\n79031234567;A\n", TEMPLATE),
    );
    let out = smsdrop(&[
        "ingest",
        archive.to_str().unwrap(),
        "--account",
        "guest",
        "--config",
        spool.config.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    let summary: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(summary["error"]["code"], "LOGIN_MISMATCH");
    assert!(spool.listed(None).is_empty());
}

/// A crash after the queue commit and before the results were published leaves
/// the batch unfinished; the next run publishes the sealed CSV and the JSON from
/// the stored summary instead of answering DUPLICATE_BATCH, and queues nothing.
fn a_run_that_died_after_its_commit_is_finished_not_repeated(backend: Backend) {
    let spool = Spool::new(backend, "");
    let bytes = template_zip("phone;name\n79031234567;Ann\n1;Bob\n", TEMPLATE);
    let (code, first) = spool.ingest("guest_20261123070000.zip", &bytes);
    assert_eq!(code, 0);
    // Recreate the state of a crash right after the commit: results not yet
    // renamed into place, batch not marked finished.
    let results = spool.env.path("spool/guest/results");
    std::fs::rename(
        results.join("guest_20261123070000.csv"),
        results.join(".guest_20261123070000.csv.part"),
    )
    .unwrap();
    std::fs::remove_file(results.join("guest_20261123070000.json")).unwrap();
    match &spool.backend {
        Backend::Sqlite(_) => {
            let db = rusqlite::Connection::open(spool.env.path("state/queue.db")).unwrap();
            db.execute("UPDATE batches SET finished_at = NULL", [])
                .unwrap();
        }
        Backend::Postgres(url) => {
            let mut db = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
            db.execute("UPDATE batches SET finished_at = NULL", &[])
                .unwrap();
        }
    }

    let (code, again) = spool.ingest("guest_20261123070000.zip", &bytes);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["status"], first["status"]);
    assert_eq!(again["processed_at"], first["processed_at"]);
    assert_eq!(spool.listed(None).len(), 1);
    assert!(spool.results("guest_20261123070000.csv").is_some());
    assert!(spool.results("guest_20261123070000.json").is_some());
    assert!(
        spool
            .results("guest_20261123070000.duplicate.json")
            .is_none()
    );
    // Finished now: a third run is a duplicate.
    let (code, third) = spool.ingest("guest_20261123070000.zip", &bytes);
    assert_eq!(code, 1);
    assert_eq!(third["error"]["code"], "DUPLICATE_BATCH");
}

/// TLS to PostgreSQL: with `sslmode=require` the server's certificate must be
/// trusted — by `queue.tls_ca` here (the test CA of `.ci/run`); without it the
/// connection is refused instead of falling back to trusting anything.
#[test]
fn postgres_over_tls_verifies_the_server_certificate() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let Ok(ca) = std::env::var("SMSDROP_TEST_PG_CA") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the TLS test: SMSDROP_TEST_PG_CA is not set"
        );
        eprintln!("SKIPPED: SMSDROP_TEST_PG_CA is not set (a CA for the test server's TLS)");
        return;
    };
    let tls_url = format!("{} sslmode=require", url.replace("sslmode=disable", ""));
    let bytes = template_zip("phone;name\n79031234567;Ann\n", TEMPLATE);

    let trusted = Spool::with_queue(
        Backend::Postgres(tls_url.clone()),
        "",
        Some(format!(
            "[queue]\nbackend = \"postgres\"\nurl = \"{tls_url}\"\ntls_ca = \"{ca}\""
        )),
    );
    let (code, summary) = trusted.ingest("guest_20261123070000.zip", &bytes);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["accepted"], 1);

    let untrusted = Spool::with_queue(
        Backend::Postgres(tls_url.clone()),
        "",
        Some(format!(
            "[queue]\nbackend = \"postgres\"\nurl = \"{tls_url}\""
        )),
    );
    let archive = untrusted.env.archive("guest_20261123070001.zip", &bytes);
    let out = smsdrop(&[
        "ingest",
        archive.to_str().unwrap(),
        "--config",
        untrusted.config.to_str().unwrap(),
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("TLS"), "{}", out.stderr);
}

/// A PostgreSQL queue of schema version 1 (messages keyed by `(batch, line)`)
/// is migrated at start-up to version 2 (keyed by `id = seq << 32 | line`):
/// the stored messages get their keys, and the next archive goes on from there.
#[test]
fn a_postgres_queue_of_schema_1_is_migrated() {
    let Some(url) = test_database() else { return };
    let mut db = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    db.batch_execute(
        "CREATE TABLE smsdrop_schema (version integer NOT NULL);
         INSERT INTO smsdrop_schema VALUES (1);
         CREATE TABLE batches (
             batch text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY,
             account text NOT NULL, status text NOT NULL, format text NOT NULL,
             rows bigint NOT NULL, accepted bigint NOT NULL, rejected bigint NOT NULL,
             received_at timestamptz NOT NULL, processed_at timestamptz NOT NULL,
             summary text NOT NULL, finished_at timestamptz);
         CREATE TABLE messages (
             message_id text NOT NULL, batch text NOT NULL, account text NOT NULL,
             line bigint NOT NULL, phone text NOT NULL, sender text NOT NULL,
             text text NOT NULL, encoding text NOT NULL, segments integer NOT NULL,
             send_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,
             timezone text NOT NULL, status text NOT NULL DEFAULT 'queued',
             PRIMARY KEY (batch, line));
         CREATE INDEX messages_due ON messages (send_at) WHERE status = 'queued';
         INSERT INTO batches (batch, account, status, format, rows, accepted, rejected,
             received_at, processed_at, summary, finished_at)
         VALUES ('guest_20261123060000', 'guest', 'accepted', 'plain', 1, 1, 0,
             now(), now(), '{}', now());
         INSERT INTO messages (message_id, batch, account, line, phone, sender, text,
             encoding, segments, send_at, expires_at, timezone)
         VALUES ('guest_20261123060000:2', 'guest_20261123060000', 'guest', 2,
             '79031234567', 'TESTSMS', 'old', 'gsm7', 1, now(), now(), 'Europe/Moscow');",
    )
    .unwrap();
    let spool = Spool::new(Backend::Postgres(url.clone()), "");
    let (code, _) = spool.ingest(
        "guest_20261123070000.zip",
        &template_zip("phone\n79031234567\n", TEMPLATE),
    );
    assert_eq!(code, 0);
    let version: i32 = db
        .query_one("SELECT max(version) FROM smsdrop_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 2);
    let keys: Vec<(String, i64)> = db
        .query("SELECT message_id, id FROM messages ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        keys,
        [
            ("guest_20261123060000:2".to_owned(), 1 << 32 | 2),
            ("guest_20261123070000:2".to_owned(), 2 << 32 | 2),
        ]
    );
    let listed = spool.listed(None);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["text"], "old");
}
