//! Stopping: every worker told, the drain timeout, and the exit once none is left.

use super::*;

impl Supervisor {
    pub(super) fn stop(&mut self, signal: StopSignal, now: Instant, out: &mut Vec<Action>) {
        if self.is_stopping() {
            return;
        }
        let (name, to_workers) = match signal {
            StopSignal::Term => ("TERM", self.settings.signal_on_term),
            StopSignal::Int => ("INT", Signal::TERM),
            StopSignal::Quit => ("QUIT", self.settings.signal_on_term),
        };
        self.stage = Stage::Stopping {
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
    pub(super) fn give_up_pending_spawn(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Stage::Stopping {
            since, candidate, ..
        } = &mut self.stage
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

    pub(super) fn finish_stop(&mut self, out: &mut Vec<Action>) {
        let Stage::Stopping { candidate, .. } = &self.stage else {
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
}
