//! A TLS session that moves to another process on the same TCP connection.
//!
//! At a quiet moment (a message boundary, no record half-read, nothing left
//! to send) a server connection's record protection is taken out of rustls
//! ([`SessionState::extract`]: the negotiated AEAD, and per direction the
//! key, the IV and the sequence number of the next record), encoded for the
//! handoff channel ([`SessionState::encode`]), and continued by
//! [`ContinuedTls`] in the next generation, which can pass it on again.
//!
//! The AEADs are ring's (`ring::aead`, the code rustls's ring provider runs):
//! rustls's own `MessageEncrypter`s cannot be rebuilt from extracted secrets
//! in another process (its `AeadKey` has no public constructor for a 16-byte
//! key). Only the nonce and the additional data are formed here, as the RFCs
//! give them: TLS 1.3, RFC 8446 §5.2–5.3; TLS 1.2 AES-GCM, RFC 5288 §3 (the
//! nonce's explicit part is rustls's, the IV xor the sequence number);
//! TLS 1.2 ChaCha20-Poly1305, RFC 7905 §2. The tests hold them to a real
//! rustls client in every suite.
//!
//! What cannot be continued exactly closes the connection: a KeyUpdate (its
//! new keys derive from a traffic secret that was not extracted), any other
//! handshake message, an alert other than `close_notify`, a record that does
//! not open. Sequence numbers travel with the keys and only ever increase, so
//! no record is sealed twice under one nonce. The keys' bytes live in
//! zeroizing buffers here and on the handoff channel, and are never logged
//! (`Debug` shows none of them); ring's expanded keys are not zeroed, as in
//! rustls's ring provider.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::Zeroizing;

/// A record header: type, legacy version, length.
const HEADER: usize = 5;
/// The largest plaintext a record carries (RFC 8446 §5.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// The largest record payload accepted: TLS 1.3 allows 2^14 + 256 (RFC 8446
/// §5.2), TLS 1.2 2^14 + 2048 (RFC 5246 §6.2.3).
const MAX_PAYLOAD: usize = MAX_PLAINTEXT + 2048;
const MAX_PAYLOAD_TLS13: usize = MAX_PLAINTEXT + 256;
/// The least a read asks for (more when a record needs more).
const READ_AT_LEAST: usize = 4096;
/// Every suite here has a 16-byte tag.
const TAG: usize = 16;
/// TLS 1.2 AES-GCM sends 8 bytes of its nonce in each record.
const GCM_EXPLICIT: usize = 8;
const NONCE: usize = aead::NONCE_LEN;
const MAX_KEY: usize = 32;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const CLOSE_NOTIFY: u8 = 0;
const KEY_UPDATE: u8 = 24;

/// How many records one AES-GCM key may seal (RFC 8446 §5.5 allows 2^24.5;
/// rustls stops at 2^24, and so does this); the connection closes there,
/// since a moved session cannot update its keys.
const AES_GCM_RECORD_LIMIT: u64 = 1 << 24;

/// Why a session cannot move, or cannot be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// rustls would not give the secrets (extraction disabled, a handshake
    /// in progress, records still to send).
    #[error("the TLS session's secrets could not be extracted: {0}")]
    Extract(#[from] rustls::Error),
    /// A protocol version or AEAD this module does not continue.
    #[error("the TLS session cannot move: {0}")]
    Unsupported(&'static str),
    /// An encoded session that is not one.
    #[error("a moved TLS session is malformed: {0}")]
    Malformed(&'static str),
}

/// The protocol version of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Tls12,
    Tls13,
}

/// The AEAD that protects a session's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn key_len(self) -> usize {
        self.algorithm().key_len()
    }

    fn record_limit(self) -> u64 {
        match self {
            Self::Aes128Gcm | Self::Aes256Gcm => AES_GCM_RECORD_LIMIT,
            Self::Chacha20Poly1305 => u64::MAX,
        }
    }
}

/// One direction's record protection: its key, its IV, and the sequence
/// number of its next record.
struct Direction {
    key: Zeroizing<[u8; MAX_KEY]>,
    iv: Zeroizing<[u8; NONCE]>,
    seq: u64,
}

impl Direction {
    fn from_rustls(
        seq: u64,
        secrets: ConnectionTrafficSecrets,
    ) -> Result<(Cipher, Self), SessionError> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => {
                return Err(SessionError::Unsupported(
                    "an AEAD other than AES-GCM or ChaCha20-Poly1305",
                ));
            }
        };
        let (key, iv) = (key.as_ref(), iv.as_ref());
        if key.len() != cipher.key_len() || iv.len() != NONCE {
            return Err(SessionError::Unsupported(
                "key or IV of an unexpected length",
            ));
        }
        Ok((cipher, Self::new(seq, key, iv)))
    }

    /// A direction from its parts (`key` at most [`MAX_KEY`] bytes, `iv`
    /// [`NONCE`] bytes, as the callers check).
    fn new(seq: u64, key: &[u8], iv: &[u8]) -> Self {
        let mut direction = Self {
            key: Zeroizing::new([0; MAX_KEY]),
            iv: Zeroizing::new([0; NONCE]),
            seq,
        };
        direction.key[..key.len()].copy_from_slice(key);
        direction.iv.copy_from_slice(iv);
        direction
    }
}

/// Everything the next generation needs to continue a TLS session's records.
pub(crate) struct SessionState {
    version: Version,
    cipher: Cipher,
    /// What the server sends.
    tx: Direction,
    /// What the client sends.
    rx: Direction,
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("SessionState")
            .field("version", &self.version)
            .field("cipher", &self.cipher)
            .field("tx_seq", &self.tx.seq)
            .field("rx_seq", &self.rx.seq)
            .finish_non_exhaustive()
    }
}

/// The first byte of an encoded session: its layout.
const FORMAT: u8 = 1;

impl SessionState {
    /// Takes the record protection out of a server connection whose
    /// handshake is done and which has nothing left to send; the connection
    /// is consumed (it must never send again: its next record would reuse a
    /// nonce the next generation uses).
    ///
    /// # Errors
    ///
    /// When rustls refuses (secret extraction not enabled in its
    /// configuration, records still to send) or the session's version or
    /// AEAD is not one continued here.
    pub(crate) fn extract(conn: ServerConnection) -> Result<Self, SessionError> {
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => Version::Tls13,
            Some(ProtocolVersion::TLSv1_2) => Version::Tls12,
            _ => {
                return Err(SessionError::Unsupported(
                    "a TLS version other than 1.2 or 1.3",
                ));
            }
        };
        let secrets = conn.dangerous_extract_secrets()?;
        let (tx_cipher, tx) = Direction::from_rustls(secrets.tx.0, secrets.tx.1)?;
        let (rx_cipher, rx) = Direction::from_rustls(secrets.rx.0, secrets.rx.1)?;
        if tx_cipher != rx_cipher {
            return Err(SessionError::Unsupported(
                "a different AEAD in each direction",
            ));
        }
        Ok(Self {
            version,
            cipher: tx_cipher,
            tx,
            rx,
        })
    }

    /// The session as bytes for the handoff channel (in a zeroizing buffer).
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let key_len = self.cipher.key_len();
        let mut out = Zeroizing::new(Vec::with_capacity(3 + 2 * (8 + key_len + NONCE)));
        out.push(FORMAT);
        out.push(match self.version {
            Version::Tls12 => 2,
            Version::Tls13 => 3,
        });
        out.push(match self.cipher {
            Cipher::Aes128Gcm => 1,
            Cipher::Aes256Gcm => 2,
            Cipher::Chacha20Poly1305 => 3,
        });
        for direction in [&self.tx, &self.rx] {
            out.extend_from_slice(&direction.seq.to_be_bytes());
            out.extend_from_slice(&direction.key[..key_len]);
            out.extend_from_slice(&direction.iv[..]);
        }
        out
    }

    /// Reads a session written by [`SessionState::encode`].
    ///
    /// # Errors
    ///
    /// [`SessionError::Malformed`] for anything else (never a panic).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        let [format, version, cipher, rest @ ..] = bytes else {
            return Err(SessionError::Malformed("shorter than its header"));
        };
        if *format != FORMAT {
            return Err(SessionError::Malformed("an unknown layout"));
        }
        let version = match version {
            2 => Version::Tls12,
            3 => Version::Tls13,
            _ => return Err(SessionError::Malformed("an unknown TLS version")),
        };
        let cipher = match cipher {
            1 => Cipher::Aes128Gcm,
            2 => Cipher::Aes256Gcm,
            3 => Cipher::Chacha20Poly1305,
            _ => return Err(SessionError::Malformed("an unknown AEAD")),
        };
        let key_len = cipher.key_len();
        let each = 8 + key_len + NONCE;
        if rest.len() != 2 * each {
            return Err(SessionError::Malformed("the wrong length for its AEAD"));
        }
        let direction = |bytes: &[u8]| {
            let (seq, bytes) = bytes.split_at(8);
            let (key, iv) = bytes.split_at(key_len);
            Direction::new(
                u64::from_be_bytes(seq.try_into().unwrap_or_default()),
                key,
                iv,
            )
        };
        Ok(Self {
            version,
            cipher,
            tx: direction(&rest[..each]),
            rx: direction(&rest[each..]),
        })
    }
}

/// One direction's record protection, ready to seal or open.
struct Protection {
    version: Version,
    cipher: Cipher,
    key: LessSafeKey,
    direction: Direction,
}

impl Protection {
    fn new(version: Version, cipher: Cipher, direction: Direction) -> io::Result<Self> {
        let key = UnboundKey::new(cipher.algorithm(), &direction.key[..cipher.key_len()])
            .map_err(|_| invalid("a moved TLS key of the wrong length"))?;
        Ok(Self {
            version,
            cipher,
            key: LessSafeKey::new(key),
            direction,
        })
    }

    /// The per-record nonce: the IV xor the sequence number, right-aligned
    /// (TLS 1.3, ChaCha20-Poly1305, and rustls's TLS 1.2 AES-GCM).
    fn nonce(&self) -> [u8; NONCE] {
        let mut nonce = *self.direction.iv;
        for (n, s) in nonce[NONCE - 8..]
            .iter_mut()
            .zip(self.direction.seq.to_be_bytes())
        {
            *n ^= s;
        }
        nonce
    }

    /// Takes the sequence number of the record about to be sealed or opened.
    fn next_seq(&mut self, limit: u64) -> io::Result<u64> {
        let seq = self.direction.seq;
        if seq >= limit {
            return Err(invalid(
                "the moved TLS session reached its key's record limit",
            ));
        }
        self.direction.seq = seq + 1;
        Ok(seq)
    }

    /// Seals `plaintext` as one record of type `typ`, appended to `out`.
    fn seal(&mut self, typ: u8, plaintext: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        debug_assert!(plaintext.len() <= MAX_PLAINTEXT);
        let nonce = self.nonce();
        let seq = self.next_seq(self.cipher.record_limit())?;
        let start = out.len();
        match self.version {
            Version::Tls13 => {
                // The inner plaintext: content, then its real type.
                let len = plaintext.len() + 1 + TAG;
                let header = record_header(APPLICATION_DATA, len);
                out.extend_from_slice(&header);
                out.extend_from_slice(plaintext);
                out.push(typ);
                let Ok(tag) = self.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(header),
                    &mut out[start + HEADER..],
                ) else {
                    // Never written in the clear.
                    out.truncate(start);
                    return Err(invalid("sealing a TLS record failed"));
                };
                out.extend_from_slice(tag.as_ref());
            }
            Version::Tls12 => {
                let explicit = match self.cipher {
                    Cipher::Aes128Gcm | Cipher::Aes256Gcm => GCM_EXPLICIT,
                    Cipher::Chacha20Poly1305 => 0,
                };
                let header = record_header(typ, explicit + plaintext.len() + TAG);
                out.extend_from_slice(&header);
                out.extend_from_slice(&nonce[NONCE - explicit..]);
                out.extend_from_slice(plaintext);
                let Ok(tag) = self.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(tls12_aad(seq, typ, [3, 3], plaintext.len())),
                    &mut out[start + HEADER + explicit..],
                ) else {
                    // Never written in the clear.
                    out.truncate(start);
                    return Err(invalid("sealing a TLS record failed"));
                };
                out.extend_from_slice(tag.as_ref());
            }
        }
        Ok(())
    }

    /// Opens one record's payload in place; returns its content type and
    /// where its content lies in `payload`.
    fn open(
        &mut self,
        header: [u8; HEADER],
        payload: &mut [u8],
    ) -> io::Result<(u8, std::ops::Range<usize>)> {
        let nonce = self.nonce();
        let seq = self.next_seq(u64::MAX)?;
        let unopened = || invalid("a TLS record from the client did not open");
        match self.version {
            Version::Tls13 => {
                if header[0] != APPLICATION_DATA {
                    return Err(invalid("an unprotected TLS record after the handshake"));
                }
                let inner = self
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(header),
                        payload,
                    )
                    .map_err(|_| unopened())?;
                // The real type is the last byte that is not padding.
                let end = inner.iter().rposition(|&b| b != 0).ok_or_else(unopened)?;
                Ok((inner[end], 0..end))
            }
            Version::Tls12 => {
                let typ = header[0];
                let (nonce, explicit) = match self.cipher {
                    Cipher::Aes128Gcm | Cipher::Aes256Gcm => {
                        if payload.len() < GCM_EXPLICIT + TAG {
                            return Err(unopened());
                        }
                        let mut nonce = *self.direction.iv;
                        nonce[NONCE - GCM_EXPLICIT..].copy_from_slice(&payload[..GCM_EXPLICIT]);
                        (nonce, GCM_EXPLICIT)
                    }
                    Cipher::Chacha20Poly1305 => (nonce, 0),
                };
                let len = payload
                    .len()
                    .checked_sub(explicit + TAG)
                    .ok_or_else(unopened)?;
                let content = self
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(tls12_aad(seq, typ, [header[1], header[2]], len)),
                        &mut payload[explicit..],
                    )
                    .map_err(|_| unopened())?;
                Ok((typ, explicit..explicit + content.len()))
            }
        }
    }
}

fn record_header(typ: u8, len: usize) -> [u8; HEADER] {
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [typ, 3, 3, len[0], len[1]]
}

/// TLS 1.2's additional data: sequence number, type, the record's version,
/// plaintext length.
fn tls12_aad(seq: u64, typ: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&version);
    aad[11..].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    aad
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// A TLS session continued from another process over `IO` (the same TCP
/// connection): it opens the client's records and seals the server's with
/// the moved keys, from the moved sequence numbers on.
pub(crate) struct ContinuedTls<IO> {
    io: IO,
    tx: Protection,
    rx: Protection,
    /// Received, not yet opened.
    sealed_in: BytesMut,
    /// Opened, not yet read.
    plain: Bytes,
    /// Sealed, not yet written.
    sealed_out: Vec<u8>,
    written: usize,
    /// The client sent `close_notify`.
    read_closed: bool,
    /// Ours is sealed.
    close_sent: bool,
    /// A record did not open (or was malformed), or one could not be
    /// sealed: every later read and write fails, and no `close_notify` is
    /// sent (the session is not trusted any more).
    failed: bool,
}

impl<IO> fmt::Debug for ContinuedTls<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContinuedTls")
            .field("version", &self.tx.version)
            .field("cipher", &self.tx.cipher)
            .field("tx_seq", &self.tx.direction.seq)
            .field("rx_seq", &self.rx.direction.seq)
            .finish_non_exhaustive()
    }
}

impl<IO> ContinuedTls<IO> {
    /// Continues `state` over `io`; `sealed` are records (or the start of
    /// one) the previous holder read from the connection and did not open.
    ///
    /// # Errors
    ///
    /// When a key does not suit its AEAD.
    pub(crate) fn new(io: IO, state: SessionState, sealed: Bytes) -> io::Result<Self> {
        let SessionState {
            version,
            cipher,
            tx,
            rx,
        } = state;
        Ok(Self {
            io,
            tx: Protection::new(version, cipher, tx)?,
            rx: Protection::new(version, cipher, rx)?,
            sealed_in: BytesMut::from(sealed),
            plain: Bytes::new(),
            sealed_out: Vec::new(),
            written: 0,
            read_closed: false,
            close_sent: false,
            failed: false,
        })
    }

    /// The transport under the session.
    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Takes the session apart to move it again: the transport, the
    /// session's state, what was opened and not yet read (plaintext), and
    /// what was received and not yet opened. `Err` with the session back
    /// while sealed records wait to be written, once either side closed, or
    /// with more received and unopened than a move carries.
    pub(crate) fn into_parts(
        self: Box<Self>,
    ) -> Result<(IO, SessionState, Bytes, Bytes), Box<Self>> {
        if self.written < self.sealed_out.len()
            || self.read_closed
            || self.close_sent
            || self.failed
            || self.sealed_in.len() > gracedown_sockets::handoff::MAX_SEALED
        {
            return Err(self);
        }
        let this = *self;
        let state = SessionState {
            version: this.tx.version,
            cipher: this.tx.cipher,
            tx: this.tx.direction,
            rx: this.rx.direction,
        };
        Ok((this.io, state, this.plain, this.sealed_in.freeze()))
    }

    /// Opens the next whole record in `sealed_in`, if there is one: its
    /// content goes to `plain`; `close_notify` ends reading.
    fn open_next(&mut self) -> io::Result<bool> {
        let Some(header) = self.sealed_in.get(..HEADER) else {
            return Ok(false);
        };
        let header: [u8; HEADER] = header.try_into().unwrap_or_default();
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let max = match self.rx.version {
            Version::Tls13 => MAX_PAYLOAD_TLS13,
            Version::Tls12 => MAX_PAYLOAD,
        };
        if len > max {
            return Err(invalid("a TLS record longer than the protocol allows"));
        }
        if header[0] == CHANGE_CIPHER_SPEC {
            return Err(invalid("a change_cipher_spec record after the handshake"));
        }
        if self.sealed_in.len() < HEADER + len {
            return Ok(false);
        }
        let mut record = self.sealed_in.split_to(HEADER + len);
        record.advance(HEADER);
        let (typ, content) = self.rx.open(header, &mut record)?;
        if content.len() > MAX_PLAINTEXT {
            return Err(invalid(
                "a TLS record's plaintext longer than the protocol allows",
            ));
        }
        match typ {
            APPLICATION_DATA => self.plain = record.freeze().slice(content),
            ALERT
                if record[content.clone()] == [1, CLOSE_NOTIFY][..]
                    || record[content.clone()] == [2, CLOSE_NOTIFY][..] =>
            {
                self.read_closed = true;
            }
            ALERT => return Err(invalid("the client sent a TLS alert")),
            HANDSHAKE if record[content].first() == Some(&KEY_UPDATE) => {
                return Err(invalid(
                    "the client sent a TLS KeyUpdate, which a moved session cannot follow",
                ));
            }
            HANDSHAKE => return Err(invalid("a TLS handshake message after the handshake")),
            _ => return Err(invalid("a TLS record of an unknown type")),
        }
        Ok(true)
    }
}

impl<IO: AsyncWrite + Unpin> ContinuedTls<IO> {
    /// Writes what is sealed; ready once all of it is written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.sealed_out.len() {
            let n =
                ready!(Pin::new(&mut self.io).poll_write(cx, &self.sealed_out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.sealed_out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ContinuedTls<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(invalid("the moved TLS session failed")));
            }
            match this.open_next() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    this.failed = true;
                    return Poll::Ready(Err(e));
                }
            }
            // Room for the rest of the record under way (at least a small
            // read's worth); zeroed, so that no unsafe code is needed to read
            // into it, and sized to the record so that a small request costs
            // a small clearing.
            let start = this.sealed_in.len();
            let rest = match this.sealed_in.get(3..HEADER) {
                Some(len) => (HEADER + usize::from(u16::from_be_bytes([len[0], len[1]])))
                    .saturating_sub(start),
                None => HEADER - start,
            };
            this.sealed_in.resize(start + rest.max(READ_AT_LEAST), 0);
            let mut read = ReadBuf::new(&mut this.sealed_in[start..]);
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut read);
            let n = read.filled().len();
            this.sealed_in.truncate(start + n);
            ready!(polled)?;
            if n == 0 {
                // The client closed without close_notify (as rustls tells it).
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed without close_notify",
                )));
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ContinuedTls<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(invalid("the moved TLS session failed")));
        }
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_PLAINTEXT);
        if let Err(e) = this
            .tx
            .seal(APPLICATION_DATA, &buf[..n], &mut this.sealed_out)
        {
            this.failed = true;
            return Poll::Ready(Err(e));
        }
        // Written now as far as the socket takes it; the rest on the next
        // write or flush (the record is the session's from here on).
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent && !this.failed {
            this.close_sent = true;
            // A warning-level close_notify (RFC 8446 §6.1).
            if let Err(e) = this
                .tx
                .seal(ALERT, &[1, CLOSE_NOTIFY], &mut this.sealed_out)
            {
                this.failed = true;
                return Poll::Ready(Err(e));
            }
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// What taking a session out of rustls left.
pub(crate) enum TakeOut<IO> {
    /// The transport, the session, and the plaintext rustls had opened and
    /// nobody had read yet (in front of what the session reads next).
    Taken {
        io: IO,
        state: SessionState,
        plain: Bytes,
    },
    /// Not a quiet moment (a record read in part, records to send, the
    /// client closed): the stream back, untouched.
    NotQuiet(Box<tokio_rustls::server::TlsStream<Records<IO>>>),
    /// rustls would not give the secrets; the connection is lost.
    Failed(SessionError),
}

/// Takes the session out of a rustls server stream, if rustls holds no
/// record in part and nothing to send: the stream is consumed, and must
/// never send again.
pub(crate) fn take_out<IO>(
    mut stream: Box<tokio_rustls::server::TlsStream<Records<IO>>>,
) -> TakeOut<IO> {
    let (records, conn) = stream.get_mut();
    let quiet = records.at_boundary() && !conn.wants_write() && !conn.is_handshaking();
    let pending = match conn.process_new_packets() {
        // Processing may queue a record (a key update asked for): then the
        // stream sends it first.
        Ok(state) if quiet && !state.peer_has_closed() && !conn.wants_write() => {
            state.plaintext_bytes_to_read()
        }
        _ => return TakeOut::NotQuiet(stream),
    };
    let mut plain = vec![0u8; pending];
    if std::io::Read::read_exact(&mut conn.reader(), &mut plain).is_err() {
        return TakeOut::NotQuiet(stream);
    }
    let (records, conn) = stream.into_inner();
    match SessionState::extract(conn) {
        Ok(state) => TakeOut::Taken {
            io: records.into_inner(),
            state,
            plain: Bytes::from(plain),
        },
        Err(e) => TakeOut::Failed(e),
    }
}

/// The transport under rustls, which notes where the TLS records it passes
/// up end, so that a session is taken out of rustls only when rustls holds
/// no record in part ([`Records::at_boundary`]): rustls opens every whole
/// record it reads, and a part of one would be lost with it.
#[derive(Debug)]
pub(crate) struct Records<IO> {
    io: IO,
    /// The header of the next record, as far as it has been read.
    header: [u8; HEADER],
    header_len: usize,
    /// What is still to come of the current record's payload.
    payload_left: usize,
}

impl<IO> Records<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self {
            io,
            header: [0; HEADER],
            header_len: 0,
            payload_left: 0,
        }
    }

    /// The transport.
    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The transport, once rustls is done with it.
    pub(crate) fn into_inner(self) -> IO {
        self.io
    }

    /// Whether what was read so far ends at a record boundary.
    pub(crate) fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_left == 0
    }

    /// Follows the record boundaries through `bytes`, just read.
    fn follow(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == HEADER {
                self.header_len = 0;
                self.payload_left =
                    usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Records<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.follow(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Records<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
