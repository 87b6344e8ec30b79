//! How a benchmark connection reaches the broker: plain TCP, TLS
//! (tokio-rustls with the `ring` provider), MQTT over WebSocket
//! (tokio-tungstenite, see [`ws`](super::ws)) or WebSocket over TLS. Every
//! kind ends as one boxed byte stream ([`BoxedIo`]), so the client above it
//! and the workloads are the same for all of them.
//!
//! The TLS client configuration is built once per run from `--ca` (trust
//! these CAs), or `--insecure` (accept any certificate: [`AcceptAnyCert`]),
//! and `--cert`/`--key` (mutual TLS). Session resumption is off unless
//! `--tls-resume` is given, so each connection costs a full handshake, as
//! it would for distinct clients.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use super::client::HANDSHAKE_TIMEOUT;
use super::ws;

/// A byte stream to the broker, whatever carries it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> Io for T {}

/// An open transport, ready for MQTT.
pub(crate) type BoxedIo = Box<dyn Io>;

/// What `--tls` and its options ask for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsOptions<'a> {
    /// PEM file of the CA(s) to trust.
    pub(crate) ca: Option<&'a Path>,
    /// Accept any server certificate.
    pub(crate) insecure: bool,
    /// Client certificate chain and key (PEM), for mutual TLS.
    pub(crate) cert: Option<&'a Path>,
    pub(crate) key: Option<&'a Path>,
    /// Sent as SNI and verified against the certificate; an IP address is
    /// verified as one.
    pub(crate) server_name: &'a str,
    /// Allow session resumption across connections.
    pub(crate) resume: bool,
}

/// How to reach the broker, shared (cheaply cloned) by every connection.
#[derive(Clone)]
pub(crate) struct Transport {
    tls: Option<Tls>,
    /// The WebSocket request path, for MQTT over WebSocket.
    ws_path: Option<String>,
}

#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.as_ref().map(|t| &t.server_name))
            .field("ws_path", &self.ws_path)
            .finish()
    }
}

impl Transport {
    /// TLS if `tls` is given, WebSocket on `ws_path` if given (both: wss).
    /// Reads the certificate files now, so a bad file fails the run before
    /// any connection.
    pub(crate) fn new(tls: Option<TlsOptions<'_>>, ws_path: Option<&str>) -> Result<Self> {
        if let Some(path) = ws_path.filter(|path| !path.starts_with('/')) {
            bail!("--ws-path must start with `/`, got {path:?}");
        }
        let tls = match tls {
            Some(options) => Some(Tls {
                connector: TlsConnector::from(Arc::new(client_config(&options)?)),
                server_name: ServerName::try_from(options.server_name.to_owned())
                    .map_err(|e| anyhow!("bad TLS server name {:?}: {e}", options.server_name))?,
            }),
            None => None,
        };
        Ok(Transport {
            tls,
            ws_path: ws_path.map(str::to_owned),
        })
    }

    /// Connects to `host:port` and does every handshake of the transport
    /// (TCP, then TLS, then WebSocket) before `deadline`. `lean`: small
    /// buffers, for many mostly idle connections.
    pub(crate) async fn open(
        &self,
        host: &str,
        port: u16,
        lean: bool,
        deadline: Instant,
    ) -> Result<BoxedIo> {
        let tcp = timeout_at(deadline, TcpStream::connect((host, port)))
            .await
            .map_err(|_| anyhow!("connect timed out after {HANDSHAKE_TIMEOUT:?}"))?
            .with_context(|| format!("connecting to {host}:{port}"))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let stream: BoxedIo = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(
                timeout_at(
                    deadline,
                    tls.connector.connect(tls.server_name.clone(), tcp),
                )
                .await
                .map_err(|_| anyhow!("TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}"))?
                .with_context(|| format!("TLS handshake with {host}:{port}"))?,
            ),
        };
        match &self.ws_path {
            None => Ok(stream),
            Some(path) => {
                let secure = self.tls.is_some();
                ws::handshake(stream, host, port, path, secure, lean, deadline).await
            }
        }
    }
}

/// The rustls client configuration for `options`.
fn client_config(options: &TlsOptions<'_>) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("choosing the TLS protocol versions")?;
    let builder = match (options.insecure, options.ca) {
        (true, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert {
                algorithms: provider.signature_verification_algorithms,
            })),
        (false, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading --ca {}", ca.display()))?;
            for cert in certs {
                let cert = cert.with_context(|| format!("reading --ca {}", ca.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate of --ca {}", ca.display()))?;
            }
            if roots.is_empty() {
                bail!("--ca {} holds no PEM certificate", ca.display());
            }
            builder.with_root_certificates(roots)
        }
        (false, None) => bail!(
            "--tls needs --ca FILE (the CA that signed the broker's certificate) \
             or --insecure (accept any certificate)"
        ),
    };
    let mut config = match (options.cert, options.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| format!("reading --cert {}", cert.display()))?;
            if chain.is_empty() {
                bail!("--cert {} holds no PEM certificate", cert.display());
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading --key {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("--cert and --key do not make a client certificate")?
        }
        _ => bail!("--cert and --key go together"),
    };
    if !options.resume {
        config.resumption = Resumption::disabled();
    }
    Ok(config)
}

/// `--insecure`: accepts any server certificate. **For benchmarks only**:
/// it gives no protection against impersonation, only the encryption and
/// the cost of TLS. The handshake signature is still checked against the
/// certificate presented, so the client's share of the work is the same as
/// with verification minus the chain check.
#[derive(Debug)]
struct AcceptAnyCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
