//! Reading the summaries of the external cross-check clients nobody here
//! wrote: wrk (HTTP/1.1) and h2load (HTTP/2). One parser each, used by the
//! experiment and by the tests.

/// wrk's summary.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Wrk {
    /// Responses read (any status).
    pub requests: u64,
    /// `Socket errors: connect N`.
    pub connect_errors: u64,
    /// `read N`.
    pub read_errors: u64,
    /// `write N`.
    pub write_errors: u64,
    /// `timeout N`.
    pub timeouts: u64,
    /// `Non-2xx or 3xx responses: N`.
    pub non_2xx: u64,
    /// `Requests/sec: F`.
    pub requests_per_sec: f64,
}

impl Wrk {
    /// Every socket error wrk counted.
    pub fn socket_errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }

    /// Parses wrk's text summary; `None` when it holds no request count.
    pub fn parse(text: &str) -> Option<Self> {
        let mut wrk = Self::default();
        let mut counted = false;
        for line in text.lines().map(str::trim) {
            if line.contains(" requests in ") {
                wrk.requests = line.split(' ').next()?.parse().ok()?;
                counted = true;
            } else if let Some(rest) = line.strip_prefix("Socket errors: ") {
                for part in rest.split(", ") {
                    let mut words = part.split(' ');
                    let name = words.next().unwrap_or("");
                    let n = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    match name {
                        "connect" => wrk.connect_errors = n,
                        "read" => wrk.read_errors = n,
                        "write" => wrk.write_errors = n,
                        "timeout" => wrk.timeouts = n,
                        _ => {}
                    }
                }
            } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses: ") {
                wrk.non_2xx = n.trim().parse().unwrap_or(0);
            } else if let Some(n) = line.strip_prefix("Requests/sec:") {
                wrk.requests_per_sec = n.trim().parse().unwrap_or(0.0);
            }
        }
        counted.then_some(wrk)
    }
}

/// h2load's summary.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct H2load {
    /// `N succeeded`.
    pub succeeded: u64,
    /// `N failed` + `N errored` + `N timeout`.
    pub failed: u64,
    /// `finished in Ts, F req/s`.
    pub requests_per_sec: f64,
}

impl H2load {
    /// Parses h2load's text summary; `None` when it holds no request line.
    pub fn parse(text: &str) -> Option<Self> {
        let mut h2load = Self::default();
        let mut counted = false;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("finished in ") {
                // finished in 5.00s, 96879.60 req/s, 3.97MB/s
                h2load.requests_per_sec = rest
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
                h2load.succeeded = field(" succeeded");
                h2load.failed = field(" failed") + field(" errored") + field(" timeout");
                counted = true;
            }
        }
        counted.then_some(h2load)
    }
}

/// What an external client reported, in the experiment's terms.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct External {
    /// Completed responses per second.
    pub rps: f64,
    /// Completed 2xx/3xx responses.
    pub ok: u64,
    /// Socket errors, failed or timed-out requests, non-2xx/3xx responses.
    pub errors: u64,
}

impl From<&Wrk> for External {
    fn from(w: &Wrk) -> Self {
        Self {
            rps: w.requests_per_sec,
            ok: w.requests.saturating_sub(w.non_2xx),
            errors: w.socket_errors() + w.non_2xx,
        }
    }
}

impl From<&H2load> for External {
    fn from(h: &H2load) -> Self {
        Self {
            rps: h.requests_per_sec,
            ok: h.succeeded,
            errors: h.failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_summary() {
        let text = "Running 5s test @ http://127.0.0.1:8080/
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   120.00us   50.00us   2.00ms   90.00%
  98765 requests in 5.00s, 10.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  19753.00
Transfer/sec:      2.00MB
";
        let wrk = Wrk::parse(text).expect("a summary");
        assert_eq!(
            wrk,
            Wrk {
                requests: 98765,
                connect_errors: 0,
                read_errors: 3,
                write_errors: 1,
                timeouts: 2,
                non_2xx: 4,
                requests_per_sec: 19753.0,
            }
        );
        let external = External::from(&wrk);
        assert_eq!((external.ok, external.errors), (98761, 10));
        assert_eq!(Wrk::parse("unable to connect"), None);
    }

    #[test]
    fn reads_h2loads_summary() {
        let text = "finished in 5.00s, 96879.60 req/s, 3.97MB/s
requests: 484398 total, 484408 started, 484398 done, 484390 succeeded, 8 failed, 1 errored, 2 timeout
";
        let h2load = H2load::parse(text).expect("a summary");
        assert_eq!(
            (h2load.succeeded, h2load.failed, h2load.requests_per_sec),
            (484390, 11, 96879.6)
        );
    }
}
