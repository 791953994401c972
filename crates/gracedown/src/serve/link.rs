//! The worker's link to gracedown's `start_server` (`../shared/DESIGN.md`
//! §7): TLS session-ticket keys shared by every generation, and connection
//! handoff.
//!
//! Under gracedown's `start_server` a worker inherits one end of a handoff
//! channel (`GRACEDOWN_HANDOFF_FD`). The ticket keys wait in it before the
//! worker starts, and come again at each rotation. It says `R` once it serves, so the
//! superdaemon may give it connections; when it drains it asks whether a
//! newer generation takes connections (`Q`), and if one does, each plain
//! HTTP/1.1 connection that reaches a message boundary is handed on (`H`)
//! instead of closed. The connection task keeps its descriptor until the
//! superdaemon answers (`A`): forwarded, it drops it without a FIN; refused,
//! it closes as it would have without a handoff; no answer in time, it
//! drops it (the superdaemon may have forwarded it, so no FIN either).

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use gracedown_sockets::handoff::{Channel, MAX_PREFIX, Message};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

#[cfg(feature = "tls")]
use crate::tls::TicketKeys;

/// How long the superdaemon may take to answer whether a generation takes
/// connections; no answer means no handoff.
const QUERY_BOUND: Duration = Duration::from_millis(500);

/// How long the superdaemon may take to answer a handoff.
const ACK_BOUND: Duration = Duration::from_secs(2);

/// What became of a handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The next generation has the connection: drop the descriptor, no FIN.
    Forwarded,
    /// Nobody took it: close it as without a handoff.
    Refused,
    /// No answer: the superdaemon may have forwarded it, so drop the
    /// descriptor without a FIN.
    Unknown,
}

/// A worker's link to its superdaemon.
#[derive(Debug)]
pub(crate) struct Link {
    channel: Channel,
    waiting: Mutex<Waiting>,
    next_id: AtomicU64,
    /// The shared ticket keys, when the superdaemon sent them.
    #[cfg(feature = "tls")]
    keys: Option<TicketKeys>,
    /// This worker takes part in connection handoff.
    handoff: bool,
}

#[derive(Debug, Default)]
struct Waiting {
    /// The answer to `Q`.
    query: Option<oneshot::Sender<bool>>,
    /// The answers to `H`, by id.
    acks: HashMap<u64, oneshot::Sender<bool>>,
    /// The channel ended: nothing will be answered any more.
    closed: bool,
}

impl Link {
    /// The channel named by the environment, once per process, with the
    /// ticket keys already in it; `None` when not under gracedown's
    /// start_server (or when it cannot be used, which is logged: connections
    /// then close when the worker drains). `handoff`: this worker hands its
    /// connections on and takes others'.
    pub(crate) fn from_env(handoff: bool) -> Option<Arc<Self>> {
        let fd = match Channel::take_from_env() {
            Ok(fd) => fd?,
            Err(e) => {
                warn!(error = %e, "the handoff channel cannot be used; connections will close when the worker drains");
                return None;
            }
        };
        match Channel::new(fd) {
            Ok(channel) => {
                // The superdaemon wrote the keys before this process existed.
                #[cfg(feature = "tls")]
                let mut keys = None;
                while let Ok(Some(message)) = channel.try_recv() {
                    #[cfg(feature = "tls")]
                    if let Message::TicketKeys { keys: bytes } = message {
                        keys = TicketKeys::from_bytes(&bytes);
                    }
                    #[cfg(not(feature = "tls"))]
                    let _ = message;
                }
                Some(Arc::new(Self {
                    channel,
                    waiting: Mutex::default(),
                    next_id: AtomicU64::new(1),
                    #[cfg(feature = "tls")]
                    keys,
                    handoff,
                }))
            }
            Err(e) => {
                warn!(error = %e, "the handoff channel cannot be registered; connections will close when the worker drains");
                None
            }
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the channel until it ends: answers go to their waiters,
    /// handed-in connections to `accept`. Abort the task to stop.
    pub(crate) fn start(
        self: &Arc<Self>,
        accept: impl Fn(OwnedFd, Bytes, bool) + Send + 'static,
    ) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match this.channel.recv().await {
                    Ok(Some(Message::Connection {
                        socket,
                        prefix,
                        fresh,
                    })) => accept(socket, prefix, fresh),
                    #[cfg(feature = "tls")]
                    Ok(Some(Message::TicketKeys { keys })) => {
                        if let Some(current) = &this.keys {
                            current.replace(&keys);
                            debug!("TLS session-ticket keys rotated");
                        }
                    }
                    Ok(Some(Message::Answer { available })) => {
                        if let Some(tx) = this.waiting().query.take() {
                            let _ = tx.send(available);
                        }
                    }
                    Ok(Some(Message::Ack { id, forwarded })) => {
                        if let Some(tx) = this.waiting().acks.remove(&id) {
                            let _ = tx.send(forwarded);
                        }
                    }
                    Ok(Some(other)) => {
                        debug!(message = ?other, "unexpected handoff message, ignored");
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        debug!(error = %e, "malformed handoff message, ignored");
                    }
                    Ok(None) | Err(_) => {
                        // Every waiter gets "no answer".
                        let mut waiting = this.waiting();
                        waiting.closed = true;
                        waiting.query = None;
                        waiting.acks.clear();
                        return;
                    }
                }
            }
        })
    }

    /// The ticket keys every generation shares, if the superdaemon sent them.
    #[cfg(feature = "tls")]
    pub(crate) fn ticket_keys(&self) -> Option<&TicketKeys> {
        self.keys.as_ref()
    }

    /// Whether this worker hands connections on and takes others'.
    pub(crate) fn hands_off(&self) -> bool {
        self.handoff
    }

    /// Tells the superdaemon that this generation takes connections.
    pub(crate) async fn announce(&self) {
        if !self.handoff {
            return;
        }
        let sent = tokio::time::timeout(QUERY_BOUND, self.channel.send(&Message::Receiving)).await;
        if !matches!(sent, Ok(Ok(()))) {
            debug!("the superdaemon did not take the handoff announcement");
        }
    }

    /// Whether a newer generation takes this one's connections now.
    pub(crate) async fn available(&self) -> bool {
        if !self.handoff {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting();
            if waiting.closed {
                return false;
            }
            waiting.query = Some(tx);
        }
        let asked = async {
            self.channel.send(&Message::Query).await.ok()?;
            rx.await.ok()
        };
        matches!(
            tokio::time::timeout(QUERY_BOUND, asked).await,
            Ok(Some(true))
        )
    }

    /// Hands `socket` on, with `prefix` (bytes already read from it) in
    /// front (`fresh`: it has sent no request yet); the caller keeps the
    /// descriptor until this returns.
    pub(crate) async fn hand_off(
        &self,
        socket: BorrowedFd<'_>,
        prefix: &[u8],
        fresh: bool,
    ) -> Outcome {
        if prefix.len() > MAX_PREFIX {
            return Outcome::Refused;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting();
            if waiting.closed {
                return Outcome::Refused;
            }
            waiting.acks.insert(id, tx);
        }
        let sent =
            tokio::time::timeout(ACK_BOUND, self.channel.hand_off(id, socket, prefix, fresh)).await;
        if !matches!(sent, Ok(Ok(()))) {
            // Never sent (`sendmsg` is all or nothing): this process holds
            // the only descriptor.
            debug!("handoff not sent");
            self.waiting().acks.remove(&id);
            return Outcome::Refused;
        }
        match tokio::time::timeout(ACK_BOUND, rx).await {
            Ok(Ok(true)) => Outcome::Forwarded,
            Ok(Ok(false)) => Outcome::Refused,
            Ok(Err(_)) | Err(_) => {
                self.waiting().acks.remove(&id);
                Outcome::Unknown
            }
        }
    }
}
