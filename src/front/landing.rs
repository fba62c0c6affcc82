//! The storage back-end (SPEC §2): a decorator over libunftp's file-system
//! back-end, which downloads and deletes inside the account's home; uploads,
//! renames, listings and file status take their own path here.
//!
//! An upload is written to `.<name>.uploading` in 256 KiB chunks (a few queued
//! for a blocking writer, so the network is read while the disk writes) and
//! renamed to `<name>` only when the transfer ended — so the poller, which
//! ignores hidden files, never sees a partial file. On the way it is held to:
//! - names: a `*.zip` name (any case) at the home's top level, or a temporary
//!   name ([`crate::intake::batch::is_temporary_name`]: `*.tmp`, `*.part`,
//!   `*.filepart`, `.in.*`, `tmp.*`), which is kept and never processed until
//!   `RNTO` gives it a final name — atomically, with a `rename` (else 553);
//! - size: `max_archive_bytes` per file and the account's storage ([`Quota`])
//!   (else 552);
//! - one upload of a name at a time: a second one while the first is in
//!   progress gets 450 (the kept copy could otherwise differ from the archive
//!   that was processed); an archive that landed and waits may be replaced;
//! - pace: a transfer that stalls for `idle_timeout_secs` is dropped.
//!
//! Nothing is left behind by a failed upload: its part file is removed, also
//! when the session is dropped mid-transfer (shutdown, abort).
//!
//! Listings never fail because an entry went away between reading the folder
//! and its metadata (the poller picks archives up, results are published):
//! such an entry is left out. A listing takes `-options` (stripped by the
//! parser), a folder, a file, or a `*`/`?` pattern in its last component. An
//! archive that landed stays listed and answers `SIZE`/`MDTM`/`MLST` for
//! [`RECENT`](crate::front::listing::RECENT) after its upload even when the poller has taken it already:
//! rclone, WinSCP and others check an upload by listing its folder.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;
use unftp_core::storage::{self, ErrorKind, Metadata, StorageBackend};
use unftp_sbe_fs::Filesystem;

use crate::front::auth::FtpUser;
use crate::front::listing::{self, Entry, Recent};
use crate::front::quota::Quota;
use crate::intake::batch::{is_archive_to_process, is_temporary_name};

/// What every session's back-end shares.
#[derive(Debug)]
pub struct Shared {
    pub max_bytes: u64,
    /// A transfer that stalls this long is dropped.
    pub stall: Duration,
    /// Poked when an upload has landed, to wake the poller.
    pub landed: Arc<Notify>,
    /// Uploads in progress, so that shutdown can wait for them.
    pub uploads: AtomicUsize,
    /// fsync before the upload is acknowledged (`ftp.sync_uploads`).
    pub sync: bool,
    pub quota: Arc<Quota>,
    /// Targets of the uploads in progress, all accounts.
    receiving: Mutex<HashSet<PathBuf>>,
    /// Archives just landed, shown for a while after the poller took them.
    recent: Recent,
}

impl Shared {
    pub fn new(
        max_bytes: u64,
        stall: Duration,
        landed: Arc<Notify>,
        sync: bool,
        quota: Arc<Quota>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            max_bytes,
            stall,
            landed,
            uploads: AtomicUsize::new(0),
            sync,
            quota,
            receiving: Mutex::default(),
            recent: Recent::default(),
        })
    }
}

/// The storage back-end of one session; see the module documentation.
#[derive(Debug)]
pub struct Landing {
    inner: Filesystem,
    shared: Arc<Shared>,
}

impl Landing {
    pub fn new(spool: &Path, shared: Arc<Shared>) -> std::io::Result<Landing> {
        Ok(Landing {
            inner: Filesystem::new(spool)?,
            shared,
        })
    }
}

/// Bytes of an upload gathered before each write to disk.
const UPLOAD_CHUNK: usize = 1 << 18;

/// Chunks of an upload waiting for the disk, at most (2 MiB), so that a
/// moment when the disk is slower (its queue full, a journal commit) does not
/// stop the reading. An upload in progress holds at most IN_FLIGHT + 2 chunks
/// (2.5 MiB; the kernel's socket buffer may hold a few MiB more), so
/// `max_sessions` bounds the total.
const IN_FLIGHT: usize = 8;

/// The result of a blocking write task.
async fn joined<T>(task: tokio::task::JoinHandle<std::io::Result<T>>) -> std::io::Result<T> {
    task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    joined(tokio::task::spawn_blocking(work)).await
}

/// An upload in progress: counted, its target reserved, and its part file
/// removed unless it landed.
struct Upload<'a> {
    part: PathBuf,
    target: PathBuf,
    landed: bool,
    shared: &'a Shared,
}

impl<'a> Upload<'a> {
    /// Reserves `target`; `None` while another upload of it is in progress.
    fn start(shared: &'a Shared, part: PathBuf, target: PathBuf) -> Option<Upload<'a>> {
        if !shared
            .receiving
            .lock()
            .expect("landing lock")
            .insert(target.clone())
        {
            return None;
        }
        shared.uploads.fetch_add(1, Ordering::AcqRel);
        Some(Upload {
            part,
            target,
            landed: false,
            shared,
        })
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if !self.landed && !self.part.as_os_str().is_empty() {
            // One unlink; not worth a trip to the blocking pool.
            let _ = std::fs::remove_file(&self.part);
        }
        self.shared
            .receiving
            .lock()
            .expect("landing lock")
            .remove(&self.target);
        self.shared.uploads.fetch_sub(1, Ordering::AcqRel);
    }
}

fn refuse(kind: ErrorKind, message: String) -> storage::Error {
    storage::Error::new(kind, message)
}

/// What an upload's name makes of it.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    /// An archive, processed once landed.
    Archive(String),
    /// A temporary name, kept until renamed to an archive's.
    Temporary(String),
}

/// The file name of an upload if it may land: a `*.zip` name (any case) or
/// a temporary name, at the top of the home, not hidden but for lftp's
/// `.in.*`.
fn landing_name(path: &Path) -> Result<Name, storage::Error> {
    let mut parts = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir));
    let (Some(Component::Normal(name)), None) = (parts.next(), parts.next()) else {
        return Err(refuse(
            ErrorKind::FileNameNotAllowedError,
            format!(
                "{}: upload archives to your home folder only",
                path.display()
            ),
        ));
    };
    let name = name.to_string_lossy().into_owned();
    if is_temporary_name(&name) && (!name.starts_with('.') || name.starts_with(".in.")) {
        Ok(Name::Temporary(name))
    } else if is_archive_to_process(&name) {
        Ok(Name::Archive(name))
    } else {
        Err(refuse(
            ErrorKind::FileNameNotAllowedError,
            format!("{name}: only <login>_<YYYYMMDDhhmmss>.zip archives are accepted"),
        ))
    }
}

impl Landing {
    /// Runs a look at the home (`listing::status`, `listing::list`) on the
    /// blocking pool: it reads the file system.
    async fn look<T: Send + 'static>(
        &self,
        user: &FtpUser,
        path: &Path,
        what: fn(&Path, &Path, &Recent) -> storage::Result<T>,
    ) -> storage::Result<T> {
        let (home, path, shared) = (user.home.clone(), path.to_owned(), self.shared.clone());
        tokio::task::spawn_blocking(move || what(&home, &path, &shared.recent))
            .await
            .unwrap_or_else(|e| Err(storage::Error::new(ErrorKind::LocalError, e)))
    }

    /// An archive has landed at `target`: shown for a while, and the poller
    /// is woken.
    async fn landed(&self, target: PathBuf) {
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(meta) = std::fs::metadata(&target) {
                shared.recent.landed(target, Entry::of(&meta));
            }
        })
        .await;
        self.shared.landed.notify_one();
    }

    /// `refusal`, after reading what the client still sends (discarded, up to
    /// `max_archive_bytes` more): a client that is told while it is still
    /// sending sees its connection reset, not the 552 that says why.
    async fn drained<R: AsyncRead + Unpin>(
        &self,
        input: &mut R,
        refusal: storage::Error,
    ) -> storage::Error {
        let mut scratch = vec![0u8; 64 << 10];
        let mut left = self.shared.max_bytes;
        while left > 0 {
            match tokio::time::timeout(self.shared.stall, input.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n as u64),
                _ => break,
            }
        }
        refusal
    }

    /// Receives `input` into `part`; the bytes received.
    async fn receive<R: AsyncRead + Unpin>(
        &self,
        user: &FtpUser,
        name: &str,
        part: &Path,
        mut input: R,
    ) -> storage::Result<u64> {
        let shared = &self.shared;
        let (quota, login) = (shared.quota.clone(), user.login.clone());
        let mut charge = blocking(move || quota.charge(&login)).await?;
        let part_path = part.to_owned();
        let file = blocking(move || std::fs::File::create(part_path)).await?;
        let sync = shared.sync;
        let mut total: u64 = 0;
        // One blocking task writes the chunks the network delivers.
        let (to_disk, mut queued) = tokio::sync::mpsc::channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, mut spare) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut offset = 0;
            while let Some(chunk) = queued.blocking_recv() {
                file.write_all(&chunk)?;
                if sync {
                    // The disk works while the network delivers the rest.
                    crate::writeback::start(&file, offset, chunk.len() as u64);
                }
                offset += chunk.len() as u64;
                // Reused for a later chunk (or dropped with the upload).
                let _ = give_back.send(chunk);
            }
            Ok(file)
        });
        let mut ended = false;
        while !ended {
            let mut buf = spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(UPLOAD_CHUNK));
            buf.clear();
            while buf.len() < UPLOAD_CHUNK {
                let n = match tokio::time::timeout(shared.stall, input.read_buf(&mut buf)).await {
                    Ok(read) => read?,
                    Err(_) => {
                        return Err(refuse(
                            ErrorKind::ConnectionClosed,
                            format!("{name}: transfer stalled"),
                        ));
                    }
                };
                if n == 0 {
                    ended = true;
                    break;
                }
                total += n as u64;
                if total > shared.max_bytes {
                    let refusal = refuse(
                        ErrorKind::ExceededStorageAllocationError,
                        format!("{name}: archives are limited to {} bytes", shared.max_bytes),
                    );
                    return Err(self.drained(&mut input, refusal).await);
                }
            }
            if let Err(limit) = charge.add(buf.len() as u64) {
                let refusal = refuse(
                    ErrorKind::ExceededStorageAllocationError,
                    format!("{name}: the account's storage is limited to {limit} bytes"),
                );
                return Err(self.drained(&mut input, refusal).await);
            }
            if !buf.is_empty() && to_disk.send(buf).await.is_err() {
                // The writer stopped on an error: its result says which.
                break;
            }
        }
        drop(to_disk);
        let file = joined(writer).await?;
        if sync {
            // Durable before the 226 reply and before the poller sees it.
            blocking(move || file.sync_all()).await?;
        }
        Ok(total)
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for Landing {
    type Metadata = Entry;

    fn enter(&mut self, user: &FtpUser) -> std::io::Result<()> {
        StorageBackend::<FtpUser>::enter(&mut self.inner, user)
    }

    fn supported_features(&self) -> u32 {
        // REST: downloads resume (uploads are whole or nothing, see `put`).
        storage::FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Self::Metadata> {
        self.look(user, path.as_ref(), listing::status).await
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Vec<storage::Fileinfo<PathBuf, Self::Metadata>>>
    where
        Self::Metadata: Metadata,
    {
        self.look(user, path.as_ref(), listing::list).await
    }

    async fn get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> storage::Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        self.inner.get(user, path, start_pos).await
    }

    async fn put<
        P: AsRef<Path> + Send + fmt::Debug,
        R: AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> storage::Result<u64> {
        if start_pos != 0 {
            return Err(refuse(
                ErrorKind::CommandNotImplemented,
                "resumed uploads are not supported: upload the whole archive".into(),
            ));
        }
        let landing = landing_name(path.as_ref())?;
        let (Name::Archive(name) | Name::Temporary(name)) = &landing;
        let part = user.home.join(format!(".{name}.uploading"));
        let target = user.home.join(name);
        let Some(mut upload) = Upload::start(&self.shared, part.clone(), target.clone()) else {
            return Err(refuse(
                ErrorKind::TransientFileNotAvailable,
                format!("{name}: another upload of this name is in progress"),
            ));
        };
        let total = self.receive(user, name, &part, input).await?;
        tokio::fs::rename(&part, &target).await?;
        upload.landed = true;
        drop(upload);
        if let Name::Archive(_) = landing {
            self.landed(target).await;
        }
        Ok(total)
    }

    async fn del<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        self.inner.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        Err(refuse(
            ErrorKind::PermissionDenied,
            format!("{}: folders cannot be created", path.as_ref().display()),
        ))
    }

    async fn rename<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> storage::Result<()> {
        let from_name = match landing_name(from.as_ref()) {
            Ok(Name::Temporary(name)) => name,
            _ => {
                return Err(refuse(
                    ErrorKind::FileNameNotAllowedError,
                    format!(
                        "{}: only an upload under a temporary name (*.tmp, *.part, tmp.*, .in.*) can be renamed",
                        from.as_ref().display()
                    ),
                ));
            }
        };
        let Name::Archive(to_name) = landing_name(to.as_ref())? else {
            return Err(refuse(
                ErrorKind::FileNameNotAllowedError,
                format!(
                    "{}: rename to <login>_<YYYYMMDDhhmmss>.zip",
                    to.as_ref().display()
                ),
            ));
        };
        let (source, target) = (user.home.join(&from_name), user.home.join(&to_name));
        if self
            .shared
            .receiving
            .lock()
            .expect("landing lock")
            .contains(&source)
        {
            return Err(refuse(
                ErrorKind::TransientFileNotAvailable,
                format!("{from_name}: its upload is still in progress"),
            ));
        }
        // The target is reserved as an upload's would be: not while one of
        // that name is in progress.
        let Some(mut reserved) = Upload::start(&self.shared, PathBuf::new(), target.clone()) else {
            return Err(refuse(
                ErrorKind::TransientFileNotAvailable,
                format!("{to_name}: an upload of this name is in progress"),
            ));
        };
        match tokio::fs::rename(&source, &target).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse(
                    ErrorKind::PermanentFileNotAvailable,
                    format!("{from_name}: not found"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        reserved.landed = true;
        drop(reserved);
        self.landed(target).await;
        Ok(())
    }

    async fn rmd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        Err(refuse(
            ErrorKind::PermissionDenied,
            format!("{}: folders cannot be removed", path.as_ref().display()),
        ))
    }

    async fn cwd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        match self.metadata(user, path).await {
            Ok(entry) if entry.is_dir() => Ok(()),
            _ => Err(refuse(
                ErrorKind::PermanentDirectoryNotAvailable,
                "no such folder".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_top_level_zip_and_temporary_names_land() {
        let archive = |s: &str| Name::Archive(s.into());
        let temporary = |s: &str| Name::Temporary(s.into());
        assert_eq!(
            landing_name(Path::new("/guest_20261123070000.zip")).unwrap(),
            archive("guest_20261123070000.zip")
        );
        assert_eq!(landing_name(Path::new("a.zip")).unwrap(), archive("a.zip"));
        assert_eq!(landing_name(Path::new("A.ZIP")).unwrap(), archive("A.ZIP"));
        for name in [
            "a.zip.tmp",
            "a.zip.part",
            "tmp.a.zip",
            ".in.a.zip",
            "a.zip.filepart",
        ] {
            assert_eq!(landing_name(Path::new(name)).unwrap(), temporary(name));
        }
        for bad in [
            ".a.zip.part",
            "/results/a.zip.tmp",
            "/results/a.zip",
            "../a.zip",
            "a.txt",
            "/.a.zip",
            "x/../a.zip",
            "/",
        ] {
            assert!(landing_name(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
