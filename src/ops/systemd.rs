//! What smsdrop says to and takes from systemd: readiness notifications
//! (`Type=notify`: `READY=1`, `RELOADING=1`, `STOPPING=1`) and listening
//! sockets passed by socket activation (`LISTEN_FDS`, from file descriptor
//! 3: the FTP listener, then the HTTP one). Both are no-ops without systemd.

use std::os::fd::{FromRawFd, RawFd};

use sd_notify::NotifyState;

/// Tells systemd (when it started us with `Type=notify`); a no-op otherwise.
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The first file descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The FTP and HTTP listeners passed by socket activation, if any:
/// `LISTEN_FDS=2` and, when `LISTEN_PID` is set, this process's id (a
/// process that starts smsdrop itself with its sockets may leave it out).
pub fn inherited_listeners() -> std::io::Result<Option<[std::net::TcpListener; 2]>> {
    let Ok(count) = std::env::var("LISTEN_FDS") else {
        return Ok(None);
    };
    if let Ok(pid) = std::env::var("LISTEN_PID")
        && pid.parse() != Ok(std::process::id())
    {
        return Ok(None);
    }
    if count != "2" {
        return Err(std::io::Error::other(format!(
            "LISTEN_FDS={count}: expected 2 sockets, the FTP listener then the HTTP one"
        )));
    }
    let take = |fd: RawFd| {
        // SAFETY: descriptors 3 and 4 were passed to this process for it to
        // own (socket activation); nothing else in it opened them.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        listener.set_nonblocking(true)?;
        // Not passed on to anything smsdrop starts.
        // SAFETY: a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok::<_, std::io::Error>(listener)
    };
    Ok(Some([take(FIRST_FD)?, take(FIRST_FD + 1)?]))
}
