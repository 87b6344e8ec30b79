//! TLS over real loopback sockets: handshakes with and without client
//! certificates, the username a certificate proves, certificate reload
//! (direct, by file change, by SIGHUP, and a bad file), MQTTS into a real
//! in-process broker, and the HTTPS listener.
//!
//! Certificates are made per test with rcgen: a CA, server certificates for
//! `localhost` / 127.0.0.1 signed by it, client certificates signed by it,
//! and a client certificate signed by another CA (untrusted).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream as ClientTls;

use super::*;
use crate::config::{ClientCerts, TlsConfig, UsernameFrom};

/// How long any wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- certificates

/// A certificate authority that signs server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Issued {
    cert_pem: String,
    key_pem: String,
}

impl Issued {
    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1, subject `cn`.
    fn server(&self, cn: &str) -> Issued {
        let sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        self.issue(cn, sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose subject CN is `cn`.
    fn client(&self, cn: &str) -> Issued {
        self.issue(cn, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A CA and the server's files in a temporary directory.
struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
}

impl Pki {
    /// Writes `ca.pem` and a server certificate `server-1` (`server.pem`,
    /// `server.key`).
    fn new() -> Pki {
        let pki = Pki {
            ca: Ca::new("test CA"),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki.install_server(&pki.ca.server("server-1"));
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the server certificate and key as a deployment tool would:
    /// each written aside, then renamed over the old file.
    fn install_server(&self, server: &Issued) {
        replace(&self.path("server.key"), &server.key_pem);
        replace(&self.path("server.pem"), &server.cert_pem);
    }

    fn config(&self, client_certs: ClientCerts) -> TlsConfig {
        TlsConfig {
            cert: Some(self.path("server.pem")),
            key: Some(self.path("server.key")),
            client_ca: Some(self.path("ca.pem")),
            client_certs,
            ..TlsConfig::default()
        }
    }

    fn handle(&self, client_certs: ClientCerts, service: TlsService) -> TlsAcceptorHandle {
        TlsAcceptorHandle::new(&self.config(client_certs), service).unwrap()
    }
}

fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

// -------------------------------------------------------------------- client

/// A TLS client trusting `ca`, optionally presenting `identity`.
fn client_config(ca: &Ca, identity: Option<&Issued>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.der()], id.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<ClientTls<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("client handshake hangs")
}

/// The subject CN of the certificate the server presented.
fn server_cn(stream: &ClientTls<TcpStream>) -> String {
    let leaf = &stream.get_ref().1.peer_certificates().unwrap()[0];
    username_of(leaf, UsernameFrom::Cn).unwrap()
}

// ------------------------------------------------------------ echo server

/// A server completing handshakes with `tls`: reports each outcome (the
/// certificate username, or the error), then echoes lines on the
/// connection, prefixed with that username.
async fn echo_server(
    tls: TlsAcceptorHandle,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<Option<String>, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                match tls.handshake(tcp).await {
                    Ok((mut stream, user)) => {
                        let _ = tx.send(Ok(user.clone()));
                        let tag = user.unwrap_or_else(|| "-".to_owned());
                        let mut buf = [0; 256];
                        while let Ok(n @ 1..) = stream.read(&mut buf).await {
                            let reply = [tag.as_bytes(), b":", &buf[..n]].concat();
                            if stream.write_all(&reply).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn outcome(
    rx: &mut mpsc::UnboundedReceiver<Result<Option<String>, String>>,
) -> Result<Option<String>, String> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no server handshake outcome")
        .unwrap()
}

/// Sends `msg` and returns the echo, or the error reading it.
async fn echo(stream: &mut ClientTls<TcpStream>, msg: &str) -> std::io::Result<String> {
    stream.write_all(msg.as_bytes()).await?;
    let mut buf = vec![0; 256];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("no echo")?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A client handshake and echo, whichever side reports the failure (with
/// TLS 1.3 a refused client certificate surfaces after the client's side
/// of the handshake).
async fn try_session(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<String> {
    let mut stream = tls_connect(addr, config).await?;
    echo(&mut stream, "hi").await
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn handshake_without_client_certificates() {
    let pki = Pki::new();
    let tls = pki.handle(ClientCerts::None, TlsService::Mqtt);
    assert!(tls.server_config().alpn_protocols.is_empty());
    let (addr, mut outcomes) = echo_server(tls).await;

    let mut stream = tls_connect(addr, client_config(&pki.ca, None, &[]))
        .await
        .unwrap();
    assert_eq!(server_cn(&stream), "server-1");
    assert_eq!(echo(&mut stream, "hi").await.unwrap(), "-:hi");
    assert_eq!(outcome(&mut outcomes).await, Ok(None));

    // A client certificate is not asked for, so it proves nothing.
    let alice = pki.ca.client("alice");
    let reply = try_session(addr, client_config(&pki.ca, Some(&alice), &[])).await;
    assert_eq!(reply.unwrap(), "-:hi");
    assert_eq!(outcome(&mut outcomes).await, Ok(None));
}

#[tokio::test]
async fn required_client_certificate() {
    let pki = Pki::new();
    let (addr, mut outcomes) =
        echo_server(pki.handle(ClientCerts::Required, TlsService::Mqtt)).await;

    // Without a certificate: refused.
    let refused = try_session(addr, client_config(&pki.ca, None, &[])).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(outcome(&mut outcomes).await.is_err());

    // With a certificate from another CA: refused.
    let mallory = Ca::new("other CA").client("mallory");
    let refused = try_session(addr, client_config(&pki.ca, Some(&mallory), &[])).await;
    assert!(refused.is_err(), "{refused:?}");
    let error = outcome(&mut outcomes).await.unwrap_err();
    assert!(error.to_lowercase().contains("issuer"), "{error}");

    // A server certificate is not a client certificate (key usage).
    let server = pki.ca.server("localhost");
    let refused = try_session(addr, client_config(&pki.ca, Some(&server), &[])).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(outcome(&mut outcomes).await.is_err());

    // A trusted certificate: its CN is the username.
    let alice = pki.ca.client("alice");
    let reply = try_session(addr, client_config(&pki.ca, Some(&alice), &[])).await;
    assert_eq!(reply.unwrap(), "alice:hi");
    assert_eq!(outcome(&mut outcomes).await, Ok(Some("alice".to_owned())));
}

#[tokio::test]
async fn optional_client_certificate() {
    let pki = Pki::new();
    let (addr, mut outcomes) =
        echo_server(pki.handle(ClientCerts::Optional, TlsService::Mqtt)).await;

    let reply = try_session(addr, client_config(&pki.ca, None, &[])).await;
    assert_eq!(reply.unwrap(), "-:hi");
    assert_eq!(outcome(&mut outcomes).await, Ok(None));

    let bob = pki.ca.client("bob");
    let reply = try_session(addr, client_config(&pki.ca, Some(&bob), &[])).await;
    assert_eq!(reply.unwrap(), "bob:hi");
    assert_eq!(outcome(&mut outcomes).await, Ok(Some("bob".to_owned())));

    // Optional means "verified if sent": an untrusted one is still refused.
    let mallory = Ca::new("other CA").client("mallory");
    let refused = try_session(addr, client_config(&pki.ca, Some(&mallory), &[])).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(outcome(&mut outcomes).await.is_err());
}

#[test]
fn username_is_the_common_name() {
    let ca = Ca::new("test CA");
    assert_eq!(
        username_of(&ca.client("carol").der(), UsernameFrom::Cn).as_deref(),
        Some("carol")
    );
    // No CN at all: no username.
    let mut params = CertificateParams::new(vec!["x.example".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Org");
    let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    assert_eq!(username_of(cert.der(), UsernameFrom::Cn), None);
    // Not a certificate.
    assert_eq!(
        username_of(&CertificateDer::from(vec![1, 2, 3]), UsernameFrom::Cn),
        None
    );
}

#[tokio::test]
async fn a_stalled_handshake_times_out() {
    let pki = Pki::new();
    let tls = pki.handle(ClientCerts::None, TlsService::Mqtt);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _silent = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let started = std::time::Instant::now();
    let error = tls
        .handshake_within(tcp, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() < WAIT);
    assert_eq!(HANDSHAKE_TIMEOUT, Duration::from_secs(10));
}

#[test]
fn bad_files_are_refused_naming_them() {
    let pki = Pki::new();
    let error = |config: &TlsConfig| {
        format!(
            "{:#}",
            TlsAcceptorHandle::new(config, TlsService::Mqtt).unwrap_err()
        )
    };
    let mut config = pki.config(ClientCerts::Required);
    config.client_ca = Some(pki.path("missing.pem"));
    assert!(error(&config).contains("missing.pem"), "{}", error(&config));

    let mut config = pki.config(ClientCerts::None);
    std::fs::write(pki.path("empty.pem"), "").unwrap();
    config.cert = Some(pki.path("empty.pem"));
    assert!(
        error(&config).contains("no PEM certificate"),
        "{}",
        error(&config)
    );

    // A key that is not the certificate's.
    let other = pki.ca.server("other");
    std::fs::write(pki.path("other.key"), &other.key_pem).unwrap();
    let mut config = pki.config(ClientCerts::None);
    config.key = Some(pki.path("other.key"));
    assert!(error(&config).contains("usable pair"), "{}", error(&config));

    // Client certificates need a CA.
    let mut config = pki.config(ClientCerts::Optional);
    config.client_ca = None;
    assert!(error(&config).contains("client_ca"), "{}", error(&config));

    // `client_ca` is not read when client certificates are not requested.
    let mut config = pki.config(ClientCerts::None);
    config.client_ca = Some(pki.path("missing.pem"));
    TlsAcceptorHandle::new(&config, TlsService::Mqtt).unwrap();
}

#[tokio::test]
async fn reload_swaps_certificates_for_new_handshakes_only() {
    let pki = Pki::new();
    let tls = pki.handle(ClientCerts::Optional, TlsService::Mqtt);
    let (addr, _outcomes) = echo_server(tls.clone()).await;
    let alice = pki.ca.client("alice");
    let config = client_config(&pki.ca, Some(&alice), &[]);

    let mut before = tls_connect(addr, config.clone()).await.unwrap();
    assert_eq!(server_cn(&before), "server-1");
    assert_eq!(echo(&mut before, "a").await.unwrap(), "alice:a");

    pki.install_server(&pki.ca.server("server-2"));
    tls.reload().unwrap();

    let mut after = tls_connect(addr, config.clone()).await.unwrap();
    assert_eq!(server_cn(&after), "server-2");
    assert_eq!(echo(&mut after, "b").await.unwrap(), "alice:b");
    // The connection made before is untouched.
    assert_eq!(echo(&mut before, "c").await.unwrap(), "alice:c");
    assert_eq!(server_cn(&before), "server-1");

    // A bad certificate file: the reload fails and the last good
    // configuration stays.
    let good = tls.server_config();
    replace(
        &pki.path("server.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n",
    );
    let error = format!("{:#}", tls.reload().unwrap_err());
    assert!(error.contains("server.pem"), "{error}");
    assert!(Arc::ptr_eq(&good, &tls.server_config()));
    // A certificate that does not match the key: refused too.
    replace(&pki.path("server.pem"), &pki.ca.server("server-3").cert_pem);
    assert!(tls.reload().is_err());
    let mut still = tls_connect(addr, config.clone()).await.unwrap();
    assert_eq!(server_cn(&still), "server-2");
    assert_eq!(echo(&mut still, "d").await.unwrap(), "alice:d");

    // The CA is reloaded too: a client of a new CA becomes trusted.
    let new_ca = Ca::new("new CA");
    pki.install_server(&pki.ca.server("server-4"));
    replace(&pki.path("ca.pem"), &new_ca.pem());
    tls.reload().unwrap();
    let dave = new_ca.client("dave");
    let reply = try_session(addr, client_config(&pki.ca, Some(&dave), &[])).await;
    assert_eq!(reply.unwrap(), "dave:hi");
    let refused = try_session(addr, client_config(&pki.ca, Some(&alice), &[])).await;
    assert!(refused.is_err(), "{refused:?}");
}

/// Waits until `tls` serves a configuration other than `old`.
async fn wait_for_new_config(tls: &TlsAcceptorHandle, old: &Arc<ServerConfig>) {
    tokio::time::timeout(WAIT, async {
        while Arc::ptr_eq(old, &tls.server_config()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the new certificate was not loaded in time");
}

#[tokio::test]
async fn changed_files_are_picked_up_by_the_poll() {
    let pki = Pki::new();
    let tls = pki.handle(ClientCerts::None, TlsService::Mqtt);
    let (addr, _outcomes) = echo_server(tls.clone()).await;
    let old = tls.server_config();

    // Unchanged files are not reloaded.
    assert!(!tls.reload_if_changed());
    // A bad file is tried once, then left alone until it changes again.
    replace(&pki.path("server.pem"), "garbage");
    assert!(tls.reload_if_changed());
    assert!(!tls.reload_if_changed());
    assert!(Arc::ptr_eq(&old, &tls.server_config()));

    let reloader = tls
        .spawn_reloader_every(Duration::from_millis(100), std::future::pending())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(Arc::ptr_eq(&old, &tls.server_config()));

    pki.install_server(&pki.ca.server("server-2"));
    wait_for_new_config(&tls, &old).await;
    let stream = tls_connect(addr, client_config(&pki.ca, None, &[]))
        .await
        .unwrap();
    assert_eq!(server_cn(&stream), "server-2");
    reloader.abort();
}

#[tokio::test]
async fn sighup_reloads() {
    let pki = Pki::new();
    let tls = pki.handle(ClientCerts::None, TlsService::Mqtt);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A poll too slow to matter: only the signal can reload.
    let reloader = tls
        .spawn_reloader_every(Duration::from_secs(3600), async move {
            let _ = stopped.await;
        })
        .unwrap();
    let old = tls.server_config();
    pki.install_server(&pki.ca.server("server-2"));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_new_config(&tls, &old).await;
    let (addr, _outcomes) = echo_server(tls.clone()).await;
    let stream = tls_connect(addr, client_config(&pki.ca, None, &[]))
        .await
        .unwrap();
    assert_eq!(server_cn(&stream), "server-2");

    // Shutdown ends the reloader.
    drop(stop);
    tokio::time::timeout(WAIT, reloader).await.unwrap().unwrap();
}

/// An MQTT 5 client over any stream, enough for CONNECT and PING.
async fn mqtt_connect<S>(stream: &mut S, client_id: &str) -> mqdb_codec::ReasonCode
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use mqdb_codec::{Connect, Limits, Packet, Version, decode, encode};

    let connect = Connect {
        protocol: Version::V5,
        clean_start: true,
        keep_alive: 30,
        properties: Default::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    };
    let mut out = BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), Version::V5, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let packet = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(p) = decode(&mut buf, Version::V5, &Limits::default()).unwrap() {
                return p;
            }
            assert_ne!(stream.read_buf(&mut buf).await.unwrap(), 0, "closed");
        }
    })
    .await
    .expect("no CONNACK");
    match packet {
        Packet::ConnAck(ack) => ack.reason_code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A broker requiring authentication over a fresh store, with user `alice`
/// (no roles).
async fn broker_with_alice(dir: &Path) -> mqdb_broker::Broker {
    let store = mqdb_storage::Store::open(mqdb_storage::StoreConfig {
        path: dir.join("data"),
        sync: false,
        node: 0,
    })
    .unwrap();
    let db = mqdb_resource::Database::new(store, mqdb_resource::Schema::empty());
    let broker = mqdb_broker::Broker::start(
        db,
        mqdb_broker::BrokerConfig {
            require_authentication: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    broker
        .security()
        .users()
        .add("alice", b"not sent by the tests", Vec::new())
        .await
        .unwrap();
    broker
}

#[tokio::test]
async fn mqtts_serves_the_broker_with_certificate_users() {
    use mqdb_codec::ReasonCode;

    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let broker = broker_with_alice(data.path()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_mqtts(
        broker.clone(),
        listener,
        pki.handle(ClientCerts::Optional, TlsService::Mqtt),
        async move {
            let _ = stopped.await;
        },
    ));

    // A socket that never says anything, and one that speaks plain MQTT,
    // do not hold up the TLS clients behind them.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    // CONNECT, 3.1.1, client id "" (long enough to be read as a TLS record
    // header, and refused as one).
    plain
        .write_all(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0])
        .await
        .unwrap();

    // The certificate is alice's credential: no user name, no password.
    let alice = pki.ca.client("alice");
    let mut stream = tls_connect(addr, client_config(&pki.ca, Some(&alice), &[]))
        .await
        .unwrap();
    assert_eq!(mqtt_connect(&mut stream, "a").await, ReasonCode::Success);

    // A trusted certificate of someone who is not a user is refused by the
    // broker; no certificate and no credentials too (authentication is on).
    let zed = pki.ca.client("zed");
    let mut refused = tls_connect(addr, client_config(&pki.ca, Some(&zed), &[]))
        .await
        .unwrap();
    assert_eq!(
        mqtt_connect(&mut refused, "z").await,
        ReasonCode::NotAuthorized
    );
    let mut refused = tls_connect(addr, client_config(&pki.ca, None, &[]))
        .await
        .unwrap();
    assert_eq!(
        mqtt_connect(&mut refused, "n").await,
        ReasonCode::NotAuthorized
    );

    // The plain-TCP client got no MQTT answer: its handshake failed.
    let mut byte = [0; 1];
    let read = tokio::time::timeout(WAIT, plain.read(&mut byte))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)) || byte[0] == 0x15,
        "{read:?}"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    // Open connections outlive the accept loop.
    stream.write_all(&[0xC0, 0x00]).await.unwrap(); // PINGREQ
    let mut resp = [0; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp, [0xD0, 0x00]); // PINGRESP
    // New connections are not accepted any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn https_listener_yields_finished_handshakes() {
    fn assert_send<T: Send>(_: &T) {}

    let pki = Pki::new();
    let tls = pki.handle(ClientCerts::Optional, TlsService::Https);
    assert_eq!(tls.server_config().alpn_protocols, [b"http/1.1".to_vec()]);
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let mut listener = HttpsListener::new(tcp, tls).unwrap();
    assert_eq!(listener.local_addr().unwrap().remote_addr, addr);
    assert_send(&listener.accept());

    // A stalled handshake and a failed one do not block the next client.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let erin = pki.ca.client("erin");
    let client = tokio::spawn(async move {
        let mut stream = tls_connect(
            addr,
            client_config(&pki.ca, Some(&erin), &[b"h2", b"http/1.1"]),
        )
        .await
        .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let local = stream.get_ref().0.local_addr().unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        (local, reply)
    });
    let (mut stream, peer) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap();
    assert_eq!(peer.cert_username.as_deref(), Some("erin"));
    let mut request = vec![0; 64];
    let n = stream.read(&mut request).await.unwrap();
    assert!(request[..n].starts_with(b"GET / HTTP/1.1"));
    stream
        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let (local, reply) = client.await.unwrap();
    assert_eq!(peer.remote_addr, local);
    let info = mqdb_http::PeerInfo::from(peer);
    assert!(info.secure);
    assert_eq!(info.addr, Some(local));
    assert_eq!(info.cert_username.as_deref(), Some("erin"));
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");

    // Dropping the listener closes the port.
    drop(listener);
    tokio::time::timeout(WAIT, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the port stays open after the listener is dropped");
}
