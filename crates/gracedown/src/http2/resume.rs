//! A fresh h2 server connection going on with a connection that moved:
//! what it reads first, and the translation between its view and the
//! client's (sans I/O; [`super::Wire`] drives it).

use bytes::{Buf, Bytes, BytesMut};

use super::frames::{
    ACK, CONTINUATION, DATA, END_HEADERS, HEADER_LEN, HEADERS, Head, INITIAL_WINDOW, PREFACE,
    PRIORITY, PUSH_PROMISE, SETTINGS, WINDOW_UPDATE, increment, window_update,
};
use super::state::State;

/// The translation between a fresh h2 connection and the client of a
/// connection that moved.
#[derive(Debug)]
pub(crate) struct Resume {
    /// The synthesised client preface, still to be read by h2.
    synthetic: Bytes,
    /// Streams up to this one were opened in an older generation: frames
    /// for them are dropped (h2 would take them for frames on idle streams).
    old_last: u32,
    /// How much h2 believes the client may still send on the connection.
    h2_window: i64,
    /// How much the client may still send on the connection.
    client_window: i64,
    /// How much the client lets the server send on the connection.
    send_window: i64,
    /// How much more h2 believes it may send than the client lets it: a
    /// fresh h2 starts from 65,535, a client's window may be smaller. The
    /// client's connection WINDOW_UPDATEs pay it off before h2 sees them;
    /// until then h2's data may have to wait for the client's window.
    send_deficit: i64,
    /// h2's frames that wait, in order, for the client's window: a DATA
    /// frame it cannot take yet, every later frame of its stream, and every
    /// later header block (HPACK's order); other streams' frames, the
    /// connection's and window updates go on meanwhile.
    parked: BytesMut,
    /// The streams with frames in `parked`.
    parked_streams: Vec<u32>,
    /// A header block is in `parked`.
    parked_block: bool,
    /// A header block sent on is not finished (CONTINUATION to come):
    /// nothing may go between.
    open_block: bool,
    /// Where the bytes from the client are among their frames.
    inbound: Cut,
    /// Where h2's bytes are among their frames.
    outbound: Cut,
    /// h2's first SETTINGS acknowledgement answers the synthesised
    /// SETTINGS, which the client never sent: it is not sent on.
    swallow_ack: bool,
}

/// A position in a byte stream of frames, for a filter that keeps or
/// drops whole frames.
#[derive(Debug, Default)]
struct Cut {
    /// Payload bytes left of the current frame.
    left: u32,
    /// What becomes of them.
    payload: Payload,
    /// An outbound frame header (and a WINDOW_UPDATE's payload) in part.
    head: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Payload {
    #[default]
    Pass,
    Drop,
    /// Into `parked`.
    Park,
    /// A connection WINDOW_UPDATE's increment, read and not sent on.
    WindowUpdate,
}

/// What [`Resume::inbound`] did with a piece of the client's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Filtered {
    /// The bytes h2 reads now are the first `kept` of the piece.
    pub(crate) kept: usize,
    /// From here on the piece waits (a frame header in part, or data h2's
    /// window cannot take yet): it is read again later, first.
    pub(crate) held_from: Option<usize>,
    /// The client opened its window: h2's parked data may go on.
    pub(crate) opened: bool,
}

impl Resume {
    /// Going on from `state`.
    pub(crate) fn new(state: &State) -> Self {
        let mut synthetic = BytesMut::with_capacity(PREFACE.len() + 2 * HEADER_LEN + 100);
        synthetic.extend_from_slice(PREFACE);
        let settings: Vec<u8> = state
            .client_settings
            .iter()
            .flat_map(|(id, value)| [&id.to_be_bytes()[..], &value.to_be_bytes()].concat())
            .collect();
        let head = Head {
            len: u32::try_from(settings.len()).unwrap_or(0),
            kind: SETTINGS,
            flags: 0,
            stream: 0,
        };
        synthetic.extend_from_slice(&head.encode());
        synthetic.extend_from_slice(&settings);
        // A fresh h2 starts with the initial window: raised to the
        // client's, or, if that is smaller, paid off by the client's next
        // WINDOW_UPDATEs.
        let more = i64::from(state.send_window) - INITIAL_WINDOW;
        if let Ok(more @ 1..) = u32::try_from(more) {
            synthetic.extend_from_slice(&window_update(more));
        }
        Self {
            synthetic: synthetic.freeze(),
            old_last: state.last_client_stream,
            h2_window: INITIAL_WINDOW,
            client_window: i64::from(state.recv_window),
            send_window: i64::from(state.send_window),
            send_deficit: (-more).max(0),
            parked: BytesMut::new(),
            parked_streams: Vec::new(),
            parked_block: false,
            open_block: false,
            inbound: Cut::default(),
            outbound: Cut::default(),
            swallow_ack: true,
        }
    }

    /// The synthesised bytes h2 reads before any of the client's.
    pub(crate) fn synthetic(&mut self) -> &mut Bytes {
        &mut self.synthetic
    }

    /// Nothing is held or half-translated, either way: the connection can
    /// move on from the wire's state alone.
    pub(crate) fn idle(&self) -> bool {
        self.synthetic.is_empty()
            && !self.swallow_ack
            && self.parked.is_empty()
            && !self.open_block
            && self.inbound.left == 0
            && self.inbound.head.is_empty()
            && self.outbound.left == 0
            && self.outbound.head.is_empty()
    }

    /// Filters a piece of the client's bytes in place: frames for streams
    /// of an older generation are dropped (their data's credit is given
    /// back through [`Resume::credit`]); data h2's window cannot take yet,
    /// and a frame header in part, wait.
    pub(crate) fn inbound(&mut self, data: &mut [u8]) -> Filtered {
        let (mut r, mut w) = (0, 0);
        let mut opened = false;
        while r < data.len() {
            if self.inbound.left > 0 {
                let n = usize::try_from(self.inbound.left)
                    .map_or(data.len() - r, |left| left.min(data.len() - r));
                if self.inbound.payload == Payload::Pass {
                    data.copy_within(r..r + n, w);
                    w += n;
                }
                r += n;
                self.inbound.left -= u32::try_from(n).unwrap_or(self.inbound.left);
                continue;
            }
            let Some(head) = Head::read(&data[r..]) else {
                return Filtered {
                    kept: w,
                    held_from: Some(r),
                    opened,
                };
            };
            if head.kind == WINDOW_UPDATE && head.stream == 0 && head.len == 4 {
                // The client opens the server's window: what h2 believed
                // beyond the client's window is paid off first.
                let Some(frame) = data.get(r..r + HEADER_LEN + 4) else {
                    return Filtered {
                        kept: w,
                        held_from: Some(r),
                        opened,
                    };
                };
                let increment = increment(&frame[HEADER_LEN..]);
                self.send_window += i64::from(increment);
                opened |= increment > 0;
                let paid = self.send_deficit.min(i64::from(increment));
                self.send_deficit -= paid;
                let on = i64::from(increment) - paid;
                if let Ok(on @ 1..) = u32::try_from(on) {
                    data.copy_within(r..r + HEADER_LEN, w);
                    data[w + HEADER_LEN..w + HEADER_LEN + 4].copy_from_slice(&on.to_be_bytes());
                    w += HEADER_LEN + 4;
                }
                r += HEADER_LEN + 4;
                continue;
            }
            let pass = head.stream == 0 || head.stream > self.old_last;
            if self.must_wait(&head) {
                return Filtered {
                    kept: w,
                    held_from: Some(r),
                    opened,
                };
            }
            if head.kind == DATA {
                let len = i64::from(head.len);
                if pass {
                    self.h2_window -= len;
                }
                self.client_window -= len;
            }
            if pass {
                data.copy_within(r..r + HEADER_LEN, w);
                w += HEADER_LEN;
            }
            r += HEADER_LEN;
            self.inbound.left = head.len;
            self.inbound.payload = if pass { Payload::Pass } else { Payload::Drop };
        }
        Filtered {
            kept: w,
            held_from: None,
            opened,
        }
    }

    /// Whether held bytes that start with `head` must wait for h2's window.
    pub(crate) fn waits(&self, held: &[u8]) -> bool {
        Head::read(held).is_some_and(|head| self.must_wait(&head))
    }

    /// Data the client may send (within its window) that h2 would refuse
    /// for now (past h2's window, which h2 has yet to open: only before its
    /// first WINDOW_UPDATE, when the client's window is larger than the 65,535
    /// h2 starts from). Anything else goes to h2, which judges it.
    fn must_wait(&self, head: &Head) -> bool {
        let len = i64::from(head.len);
        head.kind == DATA
            && head.stream != 0
            && head.stream > self.old_last
            && len > self.h2_window
            && len <= self.client_window
    }

    /// Translates h2's bytes for the client into `out`. Returns whether h2
    /// opened its window (so that held data may go on).
    pub(crate) fn outbound(&mut self, mut bytes: &[u8], out: &mut BytesMut) -> bool {
        let mut opened = false;
        while !bytes.is_empty() {
            if self.outbound.left > 0 && self.outbound.payload != Payload::WindowUpdate {
                let n = usize::try_from(self.outbound.left)
                    .map_or(bytes.len(), |left| left.min(bytes.len()));
                match self.outbound.payload {
                    Payload::Pass => out.extend_from_slice(&bytes[..n]),
                    Payload::Park => self.parked.extend_from_slice(&bytes[..n]),
                    Payload::Drop | Payload::WindowUpdate => {}
                }
                self.outbound.left -= u32::try_from(n).unwrap_or(self.outbound.left);
                bytes = &bytes[n..];
                continue;
            }
            // A header, or a connection WINDOW_UPDATE's header and payload.
            let want = match self.outbound.payload {
                Payload::WindowUpdate => HEADER_LEN + 4,
                _ => HEADER_LEN,
            };
            let n = (want - self.outbound.head.len()).min(bytes.len());
            self.outbound.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.outbound.head.len() < want {
                break;
            }
            let Some(head) = Head::read(&self.outbound.head) else {
                break;
            };
            if self.outbound.payload == Payload::WindowUpdate {
                self.h2_window += i64::from(increment(&self.outbound.head[HEADER_LEN..]));
                opened = true;
                self.outbound = Cut::default();
                continue;
            }
            if head.kind == WINDOW_UPDATE && head.stream == 0 && head.len == 4 {
                // Its payload is read before it is translated.
                self.outbound.payload = Payload::WindowUpdate;
                continue;
            }
            let payload = self.disposition(&head);
            match payload {
                Payload::Pass => {
                    // Credit owed to the client goes before the next frame.
                    self.credit(out);
                    out.extend_from_slice(&self.outbound.head);
                    self.follow_block(&head);
                }
                Payload::Park => self.parked.extend_from_slice(&self.outbound.head),
                Payload::Drop | Payload::WindowUpdate => {}
            }
            self.outbound.head.clear();
            self.outbound.left = head.len;
            self.outbound.payload = payload;
        }
        self.unpark(out);
        self.credit(out);
        opened
    }

    /// What becomes of a frame h2 writes, from its header.
    fn disposition(&mut self, head: &Head) -> Payload {
        if self.swallow_ack && head.kind == SETTINGS && head.has(ACK) {
            self.swallow_ack = false;
            return Payload::Drop;
        }
        if head.stream == 0 || matches!(head.kind, WINDOW_UPDATE | PRIORITY) {
            // The connection's frames, and window updates for the client's
            // sending, go on whatever waits.
            return Payload::Pass;
        }
        let block = matches!(head.kind, HEADERS | PUSH_PROMISE | CONTINUATION);
        let waits = self.parked_streams.contains(&head.stream)
            || (block && self.parked_block)
            || (head.kind == DATA && i64::from(head.len) > self.send_window);
        if !waits {
            if head.kind == DATA {
                self.send_window -= i64::from(head.len);
            }
            return Payload::Pass;
        }
        // A stream's frames stay behind its waiting data, and header
        // blocks in their order (HPACK).
        if !self.parked_streams.contains(&head.stream) {
            self.parked_streams.push(head.stream);
        }
        self.parked_block |= block;
        Payload::Park
    }

    /// Notes whether a header block sent on is finished.
    fn follow_block(&mut self, head: &Head) {
        if matches!(head.kind, HEADERS | PUSH_PROMISE | CONTINUATION) {
            self.open_block = !head.has(END_HEADERS);
        }
    }

    /// Sends on what waited for the client's window, in order, as far as
    /// its window now takes the data (whole frames; a header block whole).
    pub(crate) fn unpark(&mut self, out: &mut BytesMut) {
        if self.parked.is_empty() || !self.between_frames() {
            return;
        }
        let mut taken = 0;
        loop {
            let rest = &self.parked[taken..];
            let Some(end) = whole_block(rest) else {
                break;
            };
            let Some(head) = Head::read(rest) else {
                break;
            };
            if head.kind == DATA {
                let len = i64::from(head.len);
                if len > self.send_window {
                    break;
                }
                self.send_window -= len;
            }
            self.credit(out);
            out.extend_from_slice(&self.parked[taken..taken + end]);
            taken += end;
        }
        self.parked.advance(taken);
        // What still waits.
        self.parked_streams.clear();
        self.parked_block = false;
        let mut at = 0;
        while let Some(head) = self.parked.get(at..).and_then(Head::read) {
            if !self.parked_streams.contains(&head.stream) {
                self.parked_streams.push(head.stream);
            }
            self.parked_block |= matches!(head.kind, HEADERS | PUSH_PROMISE | CONTINUATION);
            at += HEADER_LEN + usize::try_from(head.len).unwrap_or(usize::MAX / 2);
        }
    }

    /// What is sent on is between frames and outside a header block:
    /// something may go in here.
    fn between_frames(&self) -> bool {
        let mid_frame = self.outbound.left > 0 && self.outbound.payload == Payload::Pass;
        !mid_frame && !self.open_block
    }

    /// Where h2 believes the client may send more than the client does (a
    /// WINDOW_UPDATE h2 sent, data dropped), a WINDOW_UPDATE makes the
    /// client's window h2's. Only between h2's frames.
    pub(crate) fn credit(&mut self, out: &mut BytesMut) {
        if self.between_frames() && self.h2_window > self.client_window {
            let more = self.h2_window - self.client_window;
            if let Ok(more) = u32::try_from(more) {
                out.extend_from_slice(&window_update(more));
                self.client_window = self.h2_window;
            }
        }
    }
}

/// The length of the whole frame at the start of `bytes`, or of the whole
/// header block (a HEADERS or PUSH_PROMISE and its CONTINUATIONs); `None`
/// while it is in part.
fn whole_block(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let head = Head::read(bytes.get(at..)?)?;
        let end = at + HEADER_LEN + usize::try_from(head.len).ok()?;
        if end > bytes.len() {
            return None;
        }
        let block = matches!(head.kind, HEADERS | PUSH_PROMISE | CONTINUATION);
        if !block || head.has(END_HEADERS) {
            return Some(end);
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::super::frames::{PING, RST_STREAM, frame};
    use super::*;

    fn state(send_window: u32, recv_window: u32) -> State {
        State {
            client_settings: vec![(1, 4096), (4, 1 << 20)],
            send_window,
            recv_window,
            last_client_stream: 7,
        }
    }

    #[test]
    fn the_synthesised_preface_carries_the_settings_and_the_window() {
        let mut resume = Resume::new(&state(100_000, 65_535));
        let bytes = resume.synthetic().clone();
        let mut expected = PREFACE.to_vec();
        expected.extend(frame(
            SETTINGS,
            0,
            0,
            &[0, 1, 0, 0, 16, 0, 0, 4, 0, 16, 0, 0],
        ));
        expected.extend(window_update(100_000 - 65_535));
        assert_eq!(&bytes[..], &expected[..]);
        let at_initial = Resume::new(&state(65_535, 65_535)).synthetic().len();
        assert_eq!(
            at_initial,
            PREFACE.len() + HEADER_LEN + 12,
            "no WINDOW_UPDATE of 0"
        );
    }

    #[test]
    fn the_ack_of_the_synthesised_settings_is_swallowed_and_only_that_one() {
        let mut resume = Resume::new(&state(65_535, 65_535));
        let mut out = BytesMut::new();
        let h2 = [
            frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0]),
            frame(SETTINGS, ACK, 0, &[]),
            frame(SETTINGS, ACK, 0, &[]),
        ]
        .concat();
        resume.outbound(&h2, &mut out);
        assert_eq!(
            &out[..],
            &[
                frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0]),
                frame(SETTINGS, ACK, 0, &[])
            ]
            .concat()[..]
        );
    }

    #[test]
    fn h2s_window_updates_make_the_clients_window_h2s() {
        // The client may send 1 MiB; a fresh h2 believes 65,535 and then
        // opens its window to 1 MiB + 65,535 - 65,535 = 1 MiB: nothing to send.
        let mut resume = Resume::new(&state(65_535, 1 << 20));
        let mut out = BytesMut::new();
        let update = window_update((1 << 20) - 65_535);
        // In pieces, as h2 may write it.
        resume.outbound(&update[..5], &mut out);
        resume.outbound(&update[5..11], &mut out);
        assert!(resume.outbound(&update[11..], &mut out));
        assert!(out.is_empty(), "the client's window is h2's already");
        // h2 opens it further: the client gets exactly that.
        resume.outbound(&window_update(1000), &mut out);
        assert_eq!(&out[..], &window_update(1000)[..]);
        // A client window smaller than h2's start is topped up at once.
        let mut small = Resume::new(&state(65_535, 1000));
        let mut out = BytesMut::new();
        small.credit(&mut out);
        assert_eq!(&out[..], &window_update(64_535)[..]);
    }

    #[test]
    fn frames_of_older_streams_are_dropped_and_their_data_credited() {
        let mut resume = Resume::new(&state(65_535, 65_535));
        let mut data = [
            frame(DATA, 0, 5, b"old body"),
            frame(RST_STREAM, 0, 7, &[0, 0, 0, 8]),
            frame(HEADERS, 0x4, 9, b"new"),
            frame(DATA, 0x1, 9, b"new body"),
        ]
        .concat();
        let filtered = resume.inbound(&mut data);
        let expected = [
            frame(HEADERS, 0x4, 9, b"new"),
            frame(DATA, 0x1, 9, b"new body"),
        ]
        .concat();
        assert_eq!(filtered.held_from, None);
        assert_eq!(&data[..filtered.kept], &expected[..]);
        let mut out = BytesMut::new();
        resume.credit(&mut out);
        assert_eq!(&out[..], &window_update(8)[..], "the dropped data's credit");
    }

    #[test]
    fn with_a_client_window_below_h2s_start_data_waits_and_the_clients_updates_pay_it_off() {
        // The client lets the server send 20,000 bytes; a fresh h2 believes 65,535.
        let mut resume = Resume::new(&state(20_000, 65_535));
        resume.swallow_ack = false;
        let mut out = BytesMut::new();
        let first = frame(DATA, 0, 9, &[1; 16_384]);
        let second = frame(DATA, 0, 9, &[2; 10_000]);
        let trailers = frame(HEADERS, 0x5, 9, b"t");
        resume.outbound(&[&first[..], &second, &trailers].concat(), &mut out);
        assert_eq!(&out[..], &first[..], "the first fits the client's window");
        assert_eq!(
            &resume.parked[..],
            &[&second[..], &trailers].concat()[..],
            "the stream's frames wait, in order"
        );
        // The connection's frames, window updates and other streams' go on
        // meanwhile, but no header block passes one that waits (HPACK).
        let ping = frame(PING, ACK, 0, &[7; 8]);
        let stream_update = frame(WINDOW_UPDATE, 0, 13, &9u32.to_be_bytes());
        let other = frame(RST_STREAM, 0, 11, &[0, 0, 0, 8]);
        let more = frame(HEADERS, 0x5, 13, b"h");
        resume.outbound(
            &[&ping[..], &stream_update, &other, &more].concat(),
            &mut out,
        );
        assert_eq!(
            &out[first.len()..],
            &[&ping[..], &stream_update, &other].concat()[..]
        );
        assert!(resume.parked.ends_with(&more), "HPACK order kept");
        // The client opens its window by 50,000: 45,535 of it paid h2's
        // belief off (it had 65,535 - 20,000 too many), 4,465 go to h2.
        let mut update = window_update(50_000).to_vec();
        let filtered = resume.inbound(&mut update);
        assert!(filtered.opened);
        assert_eq!(&update[..filtered.kept], &window_update(4_465)[..]);
        let before = out.len();
        resume.unpark(&mut out);
        assert!(resume.parked.is_empty(), "all of it fits now");
        assert_eq!(
            &out[before..],
            &[&second[..], &trailers, &more].concat()[..]
        );
        assert!(resume.parked_streams.is_empty() && !resume.parked_block);
        // Paid off: further updates go to h2 whole.
        let mut update = window_update(7).to_vec();
        let filtered = resume.inbound(&mut update);
        assert_eq!(&update[..filtered.kept], &window_update(7)[..]);
    }

    #[test]
    fn another_streams_response_passes_data_that_waits() {
        // The client lets the server send 1,000 bytes.
        let mut resume = Resume::new(&state(1_000, 65_535));
        resume.swallow_ack = false;
        let mut out = BytesMut::new();
        let waiting = frame(DATA, 0, 9, &[1; 16_384]);
        let headers = frame(HEADERS, 0x4, 11, b"h");
        let small = frame(DATA, 0x1, 11, &[2; 500]);
        resume.outbound(&[&waiting[..], &headers, &small].concat(), &mut out);
        assert_eq!(&out[..], &[&headers[..], &small].concat()[..]);
        assert_eq!(&resume.parked[..], &waiting[..]);
    }

    #[test]
    fn credit_never_goes_inside_a_header_block() {
        let mut resume = Resume::new(&state(65_535, 65_535));
        resume.swallow_ack = false;
        let mut out = BytesMut::new();
        // h2 sends a header block in two frames, in two writes; credit is
        // owed (dropped data of an older stream) between them.
        let headers = frame(HEADERS, 0, 9, b"first half");
        resume.outbound(&headers, &mut out);
        let mut old = frame(DATA, 0, 5, b"old body");
        assert_eq!(resume.inbound(&mut old).kept, 0);
        resume.credit(&mut out);
        let continuation = frame(CONTINUATION, END_HEADERS, 9, b"second half");
        resume.outbound(&continuation, &mut out);
        assert_eq!(
            &out[..],
            &[&headers[..], &continuation, &window_update(8)].concat()[..],
            "the credit after the block"
        );
    }

    #[test]
    fn held_data_is_only_data_the_client_may_send_and_h2_would_refuse_for_now() {
        let mut resume = Resume::new(&state(65_535, 100_000));
        // Past the client's window: h2 judges it (a flow-control error).
        let mut over = frame(DATA, 0, 9, &vec![0; 100_001]);
        assert!(!resume.waits(&over));
        assert_eq!(resume.inbound(&mut over).held_from, None);
        // DATA on stream 0 is h2's to refuse too: never held.
        let mut zero = frame(DATA, 0, 0, &vec![0; 70_000]);
        assert!(!resume.waits(&zero));
        assert_eq!(resume.inbound(&mut zero).held_from, None);
    }

    #[test]
    fn a_header_in_part_and_data_past_h2s_window_wait() {
        let mut resume = Resume::new(&state(65_535, 1 << 20));
        let headers = frame(HEADERS, 0x4, 9, b"h");
        let mut piece = headers.clone();
        piece.extend_from_slice(&frame(DATA, 0, 9, &[0; 10])[..4]);
        let filtered = resume.inbound(&mut piece);
        assert_eq!(
            filtered,
            Filtered {
                kept: headers.len(),
                held_from: Some(headers.len()),
                opened: false,
            }
        );
        let mut big = frame(DATA, 0, 9, &vec![0; 70_000]);
        assert!(resume.waits(&big));
        assert_eq!(resume.inbound(&mut big).held_from, Some(0));
        let mut out = BytesMut::new();
        assert!(resume.outbound(&window_update((1 << 20) - 65_535), &mut out));
        assert!(!resume.waits(&big), "h2 opened its window");
        let filtered = resume.inbound(&mut big);
        assert_eq!(filtered.kept, big.len());
    }
}
