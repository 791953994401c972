//! Passing descriptors to a child at chosen numbers, as a superdaemon does.
#![allow(unsafe_code)] // `pre_exec` and `dup2` are how descriptors reach a child.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Arranges for `fds[i].0` to be open as number `fds[i].1` in the child,
/// without close-on-exec. Sources are first moved above every target, so a
/// source whose number is some other entry's target is not clobbered.
pub fn pass_fds(cmd: &mut Command, fds: &[(BorrowedFd<'_>, i32)]) {
    let pairs: Vec<(i32, i32)> = fds
        .iter()
        .map(|(fd, target)| (fd.as_raw_fd(), *target))
        .collect();
    let floor = pairs.iter().map(|(_, t)| *t).max().unwrap_or(0) + 1;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it calls `fcntl`, `dup2` and
    // `close` on numbers, allocates nothing (`pairs` was built before the
    // fork, and the stack array below is fixed-size), and the sources are
    // open in the parent (they are borrowed for the duration of this call
    // and the command is spawned while the caller still holds them).
    unsafe {
        cmd.pre_exec(move || {
            let mut moved = [-1i32; 16];
            for (i, (source, _)) in pairs.iter().enumerate().take(16) {
                let high = libc::fcntl(*source, libc::F_DUPFD, floor);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved[i] = high;
            }
            for (i, (_, target)) in pairs.iter().enumerate().take(16) {
                if libc::dup2(moved[i], *target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(moved[i]);
            }
            Ok(())
        });
    }
}
