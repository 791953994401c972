//! A worker exited: current, old or starting, while serving or stopping.

use super::*;

impl Supervisor {
    pub(super) fn exited(&mut self, pid: u32, status: i32, now: Instant, out: &mut Vec<Action>) {
        if self.is_stopping() {
            let known = self.current.is_some_and(|(p, _)| p == pid)
                || self.old.contains_key(&pid)
                || self.candidate().is_some_and(|c| c.pid == Some(pid));
            if known {
                out.push(Action::Log(format!("worker {pid} died, status:{status}")));
                self.forget(pid);
                out.push(self.status());
            }
            return;
        }
        if self.candidate().is_some_and(|c| c.pid == Some(pid)) {
            let killed = self.candidate().is_some_and(|c| c.killed);
            if !killed {
                out.push(Action::Log(format!(
                    "new worker {pid} seems to have failed to start, exit status:{status}"
                )));
                out.extend(bind_hint(pid, status));
            }
            self.failed_start(now);
        } else if self.current.is_some_and(|(p, _)| p == pid) {
            out.push(Action::Log(format!(
                "worker {pid} died unexpectedly with status:{status}, restarting"
            )));
            out.extend(bind_hint(pid, status));
            self.current = None;
            self.alive_at = None;
            match &mut self.stage {
                Stage::Retiring { .. } => {
                    // The new generation died before the old ones were told to
                    // stop: keep them serving (Perl kills them anyway).
                    out.push(Action::Log(
                        "not signalling old workers: the new worker is gone".into(),
                    ));
                    self.kill_withheld = true;
                }
                // A new worker is already starting: it takes over (starting
                // another would lose track of it)...
                Stage::Starting(c) => {
                    // ...unless its child is stuck before exec (its spawn has
                    // not returned): then nothing would serve the port. It is
                    // killed, its spawn returns, and its exit starts another.
                    if c.pid.is_none() && !c.killed {
                        c.killed = true;
                        c.purpose = Purpose::Replace;
                        out.push(Action::Log(format!(
                            "the worker of generation {} has not started; killing it and starting another",
                            c.generation
                        )));
                        if let Some(pid) = c.forked {
                            out.push(Action::Signal {
                                pid,
                                signal: Signal::KILL,
                            });
                        }
                        // The status file no longer names the dead worker.
                        out.push(self.status());
                    }
                    return;
                }
                Stage::Steady | Stage::Backoff { .. } | Stage::Stopping { .. } => {}
            }
            let quick = self.last_restart.is_some_and(|at| {
                now.duration_since(at) < self.settings.interval.max(Duration::from_secs(1))
            });
            if quick {
                self.failures += 1;
            } else {
                self.failures = 0;
            }
            if quick && self.failures > 1 {
                let backoff = (Duration::from_millis(100)
                    * 2u32.saturating_pow(self.failures.min(8)))
                .min(Duration::from_secs(30));
                self.stage = Stage::Backoff {
                    at: now + backoff,
                    purpose: Purpose::Replace,
                };
            } else {
                self.attempt(Purpose::Replace, now, out);
            }
        } else if self.old.remove(&pid).is_some() {
            out.push(Action::Log(format!(
                "old worker {pid} died, status:{status}"
            )));
            out.push(self.status());
        }
    }
}

/// Exit statuses that usually mean "could not bind": errno EADDRINUSE (98),
/// which Perl and C programs often exit with, and `gracedown serve`'s bind
/// failure (4).
const BIND_EXIT_CODES: [i32; 2] = [98, 4];

fn bind_hint(pid: u32, status: i32) -> Option<Action> {
    let code = (status & 0x7f == 0).then_some(status >> 8)?;
    BIND_EXIT_CODES.contains(&code).then(|| {
        Action::Log(format!(
            "hint: worker {pid} exited with code {code}, which often means it could not bind its address: \
             a worker must take its sockets from SERVER_STARTER_PORT instead of binding the port itself"
        ))
    })
}
