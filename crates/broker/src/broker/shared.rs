//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 section 4.8.2,
//! also accepted from 3.1.1 clients): each matching message goes to one
//! member of the group, and a member's undelivered messages move on when it
//! disconnects.
//!
//! A group is identified by its whole filter (share name and topic filter).
//! The member chosen is the least loaded (fewest messages in flight and
//! queued), connected members first; ties are broken round-robin so equal
//! members take turns. Lock contract: everything here runs with the
//! `State` lock held by the caller and takes client locks one at a time
//! (state -> client, the broker's lock order).

use std::collections::HashMap;
use std::sync::Arc;

use mqdb_codec::TopicFilter;

use super::{Client, State, Sub};
use crate::session::Outgoing;

/// A group's members, owned: (client id, subscription).
type Members = Vec<(Arc<str>, Sub)>;

/// A member considered by [`choose`]: ((disconnected, load), client, id, sub).
type Candidate<'a> = ((bool, usize), Client, &'a Arc<str>, &'a Sub);

/// Shared subscriptions: the trie of their inner filters, keyed by (group
/// filter, client), and each group's round-robin position.
#[derive(Default)]
pub(super) struct Shares {
    pub(super) trie: crate::trie::TopicTrie<(TopicFilter, Arc<str>), Sub>,
    /// Round-robin positions, advanced under the read lock (routing).
    turn: HashMap<TopicFilter, std::sync::atomic::AtomicUsize>,
}

impl Shares {
    /// Adds or replaces `client`'s membership of `group` (`inner`: the
    /// filter after the share name). True if it existed.
    pub(super) fn insert(
        &mut self,
        group: &TopicFilter,
        inner: &str,
        client: &Arc<str>,
        sub: Sub,
    ) -> bool {
        self.turn.entry(group.clone()).or_default();
        self.trie
            .insert(inner, (group.clone(), client.clone()), sub)
            .is_some()
    }

    /// Removes `client` from `group`; true if it was a member.
    pub(super) fn remove(&mut self, group: &TopicFilter, inner: &str, client: &Arc<str>) -> bool {
        let removed = self
            .trie
            .remove(inner, &(group.clone(), client.clone()))
            .is_some();
        if removed && self.trie.is_empty() {
            self.turn.clear();
        }
        removed
    }

    /// The groups whose filter matches `topic`, each with its members.
    pub(super) fn matching<'a>(
        &'a self,
        topic: &str,
    ) -> HashMap<&'a TopicFilter, Vec<(&'a Arc<str>, &'a Sub)>> {
        let mut groups: HashMap<&TopicFilter, Vec<(&Arc<str>, &Sub)>> = HashMap::new();
        self.trie.matches(topic, |(group, client), sub| {
            groups.entry(group).or_default().push((client, sub));
        });
        groups
    }

    /// Advances `group`'s turn and returns its previous value.
    pub(super) fn next_turn(&self, group: &TopicFilter) -> usize {
        self.turn
            .get(group)
            .map_or(0, |t| t.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// Picks the member of a group to deliver to: connected before
/// disconnected, then fewest messages pending, starting the comparison at
/// `turn` so that equals take turns. `None` if no member has a session.
pub(super) fn choose<'a>(
    state: &State,
    members: &[(&'a Arc<str>, &'a Sub)],
    turn: usize,
    exclude: Option<&Arc<str>>,
) -> Option<(Client, &'a Arc<str>, &'a Sub)> {
    let n = members.len();
    let mut best: Option<Candidate<'a>> = None;
    for i in 0..n {
        let (id, sub) = members[(turn + i) % n];
        if exclude == Some(id) {
            continue;
        }
        let Some(client) = state.clients.get(id) else {
            continue;
        };
        let load = {
            let c = client.lock().expect("client lock");
            (c.conn.is_none(), c.session.in_flight() + c.session.queued())
        };
        if best.as_ref().is_none_or(|(b, ..)| load < *b) {
            best = Some((load, client.clone(), id, sub));
        }
    }
    best.map(|(_, client, id, sub)| (client, id, sub))
}

/// The messages of a disconnecting member that another member may take:
/// queued ones (never sent) and QoS 1 ones in flight (MQTT 5.0 section
/// 4.8.2: a QoS 2 message being sent stays with its client).
pub(super) fn orphans(client: &Client) -> Vec<Outgoing> {
    client.lock().expect("client lock").session.take_shared()
}

impl super::Broker {
    /// Delivers `msg` to one member of every shared group it matches.
    pub(super) fn route_shared(
        &self,
        state: &State,
        msg: &Arc<crate::message::Message>,
        mut batch: Option<&mut super::Batch>,
        routed: &mut super::Routed,
    ) {
        if state.shares.trie.is_empty() {
            return;
        }
        let groups: Vec<(TopicFilter, Members)> = state
            .shares
            .matching(&msg.topic)
            .into_iter()
            .map(|(group, members)| {
                let members = members
                    .into_iter()
                    .map(|(c, s)| (c.clone(), s.clone()))
                    .collect();
                (group.clone(), members)
            })
            .collect();
        for (group, members) in groups {
            let turn = state.shares.next_turn(&group);
            let refs: Vec<(&Arc<str>, &Sub)> = members.iter().map(|(c, s)| (c, s)).collect();
            let Some((client, id, sub)) = choose(state, &refs, turn, None) else {
                continue;
            };
            let fit = super::Fit {
                qos: msg.qos.min(sub.options.qos),
                retain: sub.options.retain_as_published && msg.retain,
                ids: sub.id.into_iter().collect(),
                format: sub.format,
                shared: Some(group.clone()),
            };
            self.offer_to(id, &client, msg, fit, batch.as_deref_mut(), routed);
        }
    }

    /// A member is leaving (its connection closed): its shared messages
    /// that may move go to another member of their group, connected ones
    /// first; with no other member they stay where they were.
    pub(super) fn hand_over_shared(
        &self,
        state: &mut State,
        client_id: &Arc<str>,
        client: &Client,
    ) {
        if state.shares.trie.is_empty() {
            return;
        }
        for message in orphans(client) {
            let group = message.shared.clone().expect("orphans are shared");
            let members: Members = state
                .shares
                .matching(&message.topic)
                .remove(&group)
                .unwrap_or_default()
                .into_iter()
                .map(|(c, s)| (c.clone(), s.clone()))
                .collect();
            let turn = state.shares.next_turn(&group);
            let refs: Vec<(&Arc<str>, &Sub)> = members.iter().map(|(c, s)| (c, s)).collect();
            let target = choose(state, &refs, turn, Some(client_id))
                .map_or_else(|| client.clone(), |(c, ..)| c);
            let mut c = target.lock().expect("client lock");
            if c.conn.is_some() {
                if let Some(p) = c.session.deliver(message) {
                    c.outbox.push(p);
                    c.wake.notify_one();
                }
            } else {
                // Kept (stored with that session at its next save).
                c.session.enqueue_offline(message);
            }
        }
    }
}
