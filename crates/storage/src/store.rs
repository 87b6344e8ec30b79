//! `Store`: the handle the rest of mqdb uses. Reads go straight to the engine
//! (any thread, no lock); writes go to the writer thread (see `writer.rs`) and
//! resolve once durable; committed changes are published on the feed.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::StorageError;
use crate::engine::{Engine, FjallEngine, Space};
use crate::feed::ChangeCursor;
use crate::format::{
    NodeId, decode_log, decode_record, index_prefix, record_key, validate_key_part,
};
use crate::hlc::Hlc;
use crate::types::{Change, Record, WriteOp, WriteOutcome};
use crate::writer::{Request, Writer};

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the database (created if missing).
    pub path: PathBuf,
    /// `true`: every commit is fsynced before writes are acknowledged.
    /// `false` ("buffered"): commits reach the OS, not necessarily the disk.
    pub sync: bool,
    /// This node's id (0 for a single server).
    pub node: NodeId,
}

/// Capacity of the writer's queue: callers wait (back-pressure) when it is full.
const QUEUE: usize = 4_096;
/// Changes buffered for slow feed receivers before they must catch up from the log.
const FEED_CAPACITY: usize = 16_384;
/// How long closing the store waits for its memtables to be flushed.
const CLOSE_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A handle to the store. Cheap to clone; the writer stops when the last
/// handle is dropped.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<dyn Engine>,
    writes: mpsc::Sender<Request>,
    feed: broadcast::Sender<Arc<Change>>,
    last_seq: Arc<AtomicU64>,
    node: NodeId,
    writer: Option<std::thread::JoinHandle<()>>,
    /// A commit failed (the writer refuses writes): nothing is flushed at
    /// close.
    poisoned: Arc<AtomicBool>,
}

impl Drop for Inner {
    /// Closes the writer's queue and waits for it to finish its last commit,
    /// so that the engine is released (and can be reopened) once the last
    /// handle is gone.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writes, closed));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if self.poisoned.load(Ordering::Acquire) {
            // The flush would fail (a full disk) or wait for a background
            // flush that crashed; the journal has every acknowledged commit.
            tracing::warn!(
                "not flushing the store at close after a failed commit; the journal has every acknowledged write"
            );
            return;
        }
        // Bounded: a flush that cannot finish (the disk filled up meanwhile
        // and fjall's flush worker stopped) must not keep the process from
        // exiting; the journal has every commit either way.
        let engine = self.engine.clone();
        let (done, flushed) = std::sync::mpsc::channel();
        let flushing = std::thread::Builder::new()
            .name("mqdb-close".into())
            .spawn(move || {
                let _ = done.send(engine.flush());
            });
        match flushing.map(|_| flushed.recv_timeout(CLOSE_FLUSH_WAIT)) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "flushing the store at close failed; the journal still has every commit");
            }
            Ok(Err(_)) => {
                tracing::warn!(waited = ?CLOSE_FLUSH_WAIT, "flushing the store at close did not finish; the journal still has every commit");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the close flush; the journal still has every commit");
            }
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("last_seq", &self.last_seq)
            .field("node", &self.node)
            .finish()
    }
}

/// Writes queued for the writer; [`PendingWrite::outcome`] resolves when
/// they are committed.
#[derive(Debug)]
pub struct PendingWrite(oneshot::Receiver<Result<Vec<WriteOutcome>, StorageError>>);

impl PendingWrite {
    /// The outcomes, once committed (durable if the store syncs).
    pub async fn outcome(self) -> Result<Vec<WriteOutcome>, StorageError> {
        self.0.await.map_err(|_| StorageError::Closed)?
    }
}

/// Records of a table in id order (tombstones skipped).
pub type RecordIter = Box<dyn Iterator<Item = Result<Record, StorageError>> + Send>;

impl Store {
    /// Opens the store with the fjall engine and starts the writer thread.
    pub fn open(config: StoreConfig) -> Result<Store, StorageError> {
        std::fs::create_dir_all(&config.path).map_err(|e| {
            StorageError::Engine(format!("cannot create {}: {e}", config.path.display()))
        })?;
        let engine = FjallEngine::open(&config.path)?;
        Self::with_engine(Arc::new(engine), config.sync, config.node)
    }

    /// Starts a store over any engine.
    pub fn with_engine(
        engine: Arc<dyn Engine>,
        sync: bool,
        node: NodeId,
    ) -> Result<Store, StorageError> {
        // The log's last entry gives the next sequence number and a clock floor.
        let (last_seq, last_hlc) = match engine.last(Space::Log)? {
            Some((k, v)) => {
                let seq = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    StorageError::Format {
                        what: "change log key",
                        format: 0,
                    }
                })?);
                (seq, decode_log(v)?.hlc)
            }
            None => (0, 0),
        };
        let last_seq = Arc::new(AtomicU64::new(last_seq));
        let poisoned = Arc::new(AtomicBool::new(false));
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let (writes, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            engine: engine.clone(),
            clock: Hlc::new(last_hlc),
            node,
            next_seq: last_seq.load(Ordering::Relaxed) + 1,
            sync,
            feed: feed.clone(),
            last_seq: last_seq.clone(),
            poisoned: None,
            poisoned_flag: poisoned.clone(),
            low_space: false,
        };
        let writer = std::thread::Builder::new()
            .name("mqdb-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::Engine(format!("cannot start the writer thread: {e}")))?;
        let inner = Inner {
            engine,
            writes,
            feed,
            last_seq,
            node,
            writer: Some(writer),
            poisoned,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// Submits writes; resolves when they are committed (durable if the store
    /// syncs). Waits for queue space when the writer is behind.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StorageError> {
        self.submit(ops).await?.outcome().await
    }

    /// Hands writes to the writer and returns as soon as they are queued
    /// (waiting only for queue space). Writes submitted one after another
    /// are committed in that order, so a caller that submits in order and
    /// awaits the outcomes later keeps its order without waiting for each.
    pub async fn submit(&self, ops: Vec<WriteOp>) -> Result<PendingWrite, StorageError> {
        for op in &ops {
            validate_key_part(&op.table, "table")?;
            validate_key_part(&op.id, "id")?;
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .writes
            .send(Request { ops, reply })
            .await
            .map_err(|_| StorageError::Closed)?;
        Ok(PendingWrite(rx))
    }

    /// One write.
    pub async fn write_one(&self, op: WriteOp) -> Result<WriteOutcome, StorageError> {
        let mut outcomes = self.write(vec![op]).await?;
        outcomes.pop().ok_or(StorageError::Closed)
    }

    /// The live record `table/id`, if any.
    pub fn get(&self, table: &str, id: &str) -> Result<Option<Record>, StorageError> {
        let Some(raw) = self
            .inner
            .engine
            .get(Space::Records, &record_key(table, id))?
        else {
            return Ok(None);
        };
        let r = decode_record(raw)?;
        Ok((!r.tombstone).then(|| Record {
            id: id.to_string(),
            value: r.payload,
            seq: r.seq,
            hlc: r.hlc,
            node: r.node,
        }))
    }

    /// Live records of `table` whose id starts with `id_prefix`, in id order,
    /// streamed from the engine (never collected in memory).
    pub fn scan(&self, table: &str, id_prefix: &str) -> RecordIter {
        let skip = table.len() + 1;
        let iter = self
            .inner
            .engine
            .prefix(Space::Records, &record_key(table, id_prefix));
        Box::new(iter.filter_map(move |entry| {
            let (key, value) = match entry {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e)),
            };
            let r = match decode_record(value) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            if r.tombstone {
                return None;
            }
            let id = String::from_utf8_lossy(&key[skip..]).into_owned();
            Some(Ok(Record {
                id,
                value: r.payload,
                seq: r.seq,
                hlc: r.hlc,
                node: r.node,
            }))
        }))
    }

    /// Ids of `table` records whose `attribute` index key lies within the
    /// bounds, in index order. Bounds are value keys as given to `IndexEntry`.
    pub fn index_range(
        &self,
        table: &str,
        attribute: &str,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<String, StorageError>> + Send> {
        let prefix = index_prefix(table, attribute);
        let with = |v: &[u8], tail: &[u8]| [prefix.as_slice(), v, tail].concat();
        // Ids are UTF-8, which never contains 0xFF: `value ++ 0xFF` sorts after
        // every entry of `value` and before every greater value.
        let start = match lower {
            Bound::Included(v) => Bound::Included(with(v, &[])),
            Bound::Excluded(v) => Bound::Excluded(with(v, &[0xFF])),
            Bound::Unbounded => Bound::Included(prefix.clone()),
        };
        let end = match upper {
            Bound::Included(v) => Bound::Included(with(v, &[0xFF])),
            Bound::Excluded(v) => Bound::Excluded(with(v, &[])),
            Bound::Unbounded => {
                let mut end = prefix.clone();
                *end.last_mut().expect("prefix ends in a separator") = 1;
                Bound::Excluded(end)
            }
        };
        let iter = self.inner.engine.range(Space::Index, (start, end));
        Box::new(iter.map(|e| e.map(|(_, id)| String::from_utf8_lossy(&id).into_owned())))
    }

    /// About how many records are stored, all tables together (an estimate
    /// from the engine: deleted records count until compaction).
    pub fn approximate_records(&self) -> u64 {
        self.inner.engine.approximate_len(Space::Records)
    }

    /// The sequence number of the last committed change (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// Committed changes with sequence numbers in `from..=to`, from the log.
    pub fn changes(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<Arc<Change>, StorageError>> + Send> {
        if from > to {
            return Box::new(std::iter::empty());
        }
        let range = (
            Bound::Included(from.to_be_bytes().to_vec()),
            Bound::Included(to.to_be_bytes().to_vec()),
        );
        Box::new(self.inner.engine.range(Space::Log, range).map(|entry| {
            let (k, v) = entry?;
            let seq =
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| StorageError::Format {
                    what: "change log key",
                    format: 0,
                })?);
            let e = decode_log(v)?;
            Ok(Arc::new(Change {
                seq,
                table: e.table.into(),
                id: e.id.into(),
                op: e.op,
                hlc: e.hlc,
                node: e.node,
            }))
        }))
    }

    /// A cursor over every change after `after`, live, in commit order, with
    /// no gap and no duplicate: receivers that fall behind the in-memory feed
    /// catch up from the log.
    pub fn follow(&self, after: u64) -> ChangeCursor {
        ChangeCursor::new(self.clone(), self.inner.feed.subscribe(), after)
    }
}
