//! Signal names and numbers, and delivering a signal to a worker.

use std::fmt;

/// A signal to send to workers, validated at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    number: i32,
    name: &'static str,
}

const NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

impl Signal {
    /// `SIGTERM`.
    pub const TERM: Self = Self {
        number: libc::SIGTERM,
        name: "TERM",
    };
    /// `SIGKILL`.
    pub const KILL: Self = Self {
        number: libc::SIGKILL,
        name: "KILL",
    };
    /// `SIGHUP`.
    pub const HUP: Self = Self {
        number: libc::SIGHUP,
        name: "HUP",
    };

    /// Parses `TERM`, `term`, `SIGTERM` or `15`.
    pub fn parse(text: &str) -> Option<Self> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Ok(number) = bare.parse::<i32>() {
            return NAMES
                .iter()
                .find(|(_, n)| *n == number)
                .map(|(name, number)| Self {
                    number: *number,
                    name,
                });
        }
        NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|(name, number)| Self {
                number: *number,
                name,
            })
    }

    /// The raw number.
    pub fn number(self) -> i32 {
        self.number
    }

    /// Sends the signal to process `pid`; `false` if it is gone.
    pub fn send(self, pid: u32) -> bool {
        let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        let Some(signal) = rustix::process::Signal::from_named_raw(self.number) else {
            return false;
        };
        rustix::process::kill_process(pid, signal).is_ok()
    }
}

impl fmt::Display for Signal {
    /// The name without `SIG`, as Perl prints it (`TERM`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_prefixes_cases_and_numbers() {
        for text in ["TERM", "term", "SIGTERM", "sigterm", "15", " TERM "] {
            assert_eq!(Signal::parse(text), Some(Signal::TERM), "{text}");
        }
        assert_eq!(
            Signal::parse("USR1").map(|s| s.to_string()).as_deref(),
            Some("USR1")
        );
        assert_eq!(Signal::parse("FOO"), None);
        assert_eq!(Signal::parse("99"), None);
    }
}
