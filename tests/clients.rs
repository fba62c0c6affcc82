//! Customers' clients and habits (SPEC §2, docs/clients.md): each test drives
//! the real server with a real client as customers use it — listings while
//! archives are picked up, temporary names, patterns, resumed downloads,
//! active mode over IPv6, post-upload checks — plus raw exchanges where the
//! exact replies matter (RFC 959/2428/3659).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ctl::*;
use common::server::*;
use common::*;

fn batch(i: usize) -> String {
    format!("guest_2026112307{:04}", i)
}

/// Runs a client; its output. Killed after 60 s.
fn run(program: &str, args: &[&str]) -> Output {
    let child = Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "exit {:?}: {text}", out.status.code());
    text
}

/// The home's files but results/.
fn left_in_home(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.home("guest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "results")
        .collect();
    names.sort();
    names
}

/// A folder `name` of the test's own holding three archives of `text`,
/// batches 0 to 2.
fn three_archives(server: &Server, name: &str, text: &str) -> std::path::PathBuf {
    let dir = server.env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        std::fs::write(dir.join(format!("{}.zip", batch(i))), sample(text)).unwrap();
    }
    dir
}

fn three_accepted(server: &Server) {
    for i in 0..3 {
        assert_eq!(server.result("guest", &batch(i))["status"], "accepted");
    }
}

#[test]
fn listings_never_fail_while_archives_are_picked_up_and_results_published() {
    let server = Server::start();
    let port = server.port;
    let lister = std::thread::spawn(move || {
        python(
            r#"
import ftplib, sys, time
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("guest", "guest")
failures, listings = [], 0
end = time.time() + float(sys.argv[2])
while time.time() < end:
    for how in ("MLSD /", "LIST /", "NLST results", "MLSD results", "LIST results"):
        try:
            if how.startswith("MLSD"):
                list(ftp.mlsd(how.split()[1]))
            elif how.startswith("NLST"):
                ftp.nlst(how.split()[1])
            else:
                ftp.retrlines(how, lambda line: None)
            listings += 1
        except ftplib.Error as e:
            failures.append(f"{how}: {e}")
print(listings, len(failures), failures[:3])
"#,
            &[port.to_string(), "6".into()],
        )
    });
    let home = server.home("guest");
    for i in 0..100 {
        land(&home, &format!("{}.zip", batch(i)), &sample("race"));
        std::thread::sleep(Duration::from_millis(40));
    }
    let out = lister.join().unwrap();
    let mut fields = out.split_whitespace();
    let listings: usize = fields.next().unwrap().parse().unwrap();
    let failures: usize = fields.next().unwrap().parse().unwrap();
    assert!(listings > 50, "{out}");
    assert_eq!(failures, 0, "{out}");
}

#[test]
fn rclone_copies_once_and_its_post_upload_check_finds_the_archive() {
    if !have("rclone") {
        return;
    }
    let server = Server::start();
    let dir = three_archives(&server, "rclone", "rclone");
    let obscured = ok(&run("rclone", &["obscure", "guest"])).trim().to_owned();
    let port = server.port.to_string();
    let out = run(
        "rclone",
        &[
            "copy",
            dir.to_str().unwrap(),
            ":ftp:",
            "--ftp-host",
            "127.0.0.1",
            "--ftp-port",
            &port,
            "--ftp-user",
            "guest",
            "--ftp-pass",
            &obscured,
            "--retries",
            "1",
            "-v",
        ],
    );
    let text = ok(&out);
    assert!(!text.contains("ERROR"), "{text}");
    three_accepted(&server);
    std::thread::sleep(Duration::from_millis(500));
    let results: Vec<_> = std::fs::read_dir(server.home("guest").join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("duplicate"))
        .collect();
    assert!(results.is_empty(), "uploaded twice: {results:?}");
}

#[test]
fn uploads_under_a_temporary_name_land_when_renamed() {
    let server = Server::start();
    let port = server.port.to_string();
    let url = server.url("guest", "");
    let mut expected = Vec::new();
    // curl: upload as .part, then RNFR/RNTO after the transfer.
    let a = server.local("a.zip", &sample("curl temp"));
    let name = batch(1);
    assert_eq!(
        curl(&[
            "-T",
            a.to_str().unwrap(),
            &format!("{url}{name}.zip.part"),
            "-Q",
            &format!("-RNFR {name}.zip.part"),
            "-Q",
            &format!("-RNTO {name}.zip"),
        ]),
        0
    );
    expected.push(name);
    if have("lftp") {
        let name = batch(2);
        let file = server.local(&format!("{name}.zip"), &sample("lftp temp"));
        ok(&run(
            "lftp",
            &[
                "-e",
                &format!(
                    "set xfer:use-temp-file yes; set net:max-retries 1; put {}; bye",
                    file.display()
                ),
                "-u",
                "guest,guest",
                &format!("ftp://127.0.0.1:{port}"),
            ],
        ));
        expected.push(name);
    }
    if have("ncftpput") {
        for (i, flag) in [(3, ["-T", "tmp."]), (4, ["-S", ".tmp"])] {
            let name = batch(i);
            let file = server.local(&format!("{name}.zip"), &sample("ncftp temp"));
            ok(&run(
                "ncftpput",
                &[
                    "-u",
                    "guest",
                    "-p",
                    "guest",
                    "-P",
                    &port,
                    flag[0],
                    flag[1],
                    "127.0.0.1",
                    "/",
                    file.to_str().unwrap(),
                ],
            ));
            expected.push(name);
        }
    }
    for name in &expected {
        assert_eq!(server.result("guest", name)["status"], "accepted", "{name}");
    }
    // No archive was taken under its temporary name (ncftpput -T tmp.).
    let results: Vec<String> = std::fs::read_dir(server.home("guest").join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        results.iter().all(|n| n.starts_with("guest_")),
        "{results:?}"
    );
    wait_until("archives picked up", Duration::from_secs(20), || {
        left_in_home(&server).is_empty()
    });
    // A temporary upload that is never renamed stays, untouched.
    let b = server.local("b.zip", &sample("kept"));
    assert_eq!(
        curl(&[
            "-T",
            b.to_str().unwrap(),
            &format!("{url}tmp.{}.zip", batch(9))
        ]),
        0
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(left_in_home(&server), [format!("tmp.{}.zip", batch(9))]);
    // Only a temporary name can be renamed, and only to an archive's name.
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let r = ctl.cmd(&format!("RNFR tmp.{}.zip", batch(9)));
    assert!(r.starts_with("350"), "{r}");
    let r = ctl.cmd("RNTO notes.txt");
    assert!(r.starts_with("553"), "{r}");
    let r = ctl.cmd("RNFR results");
    assert!(r.starts_with("350") || r.starts_with("550"), "{r}");
    if r.starts_with("350") {
        let r = ctl.cmd(&format!("RNTO {}.zip", batch(10)));
        assert!(r.starts_with("553"), "{r}");
    }
}

#[test]
fn listings_take_patterns_options_and_files() {
    let server = Server::start();
    let results = server.home("guest").join("results");
    std::fs::write(results.join("a.json"), b"{}").unwrap();
    std::fs::write(results.join("b.json"), b"{}").unwrap();
    std::fs::write(results.join("a.csv"), b"x").unwrap();
    let out = python(
        r#"
import ftplib, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("guest", "guest")
print(sorted(ftp.nlst("results/*.json")))
print(sorted(ftp.nlst("-CF results")))
lines = []
ftp.retrlines("LIST -la results/a.csv", lines.append)
print(len(lines), lines[0].split()[-1])
lines = []
ftp.retrlines("LIST results/?.csv", lines.append)
print(len(lines))
"#,
        &[server.port.to_string()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "['a.json', 'b.json']");
    assert_eq!(lines[1], "['a.csv', 'a.json', 'b.json']");
    assert_eq!(lines[2], "1 a.csv");
    assert_eq!(lines[3], "1");
    if have("lftp") {
        let text = ok(&run(
            "lftp",
            &[
                "-e",
                "set net:max-retries 1; ls results/a.json; bye",
                "-u",
                "guest,guest",
                &format!("ftp://127.0.0.1:{}", server.port),
            ],
        ));
        assert!(text.contains("a.json"), "{text}");
    }
    if have("ncftpls") {
        let text = ok(&run(
            "ncftpls",
            &[
                "-u",
                "guest",
                "-p",
                "guest",
                "-P",
                &server.port.to_string(),
                "ftp://127.0.0.1/results/",
            ],
        ));
        assert!(text.contains("a.json") && text.contains("a.csv"), "{text}");
    }
    if have("ncftpget") {
        let into = server.env.path("got");
        std::fs::create_dir_all(&into).unwrap();
        ok(&run(
            "ncftpget",
            &[
                "-u",
                "guest",
                "-p",
                "guest",
                "-P",
                &server.port.to_string(),
                "127.0.0.1",
                into.to_str().unwrap(),
                "results/*.json",
            ],
        ));
        assert!(into.join("a.json").exists() && into.join("b.json").exists());
        assert!(!into.join("a.csv").exists());
    }
}

/// The classic command-line clients in active mode, as Windows `ftp.exe` is
/// used: a script on stdin, `mget` with a pattern. inetutils' `ftp` is active
/// by default (like `ftp.exe`); tnftp (the BSD client) is told to be.
#[test]
fn classic_ftp_clients_in_active_mode_get_results_with_a_pattern() {
    for (client, setup) in [("inetutils-ftp", ""), ("tnftp", "passive off\n")] {
        if !have(client) {
            continue;
        }
        let server = Server::start();
        let results = server.home("guest").join("results");
        std::fs::write(results.join("a.json"), b"{\"a\":1}").unwrap();
        std::fs::write(results.join("b.json"), b"{\"b\":2}").unwrap();
        let into = server.env.path("got");
        std::fs::create_dir_all(&into).unwrap();
        let upload = server.local(&format!("{}.zip", batch(1)), &sample(client));
        let script = format!(
            "open 127.0.0.1 {}\nuser guest guest\n{setup}binary\nprompt\nput {} {}.zip\n\
             cd results\nmget *.json\nbye\n",
            server.port,
            upload.display(),
            batch(1)
        );
        let mut child = Command::new(client)
            .args(["-n", "-v"])
            .current_dir(&into)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("200 PORT") || text.contains("200 EPRT"),
            "{client}: {text}"
        );
        assert!(
            !text.contains("227") && !text.contains("229"),
            "{client} went passive: {text}"
        );
        assert_eq!(
            std::fs::read(into.join("a.json")).unwrap(),
            b"{\"a\":1}",
            "{client}"
        );
        assert_eq!(
            std::fs::read(into.join("b.json")).unwrap(),
            b"{\"b\":2}",
            "{client}"
        );
        assert_eq!(
            server.result("guest", &batch(1))["status"],
            "accepted",
            "{client}"
        );
    }
}

#[test]
fn a_missing_file_is_550_before_150_and_wget_gives_up_at_once() {
    let server = Server::start();
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    ctl.pasv();
    let r = ctl.cmd("RETR results/none.json");
    assert!(r.starts_with("550"), "{r}");
    assert!(ctl.cmd("NOOP").starts_with("200"));
    if have("wget") {
        let into = server.env.path("wget");
        std::fs::create_dir_all(&into).unwrap();
        let start = Instant::now();
        let out = Command::new("wget")
            .args(["-q", "-t", "3"])
            .arg(format!(
                "ftp://guest:guest@127.0.0.1:{}/results/none.json",
                server.port
            ))
            .current_dir(&into)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(!into.join("none.json").exists(), "wget left a file");
    }
}

#[test]
fn downloads_resume() {
    let server = Server::start();
    let whole: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(server.home("guest").join("results/big.csv"), &whole).unwrap();
    let local = server.local("big.csv", &whole[..70_000]);
    assert_eq!(
        curl(&[
            "-C",
            "-",
            "-o",
            local.to_str().unwrap(),
            &server.url("guest", "results/big.csv"),
        ]),
        0
    );
    assert_eq!(std::fs::read(&local).unwrap(), whole);
}

#[test]
fn active_mode_over_ipv6() {
    if !have_ipv6() {
        return;
    }
    let server = Server::start_opts(
        Env::new(),
        Options {
            ipv6: true,
            ..Options::default()
        },
    );
    let port = server.port;
    let file = server.local("a.zip", &sample("ipv6 active"));
    let url = format!("ftp://guest:guest@[::1]:{port}/{}.zip", batch(1));
    // curl -P - : active mode, which is EPRT over IPv6.
    assert_eq!(curl(&["-P", "-", "-T", file.to_str().unwrap(), &url]), 0);
    assert_eq!(server.result("guest", &batch(1))["status"], "accepted");
    if have("lftp") {
        let file = server.local(&format!("{}.zip", batch(2)), &sample("lftp v6"));
        ok(&run(
            "lftp",
            &[
                "-e",
                &format!(
                    "set ftp:passive-mode off; set net:max-retries 1; put {}; bye",
                    file.display()
                ),
                "-u",
                "guest,guest",
                &format!("ftp://[::1]:{port}"),
            ],
        ));
        assert_eq!(server.result("guest", &batch(2))["status"], "accepted");
    }
    // EPRT names the client's own address only.
    let mut ctl = Ctl::open_addr(format!("[::1]:{port}").parse().unwrap());
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let r = ctl.cmd("EPRT |2|2001:db8::1|5000|");
    assert!(r.starts_with("504"), "{r}");
    let r = ctl.cmd("EPRT |2|::1|80|");
    assert!(r.starts_with("504"), "{r}");
    let r = ctl.cmd("EPRT |x|");
    assert!(r.starts_with("501"), "{r}");
}

#[test]
fn malformed_arguments_get_501_and_the_session_goes_on() {
    let server = Server::start();
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    for cmd in [
        "CWD",
        "OPTS UTF-8 ON",
        "MODE Z",
        "STOU name",
        "PORT 1,2,3",
        "TYPE",
    ] {
        let r = ctl.cmd(cmd);
        assert!(r.starts_with("501") || r.starts_with("200"), "{cmd}: {r}");
        let r = ctl.cmd("NOOP");
        assert!(r.starts_with("200"), "after {cmd}: {r}");
    }
}

#[test]
fn replies_follow_the_rfcs_for_status_rename_and_times() {
    let server = Server::start();
    std::fs::write(server.home("guest").join("results/a.json"), b"{}").unwrap();
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let r = ctl.cmd("STAT results/a.json");
    assert!(r.starts_with("213-") && r.contains("a.json"), "{r}");
    let r = ctl.cmd("RNFR nothing.zip.tmp");
    assert!(r.starts_with("550"), "{r}");
    let feat = ctl.cmd("FEAT");
    for f in ["MFMT", "MDTM", "SIZE", "MLST", "REST STREAM"] {
        assert!(feat.contains(f), "{f} not in {feat}");
    }
    let r = ctl.cmd("MFMT 20261123070000 results/a.json");
    assert!(
        r.starts_with("213") && r.contains("Modify=20261123070000"),
        "{r}"
    );
    let r = ctl.cmd("MFMT 20261123070000 results/none.json");
    assert!(r.starts_with("550"), "{r}");
    let r = ctl.cmd("SITE CHMOD 644 results/a.json");
    assert!(r.starts_with("200"), "{r}");
}

#[test]
fn a_just_landed_archive_answers_size_mdtm_and_mlst_for_a_while() {
    let server = Server::start();
    let bytes = sample("checked after upload");
    let file = server.local("a.zip", &bytes);
    let name = format!("{}.ZIP", batch(1));
    assert_eq!(
        curl(&["-T", file.to_str().unwrap(), &server.url("guest", &name)]),
        0
    );
    // Upper-case extension: an archive too.
    assert_eq!(server.result("guest", &batch(1))["status"], "accepted");
    wait_until("archive picked up", Duration::from_secs(20), || {
        left_in_home(&server).is_empty()
    });
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    let r = ctl.cmd(&format!("SIZE {name}"));
    assert_eq!(r.trim(), format!("213 {}", bytes.len()));
    assert!(ctl.cmd(&format!("MDTM {name}")).starts_with("213"));
    let r = ctl.cmd(&format!("MLST {name}"));
    assert!(r.starts_with("250") && r.contains(&name), "{r}");
    let listing = python(
        r#"
import ftplib, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("guest", "guest")
print([name for name, facts in ftp.mlsd("/")])
"#,
        &[server.port.to_string()],
    );
    assert!(listing.contains(&name), "{listing}");
}

/// What Windows Explorer sends: an anonymous login first, then the
/// account's; the anonymous attempt does not count toward the login guard.
#[test]
fn an_anonymous_attempt_does_not_count_toward_the_login_guard() {
    let server = Server::start_opts(
        Env::new(),
        Options {
            ftp_extra: "[ftp.login_guard]\nmax_failures = 2\nwindow_secs = 300\nban_secs = 300\n"
                .into(),
            ..Options::default()
        },
    );
    for _ in 0..3 {
        let mut ctl = Ctl::open(server.port);
        let r = ctl.login("anonymous", "IEUser@");
        assert!(r.starts_with("530"), "{r}");
    }
    let mut ctl = Ctl::open(server.port);
    let r = ctl.login("anonymous", "IEUser@");
    assert!(r.starts_with("530"), "{r}");
    let r = ctl.login("guest", "guest");
    assert!(
        r.starts_with("230"),
        "not banned by anonymous attempts: {r}"
    );
}

/// An archive over `max_archive_bytes` (but less than twice it) is read to
/// its end and refused with 552, which the client sees, instead of a reset
/// while it is still sending.
#[test]
fn an_oversized_archive_is_told_552() {
    let server = Server::start_with(Env::new(), "[limits]\nmax_archive_bytes = 10000000", "");
    let mut x: u64 = 7;
    let bytes: Vec<u8> = (0..18_000_000)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    let file = server.local("big.zip", &bytes);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-T"])
        .arg(&file)
        .arg(server.url("guest", &format!("{}.zip", batch(1))))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 70: curl's "disk full on the server", its reading of a 552 (a reset
    // while sending is 55).
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(left_in_home(&server).is_empty());
}

/// A transfer over a fresh passive connection: the command's replies and
/// what came over the data connection.
fn transfer(ctl: &mut Ctl, command: &str, upload: Option<&[u8]>) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let data = ctl.pasv();
    let mut conn = std::net::TcpStream::connect(data).unwrap();
    let first = ctl.cmd(command);
    assert!(first.starts_with("150"), "{command}: {first}");
    let mut got = Vec::new();
    match upload {
        Some(bytes) => conn.write_all(bytes).unwrap(),
        None => {
            conn.read_to_end(&mut got).unwrap();
        }
    }
    drop(conn);
    let last = ctl.reply();
    assert!(last.starts_with("226"), "{command}: {last}");
    (first + &last, got)
}

/// What Windows Explorer and FileZilla send, replayed command by command (the
/// programs themselves do not run here): every reply is one they accept.
#[test]
fn windows_explorer_and_filezilla_sessions_replayed() {
    let server = Server::start();
    // Windows Explorer: anonymous first, then the account; ASCII listings.
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("anonymous", "IEUser@").starts_with("530"));
    assert!(ctl.login("guest", "guest").starts_with("230"));
    for (cmd, want) in [
        ("OPTS UTF8 ON", "200"),
        ("PWD", "257"),
        ("CWD /", "250"),
        ("TYPE A", "200"),
    ] {
        let r = ctl.cmd(cmd);
        assert!(r.starts_with(want), "{cmd}: {r}");
    }
    let (_, listing) = transfer(&mut ctl, "LIST", None);
    assert!(String::from_utf8_lossy(&listing).contains("results"));
    assert!(ctl.cmd("TYPE I").starts_with("200"));
    let name = format!("{}.zip", batch(1));
    assert!(ctl.cmd(&format!("SIZE {name}")).starts_with("550"));
    transfer(&mut ctl, &format!("STOR {name}"), Some(&sample("explorer")));
    assert_eq!(server.result("guest", &batch(1))["status"], "accepted");
    // FileZilla: FEAT, MLSD, upload, MFMT to keep the local time, refresh.
    let mut ctl = Ctl::open(server.port);
    assert!(ctl.login("guest", "guest").starts_with("230"));
    for (cmd, want) in [
        ("SYST", "215"),
        ("FEAT", "211"),
        ("OPTS UTF8 ON", "200"),
        ("PWD", "257"),
        ("TYPE I", "200"),
    ] {
        let r = ctl.cmd(cmd);
        assert!(r.starts_with(want), "{cmd}: {r}");
    }
    transfer(&mut ctl, "MLSD", None);
    let name = format!("{}.zip", batch(2));
    transfer(
        &mut ctl,
        &format!("STOR {name}"),
        Some(&sample("filezilla")),
    );
    let r = ctl.cmd(&format!("MFMT 20261123070000 {name}"));
    assert!(r.starts_with("213"), "{r}");
    let (_, listing) = transfer(&mut ctl, "MLSD", None);
    assert!(String::from_utf8_lossy(&listing).contains(&name));
    assert_eq!(server.result("guest", &batch(2))["status"], "accepted");
}

/// BusyBox's `ftpput`/`ftpget` (small routers, containers) and wget
/// downloading a result; a WinSCP-style `*.filepart` upload renamed.
#[test]
fn busybox_wget_and_a_filepart_rename() {
    let server = Server::start();
    let port = server.port.to_string();
    if have("busybox") {
        let file = server.local("bb.zip", &sample("busybox"));
        let name = format!("{}.zip", batch(1));
        ok(&run(
            "busybox",
            &[
                "ftpput",
                "-u",
                "guest",
                "-p",
                "guest",
                "-P",
                &port,
                "127.0.0.1",
                &name,
                file.to_str().unwrap(),
            ],
        ));
        assert_eq!(server.result("guest", &batch(1))["status"], "accepted");
        let got = server.env.path("bb.json");
        ok(&run(
            "busybox",
            &[
                "ftpget",
                "-u",
                "guest",
                "-p",
                "guest",
                "-P",
                &port,
                "127.0.0.1",
                got.to_str().unwrap(),
                &format!("results/{}.json", batch(1)),
            ],
        ));
        assert!(std::fs::read_to_string(&got).unwrap().contains("accepted"));
    }
    if have("wget") {
        std::fs::write(server.home("guest").join("results/w.json"), b"{\"w\":1}").unwrap();
        let into = server.env.path("wget");
        std::fs::create_dir_all(&into).unwrap();
        let out = Command::new("wget")
            .args(["-q", "-t", "1"])
            .arg(format!("ftp://guest:guest@127.0.0.1:{port}/results/w.json"))
            .current_dir(&into)
            .output()
            .unwrap();
        ok(&out);
        assert_eq!(std::fs::read(into.join("w.json")).unwrap(), b"{\"w\":1}");
    }
    // WinSCP's temporary name, then its rename.
    let file = server.local("w.zip", &sample("winscp"));
    let name = batch(2);
    assert_eq!(
        curl(&[
            "-T",
            file.to_str().unwrap(),
            &server.url("guest", &format!("{name}.zip.filepart")),
            "-Q",
            &format!("-RNFR {name}.zip.filepart"),
            "-Q",
            &format!("-RNTO {name}.zip"),
        ]),
        0
    );
    assert_eq!(server.result("guest", &name)["status"], "accepted");
}

/// `lftp mirror -R` uploads a folder of archives (and sends `SITE CHMOD`
/// after each); `mirror` brings the results back.
#[test]
fn lftp_mirrors_archives_up_and_results_down() {
    if !have("lftp") {
        return;
    }
    let server = Server::start();
    let up = three_archives(&server, "up", "mirrored");
    let url = format!("ftp://127.0.0.1:{}", server.port);
    ok(&run(
        "lftp",
        &[
            "-e",
            &format!("set net:max-retries 1; mirror -R {} /; bye", up.display()),
            "-u",
            "guest,guest",
            &url,
        ],
    ));
    three_accepted(&server);
    let down = server.env.path("down");
    ok(&run(
        "lftp",
        &[
            "-e",
            &format!(
                "set net:max-retries 1; mirror results {}; bye",
                down.display()
            ),
            "-u",
            "guest,guest",
            &url,
        ],
    ));
    assert!(down.join(format!("{}.json", batch(0))).exists());
}
