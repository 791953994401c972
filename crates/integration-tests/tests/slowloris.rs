//! Slow clients do not stretch a restart to the drain deadline: connections
//! whose request head trickles in, however slowly, move to the next
//! generation with the half head they sent, or, when connections do not move
//! (`--no-handoff`), the drain's first-request bound ends them.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::http::exchange;
use crate::support::starter::Impl;
use crate::support::{field, free_port, gracedown};

#[test]
fn slowloris_connections_move_with_their_half_head_not_wait_for_the_drain_deadline() {
    let done = restart_under_slowloris(true);
    assert_eq!(
        field(&done, "handed_off").as_deref(),
        Some("201"),
        "the 200 slow connections (half a head each) and the idle probe moved: {done}"
    );
}

#[test]
fn without_handoff_slowloris_connections_end_at_the_first_request_bound_not_the_drain_deadline() {
    let done = restart_under_slowloris(false);
    assert_eq!(
        field(&done, "handed_off").as_deref(),
        Some("0"),
        "nothing moves with --no-handoff: {done}"
    );
    assert_eq!(
        field(&done, "drained").as_deref(),
        Some("201"),
        "the 200 slow connections and the probe, each closed by the drain: {done}"
    );
}

/// Restarts a worker that holds 200 connections trickling a request head
/// (one byte per 100 ms) and one idle probe; returns the old generation's
/// "drain complete" line, once it has checked that nothing was forced and
/// that every connection was counted at the signal (each test then counts
/// them by how they ended).
fn restart_under_slowloris(handoff: bool) -> String {
    let port = free_port();
    let mut worker = vec![
        gracedown().into(),
        "serve".into(),
        "--first-request-timeout".into(),
        "1s".into(),
        "--drain-timeout".into(),
        "30s".into(),
    ];
    if !handoff {
        worker.push("--no-handoff".into());
    }
    let mut cmd = Impl::Ours.command(&[format!("--port=127.0.0.1:{port}")], &worker);
    cmd.env("RUST_LOG", "gracedown=debug");
    let proc = crate::support::process::Proc::spawn(cmd);
    let ready = proc.wait_for_line("generation 1", |l| {
        l.contains("worker ready") && l.contains("generation=1")
    });
    let old = field(&ready, "pid").expect("pid");
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            conn.write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
                .expect("head start");
            conn
        })
        .collect();
    let mut probe = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    exchange(&mut probe, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("the probe's answer");
    // Generation 1 holds every slow one (the drain counts them) once it has
    // accepted them all: a burst can overflow the accept queue, and a
    // connection whose handshake the kernel dropped is accepted later,
    // after the probe.
    proc.wait_for_count("201 connections accepted", 201, |l| {
        l.contains("connection accepted")
    });
    // One more header byte per connection every 100 ms, until the test ends
    // (bounded: at most 60 s).
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for _ in 0..600 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                for conn in &mut slow {
                    let _ = conn.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    proc.signal(libc::SIGHUP);
    proc.wait_for_line("generation 2", |l| {
        l.contains("worker ready") && l.contains("generation=2")
    });
    let done = proc.wait_for_line("the old generation's drain", |l| {
        l.contains("drain complete")
    });
    proc.wait_for_line("the old generation exits", |l| {
        l.contains(&format!("old worker {old} died"))
    });
    stop.store(true, Ordering::Release);
    trickle.join().expect("trickle thread");
    assert_eq!(
        field(&done, "forced").as_deref(),
        Some("0"),
        "the slow connections ended (moved or bounded) before the deadline: {done}"
    );
    assert_eq!(
        field(&done, "connections").as_deref(),
        Some("201"),
        "the 200 slow connections and the probe, all counted at the signal: {done}"
    );
    done
}
