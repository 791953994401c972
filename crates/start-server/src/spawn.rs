//! Starting a worker: its environment, its own process group, the listening
//! sockets placed at their numbers with nothing else inherited, and a
//! parent-death signal, so that a worker never outlives start_server (a
//! `kill -9` of start_server or of its process group leaves no worker
//! holding the port).
#![allow(unsafe_code)] // `pre_exec` is how descriptors are placed in a child; see SAFETY.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use tokio::process::{Child, Command};

/// At most this many sockets are placed (a fixed-size array in the child).
pub(crate) const MAX_SOCKETS: usize = 64;

/// How every worker is started; fixed for start_server's life.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) program: Vec<OsString>,
    pub(crate) dir: Option<std::path::PathBuf>,
    /// `(source, target)`: each socket open at `target` in the worker.
    pub(crate) placements: Vec<(RawFd, i32)>,
    /// Delivered to the worker when start_server dies (`--signal-on-term`).
    pub(crate) death_signal: i32,
    /// Fault injection for tests: the child of this generation stops itself
    /// (`SIGSTOP`) between fork and exec (`GRACEDOWN_STOP_BEFORE_EXEC`).
    pub(crate) stop_before_exec: Option<u64>,
}

/// The fault-injection variable of [`Plan::stop_before_exec`].
pub(crate) const STOP_BEFORE_EXEC: &str = "GRACEDOWN_STOP_BEFORE_EXEC";

/// Spawns the worker of `generation` with exactly `env`, in the plan's
/// directory, in a new process group, with each placement's socket (and
/// `extra`, this generation's own descriptor) open at its target, every other
/// descriptor above 2 closed at exec, and the plan's death signal set.
///
/// Blocks until the child has exec'd (or failed to): call it off the event loop.
/// `forked`, when given, is the write end of a pipe the child writes its pid
/// to (native-endian `pid_t`) as soon as it runs: a child stuck before its
/// exec is known, and can be ended, although this call has not returned.
///
/// # Errors
///
/// When the program cannot be started (not found, not executable, `dir`
/// missing), or start_server died before the child could exec.
pub(crate) fn spawn(
    plan: &Plan,
    generation: u64,
    env: &[(OsString, OsString)],
    extra: Option<(BorrowedFd<'_>, i32)>,
    forked: Option<BorrowedFd<'_>>,
) -> std::io::Result<Child> {
    let forked = forked.map_or(-1, |fd| fd.as_raw_fd());
    let (program, dir) = (&plan.program, plan.dir.as_deref());
    let mut placements = plan.placements.clone();
    placements.extend(extra.map(|(fd, target)| (fd.as_raw_fd(), target)));
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
    pairs[..placements.len()].copy_from_slice(&placements);
    let count = placements.len();
    let floor = placements.iter().map(|(_, t)| *t).max().unwrap_or(2).max(2) + 1;
    let death_signal = libc::c_ulong::try_from(plan.death_signal).unwrap_or(libc::SIGTERM as _);
    let stop = plan.stop_before_exec == Some(generation);
    // SAFETY: `getpid` has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed. It makes raw system calls
    // (`getpid`, `write`, `prctl`, `raise`, `getppid`, `close_range`,
    // `fcntl`, `dup2`) on plain numbers and on a local it points `write` at
    // (with its size), reads a fixed-size array copied into the closure
    // before the fork, and allocates nothing. The sources and the `forked`
    // pipe are open in the parent for as long as `Command::spawn` runs (the
    // caller holds the `OwnedFd`s, `extra` and `forked` are borrowed for
    // this call), so they are open in the child.
    unsafe {
        cmd.pre_exec(move || {
            // First of all, so that a child stuck anywhere later is known.
            if forked >= 0 {
                let pid = libc::getpid();
                let size = std::mem::size_of_val(&pid);
                libc::write(forked, (&raw const pid).cast(), size);
            }
            // The worker gets the stop signal when start_server dies; the
            // setting survives exec (but not a set-user-ID program).
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if stop {
                libc::raise(libc::SIGSTOP);
            }
            // start_server died before the setting took effect: do not run
            // an orphan.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
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
