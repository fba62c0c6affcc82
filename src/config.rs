//! Configuration: the TOML file of SPEC §11, turned into validated, ready-to-use values
//! in one step ([`Config::from_toml`]), so the rest of the program can rely on them.
//!
//! Unknown keys are errors (`deny_unknown_fields`); so are bad values, which are
//! reported with the key's full path (`accounts[0].timezone`). Relative paths stay
//! relative to the working directory, as SPEC §11 says.

use chrono_tz::Tz;
use encoding_rs::Encoding;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::intake::account::{Account, Limits as IntakeLimits};
use crate::intake::message::sender::Sender;
pub use crate::queue::{Kind as QueueBackend, Settings as QueueConfig};

/// The development configuration shipped in `config/smsdrop.toml`, embedded so that
/// the binary runs with no `--config` at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/smsdrop.toml");

/// A configuration error; the message names the key (or the TOML position).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
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

/// The file as written; `accounts` are validated into [`AccountConfig`]s.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pub ftp: FtpConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub poller: PollerConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub numbering: NumberingConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub http: HttpConfig,
    accounts: Vec<RawAccount>,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// No login without AUTH TLS, for every account.
    #[serde(default)]
    pub require: bool,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumberingConfig {
    /// Russian numbering-plan registry CSV files.
    pub registry_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
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

/// One `[[accounts]]` entry as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    login: String,
    password_hash: String,
    #[serde(default)]
    senders: Vec<String>,
    default_sender: Option<String>,
    #[serde(default = "default_timezone")]
    timezone: String,
    #[serde(default = "default_encoding")]
    encoding: String,
    #[serde(default = "default_validity")]
    default_validity_minutes: i64,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    require_tls: bool,
    max_account_bytes: Option<u64>,
}

fn default_timezone() -> String {
    "Europe/Moscow".into()
}
fn default_encoding() -> String {
    "utf-8".into()
}
fn default_validity() -> i64 {
    1440
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
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

    /// This configuration with the accounts of `newer` (what SIGHUP applies),
    /// and whether `newer` also changes something that needs a restart.
    pub fn with_accounts_of(&self, newer: &Config) -> (Config, bool) {
        let mut merged = self.clone();
        merged.accounts = newer.accounts.clone();
        // Debug covers every field (hashes redacted, and the accounts are the
        // same on both sides), so it tells whether anything else differs.
        let restart_needed = format!("{merged:?}") != format!("{newer:?}");
        (merged, restart_needed)
    }
}

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

impl RawConfig {
    fn validate(self) -> Result<Config, (String, String)> {
        fn bad<T>(key: &str, message: impl Into<String>) -> Result<T, (String, String)> {
            Err((key.to_owned(), message.into()))
        }
        if self.ftp.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "ftp.listen",
                format!("{:?} is not an address:port", self.ftp.listen),
            );
        }
        let [lo, hi] = self.ftp.passive_ports;
        if lo == 0 || lo > hi {
            return bad(
                "ftp.passive_ports",
                format!("[{lo}, {hi}] is not a range of ports (low ≤ high, both > 0)"),
            );
        }
        if let Some(tls) = &self.ftp.tls {
            for (key, path) in [("ftp.tls.cert", &tls.cert), ("ftp.tls.key", &tls.key)] {
                if !path.is_file() {
                    return bad(key, format!("{} is not a readable file", path.display()));
                }
            }
        }
        if self.ftp.idle_timeout_secs == 0 {
            return bad("ftp.idle_timeout_secs", "must be positive");
        }
        if self.ftp.login_timeout_secs == 0 {
            return bad("ftp.login_timeout_secs", "must be positive");
        }
        if self.ftp.max_unauthenticated_per_ip == 0 {
            return bad("ftp.max_unauthenticated_per_ip", "must be positive");
        }
        if self.ftp.max_sessions == 0 {
            return bad("ftp.max_sessions", "must be positive");
        }
        if self.ftp.max_sessions_per_ip == 0 || self.ftp.max_sessions_per_ip > self.ftp.max_sessions
        {
            return bad(
                "ftp.max_sessions_per_ip",
                "must be positive and at most ftp.max_sessions",
            );
        }
        let guard = &self.ftp.login_guard;
        if guard.max_failures == 0 || guard.window_secs == 0 {
            return bad(
                "ftp.login_guard",
                "max_failures and window_secs must be positive",
            );
        }
        if self.poller.interval_secs == 0 {
            return bad("poller.interval_secs", "must be positive");
        }
        if self.poller.workers == 0 {
            return bad("poller.workers", "must be positive");
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_archive_bytes", l.max_archive_bytes),
            ("limits.max_uncompressed_bytes", l.max_uncompressed_bytes),
            ("limits.max_compression_ratio", l.max_compression_ratio),
            ("limits.max_entries", l.max_entries as u64),
            ("limits.max_line_bytes", l.max_line_bytes as u64),
            ("limits.max_account_bytes", l.max_account_bytes),
        ] {
            if value == 0 {
                return bad(key, "must be positive");
            }
        }
        if self.queue.backend == QueueBackend::Postgres && self.queue.url.trim().is_empty() {
            return bad("queue.url", "required when queue.backend = \"postgres\"");
        }
        let ca = &self.queue.tls_ca;
        if !ca.as_os_str().is_empty() && !ca.is_file() {
            return bad(
                "queue.tls_ca",
                format!("{} is not a readable file", ca.display()),
            );
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "http.listen",
                format!("{:?} is not an address:port", self.http.listen),
            );
        }
        if self.accounts.is_empty() {
            return bad("accounts", "at least one [[accounts]] entry is required");
        }
        let mut logins = HashSet::new();
        let mut accounts = Vec::with_capacity(self.accounts.len());
        for (i, raw) in self.accounts.into_iter().enumerate() {
            let key = |field: &str| format!("accounts[{i}].{field}");
            let account = validate_account(raw, &key)?;
            if !logins.insert(account.login.clone()) {
                return bad(&key("login"), format!("{:?} is used twice", account.login));
            }
            accounts.push(account);
        }
        Ok(Config {
            ftp: self.ftp,
            spool: self.spool,
            poller: self.poller,
            limits: self.limits,
            numbering: self.numbering,
            queue: self.queue,
            http: self.http,
            accounts,
        })
    }
}

fn validate_account(
    raw: RawAccount,
    key: &dyn Fn(&str) -> String,
) -> Result<AccountConfig, (String, String)> {
    let err = |field: &str, message: String| Err((key(field), message));
    if !is_valid_login(&raw.login) {
        return err(
            "login",
            format!(
                "{:?} is not a usable login (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')",
                raw.login
            ),
        );
    }
    if let Err(e) = argon2::password_hash::phc::PasswordHash::new(&raw.password_hash) {
        return err("password_hash", format!("not a PHC string ({e})"));
    }
    if !raw.password_hash.starts_with("$argon2id$") {
        return err(
            "password_hash",
            "must be an argon2id hash made by `smsdrop hash-password`".into(),
        );
    }
    let mut senders = Vec::new();
    for (j, s) in raw.senders.iter().enumerate() {
        match Sender::parse(s) {
            Ok(sender) => senders.push(sender),
            Err(why) => return err(&format!("senders[{j}]"), format!("{s:?}: {why}")),
        }
    }
    let default_sender = match &raw.default_sender {
        Some(s) => {
            let sender = match Sender::parse(s) {
                Ok(sender) => sender,
                Err(why) => return err("default_sender", format!("{s:?}: {why}")),
            };
            if !senders.contains(&sender) {
                return err(
                    "default_sender",
                    format!("{s:?} is not one of this account's senders"),
                );
            }
            sender
        }
        None => match senders.first() {
            Some(first) => first.clone(),
            None => {
                return err(
                    "senders",
                    "the account has no usable sender: list at least one in senders".into(),
                );
            }
        },
    };
    let timezone: Tz = match raw.timezone.parse() {
        Ok(tz) => tz,
        Err(_) => {
            return err(
                "timezone",
                format!("{:?} is not an IANA time zone", raw.timezone),
            );
        }
    };
    let Some(encoding) = Encoding::for_label(raw.encoding.trim().as_bytes()) else {
        return err(
            "encoding",
            format!("{:?} is not a WHATWG encoding label", raw.encoding),
        );
    };
    if encoding == encoding_rs::REPLACEMENT {
        return err("encoding", format!("{:?} cannot decode text", raw.encoding));
    }
    let validity = match u32::try_from(raw.default_validity_minutes) {
        Ok(v) if v > 0 => v,
        _ => {
            return err(
                "default_validity_minutes",
                format!(
                    "{} is not a positive number of minutes",
                    raw.default_validity_minutes
                ),
            );
        }
    };
    let mut allowed_ips = Vec::new();
    for (j, cidr) in raw.allowed_ips.iter().enumerate() {
        let net = cidr
            .parse::<IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from));
        match net {
            Ok(net) => allowed_ips.push(net),
            Err(_) => {
                return err(
                    &format!("allowed_ips[{j}]"),
                    format!("{cidr:?} is not an IP address or CIDR block"),
                );
            }
        }
    }
    Ok(AccountConfig {
        profile: Account {
            login: raw.login,
            senders,
            default_sender,
            timezone,
            encoding,
            default_validity_minutes: validity,
        },
        password_hash: raw.password_hash,
        allowed_ips,
        require_tls: raw.require_tls,
        max_account_bytes: raw.max_account_bytes,
    })
}

/// Logins become folder names and archive-name prefixes, so they are kept to a
/// conservative, file-system-safe alphabet.
fn is_valid_login(login: &str) -> bool {
    (1..=64).contains(&login.len())
        && !login.starts_with('.')
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What smsdrop would run with, for `smsdrop config check` (no secrets).
pub fn describe(config: &Config, registry_ranges: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let ftp = &config.ftp;
    let _ = writeln!(s, "configuration is valid");
    let _ = writeln!(
        s,
        "ftp:      {} (passive ports {}-{}, active mode on, idle timeout {} s, \
         sessions ≤ {} in all and ≤ {} per address, ≤ {} of them not logged in; \
         login within {} s)",
        ftp.listen,
        ftp.passive_ports[0],
        ftp.passive_ports[1],
        ftp.idle_timeout_secs,
        ftp.max_sessions,
        ftp.max_sessions_per_ip,
        ftp.max_unauthenticated_per_ip,
        ftp.login_timeout_secs
    );
    if !ftp.sync_uploads {
        let _ = writeln!(
            s,
            "          uploads are acknowledged before they are on disk (sync_uploads = false)"
        );
    }
    match &ftp.tls {
        Some(tls) => {
            let _ = writeln!(
                s,
                "tls:      explicit FTPS, cert {}, key {}, required for everyone: {}",
                tls.cert.display(),
                tls.key.display(),
                tls.require
            );
        }
        None => {
            let _ = writeln!(s, "tls:      off (plain FTP only)");
        }
    }
    let g = &ftp.login_guard;
    let _ = writeln!(
        s,
        "guard:    ban an address for {} s after {} failed logins within {} s",
        g.ban_secs, g.max_failures, g.window_secs
    );
    let _ = writeln!(
        s,
        "spool:    {} (state {}, processed archives kept {} days, results {} days)",
        config.spool.dir.display(),
        config.spool.state_dir.display(),
        config.spool.keep_processed_days,
        config.spool.keep_results_days
    );
    let _ = writeln!(
        s,
        "poller:   every {} s, {} accounts at a time",
        config.poller.interval_secs, config.poller.workers
    );
    let l = &config.limits;
    let _ = writeln!(
        s,
        "limits:   archive {} B, inflated {} B, ratio {}:1, {} entries, line {} B, \
         {} B stored per account",
        l.max_archive_bytes,
        l.max_uncompressed_bytes,
        l.max_compression_ratio,
        l.max_entries,
        l.max_line_bytes,
        l.max_account_bytes
    );
    let _ = writeln!(
        s,
        "numbering: {} registry files, {} ranges",
        config.numbering.registry_files.len(),
        registry_ranges
    );
    let _ = match config.queue.backend {
        QueueBackend::Sqlite => writeln!(s, "queue:    sqlite {}", config.queue.path.display()),
        QueueBackend::Postgres => writeln!(
            s,
            "queue:    postgres{}",
            if config.queue.tls_ca.as_os_str().is_empty() {
                String::new()
            } else {
                format!(", TLS CAs also from {}", config.queue.tls_ca.display())
            }
        ),
    };
    let _ = writeln!(s, "http:     {}", config.http.listen);
    for a in &config.accounts {
        let senders: Vec<&str> = a.senders.iter().map(Sender::as_str).collect();
        let ips: Vec<String> = a.allowed_ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "account:  {} senders [{}] default {}, zone {}, encoding {}, validity {} min, \
             TLS required {}, {} B stored at most, from {}",
            a.login,
            senders.join(", "),
            a.default_sender,
            a.timezone,
            a.encoding.name(),
            a.default_validity_minutes,
            a.require_tls || ftp.tls.as_ref().is_some_and(|t| t.require),
            a.max_account_bytes.unwrap_or(l.max_account_bytes),
            if ips.is_empty() {
                "anywhere".to_owned()
            } else {
                ips.join(", ")
            }
        );
    }
    s
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
