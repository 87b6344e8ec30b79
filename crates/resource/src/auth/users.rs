//! Users as records of the built-in, unexported table [`USERS_TABLE`],
//! keyed by name: the roles they hold, an argon2id password hash (PHC
//! string) and SCRAM-SHA-256 credentials derived from the same password
//! (for MQTT 5 enhanced authentication). Plain passwords are never stored.
//!
//! Hashing takes tens of milliseconds of CPU by design, so it runs on the
//! blocking pool, never on an async worker.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use mqdb_storage::{Decision, Mutation, Store, WriteOp, WriteOutcome};
use sha2::{Digest as _, Sha256};

use crate::error::ResourceError;
use crate::record::{self, Body, Meta};
use crate::value::{Map, Value};

/// The built-in table of users.
pub const USERS_TABLE: &str = "$users";

/// PBKDF2 iterations of stored SCRAM credentials (RFC 7677's minimum).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// SCRAM-SHA-256 credentials (RFC 5802 §3): what a server stores to check
/// a client proof without knowing the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// Random salt.
    pub salt: Bytes,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// SHA-256(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Bytes,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Bytes,
}

impl ScramCredentials {
    /// Derives credentials for `password` with a fresh salt.
    pub fn derive(password: &[u8]) -> ScramCredentials {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("the OS random source");
        Self::derive_with(password, &salt, SCRAM_ITERATIONS)
    }

    /// Derives credentials for `password`, `salt` and `iterations`.
    pub fn derive_with(password: &[u8], salt: &[u8], iterations: u32) -> ScramCredentials {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramCredentials {
            salt: Bytes::copy_from_slice(salt),
            iterations,
            stored_key: Bytes::copy_from_slice(&Sha256::digest(client_key)),
            server_key: Bytes::copy_from_slice(&hmac(&salted, b"Server Key")),
        }
    }
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name (the record id).
    pub name: String,
    /// Names of the roles held.
    pub roles: Vec<String>,
    /// The argon2id hash of the password, as a PHC string.
    pub password_hash: String,
    /// SCRAM-SHA-256 credentials of the same password.
    pub scram: Option<ScramCredentials>,
}

impl User {
    /// Whether `password` is this user's password. Slow by design (argon2):
    /// call it off the async runtime.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        PasswordHash::new(&self.password_hash)
            .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok())
    }

    fn to_record(&self) -> Bytes {
        let mut m = Map::new();
        m.insert(
            "roles".into(),
            Value::Array(self.roles.iter().cloned().map(Value::String).collect()),
        );
        m.insert("password".into(), Value::String(self.password_hash.clone()));
        if let Some(s) = &self.scram {
            let mut sm = Map::new();
            sm.insert("salt".into(), Value::Bytes(s.salt.clone()));
            sm.insert("iterations".into(), Value::Int(i64::from(s.iterations)));
            sm.insert("stored_key".into(), Value::Bytes(s.stored_key.clone()));
            sm.insert("server_key".into(), Value::Bytes(s.server_key.clone()));
            m.insert("scram".into(), Value::Map(sm));
        }
        record::encode(&Body::Map(m), &Meta::default())
    }

    fn from_record(name: &str, raw: Bytes) -> Result<User, ResourceError> {
        let corrupt =
            || ResourceError::Unprocessable(format!("stored user `{name}` is unreadable"));
        let (Body::Map(m), _) = record::decode(raw)? else {
            return Err(corrupt());
        };
        let roles = match m.get("roles") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let Some(Value::String(password_hash)) = m.get("password") else {
            return Err(corrupt());
        };
        let scram = match m.get("scram") {
            Some(Value::Map(s)) => match (
                s.get("salt"),
                s.get("iterations"),
                s.get("stored_key"),
                s.get("server_key"),
            ) {
                (
                    Some(Value::Bytes(salt)),
                    Some(Value::Int(i)),
                    Some(Value::Bytes(stored_key)),
                    Some(Value::Bytes(server_key)),
                ) => Some(ScramCredentials {
                    salt: salt.clone(),
                    iterations: u32::try_from(*i).map_err(|_| corrupt())?,
                    stored_key: stored_key.clone(),
                    server_key: server_key.clone(),
                }),
                _ => return Err(corrupt()),
            },
            _ => None,
        };
        Ok(User {
            name: name.to_owned(),
            roles,
            password_hash: password_hash.clone(),
            scram,
        })
    }
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// `add` of a name that is taken.
    #[error("user `{0}` already exists")]
    Exists(String),
    /// The user does not exist.
    #[error("no user `{0}`")]
    NotFound(String),
    /// A name that cannot be a user name.
    #[error("invalid user name: {0}")]
    InvalidName(String),
    /// An empty password.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// The store failed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

/// The user records of a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Users {
    store: Store,
}

impl Users {
    /// The users kept in `store`.
    pub fn new(store: Store) -> Users {
        Users { store }
    }

    /// The user called `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<User>, ResourceError> {
        match self.store.get(USERS_TABLE, name)? {
            Some(r) => Ok(Some(User::from_record(name, r.value)?)),
            None => Ok(None),
        }
    }

    /// Every user, by name.
    pub fn list(&self) -> Result<Vec<User>, ResourceError> {
        self.store
            .scan(USERS_TABLE, "")
            .map(|r| {
                let r = r?;
                User::from_record(&r.id, r.value)
            })
            .collect()
    }

    /// Whether no user exists.
    pub fn is_empty(&self) -> Result<bool, ResourceError> {
        Ok(self
            .store
            .scan(USERS_TABLE, "")
            .next()
            .transpose()?
            .is_none())
    }

    /// Creates user `name` with `password` and `roles`; fails if the name is
    /// taken. Hashes on the blocking pool.
    pub async fn add(
        &self,
        name: &str,
        password: &[u8],
        roles: Vec<String>,
    ) -> Result<(), UserError> {
        check_name(name)?;
        let user = hashed(name, password, roles).await?;
        let value = user.to_record();
        let taken = name.to_owned();
        self.modify(name, move |current| match current {
            Some(_) => Err(UserError::Exists(taken)),
            None => Ok(value),
        })
        .await
    }

    /// Replaces the password of user `name`, keeping its roles.
    pub async fn set_password(&self, name: &str, password: &[u8]) -> Result<(), UserError> {
        let Some(old) = self.get(name)? else {
            return Err(UserError::NotFound(name.to_owned()));
        };
        let user = hashed(name, password, old.roles).await?;
        self.replace(name, user).await
    }

    /// Replaces the roles of user `name`, keeping its password.
    pub async fn set_roles(&self, name: &str, roles: Vec<String>) -> Result<(), UserError> {
        let Some(mut user) = self.get(name)? else {
            return Err(UserError::NotFound(name.to_owned()));
        };
        user.roles = roles;
        self.replace(name, user).await
    }

    /// Deletes user `name`; `false` if there was none.
    pub async fn remove(&self, name: &str) -> Result<bool, ResourceError> {
        let outcome = self
            .store
            .write_one(WriteOp::local(USERS_TABLE, name, Mutation::Delete))
            .await?;
        Ok(matches!(outcome, WriteOutcome::Written { .. }))
    }

    async fn replace(&self, name: &str, user: User) -> Result<(), UserError> {
        let value = user.to_record();
        let missing = name.to_owned();
        self.modify(name, move |current| match current {
            Some(_) => Ok(value),
            None => Err(UserError::NotFound(missing)),
        })
        .await
    }

    /// Writes `decide(current)` atomically in the writer.
    async fn modify(
        &self,
        name: &str,
        decide: impl FnOnce(Option<&mqdb_storage::Record>) -> Result<Bytes, UserError> + Send + 'static,
    ) -> Result<(), UserError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let f: mqdb_storage::ModifyFn = Box::new(move |current| match decide(current) {
            Ok(value) => Ok(Decision::Put {
                value,
                index: Vec::new(),
            }),
            Err(e) => {
                let message = e.to_string();
                let _ = tx.send(e);
                Err(message)
            }
        });
        let outcome = self
            .store
            .write_one(WriteOp::local(USERS_TABLE, name, Mutation::Modify(f)))
            .await
            .map_err(ResourceError::from)?;
        match outcome {
            WriteOutcome::Rejected(message) => Err(rx
                .try_recv()
                .unwrap_or(UserError::Resource(ResourceError::Unprocessable(message)))),
            _ => Ok(()),
        }
    }
}

/// Checks a user name: 1 to 256 bytes, no control characters, no `:` (it
/// could not be sent in HTTP Basic).
fn check_name(name: &str) -> Result<(), UserError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > 256 {
        "it is longer than 256 bytes"
    } else if name.contains(':') {
        "it contains `:`"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(UserError::InvalidName(format!(
        "`{}`: {why}",
        name.escape_debug()
    )))
}

/// Builds a user with hashed credentials, on the blocking pool.
async fn hashed(name: &str, password: &[u8], roles: Vec<String>) -> Result<User, UserError> {
    if password.is_empty() {
        return Err(UserError::EmptyPassword);
    }
    let password = password.to_vec();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("the OS random source");
        let salt = SaltString::encode_b64(&salt).expect("a 16-byte salt encodes");
        let password_hash = Argon2::default()
            .hash_password(&password, &salt)
            .expect("argon2 with default parameters")
            .to_string();
        User {
            name,
            roles,
            password_hash,
            scram: Some(ScramCredentials::derive(&password)),
        }
    })
    .await
    .map_err(|e| UserError::Resource(ResourceError::Unprocessable(format!("hashing failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_credentials_match_rfc_7677_example() {
        // RFC 7677 §3: user "user", password "pencil".
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = ScramCredentials::derive_with(b"pencil", &salt, 4096);
        // ServerSignature = HMAC(ServerKey, AuthMessage) from the RFC's exchange.
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac(&c.server_key, auth_message.as_bytes());
        assert_eq!(
            b64.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a:b").is_err());
        assert!(check_name("a\nb").is_err());
    }
}
