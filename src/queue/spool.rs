//! The staged rows of an archive, spooled to an unnamed file while the
//! archive is read, and read back from it by a back-end's thread as the file
//! grows ([`spool_pipelined`], [`Tail`]; see [`crate::queue::Queue::stage`]):
//! sequential writes, no lock, memory flat whatever the archive's size.

use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::Rejection;
use crate::message::schedule::TimeText;
use crate::message::{Message, RowOutcome};
use crate::process::RowSink;
use crate::queue::internal;

/// Rows are handed to the file (and to a [`Tail`]) in chunks of this size.
const CHUNK: usize = 256 << 10;

/// The staged rows of one archive: per accepted row, its ten varying values
/// as length-prefixed text or 8-byte integers, in the order of `INSERT_MESSAGE`.
struct Spool {
    file: std::fs::File,
    buf: Vec<u8>,
    rows: u64,
    failed: Option<std::io::Error>,
    /// Where the tail, on another thread, learns of flushed rows.
    shared: Arc<Shared>,
    // Most rows of an archive share their times: format each instant once.
    send_at: TimeText,
    expires_at: TimeText,
}

impl Spool {
    fn new(file: std::fs::File, shared: Arc<Shared>) -> Spool {
        Spool {
            file,
            buf: Vec::with_capacity(CHUNK + 4096),
            rows: 0,
            failed: None,
            shared,
            send_at: TimeText::default(),
            expires_at: TimeText::default(),
        }
    }

    fn put(&mut self, m: &Message) {
        fn text(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let out = &mut self.buf;
        text(out, &m.message_id);
        out.extend_from_slice(&(m.line as i64).to_le_bytes());
        text(out, m.phone.digits());
        text(out, m.sender.as_str());
        text(out, &m.text);
        text(out, m.encoding.as_str());
        out.extend_from_slice(&i64::from(m.segments).to_le_bytes());
        text(out, self.send_at.text(m.send_at));
        text(out, self.expires_at.text(m.expires_at));
        text(out, m.timezone.name());
    }

    /// Writes the buffered rows and tells the tail they are there.
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.buf)?;
        let shared = &self.shared;
        shared
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Release);
        let at = shared.started.elapsed();
        shared.update(|p| {
            p.first.get_or_insert((at, self.rows));
            p.rows = self.rows;
        });
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.flush()
    }
}

impl RowSink for Spool {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        if let RowOutcome::Accepted(m) = outcome {
            self.put(m);
            self.rows += 1;
            if self.buf.len() >= CHUNK {
                if let Err(e) = self.flush() {
                    let rejection = internal("spool", &e);
                    self.failed = Some(e);
                    return Err(rejection);
                }
                // The reader of the tail failed: stop reading the archive.
                if self.shared.progress().stopped {
                    return Err(internal("spool", "the queue stopped taking rows"));
                }
            }
        }
        Ok(())
    }
}

/// An unnamed file in `dir` (created when missing: the state folder of a
/// PostgreSQL node need not exist before its first archive).
fn spool_file(dir: &std::path::Path) -> Result<std::fs::File, Rejection> {
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::tempfile_in(dir))
        .map_err(|e| internal(&format!("spool in {}", dir.display()), e))
}

/// What the writer of a spool has told its tail so far.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Rows flushed to the file.
    pub rows: u64,
    /// Since the archive began to be read.
    pub elapsed: std::time::Duration,
    /// When the first rows were flushed, and how many: what came before (a
    /// process's first archive loads the phone-number metadata, ~0.1 s) is
    /// not the reading speed.
    pub first: Option<(std::time::Duration, u64)>,
    /// The archive is read and every row flushed.
    pub done: bool,
    /// The archive was rejected as a whole (or could not be spooled): its rows
    /// are void, the tail's reader should stop and undo.
    pub void: bool,
    /// The tail's reader gave up; the writer stops reading the archive.
    pub stopped: bool,
}

impl Progress {
    /// Rows flushed since the first flush.
    pub fn rows_since_first(&self) -> u64 {
        self.first.map_or(0, |(_, rows)| self.rows - rows)
    }

    /// Rows flushed per second since the first flush.
    pub fn rate(&self) -> f64 {
        let Some((at, _)) = self.first else {
            return 0.0;
        };
        let secs = self.elapsed.saturating_sub(at).as_secs_f64();
        self.rows_since_first() as f64 / secs.max(1e-3)
    }
}

/// Shared by a spool's writer and its tail.
struct Shared {
    started: std::time::Instant,
    /// Bytes flushed: the tail reads the file no further.
    bytes: AtomicU64,
    state: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn progress(&self) -> Progress {
        self.snapshot(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `state` with the time elapsed now.
    fn snapshot(&self, state: &Progress) -> Progress {
        Progress {
            elapsed: self.started.elapsed(),
            ..*state
        }
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_all();
    }
}

/// The reading end of a spool that is still being written: rows as they are
/// flushed, from another thread.
pub struct Tail {
    shared: Arc<Shared>,
    reader: SpoolReader<TailFile>,
    read: u64,
    /// Rows known to be flushed (asked again only when all are read).
    available: u64,
}

impl Tail {
    /// Blocks until `ready` holds for the writer's progress (checked at every
    /// flush) or the writer is done; returns the progress then.
    pub fn wait_until(&self, ready: impl Fn(&Progress) -> bool) -> Progress {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let p = self.shared.snapshot(&state);
            if p.done || p.void || ready(&p) {
                return p;
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next row, waiting for the writer when needed; `None` once every row
    /// is read, or at once when the rows turned void.
    pub fn next_row(&mut self) -> std::io::Result<Option<SpooledRow<'_>>> {
        if self.read == self.available {
            let read = self.read;
            let p = self.wait_until(|p| p.rows > read);
            if p.void || p.rows == read {
                return Ok(None);
            }
            self.available = p.rows;
        }
        self.read += 1;
        self.reader.next_row().map(Some)
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.read
    }

    /// Whether the rows turned void (the archive was rejected as a whole).
    pub fn void(&self) -> bool {
        self.shared.progress().void
    }
}

/// The spool file read from its own offset, never past the flushed bytes.
struct TailFile {
    file: std::fs::File,
    offset: u64,
    shared: Arc<Shared>,
}

impl Read for TailFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let flushed = self.shared.bytes.load(Ordering::Acquire);
        let n = buf.len().min((flushed - self.offset) as usize);
        let n = self.file.read_at(&mut buf[..n], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Runs `process` on this thread with a [`Spool`] as its sink while `consume`
/// reads the spooled rows on another as they are flushed (a [`Tail`]), so the
/// archive is read and its rows stored at the same time with memory flat: the
/// file is the buffer between the two. Returns the summary and what `consume`
/// returned; `consume` sees the rows turn void when the archive is rejected as
/// a whole, and the archive stops being read when `consume` returns early.
pub fn spool_pipelined<T: Send>(
    dir: &std::path::Path,
    process: &mut dyn FnMut(&mut dyn RowSink) -> crate::process::Summary,
    consume: impl FnOnce(&mut Tail) -> T + Send,
) -> Result<(crate::process::Summary, T), Rejection> {
    let file = spool_file(dir)?;
    let read_end = file.try_clone().map_err(|e| internal("spool", e))?;
    let shared = Arc::new(Shared {
        started: std::time::Instant::now(),
        bytes: AtomicU64::new(0),
        state: Mutex::new(Progress {
            rows: 0,
            elapsed: Default::default(),
            first: None,
            done: false,
            void: false,
            stopped: false,
        }),
        changed: Condvar::new(),
    });
    let mut tail = Tail {
        shared: shared.clone(),
        reader: SpoolReader::new(TailFile {
            file: read_end,
            offset: 0,
            shared: shared.clone(),
        }),
        read: 0,
        available: 0,
    };
    let mut spool = Spool::new(file, shared.clone());
    std::thread::scope(|scope| {
        let consumer = std::thread::Builder::new()
            .name("smsdrop-queue".into())
            .spawn_scoped(scope, || {
                let out = consume(&mut tail);
                tail.shared.update(|p| p.stopped = true);
                out
            })
            .map_err(|e| internal("queue thread", e))?;
        // Should `process` panic, the rows turn void on the way out, so that
        // the consumer ends and the scope can unwind instead of waiting on it.
        let mut ending = Ending {
            shared: &shared,
            void: true,
        };
        let summary = process(&mut spool);
        let finished = spool.finish();
        let read_secs = shared.started.elapsed().as_secs_f64();
        ending.void = summary.error.is_some() || finished.is_err();
        drop(ending);
        let out = consumer
            .join()
            .map_err(|_| internal("queue thread", "panicked"))?;
        tracing::debug!(
            read_secs,
            stored_secs = shared.started.elapsed().as_secs_f64(),
            rows = shared.progress().rows,
            "rows staged"
        );
        finished.map_err(|e| internal("spool", e))?;
        Ok((summary, out))
    })
}

/// Tells the tail the writer is done when dropped: void unless the writer
/// says otherwise, so that a panic while reading voids the rows too.
struct Ending<'a> {
    shared: &'a Shared,
    void: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        let void = self.void;
        self.shared.update(|p| {
            p.done = true;
            p.void = void;
        });
    }
}

/// Reads [`Spool`] rows back into reused buffers.
struct SpoolReader<R: Read> {
    input: BufReader<R>,
    /// The text values of the current row, back to back; `ends` delimit them.
    /// Left as bytes: they were `str` when spooled, and the back-ends pass
    /// them on as UTF-8 without looking inside.
    text: Vec<u8>,
    ends: [usize; 8],
    ints: [i64; 2],
}

/// One spooled row, borrowing the reader's buffers; text values as UTF-8.
pub struct SpooledRow<'a> {
    pub message_id: &'a [u8],
    pub line: i64,
    pub phone: &'a [u8],
    pub sender: &'a [u8],
    pub text: &'a [u8],
    pub encoding: &'a [u8],
    pub segments: i64,
    pub send_at: &'a [u8],
    pub expires_at: &'a [u8],
    pub timezone: &'a [u8],
}

impl SpooledRow<'_> {
    /// The batch id: the message id without its `:<line>`.
    pub fn batch(&self) -> &[u8] {
        let id = self.message_id;
        id.iter()
            .rposition(|&b| b == b':')
            .map_or(id, |at| &id[..at])
    }
}

impl<R: Read> SpoolReader<R> {
    fn new(file: R) -> SpoolReader<R> {
        SpoolReader {
            input: BufReader::with_capacity(1 << 20, file),
            text: Vec::new(),
            ends: [0; 8],
            ints: [0; 2],
        }
    }

    fn next_row(&mut self) -> std::io::Result<SpooledRow<'_>> {
        let bytes = &mut self.text;
        bytes.clear();
        // message_id, [line], phone, sender, text, encoding, [segments], send_at,
        // expires_at, timezone
        let mut field = 0;
        for slot in 0..10 {
            if slot == 1 || slot == 6 {
                let mut n = [0u8; 8];
                self.input.read_exact(&mut n)?;
                self.ints[usize::from(slot == 6)] = i64::from_le_bytes(n);
                continue;
            }
            let mut n = [0u8; 4];
            self.input.read_exact(&mut n)?;
            let len = u32::from_le_bytes(n) as usize;
            let start = bytes.len();
            bytes.resize(start + len, 0);
            self.input.read_exact(&mut bytes[start..])?;
            self.ends[field] = bytes.len();
            field += 1;
        }
        let t = &self.text;
        let e = &self.ends;
        Ok(SpooledRow {
            message_id: &t[..e[0]],
            line: self.ints[0],
            phone: &t[e[0]..e[1]],
            sender: &t[e[1]..e[2]],
            text: &t[e[2]..e[3]],
            encoding: &t[e[3]..e[4]],
            segments: self.ints[1],
            send_at: &t[e[4]..e[5]],
            expires_at: &t[e[5]..e[6]],
            timezone: &t[e[6]..e[7]],
        })
    }
}
