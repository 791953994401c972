//! Moved sessions against a real rustls client on a real TCP connection, in
//! every suite the ring provider negotiates for TLS 1.2 and 1.3.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

/// Every suite a moved session continues, with its version.
fn suites() -> Vec<(&'static SupportedProtocolVersion, SupportedCipherSuite)> {
    vec![
        (
            &rustls::version::TLS13,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS13,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ),
        (
            &rustls::version::TLS13,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (
            &rustls::version::TLS12,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS12,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            &rustls::version::TLS12,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
}

/// A server that lets its secrets be extracted and a client that trusts it,
/// both with only `suite` of `version`.
fn configs(
    version: &'static SupportedProtocolVersion,
    suite: SupportedCipherSuite,
) -> (TlsAcceptor, TlsConnector) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).expect("a key");
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        ..default_provider()
    });
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[version])
        .expect("the version")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the pair");
    server.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("the root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("the version")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

/// A TLS connection on loopback: the server's end (rustls, handshake done)
/// and the client's.
async fn connected(
    version: &'static SupportedProtocolVersion,
    suite: SupportedCipherSuite,
) -> (
    tokio_rustls::server::TlsStream<Records<TcpStream>>,
    tokio_rustls::client::TlsStream<TcpStream>,
) {
    let (acceptor, connector) = configs(version, suite);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("a name");
        connector
            .connect(name, tcp)
            .await
            .expect("the client's handshake")
    });
    let (tcp, _) = listener.accept().await.expect("accept");
    let server = acceptor
        .accept(Records::new(tcp))
        .await
        .expect("the server's handshake");
    (server, client.await.expect("the client task"))
}

/// The client says `ping N`, the server answers `pong N`.
async fn round(
    server: &mut (impl AsyncRead + AsyncWrite + Unpin),
    client: &mut tokio_rustls::client::TlsStream<TcpStream>,
    n: u32,
) {
    let ping = format!("ping {n}");
    client
        .write_all(ping.as_bytes())
        .await
        .expect("the client writes");
    let mut got = vec![0u8; ping.len()];
    server.read_exact(&mut got).await.expect("the server reads");
    assert_eq!(got, ping.as_bytes());
    server
        .write_all(format!("pong {n}").as_bytes())
        .await
        .expect("the server writes");
    server.flush().await.expect("flush");
    let mut pong = vec![0u8; ping.len()];
    client
        .read_exact(&mut pong)
        .await
        .expect("the client reads");
    assert_eq!(pong, format!("pong {n}").as_bytes());
}

/// Extracts the server's session, as the draining generation does, and
/// reads it back, as the next one does.
fn moved(server: tokio_rustls::server::TlsStream<Records<TcpStream>>) -> ContinuedTls<TcpStream> {
    let (records, conn) = server.into_inner();
    let tcp = records.into_inner();
    let state = SessionState::extract(conn).expect("the secrets");
    let state = SessionState::decode(&state.encode()).expect("the encoded session");
    ContinuedTls::new(tcp, state, Bytes::new()).expect("the session continues")
}

#[tokio::test]
async fn a_session_moves_and_moves_again_in_every_suite_without_a_new_handshake() {
    for (version, suite) in suites() {
        let (mut server, mut client) = connected(version, suite).await;
        round(&mut server, &mut client, 0).await;
        let mut first = moved(server);
        for n in 1..4 {
            round(&mut first, &mut client, n).await;
        }
        // Moved again, as the next generation's own restart does.
        let (tcp, state, plain, sealed) = Box::new(first).into_parts().expect("a quiet session");
        assert!(plain.is_empty() && sealed.is_empty());
        let state = SessionState::decode(&state.encode()).expect("the encoded session");
        let mut second = ContinuedTls::new(tcp, state, sealed).expect("continues");
        for n in 4..6 {
            round(&mut second, &mut client, n).await;
        }
        // Large writes span records, both ways.
        let upload = vec![3u8; 3 * MAX_PLAINTEXT + 7];
        client.write_all(&upload).await.expect("a large upload");
        client.flush().await.expect("flush");
        let mut got = vec![0u8; upload.len()];
        second
            .read_exact(&mut got)
            .await
            .expect("the server reads it");
        assert_eq!(got, upload, "{version:?} {suite:?}");
        let big = vec![7u8; 3 * MAX_PLAINTEXT + 5];
        second.write_all(&big).await.expect("a large write");
        second.flush().await.expect("flush");
        let mut got = vec![0u8; big.len()];
        client
            .read_exact(&mut got)
            .await
            .expect("the client reads it");
        assert_eq!(got, big, "{version:?} {suite:?}");
        // A clean end: close_notify, which the client's rustls accepts.
        second.shutdown().await.expect("close_notify");
        let mut rest = Vec::new();
        client
            .read_to_end(&mut rest)
            .await
            .unwrap_or_else(|e| panic!("{version:?} {suite:?}: an unclean end: {e}"));
        assert!(rest.is_empty());
        // One handshake on the client's side, all along.
        assert!(!client.get_ref().1.is_handshaking());
    }
}

#[tokio::test]
async fn sequence_numbers_go_on_from_where_they_were_never_back() {
    let (mut server, mut client) = connected(
        &rustls::version::TLS13,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
    )
    .await;
    round(&mut server, &mut client, 0).await;
    let mut session = moved(server);
    let (tx, rx) = (session.tx.direction.seq, session.rx.direction.seq);
    round(&mut session, &mut client, 1).await;
    assert_eq!(session.tx.direction.seq, tx + 1, "one record sealed");
    assert_eq!(session.rx.direction.seq, rx + 1, "one record opened");
    let (_, state, _, _) = Box::new(session).into_parts().expect("quiet");
    assert_eq!(
        (state.tx.seq, state.rx.seq),
        (tx + 1, rx + 1),
        "what travels on"
    );
}

#[tokio::test]
async fn a_key_update_after_the_move_ends_the_connection_with_an_error() {
    let (mut server, mut client) = connected(
        &rustls::version::TLS13,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
    )
    .await;
    round(&mut server, &mut client, 0).await;
    let mut session = moved(server);
    client
        .get_mut()
        .1
        .refresh_traffic_keys()
        .expect("a key update");
    client
        .write_all(b"ping 1")
        .await
        .expect("the client writes");
    let mut buf = [0u8; 16];
    let err = session
        .read(&mut buf)
        .await
        .expect_err("a KeyUpdate cannot be followed");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("KeyUpdate"), "{err}");
}

#[tokio::test]
async fn a_record_that_does_not_open_is_an_error_not_data() {
    let (mut server, mut client) = connected(
        &rustls::version::TLS13,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    )
    .await;
    round(&mut server, &mut client, 0).await;
    let mut session = moved(server);
    let mut forged = vec![APPLICATION_DATA, 3, 3, 0, 32];
    forged.extend_from_slice(&[0x55; 32]);
    client
        .get_mut()
        .0
        .write_all(&forged)
        .await
        .expect("raw bytes");
    let mut buf = [0u8; 16];
    let err = session.read(&mut buf).await.expect_err("a forged record");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // Failed for good: no later read or write, and no close_notify.
    session.read(&mut buf).await.expect_err("still failed");
    session
        .write_all(b"pong")
        .await
        .expect_err("nothing sealed after a failure");
    session.shutdown().await.expect("the socket shuts down");
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest).await;
    assert!(end.is_err(), "the client sees no clean close: {end:?}");
}

#[tokio::test]
async fn plaintext_opened_and_not_yet_read_travels_in_front() {
    let (mut server, mut client) = connected(
        &rustls::version::TLS13,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
    )
    .await;
    round(&mut server, &mut client, 0).await;
    // Two requests in one record; the server reads the first.
    client
        .write_all(b"ping 1ping 2")
        .await
        .expect("the client writes");
    let mut first = [0u8; 6];
    server.read_exact(&mut first).await.expect("the first");
    assert_eq!(&first, b"ping 1");
    let TakeOut::Taken { io, state, plain } = take_out(Box::new(server)) else {
        panic!("a quiet moment");
    };
    assert_eq!(&plain[..], b"ping 2", "opened, unread: in front");
    let mut session = ContinuedTls::new(io, state, Bytes::new()).expect("continues");
    client
        .write_all(b"ping 3")
        .await
        .expect("the client writes");
    let mut next = [0u8; 6];
    session
        .read_exact(&mut next)
        .await
        .expect("the next record opens");
    assert_eq!(&next, b"ping 3");
}

#[tokio::test]
async fn a_record_read_in_part_is_not_a_moment_to_move() {
    let (mut server, mut client) = connected(
        &rustls::version::TLS13,
        cipher_suite::TLS13_AES_128_GCM_SHA256,
    )
    .await;
    round(&mut server, &mut client, 0).await;
    // The client's next record, sent in two halves.
    std::io::Write::write_all(&mut client.get_mut().1.writer(), b"ping 1").expect("plaintext");
    let mut record = Vec::new();
    client
        .get_mut()
        .1
        .write_tls(&mut record)
        .expect("the record");
    let half = record.len() / 2;
    client
        .get_mut()
        .0
        .write_all(&record[..half])
        .await
        .expect("half");
    // The server reads the half (its transport has seen it: no boundary).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut buf = [0u8; 16];
    while server.get_ref().0.at_boundary() {
        let mut read = ReadBuf::new(&mut buf);
        let polled = Pin::new(&mut server).poll_read(
            &mut Context::from_waker(std::task::Waker::noop()),
            &mut read,
        );
        assert!(polled.is_pending(), "half a record is no data");
        assert!(
            std::time::Instant::now() < deadline,
            "the half never arrived"
        );
        tokio::task::yield_now().await;
    }
    let TakeOut::NotQuiet(mut server) = take_out(Box::new(server)) else {
        panic!("a record in part: not quiet");
    };
    client
        .get_mut()
        .0
        .write_all(&record[half..])
        .await
        .expect("the rest");
    let mut got = [0u8; 6];
    server
        .read_exact(&mut got)
        .await
        .expect("the record, whole");
    assert_eq!(&got, b"ping 1");
    assert!(
        matches!(take_out(server), TakeOut::Taken { .. }),
        "quiet again"
    );
}

#[tokio::test]
async fn bytes_read_before_the_move_and_not_opened_travel_with_the_session() {
    for (version, suite) in suites() {
        let (mut server, mut client) = connected(version, suite).await;
        round(&mut server, &mut client, 0).await;
        let (records, conn) = server.into_inner();
        let mut tcp = records.into_inner();
        let state = SessionState::extract(conn).expect("the secrets");
        // The client's next record arrives; half of it is read by the old
        // holder (as a transport reading ahead would), half stays in the socket.
        client
            .write_all(b"ping 1")
            .await
            .expect("the client writes");
        let mut header = [0u8; HEADER];
        tcp.read_exact(&mut header).await.expect("a header");
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut half = vec![0u8; len / 2];
        tcp.read_exact(&mut half).await.expect("half a record");
        let sealed = [&header[..], &half[..]].concat();
        let mut session = ContinuedTls::new(tcp, state, Bytes::from(sealed)).expect("continues");
        let mut got = [0u8; 6];
        session
            .read_exact(&mut got)
            .await
            .expect("the record opens");
        assert_eq!(&got, b"ping 1", "{version:?} {suite:?}");
    }
}

#[test]
fn an_encoded_session_reads_back_and_nothing_else_does() {
    let mut bytes = vec![FORMAT, 3, 1];
    for seq in [5u64, 9] {
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&[0x11; 16]);
        bytes.extend_from_slice(&[0x22; NONCE]);
    }
    let state = SessionState::decode(&bytes).expect("a session");
    assert_eq!(
        (state.version, state.cipher),
        (Version::Tls13, Cipher::Aes128Gcm)
    );
    assert_eq!((state.tx.seq, state.rx.seq), (5, 9));
    assert_eq!(&state.encode()[..], &bytes[..], "the same bytes again");
    // Never the keys in a log line.
    let shown = format!("{state:?}");
    assert!(!shown.contains("17") && !shown.contains("34"), "{shown}");
    for cut in 0..bytes.len() {
        assert!(SessionState::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(SessionState::decode(&longer).is_err());
    for (at, bad) in [(0, 2), (1, 4), (2, 9)] {
        let mut wrong = bytes.clone();
        wrong[at] = bad;
        assert!(SessionState::decode(&wrong).is_err(), "byte {at} = {bad}");
    }
}

#[test]
fn a_key_past_its_record_limit_seals_nothing_more() {
    let state = SessionState::decode(&{
        let mut bytes = vec![FORMAT, 3, 1];
        for seq in [AES_GCM_RECORD_LIMIT - 1, 0] {
            bytes.extend_from_slice(&seq.to_be_bytes());
            bytes.extend_from_slice(&[0x11; 16]);
            bytes.extend_from_slice(&[0x22; NONCE]);
        }
        bytes
    })
    .expect("a session");
    let mut tx = Protection::new(state.version, state.cipher, state.tx).expect("a key");
    let mut out = Vec::new();
    tx.seal(APPLICATION_DATA, b"last", &mut out)
        .expect("the last record");
    let err = tx
        .seal(APPLICATION_DATA, b"one more", &mut out)
        .expect_err("past the limit");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

proptest::proptest! {
    #[test]
    fn any_bytes_decode_to_a_session_or_an_error_never_a_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)
    ) {
        if let Ok(state) = SessionState::decode(&bytes) {
            // What decodes encodes back to the same bytes.
            proptest::prop_assert_eq!(&state.encode()[..], &bytes[..]);
        }
    }

    #[test]
    fn any_record_opens_or_fails_never_panics(
        header in proptest::prelude::any::<[u8; HEADER]>(),
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        tls13 in proptest::prelude::any::<bool>(),
        cipher in 1u8..=3,
    ) {
        let mut bytes = vec![FORMAT, if tls13 { 3 } else { 2 }, cipher];
        let key_len = if cipher == 1 { 16 } else { 32 };
        for seq in [0u64, 0] {
            bytes.extend_from_slice(&seq.to_be_bytes());
            bytes.extend_from_slice(&vec![7u8; key_len]);
            bytes.extend_from_slice(&[9u8; NONCE]);
        }
        let state = SessionState::decode(&bytes).expect("a session");
        let mut rx = Protection::new(state.version, state.cipher, state.rx).expect("a key");
        let mut payload = payload;
        let _ = rx.open(header, &mut payload);
    }
}
