//! `gracedown experiment`: the main job. A worker under start_server,
//! restarted at fixed intervals while `gracedown bench` loads it the way a
//! scenario says (back to back, clients with think time across a round trip,
//! a thousand connections, a real nginx in front), per protocol; optionally
//! the same runs with wrk and h2load (`--compare`) and against the Go
//! `net/http` peer under Perl's start_server (`--peer go`). The `fleet`
//! scenario has no superdaemon: instances behind HAProxy, replaced one by
//! one ([`fleet`]).
//!
//! This module orchestrates processes; the table, the JSON document and the
//! verdict are `gracedown_bench::experiment`'s.

mod external;
mod fleet;
mod process;
mod proxy;
mod starter;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use gracedown_bench::experiment::{
    self as table, Frontend, PROXY_FAILURES, Results, Row, Scenario, Stack, Wire,
};
use gracedown_bench::report::Report;
use gracedown_bench::{Load, Markers, Plan, Progress};

use self::process::BoxError;
use self::proxy::Nginx;
use self::starter::{Restarter, Starter};
use crate::cli::{Client, ExperimentArgs, Peer};
use crate::{exit, report_error};

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
    if args.worker.is_some() && args.scenarios.contains(&Scenario::Fleet) {
        return Err("--worker is not used by the fleet scenario: its instances are `gracedown serve` (and the Go peer)".into());
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    let mut servers = vec![Stack::Gracedown];
    if args.peer == Some(Peer::Go) {
        servers.push(Stack::Go);
    }
    let most = args
        .scenarios
        .iter()
        .map(|s| args.connections.unwrap_or_else(|| s.connections()))
        .max()
        .unwrap_or(0);
    raise_open_file_limit(most)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let runs: usize = args
        .scenarios
        .iter()
        .map(|s| {
            // The fleet runs its two frontends at once, for one more server.
            let stacks = servers.len() + usize::from(*s == Scenario::Fleet);
            wires(*s, args).len() * (1 + args.intervals.len()) * stacks
        })
        .sum();
    eprintln!(
        "experiment: {} run(s) over scenario(s) {}, {} server(s); results in {}",
        runs,
        args.scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(","),
        servers.len(),
        args.out.display()
    );
    let mut results = Results::default();
    for &scenario in &args.scenarios {
        if scenario == Scenario::Fleet {
            if !wires(scenario, args).is_empty() {
                measure_fleet(&runtime, &exe, args, &mut results)?;
            }
            continue;
        }
        for &server in &servers {
            for wire in wires(scenario, args) {
                if server == Stack::Go && wire == Wire::H2c {
                    // net/http serves h2c only through x/net's h2c handler,
                    // which the standard-library peer does not use.
                    eprintln!(
                        "  {} go, h2c: not served by the Go peer, skipped",
                        scenario.name()
                    );
                    continue;
                }
                measure_stack(&runtime, &exe, scenario, server, wire, args, &mut results)?;
            }
        }
    }
    results.set_ratios();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout)?;
    results.write_table(&mut stdout)?;
    let json_path = args.out.join("experiment.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&results.to_json())? + "\n",
    )?;
    writeln!(
        stdout,
        "\nwrote {} and a chart per scenario and protocol",
        json_path.display()
    )?;
    let failed = results.failures();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "FAILED: requests failed in {}", failed.join("; "))?;
    Ok(ExitCode::from(exit::REQUESTS_FAILED))
}

/// The scenario's protocols, narrowed by `--protocols`.
fn wires(scenario: Scenario, args: &ExperimentArgs) -> Vec<Wire> {
    scenario
        .wires()
        .iter()
        .copied()
        .filter(|w| args.protocols.is_empty() || args.protocols.iter().any(|p| p.wire() == *w))
        .collect()
}

/// Each connection costs a descriptor in this process (three through the
/// round-trip relay) and one in the worker, which inherits the limit.
fn raise_open_file_limit(connections: usize) -> Result<(), BoxError> {
    let needed = (connections * 3 + 512) as u64;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return Ok(());
    }
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    let raised = needed.min(maximum);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        },
    )
    .map_err(|e| format!("cannot raise the open-file limit to {raised}: {e}"))?;
    eprintln!(
        "experiment: raised the open-file limit from {current} to {raised} for {connections} connections{}",
        if raised < needed {
            " (the hard limit; some connections may fail)"
        } else {
            ""
        }
    );
    Ok(())
}

/// Starts one server stack (and the proxy, for that scenario), measures it
/// without restarts and at each interval, and stops it.
fn measure_stack(
    runtime: &tokio::runtime::Runtime,
    exe: &Path,
    scenario: Scenario,
    server: Stack,
    wire: Wire,
    args: &ExperimentArgs,
    results: &mut Results,
) -> Result<(), BoxError> {
    let (superdaemon, worker) = commands(server, wire, exe, args)?;
    let starter = Starter::start(&superdaemon, &worker)?;
    let nginx = if scenario.via_proxy() {
        Some(Nginx::start(starter.port)?)
    } else {
        None
    };
    let target = nginx.as_ref().map_or(starter.port, |n| n.port);
    let mut level = None;
    for restart_every in std::iter::once(None).chain(args.intervals.iter().copied().map(Some)) {
        eprintln!(
            "  {} {}, {}: {}",
            scenario.name(),
            server.name(),
            wire.name(),
            every(restart_every)
        );
        let run = Run {
            scenario,
            server,
            wire,
            restart_every,
            target,
        };
        let row = measure(runtime, &starter, &run, args, level)?;
        if restart_every.is_none() {
            level = Some(row.rps());
        }
        results.rows.push(row);
        let back_to_back = scenario.load() == Load::BackToBack;
        for client in &args.compare {
            let applicable = matches!(
                (client, wire),
                (Client::Wrk, Wire::Http1) | (Client::H2load, Wire::H2 | Wire::H2c)
            );
            if applicable && back_to_back {
                results
                    .rows
                    .push(measure_external(&starter, &run, *client, args)?);
            }
        }
    }
    if let Some(nginx) = nginx {
        nginx.stop()?;
    }
    starter.stop()?;
    Ok(())
}

/// What one run measures.
#[derive(Debug, Clone, Copy)]
struct Run {
    scenario: Scenario,
    server: Stack,
    wire: Wire,
    restart_every: Option<Duration>,
    /// The port the load goes to (the worker's, or nginx's).
    target: u16,
}

/// The superdaemon and worker command lines for a server and protocol.
fn commands(
    server: Stack,
    wire: Wire,
    exe: &Path,
    args: &ExperimentArgs,
) -> Result<(Vec<OsString>, Vec<OsString>), BoxError> {
    let tls = wire.is_tls();
    if server == Stack::Go {
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
    let binary = std::path::absolute(out.join("go-worker"))?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers/go-worker/main.go");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(written)) = (modified(&binary), modified(&source))
        && built >= written
    {
        return Ok(binary);
    }
    if binary.exists() && !source.exists() {
        return Ok(binary);
    }
    if !source.exists() {
        return Err(format!(
            "--peer go needs the source `{}` (a checkout of gracedown)",
            source.display()
        )
        .into());
    }
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
    run: &Run,
    args: &ExperimentArgs,
    level: Option<f64>,
) -> Result<Row, BoxError> {
    let markers = Markers::default();
    let plan = plan(run, args, markers.clone())?;
    let duration = plan.run_duration();
    let restarter = run
        .restart_every
        .map(|every| Restarter::start(starter.pid(), every, markers));
    let progress = Arc::new(Progress::default());
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| crate::bench::spawn_ticker(runtime, Arc::clone(&progress), duration));
    let samples = runtime.block_on(gracedown_bench::run(&plan, progress));
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r\x1b[K");
    }
    let restarts = restarter.map_or(0, Restarter::finish);
    let samples = samples?;
    let url = url(run);
    let report = Report::new(&samples, &url, samples.protocol.name(), duration, level);
    if run.server == Stack::Gracedown && run.restart_every == args.intervals.first().copied() {
        let title = format!(
            "{} scenario, {}, {}: {url}",
            run.scenario.name(),
            run.wire.name(),
            every(run.restart_every)
        );
        let svg = gracedown_bench::plot::svg(&samples, &title, level)?;
        let file = format!("{}-{}.svg", run.scenario.name(), run.wire.file_name());
        std::fs::write(args.out.join(file), svg)?;
    }
    let proxy_errors = if run.scenario.via_proxy() {
        PROXY_FAILURES
            .iter()
            .filter_map(|s| report.status.get(&s.to_string()))
            .sum()
    } else {
        0
    };
    Ok(Row {
        scenario: run.scenario,
        frontend: None,
        server: run.server,
        client: table::Client::Bench,
        wire: run.wire,
        restart_every: run.restart_every,
        restarts,
        report: Some(report),
        external: None,
        ratio: None,
        proxy_errors,
    })
}

fn measure_external(
    starter: &Starter,
    run: &Run,
    client: Client,
    args: &ExperimentArgs,
) -> Result<Row, BoxError> {
    let restarter = run
        .restart_every
        .map(|every| Restarter::start(starter.pid(), every, Markers::default()));
    let url = url(run);
    let connections = args
        .connections
        .unwrap_or_else(|| run.scenario.connections());
    let duration = args.duration.unwrap_or_else(|| run.scenario.duration());
    let result = match client {
        Client::Wrk => external::wrk(&url, connections, duration),
        Client::H2load => external::h2load(&url, connections, duration),
    };
    let restarts = restarter.map_or(0, Restarter::finish);
    let client = match client {
        Client::Wrk => table::Client::Wrk,
        Client::H2load => table::Client::H2load,
    };
    Ok(Row {
        scenario: run.scenario,
        frontend: None,
        server: run.server,
        client,
        wire: run.wire,
        restart_every: run.restart_every,
        restarts,
        report: None,
        external: Some(result?),
        ratio: None,
        proxy_errors: 0,
    })
}

/// The fleet scenario: per server (gracedown with the shutdown delay,
/// without it, the Go peer), a fleet behind HAProxy loaded through both
/// frontends at once, without replacements and then at each interval.
fn measure_fleet(
    runtime: &tokio::runtime::Runtime,
    exe: &Path,
    args: &ExperimentArgs,
    results: &mut Results,
) -> Result<(), BoxError> {
    use self::fleet::{Fleet, Program, Rollout};
    let mut stacks = vec![
        (
            Stack::Gracedown,
            Program::Gracedown {
                exe: exe.to_owned(),
                delay: args.fleet_delay,
            },
        ),
        (
            Stack::GracedownNoDelay,
            Program::Gracedown {
                exe: exe.to_owned(),
                delay: Duration::ZERO,
            },
        ),
    ];
    if args.peer == Some(Peer::Go) {
        stacks.push((Stack::Go, Program::Go(build_go_worker(&args.out)?)));
    }
    for (server, program) in stacks {
        // Lent to the rollout while it replaces instances.
        let mut fleet = Some(Fleet::start(program, args.fleet_size)?);
        let mut levels: [Option<f64>; 2] = [None, None];
        for restart_every in std::iter::once(None).chain(args.intervals.iter().copied().map(Some)) {
            eprintln!(
                "  fleet {} x{}: {}",
                server.name(),
                args.fleet_size,
                restart_every.map_or("no replacements".to_owned(), |d| format!(
                    "a replacement every {}, the balancer {:.1}-{:.1} s late",
                    humantime::format_duration(d),
                    args.fleet_lag.0.as_secs_f64(),
                    args.fleet_lag.1.as_secs_f64()
                ))
            );
            let markers = Markers::default();
            let Some(here) = fleet.take() else {
                return Err("the fleet was lost".into());
            };
            let urls = Frontend::ALL.map(|frontend| {
                let path = frontend.request().1;
                format!("http://127.0.0.1:{}{path}", here.haproxy.port(frontend))
            });
            let [l4, l7] = [0, 1].map(|i| fleet_plan(Frontend::ALL[i], &urls[i], args, &markers));
            let (l4, l7) = (l4?, l7?);
            let rollout = match restart_every {
                Some(every) => Some(Rollout::start(here, every, args.fleet_lag, markers.clone())),
                None => {
                    fleet = Some(here);
                    None
                }
            };
            let (l4_samples, l7_samples) = runtime.block_on(async {
                tokio::join!(
                    gracedown_bench::run(&l4, Arc::default()),
                    gracedown_bench::run(&l7, Arc::default())
                )
            });
            let replaced = match rollout {
                Some(rollout) => {
                    let (back, replaced) = rollout.finish()?;
                    fleet = Some(back);
                    replaced
                }
                None => 0,
            };
            for ((i, frontend), (plan, samples)) in Frontend::ALL
                .into_iter()
                .enumerate()
                .zip([(&l4, l4_samples), (&l7, l7_samples)])
            {
                let samples = samples?;
                let url = &urls[i];
                let report = Report::new(
                    &samples,
                    url,
                    samples.protocol.name(),
                    plan.run_duration(),
                    levels[i],
                );
                if restart_every.is_none() {
                    levels[i] = Some(report.rps);
                } else {
                    let title = format!(
                        "fleet of {} behind HAProxy ({}), {}: {url}",
                        args.fleet_size,
                        frontend.name(),
                        server.name()
                    );
                    let svg = gracedown_bench::plot::svg(&samples, &title, levels[i])?;
                    std::fs::write(
                        args.out
                            .join(format!("fleet-{}-{}.svg", server.name(), frontend.name())),
                        svg,
                    )?;
                }
                let proxy_errors = PROXY_FAILURES
                    .iter()
                    .filter_map(|s| report.status.get(&s.to_string()))
                    .sum();
                results.rows.push(Row {
                    scenario: Scenario::Fleet,
                    frontend: Some(frontend),
                    server,
                    client: table::Client::Bench,
                    wire: Wire::Http1,
                    restart_every,
                    restarts: replaced,
                    report: Some(report),
                    external: None,
                    ratio: None,
                    proxy_errors,
                });
            }
        }
        if let Some(fleet) = fleet {
            fleet.stop()?;
        }
    }
    Ok(())
}

/// The load through one of the balancer's frontends.
fn fleet_plan(
    frontend: Frontend,
    url: &str,
    args: &ExperimentArgs,
    markers: &Markers,
) -> Result<Plan, BoxError> {
    let scenario = Scenario::Fleet;
    let (method, _, body) = frontend.request();
    Ok(Plan::from_url(url, false)?
        .connections(args.connections.unwrap_or_else(|| scenario.connections()))
        .duration(args.duration.unwrap_or_else(|| scenario.duration()))
        .timeout(Duration::from_secs(10))
        .load(scenario.load())
        .keepalive(frontend.keepalive())
        .method(method.parse()?)
        .body(bytes::Bytes::from_static(body))
        .markers(markers.clone()))
}

fn every(restart_every: Option<Duration>) -> String {
    restart_every.map_or("no restarts".to_owned(), |d| {
        format!("restarts every {}", humantime::format_duration(d))
    })
}

fn url(run: &Run) -> String {
    let (_, path, _) = run.scenario.request();
    let scheme = if run.wire.is_tls() { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{}{path}", run.target)
}

fn plan(run: &Run, args: &ExperimentArgs, markers: Markers) -> Result<Plan, BoxError> {
    let scenario = run.scenario;
    let (method, _, body) = scenario.request();
    let mut plan = Plan::from_url(&url(run), run.wire == Wire::H2c)?
        .connections(args.connections.unwrap_or_else(|| scenario.connections()))
        .duration(args.duration.unwrap_or_else(|| scenario.duration()))
        .timeout(Duration::from_secs(10))
        .load(scenario.load())
        .method(method.parse()?)
        .body(bytes::Bytes::from_static(body))
        .markers(markers);
    if let Some(rtt) = scenario.rtt() {
        plan = plan.rtt(rtt);
    }
    if run.wire.is_tls() {
        // The worker's certificate is self-signed, made at its start.
        plan = plan.protocol(run.wire.protocol()).insecure(true);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command as Sub};

    fn args(extra: &[&str]) -> ExperimentArgs {
        let argv = ["gracedown", "experiment"].iter().chain(extra);
        match Cli::try_parse_from(argv).expect("valid arguments").command {
            Sub::Experiment(args) => args,
            other => panic!("not an experiment: {other:?}"),
        }
    }

    #[test]
    fn protocols_narrow_each_scenarios_own() {
        let all = args(&[]);
        assert_eq!(wires(Scenario::Lab, &all), [Wire::Http1, Wire::H2]);
        assert_eq!(wires(Scenario::Fleet, &all), [Wire::Http1]);
        let h2 = args(&["--protocols", "h2"]);
        assert_eq!(wires(Scenario::Lab, &h2), [Wire::H2]);
        // A scenario without the protocol asked for runs nothing.
        assert!(wires(Scenario::Wan, &h2).is_empty());
        assert!(wires(Scenario::Fleet, &h2).is_empty());
        // The scale scenario runs every protocol; TLS and h2c by name.
        assert_eq!(
            wires(Scenario::Scale, &all),
            [Wire::Http1, Wire::Http1Tls, Wire::H2c, Wire::H2]
        );
        let named = args(&["--protocols", "h1-tls,h2c"]);
        assert_eq!(wires(Scenario::Scale, &named), [Wire::Http1Tls, Wire::H2c]);
        assert!(wires(Scenario::Lab, &named).is_empty());
    }

    #[test]
    fn gracedown_runs_under_the_embedded_start_server_and_a_custom_worker_takes_its_arguments() {
        let exe = Path::new("/opt/gracedown");
        let (superdaemon, worker) =
            commands(Stack::Gracedown, Wire::H2, exe, &args(&[])).expect("commands");
        assert_eq!(
            superdaemon,
            ["/opt/gracedown", "start-server", "--interval=0.1"]
        );
        assert_eq!(worker, ["/opt/gracedown", "serve", "--tls"]);
        let custom = args(&["--worker", "/bin/app", "--", "--port", "1"]);
        let (_, worker) = commands(Stack::Gracedown, Wire::Http1, exe, &custom).expect("commands");
        assert_eq!(worker, ["/bin/app", "--port", "1"]);
    }

    #[test]
    fn the_fleet_loads_each_frontend_its_own_way() {
        let args = args(&["--scenario", "fleet", "-c", "7", "-d", "2s"]);
        let markers = Markers::default();
        let l4 = fleet_plan(Frontend::L4, "http://127.0.0.1:1/", &args, &markers).expect("plan");
        let l7 =
            fleet_plan(Frontend::L7, "http://127.0.0.1:2/echo", &args, &markers).expect("plan");
        let (l4, l7) = (format!("{l4:?}"), format!("{l7:?}"));
        for plan in [&l4, &l7] {
            assert!(plan.contains("connections: 7"), "{plan}");
            assert!(plan.contains("duration: 2s"), "{plan}");
        }
        assert!(
            l4.contains("keepalive: false") && l4.contains("method: GET"),
            "{l4}"
        );
        assert!(
            l7.contains("keepalive: true") && l7.contains("method: POST"),
            "{l7}"
        );
    }

    #[test]
    fn the_fleet_takes_no_custom_worker() {
        let args = args(&["--scenario", "fleet", "--worker", "/bin/app"]);
        let e = experiment(&args).expect_err("refused");
        assert!(
            e.to_string()
                .contains("--worker is not used by the fleet scenario"),
            "{e}"
        );
    }
}
