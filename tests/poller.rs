//! The poller on a real spool: order, what it leaves alone, resuming after a
//! crash, pruning.

mod common;

use std::path::Path;

use common::*;
use smsdrop::config::Config;
use smsdrop::intake::zone::NumberZones;
use smsdrop::poller::{poll_account, prune};
use smsdrop::queue::{Queue, SqliteQueue};

fn setup(env: &Env) -> Config {
    let root = env.dir.path().to_str().unwrap().to_owned();
    let path = env.config(
        &format!(
            "[spool]\ndir = \"{root}/spool\"\nstate_dir = \"{root}/state\"\nkeep_processed_days = 7\n\
             [queue]\npath = \"{root}/state/queue.db\""
        ),
        "",
    );
    Config::load(&path).unwrap()
}

fn archive(text: &str) -> Vec<u8> {
    zip_bytes(&[(
        "m.csv",
        format!("TELRN_LONG;TEXT\n79031234567;{text}\n").as_bytes(),
    )])
}

fn drop_file(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn oldest_first_and_everything_else_left_alone() {
    let env = Env::new();
    let config = setup(&env);
    let home = env.path("spool/guest");
    // Written newest first, so file times disagree with the names.
    drop_file(&home, "guest_20261123090000.zip", &archive("third"));
    drop_file(&home, "guest_20261123070000.zip", &archive("first"));
    drop_file(&home, "guest_20261123080000.zip", &archive("second"));
    drop_file(&home, "notes.txt", b"keep me");
    drop_file(&home, ".guest_20261123060000.zip.part", b"uploading");

    let mut queue = SqliteQueue::open(&config.queue.path).unwrap();
    let zones = NumberZones::default();
    let reports = poll_account(&config, &zones, &mut queue, &config.accounts[0]).unwrap();
    let batches: Vec<&str> = reports.iter().map(|r| r.summary.batch.as_str()).collect();
    assert_eq!(
        batches,
        [
            "guest_20261123070000",
            "guest_20261123080000",
            "guest_20261123090000"
        ]
    );
    let mut texts = Vec::new();
    queue
        .list(None, &mut |m| {
            texts.push(m.text.clone());
            Ok(())
        })
        .unwrap();
    assert_eq!(texts, ["first", "second", "third"]);

    let mut left: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".guest_20261123060000.zip.part", "notes.txt", "results"]
    );
    let account = &config.accounts[0];
    assert_eq!(
        std::fs::read_dir(config.spool.processed(&account.login))
            .unwrap()
            .count(),
        3
    );
    assert_eq!(
        std::fs::read_dir(config.spool.work(&account.login))
            .unwrap()
            .count(),
        0
    );
    assert!(home.join("results/guest_20261123080000.json").exists());

    // A second upload under a used name: DUPLICATE_BATCH, kept apart.
    drop_file(&home, "guest_20261123070000.zip", &archive("again"));
    let reports = poll_account(&config, &zones, &mut queue, account).unwrap();
    assert_eq!(
        reports[0].summary.error.as_ref().unwrap().code.as_str(),
        "DUPLICATE_BATCH"
    );
    assert!(
        home.join("results/guest_20261123070000.duplicate.json")
            .exists()
    );
    assert_eq!(
        std::fs::read_dir(config.spool.processed(&account.login))
            .unwrap()
            .count(),
        4
    );

    // Pruning: nothing is old yet; in 8 days the kept archives are, in 31
    // days the results too (keep_results_days = 30).
    let results = std::fs::read_dir(home.join("results")).unwrap().count();
    assert!(results >= 4, "{results} results files");
    assert_eq!(prune(&config, chrono::Utc::now()).unwrap(), 0);
    assert_eq!(
        prune(&config, chrono::Utc::now() + chrono::Duration::days(8)).unwrap(),
        4
    );
    assert!(home.join("results/guest_20261123080000.json").exists());
    assert_eq!(
        prune(&config, chrono::Utc::now() + chrono::Duration::days(31)).unwrap(),
        results
    );
    assert_eq!(std::fs::read_dir(home.join("results")).unwrap().count(), 0);
}

#[test]
fn an_archive_left_in_work_is_resumed_first_and_queued_once() {
    let env = Env::new();
    let config = setup(&env);
    let account = &config.accounts[0];
    let mut queue = SqliteQueue::open(&config.queue.path).unwrap();
    let zones = NumberZones::default();

    // A process died while reading this one (nothing committed) ...
    drop_file(
        &config.spool.work(&account.login),
        "guest_20261123080000.zip",
        &archive("resumed"),
    );
    // ... and this one was committed and finished but not yet put away.
    drop_file(
        &env.path("spool/guest"),
        "guest_20261123070000.zip",
        &archive("done"),
    );
    let first = poll_account(&config, &zones, &mut queue, account).unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].summary.batch, "guest_20261123080000");

    drop_file(
        &config.spool.work(&account.login),
        "guest_20261123070000.zip",
        &archive("done"),
    );
    let again = poll_account(&config, &zones, &mut queue, account).unwrap();
    assert!(again.is_empty(), "a finished batch is only put away");
    let mut count = 0;
    queue
        .list(None, &mut |_| {
            count += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(count, 2);
    assert!(
        !env.path("spool/guest/results/guest_20261123070000.duplicate.json")
            .exists()
    );
}
