//! A deliberately naive worker, the negative control of the restart tests:
//! it drains the way hyper-util's `GracefulShutdown` (and Go's
//! `Server.Shutdown`) do, closing idle keep-alive connections at once and
//! without a lingering close. Under restarts and load it must show the
//! errors gracedown exists to remove; if it shows none, the restart tests
//! cannot tell a good drain from a bad one.
//!
//! With `--broken` it answers nothing at all: it reads each request and
//! closes the connection, so a proxy in front answers 502.
//!
//! Run with: `start_server --port 127.0.0.1:8080 -- naive-worker`

use std::convert::Infallible;

use gracedown::listener::{Listener, Listeners};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut inherited = Listeners::from_env()?;
    let listeners = inherited.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
    let Some(Listener::Tcp(listener)) = listeners.into_iter().next() else {
        return Err("naive-worker serves one TCP listener".into());
    };
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let graceful = GracefulShutdown::new();
        let pid = std::process::id();
        eprintln!("naive worker ready pid={pid}");
        let broken = std::env::args().any(|a| a == "--broken");
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut stream, _)) = accepted else { continue };
                    if broken {
                        tokio::spawn(async move {
                            use tokio::io::AsyncReadExt;
                            let mut request = [0u8; 4096];
                            let _ = stream.read(&mut request).await;
                        });
                        continue;
                    }
                    let service = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(format!("from pid {pid}.\n")))))
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move { let _ = conn.await; });
                }
                _ = term.recv() => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    })
}
