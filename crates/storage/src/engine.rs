//! The key-value engine under the store, behind a small trait so the engine
//! can be swapped (redb is the planned fallback) without touching the write
//! path. The default is fjall: an LSM tree with a journal, where one batch is
//! one journal append and durability is one fsync of that journal.

use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::StorageError;

/// The keyspaces of the store (see `format.rs` for their layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Records by (table, id).
    Records,
    /// Secondary index entries.
    Index,
    /// The change log by sequence number.
    Log,
    /// Small bookkeeping values.
    Meta,
}

/// One mutation of an atomic batch.
#[derive(Debug, Clone)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put(Space, Vec<u8>, Bytes),
    /// Remove `key`.
    Remove(Space, Vec<u8>),
}

/// A key-value pair read from the engine.
pub type Entry = (Bytes, Bytes);

/// An iterator over entries in key order.
pub type EntryIter = Box<dyn Iterator<Item = Result<Entry, StorageError>> + Send>;

/// What the store needs of an engine.
pub trait Engine: Send + Sync + 'static {
    /// The value of `key`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError>;
    /// Entries with keys in `range`, ascending.
    fn range(&self, space: Space, range: (Bound<Vec<u8>>, Bound<Vec<u8>>)) -> EntryIter;
    /// Entries whose key starts with `prefix`, ascending.
    fn prefix(&self, space: Space, prefix: &[u8]) -> EntryIter;
    /// The entry with the greatest key.
    fn last(&self, space: Space) -> Result<Option<Entry>, StorageError>;
    /// Applies `ops` atomically; when `sync` is true, returns only once they
    /// are on stable storage.
    fn commit(&self, ops: Vec<BatchOp>, sync: bool) -> Result<(), StorageError>;
    /// Called at a clean shutdown: write in-memory state to its files so the
    /// next open has nothing to replay.
    fn flush(&self) -> Result<(), StorageError>;
    /// About how many entries `space` holds (cheap; may count overwritten
    /// and deleted entries not yet compacted away).
    fn approximate_len(&self, space: Space) -> u64;

    /// Bytes free for the store on its device, if the engine knows (the
    /// writer keeps a reserve: below it, writes are refused before they
    /// reach the disk).
    fn free_space(&self) -> Option<u64> {
        None
    }
}

/// The fjall engine.
pub struct FjallEngine {
    path: std::path::PathBuf,
    db: Database,
    records: Keyspace,
    index: Keyspace,
    log: Keyspace,
    meta: Keyspace,
}

impl FjallEngine {
    /// Opens (or creates) a database in `path`, recovering from its journal.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        // A smaller journal than fjall's default bounds how much a restart
        // replays (a 1M-record database must open in well under a second).
        //
        // Memory is budgeted (the broker aims at <= 100 MB resident under
        // load): a 16 MiB block cache and memtables far below fjall's 64 MiB
        // default per keyspace, which let four keyspaces hold 256 MiB of
        // unflushed writes. Writes are journaled either way; a smaller
        // memtable only flushes sooner (measured: 50,000 retained writes
        // at the same speed with 8 MiB as with 16 MiB for records).
        let db = Database::builder(path)
            .max_journaling_size(64 * 1024 * 1024)
            .cache_size(16 * 1024 * 1024)
            .open()?;
        let sized = |mib: u64| {
            move || KeyspaceCreateOptions::default().max_memtable_size(mib * 1024 * 1024)
        };
        let records = db.keyspace("records", sized(8))?;
        let index = db.keyspace("index", sized(4))?;
        let log = db.keyspace("log", sized(4))?;
        let meta = db.keyspace("meta", sized(1))?;
        Ok(FjallEngine {
            path: path.to_path_buf(),
            db,
            records,
            index,
            log,
            meta,
        })
    }

    fn space(&self, space: Space) -> &Keyspace {
        match space {
            Space::Records => &self.records,
            Space::Index => &self.index,
            Space::Log => &self.log,
            Space::Meta => &self.meta,
        }
    }
}

impl std::fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FjallEngine")
    }
}

fn entries(iter: fjall::Iter) -> EntryIter {
    Box::new(iter.map(|guard| {
        let (k, v) = guard.into_inner()?;
        Ok((Bytes::from(k), Bytes::from(v)))
    }))
}

impl Engine for FjallEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.space(space).get(key)?.map(Bytes::from))
    }

    fn range(&self, space: Space, range: (Bound<Vec<u8>>, Bound<Vec<u8>>)) -> EntryIter {
        entries(self.space(space).range(range))
    }

    fn prefix(&self, space: Space, prefix: &[u8]) -> EntryIter {
        entries(self.space(space).prefix(prefix))
    }

    fn last(&self, space: Space) -> Result<Option<Entry>, StorageError> {
        match self.space(space).last_key_value() {
            Some(guard) => {
                let (k, v) = guard.into_inner()?;
                Ok(Some((Bytes::from(k), Bytes::from(v))))
            }
            None => Ok(None),
        }
    }

    fn commit(&self, ops: Vec<BatchOp>, sync: bool) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        for op in ops {
            match op {
                BatchOp::Put(space, k, v) => batch.insert(self.space(space), k, v),
                BatchOp::Remove(space, k) => batch.remove(self.space(space), k),
            }
        }
        batch.commit()?;
        // fdatasync of the journal: it is appended to, so the size metadata it
        // needs is flushed too; the rest of the inode is irrelevant here.
        let mode = if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        Ok(self.db.persist(mode)?)
    }

    fn approximate_len(&self, space: Space) -> u64 {
        self.space(space).approximate_len() as u64
    }

    fn free_space(&self) -> Option<u64> {
        // What an unprivileged process may use (f_bavail), not what root may.
        let stat = rustix::fs::statvfs(&self.path).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    fn flush(&self) -> Result<(), StorageError> {
        // fjall waits for a memtable flush that cannot succeed if the
        // directory is gone; the journal is all there is to keep then.
        if !self.path.is_dir() {
            return Err(StorageError::Engine(format!(
                "{} no longer exists",
                self.path.display()
            )));
        }
        for space in [&self.records, &self.index, &self.log, &self.meta] {
            space.rotate_memtable_and_wait()?;
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
