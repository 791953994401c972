//! In-process harness: a `Server` on `127.0.0.1:0` in this test's runtime,
//! a oneshot as its shutdown trigger, and its `DrainReport` at the end.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use gracedown::listener::{ListenAddr, Listener};
use gracedown::serve::Server;
use gracedown::shutdown::DrainReport;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in the test's runtime.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<DrainReport, gracedown::Error>>,
}

impl Running {
    /// Starts the drain.
    pub fn drain(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Starts the drain (if not yet) and waits for the report.
    pub async fn report(mut self) -> DrainReport {
        self.drain();
        tokio::time::timeout(WAIT * 4, self.task)
            .await
            .expect("the drain ends")
            .expect("the server task")
            .expect("the server")
    }
}

/// A loopback listener on an ephemeral port.
pub fn listener() -> (Listener, SocketAddr) {
    let listener =
        Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().expect("addr"))).expect("bind");
    let ListenAddr::Tcp(addr) = listener.local_addr().expect("addr") else {
        unreachable!("a TCP listener")
    };
    (listener, addr)
}

/// Serves `service` with the server `configure` makes of a fresh listener.
pub fn start<S, B>(configure: impl FnOnce(Server) -> Server, service: S) -> Running
where
    S: tower::Service<
            http::Request<gracedown::serve::RequestBody>,
            Response = http::Response<B>,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    B: http_body::Body<Data = bytes::Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static,
{
    let (listener, addr) = listener();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = configure(Server::new(vec![listener]));
    let task = tokio::spawn(
        server
            .serve(service)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A self-signed certificate for `localhost`: the server's TLS configuration
/// (built by the caller's own rustls `ServerConfig`) and a client that trusts it.
#[cfg(feature = "tls")]
pub fn tls_pair(alpn: &[&[u8]]) -> (gracedown::tls::TlsConfig, tokio_rustls::TlsConnector) {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (
        gracedown::tls::TlsConfig::from_server_config(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    )
}

/// A service answering every request with `hello\n`.
pub fn hello() -> impl tower::Service<
    http::Request<gracedown::serve::RequestBody>,
    Response = http::Response<http_body_util::Full<bytes::Bytes>>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    gracedown::serve::service_fn(|_req: http::Request<gracedown::serve::RequestBody>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            bytes::Bytes::from_static(b"hello\n"),
        )))
    })
}
