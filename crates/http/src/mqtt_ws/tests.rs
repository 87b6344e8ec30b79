//! [`MqttWsStream`] and the handshake layer through real sockets: a
//! tokio-tungstenite client against an axum server on 127.0.0.1:0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::any;
use futures_util::{SinkExt as _, StreamExt as _};
use mqdb_resource::{Database, Format, Schema};
use mqdb_storage::{Store, StoreConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as ClientCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self as ts, Message as ClientMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::*;
use crate::HttpOptions;

type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

/// A connected pair: the server side as an [`MqttWsStream`] (ending its
/// reads when `closing` becomes true, if given), the client side raw.
async fn pair(closing: Option<watch::Receiver<bool>>) -> (MqttWsStream, Client) {
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let app = Router::new().route(
        "/",
        any(move |ws: WebSocketUpgrade| {
            let tx = tx.clone();
            async move {
                ws.on_upgrade(move |socket| async move {
                    let stream = match closing {
                        Some(closing) => {
                            MqttWsStream::with_closing(socket, AppState::closed(closing))
                        }
                        None => MqttWsStream::new(socket),
                    };
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send(stream);
                    }
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (client, _) = within("handshake", connect_async(format!("ws://{addr}/")))
        .await
        .expect("handshake");
    let server = within("upgrade", rx).await.expect("upgraded");
    (server, client)
}

/// The next data or close message the client gets.
async fn next_message(client: &mut Client) -> ClientMessage {
    loop {
        let message = within("client message", client.next())
            .await
            .expect("still open")
            .expect("readable");
        if !matches!(message, ClientMessage::Ping(_) | ClientMessage::Pong(_)) {
            return message;
        }
    }
}

fn binary(bytes: &[u8]) -> ClientMessage {
    ClientMessage::Binary(bytes.to_vec().into())
}

fn close_code_of(message: ClientMessage) -> u16 {
    match message {
        ClientMessage::Close(Some(frame)) => frame.code.into(),
        other => panic!("expected a Close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn reads_concatenate_binary_messages_and_end_at_close() {
    let (mut server, mut client) = pair(None).await;
    // One "packet" over three messages, then two in one message, with a
    // ping in between (answered by the socket, invisible to the reader).
    client.send(binary(&[0x30, 0x03])).await.unwrap();
    client.send(binary(b"a")).await.unwrap();
    client
        .send(ClientMessage::Ping(b"p".to_vec().into()))
        .await
        .unwrap();
    client.send(binary(b"bc")).await.unwrap();
    client
        .send(binary(&[0xc0, 0x00, 0xe0, 0x00]))
        .await
        .unwrap();
    let mut got = [0u8; 9];
    within("read", server.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, [0x30, 0x03, b'a', b'b', b'c', 0xc0, 0x00, 0xe0, 0x00]);
    // The ping was answered while reading.
    assert_eq!(
        within("pong", client.next()).await.unwrap().unwrap(),
        ClientMessage::Pong(b"p".to_vec().into())
    );

    // A message larger than the read buffer is read in pieces.
    client.send(binary(&[7; 10])).await.unwrap();
    let mut small = [0u8; 3];
    let mut total = 0;
    while total < 10 {
        let n = within("small read", server.read(&mut small)).await.unwrap();
        assert!(n > 0 && n <= 3);
        total += n;
    }

    client.close(None).await.unwrap();
    let n = within("read at close", server.read(&mut small))
        .await
        .unwrap();
    assert_eq!(n, 0, "a Close frame is the end of the stream");
}

#[tokio::test]
async fn writes_become_one_binary_message_per_flush() {
    let (mut server, mut client) = pair(None).await;
    server.write_all(&[0x20, 0x02, 0, 0]).await.unwrap();
    server.write_all(&[0x90, 0x03, 0, 1, 0]).await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(
        next_message(&mut client).await,
        binary(&[0x20, 0x02, 0, 0, 0x90, 0x03, 0, 1, 0])
    );
    server.write_all(&[0xd0, 0x00]).await.unwrap();
    server.flush().await.unwrap();
    assert_eq!(next_message(&mut client).await, binary(&[0xd0, 0x00]));
}

#[tokio::test]
async fn a_large_write_is_split_into_bounded_messages() {
    let (mut server, mut client) = pair(None).await;
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let writer = tokio::spawn(async move {
        server.write_all(&data).await.unwrap();
        server.flush().await.unwrap();
        (server, data)
    });
    let mut received = Vec::new();
    let mut messages = 0;
    while received.len() < 150_000 {
        match next_message(&mut client).await {
            ClientMessage::Binary(bytes) => {
                assert!(bytes.len() <= WRITE_CHUNK, "{} bytes", bytes.len());
                received.extend_from_slice(&bytes);
                messages += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (_server, data) = within("writer", writer).await.unwrap();
    assert_eq!(received, data);
    assert_eq!(messages, 150_000usize.div_ceil(WRITE_CHUNK));
}

#[tokio::test]
async fn a_text_message_fails_the_read_and_closes_with_1003() {
    let (mut server, mut client) = pair(None).await;
    client.send(binary(&[0x10])).await.unwrap();
    client
        .send(ClientMessage::Text("{\"not\":\"mqtt\"}".into()))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    // The bytes before the text message are still read.
    assert_eq!(within("read", server.read(&mut buf)).await.unwrap(), 1);
    let err = within("read", server.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(close_code_of(next_message(&mut client).await), 1003);
    // And it stays failed.
    assert!(within("read", server.read(&mut buf)).await.is_err());
}

#[tokio::test]
async fn shutdown_flushes_then_closes_normally() {
    let (mut server, mut client) = pair(None).await;
    server.write_all(&[0xe0, 0x00]).await.unwrap();
    within("shutdown", server.shutdown()).await.unwrap();
    assert_eq!(next_message(&mut client).await, binary(&[0xe0, 0x00]));
    assert_eq!(close_code_of(next_message(&mut client).await), 1000);
}

#[tokio::test]
async fn server_shutdown_ends_reads_and_closes_with_1001() {
    let (close, closing) = watch::channel(false);
    let (mut server, mut client) = pair(Some(closing)).await;
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        let mut total = 0;
        loop {
            match server.read(&mut buf).await {
                Ok(0) => return (server, total),
                Ok(n) => total += n,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    });
    client.send(binary(&[1, 2, 3])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    close.send(true).unwrap();
    let (mut server, total) = within("reader ends", reader).await.unwrap();
    assert_eq!(total, 3);
    within("shutdown", server.shutdown()).await.unwrap();
    assert_eq!(close_code_of(next_message(&mut client).await), 1001);
}

// ---- The handshake layer, through `serve_with`. ----

/// A server whose MQTT-over-WebSocket hook hands each connection to the
/// test (when `hook` is set).
struct HookServer {
    addr: SocketAddr,
    /// Each connection, and what ends its hook's future (when dropped).
    connections: mpsc::UnboundedReceiver<(MqttWsConnection, oneshot::Sender<()>)>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn hook_server(hook: bool) -> HookServer {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        path: dir.path().join("db"),
        sync: false,
        node: 0,
    })
    .unwrap();
    let schema = Schema::parse("type Sensor @table @export", Path::new("t.graphql")).unwrap();
    let db = Database::new(store, schema);
    let (tx, connections) = mpsc::unbounded_channel();
    let handler: MqttWsHandler = Arc::new(move |c: MqttWsConnection| {
        let (done, ended) = oneshot::channel::<()>();
        let _ = tx.send((c, done));
        Box::pin(async move {
            let _ = ended.await;
        })
    });
    let options = HttpOptions {
        mqtt_ws: hook.then_some(handler),
        ..HttpOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::serve_with(listener, db, options, async move {
        let _ = stopped.await;
    }));
    HookServer {
        addr,
        connections,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl HookServer {
    /// The next connection handed to the hook (whose future ends now).
    async fn connection(&mut self) -> MqttWsConnection {
        within("hook", self.connections.recv()).await.unwrap().0
    }
}

fn handshake(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> ts::handshake::client::Request {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

/// The status and JSON body of a refused handshake.
async fn refused(request: ts::handshake::client::Request) -> (u16, serde_json::Value) {
    match within("handshake", connect_async(request)).await {
        Err(ts::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body).expect("JSON error body");
            (response.status().as_u16(), json)
        }
        Ok((_, response)) => panic!("handshake accepted: {response:?}"),
        Err(e) => panic!("handshake failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn the_hook_gets_the_stream_peer_credentials_and_formats_on_any_path() {
    let mut server = hook_server(true).await;
    let request = handshake(
        server.addr,
        "/any/where?x=1",
        &[
            ("sec-websocket-protocol", "chat, MQTT"),
            ("authorization", "Basic dXNlcjpwYTpzcw=="),
            ("content-type", "application/cbor"),
            ("accept", "application/x-msgpack"),
        ],
    );
    let (mut client, response) = within("handshake", connect_async(request)).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "MQTT");
    let mut connection = server.connection().await;
    assert_eq!(
        connection.basic_credentials,
        Some(("user".to_owned(), "pa:ss".to_owned()))
    );
    assert_eq!(connection.content_format, Some(Format::Cbor));
    assert_eq!(connection.accept_format, Some(Format::MsgPack));
    let peer = &connection.peer;
    assert!(!peer.secure);
    assert_eq!(peer.cert_username, None);
    assert_eq!(peer.addr.unwrap().ip(), server.addr.ip());
    assert!(
        !format!("{connection:?}").contains("pa:ss"),
        "no password in Debug"
    );

    client.send(binary(&[0xc0, 0x00])).await.unwrap();
    let mut got = [0u8; 2];
    within("read", connection.io.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, [0xc0, 0x00]);
    connection.io.write_all(&[0xd0, 0x00]).await.unwrap();
    connection.io.flush().await.unwrap();
    assert_eq!(next_message(&mut client).await, binary(&[0xd0, 0x00]));

    for path in ["/", "/mqtt", "/Sensor/a"] {
        let request = handshake(server.addr, path, &[("sec-websocket-protocol", "mqtt")]);
        let (_client, response) = within("handshake", connect_async(request)).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "mqtt",
            "{path}"
        );
        let c = server.connection().await;
        assert_eq!(
            (c.basic_credentials, c.content_format, c.accept_format),
            (None, None, None)
        );
    }
    // Old clients' `mqttv3.1` is accepted under that name.
    let request = handshake(
        server.addr,
        "/mqtt",
        &[("sec-websocket-protocol", "mqttv3.1")],
    );
    let (_client, response) = within("handshake", connect_async(request)).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "mqttv3.1");
    server.connection().await;

    // Without the subprotocol: the REST live updates, as before.
    let (_client, response) = within(
        "handshake",
        connect_async(handshake(server.addr, "/Sensor/a", &[])),
    )
    .await
    .unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    assert!(server.connections.try_recv().is_err());
    let (status, _) = refused(handshake(server.addr, "/mqtt", &[])).await;
    assert_eq!(status, 404, "no such table");

    // A malformed Basic header is refused.
    let (status, body) = refused(handshake(
        server.addr,
        "/mqtt",
        &[
            ("sec-websocket-protocol", "mqtt"),
            ("authorization", "Basic %%%"),
        ],
    ))
    .await;
    assert_eq!((status, body["status"].as_u64()), (400, Some(400)));
    let _ = server.stop.take().unwrap().send(());
}

#[tokio::test]
async fn without_a_hook_the_handshake_gets_400() {
    let server = hook_server(false).await;
    for path in ["/mqtt", "/", "/Sensor/a"] {
        let request = handshake(server.addr, path, &[("sec-websocket-protocol", "mqtt")]);
        let (status, body) = refused(request).await;
        assert_eq!(status, 400, "{path}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("MQTT over WebSocket")
        );
    }
}

#[tokio::test]
async fn server_shutdown_ends_the_sessions() {
    let mut server = hook_server(true).await;
    let request = handshake(server.addr, "/mqtt", &[("sec-websocket-protocol", "mqtt")]);
    let (mut client, _) = within("handshake", connect_async(request)).await.unwrap();
    let (mut connection, done) = within("hook", server.connections.recv()).await.unwrap();
    // The session: reads until the end of the stream, then shuts down;
    // `serve_with` waits for it.
    let session = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        while connection.io.read(&mut buf).await.unwrap() > 0 {}
        tokio::time::sleep(Duration::from_millis(100)).await;
        connection.io.shutdown().await.unwrap();
        drop(done);
    });
    let started = tokio::time::Instant::now();
    let _ = server.stop.take().unwrap().send(());
    within("serve_with returns", &mut server.task)
        .await
        .unwrap()
        .unwrap();
    assert!(session.is_finished(), "serve_with waited for the session");
    assert!(started.elapsed() < crate::WEBSOCKET_DRAIN);
    assert_eq!(close_code_of(next_message(&mut client).await), 1001);
    let _ = client
        .close(Some(ClientCloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}
