//! The set of inherited sockets, each handed out at most once.

use super::fd::{self, Kind};
use super::socket::{ListenAddr, Listener};
use crate::error::Error;
use crate::protocol::{self, Inherited, ListenSpec, Source};

/// The sockets a superdaemon passed to this process.
///
/// Build it once, early in `main` (see the caveat in the crate docs), then
/// take the listeners you need. A socket that is never taken stays open and
/// untouched.
///
/// # Examples
///
/// ```no_run
/// use gracedown_sockets::listener::Listeners;
///
/// let mut inherited = Listeners::from_env()?;
/// // Serve every inherited socket, or bind 127.0.0.1:8080 when started by hand.
/// let listeners = inherited.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Listeners {
    source: Source,
    /// `None` once taken.
    specs: Vec<Option<ListenSpec>>,
}

impl Listeners {
    /// Reads the process environment (`SERVER_STARTER_PORT`, `LISTEN_FDS`, ...).
    ///
    /// Variables whose name or value is not UTF-8 are ignored. The
    /// environment is only read, never changed.
    ///
    /// # Errors
    ///
    /// A malformed variable (see [`protocol::parse_env`]).
    pub fn from_env() -> Result<Self, Error> {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::from_vars(vars, std::process::id())
    }

    /// Like [`Listeners::from_env`], over injected variables and pid.
    ///
    /// # Errors
    ///
    /// A malformed variable (see [`protocol::parse_env`]).
    pub fn from_vars<I, K, V>(vars: I, pid: u32) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let Inherited { source, specs } = protocol::parse_env(vars, pid)?;
        Ok(Self {
            source,
            specs: specs.into_iter().map(Some).collect(),
        })
    }

    /// Which protocol passed the sockets, if any.
    pub fn source(&self) -> Source {
        self.source
    }

    /// `SERVER_STARTER_GENERATION`, when under Server::Starter and set.
    pub fn generation(&self) -> Option<u64> {
        match self.source {
            Source::ServerStarter { generation } => generation,
            _ => None,
        }
    }

    /// The sockets not taken yet.
    pub fn remaining(&self) -> impl Iterator<Item = &ListenSpec> {
        self.specs.iter().flatten()
    }

    /// Takes the socket whose key is `key`, written as in the environment
    /// (`8080`, `127.0.0.1:8080`, `[::1]:8080`, `/run/app.sock`, a systemd name).
    ///
    /// # Errors
    ///
    /// The socket exists but is unusable (not open, not a listening stream
    /// socket, of another family than its key claims, taken before).
    pub fn take(&mut self, key: &str) -> Result<Option<Listener>, Error> {
        self.take_first(|spec| Ok(spec.key.to_string() == key))
    }

    /// Takes the first TCP socket listening on `port`, whatever its host.
    ///
    /// # Errors
    ///
    /// As [`Listeners::take`].
    pub fn take_port(&mut self, port: u16) -> Result<Option<Listener>, Error> {
        self.take_first(|spec| match spec.key.port() {
            Some(key_port) => Ok(key_port == port),
            None if spec.key.is_unix() => Ok(false),
            None => Ok(matches!(fd::inspect(spec)?, Kind::Tcp(addr) if addr.port() == port)),
        })
    }

    /// Takes every remaining socket, in the order the environment lists them.
    ///
    /// # Errors
    ///
    /// The first unusable socket; the ones before it are taken and closed.
    pub fn take_all(&mut self) -> Result<Vec<(ListenSpec, Listener)>, Error> {
        let mut taken = Vec::new();
        for slot in &mut self.specs {
            if let Some(spec) = slot.take() {
                let listener = fd::adopt(&spec)?;
                taken.push((spec, listener));
            }
        }
        Ok(taken)
    }

    /// Under a superdaemon, takes every socket; otherwise binds `fallback`.
    ///
    /// # Errors
    ///
    /// An unusable inherited socket, [`Error::NoListeners`] when a superdaemon
    /// passed none, or [`Error::Bind`] for a fallback address.
    pub fn take_all_or_bind(&mut self, fallback: &[ListenAddr]) -> Result<Vec<Listener>, Error> {
        if self.source == Source::None {
            if fallback.is_empty() {
                return Err(Error::NoListeners {
                    reason: "no superdaemon and no address to bind",
                });
            }
            return fallback.iter().map(Listener::bind).collect();
        }
        let taken = self.take_all()?;
        if taken.is_empty() {
            return Err(Error::NoListeners {
                reason: "the superdaemon passed none (`SERVER_STARTER_PORT` or `LISTEN_FDS` is empty)",
            });
        }
        Ok(taken.into_iter().map(|(_, listener)| listener).collect())
    }

    fn take_first(
        &mut self,
        mut matches: impl FnMut(&ListenSpec) -> Result<bool, Error>,
    ) -> Result<Option<Listener>, Error> {
        for slot in &mut self.specs {
            let Some(spec) = slot.as_ref() else { continue };
            if matches(spec)? {
                let listener = fd::adopt(spec)?;
                *slot = None;
                return Ok(Some(listener));
            }
        }
        Ok(None)
    }
}
