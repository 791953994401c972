//! Lame-duck mode (`--shutdown-delay`), for a fleet behind a load balancer
//! that learns of a stop late: after the stop signal the worker keeps
//! accepting and serving for the delay while it reports itself not ready
//! and tells clients to go elsewhere, and only then stops accepting and
//! drains; a second stop signal ends the delay early.

use std::io::ErrorKind;
use std::net::TcpStream;

use crate::support::http::{exchange, get};
use crate::support::{TEST_WAIT, Worker, field, spawn_worker, spawn_worker_with};

const GET: &str = "GET / HTTP/1.1\r\nHost: fleet\r\n\r\n";

fn connect(worker: &Worker) -> TcpStream {
    let stream = TcpStream::connect(worker.addr).expect("connect");
    stream
        .set_read_timeout(Some(TEST_WAIT))
        .expect("read timeout");
    stream
}

/// Sends the stop signal and waits until the worker says it is a lame duck.
fn stop(worker: &Worker) {
    worker.proc.signal(libc::SIGTERM);
    worker
        .proc
        .wait_for_line("the lame duck", |l| l.contains("lame duck:"));
}

/// Waits for the drain's report and the exit: nothing forced, exit 0.
fn drains_cleanly(worker: &mut Worker) {
    let done = worker.drain_complete();
    assert_eq!(field(&done, "forced").as_deref(), Some("0"), "{done}");
    assert!(
        worker.proc.wait_exit().success(),
        "{}",
        worker.proc.describe()
    );
}

#[test]
fn during_the_delay_new_clients_are_served_told_to_go_and_readiness_fails() {
    // A delay longer than the test: only the second signal ends it.
    let mut worker = spawn_worker(&["--shutdown-delay", "300s"]);
    let mut kept = connect(&worker);
    let before = exchange(&mut kept, GET).expect("served before the stop");
    assert_eq!(before.header("connection"), None);
    assert_eq!(get(worker.addr, "/healthz").status, 200);
    assert_eq!(get(worker.addr, "/readyz").status, 200);
    assert_eq!(get(worker.addr, "/livez").status, 200);
    stop(&worker);
    // A connection the balancer still sends: accepted and served, and told
    // to go elsewhere.
    let mut late = connect(&worker);
    let answer = exchange(&mut late, GET).expect("served during the delay");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    // A keep-alive connection from before: its next response says close.
    let again = exchange(&mut kept, GET).expect("served during the delay");
    assert_eq!(again.status, 200);
    assert_eq!(again.header("connection"), Some("close"), "{again:?}");
    // Readiness routes see the drain from the signal on; liveness does not.
    assert_eq!(get(worker.addr, "/healthz").status, 503);
    let ready = get(worker.addr, "/readyz");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.header("cache-control"), Some("no-store"), "{ready:?}");
    assert_eq!(get(worker.addr, "/livez").status, 200);
    // The second stop signal ends the delay: the worker drains and exits.
    worker.proc.signal(libc::SIGTERM);
    worker.proc.wait_for_line("the delay ends early", |l| {
        l.contains("lame duck ends early")
    });
    drains_cleanly(&mut worker);
}

#[test]
fn after_the_delay_the_worker_stops_accepting_and_drains() {
    let mut worker = spawn_worker(&["--shutdown-delay", "1s"]);
    stop(&worker);
    assert_eq!(
        get(worker.addr, "/").status,
        200,
        "accepting during the delay"
    );
    worker
        .proc
        .wait_for_line("the drain after the delay", |l| l.contains(" draining "));
    drains_cleanly(&mut worker);
    // Its own listener (no superdaemon here) is closed: refused.
    let refused = TcpStream::connect(worker.addr).expect_err("nothing listens");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn without_a_delay_the_stop_drains_at_once() {
    let worker = spawn_worker(&[]);
    worker.proc.signal(libc::SIGTERM);
    worker.drain_complete();
    assert!(
        !worker.proc.output().iter().any(|l| l.contains("lame duck")),
        "{}",
        worker.proc.describe()
    );
}

#[test]
fn clients_waiting_in_the_accept_queue_at_the_stop_are_served_not_reset() {
    // No superdaemon: the worker holds the only copy of its listening
    // socket, so closing it would reset every client still in the queue.
    let mut worker = spawn_worker(&[]);
    // Stopped, the worker accepts nothing: the kernel completes the
    // handshakes and queues the clients, with their requests.
    worker.proc.signal(libc::SIGSTOP);
    let mut queued: Vec<TcpStream> = (0..20).map(|_| connect(&worker)).collect();
    for stream in &mut queued {
        std::io::Write::write_all(stream, GET.as_bytes()).expect("send while queued");
    }
    // The stop signal is pending when it resumes: the drain begins with the
    // clients still queued. (Without the sweep, whether the accept loop
    // or the stop runs first decides how many are reset: it fails about
    // one run in three.)
    worker.proc.signal(libc::SIGTERM);
    worker.proc.signal(libc::SIGCONT);
    for (i, stream) in queued.iter_mut().enumerate() {
        let answer = crate::support::http::read_response_from(stream)
            .unwrap_or_else(|e| panic!("queued client {i}: {e}\n{}", worker.proc.describe()));
        assert_eq!(answer.status, 200, "queued client {i}: {answer:?}");
    }
    drop(queued);
    drains_cleanly(&mut worker);
}

#[test]
fn in_a_kubernetes_pod_the_worker_is_a_lame_duck_for_five_seconds_by_default() {
    // Kubernetes sets KUBERNETES_SERVICE_HOST in every container; nothing
    // connects to it.
    let pod = [("KUBERNETES_SERVICE_HOST", "10.96.0.1")];
    let mut worker = spawn_worker_with(&[], &pod);
    let detected = worker
        .proc
        .wait_for_line("the pod defaults", |l| l.contains("Kubernetes pod"));
    assert_eq!(
        field(&detected, "shutdown_delay_ms").as_deref(),
        Some("5000"),
        "{detected}"
    );
    assert_eq!(
        field(&detected, "drain_timeout_ms").as_deref(),
        Some("15000"),
        "{detected}"
    );
    // Within Kubernetes' default grace period of 30 s.
    assert_eq!(
        field(&detected, "longest_ms").as_deref(),
        Some("25000"),
        "{detected}"
    );
    worker.proc.signal(libc::SIGTERM);
    let lame = worker
        .proc
        .wait_for_line("the lame duck", |l| l.contains("lame duck:"));
    assert_eq!(field(&lame, "delay_ms").as_deref(), Some("5000"), "{lame}");
    assert_eq!(get(worker.addr, "/readyz").status, 503);
    // The operator's second signal: no need to wait the delay out here.
    worker.proc.signal(libc::SIGTERM);
    drains_cleanly(&mut worker);

    // An explicit flag wins, and the log says what is in effect.
    let worker = spawn_worker_with(&["--shutdown-delay", "0s"], &pod);
    let detected = worker
        .proc
        .wait_for_line("the pod defaults", |l| l.contains("Kubernetes pod"));
    assert_eq!(
        field(&detected, "shutdown_delay_ms").as_deref(),
        Some("0"),
        "{detected}"
    );
    worker.proc.signal(libc::SIGTERM);
    worker.drain_complete();
    assert!(
        !worker
            .proc
            .output()
            .iter()
            .any(|l| l.contains("lame duck:")),
        "{}",
        worker.proc.describe()
    );
}
