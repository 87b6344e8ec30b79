//! Storage errors. The engine's own error type never leaves this crate.

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The engine reported an I/O or corruption error. After a failed commit
    /// or fsync the store refuses further writes (see `Poisoned`).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A previous commit or fsync failed; nothing more is written until the
    /// process restarts and recovers from the journal.
    #[error("storage refuses writes after an earlier failure to persist: {0}")]
    Poisoned(String),
    /// Bytes on disk that this version cannot read.
    #[error("unreadable {what} (format byte {format}): written by a newer or corrupt mqdb")]
    Format {
        /// What was being read.
        what: &'static str,
        /// The format byte found.
        format: u8,
    },
    /// The writer thread has stopped (the store is closing).
    #[error("the store is closed")]
    Closed,
    /// A table name or id that cannot be stored (empty table, NUL byte, too long).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A conditional write's condition did not hold; the message says why.
    #[error("{0}")]
    Rejected(String),
}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> Self {
        StorageError::Engine(e.to_string())
    }
}
