//! A test server that misbehaves on purpose, one way per mode, so that each
//! outcome class of `gracedown bench` is produced by a real server over a
//! real socket:
//!
//! - `idle-close`: HTTP/1.1; answers the first request of each connection,
//!   then reads the next request and closes without a response
//!   (closed_before_response);
//! - `reset-mid-response`: HTTP/1.1; sends the head and half the body, then
//!   resets the connection (truncated);
//! - `never-answer`: reads requests and never answers (timeout);
//! - `goaway-low`: h2c; every other connection gets GOAWAY with last stream id
//!   0 before any stream is accepted (unprocessed, then re-sent), the others
//!   are served;
//! - `count`: HTTP/1.1 keep-alive, served normally; prints `answered=N` on SIGTERM;
//! - `stall-once`: as `count`, but the whole server stalls for 500 ms once,
//!   300 ms after it starts (a pause, as a garbage collector or a swap-in makes).
//!
//! It prints `listening ADDR` once bound to 127.0.0.1 on an ephemeral port.
//!
//! Run with: `misbehave idle-close`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhello\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).ok_or("usage: misbehave MODE")?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("listening {}", listener.local_addr()?);
            let answered = Arc::new(AtomicU64::new(0));
            let connections = AtomicU64::new(0);
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted?,
                    _ = term.recv() => break,
                };
                let n = connections.fetch_add(1, Ordering::Relaxed);
                let (mode, answered) = (mode.clone(), Arc::clone(&answered));
                tokio::spawn(async move {
                    let _ = match mode.as_str() {
                        "idle-close" => idle_close(stream).await,
                        "reset-mid-response" => reset_mid_response(stream).await,
                        "never-answer" => never_answer(stream).await,
                        "goaway-low" => goaway_low(stream, n.is_multiple_of(2))
                            .await
                            .map_err(std::io::Error::other),
                        "stall-once" => stall_once(stream, &answered).await,
                        _ => count(stream, &answered).await,
                    };
                });
            }
            println!("answered={}", answered.load(Ordering::Relaxed));
            Ok(())
        })
}

/// Reads one request head (these tests send no bodies).
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return Ok(true);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn idle_close(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    if read_request(&mut stream, &mut buf).await? {
        stream.write_all(RESPONSE).await?;
    }
    // The next request arrives on the idle connection: close without answering.
    read_request(&mut stream, &mut buf).await?;
    Ok(())
}

async fn reset_mid_response(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    if read_request(&mut stream, &mut buf).await? {
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf")
            .await?;
        stream.flush().await?;
        // SO_LINGER 0: close sends RST.
        rustix::net::sockopt::set_socket_linger(&stream, Some(std::time::Duration::ZERO))?;
    }
    Ok(())
}

async fn never_answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

async fn count(mut stream: TcpStream, answered: &AtomicU64) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while read_request(&mut stream, &mut buf).await? {
        stream.write_all(RESPONSE).await?;
        answered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn stall_once(mut stream: TcpStream, answered: &AtomicU64) -> std::io::Result<()> {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static STALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let start = *START.get_or_init(std::time::Instant::now);
    let mut buf = Vec::new();
    while read_request(&mut stream, &mut buf).await? {
        if start.elapsed() >= std::time::Duration::from_millis(300)
            && !STALLED.swap(true, Ordering::AcqRel)
        {
            // Blocks the server's only thread: every connection waits.
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        stream.write_all(RESPONSE).await?;
        answered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn goaway_low(mut stream: TcpStream, refuse: bool) -> Result<(), h2::Error> {
    if refuse {
        {
            let mut conn = h2::server::handshake(&mut stream).await?;
            // No stream accepted yet: GOAWAY's last stream id is 0.
            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
            while conn.accept().await.is_some() {}
        }
        // A lingering close, as a real server's: closing with the client's
        // HEADERS unread would send RST, and the client could lose the GOAWAY
        // ahead of it (then nothing proves the stream unprocessed).
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let linger = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let _ = linger.await;
        return Ok(());
    }
    let mut conn = h2::server::handshake(stream).await?;
    while let Some(request) = conn.accept().await {
        let (_, mut respond) = request?;
        let response = http::Response::new(());
        let mut send = respond.send_response(response, false)?;
        send.send_data(bytes::Bytes::from_static(b"hello\n"), true)?;
    }
    Ok(())
}
