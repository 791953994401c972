//! The superdaemon's driver: sets up (bind, log, daemonize, pid file), then
//! runs the [`Supervisor`] on real events: signals, child exits, readiness
//! datagrams and time.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::info;

use gracedown_sockets::handoff::HANDOFF_FD;

use crate::broker::Broker;
use crate::config::{Config, LogTarget, Mode};
use crate::env::Environment;
use crate::error::Error;
use crate::files::{PidFile, StatusFile};
use crate::sockets::ListenerSet;
use crate::spawn::Plan;
use crate::spawner::{Request, Spawned, Spawner};
use crate::supervisor::{Action, Event, Settings, StopSignal, Supervisor};

/// Variables never passed to workers: they describe start_server's own
/// supervisor (systemd), not the worker's, or start_server's own fault injection.
const NOT_INHERITED: [&str; 8] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    HANDOFF_FD,
    crate::spawn::STOP_BEFORE_EXEC,
];

/// Runs the superdaemon until it has stopped; returns the exit status.
///
/// # Errors
///
/// A setup failure (bind, log file, pid file, daemonize).
pub(crate) fn run(config: &Config) -> Result<u8, Error> {
    let Mode::Run(program) = &config.mode else {
        return Ok(crate::exit::SETUP);
    };
    info!("start_server (pid:{}) starting now...", std::process::id());
    let env = Environment::new(std::env::vars_os(), &config.control_env);
    let mut log = |line: String| info!("{line}");
    let activated = if config.sockets.is_empty() {
        ListenerSet::from_systemd()?
    } else {
        None
    };
    let sockets = match activated {
        Some(sockets) => sockets,
        None => ListenerSet::bind(&config.sockets, config.backlog, &mut log)?,
    };
    let systemd = gracedown_sockets::notify::Notifier::from_env();
    if let Some(target) = &config.log {
        redirect_output(target)?;
    }
    if config.daemonize {
        let keep_stdin = sockets.sockets.iter().any(|s| s.target == 0);
        crate::daemon::daemonize(keep_stdin)?;
    }
    let pid_file = config
        .pid_file
        .as_deref()
        .map(PidFile::create)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            action: "start the runtime",
            source,
        })?;
    let code = runtime.block_on(drive(config, program, &sockets, env, systemd));
    sockets.remove_paths();
    drop(pid_file);
    code
}

fn redirect_output(target: &LogTarget) -> Result<(), Error> {
    use std::os::fd::AsFd;
    let fd: std::os::fd::OwnedFd = match target {
        LogTarget::File(path) => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| Error::File {
                action: "open the log file",
                path: path.clone(),
                source,
            })?
            .into(),
        LogTarget::Pipe(cmd) => {
            let child = std::process::Command::new("/bin/sh")
                .args(["-c", cmd])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .map_err(|source| Error::Io {
                    action: "start the log pipe command",
                    source,
                })?;
            let stdin = child.stdin.ok_or_else(|| Error::Io {
                action: "open the log pipe",
                source: std::io::ErrorKind::BrokenPipe.into(),
            })?;
            stdin.into()
        }
    };
    let fail = |e: rustix::io::Errno| Error::Io {
        action: "redirect output to the log",
        source: e.into(),
    };
    rustix::stdio::dup2_stdout(fd.as_fd()).map_err(fail)?;
    rustix::stdio::dup2_stderr(fd.as_fd()).map_err(fail)?;
    Ok(())
}

async fn drive(
    config: &Config,
    program: &[OsString],
    sockets: &ListenerSet,
    env: Environment,
    systemd: gracedown_sockets::notify::Notifier,
) -> Result<u8, Error> {
    let install = |kind| {
        signal(kind).map_err(|source| Error::Io {
            action: "install signal handlers",
            source,
        })
    };
    let mut hup = install(SignalKind::hangup())?;
    let mut term = install(SignalKind::terminate())?;
    let mut int = install(SignalKind::interrupt())?;
    let mut quit = install(SignalKind::quit())?;
    let mut usr1 = install(SignalKind::user_defined1())?;
    let mut usr2 = install(SignalKind::user_defined2())?;
    let mut alrm = install(SignalKind::alarm())?;
    let (exit_tx, mut exits) = mpsc::unbounded_channel::<(u32, i32)>();
    let (notice_tx, mut notices) = mpsc::unbounded_channel::<Event>();
    let (spawned_tx, mut spawns) = mpsc::unbounded_channel::<Spawned>();
    let mut supervisor = Supervisor::new(Settings {
        interval: config.interval,
        ready_timeout: config.ready_timeout,
        signal_on_hup: config.signal_on_hup,
        signal_on_term: config.signal_on_term,
        drain_timeout: config.drain_timeout,
        watchdog: config.watchdog_timeout,
    });
    let spawner = Spawner::start(
        Plan {
            program: program.to_vec(),
            dir: config.dir.clone(),
            placements: sockets.placements(),
            death_signal: config.signal_on_term.number(),
            stop_before_exec: env.stop_before_exec(),
        },
        tokio::runtime::Handle::current(),
        spawned_tx,
        notice_tx.clone(),
    )
    .map_err(|source| Error::Io {
        action: "start the spawning thread",
        source,
    })?;
    let _systemd_watchdog = systemd.spawn_watchdog();
    let mut status = config.status_file.clone().map(StatusFile::new);
    // Each generation's notification socket is read for as long as it runs.
    let mut notifications: HashMap<u64, JoinHandle<()>> = HashMap::new();
    let mut generations: HashMap<u32, u64> = HashMap::new();
    let port_env = sockets.env_value();
    // Each generation's handoff channel sits just above the sockets.
    let handoff_fd = sockets
        .placements()
        .iter()
        .map(|(_, target)| *target)
        .max()
        .unwrap_or(2)
        .max(2)
        + 1;
    let (mut broker, mut handoffs) =
        Broker::new(config.ticket_key_rotation).map_err(|source| Error::Io {
            action: "make the TLS session-ticket keys",
            source,
        })?;
    let mut events = VecDeque::from([Event::Start]);
    loop {
        while let Some(event) = events.pop_front() {
            supervisor.dynamic = env.dynamic();
            if let Event::Ready { generation } = event {
                // Its `R` went out before its `READY=1`, on the other socket.
                broker.catch_up(generation, &mut handoffs);
            }
            if let Event::SpawnFailed { generation, .. } = event {
                broker.close(generation).await;
            }
            let actions = supervisor.handle(event, Instant::now());
            broker.set_target(supervisor.handoff_target());
            for action in actions {
                match action {
                    Action::Spawn { generation } => {
                        let (name, task) = listen_for_notices(generation, notice_tx.clone());
                        if let Some(task) = task {
                            notifications.insert(generation, task);
                        }
                        let mut vars: Vec<(OsString, OsString)> = env
                            .current()
                            .into_iter()
                            .filter(|(k, _)| !NOT_INHERITED.iter().any(|n| k == n))
                            .collect();
                        vars.push(("SERVER_STARTER_PORT".into(), port_env.clone().into()));
                        vars.push((
                            "SERVER_STARTER_GENERATION".into(),
                            generation.to_string().into(),
                        ));
                        if let Some(name) = name {
                            vars.push(("NOTIFY_SOCKET".into(), name.into()));
                            if let Some(bound) = config.watchdog_timeout {
                                vars.push((
                                    "WATCHDOG_USEC".into(),
                                    bound.as_micros().to_string().into(),
                                ));
                            }
                        }
                        let extra = match broker.open(generation) {
                            Ok(fd) => {
                                vars.push((HANDOFF_FD.into(), handoff_fd.to_string().into()));
                                Some((fd, handoff_fd))
                            }
                            Err(e) => {
                                info!(
                                    "cannot open the handoff channel of generation {generation} ({e}); its connections will close when it drains"
                                );
                                None
                            }
                        };
                        spawner.spawn(Request {
                            generation,
                            env: vars,
                            extra,
                        });
                    }
                    Action::Signal { pid, signal } => {
                        signal.send(pid);
                    }
                    Action::WriteStatus(content) => {
                        if let Some(status) = status.as_mut()
                            && let Err(e) = status.write(&content)
                        {
                            info!("{}", crate::error_line(&e));
                        }
                    }
                    Action::Log(line) => info!("{line}"),
                    Action::Notify(state) => notify_systemd(&systemd, state),
                    Action::Exit(code) => {
                        if let Some(status) = &status {
                            status.remove();
                        }
                        return Ok(code);
                    }
                }
            }
        }
        let deadline = supervisor
            .next_deadline()
            .map_or(broker.next_rotation(), |d| d.min(broker.next_rotation()));
        let tick = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            _ = hup.recv() => events.push_back(Event::Hup),
            _ = term.recv() => events.push_back(Event::Stop(StopSignal::Term)),
            _ = int.recv() => events.push_back(Event::Stop(StopSignal::Int)),
            _ = quit.recv() => events.push_back(Event::Stop(StopSignal::Quit)),
            _ = usr1.recv() => info!("received USR1, ignored"),
            _ = usr2.recv() => info!("received USR2, ignored"),
            _ = alrm.recv() => {}
            Some((pid, status)) = exits.recv() => {
                if let Some(generation) = generations.remove(&pid) {
                    // Its descriptors close before the exit is acted on.
                    if let Some(task) = notifications.remove(&generation) {
                        task.abort();
                        let _ = task.await;
                    }
                    broker.close(generation).await;
                }
                events.push_back(Event::Exited { pid, status });
            }
            Some(notice) = notices.recv() => events.push_back(notice),
            Some(message) = handoffs.recv() => broker.handle(message),
            Some(Spawned { generation, result }) = spawns.recv() => match result {
                Ok(mut child) => {
                    let pid = child.id().unwrap_or_default();
                    generations.insert(pid, generation);
                    let exit_tx = exit_tx.clone();
                    tokio::spawn(async move {
                        use std::os::unix::process::ExitStatusExt;
                        if let Ok(status) = child.wait().await {
                            let _ = exit_tx.send((pid, status.into_raw()));
                        }
                    });
                    events.push_back(Event::Spawned { generation, pid });
                }
                Err(e) => {
                    if let Some(task) = notifications.remove(&generation) {
                        task.abort();
                        let _ = task.await;
                    }
                    let prog = program[0].to_string_lossy();
                    let error = format!("failed to exec {prog}: {}", crate::errno_text(&e));
                    events.push_back(Event::SpawnFailed { generation, error });
                }
            },
            () = tick => {
                broker.rotate_if_due(Instant::now());
                events.push_back(Event::Tick);
            }
        }
    }
}

/// Binds the generation's private notification socket (abstract namespace)
/// and reads it for as long as the generation runs: `READY=1` once, then
/// `WATCHDOG=1` as often as the worker sends it.
fn listen_for_notices(
    generation: u64,
    notices: mpsc::UnboundedSender<Event>,
) -> (Option<String>, Option<JoinHandle<()>>) {
    let name = format!("gracedown-start_server/{}/{generation}", std::process::id());
    let bound = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .and_then(|addr| std::os::unix::net::UnixDatagram::bind_addr(&addr))
        .and_then(|socket| {
            socket.set_nonblocking(true)?;
            tokio::net::UnixDatagram::from_std(socket)
        });
    let Ok(socket) = bound else {
        info!(
            "cannot create the readiness socket; generation {generation} is trusted after --interval"
        );
        return (None, None);
    };
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let mut ready = false;
        while let Ok(n) = socket.recv(&mut buf).await {
            for line in buf[..n].split(|b| *b == b'\n') {
                let event = match line {
                    b"READY=1" if !ready => {
                        ready = true;
                        Event::Ready { generation }
                    }
                    b"WATCHDOG=1" => Event::Watchdog { generation },
                    _ => continue,
                };
                if notices.send(event).is_err() {
                    return;
                }
            }
        }
    });
    (Some(format!("@{name}")), Some(task))
}

fn notify_systemd(systemd: &gracedown_sockets::notify::Notifier, state: &str) {
    if state == "RELOADING=1" {
        match gracedown_sockets::clock::now_ns(gracedown_sockets::clock::Clock::Monotonic) {
            Some(ns) => systemd.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", ns / 1_000)),
            None => systemd.send(state),
        }
    } else {
        systemd.send(state);
    }
}
