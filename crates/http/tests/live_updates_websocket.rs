//! Live updates over a plain WebSocket (SPEC §4): the same events as SSE, one
//! JSON text frame each; the `mqtt` subprotocol is not served here.

mod common;

use common::{Server, within};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(server: &Server, path: &str) -> Socket {
    let (socket, response) = within("WebSocket handshake", connect_async(server.ws_url(path)))
        .await
        .expect("handshake succeeds");
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    socket
}

/// The next frame, which must be a JSON text frame.
async fn event(socket: &mut Socket) -> serde_json::Value {
    loop {
        let message = within("next WebSocket frame", socket.next())
            .await
            .expect("open")
            .expect("readable");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON event"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_record_socket_sends_the_current_value_then_each_change_in_order() {
    let server = Server::start().await;
    server.put_json("/Sensor/a%2Fb", json!({"temp": 20})).await;
    let mut socket = open(&server, "/Sensor/a/b").await;
    let first = event(&mut socket).await;
    assert_eq!(first["type"], "put");
    assert_eq!(first["id"], "a/b");
    assert_eq!(first["value"], json!({"temp": 20, "id": "a/b"}));

    server.put_json("/Sensor/a/b", json!({"temp": 21})).await;
    server
        .patch_json("/Sensor/a/b", json!({"temp": null, "x": 1}))
        .await;
    server.delete("/Sensor/a/b").await;
    let put = event(&mut socket).await;
    assert_eq!(put["value"], json!({"temp": 21, "id": "a/b"}));
    let patched = event(&mut socket).await;
    assert_eq!(patched["value"], json!({"id": "a/b", "x": 1}));
    let deleted = event(&mut socket).await;
    assert_eq!(deleted["type"], "delete");
    assert!(deleted["value"].is_null());
    let versions: Vec<u64> = [&first, &put, &patched, &deleted]
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    // Client frames are ignored; a ping is answered.
    socket.send(Message::Text("hello".into())).await.unwrap();
    socket
        .send(Message::Ping(b"p".to_vec().into()))
        .await
        .unwrap();
    let pong = within("pong", socket.next()).await.unwrap().unwrap();
    assert_eq!(pong, Message::Pong(b"p".to_vec().into()));
    socket.close(None).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_query_socket_sends_matching_records_and_changes() {
    let server = Server::start().await;
    server
        .put_json("/Device/d1", json!({"room": "kitchen"}))
        .await;
    server.put_json("/Device/d2", json!({"room": "hall"})).await;
    let mut socket = open(&server, "/Device/?room=kitchen&select(room)").await;
    let first = event(&mut socket).await;
    assert_eq!(
        (first["id"].as_str(), first["value"].clone()),
        (Some("d1"), json!({"id": "d1", "room": "kitchen"}))
    );
    server
        .put_json("/Device/d3", json!({"room": "kitchen", "name": "n"}))
        .await;
    let added = event(&mut socket).await;
    assert_eq!(added["value"], json!({"id": "d3", "room": "kitchen"}));
    server.stop().await;
}

#[tokio::test]
async fn sockets_are_closed_going_away_when_the_server_shuts_down() {
    let server = Server::start().await;
    let mut socket = open(&server, "/Sensor/").await;
    server.stop().await;
    let close = within("close frame", socket.next())
        .await
        .expect("a frame")
        .expect("readable");
    match close {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn the_mqtt_subprotocol_is_refused() {
    let server = Server::start().await;
    let mut request = server.ws_url("/Sensor/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    match within("handshake", connect_async(request)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400)
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_socket_on_an_unknown_table_is_refused_with_404() {
    let server = Server::start().await;
    match within("handshake", connect_async(server.ws_url("/Hidden/"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("expected a 404 refusal, got {other:?}"),
    }
    server.stop().await;
}
