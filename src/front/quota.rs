//! Per-account storage (SPEC §2): an account's home, its results and its
//! kept archives (`work/`, `processed/`) together stay under
//! `max_account_bytes`; an upload that would go beyond it is refused (552).
//!
//! What is stored is measured when an upload starts (a walk of the account's
//! folders, on the blocking pool); what its uploads in progress have received
//! is counted as it arrives, so parallel uploads cannot each pass the check
//! alone (20 parallel 95 MB uploads into one account).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::Live;

#[derive(Debug)]
pub struct Quota {
    config: Arc<Live>,
    /// Bytes received so far by each account's uploads in progress.
    receiving: Mutex<HashMap<String, u64>>,
}

/// One upload's bytes, counted against its account until dropped.
#[derive(Debug)]
pub struct Charge {
    quota: Arc<Quota>,
    login: String,
    /// Stored when the upload started.
    stored: u64,
    limit: u64,
    bytes: u64,
}

/// Bytes of the regular files under `dir`, hidden files (uploads in
/// progress, counted as they arrive) left out; a missing folder is empty.
fn bytes_under(dir: &Path) -> io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Vanished meanwhile (picked up, pruned): nothing to count.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += bytes_under(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

impl Quota {
    pub fn new(config: Arc<Live>) -> Arc<Quota> {
        Arc::new(Quota {
            config,
            receiving: Mutex::default(),
        })
    }

    /// Starts counting an upload for `login` (blocking: walks its folders).
    pub fn charge(self: &Arc<Self>, login: &str) -> io::Result<Charge> {
        let config = self.config.get();
        let spool = &config.spool;
        let stored = bytes_under(&spool.home(login))?
            + bytes_under(&spool.work(login))?
            + bytes_under(&spool.processed(login))?;
        let limit = config.max_account_bytes(config.account(login));
        Ok(Charge {
            quota: self.clone(),
            login: login.to_owned(),
            stored,
            limit,
            bytes: 0,
        })
    }
}

impl Charge {
    /// Counts `n` more bytes; `Err(limit)` when the account would go beyond
    /// its limit.
    pub fn add(&mut self, n: u64) -> Result<(), u64> {
        self.bytes += n;
        let mut receiving = self.quota.receiving.lock().expect("quota lock");
        let all = receiving.entry(self.login.clone()).or_default();
        *all += n;
        if self.stored + *all > self.limit {
            Err(self.limit)
        } else {
            Ok(())
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut receiving = self.quota.receiving.lock().expect("quota lock");
        if let Some(all) = receiving.get_mut(&self.login) {
            *all = all.saturating_sub(self.bytes);
            if *all == 0 {
                receiving.remove(&self.login);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_receiving_bytes_count_against_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display();
        let text = format!(
            "[spool]\ndir = \"{root}/spool\"\nstate_dir = \"{root}/state\"\n\
             [limits]\nmax_account_bytes = 1000\n\
             [[accounts]]\nlogin = \"a\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE\"\nsenders = [\"S\"]\n"
        );
        let config = crate::config::Config::from_toml(&text, "t").unwrap();
        let results = config.spool.results("a");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("r.json"), vec![0; 300]).unwrap();
        std::fs::write(config.spool.home("a").join(".x.zip.part"), vec![0; 999]).unwrap();
        std::fs::create_dir_all(config.spool.processed("a")).unwrap();
        std::fs::write(config.spool.processed("a").join("p.zip"), vec![0; 200]).unwrap();
        let quota = Quota::new(Arc::new(Live::new(Arc::new(config))));
        let mut one = quota.charge("a").unwrap();
        let mut two = quota.charge("a").unwrap();
        assert_eq!(one.stored, 500);
        one.add(300).unwrap();
        assert_eq!(two.add(201), Err(1000), "the other upload's bytes count");
        drop(one);
        two.add(0).unwrap();
        drop(two);
        assert!(quota.receiving.lock().unwrap().is_empty());
    }
}
