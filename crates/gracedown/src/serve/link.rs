//! The worker's link to gracedown's `start_server` (`docs/design/handoff.md`):
//! TLS session-ticket keys shared by every generation, and connection
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
//! it is served here as in a drain without a handoff (its next response says
//! `Connection: close`); no answer in time, it drops it (the superdaemon may
//! have forwarded it, so no FIN either).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use gracedown_sockets::handoff::{
    Channel, Clocks, MAX_HTTP2_STATE, MAX_PREFIX, MAX_SEALED, MAX_SESSION, Message, Moving,
    MovingTls, fits,
};
use tokio::sync::{mpsc, oneshot};
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
#[derive(Debug)]
pub(crate) enum HandoffOutcome {
    /// The next generation has the connection; this process's descriptor
    /// is closed (no FIN: the socket lives on there).
    Forwarded,
    /// Nobody took it: here it is back with the bytes already read from it,
    /// to be served here as without a handoff.
    Refused(Moving),
    /// No answer in time: the superdaemon may have forwarded it, so this
    /// process's descriptor is only closed, never shut down.
    Unknown,
}

/// A handoff waiting for the batch it goes in.
#[derive(Debug)]
struct Request {
    id: u64,
    moving: Moving,
    reply: oneshot::Sender<HandoffOutcome>,
}

/// A worker's link to its superdaemon.
#[derive(Debug)]
pub(crate) struct Link {
    channel: Channel,
    waiting: Mutex<Waiting>,
    next_id: AtomicU64,
    /// Handoffs for the sending task, which batches them.
    requests: mpsc::UnboundedSender<Request>,
    queued: Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
    /// The shared ticket keys, when the superdaemon sent them.
    #[cfg(feature = "tls")]
    keys: Option<TicketKeys>,
    /// This worker takes part in connection handoff.
    handoff: bool,
    /// The superdaemon speaks version 2: connections travel with their
    /// clocks, so their bounds go on across generations.
    clocks: bool,
    /// The superdaemon speaks version 3: TLS connections travel with their
    /// sessions (and this worker continues them).
    tls: bool,
    /// The superdaemon speaks version 4: HTTP/2 connections travel with
    /// their state (and this worker continues them).
    http2: bool,
}

#[derive(Debug, Default)]
struct Waiting {
    /// The answer to `Q`.
    query: Option<oneshot::Sender<bool>>,
    /// Handoffs sent and not answered yet, by id: the connection (this
    /// process's copy of the descriptor, kept until the answer) and who waits.
    sent: HashMap<u64, (Moving, oneshot::Sender<HandoffOutcome>)>,
    /// Answers that came before their handoff was recorded as sent.
    early: HashMap<u64, bool>,
    /// The channel ended: nothing will be answered any more.
    closed: bool,
}

impl Waiting {
    /// Resolves handoff `id` with the superdaemon's answer.
    fn answer(&mut self, id: u64, forwarded: bool) {
        match self.sent.remove(&id) {
            Some((moving, reply)) => {
                let outcome = if forwarded {
                    drop(moving);
                    HandoffOutcome::Forwarded
                } else {
                    HandoffOutcome::Refused(moving)
                };
                // A waiter that gave up drops the outcome (and so the descriptor).
                let _ = reply.send(outcome);
            }
            None => {
                self.early.insert(id, forwarded);
            }
        }
    }
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
        Self::from_fd(fd, handoff)
    }

    /// [`Link::from_env`] on the channel's descriptor.
    fn from_fd(fd: OwnedFd, handoff: bool) -> Option<Arc<Self>> {
        match Channel::new(fd) {
            Ok(channel) => {
                // The superdaemon wrote the keys and its version before this
                // process existed.
                #[cfg(feature = "tls")]
                let mut keys = None;
                let mut version = 1;
                while let Ok(Some(message)) = channel.try_recv() {
                    match message {
                        #[cfg(feature = "tls")]
                        Message::TicketKeys { keys: bytes } => {
                            keys = TicketKeys::from_bytes(&bytes);
                        }
                        Message::Version { version: v } => version = v,
                        _ => {}
                    }
                }
                let (requests, queued) = mpsc::unbounded_channel();
                Some(Arc::new(Self {
                    channel,
                    waiting: Mutex::default(),
                    next_id: AtomicU64::new(1),
                    requests,
                    queued: Mutex::new(Some(queued)),
                    #[cfg(feature = "tls")]
                    keys,
                    handoff,
                    clocks: speaks_clocks(version),
                    tls: cfg!(feature = "tls") && version >= 3,
                    http2: version >= 4,
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

    /// Reads the channel until it ends (answers go to their waiters,
    /// handed-in connections to `accept`), and sends handoffs in batches.
    /// Abort the tasks to stop.
    pub(crate) fn start(
        self: &Arc<Self>,
        accept: impl Fn(Moving) + Send + 'static,
    ) -> [JoinHandle<()>; 2] {
        let queued = self
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let sender = tokio::spawn(send_handoffs(Arc::clone(self), queued));
        let this = Arc::clone(self);
        let reader = tokio::spawn(async move {
            loop {
                match this.channel.recv().await {
                    Ok(Some(Message::Connections(conns))) => {
                        for moving in conns {
                            accept(moving);
                        }
                    }
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
                    Ok(Some(Message::Acks(acks))) => {
                        let mut waiting = this.waiting();
                        for (id, forwarded) in acks {
                            waiting.answer(id, forwarded);
                        }
                    }
                    Ok(Some(other)) => {
                        debug!(message = ?other, "unexpected handoff message, ignored");
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        debug!(error = %e, "malformed handoff message, ignored");
                    }
                    Ok(None) | Err(_) => {
                        // Every waiter gets "no answer"; the descriptors go.
                        let mut waiting = this.waiting();
                        waiting.closed = true;
                        waiting.query = None;
                        for (_, (moving, reply)) in waiting.sent.drain() {
                            drop(moving);
                            let _ = reply.send(HandoffOutcome::Unknown);
                        }
                        return;
                    }
                }
            }
        });
        [reader, sender]
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

    /// Whether TLS connections move too (the superdaemon carries their
    /// sessions): the TLS configuration must then let rustls give them.
    pub(crate) fn moves_tls(&self) -> bool {
        self.handoff && self.tls
    }

    /// Whether HTTP/2 connections move too (the superdaemon carries their
    /// state): they must then advertise a header table of size 0.
    pub(crate) fn moves_http2(&self) -> bool {
        self.handoff && self.http2
    }

    /// Tells the superdaemon that this generation takes connections.
    pub(crate) async fn announce(&self) {
        if !self.handoff {
            return;
        }
        let receiving = Message::Receiving {
            clocks: self.clocks,
            tls: self.tls,
            http2: self.http2,
        };
        let sent = tokio::time::timeout(QUERY_BOUND, self.channel.send(&receiving)).await;
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
    /// front (`fresh`: it has sent no request yet), its clocks when the
    /// superdaemon carries them, its TLS session if it has one, and its
    /// HTTP/2 state if it is an HTTP/2 connection. The descriptor (and the
    /// session) is this link's until the answer; refused, it comes back
    /// with what travelled with it.
    pub(crate) async fn hand_off(
        &self,
        socket: OwnedFd,
        prefix: Bytes,
        fresh: bool,
        clocks: Clocks,
        tls: Option<MovingTls>,
        http2: Option<Bytes>,
    ) -> HandoffOutcome {
        let moving = Moving {
            socket,
            prefix,
            fresh,
            clocks: self.clocks.then_some(clocks),
            tls,
            http2,
        };
        let too_big = moving.prefix.len() > MAX_PREFIX
            || moving
                .tls
                .as_ref()
                .is_some_and(|t| t.session.len() > MAX_SESSION || t.sealed.len() > MAX_SEALED)
            || moving
                .http2
                .as_ref()
                .is_some_and(|s| s.len() > MAX_HTTP2_STATE);
        let unsupported =
            (moving.tls.is_some() && !self.tls) || (moving.http2.is_some() && !self.http2);
        if too_big || unsupported || self.waiting().closed {
            return HandoffOutcome::Refused(moving);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let request = Request { id, moving, reply };
        if let Err(unsent) = self.requests.send(request) {
            return HandoffOutcome::Refused(unsent.0.moving);
        }
        match tokio::time::timeout(ACK_BOUND, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => HandoffOutcome::Unknown,
        }
    }
}

/// Whether a superdaemon that says it speaks `version` carries connections'
/// clocks (version 2 or later; one that says nothing speaks version 1).
fn speaks_clocks(version: u32) -> bool {
    version >= 2
}

/// Sends queued handoffs, as many per message as fit, and records each as
/// sent (its descriptor kept until the answer); a batch that cannot be
/// sent is refused back to its senders.
async fn send_handoffs(link: Arc<Link>, queued: Option<mpsc::UnboundedReceiver<Request>>) {
    let Some(mut queued) = queued else {
        return;
    };
    let mut next: Option<Request> = None;
    loop {
        let first = match next.take() {
            Some(request) => request,
            None => match queued.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        // The other connections moving now queue theirs first: taken one
        // at a time, they would go one datagram each, every one a round trip
        // through the superdaemon's short queue.
        tokio::task::yield_now().await;
        let mut bytes = first.moving.wire_len() + 8;
        let mut batch = vec![first];
        while let Ok(request) = queued.try_recv() {
            let len = request.moving.wire_len() + 8;
            if fits(batch.len(), bytes, len) {
                bytes += len;
                batch.push(request);
            } else {
                next = Some(request);
                break;
            }
        }
        let (entries, replies): (Vec<(u64, Moving)>, Vec<oneshot::Sender<HandoffOutcome>>) = batch
            .into_iter()
            .map(|r| ((r.id, r.moving), r.reply))
            .unzip();
        let message = Message::Forward(entries);
        let sent = tokio::time::timeout(ACK_BOUND, link.channel.send(&message)).await;
        let Message::Forward(entries) = message else {
            continue;
        };
        if !matches!(sent, Ok(Ok(()))) {
            // Never sent (`sendmsg` is all or nothing): ours are the only descriptors.
            debug!(connections = entries.len(), "handoff not sent");
            for ((_, moving), reply) in entries.into_iter().zip(replies) {
                let _ = reply.send(HandoffOutcome::Refused(moving));
            }
            continue;
        }
        let mut waiting = link.waiting();
        for ((id, moving), reply) in entries.into_iter().zip(replies) {
            if waiting.closed {
                drop(moving);
                let _ = reply.send(HandoffOutcome::Unknown);
                continue;
            }
            waiting.sent.insert(id, (moving, reply));
            if let Some(forwarded) = waiting.early.remove(&id) {
                waiting.answer(id, forwarded);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gracedown_sockets::handoff::{Channel, Message, TICKET_KEY_LEN, VERSION};

    use super::Link;

    #[tokio::test]
    async fn clocks_travel_only_when_the_superdaemon_says_version_2_or_later() {
        for version in [None, Some(1), Some(VERSION)] {
            let (superdaemon, worker) = Channel::pair().expect("a channel");
            let superdaemon = Channel::new(superdaemon).expect("registered");
            let keys = bytes::Bytes::from(vec![7u8; TICKET_KEY_LEN]);
            superdaemon
                .try_send(&Message::TicketKeys { keys })
                .expect("K");
            if let Some(version) = version {
                superdaemon
                    .try_send(&Message::Version { version })
                    .expect("V");
            }
            let link = Link::from_fd(worker, true).expect("a link");
            assert_eq!(
                link.clocks,
                version.is_some_and(|v| v >= 2),
                "version {version:?}"
            );
            #[cfg(feature = "tls")]
            assert!(link.ticket_keys().is_some(), "the keys are taken too");
        }
    }
}
