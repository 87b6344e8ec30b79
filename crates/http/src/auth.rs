//! Authentication and authorisation of REST requests (SPEC §5): HTTP Basic
//! credentials (or a verified TLS client certificate) become a
//! [`Principal`] through the resource layer's [`mqdb_resource::Security`],
//! the same logins and the same rules MQTT uses. Every request that reaches
//! a table passes through [`authorize`] after the table is resolved and
//! before anything is read or written.
//!
//! Without credentials: 401 when `http.require_authentication` is set, else
//! the anonymous principal. Wrong credentials: 401. Not permitted: 403.

use axum::extract::ConnectInfo;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use mqdb_resource::{AuthError, Principal, TableDef, TableOp};

use crate::AppState;
use crate::error::HttpError;
use crate::peer::PeerInfo;

/// What a request does to a table, in the terms of SPEC §5 roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// GET, HEAD, queries and live updates.
    Read,
    /// POST.
    Insert,
    /// PUT: insert if the record does not exist, update if it does.
    Put,
    /// PATCH.
    Update,
    /// DELETE.
    Delete,
}

/// `Authorization: Basic base64(user:password)`. Other schemes are not
/// credentials for MQTT (`None`); a malformed Basic value is a 400.
pub(crate) fn basic_credentials(
    headers: &axum::http::HeaderMap,
) -> Result<Option<(String, String)>, HttpError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || HttpError::BadRequest("malformed HTTP Basic Authorization header".into());
    let value = value.to_str().map_err(|_| bad())?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((user.to_owned(), password.to_owned())))
}

/// The caller of `parts`.
pub(crate) async fn principal(state: &AppState, parts: &Parts) -> Result<Principal, HttpError> {
    let Some(security) = &state.security else {
        return if state.require_authentication {
            Err(HttpError::Unauthorized(
                "authentication is required and no user store is configured".into(),
            ))
        } else {
            Ok(Principal::super_user(None))
        };
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<PeerInfo>>()
        .map(|c| &c.0);
    let remote = peer.and_then(|p| p.addr).map(|a| a.ip());
    let has_authorization = parts.headers.contains_key(header::AUTHORIZATION);
    let basic = basic_credentials(&parts.headers).map_err(|_| {
        HttpError::Unauthorized("the Authorization header is not valid HTTP Basic".into())
    })?;
    let result = match (basic, peer.and_then(|p| p.cert_username.as_deref())) {
        (Some((user, _)), Some(cert)) if user != cert => Err(AuthError::NotAuthorized(format!(
            "the user name differs from the client certificate's `{cert}`"
        ))),
        (Some((user, password)), _) => security.login(&user, password.as_bytes(), remote).await,
        (None, Some(cert)) => security.login_certified(cert, None, remote).await,
        // Another scheme (Bearer, ...) is not a credential here.
        (None, None) if has_authorization => {
            return Err(HttpError::Unauthorized(
                "only HTTP Basic authentication is supported".into(),
            ));
        }
        (None, None) if state.require_authentication => {
            return Err(HttpError::Unauthorized("authentication is required".into()));
        }
        (None, None) => Ok(security.anonymous()),
    };
    result.map_err(|e| match e {
        AuthError::BadCredentials => HttpError::Unauthorized(e.to_string()),
        AuthError::NotAuthorized(why) => HttpError::Forbidden(why),
        other => HttpError::Rejected {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            message: other.to_string(),
        },
    })
}

/// Checks that `principal` may perform `op` on `table` (`id`: the record a
/// PUT writes, to tell insert from update).
pub(crate) fn authorize(
    state: &AppState,
    principal: &Principal,
    table: &TableDef,
    id: Option<&str>,
    op: Operation,
) -> Result<(), HttpError> {
    let result = match op {
        Operation::Read => principal.check(table, TableOp::Read),
        Operation::Insert => principal.check(table, TableOp::Insert),
        Operation::Update => principal.check(table, TableOp::Update),
        Operation::Delete => principal.check(table, TableOp::Delete),
        Operation::Put => principal.check_put(table, || {
            id.is_some_and(|id| matches!(state.db.get(table, id), Ok(Some(_))))
        }),
    };
    result.map_err(|d| HttpError::Forbidden(d.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_parsed() {
        let mut h = axum::http::HeaderMap::new();
        // "alice:se:cret" - the password may contain colons.
        h.insert(
            header::AUTHORIZATION,
            "Basic YWxpY2U6c2U6Y3JldA==".parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("alice".into(), "se:cret".into()))
        );
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h).unwrap(), None);
        h.insert(header::AUTHORIZATION, "Basic !!".parse().unwrap());
        assert!(basic_credentials(&h).is_err());
    }
}
