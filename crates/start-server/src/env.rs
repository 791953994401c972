//! The workers' environment: start_server's own at start-up, the control
//! variables set by options, and the envdir, re-read before every worker.
//!
//! As in Perl, a file removed from the envdir does not unset its variable:
//! it falls back to the start-up value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::supervisor::Dynamic;

/// The base environment plus the envdir.
#[derive(Debug, Clone)]
pub(crate) struct Environment {
    base: BTreeMap<OsString, OsString>,
}

impl Environment {
    /// start_server's environment, with the options' control variables set
    /// (`ENVDIR`, `ENABLE_AUTO_RESTART`, `KILL_OLD_DELAY`, `AUTO_RESTART_INTERVAL`)
    /// and the envdir applied once: the start-up values.
    pub(crate) fn new(
        inherited: impl IntoIterator<Item = (OsString, OsString)>,
        control: &[(String, String)],
    ) -> Self {
        let mut base: BTreeMap<OsString, OsString> = inherited.into_iter().collect();
        for (k, v) in control {
            base.insert(k.into(), v.into());
        }
        let mut env = Self { base };
        env.base = env.current();
        env
    }

    fn envdir(&self) -> Option<PathBuf> {
        self.base.get(&OsString::from("ENVDIR")).map(PathBuf::from)
    }

    /// The environment now: the base with the envdir's files on top.
    pub(crate) fn current(&self) -> BTreeMap<OsString, OsString> {
        let mut env = self.base.clone();
        if let Some(dir) = self.envdir() {
            env.extend(read_envdir(&dir));
        }
        env
    }

    /// The generation whose child stops itself before exec, for fault
    /// injection in tests (`GRACEDOWN_STOP_BEFORE_EXEC=N`); read at start-up.
    pub(crate) fn stop_before_exec(&self) -> Option<u64> {
        self.base
            .get(&OsString::from(crate::spawn::STOP_BEFORE_EXEC))?
            .to_str()?
            .parse()
            .ok()
    }

    /// The variables start_server itself reads at each wake-up.
    pub(crate) fn dynamic(&self) -> Dynamic {
        let env = self.current();
        let get = |k: &str| {
            env.get(&OsString::from(k))
                .and_then(|v| v.to_str())
                .map(str::to_owned)
        };
        let secs = |v: Option<String>| v.and_then(|v| crate::config::seconds("env", &v).ok());
        let auto = get("ENABLE_AUTO_RESTART").is_some_and(|v| !v.is_empty() && v != "0");
        let kill_old_delay = secs(get("KILL_OLD_DELAY")).or(auto.then_some(Duration::from_secs(5)));
        let auto_restart = auto.then(|| {
            secs(get("AUTO_RESTART_INTERVAL"))
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(360))
        });
        Dynamic {
            kill_old_delay,
            auto_restart,
        }
    }
}

/// Each non-dot file in `dir` as `NAME = first line`; unreadable files are skipped.
fn read_envdir(dir: &Path) -> Vec<(OsString, OsString)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut vars = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let Ok(text) = std::fs::read(entry.path()) else {
            continue;
        };
        let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        vars.push((
            name,
            OsString::from(String::from_utf8_lossy(line).into_owned()),
        ));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envdir_overrides_and_removal_falls_back_to_start_up_value() {
        let dir = std::env::temp_dir().join(format!("ss-envdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("FOO"), "foo1\nignored\n").expect("write");
        let env = Environment::new(
            [("FOO".into(), "inherited".into())],
            &[("ENVDIR".to_owned(), dir.display().to_string())],
        );
        let get = |env: &Environment| env.current().get(&OsString::from("FOO")).cloned();
        assert_eq!(get(&env), Some("foo1".into()));
        std::fs::write(dir.join("FOO"), "foo2\n").expect("write");
        assert_eq!(get(&env), Some("foo2".into()));
        std::fs::remove_file(dir.join("FOO")).expect("rm");
        assert_eq!(
            get(&env),
            Some("foo1".into()),
            "falls back to the start-up value"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn control_variables_give_the_dynamic_settings() {
        let env = Environment::new([], &[("ENABLE_AUTO_RESTART".into(), "1".into())]);
        assert_eq!(
            env.dynamic(),
            Dynamic {
                kill_old_delay: Some(Duration::from_secs(5)),
                auto_restart: Some(Duration::from_secs(360))
            }
        );
        let env = Environment::new([("KILL_OLD_DELAY".into(), "2".into())], &[]);
        assert_eq!(
            env.dynamic(),
            Dynamic {
                kill_old_delay: Some(Duration::from_secs(2)),
                auto_restart: None
            }
        );
    }
}
