//! HTTP/2 with prior knowledge: one connection per slot, one stream at a
//! time; a stream the server proves unprocessed is re-sent on a new connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sniff::{Goaways, Sniffed};
use crate::outcome::{Outcome, Tally};
use crate::plan::Plan;

struct Conn {
    sender: SendRequest<Bytes>,
    goaways: Arc<Goaways>,
    driver: JoinHandle<()>,
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

pub(crate) async fn slot(plan: &Plan, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(5);
    // A request that was started is finished even after the deadline; the
    // re-send budget is bounded by the request timeout past the deadline.
    let give_up = deadline + plan.timeout;
    let mut in_progress = false;
    while (Instant::now() < deadline || in_progress) && Instant::now() < give_up {
        in_progress = true;
        let current = match conn.take() {
            Some(c) if c.goaways.count() == 0 => c,
            stale => {
                if let Some(old) = stale {
                    tally.goaways += old.goaways.count();
                }
                match connect(plan, &mut tally).await {
                    Ok(c) => {
                        backoff = Duration::from_millis(5);
                        c
                    }
                    Err(()) => {
                        tally.record(Outcome::ConnectFailed);
                        in_progress = false;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                        continue;
                    }
                }
            }
        };
        match request(plan, &current).await {
            Attempt::Done(outcome, pid) => {
                tally.record(outcome);
                tally.pids.extend(pid);
                in_progress = false;
                if matches!(outcome, Outcome::Ok(_)) {
                    conn = Some(current);
                } else {
                    tally.goaways += current.goaways.count();
                }
                continue;
            }
            Attempt::Unprocessed => tally.record(Outcome::Unprocessed),
            Attempt::NotSent => {}
        }
        tally.goaways += current.goaways.count();
    }
    if let Some(c) = conn {
        tally.goaways += c.goaways.count();
    }
    tally
}

async fn connect(plan: &Plan, tally: &mut Tally) -> Result<Conn, ()> {
    let tcp = tokio::time::timeout(plan.timeout, TcpStream::connect(plan.addr))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let _ = tcp.set_nodelay(true);
    let goaways = Goaways::new();
    let io = Sniffed::new(tcp, Arc::clone(&goaways));
    let (sender, connection) = h2::client::handshake(io).await.map_err(|_| ())?;
    tally.connects += 1;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn {
        sender,
        goaways,
        driver,
    })
}

async fn request(plan: &Plan, conn: &Conn) -> Attempt {
    let Ok(mut sender) = conn.sender.clone().ready().await else {
        return Attempt::NotSent;
    };
    let uri = format!("http://{}{}", plan.addr, plan.path);
    let Ok(req) = http::Request::get(uri).body(()) else {
        return Attempt::Done(Outcome::ClosedBeforeResponse, None);
    };
    let Ok((response, _)) = sender.send_request(req, true) else {
        return Attempt::NotSent;
    };
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
