//! What a request handler sees of the drain.

use std::sync::Arc;
use std::time::Instant;

use super::phase::Phase;
use super::tracker::ConnCtl;

/// What a request handler sees of the drain; found in every request's
/// extensions.
///
/// Streaming responses, long polls and upgraded connections (WebSockets) use
/// it to end cleanly before the deadline closes them: a WebSocket handler
/// sends a close frame with code 1001 ("going away") when [`Draining::wait`]
/// resolves.
///
/// # Examples
///
/// ```
/// use gracedown::shutdown::Draining;
///
/// fn handler(req: &http::Request<()>) {
///     if let Some(draining) = req.extensions().get::<Draining>() {
///         if draining.is_draining() {
///             // Finish up: the server is shutting down.
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Draining {
    /// The connection's tracker (it leads to the engine): cloning it counts
    /// on the connection's own cache line, not on one every connection
    /// shares, so a request pays nothing for it when other cores serve too.
    conn: Arc<ConnCtl>,
}

impl Draining {
    pub(crate) fn new(conn: Arc<ConnCtl>) -> Self {
        Self { conn }
    }

    /// Whether the server has started to drain.
    pub fn is_draining(&self) -> bool {
        self.conn.engine.is_draining()
    }

    /// When the drain will force-close what is left, once draining.
    pub fn deadline(&self) -> Option<Instant> {
        self.conn.engine.phase().deadline()
    }

    /// Resolves when the drain starts (at once if it has), with its deadline.
    pub async fn wait(&mut self) -> Instant {
        let mut phase = self.conn.engine.subscribe();
        match phase.wait_for(|p| *p != Phase::Serving).await {
            Ok(p) => p.deadline().unwrap_or_else(Instant::now),
            // The server is gone: there is nothing left to wait for.
            Err(_) => Instant::now(),
        }
    }
}
