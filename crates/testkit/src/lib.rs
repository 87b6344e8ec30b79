//! Test support for mqdb's black-box tests: a whole server (store, schema,
//! broker, REST and MQTT over WebSocket on the HTTP port) in-process on
//! ephemeral loopback ports, restartable on the same data directory, and a
//! raw MQTT client built on `mqdb-codec` that shows exactly which packets
//! the server sends. Never a dependency of a non-test crate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqdb_broker::{Broker, BrokerConfig, ConnInfo, Transport};
use mqdb_codec::{ConnAck, Connect, Limits, Packet, Version, decode, encode};
use mqdb_resource::{Database, Roles, Schema, Security, Users};
use mqdb_storage::{Store, StoreConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long the helpers wait for anything before failing the test.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running server.
#[derive(Debug)]
pub struct TestServer {
    /// MQTT address.
    pub mqtt: SocketAddr,
    /// HTTP address: REST, and MQTT over WebSocket (subprotocol `mqtt`).
    pub http: SocketAddr,
    /// The broker, for direct inspection.
    pub broker: Broker,
    /// The database.
    pub db: Database,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server with `schema` (GraphQL SDL) in a fresh temporary directory.
    pub async fn start(schema: &str) -> TestServer {
        Self::start_with(schema, BrokerConfig::default()).await
    }

    /// A server with broker settings.
    pub async fn start_with(schema: &str, config: BrokerConfig) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut server = Self::open(&dir, schema, config).await;
        server._temp = Some(temp);
        server
    }

    /// A server requiring authentication over MQTT and REST, with `roles`
    /// (plus the built-in `superuser`) and no users yet: add them with
    /// `server.broker.security().users().add(..)`.
    pub async fn start_secure(schema: &str, roles: Roles) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let config = BrokerConfig {
            require_authentication: true,
            ..BrokerConfig::default()
        };
        let mut server = Self::open_with(&dir, schema, config, Some(roles)).await;
        server._temp = Some(temp);
        server
    }

    /// A server on an existing data directory (for restarts).
    pub async fn open(dir: &Path, schema: &str, config: BrokerConfig) -> TestServer {
        Self::open_with(dir, schema, config, None).await
    }

    /// [`TestServer::open`] with roles: users and roles are checked on MQTT
    /// and REST alike, REST requiring credentials when MQTT does.
    pub async fn open_with(
        dir: &Path,
        schema: &str,
        mut config: BrokerConfig,
        roles: Option<Roles>,
    ) -> TestServer {
        let store = Store::open(StoreConfig {
            path: dir.join("data"),
            sync: true,
            node: 0,
        })
        .expect("open store");
        let schema = Schema::parse(schema, Path::new("schema.graphql")).expect("schema");
        let db = Database::new(store, schema);
        if let Some(roles) = roles {
            config.security = Some(Security::new(Users::new(db.store().clone()), roles));
        }
        let require_authentication = config.require_authentication;
        let broker = Broker::start(db.clone(), config)
            .await
            .expect("start broker");
        let mqtt_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mqtt");
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        let (mqtt, http) = (
            mqtt_listener.local_addr().unwrap(),
            http_listener.local_addr().unwrap(),
        );
        let (stop, stopped) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tasks = vec![
            tokio::spawn(mqdb_broker::serve_tcp(
                broker.clone(),
                mqtt_listener,
                wait(stopped.clone()),
            )),
            tokio::spawn({
                let db = db.clone();
                let w = wait(stopped);
                let options = mqdb_http::HttpOptions {
                    mqtt_ws: Some(mqtt_over_websocket(broker.clone())),
                    security: Some(broker.security().clone()),
                    require_authentication,
                    ..mqdb_http::HttpOptions::default()
                };
                async move {
                    let _ = mqdb_http::serve_with(http_listener, db, options, w).await;
                }
            }),
        ];
        TestServer {
            mqtt,
            http,
            broker,
            db,
            dir: dir.to_path_buf(),
            _temp: None,
            stop,
            tasks,
        }
    }

    /// The data directory (pass to [`TestServer::open`] to restart).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Base URL of the REST API.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Stops gracefully (connections get DISCONNECT 0x8B, sessions are
    /// stored, the store is closed). Returns the temporary directory, if the
    /// server owns one, so the caller can restart on it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.broker.shutdown(WAIT).await;
        self._temp.take()
    }
}

/// Serves MQTT over WebSocket on the HTTP port with `broker` (as the
/// server does).
fn mqtt_over_websocket(broker: Broker) -> mqdb_http::MqttWsHandler {
    Arc::new(move |c: mqdb_http::MqttWsConnection| {
        let info = ConnInfo {
            remote_addr: c.peer.addr,
            transport: if c.peer.secure {
                Transport::Wss
            } else {
                Transport::Ws
            },
            cert_username: c.peer.cert_username,
            basic_credentials: c.basic_credentials,
            content_format: c.content_format,
            accept_format: c.accept_format,
        };
        Box::pin(mqdb_broker::serve_connection(broker.clone(), c.io, info))
    })
}

/// A raw MQTT client: sends and receives packets exactly.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    /// Protocol version in use.
    pub version: Version,
}

impl RawClient {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr, version: Version) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawClient {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// A client over an already connected socket (e.g. bound to a chosen
    /// local address).
    pub fn from_stream(stream: TcpStream, version: Version) -> RawClient {
        RawClient {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Reads exactly `n` raw bytes (within [`WAIT`]).
    pub async fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let mut out = self.buf.split_to(self.buf.len().min(n)).to_vec();
        let start = out.len();
        out.resize(n, 0);
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut out[start..]))
            .await
            .expect("bytes within the wait")
            .expect("read");
        out
    }

    /// Connects and returns the CONNACK.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(addr, connect.protocol).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Packet::ConnAck(ack) => (c, *ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// A CONNECT with defaults: clean start, keep alive 60.
    pub fn connect_packet(version: Version, client_id: &str) -> Connect {
        Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 60,
            properties: Default::default(),
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    /// Sends a packet.
    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).expect("encode");
        self.send_raw(&out).await;
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet, failing the test after [`WAIT`].
    pub async fn recv(&mut self) -> Packet {
        match self.recv_within(WAIT).await {
            Some(p) => p,
            None => panic!("no packet within {WAIT:?}"),
        }
    }

    /// The next packet within `d`, or `None` (also when the server closed).
    pub async fn recv_within(&mut self, d: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = decode(&mut self.buf, self.version, &Limits::default())
                .expect("server sent a valid packet")
            {
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits until the server closes the connection; returns the packets it
    /// sent before (e.g. a DISCONNECT).
    pub async fn closed(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Ok(Some(p)) = decode(&mut self.buf, self.version, &Limits::default()) {
                seen.push(p);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return seen,
                Ok(Ok(_)) => {}
                Err(_) => panic!("connection still open after {WAIT:?}; got {seen:?}"),
            }
        }
    }
}
