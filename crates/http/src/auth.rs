//! Where authentication and authorisation slot in (SPEC §5): every request
//! that reaches a table passes through [`authorize`] with the operation it
//! is about to perform, after the table is resolved and before anything is
//! read or written.
//!
//! Not implemented yet: there are no users or roles in the resource layer,
//! so every request is allowed. When they land, `authorize` reads HTTP Basic
//! credentials (or the TLS client certificate) from `parts`, asks the
//! resource layer for the caller's grants — the same check MQTT uses — and
//! returns 401 (with `WWW-Authenticate`) or 403 as an [`HttpError`].

use axum::http::request::Parts;
use mqdb_resource::TableDef;

use crate::error::HttpError;

/// What a request does to a table, in the terms of SPEC §5 roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// GET, HEAD, queries and live updates.
    Read,
    /// POST (and PUT of a record that may not exist yet).
    Insert,
    /// PUT and PATCH.
    Update,
    /// DELETE.
    Delete,
}

/// Checks that the caller of `parts` may perform `op` on `table`.
/// Currently allows everything (see the module doc).
pub(crate) fn authorize(
    _parts: &Parts,
    _table: &TableDef,
    _op: Operation,
) -> Result<(), HttpError> {
    Ok(())
}
