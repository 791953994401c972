//! Starting a worker: its environment, its own process group, and the
//! listening sockets placed at their numbers, with nothing else inherited.
#![allow(unsafe_code)] // `pre_exec` is how descriptors are placed in a child; see SAFETY.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::Path;

use tokio::process::{Child, Command};

/// At most this many sockets are placed (a fixed-size array in the child).
pub(crate) const MAX_SOCKETS: usize = 64;

/// Spawns `program` with exactly `env`, in `dir`, in a new process group,
/// with each `(source, target)` socket open at `target` and every other
/// descriptor above 2 closed at exec.
///
/// # Errors
///
/// When the program cannot be started (not found, not executable, `dir`
/// missing): the error from exec or chdir.
pub(crate) fn spawn(
    program: &[OsString],
    env: &[(OsString, OsString)],
    dir: Option<&Path>,
    placements: &[(RawFd, i32)],
) -> std::io::Result<Child> {
    let Some((prog, args)) = program.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no program",
        ));
    };
    if placements.len() > MAX_SOCKETS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "too many sockets",
        ));
    }
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .process_group(0);
    cmd.kill_on_drop(false);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut pairs = [(-1 as RawFd, -1i32); MAX_SOCKETS];
    pairs[..placements.len()].copy_from_slice(placements);
    let count = placements.len();
    let floor = placements.iter().map(|(_, t)| *t).max().unwrap_or(2).max(2) + 1;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed. It makes raw system calls
    // (`close_range`, `fcntl`, `dup2`) on plain numbers, reads a fixed-size
    // array copied into the closure before the fork, and allocates nothing.
    // The sources are open in the parent for as long as `Command::spawn`
    // runs (the caller holds the `OwnedFd`s), so they are open in the child.
    unsafe {
        cmd.pre_exec(move || {
            // Everything above stderr is closed at exec, except what we place
            // below (dup2 clears close-on-exec on the copy). Kernels without
            // close_range (before 5.11) keep std's default: only descriptors
            // start_server inherited without close-on-exec leak through.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            // Move every source above every target first, so placing one
            // socket never overwrites another's source.
            let mut moved = [-1 as RawFd; MAX_SOCKETS];
            for i in 0..count {
                let high = libc::fcntl(pairs[i].0, libc::F_DUPFD_CLOEXEC, floor);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved[i] = high;
            }
            for i in 0..count {
                if libc::dup2(moved[i], pairs[i].1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}
