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
    #[error("storage refuses writes after a failure to persist: {0}")]
    Poisoned(String),
    /// The disk is (nearly) full. Below the free-space reserve a write is
    /// refused before anything is written, and writes resume once space is
    /// freed; a commit that still hits "no space left" poisons the store
    /// like any failed commit (refused until restart).
    #[error("storage full: {0}")]
    Full(String),
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
        if disk_full(&e) {
            StorageError::Full(format!(
                "no space left on the device ({e}); writes are refused until space is freed and mqdb restarts"
            ))
        } else {
            StorageError::Engine(e.to_string())
        }
    }
}

/// Whether an engine error comes from a full disk or an exhausted quota
/// (ENOSPC, EDQUOT), found by walking its sources down to the I/O error.
fn disk_full(e: &fjall::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                return true;
            }
        }
        current = err.source();
    }
    // Errors of the LSM tree inside fjall do not expose their I/O source;
    // their debug form names the kind.
    let debug = format!("{e:?}");
    debug.contains("StorageFull") || debug.contains("QuotaExceeded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_error_from_a_full_disk_is_told_apart() {
        for kind in [
            std::io::ErrorKind::StorageFull,
            std::io::ErrorKind::QuotaExceeded,
        ] {
            let e = StorageError::from(fjall::Error::Io(std::io::Error::from(kind)));
            assert!(matches!(e, StorageError::Full(_)), "{kind:?}: {e:?}");
            assert!(
                e.to_string().starts_with("storage full: no space left"),
                "{e}"
            );
        }
        let other = StorageError::from(fjall::Error::Io(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        )));
        assert!(matches!(other, StorageError::Engine(_)), "{other:?}");
    }
}
