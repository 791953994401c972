//! Running wrk (Debian's package) and reading its summary.

use std::process::Command;

use super::process::run;
use super::tool;

/// wrk's figures for one run.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    pub non_2xx: u64,
    pub requests_per_sec: f64,
    pub text: String,
}

impl WrkResult {
    pub fn socket_errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }
}

/// `wrk -t2 -c CONNS -d SECONDSs URL`.
pub fn wrk(url: &str, connections: u32, seconds: u32) -> WrkResult {
    let mut cmd = Command::new(tool("wrk", "wrk"));
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        url,
    ]);
    let out = run(cmd);
    assert!(out.status.success(), "wrk failed: {out:?}");
    parse(&out.stdout)
}

/// Parses wrk's text summary.
pub fn parse(text: &str) -> WrkResult {
    let mut result = WrkResult {
        text: text.to_owned(),
        ..WrkResult::default()
    };
    for line in text.lines().map(str::trim) {
        if line.contains(" requests in ") {
            result.requests = line
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors: ") {
            for part in rest.split(", ") {
                let mut words = part.split(' ');
                let (name, n) = (
                    words.next().unwrap_or(""),
                    words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
                );
                match name {
                    "connect" => result.connect_errors = n,
                    "read" => result.read_errors = n,
                    "write" => result.write_errors = n,
                    "timeout" => result.timeouts = n,
                    _ => {}
                }
            }
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses: ") {
            result.non_2xx = n.parse().unwrap_or(0);
        } else if let Some(n) = line.strip_prefix("Requests/sec:") {
            result.requests_per_sec = n.trim().parse().unwrap_or(0.0);
        }
    }
    assert!(
        result.requests > 0,
        "wrk summary without a request count:\n{text}"
    );
    result
}
