//! `gracedown`: the demo worker, and (in later releases) the load generator
//! and the restart experiment. All logic lives in the `gracedown_cli` library.

fn main() -> std::process::ExitCode {
    gracedown_cli::main()
}
