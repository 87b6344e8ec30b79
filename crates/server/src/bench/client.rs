//! One benchmark connection to any MQTT broker, over any transport of
//! [`transport`](super::transport) (TCP, TLS, WebSocket, WebSocket over
//! TLS): CONNECT / CONNACK and SUBSCRIBE / SUBACK with timeouts, then
//! packets in and out through two buffers so that reads and writes are
//! batched (many packets per syscall, or per WebSocket message).
//!
//! It knows nothing of workloads: publishers, subscribers and the
//! connection workload drive it.

use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use mqdb_codec::{
    Connect, ConnectProperties, Limits, Packet, PacketId, QoS, SubAck, Subscribe,
    SubscribeProperties, SubscriptionOptions, TopicFilter, Version, decode, encode,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::{Instant, timeout_at};

use super::transport::{BoxedIo, Transport};

/// How long connecting (every handshake of the transport, then CONNECT /
/// CONNACK) may take, and how long a SUBACK may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The keep-alive announced in CONNECT; idle connections ping at half of it.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Read granularity: one read may bring in this much at once.
const READ_CHUNK: usize = 64 * 1024;

/// Read granularity of a lean connection (mostly idle: CONNACK, PINGRESP).
const LEAN_READ_CHUNK: usize = 1024;

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) version: Version,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// Prefix of every client id, unique per run.
    pub(crate) client_prefix: String,
    pub(crate) transport: Transport,
    /// Small buffers: for many mostly idle connections.
    pub(crate) lean: bool,
}

/// An open MQTT connection after a successful CONNACK.
pub(crate) struct Conn {
    stream: BoxedIo,
    version: Version,
    limits: Limits,
    rbuf: BytesMut,
    read_chunk: usize,
    /// Packets queued by [`Conn::queue`] or written directly, sent by
    /// [`Conn::flush`].
    pub(crate) wbuf: BytesMut,
    /// The broker's Receive Maximum (5.0 CONNACK); 65,535 when absent.
    pub(crate) receive_maximum: u16,
    /// When the last write went out (for keep-alive pings).
    pub(crate) last_write: Instant,
    /// How long the transport took to open (TCP connect and, if any, the
    /// TLS and WebSocket handshakes).
    pub(crate) opened_in: Duration,
    /// From writing CONNECT to reading the CONNACK.
    pub(crate) connack_in: Duration,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("version", &self.version)
            .field("unread", &self.rbuf.len())
            .field("unsent", &self.wbuf.len())
            .field("receive_maximum", &self.receive_maximum)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects as `<prefix>-<role>` with a clean session: opens the
    /// transport, sends CONNECT (with the target's credentials, whatever
    /// the transport) and waits for a successful CONNACK, all within
    /// [`HANDSHAKE_TIMEOUT`].
    pub(crate) async fn connect(target: &Target, role: &str) -> Result<Conn> {
        let start = Instant::now();
        let deadline = start + HANDSHAKE_TIMEOUT;
        let stream = target
            .transport
            .open(&target.host, target.port, target.lean, deadline)
            .await?;
        let opened = Instant::now();
        let read_chunk = if target.lean {
            LEAN_READ_CHUNK
        } else {
            READ_CHUNK
        };
        let mut conn = Conn {
            stream,
            version: target.version,
            limits: Limits::default(),
            rbuf: BytesMut::with_capacity(read_chunk),
            read_chunk,
            wbuf: if target.lean {
                BytesMut::new()
            } else {
                BytesMut::with_capacity(READ_CHUNK)
            },
            receive_maximum: u16::MAX,
            last_write: opened,
            opened_in: opened - start,
            connack_in: Duration::ZERO,
        };
        let keep_alive = u16::try_from(KEEP_ALIVE.as_secs()).unwrap_or(u16::MAX);
        conn.queue(&Packet::Connect(Box::new(Connect {
            protocol: target.version,
            clean_start: true,
            keep_alive,
            properties: ConnectProperties::default(),
            client_id: format!("{}-{role}", target.client_prefix).into(),
            will: None,
            username: target.username.as_deref().map(Into::into),
            password: target.password.clone().map(Bytes::from),
        })))?;
        timeout_at(deadline, conn.flush())
            .await
            .map_err(|_| anyhow!("CONNECT not written within {HANDSHAKE_TIMEOUT:?}"))??;
        let packet = conn.next_before(deadline, "CONNACK").await?;
        conn.connack_in = opened.elapsed();
        match packet {
            Packet::ConnAck(ack) if !ack.reason_code.is_error() => {
                if let Some(max) = ack.properties.receive_maximum {
                    conn.receive_maximum = max.get();
                }
                Ok(conn)
            }
            Packet::ConnAck(ack) => bail!("broker refused CONNECT: {:?}", ack.reason_code),
            other => bail!("expected CONNACK, got {:?}", other.packet_type()),
        }
    }

    /// Subscribes to `filter` at `qos` and waits for a successful SUBACK.
    /// Messages that arrive before it are dropped.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        self.queue_subscribe(filter, qos)?;
        self.flush().await?;
        loop {
            match self.next_before(deadline, "SUBACK").await? {
                Packet::SubAck(ack) => return check_suback(&ack, filter),
                // A retained message may arrive before the SUBACK is read.
                Packet::Publish(_) => {}
                other => bail!("expected SUBACK, got {:?}", other.packet_type()),
            }
        }
    }

    /// Queues a SUBSCRIBE (packet identifier 1) to `filter` at `qos`.
    pub(crate) fn queue_subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::MIN,
            properties: SubscribeProperties::default(),
            filters: vec![(
                TopicFilter::new(filter.to_owned())?,
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            )],
        }))
    }

    /// Encodes `packet` into the write buffer.
    pub(crate) fn queue(&mut self, packet: &Packet) -> Result<()> {
        encode(packet, self.version, &mut self.wbuf).context("encoding a packet")?;
        Ok(())
    }

    /// Writes out everything queued, in one `write_all`, and flushes the
    /// transport (TLS records, one WebSocket message).
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.wbuf)
            .await
            .context("writing to the broker")?;
        self.stream.flush().await.context("writing to the broker")?;
        self.wbuf.clear();
        self.last_write = Instant::now();
        Ok(())
    }

    /// The next complete packet already read, if any.
    pub(crate) fn decoded(&mut self) -> Result<Option<Packet>> {
        decode(&mut self.rbuf, self.version, &self.limits).context("the broker sent a bad packet")
    }

    /// Reads whatever the socket has (waiting for at least one byte).
    /// Cancel safe: usable as a `select!` branch. Fails when the broker has
    /// closed the connection.
    pub(crate) async fn fill(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 4 {
            self.rbuf.reserve(self.read_chunk);
        }
        match self.stream.read_buf(&mut self.rbuf).await {
            Ok(0) => bail!("the broker closed the connection"),
            Ok(_) => Ok(()),
            Err(e) => Err(e).context("reading from the broker"),
        }
    }

    /// The next packet, reading until `deadline`.
    async fn next_before(&mut self, deadline: Instant, what: &str) -> Result<Packet> {
        loop {
            if let Some(packet) = self.decoded()? {
                return Ok(packet);
            }
            timeout_at(deadline, self.fill())
                .await
                .map_err(|_| anyhow!("no {what} within {HANDSHAKE_TIMEOUT:?}"))??;
        }
    }

    /// Sends DISCONNECT and closes, giving up after a second.
    pub(crate) async fn disconnect(mut self) {
        if self.queue(&Packet::Disconnect(Default::default())).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = self.flush().await;
                let _ = self.stream.shutdown().await;
            })
            .await;
        }
    }

    /// The protocol version in use.
    pub(crate) fn version(&self) -> Version {
        self.version
    }
}

/// Fails unless `ack` grants the subscription to `filter`.
pub(crate) fn check_suback(ack: &SubAck, filter: &str) -> Result<()> {
    match ack.reason_codes.first() {
        Some(code) if !code.is_error() => Ok(()),
        code => bail!("broker refused SUBSCRIBE {filter}: {code:?}"),
    }
}

/// The QoS for a `--qos` value (already range-checked by clap).
pub(crate) fn qos(value: u8) -> QoS {
    QoS::from_u8(value).unwrap_or(QoS::AtLeastOnce)
}
