//! What `smsdrop config check` prints: everything `serve` would run with,
//! no secrets.

use super::*;
use crate::intake::sender::Sender;

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
    let _ = writeln!(
        s,
        "          passive replies announce {}; uploads {}",
        match ftp.passive_host.trim() {
            "" => "the address the client connected to".to_owned(),
            host => host.to_owned(),
        },
        if ftp.sync_uploads {
            "are on disk before they are acknowledged (sync_uploads = true)"
        } else {
            "are acknowledged before they are on disk (sync_uploads = false)"
        }
    );
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
        QueueBackend::Sqlite => writeln!(
            s,
            "queue:    sqlite {} (rows enter while the archive is read: {:?})",
            config.queue.path.display(),
            config.queue.pipeline
        ),
        QueueBackend::Postgres => writeln!(
            s,
            "queue:    postgres {}{}",
            redacted(&config.queue.url),
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
            config.tls_required(Some(a)),
            config.max_account_bytes(Some(a)),
            if ips.is_empty() {
                "anywhere".to_owned()
            } else {
                ips.join(", ")
            }
        );
    }
    s
}

/// A PostgreSQL connection string without its password (key-value or URL form).
fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // postgresql://user:password@host/db
        if let Some((credentials, host)) = rest.split_once('@')
            && let Some((user, _)) = credentials.split_once(':')
        {
            return format!("{scheme}://{user}:<redacted>@{host}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=<redacted>".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redacted("host=db user=s password=secret dbname=q"),
            "host=db user=s password=<redacted> dbname=q"
        );
        assert_eq!(
            redacted("postgresql://s:secret@db:5432/q"),
            "postgresql://s:<redacted>@db:5432/q"
        );
        assert_eq!(redacted("postgresql://db/q"), "postgresql://db/q");
    }
}
