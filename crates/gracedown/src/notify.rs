//! Readiness notification with the sd_notify datagram protocol
//! (`sd_notify(3)`): `READY=1` once every listener is served, `STOPPING=1`
//! when the drain starts.
//!
//! Both systemd (`Type=notify`) and gracedown's `start_server` listen on the
//! socket named by `NOTIFY_SOCKET`; a path starting with `@` is in the
//! abstract namespace.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

use tracing::debug;

/// `NOTIFY_SOCKET`: where to send readiness datagrams.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where readiness goes; [`Notifier::none`] when nobody listens.
///
/// # Examples
///
/// ```
/// use gracedown::notify::Notifier;
///
/// let notifier = Notifier::from_vars([("NOTIFY_SOCKET", "@supervisor")]);
/// assert!(notifier.is_enabled());
/// assert!(!Notifier::from_vars([("PATH", "/bin")]).is_enabled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<PathBuf>,
}

impl Notifier {
    /// Sends nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads `NOTIFY_SOCKET` from the process environment (without changing it).
    pub fn from_env() -> Self {
        Self {
            target: std::env::var_os(NOTIFY_SOCKET)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Reads `NOTIFY_SOCKET` from injected variables.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let target = vars
            .into_iter()
            .find(|(k, v)| k.as_ref() == NOTIFY_SOCKET && !v.as_ref().is_empty())
            .map(|(_, v)| PathBuf::from(v.as_ref()));
        Self { target }
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
