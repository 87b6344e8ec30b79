//! Errors of the resource layer. Each says whose fault it is: the HTTP layer
//! maps them to a status in one place, the broker to a reason code.

use mqdb_storage::StorageError;

use crate::format::FormatError;
use crate::query::QueryError;
use crate::record::CorruptRecord;
use crate::schema::ValidationError;

/// Why a resource operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// No exported table has this name (or path).
    #[error("no table `{0}`")]
    UnknownTable(String),
    /// The record does not exist.
    #[error("no record `{id}` in {table}")]
    NotFound {
        /// Table.
        table: String,
        /// Id.
        id: String,
    },
    /// The record does not fit the table's schema.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// The request cannot be applied (e.g. patching a binary record).
    #[error("{0}")]
    Unprocessable(String),
    /// The body is not valid in its declared format.
    #[error("{0}")]
    Malformed(#[from] FormatError),
    /// A query that cannot be parsed.
    #[error("{0}")]
    BadQuery(#[from] QueryError),
    /// An id that cannot be stored (empty, NUL, too long).
    #[error("invalid id: {0}")]
    BadId(String),
    /// The store failed; the write was not made.
    #[error("{0}")]
    Storage(StorageError),
    /// Stored bytes could not be read.
    #[error("{0}")]
    Corrupt(#[from] CorruptRecord),
}

impl From<StorageError> for ResourceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidKey(why) => ResourceError::BadId(why),
            other => ResourceError::Storage(other),
        }
    }
}

impl ResourceError {
    /// True when the client's input is at fault (HTTP 4xx), false for
    /// failures of the server (HTTP 5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, ResourceError::Storage(_) | ResourceError::Corrupt(_))
    }
}
