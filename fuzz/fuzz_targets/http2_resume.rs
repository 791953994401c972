//! The translation a moved HTTP/2 connection goes through, from any state
//! and with any bytes both ways: never a panic. Input: the state's length
//! (first byte) and bytes, then pieces as in `http2_tracker`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let len = usize::from(len).min(rest.len());
    let (state, mut rest) = rest.split_at(len);
    let mut pieces = Vec::new();
    while let Some((&head, tail)) = rest.split_first() {
        let len = usize::from(head & 0x7f).min(tail.len());
        pieces.push((head & 0x80 != 0, &tail[..len]));
        rest = &tail[len..];
    }
    gracedown::fuzzing::http2_resume(state, &pieces);
});
