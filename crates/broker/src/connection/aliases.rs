//! Outbound topic aliases (MQTT 5.0 section 3.3.2.3.4): the broker replaces
//! a topic it has sent before with a two-byte alias, up to the smaller of
//! the client's Topic Alias Maximum and `topic_alias_maximum`.
//!
//! Aliases belong to one network connection (MQTT-3.3.2-7): this map lives
//! in the connection and is applied when a PUBLISH is encoded, so what the
//! session stores (and resends after a reconnect) never carries an alias.
//! When every alias is taken, the oldest assignment is reused: sending the
//! topic with that alias again re-maps it on the client.

use std::collections::HashMap;
use std::num::NonZeroU16;

use mqdb_codec::{Publish, TopicName};

/// One connection's outbound aliases.
#[derive(Debug, Default)]
pub(super) struct OutboundAliases {
    max: u16,
    by_topic: HashMap<TopicName, u16>,
    by_alias: Vec<Option<TopicName>>,
    /// The alias assigned next (1-based), cycling through `1..=max`.
    next: u16,
}

impl OutboundAliases {
    /// Aliases up to `max` (0: none are used).
    pub(super) fn new(max: u16) -> Self {
        Self {
            max,
            by_topic: HashMap::new(),
            by_alias: vec![None; usize::from(max)],
            next: 1,
        }
    }

    /// The PUBLISH to encode instead of `p`, if an alias applies: the
    /// topic replaced by a known alias, or sent once with a new one.
    pub(super) fn apply(&mut self, p: &Publish) -> Option<Publish> {
        if self.max == 0 || p.topic.is_empty() {
            return None;
        }
        let mut out = p.clone();
        if let Some(&alias) = self.by_topic.get(&p.topic) {
            out.properties.topic_alias = NonZeroU16::new(alias);
            out.topic = TopicName::default();
            return Some(out);
        }
        let alias = self.next;
        self.next = if alias >= self.max { 1 } else { alias + 1 };
        let slot = &mut self.by_alias[usize::from(alias - 1)];
        if let Some(old) = slot.replace(p.topic.clone()) {
            self.by_topic.remove(&old);
        }
        self.by_topic.insert(p.topic.clone(), alias);
        out.properties.topic_alias = NonZeroU16::new(alias);
        Some(out)
    }
}

impl OutboundAliases {
    /// Drops the mapping of `alias` (its packet was not sent).
    pub(super) fn forget(&mut self, alias: Option<NonZeroU16>) {
        if let Some(slot) = alias.and_then(|a| self.by_alias.get_mut(usize::from(a.get() - 1))) {
            if let Some(topic) = slot.take() {
                self.by_topic.remove(&topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mqdb_codec::QoS;

    use super::*;

    fn publish(topic: &str) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: TopicName::new(topic).unwrap(),
            packet_id: None,
            properties: Default::default(),
            payload: Bytes::from_static(b"x"),
        }
    }

    fn alias(p: &Publish) -> (String, u16) {
        (
            p.topic.to_string(),
            p.properties.topic_alias.map_or(0, NonZeroU16::get),
        )
    }

    #[test]
    fn a_topic_is_sent_once_then_only_its_alias() {
        let mut a = OutboundAliases::new(2);
        assert_eq!(alias(&a.apply(&publish("a")).unwrap()), ("a".into(), 1));
        assert_eq!(alias(&a.apply(&publish("a")).unwrap()), ("".into(), 1));
        assert_eq!(alias(&a.apply(&publish("b")).unwrap()), ("b".into(), 2));
        // Full: the oldest alias is reassigned, with its topic sent again.
        assert_eq!(alias(&a.apply(&publish("c")).unwrap()), ("c".into(), 1));
        assert_eq!(alias(&a.apply(&publish("a")).unwrap()), ("a".into(), 2));
        assert_eq!(alias(&a.apply(&publish("c")).unwrap()), ("".into(), 1));
    }

    #[test]
    fn no_aliases_when_the_maximum_is_zero() {
        assert!(OutboundAliases::new(0).apply(&publish("a")).is_none());
    }
}
