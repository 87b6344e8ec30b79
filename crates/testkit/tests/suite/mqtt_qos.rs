//! QoS 0, 1 and 2 in both directions, in MQTT 3.1.1 and 5.0: the
//! publisher's acknowledgements, delivery at the minimum of the published
//! and the granted QoS, exactly-once for incoming QoS 2 (also across a
//! reconnect), redelivery with DUP of what a persistent session did not
//! acknowledge (after a reconnect and after a restart), and the client's
//! Receive Maximum honoured by the server.

use crate::common::*;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

both_versions!(
    publisher_acks_and_subscribers_get_the_minimum_qos,
    qos2_retransmission_before_pubrel_is_delivered_once,
    qos2_dedup_survives_a_reconnect_of_a_persistent_session,
    unacked_qos1_is_redelivered_with_dup_after_reconnect,
    unacked_qos2_is_resumed_after_reconnect,
    unacked_qos1_is_redelivered_with_dup_after_restart,
);

async fn publisher_acks_and_subscribers_get_the_minimum_qos(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut subs = Vec::new();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut s = connect(&server, version, &format!("sub{i}")).await;
        subscribe(&mut s, "qos/t", qos).await;
        subs.push(s);
    }
    let mut publisher = connect(&server, version, "pub").await;

    // QoS 0: no acknowledgement at all.
    publisher
        .send(&Packet::Publish(publish(
            "qos/t",
            &b"q0"[..],
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
    for s in &mut subs {
        let p = recv_and_ack(s).await;
        assert_eq!((&p.payload[..], p.qos), (&b"q0"[..], QoS::AtMostOnce));
    }
    expect_nothing(&mut publisher, "QoS 0 is not acknowledged").await;

    // QoS 1: PUBACK.
    let ack = publish_qos1(
        &mut publisher,
        publish("qos/t", &b"q1"[..], QoS::AtLeastOnce, false, 11),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let expected = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtLeastOnce];
    for (s, qos) in subs.iter_mut().zip(expected) {
        let p = recv_and_ack(s).await;
        assert_eq!((&p.payload[..], p.qos), (&b"q1"[..], qos));
        assert!(!p.dup && !p.retain);
    }

    // QoS 2: PUBREC, PUBREL, PUBCOMP.
    publisher
        .send(&Packet::Publish(publish(
            "qos/t",
            &b"q2"[..],
            QoS::ExactlyOnce,
            false,
            12,
        )))
        .await;
    match publisher.recv().await {
        Packet::PubRec(r) => {
            assert_eq!((r.packet_id, r.reason_code), (pid(12), ReasonCode::Success))
        }
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.send(&Packet::PubRel(PubRel::new(pid(12)))).await;
    match publisher.recv().await {
        Packet::PubComp(c) => {
            assert_eq!((c.packet_id, c.reason_code), (pid(12), ReasonCode::Success))
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let expected = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for (s, qos) in subs.iter_mut().zip(expected) {
        // `recv_and_ack` runs the subscriber side of QoS 2: PUBREC -> PUBREL -> PUBCOMP.
        let p = recv_and_ack(s).await;
        assert_eq!((&p.payload[..], p.qos), (&b"q2"[..], qos));
    }
    for s in &mut subs {
        expect_nothing(s, "each message exactly once").await;
    }
    server.stop().await;
}

async fn qos2_retransmission_before_pubrel_is_delivered_once(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "qos/dup", QoS::ExactlyOnce).await;
    let mut publisher = connect(&server, version, "pub").await;

    let first = publish("qos/dup", &b"once"[..], QoS::ExactlyOnce, false, 7);
    publisher.send(&Packet::Publish(first.clone())).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(r) if r.packet_id == pid(7)));
    let mut again = first;
    again.dup = true;
    publisher.send(&Packet::Publish(again)).await;
    match publisher.recv().await {
        Packet::PubRec(r) => {
            assert_eq!((r.packet_id, r.reason_code), (pid(7), ReasonCode::Success))
        }
        other => panic!("expected a second PUBREC, got {other:?}"),
    }
    let p = recv_and_ack(&mut sub).await;
    assert_eq!(&p.payload[..], b"once");
    expect_nothing(&mut sub, "the retransmission is not delivered again").await;

    publisher.send(&Packet::PubRel(PubRel::new(pid(7)))).await;
    match publisher.recv().await {
        Packet::PubComp(c) => {
            assert_eq!((c.packet_id, c.reason_code), (pid(7), ReasonCode::Success))
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // After PUBCOMP the packet id is free: the same id is a new message.
    publisher
        .send(&Packet::Publish(publish(
            "qos/dup",
            &b"next"[..],
            QoS::ExactlyOnce,
            false,
            7,
        )))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(r) if r.packet_id == pid(7)));
    assert_eq!(&recv_and_ack(&mut sub).await.payload[..], b"next");
    server.stop().await;
}

async fn qos2_dedup_survives_a_reconnect_of_a_persistent_session(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "qos/resume", QoS::ExactlyOnce).await;

    let (mut publisher, _) = connect_with(&server, persistent(version, "pub", 60)).await;
    let msg = publish(
        "qos/resume",
        &b"exactly once"[..],
        QoS::ExactlyOnce,
        false,
        3,
    );
    publisher.send(&Packet::Publish(msg.clone())).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(r) if r.packet_id == pid(3)));
    drop(publisher); // the PUBREC is "lost": the client will resend the PUBLISH

    let (mut publisher, ack) = connect_with(&server, persistent(version, "pub", 60)).await;
    assert!(ack.session_present);
    let mut again = msg;
    again.dup = true;
    publisher.send(&Packet::Publish(again)).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(r) if r.packet_id == pid(3)));
    publisher.send(&Packet::PubRel(PubRel::new(pid(3)))).await;
    match publisher.recv().await {
        Packet::PubComp(c) => {
            assert_eq!((c.packet_id, c.reason_code), (pid(3), ReasonCode::Success))
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert_eq!(&recv_and_ack(&mut sub).await.payload[..], b"exactly once");
    expect_nothing(&mut sub, "delivered once across the reconnect").await;
    server.stop().await;
}

async fn unacked_qos1_is_redelivered_with_dup_after_reconnect(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let (mut sub, ack) = connect_with(&server, persistent(version, "sub", 60)).await;
    assert!(!ack.session_present);
    subscribe(&mut sub, "qos/redeliver", QoS::AtLeastOnce).await;
    let mut publisher = connect(&server, version, "pub").await;
    publish_qos1(
        &mut publisher,
        publish("qos/redeliver", &b"m1"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    let first = expect_publish(&mut sub).await;
    assert!(!first.dup);
    drop(sub); // no PUBACK

    let (mut sub, ack) = connect_with(&server, persistent(version, "sub", 60)).await;
    assert!(ack.session_present);
    let again = expect_publish(&mut sub).await;
    assert!(again.dup, "a redelivery has DUP=1 (MQTT-3.3.1-1)");
    assert_eq!(
        (again.packet_id, &again.payload[..], again.qos),
        (first.packet_id, &b"m1"[..], QoS::AtLeastOnce)
    );
    ack_publish(&mut sub, &again).await;
    expect_nothing(&mut sub, "acknowledged: not sent again").await;
    server.stop().await;
}

async fn unacked_qos2_is_resumed_after_reconnect(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let (mut sub, _) = connect_with(&server, persistent(version, "sub", 60)).await;
    subscribe(&mut sub, "qos/two", QoS::ExactlyOnce).await;
    let mut publisher = connect(&server, version, "pub").await;
    publisher
        .send(&Packet::Publish(publish(
            "qos/two",
            &b"m2"[..],
            QoS::ExactlyOnce,
            false,
            1,
        )))
        .await;
    let first = expect_publish(&mut sub).await;
    let id = first.packet_id.expect("QoS 2 has an id");
    drop(sub); // no PUBREC

    let (mut sub, ack) = connect_with(&server, persistent(version, "sub", 60)).await;
    assert!(ack.session_present);
    let again = expect_publish(&mut sub).await;
    assert!(again.dup);
    assert_eq!(
        (again.packet_id, &again.payload[..]),
        (Some(id), &b"m2"[..])
    );
    sub.send(&Packet::PubRec(PubRec::new(id))).await;
    assert!(matches!(sub.recv().await, Packet::PubRel(r) if r.packet_id == id));
    drop(sub); // no PUBCOMP

    let (mut sub, ack) = connect_with(&server, persistent(version, "sub", 60)).await;
    assert!(ack.session_present);
    match sub.recv().await {
        Packet::PubRel(r) => assert_eq!(r.packet_id, id, "PUBREL is resent, not the PUBLISH"),
        other => panic!("expected PUBREL again, got {other:?}"),
    }
    sub.send(&Packet::PubComp(PubComp::new(id))).await;
    expect_nothing(&mut sub, "the exchange is complete").await;
    server.stop().await;
}

async fn unacked_qos1_is_redelivered_with_dup_after_restart(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let (mut sub, _) = connect_with(&server, persistent(version, "sub", 600)).await;
    subscribe(&mut sub, "qos/restart", QoS::AtLeastOnce).await;
    let mut publisher = connect(&server, version, "pub").await;
    publish_qos1(
        &mut publisher,
        publish("qos/restart", &b"kept"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    let first = expect_publish(&mut sub).await;
    drop(sub);
    drop(publisher);

    let (server, _temp) = restart(server, SCHEMA, Default::default()).await;
    let (mut sub, ack) = connect_with(&server, persistent(version, "sub", 600)).await;
    assert!(ack.session_present);
    let again = expect_publish(&mut sub).await;
    assert!(again.dup);
    assert_eq!(
        (again.packet_id, &again.payload[..]),
        (first.packet_id, &b"kept"[..])
    );
    ack_publish(&mut sub, &again).await;
    expect_nothing(&mut sub, "once acknowledged").await;
    server.stop().await;
}

#[tokio::test]
async fn v5_receive_maximum_of_the_client_limits_unacked_deliveries() {
    let server = TestServer::start(SCHEMA).await;
    let mut connect = RawClient::connect_packet(Version::V5, "slow");
    connect.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let (mut sub, _) = connect_with(&server, connect).await;
    subscribe(&mut sub, "rm/#", QoS::ExactlyOnce).await;
    let mut publisher = connect_as_v5(&server, "pub").await;

    // QoS 1: a slot frees on PUBACK.
    for (i, payload) in [&b"1"[..], b"2", b"3", b"4"].into_iter().enumerate() {
        publish_qos1(
            &mut publisher,
            publish("rm/one", payload, QoS::AtLeastOnce, false, i as u16 + 1),
        )
        .await;
    }
    let a = expect_publish(&mut sub).await;
    let b = expect_publish(&mut sub).await;
    assert_eq!((&a.payload[..], &b.payload[..]), (&b"1"[..], &b"2"[..]));
    expect_nothing(&mut sub, "two unacknowledged QoS 1 deliveries at most").await;
    ack_publish(&mut sub, &a).await;
    let c = expect_publish(&mut sub).await;
    assert_eq!(&c.payload[..], b"3");
    expect_nothing(&mut sub, "still two in flight").await;
    ack_publish(&mut sub, &b).await;
    ack_publish(&mut sub, &c).await;
    assert_eq!(&recv_and_ack(&mut sub).await.payload[..], b"4");

    // QoS 2: a slot frees on PUBCOMP, not on PUBREC (section 4.9).
    for (i, payload) in [&b"5"[..], b"6", b"7"].into_iter().enumerate() {
        publisher
            .send(&Packet::Publish(publish(
                "rm/two",
                payload,
                QoS::ExactlyOnce,
                false,
                i as u16 + 10,
            )))
            .await;
        assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    }
    let d = expect_publish(&mut sub).await;
    let e = expect_publish(&mut sub).await;
    assert_eq!((&d.payload[..], &e.payload[..]), (&b"5"[..], &b"6"[..]));
    expect_nothing(&mut sub, "two unacknowledged QoS 2 deliveries at most").await;
    let id = d.packet_id.unwrap();
    sub.send(&Packet::PubRec(PubRec::new(id))).await;
    assert!(matches!(sub.recv().await, Packet::PubRel(r) if r.packet_id == id));
    expect_nothing(&mut sub, "PUBREC does not free the slot").await;
    sub.send(&Packet::PubComp(PubComp::new(id))).await;
    assert_eq!(&expect_publish(&mut sub).await.payload[..], b"7");
    server.stop().await;
}

async fn connect_as_v5(server: &TestServer, id: &str) -> RawClient {
    connect(server, Version::V5, id).await
}

#[tokio::test]
async fn record_changes_are_delivered_at_the_minimum_of_published_and_granted_qos() {
    let server = TestServer::start(SCHEMA).await;
    let mut sub = connect(&server, Version::V5, "sub").await;
    subscribe(&mut sub, "Sensor/q", QoS::ExactlyOnce).await;
    let mut publisher = connect(&server, Version::V5, "pub").await;
    publisher
        .send(&Packet::Publish(publish(
            "Sensor/q",
            &br#"{"n":0}"#[..],
            QoS::AtMostOnce,
            true,
            0,
        )))
        .await;
    let p = recv_and_ack(&mut sub).await;
    assert_eq!(p.qos, QoS::AtMostOnce, "published at QoS 0");
    put(&mut publisher, "Sensor/q", &br#"{"n":1}"#[..]).await;
    let p = recv_and_ack(&mut sub).await;
    assert_eq!(p.qos, QoS::AtLeastOnce, "published at QoS 1");
    server.stop().await;
}

#[tokio::test]
async fn a_retained_qos0_message_is_sent_to_a_new_qos2_subscriber_at_qos0() {
    let server = TestServer::start(SCHEMA).await;
    let mut publisher = connect(&server, Version::V311, "pub").await;
    publisher
        .send(&Packet::Publish(publish(
            "news/today",
            &b"sunny"[..],
            QoS::AtMostOnce,
            true,
            0,
        )))
        .await;
    processed(&mut publisher).await;
    let mut sub = connect(&server, Version::V311, "sub").await;
    subscribe(&mut sub, "news/today", QoS::ExactlyOnce).await;
    let p = recv_and_ack(&mut sub).await;
    assert!(p.retain);
    assert_eq!((&p.payload[..], p.qos), (&b"sunny"[..], QoS::AtMostOnce));
    server.stop().await;
}
