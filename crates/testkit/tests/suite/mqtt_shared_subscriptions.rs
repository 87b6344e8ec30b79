//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 section 4.8.2):
//! one member per message, members taking turns, no retained messages on
//! subscribe, a leaving member's messages handed to another, record changes
//! as a work queue, 3.1.1 clients too, and the CONNACK flag.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Job @table @export";

/// Receives (and acknowledges) publishes until `QUIET` passes without one.
async fn drain(c: &mut RawClient) -> Vec<Publish> {
    let mut out = Vec::new();
    while let Some(p) = c.recv_within(QUIET).await {
        match p {
            Packet::Publish(p) => {
                ack_publish(c, &p).await;
                out.push(p);
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    out
}

fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn each_message_goes_to_one_member_and_members_take_turns() {
    let server = TestServer::start(SCHEMA).await;
    let mut a = connect(&server, Version::V5, "a").await;
    let mut b = connect(&server, Version::V5, "b").await;
    let mut plain = connect(&server, Version::V5, "plain").await;
    subscribe(&mut a, "$share/g/jobs/#", QoS::AtLeastOnce).await;
    subscribe(&mut b, "$share/g/jobs/#", QoS::AtLeastOnce).await;
    subscribe(&mut plain, "jobs/#", QoS::AtLeastOnce).await;
    let mut p = connect(&server, Version::V5, "p").await;
    for n in 0..10u16 {
        let ack = publish_qos1(
            &mut p,
            publish(
                &format!("jobs/{n}"),
                format!("{n}"),
                QoS::AtLeastOnce,
                false,
                n + 1,
            ),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
    }
    let (got_a, got_b) = (drain(&mut a).await, drain(&mut b).await);
    let mut all = payloads(&got_a);
    all.extend(payloads(&got_b));
    all.sort_by_key(|s| s.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(all, expected, "every message exactly once across the group");
    assert!(
        (4..=6).contains(&got_a.len()),
        "turns: a got {}, b got {}",
        got_a.len(),
        got_b.len()
    );
    assert_eq!(
        drain(&mut plain).await.len(),
        10,
        "a plain subscriber gets all"
    );
}

#[tokio::test]
async fn a_shared_subscription_gets_no_retained_messages() {
    let server = TestServer::start(SCHEMA).await;
    let mut w = connect(&server, Version::V5, "w").await;
    put(&mut w, "Job/1", r#"{"todo":"x"}"#).await;
    put(&mut w, "news/today", "retained").await;
    let mut m = connect(&server, Version::V5, "m").await;
    subscribe(&mut m, "$share/g/Job/#", QoS::AtLeastOnce).await;
    subscribe(&mut m, "$share/g/news/#", QoS::AtLeastOnce).await;
    expect_nothing(&mut m, "retained messages on a shared subscription").await;
}

#[tokio::test]
async fn record_changes_are_a_work_queue_for_the_group() {
    let server = TestServer::start(SCHEMA).await;
    let mut workers = Vec::new();
    for n in 0..3 {
        let mut w = connect(&server, Version::V5, &format!("worker{n}")).await;
        subscribe(&mut w, "$share/workers/Job/#", QoS::AtLeastOnce).await;
        workers.push(w);
    }
    let client = reqwest::Client::new();
    for n in 0..9 {
        let resp = client
            .put(server.url(&format!("/Job/{n}")))
            .header("content-type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_worker = Vec::new();
    for w in &mut workers {
        let got = drain(w).await;
        per_worker.push(got.len());
        for p in got {
            *seen.entry(p.topic.to_string()).or_default() += 1;
            assert!(!p.retain, "a live change, not a retained message");
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "each job once: {seen:?}");
    assert_eq!(per_worker, [3, 3, 3], "equal workers take turns");
}

#[tokio::test]
async fn a_leaving_members_messages_go_to_another_member() {
    let server = TestServer::start(SCHEMA).await;
    // `slow` takes one message at a time and never acknowledges.
    let mut connect_slow = RawClient::connect_packet(Version::V5, "slow");
    connect_slow.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (mut slow, _) = connect_with(&server, connect_slow).await;
    subscribe(&mut slow, "$share/g/work/#", QoS::AtLeastOnce).await;
    let mut p = connect(&server, Version::V5, "p").await;
    for n in 1..=3u16 {
        publish_qos1(
            &mut p,
            publish("work/x", format!("{n}"), QoS::AtLeastOnce, false, n),
        )
        .await;
    }
    // One in flight at `slow`, two queued there.
    let first = expect_publish(&mut slow).await;
    assert_eq!(&first.payload[..], b"1");
    let mut fast = connect(&server, Version::V5, "fast").await;
    subscribe(&mut fast, "$share/g/work/#", QoS::AtLeastOnce).await;
    drop(slow); // connection lost, clean session
    let mut got = Vec::new();
    while got.len() < 3 {
        let p = tokio::time::timeout(Duration::from_secs(5), expect_publish(&mut fast))
            .await
            .expect("the leaving member's messages arrive");
        ack_publish(&mut fast, &p).await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    got.sort();
    assert_eq!(got, ["1", "2", "3"]);
}

#[tokio::test]
async fn v311_clients_share_too_and_v5_connack_says_available() {
    let server = TestServer::start(SCHEMA).await;
    let (_c, ack) = connect_with(&server, RawClient::connect_packet(Version::V5, "x")).await;
    assert_eq!(ack.properties.shared_subscription_available, Some(true));
    let mut a = connect(&server, Version::V311, "a").await;
    let mut b = connect(&server, Version::V311, "b").await;
    subscribe(&mut a, "$share/g/t", QoS::AtMostOnce).await;
    subscribe(&mut b, "$share/g/t", QoS::AtMostOnce).await;
    let mut p = connect(&server, Version::V311, "p").await;
    for n in 0..4u16 {
        p.send(&Packet::Publish(publish(
            "t",
            format!("{n}"),
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
    }
    processed(&mut p).await;
    let (ga, gb) = (drain(&mut a).await, drain(&mut b).await);
    assert_eq!(ga.len() + gb.len(), 4);
    assert_eq!((ga.len(), gb.len()), (2, 2));
    // Unsubscribing leaves the other member alone in the group.
    a.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(5),
        properties: Default::default(),
        filters: vec![TopicFilter::new("$share/g/t").unwrap()],
    }))
    .await;
    assert!(matches!(a.recv().await, Packet::UnsubAck(_)));
    for n in 0..2u16 {
        p.send(&Packet::Publish(publish(
            "t",
            format!("{n}"),
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
    }
    processed(&mut p).await;
    assert_eq!(drain(&mut b).await.len(), 2);
    expect_nothing(&mut a, "after unsubscribing").await;
}

#[tokio::test]
async fn a_shared_query_is_refused_and_no_local_is_a_protocol_error() {
    let server = TestServer::start(SCHEMA).await;
    let mut c = connect(&server, Version::V5, "c").await;
    let ack = subscribe_with(&mut c, "$share/g/Job/?n=1", opts(QoS::AtMostOnce)).await;
    assert_eq!(ack.reason_codes, [ReasonCode::TopicFilterInvalid]);
    let options = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtMostOnce)
    };
    c.send_raw(&encoded(
        &Packet::Subscribe(subscribe_packet(2, "$share/g/x", options)),
        Version::V5,
    ))
    .await;
    let closing = c.closed().await;
    assert!(
        closing.iter().any(
            |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::ProtocolError)
        ),
        "{closing:?}"
    );
}
