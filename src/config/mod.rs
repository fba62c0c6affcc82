//! Configuration: the TOML file of SPEC §11, turned into validated, ready-to-use values
//! in one step ([`Config::from_toml`]), so the rest of the program can rely on them.
//!
//! Unknown keys are errors (`deny_unknown_fields`); so are bad values, which are
//! reported with the key's full path (`accounts[0].timezone`). Relative paths stay
//! relative to the working directory, as SPEC §11 says.
//!
//! - this module: the validated [`Config`], its sections and [`AccountConfig`];
//! - `validate`: the file as written (serde) → [`Config`], every check up front;
//! - [`describe`]: what `smsdrop config check` prints;
//! - [`Live`]: the configuration a running server works with, and what a
//!   reload (SIGHUP) applies.

use ipnet::IpNet;
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::intake::account::{Account, Limits as IntakeLimits};

mod describe;
mod live;
mod validate;

pub use crate::queue::{Kind as QueueBackend, Settings as QueueConfig};
pub use describe::describe;
pub use live::Live;

/// The development configuration shipped in `config/smsdrop.toml`, embedded so that
/// the binary runs with no `--config` at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/smsdrop.toml");

/// A configuration error; the message names the key (or the TOML position).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {key}: {message}")]
    Value {
        origin: String,
        key: String,
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub ftp: FtpConfig,
    pub spool: SpoolConfig,
    pub poller: PollerConfig,
    pub limits: Limits,
    pub numbering: NumberingConfig,
    pub queue: QueueConfig,
    pub http: HttpConfig,
    pub accounts: Vec<AccountConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpConfig {
    /// Control-channel address.
    pub listen: String,
    /// Inclusive passive data port range.
    pub passive_ports: [u16; 2],
    /// Address announced in PASV replies: an IPv4 address or a DNS name;
    /// empty = the address the client connected to (behind NAT or a load
    /// balancer, set it to this node's public address).
    pub passive_host: String,
    /// A session idle this long is closed.
    pub idle_timeout_secs: u64,
    /// A connection not logged in this long after it opened is closed,
    /// however it stalls (silence, NOOPs, AUTH TLS without a handshake).
    pub login_timeout_secs: u64,
    /// Open control connections at most, all clients together; more get 421.
    pub max_sessions: u32,
    /// Open control connections at most from one client address.
    pub max_sessions_per_ip: u32,
    /// Of those, not logged in yet (so that they cannot fill the caps).
    pub max_unauthenticated_per_ip: u32,
    /// fsync every upload before answering 226 (an acknowledged archive
    /// survives a power cut); `false` trades that for disk-speed-independent
    /// uploads.
    pub sync_uploads: bool,
    pub tls: Option<TlsConfig>,
    pub login_guard: LoginGuardConfig,
}

impl Default for FtpConfig {
    fn default() -> Self {
        FtpConfig {
            listen: "127.0.0.1:2121".into(),
            passive_ports: [50000, 50100],
            passive_host: String::new(),
            idle_timeout_secs: 600,
            login_timeout_secs: 30,
            max_sessions: 200,
            max_sessions_per_ip: 20,
            max_unauthenticated_per_ip: 5,
            sync_uploads: true,
            tls: None,
            login_guard: LoginGuardConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// No login without AUTH TLS, for every account.
    #[serde(default)]
    pub require: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginGuardConfig {
    pub max_failures: u32,
    pub window_secs: u64,
    pub ban_secs: u64,
}

impl Default for LoginGuardConfig {
    fn default() -> Self {
        LoginGuardConfig {
            max_failures: 5,
            window_secs: 300,
            ban_secs: 900,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Account homes are `<dir>/<login>/`.
    pub dir: PathBuf,
    /// Queue, processed archives, bookkeeping; never visible over FTP.
    pub state_dir: PathBuf,
    pub keep_processed_days: u32,
    /// Results files older than this are removed from `results/`.
    pub keep_results_days: u32,
}

impl SpoolConfig {
    /// An account's home folder, what it sees over FTP.
    pub fn home(&self, login: &str) -> PathBuf {
        self.dir.join(login)
    }

    /// Where an account's results are published (inside its home).
    pub fn results(&self, login: &str) -> PathBuf {
        self.home(login).join("results")
    }

    /// Where an account's archive waits while it is processed.
    pub fn work(&self, login: &str) -> PathBuf {
        self.state_dir.join("work").join(login)
    }

    /// Where an account's processed archives are kept.
    pub fn processed(&self, login: &str) -> PathBuf {
        self.state_dir.join("processed").join(login)
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: "var/spool".into(),
            state_dir: "var/state".into(),
            keep_processed_days: 7,
            keep_results_days: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollerConfig {
    pub interval_secs: u64,
    /// Accounts processed at the same time.
    pub workers: usize,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            interval_secs: 10,
            workers: 2,
        }
    }
}

/// Bounds that keep a hostile archive from exhausting memory, disk or time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Size of the uploaded zip file itself.
    pub max_archive_bytes: u64,
    /// Sum of the uncompressed sizes of the entries read.
    pub max_uncompressed_bytes: u64,
    /// Uncompressed / compressed size of one entry.
    pub max_compression_ratio: u64,
    /// Entries in the central directory (folders included).
    pub max_entries: usize,
    /// One line of a CSV file, in bytes after decoding to UTF-8, without its line end.
    pub max_line_bytes: usize,
    /// An account's home, results and kept archives together; an upload
    /// beyond it is refused (552). An account may set its own.
    pub max_account_bytes: u64,
}

impl Limits {
    /// The limits intake holds archives to.
    pub fn intake(&self) -> IntakeLimits {
        IntakeLimits {
            max_archive_bytes: self.max_archive_bytes,
            max_uncompressed_bytes: self.max_uncompressed_bytes,
            max_compression_ratio: self.max_compression_ratio,
            max_entries: self.max_entries,
            max_line_bytes: self.max_line_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 104_857_600,
            max_uncompressed_bytes: 1_073_741_824,
            max_compression_ratio: 200,
            max_entries: 16,
            max_line_bytes: 65_536,
            max_account_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumberingConfig {
    /// Russian numbering-plan registry CSV files.
    pub registry_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `/metrics` and `/healthz`.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// A validated account.
#[derive(Clone)]
pub struct AccountConfig {
    /// What intake needs of the account (login, senders, zone, encoding,
    /// validity); the fields below are the front's.
    pub profile: Account,
    /// argon2id PHC string.
    pub password_hash: String,
    pub allowed_ips: Vec<IpNet>,
    pub require_tls: bool,
    /// Overrides `[limits] max_account_bytes` for this account.
    pub max_account_bytes: Option<u64>,
}

impl std::fmt::Debug for AccountConfig {
    // By hand, so that no log line or panic message ever carries a password hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("profile", &self.profile)
            .field("password_hash", &"<redacted>")
            .field("allowed_ips", &self.allowed_ips)
            .field("require_tls", &self.require_tls)
            .field("max_account_bytes", &self.max_account_bytes)
            .finish()
    }
}

// `account.login`, `account.senders`…: an account's profile fields read as
// its own, as they were before the profile was split out for intake.
impl std::ops::Deref for AccountConfig {
    type Target = Account;

    fn deref(&self) -> &Account {
        &self.profile
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// The embedded development configuration.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_toml(EMBEDDED_DEFAULT, "embedded config/smsdrop.toml")
    }

    /// Parses and validates TOML text; `origin` names it in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: validate::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        raw.validate().map_err(|(key, message)| ConfigError::Value {
            origin: origin.to_owned(),
            key,
            message,
        })
    }

    pub fn account(&self, login: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.login == login)
    }

    /// Must `account` log in over TLS: required globally or by the account?
    /// With no account (an unknown login), only the global requirement.
    pub fn tls_required(&self, account: Option<&AccountConfig>) -> bool {
        self.ftp.tls.as_ref().is_some_and(|tls| tls.require)
            || account.is_some_and(|a| a.require_tls)
    }

    /// What `account` may store: its own `max_account_bytes`, else `[limits]`'s.
    pub fn max_account_bytes(&self, account: Option<&AccountConfig>) -> u64 {
        account
            .and_then(|a| a.max_account_bytes)
            .unwrap_or(self.limits.max_account_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$4K/ExbU+/nJAth9ogF2McQ$UcQ8uSEG8jLFMYij8AWAQRls/3ON8cTBDYGqYrMFyhE";

    fn with_account(extra: &str, account: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "{extra}\n[[accounts]]\nlogin = \"guest\"\npassword_hash = \"{HASH}\"\nsenders = [\"TESTSMS\"]\n{account}\n"
        );
        Config::from_toml(&text, "test.toml")
    }

    fn error_of(extra: &str, account: &str) -> String {
        with_account(extra, account).unwrap_err().to_string()
    }

    #[test]
    fn the_embedded_config_is_valid_and_documents_every_key() {
        let config = Config::embedded_default().unwrap();
        assert_eq!(config.accounts[0].login, "guest");
        assert_eq!(config.accounts[0].default_sender.as_str(), "TESTSMS");
        for key in [
            "listen",
            "passive_ports",
            "idle_timeout_secs",
            "login_timeout_secs",
            "max_unauthenticated_per_ip",
            "max_account_bytes",
            "keep_results_days",
            "cert",
            "key",
            "require",
            "max_failures",
            "window_secs",
            "ban_secs",
            "dir",
            "state_dir",
            "keep_processed_days",
            "interval_secs",
            "workers",
            "max_archive_bytes",
            "max_uncompressed_bytes",
            "max_compression_ratio",
            "max_entries",
            "max_line_bytes",
            "registry_files",
            "backend",
            "path",
            "url",
            "pipeline",
            "login",
            "password_hash",
            "senders",
            "default_sender",
            "timezone",
            "encoding",
            "default_validity_minutes",
            "allowed_ips",
            "require_tls",
        ] {
            assert!(
                EMBEDDED_DEFAULT.contains(&format!("{key} =")),
                "config/smsdrop.toml does not document {key}"
            );
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = with_account("", "").unwrap();
        assert_eq!(c.ftp.listen, "127.0.0.1:2121");
        assert_eq!(c.ftp.passive_ports, [50000, 50100]);
        assert_eq!(c.poller.interval_secs, 10);
        assert_eq!(c.poller.workers, 2);
        assert_eq!(c.ftp.login_timeout_secs, 30);
        assert_eq!(c.ftp.max_unauthenticated_per_ip, 5);
        assert_eq!(c.limits.max_account_bytes, 10_737_418_240);
        assert_eq!(c.spool.keep_results_days, 30);
        assert_eq!(c.limits.max_entries, 16);
        assert_eq!(c.limits.max_line_bytes, 65536);
        assert_eq!(c.queue.backend, QueueBackend::Sqlite);
        let a = &c.accounts[0];
        assert_eq!(a.timezone, chrono_tz::Europe::Moscow);
        assert_eq!(a.encoding, encoding_rs::UTF_8);
        assert_eq!(a.default_validity_minutes, 1440);
        assert!(a.allowed_ips.is_empty());
        assert!(!a.require_tls);
    }

    #[test]
    fn unknown_keys_are_named() {
        assert!(error_of("[spool]\ndirr = \"x\"", "").contains("dirr"));
        assert!(error_of("", "passwrd = \"x\"").contains("passwrd"));
        assert!(error_of("[nope]\na = 1", "").contains("nope"));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (extra, account, key) in [
            ("[ftp]\nlisten = \"nowhere\"", "", "ftp.listen"),
            (
                "[ftp]\npassive_ports = [60000, 50000]",
                "",
                "ftp.passive_ports",
            ),
            ("[poller]\nworkers = 0", "", "poller.workers"),
            ("[limits]\nmax_entries = 0", "", "limits.max_entries"),
            ("[queue]\nbackend = \"postgres\"", "", "queue.url"),
            ("", "timezone = \"Moscow\"", "accounts[0].timezone"),
            ("", "encoding = \"latin-9000\"", "accounts[0].encoding"),
            (
                "",
                "default_validity_minutes = 0",
                "accounts[0].default_validity_minutes",
            ),
            (
                "",
                "allowed_ips = [\"10.0.0.0/33\"]",
                "accounts[0].allowed_ips[0]",
            ),
            (
                "",
                "default_sender = \"OTHER\"",
                "accounts[0].default_sender",
            ),
        ] {
            let e = error_of(extra, account);
            assert!(e.contains(key), "{key}: {e}");
        }
        let e = Config::from_toml(
            "[[accounts]]\nlogin = \"guest\"\npassword_hash = \"x\"\nsenders = [\"TESTSMS\"]",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("accounts[0].password_hash"), "{e}");
        let e = Config::from_toml(
            &format!("[[accounts]]\nlogin = \"guest\"\npassword_hash = \"{HASH}\""),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("accounts[0].senders"), "{e}");
        let e = Config::from_toml(
            &format!(
                "[[accounts]]\nlogin = \"../x\"\npassword_hash = \"{HASH}\"\nsenders = [\"A\"]"
            ),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("accounts[0].login"), "{e}");
        let e = error_of("", "senders = [\"BAD SENDER\"]");
        assert!(e.contains("senders"), "{e}");
    }

    #[test]
    fn duplicate_logins_and_no_accounts() {
        let acct =
            format!("[[accounts]]\nlogin = \"a\"\npassword_hash = \"{HASH}\"\nsenders = [\"A\"]\n");
        let e = Config::from_toml(&format!("{acct}{acct}"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("accounts[1].login"), "{e}");
        assert!(Config::from_toml("accounts = []", "t").is_err());
        assert!(
            Config::from_toml("", "t")
                .unwrap_err()
                .to_string()
                .contains("accounts")
        );
    }

    #[test]
    fn debug_output_never_shows_the_password_hash() {
        let c = with_account("", "").unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("guest") && !shown.contains("argon2"),
            "{shown}"
        );
    }

    #[test]
    fn allowed_ips_take_cidr_and_single_addresses() {
        let c = with_account(
            "",
            "allowed_ips = [\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\"]",
        )
        .unwrap();
        assert_eq!(c.accounts[0].allowed_ips.len(), 3);
    }

    #[test]
    fn hash_password_makes_an_argon2id_phc_string() {
        let hash = crate::password::hash("secret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(with_account("", "").is_ok());
        let text =
            format!("[[accounts]]\nlogin = \"a\"\npassword_hash = \"{hash}\"\nsenders = [\"A\"]");
        assert!(Config::from_toml(&text, "t").is_ok());
    }
}
