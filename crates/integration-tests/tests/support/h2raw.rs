//! A frame-level HTTP/2 client over a blocking socket, for tests that must
//! see and time individual frames (GOAWAY, PING) instead of letting a client
//! library answer them. Requests are HPACK-encoded with literal fields only;
//! responses are not HPACK-decoded except for an indexed `:status 200`.

use std::io::{Read, Write};
use std::net::TcpStream;

/// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One frame as read from the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// GOAWAY's last stream id and error code.
    pub fn goaway(&self) -> (u32, u32) {
        let word =
            |i: usize| u32::from_be_bytes(self.payload[i..i + 4].try_into().expect("4 bytes"));
        (word(0) & 0x7fff_ffff, word(4))
    }
}

/// An h2c connection with prior knowledge.
pub struct Conn {
    pub stream: TcpStream,
}

impl Conn {
    /// Sends the preface and an empty SETTINGS, and acknowledges the server's SETTINGS.
    pub fn handshake(mut stream: TcpStream) -> Self {
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .expect("preface");
        let mut conn = Self { stream };
        conn.send(SETTINGS, 0, 0, &[]);
        let settings = conn.next_where(|f| f.kind == SETTINGS && f.flags & ACK == 0);
        assert_eq!(settings.stream, 0);
        conn.send(SETTINGS, ACK, 0, &[]);
        conn
    }

    pub fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).expect("frame size");
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&len.to_be_bytes()[1..]);
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).expect("send frame");
    }

    /// Opens `stream` with `GET path` (END_STREAM: no body).
    pub fn get(&mut self, stream: u32, path: &str) {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http (static table)
        literal(&mut block, 4, path); // :path, name from the static table
        literal(&mut block, 1, "test"); // :authority
        self.send(HEADERS, END_HEADERS | END_STREAM, stream, &block);
    }

    /// Reads the next frame; `None` at EOF.
    pub fn next(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        if let Err(e) = self.stream.read_exact(&mut head) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "read frame: {e}"
            );
            return None;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).expect("frame payload");
        let stream = u32::from_be_bytes(head[5..9].try_into().expect("4 bytes")) & 0x7fff_ffff;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        })
    }

    /// Reads frames until one matches; panics at EOF.
    pub fn next_where(&mut self, pred: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            let frame = self
                .next()
                .expect("connection closed before the expected frame");
            if pred(&frame) {
                return frame;
            }
        }
    }
}

/// HPACK "literal header field without indexing, indexed name" (RFC 7541 §6.2.2),
/// no Huffman coding; values shorter than 127 bytes.
fn literal(block: &mut Vec<u8>, name_index: u8, value: &str) {
    assert!(name_index < 15 && value.len() < 127);
    block.push(name_index);
    block.push(u8::try_from(value.len()).expect("short value"));
    block.extend_from_slice(value.as_bytes());
}

/// What a stream received until it ended.
#[derive(Debug, Default, Clone)]
pub struct StreamResult {
    pub status_200: bool,
    pub body: Vec<u8>,
    pub ended: bool,
    pub reset: Option<u32>,
}

impl StreamResult {
    /// Folds a frame into the result of its stream.
    pub fn apply(&mut self, frame: &Frame) {
        match frame.kind {
            HEADERS => self.status_200 |= frame.payload.first() == Some(&0x88),
            DATA => self.body.extend_from_slice(&frame.payload),
            RST_STREAM => {
                let code = u32::from_be_bytes(frame.payload[..4].try_into().expect("4 bytes"));
                self.reset = Some(code);
            }
            _ => {}
        }
        if frame.kind == RST_STREAM
            || (frame.flags & END_STREAM != 0 && matches!(frame.kind, HEADERS | DATA))
        {
            self.ended = true;
        }
    }
}
