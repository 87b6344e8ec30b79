//! Interop: mqdb's MQTT 5 features seen by a client nobody here wrote, the
//! Eclipse Paho Python client (`paho-mqtt` 2.x, its MQTT 5 API:
//! `CallbackAPIVersion.VERSION2`, `protocol=MQTTv5`, `Properties`), over
//! plain TCP against an in-process [`TestServer`].
//!
//! One test per feature: each runs `tests/paho/mqtt5.py HOST PORT
//! SCENARIO`, in which paho clients talk to each other through mqdb, and
//! asserts on the JSON line (`RESULT {...}`) the script prints of what paho
//! saw: user properties, content type, request/response, response
//! information, message expiry, subscription identifiers, shared
//! subscriptions, topic aliases both ways, will delay, session expiry,
//! receive maximum, reason codes and strings, server keep alive and
//! assigned client identifiers.
//!
//! paho-mqtt 2.2 (the newest release) does not resolve the topic aliases it
//! receives: an aliased PUBLISH reaches `on_message` with an empty topic and
//! a `TopicAlias` property. The topic-alias test therefore checks the wire
//! form paho shows (topic and alias once, then the alias alone) and
//! resolves the aliases in the script as a receiver must.
//!
//! Needs `python3` with `paho-mqtt` (`pip install 'paho-mqtt>=2,<3'`;
//! scripts/test.sh installs it): the tests fail, they do not skip, without
//! it. Every wait is bounded: each wait in the script (10 s), and the
//! script as a whole ([`LIMIT`]), after which it is killed.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqdb_broker::BrokerConfig;
use mqdb_resource::auth::{Role, TableOps};
use mqdb_resource::{Roles, TableOp};
use mqdb_testkit::*;
use serde_json::{Value, json};

const SCHEMA: &str = "type Sensor @table @export";

/// How long one run of the script may take before it is killed.
const LIMIT: Duration = Duration::from_secs(60);

/// The script's process, killed if the test gives up on it.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a pipe to its end on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Runs `scenario` (with `args`) against `server`; returns the script's
/// result, asserting that the script finished and reported no error.
async fn paho(server: &TestServer, scenario: &str, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/mqtt5.py");
    let mut child = Killed(
        Command::new("python3")
            .arg(script)
            .arg(server.mqtt.ip().to_string())
            .arg(server.mqtt.port().to_string())
            .arg(scenario)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (the paho interop tests need python3 with paho-mqtt)"),
    );
    let stdout = collect(child.0.stdout.take().expect("stdout"));
    let stderr = collect(child.0.stderr.take().expect("stderr"));
    let started = Instant::now();
    // Polled, not waited for: the server runs on this test's runtime.
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.0.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    if err.contains("No module named 'paho'") {
        panic!("paho-mqtt is missing: pip install 'paho-mqtt>=2,<3' (scripts/test.sh does)");
    }
    let Some(status) = status else {
        panic!("`{scenario}` did not finish within {LIMIT:?}\nstdout: {out}\nstderr: {err}");
    };
    let result = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!("`{scenario}`: no RESULT ({status})\nstdout: {out}\nstderr: {err}")
        });
    let result: Value = serde_json::from_str(result).expect("RESULT is JSON");
    eprintln!("{scenario}: {result:#}");
    assert!(
        status.success() && result.get("error").is_none(),
        "`{scenario}` failed ({status}): {result:#}\nstderr: {err}"
    );
    result
}

/// The messages of a result, by topic.
fn by_topic(messages: &Value) -> HashMap<String, Value> {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["topic"].as_str().unwrap().to_owned(), m.clone()))
        .collect()
}

#[tokio::test]
async fn user_properties_keep_their_order_and_connect_subscribe_ones_are_harmless() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "user_properties", &[]).await;
    assert_eq!(r["connack"]["reason"], 0);
    assert_eq!(r["suback"]["codes"], json!([1]));
    assert_eq!(r["puback"]["reason"], 0);
    let messages = r["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{r:#}");
    assert_eq!(messages[0]["payload"], "with props");
    // Every pair, repeated names included, in the order sent.
    assert_eq!(messages[0]["properties"]["UserProperty"], r["sent"]);
    assert_eq!(messages[1]["payload"], "without props");
    assert_eq!(messages[1]["properties"].get("UserProperty"), None);
    server.stop().await;
}

#[tokio::test]
async fn content_type_and_payload_format_reach_the_subscriber() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "content_type", &[]).await;
    let m = by_topic(&r["messages"]);
    assert_eq!(m.len(), 3, "{r:#}");
    assert_eq!(m["ct/text"]["payload"], "héllo");
    assert_eq!(
        m["ct/text"]["properties"]["ContentType"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(m["ct/text"]["properties"]["PayloadFormatIndicator"], 1);
    assert_eq!(m["ct/bin"]["payload"], "hex:000102ff");
    assert_eq!(
        m["ct/bin"]["properties"]["ContentType"],
        "application/x-custom"
    );
    assert_eq!(
        m["ct/bin"]["properties"].get("PayloadFormatIndicator"),
        None
    );
    assert_eq!(m["ct/none"]["properties"].get("ContentType"), None);
    server.stop().await;
}

#[tokio::test]
async fn response_topic_and_correlation_data_carry_a_request_and_its_reply() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "request_response", &[]).await;
    let sent = r["sent_correlation"].as_array().unwrap();
    let requests = r["requests"].as_array().unwrap();
    let replies = r["replies"].as_array().unwrap();
    assert_eq!((requests.len(), replies.len()), (2, 2), "{r:#}");
    for (i, corr) in sent.iter().enumerate() {
        let request = &requests[i];
        assert_eq!(request["payload"], format!("req{i}"));
        assert_eq!(
            request["properties"]["ResponseTopic"],
            "rr/replies/requester"
        );
        assert_eq!(&request["properties"]["CorrelationData"], corr);
        let reply = replies
            .iter()
            .find(|m| m["properties"]["CorrelationData"] == *corr)
            .unwrap_or_else(|| panic!("no reply with correlation {corr}: {r:#}"));
        assert_eq!(reply["topic"], "rr/replies/requester");
        assert_eq!(reply["payload"], format!("echo:req{i}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn request_response_information_gets_a_reply_prefix() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "response_information", &[]).await;
    assert_eq!(
        r["connack"]["properties"]["ResponseInformation"],
        "reply/rri-1/"
    );
    assert_eq!(
        r["plain_connack"]["properties"].get("ResponseInformation"),
        None,
        "only when requested"
    );
    let messages = r["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["topic"], "reply/rri-1/answer");
    assert_eq!(messages[0]["payload"], "to the prefix");
    server.stop().await;
}

#[tokio::test]
async fn an_expired_retained_message_is_gone_and_a_live_one_counts_down() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "message_expiry", &[]).await;
    for (topic, ack) in r["pubacks"].as_object().unwrap() {
        assert_eq!(ack["reason"], 0, "{topic}: {ack}");
    }
    for (kind, topic) in [("free", "exp/long"), ("record", "Sensor/long")] {
        let late = r["late"][kind].as_array().unwrap();
        // Only the 60 s message: the 1 s one expired 1.2 s before.
        assert_eq!(late.len(), 1, "{kind}: {r:#}");
        assert_eq!(late[0]["topic"], topic);
        assert_eq!(late[0]["retain"], true);
        let left = late[0]["properties"]["MessageExpiryInterval"]
            .as_u64()
            .unwrap_or_else(|| panic!("{kind}: no expiry interval: {r:#}"));
        assert!(
            (50..=58).contains(&left),
            "{kind}: 60 s published 2.2 s before, {left} s left"
        );
    }
    let record = r["late"]["record"][0]["payload"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(record).unwrap(),
        json!({"v": 1, "id": "long"})
    );
    server.stop().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_their_subscription_identifiers() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "subscription_ids", &[]).await;
    assert_eq!(r["subacks"][0]["codes"], json!([1]));
    assert_eq!(r["subacks"][1]["codes"], json!([1]));
    // One PUBLISH per matching message, carrying every matching id.
    let m = r["messages"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{r:#}");
    let both = by_topic(&r["messages"])["sid/a/x"].clone();
    let mut ids: Vec<u64> = both["properties"]["SubscriptionIdentifier"]
        .as_array()
        .expect("subscription identifiers")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "{r:#}");
    assert_eq!(
        by_topic(&r["messages"])["sid/b"]["properties"]["SubscriptionIdentifier"],
        json!([1])
    );
    server.stop().await;
}

#[tokio::test]
async fn a_shared_subscription_delivers_each_message_to_exactly_one_member() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "shared", &[]).await;
    assert_eq!(
        r["subacks"],
        json!([{"codes": [1], "properties": {}}, {"codes": [1], "properties": {}}])
    );
    let mut all = Vec::new();
    for (member, got) in r["members"].as_object().unwrap() {
        for m in got.as_array().unwrap() {
            assert_eq!(m["topic"], "shr/t", "{member}");
            all.push(m["payload"].as_str().unwrap().to_owned());
        }
    }
    all.sort_by_key(|p| p[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(all, expected, "each message exactly once: {r:#}");
    server.stop().await;
}

#[tokio::test]
async fn topic_aliases_work_both_ways_with_paho() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "topic_alias", &[]).await;
    assert_eq!(
        r["publisher_connack"]["properties"]["TopicAliasMaximum"], 64,
        "the broker's inbound maximum"
    );
    for ack in r["own_alias_pubacks"].as_array().unwrap() {
        assert_eq!(ack["reason"], 0, "paho's own alias: {r:#}");
    }
    assert!(r["pub_disconnects"].as_array().unwrap().is_empty(), "{r:#}");
    let messages = r["messages"].as_array().unwrap();
    let payloads: Vec<&str> = messages
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(
        payloads,
        ["t0", "t1", "t2", "t3", "t4", "u0", "u1", "u2", "u3"]
    );
    // Every message resolves to its full topic...
    let expected: Vec<&str> = payloads
        .iter()
        .map(|p| {
            if p.starts_with('t') {
                "alias/t"
            } else {
                "alias/u"
            }
        })
        .collect();
    assert_eq!(r["resolved_topics"], json!(expected), "{r:#}");
    // ...and the broker did alias, within paho's maximum of 10: each topic
    // is sent once with its alias, then as the alias alone (which paho 2.2
    // hands to on_message unresolved, as an empty topic).
    for topic in ["alias/t", "alias/u"] {
        let of: Vec<&Value> = messages
            .iter()
            .zip(&expected)
            .filter(|(_, t)| **t == topic)
            .map(|(m, _)| m)
            .collect();
        let alias = of[0]["properties"]["TopicAlias"]
            .as_u64()
            .unwrap_or_else(|| panic!("{topic} without an alias: {r:#}"));
        assert!((1..=10).contains(&alias));
        assert_eq!(of[0]["topic"], topic);
        for m in &of[1..] {
            assert_eq!(m["topic"], "", "{r:#}");
            assert_eq!(m["properties"]["TopicAlias"], alias, "{r:#}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_delayed_will_is_published_after_the_delay_with_its_properties() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "will_delay", &[]).await;
    let after = r["after_seconds"].as_f64().unwrap();
    assert!(
        (1.8..5.0).contains(&after),
        "Will Delay Interval 2 s, published after {after} s"
    );
    let messages = r["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{r:#}");
    let will = &messages[0];
    assert_eq!(
        (&will["topic"], &will["payload"], &will["qos"]),
        (&json!("will/delayed"), &json!("gone"), &json!(1))
    );
    let p = &will["properties"];
    assert_eq!(p["ContentType"], "text/plain");
    assert_eq!(p["PayloadFormatIndicator"], 1);
    assert_eq!(p["ResponseTopic"], "will/reply");
    assert_eq!(p["CorrelationData"], hex(b"w-1"));
    assert_eq!(p["UserProperty"], json!([["why", "dropped"], ["n", "1"]]));
    let left = p["MessageExpiryInterval"].as_u64().expect("expiry");
    assert!((55..=60).contains(&left), "{left}");
    server.stop().await;
}

#[tokio::test]
async fn a_delayed_will_is_cancelled_by_a_reconnect_within_the_delay() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "will_cancelled", &[]).await;
    assert_eq!(r["connack"]["reason"], 0);
    assert_eq!(r["connack"]["session_present"], true, "{r:#}");
    assert!(r["reconnected_after"].as_f64().unwrap() < 3.0);
    assert_eq!(r["messages"], json!([]), "no will: {r:#}");
    server.stop().await;
}

#[tokio::test]
async fn a_session_with_expiry_keeps_its_queued_messages_until_it_expires() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "session_expiry", &[]).await;
    assert_eq!(r["first"]["session_present"], false);
    assert_eq!(r["resumed"]["reason"], 0);
    assert_eq!(r["resumed"]["session_present"], true, "{r:#}");
    let expected: Vec<Value> = (0..5)
        .map(|i| json!({"topic": "sess/t", "payload": format!("q{i}"), "qos": 1}))
        .collect();
    assert_eq!(r["messages"], json!(expected), "in order, once: {r:#}");
    assert_eq!(
        r["expired"]["session_present"], false,
        "Session Expiry Interval 1 s, reconnected after more than 2.5 s"
    );
    server.stop().await;
}

#[tokio::test]
async fn receive_maximum_one_still_gets_every_message_in_order() {
    let server = TestServer::start(SCHEMA).await;
    let r = paho(&server, "receive_maximum", &[]).await;
    let expected: Vec<String> = (0..20).map(|i| format!("r{i:02}")).collect();
    assert_eq!(r["payloads"], json!(expected), "{r:#}");
    assert_eq!(r["qos"], json!([1]));
    assert_eq!(
        r["max_unacked"], 1,
        "never more than Receive Maximum unacknowledged"
    );
    server.stop().await;
}

#[tokio::test]
async fn reason_codes_and_reason_strings_reach_paho() {
    let schema = "type Device @table @export { id: ID @primaryKey temp: Float }\n\
                  type Secret @table @export";
    let role = Role {
        tables: HashMap::from([(
            "Device".to_owned(),
            TableOps::default()
                .with(TableOp::Read)
                .with(TableOp::Insert)
                .with(TableOp::Update),
        )]),
        subscribe: vec!["chat/#".to_owned()],
        publish: vec!["chat/#".to_owned()],
        super_user: false,
    };
    let roles = Roles::new(HashMap::from([("device".to_owned(), role)]));
    let server = TestServer::start_secure(schema, roles).await;
    server
        .broker
        .security()
        .users()
        .add("dev", b"dev-pw", vec!["device".into()])
        .await
        .unwrap();
    let r = paho(&server, "reason_codes", &["dev", "dev-pw"]).await;
    assert_eq!(r["connack"]["reason"], 0);
    // SUBACK: chat/room granted QoS 1, Secret/# refused (0x87).
    assert_eq!(r["suback"]["codes"], json!([1, 0x87]), "{r:#}");
    assert_eq!(r["good_puback"]["reason"], 0);
    // A record failing its table's schema: PUBACK 0x99 with a reason string.
    assert_eq!(r["bad_puback"]["reason"], 0x99, "{r:#}");
    let why = r["bad_puback"]["properties"]["ReasonString"]
        .as_str()
        .expect("a reason string");
    assert!(why.contains("temp"), "{why}");
    // A publish the role does not allow: PUBACK 0x87 with a reason string.
    assert_eq!(r["refused_puback"]["reason"], 0x87, "{r:#}");
    assert!(r["refused_puback"]["properties"]["ReasonString"].is_string());
    // The connection survives all of it.
    assert_eq!(r["suback_after"]["codes"], json!([1]));
    assert_eq!(r["disconnects"], json!([]));
    assert_eq!(r["wrong_password_connack"]["reason"], 0x86);
    server.stop().await;
}

#[tokio::test]
async fn an_empty_client_id_and_keep_alive_0_get_an_identifier_and_server_keep_alive() {
    let config = BrokerConfig {
        max_keepalive: 30,
        ..BrokerConfig::default()
    };
    let server = TestServer::start_with(SCHEMA, config).await;
    let r = paho(&server, "server_keepalive", &[]).await;
    let p = &r["connack"]["properties"];
    let id = p["AssignedClientIdentifier"]
        .as_str()
        .expect("AssignedClientIdentifier");
    assert!(!id.is_empty());
    assert_eq!(p["ServerKeepAlive"], 30, "{r:#}");
    assert_eq!(
        r["paho_keepalive"], 30,
        "paho adopted the server's keep alive"
    );
    assert_eq!(
        r["messages"],
        json!([{"topic": "ka/t", "payload": "alive"}])
    );
    server.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
