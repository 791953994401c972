//! The baseline gracedown is measured against (`scripts/bench-ceiling.sh`):
//! plain hyper, the same handler body and response headers as `gracedown
//! serve`, the same tokio multi-thread runtime, and no drain, bounds or
//! restarts at all.
//!
//! Modes: `http1` is hyper's `http1::Builder` alone (the fastest HTTP/1.1
//! hyper serves); `http1-flatten` is the same with hyper's flattened writes
//! (`writev(false)`, as `gracedown serve --http1-flatten`); `auto` is
//! hyper-util's HTTP/1.1 + h2c server (it reads the first bytes to tell them
//! apart); with a certificate and key, TLS with ALPN h2 and http/1.1.
//!
//! Run with:
//!   cargo run --release -p gracedown --features tls --example plain_hyper -- http1 127.0.0.1:8080
//!   cargo run --release -p gracedown --features tls --example plain_hyper -- http1-flatten 127.0.0.1:8080
//!   cargo run --release -p gracedown --features tls --example plain_hyper -- auto 127.0.0.1:8080
//!   cargo run --release -p gracedown --features tls --example plain_hyper -- auto 127.0.0.1:8443 cert.pem key.pem

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const USAGE: &str =
    "usage: plain_hyper http1|http1-flatten|auto [ADDRESS] [CERT KEY] (TLS: mode auto)";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plain_hyper: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (http1_only, flatten) = match args.first().map(String::as_str) {
        Some("http1") => (true, false),
        Some("http1-flatten") => (true, true),
        Some("auto") => (false, false),
        Some(other) => return Err(format!("unknown mode `{other}`; {USAGE}").into()),
        None => return Err(format!("no mode given; {USAGE}").into()),
    };
    let addr = args.get(1).map_or("127.0.0.1:8080", String::as_str);
    let tls = match &args[args.len().min(2)..] {
        [] => None,
        [_, _] if http1_only => {
            return Err(format!(
                "mode `{}` serves plain TCP; TLS (a certificate and key) is mode auto",
                args[0]
            )
            .into());
        }
        [cert, key] => Some(tls_acceptor(cert, key)?),
        rest => {
            return Err(format!(
                "after the address come a certificate and a key or nothing, not {rest:?}; {USAGE}"
            )
            .into());
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind `{addr}`: {e}"))?;
    eprintln!("plain hyper listening on {}", listener.local_addr()?);
    // Built once, as `gracedown serve` builds them: static bytes that a
    // response carries without copying or counting.
    let pid = std::process::id();
    let body: &'static str = String::leak(format!("from pid {pid}.\n"));
    let pid: &'static str = String::leak(pid.to_string());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| hello(req, body, pid));
            if http1_only {
                let mut builder = http1::Builder::new();
                if flatten {
                    builder.writev(false);
                }
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                return;
            }
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(_) => return,
                },
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
        });
    }
}

/// The handler: an `async fn` that takes the request, as hyper's own
/// examples write it (its future holds the request until it runs), and
/// routes on the path as `gracedown serve` does.
/// The identity header's name, parsed at compile time as `gracedown serve`'s.
const PID: HeaderName = HeaderName::from_static("x-gracedown-pid");

async fn hello(
    req: Request<Incoming>,
    body: &'static str,
    pid: &'static str,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = match req.uri().path() {
        "/healthz" => Response::new(Full::new(Bytes::from_static(b"ok\n"))),
        _ => Response::new(Full::new(Bytes::from_static(body.as_bytes()))),
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(PID, HeaderValue::from_static(pid));
    Ok(response)
}

fn tls_acceptor(
    cert: &str,
    key: &str,
) -> Result<tokio_rustls::TlsAcceptor, Box<dyn std::error::Error>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| format!("certificate `{cert}`: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key `{key}`: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
