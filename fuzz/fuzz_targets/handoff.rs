//! The handoff channel's decoder: any message, with up to three descriptors,
//! decodes or is refused, without a panic or an allocation without bound.

#![no_main]

use std::os::fd::OwnedFd;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&fds, bytes)) = data.split_first() else {
        return;
    };
    let fds: Vec<OwnedFd> = (0..fds % 4)
        .filter_map(|_| std::fs::File::open("/dev/null").ok().map(OwnedFd::from))
        .collect();
    let _ = gracedown_sockets::handoff::decode_for_fuzzing(bytes, fds);
});
