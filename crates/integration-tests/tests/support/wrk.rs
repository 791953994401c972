//! Running wrk (Debian's package); its summary is read by the one wrk
//! parser, `gracedown_bench::external::Wrk`.

use std::process::Command;

pub use gracedown_bench::external::Wrk as WrkResult;

use super::process::run;
use super::tool;

/// `wrk -t2 -c CONNS -d SECONDSs URL`.
pub fn wrk(url: &str, connections: u32, seconds: u32) -> WrkResult {
    let mut cmd = Command::new(tool("wrk", "wrk"));
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        url,
    ]);
    let out = run(cmd);
    assert!(out.status.success(), "wrk failed: {out:?}");
    WrkResult::parse(&out.stdout)
        .unwrap_or_else(|| panic!("wrk summary without a request count:\n{}", out.stdout))
}
