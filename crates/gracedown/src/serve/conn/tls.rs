//! A TLS connection: the handshake, bounded, then the protocol ALPN chose.

use tracing::debug;

use super::{Conn, Ending, Step};
use crate::drain::{ConnCtl, ConnState, Reason, Verdict};
use crate::serve::app::{HttpService, ResponseBody};
use crate::serve::io::{Stream, Transport};
use crate::tls::session::Records;

impl Conn {
    /// A TLS connection: the handshake, then the protocol ALPN chose.
    pub(super) async fn run_tls<S, B>(
        &mut self,
        stream: Stream,
        acceptor: tokio_rustls::TlsAcceptor,
        service: S,
    ) -> Step
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        self.info.tls = true;
        let handshake = acceptor.accept(Records::new(stream));
        // The handshake bound, or a reclaim (a handshake that has dragged on
        // while clients wait at the connection cap).
        let reclaimed = |_, _, ctl: &ConnCtl| {
            ctl.snapshot()
                .reclaim
                .then_some(Verdict::Close(Reason::Reclaim))
        };
        let tls = match self.bounded(handshake, reclaimed).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(error = %e, "tls handshake failed");
                return Ending::Closed.into();
            }
            Err(stopped) => return self.stopped_early(stopped).into(),
        };
        self.ctl.set_state(ConnState::NoRequest);
        // Paced, should it have to reconnect (no generation to move to).
        self.ctl.pace_reconnect();
        // ALPN decides; no sniffing after TLS.
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let transport = Transport::tls(tls);
        if h2 {
            // HTTP/2 over TLS moves with its session, at a quiet moment.
            self.may_move_http2(true);
            self.http2(transport, service, None).await.into()
        } else {
            // HTTP/1.1 over TLS moves with its session.
            self.may_move(true);
            Step::Http1(transport)
        }
    }
}
