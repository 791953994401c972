//! TLS sessions survive a restart: every generation opens the session
//! tickets of the others (keys from our start_server, or from key files
//! under any superdaemon), so a client that reconnects to the next
//! generation resumes instead of a full handshake.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::HandshakeKind;

use crate::support::http::{Response, exchange};
use crate::support::process::Proc;
use crate::support::starter::{Impl, wait_alone, wait_status_where};
use crate::support::{TEST_WAIT, TempDir, free_port, gracedown};

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

struct Setup {
    proc: Proc,
    addr: SocketAddr,
    status: PathBuf,
    client: Arc<rustls::ClientConfig>,
    dir: TempDir,
}

/// A superdaemon whose `gracedown serve` workers all serve one certificate.
fn start(which: Impl, starter_args: &[&str], worker_args: &[&str], log: &str) -> Setup {
    let dir = TempDir::new("tls-resume");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    let status = dir.join("status");
    let port = free_port();
    let mut worker: Vec<OsString> = vec![gracedown().into(), "serve".into()];
    for arg in [
        "--cert".to_owned(),
        cert.display().to_string(),
        "--key".to_owned(),
        key.display().to_string(),
        format!("--listen=127.0.0.1:{port}"),
    ] {
        worker.push(arg.into());
    }
    worker.extend(worker_args.iter().map(OsString::from));
    let mut args = vec![
        format!("--port=127.0.0.1:{port}"),
        format!("--status-file={}", status.display()),
        "--interval=1".to_owned(),
    ];
    args.extend(starter_args.iter().map(|a| (*a).to_owned()));
    let mut cmd = which.command(&args, &worker);
    cmd.env("RUST_LOG", log);
    let proc = Proc::spawn(cmd);
    wait_status_where(&status, "generation 1", |s| s.starts_with("1:"), &proc);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certified.cert.der().clone())
        .expect("trust the test cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Setup {
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        status,
        client: Arc::new(client),
        dir,
    }
}

impl Setup {
    /// One request on a new TLS connection (which keeps the tickets the
    /// server sends); how its handshake went, and the response.
    fn get(&self) -> (HandshakeKind, Response) {
        let tcp = TcpStream::connect(self.addr).expect("connect");
        tcp.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
        let name = "localhost".try_into().expect("server name");
        let conn = rustls::ClientConnection::new(Arc::clone(&self.client), name).expect("client");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let response = exchange(&mut tls, GET).expect("a response over TLS");
        let kind = tls.conn.handshake_kind().expect("the handshake is done");
        tls.conn.send_close_notify();
        let _ = std::io::Write::flush(&mut tls);
        (kind, response)
    }

    fn restart_to(&self, generation: u32) {
        self.proc.signal(libc::SIGHUP);
        wait_alone(&self.status, generation, &self.proc);
    }
}

fn generation(response: &Response) -> &str {
    response.header("x-gracedown-generation").unwrap_or("none")
}

#[test]
fn a_client_resumes_its_session_with_the_next_generation_under_our_start_server() {
    let setup = start(Impl::Ours, &[], &[], "gracedown=info");
    let (kind, first) = setup.get();
    assert_eq!((kind, generation(&first)), (HandshakeKind::Full, "1"));
    let (kind, again) = setup.get();
    assert_eq!(
        (kind, generation(&again)),
        (HandshakeKind::Resumed, "1"),
        "the same generation"
    );
    setup.restart_to(2);
    let (kind, second) = setup.get();
    assert_eq!(
        (kind, generation(&second)),
        (HandshakeKind::Resumed, "2"),
        "a ticket from generation 1 opens in generation 2"
    );
}

#[test]
fn without_shared_keys_the_next_generation_makes_a_full_handshake() {
    // Perl's start_server passes no keys: each generation has its own.
    let setup = start(Impl::Perl, &[], &[], "gracedown=info");
    let (kind, first) = setup.get();
    assert_eq!((kind, generation(&first)), (HandshakeKind::Full, "1"));
    setup.restart_to(2);
    let (kind, second) = setup.get();
    assert_eq!((kind, generation(&second)), (HandshakeKind::Full, "2"));
}

fn key_file(dir: &Path, name: &str, fill: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, [fill; 48]).expect("write key");
    path.display().to_string()
}

#[test]
fn ticket_key_files_share_the_keys_under_any_superdaemon() {
    let keys = TempDir::new("ticket-keys");
    let key = key_file(&keys.0, "ticket.key", 7);
    let setup = start(
        Impl::Perl,
        &[],
        &["--ticket-key-file", &key],
        "gracedown=info",
    );
    let (kind, _) = setup.get();
    assert_eq!(kind, HandshakeKind::Full);
    setup.restart_to(2);
    let (kind, second) = setup.get();
    assert_eq!((kind, generation(&second)), (HandshakeKind::Resumed, "2"));
}

#[test]
fn rotated_keys_reach_the_workers_and_a_ticket_older_than_two_rotations_is_refused() {
    let setup = start(
        Impl::Ours,
        &["--ticket-key-rotation=2"],
        &[],
        "gracedown=debug",
    );
    let (kind, _) = setup.get();
    assert_eq!(kind, HandshakeKind::Full);
    // Generation 1 hears of two rotations: the key its ticket used is gone.
    setup.proc.wait_for_count("two rotations", 2, |l| {
        l.contains("TLS session-ticket keys rotated")
    });
    setup.restart_to(2);
    let (kind, second) = setup.get();
    assert_eq!(
        (kind, generation(&second)),
        (HandshakeKind::Full, "2"),
        "an old ticket is refused"
    );
    // A fresh ticket, from the current key, opens in the next generation.
    setup.restart_to(3);
    let (kind, third) = setup.get();
    assert_eq!((kind, generation(&third)), (HandshakeKind::Resumed, "3"));
    let _ = &setup.dir;
}

#[test]
fn a_ticket_key_file_of_the_wrong_size_is_refused_with_its_name() {
    let keys = TempDir::new("ticket-keys-bad");
    let path = keys.join("short.key");
    std::fs::write(&path, [1u8; 32]).expect("write key");
    let output = crate::support::process::run({
        let mut cmd = std::process::Command::new(gracedown());
        cmd.args([
            "serve",
            "--tls",
            "--listen=127.0.0.1:0",
            "--ticket-key-file",
        ])
        .arg(&path);
        cmd
    });
    assert!(!output.status.success(), "{output:?}");
    let text = format!("{}{}", output.stdout, output.stderr);
    assert!(text.contains("has 32 bytes"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}
