//! The connection handoff broker (`../shared/DESIGN.md` §7): each generation
//! gets one end of a handoff channel (`GRACEDOWN_HANDOFF_FD`); a draining
//! generation hands the connections that are between requests to the
//! current one through start_server, which alone knows which generation is
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
//! Nothing here speaks HTTP: the broker moves descriptors and bytes.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gracedown_sockets::handoff::{Channel, Message};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};

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
    /// A connection for this generation; the answer goes to `reply` as `A id`.
    Forward {
        socket: OwnedFd,
        prefix: Bytes,
        fresh: bool,
        id: u64,
        reply: mpsc::Sender<Self>,
        /// The sending generation's count of forwarded connections.
        count: Arc<AtomicU64>,
    },
}

#[derive(Debug)]
struct Peer {
    channel: Arc<Channel>,
    /// It said `R`: it takes handed-off connections.
    receiving: bool,
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
}

impl Broker {
    /// A broker with no generation yet; what generations send arrives on the receiver.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Incoming>) {
        let (inbox, incoming) = mpsc::unbounded_channel();
        let broker = Self {
            peers: HashMap::new(),
            target: None,
            inbox,
        };
        (broker, incoming)
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
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let reader = tokio::spawn(read(generation, Arc::clone(&channel), self.inbox.clone()));
        let writer = tokio::spawn(write(Arc::clone(&channel), queue));
        self.peers.insert(
            generation,
            Peer {
                channel,
                receiving: false,
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
            Message::Receiving => {
                if let Some(peer) = self.peers.get_mut(&generation) {
                    debug!(generation, "generation takes handed-off connections");
                    peer.receiving = true;
                }
            }
            Message::Query => {
                let available = self.receiver_for(generation).is_some();
                if let Some(peer) = self.peers.get(&generation) {
                    let answer = Outgoing::Message(Message::Answer { available });
                    let _ = peer.outbox.try_send(answer);
                }
            }
            Message::Handoff {
                id,
                socket,
                prefix,
                fresh,
            } => {
                self.forward(generation, id, socket, prefix, fresh);
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

    fn forward(&mut self, from: u64, id: u64, socket: OwnedFd, prefix: Bytes, fresh: bool) {
        let Some(sender) = self.peers.get(&from) else {
            // Its channel is closed: no one waits for the answer.
            return;
        };
        let (reply, count) = (sender.outbox.clone(), Arc::clone(&sender.handed_on));
        if let Some(receiver) = self.receiver_for(from) {
            let forward = Outgoing::Forward {
                socket,
                prefix,
                fresh,
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
            drop(socket);
        }
        let _ = reply.try_send(Outgoing::Message(Message::Ack {
            id,
            forwarded: false,
        }));
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

/// Sends everything queued for one generation. Once a send fails (the
/// worker is gone, or did not read for [`SEND_BOUND`]), every connection
/// still queued is refused at once.
async fn write(channel: Arc<Channel>, mut queue: mpsc::Receiver<Outgoing>) {
    let mut failed = false;
    while let Some(out) = queue.recv().await {
        match out {
            Outgoing::Message(message) => {
                if !failed {
                    failed = !send(&channel, &message).await;
                }
            }
            Outgoing::Forward {
                socket,
                prefix,
                fresh,
                id,
                reply,
                count,
            } => {
                let message = Message::Connection {
                    socket,
                    prefix,
                    fresh,
                };
                let forwarded = !failed && send(&channel, &message).await;
                failed |= !forwarded;
                // Our copy goes before the answer: once the sender drops its
                // own, the receiver's is the connection's only descriptor.
                drop(message);
                if forwarded {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply
                    .send(Outgoing::Message(Message::Ack { id, forwarded }))
                    .await;
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
mod tests {
    use std::io::{Read, Write};

    use super::*;

    async fn next(channel: &Channel) -> Message {
        tokio::time::timeout(Duration::from_secs(5), channel.recv())
            .await
            .expect("a message within 5 s")
            .expect("no error")
            .expect("the channel is open")
    }

    /// Handles the next message any generation sent.
    async fn pump(broker: &mut Broker, rx: &mut mpsc::UnboundedReceiver<Incoming>) {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a message within 5 s")
            .expect("the broker's inbox is open");
        broker.handle(got);
    }

    #[tokio::test]
    async fn a_connection_moves_to_the_current_generation_and_the_sender_is_told() {
        let (mut broker, mut rx) = Broker::new();
        let old = Channel::new(broker.open(1).expect("open 1")).expect("channel 1");
        let new = Channel::new(broker.open(2).expect("open 2")).expect("channel 2");
        broker.set_target(Some(2));
        new.send(&Message::Receiving).await.expect("R");
        pump(&mut broker, &mut rx).await;
        old.send(&Message::Query).await.expect("Q");
        pump(&mut broker, &mut rx).await;
        assert!(matches!(
            next(&old).await,
            Message::Answer { available: true }
        ));
        let (mut client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
        old.send(&Message::Handoff {
            id: 9,
            socket: server.into(),
            prefix: Bytes::from_static(b"GET /"),
            fresh: false,
        })
        .await
        .expect("H");
        pump(&mut broker, &mut rx).await;
        let Message::Connection {
            socket,
            prefix,
            fresh: false,
        } = next(&new).await
        else {
            panic!("a connection for generation 2");
        };
        assert_eq!(&prefix[..], b"GET /");
        assert!(matches!(
            next(&old).await,
            Message::Ack {
                id: 9,
                forwarded: true
            }
        ));
        // The same connection, now in generation 2.
        let mut moved = std::os::unix::net::UnixStream::from(socket);
        client.write_all(b" HTTP/1.1\r\n").expect("write");
        let mut buf = [0u8; 11];
        moved.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b" HTTP/1.1\r\n");
        broker.close(1).await;
        broker.close(2).await;
    }

    #[tokio::test]
    async fn without_a_receiving_generation_the_connection_is_refused_and_closed_here() {
        let (mut broker, mut rx) = Broker::new();
        let old = Channel::new(broker.open(1).expect("open 1")).expect("channel 1");
        let _quiet = Channel::new(broker.open(2).expect("open 2")).expect("channel 2");
        // Generation 2 never says R (a worker that ignores the variable).
        broker.set_target(Some(2));
        old.send(&Message::Query).await.expect("Q");
        pump(&mut broker, &mut rx).await;
        assert!(matches!(
            next(&old).await,
            Message::Answer { available: false }
        ));
        let (mut client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
        old.send(&Message::Handoff {
            id: 1,
            socket: server.into(),
            prefix: Bytes::new(),
            fresh: true,
        })
        .await
        .expect("H");
        pump(&mut broker, &mut rx).await;
        assert!(matches!(
            next(&old).await,
            Message::Ack {
                id: 1,
                forwarded: false
            }
        ));
        // The sender's copy went with its message and the broker dropped its
        // own: the client sees the end.
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).expect("read"), 0);
    }

    #[tokio::test]
    async fn a_generation_never_hands_connections_to_itself_and_none_while_stopping() {
        let (mut broker, mut rx) = Broker::new();
        let only = Channel::new(broker.open(1).expect("open")).expect("channel");
        only.send(&Message::Receiving).await.expect("R");
        pump(&mut broker, &mut rx).await;
        for target in [Some(1), None] {
            broker.set_target(target);
            only.send(&Message::Query).await.expect("Q");
            pump(&mut broker, &mut rx).await;
            assert!(matches!(
                next(&only).await,
                Message::Answer { available: false }
            ));
        }
    }

    #[tokio::test]
    async fn catching_up_reads_what_a_generation_sent_before_anything_else() {
        let (mut broker, mut rx) = Broker::new();
        let old = Channel::new(broker.open(1).expect("open 1")).expect("channel 1");
        let new = Channel::new(broker.open(2).expect("open 2")).expect("channel 2");
        broker.set_target(Some(2));
        // `R` is in the socket; no task has run since.
        new.send(&Message::Receiving).await.expect("R");
        broker.catch_up(2, &mut rx);
        old.send(&Message::Query).await.expect("Q");
        pump(&mut broker, &mut rx).await;
        assert!(matches!(
            next(&old).await,
            Message::Answer { available: true }
        ));
    }

    #[tokio::test]
    async fn a_receiver_that_is_gone_refuses_what_was_queued_for_it() {
        let (mut broker, mut rx) = Broker::new();
        let old = Channel::new(broker.open(1).expect("open 1")).expect("channel 1");
        let new = Channel::new(broker.open(2).expect("open 2")).expect("channel 2");
        broker.set_target(Some(2));
        new.send(&Message::Receiving).await.expect("R");
        pump(&mut broker, &mut rx).await;
        drop(new);
        let (_client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
        old.send(&Message::Handoff {
            id: 3,
            socket: server.into(),
            prefix: Bytes::new(),
            fresh: true,
        })
        .await
        .expect("H");
        // The end of generation 2's channel and the handoff, in either order:
        // refused at once, or when the send to the closed channel fails.
        pump(&mut broker, &mut rx).await;
        pump(&mut broker, &mut rx).await;
        assert!(matches!(
            next(&old).await,
            Message::Ack {
                id: 3,
                forwarded: false
            }
        ));
    }
}
