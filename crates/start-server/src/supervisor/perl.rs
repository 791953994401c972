//! Perl's formats, kept byte for byte: pid lists sorted as strings (Perl's
//! `sort keys`), joined with commas, and seconds as Perl prints numbers.

use std::time::Duration;

/// Pids in the order Perl's `sort` gives them: as strings.
pub(super) fn sort_as_strings(mut pids: Vec<u32>) -> Vec<u32> {
    pids.sort_by_key(|p| p.to_string());
    pids
}

/// Pids as Perl's log lines list them: comma-separated.
pub(super) fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Seconds as Perl prints them: whole numbers plainly, fractions as given.
pub(super) fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}
