//! Users, roles and authorisation (SPEC §5): the one place that decides who
//! may connect and what they may read and write, called by MQTT and REST
//! alike so each rule is written once.
//!
//! - [`roles`]: roles as configured (per-table operations, free-topic
//!   patterns, super user) and filter coverage;
//! - [`principal`]: an authenticated caller and its checks;
//! - [`users`]: users stored in the built-in table [`USERS_TABLE`], with
//!   argon2id password hashes and SCRAM-SHA-256 credentials;
//! - [`security`]: logging in (hashing off the async runtime, a cache of
//!   verified passwords, a per-address throttle of failed logins);
//! - [`scram`]: the server side of a SCRAM-SHA-256 exchange (MQTT 5
//!   enhanced authentication), pure; `Security` runs it against the users.
//!
//! It is not: a transport. Credentials arrive as plain values; HTTP Basic
//! parsing, TLS client certificates and MQTT CONNECT fields are read by
//! their protocols, which then ask here.

pub mod principal;
pub mod roles;
pub mod scram;
pub mod security;
mod throttle;
pub mod users;

pub use principal::{Denied, Principal};
pub use roles::{Role, Roles, TableOp, TableOps};
pub use scram::{SCRAM_SHA_256, ScramError, ScramServer};
pub use security::{AuthError, Security};
pub use users::{USERS_TABLE, User, UserError, Users};
