//! Starting a generation: the attempt, its spawn, READY=1, and the start
//! that becomes the current generation (or fails and backs off).

use super::*;

impl Supervisor {
    pub(super) fn forked(&mut self, generation: u64, pid: u32, out: &mut Vec<Action>) {
        let Some(c) = self
            .candidate_mut()
            .filter(|c| c.generation == generation && c.pid.is_none())
        else {
            return;
        };
        c.forked = Some(pid);
        if c.killed {
            // Given up on before its pid was known.
            out.push(Action::Signal {
                pid,
                signal: Signal::KILL,
            });
        }
    }

    pub(super) fn spawned(
        &mut self,
        generation: u64,
        pid: u32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let stopping = self.is_stopping();
        let Some(c) = self.candidate_mut().filter(|c| c.generation == generation) else {
            return;
        };
        c.pid = Some(pid);
        if c.killed {
            // Given up on before its spawn returned: killed now if its pid
            // had not come first (or did not come at all), again if it had
            // (its spawn returns once it is dead, unreaped until now). Its
            // exit ends the attempt.
            out.push(Action::Signal {
                pid,
                signal: Signal::KILL,
            });
            return;
        }
        let said_ready = c.said_ready;
        out.push(Action::Log(format!("starting new worker {pid}")));
        if stopping {
            out.push(Action::Signal {
                pid,
                signal: Signal::TERM,
            });
        } else if said_ready {
            self.ready(now, out);
        }
    }

    /// The candidate said READY=1 (and is spawned).
    pub(super) fn ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.is_stopping() {
            return;
        }
        self.accept(now, out);
        if self.settings.watchdog.is_some() {
            self.alive_at = Some(now);
        }
    }

    pub(super) fn attempt(&mut self, purpose: Purpose, now: Instant, out: &mut Vec<Action>) {
        self.generation += 1;
        self.stage = Stage::Starting(Candidate {
            generation: self.generation,
            pid: None,
            started: now,
            purpose,
            killed: false,
            said_ready: false,
            forked: None,
        });
        out.push(Action::Spawn {
            generation: self.generation,
        });
    }

    pub(super) fn hup(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.stage {
            Stage::Stopping { .. } => {}
            Stage::Starting(_) | Stage::Backoff { .. } | Stage::Retiring { .. } => {
                // Never cut the running restart short (Perl accepts the
                // half-started worker and kills the healthy old one): one more
                // restart follows once this one is done.
                if !self.pending_restart {
                    out.push(Action::Log(
                        "received HUP during a restart, another restart will follow".into(),
                    ));
                }
                self.pending_restart = true;
            }
            Stage::Steady => {
                out.push(Action::Log("received HUP, spawning a new worker".into()));
                self.restart(now, out);
            }
        }
    }

    pub(super) fn restart(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.ready_once {
            out.push(Action::Notify("RELOADING=1"));
        }
        self.attempt(Purpose::Restart, now, out);
    }

    /// The candidate is trusted: it becomes the current generation.
    pub(super) fn accept(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Stage::Starting(c) = &self.stage else {
            return;
        };
        let Some(pid) = c.pid else { return };
        let (generation, purpose) = (c.generation, c.purpose);
        self.stage = Stage::Steady;
        if let Some((old_pid, old_gen)) = self.current.take() {
            self.old.insert(old_pid, old_gen);
        }
        self.current = Some((pid, generation));
        // The watchdog starts again with the new worker's first sign of life.
        self.alive_at = None;
        self.last_restart = Some(now);
        out.push(self.status());
        out.push(Action::Notify("READY=1"));
        self.ready_once = true;
        if purpose == Purpose::Restart || self.kill_withheld {
            self.kill_withheld = false;
            let list = self.old_list();
            out.push(Action::Log(format!(
                "new worker is now running, sending {} to old workers:{}",
                self.settings.signal_on_hup,
                if list.is_empty() {
                    "none".to_owned()
                } else {
                    list
                }
            )));
            match self.dynamic.kill_old_delay.filter(|d| !d.is_zero()) {
                Some(delay) => {
                    out.push(Action::Log(format!(
                        "sleeping {} secs before killing old workers",
                        secs(delay)
                    )));
                    self.stage = Stage::Retiring { at: now + delay };
                }
                None => self.kill_old(now, out),
            }
        } else {
            self.after_restart(now, out);
        }
    }

    pub(super) fn failed_start(&mut self, now: Instant) {
        let Some(c) = self.candidate().cloned() else {
            return;
        };
        if self.is_stopping() {
            self.drop_candidate();
            return;
        }
        self.failures += 1;
        // Perl paces retries by the interval; a crash loop backs off on top.
        let pace = self.settings.interval.max(Duration::from_millis(100));
        let at = if self.failures <= 3 {
            (c.started + pace).max(now)
        } else {
            now + (pace * 2u32.saturating_pow(self.failures - 3)).min(Duration::from_secs(30))
        };
        self.stage = Stage::Backoff {
            at,
            purpose: c.purpose,
        };
    }

    pub(super) fn auto_restart(&mut self, now: Instant, out: &mut Vec<Action>) {
        let (Some(every), Some(last)) = (self.dynamic.auto_restart, self.last_restart) else {
            return;
        };
        let elapsed = now.duration_since(last);
        if elapsed >= every && self.old.is_empty() {
            out.push(Action::Log(format!(
                "autorestart triggered (interval={})",
                secs(every)
            )));
            self.restart(now, out);
        } else if elapsed >= every * 2 {
            out.push(Action::Log(format!(
                "autorestart triggered (forced, interval={})",
                secs(every)
            )));
            self.restart(now, out);
        }
    }
}
