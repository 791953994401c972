//! `gracedown experiment`: the main job. A worker under start_server,
//! restarted at fixed intervals while `gracedown bench` runs, per protocol;
//! one table, one JSON document, one chart per protocol.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gracedown_bench::report::Report;
use gracedown_bench::{Markers, Plan, Progress, Protocol};
use serde_json::json;

use crate::cli::{ExperimentArgs, ExperimentProtocol};
use crate::{exit, report_error};

/// How long start_server may take to start its first worker, or to stop.
const START_STOP_WAIT: Duration = Duration::from_secs(30);

/// One measured run.
struct Row {
    protocol: ExperimentProtocol,
    restart_every: Option<Duration>,
    restarts: u32,
    report: Report,
    ratio: Option<f64>,
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

type BoxError = Box<dyn std::error::Error>;

fn experiment(args: &ExperimentArgs) -> Result<ExitCode, BoxError> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let runs = 1 + args.intervals.len();
    eprintln!(
        "experiment: {} protocol(s) x {runs} runs of {} with {} connections; results in {}",
        args.protocols.len(),
        humantime::format_duration(args.duration),
        args.connections,
        args.out.display()
    );
    let mut rows: Vec<Row> = Vec::new();
    for &protocol in &args.protocols {
        let server = Starter::start(&exe, protocol, args)?;
        let mut baseline = None;
        for restart_every in std::iter::once(None).chain(args.intervals.iter().copied().map(Some)) {
            let label = restart_every.map_or("no restarts".to_owned(), |d| {
                format!("a restart every {}", humantime::format_duration(d))
            });
            eprintln!("  {}: {label}", name(protocol));
            let markers = Markers::default();
            let plan = plan(protocol, server.port, args, markers.clone())?;
            let restarter =
                restart_every.map(|every| Restarter::start(server.pid(), every, markers));
            let progress = Arc::new(Progress::default());
            let ticker = std::io::stderr().is_terminal().then(|| {
                crate::bench::spawn_ticker(&runtime, Arc::clone(&progress), args.duration)
            });
            let samples = runtime.block_on(gracedown_bench::run(&plan, progress));
            if let Some(ticker) = ticker {
                ticker.abort();
                eprint!("\r\x1b[K");
            }
            let restarts = restarter.map_or(0, Restarter::finish);
            let samples = samples?;
            let url = url(protocol, server.port);
            let report = Report::new(&samples, &url, samples.protocol.name(), args.duration);
            let ratio = match restart_every {
                None => {
                    baseline = Some(report.rps);
                    None
                }
                Some(_) => baseline.filter(|b| *b > 0.0).map(|b| report.rps / b),
            };
            if restart_every.is_some() && restart_every == args.intervals.first().copied() {
                let title = format!("{}, {label}: {url}", name(protocol));
                let svg = gracedown_bench::plot::svg(&samples, &title)?;
                std::fs::write(args.out.join(format!("{}.svg", file_name(protocol))), svg)?;
            }
            rows.push(Row {
                protocol,
                restart_every,
                restarts,
                report,
                ratio,
            });
        }
        server.stop()?;
    }
    let mut stdout = std::io::stdout().lock();
    write_table(&rows, &mut stdout)?;
    let document = json!({
        "schema": "gracedown-experiment/1",
        "duration_s": args.duration.as_secs_f64(),
        "connections": args.connections,
        "runs": rows.iter().map(|r| json!({
            "protocol": name(r.protocol),
            "restart_every_ms": r.restart_every.map(|d| d.as_millis() as u64),
            "restarts": r.restarts,
            "ratio": r.ratio,
            "report": r.report,
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
        .filter(|r| r.report.errors > 0)
        .map(|r| {
            let o = &r.report.outcomes;
            let classes: Vec<String> = [
                ("connect_failed", o.connect_failed),
                ("closed_before_response", o.closed_before_response),
                ("truncated", o.truncated),
                ("timeout", o.timeout),
            ]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
            format!(
                "{} with {}: {}",
                name(r.protocol),
                every(r.restart_every),
                classes.join(", ")
            )
        })
        .collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "FAILED: requests failed in {}", failed.join("; "))?;
    Ok(ExitCode::from(exit::REQUESTS_FAILED))
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

fn write_table(rows: &[Row], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<9} {:<17} {:>10} {:>9} {:>7} {:>8} {:>8} {:>6} {:>8} {:>11} {:>8} {:>6} {:>9} {:>9} {:>6}",
        "protocol",
        "restarts",
        "req/s",
        "ok",
        "errors",
        "connect",
        "closed",
        "trunc",
        "timeout",
        "unprocessed",
        "p99",
        "gap",
        "restarts",
        "gens",
        "ratio"
    )?;
    for r in rows {
        let o = &r.report.outcomes;
        writeln!(
            out,
            "{:<9} {:<17} {:>10.0} {:>9} {:>7} {:>8} {:>8} {:>6} {:>8} {:>11} {:>8} {:>6} {:>9} {:>9} {:>6}",
            name(r.protocol),
            r.restart_every.map_or("none".to_owned(), |d| format!(
                "every {}",
                humantime::format_duration(d)
            )),
            r.report.rps,
            o.ok,
            r.report.errors,
            o.connect_failed,
            o.closed_before_response,
            o.truncated,
            o.timeout,
            o.unprocessed,
            format!("{:.1}ms", r.report.latency_us.p99 as f64 / 1000.0),
            format!("{}ms", r.report.longest_gap_ms),
            r.restarts,
            r.report.generations,
            r.ratio.map_or("-".to_owned(), |x| format!("{x:.3}")),
        )?;
    }
    Ok(())
}

/// start_server with the worker, on a loopback port, its output collected.
struct Starter {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _status_dir: TempDir,
}

impl Starter {
    fn start(
        exe: &Path,
        protocol: ExperimentProtocol,
        args: &ExperimentArgs,
    ) -> Result<Self, BoxError> {
        let port = free_port()?;
        let status_dir = TempDir::new()?;
        let status = status_dir.0.join("status");
        let mut cmd = Command::new(exe);
        cmd.arg("start-server")
            .arg(format!("--port=127.0.0.1:{port}"))
            .arg(format!("--status-file={}", status.display()))
            .arg("--interval=1")
            .arg("--");
        match &args.worker {
            Some(worker) => {
                cmd.arg(worker).args(&args.worker_args);
            }
            None => {
                cmd.arg(exe).arg("serve");
                if protocol == ExperimentProtocol::H2 {
                    cmd.arg("--tls");
                }
            }
        }
        cmd.env_remove("SERVER_STARTER_PORT")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{} start-server`: {e}", exe.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        let starter = Self {
            child,
            port,
            log,
            _status_dir: status_dir,
        };
        // start_server writes the status file once the first worker is trusted.
        let deadline = Instant::now() + START_STOP_WAIT;
        while !status.exists() {
            if Instant::now() > deadline || starter.exited() {
                return Err(format!("the worker did not start:\n{}", starter.log_text()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(starter)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.child.id())).is_err()
    }

    fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    fn stop(mut self) -> Result<(), BoxError> {
        signal(self.pid(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + START_STOP_WAIT;
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!(
                    "start_server did not stop within {}s:\n{}",
                    START_STOP_WAIT.as_secs(),
                    self.log_text()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Starter {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.pid(), rustix::process::Signal::TERM);
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sends SIGHUP to start_server at a fixed pace and marks each on the timeline.
struct Restarter {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    thread: std::thread::JoinHandle<()>,
}

impl Restarter {
    fn start(pid: u32, every: Duration, markers: Markers) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 1u32;
            while !stop2.load(Ordering::Acquire) {
                let next = start + every * n;
                let now = Instant::now();
                if next > now {
                    // The pace of restarts is the experiment's load shape.
                    std::thread::sleep((next - now).min(Duration::from_millis(50)));
                    continue;
                }
                signal(pid, rustix::process::Signal::HUP);
                markers.mark();
                sent2.fetch_add(1, Ordering::AcqRel);
                n += 1;
            }
        });
        Self { stop, sent, thread }
    }

    fn finish(self) -> u32 {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
        self.sent.load(Ordering::Acquire)
    }
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("gracedown-experiment-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
