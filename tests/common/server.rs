//! The real `smsdrop serve` on loopback ports, for the end-to-end tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port on the IPv6 loopback.
pub fn free_port_v6() -> u16 {
    TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Is there an IPv6 loopback to test on?
pub fn have_ipv6() -> bool {
    let found = TcpListener::bind("[::1]:0").is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no IPv6 loopback, and CI must run the IPv6 tests"
        );
        eprintln!("SKIPPED: no IPv6 loopback");
    }
    found
}

/// Is `tool` installed? Under CI it must be.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed, and CI must run every client test"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

pub struct Server {
    pub child: Child,
    pub env: Env,
    pub port: u16,
    pub http_port: u16,
    pub config: PathBuf,
}

/// How to start a [`Server`] beyond the defaults.
pub struct Options<'a> {
    pub idle_secs: u64,
    /// Lines added to the `[ftp]` section.
    pub ftp_extra: String,
    /// Passive ports beyond the first (more for many transfers at once).
    pub passive_span: u16,
    /// Lines added to the `[queue]` section.
    pub queue_extra: String,
    /// TOML sections added to the config.
    pub extra: &'a str,
    /// Lines added to the guest account.
    pub account_extra: &'a str,
    /// Environment variables for the server process.
    pub envs: Vec<(&'a str, String)>,
    /// Where the server's stderr (its log) goes; inherited when `None`.
    pub log: Option<PathBuf>,
    /// RLIMIT_FSIZE for the server: writes past it fail with EFBIG, as on a
    /// full disk (SIGXFSZ is ignored so that they fail instead of killing).
    pub file_size_limit: Option<u64>,
    /// FTP on `[::1]` instead of 127.0.0.1.
    pub ipv6: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            idle_secs: 30,
            ftp_extra: String::new(),
            // Five ports, not one: with a single port, a PASV that came while
            // the port was still bound (the last transfer's listener, or a
            // client's ephemeral port) failed all libunftp's bind retries, and
            // curl exited 13 ("weird PASV reply") once in a CI run.
            passive_span: 4,
            queue_extra: String::new(),
            extra: "",
            account_extra: "",
            envs: Vec::new(),
            log: None,
            file_size_limit: None,
            ipv6: false,
        }
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_in(Env::new())
    }

    pub fn start_in(env: Env) -> Server {
        Server::start_with(env, "", "")
    }

    /// `extra` TOML sections are added to the config, `account_extra` lines to
    /// the guest account.
    pub fn start_with(env: Env, extra: &str, account_extra: &str) -> Server {
        Server::start_full(env, 30, extra, account_extra)
    }

    pub fn start_full(env: Env, idle_secs: u64, extra: &str, account_extra: &str) -> Server {
        Server::start_opts(
            env,
            Options {
                idle_secs,
                extra,
                account_extra,
                ..Options::default()
            },
        )
    }

    pub fn start_opts(env: Env, options: Options) -> Server {
        let Options {
            idle_secs,
            ftp_extra,
            passive_span,
            queue_extra,
            extra,
            account_extra,
            envs,
            log,
            file_size_limit,
            ipv6,
        } = options;
        // The listeners are bound here and passed to the server as systemd
        // passes them (LISTEN_FDS): no port is picked, released and hoped
        // free when the server binds it.
        let host = if ipv6 { "[::1]" } else { "127.0.0.1" };
        let ftp_listener = TcpListener::bind(format!("{host}:0")).unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = ftp_listener.local_addr().unwrap().port();
        let http_port = http_listener.local_addr().unwrap().port();
        // Passive ports: a small range near a free port (tests run in parallel).
        let pasv = free_port();
        let root = env.dir.path().to_str().unwrap().to_owned();
        let config = env.config(
            &format!(
                "[ftp]\nlisten = \"{host}:{port}\"\npassive_ports = [{pasv}, {}]\n\
                 idle_timeout_secs = {idle_secs}\n{ftp_extra}\
                 [spool]\ndir = \"{root}/spool\"\nstate_dir = \"{root}/state\"\n\
                 [poller]\ninterval_secs = 1\n\
                 [queue]\npath = \"{root}/state/queue.db\"\n{queue_extra}\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\n{extra}",
                pasv + passive_span
            ),
            account_extra,
        );
        // A second account, to prove isolation.
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[[accounts]]\nlogin = \"other\"\npassword_hash = \"{HASH}\"\nsenders = [\"OTHER\"]\n"
        ));
        std::fs::write(&config, text).unwrap();
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_smsdrop"));
        command
            .args(["serve", "--config", config.to_str().unwrap()])
            .envs(envs)
            .stdout(Stdio::null())
            .stderr(stderr);
        command.env("LISTEN_FDS", "2").env_remove("LISTEN_PID");
        {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let (ftp_fd, http_fd) = (ftp_listener.as_raw_fd(), http_listener.as_raw_fd());
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    // The listeners to descriptors 3 and 4 (through high
                    // numbers, so that neither overwrites the other).
                    let a = libc::fcntl(ftp_fd, libc::F_DUPFD, 100);
                    let b = libc::fcntl(http_fd, libc::F_DUPFD, 100);
                    if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if let Some(limit) = file_size_limit {
                        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                        let rl = libc::rlimit {
                            rlim_cur: limit,
                            rlim_max: libc::RLIM_INFINITY,
                        };
                        if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().unwrap();
        drop((ftp_listener, http_listener));
        // Ready once it greets; asked from an address of its own (on IPv4),
        // so that tests counting one address's connections are not touched.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let connected = if ipv6 {
                TcpStream::connect(format!("{host}:{port}"))
            } else {
                std::panic::catch_unwind(|| super::ctl::connect_from("127.0.0.254", port))
                    .map_err(|_| std::io::Error::other("connect failed"))
            };
            let greeted = connected.and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut first = [0u8; 3];
                s.read_exact(&mut first)?;
                Ok(first)
            });
            if greeted.is_ok_and(|code| code == *b"220") {
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            env,
            port,
            http_port,
            config,
        }
    }

    pub fn url(&self, user: &str, path: &str) -> String {
        format!("ftp://{user}:guest@127.0.0.1:{}/{path}", self.port)
    }

    pub fn home(&self, login: &str) -> PathBuf {
        self.env.path("spool").join(login)
    }

    /// Waits for `results/<batch>.json` of `login` and returns it.
    pub fn result(&self, login: &str, batch: &str) -> Value {
        let path = self
            .home(login)
            .join("results")
            .join(format!("{batch}.json"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(Instant::now() < deadline, "no {}", path.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    pub fn local(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let dir = self.env.path("client");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn queued(&self) -> usize {
        queue_messages(&self.config).len()
    }

    /// SIGTERM and the exit status.
    /// SIGKILL: no chance to finish anything.
    pub fn kill9(mut self) -> Env {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::replace(&mut self.env, Env::new())
    }

    pub fn stop(mut self) -> (i32, Env) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        let env = std::mem::replace(&mut self.env, Env::new());
        (status.code().unwrap_or(-1), env)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sample(text: &str) -> Vec<u8> {
    zip_bytes(&[(
        "sms/m.csv",
        format!("TELRN_LONG;TEXT\n79031234567;{text}\n").as_bytes(),
    )])
}

/// Runs a Python script (`python3 -c SCRIPT ARGS…`) that must succeed (its
/// stderr is the failure message); returns what it printed.
pub fn python(script: &str, args: &[String]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn curl(args: &[&str]) -> i32 {
    Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

/// `GET path` on the HTTP listener: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The value of the one sample of `name` whose labels include every one of
/// `labels` (`key="value"`).
pub fn sample_value(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
}

/// Drops an archive into a home folder the way the FTP landing does: written
/// under a hidden name, then renamed.
pub fn land(home: &std::path::Path, name: &str, bytes: &[u8]) {
    let part = home.join(format!(".{name}.part"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(&part, home.join(name)).unwrap();
}

/// A self-signed certificate and its key for 127.0.0.1, written in `dir`.
pub fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (cert, key)
}

/// An `[ftp.tls]` section with a fresh self-signed certificate in `env`.
pub fn tls_section(env: &Env, require: bool) -> String {
    let (cert, key) = self_signed(env.dir.path());
    format!(
        "[ftp.tls]\ncert = {:?}\nkey = {:?}\nrequire = {require}\n",
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    )
}
