//! The server run in this process (`serve::run` on listeners bound here to
//! `127.0.0.1:0`), on tokio's paused clock: timeouts of minutes are tested in
//! milliseconds of real time. The clock moves only when every task waits, so
//! what is tested is the order of events, not the machine's speed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use smsdrop::config::Config;
use smsdrop::intake::zone::NumberZones;
use smsdrop::serve::{Listeners, run};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use common::*;

/// Starts the server with `ftp_extra` in its `[ftp]` section; its FTP address
/// and the token that stops it.
async fn start(env: &Env, ftp_extra: &str) -> (std::net::SocketAddr, CancellationToken) {
    let root = env.dir.path().display();
    let path = env.config(
        &format!(
            "[ftp]\n{ftp_extra}\n[spool]\ndir = \"{root}/spool\"\nstate_dir = \"{root}/state\"\n\
             [queue]\npath = \"{root}/state/queue.db\"\n"
        ),
        "",
    );
    let config = Arc::new(Config::load(&path).unwrap());
    let ftp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ftp.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(run(
        Listeners { ftp, http },
        config,
        None,
        Arc::new(NumberZones::default()),
        shutdown.clone(),
    ));
    (addr, shutdown)
}

/// Reads reply lines until the one starting with `code` (or the end).
async fn until(reader: &mut BufReader<TcpStream>, code: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap() == 0 || line.starts_with(code) {
            return line;
        }
    }
}

/// How long the server took, on the paused clock, to close `reader`'s
/// connection.
async fn closed_after(reader: &mut BufReader<TcpStream>) -> Duration {
    let start = tokio::time::Instant::now();
    let mut line = String::new();
    while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
        line.clear();
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_at_the_login_timeout() {
    let env = Env::new();
    let (addr, shutdown) = start(&env, "login_timeout_secs = 30\nidle_timeout_secs = 3600").await;
    let real = std::time::Instant::now();
    let mut reader = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert!(until(&mut reader, "220").await.starts_with("220"));
    let took = closed_after(&mut reader).await;
    assert!(
        (Duration::from_secs(29)..Duration::from_secs(32)).contains(&took),
        "closed after {took:?} on the paused clock"
    );
    assert!(
        real.elapsed() < Duration::from_secs(20),
        "{:?}",
        real.elapsed()
    );
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_logged_in_session_is_closed_at_the_idle_timeout_not_the_login_timeout() {
    let env = Env::new();
    let (addr, shutdown) = start(&env, "login_timeout_secs = 5\nidle_timeout_secs = 600").await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut reader = BufReader::new(stream);
    assert!(until(&mut reader, "220").await.starts_with("220"));
    reader
        .get_mut()
        .write_all(b"USER guest\r\nPASS guest\r\n")
        .await
        .unwrap();
    assert!(until(&mut reader, "230").await.starts_with("230"));
    let took = closed_after(&mut reader).await;
    assert!(
        (Duration::from_secs(599)..Duration::from_secs(605)).contains(&took),
        "closed after {took:?} on the paused clock"
    );
    shutdown.cancel();
}
