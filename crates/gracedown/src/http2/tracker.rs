//! Follows an HTTP/2 connection's frames both ways, as the client sees
//! them, and tells when it is quiet enough to move.

use super::frames::{
    ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, Frame, Frames, GOAWAY, HEADER_TABLE_SIZE,
    HEADERS, INITIAL_WINDOW, MAX_WINDOW, PING, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
    increment, settings,
};
use super::state::{MAX_SETTINGS, State};

/// The most streams followed at once; a connection with more never moves.
const MAX_OPEN: usize = 1024;

/// A stream the client opened that has not closed both ways.
#[derive(Debug, Clone, Copy)]
struct Open {
    id: u32,
    client_done: bool,
    server_done: bool,
}

/// One HTTP/2 connection's frames, both ways, at the transport.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    inbound: Frames,
    outbound: Frames,
    client_settings: Vec<(u16, u32)>,
    /// SETTINGS the client sent that the server has not acknowledged.
    client_unacked: u32,
    /// SETTINGS the server sent that the client has not acknowledged.
    server_unacked: u32,
    /// The header table size the server last advertised.
    server_table: Option<u32>,
    /// PINGs the client sent that the server has not answered.
    client_pings: u32,
    /// PINGs the server sent that the client has not answered.
    server_pings: u32,
    send_window: i64,
    recv_window: i64,
    last_client_stream: u32,
    open: Vec<Open>,
    /// A header block is under way (CONTINUATION frames to come), per way.
    inbound_block: bool,
    outbound_block: bool,
    /// Something happened that a move cannot carry (a GOAWAY, a push, a
    /// counter that does not add up, too many streams): it never moves.
    stuck: bool,
}

impl Tracker {
    /// A connection from its first byte (the client's preface).
    pub(crate) fn new() -> Self {
        Self {
            inbound: Frames::before_preface(),
            outbound: Frames::at_frame(),
            client_settings: Vec::new(),
            client_unacked: 0,
            server_unacked: 0,
            server_table: None,
            client_pings: 0,
            server_pings: 0,
            send_window: INITIAL_WINDOW,
            recv_window: INITIAL_WINDOW,
            last_client_stream: 0,
            open: Vec::new(),
            inbound_block: false,
            outbound_block: false,
            stuck: false,
        }
    }

    /// A connection that moved here in `state`: quiet, the client's header
    /// table empty (an older generation of this server advertised size 0).
    pub(crate) fn resumed(state: &State) -> Self {
        Self {
            inbound: Frames::at_frame(),
            client_settings: state.client_settings.clone(),
            server_table: Some(0),
            send_window: i64::from(state.send_window),
            recv_window: i64::from(state.recv_window),
            last_client_stream: state.last_client_stream,
            ..Self::new()
        }
    }

    /// Bytes the client sent, as the server reads them.
    pub(crate) fn inbound(&mut self, bytes: &[u8]) {
        let mut frames = std::mem::replace(&mut self.inbound, Frames::at_frame());
        frames.feed(bytes, &mut |frame| self.client_frame(&frame));
        self.inbound = frames;
    }

    /// Bytes the server sent, as they go to the transport.
    pub(crate) fn outbound(&mut self, bytes: &[u8]) {
        let mut frames = std::mem::replace(&mut self.outbound, Frames::at_frame());
        frames.feed(bytes, &mut |frame| self.server_frame(&frame));
        self.outbound = frames;
    }

    /// The connection's state when it is quiet: no frame in part either
    /// way, no stream open, every SETTINGS and PING answered both ways, the
    /// client's header table empty (the server advertised size 0 and the
    /// client acknowledged it), and windows in range.
    pub(crate) fn quiet(&self) -> Option<State> {
        self.is_quiet().then(|| State {
            client_settings: self.client_settings.clone(),
            // In range (see `is_quiet`).
            send_window: u32::try_from(self.send_window).unwrap_or_default(),
            recv_window: u32::try_from(self.recv_window).unwrap_or_default(),
            last_client_stream: self.last_client_stream,
        })
    }

    /// Whether [`Tracker::quiet`] has a state, without making it.
    pub(crate) fn is_quiet(&self) -> bool {
        !self.stuck
            && self.inbound.at_boundary()
            && self.outbound.at_boundary()
            && !self.inbound_block
            && !self.outbound_block
            && self.open.is_empty()
            && self.client_unacked == 0
            && self.server_unacked == 0
            && self.client_pings == 0
            && self.server_pings == 0
            && self.server_table == Some(0)
            && (0..=MAX_WINDOW).contains(&self.send_window)
            && (0..=MAX_WINDOW).contains(&self.recv_window)
    }

    fn client_frame(&mut self, frame: &Frame<'_>) {
        let head = frame.head;
        match head.kind {
            DATA => {
                self.recv_window -= i64::from(head.len);
                if head.has(END_STREAM) {
                    self.close(head.stream, true, false);
                }
            }
            HEADERS => {
                self.inbound_block = !head.has(END_HEADERS);
                let id = head.stream;
                if id > self.last_client_stream && id % 2 == 1 {
                    self.last_client_stream = id;
                    if self.open.len() >= MAX_OPEN {
                        // Followed no further: it never moves.
                        self.stuck = true;
                    } else {
                        self.open.push(Open {
                            id,
                            client_done: false,
                            server_done: false,
                        });
                    }
                }
                if head.has(END_STREAM) {
                    self.close(id, true, false);
                }
            }
            CONTINUATION => self.inbound_block = !head.has(END_HEADERS),
            RST_STREAM => self.close(head.stream, true, true),
            SETTINGS if head.has(ACK) => self.server_unacked = self.acked(self.server_unacked),
            SETTINGS => {
                self.client_unacked = self.client_unacked.saturating_add(1);
                if !frame.whole {
                    self.stuck = true;
                }
                for (id, value) in settings(frame.payload) {
                    match self.client_settings.iter().position(|(i, _)| *i == id) {
                        Some(known) => self.client_settings[known].1 = value,
                        None if self.client_settings.len() < MAX_SETTINGS => {
                            self.client_settings.push((id, value));
                        }
                        None => self.stuck = true,
                    }
                }
            }
            PING if head.has(ACK) => self.server_pings = self.acked(self.server_pings),
            PING => self.client_pings = self.client_pings.saturating_add(1),
            WINDOW_UPDATE if head.stream == 0 => {
                self.send_window += i64::from(increment(frame.payload));
            }
            GOAWAY | PUSH_PROMISE => self.stuck = true,
            _ => {}
        }
    }

    fn server_frame(&mut self, frame: &Frame<'_>) {
        let head = frame.head;
        match head.kind {
            DATA => {
                self.send_window -= i64::from(head.len);
                if head.has(END_STREAM) {
                    self.close(head.stream, false, true);
                }
            }
            HEADERS => {
                self.outbound_block = !head.has(END_HEADERS);
                if head.has(END_STREAM) {
                    self.close(head.stream, false, true);
                }
            }
            CONTINUATION => self.outbound_block = !head.has(END_HEADERS),
            RST_STREAM => self.close(head.stream, true, true),
            SETTINGS if head.has(ACK) => self.client_unacked = self.acked(self.client_unacked),
            SETTINGS => {
                self.server_unacked = self.server_unacked.saturating_add(1);
                if let Some((_, size)) = settings(frame.payload)
                    .filter(|(id, _)| *id == HEADER_TABLE_SIZE)
                    .last()
                {
                    self.server_table = Some(size);
                }
            }
            PING if head.has(ACK) => self.client_pings = self.acked(self.client_pings),
            PING => self.server_pings = self.server_pings.saturating_add(1),
            WINDOW_UPDATE if head.stream == 0 => {
                self.recv_window += i64::from(increment(frame.payload));
            }
            GOAWAY | PUSH_PROMISE => self.stuck = true,
            _ => {}
        }
    }

    /// One fewer outstanding; an answer to nothing leaves the connection stuck.
    fn acked(&mut self, outstanding: u32) -> u32 {
        if outstanding == 0 {
            self.stuck = true;
        }
        outstanding.saturating_sub(1)
    }

    /// Stream `id` ended from the client's side, the server's, or both.
    fn close(&mut self, id: u32, client: bool, server: bool) {
        if let Some(i) = self.open.iter().position(|o| o.id == id) {
            let open = &mut self.open[i];
            open.client_done |= client;
            open.server_done |= server;
            if open.client_done && open.server_done {
                self.open.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::frames::{PREFACE, frame};
    use super::*;

    fn setting(id: u16, value: u32) -> Vec<u8> {
        [&id.to_be_bytes()[..], &value.to_be_bytes()].concat()
    }

    /// A connection after the prefaces and both acknowledgements, the
    /// server advertising a header table of `table` bytes.
    fn settled(table: u32) -> Tracker {
        let mut t = Tracker::new();
        let mut client = PREFACE.to_vec();
        client.extend(frame(SETTINGS, 0, 0, &setting(4, 1 << 20)));
        t.inbound(&client);
        t.outbound(&frame(SETTINGS, 0, 0, &setting(HEADER_TABLE_SIZE, table)));
        t.outbound(&frame(WINDOW_UPDATE, 0, 0, &983_041u32.to_be_bytes()));
        t.outbound(&frame(SETTINGS, ACK, 0, &[]));
        t.inbound(&frame(SETTINGS, ACK, 0, &[]));
        t
    }

    #[test]
    fn a_settled_connection_is_quiet_with_its_windows_and_the_clients_settings() {
        let t = settled(0);
        let state = t.quiet().expect("quiet");
        assert_eq!(state.client_settings, [(4, 1 << 20)]);
        assert_eq!(state.send_window, 65_535);
        assert_eq!(state.recv_window, 65_535 + 983_041);
        assert_eq!(state.last_client_stream, 0);
    }

    #[test]
    fn not_quiet_while_the_client_may_use_its_header_table() {
        assert!(settled(4096).quiet().is_none());
        let mut t = Tracker::new();
        t.inbound(PREFACE);
        t.inbound(&frame(SETTINGS, 0, 0, &[]));
        t.outbound(&frame(SETTINGS, 0, 0, &setting(HEADER_TABLE_SIZE, 0)));
        t.outbound(&frame(SETTINGS, ACK, 0, &[]));
        assert!(
            t.quiet().is_none(),
            "the client has not acknowledged size 0"
        );
        t.inbound(&frame(SETTINGS, ACK, 0, &[]));
        assert!(t.quiet().is_some());
    }

    #[test]
    fn a_stream_keeps_it_busy_until_it_closed_both_ways() {
        let mut t = settled(0);
        t.inbound(&frame(WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes()));
        t.inbound(&frame(HEADERS, END_HEADERS, 1, b"h"));
        assert!(t.quiet().is_none());
        t.inbound(&frame(DATA, END_STREAM, 1, b"body"));
        assert!(t.quiet().is_none(), "the response is still to come");
        t.outbound(&frame(HEADERS, END_HEADERS, 1, b"h"));
        t.outbound(&frame(DATA, END_STREAM, 1, b"answer"));
        let state = t.quiet().expect("quiet");
        assert_eq!(state.last_client_stream, 1);
        assert_eq!(state.recv_window, 65_535 + 983_041 - 4);
        assert_eq!(state.send_window, 65_535 + 1000 - 6);
        // A reset ends a stream both ways.
        t.inbound(&frame(HEADERS, END_HEADERS, 3, b"h"));
        assert!(t.quiet().is_none());
        t.outbound(&frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        assert!(t.quiet().is_some());
    }

    #[test]
    fn a_header_block_in_continuations_and_a_frame_in_part_are_not_quiet() {
        let mut t = settled(0);
        t.inbound(&frame(HEADERS, END_STREAM, 1, b"h"));
        t.outbound(&frame(HEADERS, END_HEADERS | END_STREAM, 1, b"h"));
        assert!(t.quiet().is_none(), "the request's header block goes on");
        t.inbound(&frame(CONTINUATION, END_HEADERS, 1, b"h"));
        assert!(t.quiet().is_some());
        let ping = frame(PING, 0, 0, &[0; 8]);
        t.inbound(&ping[..5]);
        assert!(t.quiet().is_none());
        t.inbound(&ping[5..]);
        assert!(t.quiet().is_none(), "the ping is not answered");
        t.outbound(&frame(PING, ACK, 0, &[0; 8]));
        assert!(t.quiet().is_some());
    }

    #[test]
    fn a_goaway_either_way_keeps_it_from_moving() {
        let mut t = settled(0);
        t.outbound(&frame(DATA, END_STREAM, 1, &[0; 100]));
        assert_eq!(t.quiet().map(|s| s.send_window), Some(65_435));
        t.inbound(&frame(GOAWAY, 0, 0, &[0; 8]));
        assert!(t.quiet().is_none());
        let mut t = settled(0);
        t.outbound(&frame(GOAWAY, 0, 0, &[0; 8]));
        assert!(t.quiet().is_none());
    }

    #[test]
    fn a_resumed_tracker_is_quiet_with_the_state_it_started_from() {
        let state = settled(0).quiet().expect("quiet");
        let t = Tracker::resumed(&state);
        assert_eq!(t.quiet(), Some(state));
    }
}
