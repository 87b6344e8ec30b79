//! The single writer thread and its group commit.
//!
//! Every write of the store goes through one bounded channel to this thread.
//! It takes the first request and whatever else is already queued (up to
//! `MAX_OPS` operations or `MAX_BYTES` of payload), applies them in arrival
//! order to one atomic engine batch, makes the batch durable with one fsync,
//! and only then answers the callers and publishes the changes on the feed, in
//! commit order. There is no timer: requests that arrive during one fsync form
//! the next batch, so the batch size follows the load.
//!
//! Last-writer-wins on (hlc, node) is decided here, so local and replicated
//! writes follow one rule. After a failed commit or fsync the writer refuses
//! every later write (`StorageError::Poisoned`, or `Full` when the disk is
//! full): what is on disk is then
//! whatever the journal recovers on restart, and nothing is acknowledged that
//! might not be there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::StorageError;
use crate::engine::{BatchOp, Engine, Space};
use crate::format::{
    ChangeOp, NodeId, StoredRecord, decode_record, encode_log, encode_record, index_key, record_key,
};
use crate::hlc::Hlc;
use crate::types::{Change, Decision, Mutation, Record, WriteOp, WriteOutcome};

/// Most operations in one commit.
pub(crate) const MAX_OPS: usize = 1_000;
/// Most payload bytes in one commit (a request is never split).
pub(crate) const MAX_BYTES: usize = 1 << 20;
/// Free space the writer keeps on the data directory's device: below it,
/// writes (other than deletes) are refused before reaching the disk, so a
/// full disk neither fails a commit half-way nor leaves the LSM tree without
/// room to flush its memtables (32 MiB covers a flush of all of them).
pub(crate) const MIN_FREE_BYTES: u64 = 32 << 20;

pub(crate) type Reply = oneshot::Sender<Result<Vec<WriteOutcome>, StorageError>>;

/// A caller's writes and where to send their outcomes.
pub(crate) struct Request {
    pub(crate) ops: Vec<WriteOp>,
    pub(crate) reply: Reply,
}

pub(crate) struct Writer {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) clock: Hlc,
    pub(crate) node: NodeId,
    pub(crate) next_seq: u64,
    pub(crate) sync: bool,
    pub(crate) feed: broadcast::Sender<Arc<Change>>,
    pub(crate) last_seq: Arc<AtomicU64>,
    /// Set by a failed commit: what every later write is refused with.
    pub(crate) poisoned: Option<StorageError>,
    /// Raised with `poisoned`, for the store's close (which then does not
    /// try to flush: the flush would fail or wait forever).
    pub(crate) poisoned_flag: Arc<AtomicBool>,
    /// Free space was below the reserve at the last commit (logged on change).
    pub(crate) low_space: bool,
}

/// The mutations of one commit, keyed so that a key written twice in the
/// batch keeps only its last value (an engine batch gives all its entries one
/// sequence number, so it must not hold two entries for one key).
#[derive(Default)]
struct Pending {
    ops: HashMap<(u8, Vec<u8>), Option<Bytes>>,
    records: HashMap<Vec<u8>, Option<StoredRecord>>,
    changes: Vec<Arc<Change>>,
}

impl Pending {
    fn put(&mut self, space: Space, key: Vec<u8>, value: Bytes) {
        self.ops.insert((space as u8, key), Some(value));
    }
    fn remove(&mut self, space: Space, key: Vec<u8>) {
        self.ops.insert((space as u8, key), None);
    }
    fn into_ops(self) -> Vec<BatchOp> {
        let space = |tag: u8| match tag {
            0 => Space::Records,
            1 => Space::Index,
            2 => Space::Log,
            _ => Space::Meta,
        };
        self.ops
            .into_iter()
            .map(|((tag, key), value)| match value {
                Some(v) => BatchOp::Put(space(tag), key, v),
                None => BatchOp::Remove(space(tag), key),
            })
            .collect()
    }
}

impl Writer {
    /// Runs until every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut ops = first.ops.len();
            let mut bytes = payload_len(&first.ops);
            let mut requests = vec![first];
            while ops < MAX_OPS && bytes < MAX_BYTES {
                match rx.try_recv() {
                    Ok(r) => {
                        ops += r.ops.len();
                        bytes += payload_len(&r.ops);
                        requests.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(requests);
        }
    }

    fn commit_group(&mut self, requests: Vec<Request>) {
        if let Some(refused) = &self.poisoned {
            for r in requests {
                let _ = r.reply.send(Err(refused.clone()));
            }
            return;
        }
        let requests = self.refuse_below_reserve(requests);
        if requests.is_empty() {
            return;
        }
        let first_seq = self.next_seq;
        let mut pending = Pending::default();
        let mut replies = Vec::with_capacity(requests.len());
        let mut failed = None;
        for request in requests {
            let mut outcomes = Vec::with_capacity(request.ops.len());
            for op in request.ops {
                match self.apply(op, &mut pending) {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            replies.push((request.reply, outcomes));
            if failed.is_some() {
                break;
            }
        }
        if let Some(e) = failed {
            // A read failed: nothing of this group is written.
            self.next_seq = first_seq;
            for (reply, _) in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let changes = std::mem::take(&mut pending.changes);
        if !changes.is_empty() {
            if let Err(e) = self.engine.commit(pending.into_ops(), self.sync) {
                // A full disk keeps its own error (callers can tell it
                // apart); anything else poisons the store.
                let refused = match e {
                    StorageError::Full(_) => e,
                    other => StorageError::Poisoned(other.to_string()),
                };
                tracing::error!(error = %refused, "commit failed: refusing further writes until restart");
                self.poisoned = Some(refused.clone());
                self.poisoned_flag.store(true, Ordering::Release);
                for (reply, _) in replies {
                    let _ = reply.send(Err(refused.clone()));
                }
                return;
            }
            self.last_seq.store(self.next_seq - 1, Ordering::Release);
        }
        // The feed first: once a write is acknowledged, its change is on the
        // feed (a cursor that sees the ack finds the change without the log).
        for change in changes {
            // No receiver is not an error: nobody is watching.
            let _ = self.feed.send(change);
        }
        for (reply, outcomes) in replies {
            let _ = reply.send(Ok(outcomes));
        }
    }

    /// Refuses, before anything is written, the requests that would add
    /// data while the device has less than `MIN_FREE_BYTES` free (deletes
    /// still pass: they are how space is given back); returns the rest.
    fn refuse_below_reserve(&mut self, requests: Vec<Request>) -> Vec<Request> {
        let free = self.engine.free_space();
        let low = free.is_some_and(|f| f < MIN_FREE_BYTES);
        if low != self.low_space {
            self.low_space = low;
            match free {
                Some(f) if low => tracing::error!(
                    free_mib = f >> 20,
                    reserve_mib = MIN_FREE_BYTES >> 20,
                    "the data directory's device is nearly full: refusing writes until space is freed"
                ),
                _ => tracing::warn!("free space is back above the reserve: accepting writes again"),
            }
        }
        if !low {
            return requests;
        }
        let why = format!(
            "{} MiB free on the data directory's device, below the {} MiB reserve; nothing was written, and writes resume once space is freed",
            free.unwrap_or(0) >> 20,
            MIN_FREE_BYTES >> 20
        );
        let (deletes, refused): (Vec<Request>, Vec<Request>) =
            requests.into_iter().partition(|r| {
                r.ops
                    .iter()
                    .all(|op| matches!(op.mutation, Mutation::Delete))
            });
        for r in refused {
            let _ = r.reply.send(Err(StorageError::Full(why.clone())));
        }
        deletes
    }

    fn current(&self, key: &[u8], pending: &Pending) -> Result<Option<StoredRecord>, StorageError> {
        if let Some(r) = pending.records.get(key) {
            return Ok(r.clone());
        }
        self.engine
            .get(Space::Records, key)?
            .map(decode_record)
            .transpose()
    }

    fn apply(&mut self, op: WriteOp, pending: &mut Pending) -> Result<WriteOutcome, StorageError> {
        let key = record_key(&op.table, &op.id);
        let blind = matches!(op.mutation, Mutation::Overwrite { .. }) && op.stamp.is_none();
        let current = if blind {
            None
        } else {
            self.current(&key, pending)?
        };
        let live = current.as_ref().filter(|r| !r.tombstone);
        let existed = live.is_some();
        if let Some((hlc, node)) = op.stamp {
            self.clock.observe(hlc);
            if let Some(cur) = &current {
                if (hlc, node) <= (cur.hlc, cur.node) {
                    return Ok(WriteOutcome::Superseded);
                }
            }
        }
        let decision = match op.mutation {
            Mutation::Put { value, index } => Decision::Put { value, index },
            Mutation::Overwrite { value } => Decision::Put {
                value,
                index: Vec::new(),
            },
            // A local delete of nothing changes nothing; a replicated one
            // leaves a tombstone so an older write cannot resurrect the record.
            Mutation::Delete if !existed && op.stamp.is_none() => Decision::Unchanged,
            Mutation::Delete => Decision::Delete,
            Mutation::Modify(f) => {
                let record = live.map(|r| Record {
                    id: op.id.to_string(),
                    value: r.payload.clone(),
                    seq: r.seq,
                    hlc: r.hlc,
                    node: r.node,
                });
                match f(record.as_ref()) {
                    Ok(d) => d,
                    Err(why) => return Ok(WriteOutcome::Rejected(why)),
                }
            }
        };
        let (hlc, node) = match op.stamp {
            Some(stamp) => stamp,
            None => (self.clock.now(), self.node),
        };
        let (payload, index, tombstone) = match decision {
            Decision::Unchanged => return Ok(WriteOutcome::Unchanged { existed }),
            Decision::Put { value, index } => (value, index, false),
            Decision::Delete => (Bytes::new(), Vec::new(), true),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(cur) = &current {
            for old in &cur.index_keys {
                pending.remove(Space::Index, old.to_vec());
            }
        }
        let index_keys: Vec<Bytes> = index
            .iter()
            .map(|e| Bytes::from(index_key(&op.table, &e.attribute, &e.value_key, &op.id)))
            .collect();
        for k in &index_keys {
            pending.put(
                Space::Index,
                k.to_vec(),
                Bytes::copy_from_slice(op.id.as_bytes()),
            );
        }
        let stored = StoredRecord {
            tombstone,
            hlc,
            node,
            seq,
            index_keys,
            payload: payload.clone(),
        };
        pending.put(Space::Records, key.clone(), encode_record(&stored));
        pending.records.insert(key, Some(stored));
        let change_op = if tombstone {
            ChangeOp::Delete
        } else {
            ChangeOp::Put(payload)
        };
        pending.put(
            Space::Log,
            seq.to_be_bytes().to_vec(),
            encode_log(&change_op, hlc, node, &op.table, &op.id),
        );
        pending.changes.push(Arc::new(Change {
            seq,
            table: op.table,
            id: op.id,
            op: change_op,
            hlc,
            node,
        }));
        Ok(WriteOutcome::Written { seq, hlc, existed })
    }
}

fn payload_len(ops: &[WriteOp]) -> usize {
    ops.iter()
        .map(|op| match &op.mutation {
            Mutation::Put { value, .. } | Mutation::Overwrite { value } => value.len(),
            _ => 64,
        })
        .sum()
}
