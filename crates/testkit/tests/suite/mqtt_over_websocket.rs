//! MQTT over WebSocket on the HTTP port (SPEC §2, MQTT 5.0 §6): a real
//! WebSocket client (tokio-tungstenite) speaking MQTT in binary frames to
//! the in-process server, next to TCP clients on the MQTT port.
//!
//! Covered: CONNECT/CONNACK on `/mqtt`, `/` and any other path, both
//! versions; publish/subscribe between a WebSocket client and a TCP client
//! both ways; one packet split over several frames and several packets in
//! one frame; a handshake without the subprotocol still getting the REST
//! live updates; `Accept` / `Content-Type` on the upgrade choosing the
//! record format; HTTP Basic on the upgrade as CONNECT credentials (also
//! with authentication required); a text frame closing the
//! connection; server shutdown closing the session. Every wait is bounded.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use bytes::BytesMut;
use futures_util::{SinkExt as _, StreamExt as _};
use mqdb_codec::*;
use mqdb_resource::{Format, Roles, Value};
use mqdb_testkit::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self as ts, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

const SCHEMA: &str = "type Sensor @table @export";

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// An MQTT client over a WebSocket: packets out as binary frames, packets
/// in decoded from the concatenated binary frames.
struct WsClient {
    socket: Socket,
    buf: BytesMut,
    version: Version,
}

/// A handshake request to `path` offering `mqtt`, with extra headers.
fn handshake(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> ts::handshake::client::Request {
    let mut request = format!("ws://{}{path}", server.http)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    for (name, value) in headers {
        request.headers_mut().insert(
            ts::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

impl WsClient {
    /// Opens the WebSocket (asserting `mqtt` is the accepted protocol).
    async fn open(request: ts::handshake::client::Request, version: Version) -> WsClient {
        let (socket, response) = tokio::time::timeout(WAIT, connect_async(request))
            .await
            .expect("handshake within WAIT")
            .expect("handshake accepted");
        assert_eq!(response.status(), 101);
        assert_eq!(response.headers()["sec-websocket-protocol"], "mqtt");
        WsClient {
            socket,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Opens the WebSocket and connects with `connect`; returns the CONNACK.
    async fn connect(
        request: ts::handshake::client::Request,
        connect: Connect,
    ) -> (WsClient, ConnAck) {
        let mut c = WsClient::open(request, connect.protocol).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Packet::ConnAck(ack) => (c, *ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects a clean session on `path`, asserting success.
    async fn connected(server: &TestServer, path: &str, version: Version, id: &str) -> WsClient {
        let connect = RawClient::connect_packet(version, id);
        let (c, ack) = WsClient::connect(handshake(server, path, &[]), connect).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK: {ack:?}");
        c
    }

    /// Sends each byte string as one binary frame.
    async fn send_frames(&mut self, frames: Vec<Vec<u8>>) {
        for frame in frames {
            self.socket
                .send(Message::Binary(frame.into()))
                .await
                .expect("send");
        }
    }

    /// Sends a packet in one binary frame.
    async fn send(&mut self, packet: &Packet) {
        self.send_frames(vec![encoded(packet, self.version).to_vec()])
            .await;
    }

    /// The next packet, failing the test after [`WAIT`].
    async fn recv(&mut self) -> Packet {
        match self.recv_within(WAIT).await {
            Some(p) => p,
            None => panic!("no packet within {WAIT:?}"),
        }
    }

    /// The next packet within `d`; `None` if none (or the socket closed).
    async fn recv_within(&mut self, d: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = decode(&mut self.buf, self.version, &Limits::default())
                .expect("server sent a valid packet")
            {
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => self.buf.extend_from_slice(&b),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(other))) => {
                    assert!(
                        matches!(other, Message::Close(_)),
                        "unexpected frame {other:?}"
                    );
                    return None;
                }
                Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            }
        }
    }

    /// Waits until the server closes the WebSocket; returns the packets it
    /// sent before and the code of its Close frame (if it sent one).
    async fn closed(&mut self) -> (Vec<Packet>, Option<u16>) {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Ok(Some(p)) = decode(&mut self.buf, self.version, &Limits::default()) {
                seen.push(p);
            }
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => self.buf.extend_from_slice(&b),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return (seen, frame.map(|f| f.code.into()));
                }
                Ok(Some(Ok(_))) => {}
                Ok(None) | Ok(Some(Err(_))) => return (seen, None),
                Err(_) => panic!("WebSocket still open after {WAIT:?}; got {seen:?}"),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(subscribe_packet(1, filter, opts(qos))))
            .await;
        match self.recv().await {
            Packet::SubAck(a) => {
                assert!(a.reason_codes.iter().all(|c| !c.is_error()), "SUBACK {a:?}")
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// The next two packets: a PUBLISH (returned) and a PINGRESP, in
    /// either order.
    async fn publish_and_pingresp(&mut self) -> Publish {
        let (mut publish, mut pong) = (None, false);
        while publish.is_none() || !pong {
            match self.recv().await {
                Packet::Publish(p) if publish.is_none() => publish = Some(p),
                Packet::PingResp if !pong => pong = true,
                other => panic!("expected PUBLISH and PINGRESP, got {other:?}"),
            }
        }
        publish.expect("a PUBLISH")
    }

    async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

async fn ws_and_tcp_round_trip(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    for (n, path) in ["/mqtt", "/", "/some/other/path"].into_iter().enumerate() {
        let mut ws = WsClient::connected(&server, path, version, &format!("ws-{n}")).await;
        let mut tcp = connect(&server, version, &format!("tcp-{n}")).await;
        ws.subscribe("chat/to-ws", QoS::AtLeastOnce).await;
        subscribe(&mut tcp, "chat/to-tcp", QoS::AtLeastOnce).await;

        // TCP -> WebSocket.
        let ack = publish_qos1(
            &mut tcp,
            publish("chat/to-ws", &b"hello ws"[..], QoS::AtLeastOnce, false, 1),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        let p = ws.expect_publish().await;
        assert_eq!(
            (&*p.topic, &p.payload[..]),
            ("chat/to-ws", &b"hello ws"[..])
        );
        assert_eq!(p.qos, QoS::AtLeastOnce);
        ws.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
            .await;

        // WebSocket -> TCP, QoS 1 acknowledged over the WebSocket.
        ws.send(&Packet::Publish(publish(
            "chat/to-tcp",
            &b"hello tcp"[..],
            QoS::AtLeastOnce,
            false,
            7,
        )))
        .await;
        match ws.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id, pid(7)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        let p = recv_and_ack(&mut tcp).await;
        assert_eq!(
            (&*p.topic, &p.payload[..]),
            ("chat/to-tcp", &b"hello tcp"[..])
        );

        ws.send(&Packet::Disconnect(Disconnect::default())).await;
        let (after, _) = ws.closed().await;
        assert!(after.is_empty(), "nothing after DISCONNECT: {after:?}");
        disconnect(tcp).await;
    }
    server.stop().await;
}

both_versions!(ws_and_tcp_round_trip);

#[tokio::test]
async fn a_packet_may_span_frames_and_a_frame_may_carry_packets() {
    let server = TestServer::start(SCHEMA).await;
    let mut ws = WsClient::open(handshake(&server, "/mqtt", &[]), Version::V5).await;
    // CONNECT one byte per frame.
    let connect = encoded(
        &Packet::Connect(Box::new(RawClient::connect_packet(Version::V5, "split"))),
        Version::V5,
    );
    ws.send_frames(connect.iter().map(|b| vec![*b]).collect())
        .await;
    match ws.recv().await {
        Packet::ConnAck(a) => assert_eq!(a.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // SUBSCRIBE + PUBLISH + PINGREQ in one frame, then a PUBLISH whose
    // bytes straddle two frames together with a PINGREQ.
    let mut packed = encoded(
        &Packet::Subscribe(subscribe_packet(1, "split/#", opts(QoS::AtMostOnce))),
        Version::V5,
    );
    packed.extend_from_slice(&encoded(
        &Packet::Publish(publish("split/a", &b"one"[..], QoS::AtMostOnce, false, 0)),
        Version::V5,
    ));
    packed.extend_from_slice(&encoded(&Packet::PingReq, Version::V5));
    ws.send_frames(vec![packed.to_vec()]).await;
    assert!(matches!(ws.recv().await, Packet::SubAck(_)));
    // The routed message and the PINGRESP may come in either order.
    let p = ws.publish_and_pingresp().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("split/a", &b"one"[..]));

    let mut tail = encoded(
        &Packet::Publish(publish("split/b", &b"two"[..], QoS::AtMostOnce, false, 0)),
        Version::V5,
    );
    tail.extend_from_slice(&encoded(&Packet::PingReq, Version::V5));
    let (first, second) = tail.split_at(5);
    ws.send_frames(vec![first.to_vec(), second.to_vec()]).await;
    let p = ws.publish_and_pingresp().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("split/b", &b"two"[..]));
    server.stop().await;
}

#[tokio::test]
async fn a_handshake_without_the_subprotocol_gets_the_rest_live_updates() {
    let server = TestServer::start(SCHEMA).await;
    let mut writer = connect(&server, Version::V5, "writer").await;
    put(&mut writer, "Sensor/a", &br#"{"temp":20}"#[..]).await;

    let request = format!("ws://{}/Sensor/a", server.http)
        .into_client_request()
        .unwrap();
    let (mut socket, response) = tokio::time::timeout(WAIT, connect_async(request))
        .await
        .expect("handshake within WAIT")
        .expect("handshake accepted");
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    let event = loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => break json(text.as_bytes()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected a text event, got {other:?}"),
        }
    };
    assert_eq!(event["type"], "put");
    assert_eq!(event["value"], serde_json::json!({"temp": 20, "id": "a"}));

    // The same path with the subprotocol is MQTT.
    let mut ws = WsClient::connected(&server, "/Sensor/a", Version::V311, "on-a-table-path").await;
    ws.subscribe("Sensor/a", QoS::AtMostOnce).await;
    let p = ws.expect_publish().await;
    assert!(p.retain);
    assert_eq!(json(&p.payload), serde_json::json!({"temp": 20, "id": "a"}));
    disconnect(writer).await;
    server.stop().await;
}

#[tokio::test]
async fn accept_and_content_type_on_the_upgrade_choose_record_formats() {
    let server = TestServer::start(SCHEMA).await;
    let expected = Format::Json
        .decode(br#"{"id":"c","temp":1.5,"tags":["a"]}"#)
        .unwrap();

    // A CBOR writer that declares it on the upgrade (3.1.1: no properties).
    let packet = RawClient::connect_packet(Version::V311, "cbor-writer");
    let request = handshake(&server, "/mqtt", &[("content-type", "application/cbor")]);
    let (mut writer, ack) = WsClient::connect(request, packet).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let body = Format::Cbor.encode(
        &Format::Json
            .decode(br#"{"temp":1.5,"tags":["a"]}"#)
            .unwrap(),
    );
    writer
        .send(&Packet::Publish(publish(
            "Sensor/c",
            body,
            QoS::AtLeastOnce,
            true,
            1,
        )))
        .await;
    match writer.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, pid(1)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    sync_feed(&server, "Sensor").await;

    // A WebSocket reader preferring CBOR gets CBOR, a TCP one JSON.
    for version in [Version::V311, Version::V5] {
        let packet = RawClient::connect_packet(version, "cbor-reader");
        let request = handshake(&server, "/", &[("accept", "application/cbor")]);
        let (mut reader, ack) = WsClient::connect(request, packet).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        reader.subscribe("Sensor/c", QoS::AtMostOnce).await;
        let p = reader.expect_publish().await;
        let value: Value = Format::Cbor.decode(&p.payload).expect("a CBOR payload");
        assert_eq!(value, expected, "{version:?}");
        if version == Version::V5 {
            assert_eq!(
                p.properties.content_type.as_deref(),
                Some("application/cbor")
            );
        }
    }
    let mut tcp = connect(&server, Version::V311, "json-reader").await;
    subscribe(&mut tcp, "Sensor/c", QoS::AtMostOnce).await;
    let p = expect_publish(&mut tcp).await;
    assert_eq!(
        json(&p.payload),
        serde_json::json!({"id": "c", "temp": 1.5, "tags": ["a"]})
    );
    server.stop().await;
}

#[tokio::test]
async fn http_basic_on_the_upgrade_counts_as_connect_credentials() {
    // Whatever the authentication policy, Basic credentials on the upgrade
    // (and a CONNECT without any) get the answer the same credentials get
    // in CONNECT over TCP: they reach the broker.
    let server = TestServer::start(SCHEMA).await;
    let mut with_credentials = RawClient::connect_packet(Version::V5, "tcp-basic");
    with_credentials.username = Some("alice".into());
    with_credentials.password = Some(b"secret"[..].into());
    let (_tcp, tcp_ack) = RawClient::connect(server.mqtt, with_credentials).await;

    let connect = RawClient::connect_packet(Version::V5, "ws-basic");
    // alice:secret
    let request = handshake(
        &server,
        "/mqtt",
        &[("authorization", "Basic YWxpY2U6c2VjcmV0")],
    );
    let (_ws, ws_ack) = WsClient::connect(request, connect).await;
    assert_eq!(ws_ack.reason_code, tcp_ack.reason_code, "{ws_ack:?}");

    // Without credentials anywhere: anonymous, as over TCP.
    let mut ws = WsClient::connected(&server, "/mqtt", Version::V5, "ws-anonymous").await;
    ws.send(&Packet::PingReq).await;
    assert_eq!(ws.recv().await, Packet::PingResp);

    // A malformed Basic header is refused at the handshake.
    let request = handshake(&server, "/mqtt", &[("authorization", "Basic not*base64")]);
    match tokio::time::timeout(WAIT, connect_async(request)).await {
        Ok(Err(ts::Error::Http(response))) => assert_eq!(response.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn with_authentication_required_basic_on_the_upgrade_logs_in() {
    // REST requires credentials too, but the upgrade is the broker's to
    // judge: no 401 at the handshake, the CONNACK says.
    let server = TestServer::start_secure(SCHEMA, Roles::new(HashMap::new())).await;
    let users = server.broker.security().users();
    users
        .add("alice", b"secret", vec!["superuser".into()])
        .await
        .unwrap();
    let cases = [
        (Some("Basic YWxpY2U6c2VjcmV0"), ReasonCode::Success), // alice:secret
        (
            Some("Basic YWxpY2U6d3Jvbmc="),
            ReasonCode::BadUserNameOrPassword,
        ), // alice:wrong
        (None, ReasonCode::NotAuthorized),
    ];
    for (n, (authorization, expected)) in cases.into_iter().enumerate() {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let connect = RawClient::connect_packet(Version::V5, &format!("secure-{n}"));
        let (mut ws, ack) = WsClient::connect(handshake(&server, "/mqtt", &headers), connect).await;
        assert_eq!(ack.reason_code, expected, "{authorization:?}: {ack:?}");
        if expected == ReasonCode::Success {
            ws.subscribe("Sensor/#", QoS::AtMostOnce).await;
        } else {
            let (after, _) = ws.closed().await;
            assert!(after.is_empty(), "closed after the refusal: {after:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_text_frame_closes_the_connection() {
    let server = TestServer::start(SCHEMA).await;
    let mut ws = WsClient::connected(&server, "/mqtt", Version::V5, "texter").await;
    ws.socket
        .send(Message::Text("PINGREQ".into()))
        .await
        .expect("send");
    let (_, code) = ws.closed().await;
    assert_eq!(code, Some(1003), "unsupported data");
    // Nothing else is affected.
    let mut other = WsClient::connected(&server, "/mqtt", Version::V5, "other").await;
    other.send(&Packet::PingReq).await;
    assert_eq!(other.recv().await, Packet::PingResp);
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_closes_the_websocket_session() {
    let server = TestServer::start(SCHEMA).await;
    let mut ws = WsClient::connected(&server, "/mqtt", Version::V5, "until-shutdown").await;
    ws.subscribe("anything/#", QoS::AtLeastOnce).await;
    let started = tokio::time::Instant::now();
    let stopping = tokio::spawn(server.stop());
    let (_, code) = ws.closed().await;
    assert_eq!(code, Some(1001), "going away");
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stop within WAIT")
        .expect("stop");
    // Well within the 5 s the HTTP server would wait for a stuck session.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
