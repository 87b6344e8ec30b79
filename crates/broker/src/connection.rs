//! The connection driver: one tokio task per client connection, generic over
//! any `AsyncRead + AsyncWrite` (TCP now; TLS and WebSocket plug in the same
//! way). It reads and decodes packets, applies them to the broker and the
//! client's session, and writes what results in batches: every packet ready
//! at one moment goes out in one write.
//!
//! Incoming QoS 1/2 publishes are processed concurrently (a retained one is
//! a durable database write) and acknowledged in the order they arrived
//! (MQTT-4.6.0-2), so one client can keep many writes in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use mqdb_codec::{
    Connect, Disconnect, EncodeError, Limits, Packet, Publish, ReasonCode, Version, decode, encode,
    encode_publish, encoded_len, encoded_publish_len,
};
use mqdb_resource::Format;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::broker::{Batch, Broker, Client, MessageIter, Sub};
use crate::conn_info::ConnInfo;
use crate::events::{EventKind, ServerEvent};
use mqdb_resource::Principal;

mod aliases;
mod auth;
mod connect;
mod enhanced_auth;
mod publish;
mod subscriptions;

use connect::refuse_malformed_connect;

/// Read space an idle connection keeps (and the first read's size).
const MIN_READ: usize = 256;
/// Less free read space than this is grown before reading (a busy
/// connection reads in large steps, not in the crumbs left at the end).
const MIN_SPARE: usize = 128;
/// The most read space added at once for a busy connection.
const MAX_READ: usize = 64 * 1024;
/// A buffer larger than this is released once it is empty again.
const MAX_IDLE_BUFFER: usize = 64 * 1024;

/// The most outbox capacity (messages) a connection keeps between turns.
const MAX_SPARE_OUTBOX: usize = 1024;

/// How long a new connection has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retained messages moved into the session per step (bounded streaming).
const RETAINED_STEP: usize = 256;
/// Publishes of one connection being processed at once; beyond this the
/// connection stops reading (back-pressure instead of buffering).
const MAX_PENDING_PUBLISHES: usize = 1024;

/// A publish being processed: whether it counts against the Receive
/// Maximum (QoS 1/2), and the acknowledgement to send when done.
type Ack = Pin<Box<dyn Future<Output = (bool, Option<Packet>)> + Send>>;

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    /// The client sent DISCONNECT (with its reason) or closed the socket.
    Client { will: bool },
    /// The server ends it, telling a 5.0 client why.
    Server(ReasonCode, &'static str),
    /// Another connection took the session over.
    TakenOver,
    /// The socket failed.
    Io,
}

/// Accepts MQTT connections on `listener` until `shutdown` completes; each
/// connection is served by its own task.
pub async fn serve_tcp(
    broker: Broker,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(broker.clone(), stream, ConnInfo::tcp(peer)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

/// Serves one MQTT connection until it ends.
pub fn serve_connection<S>(
    broker: Broker,
    stream: S,
    info: ConnInfo,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // An async fn keeps its arguments for its whole life: the connection's
    // description goes in boxed, so the idle task does not carry it twice.
    serve(broker, stream, Box::new(info))
}

async fn serve<S>(broker: Broker, stream: S, info: Box<ConnInfo>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Declared first, dropped last: after everything holding the broker
    // (shutdown waits for it, so no task outlives the store).
    let _live = broker.live_connection();
    // Moved into a local so that it, too, is dropped before `_live` (a
    // parameter would be dropped after the body's locals).
    let broker = broker;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let limits = Limits {
        max_packet_size: broker.config().max_packet_size,
    };
    // Buffers start small and grow with traffic (see `read_with_idle`), so
    // an idle connection costs little memory.
    let mut rbuf = BytesMut::with_capacity(MIN_READ);
    // CONNECT first (MQTT-3.1.0-1), within a deadline; a shutdown ends
    // the wait.
    let mut closing = broker.closing();
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match decode(&mut rbuf, Version::V5, &limits) {
                // Boxed: the task keeps its CONNECT slot for its whole life.
                Ok(Some(Packet::Connect(c))) => return Ok(c),
                Ok(Some(_)) => return Err(None),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            tokio::select! {
                read = reader.read_buf(&mut rbuf) => match read {
                    Ok(0) | Err(_) => return Err(None),
                    Ok(_) => {}
                },
                () = until_true(&mut closing) => return Err(None),
            }
        }
    })
    .await;
    let connect = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(Some(e))) => {
            refuse_malformed_connect(&mut writer, &e).await;
            tracing::debug!(peer = %info.peer(), error = %e, "malformed CONNECT");
            return;
        }
        _ => return,
    };
    let mut conn = Conn::new(broker, connect.protocol, *info);
    conn.event(EventKind::Connection, None);
    if let Err(close) = conn
        .run(connect, &mut reader, &mut writer, rbuf, limits)
        .await
    {
        tracing::debug!(client = %conn.client_id, reason = ?close, "connection closed");
    }
}

struct Conn {
    broker: Broker,
    version: Version,
    info: ConnInfo,
    id: u64,
    /// Who the client is, once CONNECT was accepted.
    principal: Option<Principal>,
    /// The username it gave or proved (for events).
    username: Option<String>,
    /// 5.0 Request Problem Information: reason strings wanted.
    problem_information: bool,
    client_id: Arc<str>,
    client: Option<Client>,
    /// Format of structured payloads this client publishes (declared).
    declared: Option<Format>,
    /// Format this client prefers for records (CONNECT user property `accept`).
    accept: Format,
    /// Boxed: most connections have none, and every one carries the field.
    will: Option<Box<Publish>>,
    /// Will Delay Interval in seconds (5.0).
    will_delay: u32,
    keep_alive: Duration,
    /// The client's Maximum Packet Size (5.0): larger packets are not sent.
    client_max_packet: Option<u32>,
    topic_aliases: std::collections::HashMap<u16, mqdb_codec::TopicName>,
    /// Aliases the broker assigns to topics it sends (5.0).
    aliases_out: aliases::OutboundAliases,
    acks: FuturesOrdered<Ack>,
    /// The outbox emptied last turn, kept for its capacity (`take_outbox`).
    spare_outbox: Vec<Publish>,
    /// QoS 0 deliveries of this read's publishes, not yet handed over.
    batch: Batch,
    /// Publishes of this read submitted, not yet counted in the stats.
    received: u64,
    /// Incoming QoS 1/2 publishes not yet acknowledged.
    unacked_in: usize,
    retained: Vec<(MessageIter, Sub)>,
    wbuf: BytesMut,
    session_expiry: u32,
    /// MQTT 5 enhanced authentication state (connection/enhanced_auth.rs).
    enhanced: enhanced_auth::EnhancedAuth,
}

impl Conn {
    fn new(broker: Broker, version: Version, info: ConnInfo) -> Conn {
        let id = broker.next_conn_id();
        Conn {
            broker,
            version,
            declared: info.content_format,
            accept: info.accept_format.unwrap_or(Format::Json),
            info,
            id,
            principal: None,
            username: None,
            problem_information: true,
            client_id: Arc::from(""),
            client: None,
            will: None,
            will_delay: 0,
            keep_alive: Duration::ZERO,
            client_max_packet: None,
            topic_aliases: Default::default(),
            aliases_out: aliases::OutboundAliases::default(),
            acks: FuturesOrdered::new(),
            spare_outbox: Vec::new(),
            batch: Batch::default(),
            received: 0,
            unacked_in: 0,
            retained: Vec::new(),
            wbuf: BytesMut::new(),
            session_expiry: 0,
            enhanced: Default::default(),
        }
    }

    fn v5(&self) -> bool {
        self.version == Version::V5
    }

    fn reply_style(&self) -> ReplyStyle {
        ReplyStyle {
            v5: self.v5(),
            problem_information: self.problem_information,
        }
    }

    /// Reports a server event about this connection.
    fn event(&self, kind: EventKind, reason: Option<String>) {
        self.broker.emit(ServerEvent {
            kind,
            client_id: (!self.client_id.is_empty()).then(|| self.client_id.to_string()),
            username: self.username.clone(),
            remote_addr: self.info.remote_addr,
            transport: self.info.transport,
            reason,
            timestamp: crate::message::now_ms(),
        });
    }

    /// Queues a packet for the next write, unless it exceeds the client's
    /// Maximum Packet Size.
    fn send(&mut self, packet: &Packet) {
        if let Packet::Publish(p) = packet {
            return self.send_publish(p);
        }
        if self.over_client_max(|| encoded_len(packet, self.version)) {
            return;
        }
        if let Err(e) = encode(packet, self.version, &mut self.wbuf) {
            tracing::warn!(client = %self.client_id, error = %e, "cannot encode an outgoing packet");
        }
    }

    /// [`Conn::send`] of a PUBLISH, with an outbound topic alias where one
    /// applies; encoded without moving it into a `Packet` (profiled: the
    /// copies into the packet enum were a visible part of delivery).
    fn send_publish(&mut self, publish: &Publish) {
        let aliased = self.aliases_out.apply(publish);
        let p = aliased.as_ref().unwrap_or(publish);
        if self.over_client_max(|| encoded_publish_len(p, self.version)) {
            if aliased.is_some() {
                // The client never learns this mapping: forget it.
                self.aliases_out.forget(p.properties.topic_alias);
            }
            return;
        }
        if let Err(e) = encode_publish(p, self.version, &mut self.wbuf) {
            tracing::warn!(client = %self.client_id, error = %e, "cannot encode an outgoing packet");
        }
    }

    /// Whether a packet of the size `len` gives exceeds the client's Maximum
    /// Packet Size (MQTT-3.1.2-25: such a packet is discarded). The size is
    /// computed only when the client set one.
    fn over_client_max(&self, len: impl FnOnce() -> Result<usize, EncodeError>) -> bool {
        let over = self
            .client_max_packet
            .is_some_and(|max| len().is_ok_and(|len| len > max as usize));
        if over {
            tracing::debug!(client = %self.client_id, "dropping a packet larger than the client accepts");
        }
        over
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<(), Close> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        writer.write_all(&self.wbuf).await.map_err(|_| Close::Io)?;
        writer.flush().await.map_err(|_| Close::Io)?;
        if self.wbuf.capacity() > MAX_IDLE_BUFFER {
            // A burst is over: give its memory back.
            self.wbuf = BytesMut::new();
        } else {
            self.wbuf.clear();
        }
        Ok(())
    }

    async fn run<R, W>(
        &mut self,
        connect: Box<Connect>,
        reader: &mut R,
        writer: &mut W,
        mut rbuf: BytesMut,
        limits: Limits,
    ) -> Result<(), Close>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // The reader and writer are lent for an AUTH exchange before CONNACK.
        let io = enhanced_auth::Io {
            reader: &mut *reader,
            writer: &mut *writer,
            rbuf: &mut rbuf,
            limits,
        };
        // Rare, large futures are boxed so that every idle connection's
        // task stays small (its size is that of its largest await).
        Box::pin(self.handle_connect(connect, io)).await;
        let result = self.session_loop(reader, writer, &mut rbuf, limits).await;
        // Publishes received before the connection ended are carried out
        // (packets are processed in order: a DISCONNECT or EOF after a PUBLISH
        // must not discard it), and their acks sent if the socket still works.
        let drain = async {
            while let Some((_, ack)) = self.acks.next().await {
                if let Some(p) = ack.filter(|p| !matches!(p, Packet::Disconnect(_))) {
                    self.send(&p);
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), Box::pin(drain))
            .await
            .is_err()
        {
            tracing::warn!(client = %self.client_id, "publishes still pending at close were abandoned");
        }
        let will = match &result {
            Err(Close::Client { will }) => *will,
            // MQTT-3.1.4-3: the old connection's will is published (a will
            // delay lets a resumed session cancel it, section 3.1.2.5).
            Err(Close::TakenOver) => true,
            // The server going down is not the client failing.
            Err(Close::Server(ReasonCode::ServerShuttingDown, _)) => false,
            _ => true,
        };
        if let Err(Close::Server(reason, why)) = &result {
            if self.v5() {
                let mut d = Disconnect::new(*reason);
                d.properties.reason_string = Some((*why).into());
                self.send(&Packet::Disconnect(d));
            }
        }
        if let Err(Close::TakenOver) = &result {
            if self.v5() {
                self.send(&Packet::Disconnect(Disconnect::new(
                    ReasonCode::SessionTakenOver,
                )));
            }
        }
        let _ = self.flush(writer).await;
        if will {
            if let Some(w) = self.will.take() {
                let delay = self.will_delay.min(self.session_expiry);
                if delay == 0 {
                    if let Err(e) = Box::pin(self.broker.publish(
                        &w,
                        Some(&self.client_id),
                        self.declared,
                    ))
                    .await
                    {
                        tracing::warn!(client = %self.client_id, error = %e, "publishing the will failed");
                    }
                } else if let Some(client) = &self.client {
                    // 5.0 section 3.1.3.2.2: sent after the Will Delay Interval
                    // (or when the session ends), unless the session is
                    // resumed first.
                    let (broker, client, id, origin, declared) = (
                        self.broker.clone(),
                        client.clone(),
                        self.id,
                        self.client_id.clone(),
                        self.declared,
                    );
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
                        let resumed = client
                            .lock()
                            .expect("client lock")
                            .conn
                            .is_some_and(|c| c != id);
                        if !resumed {
                            if let Err(e) = broker.publish(&w, Some(&origin), declared).await {
                                tracing::warn!(client = %origin, error = %e, "publishing the will failed");
                            }
                        }
                    });
                }
            }
        }
        if let Some(client) = self.client.take() {
            Box::pin(self.broker.detach(&self.client_id, &client, self.id)).await;
            self.event(EventKind::Disconnected, Some(close_reason(&result)));
        }
        // Closed last: once the client sees the connection end, its session
        // is detached and stored, so an immediate reconnect finds it whole.
        let _ = writer.shutdown().await;
        result
    }

    async fn session_loop<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        rbuf: &mut BytesMut,
        limits: Limits,
    ) -> Result<(), Close>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some(client) = self.client.clone() else {
            // Refused at CONNECT: the CONNACK is queued; close after it.
            self.flush(writer).await?;
            return Err(Close::Client { will: false });
        };
        // MQTT-3.1.2-24: close after 1.5 times the keep alive without a packet.
        let idle = if self.keep_alive.is_zero() {
            None
        } else {
            Some(self.keep_alive * 3 / 2)
        };
        let mut last_packet = tokio::time::Instant::now();
        let mut read_size = MIN_READ;
        let mut closing = self.broker.closing();
        loop {
            self.complete_ready_acks()?;
            self.pull_retained(&client);
            self.take_outbox(&client)?;
            self.flush(writer).await?;
            let reading = self.acks.len() < MAX_PENDING_PUBLISHES;
            let wake = client.lock().expect("client lock").wake.clone();
            tokio::select! {
                read = read_with_idle(reader, rbuf, &mut read_size, idle.map(|i| last_packet + i)), if reading => {
                    match read {
                        ReadOutcome::Data => last_packet = tokio::time::Instant::now(),
                        ReadOutcome::Eof => return Err(Close::Client { will: true }),
                        ReadOutcome::Idle => return Err(Close::Server(ReasonCode::KeepAliveTimeout, "keep alive timeout")),
                    }
                    // Boxed: one allocation per read (a batch of packets
                    // when busy) keeps the idle task small.
                    Box::pin(self.handle_input(rbuf, &client, &limits)).await?;
                }
                Some((counted, ack)) = self.acks.next(), if !self.acks.is_empty() => {
                    self.acked(counted, ack)?;
                }
                () = wake.notified() => {}
                () = until_true(&mut closing) => {
                    return Err(Close::Server(ReasonCode::ServerShuttingDown, "server shutting down"));
                }
            }
        }
    }

    /// Handles every complete packet in `rbuf`.
    async fn handle_input(
        &mut self,
        rbuf: &mut BytesMut,
        client: &Client,
        limits: &Limits,
    ) -> Result<(), Close> {
        let result = loop {
            match decode(rbuf, self.version, limits) {
                Ok(Some(packet)) => {
                    if let Err(close) = self.handle(packet, client).await {
                        break Err(close);
                    }
                    if self.batch.len() >= publish::MAX_BATCH {
                        self.deliver_batch().await;
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(Close::Server(e.reason_code(), "malformed packet")),
            }
        };
        // What was accepted is delivered, even when the connection ends here.
        self.deliver_batch().await;
        self.broker
            .count_received(std::mem::take(&mut self.received));
        result
    }

    fn send_publishes(&mut self, mut publishes: Vec<Publish>) {
        self.send_drained(&mut publishes);
    }

    /// Sends and removes every publish of `publishes` (its capacity stays).
    fn send_drained(&mut self, publishes: &mut Vec<Publish>) {
        if !publishes.is_empty() {
            self.broker
                .stats()
                .messages_sent
                .fetch_add(publishes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        for p in publishes.drain(..) {
            self.send_publish(&p);
        }
    }

    /// Sends the acknowledgements of every publish already processed, in
    /// order, without waiting for the others.
    fn complete_ready_acks(&mut self) -> Result<(), Close> {
        use futures_util::FutureExt as _;
        while let Some(Some((counted, ack))) = self.acks.next().now_or_never() {
            self.acked(counted, ack)?;
        }
        Ok(())
    }

    fn acked(&mut self, counted: bool, ack: Option<Packet>) -> Result<(), Close> {
        if counted {
            self.unacked_in -= 1;
        }
        match ack {
            // A refused publish on 3.1.1: the connection is closed.
            Some(Packet::Disconnect(d)) => Err(Close::Server(d.reason_code, "publish refused")),
            Some(p) => {
                self.send(&p);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Moves window-permitted publishes from the shared outbox to the write
    /// buffer; notices a take-over.
    fn take_outbox(&mut self, client: &Client) -> Result<(), Close> {
        let mut packets = {
            let mut c = client.lock().expect("client lock");
            if c.conn != Some(self.id) {
                return Err(Close::TakenOver);
            }
            if c.over_quota {
                return Err(Close::Server(
                    ReasonCode::QuotaExceeded,
                    "quota exceeded: too many messages waiting for this client to read",
                ));
            }
            if c.outbox.is_empty() {
                // A turn with nothing to send: the connection is not busy,
                // so it keeps no outbox capacity (idle memory stays small).
                if c.outbox.capacity() > 0 {
                    c.outbox = Vec::new();
                }
                self.spare_outbox = Vec::new();
                return Ok(());
            }
            // Publishers paced by this queue's length read on.
            c.stalled = false;
            c.space.notify_waiters();
            // While busy, the emptied outbox of the last turn takes its
            // place: it keeps its capacity instead of regrowing (and copying
            // every message again) on each turn.
            std::mem::replace(&mut c.outbox, std::mem::take(&mut self.spare_outbox))
        };
        self.send_drained(&mut packets);
        if packets.capacity() <= MAX_SPARE_OUTBOX {
            self.spare_outbox = packets;
        }
        Ok(())
    }

    async fn handle(&mut self, packet: Packet, client: &Client) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => self.handle_publish(p, client).await?,
            // Publishes freed by an ack go out after those already in the
            // outbox (taken in the same critical section): order is kept.
            Packet::PubAck(a) => {
                let next = {
                    let mut c = client.lock().expect("client lock");
                    let next = c.session.on_puback(a.packet_id);
                    with_outbox(&mut c, next)
                };
                self.send_publishes(next);
            }
            Packet::PubRec(r) => {
                let (rel, next) = {
                    let mut c = client.lock().expect("client lock");
                    let (rel, next) = c.session.on_pubrec(r.packet_id, r.reason_code);
                    (rel, with_outbox(&mut c, next))
                };
                if let Some(rel) = rel {
                    self.send(&Packet::PubRel(rel));
                }
                self.send_publishes(next);
            }
            Packet::PubComp(pc) => {
                let next = {
                    let mut c = client.lock().expect("client lock");
                    let next = c.session.on_pubcomp(pc.packet_id);
                    with_outbox(&mut c, next)
                };
                self.send_publishes(next);
            }
            Packet::PubRel(r) => {
                let comp = client
                    .lock()
                    .expect("client lock")
                    .session
                    .on_pubrel(r.packet_id);
                self.send(&Packet::PubComp(comp));
            }
            Packet::Subscribe(s) => Box::pin(self.handle_subscribe(s, client)).await,
            Packet::Unsubscribe(u) => Box::pin(self.handle_unsubscribe(u, client)).await,
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(expiry) = d.properties.session_expiry_interval {
                    // MQTT-3.14.2-2: 0 at CONNECT may not become non-zero.
                    if self.session_expiry == 0 && expiry != 0 {
                        return Err(Close::Server(
                            ReasonCode::ProtocolError,
                            "session expiry cannot be set after a zero",
                        ));
                    }
                    client.lock().expect("client lock").expiry = expiry;
                }
                return Err(Close::Client {
                    will: d.reason_code == ReasonCode::DisconnectWithWill,
                });
            }
            Packet::Connect(_) => {
                // MQTT-3.1.0-2: a second CONNECT is a Protocol Error.
                return Err(Close::Server(ReasonCode::ProtocolError, "second CONNECT"));
            }
            // Re-authentication (connection/enhanced_auth.rs).
            Packet::Auth(a) => Box::pin(self.handle_auth(a)).await?,
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(Close::Server(
                    ReasonCode::ProtocolError,
                    "a server-to-client packet from a client",
                ));
            }
        }
        Ok(())
    }
}

/// How acknowledgements are written for this client.
#[derive(Debug, Clone, Copy)]
struct ReplyStyle {
    v5: bool,
    /// 5.0 Request Problem Information: reason strings wanted.
    problem_information: bool,
}

/// Why a connection ended, in words (the `disconnected` event's reason).
fn close_reason(result: &Result<(), Close>) -> String {
    match result {
        Ok(()) => "closed".into(),
        Err(Close::Client { will: false }) => "client disconnected".into(),
        Err(Close::Client { will: true }) => "connection lost".into(),
        Err(Close::Server(code, why)) => format!("{why} ({code:?})"),
        Err(Close::TakenOver) => "session taken over".into(),
        Err(Close::Io) => "socket error".into(),
    }
}

enum ReadOutcome {
    Data,
    Eof,
    Idle,
}

async fn read_with_idle<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    read_size: &mut usize,
    deadline: Option<tokio::time::Instant>,
) -> ReadOutcome {
    // Read space follows the traffic: `read_size` doubles (up to MAX_READ)
    // after a read that filled all the space it had, and halves (down to
    // MIN_READ) after one that used less than an eighth of it. Packets
    // split off the buffer keep its old allocation alive, so what is left
    // of it shrinks: it is topped up to `read_size`, not grown from itself.
    // An emptied buffer grown far beyond what idle needs is released.
    if buf.is_empty() && buf.capacity() > MAX_IDLE_BUFFER {
        *buf = BytesMut::with_capacity(MIN_READ);
    }
    if buf.capacity() - buf.len() < (*read_size / 2).max(MIN_SPARE) {
        buf.reserve(*read_size);
    }
    let spare = buf.capacity() - buf.len();
    let read = reader.read_buf(buf);
    let result = match deadline {
        Some(at) => match tokio::time::timeout_at(at, read).await {
            Ok(r) => r,
            Err(_) => return ReadOutcome::Idle,
        },
        None => read.await,
    };
    match result {
        Ok(0) | Err(_) => ReadOutcome::Eof,
        Ok(n) => {
            if n >= spare {
                *read_size = (*read_size * 2).min(MAX_READ);
            } else if n < *read_size / 8 {
                *read_size = (*read_size / 2).max(MIN_READ);
            }
            ReadOutcome::Data
        }
    }
}

/// Completes when the watched flag is true (or its sender is gone).
async fn until_true(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

/// The outbox's publishes followed by `next` (lock held by the caller).
/// An ack may have made room in the queue: waiting publishers are woken.
fn with_outbox(c: &mut crate::broker::ClientState, next: Vec<Publish>) -> Vec<Publish> {
    c.space.notify_waiters();
    let mut out = std::mem::take(&mut c.outbox);
    out.extend(next);
    out
}
