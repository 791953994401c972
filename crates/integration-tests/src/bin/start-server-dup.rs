//! A copy of the `start_server` binary inside this package, so that tests
//! reach it through `CARGO_BIN_EXE_start-server-dup`.

fn main() -> std::process::ExitCode {
    start_server::main()
}
