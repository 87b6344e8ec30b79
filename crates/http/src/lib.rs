//! The HTTP side of mqdb: REST over the tables, Server-Sent Events, plain
//! WebSocket subscriptions, MQTT over WebSocket and `/metrics`.
//!
//! Depends on `mqdb-resource` (and later `mqdb-broker` for MQTT over WebSocket).
//! Empty until the REST issue lands.
