//! TLS session tickets every generation can open: keys shared across
//! processes (from gracedown's start_server, or from files the operator
//! made), so that a client that reconnects after a restart resumes its
//! session with the next generation instead of a full handshake.
//!
//! A ticket is `name (16) ‖ nonce (12) ‖ AES-256-GCM(state) ‖ tag (16)`, the
//! key's name as associated data. The first key encrypts; every key decrypts,
//! so tickets outlive one rotation. Key material never leaves memory (and is
//! never logged).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;

/// The length of one key: a 16-byte name, then a 32-byte AES-256 key (what
/// `openssl rand 48` makes, as for nginx's `ssl_session_ticket_key`).
pub const TICKET_KEY_LEN: usize = gracedown_sockets::handoff::TICKET_KEY_LEN;

const NAME_LEN: usize = 16;

/// How long a client may keep a ticket (a hint; the keys bound it).
const TICKET_LIFETIME_SECS: u32 = 6 * 3600;

/// Session-ticket keys shared by every generation of a server: the first
/// one encrypts new tickets, all of them open tickets.
///
/// Under gracedown's `start_server` a [`crate::serve::Server`] gets them from
/// the superdaemon (in memory, rotated there) without any setting; elsewhere
/// give every generation the same key files.
///
/// # Examples
///
/// ```no_run
/// use gracedown::tls::{TicketKeys, TlsConfig};
///
/// // `openssl rand 48 > /etc/app/ticket.key`, rotated by the operator.
/// let keys = TicketKeys::from_files(&["/etc/app/ticket.key".into()])?;
/// let tls = TlsConfig::from_pem_files("cert.pem".as_ref(), "key.pem".as_ref())?
///     .ticket_keys(&keys);
/// # Ok::<(), gracedown::Error>(())
/// ```
#[derive(Clone)]
pub struct TicketKeys {
    keys: Arc<RwLock<Vec<Key>>>,
}

struct Key {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.keys.read().map_or(0, |k| k.len());
        f.debug_struct("TicketKeys").field("keys", &count).finish()
    }
}

impl TicketKeys {
    /// Keys from files of [`TICKET_KEY_LEN`] random bytes each; the first
    /// file's key encrypts.
    ///
    /// # Errors
    ///
    /// [`Error::TlsFile`] when a file cannot be read, [`Error::TicketKeyFile`]
    /// when one does not hold exactly one key, [`Error::TlsConfig`] when no
    /// file is given.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, Error> {
        let mut bytes = Vec::with_capacity(paths.len() * TICKET_KEY_LEN);
        for path in paths {
            bytes.extend_from_slice(&read_key_file(path)?);
        }
        Self::from_bytes(&bytes).ok_or_else(|| Error::TlsConfig {
            what: "no session-ticket key file was given",
            source: "an empty list of key files".into(),
        })
    }

    /// Keys from their bytes, [`TICKET_KEY_LEN`] each; `None` when the length
    /// is not a positive multiple of it.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let keys = parse(bytes)?;
        Some(Self {
            keys: Arc::new(RwLock::new(keys)),
        })
    }

    /// Replaces the keys (a rotation); bytes of a wrong length change nothing.
    pub(crate) fn replace(&self, bytes: &[u8]) -> bool {
        match parse(bytes) {
            Some(keys) => {
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
                true
            }
            None => false,
        }
    }

    /// A rustls ticketer over these keys.
    pub(crate) fn ticketer(&self) -> Arc<dyn rustls::server::ProducesTickets> {
        Arc::new(Ticketer {
            keys: self.clone(),
            random: SystemRandom::new(),
        })
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::TlsFile {
        path: path.to_owned(),
        source,
    })?;
    if bytes.len() != TICKET_KEY_LEN {
        return Err(Error::TicketKeyFile {
            path: path.to_owned(),
            len: bytes.len(),
        });
    }
    Ok(bytes)
}

fn parse(bytes: &[u8]) -> Option<Vec<Key>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(TICKET_KEY_LEN) {
        return None;
    }
    bytes
        .chunks_exact(TICKET_KEY_LEN)
        .map(|chunk| {
            let (name, key) = chunk.split_at(NAME_LEN);
            Some(Key {
                name: name.try_into().ok()?,
                aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?),
            })
        })
        .collect()
}

/// rustls' view of [`TicketKeys`].
struct Ticketer {
    keys: TicketKeys,
    random: SystemRandom,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticketer")
            .field("keys", &self.keys)
            .finish()
    }
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self
            .keys
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let key = keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + 16);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut sealed,
            )
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let (name, rest) = cipher.split_at_checked(NAME_LEN)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let keys = self
            .keys
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let key = keys.iter().find(|k| k.name[..] == *name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(&key.name), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> Vec<u8> {
        vec![fill; TICKET_KEY_LEN]
    }

    #[test]
    fn a_ticket_opens_with_the_same_keys_in_another_ticketer_and_after_a_rotation() {
        let one = TicketKeys::from_bytes(&key(1)).expect("keys").ticketer();
        let ticket = one.encrypt(b"session state").expect("a ticket");
        assert_ne!(&ticket[NAME_LEN + NONCE_LEN..], b"session state");
        // Another generation with the same keys.
        let two_keys = TicketKeys::from_bytes(&key(1)).expect("keys");
        let two = two_keys.ticketer();
        assert_eq!(two.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        // Rotated: a new key encrypts, the old one still opens.
        assert!(two_keys.replace(&[key(2), key(1)].concat()));
        assert_eq!(two.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        let newer = two.encrypt(b"x").expect("a ticket");
        assert_eq!(&newer[..NAME_LEN], &key(2)[..NAME_LEN]);
        // Rotated twice: the oldest key is gone.
        assert!(two_keys.replace(&[key(3), key(2)].concat()));
        assert_eq!(two.decrypt(&ticket), None);
    }

    #[test]
    fn forged_short_or_foreign_tickets_open_to_nothing() {
        let ticketer = TicketKeys::from_bytes(&key(7)).expect("keys").ticketer();
        let mut ticket = ticketer.encrypt(b"state").expect("a ticket");
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert_eq!(ticketer.decrypt(&ticket), None, "tampered");
        for short in 0..(NAME_LEN + NONCE_LEN + 16) {
            assert_eq!(ticketer.decrypt(&ticket[..short]), None);
        }
        let foreign = TicketKeys::from_bytes(&key(8)).expect("keys").ticketer();
        let theirs = foreign.encrypt(b"state").expect("a ticket");
        assert_eq!(ticketer.decrypt(&theirs), None);
    }

    #[test]
    fn keys_of_a_wrong_length_are_refused() {
        assert!(TicketKeys::from_bytes(&[]).is_none());
        assert!(TicketKeys::from_bytes(&[0; 47]).is_none());
        assert!(TicketKeys::from_bytes(&[0; 49]).is_none());
        let keys = TicketKeys::from_bytes(&key(1)).expect("keys");
        assert!(!keys.replace(&[0; 50]), "a bad rotation changes nothing");
    }

    #[test]
    fn key_files_must_hold_exactly_one_key() {
        let dir = std::env::temp_dir().join(format!("gd-ticket-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.key");
        let bad = dir.join("bad.key");
        std::fs::write(&good, key(3)).expect("write");
        std::fs::write(&bad, [0u8; 80]).expect("write");
        assert!(TicketKeys::from_files(std::slice::from_ref(&good)).is_ok());
        let e = TicketKeys::from_files(&[good, bad.clone()]).expect_err("80 bytes");
        assert!(e.to_string().contains("has 80 bytes"), "{e}");
        assert!(e.to_string().contains(&bad.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
