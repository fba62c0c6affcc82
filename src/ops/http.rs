//! The operator's HTTP listener (`[http] listen`): `GET /metrics` in the
//! Prometheus text format and `GET /healthz`.
//!
//! `/healthz` proves rather than assumes: it opens a control connection to the
//! FTP listener and reads its reply line, and asks the queue for its depth, each
//! within [`PROBE_TIMEOUT`]; 200 when both answer, 503 otherwise, with one line
//! per part saying which. It is also 503 when no new FTP session can be
//! opened (the session caps are full): customers are turned away.
//!
//! The listener faces whoever can reach it, so it is bounded: at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once), a request's head
//! must arrive within [`HEADER_TIMEOUT`], and a connection lasts at most
//! [`CONNECTION_TIMEOUT`]. The queue's depth is counted at most once per
//! [`DEPTH_MAX_AGE`], by one request at a time, so a flood of scrapes costs
//! the queue nothing more than one scrape (counting is a scan of the
//! queue: 0.35 s at 12M messages).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::front::limits::SessionLimits;
use crate::intake::batch::BatchId;
use crate::metrics;
use crate::queue::{Backend, Queue, QueueError};

/// How long each `/healthz` probe and the scrape's queue query may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time for a request's head to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's whole life.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How old a counted queue depth may be when it is served.
pub const DEPTH_MAX_AGE: Duration = Duration::from_secs(5);

/// What the handlers need.
pub struct Probe {
    /// Where the FTP listener is bound (an unspecified address is probed on
    /// loopback).
    ftp: SocketAddr,
    limits: Arc<SessionLimits>,
    queue: Arc<Backend>,
    /// The last counted depth and when it was counted; the lock also makes
    /// requests take turns counting.
    depth: tokio::sync::Mutex<Option<(Instant, Result<i64, String>)>>,
}

impl Probe {
    pub fn new(ftp: SocketAddr, limits: Arc<SessionLimits>, queue: Arc<Backend>) -> Probe {
        Probe {
            ftp,
            limits,
            queue,
            depth: tokio::sync::Mutex::new(None),
        }
    }
}

/// Serves until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, probe: Arc<Probe>, shutdown: CancellationToken) {
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Full: this one is closed at once, the ones being served go on.
            drop(stream);
            continue;
        };
        let probe = probe.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| handle(req, probe.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // A slow or idle scraper cannot hold a task forever.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    probe: Arc<Probe>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            if let Err(e) = update_queue_depth(&probe).await {
                tracing::warn!(error = %e, "metrics: queue depth not updated");
            }
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(),
            )
        }
        "/healthz" => {
            let ftp = async {
                let (open, waiting, max) = probe.limits.usage();
                let usage = format!("{open} of {max} sessions in use, {waiting} not logged in");
                if probe.limits.full() {
                    return Err(if waiting > 0 {
                        format!(
                            "caps full: {usage}; only a newcomer from a less busy address \
                             gets in, displacing one not logged in"
                        )
                    } else {
                        format!("caps full, no new session can be opened: {usage}")
                    });
                }
                ftp_answers(probe.ftp)
                    .await
                    .map(|answer| format!("{answer}, {usage}"))
            };
            let (ftp, queue) = tokio::join!(ftp, queue_answers(&probe));
            let line = |part: &str, r: &Result<String, String>| match r {
                Ok(detail) => format!("{part}: ok ({detail})\n"),
                Err(e) => format!("{part}: FAIL ({e})\n"),
            };
            let status = if ftp.is_ok() && queue.is_ok() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = line("ftp", &ftp) + &line("queue", &queue);
            reply(status, "text/plain; charset=utf-8", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /healthz\n".into(),
        ),
    })
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The queue's depth, counted at most once per [`DEPTH_MAX_AGE`].
async fn queue_depth(probe: &Probe) -> Result<i64, String> {
    let mut last = probe.depth.lock().await;
    if let Some((at, depth)) = &*last
        && at.elapsed() < DEPTH_MAX_AGE
    {
        return depth.clone();
    }
    let depth = ask_queue(probe, |queue| queue.depth()).await;
    *last = Some((Instant::now(), depth.clone()));
    depth
}

/// Asks the queue, on the blocking pool (SQLite is synchronous), within
/// [`PROBE_TIMEOUT`]; an error as the text to show.
async fn ask_queue<T: Send + 'static>(
    probe: &Probe,
    question: fn(&dyn Queue) -> Result<T, QueueError>,
) -> Result<T, String> {
    let backend = probe.queue.clone();
    let query = tokio::task::spawn_blocking(move || {
        let queue = backend
            .reader()
            .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
        question(&*queue).map_err(|e| format!("{:#}", anyhow::Error::from(e)))
    });
    match tokio::time::timeout(PROBE_TIMEOUT, query).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(format!("query task failed: {e}")),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

async fn update_queue_depth(probe: &Probe) -> Result<(), String> {
    metrics::QUEUE_DEPTH.set(queue_depth(probe).await?);
    Ok(())
}

/// Whether the queue answers now: one indexed lookup (cheap at any queue
/// size); the depth is the last one counted, if any.
async fn queue_answers(probe: &Probe) -> Result<String, String> {
    ask_queue(probe, |queue| queue.has_batch(&BatchId::new(""))).await?;
    Ok(match &*probe.depth.lock().await {
        Some((at, Ok(depth))) => format!(
            "answers; {depth} messages queued {} s ago",
            at.elapsed().as_secs()
        ),
        _ => "answers".to_owned(),
    })
}

/// Connects to the FTP listener and reads its first reply line (220, or 421
/// when the session caps are reached — either way the listener answers).
async fn ftp_answers(addr: SocketAddr) -> Result<String, String> {
    let addr = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let code = line.get(..3).unwrap_or("");
        if !code.bytes().all(|b| b.is_ascii_digit()) || code.is_empty() {
            return Err(format!("{addr} sent {:?}", line.trim_end()));
        }
        let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
        Ok(format!("{addr} replied {code}"))
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{addr}: no reply within {} s",
                PROBE_TIMEOUT.as_secs()
            ))
        })
}
