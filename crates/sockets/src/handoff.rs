//! Passing accepted connections from a draining generation to the next,
//! through the superdaemon.
//!
//! A restart that closes nothing loses nothing: a connection at a message
//! boundary (with the bytes of a next request already read, if any) moves to
//! the next generation, as the listening socket already does. Each generation shares one `SOCK_SEQPACKET` unix socket with the
//! superdaemon (the descriptor number is in [`HANDOFF_FD`]); the superdaemon
//! forwards each connection to the newest generation that takes them, so a
//! worker never talks to another worker. Messages:
//!
//! ```text
//!   worker → superdaemon   R                      this generation takes handed-off connections
//!                          Q                      is there a generation to hand connections to?
//!                          H n:u16 (id:u64 fresh:u8 len:u32 prefix)×n  + n fds
//!                                                 hand these connections on
//!                          r                      the same, and this generation continues
//!                                                 the bounds of what it is handed (version 2)
//!                          s                      the same, and it continues TLS sessions
//!                                                 (version 3)
//!                          2                      r, and it continues HTTP/2 connections
//!                                                 (version 4)
//!                          S                      s and 2 both (version 4)
//!                          h n:u16 (id:u64 flags:u8 len:u32 prefix [quiet:u64 head:u64]
//!                                   [slen:u16 session sealedlen:u32 sealed]
//!                                   [h2len:u16 h2state])×n  + n fds
//!                                                 H with the connections' clocks (version 2),
//!                                                 TLS sessions (version 3) and HTTP/2
//!                                                 states (version 4)
//!   superdaemon → worker   V version:u32          the version it speaks (right after the first
//!                                                 K; a version-1 superdaemon sends none)
//!                          K key:48×n             TLS session-ticket keys, the first one
//!                                                 encrypts (sent first, then at each rotation)
//!                          a ok:u8                the answer to Q
//!                          A n:u16 (id:u64 ok:u8)×n
//!                                                 each handoff was forwarded (1) or not (0)
//!                          C n:u16 (fresh:u8 len:u32 prefix)×n  + n fds
//!                                                 connections handed to this generation
//!                          c n:u16 (flags:u8 len:u32 prefix [quiet:u64 head:u64]
//!                                   [slen:u16 session sealedlen:u32 sealed]
//!                                   [h2len:u16 h2state])×n  + n fds
//!                                                 C with the connections' clocks (version 2),
//!                                                 TLS sessions (version 3) and HTTP/2
//!                                                 states (version 4)
//!
//!   prefix: bytes already read from the connection, in front of what is
//!   still in the socket; fresh: 1 when it has sent no request yet (its
//!   protocol, HTTP/1.1 or h2c, is still to be told), 0 when it is between
//!   HTTP/1.1 requests; flags: bit 0 fresh, bit 1 the clocks follow the
//!   prefix ([`Clocks`]), bit 2 a TLS session follows them ([`MovingTls`]:
//!   under TLS the prefix is plaintext already opened, `sealed` records
//!   received and not yet opened), bit 3 an HTTP/2 connection's state
//!   follows ([`Moving::http2`]: the connection moved at a quiet moment, the
//!   prefix is the client's frames not yet read).
//! ```
//!
//! Version 2 carries each connection's clocks, so that the next generation
//! continues its bounds (a head that trickles in, a quiet keep-alive
//! connection) instead of restarting them at every restart. A superdaemon
//! that speaks it says so on the channel itself (`V`, waiting with the keys
//! before the worker starts: a version-1 worker stops reading its start-up
//! messages there and ignores it); only then does a worker send `r` and
//! `h`, and the superdaemon sends `c` only to a generation that said `r`.
//! Every other pair speaks version 1, as before. Version 3 adds TLS
//! sessions: a superdaemon that says `V 3` forwards a connection with its
//! session only to a generation that said `s`, and refuses it otherwise (the
//! sender then serves it on). The session's bytes are opaque here: the
//! superdaemon never speaks TLS. Version 4 adds HTTP/2 connections the
//! same way: forwarded only to a generation that said `2` (or `S`, under
//! TLS), their state opaque here too.
//!
//! Connections travel in batches (at most [`MAX_BATCH`] per message, at most
//! [`MAX_MESSAGE`] bytes): the kernel queues only a few messages per socket
//! (`net.unix.max_dgram_qlen`, 10 by default), so one message per
//! connection would move a thousand connections ten at a time.
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

use bytes::{Buf, BufMut, Bytes};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
/// The buffer a [`MovingTls`] session lives in: zeroed when dropped.
pub use zeroize::Zeroizing;

use crate::error::Error;

/// The variable naming the handoff channel's descriptor.
pub const HANDOFF_FD: &str = "GRACEDOWN_HANDOFF_FD";

/// The version of the handoff messages this crate speaks (see
/// [`Message::Version`]).
pub const VERSION: u32 = 4;

/// The length of one TLS session-ticket key (as nginx's `ssl_session_ticket_key`
/// files made by `openssl rand 48`): a 16-byte name, then 32 bytes of key.
pub const TICKET_KEY_LEN: usize = 48;

/// The most bytes already read that travel with a connection.
pub const MAX_PREFIX: usize = 64 * 1024;

/// The most connections in one message.
pub const MAX_BATCH: usize = 64;

/// The most bytes of a TLS session's state (keys, IVs, sequence numbers).
pub const MAX_SESSION: usize = 256;

/// The most bytes of TLS records received and not yet opened that travel
/// with a connection (one record, whole or in part).
pub const MAX_SEALED: usize = 32 * 1024;

/// The most bytes of an HTTP/2 connection's state.
pub const MAX_HTTP2_STATE: usize = 256;

/// The largest message: a batch never grows past it (one connection with
/// the longest prefix, session, sealed bytes and HTTP/2 state always fits).
pub const MAX_MESSAGE: usize = 2 * MAX_PREFIX + MAX_SESSION + MAX_SEALED + MAX_HTTP2_STATE;

/// A connection on the move, with what travels with it. Its `Debug` shows
/// lengths, never the bytes (a request's headers, a TLS session).
pub struct Moving {
    /// The connection.
    pub socket: OwnedFd,
    /// Bytes already read from it, in front of what is still in the socket.
    pub prefix: Bytes,
    /// It has sent no request yet.
    pub fresh: bool,
    /// Since when its bounds run, when both ends speak version 2.
    pub clocks: Option<Clocks>,
    /// Its TLS session, when it moves under TLS (version 3).
    pub tls: Option<MovingTls>,
    /// Its HTTP/2 state, when an HTTP/2 connection moves (version 4): at
    /// most [`MAX_HTTP2_STATE`] bytes, opaque here (see `gracedown`'s
    /// HTTP/2 module).
    pub http2: Option<Bytes>,
}

/// A TLS session on the move: what the next generation needs to continue
/// it on the same TCP connection. Opaque here; it holds keys, so it is
/// zeroed when dropped and never shown.
pub struct MovingTls {
    /// The session's state (see `gracedown`'s TLS module), at most
    /// [`MAX_SESSION`] bytes.
    pub session: Zeroizing<Vec<u8>>,
    /// Records received and not yet opened, at most [`MAX_SEALED`] bytes.
    pub sealed: Bytes,
}

impl std::fmt::Debug for MovingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MovingTls")
            .field("session", &format_args!("{} bytes", self.session.len()))
            .field("sealed", &self.sealed.len())
            .finish()
    }
}

/// Since when a moving connection's bounds run, on the system's monotonic
/// clock (`CLOCK_MONOTONIC` nanoseconds, the same in every process of the
/// machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    /// Since when it has been quiet: its last request ended, or it was
    /// accepted (the keep-alive bound, or the first request's).
    pub quiet_since: u64,
    /// Since when its current request head has been arriving; 0 when none
    /// has started (the header bound).
    pub head_since: u64,
}

impl Moving {
    /// The bytes it takes in a `C` or `c` message (an `H` or `h` entry takes
    /// 8 more).
    pub fn wire_len(&self) -> usize {
        5 + self.prefix.len()
            + if self.clocks.is_some() { 16 } else { 0 }
            + self
                .tls
                .as_ref()
                .map_or(0, |tls| 6 + tls.session.len() + tls.sealed.len())
            + self.http2.as_ref().map_or(0, |state| 2 + state.len())
    }
}

/// Whether one more connection of `wire_len` bytes (see [`Moving::wire_len`],
/// plus 8 for an `H` entry) fits a batch of `count` connections and `bytes`
/// bytes so far.
pub fn fits(count: usize, bytes: usize, wire_len: usize) -> bool {
    count == 0 || (count < MAX_BATCH && 3 + bytes + wire_len <= MAX_MESSAGE)
}

impl std::fmt::Debug for Moving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moving")
            .field("socket", &self.socket)
            .field("prefix", &format_args!("{} bytes", self.prefix.len()))
            .field("fresh", &self.fresh)
            .field("clocks", &self.clocks)
            .field("tls", &self.tls)
            .field(
                "http2",
                &self.http2.as_ref().map(|s| format!("{} bytes", s.len())),
            )
            .finish()
    }
}

/// A message on a handoff channel. Its `Debug` never shows key material
/// (ticket keys, TLS sessions) or a connection's bytes.
#[non_exhaustive]
pub enum Message {
    /// This generation takes handed-off connections (`R`); `clocks`: and
    /// continues their bounds, version 2 (`r`); `tls`: and continues TLS
    /// sessions too, version 3 (`s`, which implies `clocks`); `http2`: and
    /// continues HTTP/2 connections, version 4 (`2`, or `S` with `tls`;
    /// both imply `clocks`).
    Receiving {
        /// It takes connections with their [`Clocks`].
        clocks: bool,
        /// It continues connections' TLS sessions ([`MovingTls`]).
        tls: bool,
        /// It continues HTTP/2 connections ([`Moving::http2`]).
        http2: bool,
    },
    /// Is there a generation to hand connections to?
    Query,
    /// The answer to [`Message::Query`].
    Answer {
        /// Whether handoffs would be forwarded now.
        available: bool,
    },
    /// Hand these connections on; each id is the sender's, echoed in [`Message::Acks`].
    Forward(Vec<(u64, Moving)>),
    /// What became of handoffs: forwarded to the next generation (`true`), or refused.
    Acks(Vec<(u64, bool)>),
    /// The version of these messages the superdaemon speaks; none from a
    /// version-1 superdaemon.
    Version {
        /// 2 or later: it carries connections' [`Clocks`]; 3 or later: and
        /// their TLS sessions.
        version: u32,
    },
    /// Session-ticket keys every generation shares, so that a TLS client
    /// resumes its session with the next generation: [`TICKET_KEY_LEN`]
    /// bytes each, the first one encrypts new tickets, all decrypt.
    TicketKeys {
        /// The keys, concatenated.
        keys: Bytes,
    },
    /// Connections handed to this generation.
    Connections(Vec<Moving>),
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Receiving { clocks, tls, http2 } => f
                .debug_struct("Receiving")
                .field("clocks", clocks)
                .field("tls", tls)
                .field("http2", http2)
                .finish(),
            Self::Query => f.write_str("Query"),
            Self::Answer { available } => f
                .debug_struct("Answer")
                .field("available", available)
                .finish(),
            Self::Forward(entries) => f.debug_tuple("Forward").field(entries).finish(),
            Self::Acks(acks) => f.debug_tuple("Acks").field(acks).finish(),
            Self::Version { version } => {
                f.debug_struct("Version").field("version", version).finish()
            }
            Self::TicketKeys { keys } => f
                .debug_struct("TicketKeys")
                .field("keys", &format_args!("{} bytes", keys.len()))
                .finish(),
            Self::Connections(conns) => f.debug_tuple("Connections").field(conns).finish(),
        }
    }
}

impl Message {
    /// The bytes and the descriptors to send. The bytes may hold TLS
    /// sessions: they are allocated once at their full size (no copy left
    /// behind by a reallocation) and zeroed when dropped, however the send
    /// ends (a timeout or an abort included).
    fn encode(&self) -> (Zeroizing<Vec<u8>>, Vec<BorrowedFd<'_>>) {
        let size = match self {
            Self::Forward(entries) => {
                3 + entries.iter().map(|(_, m)| 8 + m.wire_len()).sum::<usize>()
            }
            Self::Connections(conns) => 3 + conns.iter().map(Moving::wire_len).sum::<usize>(),
            Self::Acks(acks) => 3 + 9 * acks.len(),
            Self::TicketKeys { keys } => 1 + keys.len(),
            _ => 8,
        };
        let mut buf = Zeroizing::new(Vec::with_capacity(size));
        let mut fds = Vec::new();
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        // Version 2 (clocks, sessions) only when an entry has them: a
        // version-1 peer never sees it.
        let v2 = |m: &Moving| m.clocks.is_some() || m.tls.is_some() || m.http2.is_some();
        let moving = |buf: &mut Vec<u8>, m: &Moving, v2: bool| {
            let flags = u8::from(m.fresh)
                | if m.clocks.is_some() { 2 } else { 0 }
                | if m.tls.is_some() { 4 } else { 0 }
                | if m.http2.is_some() { 8 } else { 0 };
            buf.put_u8(if v2 { flags } else { u8::from(m.fresh) });
            buf.put_u32(u32::try_from(m.prefix.len()).unwrap_or(u32::MAX));
            buf.extend_from_slice(&m.prefix);
            if let (true, Some(clocks)) = (v2, m.clocks) {
                buf.put_u64(clocks.quiet_since);
                buf.put_u64(clocks.head_since);
            }
            if let (true, Some(tls)) = (v2, &m.tls) {
                buf.put_u16(u16::try_from(tls.session.len()).unwrap_or(u16::MAX));
                buf.extend_from_slice(&tls.session);
                buf.put_u32(u32::try_from(tls.sealed.len()).unwrap_or(u32::MAX));
                buf.extend_from_slice(&tls.sealed);
            }
            if let (true, Some(state)) = (v2, &m.http2) {
                buf.put_u16(u16::try_from(state.len()).unwrap_or(u16::MAX));
                buf.extend_from_slice(state);
            }
        };
        match self {
            Self::Receiving {
                tls: true,
                http2: true,
                ..
            } => buf.put_u8(b'S'),
            Self::Receiving { http2: true, .. } => buf.put_u8(b'2'),
            Self::Receiving { tls: true, .. } => buf.put_u8(b's'),
            Self::Receiving { clocks: true, .. } => buf.put_u8(b'r'),
            Self::Receiving { .. } => buf.put_u8(b'R'),
            Self::Query => buf.put_u8(b'Q'),
            Self::Answer { available } => {
                buf.put_u8(b'a');
                buf.put_u8(u8::from(*available));
            }
            Self::Forward(entries) => {
                let v2 = entries.iter().any(|(_, m)| v2(m));
                buf.put_u8(if v2 { b'h' } else { b'H' });
                buf.put_u16(count(entries.len()));
                for (id, m) in entries {
                    buf.put_u64(*id);
                    moving(&mut buf, m, v2);
                    fds.push(m.socket.as_fd());
                }
            }
            Self::Acks(acks) => {
                buf.put_u8(b'A');
                buf.put_u16(count(acks.len()));
                for (id, forwarded) in acks {
                    buf.put_u64(*id);
                    buf.put_u8(u8::from(*forwarded));
                }
            }
            Self::Version { version } => {
                buf.put_u8(b'V');
                buf.put_u32(*version);
            }
            Self::TicketKeys { keys } => {
                buf.put_u8(b'K');
                buf.extend_from_slice(keys);
            }
            Self::Connections(conns) => {
                let v2 = conns.iter().any(v2);
                buf.put_u8(if v2 { b'c' } else { b'C' });
                buf.put_u16(count(conns.len()));
                for m in conns {
                    moving(&mut buf, m, v2);
                    fds.push(m.socket.as_fd());
                }
            }
        }
        (buf, fds)
    }

    /// A message from its bytes and the descriptors that came with them;
    /// descriptors a malformed message carried are closed.
    fn decode(bytes: &[u8], fds: Vec<OwnedFd>) -> io::Result<Self> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("handoff channel: {what}"),
            )
        };
        let (&tag, mut rest) = bytes.split_first().ok_or_else(|| bad("an empty message"))?;
        let flag = |b: u8| match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad("a flag that is neither 0 nor 1")),
        };
        let short = || bad("a message shorter than its contents");
        let batch = |rest: &mut &[u8]| -> io::Result<usize> {
            let n = usize::from(rest.try_get_u16().map_err(|_| short())?);
            if n == 0 || n > MAX_BATCH {
                return Err(bad("a batch of no connections or too many"));
            }
            Ok(n)
        };
        let moving = |rest: &mut &[u8], socket: OwnedFd, v2: bool| -> io::Result<Moving> {
            let flags = rest.try_get_u8().map_err(|_| short())?;
            let (fresh, has_clocks, has_tls, has_http2) = match (v2, flags) {
                (false, flags) => (flag(flags)?, false, false, false),
                (true, 0..=15) => (
                    flags & 1 != 0,
                    flags & 2 != 0,
                    flags & 4 != 0,
                    flags & 8 != 0,
                ),
                (true, _) => return Err(bad("an entry with unknown flags")),
            };
            let len = rest.try_get_u32().map_err(|_| short())? as usize;
            if len > MAX_PREFIX || rest.len() < len {
                return Err(bad("a prefix longer than allowed or than the message"));
            }
            let prefix = Bytes::copy_from_slice(&rest[..len]);
            rest.advance(len);
            let clocks = match has_clocks {
                true => Some(Clocks {
                    quiet_since: rest.try_get_u64().map_err(|_| short())?,
                    head_since: rest.try_get_u64().map_err(|_| short())?,
                }),
                false => None,
            };
            let tls = match has_tls {
                true => {
                    let len = usize::from(rest.try_get_u16().map_err(|_| short())?);
                    if len > MAX_SESSION || rest.len() < len {
                        return Err(bad("a TLS session longer than allowed or than the message"));
                    }
                    let session = Zeroizing::new(rest[..len].to_vec());
                    rest.advance(len);
                    let len = rest.try_get_u32().map_err(|_| short())? as usize;
                    if len > MAX_SEALED || rest.len() < len {
                        return Err(bad("sealed bytes longer than allowed or than the message"));
                    }
                    let sealed = Bytes::copy_from_slice(&rest[..len]);
                    rest.advance(len);
                    Some(MovingTls { session, sealed })
                }
                false => None,
            };
            let http2 = match has_http2 {
                true => {
                    let len = usize::from(rest.try_get_u16().map_err(|_| short())?);
                    if len > MAX_HTTP2_STATE || rest.len() < len {
                        return Err(bad(
                            "an HTTP/2 state longer than allowed or than the message",
                        ));
                    }
                    let state = Bytes::copy_from_slice(&rest[..len]);
                    rest.advance(len);
                    Some(state)
                }
                false => None,
            };
            Ok(Moving {
                socket,
                prefix,
                fresh,
                clocks,
                tls,
                http2,
            })
        };
        let with_fds = |n: usize, fds: Vec<OwnedFd>| {
            if fds.len() == n {
                Ok(fds)
            } else {
                Err(bad("a batch whose descriptors do not match its entries"))
            }
        };
        let message = match tag {
            b'R' => Self::Receiving {
                clocks: false,
                tls: false,
                http2: false,
            },
            b'r' => Self::Receiving {
                clocks: true,
                tls: false,
                http2: false,
            },
            b's' => Self::Receiving {
                clocks: true,
                tls: true,
                http2: false,
            },
            b'2' => Self::Receiving {
                clocks: true,
                tls: false,
                http2: true,
            },
            b'S' => Self::Receiving {
                clocks: true,
                tls: true,
                http2: true,
            },
            b'Q' => Self::Query,
            b'a' => Self::Answer {
                available: flag(rest.try_get_u8().map_err(|_| short())?)?,
            },
            b'H' | b'h' => {
                let n = batch(&mut rest)?;
                let mut entries = Vec::with_capacity(n);
                for socket in with_fds(n, fds)? {
                    let id = rest.try_get_u64().map_err(|_| short())?;
                    entries.push((id, moving(&mut rest, socket, tag == b'h')?));
                }
                Self::Forward(entries)
            }
            b'A' => {
                let n = batch(&mut rest)?;
                let mut acks = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = rest.try_get_u64().map_err(|_| short())?;
                    acks.push((id, flag(rest.try_get_u8().map_err(|_| short())?)?));
                }
                Self::Acks(acks)
            }
            b'V' => Self::Version {
                version: rest.try_get_u32().map_err(|_| short())?,
            },
            b'K' if !rest.is_empty() && rest.len() % TICKET_KEY_LEN == 0 => {
                let keys = Bytes::copy_from_slice(rest);
                rest = &[];
                Self::TicketKeys { keys }
            }
            b'K' => return Err(bad("ticket keys of a wrong length")),
            b'C' | b'c' => {
                let n = batch(&mut rest)?;
                let mut conns = Vec::with_capacity(n);
                for socket in with_fds(n, fds)? {
                    conns.push(moving(&mut rest, socket, tag == b'c')?);
                }
                Self::Connections(conns)
            }
            other => return Err(bad(&format!("an unknown message type {other:#04x}"))),
        };
        if rest.is_empty() {
            Ok(message)
        } else {
            Err(bad("bytes after the end of a message"))
        }
    }
}

/// Decodes `bytes` as a message received with `fds` (the fuzz targets'
/// entry point; not an API): any bytes decode or fail, without panicking
/// or allocating without bound.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn decode_for_fuzzing(bytes: &[u8], fds: Vec<OwnedFd>) -> bool {
    Message::decode(bytes, fds).is_ok()
}

/// One end of a handoff channel, registered with the tokio runtime.
#[derive(Debug)]
pub struct Channel {
    fd: AsyncFd<OwnedFd>,
    /// Where messages are received, allocated once: a fresh 64 KiB buffer
    /// per message would cost more than the message.
    buf: std::sync::Mutex<Box<[u8]>>,
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
        Ok(Self {
            fd,
            buf: std::sync::Mutex::new(vec![0u8; MAX_MESSAGE].into_boxed_slice()),
        })
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
        let (bytes, fds) = message.encode();
        self.send_parts(&bytes, &fds).await
    }

    async fn send_parts(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|inner| send_message(inner.get_ref().as_fd(), bytes, fds));
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
        loop {
            let mut guard = self.fd.readable().await?;
            let received = guard.try_io(|inner| self.receive(inner.get_ref().as_fd()));
            match received {
                Ok(Ok(Some(message))) => return message.map(Some),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Zeroes a received message's bytes once decoded (or refused), when they
/// may hold TLS sessions (connections with their entries): keys never linger
/// in the receive buffer.
fn forget_sessions(bytes: &mut [u8]) {
    if matches!(bytes.first(), Some(b'h' | b'c')) {
        zeroize::Zeroize::zeroize(bytes);
    }
}

impl Channel {
    /// One message, decoded (`Err` inside: malformed); `None` at the end.
    fn receive(&self, socket: BorrowedFd<'_>) -> io::Result<Option<io::Result<Message>>> {
        let mut buf = self
            .buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(receive_message(socket, &mut buf)?.map(|(n, fd)| {
            let message = Message::decode(&buf[..n], fd);
            forget_sessions(&mut buf[..n]);
            message
        }))
    }

    /// Sends `message` if the socket takes it now, without waiting.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the peer's queue is full; otherwise as [`Channel::send`].
    pub fn try_send(&self, message: &Message) -> io::Result<()> {
        let (bytes, fds) = message.encode();
        send_message(self.fd.get_ref().as_fd(), &bytes, &fds)
    }

    /// Receives a message that is already waiting, without waiting: `Ok(None)`
    /// when none is (or the peer is gone; [`Channel::recv`] tells which).
    ///
    /// # Errors
    ///
    /// The `recvmsg` error, or a malformed message.
    pub fn try_recv(&self) -> io::Result<Option<Message>> {
        match self.receive(self.fd.get_ref().as_fd()) {
            Ok(Some(message)) => message.map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn send_message(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if bytes.len() > MAX_MESSAGE || fds.len() > MAX_BATCH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handoff channel: a message larger than allowed",
        ));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_BATCH))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "handoff channel: no room for the descriptors",
        ));
    }
    let iov = [io::IoSlice::new(bytes)];
    let sent = rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::NOSIGNAL)?;
    if sent != bytes.len() {
        return Err(io::Error::other("handoff channel: a message was cut short"));
    }
    Ok(())
}

/// One message into `buf`: its length and its descriptors; `None` at the end.
fn receive_message(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_BATCH))];
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
    if received
        .flags
        .intersects(rustix::net::ReturnFlags::TRUNC | rustix::net::ReturnFlags::CTRUNC)
    {
        let n = received.bytes.min(buf.len());
        forget_sessions(&mut buf[..n]);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handoff channel: a message larger than allowed",
        ));
    }
    Ok(Some((received.bytes, fds)))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn channels() -> (Channel, Channel) {
        let (left, right) = Channel::pair().expect("pair");
        (
            Channel::new(left).expect("left"),
            Channel::new(right).expect("right"),
        )
    }

    #[tokio::test]
    async fn connections_travel_in_a_batch_with_their_prefixes_and_stay_the_same_sockets() {
        let (left, right) = channels();
        right
            .send(&Message::Receiving {
                clocks: false,
                tls: false,
                http2: false,
            })
            .await
            .expect("send");
        assert!(matches!(
            left.recv().await,
            Ok(Some(Message::Receiving {
                clocks: false,
                tls: false,
                http2: false,
            }))
        ));
        let mut clients = Vec::new();
        let mut entries = Vec::new();
        for id in 0..3u64 {
            let (client, server) = std::os::unix::net::UnixStream::pair().expect("a connection");
            clients.push(client);
            entries.push((
                id,
                Moving {
                    socket: server.into(),
                    prefix: Bytes::from(format!("GET /{id} HT")),
                    fresh: id == 0,
                    clocks: None,
                    tls: None,
                    http2: None,
                },
            ));
        }
        left.send(&Message::Forward(entries)).await.expect("send");
        let Ok(Some(Message::Forward(got))) = right.recv().await else {
            panic!("a batch");
        };
        assert_eq!(got.len(), 3);
        for ((id, moving), client) in got.into_iter().zip(&mut clients) {
            assert_eq!(&moving.prefix[..], format!("GET /{id} HT").as_bytes());
            assert_eq!(moving.fresh, id == 0);
            // The received descriptor is the same connection.
            let mut moved = std::os::unix::net::UnixStream::from(moving.socket);
            client.write_all(b"TP/1.1\r\n").expect("write");
            let mut buf = [0u8; 8];
            moved.read_exact(&mut buf).expect("read");
            assert_eq!(&buf, b"TP/1.1\r\n");
        }
        right
            .send(&Message::Acks(vec![(0, true), (2, false)]))
            .await
            .expect("acks");
        assert!(matches!(
            left.recv().await,
            Ok(Some(Message::Acks(acks))) if acks == vec![(0, true), (2, false)]
        ));
        drop(right);
        assert!(matches!(left.recv().await, Ok(None)), "the end of the peer");
    }

    #[tokio::test]
    async fn a_full_batch_of_the_longest_prefixes_fits_and_one_more_does_not() {
        let (left, right) = channels();
        let long = Bytes::from(vec![b'x'; MAX_PREFIX]);
        let (_client, server) = std::os::unix::net::UnixStream::pair().expect("a connection");
        let one = Moving {
            clocks: None,
            socket: server.into(),
            prefix: long.clone(),
            fresh: false,
            tls: None,
            http2: None,
        };
        assert!(fits(0, 0, one.wire_len() + 8), "one always fits");
        assert!(fits(1, one.wire_len() + 8, one.wire_len() + 8), "two fit");
        assert!(
            !fits(2, 2 * (one.wire_len() + 8), one.wire_len() + 8),
            "a third does not"
        );
        assert!(!fits(MAX_BATCH, 10, 5), "no more than MAX_BATCH");
        left.send(&Message::Connections(vec![one]))
            .await
            .expect("send");
        let Ok(Some(Message::Connections(got))) = right.recv().await else {
            panic!("a connection");
        };
        assert_eq!(got[0].prefix, long);
    }

    #[tokio::test]
    async fn version_2_carries_each_connections_clocks_and_version_1_is_unchanged() {
        let (left, right) = channels();
        left.send(&Message::Receiving {
            clocks: true,
            tls: false,
            http2: false,
        })
        .await
        .expect("send");
        assert!(matches!(
            right.recv().await,
            Ok(Some(Message::Receiving {
                clocks: true,
                tls: false,
                http2: false,
            }))
        ));
        let entry = |fresh: bool, clocks: Option<Clocks>| {
            let (_, server) = std::os::unix::net::UnixStream::pair().expect("a connection");
            Moving {
                socket: server.into(),
                prefix: Bytes::from_static(b"GET / HT"),
                fresh,
                clocks,
                tls: None,
                http2: None,
            }
        };
        let clocks = Clocks {
            quiet_since: 1 << 40,
            head_since: (1 << 40) + 7,
        };
        let sent = vec![
            entry(true, Some(clocks)),
            entry(false, None),
            entry(false, Some(clocks)),
        ];
        let (bytes, _) = Message::Connections(sent).encode();
        assert_eq!(bytes[0], b'c');
        left.send(&Message::Connections(vec![
            entry(true, Some(clocks)),
            entry(false, None),
            entry(false, Some(clocks)),
        ]))
        .await
        .expect("send");
        let Ok(Some(Message::Connections(got))) = right.recv().await else {
            panic!("a batch");
        };
        let got: Vec<(bool, Option<Clocks>)> = got.iter().map(|m| (m.fresh, m.clocks)).collect();
        assert_eq!(
            got,
            [(true, Some(clocks)), (false, None), (false, Some(clocks))]
        );
        // Without clocks, the bytes of version 1: a version-1 peer reads them.
        let (bytes, _) = Message::Connections(vec![entry(true, None)]).encode();
        assert_eq!(&bytes[..], b"C\x00\x01\x01\x00\x00\x00\x08GET / HT");
        let (bytes, _) = Message::Receiving {
            clocks: false,
            tls: false,
            http2: false,
        }
        .encode();
        assert_eq!(&bytes[..], b"R");
        let (bytes, _) = Message::Version { version: VERSION }.encode();
        assert_eq!(&bytes[..], b"V\x00\x00\x00\x04");
        assert!(matches!(
            Message::decode(&bytes, Vec::new()),
            Ok(Message::Version { version: 4 })
        ));
        assert!(
            Message::decode(b"V\x00\x00", Vec::new()).is_err(),
            "a short version"
        );
        let one_fd = || {
            let (_, server) = std::os::unix::net::UnixStream::pair().expect("a connection");
            vec![OwnedFd::from(server)]
        };
        assert!(
            Message::decode(b"c\x00\x01\x03\x00\x00\x00\x00", one_fd()).is_err(),
            "clocks announced, none there"
        );
        assert!(
            Message::decode(b"c\x00\x01\x04\x00\x00\x00\x00", one_fd()).is_err(),
            "unknown flags"
        );
        assert!(
            Message::decode(b"c\x00\x01\x01\x00\x00\x00\x00", one_fd()).is_ok(),
            "fresh, no clocks"
        );
    }

    #[tokio::test]
    async fn version_3_carries_tls_sessions_with_their_sealed_bytes_and_refuses_oversize_ones() {
        let (left, right) = channels();
        left.send(&Message::Receiving {
            clocks: true,
            tls: true,
            http2: false,
        })
        .await
        .expect("send");
        assert!(matches!(
            right.recv().await,
            Ok(Some(Message::Receiving {
                clocks: true,
                tls: true,
                http2: false,
            }))
        ));
        let (_client, server) = std::os::unix::net::UnixStream::pair().expect("a connection");
        let sealed = Bytes::from(vec![0x17; MAX_SEALED]);
        let moving = Moving {
            socket: server.into(),
            prefix: Bytes::from_static(b"GET / HT"),
            fresh: false,
            clocks: None,
            tls: Some(MovingTls {
                session: Zeroizing::new(vec![9; MAX_SESSION]),
                sealed: sealed.clone(),
            }),
            http2: None,
        };
        assert!(fits(0, 0, moving.wire_len() + 8));
        left.send(&Message::Forward(vec![(7, moving)]))
            .await
            .expect("send");
        let Ok(Some(Message::Forward(got))) = right.recv().await else {
            panic!("a forward");
        };
        let (id, got) = &got[0];
        assert_eq!(*id, 7);
        let tls = got.tls.as_ref().expect("the session travels");
        assert_eq!(&tls.session[..], &[9; MAX_SESSION][..]);
        assert_eq!(tls.sealed, sealed);
        assert_eq!(got.prefix, Bytes::from_static(b"GET / HT"));
        assert!(got.clocks.is_none());
        assert!(!format!("{tls:?}").contains('9'), "no key bytes in Debug");
        // Longer than allowed: refused, never allocated.
        let (bytes, _) = Message::Connections(vec![Moving {
            socket: std::os::unix::net::UnixStream::pair()
                .expect("pair")
                .1
                .into(),
            prefix: Bytes::new(),
            fresh: false,
            clocks: None,
            tls: Some(MovingTls {
                session: Zeroizing::new(vec![0; MAX_SESSION + 1]),
                sealed: Bytes::new(),
            }),
            http2: None,
        }])
        .encode();
        let fd: OwnedFd = std::os::unix::net::UnixStream::pair()
            .expect("pair")
            .0
            .into();
        assert!(Message::decode(&bytes, vec![fd]).is_err());
    }

    #[tokio::test]
    async fn version_4_carries_http2_states_beside_tls_sessions_and_refuses_oversize_ones() {
        let (left, right) = channels();
        for (tls, letter) in [(false, b'2'), (true, b'S')] {
            let receiving = Message::Receiving {
                clocks: true,
                tls,
                http2: true,
            };
            assert_eq!(&receiving.encode().0[..], &[letter]);
            left.send(&receiving).await.expect("send");
            assert!(matches!(
                right.recv().await,
                Ok(Some(Message::Receiving { clocks: true, tls: t, http2: true })) if t == tls
            ));
        }
        let state = Bytes::from(vec![7; MAX_HTTP2_STATE]);
        let moving = |http2: Option<Bytes>, tls: bool| Moving {
            socket: std::os::unix::net::UnixStream::pair()
                .expect("pair")
                .1
                .into(),
            prefix: Bytes::from_static(b"\0\0\x04"),
            fresh: false,
            clocks: Some(Clocks {
                quiet_since: 1,
                head_since: 0,
            }),
            tls: tls.then(|| MovingTls {
                session: Zeroizing::new(vec![9; 8]),
                sealed: Bytes::new(),
            }),
            http2,
        };
        left.send(&Message::Connections(vec![
            moving(Some(state.clone()), false),
            moving(Some(state.clone()), true),
            moving(None, false),
        ]))
        .await
        .expect("send");
        let Ok(Some(Message::Connections(got))) = right.recv().await else {
            panic!("connections");
        };
        assert_eq!(got[0].http2.as_ref(), Some(&state));
        assert_eq!(got[1].http2.as_ref(), Some(&state));
        assert_eq!(got[1].tls.as_ref().map(|t| t.session.len()), Some(8));
        assert_eq!(got[2].http2, None);
        assert!(got.iter().all(|m| m.clocks.is_some()));
        assert!(
            !format!("{:?}", got[0]).contains("[7"),
            "lengths only in Debug"
        );
        let mut long = state.to_vec();
        long.push(7);
        let (bytes, _) =
            Message::Connections(vec![moving(Some(Bytes::from(long)), false)]).encode();
        let fd: OwnedFd = std::os::unix::net::UnixStream::pair()
            .expect("pair")
            .0
            .into();
        assert!(
            Message::decode(&bytes, vec![fd]).is_err(),
            "longer than allowed"
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"H\0\0",
            b"H\0\x01\0\0\0\0\0\0\0\0\x07",
            b"A\0\x01\0\0\0\0\0\0\0\0\x05",
            b"A\0\0",
            b"a\x02",
            b"Z",
            b"C",
            b"C\0\x01\0\0\0\0\0",
            b"K",
            b"K0123",
            b"Rx",
        ] {
            assert!(Message::decode(bytes, Vec::new()).is_err(), "{bytes:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = Message::decode(&bytes, Vec::new());
        }
    }
}
