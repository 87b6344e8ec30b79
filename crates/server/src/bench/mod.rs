//! `mqdb bench`: a load generator for any MQTT broker (3.1.1 or 5.0 over
//! TCP, TLS, WebSocket or WebSocket over TLS), built on `mqdb-codec` and
//! tokio, one task per connection, with batched writes and reads.
//!
//! Workloads: `fanin` (P publishers -> S wildcard subscribers, unpaced),
//! `fanout` (1 paced publisher -> N subscribers), `latency` (1 paced
//! publisher -> 1 subscriber), `pairs` (N publisher -> subscriber pairs,
//! each on its own topic), `retained` (N retained QoS 1 publishes to
//! distinct topics, W in flight), `retained-read` (N stored retained
//! messages delivered to one new subscriber) and `conns` (N connections
//! opened at a given rate, held, then closed: connection set-up cost).
//! Every message carries a stamp (send time, publisher, sequence number), so
//! every message is counted: loss and duplicates are reported, never
//! hidden, and latency is measured end to end with an HDR histogram.
//! Interactive runs show a progress line on stderr ([`progress`]).
//!
//! Every wait is bounded: connection set-up (transport handshakes included)
//! by [`client::HANDSHAKE_TIMEOUT`], the run by its duration plus
//! [`pubsub::GRACE`], after which it reports what it has.
//!
//! It must not depend on the broker or the store: it talks to brokers only
//! over the wire, so its numbers mean the same for mqdb and for its peers.

mod client;
mod conns;
mod latency;
mod progress;
mod publisher;
mod pubsub;
mod report;
mod retained_read;
mod stamp;
mod subscriber;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_pubsub;
mod transport;
mod workloads;
mod ws;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use mqdb_codec::Version;
use tokio::time::Instant;

use self::client::Target;
use self::transport::{TlsOptions, Transport};

pub(crate) use self::workloads::Workload;

/// `mqdb bench <workload> [options]`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    workload: Workload,
}

/// Options every workload takes: the broker, the transport, the
/// credentials and the output.
#[derive(Debug, Clone, Args)]
pub(crate) struct BaseArgs {
    /// Broker host (also the TLS server name unless --sni is given)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port [default: 1883; 8883 with --tls; with --ws the HTTP
    /// port: 9926, or 9927 with --ws --tls]
    #[arg(long)]
    port: Option<u16>,
    /// MQTT protocol level: 4 (3.1.1) or 5 (5.0)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    protocol: u8,
    /// User name for CONNECT (sent on every transport)
    #[arg(long)]
    username: Option<String>,
    /// Password for CONNECT (sent on every transport)
    #[arg(long)]
    password: Option<String>,
    /// Print only the final JSON line
    #[arg(long)]
    json: bool,
    /// Connect over TLS (MQTTS; wss:// with --ws); needs --ca or --insecure
    #[arg(long, help_heading = "Transport")]
    tls: bool,
    /// Trust the CA certificate(s) in this PEM file to verify the broker
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls",
        help_heading = "Transport"
    )]
    ca: Option<PathBuf>,
    /// Accept any broker certificate without verifying it (benchmarks
    /// only: no protection against impersonation)
    #[arg(
        long,
        requires = "tls",
        conflicts_with = "ca",
        help_heading = "Transport"
    )]
    insecure: bool,
    /// Client certificate chain (PEM) for mutual TLS; needs --key
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"], help_heading = "Transport")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert
    #[arg(
        long,
        value_name = "FILE",
        requires = "cert",
        help_heading = "Transport"
    )]
    key: Option<PathBuf>,
    /// TLS server name to send and verify [default: --host; an IP address
    /// is verified as one]
    #[arg(
        long,
        value_name = "NAME",
        requires = "tls",
        help_heading = "Transport"
    )]
    sni: Option<String>,
    /// Let connections resume earlier TLS sessions (default: every
    /// connection does a full handshake, as distinct clients would)
    #[arg(long, requires = "tls", help_heading = "Transport")]
    tls_resume: bool,
    /// MQTT over WebSocket (subprotocol `mqtt`, binary frames), on the
    /// broker's HTTP port (mqdb: 9926; 9927 with --tls)
    #[arg(long, help_heading = "Transport")]
    ws: bool,
    /// Request path of the WebSocket handshake
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/mqtt",
        requires = "ws",
        help_heading = "Transport"
    )]
    ws_path: String,
}

impl BaseArgs {
    /// `--port`, or the default of the transport.
    fn port(&self) -> u16 {
        self.port.unwrap_or(match (self.tls, self.ws) {
            (false, false) => 1883,
            (true, false) => 8883,
            (false, true) => 9926,
            (true, true) => 9927,
        })
    }

    /// Where to connect and how; `lean` for many mostly idle connections
    /// (small buffers). Reads the certificate files.
    fn target(&self, lean: bool) -> Result<Target> {
        let tls = if self.tls {
            Some(TlsOptions {
                ca: self.ca.as_deref(),
                insecure: self.insecure,
                cert: self.cert.as_deref(),
                key: self.key.as_deref(),
                server_name: self.sni.as_deref().unwrap_or(&self.host),
                resume: self.tls_resume,
            })
        } else {
            None
        };
        let ws_path = self.ws.then_some(self.ws_path.as_str());
        Ok(Target {
            host: self.host.clone(),
            port: self.port(),
            version: if self.protocol == 5 {
                Version::V5
            } else {
                Version::V311
            },
            username: self.username.clone(),
            password: self.password.clone(),
            client_prefix: format!("mqdb-bench-{}", std::process::id()),
            transport: Transport::new(tls, ws_path)?,
            lean,
        })
    }

    /// `host:port`, as reported.
    fn broker(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port())
        } else {
            format!("{}:{}", self.host, self.port())
        }
    }

    /// The transport's name: `tcp`, `tls`, `ws` or `wss`.
    fn transport_name(&self) -> &'static str {
        match (self.tls, self.ws) {
            (false, false) => "tcp",
            (true, false) => "tls",
            (false, true) => "ws",
            (true, true) => "wss",
        }
    }

    /// `3.1.1` or `5.0`.
    fn mqtt_version(&self) -> &'static str {
        if self.protocol == 5 { "5.0" } else { "3.1.1" }
    }

    /// Whether to draw the progress line: only for a person watching (stdout
    /// and stderr both terminals) who did not ask for JSON only.
    fn progress(&self) -> bool {
        !self.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
    }
}

/// Options of the publish/subscribe workloads.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    #[command(flatten)]
    base: BaseArgs,
    /// QoS of publishes and subscriptions [default: 0; retained: 1;
    /// retained-read: 1, of the reading subscription]
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: Option<u8>,
    /// Payload size in bytes (the first 16 carry the stamp)
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(16..=16 * 1024 * 1024))]
    payload: u64,
    /// Publish for SECS seconds at most [default: 10; 60 with --count;
    /// retained-read: 60, the bound of each phase]
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Publish N messages in total, then stop [retained, retained-read
    /// default: 50000]
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// QoS 1/2 messages in flight per publisher (capped by a 5.0 broker's
    /// Receive Maximum)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    window: u16,
}

impl Common {
    fn target(&self) -> Result<Target> {
        self.base.target(false)
    }

    /// How long publishing may last: `--duration`, else 60 s with
    /// `--count` (which normally ends it sooner), else 10 s.
    fn duration(&self) -> Result<Duration> {
        let secs = match (self.duration, self.count) {
            (Some(secs), _) => secs,
            (None, Some(_)) => 60.0,
            (None, None) => 10.0,
        };
        if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            bail!("--duration must be between 0 and 86400 seconds, got {secs}");
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn payload(&self) -> usize {
        usize::try_from(self.payload).unwrap_or(usize::MAX)
    }
}

/// The run's timetable, known to every connection once set-up is done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Publishing starts.
    pub(crate) go: Instant,
    /// Publishing stops (unless a count stops it sooner).
    pub(crate) end: Instant,
    /// Everything stops and reports what it has.
    pub(crate) deadline: Instant,
}

/// What the coordinator tells every connection task, through a `watch`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Control {
    /// Set when every connection is ready: the start signal.
    pub(crate) schedule: Option<Schedule>,
    /// Set when the publishers have finished: how many messages each
    /// publisher sent (indexed by publisher id), so that every subscriber
    /// knows how many to expect from the publishers it hears.
    pub(crate) sent: Option<Arc<[u64]>>,
}

/// Carries out `mqdb bench`: runs the workload, prints the summary and the
/// JSON line, and fails if a connection failed during the run.
pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (report, json_only) = runtime.block_on(workloads::run(args.workload))?;
    report.print(json_only)?;
    if let Some(fatal) = &report.fatal {
        bail!("{fatal}");
    }
    if report.errors > 0 {
        bail!(
            "{} connection error(s) during the run (see the report)",
            report.errors
        );
    }
    Ok(())
}
