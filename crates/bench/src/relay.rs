//! A relay that puts a round trip between the load generator and its target:
//! every byte, each half-close (FIN) and each reset (RST) is passed on in
//! order, half a round trip later, in each direction. A restart is then
//! measured as a client across a WAN sees it: an idle connection's close
//! travels half a round trip while the client's next request travels the
//! other way, so the two can cross.
//!
//! The relay adds no error of its own and hides none: a reset on one side
//! becomes a reset on the other, an end of stream an end of stream.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use gracedown_bench::relay::Relay;
//!
//! let relay = Relay::start("127.0.0.1:8080".parse().unwrap(), Duration::from_millis(50)).await?;
//! // Connect to relay.addr() instead of 127.0.0.1:8080.
//! # let _ = relay.addr();
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What crosses the relay in one direction.
#[derive(Debug)]
enum Event {
    Data(Bytes),
    /// The sender half-closed.
    Fin,
    /// The sender reset the connection (or failed).
    Rst,
}

/// Chunks in flight per direction before the reader waits (backpressure).
const IN_FLIGHT: usize = 64;

/// A running relay; dropping it closes its listener and every relayed connection.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on an ephemeral loopback port and relays each connection to
    /// `target`, delaying each direction by `rtt / 2`.
    ///
    /// # Errors
    ///
    /// When the listener cannot be bound.
    pub async fn start(target: SocketAddr, rtt: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind((target.ip(), 0)).await?;
        let addr = listener.local_addr()?;
        let half = rtt / 2;
        let task = tokio::spawn(async move {
            // Owned here: aborting the relay aborts every connection.
            let mut pairs = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => {
                            pairs.spawn(relay_pair(client, target, half));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = pairs.join_next(), if !pairs.is_empty() => {}
                }
            }
        });
        Ok(Self { addr, task })
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection.
async fn relay_pair(client: TcpStream, target: SocketAddr, half: Duration) {
    let _ = client.set_nodelay(true);
    let accepted = Instant::now();
    // The SYN's way to the server.
    tokio::time::sleep_until(accepted + half).await;
    let Ok(server) = TcpStream::connect(target).await else {
        // The refusal's way back: the client sees a reset.
        tokio::time::sleep(half).await;
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let reset_now = Arc::new(Notify::new());
    let upstream = direction(client_read, server_write, half, Arc::clone(&reset_now));
    let downstream = direction(server_read, client_write, half, Arc::clone(&reset_now));
    tokio::select! {
        // A reset was passed on: drop everything (both sockets close, the
        // reset one with an RST) and whatever was still in flight.
        () = reset_now.notified() => {}
        _ = async { tokio::join!(upstream, downstream) } => {}
    }
}

/// One direction: reads from `from`, and writes what it read, half a round
/// trip later, to `to`; an end of stream or a reset is passed on the same way.
async fn direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    half: Duration,
    reset_now: Arc<Notify>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Event)>(IN_FLIGHT);
    let read = async move {
        loop {
            let mut buf = BytesMut::with_capacity(16 * 1024);
            let event = match from.read_buf(&mut buf).await {
                Ok(0) => Event::Fin,
                Ok(_) => Event::Data(buf.freeze()),
                Err(_) => Event::Rst,
            };
            let last = !matches!(event, Event::Data(_));
            if tx.send((Instant::now() + half, event)).await.is_err() || last {
                return;
            }
        }
    };
    let write = async move {
        while let Some((due, event)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            match event {
                Event::Data(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        // The other side is gone; its reader passes that on.
                        return;
                    }
                }
                Event::Fin => {
                    let _ = to.shutdown().await;
                    return;
                }
                Event::Rst => {
                    // SO_LINGER 0: the close that follows sends an RST.
                    let _ = socket2::SockRef::from(to.as_ref()).set_linger(Some(Duration::ZERO));
                    reset_now.notify_one();
                    return;
                }
            }
        }
    };
    tokio::join!(read, write);
}

/// Closes `stream` with an RST.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::Relay;

    const RTT: Duration = Duration::from_millis(40);

    async fn pair() -> (Relay, TcpStream, TcpStream) {
        let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let relay = Relay::start(server.local_addr().expect("addr"), RTT)
            .await
            .expect("relay");
        let client = TcpStream::connect(relay.addr()).await.expect("connect");
        let (accepted, _) = server.accept().await.expect("accept");
        (relay, client, accepted)
    }

    #[tokio::test]
    async fn bytes_arrive_in_order_half_a_round_trip_later() {
        let (_relay, mut client, mut server) = pair().await;
        let sent = tokio::time::Instant::now();
        client.write_all(b"hello ").await.expect("write");
        client.write_all(b"world").await.expect("write");
        let mut got = [0u8; 11];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello world");
        assert!(sent.elapsed() >= RTT / 2, "delayed: {:?}", sent.elapsed());
        server.write_all(b"back").await.expect("write");
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"back");
    }

    #[tokio::test]
    async fn a_fin_is_passed_on_as_a_fin_and_the_other_direction_stays_open() {
        let (_relay, mut client, mut server) = pair().await;
        server.write_all(b"bye").await.expect("write");
        server.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .expect("a clean end of stream");
        assert_eq!(got, b"bye");
        // Half-closed: the client can still send, and the server reads it.
        client
            .write_all(b"late")
            .await
            .expect("write after the FIN");
        let mut late = [0u8; 4];
        server.read_exact(&mut late).await.expect("read");
        assert_eq!(&late, b"late");
    }

    #[tokio::test]
    async fn a_reset_is_passed_on_as_a_reset() {
        let (_relay, mut client, server) = pair().await;
        socket2::SockRef::from(&server)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(server);
        let mut buf = [0u8; 8];
        let error = client
            .read(&mut buf)
            .await
            .expect_err("a reset, not an end of stream");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    }
}
