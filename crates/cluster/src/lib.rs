//! Cluster replication over NATS JetStream: each node's committed changes are
//! appended to a stream and applied by the others with last-writer-wins;
//! distributed sessions live in a key-value bucket.
//!
//! Depends on `mqdb-resource`. Empty until the cluster issue lands.
