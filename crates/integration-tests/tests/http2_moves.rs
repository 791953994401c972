//! HTTP/2 connections survive a restart too: under our start_server a
//! draining `gracedown serve` hands each HTTP/2 connection (h2c, or over TLS
//! with its session) to the next generation at a quiet moment, with no
//! GOAWAY, and the client's next streams are answered there on the same TCP
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use crate::support::starter::{Impl, Served};
use crate::support::tls::TlsServed;
use crate::support::{TEST_WAIT, count, drain_line};

/// Request headers an encoder with a table would index: 40 of them, 60-odd
/// bytes each, new values for every generation.
fn heavy_request(addr: SocketAddr, generation: u32, body: usize) -> (Request<()>, Bytes) {
    let mut request = Request::post(format!("http://{addr}/echo"));
    for i in 0..40 {
        request = request.header(
            format!("x-heavy-{i}"),
            format!("generation {generation} value {i} {}", "h".repeat(40)),
        );
    }
    let body = Bytes::from(
        (0..body)
            .map(|i| b'a' + u8::try_from((i + generation as usize) % 26).unwrap_or(0))
            .collect::<Vec<u8>>(),
    );
    (request.body(()).expect("request"), body)
}

/// An HTTP/2 client on one connection (h2c, or h2 over TLS).
struct Client {
    rt: Runtime,
    send: h2::client::SendRequest<Bytes>,
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
    addr: SocketAddr,
}

impl Client {
    fn h2c(addr: SocketAddr) -> Self {
        let rt = Runtime::new().expect("runtime");
        let (send, connection) = rt.block_on(async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let (send, connection) = h2::client::Builder::new()
                .initial_connection_window_size(1 << 20)
                .handshake::<_, Bytes>(tcp)
                .await
                .expect("h2c handshake");
            (send, tokio::spawn(connection))
        });
        Self {
            rt,
            send,
            connection,
            addr,
        }
    }

    fn tls(addr: SocketAddr, config: &rustls::ClientConfig) -> Self {
        let mut config = config.clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let rt = Runtime::new().expect("runtime");
        let (send, connection) = rt.block_on(async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = "localhost".try_into().expect("server name");
            let tls = connector.connect(name, tcp).await.expect("TLS handshake");
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let (send, connection) = h2::client::Builder::new()
                .initial_connection_window_size(1 << 20)
                .handshake::<_, Bytes>(tls)
                .await
                .expect("h2 handshake");
            (send, tokio::spawn(connection))
        });
        Self {
            rt,
            send,
            connection,
            addr,
        }
    }

    /// A heavy POST to /echo on a new stream: the generation that answered.
    fn echo(&mut self, generation: u32) -> String {
        let (request, body) = heavy_request(self.addr, generation, 40_000);
        let send = self.send.clone();
        self.rt.block_on(async move {
            tokio::time::timeout(TEST_WAIT, async move {
                let mut send = send.ready().await.expect("the connection takes a stream");
                let (response, mut stream) = send.send_request(request, false).expect("send");
                stream.reserve_capacity(body.len());
                stream.send_data(body.clone(), true).expect("the body");
                let response = response.await.expect("answered");
                assert_eq!(response.status(), 200);
                let answered = response.headers()["x-gracedown-generation"]
                    .to_str()
                    .expect("ascii")
                    .to_owned();
                let mut incoming = response.into_body();
                let mut echoed = Vec::new();
                while let Some(chunk) = incoming.data().await {
                    let chunk = chunk.expect("the echoed body");
                    echoed.extend_from_slice(&chunk);
                    let _ = incoming.flow_control().release_capacity(chunk.len());
                }
                assert!(echoed == body, "the body comes back whole");
                answered
            })
            .await
            .expect("answered in time")
        })
    }

    /// The connection never ended (no GOAWAY, no error).
    fn assert_open(&self) {
        assert!(
            !self.connection.is_finished(),
            "the client's connection ended"
        );
    }
}

#[test]
fn an_h2c_connection_opens_streams_across_twenty_restarts_with_no_goaway() {
    let setup = Served::start(Impl::Ours, &[], "gracedown=info");
    let mut client = Client::h2c(setup.addr);
    assert_eq!(client.echo(1), "1");
    for generation in 2..=21u32 {
        setup.restart_to(generation);
        let drained = drain_line(&setup.proc, generation as usize - 1);
        assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
        assert_eq!(count(&drained, "connections"), 1, "{drained}");
        // Several streams per generation.
        for _ in 0..3 {
            assert_eq!(client.echo(generation), generation.to_string());
        }
        client.assert_open();
    }
}

#[test]
fn an_h2_connection_over_tls_opens_streams_across_twenty_restarts_with_one_handshake() {
    let setup = TlsServed::start(Impl::Ours, &[], &[], "gracedown=info");
    let mut client = Client::tls(setup.addr, &setup.client);
    assert_eq!(client.echo(1), "1");
    for generation in 2..=21u32 {
        setup.restart_to(generation);
        let drained = drain_line(&setup.proc, generation as usize - 1);
        assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
        for _ in 0..3 {
            assert_eq!(client.echo(generation), generation.to_string());
        }
        client.assert_open();
    }
}

#[test]
fn under_perls_start_server_an_h2c_connection_is_told_to_go_away_as_before() {
    let setup = Served::start(Impl::Perl, &[], "gracedown=info");
    let mut client = Client::h2c(setup.addr);
    assert_eq!(client.echo(1), "1");
    setup.restart_to(2);
    let ended = client.rt.block_on(async {
        tokio::time::timeout(TEST_WAIT, &mut client.connection)
            .await
            .expect("the connection ends")
    });
    assert!(ended.is_ok(), "a graceful GOAWAY, not an error: {ended:?}");
}

#[test]
fn a_stream_open_at_the_signal_is_answered_here_and_the_connection_moves_after_it() {
    let setup = Served::start(Impl::Ours, &[], "gracedown=info");
    let mut client = Client::h2c(setup.addr);
    assert_eq!(client.echo(1), "1");
    let request = Request::get(format!("http://{}/sleep?ms=400", setup.addr))
        .body(())
        .expect("request");
    let send = client.send.clone();
    let slow = client.rt.spawn(async move {
        let mut send = send.ready().await.expect("the connection takes a stream");
        let (response, _) = send.send_request(request, true).expect("send");
        let response = response.await.expect("answered");
        response.headers()["x-gracedown-generation"]
            .to_str()
            .expect("ascii")
            .to_owned()
    });
    // The stream is open at the signal: generation 1 answers it, then the
    // connection moves (generation 1 is gone once this returns).
    setup.restart_to(2);
    let drained = drain_line(&setup.proc, 1);
    assert_eq!(count(&drained, "handed_off"), 1, "{drained}");
    let answered = client
        .rt
        .block_on(async { tokio::time::timeout(TEST_WAIT, slow).await })
        .expect("the slow stream is answered in time")
        .expect("its task");
    assert_eq!(answered, "1", "the stream open at the signal");
    assert_eq!(client.echo(2), "2");
    client.assert_open();
}
