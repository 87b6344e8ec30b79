//! The HTTP side of mqdb (SPEC §4): REST over the exported tables, and live
//! updates of a record or a collection over Server-Sent Events and plain
//! WebSocket.
//!
//! ```text
//! GET    /Table/<id>        200 record (Accept: JSON, CBOR, MessagePack, CSV) | 304 | 404 | 406
//! HEAD   /Table/<id>        the same headers, no body
//! PUT    /Table/<id>        204 replace (or create), ETag: "<version>"
//! PATCH  /Table/<id>        204 merge (null removes); 404 if there is no record
//! DELETE /Table/<id>        204; 404 if there was no record
//! POST   /Table/            201 create with a generated id, Location: /Table/<id>, body: the id
//! GET    /Table/?<query>    200 array of records (JSON, CBOR, MessagePack or CSV)
//! GET    ... Accept: text/event-stream    live updates as Server-Sent Events
//! GET    ... Upgrade: websocket           live updates over a plain WebSocket
//! ```
//!
//! Errors are JSON, `{"error": "<message>", "status": <code>}`: 400 for a
//! malformed body, a record that does not fit its table, a bad query, id or
//! path encoding; 404 for an unknown (or unexported) table or record; 405
//! (with `Allow`); 406 when no acceptable representation exists; 413 over
//! [`MAX_BODY`]; 415 for a PATCH body that is not JSON, CBOR or MessagePack;
//! 422 for a well-formed request that cannot apply (patching a binary
//! record, a binary body for a typed table); 503 while the store refuses
//! writes; 500 only for failures of the server itself.
//!
//! Every rule about records (primary key, validation, indexes, the change
//! feed) lives in `mqdb-resource`; this crate only maps HTTP onto it: paths
//! to tables and ids (`path`), headers to formats (`negotiate`), errors to
//! statuses (`error`), watches to event streams (`live`), and one
//! dispatcher over them all (`routes`).
//!
//! It is not: an MQTT-over-WebSocket endpoint (a WebSocket handshake that
//! offers the `mqtt` subprotocol is refused with 400 until that handler
//! lands), an authorisation layer (`auth` is the one place it will slot
//! in; today every request is allowed), or a TLS terminator.
//!
//! Depends on `mqdb-resource` and `mqdb-storage` (for the store's error
//! kinds); knows nothing of MQTT packets.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use mqdb_resource::Database;
use tokio::sync::{mpsc, watch};

mod auth;
mod collection;
mod error;
mod live;
mod negotiate;
mod path;
mod record;
mod routes;

pub use error::HttpError;

/// Largest request body accepted; a larger one gets 413.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long [`serve`] waits, after the listener has stopped, for WebSocket
/// sessions to close before it returns anyway.
const WEBSOCKET_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What every handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) db: Database,
    /// Becomes `true` when the server shuts down: live streams end then.
    /// A closed channel (no sender) means "never".
    pub(crate) closing: watch::Receiver<bool>,
    /// Held by every live stream; [`serve`] waits until all clones are gone.
    pub(crate) live_guard: Arc<mpsc::Sender<()>>,
}

impl AppState {
    /// Resolves when the server starts shutting down; never, if it cannot.
    pub(crate) async fn closed(mut closing: watch::Receiver<bool>) {
        if closing.wait_for(|closing| *closing).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The REST routes over `db`. Live streams opened through this router run
/// until their client goes away; use [`serve`] to also end them on shutdown.
pub fn router(db: Database) -> Router {
    let (_never, closing) = watch::channel(false);
    let (guard, _) = mpsc::channel(1);
    app(AppState {
        db,
        closing,
        live_guard: Arc::new(guard),
    })
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/", any(routes::dispatch))
        .route("/{*path}", any(routes::dispatch))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Refuses every request: authentication is required and there is nobody
/// to authenticate as yet.
async fn refuse_unauthenticated(
    _req: axum::extract::Request,
    _next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let body = serde_json::json!({
        "error": "authentication is required and no users exist yet; set http.require_authentication = false",
        "status": 401,
    });
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Basic realm=\"mqdb\"")],
        axum::Json(body),
    )
        .into_response()
}

/// Serves the REST routes over `db` on `listener` until `shutdown`
/// resolves, then stops accepting, ends live streams (SSE streams finish,
/// WebSocket sessions get a Close frame), waits for requests in flight and
/// returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Database,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, db, HttpOptions::default(), shutdown).await
}

/// Renders the Prometheus text exposition for `/metrics`.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the REST server.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// `http.require_authentication`. Users do not exist yet, so when this
    /// is set every request is refused with 401 (safe by default) until the
    /// security work adds them.
    pub require_authentication: bool,
    /// What `GET /metrics` serves (Prometheus text format), if anything.
    pub metrics: Option<MetricsFn>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("require_authentication", &self.require_authentication)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// [`serve`] with settings.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    db: Database,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (close, closing) = watch::channel(false);
    let (guard, mut drained) = mpsc::channel::<()>(1);
    let mut app = app(AppState {
        db,
        closing,
        live_guard: Arc::new(guard),
    });
    if let Some(render) = options.metrics.clone() {
        // `/metrics` is reserved: no table can be exported under that name
        // and be reached here.
        let metrics = Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        render(),
                    )
                }
            }),
        );
        app = metrics.merge(app);
    }
    if options.require_authentication {
        app = app.layer(axum::middleware::from_fn(refuse_unauthenticated));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = close.send(true);
        })
        .await?;
    // The router (and its guard) is gone; upgraded WebSocket sessions are
    // not connections axum waits for, so wait for their guards here.
    let _ = tokio::time::timeout(WEBSOCKET_DRAIN, drained.recv()).await;
    Ok(())
}
