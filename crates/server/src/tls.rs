//! TLS for the MQTT and HTTP listeners (SPEC §2 transports, §5 mTLS), with
//! rustls and its pure-Rust `ring` provider.
//!
//! Owns turning a `[mqtt.tls]` / `[http.tls]` section into a rustls
//! [`ServerConfig`] (certificate chain, key, client-certificate verifier over
//! the `client_ca` bundle), keeping it current without a restart (SIGHUP and
//! a 2 s modification-time poll of the files, see [`TlsAcceptorHandle`]),
//! and the username a verified client certificate proves
//! ([`cert_username`]). The accept loops over TLS are in [`listen`]: MQTTS
//! ([`serve_mqtts`]) and the HTTPS listener for axum ([`HttpsListener`]).
//!
//! Knows nothing of MQTT or HTTP beyond ALPN: what a connection carries is
//! the broker's and the HTTP crate's business. Every config is built with an
//! explicit `ring` provider, never a process-wide default one.

mod listen;
#[cfg(test)]
mod tests;

pub(crate) use listen::{HttpsListener, serve_mqtts};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{ClientCerts, TlsConfig, UsernameFrom};

/// How long a client has to complete the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificate files' modification times are checked.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a TLS listener carries; decides the ALPN protocols offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsService {
    /// MQTTS: no ALPN (MQTT clients rarely send one; none is needed).
    Mqtt,
    /// HTTPS and wss://: ALPN `http/1.1`, the only HTTP version served.
    Https,
}

impl TlsService {
    /// The listener's name in logs, as in `Config::listeners`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtts",
            Self::Https => "https",
        }
    }

    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Self::Mqtt => Vec::new(),
            Self::Https => vec![b"http/1.1".to_vec()],
        }
    }
}

/// The files a TLS listener is built from, copied out of its config section.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    /// The CA bundle, kept only when client certificates are requested.
    client_ca: Option<PathBuf>,
    client_certs: ClientCerts,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// What identifies each file's current version.
    fn stamps(&self) -> Vec<Option<FileStamp>> {
        self.paths().map(FileStamp::of).collect()
    }
}

/// A file version as seen by `stat`: a change of any field means the file
/// was rewritten or replaced. The inode catches a replacement by rename or
/// symlink swap (as Kubernetes secrets do) that keeps mtime and length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl FileStamp {
    /// `None` when the file cannot be read (missing, for instance): that is
    /// also a state whose change triggers a reload.
    fn of(path: &Path) -> Option<Self> {
        // `metadata` follows symlinks: the stamp is the target's.
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt as _;
                (meta.dev(), meta.ino())
            },
        })
    }
}

/// The current TLS configuration of one listener, shared by its accept loop
/// and its reloader; cheap to clone.
///
/// Every handshake reads the configuration once, so a reload affects new
/// handshakes only; established connections keep the configuration they
/// were made with.
#[derive(Debug, Clone)]
pub(crate) struct TlsAcceptorHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: TlsService,
    files: TlsFiles,
    username_from: UsernameFrom,
    /// A `std` lock, not tokio's nor a lock-free swap: it is read once per
    /// handshake and held only to clone an `Arc` (never across `.await`),
    /// and written only on a reload, so it is never contended for longer
    /// than that clone; an async lock would make every handshake await for
    /// nothing, and `arc-swap` is not worth a dependency here. Writing is
    /// one assignment, so a poisoned lock never holds a half-made value and
    /// poisoning is ignored.
    current: RwLock<Arc<ServerConfig>>,
    /// The stamps of the files as of the last load attempt, successful or
    /// not: a bad file is warned about once, not at every poll. Also the
    /// lock that serialises reloads.
    seen: Mutex<Vec<Option<FileStamp>>>,
}

impl TlsAcceptorHandle {
    /// Loads the certificate, key and (when client certificates are
    /// requested) CA bundle that `tls` names. Fails, naming the file, if
    /// any is missing or invalid, or if `tls` has no certificate.
    pub(crate) fn new<P>(tls: &TlsConfig<P>, service: TlsService) -> Result<Self> {
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            bail!("{}: TLS needs both `cert` and `key`", service.name());
        };
        let client_ca = match tls.client_certs {
            ClientCerts::None => None,
            ClientCerts::Optional | ClientCerts::Required => {
                Some(tls.client_ca.clone().ok_or_else(|| {
                    anyhow!("{}: client certificates need `client_ca`", service.name())
                })?)
            }
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca,
            client_certs: tls.client_certs,
        };
        // Stamps first: a file changed while being read is reloaded at the
        // next poll.
        let stamps = files.stamps();
        let config = build_server_config(&files, service)
            .with_context(|| format!("{}: cannot load the TLS configuration", service.name()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                files,
                username_from: tls.username_from,
                current: RwLock::new(Arc::new(config)),
                seen: Mutex::new(stamps),
            }),
        })
    }

    /// The listener's name in logs (`mqtts` or `https`).
    pub(crate) fn name(&self) -> &'static str {
        self.inner.service.name()
    }

    /// Which part of a client certificate is the username.
    pub(crate) fn username_from(&self) -> UsernameFrom {
        self.inner.username_from
    }

    /// The configuration new handshakes use.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(
            &self
                .inner
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// An acceptor over the current configuration.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config())
    }

    /// Rebuilds the configuration from the files and swaps it in. On error
    /// the previous configuration stays in use.
    pub(crate) fn reload(&self) -> Result<()> {
        self.reload_locked(&mut self.lock_seen())
    }

    /// [`Self::reload`], logging the outcome (`why` says what asked).
    pub(crate) fn reload_logged(&self, why: &str) {
        let result = self.reload();
        self.log_reload(result, why);
    }

    /// Reloads if any file changed since the last load attempt. Returns
    /// whether it tried.
    pub(crate) fn reload_if_changed(&self) -> bool {
        let mut seen = self.lock_seen();
        if *seen == self.inner.files.stamps() {
            return false;
        }
        let result = self.reload_locked(&mut seen);
        drop(seen);
        self.log_reload(result, "files changed");
        true
    }

    /// Holding `seen` serialises reloads, so an older build can never
    /// replace a newer one. Handshakes never take this lock.
    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Vec<Option<FileStamp>>> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn reload_locked(&self, seen: &mut Vec<Option<FileStamp>>) -> Result<()> {
        // Stamps first: a file changed while being read is retried at the
        // next poll.
        *seen = self.inner.files.stamps();
        let config = build_server_config(&self.inner.files, self.inner.service)?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    fn log_reload(&self, result: Result<()>, why: &str) {
        match result {
            Ok(()) => tracing::info!(
                listener = self.name(),
                trigger = why,
                "TLS certificates reloaded"
            ),
            Err(error) => tracing::warn!(
                listener = self.name(),
                trigger = why,
                error = format!("{error:#}"),
                "TLS reload failed; the previous certificates stay in use"
            ),
        }
    }

    /// Starts reloading on SIGHUP and whenever the files change (checked
    /// every [`POLL_INTERVAL`]), until `shutdown` completes. The SIGHUP
    /// handler is installed before this returns, so a SIGHUP sent afterwards
    /// reloads rather than ends the process.
    pub(crate) fn spawn_reloader(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<tokio::task::JoinHandle<()>> {
        self.spawn_reloader_every(POLL_INTERVAL, shutdown)
    }

    fn spawn_reloader_every(
        &self,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let handle = self.clone();
        Ok(tokio::spawn(async move {
            tokio::pin!(shutdown);
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate
            loop {
                #[cfg(unix)]
                let sighup = hangup.recv();
                #[cfg(not(unix))]
                let sighup = std::future::pending::<Option<()>>();
                let trigger = tokio::select! {
                    () = &mut shutdown => return,
                    Some(()) = sighup => "SIGHUP",
                    _ = ticks.tick() => "poll",
                };
                // File reads and parsing are blocking work.
                let handle = handle.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if trigger == "SIGHUP" {
                        handle.reload_logged(trigger);
                    } else {
                        handle.reload_if_changed();
                    }
                })
                .await;
            }
        }))
    }

    /// Completes the TLS handshake on an accepted socket within
    /// [`HANDSHAKE_TIMEOUT`], returning the stream and the username of the
    /// verified client certificate, if any.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, Option<String>)> {
        self.handshake_within(tcp, HANDSHAKE_TIMEOUT).await
    }

    async fn handshake_within(
        &self,
        tcp: TcpStream,
        limit: Duration,
    ) -> io::Result<(TlsStream<TcpStream>, Option<String>)> {
        let acceptor = self.acceptor();
        let stream = tokio::time::timeout(limit, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let username = cert_username(stream.get_ref().1, self.username_from());
        Ok((stream, username))
    }
}

/// The username a connection's verified client certificate proves: the
/// subject's (first) common name of the leaf. `None` without a client
/// certificate, or when the leaf has no usable CN.
///
/// rustls exposes peer certificates only once its verifier accepted them,
/// so this never reads an unverified certificate.
pub(crate) fn cert_username(conn: &ServerConnection, from: UsernameFrom) -> Option<String> {
    username_of(conn.peer_certificates()?.first()?, from)
}

/// The username in a (verified) leaf certificate.
pub(crate) fn username_of(cert: &CertificateDer<'_>, from: UsernameFrom) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    match from {
        UsernameFrom::Cn => cert
            .subject()
            .iter_common_name()
            .next()?
            .as_str()
            .ok()
            .filter(|cn| !cn.is_empty())
            .map(str::to_owned),
    }
}

/// Builds a rustls server configuration from the files, with the `ring`
/// provider.
fn build_server_config(files: &TlsFiles, service: TlsService) -> Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a private key from `{}`", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("the ring provider supports no safe TLS version")?;
    let builder = match (files.client_certs, &files.client_ca) {
        (ClientCerts::None, _) => builder.with_no_client_auth(),
        (_, None) => bail!("client certificates need `client_ca`"),
        (policy, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("bad CA certificate in `{}`", ca.display()))?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            if policy == ClientCerts::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().with_context(|| {
                format!("cannot verify client certificates with `{}`", ca.display())
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "certificate `{}` and key `{}` do not make a usable pair",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = service.alpn();
    Ok(config)
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from `{}`", path.display()))?;
    if certs.is_empty() {
        bail!("no PEM certificate in `{}`", path.display());
    }
    Ok(certs)
}
