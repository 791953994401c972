//! `gracedown serve`: the demo worker.

use std::process::ExitCode;

use gracedown::listener::{ListenAddr, Listeners};
use gracedown::serve::{Server, Timeouts, Tuning};
use gracedown::shutdown::{ShutdownTiming, Signals};
use gracedown::tls::{TicketKeys, TlsConfig};
use tracing::info;

use crate::cli::ServeArgs;
use crate::worker::{self, Identity};
use crate::{exit, report_error};

/// Runs the worker until it has drained.
pub(crate) fn run(args: &ServeArgs) -> ExitCode {
    // Take the inherited sockets before anything else opens a descriptor.
    let server = match prepare(args) {
        Ok(prepared) => prepared,
        Err(e) => {
            report_error(&e);
            return exit::for_error(&e);
        }
    };
    let (server, generation) = server;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.get());
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            report_error(&e);
            return ExitCode::from(exit::FAILURE);
        }
    };
    // Built once: every response carries these bytes without copying them.
    let identity = Identity::new(std::process::id(), generation);
    let result = runtime.block_on(async move {
        let addrs = server.local_addrs().unwrap_or_default();
        let shown: Vec<String> = addrs.iter().map(ListenAddr::to_string).collect();
        let service = gracedown::serve::service_fn(move |req| worker::handle(identity, req));
        // Handlers first: a stop signal that follows "worker ready" must drain, not kill.
        let signals = Signals::install()?;
        info!(
            pid = std::process::id(),
            generation,
            listeners = shown.join(",").as_str(),
            "worker ready"
        );
        server.serve(service).with_signals(signals).await
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e);
            exit::for_error(&e)
        }
    }
}

fn prepare(args: &ServeArgs) -> Result<(Server, Option<u64>), gracedown::Error> {
    // Before the inherited sockets are taken (taking them clears their variables).
    let detected = ShutdownTiming::detect();
    let timing = ShutdownTiming {
        shutdown_delay: args.shutdown_delay.unwrap_or(detected.shutdown_delay),
        drain_timeout: args.drain_timeout.unwrap_or(detected.drain_timeout),
    };
    if detected != ShutdownTiming::DEFAULT {
        info!(
            shutdown_delay_ms = timing.shutdown_delay.as_millis() as u64,
            drain_timeout_ms = timing.drain_timeout.as_millis() as u64,
            longest_ms = timing.longest().as_millis() as u64,
            "Kubernetes pod (KUBERNETES_SERVICE_HOST set): 5 s of lame duck and a 15 s drain unless --shutdown-delay or --drain-timeout say otherwise; the grace period must exceed longest_ms"
        );
    }
    let mut inherited = Listeners::from_env()?;
    let generation = inherited.generation();
    let listeners = inherited.take_all_or_bind(&args.listen)?;
    let mut server = Server::new(listeners)
        .drain_timeout(timing.drain_timeout)
        .shutdown_delay(timing.shutdown_delay)
        .timeouts(Timeouts {
            handshake: args.handshake_timeout,
            request_head: args.header_read_timeout,
            request_body_read: args.body_read_timeout,
            response_send: args.send_timeout,
            keepalive: args.keepalive_timeout,
            drain_idle: args.idle_timeout,
            drain_first_request: args.first_request_timeout,
            reconnect_window: args.reconnect_window,
        })
        .handoff(!args.no_handoff)
        .tuning(Tuning {
            dormant_after: args.dormant_after,
            http2_inline_streams: !args.http2_stream_tasks,
            http1_writev: !args.http1_flatten,
        });
    if let Some(max) = args.max_connections {
        server = server.max_connections(max.get());
    }
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(cert, key)?),
        _ if args.tls => {
            let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned);
            Some(TlsConfig::self_signed(&names)?.0)
        }
        _ => None,
    };
    let tls = match (tls, args.ticket_key_file.is_empty()) {
        (Some(tls), false) => {
            Some(tls.ticket_keys(&TicketKeys::from_files(&args.ticket_key_file)?))
        }
        (None, false) => {
            return Err(gracedown::Error::TlsConfig {
                what: "--ticket-key-file needs TLS (--tls, or --cert and --key)",
                source: "no TLS configured".into(),
            });
        }
        (tls, true) => tls,
    };
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    Ok((server, generation))
}
