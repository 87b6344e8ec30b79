//! The embedded storage engine of mqdb: records keyed by (table, id),
//! secondary indexes, the change log, the single group-commit writer and the
//! change feed.
//!
//! Writes are batched by one writer thread into one atomic, fsynced commit
//! (group commit); a caller is answered only once its batch is durable, and
//! the change feed delivers committed changes in commit order. Payloads are
//! opaque bytes: the resource layer decides what they mean.
//!
//! It is not: a query engine, a schema, or anything that knows MQTT or HTTP.
//! It depends on no other mqdb crate.

mod engine;
mod error;
mod feed;
mod format;
mod hlc;
mod store;
mod types;
mod writer;

pub use engine::{BatchOp, Engine, Entry, EntryIter, FjallEngine, Space};
pub use error::StorageError;
pub use feed::ChangeCursor;
pub use format::{ChangeOp, NodeId};
pub use hlc::{Hlc, Timestamp, millis};
pub use store::{PendingWrite, RecordIter, Store, StoreConfig};
pub use types::{Change, Decision, IndexEntry, ModifyFn, Mutation, Record, WriteOp, WriteOutcome};
