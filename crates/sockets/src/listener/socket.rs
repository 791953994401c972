//! A listening socket (TCP or unix) and the address form used to bind one.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// A listening socket, inherited, bound, or your own (`From<std::net::TcpListener>`);
/// the server makes it non-blocking.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener (IPv4 or IPv6).
    Tcp(std::net::TcpListener),
    /// A unix stream listener.
    Unix(std::os::unix::net::UnixListener),
}

/// The sockets [`Listener::bind`] made in this process, by inode (unique
/// among open sockets).
fn bound_here() -> std::sync::MutexGuard<'static, Vec<u64>> {
    static BOUND_HERE: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
    BOUND_HERE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn inode(fd: BorrowedFd<'_>) -> Option<u64> {
    rustix::fs::fstat(fd).ok().map(|stat| stat.st_ino)
}

/// The accept queue asked for; Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 65_535;

impl Listener {
    /// Binds `addr`: the fallback when no superdaemon passed sockets.
    ///
    /// TCP listeners get `SO_REUSEADDR` (the standard library sets it), unix
    /// listeners refuse to replace an existing file. The accept queue is as
    /// long as the system allows (`net.core.somaxconn`, as Go and
    /// Server::Starter ask for), not the standard library's 128: a burst of
    /// clients, such as every connection of a restarted peer reconnecting at
    /// once, would otherwise see SYNs dropped and retried a second later.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] naming the address, e.g. when it is in use.
    pub fn bind(addr: &ListenAddr) -> Result<Self, Error> {
        let bind_error = |source| Error::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = match addr {
            ListenAddr::Tcp(sa) => Self::Tcp(std::net::TcpListener::bind(sa).map_err(bind_error)?),
            ListenAddr::Unix(path) => {
                Self::Unix(std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?)
            }
        };
        // Listening again only sets the queue's length; the kernel caps it.
        rustix::net::listen(&listener, LISTEN_BACKLOG).map_err(|e| bind_error(e.into()))?;
        listener.set_nonblocking().map_err(bind_error)?;
        if let Some(inode) = inode(listener.as_fd()) {
            bound_here().push(inode);
        }
        Ok(listener)
    }

    /// Whether [`Listener::bind`] made this socket in this process, rather
    /// than a superdaemon or systemd passing it: then, unless the program
    /// gave it away itself, this process holds its only copy, and closing it
    /// resets every client still in its accept queue (a shared socket's
    /// queue is the next holder's). A listener of your own
    /// (`From<std::net::TcpListener>`) counts as not bound here.
    pub fn is_bound_here(&self) -> bool {
        inode(self.as_fd()).is_some_and(|inode| bound_here().contains(&inode))
    }

    /// The address the socket is bound to.
    ///
    /// # Errors
    ///
    /// The `getsockname` error.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Self::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr.as_pathname().map(PathBuf::from).unwrap_or_default();
                Ok(ListenAddr::Unix(path))
            }
        }
    }

    /// Puts the listener in non-blocking mode, as an async runtime needs it.
    ///
    /// # Errors
    ///
    /// When the kernel refuses the change.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.set_nonblocking(true),
            Self::Unix(l) => l.set_nonblocking(true),
        }
    }
}

/// A listener of your own; gracedown's `Server` makes it non-blocking.
///
/// ```
/// use gracedown_sockets::listener::Listener;
///
/// let std = std::net::TcpListener::bind("127.0.0.1:0")?; // blocking, as std makes it
/// let listener = Listener::from(std);
/// # Ok::<(), std::io::Error>(())
/// ```
impl From<std::net::TcpListener> for Listener {
    fn from(listener: std::net::TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

/// A unix listener of your own; gracedown's `Server` makes it non-blocking.
impl From<std::os::unix::net::UnixListener> for Listener {
    fn from(listener: std::os::unix::net::UnixListener) -> Self {
        Self::Unix(listener)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(l) => l.as_fd(),
            Self::Unix(l) => l.as_fd(),
        }
    }
}

/// Where to listen: `HOST:PORT`, `[V6]:PORT`, or a unix socket path.
///
/// # Examples
///
/// ```
/// use gracedown_sockets::listener::ListenAddr;
///
/// let tcp: ListenAddr = "127.0.0.1:8080".parse()?;
/// let unix: ListenAddr = "/run/app.sock".parse()?;
/// assert_eq!(tcp.to_string(), "127.0.0.1:8080");
/// assert_eq!(unix.to_string(), "unix:/run/app.sock");
/// # Ok::<(), gracedown_sockets::listener::ParseListenAddrError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listen address that is neither `HOST:PORT`, `[V6]:PORT` nor a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an address to listen on: {}expected `IP:PORT`, `[IPV6]:PORT`, `/path` or `unix:PATH`",
    self.why()
)]
pub struct ParseListenAddrError {
    text: String,
}

impl ParseListenAddrError {
    /// What is wrong with an address that is nearly right, as the start of
    /// the message.
    fn why(&self) -> String {
        let Some((host, port)) = self.text.rsplit_once(':') else {
            return match self.text.parse::<std::net::IpAddr>() {
                Ok(_) => "it has no port; ".to_owned(),
                Err(_) => String::new(),
            };
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let numeric = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        match host.parse::<std::net::IpAddr>() {
            Ok(_) if numeric => format!("the port `{port}` is above 65535; "),
            Ok(_) if port.is_empty() => "it has no port; ".to_owned(),
            Ok(_) => format!("the port `{port}` is not a number; "),
            Err(_) if numeric && !host.is_empty() => {
                format!("`{host}` is not an IP address (names are not resolved); ")
            }
            Err(_) => String::new(),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = ParseListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') || s.starts_with("./") {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        s.parse()
            .map(Self::Tcp)
            .map_err(|_| ParseListenAddrError { text: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_socket_bound_here_is_known_as_such() {
        let bound = Listener::bind(&"127.0.0.1:0".parse().expect("addr")).expect("bind");
        assert!(bound.is_bound_here());
        let own = Listener::from(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
        assert!(!own.is_bound_here());
        // A descriptor of the same socket (as a child would inherit it) is the same socket.
        let Listener::Tcp(tcp) = &bound else {
            unreachable!("bound TCP")
        };
        let copy = Listener::from(tcp.try_clone().expect("dup"));
        assert!(copy.is_bound_here());
    }

    #[test]
    fn a_fallback_listener_queues_a_burst_beyond_the_standard_librarys_128() {
        // Nobody accepts: every connection has to fit in the accept queue,
        // and one that does not stays unconnected (its SYN is dropped).
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if somaxconn < 300 {
            // This system allows no longer queue than std's: nothing to tell apart.
            return;
        }
        let listener = Listener::bind(&"127.0.0.1:0".parse().expect("addr")).expect("bind");
        let Ok(ListenAddr::Tcp(addr)) = listener.local_addr() else {
            panic!("a TCP listener")
        };
        let bound = std::time::Duration::from_secs(10);
        let queued: Vec<std::net::TcpStream> = (0..300)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, bound)
                    .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"))
            })
            .collect();
        assert_eq!(queued.len(), 300);
    }

    #[test]
    fn parses_each_shape() {
        assert_eq!(
            "[::1]:80".parse(),
            Ok(ListenAddr::Tcp("[::1]:80".parse().expect("addr")))
        );
        assert_eq!("unix:a.sock".parse(), Ok(ListenAddr::Unix("a.sock".into())));
        assert_eq!("./a.sock".parse(), Ok(ListenAddr::Unix("./a.sock".into())));
    }

    #[test]
    fn rejects_with_the_value_quoted_and_what_is_wrong() {
        let tail = "expected `IP:PORT`, `[IPV6]:PORT`, `/path` or `unix:PATH`";
        for (text, why) in [
            (
                "localhost:80",
                "`localhost` is not an IP address (names are not resolved); ",
            ),
            ("127.0.0.1:99999", "the port `99999` is above 65535; "),
            ("[::1]:70000", "the port `70000` is above 65535; "),
            ("127.0.0.1", "it has no port; "),
            ("127.0.0.1:", "it has no port; "),
            ("127.0.0.1:http", "the port `http` is not a number; "),
            ("nonsense", ""),
            ("", ""),
        ] {
            let err = text.parse::<ListenAddr>().expect_err(text);
            assert_eq!(
                err.to_string(),
                format!("`{text}` is not an address to listen on: {why}{tail}")
            );
        }
    }
}
