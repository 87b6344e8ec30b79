//! Persistent sessions of the broker: storing a session (coalesced and in
//! snapshot order), restoring them at start, ending expired ones, and the
//! offline queue's durability before a publisher's PUBACK.

use std::sync::{Arc, Mutex};

use mqdb_resource::{Body, Meta, ResourceError};
use tokio::sync::Notify;

use super::{Broker, Client, ClientState, Sub};
use crate::message::now_ms;
use crate::persist::{self, StoredSession, StoredSubscription};

impl Broker {
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
    pub(super) async fn store_session(
        &self,
        client_id: &Arc<str>,
        client: &Client,
        generation: Option<u64>,
    ) {
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

    /// Stores a disconnected session if its stored copy is older than
    /// `generation`: a QoS 1/2 publisher is acknowledged only once the
    /// message is kept for the offline subscriber. Concurrent callers
    /// coalesce: one saves, the others find it done.
    pub(super) async fn store_queue(&self, client_id: &Arc<str>, client: &Client, generation: u64) {
        self.store_session(client_id, client, Some(generation))
            .await;
    }

    pub(super) fn restore_sessions(&self) -> Result<(), ResourceError> {
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
                over_quota: false,
                stalled: false,
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
            self.routes_mut()
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

    pub(super) async fn save_session(&self, client_id: &str, stored: &StoredSession) {
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

    pub(super) fn forget_session(&self, client_id: &Arc<str>) {
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
    pub(super) fn expire_sessions(&self) {
        let now = now_ms();
        let mut state = self.routes_mut();
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

    /// Stores every persistent session (graceful shutdown).
    pub async fn persist_all(&self) {
        let clients: Vec<(Arc<str>, Client)> = {
            let state = self.inner.state.read().expect("state lock");
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
