//! The embedded storage engine of mqdb: records keyed by (table, id), secondary
//! indexes, the change log, the single group-commit writer and the change feed.
//!
//! Knows nothing of MQTT or HTTP and depends on no other mqdb crate. It is empty
//! until the database issue lands; the crate exists so the dependency rule of
//! `ARCHITECTURE.md` holds from the first commit.
