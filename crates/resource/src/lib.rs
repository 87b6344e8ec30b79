//! The resource layer: schema, tables, the dynamic `Value` and its JSON / CBOR /
//! MessagePack codecs, users, roles and authorisation, and the get / put / patch /
//! delete / query / watch operations that MQTT and REST both call.
//!
//! Depends on `mqdb-storage` only. Empty until the database issue lands.
