//! The one place an error becomes an HTTP status and a JSON body
//! `{"error": "<message>", "status": <code>}`.
//!
//! Client mistakes are 4xx and say what is wrong; failures of the server
//! are 5xx: 507 while the disk is (nearly) full, 503 while the store
//! refuses writes or is closing, else 500 with a generic message (the
//! detail goes to the log, not to the client).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mqdb_resource::ResourceError;
use mqdb_storage::StorageError;

/// Why an HTTP request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The resource layer refused or failed the operation.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A request that cannot be understood (bad path encoding, bad header,
    /// a PATCH body that is not a map).
    #[error("{0}")]
    BadRequest(String),
    /// None of the `Accept`ed representations can be produced.
    #[error(
        "cannot produce any of `{0}`: records are available as application/json, application/cbor, application/x-msgpack and text/csv"
    )]
    NotAcceptable(String),
    /// A body in a content type this request cannot take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The method is not defined on this path.
    #[error("method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The methods that are allowed, for the `Allow` header.
        allow: &'static str,
    },
    /// No or wrong credentials (401, with `WWW-Authenticate: Basic`).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed to do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A request axum's extractors refused: a body too large (413) or cut
    /// off (400), a broken WebSocket handshake.
    #[error("{message}")]
    Rejected {
        /// The status the extractor chose.
        status: StatusCode,
        /// What happened.
        message: String,
    },
}

impl HttpError {
    /// The response status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Resource(e) => resource_status(e),
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            HttpError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Rejected { status, .. } => *status,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }
}

fn resource_status(e: &ResourceError) -> StatusCode {
    match e {
        ResourceError::UnknownTable(_) | ResourceError::NotFound { .. } => StatusCode::NOT_FOUND,
        ResourceError::Invalid(_)
        | ResourceError::Malformed(_)
        | ResourceError::BadQuery(_)
        | ResourceError::BadId(_) => StatusCode::BAD_REQUEST,
        // Well-formed, but not applicable to this record or table (patching
        // a binary record, a binary body for a typed table).
        ResourceError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ResourceError::Storage(StorageError::Poisoned(_) | StorageError::Closed) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // RFC 4918: the server cannot store what the request needs.
        ResourceError::Storage(StorageError::Full(_)) => StatusCode::INSUFFICIENT_STORAGE,
        ResourceError::Storage(StorageError::Rejected(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        ResourceError::Storage(StorageError::InvalidKey(_)) => StatusCode::BAD_REQUEST,
        e if e.is_client_error() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
            "internal server error".to_owned()
        } else {
            if status.is_server_error() {
                tracing::warn!(error = %self, "request refused");
            }
            self.to_string()
        };
        let body = serde_json::json!({ "error": message, "status": status.as_u16() });
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_string(),
        )
            .into_response();
        if let HttpError::MethodNotAllowed { allow, .. } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        } else if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mqdb\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

impl HttpError {
    /// An axum extractor's rejection, keeping its status and message.
    pub(crate) fn rejected(rejection: impl IntoResponse + std::fmt::Display) -> HttpError {
        let message = rejection.to_string();
        let status = rejection.into_response().status();
        HttpError::Rejected { status, message }
    }
}
