//! The FTP front under attack (SPEC §2, §10; docs/security.md): one test per
//! rule, each driving the real server over loopback as an attacker would.
//! Several clients bind their own loopback source address (127.0.0.x) to play
//! several hosts.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::ctl::*;
use common::server::*;
use common::*;

/// The TCP ports process `pid` listens on (its sockets in LISTEN state).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn start(ftp_extra: &str) -> Server {
    Server::start_opts(
        Env::new(),
        Options {
            ftp_extra: ftp_extra.into(),
            ..Options::default()
        },
    )
}

fn metric(server: &Server, name: &str) -> f64 {
    let (_, text) = http_get(server.http_port, "/metrics");
    sample_value(&text, name, &[]).unwrap_or(0.0)
}

#[test]
fn a_command_line_over_8_kib_closes_the_connection() {
    let server = start("");
    let before = peak_rss_kib(server.child.id());
    let mut attackers = Vec::new();
    for _ in 0..3 {
        let mut ctl = Ctl::open(server.port);
        let mut writer = ctl.writer.try_clone().unwrap();
        // 64 MiB without a newline; the server closes long before the end.
        let sender = std::thread::spawn(move || {
            let chunk = vec![b'A'; 1 << 20];
            for _ in 0..64 {
                if writer.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let reply = ctl.reply();
        assert!(reply.starts_with("500"), "{reply}");
        assert!(
            ctl.closed_within(Duration::from_secs(10)).is_some(),
            "the connection stays open"
        );
        attackers.push(sender);
    }
    for a in attackers {
        a.join().unwrap();
    }
    let grown = peak_rss_kib(server.child.id()).saturating_sub(before);
    assert!(grown < 32 << 10, "peak RSS grew by {grown} KiB");
    // A line just under the limit is still a command (an unknown one).
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let reply = ctl.cmd(&format!("X{}", "A".repeat(8000)));
    assert!(reply.starts_with("500"), "{reply}");
    assert!(ctl.cmd("NOOP").starts_with("200"));
}

#[test]
fn a_client_not_logged_in_in_time_is_closed_however_it_stalls() {
    let env = Env::new();
    let tls = tls_section(&env, false);
    let server = Server::start_opts(
        env,
        Options {
            ftp_extra: "login_timeout_secs = 2\n".into(),
            extra: &tls,
            ..Options::default()
        },
    );
    let mut silent = Ctl::open(server.port);
    let mut tls_silent = Ctl::open(server.port);
    assert!(tls_silent.cmd("AUTH TLS").starts_with("234"));
    // Sends NOOP every 200 ms (and reads the replies) until closed.
    let mut noop = Ctl::open(server.port);
    let noop_writer = noop.writer.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut w = noop_writer;
        while w.write_all(b"NOOP\r\n").is_ok() {
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    for (name, ctl) in [
        ("silent", &mut silent),
        ("AUTH TLS, no handshake", &mut tls_silent),
        ("NOOPs", &mut noop),
    ] {
        let took = ctl.closed_within(Duration::from_secs(8));
        assert!(took.is_some(), "{name}: still open after 8 s");
    }
    assert!(metric(&server, "smsdrop_login_timeouts_total") >= 3.0);
    // A client that logs in stays.
    let mut customer = Ctl::open(server.port);
    assert!(customer.login("guest", "guest").starts_with("230"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(customer.cmd("NOOP").starts_with("200"));
}

#[test]
fn connections_not_logged_in_have_their_own_cap_per_address() {
    let server = start("max_unauthenticated_per_ip = 3\n");
    let mut waiting: Vec<Ctl> = (0..3).map(|_| Ctl::open(server.port)).collect();
    let mut fourth = Ctl::raw_from("127.0.0.1", server.port);
    let reply = fourth.reply();
    assert!(reply.starts_with("421"), "{reply}");
    // Another address is not held back, nor a session that logs in.
    let _other = Ctl::open_from("127.0.0.2", server.port);
    assert!(waiting[0].login("guest", "guest").starts_with("230"));
    let _next = Ctl::open(server.port);
    waiting.truncate(1);
    let (_, metrics) = http_get(server.http_port, "/metrics");
    assert_eq!(
        sample_value(
            &metrics,
            "smsdrop_sessions_refused_total",
            &["cap=\"unauthenticated_per_ip\""]
        ),
        Some(1.0)
    );
}

#[test]
fn healthz_is_503_when_no_session_can_be_opened() {
    let server =
        start("max_sessions = 4\nmax_sessions_per_ip = 2\nmax_unauthenticated_per_ip = 2\n");
    let (status, body) = http_get(server.http_port, "/healthz");
    assert_eq!(status, 200, "{body}");
    // Full of connections waiting to log in: the caps are full (a newcomer
    // from another address would displace one, but the operator is told).
    let waiting: Vec<Ctl> = ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"]
        .iter()
        .map(|src| Ctl::open_from(src, server.port))
        .collect();
    let (status, body) = http_get(server.http_port, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("displacing"), "{body}");
    drop(waiting);
    wait_until(
        "still 503 with the caps free",
        Duration::from_secs(10),
        || http_get(server.http_port, "/healthz").0 == 200,
    );
    // Full of logged-in sessions: nobody else gets in.
    let mut held = Vec::new();
    for src in ["127.0.0.4", "127.0.0.4", "127.0.0.5", "127.0.0.5"] {
        let mut ctl = Ctl::open_from(src, server.port);
        assert!(ctl.login("guest", "guest").starts_with("230"));
        held.push(ctl);
    }
    let (status, body) = http_get(server.http_port, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ftp: FAIL"), "{body}");
    drop(held);
    wait_until(
        "still 503 with the caps free",
        Duration::from_secs(10),
        || http_get(server.http_port, "/healthz").0 == 200,
    );
}

#[test]
fn connections_that_only_wait_cannot_shut_customers_out() {
    // Ten places, filled by connections that never log in, from five
    // addresses; a customer still gets in, displacing one of them.
    let server =
        start("max_sessions = 10\nmax_sessions_per_ip = 4\nmax_unauthenticated_per_ip = 2\n");
    let mut waiting: Vec<Ctl> = (0..10)
        .map(|i| Ctl::open_from(&format!("127.0.3.{}", i / 2 + 1), server.port))
        .collect();
    let mut customer = Ctl::open_from("127.0.0.1", server.port);
    assert!(customer.login("guest", "guest").starts_with("230"));
    let mut closed = 0;
    for c in &mut waiting {
        if c.closed_within(Duration::from_millis(300)).is_some() {
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
    assert_eq!(metric(&server, "smsdrop_sessions_displaced_total"), 1.0);
}

fn guard_server(max_failures: u32) -> Server {
    Server::start_opts(
        Env::new(),
        Options {
            ftp_extra: format!(
                "max_unauthenticated_per_ip = 30\nmax_sessions_per_ip = 30\n\
                 [ftp.login_guard]\nmax_failures = {max_failures}\nwindow_secs = 300\nban_secs = 300\n"
            ),
            ..Options::default()
        },
    )
}

#[test]
fn another_accounts_success_does_not_reset_the_login_guard() {
    let server = guard_server(3);
    let src = "127.0.0.5";
    for (user, password) in [
        ("guest", "wrong"),
        ("guest", "wrong"),
        ("other", "guest"),
        ("guest", "wrong"),
    ] {
        Ctl::open_from(src, server.port).login(user, password);
    }
    // Three failures from this address, a success between: banned.
    let r = Ctl::open_from(src, server.port).login("guest", "guest");
    assert!(r.starts_with("530"), "the right password during a ban: {r}");
    let r = Ctl::open_from("127.0.0.6", server.port).login("guest", "guest");
    assert!(r.starts_with("230"), "another address: {r}");
}

#[test]
fn parallel_guesses_get_at_most_max_failures_verifications() {
    let server = guard_server(5);
    let port = server.port;
    let guesses: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                Ctl::open_from("127.0.0.7", port).login("guest", &format!("guess{i}"))
            })
        })
        .collect();
    for g in guesses {
        let r = g.join().unwrap();
        assert!(r.starts_with("530"), "{r}");
    }
    assert_eq!(metric(&server, "smsdrop_login_failures_total"), 5.0);
    assert_eq!(metric(&server, "smsdrop_logins_refused_banned_total"), 15.0);
    let r = Ctl::open_from("127.0.0.7", port).login("guest", "guest");
    assert!(r.starts_with("530"), "the right password during a ban: {r}");
}

#[test]
fn refused_logins_take_the_same_time_whatever_the_reason() {
    let server = guard_server(2);
    let port = server.port;
    // Banned: two failures from 127.0.0.9.
    for _ in 0..2 {
        Ctl::open_from("127.0.0.9", port).login("guest", "wrong");
    }
    let timed = |src: &str, user: &str, password: &str| -> Duration {
        let mut ctl = Ctl::open_from(src, port);
        assert!(ctl.cmd(&format!("USER {user}")).starts_with("331"));
        let start = Instant::now();
        let r = ctl.cmd(&format!("PASS {password}"));
        assert!(r.starts_with("530"), "{r}");
        start.elapsed()
    };
    let mut times = Vec::new();
    for round in 0..2 {
        times.push((
            "unknown login",
            timed(&format!("127.0.1.{round}"), "nobody", "x"),
        ));
        times.push((
            "wrong password",
            timed(&format!("127.0.2.{round}"), "guest", "x"),
        ));
        times.push(("banned address", timed("127.0.0.9", "guest", "guest")));
    }
    let min = times.iter().map(|t| t.1).min().unwrap();
    let max = times.iter().map(|t| t.1).max().unwrap();
    assert!(
        min >= Duration::from_millis(900) && max - min < Duration::from_millis(250),
        "{times:?}"
    );
}

#[test]
fn a_plain_user_is_refused_at_once_when_tls_is_required() {
    // Globally ...
    let env = Env::new();
    let tls = tls_section(&env, true);
    let server = Server::start_with(env, &tls, "");
    let mut ctl = Ctl::open(server.port);
    let r = ctl.cmd("USER guest");
    assert!(r.starts_with("530"), "{r}");
    // ... and per account: only that account's login.
    let env = Env::new();
    let tls = tls_section(&env, false);
    let server = Server::start_with(env, &tls, "require_tls = true");
    let r = Ctl::open(server.port).cmd("USER guest");
    assert!(r.starts_with("530"), "{r}");
    let r = Ctl::open(server.port).cmd("USER other");
    assert!(r.starts_with("331"), "{r}");
}

/// A Python FTP_TLS session against `port` as guest, running `body`.
fn ftp_tls(port: u16, body: &str) -> String {
    let script = format!(
        r#"
import ftplib, io, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ftp = ftplib.FTP_TLS(context=ctx, timeout=20)
ftp.connect("127.0.0.1", {port})
ftp.login("guest", "guest")
{body}
"#
    );
    python(&script, &[])
}

#[test]
fn transfers_must_be_protected_when_tls_is_required() {
    if !have("python3") || !have("openssl") {
        return;
    }
    let env = Env::new();
    let tls = tls_section(&env, false);
    let server = Server::start_with(env, &tls, "require_tls = true");
    let out = ftp_tls(
        server.port,
        r#"
for cmd in ["PROT C", "PASV"]:
    try:
        print(ftp.sendcmd(cmd)[:3])
    except ftplib.Error as e:
        print(str(e)[:3])
try:
    ftp.retrlines("LIST")
    print("listed")
except ftplib.Error as e:
    print(str(e)[:3])
ftp.prot_p()
ftp.retrlines("LIST", lambda line: None)
print("protected list ok")
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["534", "227", "521", "protected list ok"], "{out}");
}

#[test]
fn tls_uploads_end_with_close_notify_and_tls_1_3_is_offered() {
    if !have("python3") || !have("openssl") {
        return;
    }
    let env = Env::new();
    let tls = tls_section(&env, true);
    let server = Server::start_with(env, &tls, "");
    let archive = sample("tls upload");
    let file = server.local("a.zip", &archive);
    // Python's FTP_TLS waits for the server's close_notify after an upload
    // (SSLSocket.unwrap) and raised SSLEOFError without it.
    let out = ftp_tls(
        server.port,
        &format!(
            r#"
ftp.prot_p()
with open("{file}", "rb") as f:
    ftp.storbinary("STOR guest_20261123070000.zip", f)
print(ftp.sock.version())
"#,
            file = file.display()
        ),
    );
    assert_eq!(out.trim(), "TLSv1.3");
    assert_eq!(
        server.result("guest", "guest_20261123070000")["status"],
        "accepted"
    );
    let out = ftp_tls(
        server.port,
        r#"
ftp.prot_p()
got = io.BytesIO()
ftp.retrbinary("RETR results/guest_20261123070000.json", got.write)
print(len(got.getvalue()) > 0)
"#,
    );
    assert_eq!(out.trim(), "True");
    // TLS 1.2 still works; nothing older is offered.
    let versions = python(
        &format!(
            r#"
import socket, ssl
def hello(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = version
        ctx.maximum_version = version
    except ValueError:
        return "unsupported by this client"
    s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"AUTH TLS\r\n")
    f.readline()
    try:
        t = ctx.wrap_socket(s)
        return t.version()
    except (ssl.SSLError, OSError):
        return "refused"
for v in [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_1]:
    print(hello(v))
"#,
            port = server.port
        ),
        &[],
    );
    let lines: Vec<&str> = versions.lines().collect();
    assert_eq!(lines[0], "TLSv1.2");
    assert_ne!(lines[1], "TLSv1.1");
}

#[test]
fn port_is_refused_to_another_address_or_a_privileged_port_before_connecting() {
    let server = start("");
    // A service on another host (127.0.0.2) that a bounce would reach.
    let victim = TcpListener::bind("127.0.0.2:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let vport = victim.local_addr().unwrap().port();
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let r = ctl.cmd(&format!("PORT 127,0,0,2,{},{}", vport >> 8, vport & 0xff));
    assert!(r.starts_with("504"), "{r}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        victim.accept().is_err(),
        "the server connected to 127.0.0.2"
    );
    // The client's own address, but a privileged port: refused, not tried.
    let r = ctl.cmd("PORT 127,0,0,1,0,22");
    assert!(r.starts_with("504"), "{r}");
    // Its own address and an unprivileged port: a data connection.
    let own = TcpListener::bind("127.0.0.1:0").unwrap();
    let oport = own.local_addr().unwrap().port();
    let r = ctl.cmd(&format!("PORT 127,0,0,1,{},{}", oport >> 8, oport & 0xff));
    assert!(r.starts_with("200"), "{r}");
}

#[test]
fn a_passive_port_sweep_does_not_take_another_customers_transfer() {
    let server = start("");
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let data = ctl.pasv();
    // The attacker (another address) gets there first; it is dropped.
    let mut attacker = connect_from("127.0.0.2", data.port());
    attacker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(attacker.read(&mut buf), Ok(0) | Err(_)));
    // The customer's upload still goes through on that port.
    let mut conn = connect_from("127.0.0.1", data.port());
    let r = ctl.cmd("STOR guest_20261123070000.zip");
    assert!(r.starts_with("150"), "{r}");
    conn.write_all(&sample("after a sweep")).unwrap();
    drop(conn);
    let r = ctl.reply();
    assert!(r.starts_with("226"), "{r}");
    assert_eq!(
        server.result("guest", "guest_20261123070000")["status"],
        "accepted"
    );
}

#[test]
fn a_session_holds_one_passive_port_at_a_time() {
    // Five passive ports in all; one session asks twenty times.
    let server = start("");
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let mut ports = Vec::new();
    for _ in 0..20 {
        ports.push(ctl.pasv());
    }
    let last = ports.last().unwrap().port();
    // The server's own listening sockets (other tests' servers may use the
    // same ports: connecting would not tell whose they are).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let passive: Vec<u16> = listening_ports(server.child.id())
            .into_iter()
            .filter(|p| ports.iter().any(|a| a.port() == *p))
            .collect();
        if passive == [last] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "passive ports listening: {passive:?} (the last PASV's: {last})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another customer still gets a port.
    let mut other = Ctl::open(server.port);
    assert!(other.login("other", "guest").starts_with("230"));
    other.pasv();
}

#[test]
fn a_plain_connection_to_a_protected_data_port_fails_the_transfer_not_the_session() {
    let env = Env::new();
    let tls = tls_section(&env, false);
    let server = Server::start_opts(
        env,
        Options {
            idle_secs: 3,
            extra: &tls,
            ..Options::default()
        },
    );
    // The client asks for PROT P over a plain control channel (allowed by
    // RFC 4217 only after AUTH; libunftp takes it), then connects in clear.
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    ctl.cmd("PBSZ 0");
    let r = ctl.cmd("PROT P");
    assert!(r.starts_with("200"), "{r}");
    let data = ctl.pasv();
    let mut conn = connect_from("127.0.0.1", data.port());
    let r = ctl.cmd("LIST");
    assert!(r.starts_with("150"), "{r}");
    conn.write_all(b"this is not a TLS ClientHello\r\n")
        .unwrap();
    drop(conn);
    let r = ctl.reply();
    assert!(r.starts_with("425"), "{r}");
    assert!(ctl.cmd("NOOP").starts_with("200"));
    // And the idle timeout holds afterwards.
    assert!(ctl.closed_within(Duration::from_secs(8)).is_some());
}

#[test]
fn the_idle_timeout_holds_for_an_unused_data_connection_and_a_stalled_download() {
    let server = Server::start_full(Env::new(), 2, "", "");
    // A data connection opened and never used.
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let data = ctl.pasv();
    let _conn = connect_from("127.0.0.1", data.port());
    assert!(
        ctl.closed_within(Duration::from_secs(8)).is_some(),
        "an unused data connection kept the session open"
    );
    // A download the client stops reading.
    std::fs::write(
        server.home("guest").join("results/big.json"),
        vec![b' '; 64 << 20],
    )
    .unwrap();
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let data = ctl.pasv();
    let _conn = connect_from("127.0.0.1", data.port());
    let r = ctl.cmd("RETR results/big.json");
    assert!(r.starts_with("150"), "{r}");
    assert!(
        ctl.closed_within(Duration::from_secs(12)).is_some(),
        "a stalled download kept the session open"
    );
}

#[test]
fn an_accounts_storage_is_bounded() {
    let server = Server::start_with(Env::new(), "", "max_account_bytes = 1000000");
    std::fs::write(
        server.home("guest").join("results/old.csv"),
        vec![b'x'; 700_000],
    )
    .unwrap();
    // 400 kB of incompressible bytes: over the account's 1 MB.
    let mut big = sample("x");
    let mut x: u64 = 1;
    big.extend((0..400_000).map(|_| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        (x >> 56) as u8
    }));
    let file = server.local("big.zip", &big);
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let data = ctl.pasv();
    let mut conn = connect_from("127.0.0.1", data.port());
    let r = ctl.cmd("STOR guest_20261123070000.zip");
    assert!(r.starts_with("150"), "{r}");
    let _ = conn.write_all(&std::fs::read(&file).unwrap());
    drop(conn);
    let r = ctl.reply();
    assert!(r.starts_with("552"), "{r}");
    let left: Vec<_> = std::fs::read_dir(server.home("guest"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "results")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The other account is not bound by guest's storage.
    let small = server.local("o.zip", &sample("other"));
    assert_eq!(
        curl(&[
            "-T",
            small.to_str().unwrap(),
            &format!(
                "ftp://other:guest@127.0.0.1:{}/other_20261123070000.zip",
                server.port
            )
        ]),
        0
    );
}

#[test]
fn a_second_upload_of_a_name_in_progress_is_refused() {
    let server = start("");
    let mut first = Ctl::open(server.port);
    assert!(first.login("guest", "guest").starts_with("230"));
    let data = first.pasv();
    let mut conn = connect_from("127.0.0.1", data.port());
    assert!(
        first
            .cmd("STOR guest_20261123070000.zip")
            .starts_with("150")
    );
    let archive = sample("first");
    conn.write_all(&archive[..10]).unwrap();
    // While the first is in progress:
    let mut second = Ctl::open(server.port);
    assert!(second.login("guest", "guest").starts_with("230"));
    let data2 = second.pasv();
    let _conn2 = connect_from("127.0.0.1", data2.port());
    second.send("STOR guest_20261123070000.zip");
    let mut r = second.reply();
    if r.starts_with("150") {
        r = second.reply();
    }
    assert!(r.starts_with("450"), "{r}");
    conn.write_all(&archive[10..]).unwrap();
    drop(conn);
    assert!(first.reply().starts_with("226"));
    let result = server.result("guest", "guest_20261123070000");
    assert_eq!(result["status"], "accepted");
}

#[test]
fn logged_client_values_are_shortened() {
    let env = Env::new();
    let log = env.path("serve.log");
    let server = Server::start_opts(
        env,
        Options {
            log: Some(log.clone()),
            ..Options::default()
        },
    );
    let user = "U".repeat(8000);
    let mut ctl = Ctl::open(server.port);
    ctl.cmd(&format!("USER {user}"));
    ctl.cmd("PASS x");
    ctl.cmd(&format!("{} x", "Z".repeat(8000)));
    drop(ctl);
    let (_, _env) = server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&"U".repeat(64)),
        "the login is logged, shortened: {text}"
    );
    assert!(!text.contains(&"U".repeat(200)), "a long USER in the log");
    assert!(
        !text.contains(&"Z".repeat(200)),
        "a long command in the log"
    );
}

#[test]
fn replies_do_not_reveal_the_ftp_library() {
    let server = start("");
    let mut ctl = Ctl::raw_from("127.0.0.1", server.port);
    let mut all = ctl.reply();
    for cmd in ["HELP", "SYST", "FEAT"] {
        all.push_str(&ctl.cmd(cmd));
    }
    assert!(ctl.login("guest", "guest").starts_with("230"));
    all.push_str(&ctl.cmd("STAT"));
    all.push_str(&ctl.cmd("HELP"));
    let lower = all.to_lowercase();
    assert!(!lower.contains("unftp"), "{all}");
    assert!(!lower.contains("0.24"), "{all}");
}

#[test]
fn the_http_listener_bounds_its_connections() {
    let server = start("");
    let pid = server.child.id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds();
    // 300 requests that never finish their head.
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", server.http_port)) {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = fds();
    assert!(
        during < before + 100,
        "{before} descriptors before, {during} with 300 partial requests"
    );
    // Their heads time out; a scrape gets through afterwards.
    std::thread::sleep(Duration::from_secs(6));
    let (status, _) = http_get(server.http_port, "/healthz");
    assert_eq!(status, 200);
}

#[test]
fn the_systemd_unit_allows_the_descriptors_the_caps_need() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/smsdrop.service"
    ))
    .unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE in the unit")
        .trim()
        .parse()
        .unwrap();
    // max_sessions (200) × control + data + TLS, the HTTP listener's 64, the
    // queue and the files being read and written.
    assert!(limit >= 4096, "LimitNOFILE={limit}");
}
