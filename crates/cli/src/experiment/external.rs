//! The external cross-check clients, run against the same server with the
//! same restarts: wrk for HTTP/1.1, h2load for HTTP/2. Nobody here wrote
//! them; their summaries are read by `gracedown_bench::external`.
//!
//! h2load does not reconnect after GOAWAY, so under restarts its failures are
//! its own, not the server's (`docs/design/bench.md`); its no-restart row is
//! the cross-check.

use std::process::Command;
use std::time::Duration;

use gracedown_bench::external::{External, H2load, Wrk};

use super::process::BoxError;

/// Runs `wrk -t2 -cN -dD URL`.
pub(super) fn wrk(url: &str, connections: usize, duration: Duration) -> Result<External, BoxError> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
        ])
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run wrk (Debian package `wrk`): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let wrk = Wrk::parse(&text).ok_or_else(|| {
        format!(
            "wrk printed no result:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(External::from(&wrk))
}

/// Runs `h2load -cN -m1 -t1 -D SECONDS URL` (h2 over TLS by ALPN).
pub(super) fn h2load(
    url: &str,
    connections: usize,
    duration: Duration,
) -> Result<External, BoxError> {
    let out = Command::new("h2load")
        .args([
            &format!("-c{connections}"),
            "-m1",
            "-t1",
            "-D",
            &duration.as_secs().max(1).to_string(),
        ])
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run h2load (Debian package `nghttp2-client`): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let h2load = H2load::parse(&text).ok_or_else(|| {
        format!(
            "h2load printed no result:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(External::from(&h2load))
}
