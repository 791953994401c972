//! A passive reader of the server's HTTP/2 frame headers, so the client
//! knows the last stream id of every GOAWAY it received: the h2 crate fails
//! streams above it and streams that die later with the same error, and only
//! the former are proven unprocessed (RFC 9113 §6.8).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const GOAWAY: u8 = 0x7;

/// What the sniffer learned of one connection.
#[derive(Debug)]
pub(crate) struct Goaways {
    /// The lowest last-stream-id of any GOAWAY (`u32::MAX` before any).
    last_id: AtomicU32,
    count: AtomicU64,
}

impl Goaways {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            last_id: AtomicU32::new(u32::MAX),
            count: AtomicU64::new(0),
        })
    }

    /// Whether a GOAWAY proved stream `id` unprocessed.
    pub(crate) fn proves_unprocessed(&self, id: u32) -> bool {
        id > self.last_id.load(Ordering::Acquire)
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
enum Parse {
    /// Collecting a 9-byte frame header.
    Head { buf: [u8; 9], have: usize },
    /// Collecting a GOAWAY's last stream id, then skipping the rest.
    GoawayId {
        buf: [u8; 4],
        have: usize,
        rest: usize,
    },
    /// Skipping a payload.
    Skip { left: usize },
}

/// Wraps the transport under the h2 client; reads pass through unchanged.
#[derive(Debug)]
pub(crate) struct Sniffed<T> {
    inner: T,
    parse: Parse,
    goaways: Arc<Goaways>,
}

impl<T> Sniffed<T> {
    pub(crate) fn new(inner: T, goaways: Arc<Goaways>) -> Self {
        Self {
            inner,
            parse: Parse::Head {
                buf: [0; 9],
                have: 0,
            },
            goaways,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.parse {
                Parse::Head { buf, have } => {
                    let n = (9 - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 9 {
                        let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                        self.parse = if buf[3] == GOAWAY && len >= 8 {
                            Parse::GoawayId {
                                buf: [0; 4],
                                have: 0,
                                rest: len - 4,
                            }
                        } else {
                            Parse::Skip { left: len }
                        };
                    }
                }
                Parse::GoawayId { buf, have, rest } => {
                    let n = (4 - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 4 {
                        let id = u32::from_be_bytes(*buf) & 0x7fff_ffff;
                        self.goaways.last_id.fetch_min(id, Ordering::AcqRel);
                        self.goaways.count.fetch_add(1, Ordering::AcqRel);
                        self.parse = Parse::Skip { left: *rest };
                    }
                }
                Parse::Skip { left } => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                }
            }
            if let Parse::Skip { left: 0 } = self.parse {
                self.parse = Parse::Head {
                    buf: [0; 9],
                    have: 0,
                };
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Sniffed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let fresh = buf.filled()[before..].to_vec();
            self.feed(&fresh);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Sniffed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("len").to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn finds_goaway_last_ids_split_across_reads() {
        let goaways = Goaways::new();
        let mut sniffed = Sniffed::new((), Arc::clone(&goaways));
        let mut wire = frame(0x4, 0, &[0; 6]);
        wire.extend(frame(GOAWAY, 0, &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
        wire.extend(frame(0x0, 1, b"hello"));
        wire.extend(frame(GOAWAY, 0, &[0, 0, 0, 5, 0, 0, 0, 0, b'x']));
        for chunk in wire.chunks(3) {
            sniffed.feed(chunk);
        }
        assert_eq!(goaways.count(), 2);
        assert!(!goaways.proves_unprocessed(5));
        assert!(goaways.proves_unprocessed(7));
    }
}
