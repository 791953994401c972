//! The README's example, as it stands there (a test holds the two alike): an
//! axum `Router` on the sockets a superdaemon passes, or 127.0.0.1:8080 when
//! run by hand, drained on SIGTERM. Under `start_server` (gracedown's or
//! Perl's) `kill -HUP` restarts it with no failed request, the new generation
//! taking over as soon as it serves (the server tells `start_server` itself).
//!
//! Run with:
//!   cargo run -p gracedown --example readme

// README: from here
use axum::{Router, routing::get};
use gracedown::{listener::Listeners, serve::Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listeners = Listeners::from_env()?.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
    let app = Router::new().route("/", get(|| async { "hello\n" }));
    let report = Server::new(listeners).serve(app).await?;
    eprintln!("drained: {report}");
    Ok(())
}
