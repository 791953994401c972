//! Readiness notification with the sd_notify datagram protocol
//! (`sd_notify(3)`): `READY=1` once every listener is served, `WATCHDOG=1`
//! at half the interval the supervisor asked for in `WATCHDOG_USEC` (so that
//! a hung worker is replaced), `STOPPING=1` when the drain starts.
//!
//! Both systemd (`Type=notify`) and gracedown's `start_server` listen on the
//! socket named by `NOTIFY_SOCKET`; a path starting with `@` is in the
//! abstract namespace.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use tracing::debug;

/// `NOTIFY_SOCKET`: where to send readiness datagrams.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// `WATCHDOG_USEC`: the supervisor wants `WATCHDOG=1` at least this often.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";

/// `WATCHDOG_PID`: the process `WATCHDOG_USEC` is meant for, when set.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Where readiness goes; [`Notifier::none`] when nobody listens.
///
/// # Examples
///
/// ```
/// use gracedown_sockets::notify::Notifier;
///
/// let notifier = Notifier::from_vars([("NOTIFY_SOCKET", "@supervisor")]);
/// assert!(notifier.is_enabled());
/// assert!(!Notifier::from_vars([("PATH", "/bin")]).is_enabled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<PathBuf>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Sends nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the
    /// process environment (without changing it).
    pub fn from_env() -> Self {
        let vars = [NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID]
            .into_iter()
            .filter_map(|k| Some((k, std::env::var(k).ok()?)));
        Self::from_vars_for(vars, std::process::id())
    }

    /// Reads the variables from injected ones, for this process.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::from_vars_for(vars, std::process::id())
    }

    fn from_vars_for<I, K, V>(vars: I, pid: u32) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let (mut target, mut usec, mut for_pid) = (None, None, None);
        for (k, v) in vars {
            let v = v.as_ref();
            match k.as_ref() {
                NOTIFY_SOCKET if !v.is_empty() => target = Some(PathBuf::from(v)),
                WATCHDOG_USEC => usec = v.parse::<u64>().ok().filter(|n| *n > 0),
                WATCHDOG_PID => for_pid = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        // sd_watchdog_enabled(3): a WATCHDOG_PID naming another process means
        // the watchdog is not ours.
        let watchdog = usec
            .filter(|_| for_pid.is_none_or(|p| p == pid))
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// The watchdog interval the supervisor asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.target.is_some())
    }

    /// Sends `WATCHDOG=1` every half watchdog interval from a task on the
    /// current runtime, so that a runtime that stops making progress stops
    /// the pings; `None` when no watchdog was asked for.
    pub fn spawn_watchdog(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.watchdog()? / 2;
        let notifier = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                notifier.send("WATCHDOG=1");
            }
        }))
    }

    /// Whether a notification socket is configured.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (e.g. `READY=1`). Failures are logged at debug level
    /// and otherwise ignored: readiness is advisory, serving goes on.
    pub fn send(&self, state: &str) {
        let Some(target) = &self.target else { return };
        if let Err(e) = send_to(target, state) {
            debug!(socket = %target.display(), error = %e, state, "sd_notify failed");
        }
    }
}

fn send_to(target: &std::path::Path, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let text = target.as_os_str().as_encoded_bytes();
    let addr = match text.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(target)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_ours_only_without_another_pid() {
        let vars = |pid: &'static str| {
            [
                (NOTIFY_SOCKET, "@s"),
                (WATCHDOG_USEC, "2000000"),
                (WATCHDOG_PID, pid),
            ]
        };
        let mine = Notifier::from_vars_for(vars("42"), 42);
        assert_eq!(mine.watchdog(), Some(Duration::from_secs(2)));
        assert_eq!(Notifier::from_vars_for(vars("43"), 42).watchdog(), None);
        let any = Notifier::from_vars_for([(NOTIFY_SOCKET, "@s"), (WATCHDOG_USEC, "500")], 1);
        assert_eq!(any.watchdog(), Some(Duration::from_micros(500)));
        let bad = Notifier::from_vars_for([(NOTIFY_SOCKET, "@s"), (WATCHDOG_USEC, "soon")], 1);
        assert_eq!(bad.watchdog(), None);
    }

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("gd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::from_vars([(NOTIFY_SOCKET, path.to_str().expect("utf-8"))]);
        notifier.send("READY=1");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        let name = format!("gd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let receiver = UnixDatagram::bind_addr(&addr).expect("bind");
        Notifier::from_vars([(NOTIFY_SOCKET, format!("@{name}"))]).send("STOPPING=1");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
