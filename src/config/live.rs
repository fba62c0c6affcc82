//! The configuration a running server works with ([`Live`]), replaced whole
//! on reload, and what a reload (SIGHUP) applies ([`Config::with_accounts_of`]).

use super::Config;

/// The configuration a running server works with, replaced whole on reload
/// so that every reader sees one consistent snapshot.
#[derive(Debug)]
pub struct Live(std::sync::RwLock<std::sync::Arc<Config>>);

impl Live {
    pub fn new(config: std::sync::Arc<Config>) -> Live {
        Live(std::sync::RwLock::new(config))
    }

    pub fn get(&self) -> std::sync::Arc<Config> {
        self.0.read().expect("config lock").clone()
    }

    pub fn set(&self, config: std::sync::Arc<Config>) {
        *self.0.write().expect("config lock") = config;
    }
}

impl Config {
    /// This configuration with the accounts of `newer` (what SIGHUP applies),
    /// and whether `newer` also changes something that needs a restart (any
    /// section but `[[accounts]]`).
    pub fn with_accounts_of(&self, newer: &Config) -> (Config, bool) {
        let mut merged = self.clone();
        merged.accounts = newer.accounts.clone();
        let Config {
            ftp,
            spool,
            poller,
            limits,
            numbering,
            queue,
            http,
            accounts: _,
        } = newer;
        let restart_needed = *ftp != self.ftp
            || *spool != self.spool
            || *poller != self.poller
            || *limits != self.limits
            || *numbering != self.numbering
            || *queue != self.queue
            || *http != self.http;
        (merged, restart_needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str, login: &str) -> Config {
        Config::from_toml(
            &format!(
                "{extra}\n[[accounts]]\nlogin = \"{login}\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE\"\nsenders = [\"S\"]\n"
            ),
            "t",
        )
        .unwrap()
    }

    #[test]
    fn a_reload_applies_the_accounts_and_tells_whether_more_changed() {
        let running = config("", "a");
        let (merged, restart) = running.with_accounts_of(&config("", "b"));
        assert_eq!(merged.accounts[0].login, "b");
        assert!(!restart);
        let (merged, restart) =
            running.with_accounts_of(&config("[poller]\ninterval_secs = 3", "b"));
        assert!(restart);
        assert_eq!(merged.poller.interval_secs, 10, "only accounts are applied");
        let (_, restart) = running.with_accounts_of(&config("[queue]\npipeline = \"never\"", "a"));
        assert!(restart);
    }
}
