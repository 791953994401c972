//! A zero-downtime worker in a dozen lines: serve the sockets start_server
//! (Perl's or gracedown's) or systemd passes, or 127.0.0.1:8080 when run by
//! hand; drain on SIGTERM and print the report.
//!
//! Run with:
//!   cargo run -p gracedown --example hello
//!   start_server --port=127.0.0.1:8080 -- target/debug/examples/hello   # then kill -HUP start_server

use std::convert::Infallible;

use gracedown::listener::Listeners;
use gracedown::serve::{RequestBody, Server, service_fn};
use http_body_util::Full;
use hyper::body::Bytes;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Take the inherited sockets before anything else opens a descriptor.
    let listeners = Listeners::from_env()?.take_all_or_bind(&["127.0.0.1:8080".parse()?])?;
    let service = service_fn(|request: http::Request<RequestBody>| async move {
        let draining = request
            .extensions()
            .get::<gracedown::shutdown::Draining>()
            .is_some_and(gracedown::shutdown::Draining::is_draining);
        let text = format!(
            "hello from pid {} (draining: {draining})\n",
            std::process::id()
        );
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
    });
    let report = Server::new(listeners).serve(service).await?;
    eprintln!("drained: {report}");
    Ok(())
}
