//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! parsers that face a peer's bytes, reachable from outside the crate. Not
//! an API: nothing here is stable, and a build without the feature has
//! none of it.

use bytes::BytesMut;

use crate::http2::{Resume, State, Tracker};
use crate::serve::{Finding, Framing};

/// Where the HTTP/1 framing tracker says messages end, fed `bytes` in the
/// pieces `cuts` makes (offsets into `bytes`; any order, those out of range
/// ignored), as a connection's reads feed it: for each piece after which it
/// is exactly between messages, the offset and how many requests have
/// started by then. It stops at its first finding (a bare LF, lost framing):
/// from there on gracedown refuses the connection's requests.
pub fn framing_boundaries(bytes: &[u8], cuts: &[usize]) -> Vec<(usize, u64)> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < bytes.len())
        .collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut framing = Framing::default();
    let mut boundaries = Vec::new();
    let mut start = 0;
    for end in cuts {
        if framing.feed(&bytes[start..end]) != Finding::Nothing {
            break;
        }
        let requests = framing.requests_started();
        if framing.at_boundary(requests) && requests > 0 {
            boundaries.push((end, requests));
        }
        start = end;
    }
    boundaries
}

/// Follows an HTTP/2 connection's bytes, `(from_client, bytes)` in the order
/// they cross the transport, with the tracker; wherever it says quiet, the
/// state it would move with is checked: it encodes in bounds, decodes to
/// itself, and a tracker resumed from it is quiet in the same state.
pub fn http2_tracker(pieces: &[(bool, &[u8])]) {
    let mut tracker = Tracker::new();
    for &(from_client, bytes) in pieces {
        if from_client {
            tracker.inbound(bytes);
        } else {
            tracker.outbound(bytes);
        }
        if let Some(state) = tracker.quiet() {
            let encoded = state.encode();
            assert!(encoded.len() <= gracedown_sockets::handoff::MAX_HTTP2_STATE);
            let decoded = State::decode(&encoded).expect("a quiet state decodes");
            assert_eq!(decoded, state);
            assert_eq!(Tracker::resumed(&state).quiet(), Some(state));
        }
    }
}

/// Translates an HTTP/2 connection that moved in `state` (any bytes: most
/// are refused) with `pieces` from the client (`true`) and from h2: never
/// a panic; what the client's bytes become is never longer than they were.
pub fn http2_resume(state: &[u8], pieces: &[(bool, &[u8])]) {
    let Ok(state) = State::decode(state) else {
        return;
    };
    let mut resume = Resume::new(&state);
    let mut out = BytesMut::new();
    for &(from_client, bytes) in pieces {
        if from_client {
            let mut piece = bytes.to_vec();
            let filtered = resume.inbound(&mut piece);
            assert!(filtered.kept <= piece.len());
            assert!(filtered.held_from.is_none_or(|at| at <= piece.len()));
            let _ = resume.waits(&piece);
        } else {
            resume.outbound(bytes, &mut out);
        }
        resume.unpark(&mut out);
        resume.credit(&mut out);
    }
}

/// Decodes a moved TLS session's state (any bytes): it decodes or fails,
/// and one that decodes encodes back to the same bytes.
#[cfg(feature = "tls")]
pub fn tls_session_state(bytes: &[u8]) {
    use crate::tls::session::SessionState;
    if let Ok(state) = SessionState::decode(bytes) {
        assert_eq!(&state.encode()[..], bytes);
    }
}
