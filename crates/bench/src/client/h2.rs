//! HTTP/2 (h2c with prior knowledge, or over TLS): one connection per slot,
//! one stream at a time. A stream the server proves unprocessed (above a
//! GOAWAY's last stream id, or REFUSED_STREAM) is counted and re-sent on a
//! new connection; nothing else is ever re-sent.

use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::conn::connect;
use super::sniff::{Goaways, Sniffed};
use super::{Backoff, Pacer, Shared};
use crate::outcome::Outcome;
use crate::record::Recorder;

struct Conn {
    sender: SendRequest<Bytes>,
    goaways: Arc<Goaways>,
    driver: JoinHandle<()>,
    /// For TLS, whether its handshake resumed a session.
    resumed: Option<bool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// How one attempt at a request ended.
enum Attempt {
    Done(Outcome, Option<String>),
    /// Not sent (the connection is going away): try again on a new one, uncounted.
    NotSent,
    /// Sent and proven unprocessed: counted, then re-sent.
    Unprocessed,
}

pub(crate) async fn slot(
    shared: &Shared,
    tls: Option<&Arc<rustls::ClientConfig>>,
    deadline: Instant,
    recorder: &mut Recorder,
    pacer: &mut Pacer,
) {
    let plan = &shared.plan;
    let mut conn: Option<Conn> = None;
    let mut backoff = Backoff::new();
    // A started request is finished even after the deadline; re-sends are
    // bounded by the request timeout past it.
    let give_up = deadline + plan.timeout;
    let mut started: Option<std::time::Instant> = None;
    while Instant::now() < give_up {
        let began = match started {
            Some(began) => began,
            None => match pacer.next(shared, deadline, recorder).await {
                Some(began) => *started.insert(began),
                None => break,
            },
        };
        let current = match conn.take() {
            Some(c) if c.goaways.count() == 0 => c,
            stale => {
                if let Some(old) = stale {
                    recorder.goaways(old.goaways.count());
                    recorder.disconnect();
                }
                match open(shared, tls).await {
                    Ok(c) => {
                        recorder.connect(c.resumed);
                        backoff.reset();
                        c
                    }
                    Err(()) => {
                        recorder.outcome(Outcome::ConnectFailed, began, None);
                        shared.ended(true);
                        started = None;
                        backoff.wait().await;
                        continue;
                    }
                }
            }
        };
        match request(shared, &current).await {
            Attempt::Done(outcome, pid) => {
                recorder.outcome(outcome, began, pid);
                shared.ended(!matches!(outcome, Outcome::Ok(_)));
                started = None;
                if matches!(outcome, Outcome::Ok(_)) {
                    conn = Some(current);
                    continue;
                }
            }
            Attempt::Unprocessed => {
                recorder.outcome(Outcome::Unprocessed, began, None);
            }
            Attempt::NotSent => {}
        }
        recorder.goaways(current.goaways.count());
        recorder.disconnect();
    }
    if let Some(c) = conn {
        recorder.goaways(c.goaways.count());
    }
}

async fn open(shared: &Shared, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Conn, ()> {
    let io = connect(&shared.plan, shared.connect_to, tls).await?;
    let resumed = io.tls_resumed();
    let goaways = Goaways::new();
    let io = Sniffed::new(io, Arc::clone(&goaways));
    let (sender, connection) = h2::client::handshake(io).await.map_err(|_| ())?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn {
        sender,
        goaways,
        driver,
        resumed,
    })
}

async fn request(shared: &Shared, conn: &Conn) -> Attempt {
    let plan = &shared.plan;
    let Ok(mut sender) = conn.sender.clone().ready().await else {
        return Attempt::NotSent;
    };
    let scheme = if plan.protocol.is_tls() {
        "https"
    } else {
        "http"
    };
    let mut builder = http::Request::builder()
        .method(plan.method.clone())
        .uri(format!("{scheme}://{}{}", plan.authority, plan.path));
    for (name, value) in &plan.headers {
        builder = builder.header(name, value);
    }
    let Ok(req) = builder.body(()) else {
        return Attempt::Done(Outcome::ClosedBeforeResponse, None);
    };
    let has_body = !plan.body.is_empty();
    let Ok((response, mut stream)) = sender.send_request(req, !has_body) else {
        return Attempt::NotSent;
    };
    if has_body && stream.send_data(plan.body.clone(), true).is_err() {
        return Attempt::Done(Outcome::ClosedBeforeResponse, None);
    }
    let id = response.stream_id().as_u32();
    let exchange = async {
        let response = match response.await {
            Ok(response) => response,
            Err(e) => {
                let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM);
                if refused || (e.is_go_away() && conn.goaways.proves_unprocessed(id)) {
                    return Attempt::Unprocessed;
                }
                return Attempt::Done(Outcome::ClosedBeforeResponse, None);
            }
        };
        let status = response.status().as_u16();
        let pid = response
            .headers()
            .get("x-gracedown-pid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(bytes) => {
                    let _ = body.flow_control().release_capacity(bytes.len());
                }
                Err(_) => return Attempt::Done(Outcome::Truncated, pid),
            }
        }
        Attempt::Done(Outcome::Ok(status), pid)
    };
    match tokio::time::timeout(plan.timeout, exchange).await {
        Ok(attempt) => attempt,
        Err(_) => Attempt::Done(Outcome::Timeout, None),
    }
}
