//! TLS end to end against the real `mqdb serve` binary (SPEC §2 transports,
//! §5 mTLS): MQTTS, HTTPS and MQTT over WebSocket over TLS (wss://), with
//! and without client certificates, and certificate reload on SIGHUP.
//!
//! Every test makes its own PKI with rcgen (a CA; a server certificate for
//! `localhost` / 127.0.0.1 signed by it; client certificates CN=`admin` and
//! CN=`stranger` signed by it; a client certificate CN=`admin` signed by
//! another, untrusted CA), writes it with a config file (every listener on
//! port 0) into a temporary directory, and starts `mqdb serve` with
//! `MQDB_ADMIN_PASSWORD`, reading the bound addresses from its log.
//!
//! Scenarios:
//!
//! 1. MQTTS with `client_certs = "optional"`, MQTT 3.1.1 and 5.0:
//!    user/password (right: success; wrong: 4 / 0x86), nothing (5 / 0x87),
//!    certificate CN=admin alone (success), with the right password
//!    (success), with a wrong one (4 / 0x86), with another user name
//!    (5 / 0x87), certificate CN=stranger, not a user (5 / 0x87); a client
//!    certificate from an untrusted CA is refused in the handshake; a client
//!    that does not trust the server's CA fails its handshake and the server
//!    goes on serving others.
//! 2. MQTTS with `client_certs = "required"`: no certificate and an
//!    untrusted certificate are refused by the TLS layer (no CONNACK ever);
//!    a trusted CN=admin certificate connects.
//! 3. HTTPS with `client_certs = "optional"`: HTTP Basic admin (404, then
//!    PUT 204 and GET 200 with the record), no credentials (401), a wrong
//!    password (401), the CN=admin certificate without `Authorization`
//!    (authenticated: 404 / 200), CN=stranger (403).
//! 4. MQTT over wss:// on the HTTPS port (subprotocol `mqtt`): CONNECT with
//!    admin/password (success) and a wrong password (4 / 0x86), CONNECT with
//!    the CN=admin certificate and no credentials (success), and a REST PUT
//!    over HTTPS reaching a `Sensor/#` subscriber over wss:// as a PUBLISH.
//! 5. Certificate reload: the server certificate and key are replaced on
//!    disk (another certificate of the same CA), SIGHUP reloads both
//!    listeners, new handshakes see the new certificate, and the running
//!    server still serves and shuts down cleanly.
//!
//! The clients are blocking (std sockets, `rustls::StreamOwned`, the
//! synchronous `tungstenite` API) with [`WAIT`] as read and write timeout,
//! so every wait is bounded.

mod support;

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqdb_codec::{
    Connect, Disconnect, Limits, Packet, PacketId, PubAck, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, Version, decode, encode,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_tungstenite::tungstenite;
use tungstenite::client::IntoClientRequest as _;

use support::*;

/// The admin password given to the server at first start.
const PASSWORD: &str = "tls-e2e-s3cret";

// ---------------------------------------------------------------- certificates

/// A certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, as PEM.
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

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
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

/// Everything one test's TLS needs.
struct Pki {
    ca: Ca,
    /// A CA the server does not trust (and that does not sign the server).
    other_ca: Ca,
    server: Issued,
    /// CN=admin, signed by `ca`.
    admin: Issued,
    /// CN=stranger (no such user), signed by `ca`.
    stranger: Issued,
    /// CN=admin, signed by `other_ca`.
    rogue: Issued,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new("mqdb test CA");
        let other_ca = Ca::new("untrusted CA");
        Pki {
            server: ca.server("server-1"),
            admin: ca.client("admin"),
            stranger: ca.client("stranger"),
            rogue: other_ca.client("admin"),
            ca,
            other_ca,
        }
    }
}

/// Writes `contents` aside, then renames it over `path`, as a deployment
/// tool replacing a certificate would.
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

// ---------------------------------------------------------------- the server

/// A running `mqdb serve` with MQTTS and HTTPS, and its PKI.
struct Running {
    server: Server,
    mqtts: SocketAddr,
    https: SocketAddr,
    pki: Pki,
    dir: tempfile::TempDir,
}

impl Running {
    /// Starts the server with the given `client_certs` policies of the
    /// MQTTS and HTTPS listeners.
    fn start(mqtt_client_certs: &str, http_client_certs: &str) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ca.pem"), pki.ca.issuer.pem()).unwrap();
        std::fs::write(path("server.pem"), &pki.server.cert_pem).unwrap();
        std::fs::write(path("server.key"), &pki.server.key_pem).unwrap();
        std::fs::write(path("schema.graphql"), "type Sensor @table @export\n").unwrap();
        let tls = |client_certs: &str| {
            format!(
                "port = 0\ncert = {}\nkey = {}\nclient_ca = {}\nclient_certs = \"{client_certs}\"\n\
                 username_from = \"cn\"\n",
                toml_str(&path("server.pem")),
                toml_str(&path("server.key")),
                toml_str(&path("ca.pem")),
            )
        };
        let config = path("mqdb.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\npath = {}\n[schema]\nfiles = [{}]\n\
                 [mqtt]\nhost = \"127.0.0.1\"\nport = 0\n[mqtt.tls]\n{}\
                 [http]\nhost = \"127.0.0.1\"\nport = 0\n[http.tls]\n{}",
                toml_str(&path("data")),
                toml_str(&path("schema.graphql")),
                tls(mqtt_client_certs),
                tls(http_client_certs),
            ),
        )
        .unwrap();
        let mut server = Server::start(
            mqdb(dir.path())
                .args(["serve", "--config"])
                .arg(&config)
                .env("MQDB_ADMIN_PASSWORD", PASSWORD),
        );
        let https = server.logged_address("HTTPS (REST, MQTT over WebSocket) listening");
        let mqtts = server.logged_address("MQTTS listening");
        server.wait_for_line("ready; waiting");
        Running {
            server,
            mqtts,
            https,
            pki,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client trusting the server's CA, with `cert` as client certificate.
    fn client(&self, cert: Option<&Issued>) -> Arc<ClientConfig> {
        client_config(&self.pki.ca, cert, false)
    }

    /// [`Self::client`] offering ALPN `http/1.1`, as browsers do.
    fn https_client(&self, cert: Option<&Issued>) -> Arc<ClientConfig> {
        client_config(&self.pki.ca, cert, true)
    }

    /// SIGTERM; the server must exit successfully.
    fn stop(mut self) {
        assert!(
            matches!(self.server.child.try_wait(), Ok(None)),
            "the server is still running before the shutdown"
        );
        self.server.signal("TERM");
        let status = wait_bounded(&mut self.server.child);
        assert!(status.success(), "mqdb exited with {status}");
    }
}

// ---------------------------------------------------------------- TLS clients

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn client_config(trust: &Ca, cert: Option<&Issued>, http: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.der()).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match cert {
        Some(cert) => builder
            .with_client_auth_cert(vec![cert.der()], cert.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    if http {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Arc::new(config)
}

/// Connects to `addr` as `localhost` and completes the handshake (as far as
/// the client sees it: in TLS 1.3 the server judges the client certificate
/// after the client is done).
fn tls(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    tcp.set_write_timeout(Some(WAIT))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The rustls error inside an I/O error, if that is what it is.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether `error` is a read or write timeout (a hang, never a refusal).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The server certificate a fresh handshake with `addr` presents.
fn served_certificate(addr: SocketAddr, config: Arc<ClientConfig>) -> CertificateDer<'static> {
    let stream = tls(addr, config).unwrap();
    let cert = stream.conn.peer_certificates().unwrap()[0].clone();
    cert.into_owned()
}

// ---------------------------------------------------------------- MQTT

/// A byte transport carrying MQTT: a TLS stream or a WebSocket.
trait Wire {
    fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Appends what arrives to `buf`; `Ok(0)` at the end of the stream.
    fn recv_bytes(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
}

impl Wire for Tls {
    fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)?;
        self.flush()
    }

    fn recv_bytes(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

type Ws = tungstenite::WebSocket<Tls>;

impl Wire for Ws {
    fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.send(tungstenite::Message::Binary(Bytes::copy_from_slice(bytes)))
            .map_err(io::Error::other)
    }

    fn recv_bytes(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.read() {
                Ok(tungstenite::Message::Binary(data)) => {
                    buf.extend_from_slice(&data);
                    if !data.is_empty() {
                        return Ok(data.len());
                    }
                }
                Ok(tungstenite::Message::Close(_)) => return Ok(0),
                Ok(tungstenite::Message::Text(text)) => {
                    return Err(io::Error::other(format!("text message {text:?}")));
                }
                // Pings are answered by tungstenite itself.
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(0);
                }
                Err(tungstenite::Error::Io(error)) => return Err(error),
                Err(error) => return Err(io::Error::other(error)),
            }
        }
    }
}

/// An MQTT client over any [`Wire`].
struct Mqtt<W> {
    wire: W,
    version: Version,
    buf: BytesMut,
}

impl<W: Wire> Mqtt<W> {
    fn new(wire: W, version: Version) -> Self {
        Self {
            wire,
            version,
            buf: BytesMut::new(),
        }
    }

    fn send(&mut self, packet: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).expect("encode");
        self.wire.send_bytes(&out)
    }

    /// The next packet; `Ok(None)` when the server closed the stream.
    fn try_recv(&mut self) -> io::Result<Option<Packet>> {
        loop {
            if let Some(packet) = decode(&mut self.buf, self.version, &Limits::default())
                .expect("the server sent a valid packet")
            {
                return Ok(Some(packet));
            }
            if self.wire.recv_bytes(&mut self.buf)? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next packet; fails the test otherwise.
    fn recv(&mut self) -> Packet {
        match self.try_recv() {
            Ok(Some(packet)) => packet,
            Ok(None) => panic!("the server closed the connection"),
            Err(error) => panic!("no packet: {error}"),
        }
    }

    /// Sends CONNECT and returns the CONNACK code in the version's own
    /// numbering (3.1.1 return code or 5.0 reason code). A refused client
    /// must then see the connection closed.
    fn connect(&mut self, client_id: &str, username: Option<&str>, password: Option<&str>) -> u8 {
        self.send(&Packet::Connect(Box::new(connect_packet(
            self.version,
            client_id,
            username,
            password,
        ))))
        .unwrap();
        let ack = match self.recv() {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        let code = match self.version {
            Version::V5 => ack.reason_code.as_u8(),
            _ => ack.reason_code.to_v3_connack(),
        };
        if code != 0 {
            self.expect_closed();
        }
        code
    }

    /// The server closes the connection without sending anything more.
    fn expect_closed(&mut self) {
        match self.try_recv() {
            Ok(None) => {}
            Ok(Some(packet)) => panic!("expected the connection closed, got {packet:?}"),
            Err(error) if is_timeout(&error) => panic!("the connection stayed open: {error}"),
            // Closed without a TLS close_notify, or reset: closed too.
            Err(_) => {}
        }
    }

    fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default()))
            .unwrap();
        self.expect_closed();
    }
}

fn connect_packet(
    version: Version,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        properties: Default::default(),
        client_id: client_id.into(),
        will: None,
        username: username.map(Into::into),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
    }
}

/// The CONNACK code an MQTTS client gets with `config` and these
/// credentials; a successful client disconnects again.
fn mqtts_code(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    version: Version,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> u8 {
    let stream = tls(addr, config).unwrap_or_else(|e| panic!("handshake failed: {e}"));
    let mut client = Mqtt::new(stream, version);
    let code = client.connect(client_id, username, password);
    if code == 0 {
        client.disconnect();
    }
    code
}

/// How long [`refused_by_tls`] waits for the server's verdict on a client
/// certificate before it sends anything.
const VERDICT: Duration = Duration::from_secs(3);

/// A client with `config` is refused by the server's TLS layer: either the
/// handshake fails, or (TLS 1.3, where the server judges the client
/// certificate after the client finished) the connection ends with an
/// alert and no CONNACK. Returns the client-side error.
fn refused_by_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Error {
    let mut stream = match tls(addr, config) {
        Ok(stream) => stream,
        Err(error) => return error,
    };
    // Wait for the verdict before sending anything: data the server never
    // read would turn its close into a reset, which may discard its alert.
    stream.sock.set_read_timeout(Some(VERDICT)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => return io::Error::new(io::ErrorKind::UnexpectedEof, "closed"),
        Ok(_) => panic!("the server sent data before any CONNECT"),
        Err(error) if is_timeout(&error) => {}
        Err(error) => return error,
    }
    // No verdict yet: a CONNECT must not be answered either.
    stream.sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut client = Mqtt::new(stream, Version::V5);
    if let Err(error) = client.send(&Packet::Connect(Box::new(connect_packet(
        Version::V5,
        "refused",
        Some("admin"),
        Some(PASSWORD),
    )))) {
        return error;
    }
    match client.try_recv() {
        Ok(Some(packet)) => panic!("the TLS layer let the client through: got {packet:?}"),
        Ok(None) => io::Error::new(io::ErrorKind::UnexpectedEof, "closed"),
        Err(error) if is_timeout(&error) => panic!("neither refused nor answered: {error}"),
        Err(error) => error,
    }
}

/// The TLS alert the server sent, from a client-side error.
fn alert(error: &io::Error) -> AlertDescription {
    match rustls_error(error) {
        Some(rustls::Error::AlertReceived(alert)) => *alert,
        _ => panic!("expected a TLS alert from the server, got {error:?}"),
    }
}

// ---------------------------------------------------------------- HTTPS

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One HTTP/1.1 request over a fresh TLS connection (`Connection: close`).
fn https(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    json: Option<&str>,
) -> Response {
    let mut stream = tls(addr, config).unwrap_or_else(|e| panic!("handshake failed: {e}"));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n",
        addr.port()
    );
    if let Some((user, password)) = basic {
        let token = base64(format!("{user}:{password}").as_bytes());
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    if json.is_some() || method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    stream.flush().unwrap();

    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // Closed without a TLS close_notify: the response is complete
            // with `Connection: close`.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => panic!("reading the response to {method} {path}: {e}"),
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body);
    }
    response
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size_text = size_text.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_text, 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------- wss://

/// An MQTT-over-WebSocket connection over TLS to `addr`, path `/mqtt`,
/// subprotocol `mqtt`.
fn wss(addr: SocketAddr, config: Arc<ClientConfig>) -> Ws {
    let stream = tls(addr, config).unwrap_or_else(|e| panic!("handshake failed: {e}"));
    let mut request = format!("wss://localhost:{}/mqtt", addr.port())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static("mqtt"),
    );
    let (ws, response) = tungstenite::client(request, stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake failed: {e}"));
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("mqtt")
    );
    ws
}

// ---------------------------------------------------------------- the tests

const VERSIONS: [Version; 2] = [Version::V311, Version::V5];

/// The code for "bad user name or password" in `version`.
fn bad_credentials(version: Version) -> u8 {
    match version {
        Version::V5 => 0x86,
        _ => 4,
    }
}

/// The code for "not authorised" in `version`.
fn not_authorised(version: Version) -> u8 {
    match version {
        Version::V5 => 0x87,
        _ => 5,
    }
}

#[test]
fn mqtts_with_optional_client_certificates() {
    let running = Running::start("optional", "none");
    let addr = running.mqtts;
    let pki = &running.pki;
    let plain = running.client(None);
    let admin = running.client(Some(&pki.admin));
    let stranger = running.client(Some(&pki.stranger));

    for version in VERSIONS {
        let v = if version == Version::V5 { "5" } else { "3" };
        let id = |name: &str| format!("{name}-v{v}");
        // Password authentication over TLS.
        assert_eq!(
            mqtts_code(
                addr,
                plain.clone(),
                version,
                &id("pw"),
                Some("admin"),
                Some(PASSWORD)
            ),
            0,
            "{version:?}: admin/password"
        );
        assert_eq!(
            mqtts_code(
                addr,
                plain.clone(),
                version,
                &id("bad"),
                Some("admin"),
                Some("wrong")
            ),
            bad_credentials(version),
            "{version:?}: wrong password"
        );
        assert_eq!(
            mqtts_code(addr, plain.clone(), version, &id("anon"), None, None),
            not_authorised(version),
            "{version:?}: no certificate, no credentials"
        );
        // The certificate's CN is the user name.
        assert_eq!(
            mqtts_code(addr, admin.clone(), version, &id("cert"), None, None),
            0,
            "{version:?}: CN=admin alone"
        );
        assert_eq!(
            mqtts_code(
                addr,
                admin.clone(),
                version,
                &id("certpw"),
                Some("admin"),
                Some(PASSWORD)
            ),
            0,
            "{version:?}: CN=admin with the right password"
        );
        assert_eq!(
            mqtts_code(
                addr,
                admin.clone(),
                version,
                &id("certbad"),
                Some("admin"),
                Some("wrong")
            ),
            bad_credentials(version),
            "{version:?}: CN=admin with a wrong password"
        );
        assert_eq!(
            mqtts_code(
                addr,
                admin.clone(),
                version,
                &id("other"),
                Some("someoneelse"),
                None
            ),
            not_authorised(version),
            "{version:?}: CN=admin with another user name"
        );
        assert_eq!(
            mqtts_code(addr, stranger.clone(), version, &id("stranger"), None, None),
            not_authorised(version),
            "{version:?}: CN=stranger (no such user)"
        );
    }

    // A certificate from a CA the server does not trust is refused, not
    // treated as no certificate.
    let error = refused_by_tls(addr, running.client(Some(&pki.rogue)));
    assert_eq!(alert(&error), AlertDescription::UnknownCA, "{error:?}");

    // A client that does not trust the server's CA fails its own handshake.
    let error =
        tls(addr, client_config(&pki.other_ca, None, false)).expect_err("the handshake must fail");
    assert!(
        matches!(
            rustls_error(&error),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{error:?}"
    );
    // ... and the server goes on serving others.
    assert_eq!(
        mqtts_code(
            addr,
            plain,
            Version::V5,
            "after",
            Some("admin"),
            Some(PASSWORD)
        ),
        0
    );
    assert_eq!(
        mqtts_code(addr, admin, Version::V311, "after-cert", None, None),
        0
    );

    running.stop();
}

#[test]
fn mqtts_with_required_client_certificates() {
    let running = Running::start("required", "none");
    let addr = running.mqtts;
    let pki = &running.pki;

    // No certificate, even with the right password: refused by TLS.
    let error = refused_by_tls(addr, running.client(None));
    assert_eq!(
        alert(&error),
        AlertDescription::CertificateRequired,
        "{error:?}"
    );
    // A certificate from an untrusted CA, even with CN=admin.
    let error = refused_by_tls(addr, running.client(Some(&pki.rogue)));
    assert_eq!(alert(&error), AlertDescription::UnknownCA, "{error:?}");
    // The trusted CN=admin certificate, with or without the password.
    let admin = running.client(Some(&pki.admin));
    for version in VERSIONS {
        assert_eq!(
            mqtts_code(addr, admin.clone(), version, "req", None, None),
            0
        );
        assert_eq!(
            mqtts_code(
                addr,
                admin.clone(),
                version,
                "req-pw",
                Some("admin"),
                Some(PASSWORD)
            ),
            0
        );
    }
    // A trusted certificate of an unknown user passes TLS, not MQTT.
    assert_eq!(
        mqtts_code(
            addr,
            running.client(Some(&pki.stranger)),
            Version::V5,
            "s",
            None,
            None
        ),
        0x87
    );

    running.stop();
}

#[test]
fn https_with_basic_auth_and_client_certificates() {
    let running = Running::start("none", "optional");
    let addr = running.https;
    let pki = &running.pki;
    let plain = running.https_client(None);
    let admin = Some(("admin", PASSWORD));

    let get = https(addr, plain.clone(), "GET", "/Sensor/x", admin, None);
    assert_eq!(get.status, 404, "authenticated, no such record");

    let put = https(
        addr,
        plain.clone(),
        "PUT",
        "/Sensor/x",
        admin,
        Some(r#"{"temp":21.5,"unit":"C"}"#),
    );
    assert_eq!(put.status, 204, "{:?}", String::from_utf8_lossy(&put.body));
    let get = https(addr, plain.clone(), "GET", "/Sensor/x", admin, None);
    assert_eq!(get.status, 200);
    assert!(
        get.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{:?}",
        get.headers
    );
    let record = get.json();
    assert_eq!(record["temp"], 21.5, "{record}");
    assert_eq!(record["unit"], "C", "{record}");

    let anonymous = https(addr, plain.clone(), "GET", "/Sensor/x", None, None);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").is_some());
    let wrong = https(
        addr,
        plain,
        "GET",
        "/Sensor/x",
        Some(("admin", "wrong")),
        None,
    );
    assert_eq!(wrong.status, 401);

    // The CN=admin certificate authenticates without `Authorization`.
    let admin_cert = running.https_client(Some(&pki.admin));
    let get = https(addr, admin_cert.clone(), "GET", "/Sensor/x", None, None);
    assert_eq!(get.status, 200);
    assert_eq!(get.json(), record);
    let missing = https(addr, admin_cert.clone(), "GET", "/Sensor/none", None, None);
    assert_eq!(missing.status, 404);
    let with_password = https(addr, admin_cert, "GET", "/Sensor/x", admin, None);
    assert_eq!(with_password.status, 200);

    // A verified certificate of no user: authenticated as nobody, forbidden.
    let stranger = https(
        addr,
        running.https_client(Some(&pki.stranger)),
        "GET",
        "/Sensor/x",
        None,
        None,
    );
    assert_eq!(stranger.status, 403);

    running.stop();
}

#[test]
fn mqtt_over_websocket_over_tls() {
    let running = Running::start("none", "optional");
    let addr = running.https;
    let pki = &running.pki;
    let plain = running.https_client(None);

    // Wrong password, both versions.
    for version in VERSIONS {
        let mut client = Mqtt::new(wss(addr, plain.clone()), version);
        assert_eq!(
            client.connect("ws-bad", Some("admin"), Some("wrong")),
            bad_credentials(version),
            "{version:?}"
        );
    }
    // The client certificate's CN over wss://, no credentials.
    let mut client = Mqtt::new(
        wss(addr, running.https_client(Some(&pki.admin))),
        Version::V311,
    );
    assert_eq!(client.connect("ws-cert", None, None), 0);
    client.disconnect();

    // A subscriber over wss:// sees a REST write made over HTTPS.
    let mut sub = Mqtt::new(wss(addr, plain.clone()), Version::V5);
    assert_eq!(sub.connect("ws-sub", Some("admin"), Some(PASSWORD)), 0);
    let packet_id = PacketId::new(1).unwrap();
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id,
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new("Sensor/#").unwrap(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
    }))
    .unwrap();
    match sub.recv() {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id);
            assert_eq!(ack.reason_codes, vec![ReasonCode::GrantedQos1]);
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }

    let put = https(
        addr,
        plain,
        "PUT",
        "/Sensor/ws1",
        Some(("admin", PASSWORD)),
        Some(r#"{"temp":7}"#),
    );
    assert_eq!(put.status, 204);

    let publish = match sub.recv() {
        Packet::Publish(publish) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert_eq!(publish.topic.as_str(), "Sensor/ws1");
    assert!(!publish.retain, "a live change, not retained");
    let value: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(value["temp"], 7, "{value}");
    if let Some(id) = publish.packet_id {
        sub.send(&Packet::PubAck(PubAck::new(id))).unwrap();
    }
    sub.disconnect();

    running.stop();
}

#[test]
fn sighup_reloads_the_server_certificate() {
    let mut running = Running::start("optional", "optional");
    let pki = &running.pki;
    let old = pki.server.der();
    let mqtts_client = running.client(None);
    let https_client = running.https_client(None);
    assert_eq!(served_certificate(running.mqtts, mqtts_client.clone()), old);
    assert_eq!(served_certificate(running.https, https_client.clone()), old);

    // A new certificate of the same CA (another key, serial and CN).
    let new = pki.ca.server("server-2");
    assert_ne!(new.der(), old);
    replace(&running.path("server.key"), &new.key_pem);
    replace(&running.path("server.pem"), &new.cert_pem);
    running.server.signal("HUP");
    running
        .server
        .wait_for_line("TLS certificates reloaded listener=\"mqtts\" trigger=\"SIGHUP\"");
    running
        .server
        .wait_for_line("TLS certificates reloaded listener=\"https\" trigger=\"SIGHUP\"");

    assert_eq!(
        served_certificate(running.mqtts, mqtts_client.clone()),
        new.der()
    );
    assert_eq!(
        served_certificate(running.https, https_client.clone()),
        new.der()
    );
    assert!(
        matches!(running.server.child.try_wait(), Ok(None)),
        "SIGHUP must not end the server"
    );
    // Both listeners still serve, client certificates included.
    assert_eq!(
        mqtts_code(
            running.mqtts,
            mqtts_client,
            Version::V5,
            "after-hup",
            Some("admin"),
            Some(PASSWORD)
        ),
        0
    );
    let admin = running.client(Some(&running.pki.admin));
    assert_eq!(
        mqtts_code(
            running.mqtts,
            admin,
            Version::V5,
            "after-hup-cert",
            None,
            None
        ),
        0
    );
    let get = https(
        running.https,
        https_client,
        "GET",
        "/Sensor/x",
        Some(("admin", PASSWORD)),
        None,
    );
    assert_eq!(get.status, 404);

    running.stop();
}
