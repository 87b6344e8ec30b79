//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), as used by MQTT 5
//! enhanced authentication: a pure state machine over the SASL messages,
//! without I/O. The transport carries the messages (MQTT AUTH packets) and
//! asks [`crate::Security`] to look the user up and to check the result
//! through the login throttle.
//!
//! The exchange:
//!
//! 1. [`ScramServer::start`] reads the client-first-message (GS2 header,
//!    user name, client nonce), looks up the user's stored credentials and
//!    answers the server-first-message (combined nonce, salt, iterations);
//! 2. [`ScramServer::finish`] reads the client-final-message (channel
//!    binding, nonce, proof), verifies the proof against the StoredKey and
//!    answers the server-final-message (`v=` ServerSignature).
//!
//! Supported: the GS2 flags `n` and `y` (the server offers no channel
//! binding, so `y` is accepted), an authorization identity only when it is
//! the user name, `=2C` / `=3D` in names. Refused with a clear error:
//! channel binding (`p=`, that is SCRAM-SHA-256-PLUS) and mandatory
//! extensions (`m=`). User names are compared as sent (no SASLprep), as
//! mqdb stores them.
//!
//! An unknown user (or one without SCRAM credentials) gets fake credentials,
//! the same for a name during the process's life, so the exchange fails at
//! the proof exactly as a wrong password does and does not reveal who
//! exists.

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::users::{SCRAM_ITERATIONS, ScramCredentials, hmac};

/// The SASL mechanism name, also the MQTT Authentication Method.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Random bytes of the server's part of the nonce (24 base64 characters).
const SERVER_NONCE_BYTES: usize = 18;

/// Why an exchange failed. `Display` is meant for the client (an MQTT reason
/// string); [`ScramError::server_error`] is the RFC 5802 `e=` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// A message does not follow the RFC 5802 grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=`).
    #[error(
        "SCRAM channel binding (`p=` in the GS2 header) is not supported: \
         use SCRAM-SHA-256, not SCRAM-SHA-256-PLUS"
    )]
    ChannelBindingNotSupported,
    /// A mandatory extension (`m=`) was sent.
    #[error("SCRAM mandatory extensions (`m=`) are not supported")]
    ExtensionsNotSupported,
    /// An authorization identity (`a=`) other than the user name.
    #[error("a SCRAM authorization identity other than the user name is not supported")]
    AuthorizationIdentity,
    /// `c=` of the client-final-message is not the GS2 header sent first.
    #[error("the SCRAM channel binding (`c=`) does not match the GS2 header")]
    ChannelBindingMismatch,
    /// `r=` of the client-final-message is not the exchange's nonce.
    #[error("the SCRAM nonce does not match the exchange")]
    NonceMismatch,
    /// The proof is wrong: a wrong password or an unknown user.
    #[error("invalid SCRAM proof: bad user name or password")]
    InvalidProof,
}

impl ScramError {
    /// The RFC 5802 `server-error-value` for this failure.
    pub fn server_error(&self) -> &'static str {
        match self {
            ScramError::Malformed(_) => "invalid-encoding",
            ScramError::ChannelBindingNotSupported => "channel-binding-not-supported",
            ScramError::ExtensionsNotSupported => "extensions-not-supported",
            ScramError::AuthorizationIdentity => "other-error",
            ScramError::ChannelBindingMismatch => "channel-bindings-dont-match",
            ScramError::NonceMismatch => "other-error",
            ScramError::InvalidProof => "invalid-proof",
        }
    }
}

/// A SCRAM-SHA-256 exchange after the server-first-message, waiting for the
/// client-final-message.
pub struct ScramServer {
    username: String,
    credentials: ScramCredentials,
    /// Whether `credentials` are a real user's (not made up).
    known: bool,
    /// The GS2 header exactly as sent (`c=` must be its base64).
    gs2_header: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl fmt::Debug for ScramServer {
    /// Without the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("username", &self.username)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Reads `client_first` (the client-first-message), looks the user up
    /// with `lookup` (its stored credentials, `None` if unknown) and returns
    /// the exchange and the server-first-message.
    pub fn start(
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredentials>,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let mut random = [0u8; SERVER_NONCE_BYTES];
        getrandom::fill(&mut random).expect("the OS random source");
        Self::start_with_nonce(client_first, &B64.encode(random), lookup)
    }

    /// [`ScramServer::start`] with a chosen server nonce (printable, no `,`).
    fn start_with_nonce(
        client_first: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredentials>,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("the client-first-message is not UTF-8"))?;
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ScramError::Malformed(
                "the client-first-message has no GS2 header (`n,,`)",
            ));
        };
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            _ => {
                return Err(ScramError::Malformed(
                    "the GS2 channel binding flag must be `n`, `y` or `p=`",
                ));
            }
        }
        let authzid = match authzid {
            "" => None,
            a => Some(saslname(a.strip_prefix("a=").ok_or(
                ScramError::Malformed("the GS2 authorization identity must be `a=name`"),
            )?)?),
        };
        let gs2_header = text[..text.len() - bare.len()].to_owned();
        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(',');
        let user = attrs.next().unwrap_or_default();
        if user.starts_with("m=") {
            return Err(ScramError::ExtensionsNotSupported);
        }
        let username = saslname(user.strip_prefix("n=").ok_or(ScramError::Malformed(
            "the user name (`n=`) must come first",
        ))?)?;
        if username.is_empty() {
            return Err(ScramError::Malformed("the user name is empty"));
        }
        if authzid.is_some_and(|a| a != username) {
            return Err(ScramError::AuthorizationIdentity);
        }
        let client_nonce =
            attrs
                .next()
                .and_then(|r| r.strip_prefix("r="))
                .ok_or(ScramError::Malformed(
                    "the nonce (`r=`) must follow the user name",
                ))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(is_nonce_char) {
            return Err(ScramError::Malformed(
                "the nonce must be printable ASCII without `,`",
            ));
        }
        check_extensions(attrs)?;
        let (credentials, known) = match lookup(&username) {
            Some(c) => (c, true),
            None => (fake_credentials(&username), false),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credentials.salt),
            credentials.iterations
        );
        let reply = server_first.clone().into_bytes();
        Ok((
            ScramServer {
                username,
                credentials,
                known,
                gs2_header,
                nonce,
                client_first_bare: bare.to_owned(),
                server_first,
            },
            reply,
        ))
    }

    /// The user name the client gave (decoded), known or not.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The StoredKey the proof is checked against.
    pub(crate) fn stored_key(&self) -> &Bytes {
        &self.credentials.stored_key
    }

    /// Reads `client_final` (the client-final-message) and verifies its
    /// proof: the user name and the server-final-message (`v=...`) if it is
    /// right.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("the client-final-message is not UTF-8"))?;
        // client-final-message = channel-binding "," nonce ["," extensions] "," proof
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed(
            "the client-final-message has no proof (`p=`)",
        ))?;
        let mut attrs = without_proof.split(',');
        let binding =
            attrs
                .next()
                .and_then(|c| c.strip_prefix("c="))
                .ok_or(ScramError::Malformed(
                    "the client-final-message must start with `c=`",
                ))?;
        let nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(ScramError::Malformed("the nonce (`r=`) must follow `c=`"))?;
        check_extensions(attrs)?;
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("`c=` is not base64"))?;
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let Ok(proof) = <[u8; 32]>::try_from(proof.as_slice()) else {
            return Err(ScramError::Malformed("the proof is not 32 bytes"));
        };
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let c = &self.credentials;
        let client_signature = hmac(&c.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let computed = Sha256::digest(client_key);
        if !(constant_time_eq(&computed, &c.stored_key) && self.known) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(&c.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature)).into_bytes();
        Ok((self.username, server_final))
    }
}

/// Decodes a `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an
/// error.
fn saslname(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => {
                return Err(ScramError::Malformed(
                    "`=` in a name must be `=2C` or `=3D`",
                ));
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Optional extensions (`x=value`) are allowed and ignored; anything else
/// is malformed.
fn check_extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for a in attrs {
        let b = a.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b'=' {
            return Err(ScramError::Malformed("an attribute is not `x=value`"));
        }
    }
    Ok(())
}

/// RFC 5802 `printable`: 0x21-0x7E except `,`.
fn is_nonce_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Credentials made up for a user who does not exist: derived from the
/// name under a per-process random key, so a name always gets the same
/// salt (a changing salt would tell it is not real). No proof matches them.
fn fake_credentials(username: &str) -> ScramCredentials {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).expect("the OS random source");
        k
    });
    let derive = |label: &[u8]| hmac(key, &[label, username.as_bytes()].concat());
    ScramCredentials {
        salt: Bytes::copy_from_slice(&derive(b"salt\0")[..16]),
        iterations: SCRAM_ITERATIONS,
        stored_key: Bytes::copy_from_slice(&derive(b"stored-key\0")),
        server_key: Bytes::copy_from_slice(&derive(b"server-key\0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

    fn pencil() -> ScramCredentials {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredentials::derive_with(b"pencil", &salt, 4096)
    }

    fn rfc_start() -> ScramServer {
        let (server, first) =
            ScramServer::start_with_nonce(CLIENT_FIRST.as_bytes(), SERVER_NONCE, |name| {
                assert_eq!(name, "user");
                Some(pencil())
            })
            .unwrap();
        assert_eq!(std::str::from_utf8(&first).unwrap(), SERVER_FIRST);
        server
    }

    /// The client side of RFC 5802 for `password`: the client-final-message
    /// for a server-first-message.
    fn client_final(password: &[u8], gs2: &str, bare: &str, server_first: &str) -> String {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(gs2));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn the_rfc_7677_exchange_verifies() {
        let server = rfc_start();
        assert_eq!(server.username(), "user");
        let (user, last) = server.finish(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(user, "user");
        assert_eq!(std::str::from_utf8(&last).unwrap(), SERVER_FINAL);
    }

    #[test]
    fn the_test_client_reproduces_the_rfc_proof() {
        let bare = CLIENT_FIRST.strip_prefix("n,,").unwrap();
        assert_eq!(
            client_final(b"pencil", "n,,", bare, SERVER_FIRST),
            CLIENT_FINAL
        );
    }

    #[test]
    fn a_random_server_nonce_extends_the_client_nonce() {
        let (a, first_a) = ScramServer::start(CLIENT_FIRST.as_bytes(), |_| Some(pencil())).unwrap();
        let (_, first_b) = ScramServer::start(CLIENT_FIRST.as_bytes(), |_| Some(pencil())).unwrap();
        assert_ne!(first_a, first_b);
        let first = std::str::from_utf8(&first_a).unwrap();
        assert!(first.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        assert_eq!(a.nonce.len(), "rOprNGfwEbeRWgbNEkqO".len() + 24);
        // And a full exchange with it works.
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let fin = client_final(b"pencil", "n,,", bare, first);
        assert!(a.finish(fin.as_bytes()).is_ok());
    }

    #[test]
    fn a_wrong_password_is_an_invalid_proof() {
        let (server, first) =
            ScramServer::start(CLIENT_FIRST.as_bytes(), |_| Some(pencil())).unwrap();
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let fin = client_final(b"crayon", "n,,", bare, std::str::from_utf8(&first).unwrap());
        assert_eq!(
            server.finish(fin.as_bytes()).unwrap_err(),
            ScramError::InvalidProof
        );
    }

    #[test]
    fn an_unknown_user_fails_at_the_proof_with_a_stable_salt() {
        let start = || {
            let (server, first) =
                ScramServer::start(b"n,,n=ghost,r=abc", |_| None::<ScramCredentials>).unwrap();
            let first = String::from_utf8(first).unwrap();
            (server, first)
        };
        let (server, first) = start();
        let (_, again) = start();
        let salt = |f: &str| f.split(',').nth(1).unwrap().to_owned();
        assert_eq!(salt(&first), salt(&again));
        assert!(first.ends_with(",i=4096"));
        let fin = client_final(b"anything", "n,,", "n=ghost,r=abc", &first);
        assert_eq!(
            server.finish(fin.as_bytes()).unwrap_err(),
            ScramError::InvalidProof
        );
    }

    #[test]
    fn a_tampered_nonce_is_refused() {
        let tampered = CLIENT_FINAL.replace("k0,p=", "k1,p=");
        assert_eq!(
            rfc_start().finish(tampered.as_bytes()).unwrap_err(),
            ScramError::NonceMismatch
        );
        // Only the client's part echoed back.
        let short = CLIENT_FINAL.replace(&format!("r={NONCE}"), "r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(
            rfc_start().finish(short.as_bytes()).unwrap_err(),
            ScramError::NonceMismatch
        );
    }

    #[test]
    fn a_tampered_proof_or_binding_is_refused() {
        let proof = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        assert_eq!(
            rfc_start().finish(proof.as_bytes()).unwrap_err(),
            ScramError::InvalidProof
        );
        // `y,,` base64 instead of `n,,`.
        let binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert_eq!(
            rfc_start().finish(binding.as_bytes()).unwrap_err(),
            ScramError::ChannelBindingMismatch
        );
    }

    #[test]
    fn the_y_flag_and_a_matching_authzid_are_accepted() {
        for gs2 in ["y,,", "n,a=user,"] {
            let bare = "n=user,r=abc";
            let (server, first) =
                ScramServer::start(format!("{gs2}{bare}").as_bytes(), |_| Some(pencil())).unwrap();
            let fin = client_final(b"pencil", gs2, bare, std::str::from_utf8(&first).unwrap());
            assert_eq!(server.finish(fin.as_bytes()).unwrap().0, "user");
        }
    }

    #[test]
    fn escaped_names_are_decoded() {
        let (server, _) = ScramServer::start(b"n,,n=a=2Cb=3Dc,r=x", |name| {
            assert_eq!(name, "a,b=c");
            None
        })
        .unwrap();
        assert_eq!(server.username(), "a,b=c");
    }

    #[test]
    fn malformed_client_first_messages_are_refused() {
        let cases: &[(&[u8], ScramError)] = &[
            (
                b"p=tls-server-end-point,,n=user,r=abc",
                ScramError::ChannelBindingNotSupported,
            ),
            (b"n,,m=ext,n=user,r=abc", ScramError::ExtensionsNotSupported),
            (b"n,a=other,n=user,r=abc", ScramError::AuthorizationIdentity),
            (b"", ScramError::Malformed("")),
            (b"n=user,r=abc", ScramError::Malformed("")),
            (b"x,,n=user,r=abc", ScramError::Malformed("")),
            (b"n,z,n=user,r=abc", ScramError::Malformed("")),
            (b"n,,r=abc,n=user", ScramError::Malformed("")),
            (b"n,,n=user", ScramError::Malformed("")),
            (b"n,,n=,r=abc", ScramError::Malformed("")),
            (b"n,,n=us=er,r=abc", ScramError::Malformed("")),
            (b"n,,n=user,r=", ScramError::Malformed("")),
            (b"n,,n=user,r=a\x01b", ScramError::Malformed("")),
            (b"n,,n=user,r=abc,junk", ScramError::Malformed("")),
            (b"n,,n=\xff,r=abc", ScramError::Malformed("")),
        ];
        for (message, expected) in cases {
            let got = ScramServer::start(message, |_| Some(pencil())).unwrap_err();
            let same = match (expected, &got) {
                (ScramError::Malformed(_), ScramError::Malformed(_)) => true,
                (e, g) => e == g,
            };
            assert!(
                same,
                "{:?}: expected {expected:?}, got {got:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn malformed_client_final_messages_are_refused() {
        for message in [
            &b""[..],
            b"c=biws",
            b"c=biws,r=x",
            b"r=x,c=biws,p=AAAA",
            b"c=biws,p=AAAA",
            b"c=!!!,r=x,p=AAAA",
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!!",
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
            b"\xff",
        ] {
            let got = rfc_start().finish(message).unwrap_err();
            assert!(
                matches!(got, ScramError::Malformed(_)),
                "{:?}: {got:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn server_error_values_follow_rfc_5802() {
        assert_eq!(ScramError::InvalidProof.server_error(), "invalid-proof");
        assert_eq!(
            ScramError::ChannelBindingNotSupported.server_error(),
            "channel-binding-not-supported"
        );
    }
}
