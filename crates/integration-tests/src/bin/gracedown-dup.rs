//! A copy of the `gracedown` binary inside this package, so that tests reach
//! it through `CARGO_BIN_EXE_gracedown-dup` (Cargo only sets that variable
//! for binaries of the package under test).

fn main() -> std::process::ExitCode {
    gracedown_cli::main()
}
