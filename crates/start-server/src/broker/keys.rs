//! The TLS session-ticket keys every generation shares: random, in memory
//! only, replaced every `--ticket-key-rotation`.

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use gracedown_sockets::handoff::{Message, TICKET_KEY_LEN};
use tracing::info;

/// The shared session-ticket keys: the current one encrypts, the previous
/// one still decrypts (a ticket lives up to two rotation periods).
pub(super) struct KeyRing {
    current: [u8; TICKET_KEY_LEN],
    previous: Option<[u8; TICKET_KEY_LEN]>,
    every: Duration,
    next: Instant,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("KeyRing")
            .field("every", &self.every)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A fresh key, replaced every `every`.
    ///
    /// # Errors
    ///
    /// When the system has no randomness to give.
    pub(super) fn new(every: Duration) -> io::Result<Self> {
        Ok(Self {
            current: random_key()?,
            previous: None,
            every,
            next: Instant::now() + every,
        })
    }

    /// When the keys are replaced next.
    pub(super) fn next(&self) -> Instant {
        self.next
    }

    /// Replaces the current key if it is time (it becomes the previous
    /// one); `true` when the keys changed. Without randomness the current
    /// key stays for another period.
    pub(super) fn rotate_if_due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        match random_key() {
            Ok(key) => {
                self.previous = Some(std::mem::replace(&mut self.current, key));
                true
            }
            Err(e) => {
                info!("cannot make a new TLS session-ticket key ({e}); keeping the current one");
                false
            }
        }
    }

    /// The message that gives a generation the keys.
    pub(super) fn message(&self) -> Message {
        let mut keys = BytesMut::with_capacity(2 * TICKET_KEY_LEN);
        keys.extend_from_slice(&self.current);
        if let Some(previous) = &self.previous {
            keys.extend_from_slice(previous);
        }
        Message::TicketKeys {
            keys: keys.freeze(),
        }
    }
}

fn random_key() -> io::Result<[u8; TICKET_KEY_LEN]> {
    let mut key = [0u8; TICKET_KEY_LEN];
    let mut filled = 0;
    while filled < key.len() {
        filled +=
            rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(key)
}
