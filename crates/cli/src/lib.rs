//! The `gracedown` command: argument parsing and the subcommands, as a library
//! so that tests can build a duplicate binary of it.

mod bench;
mod cli;
pub mod exit;
mod experiment;
mod serve;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// The `gracedown` binary allocates through jemalloc (declared here, in the
/// library, so that every binary made of it, the tests' copy included, runs
/// the same allocator). An idle keep-alive
/// connection goes dormant and frees hyper's buffers; after a burst of
/// connections, glibc's allocator cannot give back the pages those buffers
/// shared with the connections' long-lived objects (5.7 KB per idle
/// connection, against 1.9 KB with jemalloc, whose size classes keep small
/// long-lived objects apart from buffers; see BENCHMARKS.md). Its background
/// thread purges freed pages after about a second (`.cargo/config.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Runs the `gracedown` command with the process's arguments.
pub fn main() -> ExitCode {
    // `gracedown start-server ARGS` is start_server itself, so that one binary
    // can run the whole experiment; its options are Server::Starter's.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "start-server") {
        return start_server::main_with_args(args);
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging();
    match cli.command {
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
        cli::Command::Experiment(args) => experiment::run(&args),
    }
}

/// Prints help and version as clap does; any other parse error as one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("bad usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // The command whose help to see: clap's usage line names it
    // (`Usage: gracedown serve [OPTIONS]`).
    let command = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(|usage| {
            usage
                .split(' ')
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
        // A value's error has no usage line: the subcommand named first.
        .or_else(|| {
            use clap::CommandFactory;
            let command = cli::Cli::command();
            std::env::args().skip(1).find_map(|arg| {
                command
                    .find_subcommand(&arg)
                    .map(|sub| format!("gracedown {}", sub.get_name()))
            })
        })
        .unwrap_or_else(|| "gracedown".to_owned());
    #[expect(
        clippy::print_stderr,
        reason = "the one-line usage error is for the user"
    )]
    {
        eprintln!("gracedown: error: {first} (see `{command} --help`)");
    }
    ExitCode::from(exit::USAGE)
}

/// Logs to stderr; `RUST_LOG` overrides the default `gracedown=info`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("gracedown=info,gracedown_cli=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Prints an error and its causes on one line: `gracedown: error: a: b: c`.
pub(crate) fn report_error(error: &dyn std::error::Error) {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    #[expect(clippy::print_stderr, reason = "the error line is for the user")]
    {
        eprintln!("gracedown: error: {line}");
    }
}
