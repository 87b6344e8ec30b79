//! The resource layer: schema, tables, the dynamic `Value` and its JSON / CBOR /
//! MessagePack codecs, users, roles and authorisation, and the get / put / patch /
//! delete / query / watch operations that MQTT and REST both call.
//!
//! Depends on `mqdb-storage` only; knows nothing of MQTT packets or HTTP.

pub mod auth;
mod db;
mod error;
pub mod format;
pub mod query;
pub mod record;
pub mod schema;
pub mod value;
mod watch;

pub use auth::{AuthError, Denied, Principal, Roles, Security, TableOp, Users};
pub use db::{Completion, Database, Entry, Written};
pub use error::ResourceError;
pub use format::Format;
pub use query::Query;
pub use record::{Body, Meta};
pub use schema::{Schema, TableDef};
pub use value::{Map, Value};
pub use watch::{Watch, WatchEvent, WatchTarget};
