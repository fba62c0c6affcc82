//! The storage back-end (SPEC §2): a decorator over libunftp's file-system
//! back-end, which lists, downloads and deletes inside the account's home;
//! uploads take their own path here.
//!
//! An upload is written to `.<name>.part` in 256 KiB chunks (a few queued for
//! a blocking writer, so the network is read while the disk writes) and
//! renamed to `<name>` only when the transfer ended — so the poller, which
//! ignores hidden files, never sees a partial file. On the way it is held to:
//! - names: one `*.zip` name at the home's top level (else 553);
//! - size: `max_archive_bytes` per archive and the account's storage
//!   ([`Quota`]) (else 552);
//! - one upload of a name at a time: a second one while the first is in
//!   progress gets 450 (the kept copy could otherwise differ from the archive
//!   that was processed); an archive that landed and waits may be replaced;
//! - pace: a transfer that stalls for `idle_timeout_secs` is dropped.
//!
//! Nothing is left behind by a failed upload: its part file is removed, also
//! when the session is dropped mid-transfer (shutdown, abort).

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
use crate::front::quota::Quota;

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
        if !self.landed {
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

/// The file name of an upload if it may land: one `*.zip` name at the top of
/// the home, not hidden.
fn landing_name(path: &Path) -> Result<String, storage::Error> {
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
    if name.starts_with('.') || !name.ends_with(".zip") {
        return Err(refuse(
            ErrorKind::FileNameNotAllowedError,
            format!("{name}: only <login>_<YYYYMMDDhhmmss>.zip archives are accepted"),
        ));
    }
    Ok(name)
}

impl Landing {
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
                    return Err(refuse(
                        ErrorKind::ExceededStorageAllocationError,
                        format!("{name}: archives are limited to {} bytes", shared.max_bytes),
                    ));
                }
            }
            if let Err(limit) = charge.add(buf.len() as u64) {
                return Err(refuse(
                    ErrorKind::ExceededStorageAllocationError,
                    format!("{name}: the account's storage is limited to {limit} bytes"),
                ));
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
    type Metadata = <Filesystem as StorageBackend<FtpUser>>::Metadata;

    fn enter(&mut self, user: &FtpUser) -> std::io::Result<()> {
        StorageBackend::<FtpUser>::enter(&mut self.inner, user)
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Self::Metadata> {
        self.inner.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Vec<storage::Fileinfo<PathBuf, Self::Metadata>>>
    where
        Self::Metadata: Metadata,
    {
        let all = self.inner.list(user, path).await?;
        // Uploads in progress (hidden part files) are nobody's business.
        Ok(all
            .into_iter()
            .filter(|f| {
                !f.path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect())
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
        let name = landing_name(path.as_ref())?;
        let part = user.home.join(format!(".{name}.part"));
        let target = user.home.join(&name);
        let Some(mut upload) = Upload::start(&self.shared, part.clone(), target.clone()) else {
            return Err(refuse(
                ErrorKind::TransientFileNotAvailable,
                format!("{name}: another upload of this name is in progress"),
            ));
        };
        let total = self.receive(user, &name, &part, input).await?;
        tokio::fs::rename(&part, &target).await?;
        upload.landed = true;
        drop(upload);
        self.shared.landed.notify_one();
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
        _user: &FtpUser,
        from: P,
        _to: P,
    ) -> storage::Result<()> {
        Err(refuse(
            ErrorKind::PermissionDenied,
            format!(
                "{}: renaming is not supported; upload under the final name",
                from.as_ref().display()
            ),
        ))
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
        self.inner.cwd(user, path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_top_level_zip_names_land() {
        assert_eq!(
            landing_name(Path::new("/guest_20261123070000.zip")).unwrap(),
            "guest_20261123070000.zip"
        );
        assert_eq!(landing_name(Path::new("a.zip")).unwrap(), "a.zip");
        for bad in [
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
