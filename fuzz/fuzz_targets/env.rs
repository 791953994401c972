//! The environments a worker inherits sockets through (Server::Starter's
//! `SERVER_STARTER_PORT` and generation, systemd's `LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`): any values parse or are refused with an
//! error, never a panic; a port list that parses formats back to one that
//! parses the same. Input: five values separated by NUL bytes.

#![no_main]

use gracedown_sockets::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let values: Vec<&str> = text.split('\0').collect();
    let value = |i: usize| values.get(i).copied();
    if let Some(port) = value(0)
        && let Ok(specs) = protocol::parse_server_starter_port(port)
    {
        let again =
            protocol::parse_server_starter_port(&protocol::format_server_starter_port(&specs))
                .expect("a formatted port list parses");
        assert_eq!(again, specs);
    }
    let names = [
        "SERVER_STARTER_PORT",
        "SERVER_STARTER_GENERATION",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ];
    let env: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| value(i).map(|v| (*name, v)))
        .collect();
    let _ = protocol::parse_env(env, 4242);
});
