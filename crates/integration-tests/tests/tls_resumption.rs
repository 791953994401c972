//! TLS sessions survive a restart: every generation opens the session
//! tickets of the others (keys from our start_server, or from key files
//! under any superdaemon), so a client that reconnects to the next
//! generation resumes instead of a full handshake.

use std::path::Path;

use rustls::HandshakeKind;

use crate::support::http::Response;
use crate::support::starter::Impl;
use crate::support::tls::TlsServed;
use crate::support::{TempDir, gracedown};

fn generation(response: &Response) -> &str {
    response.header("x-gracedown-generation").unwrap_or("none")
}

#[test]
fn a_client_resumes_its_session_with_the_next_generation_under_our_start_server() {
    let setup = TlsServed::start(Impl::Ours, &[], &[], "gracedown=info");
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
    let setup = TlsServed::start(Impl::Perl, &[], &[], "gracedown=info");
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
    let setup = TlsServed::start(
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
    let setup = TlsServed::start(
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
