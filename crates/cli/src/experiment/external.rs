//! The external cross-check clients, run against the same server with the
//! same restarts: wrk for HTTP/1.1, h2load for HTTP/2. Nobody here wrote them.
//!
//! h2load does not reconnect after GOAWAY, so under restarts its failures are
//! its own, not the server's (DESIGN.md §4); its no-restart row is the
//! cross-check.

use std::process::Command;
use std::time::Duration;

use super::BoxError;

/// What an external client reported.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct External {
    /// Requests per second (completed).
    pub(super) rps: f64,
    /// Completed responses.
    pub(super) ok: u64,
    /// Socket errors, failed or timed-out requests, non-2xx.
    pub(super) errors: u64,
}

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
    let mut result = External::default();
    for line in text.lines().map(str::trim) {
        if line.contains(" requests in ") {
            result.ok = line
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors: ") {
            result.errors += rest
                .split(", ")
                .filter_map(|part| part.split(' ').nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses: ") {
            let non_2xx = n.trim().parse().unwrap_or(0);
            result.errors += non_2xx;
            result.ok = result.ok.saturating_sub(non_2xx);
        } else if let Some(n) = line.strip_prefix("Requests/sec:") {
            result.rps = n.trim().parse().unwrap_or(0.0);
        }
    }
    if result.ok == 0 && result.rps == 0.0 {
        return Err(format!(
            "wrk printed no result:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(result)
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
    let mut result = External::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // finished in 5.00s, 96879.60 req/s, 3.97MB/s
            result.rps = rest
                .split(", ")
                .nth(1)
                .and_then(|r| r.split(' ').next()?.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            let field = |name: &str| {
                rest.split(", ")
                    .find(|p| p.ends_with(name))
                    .and_then(|p| p.split(' ').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            result.ok = field(" succeeded");
            result.errors = field(" failed") + field(" errored") + field(" timeout");
        }
    }
    if result.ok == 0 && result.rps == 0.0 {
        return Err(format!(
            "h2load printed no result:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(result)
}
