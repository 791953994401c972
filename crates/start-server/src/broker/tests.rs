//! The broker with real channels: moves, refusals, keys, catching up.

use std::io::{Read, Write};

use bytes::Bytes;
use gracedown_sockets::handoff::{MovingTls, TICKET_KEY_LEN, Zeroizing};

use super::*;

async fn next(channel: &Channel) -> Message {
    tokio::time::timeout(Duration::from_secs(5), channel.recv())
        .await
        .expect("a message within 5 s")
        .expect("no error")
        .expect("the channel is open")
}

/// Opens generation `generation`'s channel, as its worker sees it, past
/// the ticket keys that come first.
async fn open(broker: &mut Broker, generation: u64) -> Channel {
    let channel = Channel::new(broker.open(generation).expect("open")).expect("channel");
    let first = channel.try_recv().expect("no error");
    assert!(
        matches!(&first, Some(Message::TicketKeys { keys }) if keys.len() == TICKET_KEY_LEN),
        "the keys come first: {first:?}"
    );
    let second = channel.try_recv().expect("no error");
    assert!(
        matches!(second, Some(Message::Version { version: VERSION })),
        "then the version: {second:?}"
    );
    channel
}

/// Handles the next message any generation sent.
async fn pump(broker: &mut Broker, rx: &mut mpsc::UnboundedReceiver<Incoming>) {
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a message within 5 s")
        .expect("the broker's inbox is open");
    broker.handle(got);
}

#[tokio::test]
async fn clocks_reach_a_receiver_that_continues_bounds_and_no_other() {
    let clocks = gracedown_sockets::handoff::Clocks {
        quiet_since: 1 << 40,
        head_since: 0,
    };
    for takes_clocks in [true, false] {
        let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
        let old = open(&mut broker, 1).await;
        let new = open(&mut broker, 2).await;
        broker.set_target(Some(2));
        new.send(&Message::Receiving {
            clocks: takes_clocks,
            tls: false,
            http2: false,
        })
        .await
        .expect("r");
        pump(&mut broker, &mut rx).await;
        let (_client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
        old.send(&Message::Forward(vec![(
            1,
            Moving {
                socket: server.into(),
                prefix: Bytes::new(),
                fresh: false,
                clocks: Some(clocks),
                tls: None,
                http2: None,
            },
        )]))
        .await
        .expect("h");
        pump(&mut broker, &mut rx).await;
        let Message::Connections(conns) = next(&new).await else {
            panic!("a connection for generation 2");
        };
        assert_eq!(conns[0].clocks, takes_clocks.then_some(clocks));
        broker.close(1).await;
        broker.close(2).await;
    }
}

#[tokio::test]
async fn a_connection_moves_to_the_current_generation_and_the_sender_is_told() {
    let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
    let old = open(&mut broker, 1).await;
    let new = open(&mut broker, 2).await;
    broker.set_target(Some(2));
    new.send(&Message::Receiving {
        clocks: false,
        tls: false,
        http2: false,
    })
    .await
    .expect("R");
    pump(&mut broker, &mut rx).await;
    old.send(&Message::Query).await.expect("Q");
    pump(&mut broker, &mut rx).await;
    assert!(matches!(
        next(&old).await,
        Message::Answer { available: true }
    ));
    let (mut client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
    old.send(&Message::Forward(vec![(
        9,
        Moving {
            clocks: None,
            socket: server.into(),
            prefix: Bytes::from_static(b"GET /"),
            fresh: false,
            tls: None,
            http2: None,
        },
    )]))
    .await
    .expect("H");
    pump(&mut broker, &mut rx).await;
    let Message::Connections(mut conns) = next(&new).await else {
        panic!("a connection for generation 2");
    };
    let Some(Moving {
        socket,
        prefix,
        fresh: false,
        clocks: None,
        tls: None,
        http2: None,
    }) = conns.pop()
    else {
        panic!("one connection, not fresh");
    };
    assert_eq!(&prefix[..], b"GET /");
    assert!(matches!(
        next(&old).await,
        Message::Acks(acks) if acks == vec![(9, true)]
    ));
    // The same connection, now in generation 2.
    let mut moved = std::os::unix::net::UnixStream::from(socket);
    client.write_all(b" HTTP/1.1\r\n").expect("write");
    let mut buf = [0u8; 11];
    moved.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b" HTTP/1.1\r\n");
    broker.close(1).await;
    broker.close(2).await;
}

#[tokio::test]
async fn without_a_receiving_generation_the_connection_is_refused_and_closed_here() {
    let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
    let old = open(&mut broker, 1).await;
    let _quiet = open(&mut broker, 2).await;
    // Generation 2 never says R (a worker that ignores the variable).
    broker.set_target(Some(2));
    old.send(&Message::Query).await.expect("Q");
    pump(&mut broker, &mut rx).await;
    assert!(matches!(
        next(&old).await,
        Message::Answer { available: false }
    ));
    let (mut client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
    old.send(&Message::Forward(vec![(
        1,
        Moving {
            clocks: None,
            socket: server.into(),
            prefix: Bytes::new(),
            fresh: true,
            tls: None,
            http2: None,
        },
    )]))
    .await
    .expect("H");
    pump(&mut broker, &mut rx).await;
    assert!(matches!(
        next(&old).await,
        Message::Acks(acks) if acks == vec![(1, false)]
    ));
    // The sender's copy went with its message and the broker dropped its
    // own: the client sees the end.
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).expect("read"), 0);
}

#[tokio::test]
async fn a_generation_never_hands_connections_to_itself_and_none_while_stopping() {
    let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
    let only = open(&mut broker, 1).await;
    only.send(&Message::Receiving {
        clocks: false,
        tls: false,
        http2: false,
    })
    .await
    .expect("R");
    pump(&mut broker, &mut rx).await;
    for target in [Some(1), None] {
        broker.set_target(target);
        only.send(&Message::Query).await.expect("Q");
        pump(&mut broker, &mut rx).await;
        assert!(matches!(
            next(&only).await,
            Message::Answer { available: false }
        ));
    }
}

#[tokio::test]
async fn every_generation_gets_the_same_keys_and_the_new_ones_at_each_rotation() {
    let (mut broker, _rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
    let keys = |message: Option<Message>| match message {
        Some(Message::TicketKeys { keys }) => keys,
        other => panic!("ticket keys, not {other:?}"),
    };
    let one = Channel::new(broker.open(1).expect("open")).expect("channel");
    let two = Channel::new(broker.open(2).expect("open")).expect("channel");
    let first = keys(one.try_recv().expect("recv"));
    assert_eq!(first, keys(two.try_recv().expect("recv")), "shared");
    assert_eq!(first.len(), TICKET_KEY_LEN);
    for channel in [&one, &two] {
        assert!(matches!(
            channel.try_recv().expect("recv"),
            Some(Message::Version { version: VERSION })
        ));
    }
    broker.rotate_if_due(Instant::now());
    assert!(one.try_recv().expect("recv").is_none(), "not due yet");
    broker.rotate_if_due(broker.next_rotation());
    let rotated = keys(Some(next(&one).await));
    assert_eq!(
        rotated.len(),
        2 * TICKET_KEY_LEN,
        "the new key, then the previous"
    );
    assert_ne!(&rotated[..TICKET_KEY_LEN], &first[..]);
    assert_eq!(&rotated[TICKET_KEY_LEN..], &first[..]);
    assert_eq!(rotated, keys(Some(next(&two).await)));
    let three = Channel::new(broker.open(3).expect("open")).expect("channel");
    assert_eq!(
        rotated,
        keys(three.try_recv().expect("recv")),
        "a new generation too"
    );
}

#[tokio::test]
async fn catching_up_reads_what_a_generation_sent_before_anything_else() {
    let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
    let old = open(&mut broker, 1).await;
    let new = open(&mut broker, 2).await;
    broker.set_target(Some(2));
    // `R` is in the socket; no task has run since.
    new.send(&Message::Receiving {
        clocks: false,
        tls: false,
        http2: false,
    })
    .await
    .expect("R");
    broker.catch_up(2, &mut rx);
    old.send(&Message::Query).await.expect("Q");
    pump(&mut broker, &mut rx).await;
    assert!(matches!(
        next(&old).await,
        Message::Answer { available: true }
    ));
}

#[tokio::test]
async fn a_receiver_that_is_gone_refuses_what_was_queued_for_it() {
    let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
    let old = open(&mut broker, 1).await;
    let new = open(&mut broker, 2).await;
    broker.set_target(Some(2));
    new.send(&Message::Receiving {
        clocks: false,
        tls: false,
        http2: false,
    })
    .await
    .expect("R");
    pump(&mut broker, &mut rx).await;
    drop(new);
    let (_client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
    old.send(&Message::Forward(vec![(
        3,
        Moving {
            clocks: None,
            socket: server.into(),
            prefix: Bytes::new(),
            fresh: true,
            tls: None,
            http2: None,
        },
    )]))
    .await
    .expect("H");
    // The end of generation 2's channel and the handoff, in either order:
    // refused at once, or when the send to the closed channel fails.
    pump(&mut broker, &mut rx).await;
    pump(&mut broker, &mut rx).await;
    assert!(matches!(
        next(&old).await,
        Message::Acks(acks) if acks == vec![(3, false)]
    ));
}

#[tokio::test]
async fn a_tls_session_goes_only_to_a_generation_that_continues_it() {
    for continues_tls in [false, true] {
        let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
        let old = open(&mut broker, 1).await;
        let new = open(&mut broker, 2).await;
        broker.set_target(Some(2));
        new.send(&Message::Receiving {
            clocks: true,
            tls: continues_tls,
            http2: false,
        })
        .await
        .expect("r or s");
        pump(&mut broker, &mut rx).await;
        let (_client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
        old.send(&Message::Forward(vec![(
            4,
            Moving {
                socket: server.into(),
                prefix: Bytes::from_static(b"GET /"),
                fresh: false,
                clocks: None,
                tls: Some(MovingTls {
                    session: Zeroizing::new(vec![1, 2, 3]),
                    sealed: Bytes::from_static(b"\x17\x03\x03"),
                }),
                http2: None,
            },
        )]))
        .await
        .expect("h");
        pump(&mut broker, &mut rx).await;
        let Message::Acks(acks) = next(&old).await else {
            panic!("an answer for generation 1");
        };
        assert_eq!(acks, [(4, continues_tls)], "continues TLS: {continues_tls}");
        if continues_tls {
            let Message::Connections(conns) = next(&new).await else {
                panic!("the connection for generation 2");
            };
            let tls = conns[0].tls.as_ref().expect("with its session");
            assert_eq!(
                (&tls.session[..], &tls.sealed[..]),
                (&[1, 2, 3][..], &b"\x17\x03\x03"[..])
            );
        }
    }
}

#[tokio::test]
async fn an_http2_connection_goes_only_to_a_generation_that_continues_it() {
    // (receiver continues HTTP/2, TLS; the connection is under TLS): forwarded?
    for (http2, tls, under_tls, forwarded) in [
        (false, true, false, false),
        (true, false, false, true),
        (true, false, true, false),
        (true, true, true, true),
    ] {
        let (mut broker, mut rx) = Broker::new(Duration::from_secs(3600)).expect("broker");
        let old = open(&mut broker, 1).await;
        let new = open(&mut broker, 2).await;
        broker.set_target(Some(2));
        new.send(&Message::Receiving {
            clocks: true,
            tls,
            http2,
        })
        .await
        .expect("receiving");
        pump(&mut broker, &mut rx).await;
        let (_client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
        old.send(&Message::Forward(vec![(
            5,
            Moving {
                socket: server.into(),
                prefix: Bytes::new(),
                fresh: false,
                clocks: None,
                tls: under_tls.then(|| MovingTls {
                    session: Zeroizing::new(vec![1]),
                    sealed: Bytes::new(),
                }),
                http2: Some(Bytes::from_static(b"\x01state")),
            },
        )]))
        .await
        .expect("h");
        pump(&mut broker, &mut rx).await;
        let Message::Acks(acks) = next(&old).await else {
            panic!("an answer for generation 1");
        };
        assert_eq!(
            acks,
            [(5, forwarded)],
            "http2 {http2} tls {tls} under tls {under_tls}"
        );
        if forwarded {
            let Message::Connections(conns) = next(&new).await else {
                panic!("the connection for generation 2");
            };
            assert_eq!(conns[0].http2.as_deref(), Some(&b"\x01state"[..]));
        }
    }
}
