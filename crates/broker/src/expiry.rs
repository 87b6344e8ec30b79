//! Retained records with a time to live (a retained PUBLISH with a Message
//! Expiry Interval): when the time comes, the record is deleted — only if it
//! is still the version that carried the expiry — and the delete reaches
//! subscribers through the change feed like any other (a zero-length payload).
//!
//! The schedule is in memory: it learns of expiring records from the change
//! feed. After a restart, records whose time passed are not served (reads
//! skip expired records) and are deleted when next written or scheduled.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use mqdb_storage::{Decision, Mutation, Store, WriteOp};
use tokio::sync::mpsc;

use crate::message::now_ms;

/// A record due to expire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Due {
    pub(crate) at: u64,
    pub(crate) table: Arc<str>,
    pub(crate) id: Arc<str>,
    pub(crate) version: u64,
}

/// Runs until the sender side is dropped or `closing` turns true.
pub(crate) async fn sweep(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Due>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    loop {
        if *closing.borrow() {
            return;
        }
        let next_at = heap.peek().map(|Reverse(d)| d.at);
        let wait = next_at.map(|at| std::time::Duration::from_millis(at.saturating_sub(now_ms())));
        tokio::select! {
            _ = closing.changed() => return,
            due = rx.recv() => match due {
                Some(d) => heap.push(Reverse(d)),
                None => return,
            },
            () = async { tokio::time::sleep(wait.unwrap_or_default()).await }, if wait.is_some() => {
                let now = now_ms();
                while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                    let Reverse(d) = heap.pop().expect("peeked");
                    let version = d.version;
                    let op = WriteOp::local(
                        d.table.clone(),
                        d.id.clone(),
                        Mutation::Modify(Box::new(move |current| {
                            Ok(match current {
                                Some(r) if r.seq == version => Decision::Delete,
                                _ => Decision::Unchanged,
                            })
                        })),
                    );
                    if let Err(e) = store.write_one(op).await {
                        tracing::warn!(table = %d.table, id = %d.id, error = %e, "deleting an expired record failed");
                    }
                }
            }
        }
    }
}
