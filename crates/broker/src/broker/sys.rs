//! Broker statistics: the figures shared by `$SYS/broker/...` (retained
//! messages refreshed every `sys_interval` seconds) and `/metrics`.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use mqdb_codec::{Publish, QoS, TopicName};
use mqdb_resource::{Body, ResourceError};

use super::{Broker, meta_of};
use crate::message::{Message, Payload};

impl Broker {
    /// The statistics as (name, help, kind, value), for `$SYS` and `/metrics`.
    pub fn figures(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let st = &self.inner.stats;
        let subscriptions = {
            let state = self.inner.state.read().expect("state lock");
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
    pub(super) async fn publish_sys(&self, uptime: u64) {
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
    pub(super) async fn publish_internal(&self, publish: &Publish) -> Result<(), ResourceError> {
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
}
