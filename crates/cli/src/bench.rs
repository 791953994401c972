//! `gracedown bench`: run the load generator and report.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gracedown_bench::report::{Report, write_timeline};
use gracedown_bench::{BenchError, Load, Plan, Progress, Protocol};

use crate::cli::BenchArgs;
use crate::{exit, report_error};

/// Runs the benchmark described by `args`.
pub(crate) fn run(args: &BenchArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(message) => {
            report_error(&*message);
            return ExitCode::from(exit::USAGE);
        }
    };
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n.get(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report_error(&e);
            return ExitCode::from(exit::FAILURE);
        }
    };
    let protocol = plan.protocol_kind().name();
    let mut stdout = std::io::stdout().lock();
    if !args.json {
        let _ = writeln!(
            stdout,
            "bench: {} connections, {}, {threads} threads, {} {} ({protocol}), {}{}",
            args.connections,
            humantime::format_duration(args.duration),
            args.method,
            args.url,
            plan.load_model().describe(),
            args.rtt.map_or_else(String::new, |d| format!(
                ", round trip {}",
                humantime::format_duration(d)
            ))
        );
    }
    let progress = Arc::new(Progress::default());
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| spawn_ticker(&runtime, Arc::clone(&progress), args.duration));
    let samples = runtime.block_on(gracedown_bench::run(&plan, progress));
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r\x1b[K");
    }
    let samples = match samples {
        Ok(samples) => samples,
        Err(e) => {
            report_error(&e);
            return ExitCode::from(match e {
                BenchError::NoTrust | BenchError::CaCert { .. } | BenchError::Tls(_) => exit::TLS,
                _ => exit::FAILURE,
            });
        }
    };
    let report = Report::new(
        &samples,
        &args.url,
        samples.protocol.name(),
        args.duration,
        None,
    );
    let written = if args.json {
        report.write_json(&mut stdout)
    } else {
        report.write_text(&mut stdout)
    };
    if let Err(e) = written {
        report_error(&e);
        return ExitCode::from(exit::FAILURE);
    }
    if let Some(path) = &args.timeline {
        let result = std::fs::File::create(path).and_then(|mut f| write_timeline(&samples, &mut f));
        if let Err(e) = result {
            report_error(&e);
            return ExitCode::from(exit::FAILURE);
        }
    }
    if let Some(path) = &args.plot {
        let title = format!("{} {} ({})", args.method, args.url, samples.protocol.name());
        let result = gracedown_bench::plot::svg(&samples, &title, None)
            .map_err(std::io::Error::other)
            .and_then(|svg| std::fs::write(path, svg));
        if let Err(e) = result {
            report_error(&e);
            return ExitCode::from(exit::FAILURE);
        }
    }
    if args.fail_on_error && report.errors > 0 {
        return ExitCode::from(exit::REQUESTS_FAILED);
    }
    ExitCode::SUCCESS
}

fn plan(args: &BenchArgs) -> Result<Plan, Box<dyn std::error::Error>> {
    let mut plan = Plan::from_url(
        &args.url,
        args.h2c || (args.http2 && args.url.starts_with("http:")),
    )?;
    if args.url.starts_with("https:") {
        if args.http1 {
            plan = plan.protocol(Protocol::HttpsHttp1);
        } else if args.http2 {
            plan = plan.protocol(Protocol::HttpsHttp2);
        }
    }
    let method: http::Method = args
        .method
        .parse()
        .map_err(|_| format!("`{}` is not an HTTP method", args.method))?;
    let mut plan = plan
        .connections(args.connections)
        .duration(args.duration)
        .timeout(args.timeout)
        .keepalive(!args.no_keepalive)
        .insecure(args.insecure)
        .method(method);
    if let Some((min, max)) = args.think_time {
        plan = plan.load(Load::ThinkTime { min, max });
    }
    if let Some(per_second) = args.rate {
        plan = plan.load(Load::Rate { per_second });
    }
    if let Some(rtt) = args.rtt {
        plan = plan.rtt(rtt);
    }
    if let Some(path) = &args.cacert {
        plan = plan.cacert(path.clone());
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("header `{header}` is not `Name: value`"))?;
        plan = plan.header(name.trim(), value.trim());
    }
    if let Some(body) = &args.body {
        plan = plan.body(bytes::Bytes::from(body.clone()));
    } else if let Some(path) = &args.body_file {
        let body = std::fs::read(path)
            .map_err(|e| format!("cannot read --body-file `{}`: {e}", path.display()))?;
        plan = plan.body(bytes::Bytes::from(body));
    }
    Ok(plan)
}

/// A one-line progress display on a terminal, once a second.
pub(crate) fn spawn_ticker(
    runtime: &tokio::runtime::Runtime,
    progress: Arc<Progress>,
    duration: Duration,
) -> tokio::task::JoinHandle<()> {
    runtime.spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let elapsed = start.elapsed().as_secs();
            eprint!(
                "\r\x1b[K{elapsed}/{}s  {} requests  {} errors",
                duration.as_secs(),
                progress.done.load(Ordering::Relaxed),
                progress.errors.load(Ordering::Relaxed)
            );
        }
    })
}
