//! The benchmark client's transports against a minimal in-process broker
//! (TCP, TLS with a CA made by rcgen, mutual TLS, WebSocket, WebSocket over
//! TLS; CONNECT / CONNACK with credentials, PINGREQ / PINGRESP,
//! DISCONNECT), the WebSocket byte-stream adapter on its own, and the
//! `conns` workload end to end. Every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::BytesMut;
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use mqdb_codec::{ConnAck, Limits, Packet, ReasonCode, Version, decode, encode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::Role;

use super::client::{Conn, Target};
use super::transport::{BoxedIo, TlsOptions, Transport};
use super::workloads::{self, Workload};
use super::ws::{WRITE_CHUNK, WsIo};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- certificates

/// A CA, a server certificate for 127.0.0.1 / localhost and a client
/// certificate, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("bench test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let (cert, key) = issue(
            &ca,
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(dir.path().join("server.pem"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        let (cert, key) = issue(&ca, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::write(dir.path().join("client.pem"), cert).unwrap();
        std::fs::write(dir.path().join("client.key"), key).unwrap();
        // A CA that signed nothing here.
        std::fs::write(dir.path().join("other-ca.pem"), self::ca("other").pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server side; requiring a client certificate signed by the CA if
    /// `mtls`.
    fn acceptor(&self, mtls: bool) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mtls {
            let mut roots = RootCertStore::empty();
            roots.add(pem_cert(&self.path("ca.pem"))).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![pem_cert(&self.path("server.pem"))],
                PrivateKeyDer::from_pem_file(self.path("server.key")).unwrap(),
            )
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }

    fn tls_options<'a>(&'a self, ca: &'a Path) -> TlsOptions<'a> {
        TlsOptions {
            ca: Some(ca),
            insecure: false,
            cert: None,
            key: None,
            server_name: "127.0.0.1",
            resume: false,
        }
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `ca` and its key, as PEM.
fn issue(
    ca: &CertifiedIssuer<'static, KeyPair>,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, "bench");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pem_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

// ---------------------------------------------------------------- a broker

/// Accepts connections on an ephemeral port: TLS if `tls`, then the
/// WebSocket handshake if `ws` (answering subprotocol `mqtt` only when it
/// was offered), then MQTT: CONNACK (refused unless the credentials are
/// `bench` / `secret`), PINGRESP, end at DISCONNECT.
async fn broker(tls: Option<TlsAcceptor>, ws: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = serve(tcp, tls, ws).await;
            });
        }
    });
    addr
}

async fn serve(tcp: TcpStream, tls: Option<TlsAcceptor>, ws: bool) -> Result<()> {
    let stream: BoxedIo = match tls {
        Some(acceptor) => Box::new(acceptor.accept(tcp).await?),
        None => Box::new(tcp),
    };
    let mut io: BoxedIo = if ws {
        Box::new(WsIo::new(
            tokio_tungstenite::accept_hdr_async(stream, answer_mqtt).await?,
        ))
    } else {
        stream
    };
    let (mut input, mut output) = (BytesMut::new(), BytesMut::new());
    let mut version = Version::V311;
    loop {
        while let Some(packet) = decode(&mut input, version, &Limits::default())? {
            let reply = match packet {
                Packet::Connect(connect) => {
                    version = connect.protocol;
                    let ok = connect.username.as_deref() == Some("bench")
                        && connect.password.as_deref() == Some(b"secret".as_slice());
                    Packet::ConnAck(Box::new(ConnAck {
                        session_present: false,
                        reason_code: if ok {
                            ReasonCode::Success
                        } else {
                            ReasonCode::BadUserNameOrPassword
                        },
                        properties: Default::default(),
                    }))
                }
                Packet::PingReq => Packet::PingResp,
                Packet::Disconnect(_) => return Ok(()),
                _ => continue,
            };
            encode(&reply, version, &mut output)?;
        }
        if !output.is_empty() {
            io.write_all(&output).await?;
            io.flush().await?;
            output.clear();
        }
        if io.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
    }
}

/// Answers subprotocol `mqtt` when it is offered.
#[allow(clippy::result_large_err)] // The signature is tungstenite's.
fn answer_mqtt(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get("sec-websocket-protocol")
        .is_some_and(|v| v == "mqtt");
    if offered {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    }
    Ok(response)
}

fn target(addr: SocketAddr, transport: Transport, password: &str) -> Target {
    Target {
        host: addr.ip().to_string(),
        port: addr.port(),
        version: Version::V311,
        username: Some("bench".into()),
        password: Some(password.into()),
        client_prefix: "bench-test".into(),
        transport,
        lean: false,
    }
}

/// Connects (credentials in CONNECT), pings, disconnects.
async fn round_trip(target: &Target) -> Result<()> {
    let mut conn = tokio::time::timeout(WAIT, Conn::connect(target, "t"))
        .await
        .context("connect within WAIT")??;
    conn.queue(&Packet::PingReq)?;
    conn.flush().await?;
    loop {
        if let Some(packet) = conn.decoded()? {
            assert_eq!(packet, Packet::PingResp);
            break;
        }
        tokio::time::timeout(WAIT, conn.fill()).await??;
    }
    conn.disconnect().await;
    Ok(())
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn every_transport_carries_connect_with_credentials() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    for (tls, ws) in [(false, false), (true, false), (false, true), (true, true)] {
        let acceptor = tls.then(|| pki.acceptor(false));
        let addr = broker(acceptor, ws).await;
        let transport =
            Transport::new(tls.then(|| pki.tls_options(&ca)), ws.then_some("/mqtt")).unwrap();
        let what = format!("tls={tls} ws={ws}");
        round_trip(&target(addr, transport.clone(), "secret"))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let refused = round_trip(&target(addr, transport, "wrong")).await;
        let msg = format!("{:#}", refused.unwrap_err());
        assert!(msg.contains("BadUserNameOrPassword"), "{what}: {msg}");
    }
}

#[tokio::test]
async fn the_broker_certificate_is_verified_unless_insecure() {
    let pki = Pki::new();
    let addr = broker(Some(pki.acceptor(false)), false).await;
    let other = pki.path("other-ca.pem");
    let untrusted = Transport::new(Some(pki.tls_options(&other)), None).unwrap();
    let msg = format!(
        "{:#}",
        round_trip(&target(addr, untrusted, "secret"))
            .await
            .unwrap_err()
    );
    assert!(msg.contains("TLS handshake with 127.0.0.1"), "{msg}");
    let insecure = TlsOptions {
        ca: None,
        insecure: true,
        ..pki.tls_options(&other)
    };
    let insecure = Transport::new(Some(insecure), None).unwrap();
    round_trip(&target(addr, insecure, "secret")).await.unwrap();
    // Neither --ca nor --insecure: a clear error before any connection.
    let neither = TlsOptions {
        ca: None,
        ..pki.tls_options(&other)
    };
    let msg = format!("{:#}", Transport::new(Some(neither), None).unwrap_err());
    assert!(msg.contains("--ca") && msg.contains("--insecure"), "{msg}");
}

#[tokio::test]
async fn a_client_certificate_is_presented_for_mutual_tls() {
    let pki = Pki::new();
    let addr = broker(Some(pki.acceptor(true)), false).await;
    let ca = pki.path("ca.pem");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let with_cert = TlsOptions {
        cert: Some(&cert),
        key: Some(&key),
        ..pki.tls_options(&ca)
    };
    let transport = Transport::new(Some(with_cert), None).unwrap();
    round_trip(&target(addr, transport, "secret"))
        .await
        .unwrap();
    let without = Transport::new(Some(pki.tls_options(&ca)), None).unwrap();
    assert!(round_trip(&target(addr, without, "secret")).await.is_err());
}

#[tokio::test]
async fn websocket_messages_are_a_byte_stream_both_ways() {
    let (client, server) = tokio::io::duplex(1 << 20);
    let mut client = WsIo::new(WebSocketStream::from_raw_socket(client, Role::Client, None).await);
    let mut server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;

    // One packet over two messages, then two packets in one message.
    let mut packets = BytesMut::new();
    for _ in 0..3 {
        encode(&Packet::PingResp, Version::V311, &mut packets).unwrap();
    }
    let bytes = packets.freeze();
    for part in [&bytes[..1], &bytes[1..]] {
        server
            .send(Message::Binary(bytes::Bytes::copy_from_slice(part)))
            .await
            .unwrap();
    }
    let mut read = BytesMut::new();
    let mut got = Vec::new();
    while got.len() < 3 {
        tokio::time::timeout(WAIT, client.read_buf(&mut read))
            .await
            .unwrap()
            .unwrap();
        while let Some(p) = decode(&mut read, Version::V311, &Limits::default()).unwrap() {
            got.push(p);
        }
    }
    assert_eq!(got, vec![Packet::PingResp; 3]);

    // Writes before one flush travel as one message; a large write is
    // split at WRITE_CHUNK.
    client.write_all(&[1; 10]).await.unwrap();
    client.write_all(&[2; 10]).await.unwrap();
    client.flush().await.unwrap();
    let first = server.next().await.unwrap().unwrap();
    assert_eq!(first.into_data().len(), 20);
    client.write_all(&vec![3; WRITE_CHUNK + 5]).await.unwrap();
    client.flush().await.unwrap();
    let sizes: Vec<usize> = [
        server.next().await.unwrap().unwrap(),
        server.next().await.unwrap().unwrap(),
    ]
    .into_iter()
    .map(|m| m.into_data().len())
    .collect();
    assert_eq!(sizes, [WRITE_CHUNK, 5]);

    // A Close frame is the end of the stream.
    client.shutdown().await.unwrap();
    server.close(None).await.unwrap();
    let n = tokio::time::timeout(WAIT, client.read_buf(&mut read))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

/// Runs `mqdb bench <args>` in-process; its JSON line, parsed.
async fn bench(args: &[&str]) -> (serde_json::Value, Option<String>) {
    let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"));
    let (report, _) = tokio::time::timeout(WAIT, workloads::run(cli.workload))
        .await
        .unwrap()
        .unwrap();
    (serde_json::from_str(&report.json()).unwrap(), report.fatal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conns_counts_every_connection_over_wss() {
    let pki = Pki::new();
    let addr = broker(Some(pki.acceptor(false)), true).await;
    let port = addr.port().to_string();
    let ca = pki.path("ca.pem");
    let (report, fatal) = bench(&[
        "conns",
        "--port",
        &port,
        "--tls",
        "--ca",
        ca.to_str().unwrap(),
        "--ws",
        "--username",
        "bench",
        "--password",
        "secret",
        "--connections",
        "50",
        "--concurrency",
        "8",
        "--hold",
        "0.2",
    ])
    .await;
    assert_eq!(fatal, None);
    assert_eq!(report["workload"], "conns");
    assert_eq!(report["transport"], "wss");
    assert_eq!(report["established"], 50, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["dropped"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["connects_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let p50 = report["connect_p50_us"].as_u64().unwrap();
    assert!(p50 > 0 && p50 <= report["connect_p99_us"].as_u64().unwrap());
    assert!(
        report["handshake_p50_us"].as_u64().unwrap() <= p50,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conns_reports_refusals_with_the_first_error_and_paces_attempts() {
    let addr = broker(None, false).await;
    let port = addr.port().to_string();
    let started = tokio::time::Instant::now();
    let (report, _) = bench(&[
        "conns",
        "--port",
        &port,
        "--username",
        "bench",
        "--password",
        "wrong",
        "--connections",
        "10",
        "--rate",
        "50",
        "--hold",
        "0",
    ])
    .await;
    // 10 attempts at 50/s: the last starts 180 ms after the first.
    assert!(started.elapsed() >= Duration::from_millis(180));
    assert_eq!(report["established"], 0, "{report}");
    assert_eq!(report["failed"], 10, "{report}");
    assert_eq!(report["errors"], 10, "{report}");
    let first = report["first_error"].as_str().unwrap();
    assert!(first.contains("BadUserNameOrPassword"), "{first}");
}
