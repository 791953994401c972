//! Reports, as JSON lines on stdout, what `gracedown::listener` makes of the
//! sockets this process inherited: one line for the environment, then one
//! per socket with its kind and flags after adoption, or the error.
//!
//! With `--hold` it first prints the socket-passing environment as one JSON
//! line (`{"env": ...}`), and after its report stays alive until a signal
//! ends it: a worker for superdaemon conformance tests.
//!
//! Run with: `SERVER_STARTER_PORT=8080=3 fd-probe` (under a superdaemon).
#![allow(unsafe_code)] // One `fcntl(F_GETFD)` on a raw number; see SAFETY.

use std::os::fd::AsFd;

use gracedown::listener::{Listener, Listeners};
use serde_json::json;

/// Variables a superdaemon sets or passes through, printed by `--hold`.
const ENV_KEYS: [&str; 7] = [
    "SERVER_STARTER_PORT",
    "SERVER_STARTER_GENERATION",
    "ENVDIR",
    "ENABLE_AUTO_RESTART",
    "KILL_OLD_DELAY",
    "AUTO_RESTART_INTERVAL",
    "NOTIFY_SOCKET",
];

fn main() -> std::process::ExitCode {
    let hold = std::env::args().any(|a| a == "--hold");
    if hold {
        let env: serde_json::Map<String, serde_json::Value> = ENV_KEYS
            .iter()
            .filter_map(|k| Some((k.to_string(), json!(std::env::var(k).ok()?))))
            .collect();
        let extra: Vec<String> = std::env::args().skip(1).filter(|a| a != "--hold").collect();
        println!(
            "{}",
            json!({ "env": env, "pid": std::process::id(), "args": extra })
        );
    }
    let mut listeners = match Listeners::from_env() {
        Ok(listeners) => listeners,
        Err(e) => {
            println!("{}", json!({ "env_error": e.to_string() }));
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        json!({ "source": format!("{:?}", listeners.source()), "generation": listeners.generation() })
    );
    let specs: Vec<_> = listeners.remaining().cloned().collect();
    let mut kept = Vec::new();
    let mut taken_keys = Vec::new();
    for spec in specs {
        let key = spec.key.to_string();
        let cloexec_before = cloexec_of_number(spec.fd);
        let line = match listeners.take(&key) {
            Ok(Some(listener)) => {
                let line = json!({
                    "key": key,
                    "fd": spec.fd,
                    "kind": match &listener { Listener::Tcp(_) => "tcp", Listener::Unix(_) => "unix" },
                    "addr": listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                    "cloexec_before": cloexec_before,
                    "cloexec": rustix::io::fcntl_getfd(listener.as_fd())
                        .map(|f| f.contains(rustix::io::FdFlags::CLOEXEC)).ok(),
                    "nonblocking": rustix::fs::fcntl_getfl(listener.as_fd())
                        .map(|f| f.contains(rustix::fs::OFlags::NONBLOCK)).ok(),
                });
                kept.push(listener);
                taken_keys.push(key);
                line
            }
            Ok(None) => json!({ "key": key, "fd": spec.fd, "error": "not found" }),
            Err(e) => json!({ "key": key, "fd": spec.fd, "error": e.to_string() }),
        };
        println!("{line}");
    }
    // A second parse of the environment must not hand out a taken descriptor again.
    if let Some(key) = taken_keys.first() {
        let retake = Listeners::from_env().and_then(|mut again| again.take(key));
        let outcome = match retake {
            Ok(_) => "taken twice".to_owned(),
            Err(e) => e.to_string(),
        };
        println!("{}", json!({ "retake": outcome }));
    }
    if hold {
        // Keep the sockets and stay alive until a signal's default action ends us.
        loop {
            std::thread::park();
        }
    }
    drop(kept);
    std::process::ExitCode::SUCCESS
}

/// `Some(true)` when the raw number is open with close-on-exec set.
fn cloexec_of_number(fd: i32) -> Option<bool> {
    // SAFETY: `fcntl(F_GETFD)` accepts any integer and touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    (flags >= 0).then_some(flags & libc::FD_CLOEXEC != 0)
}
