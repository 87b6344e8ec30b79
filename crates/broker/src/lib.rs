//! The broker core of mqdb: everything that decides who receives which MQTT
//! message, written sans-I/O so it can be tested without sockets.
//!
//! - [`session`]: per-client delivery state (QoS 1/2 windows, packet ids,
//!   exactly-once bookkeeping, resumption), sans-I/O;
//! - [`trie`]: the subscription index; [`share`]: `$share/...` parsing;
//! - [`topics`]: topics as records (`Table/<id>`), retained sources of a filter;
//! - [`message`]: a message shared by its subscribers, encoded once per format;
//! - [`persist`]: persistent sessions as records;
//! - `broker`: shared state, routing, the change-feed follower;
//! - `connection`: the tokio driver over any `AsyncRead + AsyncWrite`;
//!   `conn_info`: what the transport tells it about the client.
//!
//! It is not: a codec (packets arrive validated by `mqdb-codec`) or storage
//! (records go through `mqdb-resource`). Only `broker` and `connection` use
//! tokio; the other modules are plain data structures.

mod broker;
mod conn_info;
mod connection;
pub mod events;
mod expiry;
pub mod message;
pub mod persist;
pub mod session;
pub mod share;
pub mod topics;
pub mod trie;

pub use broker::{Broker, BrokerConfig, Stats};
pub use conn_info::{ConnInfo, Transport};
pub use connection::{serve_connection, serve_tcp};
pub use events::{EventKind, EventStream, ServerEvent};
