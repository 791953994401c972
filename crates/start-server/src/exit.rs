//! Exit statuses, as Perl's start_server uses them.

/// Normal shutdown, `--help`, `--version`.
pub const OK: u8 = 0;
/// An unknown or invalid option.
pub const USAGE: u8 = 1;
/// Any other failure during setup (Perl's `die` without an errno).
pub const SETUP: u8 = 255;

/// The text for `--help`.
pub const HELP: &str = "\
Exit status:
  0    normal shutdown (or --help, --version)
  1    unknown or invalid option
  N    a system error during setup exits with its errno (98: address in use)
  255  other setup failures (invalid --port, no program, --restart/--stop failures)";
