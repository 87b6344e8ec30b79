//! The values that cross the storage API: write operations and their
//! outcomes, records as read, and changes as published.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::format::{ChangeOp, NodeId};
use crate::hlc::Timestamp;

/// A secondary index entry of a record: the attribute and the
/// order-preserving key of its value (computed by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Attribute name.
    pub attribute: String,
    /// Order-preserving, self-delimiting encoding of the value.
    pub value_key: Vec<u8>,
}

/// What a read-modify-write decides, given the current record.
#[derive(Debug)]
pub enum Decision {
    /// Store this value.
    Put {
        /// The new payload.
        value: Bytes,
        /// Its index entries.
        index: Vec<IndexEntry>,
    },
    /// Delete the record.
    Delete,
    /// Change nothing.
    Unchanged,
}

/// A read-modify-write run inside the writer thread, so that no other write
/// can come between the read and the write (PATCH, create-if-absent).
/// An `Err` refuses the write with that message.
pub type ModifyFn = Box<dyn FnOnce(Option<&Record>) -> Result<Decision, String> + Send>;

/// The change a write makes.
pub enum Mutation {
    /// Replace the record (or create it).
    Put {
        /// The payload.
        value: Bytes,
        /// Its index entries.
        index: Vec<IndexEntry>,
    },
    /// Replace the record (or create it) without reading it first: for a
    /// table that has no index (the old record then has no index entries to
    /// remove) and a caller that need not know whether it existed (the
    /// outcome says `existed: false`). A replicated write (with a stamp)
    /// is treated as `Put`: last-writer-wins needs the current record.
    /// It saves the writer thread a point read per write.
    Overwrite {
        /// The payload.
        value: Bytes,
    },
    /// Delete the record.
    Delete,
    /// Decide from the current record.
    Modify(ModifyFn),
}

impl fmt::Debug for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutation::Put { value, index } => f
                .debug_struct("Put")
                .field("len", &value.len())
                .field("index", index)
                .finish(),
            Mutation::Overwrite { value } => f
                .debug_struct("Overwrite")
                .field("len", &value.len())
                .finish(),
            Mutation::Delete => f.write_str("Delete"),
            Mutation::Modify(_) => f.write_str("Modify(..)"),
        }
    }
}

/// One write of a record.
#[derive(Debug)]
pub struct WriteOp {
    /// Table.
    pub table: Arc<str>,
    /// Record id.
    pub id: Arc<str>,
    /// What to do.
    pub mutation: Mutation,
    /// `None` for a local write (the writer stamps it with its clock);
    /// `Some((hlc, node))` for a replicated write, applied only if it is newer
    /// than the stored state (last-writer-wins on (hlc, node)).
    pub stamp: Option<(Timestamp, NodeId)>,
}

impl WriteOp {
    /// A local write.
    pub fn local(table: impl Into<Arc<str>>, id: impl Into<Arc<str>>, mutation: Mutation) -> Self {
        WriteOp {
            table: table.into(),
            id: id.into(),
            mutation,
            stamp: None,
        }
    }
}

/// What became of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written and durable (per the store's durability setting).
    Written {
        /// The change's sequence number: the record's new version.
        seq: u64,
        /// Its timestamp.
        hlc: Timestamp,
        /// Whether a live record existed before.
        existed: bool,
    },
    /// Nothing to change (a delete of a missing record, or `Decision::Unchanged`).
    Unchanged {
        /// Whether a live record exists.
        existed: bool,
    },
    /// A replicated write older than the stored state: ignored (LWW).
    Superseded,
    /// The read-modify-write refused, with its message.
    Rejected(String),
}

/// A live record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Record id.
    pub id: String,
    /// Payload (opaque to storage).
    pub value: Bytes,
    /// Version: the sequence number of the change that wrote it.
    pub seq: u64,
    /// Timestamp of that change.
    pub hlc: Timestamp,
    /// Node that made it.
    pub node: NodeId,
}

/// A committed change, as delivered by the change feed in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Sequence number (strictly increasing, gap-free per store).
    pub seq: u64,
    /// Table.
    pub table: Arc<str>,
    /// Record id.
    pub id: Arc<str>,
    /// Put or delete.
    pub op: ChangeOp,
    /// Timestamp.
    pub hlc: Timestamp,
    /// Node that made the change.
    pub node: NodeId,
}
