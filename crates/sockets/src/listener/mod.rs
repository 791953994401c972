//! Listening sockets: the ones a superdaemon passed us, or ones we bind.
//!
//! [`Listeners`] reads the socket-passing environment once (through
//! [`crate::protocol`]) and hands out each inherited socket at most once, after
//! checking that the descriptor really is a listening stream socket of the
//! family its key claims. Taken sockets are close-on-exec and non-blocking.
//! When no superdaemon is present, [`Listeners::take_all_or_bind`] binds the
//! fallback addresses instead (the Go example's `ErrNoListeningTarget` path).
//!
//! This module never writes the process environment and never calls
//! `shutdown()` on a listening socket: the socket is shared with the other
//! generations, and `shutdown()` would act on all of them.

mod fd;
mod inherited;
mod socket;

pub(crate) use fd::adopt_channel;
pub use inherited::Listeners;
pub use socket::{ListenAddr, Listener, ParseListenAddrError};
