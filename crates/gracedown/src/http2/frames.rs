//! HTTP/2 frame headers (RFC 9113 §4.1) and a reader that follows them as
//! bytes go by, in pieces of any size.

/// The client connection preface (RFC 9113 §3.4).
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The length of a frame header.
pub(super) const HEADER_LEN: usize = 9;

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

/// `END_STREAM` (DATA, HEADERS).
pub(super) const END_STREAM: u8 = 0x1;
/// `ACK` (SETTINGS, PING).
pub(super) const ACK: u8 = 0x1;
/// `END_HEADERS` (HEADERS, PUSH_PROMISE, CONTINUATION).
pub(super) const END_HEADERS: u8 = 0x4;

/// `SETTINGS_HEADER_TABLE_SIZE`.
pub(super) const HEADER_TABLE_SIZE: u16 = 0x1;
/// The initial flow-control window of a connection (RFC 9113 §6.9.2).
pub(super) const INITIAL_WINDOW: i64 = 65_535;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub(super) const MAX_WINDOW: i64 = (1 << 31) - 1;

/// The most payload bytes kept of a frame whose payload matters here
/// (SETTINGS, WINDOW_UPDATE): 170 settings.
const MAX_KEPT: usize = 1020;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) len: u32,
    pub(super) kind: u8,
    pub(super) flags: u8,
    /// The stream identifier, without the reserved bit.
    pub(super) stream: u32,
}

impl Head {
    pub(super) fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// The header at the start of `bytes`, if it is all there.
    pub(super) fn read(bytes: &[u8]) -> Option<Self> {
        bytes.get(..HEADER_LEN)?.try_into().ok().map(Self::parse)
    }

    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let [_, l0, l1, l2] = self.len.to_be_bytes();
        let [s0, s1, s2, s3] = self.stream.to_be_bytes();
        [l0, l1, l2, self.kind, self.flags, s0, s1, s2, s3]
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A connection-level WINDOW_UPDATE frame granting `increment`.
pub(super) fn window_update(increment: u32) -> [u8; HEADER_LEN + 4] {
    let head = Head {
        len: 4,
        kind: WINDOW_UPDATE,
        flags: 0,
        stream: 0,
    }
    .encode();
    let mut frame = [0u8; HEADER_LEN + 4];
    frame[..HEADER_LEN].copy_from_slice(&head);
    frame[HEADER_LEN..].copy_from_slice(&increment.to_be_bytes());
    frame
}

/// A WINDOW_UPDATE's increment (0 for a malformed one, which h2 refuses).
pub(super) fn increment(payload: &[u8]) -> u32 {
    match payload {
        [a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]) & 0x7fff_ffff,
        _ => 0,
    }
}

/// A frame's bytes, for tests.
#[cfg(test)]
pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let head = Head {
        len: u32::try_from(payload.len()).expect("short"),
        kind,
        flags,
        stream,
    };
    [&head.encode()[..], payload].concat()
}

/// The settings in a SETTINGS frame's payload (RFC 9113 §6.5.1), in order.
pub(super) fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).map(|s| {
        (
            u16::from_be_bytes([s[0], s[1]]),
            u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
        )
    })
}

/// Follows one direction of a connection frame by frame; hands each frame
/// to a callback once it has gone by whole, with its payload for the kinds
/// whose payload matters here.
#[derive(Debug, Clone)]
pub(super) struct Frames {
    /// Bytes of the client preface still to go by.
    preface_left: usize,
    head: [u8; HEADER_LEN],
    have: usize,
    current: Option<Head>,
    left: u32,
    payload: Vec<u8>,
}

/// A frame that went by, and its payload if kept (`whole`: not cut at
/// [`MAX_KEPT`]).
pub(super) struct Frame<'a> {
    pub(super) head: Head,
    pub(super) payload: &'a [u8],
    pub(super) whole: bool,
}

impl Frames {
    /// At the start of a client's byte stream: the preface comes first.
    pub(super) fn before_preface() -> Self {
        Self {
            preface_left: PREFACE.len(),
            ..Self::at_frame()
        }
    }

    /// At a frame boundary.
    pub(super) fn at_frame() -> Self {
        Self {
            preface_left: 0,
            head: [0; HEADER_LEN],
            have: 0,
            current: None,
            left: 0,
            payload: Vec::new(),
        }
    }

    /// No frame, nor the preface, has gone by in part.
    pub(super) fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.have == 0 && self.current.is_none()
    }

    /// Follows `bytes`; `on` sees each frame that ends in them.
    pub(super) fn feed(&mut self, mut bytes: &[u8], on: &mut impl FnMut(Frame<'_>)) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            self.preface_left -= n;
            bytes = &bytes[n..];
        }
        while !bytes.is_empty() {
            match self.current {
                None => {
                    let n = (HEADER_LEN - self.have).min(bytes.len());
                    self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                    self.have += n;
                    bytes = &bytes[n..];
                    if self.have == HEADER_LEN {
                        let head = Head::parse(&self.head);
                        self.have = 0;
                        self.payload.clear();
                        self.left = head.len;
                        self.current = Some(head);
                        if head.len == 0 {
                            self.finish(on);
                        }
                    }
                }
                Some(head) => {
                    let n = usize::try_from(self.left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    if matches!(head.kind, SETTINGS | WINDOW_UPDATE) {
                        let room = MAX_KEPT.saturating_sub(self.payload.len());
                        self.payload.extend_from_slice(&bytes[..n.min(room)]);
                    }
                    // n <= left, a u32.
                    self.left -= u32::try_from(n).unwrap_or(self.left);
                    bytes = &bytes[n..];
                    if self.left == 0 {
                        self.finish(on);
                    }
                }
            }
        }
    }

    fn finish(&mut self, on: &mut impl FnMut(Frame<'_>)) {
        if let Some(head) = self.current.take() {
            let whole = self.payload.len() == head.len as usize
                || !matches!(head.kind, SETTINGS | WINDOW_UPDATE);
            on(Frame {
                head,
                payload: &self.payload,
                whole,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_however_the_bytes_are_cut() {
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0]));
        wire.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"hpack"));
        wire.extend(frame(DATA, 0, 1, &[]));
        wire.extend(frame(WINDOW_UPDATE, 0, 0, &7u32.to_be_bytes()));
        for cut in 1..wire.len() {
            let mut frames = Frames::before_preface();
            let mut seen = Vec::new();
            let mut on = |f: Frame<'_>| seen.push((f.head, f.payload.to_vec(), f.whole));
            frames.feed(&wire[..cut], &mut on);
            frames.feed(&wire[cut..], &mut on);
            assert!(frames.at_boundary());
            let kinds: Vec<u8> = seen.iter().map(|(h, ..)| h.kind).collect();
            assert_eq!(
                kinds,
                [SETTINGS, HEADERS, DATA, WINDOW_UPDATE],
                "cut at {cut}"
            );
            assert_eq!(seen[0].1, [0, 1, 0, 0, 0, 0]);
            assert_eq!(seen[1].0.stream, 1);
            assert!(seen[1].1.is_empty(), "payloads of other kinds are not kept");
            assert_eq!(seen[3].1, 7u32.to_be_bytes());
        }
    }

    #[test]
    fn a_header_round_trips_and_the_reserved_bit_is_ignored() {
        let head = Head {
            len: 0x00ab_cdef,
            kind: DATA,
            flags: END_STREAM,
            stream: 0x7fff_fffd,
        };
        let mut bytes = head.encode();
        assert_eq!(Head::parse(&bytes), head);
        bytes[5] |= 0x80;
        assert_eq!(Head::parse(&bytes), head);
    }

    #[test]
    fn an_oversized_settings_payload_is_marked_cut() {
        let payload = vec![0u8; MAX_KEPT + 6];
        let mut frames = Frames::at_frame();
        let mut whole = None;
        frames.feed(&frame(SETTINGS, 0, 0, &payload), &mut |f: Frame<'_>| {
            whole = Some(f.whole);
        });
        assert_eq!(whole, Some(false));
    }
}
