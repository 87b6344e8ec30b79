//! `Broker`: the shared state of all connections — client sessions, the
//! subscription trie, query subscriptions — and the two ways messages reach
//! subscribers: directly (non-retained publishes, free topics) and through
//! the database's change feed (every record change, whether it came from
//! MQTT, REST or elsewhere).
//!
//! Lock contract: `State` sits behind one `std::sync::Mutex`, held only for
//! in-memory work (trie lookups, pushing into session queues) and never
//! across an `.await`. Each client's `ClientState` has its own mutex, taken
//! while `State` is held or alone, never the other way round.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mqdb_codec::{Publish, QoS, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName};
use mqdb_resource::query::Query;
use mqdb_resource::{Body, Database, Format, Meta, ResourceError, TableDef};
use mqdb_storage::ChangeOp;
use tokio::sync::Notify;

use crate::message::{Message, Payload, now_ms};
use crate::persist::{self, SESSIONS_TABLE, StoredSession, StoredSubscription};
use crate::session::{Outgoing, Session};
use crate::topics::{self, RETAINED_TABLE, Target};
use crate::trie::TopicTrie;

/// Broker settings (the `[mqtt]` section, resolved).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Largest packet accepted and announced (Maximum Packet Size).
    pub max_packet_size: u32,
    /// Messages a session may queue beyond its in-flight window.
    pub max_queue: usize,
    /// QoS 1/2 publishes a client may have unacknowledged towards the broker.
    pub receive_maximum: u16,
    /// QoS 1/2 publishes the broker keeps unacknowledged towards a client
    /// (further capped by a 5.0 client's Receive Maximum); more wait in the
    /// session queue. A bounded window keeps acks cheap and memory flat.
    pub max_inflight: u16,
    /// Topics outside the exported tables behave as in a plain broker.
    pub free_topics: bool,
    /// Inbound topic aliases accepted per connection (5.0).
    pub topic_alias_maximum: u16,
    /// Largest keep-alive granted (0: the client's).
    pub max_keepalive: u16,
    /// Packets waiting in one connection's outbox before QoS 0 are dropped.
    pub max_outbox: usize,
    /// Seconds between `$SYS/broker/...` updates (0: none).
    pub sys_interval: u64,
    /// Refuse clients that cannot authenticate (no user store exists yet, so
    /// with this set every client is refused).
    pub require_authentication: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_packet_size: 1024 * 1024,
            max_queue: 10_000,
            receive_maximum: 1024,
            max_inflight: 256,
            free_topics: true,
            topic_alias_maximum: 64,
            max_keepalive: 0,
            max_outbox: 100_000,
            sys_interval: 10,
            require_authentication: false,
        }
    }
}

/// Counters for `$SYS` and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connected clients.
    pub clients_connected: AtomicU64,
    /// PUBLISH packets received.
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent.
    pub messages_sent: AtomicU64,
    /// Messages dropped (full queues).
    pub messages_dropped: AtomicU64,
}

/// One subscription of one client.
#[derive(Debug, Clone)]
pub(crate) struct Sub {
    pub(crate) options: SubscriptionOptions,
    pub(crate) id: Option<SubscriptionId>,
    pub(crate) format: Format,
}

/// A client's session and connection, shared between its connection task
/// and the routers that deliver to it.
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) session: Session,
    /// The connection currently owning the session, if any.
    pub(crate) conn: Option<u64>,
    /// Packets for the connection to write (window-permitted publishes).
    pub(crate) outbox: Vec<Publish>,
    /// Wakes the owning connection (new outbox packets, or take-over).
    pub(crate) wake: Arc<Notify>,
    /// Notified when the session's queue has room again (publishers held
    /// back by a full queue wait on it).
    pub(crate) space: Arc<Notify>,
    /// Session Expiry Interval (seconds; `u32::MAX` never; 0 ends at disconnect).
    pub(crate) expiry: u32,
    pub(crate) subscriptions: Vec<(TopicFilter, Sub)>,
    pub(crate) disconnected_at: u64,
    /// Bumped for every message queued while disconnected.
    pub(crate) queued_gen: u64,
    /// The `queued_gen` the stored session includes.
    pub(crate) saved_gen: u64,
    /// Serialises storing this session (concurrent savers coalesce).
    pub(crate) saving: Arc<tokio::sync::Mutex<()>>,
}

pub(crate) type Client = Arc<Mutex<ClientState>>;

/// Messages streamed one at a time (retained messages of a subscription).
pub(crate) type MessageIter = Box<dyn Iterator<Item = Arc<Message>> + Send>;

struct QuerySub {
    client: Arc<str>,
    table: String,
    filter: TopicFilter,
    query: Query,
    sub: Sub,
    matching: std::collections::HashSet<String>,
}

#[derive(Default)]
struct State {
    clients: HashMap<Arc<str>, Client>,
    trie: TopicTrie<(Arc<str>, TopicFilter), Sub>,
    queries: Vec<QuerySub>,
}

impl State {
    /// Removes every subscription of a client whose session ends.
    fn unsubscribe_all(&mut self, client_id: &Arc<str>, subs: Vec<(TopicFilter, Sub)>) {
        for (filter, _) in subs {
            self.trie
                .remove(&filter, &(client_id.clone(), filter.clone()));
        }
        self.queries.retain(|q| q.client != *client_id);
    }
}

/// The broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    config: BrokerConfig,
    /// Set once at shutdown; connections watch it and close with 0x8B.
    closing: tokio::sync::watch::Sender<bool>,
    feed: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Background tasks that end when `closing` turns true.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    expiring: tokio::sync::mpsc::UnboundedSender<crate::expiry::Due>,
    state: Mutex<State>,
    next_conn: AtomicU64,
    stats: Stats,
    retained: TableDef,
    sessions: TableDef,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// How long a publish waits for room in a subscriber's full queue.
const BACKPRESSURE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a message is fitted to one subscriber: its QoS, RETAIN flag,
/// subscription identifiers and payload format.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) ids: Vec<SubscriptionId>,
    pub(crate) format: Format,
}

/// A delivery that found its subscriber's queue full.
pub(crate) struct Blocked {
    client: Client,
    msg: Arc<Message>,
    fit: Fit,
}

/// What `route` could not finish: deliveries waiting for room, and
/// disconnected persistent sessions whose queue must be stored (up to the
/// given generation) before the publisher is acknowledged.
#[derive(Default)]
pub(crate) struct Routed {
    blocked: Vec<Blocked>,
    stored: Vec<(Arc<str>, Client, u64)>,
}

/// The result of offering a message to one session.
pub(crate) enum Offer {
    /// Sent, queued, or dropped (counted).
    Done,
    /// The queue is full: nothing was done.
    Full,
    /// Queued for a disconnected persistent session, at this generation.
    Stored(u64),
}

/// A publish whose durable part is under way.
pub(crate) type PublishDone =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PublishError>> + Send>>;

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("free topics are disabled on this server")]
    FreeTopicsDisabled,
    #[error("topics starting with $SYS/ are reserved for the server")]
    Reserved,
    #[error("{0}")]
    Resource(#[from] ResourceError),
}

impl Broker {
    /// A broker over `db`; restores stored persistent sessions.
    pub async fn start(db: Database, config: BrokerConfig) -> Result<Broker, ResourceError> {
        let (expiring, due) = tokio::sync::mpsc::unbounded_channel();
        let closing = tokio::sync::watch::channel(false).0;
        let sweeper = tokio::spawn(crate::expiry::sweep(
            db.store().clone(),
            due,
            closing.subscribe(),
        ));
        let broker = Broker {
            inner: Arc::new(Inner {
                db,
                config,
                closing,
                feed: Mutex::new(None),
                tasks: Mutex::new(vec![sweeper]),
                expiring,
                state: Mutex::default(),
                next_conn: AtomicU64::new(1),
                stats: Stats::default(),
                retained: TableDef::schemaless(RETAINED_TABLE),
                sessions: TableDef::schemaless(SESSIONS_TABLE),
            }),
        };
        broker.restore_sessions()?;
        let feed = broker.clone();
        let task = tokio::spawn(async move { feed.follow_changes().await });
        *broker.inner.feed.lock().expect("feed lock") = Some(task);
        let maintenance = broker.clone();
        let mut closing = broker.closing();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => maintenance.expire_sessions(),
                    _ = closing.changed() => return,
                }
            }
        });
        broker.inner.tasks.lock().expect("tasks lock").push(task);
        if broker.inner.config.sys_interval > 0 {
            let sys = broker.clone();
            let mut closing = broker.closing();
            let task = tokio::spawn(async move {
                let every = std::time::Duration::from_secs(sys.inner.config.sys_interval);
                let started = std::time::Instant::now();
                loop {
                    sys.publish_sys(started.elapsed().as_secs()).await;
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = closing.changed() => return,
                    }
                }
            });
            broker.inner.tasks.lock().expect("tasks lock").push(task);
        }
        Ok(broker)
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// Settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Attaches connection `conn` to the session of `client_id`, taking it
    /// over from another connection if needed. Returns the client and
    /// whether a session was present (CONNACK session-present).
    pub(crate) fn attach(
        &self,
        client_id: &Arc<str>,
        conn: u64,
        clean_start: bool,
        expiry: u32,
    ) -> (Client, bool) {
        let mut state = self.inner.state.lock().expect("state lock");
        // A disconnected session past its expiry is gone, even if the
        // periodic sweep has not removed it yet (section 3.1.2.11.2).
        let now = now_ms();
        let existing = state.clients.get(client_id).cloned();
        let expired = existing.as_ref().is_some_and(|client| {
            let c = client.lock().expect("client lock");
            c.conn.is_none()
                && c.expiry != u32::MAX
                && c.disconnected_at + u64::from(c.expiry) * 1000 <= now
        });
        let (client, present) = match existing {
            Some(client) if !clean_start && !expired => {
                {
                    let mut c = client.lock().expect("client lock");
                    if c.conn.is_some() {
                        // Take-over (MQTT-3.1.4-3): the old connection sees it
                        // no longer owns the session and closes with 0x8E.
                        c.wake.notify_one();
                    }
                    c.conn = Some(conn);
                    c.wake = Arc::new(Notify::new());
                    c.expiry = expiry;
                }
                (client, true)
            }
            existing => {
                if let Some(old) = existing {
                    let mut c = old.lock().expect("client lock");
                    if c.conn.is_some() {
                        c.conn = None;
                        c.wake.notify_one();
                    }
                    let subs = std::mem::take(&mut c.subscriptions);
                    drop(c);
                    state.unsubscribe_all(client_id, subs);
                    self.forget_session(client_id);
                }
                let client = Arc::new(Mutex::new(ClientState {
                    session: Session::new(self.inner.config.max_queue),
                    conn: Some(conn),
                    outbox: Vec::new(),
                    wake: Arc::new(Notify::new()),
                    space: Arc::new(Notify::new()),
                    expiry,
                    subscriptions: Vec::new(),
                    disconnected_at: 0,
                    queued_gen: 0,
                    saved_gen: 0,
                    saving: Arc::default(),
                }));
                state.clients.insert(client_id.clone(), client.clone());
                (client, false)
            }
        };
        self.inner
            .stats
            .clients_connected
            .fetch_add(1, Ordering::Relaxed);
        (client, present)
    }

    /// Detaches connection `conn`. A session with expiry 0 ends now; a
    /// persistent one stays (and is stored) for its expiry interval.
    pub(crate) async fn detach(&self, client_id: &Arc<str>, client: &Client, conn: u64) {
        self.inner
            .stats
            .clients_connected
            .fetch_sub(1, Ordering::Relaxed);
        let stored = {
            let mut state = self.inner.state.lock().expect("state lock");
            let mut c = client.lock().expect("client lock");
            if c.conn != Some(conn) {
                return; // taken over: the new connection owns the session
            }
            c.conn = None;
            c.disconnected_at = now_ms();
            c.session.drop_queued_qos0();
            c.outbox.clear();
            if c.expiry == 0 {
                let subs = std::mem::take(&mut c.subscriptions);
                drop(c);
                state.unsubscribe_all(client_id, subs);
                if state
                    .clients
                    .get(client_id)
                    .is_some_and(|x| Arc::ptr_eq(x, client))
                {
                    state.clients.remove(client_id);
                }
                false
            } else {
                true
            }
        };
        if stored {
            self.persist(client_id, client).await;
        } else {
            self.forget_session(client_id);
        }
    }

    /// Adds or replaces a subscription. Returns true if it already existed.
    pub(crate) fn subscribe(
        &self,
        client_id: &Arc<str>,
        client: &Client,
        filter: &TopicFilter,
        sub: Sub,
    ) -> bool {
        // A query subscription starts from the records matching now; they
        // are read before taking the lock (a scan must not block routing).
        let query = topics::query_filter(self.inner.db.schema(), filter).map(|(table, query)| {
            let matching = self
                .inner
                .db
                .query(
                    table,
                    &Query {
                        conditions: query.conditions.clone(),
                        ..Query::default()
                    },
                )
                .map(|it| it.filter_map(Result::ok).map(|e| e.id).collect())
                .unwrap_or_default();
            (table.name.clone(), query, matching)
        });
        let mut state = self.inner.state.lock().expect("state lock");
        let existed = match query {
            Some((table, query, matching)) => {
                let existed = state
                    .queries
                    .iter()
                    .any(|q| q.client == *client_id && q.filter == *filter);
                state
                    .queries
                    .retain(|q| !(q.client == *client_id && q.filter == *filter));
                state.queries.push(QuerySub {
                    client: client_id.clone(),
                    table,
                    filter: filter.clone(),
                    query,
                    sub: sub.clone(),
                    matching,
                });
                existed
            }
            None => state
                .trie
                .insert(filter, (client_id.clone(), filter.clone()), sub.clone())
                .is_some(),
        };
        let mut c = client.lock().expect("client lock");
        c.subscriptions.retain(|(f, _)| f != filter);
        c.subscriptions.push((filter.clone(), sub));
        existed
    }

    /// Removes a subscription; true if it existed.
    pub(crate) fn unsubscribe(
        &self,
        client_id: &Arc<str>,
        client: &Client,
        filter: &TopicFilter,
    ) -> bool {
        let mut state = self.inner.state.lock().expect("state lock");
        let before = state.queries.len();
        state
            .queries
            .retain(|q| !(q.client == *client_id && q.filter == *filter));
        let removed = state
            .trie
            .remove(filter, &(client_id.clone(), filter.clone()))
            .is_some()
            || state.queries.len() != before;
        client
            .lock()
            .expect("client lock")
            .subscriptions
            .retain(|(f, _)| f != filter);
        removed
    }

    /// Stores a persistent session's current state (after subscription
    /// changes, so a restart keeps them).
    pub(crate) async fn persist(&self, client_id: &Arc<str>, client: &Client) {
        self.store_session(client_id, client, None).await;
    }

    /// Stores a persistent session. Every save goes through the session's
    /// `saving` lock and snapshots the state *inside* it, so saves reach the
    /// store in snapshot order and an older snapshot never overwrites a
    /// newer one. With `generation`, nothing is done if the stored copy
    /// already includes that many offline-queued messages.
    async fn store_session(&self, client_id: &Arc<str>, client: &Client, generation: Option<u64>) {
        let saving = client.lock().expect("client lock").saving.clone();
        let _guard = saving.lock().await;
        let (stored, upto) = {
            let c = client.lock().expect("client lock");
            if c.expiry == 0 || generation.is_some_and(|g| c.saved_gen >= g) {
                return;
            }
            (snapshot(&c), c.queued_gen)
        };
        self.save_session(client_id, &stored).await;
        let mut c = client.lock().expect("client lock");
        c.saved_gen = c.saved_gen.max(upto);
    }

    /// Handles an application message from a client (or a will): writes a
    /// retained record change durably, stores a free topic's retained
    /// message, and delivers. Returns once durable.
    pub(crate) async fn publish(
        &self,
        publish: &Publish,
        origin: Option<&Arc<str>>,
        declared: Option<Format>,
    ) -> Result<(), PublishError> {
        self.submit_publish(publish, origin, declared).await?.await
    }

    /// The first half of [`Broker::publish`]: validates the message and
    /// queues its durable write (waiting only for queue space), delivering
    /// at once what needs no write. The returned future resolves when the
    /// write is committed (and, for a free topic, the message delivered).
    /// A connection submits its publishes in the order received, so writes
    /// to one record are committed in that order, while many are in flight.
    pub(crate) async fn submit_publish(
        &self,
        publish: &Publish,
        origin: Option<&Arc<str>>,
        declared: Option<Format>,
    ) -> Result<PublishDone, PublishError> {
        self.inner
            .stats
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        let schema = self.inner.db.schema();
        let message = || {
            Message::new(
                publish.topic.clone(),
                Payload::Raw(publish.payload.clone()),
                publish.qos,
                publish.retain,
                publish.properties.clone(),
                origin.cloned(),
            )
        };
        let completion = match topics::resolve(schema, &publish.topic) {
            Target::Record { table, id } => {
                if !publish.retain {
                    // Not stored: delivered as sent, bytes and properties
                    // unchanged (retain 0: it is not the record's value).
                    let mut msg = message();
                    Arc::get_mut(&mut msg).expect("fresh message").retain = false;
                    return Ok(self.route_waiting(&msg));
                }
                // The change feed delivers it, to MQTT and REST watchers alike.
                if publish.payload.is_empty() {
                    self.inner.db.submit_delete(table, id).await?
                } else {
                    let body = body_of(publish, declared)?;
                    let meta = meta_of(publish, origin);
                    self.inner.db.submit_put(table, id, body, meta).await?
                }
            }
            Target::Free => {
                if publish.topic.starts_with("$SYS/") {
                    return Err(PublishError::Reserved);
                }
                if !self.inner.config.free_topics {
                    return Err(PublishError::FreeTopicsDisabled);
                }
                if !publish.retain {
                    return Ok(self.route_waiting(&message()));
                }
                let retained = &self.inner.retained;
                let completion = if publish.payload.is_empty() {
                    self.inner
                        .db
                        .submit_delete(retained, &publish.topic)
                        .await?
                } else {
                    let meta = meta_of(publish, origin);
                    let body = Body::Binary(publish.payload.clone());
                    self.inner
                        .db
                        .submit_put(retained, &publish.topic, body, meta)
                        .await?
                };
                // Delivered once stored, in commit order.
                let broker = self.clone();
                let msg = message();
                return Ok(Box::pin(async move {
                    completion.await?;
                    broker.route_waiting(&msg).await
                }));
            }
        };
        Ok(Box::pin(async move { Ok(completion.await?) }))
    }

    /// Delivers a message to every matching subscription: one delivery per
    /// client, at the highest QoS of its matching subscriptions, with all
    /// their identifiers (MQTT-3.3.4-2, -3).
    pub(crate) fn route(&self, msg: &Arc<Message>) -> Routed {
        let state = self.inner.state.lock().expect("state lock");
        let mut routed = Routed::default();
        let mut targets: HashMap<&Arc<str>, (QoS, bool, Vec<SubscriptionId>, Format)> =
            HashMap::new();
        state.trie.matches(&msg.topic, |(client, _), sub| {
            if sub.options.no_local && msg.origin.as_ref() == Some(client) {
                return;
            }
            let qos = msg.qos.min(sub.options.qos);
            let retain = sub.options.retain_as_published && msg.retain;
            let entry = targets
                .entry(client)
                .or_insert((qos, retain, Vec::new(), sub.format));
            entry.0 = entry.0.max(qos);
            entry.1 |= retain;
            entry.2.extend(sub.id);
        });
        for (client_id, (qos, retain, ids, format)) in targets {
            if let Some(client) = state.clients.get(client_id) {
                let fit = Fit {
                    qos,
                    retain,
                    ids,
                    format,
                };
                match self.deliver(client, msg, &fit, false) {
                    Offer::Done => {}
                    Offer::Full => routed.blocked.push(Blocked {
                        client: client.clone(),
                        msg: msg.clone(),
                        fit,
                    }),
                    Offer::Stored(generation) => {
                        routed
                            .stored
                            .push((client_id.clone(), client.clone(), generation));
                    }
                }
            }
        }
        routed
    }

    /// Stores a disconnected session if its stored copy is older than
    /// `generation`: a QoS 1/2 publisher is acknowledged only once the
    /// message is kept for the offline subscriber. Concurrent callers
    /// coalesce: one saves, the others find it done.
    async fn store_queue(&self, client_id: &Arc<str>, client: &Client, generation: u64) {
        self.store_session(client_id, client, Some(generation))
            .await;
    }

    /// Routes a client's message; the returned future completes when every
    /// delivery found room (the publisher's ack waits for it).
    fn route_waiting(&self, msg: &Arc<Message>) -> PublishDone {
        let routed = self.route(msg);
        if routed.blocked.is_empty() && routed.stored.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let broker = self.clone();
        Box::pin(async move {
            broker.deliver_blocked(routed.blocked).await;
            for (id, client, generation) in routed.stored {
                broker.store_queue(&id, &client, generation).await;
            }
            Ok(())
        })
    }

    /// Routes a message that cannot wait (record changes from the feed,
    /// wills, `$SYS`): deliveries to full queues are dropped and counted.
    pub(crate) fn route_or_drop(&self, msg: &Arc<Message>) {
        let routed = self.route(msg);
        for b in routed.blocked {
            self.deliver(&b.client, &b.msg, &b.fit, true);
        }
        // Queued for disconnected sessions: stored soon, without waiting.
        for (id, client, generation) in routed.stored {
            let broker = self.clone();
            tokio::spawn(async move { broker.store_queue(&id, &client, generation).await });
        }
    }

    /// Delivers what `route` could not because the subscribers' queues were
    /// full, waiting for room (this is how a QoS 1/2 publisher is slowed down
    /// to its slowest subscriber instead of messages being dropped). After
    /// `BACKPRESSURE_WAIT` a delivery is dropped and counted.
    pub(crate) async fn deliver_blocked(&self, blocked: Vec<Blocked>) {
        let deadline = tokio::time::Instant::now() + BACKPRESSURE_WAIT;
        for b in blocked {
            loop {
                let space = b.client.lock().expect("client lock").space.clone();
                let notified = space.notified();
                let last_try = tokio::time::Instant::now() >= deadline;
                if !matches!(
                    self.deliver(&b.client, &b.msg, &b.fit, last_try),
                    Offer::Full
                ) {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    // One more try, forced: dropped and counted if still full.
                    self.deliver(&b.client, &b.msg, &b.fit, true);
                    break;
                }
            }
        }
    }

    /// Hands one delivery to a client's session (lock contract: called with
    /// `State` held or not; takes the client's lock).
    /// Returns `Full`, delivering nothing, when a QoS 1/2 message finds the
    /// queue full and `force` is not set; with `force` it is dropped and
    /// counted instead.
    pub(crate) fn deliver(
        &self,
        client: &Client,
        msg: &Arc<Message>,
        fit: &Fit,
        force: bool,
    ) -> Offer {
        let now = now_ms();
        if msg.expired(now) {
            return Offer::Done;
        }
        let qos = fit.qos;
        let (payload, content_type) = msg.render(fit.format);
        let outgoing = Outgoing {
            topic: msg.topic.clone(),
            payload,
            qos,
            retain: fit.retain,
            properties: msg.delivery_properties(content_type, &fit.ids, now),
        };
        let mut c = client.lock().expect("client lock");
        if c.conn.is_none() {
            let queued = c.session.queued();
            c.session.enqueue_offline(outgoing);
            if c.session.queued() > queued && c.expiry != 0 {
                c.queued_gen += 1;
                return Offer::Stored(c.queued_gen);
            }
            return Offer::Done;
        }
        if qos != QoS::AtMostOnce && !force && !c.session.has_room() {
            return Offer::Full;
        }
        let before = c.session.dropped;
        if let Some(p) = c.session.deliver(outgoing) {
            if p.qos == QoS::AtMostOnce && c.outbox.len() >= self.inner.config.max_outbox {
                c.session.dropped += 1;
            } else {
                c.outbox.push(p);
                c.wake.notify_one();
            }
        }
        let dropped = c.session.dropped - before;
        if dropped > 0 {
            self.inner
                .stats
                .messages_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        Offer::Done
    }

    /// Follows the change feed: every committed change of an exported table
    /// becomes a message to the subscribers of its topic (a delete: an empty
    /// payload), and query subscriptions are re-evaluated.
    async fn follow_changes(&self) {
        let store = self.inner.db.store().clone();
        let mut cursor = store.follow(store.last_seq());
        while let Ok(change) = cursor.next().await {
            // Decoded once: for the expiry schedule and for delivery.
            let record = match &change.op {
                ChangeOp::Put(value) => match mqdb_resource::record::decode(value.clone()) {
                    Ok(record) => Some(record),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable change");
                        continue;
                    }
                },
                ChangeOp::Delete => None,
            };
            if let Some(at) = record.as_ref().and_then(|(_, meta)| meta.expires_at) {
                let due = crate::expiry::Due {
                    at,
                    table: change.table.clone(),
                    id: change.id.clone(),
                    version: change.seq,
                };
                let _ = self.inner.expiring.send(due);
            }
            let schema = self.inner.db.schema();
            let Some(table) = schema.table(&change.table).filter(|t| t.export.is_some()) else {
                continue;
            };
            let export = table.export.as_deref().unwrap_or(&table.name);
            let Ok(topic) = TopicName::new(format!("{export}/{}", change.id)) else {
                continue;
            };
            let msg = match record {
                Some((body, meta)) => {
                    Message::from_record(topic, body, &meta, QoS::ExactlyOnce, true)
                }
                None => Message::new(
                    topic,
                    Payload::Raw(Bytes::new()),
                    QoS::ExactlyOnce,
                    true,
                    Default::default(),
                    None,
                ),
            };
            self.route_or_drop(&msg);
            self.route_queries(table, &change.id, &msg);
        }
    }

    fn route_queries(&self, table: &TableDef, id: &str, msg: &Arc<Message>) {
        let mut state = self.inner.state.lock().expect("state lock");
        let State {
            clients, queries, ..
        } = &mut *state;
        for q in queries.iter_mut().filter(|q| q.table == table.name) {
            let now_matches = match &msg.payload {
                Payload::Structured(m) => q.query.matches(table, m),
                Payload::Raw(b) => !b.is_empty() && q.query.conditions.is_empty(),
            };
            let was = q.matching.contains(id);
            let out = if now_matches {
                q.matching.insert(id.to_owned());
                msg.clone()
            } else if was {
                // One final message for a record that stops matching: a delete.
                q.matching.remove(id);
                Message::new(
                    msg.topic.clone(),
                    Payload::Raw(Bytes::new()),
                    msg.qos,
                    false,
                    Default::default(),
                    None,
                )
            } else {
                continue;
            };
            if let Some(client) = clients.get(&q.client) {
                let fit = Fit {
                    qos: out.qos.min(q.sub.options.qos),
                    retain: false,
                    ids: q.sub.id.into_iter().collect(),
                    format: q.sub.format,
                };
                self.deliver(client, &out, &fit, true);
            }
        }
    }

    /// The stored records a new subscription receives as retained messages.
    pub(crate) fn retained_for(
        &self,
        filter: &TopicFilter,
    ) -> Box<dyn Iterator<Item = Arc<Message>> + Send> {
        let db = self.inner.db.clone();
        let filter_text = filter.to_string();
        let mut iters: Vec<MessageIter> = Vec::new();
        for source in topics::sources(db.schema(), filter) {
            match source {
                topics::Source::Table { table, prefix } => {
                    let export = table.export.clone().unwrap_or_else(|| table.name.clone());
                    let f = filter_text.clone();
                    iters.push(Box::new(db.scan(table, &prefix).filter_map(move |e| {
                        let e = e.ok()?;
                        let topic = format!("{export}/{}", e.id);
                        if !topics::matches(&f, &topic) {
                            return None;
                        }
                        Some(Message::from_record(
                            TopicName::new(topic).ok()?,
                            e.body,
                            &e.meta,
                            QoS::ExactlyOnce,
                            true,
                        ))
                    })));
                }
                topics::Source::Query { table, query } => {
                    let export = table.export.clone().unwrap_or_else(|| table.name.clone());
                    if let Ok(it) = db.query(table, &query) {
                        iters.push(Box::new(it.filter_map(move |e| {
                            let e = e.ok()?;
                            let topic = TopicName::new(format!("{export}/{}", e.id)).ok()?;
                            Some(Message::from_record(
                                topic,
                                e.body,
                                &e.meta,
                                QoS::ExactlyOnce,
                                true,
                            ))
                        })));
                    }
                }
                topics::Source::Free { prefix } => {
                    let f = filter_text.clone();
                    iters.push(Box::new(db.scan(&self.inner.retained, &prefix).filter_map(
                        move |e| {
                            let e = e.ok()?;
                            if !topics::matches(&f, &e.id) {
                                return None;
                            }
                            Some(Message::from_record(
                                TopicName::new(e.id).ok()?,
                                e.body,
                                &e.meta,
                                QoS::ExactlyOnce,
                                true,
                            ))
                        },
                    )));
                }
            }
        }
        let now = now_ms();
        Box::new(iters.into_iter().flatten().filter(move |m| !m.expired(now)))
    }

    fn restore_sessions(&self) -> Result<(), ResourceError> {
        let mut restored = 0;
        let now = now_ms();
        for entry in self.inner.db.scan(&self.inner.sessions, "") {
            let entry = entry?;
            let Body::Map(map) = &entry.body else {
                continue;
            };
            let Some(stored) = persist::decode(map, self.inner.config.max_queue) else {
                continue;
            };
            if stored.expiry != u32::MAX
                && stored.disconnected_at + u64::from(stored.expiry) * 1000 < now
            {
                continue;
            }
            let client_id: Arc<str> = entry.id.as_str().into();
            let client = Arc::new(Mutex::new(ClientState {
                session: stored.session,
                conn: None,
                outbox: Vec::new(),
                wake: Arc::new(Notify::new()),
                space: Arc::new(Notify::new()),
                expiry: stored.expiry,
                subscriptions: Vec::new(),
                disconnected_at: stored.disconnected_at,
                queued_gen: 0,
                saved_gen: 0,
                saving: Arc::default(),
            }));
            self.inner
                .state
                .lock()
                .expect("state lock")
                .clients
                .insert(client_id.clone(), client.clone());
            for s in stored.subscriptions {
                let sub = Sub {
                    options: s.options,
                    id: s.id,
                    format: s.format,
                };
                self.subscribe(&client_id, &client, &s.filter, sub);
            }
            restored += 1;
        }
        tracing::info!(sessions = restored, "persistent sessions restored");
        Ok(())
    }

    async fn save_session(&self, client_id: &str, stored: &StoredSession) {
        let body = Body::Map(persist::encode(stored));
        if let Err(e) = self
            .inner
            .db
            .put(&self.inner.sessions, client_id, body, Meta::default())
            .await
        {
            tracing::error!(client_id, error = %e, "storing a persistent session failed");
        }
    }

    fn forget_session(&self, client_id: &Arc<str>) {
        let db = self.inner.db.clone();
        let table = self.inner.sessions.clone();
        let id = client_id.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = db.delete(&table, &id).await {
                tracing::warn!(client_id = id, error = %e, "removing a stored session failed");
            }
        });
        // Tracked so that shutdown waits for it (it holds the store).
        let mut tasks = self.inner.tasks.lock().expect("tasks lock");
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Ends disconnected sessions whose Session Expiry Interval has passed
    /// (section 3.1.2.11.2: the session state is discarded then).
    fn expire_sessions(&self) {
        let now = now_ms();
        let mut state = self.inner.state.lock().expect("state lock");
        let expired: Vec<Arc<str>> = state
            .clients
            .iter()
            .filter(|(_, client)| {
                let c = client.lock().expect("client lock");
                c.conn.is_none()
                    && c.expiry != u32::MAX
                    && c.disconnected_at + u64::from(c.expiry) * 1000 <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(client) = state.clients.remove(&id) {
                let subs = std::mem::take(&mut client.lock().expect("client lock").subscriptions);
                state.unsubscribe_all(&id, subs);
                self.forget_session(&id);
                tracing::debug!(client = %id, "session expired");
            }
        }
    }

    /// The statistics as (name, help, kind, value), for `$SYS` and `/metrics`.
    pub fn figures(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let st = &self.inner.stats;
        let subscriptions = {
            let state = self.inner.state.lock().expect("state lock");
            (state.trie.len() + state.queries.len()) as u64
        };
        vec![
            (
                "clients/connected",
                "Connected MQTT clients",
                "gauge",
                st.clients_connected.load(Ordering::Relaxed),
            ),
            (
                "messages/received",
                "PUBLISH packets received",
                "counter",
                st.messages_received.load(Ordering::Relaxed),
            ),
            (
                "messages/sent",
                "PUBLISH packets sent",
                "counter",
                st.messages_sent.load(Ordering::Relaxed),
            ),
            (
                "messages/dropped",
                "Messages dropped because a queue was full",
                "counter",
                st.messages_dropped.load(Ordering::Relaxed),
            ),
            (
                "records/stored",
                "Records stored, all tables (approximate)",
                "gauge",
                self.inner.db.store().approximate_records(),
            ),
            (
                "subscriptions/count",
                "Active subscriptions",
                "gauge",
                subscriptions,
            ),
            (
                "store/changes",
                "Changes committed to the store",
                "counter",
                self.inner.db.store().last_seq(),
            ),
        ]
    }

    /// Publishes the statistics as retained `$SYS/broker/...` messages.
    async fn publish_sys(&self, uptime: u64) {
        let mut figures: Vec<(String, String)> = self
            .figures()
            .into_iter()
            .map(|(name, _, _, v)| (name.to_owned(), v.to_string()))
            .collect();
        figures.push(("uptime".into(), uptime.to_string()));
        figures.push((
            "version".into(),
            format!("mqdb {}", env!("CARGO_PKG_VERSION")),
        ));
        for (name, value) in figures {
            let Ok(topic) = TopicName::new(format!("$SYS/broker/{name}")) else {
                continue;
            };
            let publish = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic,
                packet_id: None,
                properties: Default::default(),
                payload: Bytes::from(value),
            };
            if let Err(e) = self.publish_internal(&publish).await {
                tracing::debug!(error = %e, "publishing $SYS failed");
            }
        }
    }

    /// A server-originated publish (`$SYS`): stored and routed like a free
    /// topic, whatever `free_topics` says.
    async fn publish_internal(&self, publish: &Publish) -> Result<(), ResourceError> {
        if publish.retain {
            let body = Body::Binary(publish.payload.clone());
            self.inner
                .db
                .put(
                    &self.inner.retained,
                    &publish.topic,
                    body,
                    meta_of(publish, None),
                )
                .await?;
        }
        let msg = Message::new(
            publish.topic.clone(),
            Payload::Raw(publish.payload.clone()),
            publish.qos,
            publish.retain,
            Default::default(),
            None,
        );
        self.route_or_drop(&msg);
        Ok(())
    }

    /// A receiver that turns true when the broker shuts down.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Graceful shutdown (SPEC section 8): every connection is closed (5.0
    /// clients get DISCONNECT 0x8B), the change feed stops, and persistent
    /// sessions are stored. Waits at most `grace` for connections to end.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.closing.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        while self.inner.stats.clients_connected.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let feed = self.inner.feed.lock().expect("feed lock").take();
        if let Some(task) = feed {
            task.abort();
            let _ = task.await;
        }
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for task in tasks {
            let _ = tokio::time::timeout(grace, task).await;
        }
        self.persist_all().await;
    }

    /// Stores every persistent session (graceful shutdown).
    pub async fn persist_all(&self) {
        let clients: Vec<(Arc<str>, Client)> = {
            let state = self.inner.state.lock().expect("state lock");
            state
                .clients
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for (id, client) in clients {
            self.persist(&id, &client).await;
        }
    }
}

fn snapshot(c: &ClientState) -> StoredSession {
    StoredSession {
        expiry: c.expiry,
        disconnected_at: if c.conn.is_some() {
            now_ms()
        } else {
            c.disconnected_at
        },
        subscriptions: c
            .subscriptions
            .iter()
            .map(|(filter, sub)| StoredSubscription {
                filter: filter.clone(),
                options: sub.options,
                id: sub.id,
                format: sub.format,
            })
            .collect(),
        session: c.session.clone(),
    }
}

/// The record a PUBLISH writes: by its v5 content type, else the
/// connection's declared format, else detected; anything that is not a map
/// is a binary record (SPEC section 3).
pub(crate) fn body_of(publish: &Publish, declared: Option<Format>) -> Result<Body, ResourceError> {
    let by_type = publish
        .properties
        .content_type
        .as_deref()
        .map(Format::from_content_type);
    match by_type.unwrap_or(declared) {
        Some(format) => match format.decode(&publish.payload)? {
            mqdb_resource::Value::Map(m) => Ok(Body::Map(m)),
            _ => Ok(Body::Binary(publish.payload.clone())),
        },
        None => match Format::detect(&publish.payload) {
            Some((_, mqdb_resource::Value::Map(m))) => Ok(Body::Map(m)),
            _ => Ok(Body::Binary(publish.payload.clone())),
        },
    }
}

/// The message metadata kept with a retained record.
pub(crate) fn meta_of(publish: &Publish, origin: Option<&Arc<str>>) -> Meta {
    let p = &publish.properties;
    Meta {
        qos: Some(publish.qos as u8),
        origin: origin.map(|o| o.to_string()),
        content_type: p.content_type.as_deref().map(str::to_owned),
        payload_utf8: p
            .payload_format_indicator
            .map(|f| f == mqdb_codec::PayloadFormat::Utf8),
        user_properties: p
            .user_properties
            .iter()
            .map(|u| (u.name.to_string(), u.value.to_string()))
            .collect(),
        response_topic: p.response_topic.as_deref().map(str::to_owned),
        correlation_data: p.correlation_data.clone(),
        expires_at: p
            .message_expiry_interval
            .map(|s| now_ms() + u64::from(s) * 1000),
    }
}
