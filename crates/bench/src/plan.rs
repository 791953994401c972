//! What to run: the target URL, protocol, request, concurrency, duration and bounds.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How to speak to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.1 over plain TCP.
    Http1,
    /// HTTP/2 over plain TCP with prior knowledge (h2c).
    H2c,
    /// TLS, HTTP/2 or HTTP/1.1 as ALPN chooses.
    Https,
    /// TLS, offering only `http/1.1`.
    HttpsHttp1,
    /// TLS, offering only `h2`.
    HttpsHttp2,
}

impl Protocol {
    /// How reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http1 => "http/1.1",
            Self::H2c => "h2c",
            Self::Https => "TLS, h2 or http/1.1 by ALPN",
            Self::HttpsHttp1 => "http/1.1 over TLS",
            Self::HttpsHttp2 => "h2 over TLS",
        }
    }

    /// Whether the connection uses TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::HttpsHttp1 | Self::HttpsHttp2)
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Load {
    /// Each connection sends its next request as soon as the last one ended.
    BackToBack,
    /// Each connection pauses a uniformly random time in `min..=max` between
    /// a response and its next request, as browsers, API clients and proxy
    /// pools do: its keep-alive connection sits idle meanwhile.
    ThinkTime {
        /// The shortest pause.
        min: Duration,
        /// The longest pause.
        max: Duration,
    },
    /// Requests start at a constant total rate whatever the server does
    /// (open loop), spread over the connections; latency is measured from
    /// when each request was due, so a stall shows in it (no coordinated
    /// omission, as wrk2).
    Rate {
        /// Requests per second, in total.
        per_second: f64,
    },
}

impl Load {
    /// How reports describe it: `back-to-back`, `think 500ms..1.5s`, `rate 500/s`.
    pub fn describe(&self) -> String {
        match self {
            Self::BackToBack => "back-to-back".to_owned(),
            Self::ThinkTime { min, max } if min == max => format!("think {}ms", min.as_millis()),
            Self::ThinkTime { min, max } => {
                format!("think {}..{}ms", min.as_millis(), max.as_millis())
            }
            Self::Rate { per_second } => format!("rate {per_second}/s"),
        }
    }
}

/// Where restarts happened, for the timeline: the caller marks, the report shows.
#[derive(Debug, Clone, Default)]
pub struct Markers(Arc<Mutex<Vec<Instant>>>);

impl Markers {
    /// Records "a restart happened now".
    pub fn mark(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
    }

    pub(crate) fn since(&self, start: Instant) -> Vec<Duration> {
        let marks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        marks
            .iter()
            .map(|m| m.saturating_duration_since(start))
            .collect()
    }
}

/// A URL the bench cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Not `http://HOST[:PORT]/PATH` or `https://...`.
    #[error("`{0}` is not an http:// or https:// URL with a host")]
    Url(String),
    /// The host has no address.
    #[error("cannot resolve `{0}`")]
    Resolve(String),
    /// The URL's port is not a TCP port.
    #[error("`{url}` has port `{port}`, expected 1 to 65535")]
    Port {
        /// The URL.
        url: String,
        /// The port as written.
        port: String,
    },
}

/// A closed-model run: `connections` slots, each with one request
/// outstanding at a time, for `duration`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) authority: String,
    pub(crate) path: String,
    pub(crate) protocol: Protocol,
    pub(crate) method: http::Method,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) timeout: Duration,
    pub(crate) keepalive: bool,
    pub(crate) insecure: bool,
    pub(crate) cacert: Option<PathBuf>,
    pub(crate) interval: Duration,
    pub(crate) markers: Markers,
    pub(crate) load: Load,
    pub(crate) rtt: Option<Duration>,
}

impl Plan {
    /// `GET /` on `addr`: 10 connections, 10 s, 10 s per request.
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Self {
        Self {
            addr,
            host: addr.ip().to_string(),
            authority: addr.to_string(),
            path: "/".to_owned(),
            protocol,
            method: http::Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            connections: 10,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            keepalive: true,
            insecure: false,
            cacert: None,
            interval: Duration::from_millis(100),
            markers: Markers::default(),
            load: Load::BackToBack,
            rtt: None,
        }
    }

    /// A plan for `url`: `http://` is HTTP/1.1 unless `h2c` is set; `https://` lets ALPN choose.
    ///
    /// # Errors
    ///
    /// [`PlanError`] naming the URL or host.
    pub fn from_url(url: &str, h2c: bool) -> Result<Self, PlanError> {
        let uri: http::Uri = url.parse().map_err(|_| PlanError::Url(url.to_owned()))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(PlanError::Url(url.to_owned())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| PlanError::Url(url.to_owned()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // `Authority::port` is `None` for an out-of-range port, not an error.
        let text = authority.as_str();
        let written = if text.ends_with(']') {
            None
        } else {
            text.rsplit_once(':')
                .map(|(_, p)| p)
                .filter(|p| !p.is_empty())
        };
        let port = match written {
            None if tls => 443,
            None => 80,
            Some(p) => {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| PlanError::Port {
                        url: url.to_owned(),
                        port: p.to_owned(),
                    })?
            }
        };
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| PlanError::Resolve(host.clone()))?;
        let protocol = match (tls, h2c) {
            (true, _) => Protocol::Https,
            (false, true) => Protocol::H2c,
            (false, false) => Protocol::Http1,
        };
        let mut plan = Self::new(addr, protocol);
        plan.host = host;
        plan.authority = authority.to_string();
        plan.path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(plan)
    }

    /// The request path (and query).
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// The protocol.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The request method.
    pub fn method(mut self, method: http::Method) -> Self {
        self.method = method;
        self
    }

    /// An extra request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The request body.
    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    /// How many connections run at once (at least 1).
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// How long new requests are started.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// How long one request may take before it counts as a timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// HTTP/1.1 keep-alive (default) or a new connection per request.
    pub fn keepalive(mut self, keepalive: bool) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Skip TLS certificate verification.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Trust the certificates in this PEM file.
    pub fn cacert(mut self, path: PathBuf) -> Self {
        self.cacert = Some(path);
        self
    }

    /// The width of a timeline bucket (default 100 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How requests are paced (default [`Load::BackToBack`]).
    pub fn load(mut self, load: Load) -> Self {
        self.load = load;
        self
    }

    /// Routes every connection through a relay that delays each direction
    /// by half of `rtt`, keeping byte order, half-close and reset, so the
    /// target is measured as a client across a WAN sees it; connecting
    /// costs one round trip.
    pub fn rtt(mut self, rtt: Duration) -> Self {
        self.rtt = Some(rtt).filter(|d| !d.is_zero());
        self
    }

    /// Where the caller records restarts.
    pub fn markers(mut self, markers: Markers) -> Self {
        self.markers = markers;
        self
    }

    /// The load model, for reports.
    pub fn load_model(&self) -> Load {
        self.load
    }

    /// The protocol, for reports.
    pub fn protocol_kind(&self) -> Protocol {
        self.protocol
    }

    /// Connections, for reports.
    pub fn connection_count(&self) -> usize {
        self.connections
    }

    /// Duration, for reports.
    pub fn run_duration(&self) -> Duration {
        self.duration
    }
}
