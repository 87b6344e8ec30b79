//! Logging in (SPEC §5): checks a user name and password (or a verified
//! client certificate, or a SCRAM-SHA-256 proof) against the stored users
//! and returns the caller's [`Principal`]. The same code serves MQTT
//! CONNECT and HTTP Basic.
//!
//! - argon2 verification runs on the blocking pool, at most one per CPU at
//!   a time, so a flood of logins cannot starve the async workers;
//! - a verified password is remembered as an HMAC under a per-process
//!   random key, next to the hash it was checked against, so reconnects
//!   and REST requests skip argon2 until the password changes. Failures
//!   are never cached;
//! - failed logins are throttled per remote address (see `throttle`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::principal::Principal;
use super::roles::{Role, Roles};
use super::scram::{ScramError, ScramServer};
use super::throttle::Throttle;
use super::users::{User, Users, hmac};
use crate::error::ResourceError;

/// Verified passwords remembered at most (a full cache is emptied).
const MAX_CACHED: usize = 100_000;

/// A hash verified by nobody, checked when the user does not exist so a
/// missing user takes as long to refuse as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2bKDRPsYBCS4Ri7PvXG7xFbDbrixLlK8MhfHOJ2quYc";

/// Why a login was refused. MQTT maps these to CONNACK codes, REST to
/// 401 / 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Unknown user or wrong password (MQTT 0x86 / 4, HTTP 401).
    #[error("bad user name or password")]
    BadCredentials,
    /// Authenticated, or not required to be, but not allowed in (MQTT
    /// 0x87 / 5, HTTP 401 without credentials, 403 with).
    #[error("not authorised: {0}")]
    NotAuthorized(String),
    /// The user store could not be read.
    #[error("the user store failed: {0}")]
    Unavailable(String),
}

impl From<ResourceError> for AuthError {
    fn from(e: ResourceError) -> Self {
        AuthError::Unavailable(e.to_string())
    }
}

#[derive(Debug)]
struct Cached {
    password_hash: String,
    mac: [u8; 32],
}

#[derive(Debug)]
struct Inner {
    users: Users,
    roles: Roles,
    cache_key: [u8; 32],
    cache: Mutex<HashMap<String, Cached>>,
    throttle: Throttle,
    hashing: Semaphore,
}

/// Authentication and the construction of principals. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Security(Arc<Inner>);

impl Security {
    /// Logins against `users`, granting `roles`.
    pub fn new(users: Users, roles: Roles) -> Security {
        let mut cache_key = [0u8; 32];
        getrandom::fill(&mut cache_key).expect("the OS random source");
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Security(Arc::new(Inner {
            users,
            roles,
            cache_key,
            cache: Mutex::new(HashMap::new()),
            throttle: Throttle::default(),
            hashing: Semaphore::new(cpus),
        }))
    }

    /// The user store.
    pub fn users(&self) -> &Users {
        &self.0.users
    }

    /// The configured roles.
    pub fn roles(&self) -> &Roles {
        &self.0.roles
    }

    /// The principal of a client without credentials when authentication
    /// is not required: the `anonymous` role if configured, else everything
    /// (a plain broker).
    pub fn anonymous(&self) -> Principal {
        match self.0.roles.get(Roles::ANONYMOUS) {
            Some(role) => Principal::with_roles(None, [&**role]),
            None => Principal::super_user(None),
        }
    }

    /// The principal of a stored user: the merge of its roles. Roles that
    /// are not configured grant nothing.
    pub fn principal(&self, user: &User) -> Principal {
        let roles: Vec<&Role> = user
            .roles
            .iter()
            .filter_map(|r| self.0.roles.get(r).map(|r| &**r))
            .collect();
        Principal::with_roles(Some(user.name.clone()), roles)
    }

    /// Checks `username` and `password`. Attempts from an address with
    /// recent failures wait first (`remote`), without delaying others.
    pub async fn login(
        &self,
        username: &str,
        password: &[u8],
        remote: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        if let Some(addr) = remote {
            self.0.throttle.admit(addr).await;
        }
        let result = self.check_password(username, password).await;
        self.record(remote, result.as_ref().map(|_| ()));
        result
    }

    /// The principal of `username`, proven by a verified TLS client
    /// certificate. A password, when also sent, must be right.
    pub async fn login_certified(
        &self,
        username: &str,
        password: Option<&[u8]>,
        remote: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        if let Some(password) = password {
            return self.login(username, password, remote).await;
        }
        match self.0.users.get(username)? {
            Some(user) => Ok(self.principal(&user)),
            None => Err(AuthError::NotAuthorized(format!(
                "the client certificate names `{username}`, who is not a user"
            ))),
        }
    }

    // ---- SCRAM-SHA-256 (MQTT 5 enhanced authentication, see `scram`) ----

    /// Starts a SCRAM-SHA-256 exchange: reads the client-first-message,
    /// looks the user up (an unknown one gets fake credentials) and returns
    /// the exchange with the server-first-message. A malformed message is
    /// `NotAuthorized` with the SCRAM error.
    pub fn scram_start(&self, client_first: &[u8]) -> Result<(ScramServer, Vec<u8>), AuthError> {
        let mut failed = None;
        let started = ScramServer::start(client_first, |name| match self.0.users.get(name) {
            Ok(user) => user.and_then(|u| u.scram),
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        match failed {
            Some(e) => Err(e.into()),
            None => started.map_err(scram_refusal),
        }
    }

    /// Ends a SCRAM-SHA-256 exchange with the client-final-message, through
    /// the same per-address throttle as [`Security::login`] (an invalid
    /// proof is a failed login): the user's principal and the
    /// server-final-message.
    pub async fn scram_login(
        &self,
        exchange: ScramServer,
        client_final: &[u8],
        remote: Option<IpAddr>,
    ) -> Result<(Principal, Vec<u8>), AuthError> {
        if let Some(addr) = remote {
            self.0.throttle.admit(addr).await;
        }
        let stored_key = exchange.stored_key().clone();
        let result = exchange
            .finish(client_final)
            .map_err(scram_refusal)
            .and_then(|(name, server_final)| match self.0.users.get(&name)? {
                // Unless the password changed during the exchange.
                Some(user)
                    if user
                        .scram
                        .as_ref()
                        .is_some_and(|s| s.stored_key == stored_key) =>
                {
                    Ok((self.principal(&user), server_final))
                }
                _ => Err(AuthError::BadCredentials),
            });
        self.record(remote, result.as_ref().map(|_| ()));
        result
    }

    // ---- end of SCRAM-SHA-256 ----

    /// Tells the throttle how a login from `remote` ended: a success clears
    /// the address, bad credentials count against it.
    fn record(&self, remote: Option<IpAddr>, result: Result<(), &AuthError>) {
        if let Some(addr) = remote {
            match result {
                Ok(()) => self.0.throttle.succeeded(addr),
                Err(AuthError::BadCredentials) => self.0.throttle.failed(addr),
                Err(_) => {}
            }
        }
    }

    async fn check_password(
        &self,
        username: &str,
        password: &[u8],
    ) -> Result<Principal, AuthError> {
        let user = self.0.users.get(username)?;
        let mac = hmac(&self.0.cache_key, password);
        if let Some(user) = &user {
            let cache = self.0.cache.lock().expect("login cache lock");
            if cache.get(username).is_some_and(|c| {
                c.password_hash == user.password_hash && constant_time_eq(&c.mac, &mac)
            }) {
                return Ok(self.principal(user));
            }
        }
        let permit = self
            .0
            .hashing
            .acquire()
            .await
            .map_err(|_| AuthError::Unavailable("shutting down".into()))?;
        let candidate = user.clone();
        let password = password.to_vec();
        let verified = tokio::task::spawn_blocking(move || match candidate {
            Some(user) => user.verify_password(&password),
            None => {
                // Same work as a real check, then refuse.
                let dummy = User {
                    name: String::new(),
                    roles: Vec::new(),
                    password_hash: DUMMY_HASH.to_owned(),
                    scram: None,
                };
                let _ = dummy.verify_password(&password);
                false
            }
        })
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        drop(permit);
        match user {
            Some(user) if verified => {
                let mut cache = self.0.cache.lock().expect("login cache lock");
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(
                    username.to_owned(),
                    Cached {
                        password_hash: user.password_hash.clone(),
                        mac,
                    },
                );
                Ok(self.principal(&user))
            }
            _ => Err(AuthError::BadCredentials),
        }
    }
}

/// A failed SCRAM exchange as a login refusal: a wrong proof is bad
/// credentials, anything else not authorised (with the SCRAM error).
fn scram_refusal(e: ScramError) -> AuthError {
    match e {
        ScramError::InvalidProof => AuthError::BadCredentials,
        e => AuthError::NotAuthorized(e.to_string()),
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use mqdb_storage::{Store, StoreConfig};

    use super::*;

    async fn security(dir: &std::path::Path) -> Security {
        let store = Store::open(StoreConfig {
            path: dir.to_owned(),
            sync: false,
            node: 0,
        })
        .unwrap();
        let users = Users::new(store);
        users
            .add("alice", b"secret", vec!["superuser".into()])
            .await
            .unwrap();
        Security::new(users, Roles::new(HashMap::new()))
    }

    #[tokio::test]
    async fn a_right_password_logs_in_and_a_wrong_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = security(dir.path()).await;
        let p = s.login("alice", b"secret", None).await.unwrap();
        assert_eq!(p.username(), Some("alice"));
        assert!(p.is_super_user());
        // Again, from the cache.
        assert!(s.login("alice", b"secret", None).await.is_ok());
        assert_eq!(
            s.login("alice", b"wrong", None).await.unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            s.login("nobody", b"secret", None).await.unwrap_err(),
            AuthError::BadCredentials
        );
    }

    #[tokio::test]
    async fn a_changed_password_invalidates_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let s = security(dir.path()).await;
        assert!(s.login("alice", b"secret", None).await.is_ok());
        s.users().set_password("alice", b"new").await.unwrap();
        assert!(s.login("alice", b"secret", None).await.is_err());
        assert!(s.login("alice", b"new", None).await.is_ok());
        assert!(s.users().remove("alice").await.unwrap());
        assert!(s.login("alice", b"new", None).await.is_err());
    }

    /// The client side of a SCRAM-SHA-256 exchange for `password`.
    fn scram_client_final(password: &[u8], bare: &str, server_first: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let server_first = std::str::from_utf8(server_first).unwrap();
        let attrs: Vec<&str> = server_first.split(',').collect();
        let salt = b64.decode(&attrs[1][2..]).unwrap();
        let iterations = attrs[2][2..].parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,{}", attrs[0]);
        let auth = format!("{bare},{server_first},{without_proof}");
        let sig = hmac(&sha2::Sha256::digest(client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(k, s)| k ^ s).collect();
        format!("{without_proof},p={}", b64.encode(proof)).into_bytes()
    }

    #[tokio::test]
    async fn scram_logs_in_and_a_bad_proof_is_a_throttled_failure() {
        let dir = tempfile::tempdir().unwrap();
        let s = security(dir.path()).await;
        let bare = "n=alice,r=nonce";
        let (x, first) = s.scram_start(format!("n,,{bare}").as_bytes()).unwrap();
        let fin = scram_client_final(b"secret", bare, &first);
        let (p, last) = s.scram_login(x, &fin, None).await.unwrap();
        assert_eq!(p.username(), Some("alice"));
        assert!(p.is_super_user());
        assert!(last.starts_with(b"v="));
        assert!(matches!(
            s.scram_start(b"p=tls-unique,,n=alice,r=x"),
            Err(AuthError::NotAuthorized(_))
        ));
        // Wrong passwords (and unknown users) count against the address.
        let addr: IpAddr = "127.0.0.9".parse().unwrap();
        for (user, password) in [
            ("alice", &b"wrong"[..]),
            ("nobody", b"secret"),
            ("alice", b"nope"),
        ] {
            let bare = format!("n={user},r=nonce");
            let (x, first) = s.scram_start(format!("n,,{bare}").as_bytes()).unwrap();
            let fin = scram_client_final(password, &bare, &first);
            assert_eq!(
                s.scram_login(x, &fin, Some(addr)).await.unwrap_err(),
                AuthError::BadCredentials
            );
        }
        let (x, first) = s.scram_start(format!("n,,{bare}").as_bytes()).unwrap();
        let fin = scram_client_final(b"secret", bare, &first);
        let start = std::time::Instant::now();
        assert!(s.scram_login(x, &fin, Some(addr)).await.is_ok());
        assert!(start.elapsed() >= std::time::Duration::from_millis(150));
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
