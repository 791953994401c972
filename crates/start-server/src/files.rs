//! The status file (`GEN:PID` lines, written atomically) and the pid file
//! (locked for start_server's life, which `--stop` waits on).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Writes the status file as Perl does: to `FILE.<pid>`, renamed over `FILE`.
#[derive(Debug)]
pub(crate) struct StatusFile {
    path: PathBuf,
    created: bool,
}

impl StatusFile {
    /// A status file at `path`, not yet written.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            created: false,
        }
    }

    /// Replaces the content atomically.
    ///
    /// # Errors
    ///
    /// When the temporary file cannot be written or renamed.
    pub(crate) fn write(&mut self, content: &str) -> Result<(), Error> {
        let tmp = PathBuf::from(format!("{}.{}", self.path.display(), std::process::id()));
        let fail = |action, source| Error::File {
            action,
            path: tmp.clone(),
            source,
        };
        std::fs::write(&tmp, content).map_err(|e| fail("write", e))?;
        self.created = true;
        std::fs::rename(&tmp, &self.path).map_err(|e| fail("rename", e))
    }

    /// Removes the file if this process created it.
    pub(crate) fn remove(&self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid file, open and locked (`flock`) until dropped.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    /// Truncates `path`, locks it, and writes `PID\n`.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, locked or written.
    pub(crate) fn create(path: &Path) -> Result<Self, Error> {
        let fail = |action, source| Error::File {
            action,
            path: path.to_owned(),
            source,
        };
        let mut file = File::create(path).map_err(|e| fail("open the pid file", e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| fail("lock the pid file", e.into()))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| fail("write the pid file", e))?;
        Ok(Self {
            path: path.to_owned(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Unlinked before the lock is released (when the file closes), as Perl does.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The generations listed in a status file, ascending.
pub(crate) fn generations(content: &str) -> Vec<u64> {
    let mut gens: Vec<u64> = content
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(g, _)| g.parse().ok())
        .collect();
    gens.sort_unstable();
    gens.dedup();
    gens
}
