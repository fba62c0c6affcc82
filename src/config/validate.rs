//! The file as written (serde, [`RawConfig`]) → the validated [`Config`]:
//! every value `serve` will rely on is checked here, once, up front, so that
//! `smsdrop config check` (the systemd unit's `ExecStartPre`) refuses what
//! `serve` would refuse or misuse. An error names the key
//! (`accounts[0].timezone`).

use std::collections::HashSet;
use std::net::SocketAddr;

use chrono_tz::Tz;
use encoding_rs::Encoding;
use ipnet::IpNet;
use serde::Deserialize;

use super::*;
use crate::intake::account::Account;
use crate::intake::sender::Sender;

/// The file as written; `accounts` are validated into [`AccountConfig`]s.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
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

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, (String, String)> {
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
        if self.queue.backend == QueueBackend::Postgres {
            if self.queue.url.trim().is_empty() {
                return bad("queue.url", "required when queue.backend = \"postgres\"");
            }
            // What `serve` connects with: refused here, not when it starts.
            if let Err(e) = self.queue.url.parse::<postgres::Config>() {
                return bad(
                    "queue.url",
                    format!("not a PostgreSQL connection string ({e})"),
                );
            }
        }
        let host = self.ftp.passive_host.trim();
        if !host.is_empty() && host.parse::<std::net::Ipv4Addr>().is_err() {
            // A name is looked up at every PASV; one that does not resolve to
            // an IPv4 address would answer every PASV with 425.
            use std::net::ToSocketAddrs;
            let resolves = (host, 0)
                .to_socket_addrs()
                .is_ok_and(|mut found| found.any(|a| a.is_ipv4()));
            if !resolves {
                return bad(
                    "ftp.passive_host",
                    format!("{host:?} is neither an IPv4 address nor a name that resolves to one"),
                );
            }
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
