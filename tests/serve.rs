//! `smsdrop serve` end to end: the real server on loopback ports, driven by real
//! FTP clients (curl, lftp, Python ftplib, inetutils-ftp), checked on the server
//! side (results files, queue). A client that is not installed makes the test
//! skip with a message — except under CI=true, where `.ci/run` installs them all.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::Value;

#[test]
fn curl_passive_epsv_and_active_uploads_are_processed() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    let modes: [(&str, &[&str]); 3] = [
        ("guest_20261123070001.zip", &[]),
        ("guest_20261123070002.zip", &["--disable-epsv"]),
        ("guest_20261123070003.zip", &["--ftp-port", "127.0.0.1"]),
    ];
    for (name, extra) in modes {
        let file = server.local(name, &sample(name));
        let mut args = vec!["-T", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let url = server.url("guest", "");
        args.push(&url);
        assert_eq!(curl(&args), 0, "{name} {extra:?}");
        let result = server.result("guest", name.trim_end_matches(".zip"));
        assert_eq!(result["status"], "accepted", "{result}");
    }
    assert_eq!(server.queued(), 3);
    // An upload cut off midway can look finished to the server: it is rejected
    // by the integrity check, never queued.
    let whole = sample("cut");
    let cut = server.local("guest_20261123070004.zip", &whole[..whole.len() / 2]);
    assert_eq!(
        curl(&["-T", cut.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    let result = server.result("guest", "guest_20261123070004");
    assert_eq!(result["error"]["code"], "NOT_A_ZIP");
    assert_eq!(server.queued(), 3);
    // The archives left the customer's folder.
    let left: Vec<_> = std::fs::read_dir(server.home("guest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["results"]);
    // The results can be downloaded.
    let out = Command::new("curl")
        .args([
            "-sS",
            &server.url("guest", "results/guest_20261123070001.json"),
        ])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["batch"], "guest_20261123070001");
    let (code, _) = server.stop();
    assert_eq!(code, 0, "SIGTERM is a clean exit");
}

#[test]
fn logins_names_and_folders_are_guarded() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    let file = server.local("guest_20261123070000.zip", &sample("x"));
    let f = file.to_str().unwrap();
    // Wrong password: refused, nothing lands.
    let bad = format!("ftp://guest:nope@127.0.0.1:{}/", server.port);
    assert_ne!(curl(&["-T", f, &bad]), 0);
    // Unknown user; anonymous.
    let anon = format!("ftp://127.0.0.1:{}/", server.port);
    assert_ne!(curl(&["-T", f, &anon]), 0);
    // Outside the home, into results/, not a zip: refused with a clear reply.
    for path in [
        "../guest_20261123070000.zip",
        "../other/guest_20261123070000.zip",
        "/etc/guest_20261123070000.zip",
        "results/x.zip",
        "notes.txt",
    ] {
        // Sent as written (no dot-segment clean-up, no CWD): `STOR ../x.zip`.
        let url = server.url("guest", path);
        assert_ne!(
            curl(&["--path-as-is", "--ftp-method", "nocwd", "-T", f, &url]),
            0,
            "{path}"
        );
    }
    let spool: Vec<_> = std::fs::read_dir(server.env.path("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        spool.iter().all(|n| n == "guest" || n == "other"),
        "{spool:?}"
    );
    assert!(std::fs::read_dir(server.home("other")).unwrap().count() == 1);
    assert_eq!(server.queued(), 0);
    // Another account's archive name in my folder: LOGIN_MISMATCH.
    let theirs = server.local("other_20261123070000.zip", &sample("x"));
    assert_eq!(
        curl(&["-T", theirs.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    let result = server.result("guest", "other_20261123070000");
    assert_eq!(result["error"]["code"], "LOGIN_MISMATCH");
    // Each account sees only its own folder.
    let out = Command::new("curl")
        .args(["-sS", "-l", &server.url("other", "")])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("other_20261123070000"), "{listing}");
    assert!(!listing.contains("guest"), "{listing}");
    // The same archive twice: DUPLICATE_BATCH, the first result kept.
    let name = server.local("guest_20261123080000.zip", &sample("once"));
    let n = name.to_str().unwrap();
    assert_eq!(curl(&["-T", n, &server.url("guest", "")]), 0);
    let first = server.result("guest", "guest_20261123080000");
    assert_eq!(curl(&["-T", n, &server.url("guest", "")]), 0);
    let dup = server.result("guest", "guest_20261123080000.duplicate");
    assert_eq!(dup["error"]["code"], "DUPLICATE_BATCH");
    assert_eq!(server.result("guest", "guest_20261123080000"), first);
    assert_eq!(server.queued(), 1);
}

#[test]
fn lftp_active_mode() {
    if !have("lftp") {
        return;
    }
    let server = Server::start();
    let file = server.local("guest_20261123070000.zip", &sample("lftp"));
    let status = Command::new("lftp")
        .args([
            "-e",
            &format!(
                "set ftp:passive-mode off; set ftp:ssl-allow no; set net:max-retries 1; put {}; bye",
                file.display()
            ),
            "-u",
            "guest,guest",
            &format!("ftp://127.0.0.1:{}", server.port),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        server.result("guest", "guest_20261123070000")["status"],
        "accepted"
    );
}

/// The classic command-line client, driven by a script on stdin the way Windows
/// `ftp -s:script` is used. It uses active mode (PORT) and exits 0 even when a
/// command fails, so the server side is what is checked.
#[test]
fn classic_ftp_client_with_a_script() {
    if !have("inetutils-ftp") {
        return;
    }
    let server = Server::start();
    let file = server.local("guest_20261123070000.zip", &sample("classic"));
    let mut child = Command::new("inetutils-ftp")
        .args(["-n", "-v", "127.0.0.1", &server.port.to_string()])
        .current_dir(file.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"user guest guest\nbinary\nput guest_20261123070000.zip\nquit\n")
        .unwrap();
    child.wait().unwrap();
    assert_eq!(
        server.result("guest", "guest_20261123070000")["status"],
        "accepted"
    );
}

/// A slow upload is never processed early: until the transfer ends only a hidden
/// part file exists, and the poller (running every second) leaves it alone.
#[test]
fn python_ftplib_slow_upload_is_not_processed_early() {
    if !have("python3") {
        return;
    }
    let server = Server::start();
    // Large enough to take several slow chunks.
    let mut text = String::from("TELRN_LONG;TEXT\n");
    for i in 0..20_000 {
        text.push_str(&format!("79031234567;message {i}\n"));
    }
    let bytes = zip_bytes(&[("m.csv", text.as_bytes())]);
    let file = server.local("guest_20261123070000.zip", &bytes);
    let script = format!(
        r#"
import ftplib, time, os, sys
home = sys.argv[1]
class Slow:
    def __init__(self, path): self.f = open(path, "rb")
    def read(self, n):
        time.sleep(0.4)
        # Mid-upload: nothing visible to the poller, no result yet.
        visible = [x for x in os.listdir(home) if not x.startswith(".") and x != "results"]
        assert visible == [], visible
        assert os.listdir(os.path.join(home, "results")) == []
        return self.f.read(4096)
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", {port})
ftp.login("guest", "guest")
ftp.storbinary("STOR guest_20261123070000.zip", Slow("{file}"), blocksize=4096)
ftp.quit()
"#,
        port = server.port,
        file = file.display()
    );
    let status = Command::new("python3")
        .args(["-c", &script, server.home("guest").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let result = server.result("guest", "guest_20261123070000");
    assert_eq!(result["accepted"], 20_000);
}

/// The control connection sends each reply at once. With Nagle's algorithm on,
/// the 226 after a 150 waited for the client's delayed ACK of the 150 (40 ms
/// on Linux, 200 ms on Windows), on every transfer; a one-row upload then takes
/// at least 40 ms whatever the machine, and about 2 ms without.
#[test]
fn replies_are_not_held_back_by_nagle() {
    if !have("python3") {
        return;
    }
    let server = Server::start();
    let file = server.local("one.zip", &sample("hi"));
    let script = r#"
import ftplib, statistics, sys, time
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("guest", "guest")
times = []
for i in range(9):
    with open(sys.argv[2], "rb") as f:
        start = time.monotonic()
        ftp.storbinary("STOR guest_2026112307%02d00.zip" % i, f)
        times.append(time.monotonic() - start)
ftp.quit()
print(statistics.median(times) * 1000)
"#;
    let args = [server.port.to_string(), file.display().to_string()];
    let median_ms: f64 = python(script, &args).trim().parse().unwrap();
    assert!(
        median_ms < 35.0,
        "a one-row STOR took {median_ms:.1} ms (median of 9): a reply waited for a delayed ACK"
    );
}

#[test]
fn archives_waiting_at_startup_are_processed_in_order() {
    let env = Env::new();
    let home = env.path("spool/guest");
    std::fs::create_dir_all(&home).unwrap();
    for (name, text) in [
        ("guest_20261123090000.zip", "second"),
        ("guest_20261123080000.zip", "first"),
    ] {
        std::fs::write(home.join(name), sample(text)).unwrap();
    }
    let server = Server::start_in(env);
    server.result("guest", "guest_20261123090000");
    let texts: Vec<String> = queue_messages(&server.config)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["first", "second"]);
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert, key).
fn tls_server(require: bool, account_extra: &str) -> Server {
    let env = Env::new();
    let tls = tls_section(&env, require);
    Server::start_opts(
        env,
        Options {
            // Ten clients at once that log in or not (auth_tls_holds_on_a_busy_server).
            ftp_extra: "max_unauthenticated_per_ip = 20\n".into(),
            extra: &tls,
            account_extra,
            ..Options::default()
        },
    )
}

/// AUTH TLS on a busy server: many sessions at once switch their control
/// channels to TLS (600 handshakes). libunftp used to reply 234 and only then, in
/// random order with reading the socket, switch to TLS, so a client's
/// ClientHello was now and then read as a command (`wrong version number`);
/// the vendored copy switches first (vendor/libunftp/SMSDROP-CHANGES.md).
#[test]
fn auth_tls_holds_on_a_busy_server() {
    if !have("openssl") || !have("python3") {
        return;
    }
    let server = tls_server(true, "");
    let script = format!(
        r#"
import ftplib, ssl, threading
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
failures = []
def run():
    for _ in range(60):
        try:
            ftp = ftplib.FTP_TLS(context=ctx, timeout=20)
            ftp.connect("127.0.0.1", {port})
            ftp.auth()
            ftp.voidcmd("NOOP")
            ftp.quit()
        except Exception as e:
            failures.append(repr(e))
threads = [threading.Thread(target=run) for _ in range(10)]
for t in threads: t.start()
for t in threads: t.join()
print(len(failures), failures[:3])
assert not failures
"#,
        port = server.port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn explicit_tls_with_curl_lftp_and_ftplib() {
    if !have("openssl") || !have("curl") || !have("lftp") || !have("python3") {
        return;
    }
    let server = tls_server(true, "");
    // curl: AUTH TLS, protected data channel, passive.
    let a = server.local("guest_20261123070001.zip", &sample("curl tls"));
    let url = server.url("guest", "");
    assert_eq!(
        curl(&["--ssl-reqd", "-k", "-T", a.to_str().unwrap(), &url]),
        0
    );
    // Without TLS the login is refused: require = true.
    let b = server.local("guest_20261123070009.zip", &sample("plain"));
    assert_ne!(curl(&["-T", b.to_str().unwrap(), &url]), 0);
    // lftp: TLS and active mode.
    let c = server.local("guest_20261123070002.zip", &sample("lftp tls"));
    let status = Command::new("lftp")
        .args([
            "-e",
            &format!(
                "set ftp:passive-mode off; set ftp:ssl-force yes; set ftp:ssl-protect-data yes; \
                 set ssl:verify-certificate no; set net:max-retries 1; put {}; bye",
                c.display()
            ),
            "-u",
            "guest,guest",
            &format!("ftp://127.0.0.1:{}", server.port),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // Python ftplib FTP_TLS with a protected data channel.
    let d = server.local("guest_20261123070003.zip", &sample("ftplib tls"));
    let script = format!(
        r#"
import ftplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ftp = ftplib.FTP_TLS(context=ctx)
ftp.connect("127.0.0.1", {port})
ftp.login("guest", "guest")
ftp.prot_p()
with open("{file}", "rb") as f:
    ftp.storbinary("STOR guest_20261123070003.zip", f)
ftp.quit()
"#,
        port = server.port,
        file = d.display()
    );
    assert!(
        Command::new("python3")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    for batch in [
        "guest_20261123070001",
        "guest_20261123070002",
        "guest_20261123070003",
    ] {
        assert_eq!(
            server.result("guest", batch)["status"],
            "accepted",
            "{batch}"
        );
    }
    assert!(
        !server
            .home("guest")
            .join("results/guest_20261123070009.json")
            .exists()
    );
}

#[test]
fn tls_required_per_account() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let server = tls_server(false, "require_tls = true");
    let a = server.local("guest_20261123070001.zip", &sample("x"));
    let f = a.to_str().unwrap();
    // guest must use TLS; the other account need not.
    assert_ne!(curl(&["-T", f, &server.url("guest", "")]), 0);
    assert_eq!(
        curl(&["--ssl-reqd", "-k", "-T", f, &server.url("guest", "")]),
        0
    );
    assert_eq!(
        server.result("guest", "guest_20261123070001")["status"],
        "accepted"
    );
    let out = Command::new("curl")
        .args(["-sS", "-l", &server.url("other", "")])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn oversized_uploads_are_refused() {
    if !have("curl") {
        return;
    }
    let server = Server::start_with(Env::new(), "[limits]\nmax_archive_bytes = 1000", "");
    upload_fails_and_leaves_nothing(&server, &vec![b'x'; 5000]);
}

/// Uploads `bytes` as the guest's archive with curl, which must fail, and
/// checks that neither the archive nor its part file is left in the home.
fn upload_fails_and_leaves_nothing(server: &Server, bytes: &[u8]) {
    let file = server.local("guest_20261123070000.zip", bytes);
    assert_ne!(
        curl(&["-T", file.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<_> = std::fs::read_dir(server.home("guest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["results"], "no part file, no archive");
}

/// A write failing while an upload arrives (a full disk, simulated with
/// RLIMIT_FSIZE) fails the upload: no 226, nothing lands, no part file is
/// left; the next upload that fits goes through.
#[test]
fn a_failed_write_fails_the_upload() {
    if !have("curl") {
        return;
    }
    let server = Server::start_opts(
        Env::new(),
        Options {
            file_size_limit: Some(2 << 20),
            ..Options::default()
        },
    );
    // Many chunks, most of them past the limit.
    upload_fails_and_leaves_nothing(&server, &vec![b'x'; 6 << 20]);
    let small = server.local("guest_20261123070001.zip", &sample("after"));
    assert_eq!(
        curl(&["-T", small.to_str().unwrap(), &server.url("guest", "")]),
        0
    );
    let result = server.result("guest", "guest_20261123070001");
    assert_eq!(result["status"], "accepted", "{result}");
    assert_eq!(server.queued(), 1);
}

/// A huge archive of one account does not hold another account back. Both
/// sessions log in first: a login verifies an argon2id hash, which in a debug
/// build takes up to a second or two on a busy machine — long enough for the
/// big archive to be stored before the small one arrived, had the second
/// login come after the first upload (it did once in CI).
#[test]
fn accounts_are_processed_side_by_side() {
    if !have("python3") {
        return;
    }
    let server = Server::start();
    let mut text = String::from("TELRN_LONG;TEXT\n");
    for i in 0..150_000 {
        text.push_str(&format!("79031234567;message number {i}\n"));
    }
    let big = server.local(
        "other_20261123070000.zip",
        &zip_bytes(&[("m.csv", text.as_bytes())]),
    );
    let small = server.local("guest_20261123070000.zip", &sample("small"));
    let script = r#"
import ftplib, sys
port, big, small = int(sys.argv[1]), sys.argv[2], sys.argv[3]
other, guest = ftplib.FTP(), ftplib.FTP()
other.connect("127.0.0.1", port)
other.login("other", "guest")
guest.connect("127.0.0.1", port)
guest.login("guest", "guest")
with open(big, "rb") as f:
    other.storbinary("STOR other_20261123070000.zip", f)
with open(small, "rb") as f:
    guest.storbinary("STOR guest_20261123070000.zip", f)
other.quit()
guest.quit()
"#;
    python(
        script,
        &[
            server.port.to_string(),
            big.display().to_string(),
            small.display().to_string(),
        ],
    );
    server.result("guest", "guest_20261123070000");
    let big_result = server
        .home("other")
        .join("results/other_20261123070000.json");
    assert!(!big_result.exists(), "the small archive finished first");
    assert_eq!(
        server.result("other", "other_20261123070000")["accepted"],
        150_000
    );
}

/// A burst of logins does not take a burst of memory: each argon2id
/// verification fills 19 MiB, and they take turns, as many at once as there
/// are cores. Without the turns, 40 logins at once peaked at 537 MB (100 at
/// 1.5 GB) and took longer.
#[test]
fn a_burst_of_logins_takes_turns() {
    if !have("python3") {
        return;
    }
    // Turns are as many as the cores: the bound allows each its 19 MiB, the
    // logins are enough that all at once would take several times more.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let logins = (4 * cores).max(40);
    let bound_kib = (120 + 20 * cores) << 10;
    let server = Server::start_opts(
        Env::new(),
        Options {
            ftp_extra: format!(
                "max_sessions = {0}\nmax_sessions_per_ip = {0}\nmax_unauthenticated_per_ip = {0}\n",
                logins + 10
            ),
            ..Options::default()
        },
    );
    let script = r#"
import ftplib, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
ok = []
def login():
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=60)
    ftp.login("guest", "guest")
    ok.append(1)
    ftp.quit()
threads = [threading.Thread(target=login) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(ok))
"#;
    let logged_in = python(script, &[server.port.to_string(), logins.to_string()]);
    assert_eq!(logged_in.trim(), logins.to_string());
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB after {logins} logins at once ({cores} cores)"
    );
}

/// A client that stops sending mid-upload: after `idle_timeout_secs` the transfer
/// is dropped and nothing of it is left, visible or hidden.
#[test]
fn a_stalled_upload_is_dropped() {
    if !have("python3") {
        return;
    }
    let server = Server::start_full(Env::new(), 2, "", "");
    let script = format!(
        r#"
import ftplib, time, os, sys
home = sys.argv[1]
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", {port})
ftp.login("guest", "guest")
ftp.voidcmd("TYPE I")
conn = ftp.transfercmd("STOR guest_20261123070000.zip")
conn.sendall(b"PK" + b"x" * 1000)
time.sleep(1)
assert [x for x in os.listdir(home) if x.startswith(".")], "a part file while uploading"
time.sleep(4)  # stalled for longer than idle_timeout_secs
assert os.listdir(home) == ["results"], os.listdir(home)
"#,
        port = server.port
    );
    let status = Command::new("python3")
        .args(["-c", &script, server.home("guest").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(server.queued(), 0);
}

fn list(url: &str) -> i32 {
    curl(&["-l", "-o", "/dev/null", url])
}

/// After `max_failures` failed logins an address is refused even with the right
/// password, until the ban expires.
#[test]
fn login_guard_bans_and_the_ban_expires() {
    if !have("curl") {
        return;
    }
    let server = Server::start_with(
        Env::new(),
        "[ftp.login_guard]\nmax_failures = 3\nwindow_secs = 60\nban_secs = 2",
        "",
    );
    let good = server.url("guest", "");
    let bad = format!("ftp://guest:wrong@127.0.0.1:{}/", server.port);
    assert_eq!(list(&good), 0);
    for _ in 0..3 {
        assert_ne!(list(&bad), 0);
    }
    assert_ne!(list(&good), 0, "banned: the right password is refused too");
    let (_, metrics) = http_get(server.http_port, "/metrics");
    assert_eq!(
        sample_value(&metrics, "smsdrop_login_bans_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&metrics, "smsdrop_logins_refused_banned_total", &[]),
        Some(1.0)
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(list(&good), 0, "the ban expired");
}

/// `allowed_ips`: a login from elsewhere gets the same reply as a wrong password.
#[test]
fn allowed_ips_refuse_other_addresses() {
    if !have("curl") {
        return;
    }
    let server = Server::start_with(
        Env::new(),
        "",
        "allowed_ips = [\"10.0.0.0/8\", \"2001:db8::/32\"]",
    );
    assert_ne!(list(&server.url("guest", "")), 0);
    assert_eq!(list(&server.url("other", "")), 0);
}
