//! `start_server`: a Server::Starter-compatible superdaemon. All logic lives
//! in the `start_server` library.

fn main() -> std::process::ExitCode {
    start_server::main()
}
