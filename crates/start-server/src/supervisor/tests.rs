//! The state machine's tests: events in, actions out, no process or socket.

use super::perl::sort_as_strings;
use super::*;

const SEC: Duration = Duration::from_secs(1);

struct Script {
    sup: Supervisor,
    t0: Instant,
}

impl Script {
    fn new(ready_timeout: Option<Duration>, drain_timeout: Option<Duration>) -> Self {
        let sup = Supervisor::new(Settings {
            interval: SEC,
            ready_timeout,
            signal_on_hup: Signal::TERM,
            signal_on_term: Signal::TERM,
            drain_timeout,
            watchdog: None,
        });
        Self {
            sup,
            t0: Instant::now(),
        }
    }

    fn at(&mut self, ms: u64, event: Event) -> Vec<Action> {
        self.sup.handle(event, self.t0 + Duration::from_millis(ms))
    }

    /// Starts generation 1 as pid 100 and has it accepted by READY=1.
    fn running(mut self) -> Self {
        assert_eq!(
            self.at(0, Event::Start),
            vec![Action::Spawn { generation: 1 }]
        );
        self.at(
            0,
            Event::Spawned {
                generation: 1,
                pid: 100,
            },
        );
        self.at(10, Event::Ready { generation: 1 });
        self
    }
}

fn log(line: &str) -> Action {
    Action::Log(line.to_owned())
}

fn status(text: &str) -> Action {
    Action::WriteStatus(text.to_owned())
}

fn term(pid: u32) -> Action {
    Action::Signal {
        pid,
        signal: Signal::TERM,
    }
}

#[test]
fn first_worker_is_trusted_after_the_interval_when_it_never_says_ready() {
    let mut s = Script::new(None, None);
    assert_eq!(s.at(0, Event::Start), vec![Action::Spawn { generation: 1 }]);
    assert_eq!(
        s.at(
            0,
            Event::Spawned {
                generation: 1,
                pid: 100
            }
        ),
        vec![log("starting new worker 100")]
    );
    assert_eq!(s.sup.next_deadline(), Some(s.t0 + SEC));
    assert_eq!(s.at(500, Event::Tick), vec![]);
    assert_eq!(
        s.at(1000, Event::Tick),
        vec![status("1:100\n"), Action::Notify("READY=1")]
    );
}

#[test]
fn hup_hands_over_when_the_new_worker_says_ready_then_signals_the_old() {
    let mut s = Script::new(None, None).running();
    assert_eq!(
        s.at(2000, Event::Hup),
        vec![
            log("received HUP, spawning a new worker"),
            Action::Notify("RELOADING=1"),
            Action::Spawn { generation: 2 }
        ]
    );
    s.at(
        2000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    assert_eq!(
        s.at(2050, Event::Ready { generation: 2 }),
        vec![
            status("1:100\n2:200\n"),
            Action::Notify("READY=1"),
            log("new worker is now running, sending TERM to old workers:100"),
            log("killing old workers"),
            term(100),
        ]
    );
    assert_eq!(
        s.at(
            2100,
            Event::Exited {
                pid: 100,
                status: 0
            }
        ),
        vec![log("old worker 100 died, status:0"), status("2:200\n")]
    );
}

#[test]
fn second_hup_during_a_restart_never_kills_the_old_generation_early() {
    let mut s = Script::new(None, None).running();
    s.at(2000, Event::Hup);
    s.at(
        2000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    // Perl would accept the half-started worker here and kill 100.
    assert_eq!(
        s.at(2100, Event::Hup),
        vec![log(
            "received HUP during a restart, another restart will follow"
        )]
    );
    assert_eq!(s.at(2200, Event::Hup), vec![], "coalesced");
    assert_eq!(
        s.at(2500, Event::Tick),
        vec![],
        "the interval is not shortened"
    );
    let actions = s.at(3000, Event::Tick);
    assert_eq!(
        actions,
        vec![
            status("1:100\n2:200\n"),
            Action::Notify("READY=1"),
            log("new worker is now running, sending TERM to old workers:100"),
            log("killing old workers"),
            term(100),
            log("received HUP, spawning a new worker"),
            Action::Notify("RELOADING=1"),
            Action::Spawn { generation: 3 },
        ]
    );
}

#[test]
fn failed_start_keeps_the_old_generation_and_retries_paced_by_the_interval() {
    let mut s = Script::new(None, None).running();
    s.at(2000, Event::Hup);
    s.at(
        2000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    assert_eq!(
        s.at(
            2100,
            Event::Exited {
                pid: 200,
                status: 256
            }
        ),
        vec![log(
            "new worker 200 seems to have failed to start, exit status:256"
        )]
    );
    assert_eq!(
        s.sup.next_deadline(),
        Some(s.t0 + Duration::from_millis(3000))
    );
    assert_eq!(
        s.at(3000, Event::Tick),
        vec![Action::Spawn { generation: 3 }],
        "generations skip, as in Perl"
    );
    s.at(
        3000,
        Event::Spawned {
            generation: 3,
            pid: 300,
        },
    );
    let accepted = s.at(3100, Event::Ready { generation: 3 });
    assert_eq!(accepted[0], status("1:100\n3:300\n"));
    assert!(accepted.contains(&term(100)));
}

#[test]
fn new_worker_dying_during_kill_old_delay_leaves_the_old_generation_serving() {
    let mut s = Script::new(None, None).running();
    s.sup.dynamic.kill_old_delay = Some(5 * SEC);
    s.at(2000, Event::Hup);
    s.at(
        2000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    let accepted = s.at(2100, Event::Ready { generation: 2 });
    assert_eq!(
        accepted.last(),
        Some(&log("sleeping 5 secs before killing old workers"))
    );
    let died = s.at(
        3000,
        Event::Exited {
            pid: 200,
            status: 9,
        },
    );
    assert_eq!(
        died,
        vec![
            log("worker 200 died unexpectedly with status:9, restarting"),
            log("not signalling old workers: the new worker is gone"),
            Action::Spawn { generation: 3 },
        ]
    );
    assert!(
        !s.at(7100, Event::Tick)
            .iter()
            .any(|a| matches!(a, Action::Signal { .. })),
        "100 keeps serving"
    );
    s.at(
        7200,
        Event::Spawned {
            generation: 3,
            pid: 300,
        },
    );
    let accepted = s.at(7300, Event::Ready { generation: 3 });
    assert!(accepted.contains(&log(
        "new worker is now running, sending TERM to old workers:100"
    )));
}

#[test]
fn the_current_worker_dying_during_a_restart_leaves_the_new_one_to_take_over() {
    let mut s = Script::new(None, None).running();
    s.at(2000, Event::Hup);
    s.at(
        2000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    let died = s.at(
        2050,
        Event::Exited {
            pid: 100,
            status: 9,
        },
    );
    // No second start: the one in progress would be lost track of.
    assert_eq!(
        died,
        vec![log(
            "worker 100 died unexpectedly with status:9, restarting"
        )]
    );
    let accepted = s.at(2100, Event::Ready { generation: 2 });
    assert!(accepted.contains(&status("2:200\n")), "{accepted:?}");
    assert_eq!(s.sup.handoff_target(), Some(2));
    let stopped = s.at(3000, Event::Stop(StopSignal::Term));
    assert!(stopped.contains(&term(200)), "{stopped:?}");
    assert_eq!(s.sup.handoff_target(), None, "no handoff while stopping");
}

#[test]
fn ready_timeout_kills_a_candidate_that_never_says_ready() {
    let mut s = Script::new(Some(2 * SEC), None).running();
    s.at(1000, Event::Hup);
    s.at(
        1000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    assert_eq!(
        s.at(2000, Event::Tick),
        vec![],
        "--interval does not apply with a ready timeout"
    );
    assert_eq!(
        s.at(3000, Event::Tick),
        vec![
            log(
                "new worker 200 did not send READY=1 within 2 secs, killing it; old workers keep serving"
            ),
            Action::Signal {
                pid: 200,
                signal: Signal::KILL
            },
        ]
    );
    assert_eq!(
        s.at(
            3010,
            Event::Exited {
                pid: 200,
                status: 9
            }
        ),
        vec![]
    );
    // The attempt took longer than the interval: the next one starts at once.
    assert_eq!(
        s.sup.next_deadline(),
        Some(s.t0 + Duration::from_millis(3010))
    );
    assert_eq!(
        s.at(3010, Event::Tick),
        vec![Action::Spawn { generation: 3 }]
    );
}

#[test]
fn a_worker_exiting_as_if_it_could_not_bind_gets_a_hint() {
    let mut s = Script::new(None, None);
    s.at(0, Event::Start);
    s.at(
        0,
        Event::Spawned {
            generation: 1,
            pid: 100,
        },
    );
    let actions = s.at(
        10,
        Event::Exited {
            pid: 100,
            status: 98 << 8,
        },
    );
    assert!(
        matches!(&actions[1], Action::Log(l) if l.starts_with("hint: worker 100 exited with code 98")),
        "{actions:?}"
    );
    s.at(1000, Event::Tick);
    s.at(
        1000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    assert_eq!(
        s.at(
            1010,
            Event::Exited {
                pid: 200,
                status: 256
            }
        )
        .len(),
        1,
        "no hint for other codes"
    );
}

#[test]
fn stop_signals_everyone_waits_for_all_then_exits() {
    let mut s = Script::new(None, None).running();
    s.at(2000, Event::Hup);
    s.at(
        2000,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    s.at(2100, Event::Ready { generation: 2 });
    assert_eq!(
        s.at(2200, Event::Stop(StopSignal::Int)),
        vec![
            Action::Notify("STOPPING=1"),
            log("received INT, sending TERM to all workers:100,200"),
            term(100),
            term(200),
        ]
    );
    assert_eq!(
        s.at(2300, Event::Hup),
        vec![],
        "HUP is ignored while stopping"
    );
    assert_eq!(
        s.at(
            2400,
            Event::Exited {
                pid: 200,
                status: 0
            }
        ),
        vec![log("worker 200 died, status:0"), status("1:100\n")]
    );
    assert_eq!(
        s.at(
            2500,
            Event::Exited {
                pid: 100,
                status: 0
            }
        ),
        vec![
            log("worker 100 died, status:0"),
            status(""),
            log("exiting"),
            Action::Exit(0)
        ]
    );
}

#[test]
fn drain_timeout_escalates_to_sigkill() {
    let mut s = Script::new(None, Some(3 * SEC)).running();
    s.at(1000, Event::Stop(StopSignal::Term));
    assert_eq!(
        s.sup.next_deadline(),
        Some(s.t0 + Duration::from_millis(4000))
    );
    assert_eq!(
        s.at(4000, Event::Tick),
        vec![
            log("drain timeout reached, sending KILL to workers:100"),
            Action::Signal {
                pid: 100,
                signal: Signal::KILL
            },
        ]
    );
}

#[test]
fn a_ready_worker_that_stops_sending_watchdog_pings_is_killed_and_replaced() {
    let mut s = Script::new(None, None);
    s.sup.settings.watchdog = Some(3 * SEC);
    let mut s = s.running();
    // READY=1 at 10 ms starts the watchdog; a ping at 2 s pushes it on.
    assert_eq!(
        s.sup.next_deadline(),
        Some(s.t0 + Duration::from_millis(3010))
    );
    s.at(2000, Event::Watchdog { generation: 1 });
    assert_eq!(s.at(4000, Event::Tick), vec![]);
    assert_eq!(
        s.at(5000, Event::Tick),
        vec![
            log("worker 100 sent no WATCHDOG=1 for 3 secs, killing it"),
            Action::Signal {
                pid: 100,
                signal: Signal::KILL
            },
        ]
    );
    let after = s.at(
        5010,
        Event::Exited {
            pid: 100,
            status: 9,
        },
    );
    assert!(
        after.contains(&Action::Spawn { generation: 2 }),
        "the hung worker is replaced like a crashed one: {after:?}"
    );
}

#[test]
fn ready_before_the_spawn_is_reported_is_kept_until_it_is() {
    let mut s = Script::new(None, None);
    s.at(0, Event::Start);
    assert_eq!(s.at(5, Event::Ready { generation: 1 }), vec![]);
    let out = s.at(
        6,
        Event::Spawned {
            generation: 1,
            pid: 100,
        },
    );
    assert!(
        out.contains(&status("1:100\n")),
        "accepted at once: {out:?}"
    );
}

#[test]
fn without_a_watchdog_a_silent_worker_is_trusted_for_ever() {
    let mut s = Script::new(None, None).running();
    s.at(5000, Event::Watchdog { generation: 1 });
    assert_eq!(s.sup.next_deadline(), None);
    assert_eq!(s.at(3_600_000, Event::Tick), vec![]);
}

#[test]
fn the_current_worker_dying_with_a_candidate_stuck_before_exec_starts_another() {
    let mut s = Script::new(None, None).running();
    s.at(1000, Event::Hup);
    // The child runs (its pid is known) and stops before exec: the
    // spawn never returns on its own.
    assert_eq!(
        s.at(
            1001,
            Event::Forked {
                generation: 2,
                pid: 200
            }
        ),
        vec![]
    );
    assert_eq!(
        s.sup.next_deadline(),
        None,
        "no ready timeout: it may start"
    );
    let died = s.at(
        5000,
        Event::Exited {
            pid: 100,
            status: 9,
        },
    );
    assert_eq!(
        died,
        vec![
            log("worker 100 died unexpectedly with status:9, restarting"),
            log("the worker of generation 2 has not started; killing it and starting another"),
            Action::Signal {
                pid: 200,
                signal: Signal::KILL
            },
            status(""),
        ]
    );
    // Killed, its spawn returns (the kill is sent again, harmlessly: it
    // may not have been known before); its exit starts generation 3.
    assert_eq!(
        s.at(
            5010,
            Event::Spawned {
                generation: 2,
                pid: 200
            }
        ),
        vec![Action::Signal {
            pid: 200,
            signal: Signal::KILL
        }]
    );
    assert_eq!(
        s.at(
            5011,
            Event::Exited {
                pid: 200,
                status: 9
            }
        ),
        vec![]
    );
    assert_eq!(
        s.at(5011, Event::Tick),
        vec![Action::Spawn { generation: 3 }]
    );
    s.at(
        5020,
        Event::Spawned {
            generation: 3,
            pid: 300,
        },
    );
    let ready = s.at(5030, Event::Ready { generation: 3 });
    assert!(ready.contains(&status("3:300\n")), "{ready:?}");
}

#[test]
fn the_ready_timeout_counts_from_the_spawn_for_a_child_stuck_before_exec() {
    let mut s = Script::new(Some(3 * SEC), None).running();
    s.at(1000, Event::Hup);
    assert_eq!(
        s.sup.next_deadline(),
        Some(s.t0 + Duration::from_millis(4000))
    );
    assert_eq!(s.at(3999, Event::Tick), vec![]);
    // Its pid comes late: it is killed when it does.
    assert_eq!(
        s.at(4000, Event::Tick),
        vec![log(
            "the worker of generation 2 did not start within 3 secs, killing it; old workers keep serving"
        )]
    );
    assert_eq!(
        s.at(
            4001,
            Event::Forked {
                generation: 2,
                pid: 200
            }
        ),
        vec![Action::Signal {
            pid: 200,
            signal: Signal::KILL
        }]
    );
    s.at(
        4010,
        Event::Spawned {
            generation: 2,
            pid: 200,
        },
    );
    s.at(
        4011,
        Event::Exited {
            pid: 200,
            status: 9,
        },
    );
    // The old worker served throughout; the next attempt follows.
    assert_eq!(
        s.at(4011, Event::Tick),
        vec![Action::Spawn { generation: 3 }]
    );
}

#[test]
fn a_stop_does_not_wait_for_ever_for_a_spawn_that_never_returns() {
    let mut s = Script::new(None, None).running();
    s.at(1000, Event::Hup);
    // The new child stopped before exec: no `Spawned` ever comes.
    s.at(2000, Event::Stop(StopSignal::Term));
    s.at(
        2100,
        Event::Exited {
            pid: 100,
            status: 0,
        },
    );
    assert_eq!(
        s.sup.next_deadline(),
        Some(s.t0 + Duration::from_millis(7000))
    );
    let out = s.at(7000, Event::Tick);
    assert_eq!(
        out,
        vec![
            log("the worker of generation 2 has not started after 5 secs; not waiting for it"),
            log("exiting"),
            Action::Exit(0),
        ]
    );
}

#[test]
fn status_and_pid_lists_sort_as_strings_like_perl() {
    assert_eq!(sort_as_strings(vec![9, 10, 100]), vec![10, 100, 9]);
    let mut s = Script::new(None, None).running();
    for (i, g) in (2..=10u64).enumerate() {
        let at = 1000 * (i as u64 + 2);
        s.at(at, Event::Hup);
        s.at(
            at,
            Event::Spawned {
                generation: g,
                pid: 100 + g as u32,
            },
        );
        let accepted = s.at(at + 1, Event::Ready { generation: g });
        if g == 10 {
            assert!(
                matches!(&accepted[0], Action::WriteStatus(t) if t.starts_with("1:100\n10:110\n2:102\n") && t.ends_with("9:109\n"))
            );
        }
    }
}
