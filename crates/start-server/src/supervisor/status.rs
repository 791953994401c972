//! What the supervisor reports: its workers and the status file.

use super::perl::{join, sort_as_strings};
use super::*;

impl Supervisor {
    pub(super) fn forget(&mut self, pid: u32) {
        if self.current.is_some_and(|(p, _)| p == pid) {
            self.current = None;
        }
        self.old.remove(&pid);
        if self.candidate().is_some_and(|c| c.pid == Some(pid)) {
            self.drop_candidate();
        }
    }

    /// Every live worker, current, old and starting, sorted as strings (as Perl's `sort keys`).
    pub(super) fn all_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.old.keys().copied().collect();
        pids.extend(self.current.map(|(p, _)| p));
        pids.extend(self.candidate().and_then(|c| c.pid));
        sort_as_strings(pids)
    }

    pub(super) fn sorted_old(&self) -> Vec<u32> {
        sort_as_strings(self.old.keys().copied().collect())
    }

    pub(super) fn old_list(&self) -> String {
        join(&self.sorted_old())
    }

    /// The status file: `GEN:PID` for the current and every old worker, sorted by GEN as strings.
    pub(super) fn status(&self) -> Action {
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
