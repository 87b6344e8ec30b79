//! The broker core of mqdb: everything that decides who receives which MQTT
//! message, written sans-I/O so it can be tested without sockets.
//!
//! Today it holds the subscription index ([`trie::TopicTrie`]) and the parsing
//! of shared-subscription filters ([`share::parse_filter`]). The session state
//! machine (packets and time in, actions out), QoS 1/2 tables, will and
//! keep-alive handling come later, as does the tokio connection driver.
//!
//! It is not: a codec (topic names and filters arrive already validated by
//! `mqdb-codec`), storage, or a runtime. The core modules must not depend on
//! tokio; only the connection driver, once it exists, may.

pub mod share;
pub mod trie;
