//! HTTP/2 connections that move to the next generation at a quiet moment.
//!
//! hyper and h2 serve HTTP/2 as they are; nothing here reaches into them.
//! What lets a connection move is what flows under them:
//!
//! - [`Tracker`](tracker::Tracker) reads the frames both ways as they cross the transport (the
//!   wire's view, not h2's) and knows when the connection is quiet: no
//!   stream open, every SETTINGS and PING answered both ways, no frame in
//!   part, and the client's header table empty (the server advertises
//!   `SETTINGS_HEADER_TABLE_SIZE` 0, so that decoding a request needs no
//!   state). Then what the next generation needs fits in a few bytes
//!   ([`State`]): the client's settings, both connection windows and the
//!   last stream the client opened.
//! - [`Resume`](resume::Resume) starts a fresh h2 server connection in the next generation
//!   from that state: it reads a synthesised client preface (the client's
//!   settings, its connection window) first, and translates between h2's
//!   view and the wire's: it swallows h2's acknowledgement of the
//!   synthesised settings, sets h2's connection window updates so that the
//!   client's window is what h2 believes, and drops frames for streams the
//!   older generation closed (which a fresh h2 would take for a protocol
//!   error), giving back the flow-control credit of dropped data.
//!
//! The server's own header table needs no flush: the client's decoder
//! holds every entry the new encoder adds, in the same order, newest first,
//! with the older generation's entries behind them (evicted first), so
//! every index the new encoder sends names the same entry on both sides.

mod frames;
mod resume;
mod state;
mod tracker;
mod wire;

pub(crate) use state::State;
pub(crate) use wire::Wire;
#[cfg(feature = "fuzzing")]
pub(crate) use {resume::Resume, tracker::Tracker};
