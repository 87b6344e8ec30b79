//! Delivery: matching a message against the subscriptions (one delivery per
//! client), fitting it to each subscriber, back-pressure on full queues, the
//! change-feed follower that turns record changes into messages, query
//! subscriptions, and the retained messages of a new subscription.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use mqdb_codec::{QoS, SubscriptionId, TopicFilter, TopicName};
use mqdb_resource::{Format, TableDef};
use mqdb_storage::ChangeOp;

use super::batch::Route;
use super::{
    BACKPRESSURE_WAIT, Batch, Blocked, Broker, Client, ClientState, Fit, MessageIter, Offer,
    PublishDone, QOS0_HIGH_WATER, QOS0_PACE_WAIT, Routed, State,
};
use crate::message::{Message, Payload, now_ms};
use crate::session::Outgoing;
use crate::topics;

/// Matching clients a message's route keeps in a plain list; beyond this
/// many it indexes them.
const ROUTE_LIST_MAX: usize = 16;

/// What one client gets of a routed message: the highest QoS and RETAIN of
/// its matching subscriptions, all their identifiers, and its format.
type Target = (QoS, bool, Vec<SubscriptionId>, Format);

impl Broker {
    /// Delivers a message to every matching subscription: one delivery per
    /// client, at the highest QoS of its matching subscriptions, with all
    /// their identifiers (MQTT-3.3.4-2, -3).
    ///
    /// With a `batch` (a publishing connection's, for a QoS 0 message), the
    /// QoS 0 deliveries go into it and reach the subscribers when it is
    /// flushed; everything else is delivered now.
    pub(crate) fn route(&self, msg: &Arc<Message>, mut batch: Option<&mut Batch>) -> Routed {
        let mut routed = Routed::default();
        if let Some(batch) = batch.as_deref_mut() {
            let generation = self.inner.routes_gen.0.load(Ordering::Acquire);
            if batch.route_cached(msg, generation) {
                return routed;
            }
        }
        // A read lock: publishers route concurrently (profiled: a mutex
        // here was the most contended lock under fan-in).
        let state = self.inner.state.read().expect("state lock");
        // Read under the lock: the generation of the state routed by.
        let generation = self.inner.routes_gen.0.load(Ordering::Acquire);
        // One entry per client. Most messages match a few clients: a list
        // searched in place, indexed by a map only once it grows (profiled:
        // a map per message was a tenth of routing).
        let mut targets: Vec<(&Arc<str>, Target)> = Vec::new();
        let mut index: Option<HashMap<&Arc<str>, usize>> = None;
        state.trie.matches(&msg.topic, |(client, _), sub| {
            if sub.options.no_local && msg.is_from(client) {
                return;
            }
            let qos = msg.qos.min(sub.options.qos);
            let retain = sub.options.retain_as_published && msg.retain;
            let found = match &index {
                Some(index) => index.get(client).copied(),
                None => targets
                    .iter()
                    .position(|(c, _)| Arc::ptr_eq(c, client) || *c == client),
            };
            let slot = match found {
                Some(slot) => slot,
                None => {
                    targets.push((client, (qos, retain, Vec::new(), sub.format)));
                    let slot = targets.len() - 1;
                    match &mut index {
                        Some(index) => {
                            index.insert(client, slot);
                        }
                        None if targets.len() > ROUTE_LIST_MAX => {
                            index = Some(
                                targets
                                    .iter()
                                    .enumerate()
                                    .map(|(i, (c, _))| (*c, i))
                                    .collect(),
                            );
                        }
                        None => {}
                    }
                    slot
                }
            };
            let entry = &mut targets[slot].1;
            entry.0 = entry.0.max(qos);
            entry.1 |= retain;
            entry.2.extend(sub.id);
        });
        // A route is remembered only without shared groups (each of their
        // messages goes to the member whose turn it is).
        let remember = state.shares.trie.is_empty()
            && batch.as_deref_mut().is_some_and(|b| b.wants_route(msg));
        let mut remembered = remember.then(|| Vec::with_capacity(targets.len()));
        for (client_id, (qos, retain, ids, format)) in targets {
            if let Some(client) = state.clients.get(client_id) {
                let fit = Fit {
                    qos,
                    retain,
                    ids,
                    format,
                    shared: None,
                };
                if let Some(r) = &mut remembered {
                    r.push((client_id.clone(), client.clone(), fit.clone()));
                }
                self.offer_to(
                    client_id,
                    client,
                    msg,
                    fit,
                    batch.as_deref_mut(),
                    &mut routed,
                );
            }
        }
        self.route_shared(&state, msg, batch.as_deref_mut(), &mut routed);
        if let (Some(targets), Some(batch)) = (remembered, batch) {
            batch.remember(Route {
                generation,
                topic: msg.topic.as_str().into(),
                qos: msg.qos,
                retain: msg.retain,
                targets,
            });
        }
        routed
    }

    /// One delivery of a route: a QoS 0 one into the publisher's batch when
    /// there is one, anything else now; what cannot finish now is noted in
    /// `routed`.
    pub(super) fn offer_to(
        &self,
        client_id: &Arc<str>,
        client: &Client,
        msg: &Arc<Message>,
        fit: Fit,
        batch: Option<&mut Batch>,
        routed: &mut Routed,
    ) {
        if let Some(batch) = batch.filter(|_| fit.qos == QoS::AtMostOnce) {
            batch.offer(client_id, client, msg, &fit);
            return;
        }
        match self.deliver(client, msg, &fit, false) {
            Offer::Done => {}
            Offer::Paced => routed.pace(msg, client_id, client.clone()),
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

    /// Routes a client's message; the returned future completes when every
    /// delivery found room (the publisher's ack waits for it).
    pub(super) fn route_waiting(
        &self,
        msg: &Arc<Message>,
        batch: Option<&mut Batch>,
    ) -> PublishDone {
        let routed = self.route(msg, batch);
        if routed.blocked.is_empty() && routed.stored.is_empty() && routed.paced.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let broker = self.clone();
        Box::pin(async move {
            broker.wait_paced(routed.paced).await;
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
        let routed = self.route(msg, None);
        for b in routed.blocked {
            self.deliver(&b.client, &b.msg, &b.fit, true);
        }
        // Queued for disconnected sessions: stored soon, without waiting.
        for (id, client, generation) in routed.stored {
            let broker = self.clone();
            tokio::spawn(async move { broker.store_queue(&id, &client, generation).await });
        }
    }

    /// QoS 0 messages queued for a subscriber above which its publishers
    /// are paced (never above the queue's own limit).
    pub(super) fn qos0_high_water(&self) -> usize {
        QOS0_HIGH_WATER.min(self.inner.config.max_outbox)
    }

    /// Waits until each subscriber's QoS 0 queue is below the high-water
    /// mark again (its connection took it), or gone, or `QOS0_PACE_WAIT`
    /// passed, which marks the subscriber stalled (the messages are queued
    /// already: nothing is dropped here).
    pub(crate) async fn wait_paced(&self, paced: Vec<Client>) {
        let deadline = tokio::time::Instant::now() + QOS0_PACE_WAIT;
        let high_water = self.qos0_high_water();
        let below =
            |c: &super::ClientState| c.conn.is_none() || c.stalled || c.outbox.len() < high_water;
        for client in paced {
            loop {
                let space = {
                    let c = client.lock().expect("client lock");
                    if below(&c) {
                        break;
                    }
                    c.space.clone()
                };
                let notified = space.notified();
                tokio::pin!(notified);
                // Registered before the second look, so a take in between
                // is not missed.
                notified.as_mut().enable();
                if below(&client.lock().expect("client lock")) {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    client.lock().expect("client lock").stalled = true;
                    break;
                }
            }
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
        let Some(outgoing) = outgoing(msg, fit) else {
            return Offer::Done;
        };
        let mut c = client.lock().expect("client lock");
        self.offer(&mut c, outgoing, force)
    }

    /// The locked half of a delivery: hands `outgoing` to the session, and
    /// what it lets go now to the connection's outbox.
    pub(super) fn offer(&self, c: &mut ClientState, outgoing: Outgoing, force: bool) -> Offer {
        let qos = outgoing.qos;
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
        let mut offer = Offer::Done;
        if let Some(p) = c.session.deliver(outgoing) {
            if p.qos == QoS::AtMostOnce && c.outbox.len() >= self.inner.config.max_outbox {
                c.session.dropped += 1;
                c.over_quota = true;
                c.wake.notify_one();
            } else {
                // Only the first message of a batch wakes the connection:
                // it takes the whole outbox, and an outbox that was not
                // empty has a wake-up pending already.
                if c.outbox.is_empty() {
                    c.wake.notify_one();
                }
                c.outbox.push(p);
                if qos == QoS::AtMostOnce
                    && !force
                    && !c.stalled
                    && c.outbox.len() >= self.qos0_high_water()
                {
                    offer = Offer::Paced;
                }
            }
        }
        let dropped = c.session.dropped - before;
        if dropped > 0 {
            self.inner
                .stats
                .messages_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        offer
    }

    /// Follows the change feed: every committed change of an exported table
    /// becomes a message to the subscribers of its topic (a delete: an empty
    /// payload), and query subscriptions are re-evaluated.
    pub(super) async fn follow_changes(&self) {
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

    pub(super) fn route_queries(&self, table: &TableDef, id: &str, msg: &Arc<Message>) {
        let mut state = self.inner.state.write().expect("state lock");
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
                    shared: None,
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
}

/// A message as one subscriber gets it (payload in its format, its
/// subscription identifiers, the expiry left); `None` once it expired.
pub(super) fn outgoing(msg: &Message, fit: &Fit) -> Option<Outgoing> {
    // The clock is read only for a message that can expire (profiled: a
    // clock read per delivery was 2% of QoS 0 fan-in).
    let now = if msg.expires_at.is_some() {
        now_ms()
    } else {
        0
    };
    if msg.expired(now) {
        return None;
    }
    let (payload, content_type) = msg.render(fit.format);
    Some(Outgoing {
        topic: msg.topic.clone(),
        payload,
        qos: fit.qos,
        retain: fit.retain,
        properties: msg.delivery_properties(content_type, &fit.ids, now),
        shared: fit.shared.clone(),
        expires_at: msg.expires_at,
    })
}
