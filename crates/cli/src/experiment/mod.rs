//! `gracedown experiment`: the main job. A worker under start_server,
//! restarted at fixed intervals while `gracedown bench` runs, per protocol;
//! optionally the same runs with wrk and h2load (`--compare`) and against
//! the Go `net/http` peer under Perl's start_server (`--peer go`). One table,
//! one JSON document, one chart per protocol.

mod external;
mod starter;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use gracedown_bench::report::Report;
use gracedown_bench::{Markers, Plan, Progress, Protocol};
use serde_json::json;

use self::external::External;
use self::starter::{Restarter, Starter};
use crate::cli::{Client, ExperimentArgs, ExperimentProtocol, Peer};
use crate::{exit, report_error};

type BoxError = Box<dyn std::error::Error>;

/// One measured run.
struct Row {
    server: &'static str,
    client: &'static str,
    protocol: ExperimentProtocol,
    restart_every: Option<Duration>,
    restarts: u32,
    report: Option<Report>,
    external: Option<External>,
    ratio: Option<f64>,
}

impl Row {
    fn rps(&self) -> f64 {
        self.report
            .as_ref()
            .map_or_else(|| self.external.as_ref().map_or(0.0, |e| e.rps), |r| r.rps)
    }

    fn errors(&self) -> u64 {
        self.report.as_ref().map_or_else(
            || self.external.as_ref().map_or(0, |e| e.errors),
            |r| r.errors,
        )
    }

    fn ok(&self) -> u64 {
        self.report.as_ref().map_or_else(
            || self.external.as_ref().map_or(0, |e| e.ok),
            |r| r.outcomes.ok,
        )
    }

    /// Rows whose errors fail the experiment: gracedown's server, measured by gracedown bench.
    fn is_verdict(&self) -> bool {
        self.server == "gracedown" && self.client == "gracedown"
    }
}

/// Runs the experiment.
pub(crate) fn run(args: &ExperimentArgs) -> ExitCode {
    match experiment(args) {
        Ok(code) => code,
        Err(e) => {
            report_error(&*e);
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn experiment(args: &ExperimentArgs) -> Result<ExitCode, BoxError> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut servers = vec!["gracedown"];
    if args.peer == Some(Peer::Go) {
        servers.push("go");
    }
    eprintln!(
        "experiment: {} server(s) x {} protocol(s) x {} runs of {} with {} connections; results in {}",
        servers.len(),
        args.protocols.len(),
        1 + args.intervals.len(),
        humantime::format_duration(args.duration),
        args.connections,
        args.out.display()
    );
    let mut rows: Vec<Row> = Vec::new();
    for &server in &servers {
        for &protocol in &args.protocols {
            let (superdaemon, worker) = commands(server, protocol, &exe, args)?;
            let starter = Starter::start(&superdaemon, &worker)?;
            let first = rows.len();
            for restart_every in
                std::iter::once(None).chain(args.intervals.iter().copied().map(Some))
            {
                eprintln!("  {server}, {}: {}", name(protocol), every(restart_every));
                rows.push(measure(
                    &runtime,
                    &starter,
                    server,
                    protocol,
                    restart_every,
                    args,
                )?);
                for client in &args.compare {
                    let applicable = matches!(
                        (client, protocol),
                        (Client::Wrk, ExperimentProtocol::Http1)
                            | (Client::H2load, ExperimentProtocol::H2)
                    );
                    if applicable {
                        rows.push(measure_external(
                            &starter,
                            server,
                            *client,
                            protocol,
                            restart_every,
                            args,
                        )?);
                    }
                }
            }
            starter.stop()?;
            set_ratios(&mut rows[first..]);
        }
    }
    let mut stdout = std::io::stdout().lock();
    write_table(&rows, &mut stdout)?;
    let document = json!({
        "schema": "gracedown-experiment/1",
        "duration_s": args.duration.as_secs_f64(),
        "connections": args.connections,
        "runs": rows.iter().map(|r| json!({
            "server": r.server,
            "client": r.client,
            "protocol": name(r.protocol),
            "restart_every_ms": r.restart_every.map(|d| d.as_millis() as u64),
            "restarts": r.restarts,
            "ratio": r.ratio,
            "report": r.report,
            "external": r.external,
        })).collect::<Vec<_>>(),
    });
    let json_path = args.out.join("experiment.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&document)? + "\n")?;
    writeln!(
        stdout,
        "\nwrote {} and a chart per protocol",
        json_path.display()
    )?;
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.is_verdict() && r.errors() > 0)
        .map(describe_failure)
        .collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "FAILED: requests failed in {}", failed.join("; "))?;
    Ok(ExitCode::from(exit::REQUESTS_FAILED))
}

/// The superdaemon and worker command lines for a server and protocol.
fn commands(
    server: &str,
    protocol: ExperimentProtocol,
    exe: &Path,
    args: &ExperimentArgs,
) -> Result<(Vec<OsString>, Vec<OsString>), BoxError> {
    let tls = protocol == ExperimentProtocol::H2;
    if server == "go" {
        let perl = Path::new("/usr/bin/start_server");
        if !perl.exists() {
            return Err("--peer go runs the Go worker under Perl's start_server: install libserver-starter-perl".into());
        }
        let go_worker = build_go_worker(&args.out)?;
        let mut worker = vec![go_worker.into_os_string()];
        if tls {
            worker.push("-tls".into());
        }
        // Perl's --interval takes whole seconds; 1 is its default.
        return Ok((vec![perl.into(), "--interval=1".into()], worker));
    }
    // Workers that never say READY=1 are trusted after this, so that restarts
    // at a fast pace are real restarts for them too (gracedown serve says READY=1).
    let superdaemon = vec![exe.into(), "start-server".into(), "--interval=0.1".into()];
    let worker = match &args.worker {
        Some(program) => std::iter::once(program.clone().into_os_string())
            .chain(args.worker_args.iter().map(OsString::from))
            .collect(),
        None => {
            let mut w: Vec<OsString> = vec![exe.into(), "serve".into()];
            if tls {
                w.push("--tls".into());
            }
            w
        }
    };
    Ok((superdaemon, worker))
}

/// Builds `peers/go-worker` (standard library only) with Debian's Go.
fn build_go_worker(out: &Path) -> Result<PathBuf, BoxError> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers/go-worker/main.go");
    if !source.exists() {
        return Err(format!(
            "--peer go needs the source `{}` (a checkout of gracedown)",
            source.display()
        )
        .into());
    }
    let binary = std::path::absolute(out.join("go-worker"))?;
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(&source)
        .env("GO111MODULE", "off")
        .status()
        .map_err(|e| format!("--peer go needs Go (Debian package golang-go): {e}"))?;
    if !status.success() {
        return Err(format!("go build of `{}` failed ({status})", source.display()).into());
    }
    Ok(binary)
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    starter: &Starter,
    server: &'static str,
    protocol: ExperimentProtocol,
    restart_every: Option<Duration>,
    args: &ExperimentArgs,
) -> Result<Row, BoxError> {
    let markers = Markers::default();
    let plan = plan(protocol, starter.port, args, markers.clone())?;
    let restarter = restart_every.map(|every| Restarter::start(starter.pid(), every, markers));
    let progress = Arc::new(Progress::default());
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| crate::bench::spawn_ticker(runtime, Arc::clone(&progress), args.duration));
    let samples = runtime.block_on(gracedown_bench::run(&plan, progress));
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r\x1b[K");
    }
    let restarts = restarter.map_or(0, Restarter::finish);
    let samples = samples?;
    let url = url(protocol, starter.port);
    let report = Report::new(&samples, &url, samples.protocol.name(), args.duration);
    if server == "gracedown"
        && restart_every.is_some()
        && restart_every == args.intervals.first().copied()
    {
        let title = format!("{}, {}: {url}", name(protocol), every(restart_every));
        let svg = gracedown_bench::plot::svg(&samples, &title)?;
        std::fs::write(args.out.join(format!("{}.svg", file_name(protocol))), svg)?;
    }
    Ok(Row {
        server,
        client: "gracedown",
        protocol,
        restart_every,
        restarts,
        report: Some(report),
        external: None,
        ratio: None,
    })
}

fn measure_external(
    starter: &Starter,
    server: &'static str,
    client: Client,
    protocol: ExperimentProtocol,
    restart_every: Option<Duration>,
    args: &ExperimentArgs,
) -> Result<Row, BoxError> {
    let restarter =
        restart_every.map(|every| Restarter::start(starter.pid(), every, Markers::default()));
    let url = url(protocol, starter.port);
    let result = match client {
        Client::Wrk => external::wrk(&url, args.connections, args.duration),
        Client::H2load => external::h2load(&url, args.connections, args.duration),
    };
    let restarts = restarter.map_or(0, Restarter::finish);
    let client = match client {
        Client::Wrk => "wrk",
        Client::H2load => "h2load",
    };
    Ok(Row {
        server,
        client,
        protocol,
        restart_every,
        restarts,
        report: None,
        external: Some(result?),
        ratio: None,
    })
}

/// Each restarting row's req/s over its client's no-restart row.
fn set_ratios(rows: &mut [Row]) {
    let baselines: Vec<(&'static str, f64)> = rows
        .iter()
        .filter(|r| r.restart_every.is_none())
        .map(|r| (r.client, r.rps()))
        .collect();
    for row in rows.iter_mut().filter(|r| r.restart_every.is_some()) {
        let base = baselines
            .iter()
            .find(|(c, _)| *c == row.client)
            .map(|(_, rps)| *rps);
        row.ratio = base.filter(|b| *b > 0.0).map(|b| row.rps() / b);
    }
}

fn describe_failure(row: &Row) -> String {
    let classes = row.report.as_ref().map_or_else(String::new, |r| {
        let o = &r.outcomes;
        let list: Vec<String> = [
            ("connect_failed", o.connect_failed),
            ("closed_before_response", o.closed_before_response),
            ("truncated", o.truncated),
            ("timeout", o.timeout),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
        list.join(", ")
    });
    format!(
        "{} with {}: {classes}",
        name(row.protocol),
        every(row.restart_every)
    )
}

fn write_table(rows: &[Row], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<9} {:<9} {:<8} {:<17} {:>10} {:>9} {:>7} {:>8} {:>7} {:>6} {:>8} {:>6} {:>8} {:>6} {:>8} {:>5} {:>6}",
        "server",
        "client",
        "protocol",
        "restarts",
        "req/s",
        "ok",
        "errors",
        "connect",
        "closed",
        "trunc",
        "timeout",
        "unproc",
        "p99",
        "gap",
        "restarts",
        "gens",
        "ratio"
    )?;
    for r in rows {
        let dash = || "-".to_owned();
        let (connect, closed, trunc, timeout, unproc, p99, gap, gens) = match &r.report {
            Some(rep) => {
                let o = &rep.outcomes;
                (
                    o.connect_failed.to_string(),
                    o.closed_before_response.to_string(),
                    o.truncated.to_string(),
                    o.timeout.to_string(),
                    o.unprocessed.to_string(),
                    format!("{:.1}ms", rep.latency_us.p99 as f64 / 1000.0),
                    format!("{}ms", rep.longest_gap_ms),
                    rep.generations.to_string(),
                )
            }
            None => (
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
            ),
        };
        writeln!(
            out,
            "{:<9} {:<9} {:<8} {:<17} {:>10.0} {:>9} {:>7} {:>8} {:>7} {:>6} {:>8} {:>6} {:>8} {:>6} {:>8} {:>5} {:>6}",
            r.server,
            r.client,
            name(r.protocol),
            r.restart_every.map_or("none".to_owned(), |d| format!(
                "every {}",
                humantime::format_duration(d)
            )),
            r.rps(),
            r.ok(),
            r.errors(),
            connect,
            closed,
            trunc,
            timeout,
            unproc,
            p99,
            gap,
            r.restarts,
            gens,
            r.ratio.map_or("-".to_owned(), |x| format!("{x:.3}")),
        )?;
    }
    Ok(())
}

fn name(protocol: ExperimentProtocol) -> &'static str {
    match protocol {
        ExperimentProtocol::Http1 => "http/1.1",
        ExperimentProtocol::H2 => "h2",
    }
}
fn file_name(protocol: ExperimentProtocol) -> &'static str {
    match protocol {
        ExperimentProtocol::Http1 => "http1",
        ExperimentProtocol::H2 => "h2",
    }
}
fn every(restart_every: Option<Duration>) -> String {
    restart_every.map_or("no restarts".to_owned(), |d| {
        format!("restarts every {}", humantime::format_duration(d))
    })
}
fn url(protocol: ExperimentProtocol, port: u16) -> String {
    match protocol {
        ExperimentProtocol::Http1 => format!("http://127.0.0.1:{port}/"),
        ExperimentProtocol::H2 => format!("https://127.0.0.1:{port}/"),
    }
}
fn plan(
    protocol: ExperimentProtocol,
    port: u16,
    args: &ExperimentArgs,
    markers: Markers,
) -> Result<Plan, BoxError> {
    let mut plan = Plan::from_url(&url(protocol, port), false)?
        .connections(args.connections)
        .duration(args.duration)
        .timeout(Duration::from_secs(10))
        .markers(markers);
    if protocol == ExperimentProtocol::H2 {
        // The worker's certificate is self-signed, made at its start.
        plan = plan.protocol(Protocol::HttpsHttp2).insecure(true);
    }
    Ok(plan)
}
