//! The per-client session state of MQTT delivery, sans-I/O: outgoing
//! QoS 1/2 messages in flight and queued, packet identifiers, incoming QoS 2
//! exactly-once bookkeeping, and what to resend when the client comes back.
//!
//! Methods take packets (or messages) and return the packets to send; no
//! sockets, no clocks, no tasks. The connection driver owns one `Session`
//! while the client is connected; the broker keeps it (and stores it) while a
//! persistent session is disconnected.
//!
//! Flow control (section 4.9): at most `send_quota` QoS 1/2 PUBLISH packets
//! are unacknowledged at once (the client's Receive Maximum); more wait in
//! the queue, in order. The queue is bounded (`max_queue`): when it is full a
//! new QoS 0 message is dropped and counted, and a QoS 1/2 message is dropped
//! and counted too (never silently: `dropped` is reported in metrics and the
//! log). Ordering follows MQTT-4.6.0: messages to one subscription leave in
//! the order they were accepted.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use mqdb_codec::{
    PacketId, PubComp, PubRel, Publish, PublishProperties, QoS, ReasonCode, TopicFilter, TopicName,
};

/// A message on its way to this session, already fitted to the subscription
/// (QoS downgraded, retain flag per retain-as-published, subscription ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Topic.
    pub topic: TopicName,
    /// Payload, in the format this subscriber asked for.
    pub payload: Bytes,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag of this delivery.
    pub retain: bool,
    /// Properties of this delivery (5.0).
    pub properties: PublishProperties,
    /// The shared subscription (`$share/...` filter) it was delivered
    /// through, if any: another member of the group may take it over.
    /// Not persisted: after a restart it stays with its session.
    pub shared: Option<TopicFilter>,
    /// When it expires (Unix ms), from its Message Expiry Interval: a
    /// queued message past it is never sent (MQTT-3.3.2-5), and the
    /// interval sent is what remains (MQTT-3.3.2-6).
    pub expires_at: Option<u64>,
}

/// The Message Expiry Interval left until `at` (ms since the epoch), at
/// least 1 s (MQTT-3.3.2-6). The one clock read of this module.
fn seconds_left(at: u64) -> u32 {
    let left = at.saturating_sub(crate::message::now_ms()).div_ceil(1000);
    u32::try_from(left).unwrap_or(u32::MAX).max(1)
}

impl Outgoing {
    fn publish(&self, packet_id: Option<PacketId>, dup: bool) -> Publish {
        let mut properties = self.properties.clone();
        if let Some(at) = self.expires_at {
            properties.message_expiry_interval = Some(seconds_left(at));
        }
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id,
            properties,
            payload: self.payload.clone(),
        }
    }

    /// The PUBLISH of a message that is not kept (QoS 0): its parts move,
    /// nothing is cloned (each clone of a shared buffer is an atomic count
    /// that other cores then contend for).
    fn into_publish(self) -> Publish {
        let mut properties = self.properties;
        if let Some(at) = self.expires_at {
            properties.message_expiry_interval = Some(seconds_left(at));
        }
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic,
            packet_id: None,
            properties,
            payload: self.payload,
        }
    }

    /// Whether it expired before being sent.
    fn expired(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at <= crate::message::now_ms())
    }
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFlight {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitingPubAck(Outgoing),
    /// QoS 2 sent, waiting for PUBREC.
    AwaitingPubRec(Outgoing),
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

/// A client broke the QoS protocol (an ack for an unknown packet id is not
/// one: the spec tolerates those; this is for what must close the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolViolation(pub &'static str);

/// A client's session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    next_packet_id: u16,
    in_flight: InFlightTable,
    queue: VecDeque<Outgoing>,
    send_quota: u16,
    max_queue: usize,
    /// Incoming QoS 2 packet ids for which PUBREC was sent and PUBREL not
    /// yet received (MQTT-4.3.3-9): a PUBLISH with one of these is a
    /// duplicate and must not be delivered again.
    incoming_qos2: HashSet<u16>,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
}

impl Session {
    /// A new empty session that may hold `max_queue` waiting messages.
    pub fn new(max_queue: usize) -> Self {
        Session {
            next_packet_id: 1,
            in_flight: InFlightTable::default(),
            queue: VecDeque::new(),
            send_quota: u16::MAX,
            max_queue,
            incoming_qos2: HashSet::new(),
            dropped: 0,
        }
    }

    /// Sets the client's Receive Maximum (5.0; 65,535 when absent and on 3.1.1).
    pub fn set_receive_maximum(&mut self, max: u16) {
        self.send_quota = max.max(1);
    }

    /// Whether a QoS 1/2 message offered now would be kept (sent or queued)
    /// rather than dropped.
    pub fn has_room(&self) -> bool {
        self.queue.len() < self.max_queue || (self.queue.is_empty() && self.has_window())
    }

    /// Messages waiting for a window slot.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Outgoing QoS 1/2 messages not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Offers a message to the client. Returns the PUBLISH to send now, if
    /// the window allows; otherwise the message waits (or is dropped when the
    /// queue is full).
    pub fn deliver(&mut self, msg: Outgoing) -> Option<Publish> {
        if msg.qos == QoS::AtMostOnce && self.queue.is_empty() {
            return Some(msg.into_publish());
        }
        if msg.qos != QoS::AtMostOnce && self.queue.is_empty() && self.has_window() {
            return Some(self.send_tracked(msg));
        }
        if self.queue.len() >= self.max_queue {
            self.dropped += 1;
            return None;
        }
        self.queue.push_back(msg);
        None
    }

    /// Keeps a message for a disconnected client: QoS 1/2 messages wait in
    /// the queue (bounded; dropped and counted when full), QoS 0 messages are
    /// not kept (section 3.1.2.4).
    pub fn enqueue_offline(&mut self, msg: Outgoing) {
        if msg.qos == QoS::AtMostOnce {
            return;
        }
        if self.queue.len() >= self.max_queue {
            self.dropped += 1;
            return;
        }
        self.queue.push_back(msg);
    }

    /// Handles PUBACK: completes a QoS 1 delivery and returns what the freed
    /// window slot lets go. An unknown id is ignored (the client may repeat).
    pub fn on_puback(&mut self, packet_id: PacketId) -> Vec<Publish> {
        if let Some(InFlight::AwaitingPubAck(_)) = self.in_flight.get(&packet_id.get()) {
            self.in_flight.remove(&packet_id.get());
        }
        self.drain()
    }

    /// Handles PUBREC: answers PUBREL, or on an error reason code (5.0)
    /// abandons the message (section 4.3.3) and frees its slot.
    pub fn on_pubrec(
        &mut self,
        packet_id: PacketId,
        reason: ReasonCode,
    ) -> (Option<PubRel>, Vec<Publish>) {
        let id = packet_id.get();
        match self.in_flight.get(&id) {
            Some(InFlight::AwaitingPubRec(_)) if reason.is_error() => {
                self.in_flight.remove(&id);
                (None, self.drain())
            }
            Some(InFlight::AwaitingPubRec(_)) | Some(InFlight::AwaitingPubComp) => {
                self.in_flight.insert(id, InFlight::AwaitingPubComp);
                (Some(PubRel::new(packet_id)), Vec::new())
            }
            // MQTT-4.3.3: a PUBREC for an unknown id is answered with PUBREL
            // carrying "Packet Identifier not found" (5.0).
            _ => {
                let mut rel = PubRel::new(packet_id);
                rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                (Some(rel), Vec::new())
            }
        }
    }

    /// Handles PUBCOMP: completes a QoS 2 delivery.
    pub fn on_pubcomp(&mut self, packet_id: PacketId) -> Vec<Publish> {
        if let Some(InFlight::AwaitingPubComp) = self.in_flight.get(&packet_id.get()) {
            self.in_flight.remove(&packet_id.get());
        }
        self.drain()
    }

    /// An incoming QoS 2 PUBLISH: true if it is new and must be delivered,
    /// false if it repeats one whose PUBREL has not arrived (deliver nothing,
    /// answer PUBREC again).
    pub fn incoming_qos2(&mut self, packet_id: PacketId) -> bool {
        self.incoming_qos2.insert(packet_id.get())
    }

    /// Forgets an incoming QoS 2 id whose delivery failed before PUBREC was
    /// sent with success, so a retry is treated as new.
    pub fn forget_incoming_qos2(&mut self, packet_id: PacketId) {
        self.incoming_qos2.remove(&packet_id.get());
    }

    /// Handles PUBREL: releases the id and answers PUBCOMP (with "Packet
    /// Identifier not found" if it was unknown, 5.0 section 3.7.2.1).
    pub fn on_pubrel(&mut self, packet_id: PacketId) -> PubComp {
        let mut comp = PubComp::new(packet_id);
        if !self.incoming_qos2.remove(&packet_id.get()) {
            comp.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        comp
    }

    /// Incoming QoS 2 ids awaiting PUBREL (for persistence).
    pub fn pending_incoming(&self) -> impl Iterator<Item = u16> + '_ {
        self.incoming_qos2.iter().copied()
    }

    /// The packets to send when the client reconnects to this session
    /// (MQTT-4.4.0-1): unacknowledged PUBLISHes again with DUP set, PUBRELs
    /// again, in their original order; then queued messages as the window
    /// allows.
    pub fn resume(&mut self) -> Vec<ResendPacket> {
        let mut out: Vec<ResendPacket> = self
            .in_flight
            .in_send_order()
            .into_iter()
            .map(|(&id, state)| {
                let pid = PacketId::new(id).expect("in-flight ids are non-zero");
                match state {
                    InFlight::AwaitingPubAck(m) | InFlight::AwaitingPubRec(m) => {
                        ResendPacket::Publish(m.publish(Some(pid), true))
                    }
                    InFlight::AwaitingPubComp => ResendPacket::PubRel(PubRel::new(pid)),
                }
            })
            .collect();
        out.extend(self.drain().into_iter().map(ResendPacket::Publish));
        out
    }

    /// Removes and returns what a shared-subscription group may give to
    /// another member: queued messages (never sent) and QoS 1 messages in
    /// flight. A QoS 2 message already sent stays (MQTT-4.8.2-4).
    pub fn take_shared(&mut self) -> Vec<Outgoing> {
        let ids: Vec<u16> = self
            .in_flight
            .in_send_order()
            .into_iter()
            .filter(|(_, s)| matches!(s, InFlight::AwaitingPubAck(m) if m.shared.is_some()))
            .map(|(&id, _)| id)
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(InFlight::AwaitingPubAck(m)) = self.in_flight.remove(&id) {
                out.push(m);
            }
        }
        let (shared, kept): (Vec<Outgoing>, Vec<Outgoing>) =
            self.queue.drain(..).partition(|m| m.shared.is_some());
        self.queue = kept.into();
        out.extend(shared);
        out
    }

    /// Drops QoS 0 messages still queued: a disconnected session keeps only
    /// QoS 1/2 messages (section 3.1.2.4 lists what session state holds).
    pub fn drop_queued_qos0(&mut self) {
        self.queue.retain(|m| m.qos != QoS::AtMostOnce);
    }

    /// In-flight entries in order (for persistence).
    pub fn in_flight_entries(&self) -> impl Iterator<Item = (u16, &InFlight)> + '_ {
        self.in_flight
            .in_send_order()
            .into_iter()
            .map(|(&id, s)| (id, s))
    }

    /// Queued messages in order (for persistence).
    pub fn queued_messages(&self) -> impl Iterator<Item = &Outgoing> + '_ {
        self.queue.iter()
    }

    /// Rebuilds a session from stored parts.
    pub fn restore(
        max_queue: usize,
        in_flight: Vec<(u16, InFlight)>,
        queue: Vec<Outgoing>,
        incoming_qos2: Vec<u16>,
    ) -> Self {
        let mut s = Session::new(max_queue);
        s.next_packet_id = in_flight
            .iter()
            .map(|(id, _)| *id)
            .max()
            .map_or(1, |m| m.wrapping_add(1).max(1));
        for (id, state) in in_flight.into_iter().filter(|(id, _)| *id != 0) {
            s.in_flight.insert(id, state);
        }
        s.queue = queue.into();
        s.incoming_qos2 = incoming_qos2.into_iter().collect();
        s
    }

    fn has_window(&self) -> bool {
        self.in_flight.len() < usize::from(self.send_quota)
    }

    fn send_tracked(&mut self, msg: Outgoing) -> Publish {
        let id = self.allocate_id();
        let pid = PacketId::new(id).expect("allocated ids are non-zero");
        let publish = msg.publish(Some(pid), false);
        let state = match msg.qos {
            QoS::AtLeastOnce => InFlight::AwaitingPubAck(msg),
            _ => InFlight::AwaitingPubRec(msg),
        };
        self.in_flight.insert(id, state);
        publish
    }

    /// The next packet id not in flight (MQTT-2.2.1-3: never 0, and never
    /// one still in use).
    fn allocate_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Sends queued messages while the window has room; QoS 0 ones go
    /// whenever they reach the head of the queue.
    fn drain(&mut self) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Some(head) = self.queue.front() {
            if head.expired() {
                self.queue.pop_front();
            } else if head.qos == QoS::AtMostOnce {
                let msg = self.queue.pop_front().expect("head exists");
                out.push(msg.publish(None, false));
            } else if self.has_window() {
                let msg = self.queue.pop_front().expect("head exists");
                out.push(self.send_tracked(msg));
            } else {
                break;
            }
        }
        out
    }
}

/// The in-flight messages by packet id, remembering the order they were
/// sent in (MQTT-4.4.0-1 resends in that order). Removal is O(1): acks
/// arrive for the oldest entry, and an order-preserving `IndexMap` removal
/// moved every later entry (profiled: a fifth of the broker's time under
/// QoS 1 load). The order is materialised only when resuming or storing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct InFlightTable {
    entries: std::collections::HashMap<u16, (u64, InFlight)>,
    next: u64,
}

impl InFlightTable {
    fn insert(&mut self, id: u16, state: InFlight) {
        self.entries.insert(id, (self.next, state));
        self.next += 1;
    }

    fn get(&self, id: &u16) -> Option<&InFlight> {
        self.entries.get(id).map(|(_, s)| s)
    }

    fn remove(&mut self, id: &u16) -> Option<InFlight> {
        self.entries.remove(id).map(|(_, s)| s)
    }

    fn contains_key(&self, id: &u16) -> bool {
        self.entries.contains_key(id)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries in the order they were sent.
    fn in_send_order(&self) -> Vec<(&u16, &InFlight)> {
        let mut all: Vec<(u64, &u16, &InFlight)> = self
            .entries
            .iter()
            .map(|(id, (n, s))| (*n, id, s))
            .collect();
        all.sort_unstable_by_key(|(n, ..)| *n);
        all.into_iter().map(|(_, id, s)| (id, s)).collect()
    }
}

/// A packet resent on session resumption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendPacket {
    /// A PUBLISH (with DUP set if it was sent before).
    Publish(Publish),
    /// A PUBREL.
    PubRel(PubRel),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(qos: QoS, n: u8) -> Outgoing {
        Outgoing {
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from(vec![n]),
            qos,
            retain: false,
            properties: PublishProperties::default(),
            shared: None,
            expires_at: None,
        }
    }

    #[test]
    fn shared_messages_queued_or_in_flight_at_qos_1_can_be_taken_over() {
        let mut s = Session::new(10);
        s.set_receive_maximum(2);
        let group = TopicFilter::new("$share/g/t").unwrap();
        let shared = |qos, n| Outgoing {
            shared: Some(group.clone()),
            ..msg(qos, n)
        };
        assert!(s.deliver(shared(QoS::AtLeastOnce, 1)).is_some());
        assert!(s.deliver(shared(QoS::ExactlyOnce, 2)).is_some());
        assert!(s.deliver(shared(QoS::AtLeastOnce, 3)).is_none()); // queued
        assert!(s.deliver(msg(QoS::AtLeastOnce, 4)).is_none()); // queued, not shared
        let taken: Vec<u8> = s.take_shared().iter().map(|m| m.payload[0]).collect();
        assert_eq!(taken, [1, 3]);
        // The QoS 2 one stays in flight, the plain one stays queued.
        assert_eq!((s.in_flight(), s.queued()), (1, 1));
    }

    #[test]
    fn a_queued_message_that_expires_is_never_sent() {
        let mut s = Session::new(10);
        s.set_receive_maximum(1);
        let now = crate::message::now_ms();
        assert!(s.deliver(msg(QoS::AtLeastOnce, 1)).is_some());
        let soon = |n, at| Outgoing {
            expires_at: Some(at),
            ..msg(QoS::AtLeastOnce, n)
        };
        assert!(s.deliver(soon(2, now - 1)).is_none()); // queued, expired
        assert!(s.deliver(soon(3, now + 60_000)).is_none()); // queued
        let next = s.on_puback(pid(1));
        assert_eq!(next.len(), 1);
        assert_eq!(&next[0].payload[..], &[3]);
        let left = next[0].properties.message_expiry_interval.unwrap();
        assert!((59..=60).contains(&left), "{left}");
    }

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn qos1_window_follows_receive_maximum_and_keeps_order() {
        let mut s = Session::new(100);
        s.set_receive_maximum(2);
        let a = s.deliver(msg(QoS::AtLeastOnce, 1)).unwrap();
        let b = s.deliver(msg(QoS::AtLeastOnce, 2)).unwrap();
        assert_eq!((a.packet_id, b.packet_id), (Some(pid(1)), Some(pid(2))));
        assert_eq!(s.deliver(msg(QoS::AtLeastOnce, 3)), None, "window full");
        // A QoS 0 message behind a waiting QoS 1 waits too: order is kept.
        assert_eq!(s.deliver(msg(QoS::AtMostOnce, 4)), None);
        let next = s.on_puback(pid(1));
        assert_eq!(
            next.iter().map(|p| p.payload[0]).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(s.in_flight(), 2);
        assert!(s.on_puback(pid(99)).is_empty(), "unknown ids are ignored");
    }

    #[test]
    fn qos2_outgoing_needs_pubrec_then_pubcomp() {
        let mut s = Session::new(10);
        let p = s.deliver(msg(QoS::ExactlyOnce, 1)).unwrap();
        let id = p.packet_id.unwrap();
        let (rel, _) = s.on_pubrec(id, ReasonCode::Success);
        assert_eq!(rel, Some(PubRel::new(id)));
        assert_eq!(s.in_flight(), 1);
        s.on_pubcomp(id);
        assert_eq!(s.in_flight(), 0);
        let (rel, _) = s.on_pubrec(pid(77), ReasonCode::Success);
        assert_eq!(
            rel.unwrap().reason_code,
            ReasonCode::PacketIdentifierNotFound
        );
    }

    #[test]
    fn pubrec_with_an_error_abandons_the_message() {
        let mut s = Session::new(10);
        let id = s
            .deliver(msg(QoS::ExactlyOnce, 1))
            .unwrap()
            .packet_id
            .unwrap();
        let (rel, _) = s.on_pubrec(id, ReasonCode::QuotaExceeded);
        assert_eq!((rel, s.in_flight()), (None, 0));
    }

    #[test]
    fn incoming_qos2_is_delivered_once_until_pubrel() {
        let mut s = Session::new(10);
        assert!(s.incoming_qos2(pid(5)));
        assert!(
            !s.incoming_qos2(pid(5)),
            "a retransmission before PUBREL is a duplicate"
        );
        assert_eq!(s.on_pubrel(pid(5)).reason_code, ReasonCode::Success);
        assert!(s.incoming_qos2(pid(5)), "after PUBREL the id is free again");
        assert_eq!(
            s.on_pubrel(pid(6)).reason_code,
            ReasonCode::PacketIdentifierNotFound
        );
    }

    #[test]
    fn resume_resends_in_flight_with_dup_then_pubrels_in_order_then_queue() {
        let mut s = Session::new(10);
        s.set_receive_maximum(2);
        let a = s
            .deliver(msg(QoS::AtLeastOnce, 1))
            .unwrap()
            .packet_id
            .unwrap();
        let b = s
            .deliver(msg(QoS::ExactlyOnce, 2))
            .unwrap()
            .packet_id
            .unwrap();
        s.deliver(msg(QoS::AtLeastOnce, 3));
        s.on_pubrec(b, ReasonCode::Success);
        let out = s.resume();
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], ResendPacket::Publish(p) if p.dup && p.packet_id == Some(a)));
        assert_eq!(out[1], ResendPacket::PubRel(PubRel::new(b)));
        s.on_puback(a);
        assert_eq!(s.in_flight(), 2, "the queued message took the freed slot");
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut s = Session::new(1);
        s.set_receive_maximum(1);
        s.deliver(msg(QoS::AtLeastOnce, 1)).unwrap();
        assert_eq!(s.deliver(msg(QoS::AtLeastOnce, 2)), None);
        assert_eq!(s.deliver(msg(QoS::AtLeastOnce, 3)), None);
        assert_eq!((s.queued(), s.dropped), (1, 1));
    }

    #[test]
    fn packet_ids_skip_ids_in_use_and_zero() {
        let mut s = Session::restore(
            10,
            vec![(65_535, InFlight::AwaitingPubComp)],
            vec![],
            vec![],
        );
        let p = s.deliver(msg(QoS::AtLeastOnce, 1)).unwrap();
        assert_eq!(p.packet_id, Some(pid(1)));
        let mut s = Session::restore(10, vec![(1, InFlight::AwaitingPubComp)], vec![], vec![]);
        s.next_packet_id = 1;
        assert_eq!(
            s.deliver(msg(QoS::AtLeastOnce, 1)).unwrap().packet_id,
            Some(pid(2))
        );
    }
}
