//! The HTTP/2 frame tracker on any bytes both ways: never a panic, and any
//! state it would move with round-trips and resumes quiet. Input: pieces,
//! each a byte (bit 7: from the client; the rest: its length) and its bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pieces = Vec::new();
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let len = usize::from(head & 0x7f).min(tail.len());
        pieces.push((head & 0x80 != 0, &tail[..len]));
        rest = &tail[len..];
    }
    gracedown::fuzzing::http2_tracker(&pieces);
});
