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

use mqdb_codec::{Publish, QoS, SubscriptionId, SubscriptionOptions, TopicFilter};
use mqdb_resource::query::Query;
use mqdb_resource::{
    Body, Database, Format, Meta, ResourceError, Roles, Security, TableDef, Users,
};
use tokio::sync::Notify;

use crate::events::{EventStream, ServerEvent};
use crate::message::{Message, Payload, now_ms};
use crate::persist::SESSIONS_TABLE;
use crate::session::Session;
use crate::topics::{self, RETAINED_TABLE, Target};
use crate::trie::TopicTrie;

pub(crate) use batch::Batch;

mod batch;
mod delivery;
mod sessions;
mod shared;
mod sys;

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
    /// Refuse clients without credentials (`mqtt.require_authentication`).
    /// When off, they get [`Security::anonymous`].
    pub require_authentication: bool,
    /// When set, every CONNECT is refused with 0x9D Server moved and this
    /// Server Reference (MQTT 5.0 section 4.11), e.g. to retire a node.
    pub server_reference: Option<String>,
    /// Users and roles. `None`: the users stored in the broker's database,
    /// with only the built-in `superuser` role.
    pub security: Option<Security>,
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
            server_reference: None,
            security: None,
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
    /// The outbox overflowed (the client reads slower than it is sent
    /// to): its connection is closed with 0x97 Quota exceeded.
    pub(crate) over_quota: bool,
    /// The connection did not take its queue within `QOS0_PACE_WAIT` of a
    /// publisher waiting on it: publishers are not paced by it until it
    /// takes its queue again (a stuck reader does not slow everyone; its
    /// queue fills up to `max_outbox` instead).
    pub(crate) stalled: bool,
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
    shares: shared::Shares,
    queries: Vec<QuerySub>,
}

impl State {
    /// Removes one subscription from the trie it lives in; true if it was there.
    fn remove_subscription(&mut self, client_id: &Arc<str>, filter: &TopicFilter) -> bool {
        match crate::share::parse_filter(filter.as_str()) {
            Ok(share @ crate::share::Subscription::Shared { .. }) => {
                self.shares.remove(filter, share.filter(), client_id)
            }
            _ => self
                .trie
                .remove(filter, &(client_id.clone(), filter.clone()))
                .is_some(),
        }
    }

    /// Removes every subscription of a client whose session ends.
    fn unsubscribe_all(&mut self, client_id: &Arc<str>, subs: Vec<(TopicFilter, Sub)>) {
        for (filter, _) in subs {
            self.remove_subscription(client_id, &filter);
        }
        self.queries.retain(|q| q.client != *client_id);
    }
}

/// Held by a connection task while it runs; holds a counter, not the
/// broker, so dropping it last proves the task let go of the broker.
#[derive(Debug)]
pub(crate) struct LiveConnection(Arc<AtomicU64>);

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    state: std::sync::RwLock<State>,
    /// Bumped by every change to what routing reads (subscriptions,
    /// clients, shared groups): a connection's cached route is valid while
    /// it stands still. On a cache line of its own, away from the counters
    /// written per message.
    routes_gen: Padded<AtomicU64>,
    next_conn: AtomicU64,
    /// Connection tasks still running (see [`Broker::live_connection`]).
    live: Arc<AtomicU64>,
    stats: Stats,
    retained: TableDef,
    sessions: TableDef,
    security: Security,
    events: tokio::sync::broadcast::Sender<Arc<ServerEvent>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// A value on cache lines of its own (128 bytes: adjacent-line
/// prefetching pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// How long a publish waits for room in a subscriber's full queue.
const BACKPRESSURE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// QoS 0 messages queued for one connected subscriber above which its
/// publishers are paced: the message is still queued (nothing reordered,
/// nothing lost), but the publisher's connection waits for the subscriber
/// to take its queue before it reads on. Without it, publishers reading in
/// large batches outrun a subscriber until its queue overflows.
const QOS0_HIGH_WATER: usize = 4_096;

/// How long a paced publisher waits at most for one subscriber (a slow
/// reader with a large write in progress takes its queue again well
/// within it; one that does not is taken as stalled).
const QOS0_PACE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How a message is fitted to one subscriber: its QoS, RETAIN flag,
/// subscription identifiers and payload format.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) ids: Vec<SubscriptionId>,
    pub(crate) format: Format,
    /// The shared subscription it goes through, if any.
    pub(crate) shared: Option<TopicFilter>,
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
    /// Subscribers whose QoS 0 queue is above `QOS0_HIGH_WATER`.
    paced: Vec<Client>,
}

impl Routed {
    /// Notes a subscriber whose queue is above the high-water mark, unless
    /// it is the publisher itself: a publisher never waits for its own
    /// queue (its task is the one that empties it).
    fn pace(&mut self, msg: &Message, id: &Arc<str>, client: Client) {
        if !msg.is_from(id) {
            self.paced.push(client);
        }
    }
}

/// The result of offering a message to one session.
pub(crate) enum Offer {
    /// Sent, queued, or dropped (counted).
    Done,
    /// The queue is full: nothing was done.
    Full,
    /// Queued, above the QoS 0 high-water mark: the publisher should wait.
    Paced,
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
    NotAuthorized(String),
    #[error("the payload format indicator says UTF-8 but the payload is not valid UTF-8")]
    PayloadFormat,
    #[error("{0}")]
    Resource(#[from] ResourceError),
}

impl Broker {
    /// Counts a connection task until the returned guard is dropped.
    pub(crate) fn live_connection(&self) -> LiveConnection {
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        LiveConnection(self.inner.live.clone())
    }

    /// Users, roles and logins.
    pub fn security(&self) -> &Security {
        &self.inner.security
    }

    /// Server events from now on (SPEC §6), for code embedding the broker.
    pub fn events(&self) -> EventStream {
        EventStream::new(self.inner.events.subscribe())
    }

    /// Reports `event` to [`Broker::events`] streams and to MQTT
    /// subscribers of `$SYS/events/<event>` (QoS 0, not retained).
    pub(crate) fn emit(&self, event: ServerEvent) {
        let Ok(topic) = mqdb_codec::TopicName::new(event.topic()) else {
            return;
        };
        let msg = Message::new(
            topic,
            Payload::Raw(event.to_json()),
            QoS::AtMostOnce,
            false,
            Default::default(),
            None,
        );
        self.route_or_drop(&msg);
        let _ = self.inner.events.send(Arc::new(event));
    }

    /// A broker over `db`; restores stored persistent sessions.
    pub async fn start(db: Database, config: BrokerConfig) -> Result<Broker, ResourceError> {
        let (expiring, due) = tokio::sync::mpsc::unbounded_channel();
        let closing = tokio::sync::watch::channel(false).0;
        let security = config
            .security
            .clone()
            .unwrap_or_else(|| Security::new(Users::new(db.store().clone()), Roles::default()));
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
                state: std::sync::RwLock::default(),
                routes_gen: Padded::default(),
                next_conn: AtomicU64::new(1),
                live: Arc::new(AtomicU64::new(0)),
                stats: Stats::default(),
                retained: TableDef::schemaless(RETAINED_TABLE),
                sessions: TableDef::schemaless(SESSIONS_TABLE),
                security,
                events: tokio::sync::broadcast::channel(crate::events::EVENT_BUFFER).0,
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
        let mut state = self.routes_mut();
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
                    c.over_quota = false;
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
                    over_quota: false,
                    stalled: false,
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
            let mut state = self.routes_mut();
            let mut c = client.lock().expect("client lock");
            if c.conn != Some(conn) {
                return; // taken over: the new connection owns the session
            }
            c.conn = None;
            c.disconnected_at = now_ms();
            c.session.drop_queued_qos0();
            c.outbox.clear();
            drop(c);
            self.hand_over_shared(&mut state, client_id, client);
            let mut c = client.lock().expect("client lock");
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
        let mut state = self.routes_mut();
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
            None => match crate::share::parse_filter(filter.as_str()) {
                Ok(share @ crate::share::Subscription::Shared { .. }) => {
                    state
                        .shares
                        .insert(filter, share.filter(), client_id, sub.clone())
                }
                _ => state
                    .trie
                    .insert(filter, (client_id.clone(), filter.clone()), sub.clone())
                    .is_some(),
            },
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
        let mut state = self.routes_mut();
        let before = state.queries.len();
        state
            .queries
            .retain(|q| !(q.client == *client_id && q.filter == *filter));
        let removed = state.remove_subscription(client_id, filter) || state.queries.len() != before;
        client
            .lock()
            .expect("client lock")
            .subscriptions
            .retain(|(f, _)| f != filter);
        removed
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
        self.count_received(1);
        self.submit_publish(publish, origin, declared, None)
            .await?
            .await
    }

    /// The state, to change what routing reads: the routes generation is
    /// bumped with the lock held, so a connection's cached route stops
    /// being used from this change on.
    fn routes_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        let state = self.inner.state.write().expect("state lock");
        self.inner.routes_gen.0.fetch_add(1, Ordering::Release);
        state
    }

    /// Counts PUBLISH packets received (connections add theirs once per
    /// read: one shared counter bumped per message bounced between cores).
    pub(crate) fn count_received(&self, n: u64) {
        if n > 0 {
            self.inner
                .stats
                .messages_received
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The first half of [`Broker::publish`]: validates the message and
    /// queues its durable write (waiting only for queue space), delivering
    /// at once what needs no write. The returned future resolves when the
    /// write is committed (and, for a free topic, the message delivered).
    /// A connection submits its publishes in the order received, so writes
    /// to one record are committed in that order, while many are in flight.
    /// With a `batch`, the QoS 0 deliveries of a message that is not stored
    /// go into it (the connection flushes it).
    pub(crate) async fn submit_publish(
        &self,
        publish: &Publish,
        origin: Option<&Arc<str>>,
        declared: Option<Format>,
        batch: Option<&mut Batch>,
    ) -> Result<PublishDone, PublishError> {
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
                    return Ok(self.route_waiting(&msg, batch));
                }
                // The change feed delivers it, to MQTT and REST watchers alike.
                // The write futures are boxed: only durable writes pay for
                // them, and every connection's task stays small.
                if publish.payload.is_empty() {
                    Box::pin(self.inner.db.submit_delete(table, id)).await?
                } else {
                    let body = body_of(publish, declared)?;
                    let meta = meta_of(publish, origin);
                    Box::pin(self.inner.db.submit_put(table, id, body, meta)).await?
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
                    return Ok(self.route_waiting(&message(), batch));
                }
                let retained = &self.inner.retained;
                let completion = if publish.payload.is_empty() {
                    Box::pin(self.inner.db.submit_delete(retained, &publish.topic)).await?
                } else {
                    let meta = meta_of(publish, origin);
                    let body = Body::Binary(publish.payload.clone());
                    Box::pin(
                        self.inner
                            .db
                            .submit_put(retained, &publish.topic, body, meta),
                    )
                    .await?
                };
                // Delivered once stored, in commit order.
                let broker = self.clone();
                let msg = message();
                return Ok(Box::pin(async move {
                    completion.await?;
                    broker.route_waiting(&msg, None).await
                }));
            }
        };
        Ok(Box::pin(async move { Ok(completion.await?) }))
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
        // Until every connection task has ended (not only detached): a task
        // still running holds the broker, and with it the store.
        while self.inner.live.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline
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
}

/// The record a PUBLISH writes: by its v5 content type, else the
/// connection's declared format, else detected; anything that is not a map
/// is a binary record (SPEC section 3).
pub(crate) fn body_of(publish: &Publish, declared: Option<Format>) -> Result<Body, ResourceError> {
    let content_type = publish.properties.content_type.as_deref();
    Ok(Body::from_payload(
        publish.payload.clone(),
        content_type,
        declared,
    )?)
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
