//! A superdaemon with TLS workers, and a client that trusts them.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::HandshakeKind;

use super::http::{Response, exchange};
use super::process::Proc;
use super::starter::{Impl, wait_alone, wait_status_where};
use super::{TEST_WAIT, TempDir, free_port, gracedown};

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A superdaemon whose `gracedown serve` workers serve TLS with one
/// certificate, and a client configuration that trusts it (ALPN `http/1.1`).
pub struct TlsServed {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub status: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
    pub dir: TempDir,
}

impl TlsServed {
    /// Starts `which` superdaemon with `gracedown serve` workers serving TLS.
    pub fn start(which: Impl, starter_args: &[&str], worker_args: &[&str], log: &str) -> Self {
        let dir = TempDir::new("tls-resume");
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
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
        Self {
            proc,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            status,
            client: Arc::new(client),
            dir,
        }
    }

    /// One request on a new TLS connection (which keeps the tickets the
    /// server sends); how its handshake went, and the response.
    pub fn get(&self) -> (HandshakeKind, Response) {
        let mut tls = self.connect();
        let response = exchange(&mut tls, GET).expect("a response over TLS");
        let kind = tls.conn.handshake_kind().expect("the handshake is done");
        tls.conn.send_close_notify();
        let _ = std::io::Write::flush(&mut tls);
        (kind, response)
    }

    /// SIGHUP, then waits until `generation` is the only one left.
    pub fn restart_to(&self, generation: u32) {
        self.proc.signal(libc::SIGHUP);
        wait_alone(&self.status, generation, &self.proc);
    }

    /// A new TLS connection (its handshake runs with the first exchange).
    pub fn connect(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let tcp = TcpStream::connect(self.addr).expect("connect");
        tcp.set_read_timeout(Some(TEST_WAIT)).expect("timeout");
        let name = "localhost".try_into().expect("server name");
        let conn = rustls::ClientConnection::new(Arc::clone(&self.client), name).expect("client");
        rustls::StreamOwned::new(conn, tcp)
    }
}
