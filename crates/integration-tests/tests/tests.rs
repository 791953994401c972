//! Cross-process tests: the real `gracedown` binary, real sockets on
//! loopback, real signals, and the real Perl Server::Starter and systemd tools.

mod support;

mod architecture;
mod axum_example;
mod bad_input;
mod bench_load;
mod bench_outcomes;
mod bounds;
mod deploy_kit;
mod desync;
mod drain_states;
mod experiment;
mod fd_adoption;
mod handoff;
mod http2_moves;
mod lame_duck;
mod limits;
mod perl_start_server;
mod pipelined_moves;
mod readiness;
mod restarts_under_load;
mod serve_protocols;
mod slowloris;
mod start_server_bad_input;
mod start_server_conformance;
mod start_server_differences_from_perl;
mod start_server_interop;
mod start_server_options;
mod start_server_orphans;
mod start_server_readiness;
mod systemd_activation;
mod tls_moves;
mod tls_resumption;
