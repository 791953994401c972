//! The connection handoff broker (`docs/design/handoff.md`): each generation
//! gets one end of a handoff channel (`GRACEDOWN_HANDOFF_FD`); a draining
//! generation hands its plain HTTP/1.1 connections, each at a message
//! boundary, to the current one through start_server, which alone knows which generation is
//! ready. A worker never talks to another worker.
//!
//! Per generation, a reader task feeds the driver's loop ([`Broker::handle`])
//! and a writer task owns everything sent to that generation, so a slow
//! worker never stalls the loop. Every descriptor is owned exactly once at
//! each step: the sender keeps its copy until it gets the answer; a
//! forwarded one is owned by the target's queue until the kernel has it; a
//! refused one is dropped here before the answer is sent, so the sender
//! closes the connection as it would have without a handoff.
//!
//! The broker also keeps the TLS session-ticket keys every generation
//! shares (random, in memory only, replaced every `--ticket-key-rotation`):
//! each channel gets them as its first message, before its worker starts,
//! and again at each rotation, so a client resumes its TLS session with
//! whichever generation it reaches.
//!
//! Nothing here speaks HTTP or TLS: the broker moves descriptors and bytes.

mod keys;

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gracedown_sockets::handoff::{Channel, MAX_BATCH, Message, Moving, VERSION, fits};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use self::keys::KeyRing;

/// How many messages may wait for one generation; beyond, handoffs to it are refused.
const OUTBOX: usize = 4096;

/// How long one message may wait for a generation that does not read its
/// channel; then it is given up (a connection in it is refused).
const SEND_BOUND: Duration = Duration::from_secs(1);

/// A message from a generation, or `None` once its channel has ended.
#[derive(Debug)]
pub(crate) struct Incoming {
    generation: u64,
    message: Option<Message>,
}

/// What a writer task sends.
#[derive(Debug)]
enum Outgoing {
    Message(Message),
    /// A connection for this generation; the answer goes to `reply`.
    Forward {
        moving: Moving,
        id: u64,
        reply: mpsc::Sender<Self>,
        /// The sending generation's count of forwarded connections.
        count: Arc<AtomicU64>,
    },
    /// What became of this generation's handoff `id`.
    Ack {
        id: u64,
        forwarded: bool,
    },
}

#[derive(Debug)]
struct Peer {
    channel: Arc<Channel>,
    /// It said `R` (or `r`): it takes handed-off connections.
    receiving: bool,
    /// It said `r` (or `s`): it continues their bounds (their clocks reach it).
    clocks: bool,
    /// It said `s` (or `S`): it continues TLS sessions (it may take TLS
    /// connections).
    tls: bool,
    /// It said `2` (or `S`): it continues HTTP/2 connections.
    http2: bool,
    outbox: mpsc::Sender<Outgoing>,
    /// Connections this generation handed on.
    handed_on: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The generations' channels and which generation takes connections.
#[derive(Debug)]
pub(crate) struct Broker {
    peers: HashMap<u64, Peer>,
    target: Option<u64>,
    inbox: mpsc::UnboundedSender<Incoming>,
    keys: KeyRing,
}

impl Broker {
    /// A broker with no generation yet, whose ticket keys are replaced every
    /// `rotation`; what generations send arrives on the receiver.
    ///
    /// # Errors
    ///
    /// When the system has no randomness to give.
    pub(crate) fn new(rotation: Duration) -> io::Result<(Self, mpsc::UnboundedReceiver<Incoming>)> {
        let (inbox, incoming) = mpsc::unbounded_channel();
        let broker = Self {
            peers: HashMap::new(),
            target: None,
            inbox,
            keys: KeyRing::new(rotation)?,
        };
        Ok((broker, incoming))
    }

    /// When the ticket keys are replaced next.
    pub(crate) fn next_rotation(&self) -> Instant {
        self.keys.next()
    }

    /// Replaces the ticket keys if it is time, and tells every generation.
    pub(crate) fn rotate_if_due(&mut self, now: Instant) {
        if !self.keys.rotate_if_due(now) {
            return;
        }
        for peer in self.peers.values() {
            let _ = peer.outbox.try_send(Outgoing::Message(self.keys.message()));
        }
        debug!("TLS session-ticket keys rotated");
    }

    /// Opens the channel of a generation about to be spawned; returns the
    /// worker's end, to be placed in it (and dropped here once it is).
    ///
    /// # Errors
    ///
    /// When the socket pair cannot be made or registered.
    pub(crate) fn open(&mut self, generation: u64) -> io::Result<OwnedFd> {
        let (ours, theirs) = Channel::pair()?;
        let channel = Arc::new(Channel::new(ours)?);
        // The keys, then the version, are waiting in the socket before the
        // worker exists (a version-1 worker stops reading at the version).
        channel.try_send(&self.keys.message())?;
        channel.try_send(&Message::Version { version: VERSION })?;
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let reader = tokio::spawn(read(generation, Arc::clone(&channel), self.inbox.clone()));
        let writer = tokio::spawn(write(Arc::clone(&channel), queue));
        self.peers.insert(
            generation,
            Peer {
                channel,
                receiving: false,
                clocks: false,
                tls: false,
                http2: false,
                outbox,
                handed_on: Arc::default(),
                tasks: vec![reader, writer],
            },
        );
        Ok(theirs)
    }

    /// The generation is gone (exited or never started): its channel closes,
    /// and whatever still waited for it is dropped, before this returns (so
    /// that start_server's descriptors are exactly those of live generations).
    pub(crate) async fn close(&mut self, generation: u64) {
        if let Some(mut peer) = self.peers.remove(&generation) {
            for task in std::mem::take(&mut peer.tasks) {
                task.abort();
                let _ = task.await;
            }
            let handed_on = peer.handed_on.load(Ordering::Relaxed);
            if handed_on > 0 {
                info!(
                    "generation {generation} handed {handed_on} connection{} on to newer generations",
                    if handed_on == 1 { "" } else { "s" }
                );
            }
        }
    }

    /// The generation that takes handed-off connections: the current one,
    /// or none (while stopping).
    pub(crate) fn set_target(&mut self, target: Option<u64>) {
        self.target = target;
    }

    /// Reads what `generation` has sent up to now, in order, before anything
    /// else happens: a worker says `R` before `READY=1`, and the two travel
    /// on different sockets.
    pub(crate) fn catch_up(
        &mut self,
        generation: u64,
        incoming: &mut mpsc::UnboundedReceiver<Incoming>,
    ) {
        while let Ok(message) = incoming.try_recv() {
            self.handle(message);
        }
        while let Some(Ok(Some(message))) =
            self.peers.get(&generation).map(|p| p.channel.try_recv())
        {
            self.handle(Incoming {
                generation,
                message: Some(message),
            });
        }
    }

    /// Acts on one message from a generation.
    pub(crate) fn handle(
        &mut self,
        Incoming {
            generation,
            message,
        }: Incoming,
    ) {
        let Some(message) = message else {
            if let Some(peer) = self.peers.get_mut(&generation) {
                peer.receiving = false;
            }
            return;
        };
        match message {
            Message::Receiving { clocks, tls, http2 } => {
                if let Some(peer) = self.peers.get_mut(&generation) {
                    debug!(
                        generation,
                        clocks, tls, http2, "generation takes handed-off connections"
                    );
                    peer.receiving = true;
                    peer.clocks = clocks;
                    peer.tls = tls;
                    peer.http2 = http2;
                }
            }
            Message::Query => {
                let available = self.receiver_for(generation).is_some();
                if let Some(peer) = self.peers.get(&generation) {
                    let answer = Outgoing::Message(Message::Answer { available });
                    let _ = peer.outbox.try_send(answer);
                }
            }
            Message::Forward(entries) => {
                for (id, moving) in entries {
                    self.forward(generation, id, moving);
                }
            }
            other => {
                debug!(generation, message = ?other, "unexpected handoff message, ignored");
            }
        }
    }

    /// The generation that would take `from`'s connections now.
    fn receiver_for(&self, from: u64) -> Option<&Peer> {
        let target = self.target.filter(|t| *t != from)?;
        self.peers.get(&target).filter(|p| p.receiving)
    }

    fn forward(&mut self, from: u64, id: u64, mut moving: Moving) {
        let Some(sender) = self.peers.get(&from) else {
            // Its channel is closed: no one waits for the answer.
            return;
        };
        let (reply, count) = (sender.outbox.clone(), Arc::clone(&sender.handed_on));
        // A TLS session, or an HTTP/2 connection, goes only to a
        // generation that continues it; any other refuses it, and the
        // sender serves the connection on.
        let receiver = self
            .receiver_for(from)
            .filter(|r| (r.tls || moving.tls.is_none()) && (r.http2 || moving.http2.is_none()));
        if let Some(receiver) = receiver {
            if !receiver.clocks {
                // A version-1 receiver reads no clocks: it restarts the bounds.
                moving.clocks = None;
            }
            let forward = Outgoing::Forward {
                moving,
                id,
                reply: reply.clone(),
                count,
            };
            match receiver.outbox.try_send(forward) {
                Ok(()) => return,
                // Full or gone: our copy is dropped with the message.
                Err(refused) => drop(refused),
            }
        } else {
            drop(moving);
        }
        let _ = reply.try_send(Outgoing::Ack {
            id,
            forwarded: false,
        });
    }
}

/// Feeds the driver with what `generation` sends, until its channel ends.
async fn read(generation: u64, channel: Arc<Channel>, inbox: mpsc::UnboundedSender<Incoming>) {
    loop {
        let message = match channel.recv().await {
            Ok(Some(message)) => Some(message),
            Ok(None) => None,
            Err(e) if matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::Other) => {
                debug!(generation, error = %e, "malformed handoff message, ignored");
                continue;
            }
            Err(e) => {
                debug!(generation, error = %e, "handoff channel failed");
                None
            }
        };
        let end = message.is_none();
        if inbox
            .send(Incoming {
                generation,
                message,
            })
            .is_err()
            || end
        {
            return;
        }
    }
}

/// Sends everything queued for one generation, connections and answers in
/// batches (see `gracedown_sockets::handoff`). Once a send fails (the
/// worker is gone, or did not read for [`SEND_BOUND`]), every connection
/// still queued is refused at once.
async fn write(channel: Arc<Channel>, mut queue: mpsc::Receiver<Outgoing>) {
    let mut failed = false;
    // What did not fit the previous batch.
    let mut next: Option<Outgoing> = None;
    loop {
        let first = match next.take() {
            Some(out) => out,
            None => match queue.recv().await {
                Some(out) => out,
                None => return,
            },
        };
        match first {
            Outgoing::Message(message) => {
                if !failed {
                    failed = !send(&channel, &message).await;
                }
            }
            Outgoing::Ack { id, forwarded } => {
                let mut acks = vec![(id, forwarded)];
                while acks.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(Outgoing::Ack { id, forwarded }) => acks.push((id, forwarded)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if !failed {
                    failed = !send(&channel, &Message::Acks(acks)).await;
                }
            }
            Outgoing::Forward {
                moving,
                id,
                reply,
                count,
            } => {
                let mut bytes = moving.wire_len();
                let mut conns = vec![moving];
                let mut answers = vec![(id, reply, count)];
                while let Ok(out) = queue.try_recv() {
                    match out {
                        Outgoing::Forward {
                            moving,
                            id,
                            reply,
                            count,
                        } if fits(conns.len(), bytes, moving.wire_len()) => {
                            bytes += moving.wire_len();
                            conns.push(moving);
                            answers.push((id, reply, count));
                        }
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                let message = Message::Connections(conns);
                let forwarded = !failed && send(&channel, &message).await;
                failed |= !forwarded;
                // Our copies go before the answers: once a sender drops its
                // own, the receiver's is the connection's only descriptor.
                drop(message);
                for (id, reply, count) in answers {
                    if forwarded {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = reply.send(Outgoing::Ack { id, forwarded }).await;
                }
            }
        }
    }
}

async fn send(channel: &Channel, message: &Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_BOUND, channel.send(message)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests;
