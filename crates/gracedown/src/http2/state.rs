//! What an HTTP/2 connection that moves at a quiet moment takes with it.

use bytes::{Buf, BufMut};

use super::frames::MAX_WINDOW;

/// The layout of [`State::encode`].
const FORMAT: u8 = 1;
/// The most client settings kept (RFC 9113 defines 6, RFC 8441 one more).
pub(super) const MAX_SETTINGS: usize = 16;
/// The most bytes of an encoded state.
pub(crate) const MAX_STATE: usize = 14 + MAX_SETTINGS * 6;
const _: () = assert!(MAX_STATE <= gracedown_sockets::handoff::MAX_HTTP2_STATE);

/// A quiet HTTP/2 connection's state, as the client sees it: all the next
/// generation needs to go on serving it with a fresh h2 connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    /// The client's settings, the latest value of each, in the order first sent.
    pub(super) client_settings: Vec<(u16, u32)>,
    /// How much the server may still send on the connection.
    pub(super) send_window: u32,
    /// How much the client may still send on the connection.
    pub(super) recv_window: u32,
    /// The last stream the client opened (0: none).
    pub(super) last_client_stream: u32,
}

/// Why a moved HTTP/2 connection's state cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// The bytes are not a state this build wrote.
    #[error("a moved HTTP/2 connection's state is malformed: {0}")]
    Malformed(&'static str),
}

impl State {
    /// The bytes that travel (at most [`MAX_STATE`]).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let settings = &self.client_settings[..self.client_settings.len().min(MAX_SETTINGS)];
        let mut buf = Vec::with_capacity(14 + settings.len() * 6);
        buf.put_u8(FORMAT);
        buf.put_u32(self.send_window);
        buf.put_u32(self.recv_window);
        buf.put_u32(self.last_client_stream);
        // At most MAX_SETTINGS.
        buf.put_u8(u8::try_from(settings.len()).unwrap_or(0));
        for &(id, value) in settings {
            buf.put_u16(id);
            buf.put_u32(value);
        }
        buf
    }

    /// A state from [`State::encode`]'s bytes, checked: windows in range, a
    /// client stream id, a bounded list of settings.
    pub(crate) fn decode(mut bytes: &[u8]) -> Result<Self, StateError> {
        let short = || StateError::Malformed("shorter than its contents");
        if bytes.try_get_u8().map_err(|_| short())? != FORMAT {
            return Err(StateError::Malformed("an unknown layout"));
        }
        let send_window = bytes.try_get_u32().map_err(|_| short())?;
        let recv_window = bytes.try_get_u32().map_err(|_| short())?;
        let last_client_stream = bytes.try_get_u32().map_err(|_| short())?;
        let n = usize::from(bytes.try_get_u8().map_err(|_| short())?);
        if i64::from(send_window) > MAX_WINDOW {
            return Err(StateError::Malformed("a send window out of range"));
        }
        if i64::from(recv_window) > MAX_WINDOW {
            return Err(StateError::Malformed("a receive window out of range"));
        }
        if last_client_stream > MAX_WINDOW as u32
            || (last_client_stream != 0 && last_client_stream % 2 == 0)
        {
            return Err(StateError::Malformed("a stream no client opens"));
        }
        if n > MAX_SETTINGS || bytes.len() != n * 6 {
            return Err(StateError::Malformed("a wrong count of settings"));
        }
        let client_settings = (0..n).map(|_| (bytes.get_u16(), bytes.get_u32())).collect();
        Ok(Self {
            client_settings,
            send_window,
            recv_window,
            last_client_stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_state_round_trips() {
        let state = State {
            client_settings: vec![(1, 4096), (4, 6_291_456), (6, 262_144)],
            send_window: 15_663_105,
            recv_window: 1_048_576,
            last_client_stream: 41,
        };
        let bytes = state.encode();
        assert!(bytes.len() <= MAX_STATE);
        assert_eq!(State::decode(&bytes).expect("decodes"), state);
    }

    #[test]
    fn out_of_range_states_are_refused() {
        let good = State {
            client_settings: vec![],
            send_window: 65_535,
            recv_window: 0,
            last_client_stream: 0,
        };
        for bad in [
            State {
                send_window: 1 << 31,
                ..good.clone()
            },
            State {
                recv_window: 1 << 31,
                ..good.clone()
            },
            State {
                last_client_stream: 2,
                ..good.clone()
            },
        ] {
            assert!(State::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        let mut trailing = good.encode();
        trailing.push(0);
        assert!(State::decode(&trailing).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(state) = State::decode(&bytes) {
                prop_assert_eq!(state.encode(), bytes);
            }
        }
    }
}
