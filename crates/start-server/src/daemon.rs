//! `--daemonize`: fork, setsid, fork, as Perl's start_server does.
#![allow(unsafe_code)] // fork(2) has no safe wrapper; see SAFETY.

use crate::error::Error;

/// Detaches from the terminal. The parents exit 0 at once; the grandchild
/// returns. `keep_stdin` keeps fd 0 (a socket pinned there with `=0`).
///
/// Must be called while the process is single-threaded (before any runtime starts).
///
/// # Errors
///
/// When fork or setsid fails.
pub(crate) fn daemonize(keep_stdin: bool) -> Result<(), Error> {
    for round in 0..2 {
        // SAFETY: start_server is single-threaded here (no runtime, no thread
        // spawned yet), so the child is a complete copy and may run any code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::Io {
                action: "fork",
                source: std::io::Error::last_os_error(),
            });
        }
        if pid > 0 {
            // The parent leaves without running destructors: the sockets and
            // files now belong to the child.
            std::process::exit(0);
        }
        if round == 0 {
            rustix::process::setsid().map_err(|e| Error::Io {
                action: "setsid",
                source: e.into(),
            })?;
        }
    }
    if !keep_stdin {
        let null = std::fs::File::open("/dev/null").map_err(|source| Error::Io {
            action: "open /dev/null",
            source,
        })?;
        rustix::stdio::dup2_stdin(&null).map_err(|e| Error::Io {
            action: "reopen stdin",
            source: e.into(),
        })?;
    }
    Ok(())
}
