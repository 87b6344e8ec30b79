//! Authentication at CONNECT and authorisation of PUBLISH and SUBSCRIBE on
//! a connection (SPEC §5). The rules themselves live in the resource layer
//! (`mqdb_resource::auth`), shared with REST; this module maps MQTT onto
//! them and their refusals onto reason codes.
//!
//! Credentials, in order: a verified TLS client certificate (its username;
//! a password, if sent, must also be right), the CONNECT user name and
//! password, HTTP Basic from a WebSocket upgrade. Without any, the client
//! is refused when authentication is required, else anonymous.

use mqdb_codec::{Publish, ReasonCode};
use mqdb_resource::{AuthError, Denied, Principal, TableOp};

use super::Conn;
use crate::broker::PublishError;
use crate::topics::{self, Target};

impl Conn {
    /// The principal of a CONNECT, or the reason code and message of its
    /// refusal (0x86 / 4 for bad credentials, 0x87 / 5 otherwise).
    pub(super) async fn authenticate(
        &mut self,
        username: Option<String>,
        password: Option<Vec<u8>>,
    ) -> Result<Principal, (ReasonCode, String)> {
        let security = self.broker.security().clone();
        let remote = self.info.remote_addr.map(|a| a.ip());
        let basic = self.info.basic_credentials.clone();
        let (username, password) = match (username, password) {
            (None, None) => match basic {
                Some((u, p)) => (Some(u), Some(p.into_bytes())),
                None => (None, None),
            },
            given => given,
        };
        self.username = username.clone();
        let result = if let Some(cert_user) = self.info.cert_username.clone() {
            if username.as_deref().is_some_and(|u| u != cert_user) {
                Err(AuthError::NotAuthorized(format!(
                    "the user name differs from the client certificate's `{cert_user}`"
                )))
            } else {
                self.username = Some(cert_user.clone());
                security
                    .login_certified(&cert_user, password.as_deref(), remote)
                    .await
            }
        } else {
            match (&username, &password) {
                (Some(u), Some(p)) => security.login(u, p, remote).await,
                (Some(_), None) | (None, Some(_)) => Err(AuthError::BadCredentials),
                (None, None) if self.broker.config().require_authentication => Err(
                    AuthError::NotAuthorized("authentication is required".into()),
                ),
                (None, None) => Ok(security.anonymous()),
            }
        };
        result.map_err(|e| {
            let code = match e {
                AuthError::BadCredentials => ReasonCode::BadUserNameOrPassword,
                AuthError::NotAuthorized(_) => ReasonCode::NotAuthorized,
                _ => ReasonCode::ServerUnavailable,
            };
            (code, e.to_string())
        })
    }

    /// Whether the connection's principal may make this publish: a record
    /// write needs insert/update (delete for an empty retained payload), a
    /// non-retained message to a table topic insert or update, a free topic
    /// a matching publish pattern.
    pub(super) fn authorize_publish(&self, p: &Publish) -> Result<(), PublishError> {
        let Some(principal) = &self.principal else {
            return Err(PublishError::NotAuthorized("not connected".into()));
        };
        if principal.is_super_user() || p.topic.starts_with("$SYS/") {
            // `$SYS/` is refused for everyone by the broker itself.
            return Ok(());
        }
        let db = self.broker.db();
        let result = match topics::resolve(db.schema(), &p.topic) {
            Target::Record { table, .. } if p.retain && p.payload.is_empty() => {
                principal.check(table, TableOp::Delete)
            }
            Target::Record { table, id } if p.retain => {
                principal.check_put(table, || matches!(db.get(table, id), Ok(Some(_))))
            }
            Target::Record { table, .. } => {
                if principal.may(table, TableOp::Insert) || principal.may(table, TableOp::Update) {
                    Ok(())
                } else {
                    principal.check(table, TableOp::Insert)
                }
            }
            Target::Free if principal.may_publish_topic(&p.topic) => Ok(()),
            Target::Free => Err(Denied(format!(
                "{} may not publish to `{}`",
                principal.username().map_or_else(
                    || "an anonymous client".to_owned(),
                    |u| format!("user `{u}`")
                ),
                &*p.topic
            ))),
        };
        result.map_err(|d| PublishError::NotAuthorized(d.0))
    }

    /// Whether the connection's principal may subscribe to `filter` (the
    /// filter of a shared subscription without its `$share/group/`).
    pub(super) fn authorize_subscribe(&self, filter: &str) -> Result<(), Denied> {
        match &self.principal {
            Some(p) => p.check_subscribe(self.broker.db().schema(), filter),
            None => Err(Denied("not connected".into())),
        }
    }
}
