//! `gracedown`: the demo worker (`serve`), the load generator (`bench`), the
//! restart experiment (`experiment`) and an embedded `start-server`. All
//! logic lives in the `gracedown_cli` library.

fn main() -> std::process::ExitCode {
    gracedown_cli::main()
}
