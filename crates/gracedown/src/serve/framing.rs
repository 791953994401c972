//! Where each HTTP/1 request head starts and ends in the bytes a client
//! sends, followed read by read without buffering: heads are scanned for
//! bare LF line endings (a request-smuggling vector, RFC 9112 §2.2), bodies
//! are skipped by their framing (`Content-Length` counted, chunked decoded
//! size line by size line). hyper parses the requests; this only has to
//! agree with it on the boundaries, and where it cannot be sure (a framing
//! hyper will refuse anyway) it stops watching.

/// What [`Framing::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding {
    Nothing,
    /// The head of request number `n` (1-based) has a bare LF line ending.
    BareLf(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before or inside a request head.
    Head(Head),
    /// `n` more body bytes (`Content-Length`).
    Body(u64),
    /// A chunk-size line: its value so far, and whether an extension started.
    ChunkSize { size: u64, digits: u8, ext: bool },
    /// `n` more bytes of chunk data.
    ChunkData(u64),
    /// The CRLF after chunk data.
    ChunkEnd,
    /// Trailer fields after the last chunk, until the empty line.
    Trailers { line: bool },
    /// Lost the boundaries: hyper refuses what comes, or an upgrade took over.
    Lost,
}

/// What the head scan knows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Head {
    /// The request line has started (leading empty lines are skipped, as hyper does).
    started: bool,
    /// Bytes in the current line, CR excluded.
    line_len: u32,
    field: Field,
    content_length: Option<u64>,
    chunked: Option<bool>,
}

/// Which field the current line is, as far as its name tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Field {
    /// Still reading the name; `matched` bytes match both candidates' prefixes.
    #[default]
    Name,
    ContentLength {
        value: Option<u64>,
        digits: u8,
    },
    /// `chunked` is matched this far into the last token.
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
    /// The current line's first bytes, lowercased, while its name is read.
    name: [u8; 17],
    name_len: u8,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            state: State::Head(Head::default()),
            prev: b'\n',
            heads: 0,
            name: [0; 17],
            name_len: 0,
        }
    }
}

impl Framing {
    /// A tracker for a connection on which `requests` have already started,
    /// picked up at a message boundary.
    pub(crate) fn after(requests: u64) -> Self {
        Self {
            heads: requests,
            ..Self::default()
        }
    }

    /// Stops watching (an upgrade took the connection over).
    pub(crate) fn lose(&mut self) {
        self.state = State::Lost;
    }

    /// Follows `bytes`, the next ones the client sent.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Finding {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Lost => return Finding::Nothing,
                State::Body(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::Head(Head::default())
                    } else {
                        State::Body(left - take)
                    };
                    // A body's last byte is no line ending.
                    self.prev = 0;
                }
                State::ChunkData(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - take)
                    };
                    self.prev = 0;
                }
                _ => {
                    let b = bytes[i];
                    i += 1;
                    if let Some(finding) = self.byte(b) {
                        return finding;
                    }
                    self.prev = b;
                }
            }
        }
        Finding::Nothing
    }

    /// One byte of a head, a chunk-size line, a chunk's CRLF or a trailer.
    fn byte(&mut self, b: u8) -> Option<Finding> {
        let bare_lf = b == b'\n' && self.prev != b'\r';
        match &mut self.state {
            State::Head(head) => {
                if bare_lf {
                    // Report it for the request it belongs to, then stop:
                    // the connection closes after that request.
                    let n = self.heads + u64::from(!head.started);
                    self.state = State::Lost;
                    return Some(Finding::BareLf(n));
                }
                if b != b'\n' {
                    if b != b'\r' {
                        if !head.started {
                            head.started = true;
                            self.heads += 1;
                        }
                        head.line_len += 1;
                        let mut field = head.field;
                        self.field_byte(&mut field, b);
                        if let State::Head(head) = &mut self.state {
                            head.field = field;
                        }
                    }
                    return None;
                }
                // The end of a line.
                if !head.started {
                    return None;
                }
                if head.line_len == 0 {
                    self.state = match (head.chunked, head.content_length) {
                        (Some(true), _) => State::ChunkSize {
                            size: 0,
                            digits: 0,
                            ext: false,
                        },
                        // Not chunked last: hyper refuses the request.
                        (Some(false), _) => State::Lost,
                        (None, Some(0) | None) => State::Head(Head::default()),
                        (None, Some(n)) => State::Body(n),
                    };
                    return None;
                }
                let field = head.field;
                head.line_len = 0;
                head.field = Field::Name;
                self.name_len = 0;
                self.end_field(field);
                None
            }
            State::ChunkSize { size, digits, ext } => {
                match b {
                    b'\n' if !bare_lf && *digits > 0 => {
                        self.state = if *size == 0 {
                            State::Trailers { line: false }
                        } else {
                            State::ChunkData(*size)
                        };
                    }
                    b'\r' => {}
                    b';' => *ext = true,
                    _ if *ext => {}
                    _ => match (b as char).to_digit(16) {
                        Some(d) if *digits < 15 => {
                            *size = *size * 16 + u64::from(d);
                            *digits += 1;
                        }
                        // Not a size hyper accepts.
                        _ => self.state = State::Lost,
                    },
                }
                if matches!(b, b'\n') && matches!(self.state, State::ChunkSize { .. }) {
                    self.state = State::Lost;
                }
                None
            }
            State::ChunkEnd => {
                match b {
                    b'\r' => {}
                    b'\n' if !bare_lf => {
                        self.state = State::ChunkSize {
                            size: 0,
                            digits: 0,
                            ext: false,
                        }
                    }
                    _ => self.state = State::Lost,
                }
                None
            }
            State::Trailers { line } => {
                match b {
                    b'\r' => {}
                    b'\n' if bare_lf => self.state = State::Lost,
                    b'\n' if !*line => self.state = State::Head(Head::default()),
                    b'\n' => *line = false,
                    _ => *line = true,
                }
                None
            }
            State::Body(_) | State::ChunkData(_) | State::Lost => None,
        }
    }

    /// A byte of a head line other than CR/LF: follows `Content-Length` and
    /// `Transfer-Encoding`.
    fn field_byte(&mut self, field: &mut Field, b: u8) {
        match field {
            Field::Name => {
                if b == b':' {
                    let name = &self.name[..usize::from(self.name_len)];
                    *field = if name == CONTENT_LENGTH {
                        Field::ContentLength {
                            value: None,
                            digits: 0,
                        }
                    } else if name == TRANSFER_ENCODING {
                        Field::TransferEncoding { tail: 0 }
                    } else {
                        Field::Other
                    };
                } else if usize::from(self.name_len) < self.name.len() {
                    self.name[usize::from(self.name_len)] = b.to_ascii_lowercase();
                    self.name_len += 1;
                } else {
                    *field = Field::Other;
                }
            }
            Field::ContentLength { value, digits } => match b {
                b' ' | b'\t' => {}
                b'0'..=b'9' if *digits < 19 => {
                    *value = Some(value.unwrap_or(0) * 10 + u64::from(b - b'0'));
                    *digits += 1;
                }
                // Signed, too long or not a number: hyper refuses it.
                _ => self.state = State::Lost,
            },
            Field::TransferEncoding { tail } => {
                // Is `chunked` the last coding? Track how much of it the
                // value ends with (whitespace and commas reset it).
                let lower = b.to_ascii_lowercase();
                *tail =
                    if usize::from(*tail) < CHUNKED.len() && CHUNKED[usize::from(*tail)] == lower {
                        *tail + 1
                    } else if b == b' ' || b == b'\t' {
                        *tail
                    } else if lower == CHUNKED[0] {
                        1
                    } else {
                        0
                    };
            }
            Field::Other => {}
        }
    }

    /// A head line ended: records what its field said.
    fn end_field(&mut self, field: Field) {
        let State::Head(head) = &mut self.state else {
            return;
        };
        match field {
            Field::ContentLength { value: Some(n), .. } => match head.content_length {
                Some(m) if m != n => self.state = State::Lost,
                _ => head.content_length = Some(n),
            },
            Field::ContentLength { value: None, .. } => self.state = State::Lost,
            Field::TransferEncoding { tail } => {
                head.chunked = Some(usize::from(tail) == CHUNKED.len());
            }
            Field::Name | Field::Other => {}
        }
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
            assert_eq!(framing.heads, 2);
        }
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
    }

    #[test]
    fn content_length_bodies_are_skipped_whatever_they_hold() {
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\na\nb\nc\nGET / HTTP/1.1\r\n\r\n";
        for i in 0..wire.len() {
            let (framing, findings) = feed_all(&[&wire[..i], &wire[i..]]);
            assert!(findings.is_empty(), "split at {i}: {findings:?}");
            assert_eq!(framing.heads, 2, "split at {i}");
        }
    }

    #[test]
    fn chunked_bodies_and_trailers_are_followed_to_the_next_head() {
        let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n3;x=y\r\na\nb\r\n0\r\nT: v\r\n\r\nGET /x HTTP/1.1\nHost: y\r\n\r\n";
        for i in 0..wire.len() {
            let (framing, findings) = feed_all(&[&wire[..i], &wire[i..]]);
            assert_eq!(findings, [Finding::BareLf(2)], "split at {i}");
            assert_eq!(framing.heads, 2);
        }
    }

    #[test]
    fn framings_hyper_refuses_stop_the_watch() {
        for wire in [
            &b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        ] {
            let (framing, _) = feed_all(&[wire]);
            assert_eq!(
                framing.state,
                State::Lost,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
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
                    wire.extend(format!("{:X}\r\n", chunk.len()).bytes());
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
            prop_assert_eq!(framing.heads, requests.len() as u64);
            prop_assert_eq!(framing.state, State::Head(Head::default()));
        }

        #[test]
        fn any_bytes_are_followed_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Framing::default().feed(&bytes);
        }
    }
}
