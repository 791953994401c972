//! Retiring the old generations once the new one is trusted
//! (`KILL_OLD_DELAY`), and only while it is alive.

use super::*;

impl Supervisor {
    pub(super) fn kill_old(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.stage = Stage::Steady;
        out.push(Action::Log("killing old workers".into()));
        for pid in self.sorted_old() {
            out.push(Action::Signal {
                pid,
                signal: self.settings.signal_on_hup,
            });
        }
        self.after_restart(now, out);
    }

    pub(super) fn after_restart(&mut self, now: Instant, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.pending_restart) {
            out.push(Action::Log("received HUP, spawning a new worker".into()));
            self.restart(now, out);
        }
    }
}
