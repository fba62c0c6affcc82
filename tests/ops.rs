//! Running smsdrop as a service: session caps, `/metrics`, `/healthz`, logs,
//! SIGHUP reload, systemd notification and the unit file — each against the
//! real `smsdrop serve`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use serde_json::Value;

fn two_rows_one_bad() -> Vec<u8> {
    zip_bytes(&[(
        "sms/m.csv",
        b"TELRN_LONG;TEXT\n79031234567;hello\n12345;bad number\n",
    )])
}

#[test]
fn metrics_count_archives_rows_logins_and_the_queue() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    let file = server.local("guest_20261123070000.zip", &two_rows_one_bad());
    assert_eq!(
        curl(&["-T", file.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    let result = server.result("guest", "guest_20261123070000");
    assert_eq!(result["status"], "partially_accepted");
    let bad = format!("ftp://guest:wrong@127.0.0.1:{}/", server.port);
    assert_ne!(curl(&["-l", "-o", "/dev/null", &bad]), 0);

    let (status, metrics) = http_get(server.http_port, "/metrics");
    assert_eq!(status, 200);
    let value = |name: &str, labels: &[&str]| {
        sample_value(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{metrics}"))
    };
    assert_eq!(
        value(
            "smsdrop_archives_total",
            &["outcome=\"partially_accepted\"", "code=\"\""]
        ),
        1.0
    );
    assert_eq!(value("smsdrop_rows_total", &["result=\"accepted\""]), 1.0);
    assert_eq!(value("smsdrop_rows_total", &["result=\"rejected\""]), 1.0);
    assert_eq!(value("smsdrop_messages_queued_total", &[]), 1.0);
    assert_eq!(value("smsdrop_queue_depth", &[]), 1.0);
    assert_eq!(value("smsdrop_archive_processing_seconds_count", &[]), 1.0);
    assert_eq!(value("smsdrop_login_failures_total", &[]), 1.0);
    assert_eq!(value("smsdrop_login_bans_total", &[]), 0.0);
    assert_eq!(value("smsdrop_archive_errors_total", &[]), 0.0);
    // libunftp's own metrics share the registry.
    assert!(
        metrics.lines().any(|l| l.starts_with("ftp_")),
        "no libunftp metrics in\n{metrics}"
    );

    // A whole-archive rejection is counted under its code.
    let dup = server.local("guest_20261123070000.zip", &two_rows_one_bad());
    assert_eq!(
        curl(&["-T", dup.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = http_get(server.http_port, "/metrics");
        let dups = sample_value(
            &metrics,
            "smsdrop_archives_total",
            &["code=\"DUPLICATE_BATCH\"", "outcome=\"rejected\""],
        );
        if dups == Some(1.0) {
            assert_eq!(
                sample_value(&metrics, "smsdrop_messages_queued_total", &[]),
                Some(1.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "DUPLICATE_BATCH not counted");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (status, body) = http_get(server.http_port, "/nothing");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn healthz_says_which_part_does_not_answer() {
    let server = Server::start();
    let (status, body) = http_get(server.http_port, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ftp: ok"), "{body}");
    assert!(body.contains("queue: ok"), "{body}");

    // A queue that cannot be read: 503, naming the queue.
    let db = server.env.path("state/queue.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::write(&db, vec![b'x'; 4096]).unwrap();
    let (status, body) = http_get(server.http_port, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ftp: ok"), "{body}");
    assert!(body.contains("queue: FAIL"), "{body}");
}

/// Opens connections from `sources` (loopback addresses) in turn, keeping them
/// open, and returns each one's first reply code.
fn greetings(port: u16, sources: &[&str]) -> Vec<String> {
    let script = r#"
import socket, sys
port = int(sys.argv[1])
held = []
for src in sys.argv[2:]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    print(s.makefile("rb").readline().decode()[:3], flush=True)
    held.append(s)
"#;
    let args: Vec<String> = std::iter::once(port.to_string())
        .chain(sources.iter().map(|s| s.to_string()))
        .collect();
    python(script, &args).lines().map(str::to_owned).collect()
}

#[test]
fn session_caps_answer_421() {
    let server = start_with_caps(3, 2);
    // Two from one address, the third from it is refused; a second address
    // fills the total; a third takes the place of a connection of the first
    // address, which holds the most that have not logged in.
    let codes = greetings(
        server.port,
        &[
            "127.0.0.1",
            "127.0.0.1",
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.3",
        ],
    );
    assert_eq!(codes, ["220", "220", "421", "220", "220"]);
    // Those connections are closed now: places are free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let codes = greetings(server.port, &["127.0.0.1", "127.0.0.1", "127.0.0.4"]);
        if codes == ["220", "220", "220"] {
            break;
        }
        assert!(Instant::now() < deadline, "places not freed: {codes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = http_get(server.http_port, "/metrics");
    assert_eq!(
        sample_value(
            &metrics,
            "smsdrop_sessions_refused_total",
            &["cap=\"per_ip\""]
        ),
        Some(1.0)
    );
    assert!(
        sample_value(&metrics, "smsdrop_sessions_displaced_total", &[]).is_some_and(|n| n >= 1.0)
    );
}

/// A server whose `[ftp]` section carries the given session caps.
fn start_with_caps(total: u32, per_ip: u32) -> Server {
    Server::start_opts(
        Env::new(),
        Options {
            ftp_extra: format!("max_sessions = {total}\nmax_sessions_per_ip = {per_ip}\n"),
            ..Options::default()
        },
    )
}

#[test]
fn json_logs_carry_an_archive_span_and_rust_log_sets_the_level() {
    if !have("curl") {
        return;
    }
    let env = Env::new();
    let log = env.path("serve.log");
    let server = Server::start_opts(
        env,
        Options {
            envs: vec![("SMSDROP_LOG_FORMAT", "json".into())],
            log: Some(log.clone()),
            ..Options::default()
        },
    );
    let file = server.local("guest_20261123070000.zip", &two_rows_one_bad());
    let bytes = std::fs::metadata(&file).unwrap().len();
    assert_eq!(
        curl(&["-T", file.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    server.result("guest", "guest_20261123070000");
    let (code, _env) = server.stop();
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    // A shutdown says when it starts and when it is done.
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    let start = messages.iter().position(|m| m.starts_with("shutting down"));
    let end = messages.iter().position(|m| *m == "stopped");
    assert!(start.is_some() && start < end, "{messages:?}");
    let processed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "archive processed")
        .unwrap_or_else(|| panic!("no 'archive processed' in\n{text}"));
    assert_eq!(processed["level"], "INFO");
    assert_eq!(processed["fields"]["batch"], "guest_20261123070000");
    assert_eq!(processed["fields"]["accepted"], 1);
    let span = &processed["span"];
    assert_eq!(span["name"], "archive");
    assert_eq!(span["account"], "guest");
    assert_eq!(span["file"], "guest_20261123070000.zip");
    assert_eq!(span["bytes"], bytes);

    // RUST_LOG=warn: the info lines are gone, warnings stay.
    let env = Env::new();
    let log = env.path("serve.log");
    let server = Server::start_opts(
        env,
        Options {
            envs: vec![("RUST_LOG", "warn".into())],
            log: Some(log.clone()),
            ..Options::default()
        },
    );
    let file = server.local("guest_20261123070000.zip", &two_rows_one_bad());
    assert_eq!(
        curl(&["-T", file.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    server.result("guest", "guest_20261123070000");
    let bad = format!("ftp://guest:wrong@127.0.0.1:{}/", server.port);
    assert_ne!(curl(&["-l", "-o", "/dev/null", &bad]), 0);
    let (code, _env) = server.stop();
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("archive processed"), "{text}");
    assert!(text.contains("login refused"), "{text}");
    assert!(!text.contains('\x1b'), "no colours in a file: {text}");
}

/// The systemd notification socket, as the test's own datagram socket.
struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        NotifySocket {
            socket,
            _dir: dir,
            path,
        }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
    }
}

fn signal(server: &Server, name: &str) {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

fn can_list(server: &Server, login: &str) -> bool {
    curl(&["-l", "-o", "/dev/null", &server.url(login, "")]) == 0
}

/// SIGHUP applies new accounts while an open session goes on, keeps the old
/// configuration when the new one is broken, and tells systemd about each step.
#[test]
fn sighup_reloads_accounts_without_dropping_sessions() {
    if !have("curl") {
        return;
    }
    let notify = NotifySocket::new();
    let env = Env::new();
    let log = env.path("serve.log");
    let server = Server::start_opts(
        env,
        Options {
            envs: vec![("NOTIFY_SOCKET", notify.path.to_str().unwrap().to_owned())],
            log: Some(log.clone()),
            ..Options::default()
        },
    );
    assert_eq!(notify.next(), "READY=1");
    // READY means bound: the harness saw the port, and so does a client.
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_ok());
    let (status, _) = http_get(server.http_port, "/healthz");
    assert_eq!(status, 200);

    // A session logged in before the reload ...
    let script = r#"
import ftplib, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("guest", "guest")
print("ready", flush=True)
sys.stdin.readline()
with open(sys.argv[2], "rb") as f:
    print(ftp.storbinary("STOR guest_20261123070000.zip", f), flush=True)
ftp.quit()
"#;
    let file = server.local("guest_20261123070000.zip", &two_rows_one_bad());
    let mut held = Command::new("python3")
        .args([
            "-c",
            script,
            &server.port.to_string(),
            file.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut held_out = BufReader::new(held.stdout.take().unwrap());
    let mut line = String::new();
    held_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    // ... a new account appears with SIGHUP.
    assert!(!can_list(&server, "third"));
    let mut text = std::fs::read_to_string(&server.config).unwrap();
    text.push_str(&format!(
        "\n[[accounts]]\nlogin = \"third\"\npassword_hash = \"{HASH}\"\nsenders = [\"THIRD\"]\n"
    ));
    std::fs::write(&server.config, &text).unwrap();
    signal(&server, "HUP");
    assert!(notify.next().starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(notify.next(), "READY=1");
    assert!(can_list(&server, "third"), "the new account logs in");
    assert!(server.home("third").join("results").is_dir());

    // The session from before the reload still uploads.
    held.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    held_out.read_line(&mut line).unwrap();
    assert!(line.starts_with("226"), "{line}");
    assert!(held.wait().unwrap().success());
    assert_eq!(
        server.result("guest", "guest_20261123070000")["accepted"],
        1
    );

    // A broken file is refused as a whole; the accounts in force stay.
    std::fs::write(&server.config, text.replace("[[accounts]]", "[[acounts]]")).unwrap();
    signal(&server, "HUP");
    assert!(notify.next().starts_with("RELOADING=1"));
    assert_eq!(notify.next(), "READY=1");
    assert!(can_list(&server, "third"));
    assert!(can_list(&server, "guest"));

    let (code, _env) = {
        signal(&server, "TERM");
        assert_eq!(notify.next(), "STOPPING=1");
        server.stop()
    };
    assert_eq!(code, 0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("accounts reloaded"), "{log}");
    assert!(log.contains("configuration not reloaded"), "{log}");
}

/// Is `systemd-analyze` installed? Under CI it must be.
fn have_systemd_analyze() -> bool {
    have("systemd-analyze")
}

#[test]
fn systemd_unit_verifies_and_is_rated_ok() {
    if !have_systemd_analyze() {
        return;
    }
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/smsdrop.service"),
    )
    .unwrap();
    for needed in [
        "Type=notify",
        "ExecStartPre=/usr/local/bin/smsdrop config check",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=smsdrop",
        "User=smsdrop",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // verify checks that the commands exist: point them at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smsdrop.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/smsdrop", env!("CARGO_BIN_EXE_smsdrop")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating in\n{report}"));
    // "…: 1.4 OK 🙂": the issue asks for OK or better.
    let mut words = overall.split(": ").nth(1).unwrap().split(' ');
    let score: f64 = words.next().unwrap().parse().unwrap();
    let rating = words.next().unwrap();
    eprintln!("exposure {score} {rating}");
    assert!(matches!(rating, "OK" | "SAFE"), "{overall}");
}

/// `ftp.passive_host` is what PASV announces (a node behind NAT or a load
/// balancer), and transfers work through it.
#[test]
fn passive_host_is_announced() {
    if !have("curl") {
        return;
    }
    let server = Server::start_opts(
        Env::new(),
        Options {
            ftp_extra: "passive_host = \"127.0.0.2\"\n".into(),
            // The PASV below holds a port for a while.
            passive_span: 4,
            ..Options::default()
        },
    );
    let script = r#"
import ftplib, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("guest", "guest")
print(ftp.sendcmd("PASV"))
ftp.quit()
"#;
    let out = Command::new("python3")
        .args(["-c", script, &server.port.to_string()])
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        reply.starts_with("227") && reply.contains("(127,0,0,2,"),
        "{reply}"
    );
    let file = server.local("guest_20261123070000.zip", &two_rows_one_bad());
    assert_eq!(
        curl(&["-T", file.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    assert_eq!(
        server.result("guest", "guest_20261123070000")["accepted"],
        1
    );
}

/// A queue that cannot be opened counts an archive error (and logs it) only
/// for an account with an archive waiting, which stays in the customer's
/// folder for the next poll.
#[test]
fn a_queue_that_cannot_be_opened_counts_only_waiting_archives() {
    let server = Server::start();
    let db = server.env.path("state/queue.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::create_dir(&db).unwrap();
    // Polls every second; nothing waits.
    std::thread::sleep(Duration::from_secs(3));
    let errors = |server: &Server| {
        let (_, metrics) = http_get(server.http_port, "/metrics");
        sample_value(&metrics, "smsdrop_archive_errors_total", &[]).unwrap()
    };
    assert_eq!(errors(&server), 0.0);
    land(
        &server.home("guest"),
        "guest_20261123070000.zip",
        &sample("waits"),
    );
    wait_until("no archive error counted", Duration::from_secs(10), || {
        errors(&server) != 0.0
    });
    assert!(
        server
            .home("guest")
            .join("guest_20261123070000.zip")
            .exists()
    );
}
