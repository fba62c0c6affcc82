//! Several `smsdrop serve` nodes on one spool and one PostgreSQL queue
//! (SPEC §8 scale-out): archives for several accounts land while one node is
//! killed with SIGKILL; every archive must be queued exactly once, and each
//! account's archives committed in order.
//!
//! Needs `SMSDROP_TEST_PG_URL` (`.ci/run` starts a throwaway server); without
//! it the test says so and skips, except in CI.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

/// A node's process, killed when dropped: a failing test leaves no node
/// behind (one kept polling a database that was gone, for good).
struct Node(Child);

impl std::ops::Deref for Node {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(env: &Env, i: usize, url: &str, accounts: &str) -> (Node, u16) {
    let (port, http, pasv) = (free_port(), free_port(), free_port());
    let root = env.dir.path().to_str().unwrap();
    let config = env.path(&format!("node{i}.toml"));
    std::fs::write(
        &config,
        format!(
            "[ftp]\nlisten = \"127.0.0.1:{port}\"\npassive_ports = [{pasv}, {pasv}]\n\
             [spool]\ndir = \"{root}/spool\"\nstate_dir = \"{root}/state\"\n\
             [poller]\ninterval_secs = 1\n\
             [queue]\nbackend = \"postgres\"\nurl = \"{url}\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n{accounts}"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_smsdrop"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until(
        &format!("node {i} did not start"),
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    (Node(child), port)
}

fn archive(rows: usize) -> Vec<u8> {
    let mut text = String::from("TELRN_LONG;TEXT\n");
    for i in 0..rows {
        text.push_str(&format!("7903123{:04};hello {i}\n", i % 10_000));
    }
    zip_bytes(&[("sms/m.csv", text.as_bytes())])
}

#[test]
fn three_nodes_one_killed_every_archive_once_in_order() {
    let Some(url) = test_database() else { return };
    let env = Env::new();
    let logins = ["guest", "acct1", "acct2", "acct3"];
    let mut accounts = String::new();
    for login in logins {
        accounts.push_str(&format!(
            "[[accounts]]\nlogin = \"{login}\"\npassword_hash = \"{HASH}\"\nsenders = [\"TESTSMS\"]\n"
        ));
    }
    let mut nodes: Vec<(Node, u16)> = (0..3).map(|i| node(&env, i, &url, &accounts)).collect();
    let per_account = 75;
    // Mostly small archives, every tenth a large one, so that the kill is
    // likely to catch a node in the middle of one.
    let rows_of = |k: usize| if k % 10 == 3 { 20_000 } else { 5 };
    let (small, large) = (archive(5), archive(20_000));
    let name = |login: &str, k: usize| format!("{login}_20261123{:02}{:02}00", 7 + k / 60, k % 60);
    let drop_range = |range: std::ops::Range<usize>| {
        for k in range {
            for login in logins {
                let bytes = if rows_of(k) == 5 { &small } else { &large };
                land(
                    &env.path("spool").join(login),
                    &format!("{}.zip", name(login, k)),
                    bytes,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    drop_range(0..per_account / 2);
    // Midway: one node dies without warning.
    std::thread::sleep(Duration::from_millis(300));
    let (mut victim, _) = nodes.remove(1);
    victim.kill().unwrap();
    victim.wait().unwrap();
    let in_work: usize = logins
        .iter()
        .map(|l| std::fs::read_dir(env.path("state/work").join(l)).map_or(0, |d| d.count()))
        .sum();
    eprintln!("at the kill, {in_work} archives were being processed");
    drop_range(per_account / 2..per_account);

    let deadline = Instant::now() + Duration::from_secs(180);
    for login in logins {
        for k in 0..per_account {
            let path = env
                .path("spool")
                .join(login)
                .join("results")
                .join(format!("{}.json", name(login, k)));
            while !path.exists() {
                assert!(Instant::now() < deadline, "no {}", path.display());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    for (mut child, _) in nodes {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let total = (per_account * logins.len()) as i64;
    let count =
        |db: &mut postgres::Client, sql: &str| -> i64 { db.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(count(&mut db, "SELECT count(*) FROM batches"), total);
    let rows: usize = (0..per_account).map(rows_of).sum::<usize>() * logins.len();
    assert_eq!(count(&mut db, "SELECT count(*) FROM messages"), rows as i64);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM batches WHERE status <> 'accepted' OR finished_at IS NULL"
        ),
        0
    );
    for login in logins {
        let order: Vec<String> = db
            .query(
                "SELECT batch FROM batches WHERE account = $1 ORDER BY seq",
                &[&login],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            order, sorted,
            "{login}'s archives were committed out of order"
        );
    }
    // Nothing rejected as a duplicate of itself, nothing left behind.
    for login in logins {
        let results = env.path("spool").join(login).join("results");
        for e in std::fs::read_dir(results).unwrap() {
            let n = e.unwrap().file_name().into_string().unwrap();
            assert!(
                !n.contains(".duplicate.") && !n.starts_with('.'),
                "{login}: {n}"
            );
        }
    }
}
