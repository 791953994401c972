//! The generation state machine, pure: [`Supervisor::handle`] takes an
//! [`Event`] and the current time and returns the [`Action`]s to perform.
//! It never spawns, signals or writes by itself, so every path, including the
//! ones where Perl's Server::Starter loses the healthy generation, is tested
//! with scripted events (see the tests at the bottom).
//!
//! It is always in one `Phase`: steady, starting a generation, backing off
//! before the next start, retiring the old generations (`KILL_OLD_DELAY`),
//! or stopping. The generations themselves (current, old) and two flags (a
//! HUP during a restart, a withheld retirement) are the rest of its state.
//!
//! Perl compatibility: the same generation numbering (incremented before
//! every attempt, failed ones included), the same log lines, the same status
//! file contents. Fixes (see `docs/design/supervisor.md`):
//! - a HUP while a restart is in progress never shortens it: it is coalesced
//!   into one more restart after the current one;
//! - old generations are signalled only if the new one is still alive;
//! - a worker may say `READY=1` and is trusted at once; with a ready timeout,
//!   one that never does is killed and the old generation keeps serving;
//! - failed starts and crash loops back off instead of spinning.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::signal::Signal;

/// Settings that do not change while running.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A worker alive this long is trusted (when it does not say READY=1).
    pub interval: Duration,
    /// When set, only READY=1 makes a worker trusted, within this bound.
    pub ready_timeout: Option<Duration>,
    /// Sent to old generations after a restart.
    pub signal_on_hup: Signal,
    /// Sent to all workers on SIGTERM.
    pub signal_on_term: Signal,
    /// SIGKILL what is left this long after the stop signal.
    pub drain_timeout: Option<Duration>,
    /// A ready worker that sends no `WATCHDOG=1` for this long is killed
    /// and replaced.
    pub watchdog: Option<Duration>,
}

/// Settings read from the environment (and the envdir) at each wake-up,
/// as Perl does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `KILL_OLD_DELAY` (default 0, or 5 s with auto-restart).
    pub kill_old_delay: Option<Duration>,
    /// `AUTO_RESTART_INTERVAL` when `ENABLE_AUTO_RESTART` is set (default 360 s).
    pub auto_restart: Option<Duration>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// start_server is set up: start the first generation.
    Start,
    /// SIGHUP.
    Hup,
    /// SIGTERM, SIGINT or SIGQUIT.
    Stop(StopSignal),
    /// The worker of `generation` was spawned as `pid`.
    Spawned {
        /// The generation.
        generation: u64,
        /// Its pid.
        pid: u32,
    },
    /// The child of `generation` was forked as `pid` and runs towards its
    /// `exec` (the spawn has not necessarily returned: a child stopped
    /// before `exec` keeps it from returning, and is then known only so).
    Forked {
        /// The generation.
        generation: u64,
        /// The child's pid.
        pid: u32,
    },
    /// The worker of `generation` could not be spawned (exec or chdir failed).
    SpawnFailed {
        /// The generation.
        generation: u64,
        /// Why, for the log.
        error: String,
    },
    /// A child exited with this raw wait status.
    Exited {
        /// The child.
        pid: u32,
        /// The raw wait status (exit code << 8, or the signal number).
        status: i32,
    },
    /// The worker of `generation` said READY=1.
    Ready {
        /// The generation.
        generation: u64,
    },
    /// The worker of `generation` said WATCHDOG=1.
    Watchdog {
        /// The generation.
        generation: u64,
    },
    /// Time passed (a deadline from [`Supervisor::next_deadline`] was reached).
    Tick,
}

/// The stop signal start_server received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: workers get `--signal-on-term`.
    Term,
    /// SIGINT: workers get SIGTERM.
    Int,
    /// SIGQUIT: like SIGTERM (Perl dies and orphans the workers).
    Quit,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn a worker of this generation; answer with `Spawned` or `SpawnFailed`.
    Spawn {
        /// The generation.
        generation: u64,
    },
    /// Send a signal.
    Signal {
        /// The target.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// Write the status file with this content.
    WriteStatus(String),
    /// A log line.
    Log(String),
    /// A systemd notification for start_server's own supervisor.
    Notify(&'static str),
    /// Exit with this status.
    Exit(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The first generation, or a respawn after the current one died.
    Replace,
    /// A restart (HUP or auto-restart): old generations are signalled once it is up.
    Restart,
}

#[derive(Debug, Clone)]
struct Candidate {
    generation: u64,
    pid: Option<u32>,
    started: Instant,
    purpose: Purpose,
    killed: bool,
    /// READY=1 came before the spawn was reported (the spawn runs off the
    /// event loop, so a fast worker can say it first).
    said_ready: bool,
    /// The child's pid as soon as it was forked, before its spawn returns.
    forked: Option<u32>,
}

/// Where the supervisor is; exactly one at a time.
#[derive(Debug, Clone)]
enum Phase {
    /// The current generation (if any) serves; nothing is starting.
    Steady,
    /// A new generation is starting: being spawned, or alive and not yet trusted.
    Starting(Candidate),
    /// The next start waits until `at` (a failed start, a crash loop).
    Backoff { at: Instant, purpose: Purpose },
    /// The new generation is trusted; the old ones are signalled at `at`
    /// (`KILL_OLD_DELAY`).
    Retiring { at: Instant },
    /// Every worker was told to stop (at `since`); what is left gets SIGKILL
    /// at `kill_at`. A start in progress is still followed: its worker is
    /// signalled as soon as it is spawned.
    Stopping {
        since: Instant,
        kill_at: Option<Instant>,
        candidate: Option<Candidate>,
    },
}

/// The supervisor's state.
#[derive(Debug)]
pub struct Supervisor {
    settings: Settings,
    /// Updated by the driver before each event.
    pub dynamic: Dynamic,
    phase: Phase,
    generation: u64,
    current: Option<(u32, u64)>,
    old: BTreeMap<u32, u64>,
    /// Old generations whose signal was withheld because the new one died.
    kill_withheld: bool,
    /// A HUP came during a restart: one more restart follows it.
    pending_restart: bool,
    failures: u32,
    last_restart: Option<Instant>,
    ready_once: bool,
    /// The current worker's last sign of life, once it takes part in the
    /// watchdog (it said READY=1 or WATCHDOG=1).
    alive_at: Option<Instant>,
}

/// After the stop signal, how long a spawn still in progress is waited for.
const SPAWN_GRACE: Duration = Duration::from_secs(5);

impl Supervisor {
    /// A supervisor with nothing running yet.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            dynamic: Dynamic::default(),
            phase: Phase::Steady,
            generation: 0,
            current: None,
            old: BTreeMap::new(),
            kill_withheld: false,
            pending_restart: false,
            failures: 0,
            last_restart: None,
            ready_once: false,
            alive_at: None,
        }
    }

    /// The last generation number handed out.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation that takes connections handed off by draining ones:
    /// the current one, and none while stopping.
    pub fn handoff_target(&self) -> Option<u64> {
        match self.phase {
            Phase::Stopping { .. } => None,
            _ => self.current.map(|(_, generation)| generation),
        }
    }

    fn is_stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    /// The start in progress, whatever the phase.
    fn candidate(&self) -> Option<&Candidate> {
        match &self.phase {
            Phase::Starting(c)
            | Phase::Stopping {
                candidate: Some(c), ..
            } => Some(c),
            _ => None,
        }
    }

    fn candidate_mut(&mut self) -> Option<&mut Candidate> {
        match &mut self.phase {
            Phase::Starting(c)
            | Phase::Stopping {
                candidate: Some(c), ..
            } => Some(c),
            _ => None,
        }
    }

    /// Forgets the start in progress, whatever the phase.
    fn drop_candidate(&mut self) {
        match &mut self.phase {
            Phase::Starting(_) => self.phase = Phase::Steady,
            Phase::Stopping { candidate, .. } => *candidate = None,
            _ => {}
        }
    }

    /// The next time [`Event::Tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let watchdog = self
            .alive_at
            .zip(self.settings.watchdog)
            .map(|(at, bound)| at + bound);
        let phase = match &self.phase {
            Phase::Stopping {
                since,
                kill_at,
                candidate,
            } => {
                let spawn_grace = candidate
                    .as_ref()
                    .filter(|c| c.pid.is_none())
                    .map(|_| *since + SPAWN_GRACE);
                return [*kill_at, spawn_grace].into_iter().flatten().min();
            }
            // A spawn that has not returned (a child stuck before exec) is
            // bounded by the ready timeout too, counted from the spawn.
            Phase::Starting(c) if c.pid.is_none() && !c.killed => {
                self.settings.ready_timeout.map(|bound| c.started + bound)
            }
            Phase::Starting(c) if c.pid.is_some() && !c.killed => Some(
                c.started
                    + self
                        .settings
                        .ready_timeout
                        .unwrap_or(self.settings.interval),
            ),
            Phase::Starting(_) => None,
            Phase::Backoff { at, .. } | Phase::Retiring { at } => Some(*at),
            Phase::Steady => match (self.dynamic.auto_restart, self.last_restart) {
                (Some(every), Some(last)) => Some(
                    last + if self.old.is_empty() {
                        every
                    } else {
                        every * 2
                    },
                ),
                _ => None,
            },
        };
        [phase, watchdog].into_iter().flatten().min()
    }

    /// Handles one event at time `now`.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => self.attempt(Purpose::Replace, now, &mut out),
            Event::Hup => self.hup(now, &mut out),
            Event::Stop(signal) => self.stop(signal, now, &mut out),
            Event::Forked { generation, pid } => self.forked(generation, pid, &mut out),
            Event::Spawned { generation, pid } => self.spawned(generation, pid, now, &mut out),
            Event::SpawnFailed { generation, error } => {
                if self.candidate().is_some_and(|c| c.generation == generation) {
                    out.push(Action::Log(format!(
                        "new worker of generation {generation} failed to start: {error}"
                    )));
                    self.failed_start(now);
                }
            }
            Event::Ready { generation } => match &mut self.phase {
                Phase::Starting(c) if c.generation == generation && c.pid.is_none() => {
                    c.said_ready = true;
                }
                Phase::Starting(c) if c.generation == generation && !c.killed => {
                    self.ready(now, &mut out);
                }
                _ => {}
            },
            Event::Watchdog { generation } => {
                let current = self.current.is_some_and(|(_, g)| g == generation);
                if current && self.settings.watchdog.is_some() {
                    self.alive_at = Some(now);
                }
            }
            Event::Exited { pid, status } => self.exited(pid, status, now, &mut out),
            Event::Tick => self.tick(now, &mut out),
        }
        self.finish_stop(&mut out);
        out
    }

    fn forked(&mut self, generation: u64, pid: u32, out: &mut Vec<Action>) {
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

    fn spawned(&mut self, generation: u64, pid: u32, now: Instant, out: &mut Vec<Action>) {
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
    fn ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.is_stopping() {
            return;
        }
        self.accept(now, out);
        if self.settings.watchdog.is_some() {
            self.alive_at = Some(now);
        }
    }

    fn attempt(&mut self, purpose: Purpose, now: Instant, out: &mut Vec<Action>) {
        self.generation += 1;
        self.phase = Phase::Starting(Candidate {
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

    fn hup(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Stopping { .. } => {}
            Phase::Starting(_) | Phase::Backoff { .. } | Phase::Retiring { .. } => {
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
            Phase::Steady => {
                out.push(Action::Log("received HUP, spawning a new worker".into()));
                self.restart(now, out);
            }
        }
    }

    fn restart(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.ready_once {
            out.push(Action::Notify("RELOADING=1"));
        }
        self.attempt(Purpose::Restart, now, out);
    }

    /// The candidate is trusted: it becomes the current generation.
    fn accept(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Starting(c) = &self.phase else {
            return;
        };
        let Some(pid) = c.pid else { return };
        let (generation, purpose) = (c.generation, c.purpose);
        self.phase = Phase::Steady;
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
                    self.phase = Phase::Retiring { at: now + delay };
                }
                None => self.kill_old(now, out),
            }
        } else {
            self.after_restart(now, out);
        }
    }

    fn kill_old(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.phase = Phase::Steady;
        out.push(Action::Log("killing old workers".into()));
        for pid in self.sorted_old() {
            out.push(Action::Signal {
                pid,
                signal: self.settings.signal_on_hup,
            });
        }
        self.after_restart(now, out);
    }

    fn after_restart(&mut self, now: Instant, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.pending_restart) {
            out.push(Action::Log("received HUP, spawning a new worker".into()));
            self.restart(now, out);
        }
    }

    fn failed_start(&mut self, now: Instant) {
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
        self.phase = Phase::Backoff {
            at,
            purpose: c.purpose,
        };
    }

    fn exited(&mut self, pid: u32, status: i32, now: Instant, out: &mut Vec<Action>) {
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
            match &mut self.phase {
                Phase::Retiring { .. } => {
                    // The new generation died before the old ones were told to
                    // stop: keep them serving (Perl kills them anyway).
                    out.push(Action::Log(
                        "not signalling old workers: the new worker is gone".into(),
                    ));
                    self.kill_withheld = true;
                }
                // A new worker is already starting: it takes over (starting
                // another would lose track of it)...
                Phase::Starting(c) => {
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
                Phase::Steady | Phase::Backoff { .. } | Phase::Stopping { .. } => {}
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
                self.phase = Phase::Backoff {
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

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Stopping { kill_at, .. } = &mut self.phase {
            if kill_at.is_some_and(|at| now >= at) {
                *kill_at = None;
                let pids = self.all_pids();
                out.push(Action::Log(format!(
                    "drain timeout reached, sending KILL to workers:{}",
                    join(&pids)
                )));
                for pid in pids {
                    out.push(Action::Signal {
                        pid,
                        signal: Signal::KILL,
                    });
                }
            }
            self.give_up_pending_spawn(now, out);
            return;
        }
        if let (Some(at), Some(bound), Some((pid, _))) =
            (self.alive_at, self.settings.watchdog, self.current)
            && now >= at + bound
        {
            self.alive_at = None;
            out.push(Action::Log(format!(
                "worker {pid} sent no WATCHDOG=1 for {} secs, killing it",
                secs(bound)
            )));
            out.push(Action::Signal {
                pid,
                signal: Signal::KILL,
            });
        }
        match &mut self.phase {
            Phase::Starting(c) if !c.killed => {
                let Some(pid) = c.pid else {
                    // Its spawn has not returned: the child is stuck before
                    // exec. The ready timeout counts from the spawn.
                    if let Some(bound) = self.settings.ready_timeout
                        && now >= c.started + bound
                    {
                        c.killed = true;
                        out.push(Action::Log(format!(
                            "the worker of generation {} did not start within {} secs, killing it; old workers keep serving",
                            c.generation,
                            secs(bound)
                        )));
                        if let Some(pid) = c.forked {
                            out.push(Action::Signal {
                                pid,
                                signal: Signal::KILL,
                            });
                        }
                    }
                    return;
                };
                match self.settings.ready_timeout {
                    Some(bound) if now >= c.started + bound => {
                        c.killed = true;
                        out.push(Action::Log(format!(
                            "new worker {pid} did not send READY=1 within {} secs, killing it; old workers keep serving",
                            secs(bound)
                        )));
                        out.push(Action::Signal {
                            pid,
                            signal: Signal::KILL,
                        });
                    }
                    None if now >= c.started + self.settings.interval => self.accept(now, out),
                    _ => {}
                }
            }
            Phase::Starting(_) | Phase::Stopping { .. } => {}
            Phase::Backoff { at, purpose } => {
                if now >= *at {
                    let purpose = *purpose;
                    self.attempt(purpose, now, out);
                }
            }
            Phase::Retiring { at } => {
                if now >= *at {
                    self.kill_old(now, out);
                }
            }
            Phase::Steady => self.auto_restart(now, out),
        }
    }

    fn auto_restart(&mut self, now: Instant, out: &mut Vec<Action>) {
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

    fn stop(&mut self, signal: StopSignal, now: Instant, out: &mut Vec<Action>) {
        if self.is_stopping() {
            return;
        }
        let (name, to_workers) = match signal {
            StopSignal::Term => ("TERM", self.settings.signal_on_term),
            StopSignal::Int => ("INT", Signal::TERM),
            StopSignal::Quit => ("QUIT", self.settings.signal_on_term),
        };
        self.phase = Phase::Stopping {
            since: now,
            kill_at: self.settings.drain_timeout.map(|d| now + d),
            candidate: self.candidate().cloned(),
        };
        self.pending_restart = false;
        out.push(Action::Notify("STOPPING=1"));
        let pids = self.all_pids();
        out.push(Action::Log(format!(
            "received {name}, sending {to_workers} to all workers:{}",
            join(&pids)
        )));
        for pid in pids {
            out.push(Action::Signal {
                pid,
                signal: to_workers,
            });
        }
    }

    /// A worker whose spawn has not returned (its child stopped before exec)
    /// is not waited for past [`SPAWN_GRACE`]: if it ever runs, its parent-death
    /// signal and its parent check end it.
    fn give_up_pending_spawn(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Stopping {
            since, candidate, ..
        } = &mut self.phase
        else {
            return;
        };
        if let Some(c) = candidate.as_ref().filter(|c| c.pid.is_none())
            && now >= *since + SPAWN_GRACE
        {
            out.push(Action::Log(format!(
                "the worker of generation {} has not started after {} secs; not waiting for it",
                c.generation,
                secs(SPAWN_GRACE)
            )));
            *candidate = None;
        }
    }

    fn finish_stop(&mut self, out: &mut Vec<Action>) {
        let Phase::Stopping { candidate, .. } = &self.phase else {
            return;
        };
        // A spawn still in progress is waited for (bounded by the grace).
        if candidate.as_ref().is_some_and(|c| c.pid.is_none()) || !self.all_pids().is_empty() {
            return;
        }
        if out.last() == Some(&Action::Exit(0)) {
            return;
        }
        out.push(Action::Log("exiting".into()));
        out.push(Action::Exit(0));
    }

    fn forget(&mut self, pid: u32) {
        if self.current.is_some_and(|(p, _)| p == pid) {
            self.current = None;
        }
        self.old.remove(&pid);
        if self.candidate().is_some_and(|c| c.pid == Some(pid)) {
            self.drop_candidate();
        }
    }

    /// Every live worker, current, old and starting, sorted as strings (as Perl's `sort keys`).
    fn all_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.old.keys().copied().collect();
        pids.extend(self.current.map(|(p, _)| p));
        pids.extend(self.candidate().and_then(|c| c.pid));
        sort_as_strings(pids)
    }

    fn sorted_old(&self) -> Vec<u32> {
        sort_as_strings(self.old.keys().copied().collect())
    }

    fn old_list(&self) -> String {
        join(&self.sorted_old())
    }

    /// The status file: `GEN:PID` for the current and every old worker, sorted by GEN as strings.
    fn status(&self) -> Action {
        let mut lines: Vec<(String, u32)> = self
            .old
            .iter()
            .map(|(pid, generation)| (generation.to_string(), *pid))
            .collect();
        lines.extend(
            self.current
                .map(|(pid, generation)| (generation.to_string(), pid)),
        );
        lines.sort();
        Action::WriteStatus(lines.iter().map(|(g, p)| format!("{g}:{p}\n")).collect())
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

fn sort_as_strings(mut pids: Vec<u32>) -> Vec<u32> {
    pids.sort_by_key(|p| p.to_string());
    pids
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Seconds as Perl prints them: whole numbers plainly, fractions as given.
fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
