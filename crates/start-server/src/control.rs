//! `--restart` and `--stop`: controlling a running start_server through its
//! pid file and status file.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::files::generations;
use crate::signal::Signal;

/// How long `--restart` waits for the new generation to be the only one.
pub(crate) const RESTART_WAIT: Duration = Duration::from_secs(120);

fn read_pid(pid_file: &Path) -> Result<u32, Error> {
    let text = std::fs::read_to_string(pid_file).map_err(|source| Error::File {
        action: "read the pid file",
        path: pid_file.to_owned(),
        source,
    })?;
    let line = text.lines().next().unwrap_or("").trim();
    line.parse().map_err(|_| {
        Error::Control(format!(
            "pid file `{}` holds `{line}`, not a pid",
            pid_file.display()
        ))
    })
}

fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid).is_ok()
}

/// Sends HUP and waits until a generation newer than every one before is
/// the only one in the status file. Unlike Perl's, it does not hang when a
/// start attempt failed (generation numbers skip), and it gives up with a
/// reason when start_server dies or the wait passes [`RESTART_WAIT`].
///
/// # Errors
///
/// [`Error::Control`] with the reason.
pub(crate) fn restart(
    pid_file: &Path,
    status_file: &Path,
    log: &mut dyn FnMut(String),
) -> Result<(), Error> {
    let pid = read_pid(pid_file)?;
    let read_status = || std::fs::read_to_string(status_file).unwrap_or_default();
    let before = generations(&read_status());
    let Some(&newest) = before.last() else {
        return Err(Error::Control(
            "no active process found in the status file".into(),
        ));
    };
    if !Signal::HUP.send(pid) {
        return Err(Error::Control(format!(
            "failed to send SIGHUP to the server process (pid {pid})"
        )));
    }
    log(format!(
        "sent HUP to start_server (pid:{pid}), waiting for a generation after {newest}"
    ));
    let deadline = Instant::now() + RESTART_WAIT;
    loop {
        let gens = generations(&read_status());
        if let [only] = gens[..]
            && only > newest
        {
            log(format!("generation {only} is now the only one"));
            return Ok(());
        }
        if !alive(pid) {
            return Err(Error::Control(format!(
                "start_server (pid {pid}) exited before the restart completed"
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Control(format!(
                "timed out after {}s: the status file lists generations {gens:?}, expected one newer than {newest} alone",
                RESTART_WAIT.as_secs()
            )));
        }
        // The status file has no change notification that works across
        // renames for every filesystem; poll it, bounded by the deadline.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends TERM and waits until start_server exits (its pid file lock is released).
///
/// # Errors
///
/// [`Error::Control`] when the pid file is unusable or the signal cannot be sent.
pub(crate) fn stop(pid_file: &Path, log: &mut dyn FnMut(String)) -> Result<(), Error> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pid_file)
        .map_err(|source| Error::File {
            action: "open the pid file",
            path: pid_file.to_owned(),
            source,
        })?;
    let pid = read_pid(pid_file)?;
    log(format!(
        "stop_server (pid:{}) stopping now (pid:{pid})...",
        std::process::id()
    ));
    if !Signal::TERM.send(pid) {
        return Err(Error::Control(format!(
            "failed to send SIGTERM to the server process (pid {pid})"
        )));
    }
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        Error::File {
            action: "wait for the pid file lock of",
            path: pid_file.to_owned(),
            source: e.into(),
        }
    })?;
    Ok(())
}
