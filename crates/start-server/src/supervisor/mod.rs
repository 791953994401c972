//! The generation state machine, pure: [`Supervisor::handle`] takes an
//! [`Event`] and the current time and returns the [`Action`]s to perform.
//! It never spawns, signals or writes by itself, so every path, including the
//! ones where Perl's Server::Starter loses the healthy generation, is tested
//! with scripted events (`tests.rs`).
//!
//! It is always in one `Stage`: steady, starting a generation, backing off
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

mod events;
mod exit;
mod perl;
mod retire;
mod start;
mod status;
mod stop;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use self::events::{Action, Dynamic, Event, Settings, StopSignal};
use self::perl::{join, secs};
use crate::signal::Signal;

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
enum Stage {
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
    stage: Stage,
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
            stage: Stage::Steady,
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
        match self.stage {
            Stage::Stopping { .. } => None,
            _ => self.current.map(|(_, generation)| generation),
        }
    }

    fn is_stopping(&self) -> bool {
        matches!(self.stage, Stage::Stopping { .. })
    }

    /// The start in progress, whatever the stage.
    fn candidate(&self) -> Option<&Candidate> {
        match &self.stage {
            Stage::Starting(c)
            | Stage::Stopping {
                candidate: Some(c), ..
            } => Some(c),
            _ => None,
        }
    }

    fn candidate_mut(&mut self) -> Option<&mut Candidate> {
        match &mut self.stage {
            Stage::Starting(c)
            | Stage::Stopping {
                candidate: Some(c), ..
            } => Some(c),
            _ => None,
        }
    }

    /// Forgets the start in progress, whatever the stage.
    fn drop_candidate(&mut self) {
        match &mut self.stage {
            Stage::Starting(_) => self.stage = Stage::Steady,
            Stage::Stopping { candidate, .. } => *candidate = None,
            _ => {}
        }
    }

    /// The next time [`Event::Tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let watchdog = self
            .alive_at
            .zip(self.settings.watchdog)
            .map(|(at, bound)| at + bound);
        let stage = match &self.stage {
            Stage::Stopping {
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
            Stage::Starting(c) if c.pid.is_none() && !c.killed => {
                self.settings.ready_timeout.map(|bound| c.started + bound)
            }
            Stage::Starting(c) if c.pid.is_some() && !c.killed => Some(
                c.started
                    + self
                        .settings
                        .ready_timeout
                        .unwrap_or(self.settings.interval),
            ),
            Stage::Starting(_) => None,
            Stage::Backoff { at, .. } | Stage::Retiring { at } => Some(*at),
            Stage::Steady => match (self.dynamic.auto_restart, self.last_restart) {
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
        [stage, watchdog].into_iter().flatten().min()
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
            Event::Ready { generation } => match &mut self.stage {
                Stage::Starting(c) if c.generation == generation && c.pid.is_none() => {
                    c.said_ready = true;
                }
                Stage::Starting(c) if c.generation == generation && !c.killed => {
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

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Stage::Stopping { kill_at, .. } = &mut self.stage {
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
        match &mut self.stage {
            Stage::Starting(c) if !c.killed => {
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
            Stage::Starting(_) | Stage::Stopping { .. } => {}
            Stage::Backoff { at, purpose } => {
                if now >= *at {
                    let purpose = *purpose;
                    self.attempt(purpose, now, out);
                }
            }
            Stage::Retiring { at } => {
                if now >= *at {
                    self.kill_old(now, out);
                }
            }
            Stage::Steady => self.auto_restart(now, out),
        }
    }
}

#[cfg(test)]
mod tests;
