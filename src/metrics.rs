//! Prometheus metrics (served on `[http] listen` by [`crate::ops::http`]).
//!
//! Everything lives in the `prometheus` crate's default registry, which is also
//! where libunftp registers its own `ftp_*` metrics, so one scrape has both.
//! Counters are process-wide statics: updating one is an atomic add, cheap
//! enough for the per-archive and per-login paths that touch them.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, IntCounter, IntCounterVec, IntGauge, TextEncoder, exponential_buckets,
    histogram_opts, register_histogram, register_int_counter, register_int_counter_vec,
    register_int_gauge,
};

/// Archives processed, by outcome (`status`) and error code (`""` without one).
pub static ARCHIVES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "smsdrop_archives_total",
        "Archives processed, by outcome and error code",
        &["outcome", "code"]
    )
    .expect("metric registers once")
});

/// Data rows, by result (`accepted`, `rejected`).
pub static ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "smsdrop_rows_total",
        "Data rows read from archives, by result",
        &["result"]
    )
    .expect("metric registers once")
});

pub static MESSAGES_QUEUED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "smsdrop_messages_queued_total",
        "Messages committed to the queue"
    )
    .expect("metric registers once")
});

pub static PROCESSING_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(histogram_opts!(
        "smsdrop_archive_processing_seconds",
        "Time from picking an archive up to its results being published",
        // 10 ms … ~82 s.
        exponential_buckets(0.01, 2.0, 14).expect("valid buckets")
    ))
    .expect("metric registers once")
});

/// Archives left in place for the next poll because of an internal error
/// (disk full, permissions, queue unavailable).
pub static ARCHIVE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "smsdrop_archive_errors_total",
        "Archives left for the next poll after an internal error"
    )
    .expect("metric registers once")
});

pub static LOGIN_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "smsdrop_login_failures_total",
        "Failed FTP logins (bad user or password, address not allowed, TLS required)"
    )
    .expect("metric registers once")
});

pub static LOGIN_BANS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "smsdrop_login_bans_total",
        "Client addresses banned by the login guard"
    )
    .expect("metric registers once")
});

pub static LOGINS_REFUSED_BANNED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "smsdrop_logins_refused_banned_total",
        "Logins refused because the client address is banned"
    )
    .expect("metric registers once")
});

pub static SESSIONS_ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("smsdrop_sessions_active", "Open FTP control connections")
        .expect("metric registers once")
});

/// Connections closed because they did not log in within `login_timeout_secs`.
pub static LOGIN_TIMEOUTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "smsdrop_login_timeouts_total",
        "FTP connections closed because they did not log in in time"
    )
    .expect("metric registers once")
});

/// Connections not logged in yet, closed to give their place to a newcomer
/// when every place was taken.
pub static SESSIONS_DISPLACED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "smsdrop_sessions_displaced_total",
        "FTP connections not logged in yet, closed to give their place to a newcomer"
    )
    .expect("metric registers once")
});

/// Connections answered with 421, by the cap that was hit (`total`,
/// `per_ip`, `unauthenticated_per_ip`).
pub static SESSIONS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "smsdrop_sessions_refused_total",
        "FTP connections refused with 421, by the cap that was hit",
        &["cap"]
    )
    .expect("metric registers once")
});

/// Messages waiting in the queue (`status = 'queued'`), read at scrape time.
pub static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "smsdrop_queue_depth",
        "Messages in the queue with status queued"
    )
    .expect("metric registers once")
});

/// One processed archive, as the metrics count it.
pub struct Processed<'a> {
    /// `accepted`, `partially_accepted` or `rejected`.
    pub status: &'a str,
    /// The code of a whole-archive rejection, `""` without one.
    pub code: &'a str,
    pub accepted: u64,
    pub rejected: u64,
    pub seconds: f64,
}

/// Counts one processed archive.
pub fn archive_processed(p: Processed<'_>) {
    ARCHIVES.with_label_values(&[p.status, p.code]).inc();
    ROWS.with_label_values(&["accepted"]).inc_by(p.accepted);
    ROWS.with_label_values(&["rejected"]).inc_by(p.rejected);
    // An archive rejected as a whole (DUPLICATE_BATCH included) accepts nothing.
    MESSAGES_QUEUED.inc_by(p.accepted);
    PROCESSING_SECONDS.observe(p.seconds);
}

/// Registers every metric, so a scrape shows them at zero before their first
/// event instead of leaving them out.
pub fn register_all() {
    LazyLock::force(&ARCHIVES);
    LazyLock::force(&ROWS);
    for result in ["accepted", "rejected"] {
        ROWS.with_label_values(&[result]);
    }
    LazyLock::force(&MESSAGES_QUEUED);
    LazyLock::force(&PROCESSING_SECONDS);
    LazyLock::force(&ARCHIVE_ERRORS);
    LazyLock::force(&LOGIN_FAILURES);
    LazyLock::force(&LOGIN_BANS);
    LazyLock::force(&LOGINS_REFUSED_BANNED);
    LazyLock::force(&LOGIN_TIMEOUTS);
    LazyLock::force(&SESSIONS_DISPLACED);
    LazyLock::force(&SESSIONS_ACTIVE);
    for cap in ["total", "per_ip", "unauthenticated_per_ip"] {
        SESSIONS_REFUSED.with_label_values(&[cap]);
    }
    LazyLock::force(&QUEUE_DEPTH);
}

/// The default registry in the Prometheus text format.
pub fn render() -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&prometheus::gather(), &mut out)
        .expect("text encoding of gathered metrics");
    String::from_utf8(out).expect("the text format is UTF-8")
}
