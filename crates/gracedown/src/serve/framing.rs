//! Where each HTTP/1 request head starts and ends in the bytes a client
//! sends, followed read by read without buffering: heads are scanned for
//! bare LF line endings (a request-smuggling vector, RFC 9112 §2.2), bodies
//! are skipped by their framing (`Content-Length` counted, chunked decoded
//! size line by size line), mirroring what hyper accepts.
//!
//! Two uses: a bare LF is refused for exactly the request whose head has it,
//! and the server can prove that hyper holds no unparsed byte (the tracker
//! is between messages and has seen as many heads as requests started), the
//! condition for picking a connection up again at a boundary. When it cannot
//! follow (a framing hyper refuses anyway, or a divergence), it says so and
//! every later request on the connection is refused: it fails closed.

/// A copy of the bytes since the last message boundary, kept while they are
/// (the start of) a request head: what hyper holds when it waits for the
/// rest of a head, so that the connection can move with them.
#[derive(Debug)]
pub(crate) struct HeadCopy {
    bytes: bytes::BytesMut,
    /// Whether `bytes` is all of it (not past a head, not over the limit).
    whole: bool,
    limit: usize,
}

impl HeadCopy {
    /// Starts at a boundary; keeps at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            bytes: bytes::BytesMut::new(),
            whole: true,
            limit,
        }
    }

    /// Follows `new`, just fed to `framing`.
    pub(crate) fn follow(&mut self, framing: &Framing, new: &[u8]) {
        match framing.last_boundary() {
            Some(at) => {
                self.bytes.clear();
                self.whole = true;
                self.push(&new[at..]);
            }
            None => self.push(new),
        }
        if !framing.in_head() {
            self.bytes.clear();
            self.whole = false;
        }
    }

    fn push(&mut self, new: &[u8]) {
        if !self.whole {
            return;
        }
        if self.bytes.len() + new.len() > self.limit {
            self.bytes.clear();
            self.whole = false;
            return;
        }
        self.bytes.extend_from_slice(new);
    }

    /// The bytes since the last boundary, if they are all here.
    pub(crate) fn take(&mut self) -> Option<bytes::Bytes> {
        self.whole.then(|| std::mem::take(&mut self.bytes).freeze())
    }
}

/// What [`Framing::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding {
    Nothing,
    /// The head of request number `n` (1-based) has a bare LF line ending.
    BareLf(u64),
    /// The boundaries are lost from request number `n` on.
    Lost(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before or inside a request head.
    Head(Head),
    /// `n` more body bytes (`Content-Length`).
    Body(u64),
    /// A chunk-size line's hex digits (hyper: `Size`).
    ChunkSize(u64),
    /// Whitespace after the size (`SizeLws`).
    ChunkLws(u64),
    /// A chunk extension (`Extension`).
    ChunkExt(u64),
    /// The CR of the size line was seen (`SizeLf`).
    ChunkSizeLf(u64),
    /// `n` more bytes of chunk data.
    ChunkData(u64),
    /// The CR, then the LF after chunk data (`BodyCr`, `BodyLf`).
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk: the final CRLF, or a trailer field (`EndCr`).
    ChunkEndCr,
    ChunkEndLf,
    Trailer,
    TrailerLf,
    /// Lost the boundaries: hyper refuses what comes, or an upgrade took over.
    Lost,
}

/// What the head scan knows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Head {
    /// The request line has started (leading empty lines are skipped, as httparse does).
    started: bool,
    /// Bytes in the current line, CR excluded.
    line_len: u32,
    field: Field,
    content_length: Option<u64>,
    /// `Some` once a `Transfer-Encoding` field was seen: whether its last
    /// coding is `chunked`. A `Content-Length` after it is ignored, as hyper does.
    chunked: Option<bool>,
}

/// Which field the current line is, as far as its name tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Field {
    /// Still reading the name.
    #[default]
    Name,
    ContentLength {
        value: u64,
        digits: bool,
    },
    /// A `Content-Length` that is no number (signed, a list, overflowing).
    BadContentLength,
    /// How much of `chunked` the value ends with so far.
    TransferEncoding {
        tail: u8,
    },
    Other,
}

const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
const CHUNKED: &[u8] = b"chunked";

/// The boundary tracker of one HTTP/1 connection.
#[derive(Debug, Clone)]
pub(crate) struct Framing {
    state: State,
    /// The previous byte on the wire.
    prev: u8,
    /// Request heads started.
    heads: u64,
    /// The current line's name, lowercased, while it is read.
    name: [u8; 17],
    name_len: u8,
    /// Where in the bytes of the last [`Framing::feed`] the last message
    /// boundary was (the index of the byte after it).
    last_boundary: Option<usize>,
    /// The current trailer section as hyper counts it: its bytes (from its
    /// first one, line endings included) and its fields.
    trailer_bytes: u32,
    trailer_fields: u32,
}

/// hyper's bounds on a chunked body's trailer section (its defaults, which
/// the server keeps): fields, and bytes (the section may not reach it).
const TRAILER_FIELDS: u32 = 100;
const TRAILER_BYTES: u32 = 16 * 1024;

impl Default for Framing {
    fn default() -> Self {
        Self::after(0)
    }
}

impl Framing {
    /// A tracker for a connection on which `requests` have already started,
    /// picked up at a message boundary.
    pub(crate) fn after(requests: u64) -> Self {
        Self {
            state: State::Head(Head::default()),
            prev: b'\n',
            heads: requests,
            name: [0; 17],
            name_len: 0,
            last_boundary: None,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// Stops watching: an upgrade took the connection over (not a failure).
    pub(crate) fn upgraded(&mut self) {
        self.state = State::Lost;
    }

    /// Whether the client's bytes so far end exactly at a message boundary
    /// after `requests` requests: then hyper holds no byte it has not parsed.
    pub(crate) fn at_boundary(&self, requests: u64) -> bool {
        matches!(self.state, State::Head(head) if !head.started) && self.heads == requests
    }

    /// Whether a request head has started arriving that hyper has not yet
    /// dispatched, after `requests` requests.
    pub(crate) fn head_pending(&self, requests: u64) -> bool {
        self.heads > requests || matches!(self.state, State::Head(head) if head.started)
    }

    /// Whether exactly one request head, not yet complete, has started
    /// after `requests` requests: what hyper holds is that head's bytes.
    pub(crate) fn one_head_pending(&self, requests: u64) -> bool {
        matches!(self.state, State::Head(head) if head.started) && self.heads == requests + 1
    }

    /// While a request body is still arriving (its data, chunk framing or
    /// trailers): how many bytes can be read without reading past its end,
    /// at least one (the rest of a `Content-Length` body or of a chunk's
    /// data; one byte of chunk framing or trailers at a time). `None` in a
    /// head, between messages, or when the framing is lost.
    pub(crate) fn body_left(&self) -> Option<u64> {
        match self.state {
            State::Head(_) | State::Lost => None,
            State::Body(left) | State::ChunkData(left) => Some(left.max(1)),
            _ => Some(1),
        }
    }

    /// How many request heads have started (the fuzz targets compare it
    /// with what hyper parsed).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn requests_started(&self) -> u64 {
        self.heads
    }

    /// Whether the next byte is part of a request head (or before one).
    pub(crate) fn in_head(&self) -> bool {
        matches!(self.state, State::Head(_))
    }

    /// Where in the bytes of the last [`Framing::feed`] the last message
    /// boundary was: the index of the first byte after it.
    pub(crate) fn last_boundary(&self) -> Option<usize> {
        self.last_boundary
    }

    /// Follows `bytes`, the next ones the client sent.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Finding {
        self.last_boundary = None;
        self.follow::<true>(bytes)
    }

    /// [`Framing::feed`] without [`Framing::plain_line`]: what the tests
    /// hold the whole-line steps to.
    #[cfg(test)]
    fn feed_bytewise(&mut self, bytes: &[u8]) -> Finding {
        self.last_boundary = None;
        self.follow::<false>(bytes)
    }

    fn follow<const LINES: bool>(&mut self, bytes: &[u8]) -> Finding {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Lost => return Finding::Nothing,
                State::Body(left) | State::ChunkData(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    let done = take == left;
                    self.state = match (self.state, done) {
                        (State::Body(_), true) => State::Head(Head::default()),
                        (State::Body(_), false) => State::Body(left - take),
                        (_, true) => State::ChunkDataCr,
                        (_, false) => State::ChunkData(left - take),
                    };
                    // A body's last byte is no line ending.
                    self.prev = 0;
                }
                _ => {
                    if let Some(n) = LINES.then(|| self.plain_line(&bytes[i..])).flatten() {
                        i += n;
                        continue;
                    }
                    // Inside a head line, the bytes up to the next one that
                    // matters are taken in one step: a field name up to its
                    // colon, the rest of a line that frames nothing (most of
                    // a head) up to its end.
                    if let State::Head(head) = &mut self.state
                        && head.started
                    {
                        let rest = &bytes[i..];
                        let n = match head.field {
                            Field::Other => rest
                                .iter()
                                .position(|&b| b == b'\r' || b == b'\n')
                                .unwrap_or(rest.len()),
                            Field::Name => rest
                                .iter()
                                .position(|&b| matches!(b, b':' | b'\r' | b'\n'))
                                .unwrap_or(rest.len()),
                            _ => 0,
                        };
                        if n > 0 {
                            if head.field == Field::Name {
                                let at = usize::from(self.name_len);
                                match self.name.get_mut(at..at + n) {
                                    Some(name) => {
                                        for (to, from) in name.iter_mut().zip(&rest[..n]) {
                                            *to = from.to_ascii_lowercase();
                                        }
                                        // At most the name's 17 bytes.
                                        self.name_len += n as u8;
                                    }
                                    // Longer than any name that frames a body.
                                    None => head.field = Field::Other,
                                }
                            }
                            let len = u32::try_from(n).unwrap_or(u32::MAX);
                            head.line_len = head.line_len.saturating_add(len);
                            self.prev = rest[n - 1];
                            i += n;
                            continue;
                        }
                    }
                    let b = bytes[i];
                    i += 1;
                    let finding = self.byte(b);
                    self.prev = b;
                    if finding != Finding::Nothing {
                        return finding;
                    }
                }
            }
            if matches!(self.state, State::Head(head) if !head.started) {
                self.last_boundary = Some(i);
            }
        }
        Finding::Nothing
    }

    /// Takes a whole head line that frames nothing in one step: at the
    /// start of a line, when `rest` holds all of it up to its CRLF, it has
    /// no other CR, and it is the request line or a field other than
    /// `Content-Length` and `Transfer-Encoding` (most of every head).
    /// Returns the bytes taken, CRLF included; `None` leaves the line to the
    /// byte-wise path (which the tests hold this one to).
    fn plain_line(&mut self, rest: &[u8]) -> Option<usize> {
        let State::Head(head) = &mut self.state else {
            return None;
        };
        if head.line_len != 0 || head.field != Field::Name {
            return None;
        }
        // The empty line that ends a head, and empty lines before one.
        if matches!(rest.first(), None | Some(b'\r' | b'\n')) {
            return None;
        }
        let cr = memchr::memchr2(b'\r', b'\n', rest)?;
        if rest[cr] != b'\r' || rest.get(cr + 1) != Some(&b'\n') {
            return None;
        }
        let line = &rest[..cr];
        // A name is all before the first colon.
        let named = |name: &[u8]| {
            line.get(name.len()) == Some(&b':') && line[..name.len()].eq_ignore_ascii_case(name)
        };
        if head.started {
            if named(CONTENT_LENGTH) || named(TRANSFER_ENCODING) {
                return None;
            }
        } else {
            head.started = true;
            self.heads += 1;
        }
        self.prev = b'\n';
        Some(cr + 2)
    }

    /// The boundaries are lost: in a body, from the request it belongs to
    /// (refused with 400 if hyper has not dispatched it yet: a bad chunk
    /// that came with its head); in a head, which hyper refuses itself,
    /// from the next one.
    fn lose(&mut self) -> Finding {
        let from = match self.state {
            State::Head(_) => self.heads + 1,
            _ => self.heads,
        };
        self.state = State::Lost;
        Finding::Lost(from)
    }

    /// One byte of a head, of chunk framing, or of a trailer.
    fn byte(&mut self, b: u8) -> Finding {
        match self.state {
            State::Head(head) => self.head_byte(head, b),
            State::ChunkSize(size) => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                    match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                        Some(size) => {
                            self.state = State::ChunkSize(size);
                            Finding::Nothing
                        }
                        None => self.lose(),
                    }
                }
                b'\t' | b' ' => self.to(State::ChunkLws(size)),
                b';' => self.to(State::ChunkExt(size)),
                b'\r' => self.to(State::ChunkSizeLf(size)),
                _ => self.lose(),
            },
            State::ChunkLws(size) => match b {
                b'\t' | b' ' => Finding::Nothing,
                b';' => self.to(State::ChunkExt(size)),
                b'\r' => self.to(State::ChunkSizeLf(size)),
                _ => self.lose(),
            },
            State::ChunkExt(size) => match b {
                b'\r' => self.to(State::ChunkSizeLf(size)),
                b'\n' => self.lose(),
                _ => Finding::Nothing,
            },
            State::ChunkSizeLf(size) => match (b, size) {
                (b'\n', 0) => {
                    (self.trailer_bytes, self.trailer_fields) = (0, 0);
                    self.to(State::ChunkEndCr)
                }
                (b'\n', size) => self.to(State::ChunkData(size)),
                _ => self.lose(),
            },
            State::ChunkDataCr => match b {
                b'\r' => self.to(State::ChunkDataLf),
                _ => self.lose(),
            },
            State::ChunkDataLf => match b {
                b'\n' => self.to(State::ChunkSize(0)),
                _ => self.lose(),
            },
            State::ChunkEndCr => match b {
                b'\r' if self.trailer_bytes == 0 => self.to(State::ChunkEndLf),
                b'\r' => self.trailer_byte(State::ChunkEndLf),
                _ => self.trailer_byte(State::Trailer),
            },
            State::ChunkEndLf => match b {
                b'\n' if self.trailer_bytes == 0 => self.to(State::Head(Head::default())),
                b'\n' => self.trailer_byte(State::Head(Head::default())),
                _ => self.lose(),
            },
            State::Trailer => match b {
                b'\r' => self.trailer_byte(State::TrailerLf),
                _ => self.trailer_byte(State::Trailer),
            },
            State::TrailerLf => match b {
                b'\n' if self.trailer_fields >= TRAILER_FIELDS => self.lose(),
                b'\n' => {
                    self.trailer_fields += 1;
                    self.trailer_byte(State::ChunkEndCr)
                }
                _ => self.lose(),
            },
            State::Body(_) | State::ChunkData(_) | State::Lost => Finding::Nothing,
        }
    }

    /// A byte of a trailer section, then `state`; past hyper's bound on
    /// the section's size, hyper fails the body: the boundaries are lost.
    fn trailer_byte(&mut self, state: State) -> Finding {
        self.trailer_bytes += 1;
        if self.trailer_bytes >= TRAILER_BYTES {
            return self.lose();
        }
        self.to(state)
    }

    fn to(&mut self, state: State) -> Finding {
        self.state = state;
        Finding::Nothing
    }

    fn head_byte(&mut self, mut head: Head, b: u8) -> Finding {
        if !head.started {
            // httparse skips empty lines (CR, LF, in any mix) before a request.
            if b == b'\r' || b == b'\n' {
                return Finding::Nothing;
            }
            head.started = true;
            // The request line frames nothing.
            head.field = Field::Other;
            self.heads += 1;
        }
        match b {
            b'\n' if self.prev != b'\r' => {
                // Report it for the request it belongs to; the connection
                // closes after that request.
                self.state = State::Lost;
                Finding::BareLf(self.heads)
            }
            b'\n' if head.line_len == 0 => {
                // The empty line: the head is complete.
                self.state = match (head.chunked, head.content_length) {
                    (Some(true), _) => State::ChunkSize(0),
                    // Not chunked last: hyper refuses the request.
                    (Some(false), _) => return self.lose(),
                    (None, Some(0) | None) => State::Head(Head::default()),
                    (None, Some(n)) => State::Body(n),
                };
                Finding::Nothing
            }
            b'\n' => {
                let field = head.field;
                head.line_len = 0;
                head.field = Field::Name;
                self.name_len = 0;
                match end_field(&mut head, field) {
                    Ok(()) => {
                        self.state = State::Head(head);
                        Finding::Nothing
                    }
                    Err(()) => self.lose(),
                }
            }
            b'\r' => {
                self.state = State::Head(head);
                Finding::Nothing
            }
            _ => {
                head.line_len = head.line_len.saturating_add(1);
                head.field = self.field_byte(head.field, b);
                self.state = State::Head(head);
                Finding::Nothing
            }
        }
    }

    /// A byte of a head line other than CR/LF: follows the two fields that
    /// frame the body.
    fn field_byte(&mut self, field: Field, b: u8) -> Field {
        match field {
            Field::Name if b == b':' => {
                let name = &self.name[..usize::from(self.name_len)];
                if name == CONTENT_LENGTH {
                    Field::ContentLength {
                        value: 0,
                        digits: false,
                    }
                } else if name == TRANSFER_ENCODING {
                    Field::TransferEncoding { tail: 0 }
                } else {
                    Field::Other
                }
            }
            Field::Name if usize::from(self.name_len) < self.name.len() => {
                self.name[usize::from(self.name_len)] = b.to_ascii_lowercase();
                self.name_len += 1;
                Field::Name
            }
            Field::Name => Field::Other,
            Field::ContentLength { value, .. } => match b {
                b' ' | b'\t' => field,
                b'0'..=b'9' => value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .map_or(Field::BadContentLength, |value| Field::ContentLength {
                        value,
                        digits: true,
                    }),
                // Signed, a list, or not a number: hyper refuses it, unless
                // a `Transfer-Encoding` came first (then it is ignored).
                _ => Field::BadContentLength,
            },
            Field::BadContentLength => Field::BadContentLength,
            Field::TransferEncoding { tail } => {
                // Is `chunked` the last coding? Track how much of it the
                // value ends with (whitespace after it is fine).
                let lower = b.to_ascii_lowercase();
                let tail = usize::from(tail);
                let next = if tail < CHUNKED.len() && CHUNKED[tail] == lower {
                    tail + 1
                } else if tail == CHUNKED.len() && (b == b' ' || b == b'\t') {
                    tail
                } else if lower == CHUNKED[0] {
                    1
                } else {
                    0
                };
                Field::TransferEncoding {
                    tail: u8::try_from(next).unwrap_or(0),
                }
            }
            Field::Other => Field::Other,
        }
    }
}

/// A head line ended: records what its field said. `Err` for a framing hyper
/// refuses.
fn end_field(head: &mut Head, field: Field) -> Result<(), ()> {
    match field {
        // After `Transfer-Encoding`, hyper ignores `Content-Length`.
        Field::ContentLength { .. } | Field::BadContentLength if head.chunked.is_some() => Ok(()),
        Field::ContentLength {
            value,
            digits: true,
        } => match head.content_length {
            Some(seen) if seen != value => Err(()),
            _ => {
                head.content_length = Some(value);
                Ok(())
            }
        },
        Field::ContentLength { digits: false, .. } | Field::BadContentLength => Err(()),
        Field::TransferEncoding { tail } => {
            head.chunked = Some(usize::from(tail) == CHUNKED.len());
            Ok(())
        }
        Field::Name | Field::Other => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> (Framing, Vec<Finding>) {
        let mut framing = Framing::default();
        let findings = chunks
            .iter()
            .map(|c| framing.feed(c))
            .filter(|f| *f != Finding::Nothing)
            .collect();
        (framing, findings)
    }

    #[test]
    fn crlf_heads_in_any_split_find_nothing_and_count_each_request() {
        let wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
        for i in 0..wire.len() {
            let (framing, findings) = feed_all(&[&wire[..i], &wire[i..]]);
            assert!(findings.is_empty(), "split at {i}");
            assert!(framing.at_boundary(2), "split at {i}");
        }
    }

    #[test]
    fn a_partial_head_or_body_is_not_a_boundary() {
        assert!(!feed_all(&[b"GET / HTTP/1.1\r\nHo"]).0.at_boundary(0));
        assert!(
            !feed_all(&[b"GET / HTTP/1.1\r\n\r\n"]).0.at_boundary(0),
            "a head not yet dispatched"
        );
        assert!(
            !feed_all(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"])
                .0
                .at_boundary(1)
        );
        assert!(
            feed_all(&[b"\r\n\n"]).0.at_boundary(0),
            "leading empty lines are skipped"
        );
    }

    #[test]
    fn the_head_copy_gives_up_past_a_head_or_over_its_limit() {
        let mut framing = Framing::default();
        let mut copy = HeadCopy::new(16);
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        framing.feed(wire);
        copy.follow(&framing, wire);
        assert_eq!(copy.take(), None, "inside a body");
        framing.feed(b"cde");
        copy.follow(&framing, b"cde");
        assert_eq!(
            copy.take().as_deref(),
            Some(&b""[..]),
            "at the boundary again"
        );
        let long = b"GET /a-very-long-path HTTP/1.1\r\n";
        framing.feed(long);
        copy.follow(&framing, long);
        assert_eq!(copy.take(), None, "longer than the limit");
    }

    #[test]
    fn a_bare_lf_is_reported_for_the_request_whose_head_has_it() {
        assert_eq!(
            feed_all(&[b"GET / HTTP/1.1\nHost: x\r\n\r\n"]).1,
            [Finding::BareLf(1)]
        );
        let smuggle =
            b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(feed_all(&[smuggle]).1, [Finding::BareLf(2)]);
        // Before a request line, a lone LF is an empty line httparse skips.
        assert!(feed_all(&[b"\nGET / HTTP/1.1\r\n\r\n"]).1.is_empty());
    }

    #[test]
    fn content_length_bodies_are_skipped_whatever_they_hold() {
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 006\r\n\r\na\nb\nc\nGET / HTTP/1.1\r\n\r\n";
        for i in 0..wire.len() {
            let (framing, findings) = feed_all(&[&wire[..i], &wire[i..]]);
            assert!(findings.is_empty(), "split at {i}: {findings:?}");
            assert!(framing.at_boundary(2), "split at {i}");
        }
    }

    #[test]
    fn chunked_bodies_are_followed_as_hyper_decodes_them() {
        // Size whitespace, extensions, leading zeros, trailers.
        let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked \r\nContent-Length: x\r\n\r\n00003 ;x=y\r\na\nb\r\n0\r\nT: v\r\n\r\nGET /x HTTP/1.1\nHost: y\r\n\r\n";
        for i in 0..wire.len() {
            let (framing, findings) = feed_all(&[&wire[..i], &wire[i..]]);
            assert_eq!(findings, [Finding::BareLf(2)], "split at {i}");
            assert_eq!(framing.heads, 2);
        }
    }

    /// Each of `wires` loses the boundaries, from request number `from` on.
    fn lost_from(from: u64, wires: &[&[u8]]) {
        for wire in wires {
            let what = String::from_utf8_lossy(wire);
            let (framing, findings) = feed_all(&[wire]);
            assert_eq!(framing.state, State::Lost, "{what:?}");
            assert_eq!(findings, [Finding::Lost(from)], "{what:?}");
        }
    }

    #[test]
    fn framings_hyper_refuses_lose_the_boundaries_from_the_next_request_on() {
        lost_from(
            2,
            &[
                b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            ],
        );
    }

    #[test]
    fn trailer_sections_past_hypers_bounds_lose_the_boundaries_from_their_request_on() {
        let section = |fields: usize, len: usize| {
            let mut wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
            for i in 0..fields {
                let field = format!("T{i:05}: ");
                wire.extend_from_slice(field.as_bytes());
                wire.extend(std::iter::repeat_n(b'v', len - field.len() - 2));
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"\r\n");
            wire
        };
        // 100 fields of 100 bytes: 10,002 bytes with the end, within both.
        let (framing, findings) = feed_all(&[&section(100, 100)]);
        assert!(findings.is_empty(), "{findings:?}");
        assert!(framing.at_boundary(1));
        // A 101st field, however small.
        assert_eq!(feed_all(&[&section(101, 10)]).1, [Finding::Lost(1)]);
        // 16,384 bytes in all (hyper refuses at the limit itself), one short.
        let (framing, findings) = feed_all(&[&section(2, 8191)]);
        assert_eq!(findings, [Finding::Lost(1)]);
        assert_eq!(framing.state, State::Lost);
        let (framing, findings) = feed_all(&[&section(2, 8190)]);
        assert!(findings.is_empty(), "{findings:?}");
        assert!(framing.at_boundary(1));
        // And 20,000 fields are refused long before their end.
        assert_eq!(feed_all(&[&section(20_000, 10)]).1, [Finding::Lost(1)]);
    }

    #[test]
    fn a_broken_chunked_body_loses_the_boundaries_from_its_own_request_on() {
        // Its head was fine: hyper dispatches the request, and its body
        // fails later. Lost from request 1, the server refuses it with 400
        // when the bad chunk came before hyper dispatched it.
        lost_from(
            1,
            &[
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: v\rX",
            ],
        );
    }

    /// Pieces of heads, bodies and framing, valid or not, that the
    /// differential test strings together (random bytes between them).
    const TOKENS: &[&[u8]] = &[
        b"GET / HTTP/1.1",
        b"POST /x HTTP/1.1",
        b"\r\n",
        b"\r",
        b"\n",
        b"Host: h",
        b"Content-Length: ",
        b"content-LENGTH:",
        b"Content-Length",
        b"Transfer-Encoding: ",
        b"TRANSFER-ENCODING:",
        b"gzip, chunked",
        b" chunked ",
        b"X-A-Very-Long-Field-Name: v",
        b":",
        b" ",
        b"0",
        b"5",
        b"12",
        b"+3",
        b"0\r\n\r\n",
        b"3\r\nabc\r\n",
        b"hello",
        b"\t",
        b"Transfer-Encoding",
        b"x-forwarded-proto:",
        b"C\xc3\xa9ntent-Length:",
        b"\r\r\n",
        b"X: y\rz\r\n",
        b"Host: h\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"1;e\r\nx\r\n0\r\nContent-Length: 5\r\n\r\n",
    ];

    impl Framing {
        /// What a step may change, but the bytes of a name not being read.
        fn observable(&self) -> (State, u8, u64, &[u8], Option<usize>) {
            (
                self.state,
                self.prev,
                self.heads,
                &self.name[..usize::from(self.name_len)],
                self.last_boundary,
            )
        }
    }

    /// A request of a generated pipeline, rendered as a client would.
    fn request(kind: u8, body: &[u8], split: usize) -> Vec<u8> {
        let mut wire = b"\r\n".repeat(split % 2);
        match kind % 3 {
            0 => wire.extend_from_slice(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            1 => {
                wire.extend(
                    format!("PUT /b HTTP/1.1\r\ncontent-length:{}\r\n\r\n", body.len()).bytes(),
                );
                wire.extend_from_slice(body);
            }
            _ => {
                wire.extend_from_slice(b"POST /c HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n");
                for chunk in body.chunks(split % 5 + 1) {
                    wire.extend(
                        format!("{:X}{}\r\n", chunk.len(), ["", " ", ";e=1"][split % 3]).bytes(),
                    );
                    wire.extend_from_slice(chunk);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"0\r\n\r\n");
            }
        }
        wire
    }

    proptest! {
        #[test]
        fn pipelines_of_well_framed_requests_are_followed_exactly(
            requests in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..30), any::<usize>()), 1..8),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let wire: Vec<u8> = requests.iter().flat_map(|(k, b, s)| request(*k, b, *s)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.extend([0, wire.len()]);
            points.sort_unstable();
            let mut framing = Framing::default();
            for piece in points.windows(2) {
                prop_assert_eq!(framing.feed(&wire[piece[0]..piece[1]]), Finding::Nothing);
            }
            prop_assert!(framing.at_boundary(requests.len() as u64));
        }

        #[test]
        fn the_head_copy_is_exactly_the_partial_head_after_the_last_boundary(
            requests in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..30), any::<usize>()), 0..6),
            partial in 1usize..28,
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut wire: Vec<u8> = requests.iter().flat_map(|(k, b, s)| request(*k, b, *s)).collect();
            let head = &b"GET /next HTTP/1.1\r\nHost: h\r\n"[..partial];
            wire.extend_from_slice(head);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.extend([0, wire.len()]);
            points.sort_unstable();
            let mut framing = Framing::default();
            let mut copy = HeadCopy::new(1024);
            for piece in points.windows(2) {
                let new = &wire[piece[0]..piece[1]];
                prop_assert_eq!(framing.feed(new), Finding::Nothing);
                copy.follow(&framing, new);
            }
            let n = requests.len() as u64;
            prop_assert!(framing.one_head_pending(n));
            let taken = copy.take();
            prop_assert_eq!(taken.as_deref(), Some(head));
        }

        #[test]
        fn any_bytes_are_followed_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Framing::default().feed(&bytes);
        }
    }

    proptest! {
        // More cases than the default: a divergence needs a rare mix of
        // line endings at the start of a line.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn whole_line_steps_follow_exactly_what_the_byte_wise_path_does(
            tokens in prop::collection::vec(prop_oneof![
                (0..TOKENS.len()).prop_map(|t| TOKENS[t].to_vec()),
                prop::collection::vec(any::<u8>(), 1..4),
            ], 0..40),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let wire = tokens.concat();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.extend([0, wire.len()]);
            points.sort_unstable();
            let (mut lines, mut bytes) = (Framing::after(3), Framing::after(3));
            for piece in points.windows(2) {
                let new = &wire[piece[0]..piece[1]];
                prop_assert_eq!(lines.feed(new), bytes.feed_bytewise(new));
                prop_assert_eq!(lines.observable(), bytes.observable());
            }
        }
    }
}
