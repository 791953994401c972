//! Passing accepted connections from a draining generation to the next,
//! through the superdaemon.
//!
//! A restart that closes nothing loses nothing: a connection that is between
//! requests moves to the next generation, as the listening socket already
//! does. Each generation shares one `SOCK_SEQPACKET` unix socket with the
//! superdaemon (the descriptor number is in [`HANDOFF_FD`]); the superdaemon
//! forwards each connection to the newest generation that takes them, so a
//! worker never talks to another worker. Messages:
//!
//! ```text
//!   worker → superdaemon   R                          this generation takes handed-off connections
//!                          Q                          is there a generation to hand connections to?
//!                          H id:u64 fresh:u8 prefix + fd   hand this connection on (prefix: bytes already read from it)
//!   superdaemon → worker   K key:48×n                 TLS session-ticket keys, the first one
//!                                                     encrypts (sent first, then at each rotation)
//!                          a ok:u8                    the answer to Q
//!                          A id:u64 ok:u8             handoff `id` was forwarded (1) or not (0)
//!                          C fresh:u8 prefix + fd          a connection handed to this generation
//!
//!   fresh: 1 when the connection has sent no request yet (its protocol,
//!   HTTP/1.1 or h2c, is still to be told); 0 when it is between HTTP/1.1 requests.
//! ```
//!
//! Ownership is explicit at every step: the sender keeps its descriptor
//! until the superdaemon answers; forwarded, it drops it (the socket lives on
//! in the receiver, no FIN is sent); refused, the superdaemon has already
//! dropped its copy and the sender closes the connection as it would have
//! without a handoff.
//!
//! Workers that do not know [`HANDOFF_FD`], Perl's start_server and systemd
//! never see any of this.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use bytes::{BufMut, Bytes, BytesMut};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::Error;

/// The variable naming the handoff channel's descriptor.
pub const HANDOFF_FD: &str = "GRACEDOWN_HANDOFF_FD";

/// The length of one TLS session-ticket key (as nginx's `ssl_session_ticket_key`
/// files made by `openssl rand 48`): a 16-byte name, then 32 bytes of key.
pub const TICKET_KEY_LEN: usize = 48;

/// The most bytes already read that travel with a connection.
pub const MAX_PREFIX: usize = 64 * 1024;

/// Room for a message: the prefix and a header.
const MAX_MESSAGE: usize = MAX_PREFIX + 16;

/// A message on a handoff channel.
#[derive(Debug)]
#[non_exhaustive]
pub enum Message {
    /// This generation takes handed-off connections.
    Receiving,
    /// Is there a generation to hand connections to?
    Query,
    /// The answer to [`Message::Query`].
    Answer {
        /// Whether handoffs would be forwarded now.
        available: bool,
    },
    /// Hand this connection on.
    Handoff {
        /// The sender's number for it, echoed in the [`Message::Ack`].
        id: u64,
        /// The connection.
        socket: OwnedFd,
        /// Bytes already read from it, in front of what is still in the socket.
        prefix: Bytes,
        /// It has sent no request yet.
        fresh: bool,
    },
    /// What became of handoff `id`.
    Ack {
        /// The sender's number.
        id: u64,
        /// Forwarded to the next generation (`true`), or refused.
        forwarded: bool,
    },
    /// Session-ticket keys every generation shares, so that a TLS client
    /// resumes its session with the next generation: [`TICKET_KEY_LEN`]
    /// bytes each, the first one encrypts new tickets, all decrypt.
    TicketKeys {
        /// The keys, concatenated.
        keys: Bytes,
    },
    /// A connection handed to this generation.
    Connection {
        /// The connection.
        socket: OwnedFd,
        /// Bytes already read from it.
        prefix: Bytes,
        /// It has sent no request yet.
        fresh: bool,
    },
}

impl Message {
    /// The bytes and the descriptor to send.
    fn encode(&self) -> (BytesMut, Option<BorrowedFd<'_>>) {
        let mut buf = BytesMut::with_capacity(16);
        let fd = match self {
            Self::Receiving => {
                buf.put_u8(b'R');
                None
            }
            Self::Query => {
                buf.put_u8(b'Q');
                None
            }
            Self::Answer { available } => {
                buf.put_u8(b'a');
                buf.put_u8(u8::from(*available));
                None
            }
            Self::Handoff {
                id,
                socket,
                prefix,
                fresh,
            } => {
                buf.put_u8(b'H');
                buf.put_u64(*id);
                buf.put_u8(u8::from(*fresh));
                buf.extend_from_slice(prefix);
                Some(socket.as_fd())
            }
            Self::TicketKeys { keys } => {
                buf.put_u8(b'K');
                buf.extend_from_slice(keys);
                None
            }
            Self::Ack { id, forwarded } => {
                buf.put_u8(b'A');
                buf.put_u64(*id);
                buf.put_u8(u8::from(*forwarded));
                None
            }
            Self::Connection {
                socket,
                prefix,
                fresh,
            } => {
                buf.put_u8(b'C');
                buf.put_u8(u8::from(*fresh));
                buf.extend_from_slice(prefix);
                Some(socket.as_fd())
            }
        };
        (buf, fd)
    }

    /// A message from its bytes and the descriptor that came with them.
    fn decode(bytes: &[u8], fd: Option<OwnedFd>) -> io::Result<Self> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("handoff channel: {what}"),
            )
        };
        let (&tag, rest) = bytes.split_first().ok_or_else(|| bad("an empty message"))?;
        let id = |rest: &[u8]| -> io::Result<u64> {
            let bytes: [u8; 8] = rest
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("a message too short for its id"))?;
            Ok(u64::from_be_bytes(bytes))
        };
        let flag = |b: Option<&u8>| match b {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(bad("a flag that is neither 0 nor 1")),
        };
        let socket =
            |fd: Option<OwnedFd>| fd.ok_or_else(|| bad("a connection without its descriptor"));
        Ok(match tag {
            b'R' => Self::Receiving,
            b'Q' => Self::Query,
            b'a' => Self::Answer {
                available: flag(rest.first())?,
            },
            b'H' => Self::Handoff {
                id: id(rest)?,
                fresh: flag(rest.get(8))?,
                socket: socket(fd)?,
                prefix: Bytes::copy_from_slice(&rest[9..]),
            },
            b'K' if !rest.is_empty() && rest.len() % TICKET_KEY_LEN == 0 => Self::TicketKeys {
                keys: Bytes::copy_from_slice(rest),
            },
            b'K' => return Err(bad("ticket keys of a wrong length")),
            b'A' => Self::Ack {
                id: id(rest)?,
                forwarded: flag(rest.get(8))?,
            },
            b'C' => Self::Connection {
                fresh: flag(rest.first())?,
                socket: socket(fd)?,
                prefix: Bytes::copy_from_slice(&rest[1..]),
            },
            other => return Err(bad(&format!("an unknown message type {other:#04x}"))),
        })
    }
}

/// One end of a handoff channel, registered with the tokio runtime.
#[derive(Debug)]
pub struct Channel {
    fd: AsyncFd<OwnedFd>,
}

impl Channel {
    /// A connected pair of channel descriptors (close-on-exec): one for the
    /// superdaemon, one for the worker.
    ///
    /// # Errors
    ///
    /// The `socketpair` error.
    pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
        Ok(rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?)
    }

    /// Wraps a channel descriptor; it is made non-blocking.
    ///
    /// # Errors
    ///
    /// When it cannot be registered with the runtime (no runtime).
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which owns it until
        // it is dropped; an `OwnedFd` always returns the same open descriptor.
        #[allow(unsafe_code)]
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Takes the channel named by [`HANDOFF_FD`] in `vars`, once per process;
    /// `Ok(None)` when the variable is absent (not under gracedown's start_server).
    ///
    /// # Errors
    ///
    /// When the variable is malformed or names something other than a unix
    /// seqpacket socket.
    pub fn take_from_vars<I, K, V>(vars: I) -> Result<Option<OwnedFd>, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let Some(value) = vars
            .into_iter()
            .find(|(k, _)| k.as_ref() == HANDOFF_FD)
            .map(|(_, v)| v.as_ref().to_owned())
        else {
            return Ok(None);
        };
        let fd = value
            .parse::<i32>()
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| Error::EnvNumber {
                var: HANDOFF_FD,
                value: value.clone(),
            })?;
        crate::listener::adopt_channel(fd, HANDOFF_FD).map(Some)
    }

    /// [`Channel::take_from_vars`] over the process environment.
    ///
    /// # Errors
    ///
    /// As [`Channel::take_from_vars`].
    pub fn take_from_env() -> Result<Option<OwnedFd>, Error> {
        Self::take_from_vars(std::env::vars())
    }

    /// Sends `message`; waits while the peer's queue is full.
    ///
    /// # Errors
    ///
    /// The `sendmsg` error (`EPIPE` once the peer is gone).
    pub async fn send(&self, message: &Message) -> io::Result<()> {
        let (bytes, fd) = message.encode();
        self.send_parts(&bytes, fd).await
    }

    /// Sends `H`: hands `socket` on, keeping this process's descriptor
    /// (drop it once the superdaemon answers that it was forwarded).
    ///
    /// # Errors
    ///
    /// As [`Channel::send`]; `InvalidInput` when `prefix` is longer than [`MAX_PREFIX`].
    pub async fn hand_off(
        &self,
        id: u64,
        socket: BorrowedFd<'_>,
        prefix: &[u8],
        fresh: bool,
    ) -> io::Result<()> {
        if prefix.len() > MAX_PREFIX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "handoff channel: a prefix longer than MAX_PREFIX",
            ));
        }
        let mut bytes = BytesMut::with_capacity(10 + prefix.len());
        bytes.put_u8(b'H');
        bytes.put_u64(id);
        bytes.put_u8(u8::from(fresh));
        bytes.extend_from_slice(prefix);
        self.send_parts(&bytes, Some(socket)).await
    }

    async fn send_parts(&self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|inner| send_message(inner.get_ref().as_fd(), bytes, fd));
            match sent {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives the next message; `Ok(None)` when the peer is gone.
    ///
    /// # Errors
    ///
    /// The `recvmsg` error, or a malformed message.
    pub async fn recv(&self) -> io::Result<Option<Message>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let mut guard = self.fd.readable().await?;
            let received = guard.try_io(|inner| receive_message(inner.get_ref().as_fd(), &mut buf));
            match received {
                Ok(Ok(Some((n, fd)))) => return Message::decode(&buf[..n], fd).map(Some),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

impl Channel {
    /// Sends `message` if the socket takes it now, without waiting.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the peer's queue is full; otherwise as [`Channel::send`].
    pub fn try_send(&self, message: &Message) -> io::Result<()> {
        let (bytes, fd) = message.encode();
        send_message(self.fd.get_ref().as_fd(), &bytes, fd)
    }

    /// Receives a message that is already waiting, without waiting: `Ok(None)`
    /// when none is (or the peer is gone; [`Channel::recv`] tells which).
    ///
    /// # Errors
    ///
    /// The `recvmsg` error, or a malformed message.
    pub fn try_recv(&self) -> io::Result<Option<Message>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        match receive_message(self.fd.get_ref().as_fd(), &mut buf) {
            Ok(Some((n, fd))) => Message::decode(&buf[..n], fd).map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn send_message(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other(
            "handoff channel: no room for a descriptor",
        ));
    }
    let iov = [io::IoSlice::new(bytes)];
    let sent = rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::NOSIGNAL)?;
    if sent != bytes.len() {
        return Err(io::Error::other("handoff channel: a message was cut short"));
    }
    Ok(())
}

/// One message into `buf`: its length and its descriptor; `None` at the end.
fn receive_message(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Option<OwnedFd>)>> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let received = rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    // Every descriptor that arrived is owned here, whatever the message says.
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received_fds) = message {
            fds.extend(received_fds);
        }
    }
    if received.bytes == 0 {
        return Ok(None);
    }
    if received.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(io::Error::other(
            "handoff channel: a message larger than allowed",
        ));
    }
    // One descriptor per message at most; extra ones are closed here.
    Ok(Some((received.bytes, fds.into_iter().next())))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    use super::*;

    #[tokio::test]
    async fn a_connection_travels_with_its_prefix_and_stays_the_same_socket() {
        let (left, right) = Channel::pair().expect("pair");
        let (left, right) = (
            Channel::new(left).expect("left"),
            Channel::new(right).expect("right"),
        );
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("a connection");
        right.send(&Message::Receiving).await.expect("send");
        assert!(matches!(left.recv().await, Ok(Some(Message::Receiving))));
        left.send(&Message::Handoff {
            id: 7,
            socket: b.into(),
            prefix: Bytes::from_static(b"GET / HT"),
            fresh: false,
        })
        .await
        .expect("send");
        let Ok(Some(Message::Handoff {
            id,
            socket,
            prefix,
            fresh: false,
        })) = right.recv().await
        else {
            panic!("a handoff");
        };
        assert_eq!((id, &prefix[..]), (7, &b"GET / HT"[..]));
        // The received descriptor is the same connection.
        let mut moved = std::os::unix::net::UnixStream::from(socket);
        a.write_all(b"TP/1.1\r\n").expect("write");
        let mut got = [0u8; 8];
        moved.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"TP/1.1\r\n");
        right
            .send(&Message::Ack {
                id: 7,
                forwarded: true,
            })
            .await
            .expect("ack");
        assert!(matches!(
            left.recv().await,
            Ok(Some(Message::Ack {
                id: 7,
                forwarded: true
            }))
        ));
        drop(right);
        assert!(matches!(left.recv().await, Ok(None)), "the end of the peer");
        let _ = moved.as_raw_fd();
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"H\0\0",
            b"H\0\0\0\0\0\0\0\0\x07",
            b"A\0\0\0\0\0\0\0\0\x05",
            b"a\x02",
            b"Z",
            b"C",
            b"K",
            b"K0123",
        ] {
            assert!(Message::decode(bytes, None).is_err(), "{bytes:?}");
        }
    }
}
